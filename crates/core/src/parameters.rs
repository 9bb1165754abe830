//! Parameter Store reads at cold start: the namespace policy document
//! (`ROOMCAST_POLICIES_PARAMETER`) and the HS256 secret
//! (`ROOMCAST_JWT_SECRET_PARAMETER`) may be named by an environment variable
//! instead of carried in one, which Lambda limits to 4 KB in all and shows to
//! anyone allowed `lambda:GetFunctionConfiguration`.
//!
//! One SigV4-signed `GetParameter` call (AWS JSON 1.1) with the signer the
//! `@connections` adapter uses, so no SDK client is compiled in for one call.
//! A name may carry a `:version` or `:label` selector, as `GetParameter` takes.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use serde::Deserialize;
use serde_json::json;

use crate::management::sigv4;

/// The signing name and `X-Amz-Target` of Parameter Store.
const SERVICE: &str = "ssm";
const TARGET: &str = "AmazonSSM.GetParameter";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a parameter could not be read. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("no region in the AWS configuration")]
    NoRegion,
    #[error("no credentials to sign with: {0}")]
    NoCredentials(String),
    #[error("Parameter Store did not answer: {0}")]
    Unreachable(String),
    /// Parameter Store's error type (`ParameterNotFound`, `AccessDeniedException`,
    /// ...) and HTTP status.
    #[error("Parameter Store refused: {kind} ({status})")]
    Refused { status: u16, kind: String },
    #[error("unexpected answer from Parameter Store: {0}")]
    Malformed(String),
}

/// Where and as whom parameters are read.
pub struct ParameterStore {
    endpoint: reqwest::Url,
    region: String,
    sdk: SdkConfig,
    http: reqwest::Client,
    signer: sigv4::Signer,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Parameter")]
    parameter: Parameter,
}

#[derive(Deserialize)]
struct Parameter {
    #[serde(rename = "Value")]
    value: String,
}

impl ParameterStore {
    /// Parameter Store of `sdk`'s region, or the endpoint it configures
    /// (`AWS_ENDPOINT_URL_SSM` / `AWS_ENDPOINT_URL`).
    pub fn new(sdk: &SdkConfig) -> Result<Self, ParameterError> {
        let region = sdk
            .region()
            .map(|r| r.as_ref().to_owned())
            .ok_or(ParameterError::NoRegion)?;
        let endpoint = match sdk.endpoint_url() {
            Some(url) => url.to_owned(),
            None => format!("https://ssm.{region}.amazonaws.com/"),
        };
        Self::at(sdk, &endpoint, region)
    }

    /// Parameter Store at `endpoint`, signing for `region`.
    pub fn at(sdk: &SdkConfig, endpoint: &str, region: String) -> Result<Self, ParameterError> {
        let endpoint = reqwest::Url::parse(endpoint)
            .map_err(|e| ParameterError::Malformed(format!("endpoint {endpoint:?}: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| ParameterError::Unreachable(crate::error_chain(&e)))?;
        Ok(Self {
            endpoint,
            region,
            sdk: sdk.clone(),
            http,
            signer: sigv4::Signer::default(),
        })
    }

    /// The value of parameter `name`, decrypted if it is a SecureString.
    pub async fn get(&self, name: &str) -> Result<String, ParameterError> {
        let body = json!({"Name": name, "WithDecryption": true}).to_string();
        let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
        let mut request = self.http.post(self.endpoint.clone()).body(body.clone());
        for (header, value) in headers {
            request = request.header(header, value);
        }
        for (header, value) in self.sign(&headers, body.as_bytes()).await? {
            request = request.header(header, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ParameterError::Unreachable(crate::error_chain(&e)))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| ParameterError::Unreachable(crate::error_chain(&e)))?;
        if !(200..300).contains(&status) {
            return Err(ParameterError::Refused {
                status,
                kind: error_kind(&text),
            });
        }
        let answer: Answer = serde_json::from_str(&text)
            .map_err(|_| ParameterError::Malformed("no Parameter.Value".into()))?;
        Ok(answer.parameter.value)
    }

    async fn sign(
        &self,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, ParameterError> {
        let provider = self
            .sdk
            .credentials_provider()
            .ok_or_else(|| ParameterError::NoCredentials("none configured".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| ParameterError::NoCredentials(e.to_string()))?;
        let host = match (self.endpoint.host_str(), self.endpoint.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(ParameterError::Malformed("endpoint without a host".into())),
        };
        let key = sigv4::Key {
            access_key_id: credentials.access_key_id(),
            secret_access_key: credentials.secret_access_key(),
            session_token: credentials.session_token(),
            region: &self.region,
            service: SERVICE,
        };
        let request = sigv4::Request {
            method: "POST",
            host: &host,
            path: self.endpoint.path(),
            headers,
            body,
        };
        Ok(self.signer.sign(&key, &request, SystemTime::now()))
    }
}

/// The error type of an AWS JSON error answer (`__type`, without its namespace).
fn error_kind(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("__type").and_then(|t| t.as_str()).map(str::to_owned))
        .map(|t| t.rsplit('#').next().unwrap_or_default().to_owned())
        .unwrap_or_else(|| "unknown".into())
}
