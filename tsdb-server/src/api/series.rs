//! `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/<name>/values`.
//!
//! `/api/v1/series` with a time range lists the series with a sample in it (Prometheus lists
//! those with a chunk overlapping it): the database counts each selected series' samples in
//! the range itself (`count_over_time` evaluated near the data, one series at a time per
//! core), within the query sample budget; without one, every series the index knows.
//!
//! Label names and values come from the index whatever the time range, as Prometheus
//! answers them for its head block (the last hours), where it does not look at times
//! either: Grafana asks them for every panel editor and metric browser, and an answer that
//! read samples would cost as much as a query over every series.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use gorilla_tsdb::promql::{RangeFunction, RollupKind, RollupRequest, SelectLimits, SeriesSource};
use gorilla_tsdb::{LabelMatcher, Labels};

use super::json::{push_str, push_str_array};
use super::params::{MAX_TIME_MS, MIN_TIME_MS, Params, parse_match_sets};
use super::response::{ApiError, success};
use crate::state::AppState;

/// The time range of a request, `None` when it covers all time.
fn time_range(params: &Params) -> Result<Option<(i64, i64)>, ApiError> {
    let start = params.time_or("start", MIN_TIME_MS)?;
    let end = params.time_or("end", MAX_TIME_MS)?;
    Ok((start > MIN_TIME_MS || end < MAX_TIME_MS).then_some((start, end)))
}

/// The label sets of the series matched by `matchers` (with a sample in `range`, when
/// given).
async fn select(
    state: &AppState,
    matchers: &[LabelMatcher],
    range: Option<(i64, i64)>,
) -> Result<Vec<Labels>, ApiError> {
    let db = &state.inner.db;
    let Some((start, end)) = range else {
        let found = db
            .find_series(matchers)
            .await
            .map_err(|e| ApiError::from_db(&e))?;
        return Ok(found.into_iter().map(|(_, labels)| labels).collect());
    };
    if end < start {
        return Ok(Vec::new());
    }
    let request = RollupRequest {
        matchers: matchers.to_vec(),
        times: vec![end],
        kind: RollupKind::Range {
            function: RangeFunction::CountOverTime,
            range_ms: end.saturating_sub(start),
        },
    };
    let limits = SelectLimits::new(state.inner.options.query_max_samples, usize::MAX);
    let rolled = db
        .select_rollup(&request, limits)
        .await
        .map_err(|e| ApiError::from_db(&e))?;
    match rolled {
        Some(series) => Ok(series.into_iter().map(|s| s.labels).collect()),
        None => {
            let range = gorilla_tsdb::TimeRange { start, end };
            let found = db
                .query(matchers.to_vec(), range)
                .await
                .map_err(|e| ApiError::from_db(&e))?;
            Ok(found.into_iter().map(|s| s.labels).collect())
        }
    }
}

/// The union of the series of every `match[]` set, sorted.
async fn select_sets(
    state: &AppState,
    params: &Params,
    range: Option<(i64, i64)>,
) -> Result<Option<BTreeSet<Labels>>, ApiError> {
    let texts = params.all("match[]");
    if texts.is_empty() {
        return Ok(None);
    }
    let sets =
        parse_match_sets(&texts, state.inner.engine.options()).map_err(ApiError::bad_data)?;
    let mut all = BTreeSet::new();
    for set in &sets {
        all.extend(select(state, set, range).await?);
    }
    Ok(Some(all))
}

/// `GET|POST /api/v1/series`.
pub(crate) async fn series(State(state): State<AppState>, params: Params) -> Response {
    let result = async {
        if params.all("match[]").is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let range = time_range(&params)?;
        let texts = params.all("match[]");
        let sets = parse_match_sets(&texts, state.inner.engine.options())
            .map_err(|e| ApiError::invalid_param("match[]", e))?;
        let mut all = BTreeSet::new();
        for set in &sets {
            all.extend(select(&state, set, range).await?);
        }
        let mut data = String::from("[");
        for (i, labels) in all.iter().enumerate() {
            if i > 0 {
                data.push(',');
            }
            data.push('{');
            for (j, label) in labels.iter().enumerate() {
                if j > 0 {
                    data.push(',');
                }
                push_str(&mut data, &label.name);
                data.push(':');
                push_str(&mut data, &label.value);
            }
            data.push('}');
        }
        data.push(']');
        Ok(data)
    }
    .await;
    answer(result)
}

/// `GET|POST /api/v1/labels`.
pub(crate) async fn label_names(State(state): State<AppState>, params: Params) -> Response {
    let result = async {
        // Checked as Prometheus checks them; the index answers for all time.
        time_range(&params)?;
        let names: BTreeSet<String> = match select_sets(&state, &params, None).await? {
            Some(series) => names_of(series.iter()),
            None => state
                .inner
                .db
                .index()
                .label_names()
                .await
                .map_err(|e| ApiError::from_db(&e))?
                .into_iter()
                .collect(),
        };
        let mut data = String::new();
        push_str_array(&mut data, names.iter().map(String::as_str));
        Ok(data)
    }
    .await;
    answer(result)
}

fn names_of<'a>(series: impl Iterator<Item = &'a Labels>) -> BTreeSet<String> {
    series
        .flat_map(|l| l.iter().map(|label| label.name.clone()))
        .collect()
}

/// `GET /api/v1/label/<name>/values`.
pub(crate) async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Response {
    let result = async {
        if !valid_label_name(&name) {
            return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
        }
        time_range(&params)?;
        let values: BTreeSet<String> = match select_sets(&state, &params, None).await? {
            Some(series) => values_of(series.iter(), &name),
            None => state
                .inner
                .db
                .index()
                .label_values(&name)
                .await
                .map_err(|e| ApiError::from_db(&e))?
                .into_iter()
                .filter(|v| !v.is_empty())
                .collect(),
        };
        let mut data = String::new();
        push_str_array(&mut data, values.iter().map(String::as_str));
        Ok(data)
    }
    .await;
    answer(result)
}

fn values_of<'a>(series: impl Iterator<Item = &'a Labels>, name: &str) -> BTreeSet<String> {
    series
        .filter_map(|l| l.get(name).map(str::to_owned))
        .collect()
}

/// Prometheus's `model.LabelNameRE`: `^[a-zA-Z_][a-zA-Z0-9_]*$`.
fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn answer(result: Result<String, ApiError>) -> Response {
    match result {
        Ok(data) => success(&data, &[]),
        Err(e) => e.into_response(),
    }
}
