//! A room fan-out tells members whose token has expired (`token_expired`) and
//! closes them, instead of skipping them; members whose membership ended by its
//! TTL, with no token behind it, are left alone.

mod support;

use bytes::Bytes;
use roomcast_core::fanout::Fanout;
use roomcast_core::store::{Connection, Member, now_secs};
use support::harness;

const ENDPOINT: &str = "https://example.test/prod";

fn connection(id: &str, token_expires_at: Option<u64>, expires_at: u64) -> Connection {
    Connection {
        connection_id: id.to_owned(),
        connected_at: 0,
        user_id: token_expires_at.map(|_| "alice".to_owned()),
        roles: Vec::new(),
        token_expires_at,
        expires_at,
    }
}

#[tokio::test]
async fn a_room_fanout_closes_members_whose_token_expired() {
    let h = harness();
    let now = now_secs();
    let members = [
        // Live, with a token.
        ("live=", Some(now + 600), now + 600),
        // Its token expired 10 s ago: the membership ended with it.
        ("expired=", Some(now - 10), now - 9),
        // Anonymous, its items past their TTL: left to expire.
        ("stale=", None, now - 5),
    ];
    for (id, token, expires_at) in members {
        h.store
            .put_connection(&connection(id, token, expires_at))
            .await
            .unwrap();
        let member = Member {
            connection_id: id.to_owned(),
            user_id: None,
            expires_at,
        };
        h.store.join("chat:1", &member).await.unwrap();
    }
    let fanout = Fanout::for_app(&h.app, ENDPOINT);
    let stats = fanout
        .to_room("chat:1", None, Bytes::from_static(br#"{"n":1}"#), now)
        .await
        .unwrap();
    // Only the live member is a recipient.
    assert_eq!((stats.recipients, stats.delivered), (1, 1));
    assert_eq!(
        h.management.received("live="),
        [serde_json::json!({"n": 1})]
    );
    // The expired one is told, without an id, then deleted.
    let told = h.management.received("expired=");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["type"], "error");
    assert_eq!(told[0]["code"], "token_expired");
    assert!(told[0].get("id").is_none(), "{told:?}");
    assert!(h.management.gone.lock().unwrap().contains("expired="));
    // The stale one gets nothing.
    assert!(h.management.received("stale=").is_empty());
    assert!(!h.management.gone.lock().unwrap().contains("stale="));
}
