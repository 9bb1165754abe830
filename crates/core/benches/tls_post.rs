//! CPU time per `@connections` post over HTTPS, as the functions post in
//! production: the signed `reqwest` adapter (`ApiGatewayManagement`, rustls on
//! aws-lc-rs) against a local TLS sink with a certificate from a test CA made at
//! run time. The sink runs in a child process (this binary again), so the CPU
//! counted (user + system, /proc/self/stat) is the posting side's only.
//!
//! Run with `cargo bench -p roomcast-core --bench tls_post`. Variants:
//! - the adapter as built for production, its pool warm (every post reuses a
//!   kept-alive connection, as within one invocation's fan-out);
//! - a new connection per post with TLS session resumption (rustls' default
//!   in-memory cache), the cost of a fan-out from a fresh container or after
//!   idle connections were dropped;
//! - a new connection per post without resumption (full handshakes).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use roomcast_core::management::Management;
use roomcast_core::management::apigw::ApiGatewayManagement;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::rustls;

/// Set in the child process: the directory holding the sink's certificate and key.
const SINK_ENV: &str = "ROOMCAST_TLS_SINK_DIR";
const IN_FLIGHT: usize = 64;

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    if let Ok(dir) = std::env::var(SINK_ENV) {
        return sink(&dir);
    }
    let dir = std::env::temp_dir().join(format!("roomcast-tls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_der = certificates(&dir);
    let (mut child, endpoint) = start_sink(&dir);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ca = reqwest::Certificate::from_der(&ca_der).expect("CA certificate");
    let sdk = sdk_config();
    println!("CPU per @connections post over HTTPS (client side, {IN_FLIGHT} in flight)");
    println!("| variant | posts | CPU per post | wall per post |");
    println!("|---|---|---|---|");

    let warm = ApiGatewayManagement::with_http_client(
        &sdk,
        ApiGatewayManagement::http_client_builder()
            .tls_certs_only([ca.clone()])
            .build()
            .expect("client"),
    );
    run(
        &runtime,
        "production client, warm pool",
        &warm,
        &endpoint,
        20_000,
    );

    let resumed = ApiGatewayManagement::with_http_client(
        &sdk,
        ApiGatewayManagement::http_client_builder()
            .tls_certs_only([ca])
            .pool_max_idle_per_host(0)
            .build()
            .expect("client"),
    );
    run(
        &runtime,
        "new connection per post, session resumption",
        &resumed,
        &endpoint,
        2_000,
    );

    let full = ApiGatewayManagement::with_http_client(
        &sdk,
        ApiGatewayManagement::http_client_builder()
            .tls_backend_preconfigured(without_resumption(ca_der))
            .pool_max_idle_per_host(0)
            .build()
            .expect("client"),
    );
    run(
        &runtime,
        "new connection per post, full handshakes",
        &full,
        &endpoint,
        2_000,
    );

    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts this program again as the sink serving `dir`'s certificate; its
/// `@connections` endpoint.
fn start_sink(dir: &std::path::Path) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env(SINK_ENV, dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the sink");
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("sink stdout")),
        &mut port,
    )
    .expect("sink port");
    let endpoint = format!("https://localhost:{}/prod", port.trim());
    (child, endpoint)
}

/// A TLS client trusting the CA, with session resumption off: every connection
/// makes a full handshake.
fn without_resumption(ca_der: Vec<u8>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.into()).expect("CA root");
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.resumption = rustls::client::Resumption::disabled();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    tls
}

fn sdk_config() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    "AKIDEXAMPLE",
                    "secret",
                    Some("token".into()),
                    None,
                    "bench",
                ),
            ),
        )
        .build()
}

/// Posts `posts` times (after a warm-up) and prints the CPU and wall time per post.
fn run(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    management: &ApiGatewayManagement,
    endpoint: &str,
    posts: usize,
) {
    let data = Bytes::from_static(
        br#"{"type":"event","room":"chat:general","event":"message","data":{"text":"hello"}}"#,
    );
    let batch = |n: usize| {
        futures::stream::iter(0..n)
            .map(|i| {
                let data = data.clone();
                async move {
                    management
                        .post(endpoint, &format!("conn{i}="), data)
                        .await
                        .expect("post")
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .count()
    };
    runtime.block_on(batch(IN_FLIGHT * 4));
    let cpu = cpu_time();
    let start = Instant::now();
    runtime.block_on(batch(posts));
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu;
    println!(
        "| {name} | {posts} | {:.1} µs | {:.1} µs |",
        cpu.as_secs_f64() * 1e6 / posts as f64,
        wall.as_secs_f64() * 1e6 / posts as f64
    );
    let _ = std::io::stdout().flush();
}

/// User plus system CPU time of this process, all threads (Linux, USER_HZ = 100).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// A test CA and a `localhost` certificate it signs; writes the leaf's
/// certificate and key for the sink and returns the CA certificate (DER).
fn certificates(dir: &std::path::Path) -> Vec<u8> {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "roomcast bench CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let ca = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf certificate");
    std::fs::write(dir.join("cert.der"), leaf.der()).expect("write cert");
    std::fs::write(dir.join("key.der"), leaf_key.serialize_der()).expect("write key");
    ca_cert.der().to_vec()
}

/// The HTTPS sink: answers every request `200` with an empty body, keeping the
/// connection alive, as `@connections` does.
fn sink(dir: &str) {
    let dir = std::path::Path::new(dir);
    let cert = std::fs::read(dir.join("cert.der")).expect("read cert");
    let key = std::fs::read(dir.join("key.der")).expect("read key");
    let key = rustls::pki_types::PrivateKeyDer::try_from(key).expect("key");
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.into()], key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr").port());
        let _ = std::io::stdout().flush();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut stream = BufReader::new(tls);
                let mut line = String::new();
                loop {
                    let mut length = 0usize;
                    loop {
                        line.clear();
                        match stream.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.get_mut().write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
