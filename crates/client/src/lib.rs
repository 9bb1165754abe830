//! Send roomcast broadcasts from Rust backends.
//!
//! A [`Broadcaster`] sends a [`Broadcast`] either by invoking the broadcast
//! function (synchronous: you get the fan-out's [`Stats`]) or by putting it on the
//! broadcast queue (asynchronous: the function consumes the queue in batches,
//! conflating and retrying; you get the SQS message id). The wire format and the
//! event clients receive are described in docs/broadcast.md.
//!
//! ```no_run
//! use roomcast_client::{Broadcast, Broadcaster, Audience};
//!
//! # async fn example() -> Result<(), roomcast_client::Error> {
//! let sdk = aws_config::load_from_env().await;
//! let broadcaster = Broadcaster::lambda(aws_sdk_lambda::Client::new(&sdk), "my-stack-BroadcastFunction");
//! let stats = broadcaster
//!     .invoke(
//!         &Broadcast::new(Audience::room("chat:general"), "announcement")
//!             .data(serde_json::json!({"text": "maintenance at 18:00"}))?,
//!     )
//!     .await?;
//! println!("{} of {} delivered", stats.delivered, stats.recipients);
//! # Ok(()) }
//! ```
//!
//! Against `roomcast dev`, point the Lambda client at its endpoint:
//!
//! ```no_run
//! # async fn example() -> Result<(), roomcast_client::Error> {
//! let sdk = aws_config::load_from_env().await;
//! let lambda = aws_sdk_lambda::Client::from_conf(
//!     aws_sdk_lambda::config::Builder::from(&sdk)
//!         .endpoint_url("http://127.0.0.1:3001")
//!         .build(),
//! );
//! let broadcaster = roomcast_client::Broadcaster::lambda(lambda, "broadcast");
//! # Ok(()) }
//! ```

use aws_sdk_lambda::primitives::Blob;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who a broadcast goes to: one of the request's `room`, `user`, `connections` or
/// `all` fields (docs/broadcast.md calls them its audience). The broadcast function
/// reads it as `roomcast_core::broadcast::Audience`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// A room's live members.
    Room(String),
    /// Every live connection of a user (the `userId` the authorizer established).
    User(String),
    /// These connections.
    Connections(Vec<String>),
    /// Every live connection. Costs a Scan of the whole table: see docs/broadcast.md.
    All,
}

impl Audience {
    /// ```
    /// assert_eq!(roomcast_client::Audience::room("lobby"), roomcast_client::Audience::Room("lobby".into()));
    /// ```
    pub fn room(room: impl Into<String>) -> Self {
        Self::Room(room.into())
    }

    pub fn user(user: impl Into<String>) -> Self {
        Self::User(user.into())
    }

    pub fn connections<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Connections(ids.into_iter().map(Into::into).collect())
    }
}

/// One broadcast: an audience, an event name, its data, and connections to skip.
///
/// ```
/// use roomcast_client::{Broadcast, Audience};
///
/// let b = Broadcast::new(Audience::user("alice"), "notification")
///     .data(serde_json::json!({"unread": 3}))
///     .unwrap()
///     .except(["L0SM9cOFvHcCIhw="]);
/// assert_eq!(
///     b.to_json(),
///     r#"{"user":"alice","event":"notification","data":{"unread":3},"except":["L0SM9cOFvHcCIhw="]}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    pub audience: Audience,
    pub event: String,
    pub data: Value,
    pub except: Vec<String>,
    /// Queue only: of the queued broadcasts in one batch with this key, only the
    /// latest is sent (e.g. `"price:BTC"` for a ticker).
    pub conflate: Option<String>,
    /// A second broadcast with this key within 24 hours is not sent (a retry of
    /// one that may have gone out; docs/broadcast.md, "Repeats").
    pub idempotency_key: Option<String>,
}

/// The request as the broadcast function reads it.
#[derive(Serialize)]
struct Wire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    all: Option<bool>,
    event: &'a str,
    #[serde(skip_serializing_if = "Value::is_null")]
    data: &'a Value,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    except: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    conflate: Option<&'a str>,
    #[serde(rename = "idempotencyKey", skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
}

impl Broadcast {
    pub fn new(audience: Audience, event: impl Into<String>) -> Self {
        Self {
            audience,
            event: event.into(),
            data: Value::Null,
            except: Vec::new(),
            conflate: None,
            idempotency_key: None,
        }
    }

    /// Sets `data` from anything serializable.
    pub fn data(mut self, data: impl Serialize) -> Result<Self, Error> {
        self.data = serde_json::to_value(data).map_err(|e| Error::Encode(e.to_string()))?;
        Ok(self)
    }

    /// Adds connections not to post to.
    pub fn except<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.except.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Sets the conflation key (used when sent through the queue).
    pub fn conflate(mut self, key: impl Into<String>) -> Self {
        self.conflate = Some(key.into());
        self
    }

    /// Sets the idempotency key: the function sends a broadcast with a key it
    /// has seen in the last 24 hours no more.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The JSON the broadcast function reads.
    pub fn to_json(&self) -> String {
        let mut wire = Wire {
            room: None,
            user: None,
            connections: None,
            all: None,
            event: &self.event,
            data: &self.data,
            except: &self.except,
            conflate: self.conflate.as_deref(),
            idempotency_key: self.idempotency_key.as_deref(),
        };
        match &self.audience {
            Audience::Room(room) => wire.room = Some(room),
            Audience::User(user) => wire.user = Some(user),
            Audience::Connections(ids) => wire.connections = Some(ids),
            Audience::All => wire.all = Some(true),
        }
        // Strings, a Value and lists of strings always serialize.
        serde_json::to_string(&wire).unwrap_or_default()
    }
}

/// What one broadcast's fan-out did (the function's response).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Stats {
    /// Connections posted to (`delivered + gone + failed`).
    pub recipients: u64,
    /// Posts API Gateway accepted.
    pub delivered: u64,
    /// Connections found gone (410) and removed.
    pub gone: u64,
    /// Posts that failed for good (413, 403, retries exhausted).
    pub failed: u64,
    /// Retries after a 429.
    pub throttled_retries: u64,
    /// Milliseconds the fan-out took.
    pub ms: u64,
    /// The fan-out stopped before the invocation's deadline: recipients not
    /// posted to by then count as failed.
    #[serde(default)]
    pub cut_short: bool,
    /// Not sent: the idempotency key was used before.
    #[serde(default)]
    pub repeat: bool,
    /// Handed to this many workers, one per shard of a big room, which deliver
    /// it after the answer; the other figures are then zero (see the fan-out
    /// metrics for theirs).
    #[serde(default)]
    pub workers: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot encode the broadcast: {0}")]
    Encode(String),
    /// The Invoke or SendMessage call failed (network, credentials, no such function).
    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },
    /// The function ran and failed, e.g. `InvalidBroadcast` for a bad request.
    #[error("the broadcast function failed ({error_type}): {message}")]
    Function { error_type: String, message: String },
    #[error("unexpected response from the broadcast function: {0}")]
    Response(String),
    /// [`Broadcaster::invoke`] on a queue broadcaster or the other way round.
    #[error("this broadcaster sends through {0}")]
    WrongTransport(&'static str),
}

/// The outcome of [`Broadcaster::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Invoked: the fan-out is over.
    Delivered(Stats),
    /// Queued: the function will send it; the SQS message id.
    Queued { message_id: String },
}

/// Sends broadcasts through the function or through the queue.
#[derive(Debug, Clone)]
pub enum Broadcaster {
    Lambda {
        client: aws_sdk_lambda::Client,
        /// Name, ARN or partial ARN of the broadcast function.
        function: String,
    },
    Queue {
        client: aws_sdk_sqs::Client,
        queue_url: String,
    },
}

impl Broadcaster {
    /// Invokes the function (stack output `BroadcastFunctionName`).
    pub fn lambda(client: aws_sdk_lambda::Client, function: impl Into<String>) -> Self {
        Self::Lambda {
            client,
            function: function.into(),
        }
    }

    /// Puts broadcasts on the queue (stack output `BroadcastQueueUrl`).
    pub fn queue(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self::Queue {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Sends through whichever transport this broadcaster has.
    pub async fn send(&self, broadcast: &Broadcast) -> Result<Sent, Error> {
        match self {
            Self::Lambda { .. } => self.invoke(broadcast).await.map(Sent::Delivered),
            Self::Queue { .. } => self
                .enqueue(broadcast)
                .await
                .map(|message_id| Sent::Queued { message_id }),
        }
    }

    /// Invokes the function synchronously and returns its stats.
    pub async fn invoke(&self, broadcast: &Broadcast) -> Result<Stats, Error> {
        let Self::Lambda { client, function } = self else {
            return Err(Error::WrongTransport("a queue"));
        };
        let out = client
            .invoke()
            .function_name(function)
            .payload(Blob::new(broadcast.to_json()))
            .send()
            .await
            .map_err(|e| Error::Aws {
                operation: "Invoke",
                message: aws_sdk_lambda::error::DisplayErrorContext(&e).to_string(),
            })?;
        let body = out.payload.map(Blob::into_inner).unwrap_or_default();
        if out.function_error.is_some() {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct FunctionError {
                error_type: Option<String>,
                error_message: Option<String>,
            }
            let e: FunctionError = serde_json::from_slice(&body)
                .map_err(|_| Error::Response(String::from_utf8_lossy(&body).into_owned()))?;
            return Err(Error::Function {
                error_type: e.error_type.unwrap_or_default(),
                message: e.error_message.unwrap_or_default(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::Response(e.to_string()))
    }

    /// Puts the broadcast on the queue and returns the SQS message id.
    pub async fn enqueue(&self, broadcast: &Broadcast) -> Result<String, Error> {
        let Self::Queue { client, queue_url } = self else {
            return Err(Error::WrongTransport("the Lambda function"));
        };
        let out = client
            .send_message()
            .queue_url(queue_url)
            .message_body(broadcast.to_json())
            .send()
            .await
            .map_err(|e| Error::Aws {
                operation: "SendMessage",
                message: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
            })?;
        Ok(out.message_id.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_audience_encodes_as_the_function_reads_it() {
        let json = |t: Audience| Broadcast::new(t, "e").to_json();
        assert_eq!(json(Audience::room("r")), r#"{"room":"r","event":"e"}"#);
        assert_eq!(json(Audience::user("u")), r#"{"user":"u","event":"e"}"#);
        assert_eq!(
            json(Audience::connections(["a", "b"])),
            r#"{"connections":["a","b"],"event":"e"}"#
        );
        assert_eq!(json(Audience::All), r#"{"all":true,"event":"e"}"#);
        assert_eq!(
            Broadcast::new(Audience::All, "e")
                .conflate("k")
                .except(["x"])
                .to_json(),
            r#"{"all":true,"event":"e","except":["x"],"conflate":"k"}"#
        );
        assert_eq!(
            Broadcast::new(Audience::room("r"), "e")
                .idempotency_key("order-7")
                .to_json(),
            r#"{"room":"r","event":"e","idempotencyKey":"order-7"}"#
        );
    }

    #[test]
    fn stats_decode() {
        let s: Stats = serde_json::from_str(
            r#"{"recipients":3,"delivered":1,"gone":1,"failed":1,"throttled_retries":2,"ms":7}"#,
        )
        .unwrap();
        assert_eq!(s.recipients, s.delivered + s.gone + s.failed);
        assert!(!s.repeat && !s.cut_short);
        let repeat: Stats = serde_json::from_str(
            r#"{"recipients":0,"delivered":0,"gone":0,"failed":0,"throttled_retries":0,"ms":0,"repeat":true}"#,
        )
        .unwrap();
        assert!(repeat.repeat);
    }
}
