//! Configuration, read once from the environment at cold start.
//!
//! Every value is checked here so that a bad deployment fails at start-up with a
//! message naming the variable, not on the first message.

use std::time::Duration;

use crate::names::env;
use crate::policy::Policies;

pub use crate::limits::{CONNECTION_CAP, GATEWAY_MAX_PAYLOAD};

/// Margin past the connection cap before a stored item counts as dead.
pub const TTL_MARGIN: Duration = Duration::from_secs(15 * 60);
/// Default cap on a client frame: one 32 KB frame, which is also the unit API Gateway
/// meters messages in, so a fan-out never costs more than one unit per recipient.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Posts in flight per fan-out. Throughput is about concurrency / latency: with
/// the 10–30 ms an `@connections` call takes in a region, 256 in flight can reach
/// API Gateway's default 10,000 requests/s account quota (429s beyond it are
/// retried with backoff), where 64 would stop near 3,000/s.
pub const DEFAULT_FANOUT_CONCURRENCY: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The DynamoDB table holding connections and memberships.
    pub table: String,
    /// The `@connections` endpoint. `None`: derived from each event's domainName and stage.
    pub management_endpoint: Option<String>,
    /// Largest client frame accepted, in bytes; larger ones get a `too_large` error.
    pub max_message_bytes: usize,
    /// How many `@connections` posts one fan-out keeps in flight.
    pub fanout_concurrency: usize,
    /// Lifetime of stored items, after which reads ignore them and DynamoDB's TTL removes them.
    pub item_ttl: Duration,
    /// Who may join and send in each namespace, and how fast (docs/auth.md).
    pub policies: Policies,
    /// The Parameter Store name of the policy document, read by
    /// [`crate::App::from_env`] into `policies`.
    pub policies_parameter: Option<String>,
    /// How long a `join` may spend replaying (from its start) before no further
    /// post of its replay starts: [`REPLAY_BUDGET`].
    pub replay_budget: Duration,
    /// The account's `@connections` budget in posts per second (API Gateway's
    /// account quota, 10,000 by default), which big rooms' workers share.
    pub management_rps: usize,
    /// How many workers run big rooms' fan-outs at once (the fan-out queue's
    /// `MaximumConcurrency`); each is paced to `management_rps` divided by this,
    /// or by a room's shard count when it has fewer shards.
    pub fanout_workers: usize,
    /// The FIFO queue big rooms' fan-out jobs go to (`None`: no workers; every
    /// fan-out runs in the invocation that asked for it).
    pub fanout_queue_url: Option<String>,
}

/// API Gateway's default account quota, requests per second
/// (docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
pub const DEFAULT_MANAGEMENT_RPS: usize = 10_000;
/// Workers running at once by default (template.yaml `FanoutWorkers`).
pub const DEFAULT_FANOUT_WORKERS: usize = 16;

/// Time a `join` may spend (from its start) before no further post of its replay
/// starts: well inside API Gateway's 29 s, leaving the ack and a post's retries room.
pub const REPLAY_BUDGET: Duration = Duration::from_secs(12);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} must be set")]
    Missing(&'static str),
    #[error("{name} is {value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{name} is not a valid policy document: {message}")]
    Policies { name: &'static str, message: String },
    #[error("{name}: {source}")]
    Parameter {
        name: &'static str,
        source: crate::parameters::ParameterError,
    },
}

impl Config {
    /// Defaults for everything but the table.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            management_endpoint: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            fanout_concurrency: DEFAULT_FANOUT_CONCURRENCY,
            item_ttl: CONNECTION_CAP + TTL_MARGIN,
            policies: Policies::default(),
            policies_parameter: None,
            replay_budget: REPLAY_BUDGET,
            management_rps: DEFAULT_MANAGEMENT_RPS,
            fanout_workers: DEFAULT_FANOUT_WORKERS,
            fanout_queue_url: None,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let table = non_empty(env::TABLE).ok_or(ConfigError::Missing(env::TABLE))?;
        let mut config = Self::new(table);
        config.management_endpoint =
            non_empty(env::MANAGEMENT_ENDPOINT).map(|e| e.trim_end_matches('/').to_owned());
        if let Some(endpoint) = &config.management_endpoint
            && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        {
            return Err(ConfigError::Invalid {
                name: env::MANAGEMENT_ENDPOINT,
                value: endpoint.clone(),
                reason: "expected an http:// or https:// URL",
            });
        }
        if let Some(v) = non_empty(env::MAX_MESSAGE_BYTES) {
            config.max_message_bytes = positive(env::MAX_MESSAGE_BYTES, &v)?;
            if config.max_message_bytes > GATEWAY_MAX_PAYLOAD {
                return Err(ConfigError::Invalid {
                    name: env::MAX_MESSAGE_BYTES,
                    value: v,
                    reason: "API Gateway carries at most 131072 bytes",
                });
            }
        }
        if let Some(v) = non_empty(env::FANOUT_CONCURRENCY) {
            config.fanout_concurrency = positive(env::FANOUT_CONCURRENCY, &v)?;
        }
        if let Some(v) = non_empty(env::ITEM_TTL_SECS) {
            config.item_ttl = Duration::from_secs(positive(env::ITEM_TTL_SECS, &v)? as u64);
        }
        if let Some(v) = non_empty(env::MANAGEMENT_RPS) {
            config.management_rps = positive(env::MANAGEMENT_RPS, &v)?;
        }
        if let Some(v) = non_empty(env::FANOUT_WORKERS) {
            config.fanout_workers = positive(env::FANOUT_WORKERS, &v)?;
        }
        config.fanout_queue_url = non_empty(env::FANOUT_QUEUE_URL);
        config.policies_parameter = non_empty(env::POLICIES_PARAMETER);
        if let Some(v) = non_empty(env::POLICIES) {
            if config.policies_parameter.is_some() {
                return Err(ConfigError::Invalid {
                    name: env::POLICIES_PARAMETER,
                    value: config.policies_parameter.unwrap_or_default(),
                    reason: "ROOMCAST_POLICIES is set too: set one of them",
                });
            }
            config.policies = policies(&v)?;
        }
        Ok(config)
    }
}

/// The policy document stored in Parameter Store under `name`.
pub async fn policies_from(
    store: &crate::parameters::ParameterStore,
    name: &str,
) -> Result<Policies, ConfigError> {
    let text = store
        .get(name)
        .await
        .map_err(|source| ConfigError::Parameter {
            name: env::POLICIES_PARAMETER,
            source,
        })?;
    Policies::parse(&text).map_err(|e| ConfigError::Policies {
        name: env::POLICIES_PARAMETER,
        message: e.to_string(),
    })
}

/// A policy document given inline (it starts with `{`) or as a file path.
pub fn policies(value: &str) -> Result<Policies, ConfigError> {
    let value = value.trim();
    let text = if value.starts_with('{') {
        value.to_owned()
    } else {
        std::fs::read_to_string(value).map_err(|e| ConfigError::Policies {
            name: env::POLICIES,
            message: format!("cannot read the file {value:?}: {e}"),
        })?
    };
    Policies::parse(&text).map_err(|e| ConfigError::Policies {
        name: env::POLICIES,
        message: e.to_string(),
    })
}

fn positive(name: &'static str, value: &str) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason: "expected a positive whole number",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn table_is_required() {
        assert_eq!(
            Config::from_lookup(lookup(&[])),
            Err(ConfigError::Missing(env::TABLE))
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_lookup(lookup(&[(env::TABLE, "t")])).unwrap();
        assert_eq!(c, Config::new("t"));
        let c = Config::from_lookup(lookup(&[
            (env::TABLE, "t"),
            (env::MANAGEMENT_ENDPOINT, "http://127.0.0.1:3001/local/"),
            (env::MAX_MESSAGE_BYTES, "1000"),
            (env::FANOUT_CONCURRENCY, "8"),
            (env::ITEM_TTL_SECS, "60"),
        ]))
        .unwrap();
        assert_eq!(
            c.management_endpoint.as_deref(),
            Some("http://127.0.0.1:3001/local")
        );
        assert_eq!(c.max_message_bytes, 1000);
        assert_eq!(c.fanout_concurrency, 8);
        assert_eq!(c.item_ttl, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            (env::MAX_MESSAGE_BYTES, "0"),
            (env::MAX_MESSAGE_BYTES, "200000"),
            (env::FANOUT_CONCURRENCY, "many"),
            (env::MANAGEMENT_ENDPOINT, "ftp://x"),
            (env::POLICIES, r#"{"namespaces":{"a":{"join":"all"}}}"#),
            (env::POLICIES, "/nonexistent/policies.json"),
        ] {
            let err = Config::from_lookup(lookup(&[(env::TABLE, "t"), (name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
        }
    }
    #[test]
    fn policies_come_from_one_place() {
        let named = Config::from_lookup(lookup(&[
            (env::TABLE, "t"),
            (env::POLICIES_PARAMETER, "/roomcast/policies:2"),
        ]))
        .unwrap();
        assert_eq!(
            named.policies_parameter.as_deref(),
            Some("/roomcast/policies:2")
        );
        let both = Config::from_lookup(lookup(&[
            (env::TABLE, "t"),
            (env::POLICIES_PARAMETER, "/roomcast/policies"),
            (env::POLICIES, "{}"),
        ]))
        .unwrap_err();
        assert!(
            matches!(both, ConfigError::Invalid { name, .. } if name == env::POLICIES_PARAMETER),
            "{both}"
        );
    }
}
