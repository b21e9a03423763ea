//! `POST /write` (InfluxDB 1.x) and `POST /api/v2/write` (InfluxDB 2.x): line protocol,
//! gzip bodies, `precision` (`ns`, `us`, `ms`, `s`, and 1.x's `n`, `u`, `m`, `h`), lines
//! without a timestamp at the time of arrival. `extra_label=name=value` (repeatable) adds
//! a label to every series, as in VictoriaMetrics. 204 when every line was taken; 400 with
//! InfluxDB's "partial write" message when some were not (the others are written).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tsdb_formats::{Item, Precision, influx};

use super::apply::{Grouped, Rejections, finish, write};
use super::body::{admit, decoded, read};
use super::{Protocol, WriteError};
use crate::api::params::Params;
use crate::api::query::now_ms;
use crate::state::AppState;

/// `POST /write`.
pub(crate) async fn v1(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        receive(&state, Protocol::InfluxV1, &uri, &headers, body).await,
        Protocol::InfluxV1,
    )
}

/// `POST /api/v2/write`.
pub(crate) async fn v2(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        receive(&state, Protocol::InfluxV2, &uri, &headers, body).await,
        Protocol::InfluxV2,
    )
}

fn respond(result: Result<(), WriteError>, protocol: Protocol) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(protocol),
    }
}

/// `extra_label=name=value` parameters.
pub(crate) fn extra_labels(params: &Params) -> Result<Vec<(String, String)>, WriteError> {
    params
        .all("extra_label")
        .into_iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    WriteError::BadData(format!("extra_label {p:?}: expected name=value"))
                })
        })
        .collect()
}

async fn receive(
    state: &AppState,
    protocol: Protocol,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), WriteError> {
    let params = Params::from_query(uri.query().unwrap_or_default());
    let precision = match params.get("precision") {
        None => Precision::Nanoseconds,
        Some(p) => Precision::from_influx(p).ok_or_else(|| {
            WriteError::BadData(format!(
                "precision {p:?}: expected ns, us, ms, s (or n, u, m, h)"
            ))
        })?,
    };
    let extra = extra_labels(&params)?;
    let slot = admit(state, protocol).await?;
    let body = read(state, body).await?;
    let text = decoded(state, headers, body)?;
    let opts = influx::Options {
        precision,
        default_timestamp: Some(now_ms()),
        extra_labels: extra,
        ..influx::Options::default()
    };
    let (points, rejections, lines_rejected) =
        tokio::task::spawn_blocking(move || collect(influx::decode(&text, &opts)))
            .await
            .map_err(|e| WriteError::Internal(format!("the decoding task failed: {e}")))?;
    let rejections = if points.is_empty() {
        rejections
    } else {
        write(state, protocol, points, rejections, slot).await?
    };
    finish(state, protocol, &rejections).map_err(|e| match e {
        WriteError::BadData(m) if lines_rejected > 0 => {
            WriteError::BadData(format!("partial write: {m}"))
        }
        other => other,
    })
}

/// Groups the samples of decoded lines by series; rejected lines are counted as
/// `parse_error` with the first one's line number and reason.
pub(crate) fn collect(
    lines: impl Iterator<Item = tsdb_formats::Line>,
) -> (Grouped, Rejections, u64) {
    let mut points = Grouped::default();
    let mut rejections = Rejections::default();
    let mut rejected = 0;
    for line in lines {
        match line.item {
            Item::Sample(s) => points.push(s.labels, s.timestamp, s.value),
            Item::Rejected(reason) => {
                rejected += 1;
                rejections.add("parse_error", 1, || {
                    format!("line {}: {reason}", line.number)
                });
            }
            Item::Metadata(_) => {}
        }
    }
    (points, rejections, rejected)
}

/// `GET|HEAD /ping`: InfluxDB's health check (Telegraf and client libraries call it).
pub(crate) async fn ping() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        "X-Influxdb-Version",
        axum::http::HeaderValue::from_static("1.8-compatible"),
    );
    response
}

/// `GET|POST /query`: InfluxQL is not served; `CREATE DATABASE` (which Telegraf sends
/// before its first write) succeeds, as there is nothing to create, and anything else
/// is refused with a pointer to PromQL.
pub(crate) async fn query(params: Params) -> Response {
    let q = params.get("q").unwrap_or_default();
    let statements: Vec<&str> = q
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let creates = !statements.is_empty()
        && statements
            .iter()
            .all(|s| s.to_ascii_uppercase().starts_with("CREATE DATABASE"));
    if creates {
        let results: Vec<String> = (0..statements.len())
            .map(|i| format!("{{\"statement_id\":{i}}}"))
            .collect();
        let mut response = format!("{{\"results\":[{}]}}", results.join(",")).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        return response;
    }
    WriteError::BadData(
        "InfluxQL queries are not supported: query with PromQL at /api/v1/query".to_owned(),
    )
    .into_response(Protocol::InfluxV1)
}
