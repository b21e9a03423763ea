//! `POST /api/v1/write`: Prometheus remote write 1.0.
//!
//! 204 once every sample is as durable as the WAL policy says; 400 (the sender drops the
//! batch) for a body that is not a snappy-compressed `WriteRequest` or holds samples the
//! database refuses (the others are written); 413 for bodies over the limits; 503 with
//! `Retry-After` when overloaded or stopping (Prometheus retries 5xx; it drops a 429 unless
//! `retry_on_http_429` is set, so overload is never 429 here). Stale markers are written as
//! they come, bit for bit. The body is read in place ([`remote_write::scan`]) and its series
//! looked up in the [`SeriesCache`] by the bytes of their labels, so that a known series
//! costs no allocation.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use gorilla_tsdb::DataPoint;
use tsdb_formats::remote_write;

use super::apply::{Rejections, Resolved, finish, write_resolved};
use super::body::{admit, read};
use super::series_cache::SeriesCache;
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

/// Bodies that decompress to at most this many bytes are decoded without leaving the
/// runtime's thread.
const INLINE_DECODED_BYTES: usize = 256 << 10;

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
    let declared = remote_write::declared_len(&body).unwrap_or(usize::MAX);
    let limit = state.inner.options.max_decoded_bytes;
    let shared = state.inner.clone();
    let decode = move || {
        let raw = remote_write::decompress(&body, limit)?;
        let scanned = remote_write::scan(&raw)?;
        Ok::<_, ReceiveError>(resolve(&shared.series_cache, &scanned))
    };
    // A body of Prometheus' usual size (500 samples a request: about 7 KB, 40 KB decoded, in
    // tens of microseconds) decodes on the runtime's thread: handing it to a blocking thread
    // and back cost more than the decoding. Larger ones (by the decoded length snappy
    // declares: a small body may expand twentyfold), or undeclared, go to a blocking thread.
    let decoded = if declared <= INLINE_DECODED_BYTES {
        decode()
    } else {
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|e| WriteError::Internal(format!("the decoding task failed: {e}")))?
    };
    let (resolved, metadata, histograms) = decoded.map_err(|e| match e {
        ReceiveError::Decode(e @ remote_write::DecodeError::TooLarge { .. }) => {
            WriteError::TooLarge(format!("{e} (--write.max-decoded-bytes)"))
        }
        other => WriteError::BadData(format!("not a remote write request: {other}")),
    })?;
    state.inner.metadata.record(metadata);
    let mut rejections = Rejections::default();
    rejections.add(
        remote_write::RejectReason::NativeHistogram.as_str(),
        histograms,
        || "native histograms are not supported".to_owned(),
    );
    let rejections = if resolved.is_empty() {
        rejections
    } else {
        write_resolved(state, Protocol::RemoteWrite, resolved, rejections, slot).await?
    };
    finish(state, Protocol::RemoteWrite, &rejections)
}

/// Why a body is not a remote-write request.
#[derive(Debug, thiserror::Error)]
enum ReceiveError {
    #[error("{0}")]
    Decode(#[from] remote_write::DecodeError),
    #[error("{0}")]
    Scan(#[from] remote_write::ScanError),
}

/// The request's points by series: those of series the cache knows as points of their id,
/// the others with their labels decoded, for registration.
fn resolve(
    cache: &SeriesCache,
    scanned: &remote_write::Scanned<'_>,
) -> (Resolved, Vec<tsdb_formats::MetricMetadata>, u64) {
    let mut resolved = Resolved::default();
    resolved.known.reserve(scanned.samples.len());
    let with_samples: Vec<_> = scanned
        .series
        .iter()
        .filter(|series| !series.samples.is_empty())
        .collect();
    let keys: Vec<_> = with_samples
        .iter()
        .map(|series| cache.key(&series.label_fields))
        .collect();
    let ids = cache.get_many(&keys);
    for ((series, key), id) in with_samples.into_iter().zip(keys).zip(ids) {
        let samples = &scanned.samples[series.samples.clone()];
        match id {
            Some(id) => resolved
                .known
                .extend(samples.iter().map(|&(t, v)| DataPoint::new(id, t, v))),
            None => resolved
                .unknown
                .push((key, series.labels(), samples.to_vec())),
        }
    }
    (resolved, scanned.metadata.clone(), scanned.histograms)
}
