//! The envelope of every `/api/v1` answer, as Prometheus 2.42 writes it:
//! `{"status":"success","data":...,"warnings":[...]}` or
//! `{"status":"error","errorType":"bad_data","error":"..."}` with its status code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gorilla_tsdb::Error;
use gorilla_tsdb::promql::PromqlError;

use super::json::push_str;

/// Prometheus's `errorType`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorType {
    /// 400: the request is wrong (a parameter, the query text).
    BadData,
    /// 422: the query is valid but failed to evaluate (or hit a limit).
    Execution,
    /// 503: the query ran out of time.
    Timeout,
    /// 503: the database cannot answer now (closing, a backend unreachable).
    Unavailable,
    /// 500: something failed inside.
    Internal,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Unavailable => "unavailable",
            ErrorType::Internal => "internal",
        }
    }

    /// The status code Prometheus's `respondError` gives the type (`unavailable` falls in
    /// its default branch there, 500; here it is 503, which is what it means).
    fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The label value of the `query_errors` metric.
    pub(crate) fn metric_label(self) -> &'static str {
        self.as_str()
    }
}

/// An `/api/v1` error answer.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub(crate) kind: ErrorType,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn bad_data(message: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, message)
    }

    /// Prometheus's `invalidParamError`: `invalid parameter "name": reason`.
    pub(crate) fn invalid_param(name: &str, reason: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {name:?}: {reason}"))
    }

    /// A database error: retryable ones and a closed database are `unavailable`, bad input
    /// is `bad_data`, limits are `execution`, anything else `internal`.
    pub(crate) fn from_db(e: &Error) -> Self {
        let kind = match e {
            _ if e.is_retryable() => ErrorType::Unavailable,
            Error::Closed { .. } => ErrorType::Unavailable,
            Error::InvalidInput { .. }
            | Error::InvalidMatcher { .. }
            | Error::InvalidLabels { .. } => ErrorType::BadData,
            Error::LimitExceeded { .. } => ErrorType::Execution,
            _ => ErrorType::Internal,
        };
        Self::new(kind, e.to_string())
    }

    /// A PromQL error of evaluation, classed as Prometheus classes it: limits and
    /// evaluation failures are `execution`; a failing source is `unavailable` when retrying
    /// may help, else `internal`; query texts the engine refuses are `bad_data`.
    pub(crate) fn from_promql(e: &PromqlError) -> Self {
        let kind = match e {
            PromqlError::Parse { .. } | PromqlError::TooComplex { .. } => ErrorType::BadData,
            PromqlError::Source(_) => match e.source_error() {
                Some(db) => return Self::from_db(db),
                None => ErrorType::Internal,
            },
            _ => ErrorType::Execution,
        };
        Self::new(kind, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = String::with_capacity(64 + self.message.len());
        body.push_str("{\"status\":\"error\",\"errorType\":\"");
        body.push_str(self.kind.as_str());
        body.push_str("\",\"error\":");
        push_str(&mut body, &self.message);
        body.push('}');
        json_response(self.kind.status(), body)
    }
}

/// `{"status":"success","data":<data>}`, `data` being JSON text already, and `warnings`
/// when there are any.
pub(crate) fn success(data: &str, warnings: &[String]) -> Response {
    json_response(
        StatusCode::OK,
        tsdb_render::json::success_body(data, warnings),
    )
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
