//! Auth and abuse limits: the JWT attack suite against the verifier (HS256
//! secret and a JWKS served from 127.0.0.1), the `$connect` authorizer's decisions,
//! and the handlers' per-message checks: token expiry, namespace policies and rate
//! limits. Keys are the test-only keys in tests/fixtures/auth.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use base64_url::encode as b64;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use roomcast_core::auth::jwt::{JwtConfig, JwtError, Verifier};
use roomcast_core::auth::origin::Origins;
use roomcast_core::auth::{AuthConfig, Authorizer, Decision};
use roomcast_core::config::ConfigError;
use roomcast_core::handlers::{connect, message};
use roomcast_core::policy::Policies;
use roomcast_core::store::now_secs;
use serde_json::{Value, json};
use support::{Harness, body, event, harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &[u8] = b"test-only-secret-0123456789abcdef";
const ISS: &str = "https://issuer.test";
const AUD: &str = "roomcast-test";
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/auth/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/auth/rsa-public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("fixtures/auth/ec-private.pem");
const JWKS: &str = include_str!("fixtures/auth/jwks.json");

/// Base64url without padding, as JWTs use it.
mod base64_url {
    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}

/// A JWKS document served over HTTP on 127.0.0.1, counting fetches.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

async fn jwks_server(body: &str) -> JwksServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let body = Arc::new(Mutex::new(body.to_owned()));
    let hits = Arc::new(AtomicUsize::new(0));
    let (b, h) = (Arc::clone(&body), Arc::clone(&hits));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (b, h) = (Arc::clone(&b), Arc::clone(&h));
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let body = b.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    JwksServer { url, body, hits }
}

fn config(secret: bool, jwks_url: Option<&str>, min_refresh: Duration) -> JwtConfig {
    JwtConfig {
        secret: secret.then(|| SECRET.to_vec()),
        jwks_url: jwks_url.map(str::to_owned),
        issuer: ISS.into(),
        audience: AUD.into(),
        leeway_secs: 30,
        jwks_min_refresh: min_refresh,
        jwks_max_age: roomcast_core::auth::jwt::JWKS_MAX_AGE,
    }
}

fn claims(sub: &str) -> Value {
    let now = now_secs();
    json!({"sub": sub, "iss": ISS, "aud": AUD, "exp": now + 600, "iat": now, "roles": ["admin", "ops"]})
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

fn rs256(kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    sign(Algorithm::RS256, Some(kid), claims, &key)
}

fn es256(kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    sign(Algorithm::ES256, Some(kid), claims, &key)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

// ---------------------------------------------------------------------------
// The verifier
// ---------------------------------------------------------------------------

#[tokio::test]
async fn valid_tokens_of_every_accepted_algorithm_verify() {
    let server = jwks_server(JWKS).await;
    let v = Verifier::new(config(true, Some(&server.url), Duration::from_secs(3600)));
    for token in [
        hs256(&claims("alice")),
        rs256("rsa-1", &claims("alice")),
        es256("ec-1", &claims("alice")),
    ] {
        let c = v.verify(&token).await.unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.roles, ["admin", "ops"]);
        assert!(c.exp > now_secs());
    }
    // Keys are cached by kid: one fetch served both JWKS tokens.
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // An audience list containing ours is accepted.
    let listed = with(claims("bob"), "aud", json!(["other", AUD]));
    assert_eq!(v.verify(&hs256(&listed)).await.unwrap().sub, "bob");
    // Roles with commas or blanks are dropped, not split.
    let odd = with(claims("bob"), "roles", json!(["a,b", "c", "d e"]));
    assert_eq!(v.verify(&hs256(&odd)).await.unwrap().roles, ["c"]);
}

#[tokio::test]
async fn the_jwt_attack_suite_is_refused() {
    let server = jwks_server(JWKS).await;
    let rs_only = Verifier::new(config(false, Some(&server.url), Duration::from_secs(3600)));
    let both = Verifier::new(config(true, Some(&server.url), Duration::from_secs(3600)));
    let hs_only = Verifier::new(config(true, None, Duration::from_secs(3600)));
    let now = now_secs();

    // alg none, with and without a kid, and with an empty signature or none at all.
    let payload = b64(claims("mallory").to_string().as_bytes());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"none","kid":"rsa-1"}"#,
        r#"{"alg":"None"}"#,
    ] {
        let token = format!("{}.{payload}.", b64(header.as_bytes()));
        for v in [&rs_only, &both, &hs_only] {
            assert!(v.verify(&token).await.is_err(), "{header}");
            assert!(
                v.verify(token.trim_end_matches('.')).await.is_err(),
                "{header}"
            );
        }
    }

    // Key confusion: HS256 "signed" with the RSA public key, against RS256 verifiers.
    let public_as_secret = EncodingKey::from_secret(RSA_PUBLIC);
    for kid in [Some("rsa-1"), None] {
        let token = sign(Algorithm::HS256, kid, &claims("mallory"), &public_as_secret);
        assert_eq!(
            rs_only.verify(&token).await.unwrap_err(),
            JwtError::Algorithm,
            "{kid:?}"
        );
        assert!(both.verify(&token).await.is_err(), "{kid:?}");
    }
    // A token naming a JWKS key with another algorithm than the key's own.
    let es_on_rsa = sign(
        Algorithm::ES256,
        Some("rsa-1"),
        &claims("mallory"),
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
    );
    assert_eq!(
        both.verify(&es_on_rsa).await.unwrap_err(),
        JwtError::Algorithm
    );
    // RS256 without a kid, or with no JWKS configured.
    let no_kid = sign(
        Algorithm::RS256,
        None,
        &claims("mallory"),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    );
    assert!(both.verify(&no_kid).await.is_err());
    assert_eq!(
        hs_only
            .verify(&rs256("rsa-1", &claims("mallory")))
            .await
            .unwrap_err(),
        JwtError::Algorithm
    );

    // Time: expired, not yet valid (beyond the 30 s leeway); within the leeway is fine.
    let expired = with(claims("a"), "exp", json!(now - 120));
    assert_eq!(
        both.verify(&hs256(&expired)).await.unwrap_err(),
        JwtError::Expired
    );
    assert_eq!(
        both.verify(&rs256("rsa-1", &expired)).await.unwrap_err(),
        JwtError::Expired
    );
    let early = with(claims("a"), "nbf", json!(now + 120));
    assert_eq!(
        both.verify(&hs256(&early)).await.unwrap_err(),
        JwtError::NotYetValid
    );
    assert_eq!(
        both.verify(&es256("ec-1", &early)).await.unwrap_err(),
        JwtError::NotYetValid
    );
    let skewed = with(claims("a"), "nbf", json!(now + 5));
    assert!(both.verify(&hs256(&skewed)).await.is_ok());

    // Issuer and audience: wrong, and missing.
    let wrong_iss = with(claims("a"), "iss", json!("https://evil.test"));
    assert_eq!(
        both.verify(&hs256(&wrong_iss)).await.unwrap_err(),
        JwtError::Issuer
    );
    assert_eq!(
        both.verify(&rs256("rsa-1", &wrong_iss)).await.unwrap_err(),
        JwtError::Issuer
    );
    let wrong_aud = with(claims("a"), "aud", json!("another-service"));
    assert_eq!(
        both.verify(&hs256(&wrong_aud)).await.unwrap_err(),
        JwtError::Audience
    );
    assert_eq!(
        both.verify(&es256("ec-1", &wrong_aud)).await.unwrap_err(),
        JwtError::Audience
    );
    for claim in ["iss", "aud", "exp", "sub"] {
        let mut c = claims("a");
        c.as_object_mut().unwrap().remove(claim);
        assert!(both.verify(&hs256(&c)).await.is_err(), "without {claim}");
    }
    assert!(
        both.verify(&hs256(&with(claims("a"), "sub", json!(""))))
            .await
            .is_err()
    );

    // Tampered payload: a valid token with its payload swapped.
    for token in [
        hs256(&claims("alice")),
        rs256("rsa-1", &claims("alice")),
        es256("ec-1", &claims("alice")),
    ] {
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64(with(claims("alice"), "sub", json!("admin"))
            .to_string()
            .as_bytes());
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(
            both.verify(&tampered).await.unwrap_err(),
            JwtError::Signature
        );
    }
    // Wrong HS256 secret.
    let other = sign(
        Algorithm::HS256,
        None,
        &claims("a"),
        &EncodingKey::from_secret(b"another-secret-0123456789abcdef!"),
    );
    assert_eq!(both.verify(&other).await.unwrap_err(), JwtError::Signature);

    // Unknown kid.
    assert_eq!(
        both.verify(&rs256("rsa-9", &claims("a")))
            .await
            .unwrap_err(),
        JwtError::UnknownKey
    );

    // Garbage.
    let long = "a".repeat(20_000);
    for garbage in [
        "",
        "abc",
        "a.b.c",
        "....",
        "eyJ.eyJ.sig",
        "\u{0}\u{1}",
        "Bearer x",
        long.as_str(),
    ] {
        for v in [&rs_only, &both, &hs_only] {
            assert!(v.verify(garbage).await.is_err(), "{garbage:.20}");
        }
    }
}

#[tokio::test]
async fn unknown_kids_refresh_the_jwks_at_a_bounded_rate() {
    let only_rsa = json!({"keys": [serde_json::from_str::<Value>(JWKS).unwrap()["keys"][0]]});
    let server = jwks_server(&only_rsa.to_string()).await;
    // Rate-bounded: after one fetch, unknown kids do not fetch again within the interval.
    let bounded = Verifier::new(config(false, Some(&server.url), Duration::from_secs(3600)));
    assert!(bounded.verify(&rs256("rsa-1", &claims("a"))).await.is_ok());
    for _ in 0..10 {
        assert_eq!(
            bounded
                .verify(&rs256("made-up", &claims("a")))
                .await
                .unwrap_err(),
            JwtError::UnknownKey
        );
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    // Key rotation: a new kid triggers a refresh, which finds the new key.
    let eager = Verifier::new(config(false, Some(&server.url), Duration::ZERO));
    assert!(eager.verify(&rs256("rsa-1", &claims("a"))).await.is_ok());
    assert_eq!(
        eager
            .verify(&es256("ec-1", &claims("a")))
            .await
            .unwrap_err(),
        JwtError::UnknownKey
    );
    *server.body.lock().unwrap() = JWKS.to_owned();
    assert!(eager.verify(&es256("ec-1", &claims("a"))).await.is_ok());
    assert_eq!(server.hits.load(Ordering::SeqCst), 4);

    // An unreachable JWKS refuses tokens instead of failing open.
    let nowhere = Verifier::new(config(
        false,
        Some("http://127.0.0.1:1/jwks.json"),
        Duration::ZERO,
    ));
    assert!(matches!(
        nowhere.verify(&rs256("rsa-1", &claims("a"))).await,
        Err(JwtError::Jwks(_))
    ));
}

// ---------------------------------------------------------------------------
// The authorizer
// ---------------------------------------------------------------------------

fn authorizer_request(
    query: Option<&str>,
    protocol: Option<&str>,
) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let mut headers = json!({"Host": "abc.execute-api.us-east-1.amazonaws.com"});
    if let Some(p) = protocol {
        headers["Sec-WebSocket-Protocol"] = json!(p);
    }
    let mut request = json!({
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc/prod/$connect",
        "headers": headers,
        "requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": "c=", "apiId": "abc", "stage": "prod"},
    });
    if let Some(token) = query {
        request["queryStringParameters"] = json!({"token": token});
    }
    serde_json::from_value(request).unwrap()
}

fn hs_authorizer(allow_anonymous: bool) -> Authorizer {
    Authorizer::new(AuthConfig {
        jwt: Some(config(true, None, Duration::from_secs(3600))),
        allow_anonymous,
        origins: Default::default(),
    })
}

#[tokio::test]
async fn the_authorizer_allows_valid_tokens_from_the_query_or_the_subprotocol() {
    let a = hs_authorizer(false);
    let token = hs256(&claims("alice"));
    for request in [
        authorizer_request(Some(&token), None),
        authorizer_request(None, Some(&format!("bearer, {token}"))),
        authorizer_request(None, Some(&format!("chat.v1, bearer,{token}"))),
    ] {
        let Decision::Allow(response) = a.authorize(&request).await else {
            panic!("refused")
        };
        let v = serde_json::to_value(&response).unwrap();
        assert_eq!(v["principalId"], "alice");
        assert_eq!(v["policyDocument"]["Statement"][0]["Effect"], "Allow");
        assert_eq!(
            v["policyDocument"]["Statement"][0]["Action"],
            json!(["execute-api:Invoke"])
        );
        assert_eq!(
            v["policyDocument"]["Statement"][0]["Resource"],
            json!(["arn:aws:execute-api:us-east-1:123456789012:abc/prod/$connect"])
        );
        assert_eq!(v["context"]["userId"], "alice");
        assert_eq!(v["context"]["roles"], "admin,ops");
        assert!(v["context"]["exp"].as_u64().unwrap() > now_secs());
        // The leeway it applied to exp, for the handlers to apply the same.
        assert_eq!(v["context"]["leeway"], 30);
        // Context values must be strings, numbers or booleans.
        assert!(
            v["context"]
                .as_object()
                .unwrap()
                .values()
                .all(|x| !x.is_object() && !x.is_array())
        );
    }
}

#[tokio::test]
async fn the_authorizer_refuses_missing_and_bad_tokens() {
    let strict = hs_authorizer(false);
    let lenient = hs_authorizer(true);
    // No token: 401, unless anonymous connections are allowed.
    for request in [
        authorizer_request(None, None),
        authorizer_request(None, Some("chat.v1")),
    ] {
        assert_eq!(strict.authorize(&request).await, Decision::Unauthorized);
        let Decision::Allow(response) = lenient.authorize(&request).await else {
            panic!("anonymous refused")
        };
        let v = serde_json::to_value(&response).unwrap();
        assert_eq!(v["principalId"], "anonymous");
        assert!(v["context"].get("userId").is_none());
    }
    // A bad token: 403 (Deny) even where anonymous connections are allowed.
    let expired = hs256(&with(claims("a"), "exp", json!(now_secs() - 3600)));
    for a in [&strict, &lenient] {
        for token in ["garbage", expired.as_str()] {
            let decision = a.authorize(&authorizer_request(Some(token), None)).await;
            assert_eq!(decision.refusal_status(), Some(403));
            let Decision::Deny(response) = decision else {
                panic!()
            };
            let v = serde_json::to_value(&response).unwrap();
            assert_eq!(v["policyDocument"]["Statement"][0]["Effect"], "Deny");
        }
    }
    // No key configured: tokens cannot be verified, so they are denied.
    let anonymous_only = Authorizer::new(AuthConfig {
        jwt: None,
        allow_anonymous: true,
        origins: Default::default(),
    });
    let token = hs256(&claims("alice"));
    assert_eq!(
        anonymous_only
            .authorize(&authorizer_request(Some(&token), None))
            .await
            .refusal_status(),
        Some(403)
    );
}

fn with_origin(
    mut request: ApiGatewayCustomAuthorizerRequestTypeRequest,
    origin: &str,
) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    request
        .headers
        .insert("origin", origin.parse().expect("a header value"));
    request
}

fn origins_authorizer(allow_anonymous: bool, list: &str, require: &str) -> Authorizer {
    let origins = Origins::from_lookup(|name| match name {
        "ROOMCAST_ALLOWED_ORIGINS" => Some(list.to_owned()),
        "ROOMCAST_REQUIRE_ORIGIN" => Some(require.to_owned()),
        _ => None,
    })
    .expect("a valid origin configuration");
    Authorizer::new(AuthConfig {
        jwt: Some(config(true, None, Duration::from_secs(3600))),
        allow_anonymous,
        origins,
    })
}

#[tokio::test]
async fn the_origin_allowlist_is_checked_before_the_token() {
    let a = origins_authorizer(
        false,
        "https://app.example.com, http://localhost:5173",
        "false",
    );
    let token = hs256(&claims("alice"));
    // An allowed origin (any case), with a token: allowed.
    for origin in [
        "https://app.example.com",
        "HTTPS://APP.example.com",
        "http://localhost:5173",
    ] {
        let decision = a
            .authorize(&with_origin(authorizer_request(Some(&token), None), origin))
            .await;
        assert!(
            matches!(decision, Decision::Allow(_)),
            "{origin}: {decision:?}"
        );
    }
    // Another origin: 403, with a valid token, with a bad one and with none (the
    // origin decides before a missing token would make it a 401).
    for request in [
        authorizer_request(Some(&token), None),
        authorizer_request(Some("garbage"), None),
        authorizer_request(None, None),
    ] {
        for origin in [
            "https://evil.example",
            "https://app.example.com.evil.example",
            "null",
        ] {
            let decision = a.authorize(&with_origin(request.clone(), origin)).await;
            assert_eq!(decision.refusal_status(), Some(403), "{origin}");
        }
    }
    // No Origin (a server, a CLI): the token decides.
    assert!(matches!(
        a.authorize(&authorizer_request(Some(&token), None)).await,
        Decision::Allow(_)
    ));
    assert_eq!(
        a.authorize(&authorizer_request(None, None)).await,
        Decision::Unauthorized
    );
    // Required: no Origin is a 403 too, even for an anonymous-friendly authorizer.
    let strict = origins_authorizer(true, "https://app.example.com", "true");
    for request in [
        authorizer_request(Some(&token), None),
        authorizer_request(None, None),
    ] {
        assert_eq!(strict.authorize(&request).await.refusal_status(), Some(403));
    }
    assert!(matches!(
        strict
            .authorize(&with_origin(
                authorizer_request(None, None),
                "https://app.example.com"
            ))
            .await,
        Decision::Allow(_)
    ));
    // `*` alone: any origin, but still required when asked.
    let any = origins_authorizer(true, "*", "true");
    assert!(matches!(
        any.authorize(&with_origin(
            authorizer_request(None, None),
            "https://x.test"
        ))
        .await,
        Decision::Allow(_)
    ));
    assert_eq!(
        any.authorize(&authorizer_request(None, None))
            .await
            .refusal_status(),
        Some(403)
    );
}

#[test]
fn origin_settings_are_checked_with_typed_errors() {
    let read = |list: &str, require: &str| {
        Origins::from_lookup(|name| match name {
            "ROOMCAST_ALLOWED_ORIGINS" => Some(list.to_owned()),
            "ROOMCAST_REQUIRE_ORIGIN" => Some(require.to_owned()),
            _ => None,
        })
    };
    assert_eq!(read("", "").unwrap(), Origins::default());
    assert!(read("", "").unwrap().is_open());
    assert_eq!(read("*", "").unwrap().allowed, None);
    assert_eq!(
        read(" https://a.test ,http://localhost:3000", "true").unwrap(),
        Origins {
            allowed: Some(vec![
                "https://a.test".into(),
                "http://localhost:3000".into()
            ]),
            require: true,
        }
    );
    for (list, require) in [
        ("*, https://a.test", ""),
        ("https://a.test/", ""),
        ("a.test", ""),
        ("https://*.a.test", ""),
        ("https://a.test/app", ""),
        ("https://a.test", "sometimes"),
    ] {
        let err = read(list, require).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { name, .. } if name.starts_with("ROOMCAST_")),
            "{list:?} {require:?}: {err}"
        );
    }
    // AuthConfig reads them with the rest.
    let config = AuthConfig::from_lookup(|name| {
        (name == "ROOMCAST_ALLOWED_ORIGINS").then(|| "https://a.test".to_owned())
    })
    .unwrap();
    assert_eq!(
        config.origins.allowed,
        Some(vec!["https://a.test".to_owned()])
    );
    assert!(matches!(
        AuthConfig::from_lookup(
            |name| (name == "ROOMCAST_ALLOWED_ORIGINS").then(|| "*,https://a.test".to_owned())
        ),
        Err(ConfigError::Invalid {
            name: "ROOMCAST_ALLOWED_ORIGINS",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------
// The handlers: identity, expiry, policies, rate limits
// ---------------------------------------------------------------------------

/// A MESSAGE event with the authorizer context the authorizer would attach.
fn frame_event(
    conn: &str,
    frame: &str,
    user: Option<&str>,
    roles: &str,
    exp: Option<u64>,
) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    let mut e = event("send", conn, Some(frame), user);
    if user.is_some() {
        e.request_context
            .authorizer
            .fields
            .insert("roles".into(), json!(roles));
    }
    if let Some(exp) = exp {
        e.request_context
            .authorizer
            .fields
            .insert("exp".into(), json!(exp));
    }
    e
}

async fn reply(
    h: &Harness,
    conn: &str,
    frame: &str,
    user: Option<&str>,
    roles: &str,
) -> Option<Value> {
    body(
        &message(
            &h.app,
            frame_event(conn, frame, user, roles, Some(now_secs() + 600)),
        )
        .await,
    )
}

fn code(v: &Option<Value>) -> Option<&str> {
    v.as_ref().and_then(|v| v["code"].as_str())
}

#[tokio::test]
async fn connect_keeps_the_identity_and_echoes_the_bearer_subprotocol() {
    let h = harness();
    let mut e = event("$connect", "c1=", None, Some("alice"));
    e.request_context
        .authorizer
        .fields
        .insert("roles".into(), json!("admin,ops"));
    e.request_context
        .authorizer
        .fields
        .insert("exp".into(), json!(1_700_000_600u64));
    e.headers.insert(
        "sec-websocket-protocol",
        "bearer, abc.def.ghi".parse().unwrap(),
    );
    let response = connect(&h.app, e).await;
    assert_eq!(response.status_code, 200);
    assert_eq!(
        response.headers.get("sec-websocket-protocol").unwrap(),
        "bearer"
    );
    let stored = support::stored_connection(&h, "c1=").await;
    assert_eq!(stored.user_id.as_deref(), Some("alice"));
    assert_eq!(stored.roles, ["admin", "ops"]);
    assert_eq!(stored.token_expires_at, Some(1_700_000_600));
    // Without the bearer offer, no subprotocol is selected.
    let response = connect(&h.app, event("$connect", "c2=", None, None)).await;
    assert!(response.headers.get("sec-websocket-protocol").is_none());
}

#[tokio::test]
async fn frames_after_the_token_expired_are_refused_and_the_connection_closed() {
    let h = harness();
    let frame = r#"{"action":"ping","id":7}"#;
    let live = message(
        &h.app,
        frame_event("c1=", frame, Some("alice"), "", Some(now_secs() + 60)),
    )
    .await;
    assert_eq!(body(&live).unwrap()["type"], "pong");
    let expired = message(
        &h.app,
        frame_event("c1=", frame, Some("alice"), "", Some(now_secs() - 1)),
    )
    .await;
    // The error goes out through @connections before the close, not as the reply.
    assert_eq!(expired.status_code, 200);
    assert!(body(&expired).is_none());
    let received = h.management.received("c1=");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["code"], "token_expired");
    assert_eq!(received[0]["id"], 7);
    assert!(h.management.gone.lock().unwrap().contains("c1="));
}

#[tokio::test]
async fn namespace_policies_decide_who_joins_and_sends() {
    let mut h = harness();
    h.app.config.policies = Policies::parse(
        r#"{"default": {"join": "authenticated", "send": "authenticated"},
            "namespaces": {
              "public": {"join": "anyone", "send": "anyone"},
              "user": {"join": "owner", "send": "owner"},
              "admin": {"join": "role:admin", "send": "role:admin"},
              "news": {"join": "anyone", "send": "nobody"}
            }}"#,
    )
    .unwrap();
    let join = |room: &str| format!(r#"{{"action":"join","room":"{room}","id":1}}"#);
    let send = |room: &str| format!(r#"{{"action":"send","room":"{room}","event":"e","id":2}}"#);
    let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
        // (room, user, roles, expected error code or None for an ack)
        ("chat:1", None, "", Some("forbidden")),
        ("lobby", None, "", Some("forbidden")),
        ("chat:1", Some("alice"), "", None),
        ("public:1", None, "", None),
        ("user:alice", Some("alice"), "", None),
        ("user:alice", Some("bob"), "", Some("forbidden")),
        ("user:alice", None, "", Some("forbidden")),
        ("admin:ops", Some("bob"), "ops", Some("forbidden")),
        ("admin:ops", Some("root"), "ops,admin", None),
        ("news:today", None, "", None),
    ];
    for (i, (room, user, roles, expected)) in cases.iter().enumerate() {
        let conn = format!("p{i}=");
        let r = reply(&h, &conn, &join(room), *user, roles).await;
        assert_eq!(code(&r), *expected, "join {room} as {user:?}: {r:?}");
        if expected.is_none() {
            let r = reply(&h, &conn, &send(room), *user, roles).await;
            let want = if room.starts_with("news:") {
                Some("forbidden")
            } else {
                None
            };
            assert_eq!(code(&r), want, "send {room} as {user:?}: {r:?}");
        }
    }
    // A refused join stored nothing.
    assert!(
        h.store
            .member("chat:1", 0, "p0=", now_secs())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn rate_limits_refuse_then_close_flooding_connections() {
    let mut h = harness();
    // A day-long window: the test never straddles two windows in practice.
    h.app.config.policies = Policies::parse(
        r#"{"default": {"join": "anyone", "send": "anyone", "rateLimit": {"limit": 3, "windowSecs": 86400, "closeAfter": 2}},
            "namespaces": {"fast": {"rateLimit": {"limit": 100}}},
            "connection": {"limit": 1000}}"#,
    )
    .unwrap();
    let join = |room: &str| format!(r#"{{"action":"join","room":"{room}","id":1}}"#);
    for _ in 0..3 {
        let r = reply(&h, "f1=", &join("chat:1"), None, "").await;
        assert_eq!(r.unwrap()["type"], "ack");
    }
    // Over the limit: refused, the connection stays. Every namespace under the
    // default policy shares one counter: a made-up namespace is no fresh limit.
    for room in ["other:1", "chat:2"] {
        let r = reply(&h, "f1=", &join(room), None, "").await;
        assert_eq!(code(&r), Some("rate_limited"), "{room}");
    }
    assert!(h.management.gone.lock().unwrap().is_empty());
    // A configured namespace has its own limit, and connections count apart.
    let r = reply(&h, "f1=", &join("fast:1"), None, "").await;
    assert_eq!(r.unwrap()["type"], "ack");
    let r = reply(&h, "f2=", &join("chat:1"), None, "").await;
    assert_eq!(r.unwrap()["type"], "ack");
    // Under the connection-wide limit, pings still pass.
    let r = reply(&h, "f1=", r#"{"action":"ping"}"#, None, "").await;
    assert_eq!(r.unwrap()["type"], "pong");
    // At twice the limit (in yet another unnamed namespace): refused and closed.
    let r = reply(&h, "f1=", &join("third:1"), None, "").await;
    assert!(r.is_none());
    assert_eq!(h.management.received("f1=")[0]["code"], "rate_limited");
    assert!(h.management.gone.lock().unwrap().contains("f1="));
    assert!(!h.management.gone.lock().unwrap().contains("f2="));
    // Refused joins stored nothing.
    assert!(
        h.store
            .member("other:1", 0, "f1=", now_secs())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn spreading_frames_across_namespaces_gets_no_fresh_limits() {
    let mut h = harness();
    h.app.config.policies = Policies::parse(
        r#"{"default": {"join": "anyone", "send": "anyone", "rateLimit": {"limit": 5, "windowSecs": 86400, "closeAfter": 2}}}"#,
    )
    .unwrap();
    // Each join goes to a namespace of its own, all under the default policy.
    let mut codes = Vec::new();
    for i in 0..9 {
        let frame = format!(r#"{{"action":"join","room":"ns{i}:r","id":1}}"#);
        let r = reply(&h, "s1=", &frame, None, "").await;
        codes.push(
            code(&r)
                .unwrap_or_else(|| r.as_ref().unwrap()["type"].as_str().unwrap())
                .to_owned(),
        );
    }
    let mut want = vec!["ack"; 5];
    want.extend(["rate_limited"; 4]);
    assert_eq!(codes, want);
    assert!(h.management.gone.lock().unwrap().is_empty());
    let r = reply(
        &h,
        "s1=",
        r#"{"action":"join","room":"ns9:r","id":1}"#,
        None,
        "",
    )
    .await;
    assert!(r.is_none(), "closed");
    assert!(h.management.gone.lock().unwrap().contains("s1="));
}

#[tokio::test]
async fn every_frame_counts_against_the_connection_limit() {
    let mut h = harness();
    h.app.config.policies = Policies::parse(
        r#"{"default": {"rateLimit": {"limit": 100, "windowSecs": 86400}},
            "connection": {"limit": 4, "closeAfter": 2}}"#,
    )
    .unwrap();
    // A ping, an unknown action, an unparsable frame and a join the policy refuses
    // (anonymous, default `authenticated`): none is a room frame, all are counted.
    let frames = [
        (r#"{"action":"ping"}"#, None),
        (r#"{"action":"dance","id":1}"#, Some("unknown_action")),
        ("not json", Some("bad_request")),
        (
            r#"{"action":"join","room":"chat:1","id":1}"#,
            Some("forbidden"),
        ),
    ];
    for (frame, want) in frames {
        let r = reply(&h, "x1=", frame, None, "").await;
        assert_eq!(code(&r), want, "{frame}: {r:?}");
    }
    for _ in 0..3 {
        let r = reply(&h, "x1=", r#"{"action":"ping"}"#, None, "").await;
        assert_eq!(code(&r), Some("rate_limited"));
    }
    assert!(h.management.gone.lock().unwrap().is_empty());
    // Persistent flooding: at closeAfter times the limit, the connection is closed.
    let r = reply(&h, "x1=", "garbage", None, "").await;
    assert!(r.is_none());
    assert_eq!(h.management.received("x1=")[0]["code"], "rate_limited");
    assert!(h.management.gone.lock().unwrap().contains("x1="));
}

#[tokio::test]
async fn memberships_and_the_connection_end_with_the_token() {
    let h = harness();
    let now = now_secs();
    let exp = now + 60;
    let with_token = |mut e: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest| {
        let fields = &mut e.request_context.authorizer.fields;
        fields.insert("exp".into(), json!(exp));
        fields.insert("leeway".into(), json!(30));
        e.request_context.connected_at = (now * 1000) as i64;
        e
    };
    let response = connect(
        &h.app,
        with_token(event("$connect", "t1=", None, Some("alice"))),
    )
    .await;
    assert_eq!(response.status_code, 200);
    let joined = message(
        &h.app,
        with_token(event(
            "join",
            "t1=",
            Some(r#"{"action":"join","room":"chat:1","id":1}"#),
            Some("alice"),
        )),
    )
    .await;
    assert_eq!(body(&joined).unwrap()["type"], "ack");
    let members = |at: u64| {
        let store = h.store.clone();
        async move {
            store
                .members_page("chat:1", 0, None, 10, at)
                .await
                .unwrap()
                .members
                .len()
        }
    };
    // Live until exp plus the leeway, then gone from the room, the user's
    // connections and the store's connections, without another frame.
    assert_eq!(members(now).await, 1);
    assert_eq!(members(exp + 30).await, 1);
    assert_eq!(members(exp + 31).await, 0);
    assert!(h.store.connection("t1=", exp + 30).await.unwrap().is_some());
    assert!(h.store.connection("t1=", exp + 31).await.unwrap().is_none());
    let users = h
        .store
        .user_connections_page("alice", None, 10, exp + 31)
        .await
        .unwrap();
    assert!(users.connection_ids.is_empty());
    // Anonymous connections keep the item TTL.
    let anon = message(
        &h.app,
        event(
            "join",
            "t2=",
            Some(r#"{"action":"join","room":"chat:1","id":1}"#),
            None,
        ),
    )
    .await;
    assert_eq!(body(&anon).unwrap()["type"], "ack");
    assert_eq!(members(exp + 31).await, 1);
}

#[tokio::test]
async fn the_handlers_apply_the_authorizers_leeway() {
    let h = harness();
    let frame = r#"{"action":"ping","id":7}"#;
    let mut e = frame_event("l1=", frame, Some("alice"), "", Some(now_secs() - 10));
    e.request_context
        .authorizer
        .fields
        .insert("leeway".into(), json!(30));
    // 10 s past exp, within the 30 s the authorizer also allows: still served.
    assert_eq!(body(&message(&h.app, e).await).unwrap()["type"], "pong");
    assert!(h.management.gone.lock().unwrap().is_empty());
    let mut e = frame_event("l1=", frame, Some("alice"), "", Some(now_secs() - 31));
    e.request_context
        .authorizer
        .fields
        .insert("leeway".into(), json!(30));
    assert!(body(&message(&h.app, e).await).is_none());
    assert!(h.management.gone.lock().unwrap().contains("l1="));
}

// ---------------------------------------------------------------------------
// Review fixes: JWKS age, HS256 with a kid, sub length, redirects
// ---------------------------------------------------------------------------

#[tokio::test]
async fn jwks_keys_are_fetched_again_after_their_max_age_and_unpublished_ones_dropped() {
    let server = jwks_server(JWKS).await;
    let mut c = config(false, Some(&server.url), Duration::ZERO);
    c.jwks_max_age = Duration::from_millis(300);
    let verifier = Verifier::new(c);
    assert!(verifier.verify(&es256("ec-1", &claims("a"))).await.is_ok());
    assert!(verifier.verify(&rs256("rsa-1", &claims("a"))).await.is_ok());
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // The provider stops publishing the EC key (revoked, or rotated out).
    let only_rsa = json!({"keys": [serde_json::from_str::<Value>(JWKS).unwrap()["keys"][0]]});
    *server.body.lock().unwrap() = only_rsa.to_string();
    // Within the max age the cache answers without a fetch.
    assert!(verifier.verify(&es256("ec-1", &claims("a"))).await.is_ok());
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Past it, the next lookup fetches again, and the dropped key no longer verifies.
    assert_eq!(
        verifier
            .verify(&es256("ec-1", &claims("a")))
            .await
            .unwrap_err(),
        JwtError::UnknownKey
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    assert!(verifier.verify(&rs256("rsa-1", &claims("a"))).await.is_ok());
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn hs256_tokens_with_a_kid_verify_against_the_secret_when_a_jwks_is_configured() {
    let server = jwks_server(JWKS).await;
    let both = Verifier::new(config(true, Some(&server.url), Duration::from_secs(3600)));
    let rs_only = Verifier::new(config(false, Some(&server.url), Duration::from_secs(3600)));
    let secret = EncodingKey::from_secret(SECRET);
    for kid in ["hs-1", "rsa-1"] {
        let token = sign(Algorithm::HS256, Some(kid), &claims("alice"), &secret);
        assert_eq!(both.verify(&token).await.unwrap().sub, "alice", "{kid}");
        // Without a secret, HS256 is not accepted at all.
        assert_eq!(
            rs_only.verify(&token).await.unwrap_err(),
            JwtError::Algorithm
        );
    }
    // Key confusion stays refused: HS256 "signed" with the RSA public key.
    let confused = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &claims("mallory"),
        &EncodingKey::from_secret(RSA_PUBLIC),
    );
    assert_eq!(
        both.verify(&confused).await.unwrap_err(),
        JwtError::Signature
    );
    // RS256 still needs a JWKS kid.
    assert!(both.verify(&rs256("rsa-1", &claims("bob"))).await.is_ok());
}

#[tokio::test]
async fn subjects_longer_than_256_bytes_are_refused() {
    let v = Verifier::new(config(true, None, Duration::from_secs(3600)));
    let ok = "a".repeat(256);
    assert_eq!(v.verify(&hs256(&claims(&ok))).await.unwrap().sub, ok);
    let long = "a".repeat(257);
    assert_eq!(
        v.verify(&hs256(&claims(&long))).await.unwrap_err(),
        JwtError::Claim("sub".into())
    );
}

#[tokio::test]
async fn the_jwks_client_does_not_follow_redirects() {
    let server = jwks_server(JWKS).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let target = server.url.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    let v = Verifier::new(config(false, Some(&url), Duration::ZERO));
    assert!(matches!(
        v.verify(&rs256("rsa-1", &claims("a"))).await,
        Err(JwtError::Jwks(_))
    ));
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn empty_tokens_are_refused_like_bad_ones() {
    let no_key = Authorizer::new(AuthConfig {
        jwt: None,
        allow_anonymous: true,
        origins: Default::default(),
    });
    for a in [&hs_authorizer(false), &hs_authorizer(true), &no_key] {
        for request in [
            authorizer_request(Some(""), None),
            authorizer_request(None, Some("bearer")),
            authorizer_request(None, Some("bearer, ")),
            authorizer_request(None, Some("chat.v1, bearer")),
        ] {
            let decision = a.authorize(&request).await;
            assert_eq!(decision.refusal_status(), Some(403), "{request:?}");
        }
    }
}

#[tokio::test]
async fn fractional_numeric_dates_are_accepted() {
    let v = Verifier::new(config(true, None, Duration::from_secs(3600)));
    let now = now_secs() as f64;
    // RFC 7519's NumericDate may have a fraction, in exp, nbf and iat alike.
    let c = with(
        with(
            with(claims("a"), "exp", json!(now + 600.5)),
            "nbf",
            json!(now - 0.25),
        ),
        "iat",
        json!(now - 0.25),
    );
    let verified = v.verify(&hs256(&c)).await.unwrap();
    assert_eq!(verified.exp, now as u64 + 600, "rounded down");
    // And is still checked: expired, or not valid yet, beyond the 30 s leeway.
    let expired = with(claims("a"), "exp", json!(now - 30.5));
    assert_eq!(
        v.verify(&hs256(&expired)).await.unwrap_err(),
        JwtError::Expired
    );
    let early = with(claims("a"), "nbf", json!(now + 31.5));
    assert_eq!(
        v.verify(&hs256(&early)).await.unwrap_err(),
        JwtError::NotYetValid
    );
    for bad in [json!("soon"), json!(-1.5), json!(null)] {
        assert!(
            v.verify(&hs256(&with(claims("a"), "exp", bad.clone())))
                .await
                .is_err(),
            "exp {bad}"
        );
    }
    let bad_nbf = with(claims("a"), "nbf", json!("later"));
    assert_eq!(
        v.verify(&hs256(&bad_nbf)).await.unwrap_err(),
        JwtError::Claim("nbf".into())
    );
}
