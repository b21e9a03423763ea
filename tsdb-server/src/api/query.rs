//! `/api/v1/query`, `/api/v1/query_range` and `/api/v1/query_exemplars`.
//!
//! Queries are evaluated on a task of their own on the runtime (the database reads and
//! evaluates large selections on every worker already; a hop to a blocking thread and back
//! cost a small query more than its evaluation: the server's CPU for Q1 over HTTP was
//! 72-82 µs a request that way, 55-57 µs this way), and answers of more than
//! [`ENCODE_APART_SAMPLES`] samples are encoded on a blocking thread, so that no worker is
//! held by a long serial loop. At most [`crate::ServerOptions::query_max_concurrency`] run
//! at once, within the request's `timeout` capped by
//! [`crate::ServerOptions::query_timeout`]. A query that runs out of time is answered
//! `timeout` (503) at once; its evaluation keeps its slot until it ends, so that the
//! concurrency limit holds for the CPU too.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gorilla_tsdb::promql::{Value, parse};
use promql_parser::parser::value::ValueType;

use super::json::push_query_data;
use super::params::{MAX_TIME_MS, MIN_TIME_MS, Params, parse_duration_ns};
use super::response::{ApiError, ErrorType, success};
use crate::metrics::{EndpointLabel, QueryErrorLabels};
use crate::state::AppState;

/// What to evaluate.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Evaluation {
    /// At one time (ms).
    Instant { time: i64 },
    /// From `start` to `end` every `step` (ms).
    Range { start: i64, end: i64, step: i64 },
}

/// `GET|POST /api/v1/query`.
pub(crate) async fn instant(State(state): State<AppState>, params: Params) -> Response {
    let started = Instant::now();
    let result = async {
        let time = params.time_or("time", now_ms())?;
        let timeout = timeout(&state, &params)?;
        let text = params.get("query").unwrap_or_default().to_owned();
        parse(&text, state.inner.engine.options())
            .map_err(|e| ApiError::invalid_param("query", e))?;
        evaluate(&state, text, Evaluation::Instant { time }, timeout).await
    }
    .await;
    respond(&state, "query", started, result)
}

/// `GET|POST /api/v1/query_range`.
pub(crate) async fn range(State(state): State<AppState>, params: Params) -> Response {
    let started = Instant::now();
    let result = async {
        let start = params.time("start")?;
        let end = params.time("end")?;
        if end < start {
            return Err(ApiError::invalid_param(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        let step_ns = parse_duration_ns(params.get("step").unwrap_or_default())
            .map_err(|e| ApiError::invalid_param("step", e))?;
        let zero_step = || {
            ApiError::invalid_param(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            )
        };
        if step_ns <= 0 {
            return Err(zero_step());
        }
        let span_ns = (i128::from(end) - i128::from(start)) * 1_000_000;
        if span_ns / step_ns > 11_000 {
            return Err(ApiError::bad_data(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let step = i64::try_from(step_ns / 1_000_000).map_err(|_| zero_step())?;
        if step <= 0 {
            return Err(zero_step());
        }
        let timeout = timeout(&state, &params)?;
        let text = params.get("query").unwrap_or_default().to_owned();
        let query = parse(&text, state.inner.engine.options()).map_err(|e| ApiError::bad_data(e.to_string()))?;
        match query.expr().value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                return Err(ApiError::bad_data(format!(
                    "invalid expression type {:?} for range query, must be Scalar or instant Vector",
                    match other {
                        ValueType::Matrix => "range vector",
                        _ => "string",
                    }
                )));
            }
        }
        evaluate(&state, text, Evaluation::Range { start, end, step }, timeout).await
    }
    .await;
    respond(&state, "query_range", started, result)
}

/// `GET|POST /api/v1/query_exemplars`: this database keeps no exemplars, so a valid query
/// gets an empty list (and a query without selectors no content, as in Prometheus).
pub(crate) async fn exemplars(State(state): State<AppState>, params: Params) -> Response {
    let result = (|| {
        let start = params.time_or("start", MIN_TIME_MS)?;
        let end = params.time_or("end", MAX_TIME_MS)?;
        if end < start {
            return Err(ApiError::bad_data(
                "end timestamp must not be before start timestamp",
            ));
        }
        let text = params.get("query").unwrap_or_default();
        let query = parse(text, state.inner.engine.options())
            .map_err(|e| ApiError::bad_data(e.to_string()))?;
        Ok(has_selector(query.expr()))
    })();
    match result {
        Ok(true) => success("[]", &[]),
        Ok(false) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

fn has_selector(expr: &promql_parser::parser::Expr) -> bool {
    use promql_parser::parser::Expr;
    match expr {
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => true,
        Expr::Aggregate(a) => has_selector(&a.expr) || a.param.as_deref().is_some_and(has_selector),
        Expr::Unary(u) => has_selector(&u.expr),
        Expr::Binary(b) => has_selector(&b.lhs) || has_selector(&b.rhs),
        Expr::Paren(p) => has_selector(&p.expr),
        Expr::Subquery(s) => has_selector(&s.expr),
        Expr::Call(c) => c.args.args.iter().any(|a| has_selector(a)),
        _ => false,
    }
}

/// The request's `timeout`, capped by the server's.
fn timeout(state: &AppState, params: &Params) -> Result<Duration, ApiError> {
    let cap = state.inner.options.query_timeout;
    match params.get("timeout") {
        None => Ok(cap),
        Some(text) => {
            let ns = parse_duration_ns(text).map_err(|e| ApiError::invalid_param("timeout", e))?;
            let asked = Duration::from_nanos(u64::try_from(ns.max(0)).unwrap_or(u64::MAX));
            Ok(asked.min(cap))
        }
    }
}

/// Evaluates within the concurrency limit and the timeout; returns the `data` JSON.
async fn evaluate(
    state: &AppState,
    text: String,
    what: Evaluation,
    timeout: Duration,
) -> Result<String, ApiError> {
    evaluate_with(state, text, what, timeout, |value| {
        let mut data = String::new();
        push_query_data(&mut data, &value);
        data
    })
    .await
}

/// Answers with more samples than this are encoded on a blocking thread.
const ENCODE_APART_SAMPLES: usize = 20_000;

/// Samples in a value (what encoding it costs).
fn samples_in(value: &Value) -> usize {
    match value {
        Value::Scalar { .. } | Value::String { .. } => 1,
        Value::Vector(samples) => samples.len(),
        Value::Matrix(series) => series.iter().map(|s| s.points.len().max(1)).sum(),
    }
}

/// Evaluates within the concurrency limit and the timeout, then `finish`es the value (on a
/// blocking thread when it is large: encoding an answer is CPU work too).
pub(crate) async fn evaluate_with<T: Send + 'static>(
    state: &AppState,
    text: String,
    what: Evaluation,
    timeout: Duration,
    finish: impl FnOnce(Value) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out =
        |stage: &str| ApiError::new(ErrorType::Timeout, format!("query timed out in {stage}"));
    let permit =
        match tokio::time::timeout_at(deadline, state.inner.query_slots.clone().acquire_owned())
            .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => {
                return Err(ApiError::new(
                    ErrorType::Unavailable,
                    "the server is stopping",
                ));
            }
            Err(_) => return Err(timed_out("query queue")),
        };
    // A deadline already past (`timeout=0`) fails, as Go's expired context does, even when
    // a slot was free at once.
    if tokio::time::Instant::now() >= deadline {
        return Err(timed_out("query queue"));
    }
    let shared = state.inner.clone();
    let task = tokio::spawn(async move {
        let _permit = permit;
        shared.metrics.queries_in_flight.inc();
        let result = async {
            let engine = &shared.engine;
            let evaluated = match what {
                Evaluation::Instant { time } => {
                    tokio::time::timeout_at(deadline, engine.instant_query(&text, time)).await
                }
                Evaluation::Range { start, end, step } => {
                    tokio::time::timeout_at(deadline, async {
                        engine
                            .range_query(&text, start, end, step)
                            .await
                            .map(Value::Matrix)
                    })
                    .await
                }
            };
            match evaluated {
                Err(_) => Err(None),
                Ok(Err(e)) => Err(Some(ApiError::from_promql(&e))),
                Ok(Ok(value)) if samples_in(&value) > ENCODE_APART_SAMPLES => {
                    tokio::task::spawn_blocking(move || finish(value))
                        .await
                        .map_err(|e| {
                            Some(ApiError::new(
                                ErrorType::Internal,
                                format!("encoding the answer failed: {e}"),
                            ))
                        })
                }
                Ok(Ok(value)) => Ok(finish(value)),
            }
        }
        .await;
        shared.metrics.queries_in_flight.dec();
        result
    });
    match tokio::time::timeout_at(deadline, task).await {
        Err(_) | Ok(Ok(Err(None))) => Err(timed_out("expression evaluation")),
        Ok(Err(e)) => Err(ApiError::new(
            ErrorType::Internal,
            format!("the query task failed: {e}"),
        )),
        Ok(Ok(Err(Some(e)))) => Err(e),
        Ok(Ok(Ok(data))) => Ok(data),
    }
}

/// The answer, with the query counted and timed.
fn respond(
    state: &AppState,
    endpoint: &'static str,
    started: Instant,
    result: Result<String, ApiError>,
) -> Response {
    let metrics = &state.inner.metrics;
    let label = EndpointLabel { endpoint };
    metrics.queries.get_or_create(&label).inc();
    metrics
        .query_duration
        .get_or_create(&label)
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(data) => success(&data, &[]),
        Err(e) => {
            metrics
                .query_errors
                .get_or_create(&QueryErrorLabels {
                    endpoint,
                    r#type: e.kind.metric_label(),
                })
                .inc();
            e.into_response()
        }
    }
}

/// Now, in milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
