//! `/api/v1/status/buildinfo`, `/api/v1/metadata`, `/-/healthy`, `/-/ready` and `/metrics`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::json::push_str;
use super::params::Params;
use super::response::{ApiError, ErrorType, success};
use crate::state::AppState;

/// The Prometheus version whose HTTP API this server speaks; clients (Grafana) read it from
/// `buildinfo` to decide which features they may use.
pub(crate) const PROMETHEUS_API_VERSION: &str = "2.42.0";

/// `GET /api/v1/status/buildinfo`: Prometheus's fields; `version` is the Prometheus version
/// whose API is served, `revision` names this server.
pub(crate) async fn build_info() -> Response {
    let mut data = String::from("{\"version\":");
    push_str(&mut data, PROMETHEUS_API_VERSION);
    data.push_str(",\"revision\":");
    push_str(
        &mut data,
        concat!("gorilla-tsdb ", env!("CARGO_PKG_VERSION")),
    );
    data.push_str(",\"branch\":\"\",\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":\"\"}");
    success(&data, &[])
}

/// `GET /api/v1/metadata`: `{"<family>": [{"type","help","unit"}, ...]}`, from what remote
/// write and exposition text sent.
pub(crate) async fn metadata(State(state): State<AppState>, params: Params) -> Response {
    let limit = match params.get("limit") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            // Prometheus: a negative limit means none.
            Ok(n) => usize::try_from(n).ok(),
            Err(_) => return ApiError::bad_data("limit must be a number").into_response(),
        },
    };
    let families = state.inner.metadata.list(params.get("metric"), limit);
    let mut data = String::from("{");
    for (i, (name, records)) in families.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        push_str(&mut data, name);
        data.push_str(":[");
        for (j, (kind, help, unit)) in records.iter().enumerate() {
            if j > 0 {
                data.push(',');
            }
            data.push_str("{\"type\":");
            push_str(&mut data, kind);
            data.push_str(",\"help\":");
            push_str(&mut data, help);
            data.push_str(",\"unit\":");
            push_str(&mut data, unit);
            data.push('}');
        }
        data.push(']');
    }
    data.push('}');
    success(&data, &[])
}

/// `GET /api/v1/rules`: this server evaluates no rules (Grafana's alerting pages ask).
pub(crate) async fn rules() -> Response {
    success("{\"groups\":[]}", &[])
}

/// `GET /api/v1/alerts`: no rules, so no alerts.
pub(crate) async fn alerts() -> Response {
    success("{\"alerts\":[]}", &[])
}

/// `GET /-/healthy`.
pub(crate) async fn healthy() -> &'static str {
    "Gorilla TSDB is Healthy.\n"
}

/// `GET /-/ready`: 503 once shutdown has begun.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    if state.stopping() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Gorilla TSDB is shutting down.\n",
        )
            .into_response()
    } else {
        "Gorilla TSDB is Ready.\n".into_response()
    }
}

/// `GET /metrics`: the OpenMetrics text of the server's and the database's metrics.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match state.inner.metrics.encode() {
        Ok(text) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        Err(_) => ApiError::new(ErrorType::Internal, "encoding the metrics failed").into_response(),
    }
}
