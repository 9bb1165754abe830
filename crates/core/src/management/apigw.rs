//! The API Gateway Management API adapter: `POST`/`DELETE @connections/{id}`
//! as SigV4-signed HTTP requests over one pooled keep-alive client.
//!
//! Why not `aws-sdk-apigatewaymanagement`: the fan-out makes one call per
//! recipient, and the SDK's orchestrator (interceptors, config-bag lookups,
//! runtime-component merging, user-agent building) cost about 100 µs of CPU per
//! call in the `fanout_http_sink` profile (docs/performance.md), capping a
//! broadcast at a few thousand posts per second on two cores. The same requests,
//! SigV4-signed ([`super::sigv4`]) with the SDK config's credentials, region and
//! clock, cost a fraction of that. Tests (crates/core/tests/adapters.rs) check
//! every signature against AWS's own signer (`aws-sigv4`), and that the adapter
//! sends the same path, body and signed headers as the SDK client.
//!
//! No retries here: the fan-out engine retries throttling and 5xx itself, with
//! jitter and within a deadline, and must see each 410 to clean up.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_async::time::SharedTimeSource;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;

use super::sigv4;
use super::{Management, PostError};

/// Per-request timeout of one `@connections` call.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The signing name of the Management API (`execute-api:ManageConnections`).
const SIGNING_NAME: &str = "execute-api";
/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Idle keep-alive connections kept per endpoint: enough for a fan-out at high
/// concurrency to reuse its connections instead of reconnecting (and, on AWS,
/// repeating TLS handshakes) between pages.
const IDLE_CONNECTIONS: usize = 1024;

/// Parsed endpoints kept at most.
const MAX_ENDPOINTS: usize = 64;

/// Path-segment encoding as the SDK applies it to `{connectionId}`: everything
/// but unreserved characters (`ok+/=` → `ok%2B%2F%3D`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug)]
pub struct ApiGatewayManagement {
    /// Built on the first call, not at cold start: building it loads the system's
    /// root certificates (some 300 files), which was most of a function's init
    /// time, and a connect or disconnect function rarely posts at all.
    http: std::sync::OnceLock<reqwest::Client>,
    region: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    time: SharedTimeSource,
    cached: Mutex<Option<Credentials>>,
    signer: sigv4::Signer,
    endpoints: RwLock<HashMap<String, reqwest::Url>>,
}

impl ApiGatewayManagement {
    /// Signs with `sdk`'s credentials, region and clock. Without credentials in
    /// `sdk`, requests go out unsigned (only useful against a local gateway).
    pub fn new(sdk: &SdkConfig) -> Self {
        Self::with_http(sdk, std::sync::OnceLock::new())
    }

    /// The HTTP client settings [`Self::new`] uses, for a caller that must add to
    /// them: the TLS benchmark trusts its own test CA this way.
    pub fn http_client_builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(IDLE_CONNECTIONS)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
    }

    /// [`Self::new`] with a client built from [`Self::http_client_builder`].
    pub fn with_http_client(sdk: &SdkConfig, http: reqwest::Client) -> Self {
        Self::with_http(sdk, std::sync::OnceLock::from(http))
    }

    fn with_http(sdk: &SdkConfig, http: std::sync::OnceLock<reqwest::Client>) -> Self {
        Self {
            http,
            region: sdk.region().map(|r| r.as_ref().to_owned()),
            credentials: sdk.credentials_provider(),
            time: sdk.time_source().unwrap_or_default(),
            cached: Mutex::new(None),
            signer: sigv4::Signer::default(),
            endpoints: RwLock::default(),
        }
    }

    /// The HTTP client: the one given, or one built with [`Self::http_client_builder`]
    /// on first use.
    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            Self::http_client_builder()
                .build()
                // Fails only if the TLS backend cannot initialise; the SDK clients
                // built from the same config would have failed before us.
                .unwrap_or_default()
        })
    }

    /// The credentials to sign with, fetched once and again shortly before they
    /// expire (Lambda's environment credentials never do).
    async fn credentials(&self) -> Result<Option<Credentials>, PostError> {
        let Some(provider) = &self.credentials else {
            return Ok(None);
        };
        let now = self.time.now();
        {
            let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(credentials) = cached.as_ref()
                && credentials
                    .expiry()
                    .is_none_or(|expiry| now + REFRESH_BEFORE_EXPIRY < expiry)
            {
                return Ok(Some(credentials.clone()));
            }
        }
        let fresh = provider
            .provide_credentials()
            .await
            .map_err(|e| PostError::Transport(format!("no credentials to sign with: {e}")))?;
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
        Ok(Some(fresh))
    }

    async fn call(
        &self,
        method: Method,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), PostError> {
        let mut url = self.base_url(endpoint)?;
        let path = format!(
            "{}/@connections/{}",
            url.path().trim_end_matches('/'),
            utf8_percent_encode(connection_id, SEGMENT)
        );
        url.set_path(&path);
        // The SDK's headers for PostToConnection; both are signed, as it signs them.
        let length = data.len().to_string();
        let post = [
            ("content-length", length.as_str()),
            ("content-type", "application/octet-stream"),
        ];
        let headers: &[(&str, &str)] = if method == Method::POST { &post } else { &[] };
        let signed = match self.credentials().await? {
            Some(credentials) => self.sign(&credentials, method.as_str(), &url, headers, &data)?,
            None => Vec::new(),
        };
        let mut request = self.http().request(method.clone(), url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        for (name, value) in signed {
            request = request.header(name, value);
        }
        if method == Method::POST {
            request = request.body(data);
        }
        let response = request.send().await.map_err(|e| sent_error(&e))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        // Read the (small) error body so the connection goes back to the pool.
        let body = response.bytes().await.unwrap_or_default();
        Err(classify(status, &body))
    }

    /// `endpoint` parsed, from a cache: parsing a URL's host (IDNA included) for
    /// every post was 6% of the gateway's CPU per delivery.
    fn base_url(&self, endpoint: &str) -> Result<reqwest::Url, PostError> {
        if let Some(url) = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(endpoint)
        {
            return Ok(url.clone());
        }
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| PostError::Transport(format!("bad endpoint {endpoint:?}: {e}")))?;
        let mut endpoints = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        // Endpoints come from configuration or API Gateway events: a handful per
        // process. Bound the cache anyway.
        if endpoints.len() >= MAX_ENDPOINTS {
            endpoints.clear();
        }
        endpoints.insert(endpoint.to_owned(), url.clone());
        Ok(url)
    }

    /// The SigV4 headers for one request.
    fn sign(
        &self,
        credentials: &Credentials,
        method: &str,
        url: &reqwest::Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, PostError> {
        let region = self.region.as_deref().ok_or_else(|| {
            PostError::Transport("signing: no region in the AWS configuration".into())
        })?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(PostError::Transport(format!("no host in {url}"))),
        };
        let key = sigv4::Key {
            access_key_id: credentials.access_key_id(),
            secret_access_key: credentials.secret_access_key(),
            session_token: credentials.session_token(),
            region,
            service: SIGNING_NAME,
        };
        let request = sigv4::Request {
            method,
            host: &host,
            path: url.path(),
            headers,
            body,
        };
        Ok(self.signer.sign(&key, &request, self.now()))
    }

    fn now(&self) -> SystemTime {
        self.time.now()
    }
}

/// A request that got no answer: retryable when the connection could not be made
/// or the attempt timed out, as with a 5xx.
fn sent_error(e: &reqwest::Error) -> PostError {
    if e.is_connect() || e.is_timeout() {
        PostError::Unreachable(crate::error_chain(e))
    } else {
        PostError::Transport(crate::error_chain(e))
    }
}

/// Maps an answer by HTTP status, which is what the service's typed errors
/// (GoneException, PayloadTooLargeException, LimitExceededException,
/// ForbiddenException) are keyed on.
fn classify(status: u16, body: &[u8]) -> PostError {
    match status {
        410 => PostError::Gone,
        413 => PostError::PayloadTooLarge,
        429 => PostError::Throttled,
        403 => PostError::Forbidden,
        500.. => PostError::Server {
            status,
            message: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
        },
        _ => PostError::Transport(format!(
            "unexpected status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(512)])
        )),
    }
}

#[async_trait]
impl Management for ApiGatewayManagement {
    async fn post(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), PostError> {
        self.call(Method::POST, endpoint, connection_id, data).await
    }

    async fn delete(&self, endpoint: &str, connection_id: &str) -> Result<(), PostError> {
        self.call(Method::DELETE, endpoint, connection_id, Bytes::new())
            .await
    }
}
