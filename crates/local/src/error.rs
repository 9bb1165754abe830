//! The library's errors. Request-level failures never get here: they become HTTP
//! answers (403, 404, 410, 413, ...) shaped like AWS's by [`crate::aws::AwsError`].

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("stage {0:?} is not valid: use 1 to 128 of A-Z a-z 0-9 _ -")]
    InvalidStage(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error("the gateway's server failed: {0}")]
    Serve(#[source] io::Error),
    #[error("cannot prepare DynamoDB table {table:?}: {source}")]
    Table {
        table: String,
        #[source]
        source: roomcast_core::store::StoreError,
    },
    #[error(
        "{addr} is not a loopback address: anyone who can reach it could use @connections \
         and the Invoke API, so give management credentials (--management-access-key-id, \
         --management-secret-access-key) or pass --insecure-management"
    )]
    ManagementUnprotected { addr: String },
    #[error("cannot write the simulated members to the store")]
    Simulated(#[source] roomcast_core::store::StoreError),
    #[error("cannot run the template's functions: {0}")]
    Function(#[source] crate::routes::FunctionSetupError),
}
