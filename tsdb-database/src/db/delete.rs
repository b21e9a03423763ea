//! Deletion: the points of the series a selector matches, inside a time range, hidden from
//! every read by durable tombstones (see `crate::tombstones`).

use tsdb_core::{Error, LabelMatcher, Result, TimeRange};

use super::Inner;
use crate::tombstones::Tombstone;

impl Inner {
    /// Deletes the points of every series `matchers` select inside `range` (inclusive) that
    /// were written before the call; returns how many series had stored points there.
    ///
    /// Everything buffered is written into chunks first, so that a tombstone can name what it
    /// deletes by chunk location: points written later land in newer chunks and stay.
    pub(super) async fn delete_series(
        &self,
        matchers: &[LabelMatcher],
        range: TimeRange,
    ) -> Result<u64> {
        if range.start > range.end {
            return Err(Error::invalid_input(format_args!(
                "delete range starts at {} after its end {}",
                range.start, range.end
            )));
        }
        let ids = self.index_read(self.engines.index.find_series(matchers).await)?;
        if ids.is_empty() {
            return Ok(0);
        }
        self.flush_all().await?;
        // A tombstone names chunks by location: no compaction may swap a series' chunks
        // between reading them here and writing it.
        let _lock = self.compactor.series_lock.lock().await;
        let mut tombstones = Vec::new();
        for series in ids {
            let chunks = self.index_read(self.engines.index.query_chunks(series, range).await)?;
            if let Some(upto) = chunks.iter().map(|c| c.location).max() {
                tombstones.push(Tombstone {
                    series,
                    range,
                    upto,
                });
            }
        }
        // The rollup tiers' marks first: a deletion they did not hear of would leave the
        // deleted points in their buckets.
        for t in &tombstones {
            self.tiers.note_deleted(t.series, t.range.start);
        }
        self.tiers.persist(&self.config.data_dir)?;
        self.tombstones.add(&tombstones)?;
        tracing::info!(
            series = tombstones.len(),
            start = range.start,
            end = range.end,
            "points deleted"
        );
        Ok(tombstones.len() as u64)
    }
}
