//! `/api/v1/admin/tsdb/delete_series`, `clean_tombstones` and `snapshot`, as Prometheus 2.42
//! answers them, when [`crate::ServerOptions::enable_admin_api`] is set.

use std::hash::{BuildHasher, RandomState};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gorilla_tsdb::TimeRange;

use super::json::push_str;
use super::params::{MAX_TIME_MS, MIN_TIME_MS, Params, parse_match_sets};
use super::response::{ApiError, ErrorType, success};
use crate::state::AppState;

fn admin_enabled(state: &AppState) -> Result<(), ApiError> {
    if state.inner.options.enable_admin_api {
        Ok(())
    } else {
        Err(ApiError::new(ErrorType::Unavailable, "admin APIs disabled"))
    }
}

/// `POST|PUT /api/v1/admin/tsdb/delete_series`: deletes the points of the series every
/// `match[]` selects between `start` and `end` (all time by default); 204 when done.
pub(crate) async fn delete_series(State(state): State<AppState>, params: Params) -> Response {
    let result: Result<(), ApiError> = async {
        admin_enabled(&state)?;
        let texts = params.all("match[]");
        if texts.is_empty() {
            return Err(ApiError::bad_data("no match[] parameter provided"));
        }
        let range = TimeRange {
            start: params.time_or("start", MIN_TIME_MS)?,
            end: params.time_or("end", MAX_TIME_MS)?,
        };
        let sets =
            parse_match_sets(&texts, state.inner.engine.options()).map_err(ApiError::bad_data)?;
        for set in &sets {
            state
                .inner
                .db
                .delete_series(set, range)
                .await
                .map_err(|e| ApiError::from_db(&e))?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST|PUT /api/v1/admin/tsdb/clean_tombstones`: runs compaction to completion (see
/// `TimeSeriesDB::compact`), which rewrites every chunk holding deleted points without them,
/// as well as the cold chunks; 204 when done.
pub(crate) async fn clean_tombstones(State(state): State<AppState>) -> Response {
    let result: Result<(), ApiError> = async {
        admin_enabled(&state)?;
        let stats = state
            .inner
            .db
            .compact()
            .await
            .map_err(|e| ApiError::from_db(&e))?;
        tracing::info!(?stats, "compaction run on request");
        Ok(())
    }
    .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST|PUT /api/v1/admin/tsdb/snapshot`: writes a snapshot of the database into a new
/// directory of [`crate::ServerOptions::snapshot_dir`] and answers its name,
/// `{"name":"20240101T000000Z-0123456789abcdef"}`.
pub(crate) async fn snapshot(State(state): State<AppState>) -> Response {
    let result: Result<String, ApiError> =
        async {
            admin_enabled(&state)?;
            let dir =
                state.inner.options.snapshot_dir.clone().ok_or_else(|| {
                    ApiError::new(ErrorType::Unavailable, "no snapshot directory")
                })?;
            let name = format!(
                "{}-{:016x}",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
                RandomState::new().hash_one(std::time::SystemTime::now())
            );
            std::fs::create_dir_all(&dir).map_err(|e| {
                ApiError::new(
                    ErrorType::Internal,
                    format!("create snapshot directory {}: {e}", dir.display()),
                )
            })?;
            state
                .inner
                .db
                .snapshot(dir.join(&name))
                .await
                .map_err(|e| ApiError::from_db(&e))?;
            let mut data = String::from("{\"name\":");
            push_str(&mut data, &name);
            data.push('}');
            Ok(data)
        }
        .await;
    match result {
        Ok(data) => success(&data, &[]),
        Err(e) => e.into_response(),
    }
}
