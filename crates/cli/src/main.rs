//! The `roomcast` command line: `main.rs` parses the command and dispatches it to
//! its module, where the command's clap `Args` live beside what it runs.
//!
//! # Layout
//!
//! - `dev`: `roomcast dev`, the local API Gateway WebSocket emulator (crates/local)
//!   until Ctrl-C, with the built-in routes or a SAM template's.
//! - `stats`: `roomcast dev --stats`, a summary line of the gateway's metrics every
//!   few seconds.
//! - `broadcast`: `roomcast broadcast`, a backend event through the broadcast
//!   function (crates/client), deployed or in `roomcast dev`.
//! - `bench`: `roomcast bench`, a load test of a WebSocket URL.
//! - `env`: `roomcast env`, a template's function environments as dotenv lines;
//!   also the template reading `roomcast dev --template` shares.

mod bench;
mod broadcast;
mod dev;
mod env;
mod stats;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "roomcast",
    version,
    about = "Serverless WebSocket rooms on API Gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local API Gateway WebSocket API with roomcast's handlers in-process.
    Dev(Box<dev::DevArgs>),
    /// Send an event to a room, a user, connections or everyone through the
    /// broadcast function, and print what the fan-out did.
    Broadcast(broadcast::BroadcastArgs),
    /// Load-test a roomcast WebSocket URL: connections, fan-out latency, throughput.
    Bench(bench::BenchArgs),
    /// Print the environment a SAM template (plus an env file) gives its functions,
    /// as KEY=value lines for `cargo lambda watch --env-file`.
    Env(env::EnvArgs),
}

/// mimalloc: the gateway allocates per `@connections` call and per frame, and
/// glibc malloc took about a fifth of its CPU per delivery (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = match &cli.command {
        Command::Dev(args) => tracing_subscriber::EnvFilter::new(dev::log_filter(
            args,
            std::env::var("RUST_LOG").ok().as_deref(),
        )),
        _ => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
    };
    // The log goes to stdout: colour codes only when that is a terminal.
    let ansi = dev::use_ansi(
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Dev(args) => runtime.block_on(dev::run(*args)),
        Command::Broadcast(args) => runtime.block_on(broadcast::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Env(args) => env::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
