//! The `roomcast` command line. `roomcast dev` runs the local API Gateway WebSocket
//! emulator (crates/local) until Ctrl-C.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use roomcast_local::{Backend, GatewayOptions};

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
    Dev(DevArgs),
}

#[derive(Debug, Args)]
struct DevArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 3001)]
    port: u16,
    /// Stage name: the WebSocket URL's path and the @connections base path.
    #[arg(long, default_value = "local")]
    stage: String,
    /// Use DynamoDB (or dynalite) at this endpoint instead of the in-memory store.
    #[arg(long, value_name = "URL", requires = "table")]
    dynamodb_endpoint: Option<String>,
    /// The DynamoDB table; created (with its index) if missing.
    #[arg(long, value_name = "NAME", requires = "dynamodb_endpoint")]
    table: Option<String>,
    /// Close connections idle for this many seconds (API Gateway: 600).
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,
    /// Close connections open for this many seconds (API Gateway: 7200).
    #[arg(long, value_name = "SECS", default_value_t = 7200, value_parser = clap::value_parser!(u64).range(1..))]
    max_connection_secs: u64,
    /// Region for the SDK clients and ARNs.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn,aws_smithy_runtime=warn".into()),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Dev(args) => runtime.block_on(dev(args)),
    }
}

async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let options = GatewayOptions {
        host: args.host,
        port: args.port,
        stage: args.stage,
        region: args.region.clone(),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        max_connection_duration: Duration::from_secs(args.max_connection_secs),
        ..GatewayOptions::default()
    };
    let backend = match (args.dynamodb_endpoint, args.table) {
        (Some(endpoint), Some(table)) => Backend::Dynamo { endpoint, table },
        _ => Backend::Memory,
    };
    let sdk = roomcast_local::local_sdk_config(&args.region).await;
    let (store, table) = roomcast_local::open_store(&backend, &sdk).await?;
    let running = roomcast_local::serve(options, store, table, &sdk).await?;
    println!("roomcast dev: listening on {}", running.local_addr());
    println!("  WebSocket URL:         {}", running.websocket_url());
    println!("  @connections endpoint: {}", running.management_endpoint());
    println!("  Lambda endpoint:       {}", running.lambda_endpoint());
    match &backend {
        Backend::Memory => println!("  store: in memory"),
        Backend::Dynamo { endpoint, table } => {
            println!("  store: DynamoDB table {table} at {endpoint}")
        }
    }
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    println!("roomcast dev: shutting down (closing connections, running $disconnect)");
    running.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn dev_defaults_and_store_flags() {
        let Command::Dev(args) = Cli::parse_from(["roomcast", "dev"]).command;
        assert_eq!(
            (args.host.as_str(), args.port, args.stage.as_str()),
            ("127.0.0.1", 3001, "local")
        );
        assert_eq!(
            (args.idle_timeout_secs, args.max_connection_secs),
            (600, 7200)
        );
        assert!(args.dynamodb_endpoint.is_none());
        // A table needs an endpoint and the other way round.
        assert!(Cli::try_parse_from(["roomcast", "dev", "--table", "t"]).is_err());
        assert!(Cli::try_parse_from(["roomcast", "dev", "--idle-timeout-secs", "0"]).is_err());
        let Command::Dev(args) = Cli::parse_from([
            "roomcast",
            "dev",
            "--dynamodb-endpoint",
            "http://127.0.0.1:4567",
            "--table",
            "t",
        ])
        .command;
        assert_eq!(args.table.as_deref(), Some("t"));
    }
}
