//! `roomcast broadcast`: sends an event to a room, a user, connections or everyone
//! through the broadcast function (crates/client), deployed or in `roomcast dev`,
//! and prints what the fan-out did.

use anyhow::Context as _;
use clap::{ArgGroup, Args};
use roomcast_client::{Audience, Broadcast, Broadcaster};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["room", "user", "connections", "all"])))]
pub struct BroadcastArgs {
    /// Post to this room's members.
    #[arg(long)]
    room: Option<String>,
    /// Post to every connection of this user.
    #[arg(long)]
    user: Option<String>,
    /// Post to this connection (repeatable).
    #[arg(long = "connection", value_name = "ID")]
    connections: Vec<String>,
    /// Post to every connection (a Scan of the whole table).
    #[arg(long)]
    all: bool,
    /// The event name.
    #[arg(long)]
    event: String,
    /// The event's data, as JSON.
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    data: Option<serde_json::Value>,
    /// Skip this connection (repeatable).
    #[arg(long, value_name = "ID")]
    except: Vec<String>,
    /// Send nothing if a broadcast with this key went out in the last 24 hours
    /// (retrying a command that may have succeeded).
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// A Lambda endpoint, e.g. roomcast dev's http://127.0.0.1:3001.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// The broadcast function: name or ARN (stack output BroadcastFunctionName).
    /// Defaults to `broadcast` with --endpoint.
    #[arg(long, value_name = "NAME", env = roomcast_core::names::env::BROADCAST_FUNCTION)]
    function: Option<String>,
    /// Region for the Lambda client (otherwise the usual AWS configuration).
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
}

fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

pub async fn run(args: BroadcastArgs) -> anyhow::Result<()> {
    let target = if let Some(room) = args.room {
        Audience::Room(room)
    } else if let Some(user) = args.user {
        Audience::User(user)
    } else if args.all {
        Audience::All
    } else {
        Audience::Connections(args.connections)
    };
    let mut message = Broadcast::new(target, args.event).except(args.except);
    if let Some(key) = args.idempotency_key {
        message = message.idempotency_key(key);
    }
    if let Some(data) = args.data {
        message = message.data(data)?;
    }
    let function = match (args.function, &args.endpoint) {
        (Some(function), _) => function,
        (None, Some(_)) => "broadcast".to_owned(),
        (None, None) => anyhow::bail!(
            "which function? pass --function or set {} (stack output BroadcastFunctionName), \
             or --endpoint for roomcast dev",
            roomcast_core::names::env::BROADCAST_FUNCTION
        ),
    };
    let client = match &args.endpoint {
        Some(endpoint) => {
            let region = args.region.as_deref().unwrap_or("us-east-1");
            let sdk = roomcast_local::local_sdk_config(region).await;
            aws_sdk_lambda::Client::from_conf(
                aws_sdk_lambda::config::Builder::from(&sdk)
                    .endpoint_url(endpoint)
                    .build(),
            )
        }
        None => {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(region) = args.region.clone() {
                loader = loader.region(aws_config::Region::new(region));
            }
            aws_sdk_lambda::Client::new(&loader.load().await)
        }
    };
    let stats = Broadcaster::lambda(client, function)
        .invoke(&message)
        .await
        .context("broadcast failed")?;
    println!(
        "{}",
        serde_json::json!({
            "recipients": stats.recipients,
            "delivered": stats.delivered,
            "gone": stats.gone,
            "failed": stats.failed,
            "throttled_retries": stats.throttled_retries,
            "ms": stats.ms,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::{Cli, Command};

    #[test]
    fn broadcast_needs_exactly_one_target() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["roomcast", "broadcast", "--event", "e"].iter().chain(args))
        };
        assert!(parse(&[]).is_err());
        assert!(parse(&["--room", "r", "--all"]).is_err());
        assert!(parse(&["--room", "r", "--data", "{not json"]).is_err());
        let Command::Broadcast(args) = parse(&[
            "--connection",
            "a",
            "--connection",
            "b",
            "--except",
            "a",
            "--data",
            r#"{"x":1}"#,
            "--endpoint",
            "http://127.0.0.1:3001",
        ])
        .unwrap()
        .command
        else {
            panic!("expected broadcast");
        };
        assert_eq!(args.connections, ["a", "b"]);
        assert_eq!(args.except, ["a"]);
        assert_eq!(args.data, Some(serde_json::json!({"x": 1})));
    }
}
