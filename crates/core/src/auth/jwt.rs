//! JWT verification for the `$connect` authorizer (RFC 8725 practices).
//!
//! The header's `alg` only chooses among the configured keys; it must then equal the
//! one algorithm that key allows. An HS256 token (with or without a `kid`) is
//! checked only against the configured shared secret; an RS256 or ES256 token only
//! against the JWKS key its `kid` names, and only if that key's type allows the
//! algorithm (RS256 for RSA keys, ES256 for P-256 keys). So a token "signed" with
//! `none`, or HS256-signed with a public key as the secret (the key-confusion
//! attack), is refused. `exp`, `nbf`, `iss` and `aud` are always
//! checked, with the configured leeway.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

/// Default clock skew allowed on `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// At most one JWKS fetch per this interval, however many unknown `kid`s arrive:
/// tokens with made-up kids must not turn the authorizer into a request amplifier.
pub const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);
/// Bound on one JWKS fetch; the authorizer itself must answer well within 29 s.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest token accepted, in bytes; the authorizer refuses longer ones unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Most roles kept from a token (the authorizer context is limited to 8 KB).
pub const MAX_ROLES: usize = 32;
/// Longest `sub` accepted, in bytes: it appears twice in the authorizer response
/// (`principalId` and `userId`), which API Gateway limits to 8 KB.
pub const MAX_SUB_BYTES: usize = 256;
/// Longest time JWKS keys are used without fetching the JWKS again: a key the
/// provider stopped publishing (revoked, rotated out) is dropped at the next fetch.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);

/// What the verifier checks tokens against.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// HS256 shared secret, if HS256 tokens are accepted.
    pub secret: Option<Vec<u8>>,
    /// JWKS URL, if RS256/ES256 tokens are accepted.
    pub jwks_url: Option<String>,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud` (one of the token's audiences).
    pub audience: String,
    pub leeway_secs: u64,
    /// Least time between two JWKS fetches.
    pub jwks_min_refresh: Duration,
    /// Cached JWKS keys older than this are fetched again before use.
    pub jwks_max_age: Duration,
}

// The secret must never reach a log line through `{:?}`.
impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("jwks_min_refresh", &self.jwks_min_refresh)
            .field("jwks_max_age", &self.jwks_max_age)
            .finish()
    }
}

/// The verified identity in a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<String>,
    /// Epoch seconds.
    pub exp: u64,
}

/// Why a token was refused. Messages never include the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token's key id is unknown")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    Issuer,
    #[error("the token's audience is not accepted")]
    Audience,
    #[error("the token lacks a valid claim: {0}")]
    Claim(String),
    #[error("the JWKS could not be fetched: {0}")]
    Jwks(String),
}

impl From<jsonwebtoken::errors::Error> for JwtError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidIssuer => Self::Issuer,
            K::InvalidAudience => Self::Audience,
            K::InvalidSignature => Self::Signature,
            K::InvalidAlgorithm | K::MissingAlgorithm | K::InvalidAlgorithmName => Self::Algorithm,
            K::MissingRequiredClaim(c) | K::InvalidClaimFormat(c) => Self::Claim(c.clone()),
            K::InvalidSubject => Self::Claim("sub".into()),
            _ => Self::Malformed,
        }
    }
}

/// The claims roomcast reads; `iss`, `aud` and the presence of the registered ones
/// are checked by jsonwebtoken, `exp` and `nbf` here ([`check_times`]).
#[derive(Deserialize)]
struct Payload {
    sub: String,
    exp: serde_json::Value,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
    #[serde(default)]
    roles: Roles,
}

/// A NumericDate claim (RFC 7519, section 2): seconds since the epoch, a JSON
/// number that may have a fraction (`1700000000.5`).
fn numeric_date(name: &str, value: &serde_json::Value) -> Result<f64, JwtError> {
    value
        .as_f64()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| JwtError::Claim(name.into()))
}

/// `exp` and `nbf` against `now` (epoch seconds) with `leeway`, as jsonwebtoken
/// checks whole seconds (expired once `exp + leeway < now`, early while
/// `nbf - leeway > now`) but for fractional NumericDates too, which it rounds.
/// Returns `exp` in whole seconds, rounded down.
fn check_times(
    exp: &serde_json::Value,
    nbf: Option<&serde_json::Value>,
    leeway: u64,
    now: u64,
) -> Result<u64, JwtError> {
    let (leeway, now) = (leeway as f64, now as f64);
    let exp = numeric_date("exp", exp)?;
    if exp + leeway < now {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = nbf.filter(|v| !v.is_null())
        && numeric_date("nbf", nbf)? - leeway > now
    {
        return Err(JwtError::NotYetValid);
    }
    Ok(exp.floor() as u64)
}

/// `roles` as an array of strings, or one space-separated string.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Roles {
    List(Vec<String>),
    Text(String),
    #[default]
    None,
}

impl Roles {
    /// Roles go into the authorizer context comma-joined, so names with commas (or
    /// blanks) are dropped rather than split into roles the issuer never granted.
    fn into_vec(self) -> Vec<String> {
        let roles: Vec<String> = match self {
            Self::List(list) => list,
            Self::Text(text) => text.split_whitespace().map(str::to_owned).collect(),
            Self::None => Vec::new(),
        };
        roles
            .into_iter()
            .filter(|r| {
                !r.is_empty()
                    && r.len() <= 128
                    && !r.contains(',')
                    && !r.contains(char::is_whitespace)
            })
            .take(MAX_ROLES)
            .collect()
    }
}

/// A JWKS key usable for verification, with the one algorithm allowed for it.
#[derive(Clone)]
struct KnownKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// JWKS keys by `kid`, refreshed when an unknown `kid` arrives or when the keys are
/// older than `max_age`, at a bounded rate (`min_refresh` between fetches).
struct JwksCache {
    url: String,
    client: reqwest::Client,
    /// The keys, and when they were fetched.
    keys: RwLock<(HashMap<String, KnownKey>, Option<Instant>)>,
    /// When the last fetch started; held across the fetch so that concurrent
    /// misses wait for one fetch instead of each starting their own.
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
    max_age: Duration,
}

impl JwksCache {
    /// The cached key `kid`, if the cache is fresh enough to answer.
    async fn cached(&self, kid: &str) -> Option<KnownKey> {
        let keys = self.keys.read().await;
        let fresh = keys.1.is_some_and(|t| t.elapsed() < self.max_age);
        fresh.then(|| keys.0.get(kid).cloned()).flatten()
    }

    async fn key(&self, kid: &str) -> Result<KnownKey, JwtError> {
        if let Some(key) = self.cached(kid).await {
            return Ok(key);
        }
        let mut last = self.last_fetch.lock().await;
        // Another task may have fetched while this one waited for the lock.
        if let Some(key) = self.cached(kid).await {
            return Ok(key);
        }
        // Too soon for another fetch: an unknown kid, or keys past their age
        // whose refetch failed, refuse the token (fail closed).
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return Err(JwtError::UnknownKey);
        }
        *last = Some(Instant::now());
        // A failed fetch refuses the token (fail closed), stale keys included.
        let fetched = self.fetch().await?;
        tracing::info!(keys = fetched.len(), "fetched JWKS");
        let found = fetched.get(kid).cloned();
        // Replaced, not merged: keys no longer published are dropped.
        *self.keys.write().await = (fetched, Some(Instant::now()));
        found.ok_or(JwtError::UnknownKey)
    }

    async fn fetch(&self) -> Result<HashMap<String, KnownKey>, JwtError> {
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let jwks_error = |e: reqwest::Error| JwtError::Jwks(e.without_url().to_string());
        // Redirects are not followed (the client has `Policy::none()`): a 3xx is an
        // error here, so the JWKS comes only from the configured URL.
        let set: Set = self
            .client
            .get(&self.url)
            .timeout(JWKS_FETCH_TIMEOUT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(jwks_error)?
            .json()
            .await
            .map_err(jwks_error)?;
        // Keys of types roomcast does not verify with are skipped, not fatal: a
        // provider may publish encryption keys or new key types next to ours.
        Ok(set
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                usable(&jwk).map(|key| (kid, key))
            })
            .collect())
    }
}

fn usable(jwk: &Jwk) -> Option<KnownKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    // A key that declares another algorithm is not ours to use with this one.
    let expected = match algorithm {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        _ => KeyAlgorithm::ES256,
    };
    if jwk
        .common
        .key_algorithm
        .is_some_and(|declared| declared != expected)
    {
        return None;
    }
    DecodingKey::from_jwk(jwk)
        .ok()
        .map(|key| KnownKey { algorithm, key })
}

/// Verifies tokens against a [`JwtConfig`].
pub struct Verifier {
    config: JwtConfig,
    secret: Option<DecodingKey>,
    jwks: Option<JwksCache>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(config: JwtConfig) -> Self {
        let secret = config.secret.as_deref().map(DecodingKey::from_secret);
        let jwks = config.jwks_url.as_ref().map(|url| JwksCache {
            url: url.clone(),
            // Keys come only from the configured URL: a redirect (to http://, or
            // to another host) is refused, not followed.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            keys: RwLock::new((HashMap::new(), None)),
            last_fetch: Mutex::new(None),
            min_refresh: config.jwks_min_refresh,
            max_age: config.jwks_max_age,
        });
        Self {
            config,
            secret,
            jwks,
        }
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// Verifies `token` and returns its identity.
    pub async fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed);
        }
        // The header's `alg` is read only to choose among configured keys; it must
        // then equal the one algorithm that key allows.
        let header = decode_header(token).map_err(|_| JwtError::Malformed)?;
        let (algorithm, key) = match header.alg {
            // HS256 tokens may carry a kid; the secret is still the only HS256 key,
            // whether or not a JWKS is configured too.
            Algorithm::HS256 => match &self.secret {
                Some(secret) => (Algorithm::HS256, secret.clone()),
                None => return Err(JwtError::Algorithm),
            },
            Algorithm::RS256 | Algorithm::ES256 => {
                let Some(jwks) = &self.jwks else {
                    return Err(JwtError::Algorithm);
                };
                let Some(kid) = &header.kid else {
                    return Err(JwtError::UnknownKey);
                };
                let known = jwks.key(kid).await?;
                (known.algorithm, known.key)
            }
            _ => return Err(JwtError::Algorithm),
        };
        // A token whose alg is not the one its key's type allows (ES256 naming an
        // RSA key, say) is refused.
        if header.alg != algorithm {
            return Err(JwtError::Algorithm);
        }
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        // jsonwebtoken rounds a fractional exp or nbf to the nearest second, which
        // can move exp later: they are checked here instead.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = decode::<Payload>(token, &key, &validation)?;
        let Payload {
            sub,
            exp,
            nbf,
            roles,
        } = data.claims;
        let exp = check_times(
            &exp,
            nbf.as_ref(),
            self.config.leeway_secs,
            jsonwebtoken::get_current_timestamp(),
        )?;
        if sub.is_empty() || sub.len() > MAX_SUB_BYTES {
            return Err(JwtError::Claim("sub".into()));
        }
        Ok(Claims {
            sub,
            roles: roles.into_vec(),
            exp,
        })
    }
}
