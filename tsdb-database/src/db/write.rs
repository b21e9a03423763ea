//! The write path: new series into the catalog and the index, point batches into the WAL
//! and the head buffers, and back-pressure while the heads are full.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tsdb_core::{DataPoint, Error, Labels, Result, SeriesId};

use super::Inner;
use crate::ingest::Heads;
use crate::records;

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
