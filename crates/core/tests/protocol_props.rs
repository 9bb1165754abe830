//! Property tests: no input makes frame parsing panic, and every refusal is a typed
//! error frame. Arbitrary strings, then structured near-valid frames (right shape,
//! wrong types, sizes, escapes and nesting).

use proptest::prelude::*;
use roomcast_core::protocol::{
    ClientFrame, ErrorCode, MAX_DEPTH, MAX_EVENT_BYTES, MAX_HISTORY_LIMIT, MAX_ROOM_BYTES,
    ServerFrame, parse,
};
use serde_json::{Value, json};

const MAX: usize = 32 * 1024;

/// Parses `body` and checks what any outcome must satisfy.
fn check(body: &str, max: usize) {
    let request = parse(body, max);
    match &request.frame {
        Ok(frame) => {
            assert!(body.len() <= max);
            match frame {
                ClientFrame::Join { room, .. }
                | ClientFrame::Leave { room }
                | ClientFrame::Presence { room, .. } => {
                    assert!(!room.is_empty() && room.len() <= MAX_ROOM_BYTES);
                }
                ClientFrame::History { room, limit, .. } => {
                    assert!(!room.is_empty() && room.len() <= MAX_ROOM_BYTES);
                    assert!((1..=MAX_HISTORY_LIMIT).contains(limit));
                }
                ClientFrame::Send { room, event, data } => {
                    assert!(!room.is_empty() && room.len() <= MAX_ROOM_BYTES);
                    assert!(!event.is_empty() && event.len() <= MAX_EVENT_BYTES);
                    // `data` is forwarded verbatim, so it must be JSON on its own.
                    assert!(serde_json::from_str::<Value>(data.get()).is_ok());
                }
                ClientFrame::Ping => {}
            }
        }
        Err(e) => {
            // The error frame serializes to JSON with the code and any id.
            let frame: Value =
                serde_json::from_str(&ServerFrame::error(request.id, e).to_json()).unwrap();
            assert_eq!(frame["type"], "error");
            assert_eq!(frame["code"], json!(e.code));
            if body.len() > max {
                assert_eq!(e.code, ErrorCode::TooLarge);
            }
        }
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field value that is often right and often subtly wrong.
fn near_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[A-Za-z0-9_.:@-]{1,20}".prop_map(Value::String),
        1 => "[A-Za-z0-9_.:@-]{120,140}".prop_map(Value::String),
        1 => ".{0,20}".prop_map(Value::String),
        1 => Just(Value::String(String::new())),
        1 => json_value(),
    ]
}

/// A `since` that is often right and often has a wrong type or a negative offset.
fn near_since() -> impl Strategy<Value = Value> {
    prop_oneof![
        (any::<i64>(), near_string()).prop_map(|(o, e)| json!({"offset": o, "epoch": e})),
        (0u64..10, "[0-9a-f]{16}").prop_map(|(o, e)| json!({"offset": o, "epoch": e})),
        json_value(),
    ]
}

fn near_frame() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(json!("join")),
            Just(json!("leave")),
            Just(json!("send")),
            Just(json!("ping")),
            Just(json!("history")),
            Just(json!("presence")),
            near_string(),
        ],
        prop::option::of(near_string()),
        prop::option::of(near_string()),
        prop::option::of(json_value()),
        prop::option::of(prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            near_string()
        ]),
        0..(MAX_DEPTH + 4),
        any::<bool>(),
        prop::option::of(near_since()),
        prop::option::of(json_leaf()),
    )
        .prop_map(
            |(action, room, event, data, id, depth, escape, since, number)| {
                let mut frame = json!({"action": action});
                if let Some(since) = since {
                    frame["since"] = since;
                }
                if let Some(number) = number {
                    frame["limit"] = number.clone();
                    frame["before"] = number;
                }
                if let Some(room) = room {
                    frame["room"] = room;
                }
                if let Some(event) = event {
                    frame["event"] = event;
                }
                if let Some(id) = id {
                    frame["id"] = id;
                }
                let mut data = data.unwrap_or(Value::Null);
                for _ in 0..depth {
                    data = json!([data]);
                }
                frame["data"] = data;
                let text = frame.to_string();
                // Escaped keys and values decode to the same frame and must parse alike.
                if escape {
                    text.replace("action", "\\u0061ction")
                        .replace("room", "r\\u006fom")
                } else {
                    text
                }
            },
        )
}

#[test]
fn since_and_history_refusals_are_bad_requests() {
    for body in [
        r#"{"action":"join","room":"r","since":{"offset":-1,"epoch":"e"},"id":1}"#,
        r#"{"action":"join","room":"r","since":{"offset":"3","epoch":"e"},"id":1}"#,
        r#"{"action":"join","room":"r","since":[],"id":1}"#,
        r#"{"action":"history","room":"r","limit":"5","id":1}"#,
        r#"{"action":"history","room":"r","limit":5,"before":"x","id":1}"#,
    ] {
        let request = parse(body, MAX);
        assert_eq!(request.id.map(|i| i.get()), Some("1"), "{body}");
        assert_eq!(
            request.frame.unwrap_err().code,
            ErrorCode::BadRequest,
            "{body}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(body in ".{0,300}") {
        check(&body, MAX);
        check(&body, 16);
    }

    #[test]
    fn arbitrary_bytes_as_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&String::from_utf8_lossy(&bytes), MAX);
    }

    #[test]
    fn bracket_soup_never_panics(body in r#"[\[\]{}":,\\a0 ]{0,400}"#) {
        check(&body, MAX);
    }

    #[test]
    fn near_valid_frames_never_panic(body in near_frame()) {
        check(&body, MAX);
        check(&body, body.len().saturating_sub(1));
    }
}
