//! `roomcast dev --template … --invoke-endpoint URL` against a scripted Lambda
//! Invoke endpoint (a real HTTP server on loopback, spoken to by the real
//! `aws-sdk-lambda` client): how API Gateway's answers follow from what the
//! functions do. The same paths with the project's real functions behind
//! `cargo lambda watch` are in sam.rs; here each function can misbehave on cue:
//! - the authorizer allows, denies (403), says `Unauthorized` (401), fails or
//!   times out (500);
//! - `$connect` refuses with its own status, fails or times out (500);
//! - a message route answers (two-way), fails or outlives its function's Timeout
//!   ("Internal server error") or its integration's ("Endpoint request timed out");
//! - and the edges: authorizer context values arrive as strings, binary frames
//!   close with 1003 invoking nothing, a DELETE reaches `$disconnect` as 1000
//!   "Connection Closed Normally", and the origin allowlist refuses before the
//!   authorizer runs.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use roomcast_local::template::Template;
use roomcast_local::{FunctionMode, GatewayOptions, SamOptions};
use serde_json::{Value, json};
use support::{Client, WAIT};

const TEMPLATE: &str = r#"
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}
  Auth:
    Type: AWS::Serverless::Function
  Connect:
    Type: AWS::Serverless::Function
  Disconnect:
    Type: AWS::Serverless::Function
  Echo:
    Type: AWS::Serverless::Function
    Properties: {Timeout: 1}
  Authorizer:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Api
      AuthorizerType: REQUEST
      IdentitySource: [route.request.querystring.token]
      AuthorizerUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Auth.Arn}/invocations
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Connect.Arn}/invocations
  DisconnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Disconnect.Arn}/invocations
  EchoIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      TimeoutInMillis: 2500
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Echo.Arn}/invocations
  ImpatientIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      TimeoutInMillis: 300
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Echo.Arn}/invocations
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref Authorizer
      Target: !Sub integrations/${ConnectIntegration}
  DisconnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: $disconnect, Target: !Sub "integrations/${DisconnectIntegration}"}
  EchoRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: $default, Target: !Sub "integrations/${EchoIntegration}"}
  ImpatientRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: impatient, Target: !Sub "integrations/${ImpatientIntegration}"}
  ImpatientResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !Ref ImpatientRoute, RouteResponseKey: $default}
  EchoResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !Ref EchoRoute, RouteResponseKey: $default}
"#;

/// How long a "slow" function takes: past every timeout of the test's gateway.
const SLOW: Duration = Duration::from_secs(3);

/// The events each function received, in order, to check what reached them.
#[derive(Clone, Default)]
struct Invocations(Arc<Mutex<Vec<(String, Value)>>>);

impl Invocations {
    fn of(&self, function: &str) -> Vec<Value> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(f, _)| f == function)
            .map(|(_, e)| e.clone())
            .collect()
    }
}

/// A function error as Lambda's Invoke API reports it: 200, `X-Amz-Function-Error`,
/// and the error document as the payload.
fn function_error(message: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amz-function-error",
        HeaderValue::from_static("Unhandled"),
    );
    let body = json!({"errorType": "Error", "errorMessage": message}).to_string();
    (StatusCode::OK, headers, body).into_response()
}

fn ok(payload: Value) -> Response {
    (StatusCode::OK, payload.to_string()).into_response()
}

/// The scripted functions. The query string of the handshake (`token`, `then`)
/// or the frame's body says how each one behaves.
async fn invoke(
    State(seen): State<Invocations>,
    Path(function): Path<String>,
    body: String,
) -> Response {
    let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    seen.0
        .lock()
        .unwrap()
        .push((function.clone(), event.clone()));
    let query = |name: &str| {
        event["queryStringParameters"][name]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let script = match function.as_str() {
        "Auth" => query("token"),
        "Connect" => query("then"),
        "Echo" => serde_json::from_str::<Value>(event["body"].as_str().unwrap_or("{}"))
            .ok()
            .and_then(|frame| frame["then"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        _ => String::new(),
    };
    if script == "slow" {
        tokio::time::sleep(SLOW).await;
    }
    match (function.as_str(), script.as_str()) {
        ("Auth", "unauthorized") => function_error("Unauthorized"),
        ("Auth", "fail") => function_error("the authorizer broke"),
        ("Auth", token) => {
            let effect = if token == "deny" { "Deny" } else { "Allow" };
            ok(json!({
                "principalId": "user-7",
                "policyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Action": "execute-api:Invoke",
                        "Effect": effect,
                        "Resource": event["methodArn"],
                    }],
                },
                // A number and a boolean, which API Gateway passes on as strings.
                "context": {"userId": "user-7", "exp": 4_102_444_800_u64, "admin": true},
            }))
        }
        ("Connect", "refuse") => ok(json!({"statusCode": 429, "body": "come back later"})),
        ("Connect", "fail") => function_error("connect broke"),
        // The identity the authorizer gave must reach $connect.
        ("Connect", _) if event["requestContext"]["authorizer"]["userId"] != "user-7" => {
            ok(json!({"statusCode": 400}))
        }
        ("Echo", "fail") => function_error("echo broke"),
        ("Echo", _) => ok(json!({
            "statusCode": 200,
            "body": json!({"echo": event["body"]}).to_string(),
        })),
        _ => ok(json!({"statusCode": 200})),
    }
}

/// The scripted Invoke endpoint on a free loopback port.
async fn invoke_endpoint(seen: Invocations) -> String {
    let app = Router::new()
        .route("/2015-03-31/functions/{function}/invocations", post(invoke))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn options(endpoint: String) -> GatewayOptions {
    let template = Template::parse(TEMPLATE).expect("template parses");
    assert!(
        template.diagnostics.is_empty(),
        "{:?}",
        template.diagnostics
    );
    GatewayOptions {
        sam: Some(SamOptions {
            template: Arc::new(template),
            environment: Default::default(),
            mode: FunctionMode::Remote {
                endpoint,
                names: Default::default(),
            },
        }),
        // The authorizer and $connect wait this long; the Echo function's own
        // Timeout (1 s) comes before its $default integration's (2.5 s, capped
        // at this), the `impatient` integration's (300 ms) before it.
        integration_timeout: Duration::from_secs(2),
        ..support::options()
    }
}

/// The HTTP status a handshake is refused with.
async fn refused_with(url: &str) -> u16 {
    let result = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("an answer in time");
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{url}: not an HTTP refusal: {other}"),
        Ok(_) => panic!("{url}: the handshake was accepted"),
    }
}

#[tokio::test]
async fn remote_functions_answers_errors_and_timeouts_as_api_gateway() {
    let seen = Invocations::default();
    let running = support::start(options(invoke_endpoint(seen.clone()).await)).await;
    let url = running.websocket_url();

    // The authorizer's decisions, then $connect's own answers.
    for (query, status) in [
        ("token=deny", 403),
        ("token=unauthorized", 401),
        ("token=fail", 500),
        ("token=slow", 500),
        ("token=allow&then=refuse", 429),
        ("token=allow&then=fail", 500),
        ("token=allow&then=slow", 500),
    ] {
        assert_eq!(
            refused_with(&format!("{url}?{query}")).await,
            status,
            "{query}"
        );
    }
    // The authorizer's event, in API Gateway's shape: single values in
    // queryStringParameters, and the connection in requestContext.
    let first = &seen.of("Auth")[0];
    assert_eq!(first["type"], "REQUEST", "{first}");
    assert_eq!(
        first["queryStringParameters"],
        json!({"token": "deny"}),
        "{first}"
    );
    assert_eq!(
        first["multiValueQueryStringParameters"],
        json!({"token": ["deny"]})
    );
    assert!(
        first["methodArn"].as_str().unwrap().ends_with("/$connect"),
        "{first}"
    );
    for field in ["connectionId", "routeKey", "eventType", "domainName"] {
        assert!(
            first["requestContext"][field].is_string(),
            "{field}: {first}"
        );
    }
    // No identity source: API Gateway refuses without invoking the authorizer.
    let before = seen.of("Auth").len();
    assert_eq!(refused_with(&url).await, 401);
    assert_eq!(
        seen.of("Auth").len(),
        before,
        "the authorizer was not invoked"
    );
    // Refused handshakes never reached $disconnect.
    assert!(seen.of("Disconnect").is_empty());

    let mut client = Client::connect(&format!("{url}?token=allow&then=ok")).await;
    // Two-way $default: the function's body comes back as the route response.
    let echoed = client.request(json!({"say": "hi"})).await;
    let inner: Value = serde_json::from_str(echoed["echo"].as_str().unwrap()).unwrap();
    assert_eq!(inner, json!({"say": "hi"}));
    // A function error, and a function past its own Timeout: both function errors.
    for then in ["fail", "slow"] {
        let failed = client.request(json!({"then": then})).await;
        assert_eq!(
            failed["message"], "Internal server error",
            "{then}: {failed}"
        );
        assert!(failed["connectionId"].is_string(), "{then}: {failed}");
    }
    // Past the integration's TimeoutInMillis, before the function's own Timeout.
    let late = client
        .request(json!({"action": "impatient", "then": "slow"}))
        .await;
    assert_eq!(late["message"], "Endpoint request timed out", "{late}");
    let answered = client.request(json!({"action": "impatient"})).await;
    assert!(
        answered["echo"].as_str().unwrap().contains("impatient"),
        "{answered}"
    );
    // The connection survives its failed routes.
    let again = client.request(json!({"say": "still here"})).await;
    assert!(
        again["echo"].as_str().unwrap().contains("still here"),
        "{again}"
    );

    // $disconnect runs for the accepted connection, with its id.
    let connect_events = seen.of("Connect");
    let connection_id = connect_events.last().unwrap()["requestContext"]["connectionId"].clone();
    client.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.of("Disconnect").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "$disconnect ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let disconnects = seen.of("Disconnect");
    assert_eq!(
        disconnects.len(),
        1,
        "only the accepted connection disconnects"
    );
    assert_eq!(
        disconnects[0]["requestContext"]["connectionId"],
        connection_id
    );
    assert_eq!(disconnects[0]["requestContext"]["eventType"], "DISCONNECT");
    running.shutdown().await.expect("clean shutdown");
}

/// Waits (bounded) until `function` has received `count` events.
async fn until_invoked(seen: &Invocations, function: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = seen.of(function);
        if events.len() >= count {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{function} invoked {count} times"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A handshake with an `Origin` header (`None`: without one).
async fn connect_from(
    url: &str,
    origin: Option<&str>,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("a request");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("a header value"));
    }
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("an answer in time")
        .map(|(ws, _)| Client::from_stream(ws))
}

#[tokio::test]
async fn events_carry_string_contexts_and_one_request_id() {
    let seen = Invocations::default();
    let running = support::start(options(invoke_endpoint(seen.clone()).await)).await;
    let url = running.websocket_url();
    let mut client = Client::connect(&format!("{url}?token=allow&then=ok")).await;
    let echoed = client.request(json!({"say": "hi"})).await;
    assert!(echoed["echo"].is_string(), "{echoed}");

    // The authorizer's event has the request times the other events have.
    let auth = &seen.of("Auth")[0]["requestContext"];
    assert!(
        auth["requestTime"].as_str().unwrap().ends_with(" +0000"),
        "{auth}"
    );
    assert!(auth["requestTimeEpoch"].as_u64().unwrap() > 0, "{auth}");
    let connect = &seen.of("Connect")[0];
    let echo = &seen.of("Echo")[0];
    for (name, event) in [
        ("Auth", &seen.of("Auth")[0]),
        ("Connect", connect),
        ("Echo", echo),
    ] {
        let context = &event["requestContext"];
        assert!(context["requestId"].is_string(), "{name}: {context}");
        assert_eq!(
            context["requestId"], context["extendedRequestId"],
            "{name}: requestId and extendedRequestId are one value"
        );
    }
    // The context's number and boolean arrive stringified, on every event.
    for event in [connect, echo] {
        assert_eq!(
            event["requestContext"]["authorizer"],
            json!({"userId": "user-7", "exp": "4102444800", "admin": "true", "principalId": "user-7"}),
            "{event}"
        );
    }
    client.close().await;
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn binary_frames_close_with_1003_and_delete_disconnects_normally() {
    let seen = Invocations::default();
    let running = support::start(options(invoke_endpoint(seen.clone()).await)).await;
    let url = format!("{}?token=allow&then=ok", running.websocket_url());

    // A binary frame: closed with 1003, no route invoked, $disconnect told 1003.
    let mut binary = Client::connect(&url).await;
    binary
        .send_raw(tokio_tungstenite::tungstenite::Message::binary(vec![
            1u8, 2, 3,
        ]))
        .await;
    let (code, _) = binary.expect_close().await;
    assert_eq!(code, 1003);
    let disconnects = until_invoked(&seen, "Disconnect", 1).await;
    assert_eq!(
        disconnects[0]["requestContext"]["disconnectStatusCode"],
        1003
    );
    assert!(seen.of("Echo").is_empty(), "a binary frame invokes nothing");

    // DELETE @connections/{id}: the client is closed with 1000 and $disconnect
    // hears 1000 "Connection Closed Normally".
    let mut deleted = Client::connect(&url).await;
    let connects = seen.of("Connect");
    let id = connects.last().unwrap()["requestContext"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    support::management(&running.management_endpoint())
        .await
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("DELETE succeeds");
    let (code, _) = deleted.expect_close().await;
    assert_eq!(code, 1000);
    let disconnects = until_invoked(&seen, "Disconnect", 2).await;
    let context = &disconnects[1]["requestContext"];
    assert_eq!(context["connectionId"], id.as_str());
    assert_eq!(
        (
            &context["disconnectStatusCode"],
            &context["disconnectReason"]
        ),
        (&json!(1000), &json!("Connection Closed Normally")),
        "{context}"
    );
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_origin_allowlist_refuses_before_the_authorizer_runs() {
    let seen = Invocations::default();
    let endpoint = invoke_endpoint(seen.clone()).await;
    let allowlist = |require: bool| roomcast_core::auth::origin::Origins {
        allowed: Some(vec!["https://app.example.com".to_owned()]),
        require,
    };
    let running = support::start(GatewayOptions {
        origins: allowlist(false),
        ..options(endpoint.clone())
    })
    .await;
    let url = running.websocket_url();
    let with_token = format!("{url}?token=allow&then=ok");
    // Allowed origin, and no Origin at all: accepted.
    for origin in [Some("https://app.example.com"), None] {
        let client = connect_from(&with_token, origin).await.expect("accepted");
        client.close().await;
    }
    let invoked = seen.of("Auth").len();
    assert_eq!(invoked, 2);
    // Another origin: 403 with or without a token, and the authorizer never ran
    // (so no token was read).
    for target in [with_token.as_str(), url.as_str()] {
        let refused = connect_from(target, Some("https://evil.example")).await;
        assert!(
            matches!(&refused, Err(e) if support::is_tungstenite_http_error(e, 403)),
            "{target}: {:?}",
            refused.err()
        );
    }
    assert_eq!(
        seen.of("Auth").len(),
        invoked,
        "the authorizer was not invoked"
    );
    running.shutdown().await.expect("clean shutdown");

    // Required: no Origin is refused too.
    let strict = support::start(GatewayOptions {
        origins: allowlist(true),
        ..options(endpoint)
    })
    .await;
    let url = strict.websocket_url();
    let with_token = format!("{url}?token=allow&then=ok");
    for target in [with_token.as_str(), url.as_str()] {
        let refused = connect_from(target, None).await;
        assert!(
            matches!(&refused, Err(e) if support::is_tungstenite_http_error(e, 403)),
            "{target}: {:?}",
            refused.err()
        );
    }
    let client = connect_from(&with_token, Some("https://app.example.com"))
        .await
        .expect("accepted");
    client.close().await;
    strict.shutdown().await.expect("clean shutdown");
}
