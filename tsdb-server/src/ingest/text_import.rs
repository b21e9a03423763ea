//! `POST /api/v1/import/prometheus`: Prometheus text exposition, as VictoriaMetrics takes
//! it: samples without a timestamp at `timestamp` (ms) or the time of arrival,
//! `extra_label=name=value` added to every series, gzip bodies; `# TYPE`/`# HELP` lines feed
//! `/api/v1/metadata`. 204, or 400 naming the lines refused (the others are written).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tsdb_formats::{Item, prometheus_text};

use super::apply::{finish, write};
use super::body::{admit, decoded, read};
use super::influx::{collect, extra_labels};
use super::{Protocol, WriteError};
use crate::api::params::Params;
use crate::api::query::now_ms;
use crate::state::AppState;

/// The handler.
pub(crate) async fn handle(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive(&state, &uri, &headers, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(Protocol::PrometheusText),
    }
}

async fn receive(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), WriteError> {
    let params = Params::from_query(uri.query().unwrap_or_default());
    let default_timestamp = match params.get("timestamp") {
        None => now_ms(),
        Some(t) => t
            .parse()
            .map_err(|_| WriteError::BadData(format!("timestamp {t:?}: expected milliseconds")))?,
    };
    let extra = extra_labels(&params)?;
    let slot = admit(state, Protocol::PrometheusText).await?;
    let body = read(state, body).await?;
    let text = decoded(state, headers, body)?;
    let opts = prometheus_text::Options {
        default_timestamp: Some(default_timestamp),
        extra_labels: extra,
        ..prometheus_text::Options::default()
    };
    let (points, rejections, metadata) = tokio::task::spawn_blocking(move || {
        let mut metadata = Vec::new();
        let lines = prometheus_text::decode(&text, &opts).filter_map(|line| match line.item {
            Item::Metadata(m) => {
                metadata.push(m);
                None
            }
            _ => Some(line),
        });
        let (points, rejections, _) = collect(lines);
        (points, rejections, metadata)
    })
    .await
    .map_err(|e| WriteError::Internal(format!("the decoding task failed: {e}")))?;
    state.inner.metadata.record(metadata);
    let rejections = if points.is_empty() {
        rejections
    } else {
        write(state, Protocol::PrometheusText, points, rejections, slot).await?
    };
    finish(state, Protocol::PrometheusText, &rejections)
}
