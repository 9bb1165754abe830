//! `GET /@simulated`: the simulated members' figures as JSON (`crate::simulated`),
//! for `roomcast bench --mode bigroom` and scripts. Behind the management routes'
//! guard, and answered to loopback peers only (403 otherwise): the figures are
//! the emulator's own, not an AWS API.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::aws::AwsError;
use crate::gateway::Gateway;
use crate::http::api::SIMULATED_PATH;
use crate::http::guard;
use crate::simulated::RoomFigures;

/// The answer's shape.
#[derive(Debug, Serialize)]
struct Figures {
    /// `--management-rps`, when a quota is set.
    management_rps: Option<f64>,
    /// `@connections` calls received, and those the quota answered 429.
    management_calls: u64,
    management_throttled: u64,
    rooms: Vec<RoomFigures>,
}

/// `GET /@simulated` behind the guard.
pub(crate) fn route(gateway: &Gateway) -> Router<Gateway> {
    let guard = axum::middleware::from_fn_with_state(gateway.clone(), guard::check);
    Router::new().route(SIMULATED_PATH, get(figures).route_layer(guard))
}

async fn figures(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if !peer.ip().is_loopback() {
        return AwsError::forbidden_because(
            "the simulated members' figures are served to loopback only",
        )
        .into_response();
    }
    let (management_calls, management_throttled) = gateway.management_calls();
    let rps = gateway.options().management_rps;
    let figures = Figures {
        management_rps: (rps > 0.0).then_some(rps),
        management_calls,
        management_throttled,
        rooms: gateway.simulated().figures(),
    };
    let body = serde_json::to_string(&figures).unwrap_or_default();
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}
