//! Background work: sealed heads compressed into chunks and indexed, checkpoints of the WAL,
//! retention, and flushing everything on demand.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tsdb_core::{
    ChunkLocation, ChunkReference, CodecId, CompressedBlock, DataPoint, Error, Result, SeriesId,
};
use tsdb_wal::Lsn;

use super::Inner;
use crate::checkpoint_mark;
use crate::ingest::Sealed;

impl Inner {
    /// Writes one sealed head as a chunk and indexes it, retrying while the engines fail.
    pub(super) async fn persist(&self, sealed: &Sealed) -> Result<()> {
        let block = self.seal_to_block(sealed).await?;
        let mut attempt = 0u32;
        let location = loop {
            match self.engines.storage.write_chunk(&block).await {
                Ok(loc) => break loc,
                Err(e) => self.backoff("writing a chunk", &e, &mut attempt).await?,
            }
        };
        let reference = ChunkReference::new(&block, location);
        attempt = 0;
        loop {
            match self.engines.index.add_chunk(&reference).await {
                Ok(()) => break,
                Err(e) => self.backoff("indexing a chunk", &e, &mut attempt).await?,
            }
        }
        self.chunks_written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Logs a background failure and sleeps before the next attempt; gives up (returns the
    /// error) once the database is shutting down and several attempts failed.
    pub(super) async fn backoff(&self, what: &str, error: &Error, attempt: &mut u32) -> Result<()> {
        *attempt += 1;
        tracing::warn!(attempt = *attempt, "{what} failed: {error}");
        *self
            .background_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(format!("{what}: {error}"));
        if self.shutdown.load(Ordering::Relaxed)
            || (self.closing.load(Ordering::Relaxed) && *attempt >= 5)
        {
            return Err(Error::Unavailable {
                engine: "database",
                reason: format!("{what} failed {} times, last: {error}", *attempt),
            });
        }
        tokio::time::sleep(Duration::from_millis(10u64 << (*attempt).min(8))).await;
        Ok(())
    }

    pub(super) async fn seal_to_block(&self, sealed: &Sealed) -> Result<CompressedBlock> {
        let compressor = &self.engines.compressor;
        if compressor.codec_id() == CodecId::GORILLA
            && let Some(data) = sealed.head.clean_block()
        {
            let (start_time, end_time) = sealed.head.time_range().unwrap_or((0, 0));
            return Ok(CompressedBlock {
                codec: CodecId::GORILLA,
                series_id: sealed.series,
                start_time,
                end_time,
                point_count: sealed.head.len() as u32,
                data: data.into(),
            });
        }
        let (ts, vs) = sealed.head.points()?;
        let points: Vec<DataPoint> = ts
            .iter()
            .zip(&vs)
            .map(|(&t, &v)| DataPoint::new(sealed.series, t, v))
            .collect();
        compressor.compress(&points).await
    }

    pub(super) async fn flush_worker(self: Arc<Self>, worker: usize) {
        let shards: Vec<usize> = (worker..self.heads.shard_count())
            .step_by(self.flush_wakeup.len())
            .collect();
        loop {
            let wakeup = self.flush_wakeup[worker].notified();
            let mut did_work = false;
            for &shard in &shards {
                while let Some(sealed) = self.heads.next_sealed(shard) {
                    if let Err(e) = self.persist(&sealed).await {
                        tracing::error!("giving up on a chunk of series {}: {e}", sealed.series);
                        return;
                    }
                    self.heads.finish_sealed(shard, &sealed);
                    self.room.notify_waiters();
                    did_work = true;
                }
            }
            if self.shutdown.load(Ordering::SeqCst) {
                return;
            }
            if !did_work {
                let _ = tokio::time::timeout(Duration::from_secs(1), wakeup).await;
            }
        }
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
        self.wal.truncate_before(Lsn(keep_from)).await?;
        // Whole segments are deleted above; the mark lets the next open skip the records of
        // the current segment that are already in chunks.
        let dir = self.config.data_dir.clone();
        tokio::task::spawn_blocking(move || checkpoint_mark::write(&dir, keep_from))
            .await
            .map_err(|e| Error::invalid_input(format_args!("checkpoint task failed: {e}")))?
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

    pub(super) async fn flush_all(&self) -> Result<()> {
        if self.heads.seal_all() > 0 {
            for n in self.flush_wakeup.iter() {
                n.notify_one();
            }
        }
        while self.heads.sealed_waiting.load(Ordering::SeqCst) > 0 {
            if self.shutdown.load(Ordering::SeqCst) {
                break;
            }
            let room = self.room.notified();
            let _ = tokio::time::timeout(Duration::from_millis(20), room).await;
            let failed = self
                .background_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(reason) = failed
                && self.closing.load(Ordering::Relaxed)
                && self.heads.sealed_waiting.load(Ordering::SeqCst) > 0
            {
                tracing::warn!("flush is retrying after: {reason}");
            }
        }
        if self.heads.sealed_waiting.load(Ordering::SeqCst) > 0 {
            return Err(Error::Unavailable {
                engine: "database",
                reason: "chunks could not be written; they stay in the WAL".into(),
            });
        }
        self.checkpoint().await
    }
}
