//! SigV4 checks on the management endpoints (`@connections` and the Lambda Invoke
//! API) when `roomcast dev` listens on a non-loopback address: there, anyone who
//! can reach the port could otherwise post to, read and drop every connection.
//!
//! The signature is recomputed from the request as received (method, path, the
//! headers the client says it signed, the body) with the signer the `@connections`
//! adapter signs with ([`roomcast_core::management::sigv4`]), for the credential
//! scope's date, and compared with the one sent. Refusals answer as AWS does: 403
//! `ForbiddenException` with `{"message": …}` from API Gateway, 403
//! `InvalidSignatureException` or `UnrecognizedClientException` from Lambda
//! (docs/local.md cites the sources). Secrets and signatures are never logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use roomcast_core::management::sigv4::{self, Key, Signer};

/// How far a request's `X-Amz-Date` may be from the gateway's clock, as on AWS.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The credentials management calls must be signed with. The secret never appears
/// in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ManagementCredentials {
    pub access_key_id: String,
    secret_access_key: String,
}

impl ManagementCredentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }
}

impl std::fmt::Debug for ManagementCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Why a management call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed")]
    Missing,
    #[error("the access key id is not the one configured")]
    UnknownKey,
    #[error("the signature does not match")]
    Mismatch,
    #[error("X-Amz-Date is more than 15 minutes from the gateway's clock")]
    Expired,
    #[error("an x-amz-* header is not among the signed headers")]
    UnsignedHeader,
    #[error("the signature cannot be checked: {0}")]
    Malformed(&'static str),
}

/// What a signature is checked against.
pub struct Expected<'a> {
    pub credentials: &'a ManagementCredentials,
    /// `execute-api` or `lambda`.
    pub service: &'a str,
    pub region: &'a str,
}

/// Checks what the headers alone can tell before the body is read: a signature
/// is there, made with the configured key for this region and service, within
/// [`MAX_SKEW`] of `now`, over `host`, `x-amz-date` and every other `x-amz-*`
/// header the request carries (one added after signing, such as
/// `X-Amz-Invocation-Type: Event`, would otherwise be honoured unsigned).
pub fn check_headers(
    expected: &Expected<'_>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<SystemTime, SignatureError> {
    let authorization = Authorization::read(headers)?;
    let scope: Vec<&str> = authorization.credential.split('/').collect();
    let [access_key_id, _date, region, service, "aws4_request"] = scope[..] else {
        return Err(SignatureError::Malformed("bad credential scope"));
    };
    if access_key_id != expected.credentials.access_key_id {
        return Err(SignatureError::UnknownKey);
    }
    if region != expected.region || service != expected.service {
        return Err(SignatureError::Mismatch);
    }
    if uri.query().is_some_and(|q| !q.is_empty()) {
        return Err(SignatureError::Malformed("query strings are not accepted"));
    }
    let signed_at = signed_at(headers, now)?;
    let names: Vec<&str> = authorization.signed_headers.split(';').collect();
    // The signer adds host and x-amz-date itself (and the session token from the key).
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return Err(SignatureError::Mismatch);
    }
    let unsigned = headers
        .keys()
        .map(|name| name.as_str())
        .find(|name| name.starts_with("x-amz-") && !names.contains(name));
    if unsigned.is_some() {
        return Err(SignatureError::UnsignedHeader);
    }
    Ok(signed_at)
}

/// Checks a request's SigV4 signature (`Authorization` header form): what
/// [`check_headers`] checks, then the signature over the request and `body`.
pub fn verify(
    expected: &Expected<'_>,
    method: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), SignatureError> {
    let signed_at = check_headers(expected, uri, headers, now)?;
    let authorization = Authorization::read(headers)?;
    let names: Vec<&str> = authorization.signed_headers.split(';').collect();
    let host = header_text(headers, "host")?;
    let session_token = names
        .contains(&"x-amz-security-token")
        .then(|| header_text(headers, "x-amz-security-token"))
        .transpose()?;
    let others: Vec<(&str, String)> = names
        .iter()
        .filter(|n| !matches!(**n, "host" | "x-amz-date" | "x-amz-security-token"))
        .map(|n| Ok((*n, header_text(headers, n)?)))
        .collect::<Result<_, SignatureError>>()?;
    let others: Vec<(&str, &str)> = others.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let key = Key {
        access_key_id: &expected.credentials.access_key_id,
        secret_access_key: expected.credentials.secret_access_key(),
        session_token: session_token.as_deref(),
        region: expected.region,
        service: expected.service,
    };
    let request = sigv4::Request {
        method,
        host: &host,
        path: uri.path(),
        headers: &others,
        body,
    };
    matches(&key, &request, signed_at, authorization.signature)
}

/// The fields of an `Authorization: AWS4-HMAC-SHA256 …` header.
struct Authorization<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

impl<'a> Authorization<'a> {
    fn read(headers: &'a HeaderMap) -> Result<Self, SignatureError> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .ok_or(SignatureError::Missing)?
            .to_str()
            .map_err(|_| SignatureError::Malformed("Authorization is not text"))?;
        let fields = authorization
            .strip_prefix(ALGORITHM)
            .ok_or(SignatureError::Malformed("not AWS4-HMAC-SHA256"))?;
        let field = |name: &str| {
            fields
                .split(',')
                .map(str::trim)
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        };
        let (Some(credential), Some(signed_headers), Some(signature)) = (
            field("Credential"),
            field("SignedHeaders"),
            field("Signature"),
        ) else {
            return Err(SignatureError::Malformed(
                "Authorization lacks Credential, SignedHeaders or Signature",
            ));
        };
        Ok(Self {
            credential,
            signed_headers,
            signature,
        })
    }
}

/// A header's values, joined with commas as the signer sees them.
fn header_text(headers: &HeaderMap, name: &str) -> Result<String, SignatureError> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().map_err(|_| SignatureError::Mismatch))
        .collect::<Result<_, _>>()?;
    if values.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    Ok(values.join(","))
}

/// When the request was signed (`X-Amz-Date`), if within [`MAX_SKEW`] of `now`.
fn signed_at(headers: &HeaderMap, now: SystemTime) -> Result<SystemTime, SignatureError> {
    let amz_date = header_text(headers, "x-amz-date")
        .map_err(|_| SignatureError::Malformed("no X-Amz-Date"))?;
    let signed_at = parse_amz_date(&amz_date).ok_or(SignatureError::Malformed("bad X-Amz-Date"))?;
    let skew = now
        .duration_since(signed_at)
        .unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(SignatureError::Expired);
    }
    Ok(signed_at)
}

/// Whether `signature` is the one `key` makes for `request`.
fn matches(
    key: &Key<'_>,
    request: &sigv4::Request<'_>,
    signed_at: SystemTime,
    signature: &str,
) -> Result<(), SignatureError> {
    let recomputed = Signer::default().sign(key, request, signed_at);
    let ours = recomputed
        .iter()
        .find(|(name, _)| *name == "authorization")
        .and_then(|(_, value)| value.rsplit_once("Signature="))
        .map(|(_, signature)| signature)
        .ok_or(SignatureError::Mismatch)?;
    if constant_time_eq(ours.as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Compares without stopping at the first difference, so timing tells nothing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `20261130T111500Z` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let secs = days_from_civil(y, m, d)? * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a date on or after it (Howard Hinnant's
/// `days_from_civil`, the inverse of [`roomcast_core::civil`]).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_parse_and_round_trip_with_civil() {
        let t = parse_amz_date("20261130T111500Z").unwrap();
        let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(roomcast_core::civil(secs), (2026, 11, 30, 11, 15, 0));
        assert_eq!(
            parse_amz_date("20000229T000000Z")
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            951_782_400
        );
        for bad in [
            "",
            "20261130T111500",
            "2026113XT111500Z",
            "20261330T111500Z",
            "19691231T000000Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
    }

    fn signed(credentials: &ManagementCredentials, at: SystemTime) -> HeaderMap {
        let key = Key {
            access_key_id: &credentials.access_key_id,
            secret_access_key: credentials.secret_access_key(),
            session_token: None,
            region: "us-east-1",
            service: "execute-api",
        };
        let request = sigv4::Request {
            method: "POST",
            host: "10.0.0.1:3001",
            path: "/local/%40connections/abc%3D",
            headers: &[("content-type", "application/json")],
            body: b"hi",
        };
        let mut headers = HeaderMap::new();
        headers.insert("host", "10.0.0.1:3001".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        for (name, value) in Signer::default().sign(&key, &request, at) {
            headers.insert(name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn signatures_are_recomputed_from_the_request() {
        let good = ManagementCredentials::new("AKIDLOCAL", "secret-one");
        let expected = Expected {
            credentials: &good,
            service: "execute-api",
            region: "us-east-1",
        };
        let uri: axum::http::Uri = "/local/%40connections/abc%3D".parse().unwrap();
        let now = SystemTime::now();
        let headers = signed(&good, now);
        assert_eq!(
            verify(&expected, "POST", &uri, &headers, b"hi", now),
            Ok(())
        );
        // Another body, method, path or time of signing: refused.
        assert_eq!(
            verify(&expected, "POST", &uri, &headers, b"ho", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&expected, "DELETE", &uri, &headers, b"hi", now),
            Err(SignatureError::Mismatch)
        );
        let other: axum::http::Uri = "/local/%40connections/xyz%3D".parse().unwrap();
        assert_eq!(
            verify(&expected, "POST", &other, &headers, b"hi", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                &expected,
                "POST",
                &uri,
                &headers,
                b"hi",
                now + MAX_SKEW + Duration::from_secs(60)
            ),
            Err(SignatureError::Expired)
        );
        // The wrong secret, another key id, no signature.
        let wrong = ManagementCredentials::new("AKIDLOCAL", "secret-two");
        assert_eq!(
            verify(&expected, "POST", &uri, &signed(&wrong, now), b"hi", now),
            Err(SignatureError::Mismatch)
        );
        let stranger = ManagementCredentials::new("AKIDOTHER", "secret-one");
        assert_eq!(
            verify(&expected, "POST", &uri, &signed(&stranger, now), b"hi", now),
            Err(SignatureError::UnknownKey)
        );
        assert_eq!(
            verify(&expected, "POST", &uri, &HeaderMap::new(), b"hi", now),
            Err(SignatureError::Missing)
        );
        // A header the signature does not cover: refused, even before the body.
        let mut added = headers;
        added.insert("x-amz-invocation-type", "Event".parse().unwrap());
        assert_eq!(
            check_headers(&expected, &uri, &added, now),
            Err(SignatureError::UnsignedHeader)
        );
        assert_eq!(
            verify(&expected, "POST", &uri, &added, b"hi", now),
            Err(SignatureError::UnsignedHeader)
        );
        assert!(!format!("{good:?}").contains("secret-one"));
    }
}
