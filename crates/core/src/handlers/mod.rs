//! Route handlers: plain async functions from an API Gateway WebSocket event to the
//! integration response. They never fail: every error becomes a status (for
//! `$connect` and `$disconnect`) or an error frame (for message routes), so a bad
//! request costs one reply and never a Lambda error.
//!
//! [`Integration`] is the table of them: which handler a route's events go to and
//! which function binary runs it, shared by the Lambda entry point
//! ([`crate::lambda`]) and `roomcast dev`.

mod connect;
mod disconnect;
mod message;

pub use connect::connect;
pub use disconnect::disconnect;
pub use message::message;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;

use crate::App;
use crate::names::binary;

/// Which handler an event goes to (the integration of its route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integration {
    Connect,
    Disconnect,
    Message,
}

impl Integration {
    /// Every integration, each with the function binary that runs it.
    pub const ALL: [Self; 3] = [Self::Connect, Self::Disconnect, Self::Message];

    /// The handler a function binary runs; `None` for binaries without a
    /// WebSocket route handler (the authorizer, broadcast).
    pub fn from_binary(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.binary() == name)
    }

    /// The function binary (functions/*) that runs this handler.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Connect => binary::CONNECT,
            Self::Disconnect => binary::DISCONNECT,
            Self::Message => binary::MESSAGE,
        }
    }

    /// Runs this integration's handler on `request`.
    pub async fn call(
        self,
        app: &App,
        request: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        match self {
            Self::Connect => connect(app, request).await,
            Self::Disconnect => disconnect(app, request).await,
            Self::Message => message(app, request).await,
        }
    }
}

/// A response with only a status code.
pub(crate) fn status(code: i64) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = code;
    response
}

/// A 200 whose body API Gateway sends back to the client (the route has a route response).
pub(crate) fn reply(body: String) -> ApiGatewayProxyResponse {
    let mut response = status(200);
    response.body = Some(Body::Text(body));
    response
}
