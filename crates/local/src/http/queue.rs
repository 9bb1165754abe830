//! The SQS API on the gateway's port (`POST /`), in the AWS JSON 1.0 protocol the
//! AWS SDKs have spoken to SQS since late 2023 (aws-sdk-sqs 1.x, the JavaScript SDK
//! v3, boto3, the AWS CLI): `X-Amz-Target: AmazonSQS.<Operation>`, content type
//! `application/x-amz-json-1.0`. Served: `GetQueueUrl`, `SendMessage`,
//! `SendMessageBatch`, `GetQueueAttributes`. Errors carry `__type` and the
//! `x-amzn-query-error` header the SDKs read their error codes from. The guard in
//! front ([`crate::http::guard`]) refuses requests from web pages and checks
//! signatures off loopback.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::aws::AwsError;
use crate::events::gateway_id;
use crate::gateway::Gateway;
use crate::queue::{
    ACCOUNT, Attribute, AttributeValue, Consumer, MAX_BATCH_ENTRIES, MAX_DELAY_SECS,
    MAX_MESSAGE_BYTES, Message, QueueKind,
};

/// What the queue's event source mapping runs with, from the gateway.
fn consumer(gateway: &Gateway) -> Consumer {
    Consumer {
        functions: gateway.functions().clone(),
        region: gateway.options().region.clone(),
        shutdown: gateway.shutdown_signal(),
    }
}

const JSON_1_0: &str = "application/x-amz-json-1.0";
const TARGET_PREFIX: &str = "AmazonSQS.";
/// Most message attributes on one message.
const MAX_ATTRIBUTES: usize = 10;

/// An SQS error: the shape name and the code the query protocol used for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct SqsError {
    pub kind: &'static str,
    pub message: String,
}

fn error(kind: &'static str, message: impl Into<String>) -> SqsError {
    SqsError {
        kind,
        message: message.into(),
    }
}

impl SqsError {
    /// The query-protocol code (`x-amzn-query-error`), which the SDKs report as
    /// the error code for SQS.
    fn query_code(&self) -> &'static str {
        match self.kind {
            "QueueDoesNotExist" => "AWS.SimpleQueueService.NonExistentQueue",
            "EmptyBatchRequest" => "AWS.SimpleQueueService.EmptyBatchRequest",
            "TooManyEntriesInBatchRequest" => "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            "BatchEntryIdsNotDistinct" => "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            "InvalidBatchEntryId" => "AWS.SimpleQueueService.InvalidBatchEntryId",
            "BatchRequestTooLong" => "AWS.SimpleQueueService.BatchRequestTooLong",
            "UnsupportedOperation" => "AWS.SimpleQueueService.UnsupportedOperation",
            other => other,
        }
    }

    fn into_response(self) -> Response {
        let mut response = (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, JSON_1_0)],
            json!({
                "__type": format!("com.amazonaws.sqs#{}", self.kind),
                "message": self.message,
            })
            .to_string(),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&format!("{};Sender", self.query_code())) {
            response.headers_mut().insert("x-amzn-query-error", value);
        }
        response
    }
}

/// `POST /`: one SQS operation, named by `X-Amz-Target`. A request without one is
/// not for SQS (or uses the retired query protocol) and gets `None`.
pub fn handle(gateway: &Gateway, headers: &HeaderMap, body: &Bytes) -> Option<Response> {
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    let operation = target.strip_prefix(TARGET_PREFIX)?;
    let result = match serde_json::from_slice::<Value>(body) {
        Err(_) => Err(error(
            "InvalidParameterValue",
            "the request body is not JSON (roomcast dev speaks the AWS JSON 1.0 protocol)",
        )),
        Ok(request) => operate(gateway, operation, request),
    };
    let mut response = match result {
        Ok(answer) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, JSON_1_0)],
            answer.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&gateway_id()) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    Some(response)
}

/// `POST /` on the gateway: SQS when the request names an SQS operation;
/// otherwise the 403 API Gateway answers for a path it does not serve, or a
/// plain error for the query protocol's form-encoded `Action=`.
pub async fn post(State(gateway): State<Gateway>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = handle(&gateway, &headers, &body) {
        return response;
    }
    if body.starts_with(b"Action=") {
        return error(
            "UnsupportedOperation",
            "roomcast dev serves SQS in the AWS JSON 1.0 protocol only (X-Amz-Target); \
             update the AWS SDK (the query protocol is retired)",
        )
        .into_response();
    }
    AwsError::forbidden().into_response()
}

fn operate(gateway: &Gateway, operation: &str, request: Value) -> Result<Value, SqsError> {
    match operation {
        "GetQueueUrl" => get_queue_url(gateway, parse(request)?),
        "SendMessage" => send_message(gateway, parse(request)?),
        "SendMessageBatch" => send_message_batch(gateway, parse(request)?),
        "GetQueueAttributes" => get_queue_attributes(gateway, parse(request)?),
        other => Err(error(
            "UnsupportedOperation",
            format!(
                "roomcast dev's queue serves GetQueueUrl, SendMessage, SendMessageBatch and \
                 GetQueueAttributes, not {other}"
            ),
        )),
    }
}

fn parse<T: serde::de::DeserializeOwned>(request: Value) -> Result<T, SqsError> {
    serde_json::from_value(request).map_err(|e| error("InvalidParameterValue", e.to_string()))
}

/// `http://HOST:PORT/000000000000/NAME`.
pub fn queue_url(gateway: &Gateway, kind: QueueKind) -> String {
    format!("http://{}/{ACCOUNT}/{}", gateway.local_addr(), kind.name())
}

/// The queue a URL names: its last path segment, as SQS's JSON endpoint reads it.
fn queue_of(url: &str) -> Result<QueueKind, SqsError> {
    let name = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    QueueKind::from_name(name).ok_or_else(|| {
        error(
            "QueueDoesNotExist",
            "The specified queue does not exist.".to_owned(),
        )
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueUrl {
    queue_name: String,
}

fn get_queue_url(gateway: &Gateway, request: GetQueueUrl) -> Result<Value, SqsError> {
    let kind = QueueKind::from_name(&request.queue_name).ok_or_else(|| {
        error(
            "QueueDoesNotExist",
            "The specified queue does not exist.".to_owned(),
        )
    })?;
    Ok(json!({ "QueueUrl": queue_url(gateway, kind) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireAttribute {
    data_type: String,
    string_value: Option<String>,
    binary_value: Option<String>,
}

/// One message as sent: `SendMessage`'s parameters, or a batch entry's.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    id: Option<String>,
    message_body: Option<String>,
    delay_seconds: Option<u64>,
    #[serde(default)]
    message_attributes: BTreeMap<String, WireAttribute>,
    message_deduplication_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessage {
    queue_url: String,
    #[serde(flatten)]
    entry: Entry,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatch {
    queue_url: String,
    #[serde(default)]
    entries: Vec<Entry>,
}

/// The broadcast queue, or an error for the dead-letter queue (which only the
/// redrive fills here) or an unknown one.
fn sendable(url: &str) -> Result<(), SqsError> {
    match queue_of(url)? {
        QueueKind::Broadcast => Ok(()),
        QueueKind::DeadLetter => Err(error(
            "UnsupportedOperation",
            "roomcast dev's dead-letter queue is filled by the redrive policy only",
        )),
    }
}

fn send_message(gateway: &Gateway, request: SendMessage) -> Result<Value, SqsError> {
    sendable(&request.queue_url)?;
    let message = validate(request.entry)?;
    let answer = sent(&message, None);
    gateway.queues().send(&consumer(gateway), vec![message]);
    Ok(answer)
}

fn send_message_batch(gateway: &Gateway, request: SendMessageBatch) -> Result<Value, SqsError> {
    sendable(&request.queue_url)?;
    if request.entries.is_empty() {
        return Err(error(
            "EmptyBatchRequest",
            "There should be at least one SendMessageBatchRequestEntry in the request.",
        ));
    }
    if request.entries.len() > MAX_BATCH_ENTRIES {
        return Err(error(
            "TooManyEntriesInBatchRequest",
            format!("Maximum number of entries per request are {MAX_BATCH_ENTRIES}."),
        ));
    }
    let mut ids = Vec::with_capacity(request.entries.len());
    for entry in &request.entries {
        let id = entry.id.clone().unwrap_or_default();
        if id.is_empty()
            || id.len() > 80
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(error(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and \
                 underscores. It can be at most 80 letters long.",
            ));
        }
        if ids.contains(&id) {
            return Err(error(
                "BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
        ids.push(id);
    }
    let total: usize = request
        .entries
        .iter()
        .map(|e| e.message_body.as_ref().map_or(0, String::len) + attributes_size(e))
        .sum();
    if total > MAX_MESSAGE_BYTES {
        return Err(error(
            "BatchRequestTooLong",
            format!("Batch requests cannot be longer than {MAX_MESSAGE_BYTES} bytes."),
        ));
    }
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    let mut messages = Vec::new();
    for (entry, id) in request.entries.into_iter().zip(ids) {
        match validate(entry) {
            Ok(message) => {
                successful.push(sent(&message, Some(&id)));
                messages.push(message);
            }
            Err(e) => failed.push(json!({
                "Id": id,
                "SenderFault": true,
                "Code": e.query_code(),
                "Message": e.message,
            })),
        }
    }
    if !messages.is_empty() {
        gateway.queues().send(&consumer(gateway), messages);
    }
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

/// `SendMessage`'s answer, or a `Successful` entry of a batch's.
fn sent(message: &Message, id: Option<&str>) -> Value {
    let mut answer = json!({
        "MessageId": message.id,
        "MD5OfMessageBody": message.md5_of_body,
    });
    if let Some(md5) = &message.md5_of_attributes {
        answer["MD5OfMessageAttributes"] = json!(md5);
    }
    if let Some(id) = id {
        answer["Id"] = json!(id);
    }
    answer
}

fn attributes_size(entry: &Entry) -> usize {
    entry
        .message_attributes
        .iter()
        .map(|(name, a)| {
            name.len()
                + a.data_type.len()
                + a.string_value.as_ref().map_or(0, String::len)
                + a.binary_value.as_ref().map_or(0, |b| b.len() * 3 / 4)
        })
        .sum()
}

/// Characters SQS accepts in a message body (its documented XML character set).
fn allowed_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Checks one message as SQS does and builds it, with its MD5 digests.
fn validate(entry: Entry) -> Result<Message, SqsError> {
    let size = entry.message_body.as_ref().map_or(0, String::len) + attributes_size(&entry);
    let body = entry
        .message_body
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            error(
                "MissingParameter",
                "The request must contain the parameter MessageBody.",
            )
        })?;
    if !body.chars().all(allowed_char) {
        return Err(error(
            "InvalidMessageContents",
            "Invalid characters found in the message body.",
        ));
    }
    if size > MAX_MESSAGE_BYTES {
        return Err(error(
            "InvalidParameterValue",
            format!(
                "One or more parameters are invalid. Reason: Message must be shorter than \
                 {MAX_MESSAGE_BYTES} bytes."
            ),
        ));
    }
    if entry.message_deduplication_id.is_some() {
        return Err(error(
            "InvalidParameterValue",
            "The request include parameter that is not valid for this queue type",
        ));
    }
    let delay = entry.delay_seconds.unwrap_or(0);
    if delay > MAX_DELAY_SECS {
        return Err(error(
            "InvalidParameterValue",
            format!(
                "Value {delay} for parameter DelaySeconds is invalid. Reason: must be between 0 and {MAX_DELAY_SECS}."
            ),
        ));
    }
    if entry.message_attributes.len() > MAX_ATTRIBUTES {
        return Err(error(
            "InvalidParameterValue",
            format!(
                "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
                entry.message_attributes.len()
            ),
        ));
    }
    let mut attributes = Vec::new();
    for (name, wire) in entry.message_attributes {
        attributes.push((name.clone(), attribute(&name, wire)?));
    }
    let md5_of_attributes = (!attributes.is_empty()).then(|| md5_of_attributes(&attributes));
    let md5_of_body = md5_hex(body.as_bytes());
    Ok(Message::new(
        body,
        md5_of_body,
        attributes,
        md5_of_attributes,
        Duration::from_secs(delay),
    ))
}

fn attribute(name: &str, wire: WireAttribute) -> Result<Attribute, SqsError> {
    let invalid = |reason: &str| {
        error(
            "InvalidParameterValue",
            format!("Message attribute {name}: {reason}"),
        )
    };
    if name.is_empty()
        || name.len() > 256
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(invalid("the name is not valid"));
    }
    let base = wire.data_type.split('.').next().unwrap_or_default();
    let value = match (base, wire.string_value, wire.binary_value) {
        ("String" | "Number", Some(s), None) if !s.is_empty() => AttributeValue::String(s),
        ("Binary", None, Some(b)) => AttributeValue::Binary(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| invalid("BinaryValue is not base64"))?,
        ),
        ("String" | "Number" | "Binary", _, _) => {
            return Err(invalid("it needs exactly the value its DataType names"));
        }
        _ => return Err(invalid("DataType must be String, Number or Binary")),
    };
    Ok(Attribute {
        data_type: wire.data_type,
        value,
    })
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `MD5OfMessageAttributes`, as SQS computes it: for each attribute in name
/// order, the name, the data type and the value, each as a 4-byte big-endian
/// length and the bytes, with a transport byte (1 string, 2 binary) before the value.
fn md5_of_attributes(attributes: &[(String, Attribute)]) -> String {
    let mut sorted: Vec<&(String, Attribute)> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut bytes = Vec::new();
    let field = |bytes: &mut Vec<u8>, value: &[u8]| {
        bytes.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
        bytes.extend_from_slice(value);
    };
    for (name, a) in sorted {
        field(&mut bytes, name.as_bytes());
        field(&mut bytes, a.data_type.as_bytes());
        match &a.value {
            AttributeValue::String(s) => {
                bytes.push(1);
                field(&mut bytes, s.as_bytes());
            }
            AttributeValue::Binary(b) => {
                bytes.push(2);
                field(&mut bytes, b);
            }
        }
    }
    md5_hex(&bytes)
}

/// `GetQueueAttributes`: the message counts, the ARN, the settings.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributes {
    queue_url: String,
    #[serde(default)]
    attribute_names: Vec<String>,
}

fn get_queue_attributes(gateway: &Gateway, request: GetQueueAttributes) -> Result<Value, SqsError> {
    let kind = queue_of(&request.queue_url)?;
    let counts = gateway.queues().counts(kind);
    let options = gateway.queues().options();
    let region = &gateway.options().region;
    let arn = |kind: QueueKind| format!("arn:aws:sqs:{region}:{ACCOUNT}:{}", kind.name());
    let mut all = BTreeMap::from([
        ("QueueArn", arn(kind)),
        ("ApproximateNumberOfMessages", counts.visible.to_string()),
        (
            "ApproximateNumberOfMessagesNotVisible",
            counts.in_flight.to_string(),
        ),
        (
            "ApproximateNumberOfMessagesDelayed",
            counts.delayed.to_string(),
        ),
        ("MaximumMessageSize", MAX_MESSAGE_BYTES.to_string()),
    ]);
    if kind == QueueKind::Broadcast {
        all.insert(
            "VisibilityTimeout",
            options.visibility_timeout.as_secs().to_string(),
        );
        all.insert(
            "RedrivePolicy",
            json!({
                "deadLetterTargetArn": arn(QueueKind::DeadLetter),
                "maxReceiveCount": options.max_receive_count,
            })
            .to_string(),
        );
    }
    let wanted = |name: &str| {
        request
            .attribute_names
            .iter()
            .any(|n| n == "All" || n == name)
    };
    let attributes: BTreeMap<&str, String> =
        all.into_iter().filter(|(name, _)| wanted(name)).collect();
    Ok(json!({ "Attributes": attributes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5s_match_sqs() {
        // MD5 of "hello", and of a String attribute, as SQS documents the encoding.
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
        let attributes = vec![(
            "a".to_owned(),
            Attribute {
                data_type: "String".to_owned(),
                value: AttributeValue::String("b".to_owned()),
            },
        )];
        let mut expected = Vec::new();
        expected.extend_from_slice(&[0, 0, 0, 1, b'a', 0, 0, 0, 6]);
        expected.extend_from_slice(b"String");
        expected.extend_from_slice(&[1, 0, 0, 0, 1, b'b']);
        assert_eq!(md5_of_attributes(&attributes), md5_hex(&expected));
    }

    #[test]
    fn queue_urls_name_queues_by_their_last_segment() {
        assert_eq!(
            queue_of("http://127.0.0.1:3001/000000000000/BroadcastQueue"),
            Ok(QueueKind::Broadcast)
        );
        assert_eq!(
            queue_of("https://sqs.eu-west-1.amazonaws.com/1/BroadcastDeadLetterQueue/"),
            Ok(QueueKind::DeadLetter)
        );
        assert_eq!(
            queue_of("http://x/1/other").unwrap_err().kind,
            "QueueDoesNotExist"
        );
    }

    #[test]
    fn bodies_are_checked_as_sqs_does() {
        let entry = |body: &str| Entry {
            id: None,
            message_body: Some(body.to_owned()),
            delay_seconds: None,
            message_attributes: BTreeMap::new(),
            message_deduplication_id: None,
        };
        assert!(validate(entry("{}")).is_ok());
        assert_eq!(validate(entry("")).unwrap_err().kind, "MissingParameter");
        assert_eq!(
            validate(entry("a\u{0}b")).unwrap_err().kind,
            "InvalidMessageContents"
        );
        let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert_eq!(
            validate(entry(&big)).unwrap_err().kind,
            "InvalidParameterValue"
        );
    }
}
