//! Background work: sealed heads compressed into chunks and indexed, checkpoints of the WAL,
//! retention, and flushing everything on demand.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tsdb_core::{
    ChunkLocation, ChunkReference, CompressedBlock, Error, Result, SeriesId, TimeRange,
};
use tsdb_wal::Lsn;

use super::Inner;
use crate::damage::Damage;
use crate::ingest::Sealed;
use crate::records;

/// What became of one attempt to store and index a sealed head.
pub(super) enum Persisted {
    /// Stored and indexed.
    Done,
    /// Stored, but the index refuses it for good (it knows no such series: the catalog lost
    /// the labels). The chunk is kept in storage and the loss recorded.
    Unindexable,
}

impl Inner {
    /// Writes one sealed head as a chunk and indexes it (one attempt; the caller retries).
    pub(super) async fn persist(&self, sealed: &Sealed) -> Result<Persisted> {
        let stored = *sealed.stored.lock().unwrap_or_else(PoisonError::into_inner);
        let block = self.seal_to_block(sealed).await?;
        let location = match stored {
            Some(location) => location,
            None => {
                let location = self.engines.storage.write_chunk(&block).await?;
                *sealed.stored.lock().unwrap_or_else(PoisonError::into_inner) = Some(location);
                location
            }
        };
        let reference = ChunkReference::new(&block, location);
        match self.engines.index.add_chunk(&reference).await {
            Ok(()) => {}
            // The database registers every series of its catalog in the index, so an index
            // that does not know the series means the catalog lost its labels.
            Err(Error::SeriesNotFound { series }) => {
                self.damage.record(Damage {
                    source: self.config.data_dir.join("series").display().to_string(),
                    offset: 0,
                    length: 0,
                    reason: format!(
                        "a chunk of series {series} was stored at {location} but cannot be indexed: the series catalog has no labels for it"
                    ),
                    series: None,
                    range: Some(TimeRange {
                        start: block.start_time,
                        end: block.end_time,
                    }),
                    accepted: false,
                })?;
                return Ok(Persisted::Unindexable);
            }
            Err(e) => return Err(e),
        }
        self.chunks_written.fetch_add(1, Ordering::Relaxed);
        Ok(Persisted::Done)
    }

    /// Notes a failed attempt (what `flush`, `close` and `stats` report), then sleeps with
    /// exponential backoff (at most a second, so shutdown is noticed quickly).
    async fn note_failure(&self, what: &str, error: &Error, attempt: &mut u32) {
        *attempt += 1;
        if matches!(error, Error::StateLost { .. }) {
            self.index_lost.store(true, Ordering::SeqCst);
            self.maintenance_wakeup.notify_one();
        }
        tracing::warn!(attempt = *attempt, "{what} failed (will retry): {error}");
        *self
            .flush_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some((u64::from(*attempt), format!("{what}: {error}")));
        let pause = Duration::from_millis(10u64 << (*attempt).min(7));
        let stopping = self.stopping.notified();
        if !self.shutdown.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(pause, stopping).await;
        }
    }

    pub(super) async fn seal_to_block(&self, sealed: &Sealed) -> Result<CompressedBlock> {
        let compressor = &self.engines.compressor;
        // Head buffers hold Gorilla blocks: a codec that writes that very format takes them
        // as they are, every other codec encodes the points itself.
        if compressor.writes_gorilla_format()
            && let Some(data) = sealed.head.clean_block()
        {
            let (start_time, end_time) = sealed.head.time_range().unwrap_or((0, 0));
            return Ok(CompressedBlock {
                codec: compressor.codec_id(),
                series_id: sealed.series,
                start_time,
                end_time,
                point_count: sealed.head.len() as u32,
                data: data.into(),
            });
        }
        let (ts, vs) = sealed.head.points()?;
        compressor.compress_columns(sealed.series, &ts, &vs).await
    }

    /// Drains the sealed heads of this worker's shards, oldest first per shard. A head that
    /// cannot be stored stays first in its shard (and its points in the WAL) and is retried
    /// with backoff until it is, or until shutdown: the worker never gives up silently.
    pub(super) async fn flush_worker(self: Arc<Self>, worker: usize) {
        let shards: Vec<usize> = (worker..self.heads.shard_count())
            .step_by(self.flush_wakeup.len())
            .collect();
        let mut attempt = 0u32;
        loop {
            let wakeup = self.flush_wakeup[worker].notified();
            let mut did_work = false;
            let mut failed = false;
            'shards: for &shard in &shards {
                while let Some(sealed) = self.heads.next_sealed(shard) {
                    if self.shutdown.load(Ordering::SeqCst) {
                        return;
                    }
                    match self.persist(&sealed).await {
                        Ok(Persisted::Done | Persisted::Unindexable) => {
                            attempt = 0;
                            self.flush_failure
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .take();
                            self.heads.finish_sealed(shard, &sealed);
                            self.flush_progress.fetch_add(1, Ordering::SeqCst);
                            self.room.notify_waiters();
                            did_work = true;
                        }
                        Err(e) => {
                            let what = format!("storing a chunk of series {}", sealed.series);
                            self.note_failure(&what, &e, &mut attempt).await;
                            failed = true;
                            break 'shards;
                        }
                    }
                }
            }
            if self.shutdown.load(Ordering::SeqCst) {
                return;
            }
            if !did_work && !failed {
                let _ = tokio::time::timeout(Duration::from_secs(1), wakeup).await;
            }
        }
    }

    /// Registers every series of the catalog and adds every stored chunk to the index again,
    /// after the index reported that its backend lost state (a Redis restarted empty); reads
    /// fail with [`Error::StateLost`] until this is done.
    pub(super) async fn rebuild_index(&self) -> Result<()> {
        let dir = self.config.data_dir.join("series");
        let (_log, catalog) = tsdb_wal::Wal::open(
            &dir,
            tsdb_wal::WalConfig {
                read_only: true,
                recovery: tsdb_wal::WalRecovery::SkipDamaged,
                ..tsdb_wal::WalConfig::default()
            },
        )
        .await?;
        let mut series = 0usize;
        for record in catalog {
            let (_, record) = record?;
            let (id, labels) = records::decode_series(&record)?;
            self.engines.index.register_series(id, &labels).await?;
            series += 1;
        }
        let chunks = self.engines.storage.list_chunks().await?;
        for chunk in &chunks {
            match self.engines.index.add_chunk(chunk).await {
                Ok(()) | Err(Error::SeriesNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.engines.index.mark_rebuilt().await?;
        tracing::warn!(
            series,
            chunks = chunks.len(),
            "the index lost its state and was rebuilt from the catalog and storage"
        );
        Ok(())
    }

    /// Seals old or oversized heads, truncates the WAL behind what storage holds, applies
    /// retention.
    pub(super) async fn maintenance(self: Arc<Self>) {
        let tick = (self.config.flush_interval / 8)
            .min(self.config.checkpoint_interval)
            .clamp(Duration::from_millis(10), Duration::from_secs(10));
        let mut last_checkpoint = tokio::time::Instant::now();
        let mut last_retention = tokio::time::Instant::now();
        loop {
            let _ = tokio::time::timeout(tick, self.maintenance_wakeup.notified()).await;
            if self.shutdown.load(Ordering::SeqCst) {
                return;
            }
            let mut sealed = self.heads.seal_older_than(self.config.flush_interval);
            if self.heads.buffered_points.load(Ordering::Relaxed) > self.config.max_buffered_points
            {
                let largest = (self.config.chunk_max_points as usize / 4).max(1);
                sealed += self.heads.seal_larger_than(largest);
                if self.heads.buffered_points.load(Ordering::Relaxed)
                    > self.config.max_buffered_points
                {
                    sealed += self.heads.seal_all();
                }
            }
            if sealed > 0 {
                for n in self.flush_wakeup.iter() {
                    n.notify_one();
                }
            }
            let lost = self.index_lost.swap(false, Ordering::SeqCst)
                || self.engines.index.state_lost().await.unwrap_or(false);
            if lost && let Err(e) = self.rebuild_index().await {
                tracing::warn!("rebuilding the index failed (will retry): {e}");
                self.index_lost.store(true, Ordering::SeqCst);
            }
            if last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                last_checkpoint = tokio::time::Instant::now();
                if let Err(e) = self.checkpoint().await {
                    tracing::warn!("WAL checkpoint failed: {e}");
                }
            }
            if self.config.retention.is_some()
                && last_retention.elapsed() >= Duration::from_secs(60)
            {
                last_retention = tokio::time::Instant::now();
                if let Err(e) = self.apply_retention().await {
                    tracing::warn!("retention failed: {e}");
                }
            }
        }
    }

    /// Truncates the WAL before the oldest record whose points are not yet durable chunks.
    pub(super) async fn checkpoint(&self) -> Result<()> {
        let _one_at_a_time = self.checkpoint_lock.lock().await;
        let keep_from = {
            let _exclusive = self.apply_gate.write().await;
            self.heads
                .min_lsn()
                .unwrap_or_else(|| self.wal.next_lsn().get())
        };
        self.engines.storage.sync().await?;
        // The mark records how far the logs are durable: make that everything written.
        self.wal.sync().await?;
        self.catalog.sync().await?;
        // The mark first, then the truncation: the mark never names a deleted segment. It
        // lets the next open skip the records already in chunks and tells it how far the
        // logs went.
        self.write_mark(keep_from, false).await?;
        self.wal.truncate_before(Lsn(keep_from)).await?;
        Ok(())
    }

    /// Deletes chunks whose newest point is older than the retention period allows.
    pub(super) async fn apply_retention(&self) -> Result<usize> {
        let Some(retention) = self.config.retention else {
            return Ok(0);
        };
        let newest = self.newest_timestamp.load(Ordering::Relaxed);
        if newest == i64::MIN {
            return Ok(0);
        }
        let cutoff =
            newest.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let expired: Vec<ChunkReference> = self
            .engines
            .storage
            .list_chunks()
            .await?
            .into_iter()
            .filter(|c| c.end_time < cutoff)
            .collect();
        let mut by_series: BTreeMap<SeriesId, Vec<ChunkLocation>> = BTreeMap::new();
        for c in &expired {
            by_series.entry(c.series_id).or_default().push(c.location);
        }
        for (series, locations) in &by_series {
            self.engines.index.remove_chunks(*series, locations).await?;
        }
        let locations: Vec<ChunkLocation> = expired.iter().map(|c| c.location).collect();
        self.engines.storage.delete_chunks(&locations).await?;
        if !expired.is_empty() {
            tracing::info!(
                "retention deleted {} chunks older than {cutoff}",
                expired.len()
            );
        }
        Ok(expired.len())
    }

    /// Seals every head and waits until all sealed heads are stored, then checkpoints. Fails
    /// (the chunks stay in the WAL) once storing makes no progress for `stall_timeout`.
    pub(super) async fn flush_all(&self) -> Result<()> {
        if self.heads.seal_all() > 0 {
            for n in self.flush_wakeup.iter() {
                n.notify_one();
            }
        }
        let mut watch = self.progress_watch();
        while self.heads.sealed_waiting.load(Ordering::SeqCst) > 0 {
            if self.shutdown.load(Ordering::SeqCst) {
                break;
            }
            let room = self.room.notified();
            let _ = tokio::time::timeout(Duration::from_millis(20), room).await;
            if self.stalled_since(&mut watch) {
                return Err(self.stalled("flush"));
            }
        }
        if self.heads.sealed_waiting.load(Ordering::SeqCst) > 0 {
            return Err(self.stalled("flush"));
        }
        self.checkpoint().await
    }

    /// Starts watching whether sealed heads get stored (see [`Self::stalled_since`]).
    pub(super) fn progress_watch(&self) -> (u64, tokio::time::Instant) {
        (
            self.flush_progress.load(Ordering::SeqCst),
            tokio::time::Instant::now(),
        )
    }

    /// True once no sealed head was stored for `stall_timeout` since `watch` last saw one.
    pub(super) fn stalled_since(&self, watch: &mut (u64, tokio::time::Instant)) -> bool {
        let now = self.flush_progress.load(Ordering::SeqCst);
        if now != watch.0 {
            *watch = (now, tokio::time::Instant::now());
            return false;
        }
        watch.1.elapsed() >= self.config.stall_timeout
    }

    /// The error of a flush or write that waited `stall_timeout` for storing to progress.
    pub(super) fn stalled(&self, what: &str) -> Error {
        let waiting = self.heads.sealed_waiting.load(Ordering::SeqCst);
        let last = self
            .flush_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map_or_else(|| "no error reported, storage is slow".to_owned(), |f| f.1);
        Error::Unavailable {
            engine: "database",
            reason: format!(
                "{what}: {waiting} chunks could not be stored for {:?} (last error: {last}); their points stay in the WAL and are replayed on the next open",
                self.config.stall_timeout
            ),
        }
    }
}
