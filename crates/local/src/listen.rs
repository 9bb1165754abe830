//! The accept loop: one hyper HTTP/1.1 connection per accepted socket, with a
//! deadline on reading a request's headers ([`Limits::header_read_timeout`]) and a
//! cap on the sockets one non-loopback address may hold open at once
//! ([`Limits::per_address`]). Each request carries the peer's address
//! (`ConnectInfo<SocketAddr>`, which the handshake reads for `sourceIp`) and the
//! socket's own address ([`LocalAddr`], the gateway's domain in events).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt as _;

/// The address the request's socket was accepted on (with `--host 0.0.0.0`, the
/// interface the client reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// The accept loop's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's headers (the first, and each
    /// later one on a kept-alive connection) before the socket is closed.
    pub header_read_timeout: Duration,
    /// Most sockets open at once from one non-loopback address; 0: no cap.
    pub per_address: usize,
}

/// Open sockets per peer address.
#[derive(Default, Clone)]
struct Counts(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// A counted socket; uncounted when dropped.
struct Slot {
    counts: Counts,
    ip: IpAddr,
}

impl Counts {
    /// A slot for `ip`, unless it already holds `cap` sockets.
    fn take(&self, ip: IpAddr, cap: usize) -> Option<Slot> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` until `stopped` turns true, then lets the open
/// HTTP connections finish their requests and waits for them (WebSocket
/// connections are closed by the gateway itself).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let counts = Counts::default();
    // Every connection task holds a clone; all dropped: every connection is done.
    let (open, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop_signal(&mut stopped) => break,
        };
        let Some(slot) = admit(&counts, peer, limits) else {
            tracing::debug!(peer = %peer.ip(), "connection refused: too many open from this address");
            continue;
        };
        let stream = Counted {
            stream,
            _slot: slot,
        };
        let task = connection(stream, peer, router.clone(), limits, stopped.clone());
        let open = open.clone();
        tokio::spawn(async move {
            task.await;
            drop(open);
        });
    }
    drop(open);
    let _ = all_done.recv().await;
    Ok(())
}

/// The socket's slot (`None`: not counted, from loopback or without a cap), or
/// `None` outside when `peer`'s address is at its cap.
fn admit(counts: &Counts, peer: SocketAddr, limits: Limits) -> Option<Option<Slot>> {
    if peer.ip().is_loopback() || limits.per_address == 0 {
        return Some(None);
    }
    counts.take(peer.ip(), limits.per_address).map(Some)
}

/// Resolves once the gateway stops.
async fn stop_signal(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// A socket holding its place in [`Counts`] until dropped, also after a WebSocket
/// upgrade took it over from hyper.
struct Counted {
    stream: TcpStream,
    _slot: Option<Slot>,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Serves one socket, shutting down gracefully when the gateway stops.
async fn connection(
    stream: Counted,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let Ok(local) = stream.stream.local_addr() else {
        return;
    };
    let service = router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(LocalAddr(local));
        request.map(axum::body::Body::new)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Some(limits.header_read_timeout));
    let conn = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = stop_signal(&mut stopped) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_its_cap_and_slots_come_back() {
        let counts = Counts::default();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let a = counts.take(ip, 2).unwrap();
        let _b = counts.take(ip, 2).unwrap();
        assert!(counts.take(ip, 2).is_none());
        assert!(counts.take("10.0.0.8".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(counts.take(ip, 2).is_some());
    }
}
