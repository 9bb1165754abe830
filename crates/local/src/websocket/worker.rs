//! The events a connection runs besides `$connect`: each frame's message event
//! (route selection, the integration, the route response and API Gateway's own
//! error frames) and `$disconnect`.

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;
use axum::extract::ws::Message;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use roomcast_core::store::now_millis;

use crate::connections::registry::{Command, CommandSender};
use crate::events::{ConnectionContext, gateway_id};
use crate::functions::function::InvokeError;
use crate::functions::route;
use crate::gateway::Gateway;
use crate::routes::Selected;

/// A text frame from the client, waiting for its message event.
pub(crate) type Inbound = String;

/// Runs one frame's message event and sends the integration response body back to
/// the client (the `$default` route response) through the connection's command queue.
pub(crate) async fn message_worker(
    gateway: Gateway,
    context: Arc<ConnectionContext>,
    frame: Inbound,
    commands: CommandSender,
) {
    let route = match gateway.routes().select(Some(&frame)) {
        Selected::Route(route) => route,
        Selected::NoRoute => {
            // No matching route and no $default: API Gateway answers the client
            // itself, without invoking anything.
            let refusal = gateway_error("Forbidden", &context.connection_id, &gateway_id());
            let _ = commands.send(Command::Send(refusal)).await;
            return;
        }
    };
    let event = match context.message(&route.key, frame, now_millis()) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(error = %e, "could not build a message event");
            return;
        }
    };
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let reply = match route::invoke(route, event).await {
        // Only a route with a route response sends the integration's body back,
        // within the message payload limit that applies to every frame.
        Ok(answer) if route.two_way => match response_frame(answer) {
            Some(frame) if frame_len(&frame) > gateway.options().max_message_bytes => {
                tracing::warn!(
                    connection_id = %context.connection_id,
                    route = %route.key,
                    bytes = frame_len(&frame),
                    "the route response is over the message payload limit"
                );
                Some(gateway_error(
                    "Internal server error",
                    &context.connection_id,
                    &request_id,
                ))
            }
            frame => frame,
        },
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(connection_id = %context.connection_id, route = %route.key, error = %e, "integration failed");
            let message = match e {
                InvokeError::TimedOut => "Endpoint request timed out",
                InvokeError::Failed => "Internal server error",
            };
            Some(gateway_error(message, &context.connection_id, &request_id))
        }
    };
    if let Some(reply) = reply {
        // Behind whatever was queued for the client meanwhile; an error means the
        // connection is gone, and the reply with it.
        let _ = commands.send(Command::Send(reply)).await;
    }
}

/// A frame API Gateway itself sends the client: `{"message", "connectionId", "requestId"}`.
fn gateway_error(message: &str, connection_id: &str, request_id: &str) -> Message {
    Message::text(
        serde_json::json!({
            "message": message,
            "connectionId": connection_id,
            "requestId": request_id,
        })
        .to_string(),
    )
}

/// A data frame's payload size.
fn frame_len(frame: &Message) -> usize {
    match frame {
        Message::Text(text) => text.len(),
        Message::Binary(data) => data.len(),
        _ => 0,
    }
}

/// The integration response body as the frame the route response sends; no body, no frame.
fn response_frame(answer: ApiGatewayProxyResponse) -> Option<Message> {
    match answer.body? {
        Body::Empty => None,
        Body::Text(text) if answer.is_base64_encoded => STANDARD
            .decode(text.as_bytes())
            .ok()
            .map(|data| Message::Binary(data.into())),
        Body::Text(text) => Some(Message::text(text)),
        Body::Binary(data) => Some(Message::Binary(data.into())),
        _ => None,
    }
}

pub(crate) async fn run_disconnect(
    gateway: &Gateway,
    context: &ConnectionContext,
    code: u16,
    reason: &str,
) {
    let event = match context.disconnect(code, reason, now_millis()) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(error = %e, "could not build the $disconnect event");
            return;
        }
    };
    let connection_id = &context.connection_id;
    let Some(route) = gateway.routes().disconnect() else {
        return;
    };
    match route::invoke(route, event).await {
        Ok(answer) => {
            tracing::debug!(%connection_id, code, status = answer.status_code, "$disconnect ran")
        }
        Err(e) => tracing::warn!(%connection_id, error = %e, "$disconnect failed"),
    }
}
