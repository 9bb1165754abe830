//! `GET /metrics`: the gateway's counters in the Prometheus text format (the same
//! names as the deployed functions' EMF metrics, docs/operations.md), with the
//! fan-out latency histogram and the gateway's gauges.

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use roomcast_core::metrics::prometheus::{self, Gauge};

use crate::gateway::Gateway;
use crate::http::api::METRICS_PATH;
use crate::http::guard;

/// `router` with `GET /metrics` behind the management routes' guard, unless the
/// stage is itself named `metrics` (its WebSocket route has the path then).
pub(crate) fn route(
    router: Router<Gateway>,
    stage_path: &str,
    gateway: &Gateway,
) -> Router<Gateway> {
    if stage_path == METRICS_PATH {
        return router;
    }
    let guard = axum::middleware::from_fn_with_state(gateway.clone(), guard::check);
    router.route(METRICS_PATH, get(metrics).route_layer(guard))
}

async fn metrics(State(gateway): State<Gateway>) -> impl IntoResponse {
    let text = prometheus::render(&gateway.app().metrics.snapshot(), &gauges(&gateway));
    ([(CONTENT_TYPE, prometheus::CONTENT_TYPE)], text)
}

/// The gateway's gauges, read now.
pub fn gauges(gateway: &Gateway) -> Vec<Gauge> {
    let mut gauges = vec![Gauge {
        name: "roomcast_open_connections",
        help: "WebSocket connections open on the gateway.",
        value: gateway.connections().len() as f64,
    }];
    if let Some(rooms) = gateway.app().store.room_count() {
        gauges.push(Gauge {
            name: "roomcast_rooms",
            help: "Rooms with at least one member (in-memory store only).",
            value: rooms as f64,
        });
    }
    if let Some(bytes) = resident_memory_bytes() {
        gauges.push(Gauge {
            name: "process_resident_memory_bytes",
            help: "Resident memory of the roomcast dev process.",
            value: bytes as f64,
        });
    }
    gauges
}

/// The process's resident set size, from `/proc/self/status` (Linux only).
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
