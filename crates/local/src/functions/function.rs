//! What a function is ([`LambdaFunction`]) and how it fails: [`FunctionError`]
//! carries Lambda's error kinds (`errorType`), and [`InvokeError`] is what API
//! Gateway makes of a failed integration.

use async_trait::async_trait;
use serde_json::Value;

/// A function error, reported as Lambda reports an unhandled error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {error_message}")]
pub struct FunctionError {
    pub error_type: String,
    pub error_message: String,
}

/// Lambda's `errorType`s for failures of the runtime rather than of the function's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The invocation ran out of the function's timeout.
    TimedOut,
    /// The function crashed (here: its task panicked).
    ExitError,
    /// The event does not decode into what the function takes.
    Deserialization,
    /// The function's result does not encode.
    Serialization,
    /// The result is over Lambda's 6 MB synchronous response limit.
    ResponseTooLarge,
}

impl ErrorKind {
    /// The `errorType` Lambda reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TimedOut => "Sandbox.Timedout",
            Self::ExitError => "Runtime.ExitError",
            Self::Deserialization => "Runtime.DeserializationError",
            Self::Serialization => "Runtime.SerializationError",
            Self::ResponseTooLarge => "Function.ResponseSizeTooLarge",
        }
    }
}

impl FunctionError {
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            error_message: error_message.into(),
        }
    }
}

/// A function the Invoke API can run: JSON in, JSON out, as on Lambda.
#[async_trait]
pub trait LambdaFunction: Send + Sync + 'static {
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError>;
}

/// Why a route's integration produced no response, as API Gateway tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    #[error("the integration timed out")]
    TimedOut,
    /// The function failed: it panicked or returned an error, its response could not
    /// be read, or the route has no function that can run (the log says which).
    #[error("the function failed")]
    Failed,
}
