//! `roomcast bench --mode joins` against `roomcast dev` (in-memory store): every
//! cycle started is a join and a leave, each answered by an ack, and the JSON
//! report counts them. No figure depends on the machine's speed: the counts are
//! checked against each other, not against the target rate.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

#[test]
fn joins_and_leaves_are_counted_and_acked() {
    let mut dev = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["dev", "--port", "0", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("roomcast dev starts");
    let stdout = dev.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, url)) = line.split_once("WebSocket URL:") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the banner in time");
    let out = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["bench", "--mode", "joins", "--url", &url, "--json"])
        .args([
            "--connections",
            "20",
            "--joins-per-sec",
            "50",
            "--duration-secs",
            "1",
        ])
        .output()
        .expect("the bench runs");
    let _ = dev.kill();
    let _ = dev.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["connections"], 20);
    let joins = &report["joins"];
    let attempted = joins["attempted"].as_u64().expect("a count");
    assert!(attempted > 0, "{report}");
    assert_eq!(joins["acked"], attempted, "{report}");
    assert_eq!(joins["errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["leaves"]["acked"], attempted, "{report}");
    // Started or not, each of the 50 cycles due in the second is counted once.
    let not_started = report["not_started"].as_u64().expect("a count");
    assert_eq!(attempted + not_started, 50, "{report}");
    assert!(report["proxy"].is_null());
}
