//! The model's tests: roomcast's own template, and small templates in long and
//! short forms with what each reports.

use std::time::Duration;

use super::*;

pub(super) fn real() -> Template {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
    Template::from_file(path).expect("template.yaml parses")
}

pub(super) fn pseudo() -> Pseudo {
    Pseudo {
        region: "eu-west-1".into(),
        stack_name: "local".into(),
    }
}

#[test]
fn reads_the_real_template() {
    let t = real();
    assert_eq!(t.api_logical_id, "WebSocketApi");
    assert_eq!(t.selection, RouteSelection::action());
    let keys: Vec<&str> = t.routes.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "$connect",
            "$default",
            "$disconnect",
            "history",
            "join",
            "leave",
            "ping",
            "presence",
            "send"
        ]
    );
    assert_eq!(
        t.routes["$connect"].function.as_deref(),
        Some("ConnectFunction")
    );
    assert_eq!(
        t.routes["$disconnect"].function.as_deref(),
        Some("DisconnectFunction")
    );
    for key in [
        "$default", "join", "leave", "send", "ping", "history", "presence",
    ] {
        assert_eq!(
            t.routes[key].function.as_deref(),
            Some("MessageFunction"),
            "{key}"
        );
        assert!(t.routes[key].two_way, "{key}");
    }
    assert!(!t.routes["$connect"].two_way);
    let authorizer = t.authorizer.as_ref().expect("the $connect authorizer");
    assert_eq!(authorizer.function, "AuthorizerFunction");
    assert!(authorizer.identity_sources.is_empty());
    assert_eq!(
        t.functions["MessageFunction"].binary.as_deref(),
        Some("message")
    );
    assert_eq!(
        t.functions["MessageFunction"].timeout,
        Some(Duration::from_secs(29))
    );
    assert_eq!(
        t.functions["ConnectFunction"].timeout,
        Some(Duration::from_secs(10))
    );
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    assert_eq!(
        t.routed_functions(),
        [
            "AuthorizerFunction",
            "ConnectFunction",
            "DisconnectFunction",
            "MessageFunction"
        ]
    );
}

const SMALL: &str = r#"
Parameters:
  Stage: {Type: String, Default: dev}
Globals:
  Function:
    Timeout: 5
    Environment:
      Variables: {A: !Ref Stage, B: !Sub "x-${AWS::Region}-${Stage}", C: !GetAtt T.Arn}
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: "$request.body.op"}
  Fn:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: message}}
    Properties:
      Environment: {Variables: {B: own}}
  Lambda:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      TimeoutInMillis: 3000
      IntegrationUri: !Join ["", ["arn:aws:apigateway:r:lambda:path/2015-03-31/functions/", !GetAtt Fn.Arn, "/invocations"]]
  Http:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {ApiId: !Ref Api, IntegrationType: HTTP_PROXY, IntegrationUri: "https://example.com"}
  Missing:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Other.Arn}/invocations"
  Bare:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {ApiId: !Ref Api, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Fn.Arn}
  Default:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: $default, Target: !Join ["/", [integrations, !Ref Lambda]]}
  Echo:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: echo, Target: {"Fn::Sub": "integrations/${Lambda}"}}
  EchoResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !Ref Echo, RouteResponseKey: $default}
  Proxy:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: proxy, Target: !Sub "integrations/${Http}"}
  Lost:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: lost, Target: !Sub "integrations/${Missing}"}
  Weird:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: weird, Target: !If [c, a, b]}
"#;

#[test]
fn small_template_long_and_short_forms_and_what_is_reported() {
    let t = Template::parse(SMALL).unwrap();
    assert_eq!(t.selection.path, ["op"]);
    let keys: Vec<&str> = t.routes.keys().map(String::as_str).collect();
    // Unmappable routes keep their keys (they fail rather than fall to $default).
    assert_eq!(keys, ["$default", "echo", "lost", "proxy", "weird"]);
    assert_eq!(t.routes["echo"].function.as_deref(), Some("Fn"));
    for key in ["lost", "proxy", "weird"] {
        assert_eq!(t.routes[key].function, None, "{key}");
    }
    assert!(t.routes["echo"].two_way);
    assert!(!t.routes["$default"].two_way);
    assert_eq!(t.routes["echo"].timeout, Some(Duration::from_secs(3)));
    assert!(t.authorizer.is_none());
    let text: Vec<String> = t.diagnostics.iter().map(ToString::to_string).collect();
    let has = |needle: &str| text.iter().any(|d| d.contains(needle));
    assert!(
        has("Http: IntegrationType HTTP_PROXY is not emulated"),
        "{text:?}"
    );
    assert!(
        has("Missing: IntegrationUri: Other is not an AWS::Serverless::Function"),
        "{text:?}"
    );
    assert!(has("Proxy: Target"), "{text:?}");
    assert!(
        has("Bare: IntegrationUri: \"${Fn.Arn}\" is not of the form"),
        "{text:?}"
    );
    assert!(has("Lost: Target"), "{text:?}");
    assert!(
        has("Weird: Target: the intrinsic Fn::If cannot be resolved locally"),
        "{text:?}"
    );

    let f = &t.functions["Fn"];
    assert_eq!(f.timeout, Some(Duration::from_secs(5)));
    let (env, diagnostics) = resolve_environment(&t, &EnvFile::default(), &pseudo());
    assert_eq!(env["Fn"]["A"], "dev");
    assert_eq!(env["Fn"]["B"], "own");
    assert!(!env["Fn"].contains_key("C"));
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert!(
        diagnostics[0].message.contains("C is left unset"),
        "{diagnostics:?}"
    );
}

const CONDITIONS: &str = r#"
Parameters:
  Env: {Type: String, Default: dev}
  Zone: {Type: String}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  IsDev: !Not [!Condition IsProd]
  Both: {"Fn::And": [{"Condition": IsDev}, {"Fn::Equals": [a, a]}]}
  InRegion: !Equals [!Ref "AWS::Region", us-east-1]
  InZone: !Equals [!Ref Zone, z]
  Loop: !Or [!Condition Loop]
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: "$request.body.action"}
  HttpApi:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: HTTP}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          GREETING: !Sub ["${Hello}-${Env}-${AWS::Region}", {Hello: !Join ["", [h, i]]}]
          ARN: !Sub ["${X}", {X: !GetAtt T.Arn}]
  Lambda:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !GetAtt Api.ApiId
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations"
  Auth:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: {"Fn::GetAtt": [Api, ApiId]}
      AuthorizerType: REQUEST
      IdentitySource: [route.request.querystring.token]
      AuthorizerUri: !Sub "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations"
  Connect:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !GetAtt Api.ApiId
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !GetAtt Auth.AuthorizerId
      Target: !Sub "integrations/${Lambda}"
  Echo:
    Type: AWS::ApiGatewayV2::Route
    Condition: Both
    Properties: {ApiId: !Ref Api, RouteKey: echo, Target: !Sub "integrations/${Lambda}"}
  EchoResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !GetAtt Echo.RouteId, RouteResponseKey: $default}
  OtherKey:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !Ref Connect, RouteResponseKey: custom}
  Orphan:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !Ref Nothing, RouteResponseKey: $default}
  ProdOnly:
    Type: AWS::ApiGatewayV2::Route
    Condition: IsProd
    Properties: {ApiId: !Ref Api, RouteKey: prod, Target: !Sub "integrations/${Lambda}"}
  RegionRoute:
    Type: AWS::ApiGatewayV2::Route
    Condition: InRegion
    Properties: {ApiId: !Ref Api, RouteKey: region, Target: !Sub "integrations/${Lambda}"}
  ZoneRoute:
    Type: AWS::ApiGatewayV2::Route
    Condition: InZone
    Properties: {ApiId: !Ref Api, RouteKey: zone, Target: !Sub "integrations/${Lambda}"}
  LoopRoute:
    Type: AWS::ApiGatewayV2::Route
    Condition: Loop
    Properties: {ApiId: !Ref Api, RouteKey: loop, Target: !Sub "integrations/${Lambda}"}
  Imported:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !ImportValue shared-api, RouteKey: imported, Target: !Sub "integrations/${Lambda}"}
  HttpRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref HttpApi, RouteKey: "GET /x"}
"#;

#[test]
fn api_references_conditions_and_route_responses() {
    let t = Template::parse(CONDITIONS).unwrap();
    let keys: Vec<&str> = t.routes.keys().map(String::as_str).collect();
    // ProdOnly's condition is false; Imported and the HTTP API's route are not this API's.
    assert_eq!(keys, ["$connect", "echo", "loop", "region", "zone"]);
    for route in t.routes.values() {
        assert_eq!(route.function.as_deref(), Some("Fn"), "{}", route.key);
    }
    let authorizer = t
        .authorizer
        .as_ref()
        .expect("the authorizer named by !GetAtt");
    assert_eq!(authorizer.logical_id, "Auth");
    assert!(t.routes["echo"].two_way, "RouteId by !GetAtt Echo.RouteId");
    assert!(
        !t.routes["$connect"].two_way,
        "RouteResponseKey custom is not $default"
    );

    let text: Vec<String> = t.diagnostics.iter().map(ToString::to_string).collect();
    let has = |needle: &str| text.iter().any(|d| d.contains(needle));
    for needle in [
        "ProdOnly: Condition IsProd is false with the parameters' defaults: left out",
        "RegionRoute: Condition InRegion cannot be evaluated locally \
             (AWS::Region is known only once deployed): served",
        "ZoneRoute: Condition InZone cannot be evaluated locally (parameter Zone has no Default)",
        "LoopRoute: Condition Loop cannot be evaluated locally (condition Loop refers to itself)",
        "Imported: ApiId does not name an AWS::ApiGatewayV2::Api of this template",
        "OtherKey: RouteResponseKey custom: WebSocket APIs take only $default",
        "Orphan: RouteId does not name an AWS::ApiGatewayV2::Route",
    ] {
        assert!(has(needle), "{needle:?} not in {text:#?}");
    }
    assert_eq!(text.len(), 7, "nothing else is reported: {text:#?}");

    let (env, diagnostics) = resolve_environment(&t, &EnvFile::default(), &pseudo());
    assert_eq!(
        env["Fn"]["GREETING"],
        format!("hi-dev-{}", pseudo().region),
        "Fn::Sub's list form"
    );
    assert!(!env["Fn"].contains_key("ARN"));
    let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|d| d.contains("ARN is left unset: Fn::GetAtt cannot be resolved")),
        "{text:?}"
    );
}

#[test]
fn templates_that_cannot_be_served_are_errors() {
    assert!(matches!(
        Template::parse("Resources: {}"),
        Err(TemplateError::NoWebSocketApi)
    ));
    assert!(matches!(
        Template::parse(": : :"),
        Err(TemplateError::Yaml(_))
    ));
    let bad = "Resources:\n  A:\n    Type: AWS::ApiGatewayV2::Api\n    Properties: \
                   {ProtocolType: WEBSOCKET, RouteSelectionExpression: \"$request.header.x\"}\n";
    let err = Template::parse(bad).unwrap_err().to_string();
    assert!(err.contains("$request.header.x"), "{err}");
}

/// Properties the emulator cannot honour are named, never skipped in silence.
const UNHONOURED: &str = r#"
Globals:
  Function:
    Timeout: soon
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Condition: [not, a, name]
    Metadata: {BuildProperties: {Binary: message}}
    Properties: {Timeout: later, Environment: {Variables: [A, B]}}
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {RouteSelectionExpression: $request.body.action, ProtocolType: WEBSOCKET}
  Lambda:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      TimeoutInMillis: {n: 3}
      IntegrationUri: !Sub arn:aws:apigateway:r:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations
  Auth:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Api
      AuthorizerType: REQUEST
      IdentitySource: [route.request.header.Auth, context.token, 5]
      AuthorizerUri: !Sub arn:aws:apigateway:r:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations
  Connect:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: $connect, AuthorizationType: CUSTOM, AuthorizerId: !Ref Auth, Target: !Sub "integrations/${Lambda}"}
  Keyed:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: keyed, ApiKeyRequired: true, Target: !Sub "integrations/${Lambda}"}
"#;

#[test]
fn what_cannot_be_honoured_is_named_with_resource_and_property() {
    let t = Template::parse(UNHONOURED).unwrap();
    let said = |id: &str, words: &str| {
        t.diagnostics
            .iter()
            .any(|d| d.logical_id == id && d.message.contains(words))
    };
    assert!(
        said("Globals", "Timeout is not a whole number"),
        "{:?}",
        t.diagnostics
    );
    assert!(said("Fn", "Timeout is not a whole number"));
    assert!(said("Fn", "Environment.Variables is not a map"));
    assert!(said("Fn", "Condition is not the name of a condition"));
    assert!(said("Lambda", "TimeoutInMillis is not a whole number"));
    assert!(said(
        "Auth",
        "IdentitySource context.token is not checked locally"
    ));
    assert!(said("Auth", "IdentitySource entry is not a plain string"));
    assert!(said("Keyed", "ApiKeyRequired is not emulated"));
    // What can be honoured still is.
    let function = &t.functions["Fn"];
    assert_eq!(function.timeout, None);
    assert!(function.environment.is_empty());
    assert_eq!(t.routes["keyed"].function.as_deref(), Some("Fn"));
    assert_eq!(t.routes["keyed"].timeout, None);
    let authorizer = t.authorizer.as_ref().unwrap();
    assert_eq!(
        authorizer.identity_sources,
        ["route.request.header.Auth", "context.token"]
    );
}
