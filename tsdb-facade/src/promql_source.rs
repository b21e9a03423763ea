//! PromQL over the database: [`TimeSeriesDB`] is a [`tsdb_promql::SeriesSource`], so the
//! `tsdb-promql` engine evaluates queries directly against it.
//!
//! ```no_run
//! # async fn run(db: std::sync::Arc<gorilla_tsdb::TimeSeriesDB>) -> Result<(), Box<dyn std::error::Error>> {
//! use gorilla_tsdb::promql::{Engine, EngineOptions};
//! let engine = Engine::new(db, EngineOptions::default());
//! let value = engine.instant_query("sum by (region) (rate(http_requests_total[5m]))", 1_700_000_000_000).await?;
//! println!("{value}");
//! # Ok(()) }
//! ```

use async_trait::async_trait;
use tsdb_core::{LabelMatcher, Result, TimeRange};
use tsdb_promql::{SeriesData, SeriesSource};

use crate::db::TimeSeriesDB;

#[async_trait]
impl SeriesSource for TimeSeriesDB {
    async fn select(&self, matchers: &[LabelMatcher], range: TimeRange) -> Result<Vec<SeriesData>> {
        let found = self.query(matchers.to_vec(), range).await?;
        Ok(found
            .into_iter()
            .map(|s| SeriesData {
                labels: s.labels,
                timestamps: s.timestamps,
                values: s.values,
            })
            .collect())
    }
}
