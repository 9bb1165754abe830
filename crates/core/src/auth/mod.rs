//! Authentication (docs/auth.md); namespace policies and rate limits are
//! [`crate::policy`].
//!
//! - [`Authorizer`]: the `$connect` REQUEST authorizer: finds the token (query
//!   parameter `token`, or the `Sec-WebSocket-Protocol` pair `bearer, <token>`),
//!   verifies it ([`jwt`]) and answers with an IAM policy and a context that API
//!   Gateway attaches to every later event of the connection.
//! - [`Identity`] ([`identity`]): that context, read back by the handlers.
//! - [`origin`]: the `Origin` allowlist, checked before the token.

pub mod identity;
pub mod jwt;
pub mod origin;

pub use identity::{Identity, MAX_LEEWAY_SECS};

use std::sync::Arc;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest,
    ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::http::HeaderMap;
use aws_lambda_events::http::header::{ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde_json::{Map, Value, json};

use crate::config::ConfigError;
use crate::metrics::{Counter, Metrics};
use crate::names::{authorizer as ctx, env};
use jwt::{DEFAULT_LEEWAY_SECS, JWKS_MAX_AGE, JWKS_MIN_REFRESH, JwtConfig, Verifier};
use origin::{Origins, parse_flag};

/// The subprotocol a browser offers before its token: `new WebSocket(url, ["bearer", token])`.
pub const BEARER_PROTOCOL: &str = "bearer";
/// The query string parameter carrying a token.
pub const TOKEN_PARAMETER: &str = "token";
/// The `principalId` of anonymous connections.
pub const ANONYMOUS_PRINCIPAL: &str = "anonymous";

/// The authorizer's configuration, read once from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `None`: no token can be verified (only anonymous connections, if allowed).
    pub jwt: Option<JwtConfig>,
    /// Whether a handshake without a token connects anonymously.
    pub allow_anonymous: bool,
    /// Which `Origin`s may connect; checked before the token is looked at.
    pub origins: Origins,
}

impl AuthConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `get`, like [`crate::config::Config::from_lookup`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let allow_anonymous = match non_empty(env::ALLOW_ANONYMOUS) {
            None => false,
            Some(v) => parse_flag(env::ALLOW_ANONYMOUS, &v)?,
        };
        let origins = Origins::from_lookup(&get)?;
        // The secret is never echoed back in an error.
        let secret = get(env::JWT_SECRET).filter(|s| !s.is_empty());
        if let Some(s) = &secret
            && s.len() < 32
        {
            return Err(ConfigError::Invalid {
                name: env::JWT_SECRET,
                value: "<redacted>".into(),
                reason: "an HS256 secret needs at least 32 bytes",
            });
        }
        let jwks_url = non_empty(env::JWKS_URL).map(|u| u.trim().to_owned());
        if let Some(url) = &jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::Invalid {
                name: env::JWKS_URL,
                value: url.clone(),
                reason: "expected an https:// (or, locally, http://) URL",
            });
        }
        let jwt = if secret.is_some() || jwks_url.is_some() {
            // Without a fixed issuer and audience, a token minted for another service
            // by the same identity provider would be accepted here.
            let issuer = non_empty(env::JWT_ISSUER).ok_or(ConfigError::Missing(env::JWT_ISSUER))?;
            let audience =
                non_empty(env::JWT_AUDIENCE).ok_or(ConfigError::Missing(env::JWT_AUDIENCE))?;
            let leeway_secs = match non_empty(env::JWT_LEEWAY_SECS) {
                None => DEFAULT_LEEWAY_SECS,
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n <= MAX_LEEWAY_SECS => n,
                    _ => {
                        return Err(ConfigError::Invalid {
                            name: env::JWT_LEEWAY_SECS,
                            value: v,
                            reason: "expected whole seconds from 0 to 300",
                        });
                    }
                },
            };
            Some(JwtConfig {
                secret: secret.map(String::into_bytes),
                jwks_url,
                issuer: issuer.trim().to_owned(),
                audience: audience.trim().to_owned(),
                leeway_secs,
                jwks_min_refresh: JWKS_MIN_REFRESH,
                jwks_max_age: JWKS_MAX_AGE,
            })
        } else {
            None
        };
        Ok(Self {
            jwt,
            allow_anonymous,
            origins,
        })
    }
}

/// The authorizer's answer, as API Gateway interprets it.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// An Allow policy: the handshake proceeds to `$connect` with this context.
    Allow(ApiGatewayCustomAuthorizerResponse),
    /// A Deny policy: API Gateway answers 403.
    Deny(ApiGatewayCustomAuthorizerResponse),
    /// The error `Unauthorized`: API Gateway answers 401.
    Unauthorized,
}

impl Decision {
    /// The HTTP status API Gateway refuses the handshake with, if it does.
    pub fn refusal_status(&self) -> Option<u16> {
        match self {
            Self::Allow(_) => None,
            Self::Deny(_) => Some(403),
            Self::Unauthorized => Some(401),
        }
    }
}

/// The `$connect` REQUEST authorizer.
#[derive(Debug)]
pub struct Authorizer {
    verifier: Option<Verifier>,
    allow_anonymous: bool,
    /// Counts refused handshakes ([`Counter::RefusedNoToken`] and the other reasons).
    metrics: Arc<Metrics>,
    origins: Origins,
}

impl Authorizer {
    pub fn new(config: AuthConfig) -> Self {
        Self {
            verifier: config.jwt.map(Verifier::new),
            allow_anonymous: config.allow_anonymous,
            metrics: Arc::default(),
            origins: config.origins,
        }
    }

    /// This authorizer, counting into `metrics` (`roomcast dev`'s shared accumulator).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    pub fn origins(&self) -> &Origins {
        &self.origins
    }

    /// Decides a handshake. An `Origin` the allowlist refuses is denied (403) before
    /// the token is looked at. A missing token is `Unauthorized` (401) unless anonymous
    /// connections are allowed; a token that does not verify is denied (403), even
    /// where anonymous connections are allowed, so a client never silently loses
    /// the identity it asked for.
    pub async fn authorize(
        &self,
        request: &ApiGatewayCustomAuthorizerRequestTypeRequest,
    ) -> Decision {
        let method_arn = request.method_arn.as_deref().unwrap_or_default();
        let refuse = || {
            Decision::Deny(response(
                ANONYMOUS_PRINCIPAL,
                IamPolicyEffect::Deny,
                method_arn,
                Map::new(),
            ))
        };
        if let Err(refusal) = self.origins.check(origin_of(request)) {
            tracing::info!(reason = %refusal, "handshake refused");
            self.metrics.incr(Counter::RefusedOrigin);
            return refuse();
        }
        let Some(token) = token_of(request) else {
            if self.allow_anonymous {
                return Decision::Allow(response(
                    ANONYMOUS_PRINCIPAL,
                    IamPolicyEffect::Allow,
                    method_arn,
                    Map::new(),
                ));
            }
            tracing::info!("handshake without a token refused");
            self.metrics.incr(Counter::RefusedNoToken);
            return Decision::Unauthorized;
        };
        let deny = || {
            self.metrics.incr(Counter::RefusedBadToken);
            refuse()
        };
        let Some(verifier) = &self.verifier else {
            tracing::info!("token refused: no verification key is configured");
            return deny();
        };
        if method_arn.is_empty() {
            tracing::warn!("authorizer request without a methodArn");
            return deny();
        }
        match verifier.verify(token).await {
            Ok(claims) => {
                let mut context = Map::new();
                context.insert(ctx::USER_ID.into(), json!(claims.sub));
                context.insert(ctx::ROLES.into(), json!(claims.roles.join(",")));
                context.insert(ctx::EXP.into(), json!(claims.exp));
                context.insert(ctx::LEEWAY.into(), json!(verifier.config().leeway_secs));
                Decision::Allow(response(
                    &claims.sub,
                    IamPolicyEffect::Allow,
                    method_arn,
                    context,
                ))
            }
            Err(e) => {
                // The reason is logged; the token never is.
                tracing::info!(reason = %e, "token refused");
                deny()
            }
        }
    }
}

fn response(
    principal: &str,
    effect: IamPolicyEffect,
    method_arn: &str,
    context: Map<String, Value>,
) -> ApiGatewayCustomAuthorizerResponse {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = effect;
    statement.resource = vec![
        if method_arn.is_empty() {
            "*"
        } else {
            method_arn
        }
        .to_owned(),
    ];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_owned());
    policy.statement = vec![statement];
    let mut out = ApiGatewayCustomAuthorizerResponse::<Value>::default();
    out.principal_id = Some(principal.to_owned());
    out.policy_document = policy;
    out.context = Value::Object(context);
    out
}

/// The token of a handshake: the `token` query parameter, else the entry after
/// `bearer` in `Sec-WebSocket-Protocol`. An empty one (`?token=`, `bearer` with
/// nothing after it) is a token, `""`, which no verifier accepts: a client that
/// asked for an identity never connects anonymously instead.
pub fn token_of(request: &ApiGatewayCustomAuthorizerRequestTypeRequest) -> Option<&str> {
    if let Some(token) = request.query_string_parameters.first(TOKEN_PARAMETER) {
        return Some(token);
    }
    let headers = if request.headers.is_empty() {
        &request.multi_value_headers
    } else {
        &request.headers
    };
    let mut offered = subprotocols(headers);
    offered.find(|p| *p == BEARER_PROTOCOL)?;
    Some(offered.next().unwrap_or_default())
}

/// The handshake's `Origin` header, if it has one.
pub fn origin_of(request: &ApiGatewayCustomAuthorizerRequestTypeRequest) -> Option<&str> {
    [&request.headers, &request.multi_value_headers]
        .into_iter()
        .find_map(|h| h.get(ORIGIN))
        .and_then(|v| v.to_str().ok())
}

/// Every subprotocol offered in `Sec-WebSocket-Protocol`, in order, across repeated headers.
pub fn subprotocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Reads the authorizer configuration and builds the authorizer, for cold start:
/// the HS256 secret from Parameter Store when `ROOMCAST_JWT_SECRET_PARAMETER`
/// names it.
pub async fn authorizer_from_env() -> Result<Authorizer, ConfigError> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let Some(parameter) = get(env::JWT_SECRET_PARAMETER) else {
        return Ok(Authorizer::new(AuthConfig::from_env()?));
    };
    let secret = secret_from(&parameter, get(env::JWT_SECRET).is_some()).await?;
    let config = AuthConfig::from_lookup(|name| match name {
        env::JWT_SECRET => Some(secret.clone()),
        _ => std::env::var(name).ok(),
    })?;
    Ok(Authorizer::new(config))
}

/// The secret stored under `parameter`; an error if `ROOMCAST_JWT_SECRET` is
/// also set (`direct`), so the two cannot disagree.
async fn secret_from(parameter: &str, direct: bool) -> Result<String, ConfigError> {
    if direct {
        return Err(ConfigError::Invalid {
            name: env::JWT_SECRET_PARAMETER,
            value: parameter.to_owned(),
            reason: "ROOMCAST_JWT_SECRET is set too: set one of them",
        });
    }
    let fail = |source| ConfigError::Parameter {
        name: env::JWT_SECRET_PARAMETER,
        source,
    };
    let sdk = aws_config::load_from_env().await;
    let store = crate::parameters::ParameterStore::new(&sdk).map_err(fail)?;
    store.get(parameter).await.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn config_requires_issuer_and_audience_with_a_key() {
        let none = AuthConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(
            none,
            AuthConfig {
                jwt: None,
                allow_anonymous: false,
                origins: Origins::default(),
            }
        );
        let err = AuthConfig::from_lookup(lookup(&[(env::JWT_SECRET, SECRET)])).unwrap_err();
        assert_eq!(err, ConfigError::Missing(env::JWT_ISSUER));
        let err = AuthConfig::from_lookup(lookup(&[
            (env::JWKS_URL, "https://x/jwks.json"),
            (env::JWT_ISSUER, "i"),
        ]))
        .unwrap_err();
        assert_eq!(err, ConfigError::Missing(env::JWT_AUDIENCE));
        let ok = AuthConfig::from_lookup(lookup(&[
            (env::JWT_SECRET, SECRET),
            (env::JWT_ISSUER, "i"),
            (env::JWT_AUDIENCE, "a"),
            (env::JWT_LEEWAY_SECS, "5"),
            (env::ALLOW_ANONYMOUS, "true"),
        ]))
        .unwrap();
        assert!(ok.allow_anonymous);
        assert_eq!(ok.jwt.as_ref().unwrap().leeway_secs, 5);
        assert!(
            !format!("{ok:?}").contains(SECRET),
            "the secret is redacted"
        );
    }

    #[test]
    fn bad_values_name_the_variable_but_never_the_secret() {
        for (name, value) in [
            (env::JWT_SECRET, "short"),
            (env::JWKS_URL, "ftp://x"),
            (env::ALLOW_ANONYMOUS, "maybe"),
            (env::JWT_LEEWAY_SECS, "9999"),
        ] {
            let err = AuthConfig::from_lookup(lookup(&[
                (env::JWT_ISSUER, "i"),
                (env::JWT_AUDIENCE, "a"),
                (env::JWKS_URL, "https://ok"),
                (name, value),
            ]))
            .unwrap_err()
            .to_string();
            assert!(err.contains(name), "{err}");
            if name == env::JWT_SECRET {
                assert!(!err.contains(value), "{err}");
            }
        }
    }
}
