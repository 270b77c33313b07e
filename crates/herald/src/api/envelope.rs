//! The answers of the HTTP APIs: the `/v1` envelopes (MPS's names), a refusal with its code
//! and status, and the types the OpenAPI description shows for them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_core::crypto;
use herald_core::error::{ApiError, ErrorCode};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// A JSON response with status 200.
pub struct Json(pub Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        ([("content-type", "application/json")], self.0.to_string()).into_response()
    }
}

fn request_id() -> String {
    crypto::random_alnum(20)
}

/// The `/v1` answer to a query: what was asked for is `resultContent.data`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryAnswer {
    pub request_id: String,
    /// `OK`.
    pub result_code: String,
    pub result_message: String,
    pub result_content: QueryContent,
}

#[derive(Serialize, ToSchema)]
pub struct QueryContent {
    /// What the query returns (see the operation's description and docs/api.md).
    #[schema(value_type = Object)]
    pub data: Value,
}

/// The `/v1` success envelope for queries.
pub fn ok_content(data: Value) -> Json {
    Json(json!({"requestId": request_id(), "resultCode": "OK", "resultMessage": "OK", "resultContent": {"data": data}}))
}

/// The `/v1` answer to a push (and to a revoke): `pushResult.data` is the task.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushAnswer {
    pub request_id: String,
    /// `OK`.
    pub result_code: String,
    pub result_message: String,
    pub push_result: PushResult,
}

#[derive(Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushResult {
    pub success: bool,
    pub result_msg: String,
    /// The taskId (or, for a scheduled push, the schedule's uniqueId).
    pub data: String,
    /// Simple, Template and Multiple pushes: each target's outcome, in request order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetResult>>,
    /// A scheduled push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<ScheduledResult>,
    /// A broadcast: its key, its message and `accepted` or `duplicate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgkey: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// A revoke: the messages revoked now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_messages: Option<Vec<String>>,
    /// A revoke: deliveries still pending, now never delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<u64>,
    /// A revoke: devices sent a control message withdrawing what they got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recalled: Option<usize>,
    /// A revoke: copies a vendor had already taken, each to be replaced on its device by a
    /// recall through that vendor (each vendor send then says `recalled` or why not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_recalls: Option<u64>,
    /// A revoke of a scheduled push's id: whether it was still waiting (now cancelled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_cancelled: Option<bool>,
}

/// What became of one target of a push.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetResult {
    pub target: String,
    pub msg_key: String,
    /// The message (for a duplicate: the earlier one).
    pub message_id: String,
    /// `accepted`, `undeliverable` (no such device) or `duplicate`.
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledResult {
    pub unique_id: String,
    /// The first firing, Unix ms.
    pub push_time: i64,
    /// 1 fixed time, 2 recurring.
    pub strategy_type: i64,
}

/// The `/v1` success envelope for pushes: `result.data` carries the taskId.
pub fn ok_push(result: PushResult) -> Json {
    let answer = PushAnswer {
        request_id: request_id(),
        result_code: "OK".into(),
        result_message: "OK".into(),
        push_result: PushResult { success: true, result_msg: "OK".into(), ..result },
    };
    Json(serde_json::to_value(answer).unwrap_or_default())
}

/// The body of every refusal.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    pub request_id: String,
    /// A stable code of docs/errors.md, with its HTTP status.
    pub result_code: ErrorCode,
    /// Why, for a person.
    pub result_message: String,
}

/// A refusal of the HTTP APIs: a code of `herald_core::error`'s table with a message for the
/// caller, answered as [`Refused`] with the code's status. (The table is the domain's;
/// answering HTTP is the API's.)
#[derive(Debug)]
pub struct Refusal(pub ApiError);

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal(ApiError::new(code, message))
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal(e)
    }
}

impl From<herald_store::StoreError> for Refusal {
    fn from(e: herald_store::StoreError) -> Self {
        Refusal(e.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let Refusal(e) = self;
        let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = e.retry_after.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
        let body = Refused { request_id: request_id(), result_code: e.code, result_message: e.message };
        let mut response =
            (status, [("content-type", "application/json")], serde_json::to_string(&body).unwrap_or_default())
                .into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert("retry-after", secs.into());
        }
        response
    }
}

/// Parses a JSON body: broken JSON is `INVALID_JSON`, a wrong shape `INVALID_PARAM`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    Ok(herald_core::error::parse_json(body)?)
}

/// The refusals any operation may answer (for the OpenAPI description): the status is the
/// code's, as docs/errors.md lists them.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Describes responses; handlers answer Refusal.
pub enum Refusals {
    /// Refused for the request's sake: see `resultCode` and docs/errors.md.
    #[response(status = "4XX")]
    Caller(Refused),
    /// Herald could not serve it now (`SYSTEM_ERROR`, or a cluster node without its bus).
    #[response(status = "5XX")]
    Herald(Refused),
}
