//! `roomcast dev --template` with the functions in-process (no Invoke endpoint,
//! in-memory store): the template's routes over real sockets, a route that cannot
//! be mapped, a frame no route takes, and a `$connect` that cannot be mapped.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use roomcast_local::template::{EnvFile, Pseudo, Template, resolve_environment};
use roomcast_local::{FunctionMode, GatewayOptions, LocalError, SamOptions};
use serde_json::json;
use support::Client;

/// roomcast's functions behind `join` (two-way) and `lost` (an HTTP integration,
/// which the emulator cannot run), `boom` on the broadcast binary (no in-process
/// handler), and no `$default`.
const TEMPLATE: &str = r#"
Resources:
  ConnectFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: connect}}
  MessageFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: message}}
  BroadcastFunction:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: broadcast}}
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${ConnectFunction.Arn}/invocations
  MessageIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${MessageFunction.Arn}/invocations
  BroadcastIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${BroadcastFunction.Arn}/invocations
  HttpIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {ApiId: !Ref Api, IntegrationType: HTTP_PROXY, IntegrationUri: "https://example.com"}
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: $connect, Target: !Sub "integrations/${ConnectIntegration}"}
  JoinRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: join, Target: !Sub "integrations/${MessageIntegration}"}
  JoinRouteResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !Ref JoinRoute, RouteResponseKey: $default}
  LostRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: lost, Target: !Sub "integrations/${HttpIntegration}"}
  BoomRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: boom, Target: !Sub "integrations/${BroadcastIntegration}"}
"#;

fn options(template: Template) -> GatewayOptions {
    let open = BTreeMap::from([(
        "ROOMCAST_POLICIES".to_owned(),
        r#"{"default":{"join":"anyone","send":"anyone"}}"#.to_owned(),
    )]);
    let environment = template
        .functions
        .keys()
        .map(|id| (id.clone(), open.clone()))
        .collect();
    GatewayOptions {
        sam: Some(SamOptions {
            template: Arc::new(template),
            environment,
            mode: FunctionMode::InProcess,
        }),
        ..support::options()
    }
}

#[tokio::test]
async fn template_routes_in_process_over_real_sockets() {
    let template = Template::parse(TEMPLATE).expect("template parses");
    let options = options(template);
    // GatewayOptions' Debug (via SamOptions) names variables, never their values.
    let shown = format!("{options:?}");
    assert!(shown.contains("ROOMCAST_POLICIES"), "{shown}");
    assert!(!shown.contains("anyone"), "{shown}");
    let running = support::start(options).await;
    let mut client = Client::connect(&running.websocket_url()).await;
    // join runs the message handler in-process and its route response comes back.
    client.join("chat:template").await;
    // An unmappable route fails where it is, rather than running another function.
    for action in ["lost", "boom"] {
        let failed = client.request(json!({"action": action})).await;
        assert_eq!(failed["message"], "Internal server error", "{failed}");
        assert!(failed["connectionId"].is_string(), "{failed}");
    }
    // No route matches and there is no $default: API Gateway answers Forbidden.
    let refused = client.request(json!({"action": "nowhere"})).await;
    assert_eq!(refused["message"], "Forbidden", "{refused}");
    let refused = client.request(json!({"no": "action"})).await;
    assert_eq!(refused["message"], "Forbidden", "{refused}");
    client.close().await;
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_unmappable_connect_route_or_authorizer_refuses_to_start() {
    // $connect on an integration the emulator cannot run.
    let broken_integration = TEMPLATE.replace(
        "RouteKey: $connect, Target: !Sub \"integrations/${ConnectIntegration}\"",
        "RouteKey: $connect, Target: !Sub \"integrations/${HttpIntegration}\"",
    );
    // $connect with an authorizer the template does not define.
    let broken_authorizer = TEMPLATE.replace(
        "RouteKey: $connect, Target:",
        "RouteKey: $connect, AuthorizationType: CUSTOM, AuthorizerId: !Ref Nowhere, Target:",
    );
    // $connect with IAM authorization, which is not emulated.
    let iam = TEMPLATE.replace(
        "RouteKey: $connect, Target:",
        "RouteKey: $connect, AuthorizationType: AWS_IAM, Target:",
    );
    // $connect on a binary without an in-process handler.
    let wrong_binary = TEMPLATE.replace(
        "Metadata: {BuildProperties: {Binary: connect}}",
        "Metadata: {BuildProperties: {Binary: broadcast}}",
    );
    for (name, yaml) in [
        ("integration", broken_integration),
        ("authorizer", broken_authorizer),
        ("AWS_IAM", iam),
        ("binary", wrong_binary),
    ] {
        assert_ne!(yaml, TEMPLATE, "{name}: the fixture was changed");
        let template = Template::parse(&yaml).expect("template parses");
        let started = roomcast_local::serve(
            options(template),
            Arc::new(roomcast_core::store::memory::MemoryStore::new()),
            "test".into(),
            &support::sdk().await,
        )
        .await;
        assert!(
            matches!(started, Err(LocalError::Function(_))),
            "{name}: the gateway must not start"
        );
    }
}

/// A namespace that keeps history and announces presence, given to the
/// functions only through the template's environment (an env file's
/// `Parameters`, which, as with `sam local`, reach only the functions that
/// declare the variable).
const HISTORY_AND_PRESENCE: &str = r#"{"default":{"join":"anyone","send":"anyone"},"namespaces":{"hist":{"history":{"size":10,"ttlSecs":600},"presence":true,"presenceEvents":true}}}"#;

#[tokio::test]
async fn each_function_of_the_real_template_runs_with_its_own_environment() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let template = Template::from_file(path).expect("template.yaml parses");
    let overrides = json!({"Parameters": {
        "ROOMCAST_POLICIES": HISTORY_AND_PRESENCE,
        "ROOMCAST_ALLOW_ANONYMOUS": "true",
    }});
    let env_file = EnvFile::parse(&overrides.to_string()).expect("env file");
    let pseudo = Pseudo {
        region: "us-east-1".into(),
        stack_name: "local".into(),
    };
    let (environment, _) = resolve_environment(&template, &env_file, &pseudo);
    let options = GatewayOptions {
        sam: Some(SamOptions {
            template: Arc::new(template),
            environment,
            mode: FunctionMode::InProcess,
        }),
        ..support::options()
    };
    let running = support::start(options).await;
    let url = running.websocket_url();
    let (mut alice, mut bob) = (Client::connect(&url).await, Client::connect(&url).await);
    // The message function: history (the ack's offset) and presence events.
    let ack = alice
        .request(json!({"action": "join", "room": "hist:1", "id": 1}))
        .await;
    assert_eq!(ack["offset"], 0, "{ack}");
    bob.join("hist:1").await;
    let joined = alice.next_json().await;
    assert_eq!(
        (&joined["type"], &joined["change"]),
        (&json!("presence"), &json!("join")),
        "{joined}"
    );
    // The broadcast function: a room broadcast takes the stream's next offset.
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&support::sdk().await)
            .endpoint_url(running.lambda_endpoint())
            .build(),
    );
    roomcast_client::Broadcaster::lambda(lambda, "BroadcastFunction")
        .invoke(&roomcast_client::Broadcast::new(
            roomcast_client::Audience::room("hist:1"),
            "news",
        ))
        .await
        .expect("broadcast");
    for client in [&mut alice, &mut bob] {
        let event = client.next_json().await;
        assert_eq!(
            (&event["event"], &event["offset"]),
            (&json!("news"), &json!(1)),
            "{event}"
        );
    }
    // $disconnect: bob's departure is announced.
    bob.close().await;
    let left = alice.next_json().await;
    assert_eq!(
        (&left["type"], &left["change"]),
        (&json!("presence"), &json!("leave")),
        "{left}"
    );
    alice.close().await;
    running.shutdown().await.expect("clean shutdown");
}
