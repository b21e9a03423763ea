//! `POST /api/v1/write`: Prometheus remote write 1.0.
//!
//! 204 once every sample is as durable as the WAL policy says; 400 (the sender drops the
//! batch) for a body that is not a snappy-compressed `WriteRequest` or holds samples the
//! database refuses (the others are written); 413 for bodies over the limits; 503 with
//! `Retry-After` when overloaded or stopping (Prometheus retries 5xx; it drops a 429 unless
//! `retry_on_http_429` is set, so overload is never 429 here). Stale markers are written as
//! they come, bit for bit.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::apply::{Grouped, Rejections, finish, write};
use super::body::{admit, read};
use super::{Protocol, WriteError};
use crate::state::AppState;

/// The handler.
pub(crate) async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive(&state, &headers, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(Protocol::RemoteWrite),
    }
}

async fn receive(state: &AppState, headers: &HeaderMap, body: Body) -> Result<(), WriteError> {
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if !encoding.eq_ignore_ascii_case("snappy") {
            return Err(WriteError::UnsupportedEncoding(format!(
                "Content-Encoding {encoding:?}: remote write bodies are snappy-compressed"
            )));
        }
    }
    let slot = admit(state, Protocol::RemoteWrite).await?;
    let body = read(state, body).await?;
    let limit = state.inner.options.max_decoded_bytes;
    let decoded = tokio::task::spawn_blocking(move || {
        tsdb_formats::remote_write::decode(&body, limit).map(|r| r.into_series())
    })
    .await
    .map_err(|e| WriteError::Internal(format!("the decoding task failed: {e}")))?
    .map_err(|e| match e {
        tsdb_formats::remote_write::DecodeError::TooLarge { .. } => {
            WriteError::TooLarge(format!("{e} (--write.max-decoded-bytes)"))
        }
        other => WriteError::BadData(format!("not a remote write request: {other}")),
    })?;
    state.inner.metadata.record(decoded.metadata);
    let mut rejections = Rejections::default();
    for (reason, n, first) in decoded.rejected {
        rejections.add(reason.as_str(), n, || first);
    }
    let mut points = Grouped::default();
    for s in decoded.series {
        points.extend(s.labels, s.samples);
    }
    let rejections = if points.is_empty() {
        rejections
    } else {
        write(state, Protocol::RemoteWrite, points, rejections, slot).await?
    };
    finish(state, Protocol::RemoteWrite, &rejections)
}
