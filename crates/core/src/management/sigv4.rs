//! AWS Signature Version 4 for `@connections` requests, specialised for the
//! fan-out's one shape of request (no query string, a few fixed headers).
//!
//! Why not `aws-sigv4`: the general signer rebuilds the signing key (four
//! HMACs) and formats the canonical request through `Display` impls on every
//! call; in the gateway profile that was 20% of all CPU spent per delivery
//! (docs/performance.md). Here the signing key is derived once per day and
//! credentials, and a request costs two SHA-256 digests and one HMAC. The tests
//! in crates/core/tests/adapters.rs recompute every signature this module makes
//! with `aws-sigv4` and require them to be identical.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac};

use crate::clock::civil;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What a request is signed with.
pub struct Key<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub service: &'a str,
}

/// A request to sign: `path` already percent-encoded once, as sent.
pub struct Request<'a> {
    pub method: &'a str,
    /// The `Host` header as sent: the host, plus `:port` when not the default.
    pub host: &'a str,
    pub path: &'a str,
    /// Other headers to sign, lower-case names, sent as given.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Signs requests, keeping the derived signing key of the current day.
#[derive(Debug, Default)]
pub struct Signer {
    cached: Mutex<Option<CachedKey>>,
}

/// The signing key and what it was derived from: `YYYYMMDD`, region, service and
/// secret key (the access key id is not an input).
struct CachedKey {
    date: String,
    region: String,
    service: String,
    secret: String,
    key: hmac::Key,
}

impl std::fmt::Debug for CachedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedKey")
            .field("date", &self.date)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The headers to add: `x-amz-date`, `x-amz-security-token` with a session
    /// token, and `authorization`.
    pub fn sign(
        &self,
        key: &Key<'_>,
        request: &Request<'_>,
        now: SystemTime,
    ) -> Vec<(&'static str, String)> {
        let (amz_date, date) = amz_dates(now);
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(request.headers.len() + 3);
        headers.extend_from_slice(request.headers);
        headers.push(("host", request.host));
        headers.push(("x-amz-date", &amz_date));
        if let Some(token) = key.session_token {
            headers.push(("x-amz-security-token", token));
        }
        headers.sort_unstable_by(|a, b| a.0.cmp(b.0));

        let mut canonical = String::with_capacity(256 + request.path.len() * 3);
        canonical.push_str(request.method);
        canonical.push('\n');
        double_encode_path(request.path, &mut canonical);
        canonical.push_str("\n\n");
        let mut signed_headers = String::with_capacity(64);
        for (name, value) in &headers {
            canonical.push_str(name);
            canonical.push(':');
            canonical.push_str(value.trim());
            canonical.push('\n');
            if !signed_headers.is_empty() {
                signed_headers.push(';');
            }
            signed_headers.push_str(name);
        }
        canonical.push('\n');
        canonical.push_str(&signed_headers);
        canonical.push('\n');
        hex_into(
            digest::digest(&digest::SHA256, request.body).as_ref(),
            &mut canonical,
        );

        let scope = format!("{date}/{}/{}/aws4_request", key.region, key.service);
        let mut string_to_sign = String::with_capacity(160);
        string_to_sign.push_str(ALGORITHM);
        string_to_sign.push('\n');
        string_to_sign.push_str(&amz_date);
        string_to_sign.push('\n');
        string_to_sign.push_str(&scope);
        string_to_sign.push('\n');
        hex_into(
            digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref(),
            &mut string_to_sign,
        );
        let signature = hmac::sign(&self.signing_key(key, &date), string_to_sign.as_bytes());
        let mut authorization = format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature=",
            key.access_key_id
        );
        hex_into(signature.as_ref(), &mut authorization);

        let mut out = Vec::with_capacity(3);
        out.push(("x-amz-date", amz_date.clone()));
        if let Some(token) = key.session_token {
            out.push(("x-amz-security-token", token.to_owned()));
        }
        out.push(("authorization", authorization));
        out
    }

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
    /// "aws4_request"), derived again only when the day or credentials change.
    fn signing_key(&self, key: &Key<'_>, date: &str) -> hmac::Key {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cached.as_ref()
            && c.date == date
            && c.region == key.region
            && c.service == key.service
            && c.secret == key.secret_access_key
        {
            return c.key.clone();
        }
        let step = |k: &[u8], data: &str| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k), data.as_bytes())
        };
        let secret = format!("AWS4{}", key.secret_access_key);
        let k_date = step(secret.as_bytes(), date);
        let k_region = step(k_date.as_ref(), key.region);
        let k_service = step(k_region.as_ref(), key.service);
        let k_signing = step(k_service.as_ref(), "aws4_request");
        let derived = hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref());
        *cached = Some(CachedKey {
            date: date.to_owned(),
            region: key.region.to_owned(),
            service: key.service.to_owned(),
            secret: key.secret_access_key.to_owned(),
            key: derived.clone(),
        });
        derived
    }
}

/// `("20261126T141500Z", "20261126")`.
fn amz_dates(now: SystemTime) -> (String, String) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d, hh, mm, ss) = civil(secs);
    let date = format!("{y:04}{m:02}{d:02}");
    (format!("{date}T{hh:02}{mm:02}{ss:02}Z"), date)
}

/// The canonical URI of every service but S3: the path as sent, percent-encoded
/// once more (so `%2B` becomes `%252B` and `@` becomes `%40`), `/` kept.
fn double_encode_path(path: &str, out: &mut String) {
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            push_percent(b, out);
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_percent(b: u8, out: &mut String) {
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(b & 0xf)]));
}

fn hex_into(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example (the IAM ListUsers GET in the SigV4 guide's
    /// "get-vanilla" suite): the same credentials, date and request must give
    /// the published signature.
    #[test]
    fn matches_the_aws_test_suite_vanilla_get() {
        let key = Key {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: None,
            region: "us-east-1",
            service: "service",
        };
        let request = Request {
            method: "GET",
            host: "example.amazonaws.com",
            path: "/",
            headers: &[],
            body: b"",
        };
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160); // 20150830T123600Z
        let headers = Signer::default().sign(&key, &request, now);
        assert_eq!(headers[0], ("x-amz-date", "20150830T123600Z".to_owned()));
        assert_eq!(
            headers[1].1,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// The cached key is reused only for the same day, region, service and
    /// secret: a signer that signed with other credentials before signs as a
    /// fresh one does.
    #[test]
    fn the_cached_key_follows_the_credentials_and_the_day() {
        let request = Request {
            method: "POST",
            host: "example.amazonaws.com",
            path: "/prod/@connections/abc%3D",
            headers: &[("content-type", "application/octet-stream")],
            body: b"{}",
        };
        let key = |secret| Key {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: secret,
            session_token: None,
            region: "eu-west-1",
            service: "execute-api",
        };
        let day = UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        let next_day = day + std::time::Duration::from_secs(86_400);
        let reused = Signer::default();
        for (secret, now) in [
            ("s3cr3t-one", day),
            ("s3cr3t-two", day),
            ("s3cr3t-two", next_day),
            ("s3cr3t-one", day),
        ] {
            assert_eq!(
                reused.sign(&key(secret), &request, now),
                Signer::default().sign(&key(secret), &request, now),
                "{secret} at {now:?}"
            );
        }
        let debug = format!("{reused:?}");
        assert!(
            debug.contains("eu-west-1") && !debug.contains("s3cr3t"),
            "{debug}"
        );
    }

    #[test]
    fn the_path_is_encoded_again() {
        let mut out = String::new();
        double_encode_path("/local/@connections/ok%2B%2F%3D", &mut out);
        assert_eq!(out, "/local/%40connections/ok%252B%252F%253D");
    }
}
