//! `roomcast dev --template … --invoke-endpoint URL` against a scripted Lambda
//! Invoke endpoint (a real HTTP server on loopback, spoken to by the real
//! `aws-sdk-lambda` client): how API Gateway's answers follow from what the
//! functions do. The same paths with the project's real functions behind
//! `cargo lambda watch` are in sam.rs; here each function can misbehave on cue:
//! - the authorizer allows, denies (403), says `Unauthorized` (401), fails or
//!   times out (500);
//! - `$connect` refuses with its own status, fails or times out (500);
//! - a message route answers (two-way), fails or outlives its function's Timeout
//!   ("Internal server error") or its integration's ("Endpoint request timed out").

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
                "context": {"userId": "user-7"},
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
