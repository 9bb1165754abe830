//! `roomcast dev --static DIR`: serves a directory's files to plain GET requests
//! (`/` is `index.html`), so a web page and the WebSocket API it talks to share
//! one origin. WebSocket upgrades and paths without a file go on to the gateway's
//! routes. Only regular files under the directory are served: `..`, hidden
//! segments and symlinks leading out of it or to a hidden file are refused, and
//! a read of a path with neither a file nor a route answers 404.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The directory to serve, canonicalised once.
#[derive(Debug, Clone)]
pub struct StaticDir {
    root: PathBuf,
}

impl StaticDir {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Ok(Self { root })
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a request path names, if it is a regular file inside the root.
    fn file(&self, path: &str) -> Option<PathBuf> {
        let mut file = self.root.clone();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            if segment.starts_with('.') || segment.contains('\\') || segment.contains('%') {
                return None;
            }
            file.push(segment);
        }
        if file.is_dir() {
            file.push("index.html");
        }
        // The resolved path too: a symlink may lead out of the root or to a hidden file.
        let file = file.canonicalize().ok()?;
        let inside = file.strip_prefix(&self.root).ok()?;
        let hidden = inside
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
        (!hidden && file.is_file()).then_some(file)
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Marks the gateway's answer to a path it does not serve, so that a plain read
/// of a missing file answers 404 instead.
#[derive(Debug, Clone, Copy)]
pub struct NotServed;

/// Middleware: a GET or HEAD that is not a WebSocket upgrade and names a file is
/// answered with it, one naming no file and no route with 404; anything else goes on.
pub async fn serve(State(dir): State<StaticDir>, request: Request, next: Next) -> Response {
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    if !is_read || request.headers().contains_key(header::UPGRADE) {
        return next.run(request).await;
    }
    let Some(file) = dir.file(request.uri().path()) else {
        let response = next.run(request).await;
        if response.extensions().get::<NotServed>().is_some() {
            return StatusCode::NOT_FOUND.into_response();
        }
        return response;
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&file)),
                // A demo is edited while it runs: never serve a stale copy.
                (header::CACHE_CONTROL, "no-store"),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read a static file");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_the_root_are_served() {
        let root = std::env::temp_dir().join(format!("roomcast-static-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "i").unwrap();
        std::fs::write(root.join("sub/a.js"), "a").unwrap();
        std::fs::write(root.join(".secret"), "s").unwrap();
        let dir = StaticDir::new(&root).unwrap();
        assert!(dir.file("/").unwrap().ends_with("index.html"));
        assert!(dir.file("/sub/a.js").is_some());
        assert!(dir.file("/../etc/passwd").is_none());
        assert!(dir.file("/sub/../../x").is_none());
        assert!(dir.file("/.secret").is_none());
        assert!(dir.file("/missing").is_none());
        assert!(dir.file("/sub").is_none(), "a directory without index.html");
        // Symlinks are judged by where they lead: not to a hidden file, not outside.
        std::os::unix::fs::symlink(root.join(".secret"), root.join("public.txt")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("host.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/a.js"), root.join("b.js")).unwrap();
        assert!(dir.file("/public.txt").is_none());
        assert!(dir.file("/host.txt").is_none());
        assert!(dir.file("/b.js").is_some());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
