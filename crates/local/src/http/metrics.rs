//! `GET /metrics`: the gateway's counters in the Prometheus text format (the same
//! names as the deployed functions' EMF metrics, docs/operations.md), with the
//! fan-out latency histogram and the gateway's gauges, then the `@connections`
//! call counts and, per room with simulated members, its figures
//! ([`simulated_text`]).

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use roomcast_core::metrics::prometheus::{self, Gauge};
use std::fmt::Write as _;

use crate::gateway::Gateway;
use crate::http::api::METRICS_PATH;
use crate::http::guard;
use crate::simulated::RoomFigures;

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
    let mut text = prometheus::render(&gateway.app().metrics.snapshot(), &gauges(&gateway));
    text.push_str(&simulated_text(&gateway));
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

/// A family of the simulated rooms' figures: name, type, help, and its value
/// for one room.
type RoomFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&RoomFigures) -> f64,
);

const ROOM_FAMILIES: [RoomFamily; 8] = [
    (
        "simulated_members",
        "gauge",
        "Simulated members of the room.",
        |r| r.members as f64,
    ),
    (
        "simulated_posts_accepted_total",
        "counter",
        "Posts to the room's simulated members accepted.",
        |r| r.posts_accepted as f64,
    ),
    (
        "simulated_min_per_member",
        "gauge",
        "The fewest posts one simulated member of the room accepted.",
        |r| r.min_per_member as f64,
    ),
    (
        "simulated_max_per_member",
        "gauge",
        "The most posts one simulated member of the room accepted.",
        |r| r.max_per_member as f64,
    ),
    (
        "simulated_repeats_total",
        "counter",
        "Frames a simulated member got again (the same offset as its last).",
        |r| r.repeats as f64,
    ),
    (
        "simulated_out_of_order_total",
        "counter",
        "Frames a simulated member got after a later one (a smaller offset).",
        |r| r.out_of_order as f64,
    ),
    (
        "simulated_first_post_ms",
        "gauge",
        "Epoch milliseconds of the room's first accepted post (0: none yet).",
        |r| r.first_post_ms.map_or(0.0, |t| t as f64),
    ),
    (
        "simulated_last_post_ms",
        "gauge",
        "Epoch milliseconds of the room's last accepted post (0: none yet).",
        |r| r.last_post_ms.map_or(0.0, |t| t as f64),
    ),
];

/// The `@connections` call counts, the quota, and each simulated room's figures
/// (labelled `room`), in the Prometheus text format.
pub fn simulated_text(gateway: &Gateway) -> String {
    let mut out = String::new();
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP roomcast_{name} {help}");
        let _ = writeln!(out, "# TYPE roomcast_{name} {kind}");
    };
    let (calls, throttled) = gateway.management_calls();
    let rps = gateway.options().management_rps;
    let totals = [
        (
            "management_calls_total",
            "counter",
            "@connections calls (POST, GET, DELETE) the gateway received.",
            Some(calls as f64),
        ),
        (
            "management_throttled_total",
            "counter",
            "@connections calls answered 429 by the --management-rps quota.",
            Some(throttled as f64),
        ),
        (
            "management_quota_rps",
            "gauge",
            "The --management-rps quota, calls per second.",
            (rps > 0.0).then_some(rps),
        ),
    ];
    for (name, kind, help, value) in totals {
        if let Some(value) = value {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "roomcast_{name} {value}");
        }
    }
    let rooms = gateway.simulated().figures();
    if rooms.is_empty() {
        return out;
    }
    for (name, kind, help, value) in ROOM_FAMILIES {
        header(&mut out, name, kind, help);
        for room in &rooms {
            let label = room.room.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "roomcast_{name}{{room=\"{label}\"}} {}", value(room));
        }
    }
    out
}
