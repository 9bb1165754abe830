//! Route handlers: plain async functions from an API Gateway WebSocket event to the
//! integration response. They never fail: every error becomes a status (for
//! `$connect` and `$disconnect`) or an error frame (for message routes), so a bad
//! request costs one reply and never a Lambda error.

mod connect;
mod disconnect;
mod message;

pub use connect::connect;
pub use disconnect::disconnect;
pub use message::message;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;

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
