//! The write path: new series into the catalog and the index, point batches into the WAL
//! and the head buffers, and back-pressure while the heads are full.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tsdb_core::{DataPoint, Error, Labels, Result, SeriesId};

use super::{Inner, TimeSeriesDB};
use crate::ingest::Heads;
use crate::records;

impl TimeSeriesDB {
    /// Registers many series at once (idempotent, as [`TimeSeriesDB::register_series`]) and
    /// returns their ids ([`Labels::series_id`]), in the order given. The new ones among them
    /// go into the series catalog as one batch, one write and at most one fsync for all of
    /// them, where registering them one by one costs one each: use it for many new series
    /// (an import, a first scrape of many targets).
    pub async fn register_series_batch(&self, series: &[Labels]) -> Result<Vec<SeriesId>> {
        self.inner.check_writable("register_series_batch")?;
        let ids: Vec<SeriesId> = series.iter().map(Labels::series_id).collect();
        let mut seen = std::collections::HashSet::new();
        let new: Vec<(SeriesId, &Labels)> = ids
            .iter()
            .zip(series)
            .filter(|(id, _)| !self.inner.heads.is_registered(**id) && seen.insert(**id))
            .map(|(id, labels)| (*id, labels))
            .collect();
        if !new.is_empty() {
            self.inner.register_new(&new).await?;
        }
        Ok(ids)
    }
}

impl Inner {
    /// Persists new series in the catalog, then registers them in the index and the heads.
    pub(super) async fn register_new(&self, series: &[(SeriesId, &Labels)]) -> Result<()> {
        let records: Vec<Vec<u8>> = series
            .iter()
            .map(|(id, labels)| records::encode_series(*id, labels))
            .collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        self.catalog.append_batch(&refs).await?;
        for (id, labels) in series {
            self.engines.index.register_series(*id, labels).await?;
            self.heads.register(*id);
        }
        Ok(())
    }

    pub(super) async fn insert_batch(&self, points: &[DataPoint]) -> Result<()> {
        self.check_writable("insert")?;
        if points.is_empty() {
            return Ok(());
        }
        if points.len() > u32::MAX as usize {
            return Err(Error::LimitExceeded {
                what: "points in one batch",
                requested: points.len() as u64,
                limit: u32::MAX as u64,
            });
        }
        // Backpressure before the write, so that a write that cannot wait longer fails
        // without having been made durable (an acknowledged write is never reported failed).
        self.wait_for_room().await?;
        if let Some(tolerance) = self.config.future_tolerance {
            let latest_accepted = crate::clock::now_ms()
                .saturating_add(i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX));
            if let Some(p) = points.iter().find(|p| p.timestamp > latest_accepted) {
                return Err(Error::InTheFuture {
                    series: p.series_id,
                    timestamp: p.timestamp,
                    latest_accepted,
                });
            }
        }
        let batch = Batch::group(points, &self.heads);
        let groups = batch.slices();
        let window = i64::try_from(self.config.out_of_order_window.as_millis()).unwrap_or(i64::MAX);
        // Anything older than the retention would be deleted at its next round.
        let floor = self.config.retention.map_or(i64::MIN, |r| {
            crate::clock::now_ms().saturating_sub(i64::try_from(r.as_millis()).unwrap_or(i64::MAX))
        });
        for (shard, range) in &batch.shard_ranges {
            self.heads
                .validate(*shard, &groups[range.clone()], window, floor)?;
        }
        let record = records::encode_points(&groups);

        let gate = self.checkpointer.apply_gate.read().await;
        self.check_open()?;
        let lsn = self.wal.append(&record).await?.get();
        let mut sealed_shards = Vec::new();
        for (shard, range) in &batch.shard_ranges {
            if self.heads.apply(*shard, lsn, &groups[range.clone()]) > 0 {
                sealed_shards.push(*shard);
            }
        }
        drop(gate);

        self.heads
            .points_written
            .fetch_add(batch.flat.len() as u64, Ordering::Relaxed);
        for shard in sealed_shards {
            self.flusher.wake_for(shard);
        }
        Ok(())
    }

    /// Backpressure: waits while too many sealed heads wait for storage or heads hold too
    /// many points; fails with [`Error::Unavailable`] when storing makes no progress for
    /// `stall_timeout` (the disk full, the index gone), so writers never hang.
    pub(super) async fn wait_for_room(&self) -> Result<()> {
        let mut watch = self.flusher.watch();
        loop {
            let sealed = self.heads.sealed_waiting.load(Ordering::Relaxed);
            let buffered = self.heads.buffered_points.load(Ordering::Relaxed);
            if sealed <= self.config.flush_queue_capacity
                && buffered <= self.config.max_buffered_points
            {
                return Ok(());
            }
            if buffered > self.config.max_buffered_points {
                self.lifecycle.wake_maintenance();
            }
            if self.lifecycle.is_shut_down() {
                return Err(Error::Closed { engine: "database" });
            }
            if self.flusher.stalled_since(&mut watch) {
                return Err(self.stalled("write refused: the flush queue is full and"));
            }
            let notified = self.flusher.room();
            // Re-check after a short wait even without a notification.
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

/// A write batch grouped for the heads: by shard, then series, each series' points in the
/// order given.
pub(super) struct Batch {
    /// `(timestamp, value)` of every point, in group order.
    flat: Vec<(i64, f64)>,
    /// One `(series, range of flat)` group per series, ordered by shard.
    groups: Vec<(SeriesId, std::ops::Range<usize>)>,
    /// `(shard, range of groups)` for every shard the batch touches.
    shard_ranges: Vec<(usize, std::ops::Range<usize>)>,
}

impl Batch {
    /// Groups with a counting sort by shard and a small sort inside each shard, so the cost
    /// stays linear for the usual batch of one point for each of many series.
    pub(super) fn group(points: &[DataPoint], heads: &Heads) -> Batch {
        let shards = heads.shard_count();
        let shard_of: Vec<u32> = points
            .iter()
            .map(|p| heads.shard_of(p.series_id) as u32)
            .collect();
        let mut starts = vec![0usize; shards + 1];
        for &s in &shard_of {
            starts[s as usize + 1] += 1;
        }
        for i in 0..shards {
            starts[i + 1] += starts[i];
        }
        let mut fill = starts.clone();
        let mut order = vec![(SeriesId(0), 0u32); points.len()];
        for (i, &s) in shard_of.iter().enumerate() {
            order[fill[s as usize]] = (points[i].series_id, i as u32);
            fill[s as usize] += 1;
        }
        let mut flat = Vec::with_capacity(points.len());
        let mut groups: Vec<(SeriesId, std::ops::Range<usize>)> = Vec::new();
        let mut shard_ranges = Vec::new();
        for shard in 0..shards {
            let (lo, hi) = (starts[shard], starts[shard + 1]);
            if lo == hi {
                continue;
            }
            // (series, arrival index): each series' points stay in the order given.
            order[lo..hi].sort_unstable();
            let first_group = groups.len();
            for &(series, i) in &order[lo..hi] {
                let p = &points[i as usize];
                flat.push((p.timestamp, p.value));
                let pos = flat.len();
                match groups.last_mut() {
                    Some((s, r)) if *s == series => r.end = pos,
                    _ => groups.push((series, pos - 1..pos)),
                }
            }
            shard_ranges.push((shard, first_group..groups.len()));
        }
        Batch {
            flat,
            groups,
            shard_ranges,
        }
    }

    /// The groups as `(series, points)` slices, and `(shard, range of them)`.
    pub(super) fn slices(&self) -> Vec<(SeriesId, &[(i64, f64)])> {
        self.groups
            .iter()
            .map(|(s, r)| (*s, &self.flat[r.clone()]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use tsdb_core::{Labels, TimeRange};

    use crate::{DatabaseConfig, TimeSeriesDBBuilder, WalDurability};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn register_series_batch_shares_one_catalog_write_and_fsync() -> tsdb_core::Result<()> {
        let dir = tempfile::tempdir().map_err(|e| tsdb_core::Error::io("temp dir", e))?;
        let config = DatabaseConfig {
            data_dir: dir.path().into(),
            wal_durability: WalDurability::Always,
            ..Default::default()
        };
        let db = TimeSeriesDBBuilder::new()
            .with_config(config.clone())
            .build()
            .await?;
        let known = Labels::new("m", [("i", "known")])?;
        db.register_series(&known).await?;
        let mut series: Vec<Labels> = (0..1000)
            .map(|i| Labels::new("m", [("i", i.to_string())]))
            .collect::<tsdb_core::Result<_>>()?;
        // Known and repeated series are fine.
        series.push(known.clone());
        series.push(series[0].clone());
        let before = db.inner.catalog.stats();
        let ids = db.register_series_batch(&series).await?;
        let after = db.inner.catalog.stats();
        assert_eq!(ids.len(), series.len());
        for (id, labels) in ids.iter().zip(&series) {
            assert_eq!(*id, labels.series_id());
        }
        assert_eq!(after.appends - before.appends, 1, "one catalog write");
        assert_eq!(after.records - before.records, 1000, "the new ones only");
        assert!(after.fsyncs - before.fsyncs <= 1, "at most one fsync");
        // Again: nothing new, nothing written.
        db.register_series_batch(&series).await?;
        assert_eq!(db.inner.catalog.stats().appends, after.appends);
        assert_eq!(db.register_series_batch(&[]).await?, vec![]);
        let points: Vec<_> = ids
            .iter()
            .map(|id| tsdb_core::DataPoint::new(*id, 1_000, 1.0))
            .collect();
        db.insert_batch(&points).await?;
        db.close().await?;
        // The registrations survive reopening.
        let db = TimeSeriesDBBuilder::new()
            .with_config(config)
            .build()
            .await?;
        assert_eq!(db.stats().series, 1001);
        let found = db.query(&series[999], TimeRange::ALL).await?;
        assert_eq!(found[0].len(), 1);
        db.close().await
    }
}
