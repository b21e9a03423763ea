//! Opening: the data directory's lock, and recovery from the catalog and the WAL.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tsdb_core::{ChunkLocation, ChunkReference, Error, Result, SeriesId, TimeRange};
use tsdb_wal::Replay;

use super::Inner;
use crate::checkpoint_mark;
use crate::records;

impl Inner {
    /// Rebuilds memory state on open: series from the catalog, the index from storage, heads
    /// from the WAL.
    pub(super) async fn recover(&self, catalog: Replay, wal: Replay) -> Result<()> {
        let mut known = BTreeMap::new();
        for record in catalog {
            let (_, record) = record?;
            let (id, labels) = records::decode_series(&record)?;
            known.insert(id, labels);
        }
        for (id, labels) in &known {
            self.engines.index.register_series(*id, labels).await?;
            self.heads.register(*id);
        }
        // Make the index agree with storage: add what it lacks, drop what storage lost.
        let mut stored: BTreeMap<SeriesId, Vec<ChunkReference>> = BTreeMap::new();
        for chunk in self.engines.storage.list_chunks().await? {
            self.newest_timestamp
                .fetch_max(chunk.end_time, Ordering::Relaxed);
            stored.entry(chunk.series_id).or_default().push(chunk);
        }
        for (series, chunks) in &stored {
            if !known.contains_key(series) {
                tracing::warn!(
                    "{} chunks of series {series} have no labels in the catalog; left unindexed",
                    chunks.len()
                );
                continue;
            }
            let indexed = self
                .engines
                .index
                .query_chunks(*series, TimeRange::ALL)
                .await?;
            for chunk in chunks {
                if !indexed.iter().any(|c| c.location == chunk.location) {
                    self.engines.index.add_chunk(chunk).await?;
                }
            }
            let dangling: Vec<ChunkLocation> = indexed
                .iter()
                .filter(|c| !chunks.iter().any(|s| s.location == c.location))
                .map(|c| c.location)
                .collect();
            if !dangling.is_empty() {
                self.engines.index.remove_chunks(*series, &dangling).await?;
            }
        }
        // Replay: the last write of each timestamp wins. Points that storage already holds
        // with the same value (written as chunks before the crash, while their WAL records
        // were kept) are not buffered again.
        let records = wal.record_count();
        let mut writes: HashMap<SeriesId, Vec<(i64, u64, f64)>> = HashMap::new();
        let skip_before = checkpoint_mark::read(&self.config.data_dir);
        for record in wal {
            let (lsn, record) = record?;
            if lsn.get() < skip_before {
                continue;
            }
            for (series, points) in records::decode_points(&record)? {
                let w = writes.entry(series).or_default();
                w.extend(points.iter().map(|&(t, v)| (t, lsn.get(), v)));
            }
        }
        let (mut replayed, mut already_stored) = (0u64, 0u64);
        for (series, mut points) in writes {
            // Stable sort by timestamp keeps WAL order among equal timestamps; keep the last.
            points.sort_by_key(|p| p.0);
            let mut finals: Vec<(i64, u64, f64)> = Vec::with_capacity(points.len());
            for p in points {
                match finals.last_mut() {
                    Some(last) if last.0 == p.0 => *last = p,
                    _ => finals.push(p),
                }
            }
            let (Some(first), Some(last)) = (finals.first(), finals.last()) else {
                continue;
            };
            let range = TimeRange {
                start: first.0,
                end: last.0,
            };
            self.newest_timestamp.fetch_max(last.0, Ordering::Relaxed);
            let (stored_ts, stored_vs) = self.read_stored(series, range).await?;
            let shard = self.heads.shard_of(series);
            for (t, lsn, v) in finals {
                let stored = stored_ts
                    .binary_search(&t)
                    .ok()
                    .is_some_and(|i| stored_vs[i].to_bits() == v.to_bits());
                if stored {
                    already_stored += 1;
                } else {
                    self.heads.apply(shard, lsn, &[(series, &[(t, v)])]);
                    replayed += 1;
                }
            }
        }
        self.points_replayed.store(replayed, Ordering::Relaxed);
        if records > 0 {
            tracing::info!(
                "WAL replay: {records} records, {replayed} points buffered again, {already_stored} already in chunks"
            );
        }
        Ok(())
    }
}

/// Takes the exclusive lock of `<data_dir>/LOCK`. A handle dropped without `close` releases it
/// once its background tasks have stopped, so a busy lock is retried for a few seconds before
/// giving up.
pub(super) async fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(path.display(), e))?;
    for attempt in 0..40 {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                if attempt == 0 {
                    tracing::info!(
                        "{} is locked; waiting for its holder to stop",
                        path.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path.display(), e)),
        }
    }
    Err(Error::Unavailable {
        engine: "database",
        reason: format!(
            "{} is in use by another process or database handle",
            dir.display()
        ),
    })
}
