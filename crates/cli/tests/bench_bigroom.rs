//! `roomcast bench --mode bigroom` against `roomcast dev --simulated-members`:
//! the JSON report's counts, checked against what the run must add up to. No
//! figure depends on the machine's speed: without a quota every post arrives;
//! with a burst of 20 that refills one call every 100 s, exactly 20 do.

mod support;

use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde_json::{Value, json};

/// `roomcast dev` on a free port with `flags`, and its WebSocket URL.
fn dev(flags: &[&str]) -> (Child, String) {
    let mut args = vec!["--port", "0", "--quiet"];
    args.extend_from_slice(flags);
    let (child, lines): (Child, Receiver<String>) =
        support::spawn_dev(&args, |c| c.stderr(Stdio::null()));
    let url = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the banner in time");
        if let Some((_, url)) = line.split_once("WebSocket URL:") {
            break url.trim().to_owned();
        }
    };
    // The banner's last line comes once the simulated members are in the store.
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) {
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    (child, url)
}

/// Runs the bench in `--mode bigroom --json` with `flags` against `url`.
fn bench(url: &str, flags: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["bench", "--mode", "bigroom", "--url", url, "--json"])
        .args(["--room", "big"])
        .args(flags)
        .output()
        .expect("the bench runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

#[test]
fn every_member_gets_every_event_once() {
    let (mut dev, url) = dev(&["--simulated-members", "big=2000"]);
    let report = bench(&url, &["--connections", "10", "--messages", "3"]);
    let _ = dev.kill();
    let _ = dev.wait();
    assert_eq!(report["members"], 2010, "{report}");
    assert_eq!(report["expected_posts"], 3 * 2010, "{report}");
    assert_eq!(report["complete"], true, "{report}");
    for count in ["lost", "duplicates", "out_of_order", "throttled_429"] {
        assert_eq!(report[count], 0, "{count}: {report}");
    }
    assert_eq!(report["simulated_exactly_once"], true, "{report}");
    let simulated = &report["simulated"];
    assert_eq!(simulated["posts_accepted"], 3 * 2000, "{report}");
    assert_eq!(
        (&simulated["min_per_member"], &simulated["max_per_member"]),
        (&json!(3), &json!(3))
    );
    assert_eq!(report["real"]["received"], 3 * 10, "{report}");
    assert_eq!(report["management_calls"], 3 * 2010, "{report}");
    assert!(report["quota_rps"].is_null(), "no quota: no bound");
    assert!(report["fanout_secs"].as_f64().is_some(), "{report}");
}

#[test]
fn past_the_quota_exactly_the_burst_is_delivered() {
    let (mut dev, url) = dev(&[
        "--simulated-members",
        "big=50",
        "--management-rps",
        "0.01",
        "--management-burst",
        "20",
    ]);
    let report = bench(&url, &["--connections", "2", "--messages", "1"]);
    let _ = dev.kill();
    let _ = dev.wait();
    assert_eq!(report["expected_posts"], 52, "{report}");
    assert_eq!(report["complete"], false, "{report}");
    assert_eq!(report["lost"], 52 - 20, "{report}");
    let delivered = report["simulated"]["posts_accepted"].as_u64().unwrap()
        + report["real"]["received"].as_u64().unwrap();
    assert_eq!(delivered, 20, "{report}");
    assert_eq!(report["quota_rps"], 0.01, "{report}");
    assert_eq!(report["quota_bound_secs"], 5200.0, "{report}");
    let calls = report["management_calls"].as_u64().unwrap();
    let throttled = report["throttled_429"].as_u64().unwrap();
    assert_eq!(calls - throttled, 20, "{report}");
    assert!(throttled >= 32, "each refused post at least once: {report}");
}
