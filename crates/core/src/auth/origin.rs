//! The handshake's `Origin` against an allowlist. Browsers send `Origin` on every
//! WebSocket handshake and let any page open a socket to any host, with the user's
//! cookies and whatever token the page can reach; without an allowlist, a site the
//! user visits can talk to the API as that user (cross-site WebSocket hijacking,
//! OWASP). Servers and command-line clients send no `Origin`: they are let through
//! unless [`Origins::require`] is set.

use crate::config::ConfigError;
use crate::names::env;

/// Which `Origin`s may open a connection. [`Default`]: any, and none at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// Exact origins (`https://app.example.com`, `http://localhost:5173`);
    /// `None`: any origin.
    pub allowed: Option<Vec<String>>,
    /// Refuse handshakes without an `Origin` header.
    pub require: bool,
}

/// Why a handshake's origin was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginRefusal {
    #[error("the handshake has no Origin header and one is required")]
    Missing,
    #[error("origin {0:?} is not on the allowlist")]
    NotAllowed(String),
}

impl Origins {
    /// Reads `ROOMCAST_ALLOWED_ORIGINS` (comma-separated exact origins, or `*` alone)
    /// and `ROOMCAST_REQUIRE_ORIGIN` (`true`/`false`) through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let allowed = match get(env::ALLOWED_ORIGINS).filter(|v| !v.trim().is_empty()) {
            None => None,
            Some(list) => parse_list(&list)?,
        };
        let require = match get(env::REQUIRE_ORIGIN).filter(|v| !v.trim().is_empty()) {
            None => false,
            Some(v) => parse_flag(env::REQUIRE_ORIGIN, &v)?,
        };
        Ok(Self { allowed, require })
    }

    /// Whether any check is made at all.
    pub fn is_open(&self) -> bool {
        self.allowed.is_none() && !self.require
    }

    /// Checks a handshake's `Origin` header value (`None` when it has none).
    pub fn check(&self, origin: Option<&str>) -> Result<(), OriginRefusal> {
        let Some(origin) = origin else {
            return if self.require {
                Err(OriginRefusal::Missing)
            } else {
                Ok(())
            };
        };
        match &self.allowed {
            None => Ok(()),
            // Scheme and host are case-insensitive; browsers send them lower-case.
            Some(list) if list.iter().any(|a| a.eq_ignore_ascii_case(origin.trim())) => Ok(()),
            Some(_) => Err(OriginRefusal::NotAllowed(origin.to_owned())),
        }
    }
}

/// `*` alone: any origin (`None`); otherwise each entry must be an origin as
/// browsers send it: `scheme://host[:port]`, no path, no trailing slash.
fn parse_list(list: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let invalid = |reason| ConfigError::Invalid {
        name: env::ALLOWED_ORIGINS,
        value: list.to_owned(),
        reason,
    };
    if entries.contains(&"*") {
        return if entries.len() == 1 {
            Ok(None)
        } else {
            Err(invalid(
                "`*` allows every origin and cannot be combined with others",
            ))
        };
    }
    for entry in &entries {
        let Some((scheme, host)) = entry.split_once("://") else {
            return Err(invalid(
                "expected origins like https://app.example.com, comma-separated",
            ));
        };
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            || host.is_empty()
            || host.contains(['/', '?', '#', '*', ' '])
        {
            return Err(invalid(
                "an origin is scheme://host[:port], without path, wildcard or trailing slash",
            ));
        }
    }
    Ok(Some(entries.into_iter().map(str::to_owned).collect()))
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`), as the other boolean settings.
pub(crate) fn parse_flag(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason: "expected true or false",
        }),
    }
}
