//! Request ids, tracing spans and HTTP metrics.
//!
//! Every request gets an `x-request-id` (the client's, or a new one: the process start
//! time and a counter), echoed in the answer and recorded in the request's `tracing` span
//! beside the method and path; every answer of a route is counted by handler (the route's
//! pattern, so that the label's values stay few) and status code, and timed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::metrics::{HandlerLabel, HttpLabels};
use crate::state::AppState;

/// Makes request ids `<process start, hex>-<counter>`.
#[derive(Clone, Debug)]
pub(crate) struct RequestIds {
    prefix: String,
    next: std::sync::Arc<AtomicU64>,
}

impl RequestIds {
    pub(crate) fn new() -> Self {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        RequestIds {
            prefix: format!("{start:x}"),
            next: std::sync::Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// The span of a request: its id, method and path.
pub(crate) fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Counts and times the answers of a route.
pub(crate) async fn http_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let handler = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.inner.metrics;
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            handler: handler.clone(),
            code: response.status().as_u16(),
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&HandlerLabel { handler })
        .observe(started.elapsed().as_secs_f64());
    response
}
