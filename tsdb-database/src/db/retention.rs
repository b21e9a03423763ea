//! Retention: chunks whose newest point is older than the retention period allows are
//! removed from the index, then from storage.

use std::collections::BTreeMap;

use tsdb_core::{ChunkLocation, ChunkReference, CodecId, Result, SeriesId};

use super::Inner;

impl Inner {
    /// Deletes chunks whose newest point is older than the retention period allows, against
    /// the wall clock.
    pub(super) async fn apply_retention(&self) -> Result<usize> {
        let Some(retention) = self.config.retention else {
            return Ok(0);
        };
        // Against the wall clock, not the newest point: one point far in the future must not
        // make everything else look expired.
        let cutoff = crate::clock::now_ms()
            .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let expired: Vec<ChunkReference> = self
            .engines
            .storage
            .list_chunks()
            .await?
            .into_iter()
            // Rollup chunks follow their tier's retention.
            .filter(|c| c.end_time < cutoff && c.codec != CodecId::ROLLUP)
            .collect();
        let mut by_series: BTreeMap<SeriesId, Vec<ChunkLocation>> = BTreeMap::new();
        for c in &expired {
            by_series.entry(c.series_id).or_default().push(c.location);
        }
        for (series, locations) in &by_series {
            self.engines.index.remove_chunks(*series, locations).await?;
        }
        // Deleted from storage once the reads that may have listed them are done.
        self.compactor
            .retire(expired.iter().map(|c| c.location).collect());
        self.delete_retired().await;
        if !expired.is_empty() {
            tracing::info!(
                "retention deleted {} chunks older than {cutoff}",
                expired.len()
            );
        }
        Ok(expired.len())
    }
}
