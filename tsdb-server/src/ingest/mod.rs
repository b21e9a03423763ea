//! Writes over HTTP: Prometheus remote write 1.0, Influx line protocol (1.x `/write` and
//! 2.x `/api/v2/write`) and Prometheus text exposition (`/api/v1/import/prometheus`).
//!
//! Every write goes the same way: a slot among
//! [`crate::ServerOptions::write_max_concurrency`] (waiting at most
//! [`crate::ServerOptions::write_queue_timeout`], else 503 with `Retry-After`), then the
//! body (at most [`crate::ServerOptions::max_body_bytes`] as sent and
//! [`crate::ServerOptions::max_decoded_bytes`] decompressed, else 413), decoding on a
//! blocking thread, and the write into the database on a task of its own, so that a client
//! that goes away cannot cut a write in half. A 2xx answer is sent only once every accepted
//! point is as durable as the WAL policy says. Points the database refuses (older than
//! its out-of-order window, invalid labels) are counted and reported with 400, the others
//! being written: the sender should not retry them.

// Reading bodies within limits.
mod body;
// Writing decoded points into the database.
mod apply;
// Series known by the bytes of their labels.
pub(crate) mod series_cache;
// The endpoints.
pub(crate) mod influx;
pub(crate) mod remote_write;
pub(crate) mod text_import;

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The write protocols, as named in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    RemoteWrite,
    InfluxV1,
    InfluxV2,
    PrometheusText,
}

impl Protocol {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::RemoteWrite => "remote_write",
            Protocol::InfluxV1 => "influx_v1",
            Protocol::InfluxV2 => "influx_v2",
            Protocol::PrometheusText => "prometheus_text",
        }
    }
}

/// Why a write was not (wholly) taken.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// Bad data: the sender must not retry (400).
    BadData(String),
    /// The body is too large (413).
    TooLarge(String),
    /// An encoding the server does not read (415).
    UnsupportedEncoding(String),
    /// Overloaded, or the database cannot take writes now: retry later (503, `Retry-After`).
    Unavailable(String, Duration),
    /// Something failed inside (500; senders retry).
    Internal(String),
}

impl WriteError {
    fn status(&self) -> StatusCode {
        match self {
            WriteError::BadData(_) => StatusCode::BAD_REQUEST,
            WriteError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WriteError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WriteError::Unavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
            WriteError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> &str {
        match self {
            WriteError::BadData(m)
            | WriteError::TooLarge(m)
            | WriteError::UnsupportedEncoding(m)
            | WriteError::Unavailable(m, _)
            | WriteError::Internal(m) => m,
        }
    }

    /// The answer in the protocol's own error format: InfluxDB's JSON for Influx, text for
    /// Prometheus's protocols (as Prometheus's receiver answers).
    pub(crate) fn into_response(self, protocol: Protocol) -> Response {
        let status = self.status();
        let message = self.message().to_owned();
        let mut response = match protocol {
            Protocol::InfluxV1 => {
                let mut body = String::from("{\"error\":");
                crate::api::json::push_str(&mut body, &message);
                body.push('}');
                json(status, body)
            }
            Protocol::InfluxV2 => {
                let code = match status {
                    StatusCode::BAD_REQUEST => "invalid",
                    StatusCode::PAYLOAD_TOO_LARGE => "request too large",
                    StatusCode::SERVICE_UNAVAILABLE => "unavailable",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type",
                    _ => "internal error",
                };
                let mut body = format!("{{\"code\":\"{code}\",\"message\":");
                crate::api::json::push_str(&mut body, &message);
                body.push('}');
                json(status, body)
            }
            Protocol::RemoteWrite | Protocol::PrometheusText => {
                (status, format!("{message}\n")).into_response()
            }
        };
        if let WriteError::Unavailable(_, after) = self {
            let secs = after.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

fn json(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
