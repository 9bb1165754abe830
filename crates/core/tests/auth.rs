//! Auth and abuse limits (issue 4): the JWT attack suite against the verifier (HS256
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
use roomcast_core::auth::policy::Policies;
use roomcast_core::auth::{AuthConfig, Authorizer, Decision};
use roomcast_core::handlers::{connect, message};
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
        authorizer_request(Some(""), None),
        authorizer_request(None, Some("chat.v1")),
        authorizer_request(None, Some("bearer")),
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
    let stored = h
        .store
        .connection("c1=", 1_700_000_000)
        .await
        .unwrap()
        .unwrap();
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
            .member("chat:1", "p0=", now_secs())
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
            "namespaces": {"fast": {"rateLimit": {"limit": 100}}}}"#,
    )
    .unwrap();
    let frame = r#"{"action":"join","room":"chat:1","id":1}"#;
    for _ in 0..3 {
        let r = reply(&h, "f1=", frame, None, "").await;
        assert_eq!(r.unwrap()["type"], "ack");
    }
    // Over the limit: refused, the connection stays.
    for _ in 0..2 {
        let r = reply(&h, "f1=", frame, None, "").await;
        assert_eq!(code(&r), Some("rate_limited"));
    }
    assert!(h.management.gone.lock().unwrap().is_empty());
    // Limits are per namespace and per connection.
    let r = reply(
        &h,
        "f1=",
        r#"{"action":"join","room":"fast:1","id":1}"#,
        None,
        "",
    )
    .await;
    assert_eq!(r.unwrap()["type"], "ack");
    let r = reply(&h, "f2=", frame, None, "").await;
    assert_eq!(r.unwrap()["type"], "ack");
    // Pings are not room frames and are not counted.
    let r = reply(&h, "f1=", r#"{"action":"ping"}"#, None, "").await;
    assert_eq!(r.unwrap()["type"], "pong");
    // At twice the limit: refused and closed.
    let r = reply(&h, "f1=", frame, None, "").await;
    assert!(r.is_none());
    assert_eq!(h.management.received("f1=")[0]["code"], "rate_limited");
    assert!(h.management.gone.lock().unwrap().contains("f1="));
    assert!(!h.management.gone.lock().unwrap().contains("f2="));
}
