//! `roomcast dev --template … --invoke-endpoint …` against `cargo lambda watch`
//! serving the project's own function binaries, on dynalite (scripts/test starts
//! it, and builds the binaries with `cargo build --workspace --bins` first so that
//! watch's `cargo run` finds them fresh; cargo-lambda comes from
//! `pip install cargo-lambda`).
//!
//! One test, so `cargo lambda watch` starts (and builds) once: the real template's
//! room flow, then a fixture template without a `send` route and with a failing
//! route, then the real template with `$connect` pointed at a function that fails.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roomcast_local::template::{
    EnvFile, Pseudo, Template, dotenv, merged_environment, resolve_environment,
};
use roomcast_local::{Backend, FunctionMode, GatewayOptions, RunningGateway, SamOptions};
use roomcast_local::{RemoteError, RemoteInvoker};
use serde_json::json;
use support::Client;

/// The first invocation of each function builds it (`cargo run`): generous.
const BUILD_WAIT: Duration = Duration::from_secs(900);

/// A path in the repository, canonical: cargo lambda watch hands the manifest path
/// to `cargo run`, and one spelling of it keeps cargo's fingerprints stable.
fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .expect("the repository root");
    root.join(path).to_string_lossy().into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `cargo lambda watch` in a process group of its own, killed whole on drop (it
/// starts `cargo run` and the function processes under it).
struct Watch {
    child: Child,
    env_file: PathBuf,
    /// The file recording the process group for scripts/test's exit trap.
    group_file: Option<PathBuf>,
}

impl Watch {
    fn start(port: u16, env: &BTreeMap<String, String>, dynamodb: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let version = Command::new("cargo").args(["lambda", "--version"]).output();
        assert!(
            version.is_ok_and(|o| o.status.success()),
            "cargo-lambda is missing: `pip install cargo-lambda==1.9.2` (scripts/test needs it)"
        );
        let (text, unwritable) = dotenv(env);
        assert!(unwritable.is_empty(), "{unwritable:?}");
        let env_file =
            std::env::temp_dir().join(format!("roomcast-sam-{:x}.env", fastrand::u64(..)));
        std::fs::write(&env_file, text).expect("env file written");
        let mut command = Command::new("cargo");
        // The variables cargo sets for a test process must not reach the `cargo run`
        // that cargo lambda watch starts: build scripts that watch the environment
        // (e.g. OUT_DIR, CARGO_MANIFEST_DIR) would rerun and rebuild much of the
        // SDK. The caller's own cargo settings (CARGO_TARGET_DIR, CARGO_BUILD_JOBS,
        // CARGO_NET_OFFLINE, ...) stay, so watch builds where and how scripts/test did.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if set_by_cargo_for_tests(&name) {
                command.env_remove(name.as_ref());
            }
        }
        let child = command
            .args(["lambda", "watch", "--ignore-changes", "--quiet"])
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .arg("--env-file")
            .arg(&env_file)
            .arg("--manifest-path")
            .arg(repo_file("Cargo.toml"))
            .current_dir(repo_file(""))
            // The functions' SDK reaches dynalite through the standard variable.
            .env("AWS_ENDPOINT_URL_DYNAMODB", dynamodb)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("cargo lambda watch starts");
        // Its own process group, so the whole tree (watch, cargo run, the
        // functions) can be stopped at once; scripts/test's exit trap stops the
        // group too when this process dies without running Drop (Ctrl-C, CI cancel).
        let group_file = std::env::var_os("ROOMCAST_TEST_PROCESS_GROUPS").map(|dir| {
            let file = PathBuf::from(dir).join(format!("watch-{}", child.id()));
            std::fs::write(&file, child.id().to_string()).expect("process group recorded");
            file
        });
        Self {
            child,
            env_file,
            group_file,
        }
    }

    fn signal_group(&self, signal: &str) -> bool {
        let group = format!("-{}", self.child.id());
        Command::new("kill")
            .args([signal, "--", &group])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits up to `limit` for watch itself to exit; never blocks longer.
    fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The variables cargo sets for the test processes it runs.
fn set_by_cargo_for_tests(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || name.starts_with("CARGO_BIN_")
        || matches!(
            name,
            "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
        )
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !(self.signal_group("-TERM") && self.exited_within(Duration::from_secs(5))) {
            self.signal_group("-KILL");
            // Without `kill`, at least watch itself goes.
            let _ = self.child.kill();
            self.exited_within(Duration::from_secs(5));
        }
        // Children of watch that ignored TERM.
        self.signal_group("-KILL");
        if let Some(file) = &self.group_file {
            let _ = std::fs::remove_file(file);
        }
        let _ = std::fs::remove_file(&self.env_file);
    }
}

async fn until_listening(port: u16) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("cargo lambda watch listens");
}

async fn gateway(
    port: u16,
    template: &str,
    endpoint: &str,
    overrides: &[(&str, &str)],
    backend: &Backend,
) -> RunningGateway {
    let template = Template::from_file(&repo_file(template)).expect("template parses");
    let mut names = template.binary_names();
    names.extend(
        overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let options = GatewayOptions {
        port,
        sam: Some(SamOptions {
            template: Arc::new(template),
            // Remote functions take their environment from their own processes.
            environment: BTreeMap::new(),
            mode: FunctionMode::Remote {
                endpoint: endpoint.to_owned(),
                names,
            },
        }),
        ..GatewayOptions::default()
    };
    let (store, table) = roomcast_local::open_store(backend, &support::sdk().await)
        .await
        .expect("table ready");
    roomcast_local::serve(options, store, table, &support::sdk().await)
        .await
        .expect("gateway starts")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs dynalite: run scripts/test"]
async fn sam_template_through_cargo_lambda_watch() {
    let dynamodb = std::env::var("ROOMCAST_TEST_DYNAMODB_ENDPOINT")
        .expect("ROOMCAST_TEST_DYNAMODB_ENDPOINT is set (scripts/test sets it)");
    let table = format!("roomcast-sam-{:x}", fastrand::u64(..));
    let backend = Backend::Dynamo {
        endpoint: dynamodb.clone(),
        table: table.clone(),
    };
    let (gateway_port, watch_port) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{watch_port}");

    // The functions' environment: the template's, with the local overrides a
    // developer would keep in infra/env.local.json, merged for cargo lambda watch.
    let template = Template::from_file(&repo_file("template.yaml")).expect("template parses");
    let overrides = json!({"Parameters": {
        "ROOMCAST_TABLE": table,
        "ROOMCAST_MANAGEMENT_ENDPOINT": format!("http://127.0.0.1:{gateway_port}/local"),
        "ROOMCAST_ALLOW_ANONYMOUS": "true",
        "ROOMCAST_JWT_SECRET": "",
        // No fan-out queue locally: big rooms fan out in line.
        "ROOMCAST_FANOUT_QUEUE_URL": "",
        "ROOMCAST_POLICIES": r#"{"default":{"join":"anyone","send":"anyone"}}"#,
    }});
    let env_file = EnvFile::parse(&overrides.to_string()).expect("env file");
    let pseudo = Pseudo {
        region: "us-east-1".into(),
        stack_name: "local".into(),
    };
    let (per_function, diagnostics) = resolve_environment(&template, &env_file, &pseudo);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let (env, conflicts) = merged_environment(&per_function);
    assert!(conflicts.is_empty(), "{conflicts:?}");

    let _watch = Watch::start(watch_port, &env, &dynamodb);
    until_listening(watch_port).await;
    // Warm every function up: the first invocation builds and starts it, which
    // may take longer than an integration may.
    let invoker = RemoteInvoker::new(&support::sdk().await, &endpoint);
    let started = Instant::now();
    for binary in [
        "connect",
        "disconnect",
        "message",
        "authorizer",
        "broadcast",
    ] {
        match invoker.invoke(binary, b"{}".to_vec(), BUILD_WAIT).await {
            Ok(_) | Err(RemoteError::Function { .. }) => {}
            Err(e) => panic!("{binary} did not start: {e}"),
        }
    }
    eprintln!(
        "cargo lambda watch: functions warm after {:?}",
        started.elapsed()
    );
    // The failures below surface only as API Gateway's generic 500s, which a wrong
    // name (404) or a transport error would produce too: first prove that the
    // broadcast function itself runs and fails on a WebSocket event.
    let connect_event =
        std::fs::read(repo_file("events/connect.json")).expect("events/connect.json");
    match invoker.invoke("broadcast", connect_event, BUILD_WAIT).await {
        Err(RemoteError::Function { .. }) => {}
        other => panic!("broadcast must run and fail on a connect event: {other:?}"),
    }

    // 1. The real template: connect (through the authorizer), join, send, disconnect.
    let running = gateway(gateway_port, "template.yaml", &endpoint, &[], &backend).await;
    let url = running.websocket_url();
    let (mut alice, mut bob) = (Client::connect(&url).await, Client::connect(&url).await);
    alice.join("chat:sam").await;
    bob.join("chat:sam").await;
    let ack = alice
        .request(
            json!({"action": "send", "room": "chat:sam", "event": "msg", "data": "hi", "id": 1}),
        )
        .await;
    assert_eq!(
        (&ack["type"], &ack["delivered"]),
        (&json!("ack"), &json!(1)),
        "{ack}"
    );
    let event = bob.next_json().await;
    assert_eq!(
        (&event["type"], &event["data"]),
        (&json!("event"), &json!("hi")),
        "{event}"
    );
    alice.assert_nothing_pending().await;
    let alice_id = event["from"]["connectionId"]
        .as_str()
        .expect("the sender's connection id")
        .to_owned();
    alice.close().await;
    let store = running.gateway().app().store.clone();
    support::until_removed(store.as_ref(), &alice_id).await;
    let ack = bob
        .request(json!({"action": "send", "room": "chat:sam", "event": "msg", "id": 2}))
        .await;
    assert_eq!(
        ack["recipients"],
        json!(0),
        "alice's membership is gone: {ack}"
    );
    bob.close().await;
    running.shutdown().await.expect("clean shutdown");

    // 2. No `send` route: a send frame goes to $default (one-way): the message
    //    function fans it out, but no ack comes back. `boom`'s function fails.
    let running = gateway(
        gateway_port,
        "tests/fixtures/sam-missing-route.yaml",
        &endpoint,
        &[],
        &backend,
    )
    .await;
    let url = running.websocket_url();
    let (mut alice, mut bob) = (Client::connect(&url).await, Client::connect(&url).await);
    alice.join("chat:fixture").await;
    bob.join("chat:fixture").await;
    alice
        .send(json!({"action": "send", "room": "chat:fixture", "event": "msg", "data": 7, "id": 3}))
        .await;
    let event = bob.next_json().await;
    assert_eq!(
        (&event["type"], &event["data"]),
        (&json!("event"), &json!(7)),
        "{event}"
    );
    // The next frame alice gets is the join's ack, not the send's: $default
    // has no route response.
    let ack = alice
        .request(json!({"action": "join", "room": "chat:other", "id": "after"}))
        .await;
    assert_eq!(
        (&ack["type"], &ack["id"]),
        (&json!("ack"), &json!("after")),
        "{ack}"
    );
    let failed = alice.request(json!({"action": "boom"})).await;
    assert_eq!(failed["message"], "Internal server error", "{failed}");
    assert!(failed["connectionId"].is_string() && failed["requestId"].is_string());
    alice.close().await;
    bob.close().await;
    running.shutdown().await.expect("clean shutdown");

    // 3. $connect's function fails: the handshake gets a 500.
    let running = gateway(
        gateway_port,
        "template.yaml",
        &endpoint,
        &[("ConnectFunction", "broadcast")],
        &backend,
    )
    .await;
    let refused = tokio_tungstenite::connect_async(running.websocket_url())
        .await
        .expect_err("the handshake is refused");
    assert!(
        support::is_tungstenite_http_error(&refused, 500),
        "{refused:?}"
    );
    running.shutdown().await.expect("clean shutdown");
}
