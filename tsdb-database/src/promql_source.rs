//! PromQL over the database: [`TimeSeriesDB`] is a [`tsdb_promql::SeriesSource`], so the
//! `tsdb-promql` engine evaluates queries directly against it.
//!
//! Range functions over a selector and instant selectors are evaluated by the database itself
//! ([`SeriesSource::select_rollup`]), on every core and one series at a time per core, with
//! the engine's own arithmetic; everything else is evaluated by the engine.
//!
//! The engine fetches each other selector through [`SeriesSource::select_bounded`] with what is
//! left of its memory budget ([`tsdb_promql::EngineOptions::max_samples`] and
//! [`max_series`](tsdb_promql::EngineOptions::max_series)); the database counts the series
//! and the points of their chunks from the index before decoding anything
//! ([`TimeSeriesDB::query_within`]), so a selection over the budget is refused without being
//! read.
//!
//! ```no_run
//! # async fn run(db: std::sync::Arc<tsdb_database::TimeSeriesDB>) -> Result<(), Box<dyn std::error::Error>> {
//! use tsdb_promql::{Engine, EngineOptions};
//! let engine = Engine::new(db, EngineOptions::default());
//! let value = engine.instant_query("sum by (region) (rate(http_requests_total[5m]))", 1_700_000_000_000).await?;
//! println!("{value}");
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use tsdb_core::{Error, LabelMatcher, Result, TimeRange};
use tsdb_promql::{RolledSeries, RollupRequest, SelectLimits, SeriesData, SeriesSource};

use crate::db::TimeSeriesDB;
use crate::query::{POINTS_READ, QueryLimits, SERIES_SELECTED};
use crate::read::SeriesPoints;

fn series_data(found: Vec<SeriesPoints>) -> Vec<SeriesData> {
    found
        .into_iter()
        .map(|s| SeriesData {
            labels: s.labels,
            timestamps: s.timestamps,
            values: s.values,
        })
        .collect()
}

#[async_trait]
impl SeriesSource for TimeSeriesDB {
    async fn select(&self, matchers: &[LabelMatcher], range: TimeRange) -> Result<Vec<SeriesData>> {
        Ok(series_data(self.query(matchers.to_vec(), range).await?))
    }

    /// Counts from the index first: a selection over `limits` is refused before any chunk is
    /// decoded (the points counted are those of the chunks overlapping the range, which the
    /// read would decode).
    async fn select_bounded(
        &self,
        matchers: &[LabelMatcher],
        range: TimeRange,
        limits: SelectLimits,
    ) -> Result<Vec<SeriesData>> {
        let within = QueryLimits::default()
            .with_max_series(limits.max_series)
            .with_max_points(u64::try_from(limits.max_points).unwrap_or(u64::MAX));
        let found = self
            .query_within(matchers, range, &within)
            .await
            .map_err(|e| match e {
                Error::LimitExceeded {
                    what,
                    requested,
                    limit,
                } if what == SERIES_SELECTED || what == POINTS_READ => Error::LimitExceeded {
                    what: if what == SERIES_SELECTED {
                        SelectLimits::SERIES
                    } else {
                        SelectLimits::POINTS
                    },
                    requested,
                    limit,
                },
                other => other,
            })?;
        Ok(series_data(found))
    }

    /// Evaluated here, near the data: each series' chunks overlapping the windows are
    /// decoded in bulk into reused buffers and evaluated at once, on every core, so that the
    /// engine receives answers, never the selection's samples.
    async fn select_rollup(
        &self,
        request: &RollupRequest,
        limits: SelectLimits,
    ) -> Result<Option<Vec<RolledSeries>>> {
        self.inner().rollup(request, limits).await.map(Some)
    }
}
