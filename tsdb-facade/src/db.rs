//! [`TimeSeriesDB`]: the database handle.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, RwLock};
use tokio::task::JoinHandle;
use tsdb_core::{
    ChunkLocation, ChunkReference, CodecId, CompressedBlock, Compressor, DataPoint, Error,
    LabelMatcher, Labels, Result, SeriesId, StorageEngine, TimeIndex, TimeRange,
};

use tsdb_wal::{Lsn, Replay, Wal, WalConfig};

use crate::checkpoint_mark;
use crate::config::DatabaseConfig;
use crate::ingest::{Heads, Sealed};
use crate::read::{Columns, SeriesPoints, merge};
use crate::records;

/// Which series a query reads.
#[derive(Clone, Debug)]
pub enum Selector {
    /// One series by id.
    Series(SeriesId),
    /// Every series matched by all matchers (Prometheus semantics).
    Matchers(Vec<LabelMatcher>),
}

impl From<SeriesId> for Selector {
    fn from(id: SeriesId) -> Self {
        Selector::Series(id)
    }
}

impl From<Vec<LabelMatcher>> for Selector {
    fn from(m: Vec<LabelMatcher>) -> Self {
        Selector::Matchers(m)
    }
}

impl From<&[LabelMatcher]> for Selector {
    fn from(m: &[LabelMatcher]) -> Self {
        Selector::Matchers(m.to_vec())
    }
}

impl From<&Labels> for Selector {
    fn from(labels: &Labels) -> Self {
        Selector::Series(labels.series_id())
    }
}

/// Counters describing the database at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbStats {
    /// Series known.
    pub series: u64,
    /// Points accepted since open (replayed ones not counted).
    pub points_written: u64,
    /// Points held in head buffers, not yet in chunks.
    pub buffered_points: u64,
    /// Approximate heap bytes of the head buffers.
    pub buffered_bytes: u64,
    /// Sealed heads waiting to be written to storage.
    pub chunks_pending: u64,
    /// Chunks written to storage since open.
    pub chunks_written: u64,
    /// Points replayed from the WAL when the database opened.
    pub points_replayed: u64,
    /// Bytes of WAL on disk.
    pub wal_bytes: u64,
    /// Bytes appended to the WAL since open.
    pub wal_bytes_written: u64,
}

/// The database: writes go to the WAL and the head buffers; background tasks seal heads into
/// chunks, store them and index them; reads merge storage and memory.
///
/// Build one with [`crate::TimeSeriesDBBuilder`]. Call [`TimeSeriesDB::close`] before dropping it
/// to write every buffered point into chunks; a database dropped without `close` loses nothing
/// either (the WAL is replayed on the next open), it just takes longer to open.
#[derive(Debug)]
pub struct TimeSeriesDB {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Engines {
    pub(crate) compressor: Arc<dyn Compressor>,
    pub(crate) storage: Arc<dyn StorageEngine>,
    pub(crate) index: Arc<dyn TimeIndex>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    config: DatabaseConfig,
    pub(crate) engines: Engines,
    pub(crate) codecs: HashMap<CodecId, Arc<dyn Compressor>>,
    wal: Wal,
    catalog: Wal,
    pub(crate) heads: Heads,
    /// Writers hold it shared from WAL append to head apply; the checkpoint takes it
    /// exclusively so that no WAL record is between the two when it reads the heads' LSNs.
    apply_gate: RwLock<()>,
    /// Serialises checkpoints (the maintenance task's and `flush`'s).
    checkpoint_lock: tokio::sync::Mutex<()>,
    /// One per flush worker: there is sealed work in its shards.
    flush_wakeup: Box<[Notify]>,
    /// Writers waiting for room in the flush queue or the head buffers.
    room: Notify,
    /// Wakes the maintenance task early (memory pressure, shutdown).
    maintenance_wakeup: Notify,
    closing: AtomicBool,
    shutdown: AtomicBool,
    newest_timestamp: AtomicI64,
    points_written: AtomicU64,
    chunks_written: AtomicU64,
    points_replayed: AtomicU64,
    /// The last error of a background task, reported by `close`.
    background_error: Mutex<Option<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Held until `close` or drop: one process (and handle) per data directory.
    dir_lock: Mutex<Option<std::fs::File>>,
}

impl TimeSeriesDB {
    /// Opens the database over the given engines: replays the series catalog and the WAL,
    /// reconciles the index with storage, and starts the background tasks.
    pub(crate) async fn open(config: DatabaseConfig, engines: Engines) -> Result<Self> {
        let dir = &config.data_dir;
        let dir_lock = lock_data_dir(dir).await?;
        let log_config = |segment_size| WalConfig {
            segment_size,
            durability: config.wal_durability,
            ..WalConfig::default()
        };
        let (catalog, catalog_records) =
            Wal::open(dir.join("series"), log_config(16 << 20)).await?;
        let (wal, wal_records) =
            Wal::open(dir.join("wal"), log_config(config.wal_segment_size)).await?;

        let mut codecs: HashMap<CodecId, Arc<dyn Compressor>> = HashMap::new();
        codecs.insert(
            CodecId::GORILLA,
            Arc::new(tsdb_gorilla::GorillaCompressor::new()),
        );
        codecs.insert(engines.compressor.codec_id(), engines.compressor.clone());

        let workers = config.flush_workers.max(1);
        let inner = Arc::new(Inner {
            heads: Heads::new(config.ingest_shards, config.chunk_max_points),
            codecs,
            engines,
            wal,
            catalog,
            apply_gate: RwLock::new(()),
            checkpoint_lock: tokio::sync::Mutex::new(()),
            flush_wakeup: (0..workers).map(|_| Notify::new()).collect(),
            room: Notify::new(),
            maintenance_wakeup: Notify::new(),
            closing: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            newest_timestamp: AtomicI64::new(i64::MIN),
            points_written: AtomicU64::new(0),
            chunks_written: AtomicU64::new(0),
            points_replayed: AtomicU64::new(0),
            background_error: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            dir_lock: Mutex::new(Some(dir_lock)),
            config,
        });
        inner.recover(catalog_records, wal_records).await?;
        let mut tasks = Vec::new();
        for w in 0..workers {
            let inner = inner.clone();
            tasks.push(tokio::spawn(async move { inner.flush_worker(w).await }));
        }
        let maintenance = inner.clone();
        tasks.push(tokio::spawn(async move { maintenance.maintenance().await }));
        *inner.tasks.lock().unwrap_or_else(PoisonError::into_inner) = tasks;
        Ok(TimeSeriesDB { inner })
    }

    /// Registers a series (idempotent) and returns its id, [`Labels::series_id`].
    pub async fn register_series(&self, labels: &Labels) -> Result<SeriesId> {
        self.inner.check_open()?;
        let id = labels.series_id();
        if !self.inner.heads.is_registered(id) {
            self.inner.register_new(&[(id, labels)]).await?;
        }
        Ok(id)
    }

    /// Writes one point of the series named by `labels`, registering the series if new.
    pub async fn insert(&self, labels: &Labels, timestamp: i64, value: f64) -> Result<()> {
        let id = self.register_series(labels).await?;
        self.insert_batch(&[DataPoint::new(id, timestamp, value)])
            .await
    }

    /// Writes points of one series named by `labels`, in the order given.
    pub async fn insert_series(&self, labels: &Labels, points: &[(i64, f64)]) -> Result<()> {
        let id = self.register_series(labels).await?;
        let batch: Vec<DataPoint> = points
            .iter()
            .map(|&(t, v)| DataPoint::new(id, t, v))
            .collect();
        self.insert_batch(&batch).await
    }

    /// Writes points of registered series. All or nothing: when one point is refused (unknown
    /// series, older than the out-of-order window) nothing is written and the error names it.
    /// Returns once the batch is as durable as [`DatabaseConfig::wal_durability`] promises.
    pub async fn insert_batch(&self, points: &[DataPoint]) -> Result<()> {
        self.inner.insert_batch(points).await
    }

    /// The points of every selected series in `range` (inclusive), merged from storage and
    /// memory, in time order; a later write of a timestamp replaces the earlier one.
    /// Series without points in the range are left out; unknown series give no result.
    pub async fn query(
        &self,
        selector: impl Into<Selector>,
        range: TimeRange,
    ) -> Result<Vec<SeriesPoints>> {
        self.inner.check_open()?;
        self.inner.query(selector.into(), range).await
    }

    /// The shared state, for the query engine (`crate::query`).
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Series matched by all `matchers`, with their labels.
    pub async fn find_series(&self, matchers: &[LabelMatcher]) -> Result<Vec<(SeriesId, Labels)>> {
        self.inner.check_open()?;
        let ids = self.inner.engines.index.find_series(matchers).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(labels) = self.inner.engines.index.series_labels(id).await? {
                out.push((id, labels));
            }
        }
        Ok(out)
    }

    /// Counters describing the database now.
    pub fn stats(&self) -> DbStats {
        let i = &self.inner;
        DbStats {
            series: i.heads.series_count() as u64,
            points_written: i.points_written.load(Ordering::Relaxed),
            buffered_points: i.heads.buffered_points.load(Ordering::Relaxed),
            buffered_bytes: i.heads.heap_bytes() as u64,
            chunks_pending: i.heads.sealed_waiting.load(Ordering::Relaxed) as u64,
            chunks_written: i.chunks_written.load(Ordering::Relaxed),
            points_replayed: i.points_replayed.load(Ordering::Relaxed),
            wal_bytes: i.wal.size_on_disk(),
            wal_bytes_written: i.wal.stats().bytes_written,
        }
    }

    /// The engines in use.
    pub fn storage(&self) -> &Arc<dyn StorageEngine> {
        &self.inner.engines.storage
    }

    /// The index in use.
    pub fn index(&self) -> &Arc<dyn TimeIndex> {
        &self.inner.engines.index
    }

    /// Seals every head buffer and waits until all of them are chunks in storage and the
    /// index (the WAL is then truncated). Writes may continue meanwhile.
    pub async fn flush(&self) -> Result<()> {
        self.inner.check_open()?;
        self.inner.flush_all().await
    }

    /// Deletes the chunks that [`DatabaseConfig::retention`] has expired (the background task
    /// also does it every minute); returns how many were deleted. Points still in head
    /// buffers are not affected until sealed.
    pub async fn apply_retention(&self) -> Result<usize> {
        self.inner.check_open()?;
        self.inner.apply_retention().await
    }

    /// Stops taking writes, writes every buffered point into chunks, makes storage durable,
    /// truncates the WAL and stops the background tasks. Later calls give [`Error::Closed`].
    pub async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closing.swap(true, Ordering::SeqCst) {
            return Err(Error::Closed { engine: "database" });
        }
        // Wait for writers between WAL append and head apply.
        drop(inner.apply_gate.write().await);
        let flushed = inner.flush_all().await;
        inner.shutdown.store(true, Ordering::SeqCst);
        inner.wake_all();
        let tasks =
            std::mem::take(&mut *inner.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for t in tasks {
            let _ = t.await;
        }
        flushed?;
        inner.engines.storage.close().await?;
        inner.wal.close().await?;
        inner.catalog.close().await?;
        inner
            .dir_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Ok(())
    }
}

impl Drop for TimeSeriesDB {
    fn drop(&mut self) {
        // Without `close`, stop the background tasks; the WAL keeps every acknowledged point.
        self.inner.shutdown.store(true, Ordering::SeqCst);
        self.inner.wake_all();
    }
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closing.load(Ordering::Relaxed) {
            Err(Error::Closed { engine: "database" })
        } else {
            Ok(())
        }
    }

    fn wake_all(&self) {
        for n in self.flush_wakeup.iter() {
            n.notify_one();
        }
        self.maintenance_wakeup.notify_one();
        self.room.notify_waiters();
    }

    fn worker_of(&self, shard: usize) -> usize {
        shard % self.flush_wakeup.len()
    }

    /// Persists new series in the catalog, then registers them in the index and the heads.
    async fn register_new(&self, series: &[(SeriesId, &Labels)]) -> Result<()> {
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

    async fn insert_batch(&self, points: &[DataPoint]) -> Result<()> {
        self.check_open()?;
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
        let batch = Batch::group(points, &self.heads);
        let groups = batch.slices();
        let window = i64::try_from(self.config.out_of_order_window.as_millis()).unwrap_or(i64::MAX);
        for (shard, range) in &batch.shard_ranges {
            self.heads
                .validate(*shard, &groups[range.clone()], window)?;
        }
        let record = records::encode_points(&groups);

        let gate = self.apply_gate.read().await;
        self.check_open()?;
        let lsn = self.wal.append(&record).await?.get();
        let mut sealed_shards = Vec::new();
        for (shard, range) in &batch.shard_ranges {
            if self.heads.apply(*shard, lsn, &groups[range.clone()]) > 0 {
                sealed_shards.push(*shard);
            }
        }
        drop(gate);

        let newest = batch.flat.iter().map(|p| p.0).max().unwrap_or(i64::MIN);
        self.newest_timestamp.fetch_max(newest, Ordering::Relaxed);
        self.points_written
            .fetch_add(batch.flat.len() as u64, Ordering::Relaxed);
        for shard in sealed_shards {
            self.flush_wakeup[self.worker_of(shard)].notify_one();
        }
        self.wait_for_room().await;
        Ok(())
    }

    /// Backpressure: waits while too many sealed heads wait for storage or heads hold too
    /// many points.
    async fn wait_for_room(&self) {
        loop {
            let sealed = self.heads.sealed_waiting.load(Ordering::Relaxed);
            let buffered = self.heads.buffered_points.load(Ordering::Relaxed);
            if sealed <= self.config.flush_queue_capacity
                && buffered <= self.config.max_buffered_points
            {
                return;
            }
            if buffered > self.config.max_buffered_points {
                self.maintenance_wakeup.notify_one();
            }
            if self.shutdown.load(Ordering::Relaxed) {
                return;
            }
            let notified = self.room.notified();
            // Re-check after a short wait even without a notification.
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    /// Writes one sealed head as a chunk and indexes it, retrying while the engines fail.
    async fn persist(&self, sealed: &Sealed) -> Result<()> {
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
    async fn backoff(&self, what: &str, error: &Error, attempt: &mut u32) -> Result<()> {
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

    async fn seal_to_block(&self, sealed: &Sealed) -> Result<CompressedBlock> {
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

    async fn flush_worker(self: Arc<Self>, worker: usize) {
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
    async fn maintenance(self: Arc<Self>) {
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
    async fn checkpoint(&self) -> Result<()> {
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
    async fn apply_retention(&self) -> Result<usize> {
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

    async fn flush_all(&self) -> Result<()> {
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

    async fn query(&self, selector: Selector, range: TimeRange) -> Result<Vec<SeriesPoints>> {
        let ids = match selector {
            Selector::Series(id) => vec![id],
            Selector::Matchers(m) => self.engines.index.find_series(&m).await?,
        };
        let mut out = Vec::new();
        for id in ids {
            let Some(labels) = self.engines.index.series_labels(id).await? else {
                continue;
            };
            let (timestamps, values) = self.read_series(id, range).await?;
            if !timestamps.is_empty() {
                out.push(SeriesPoints {
                    series_id: id,
                    labels,
                    timestamps,
                    values,
                });
            }
        }
        Ok(out)
    }

    /// Every point of one series in `range`, merged oldest source first: stored chunks by
    /// location (write order), then sealed heads, then the live head.
    pub(crate) async fn read_series(&self, series: SeriesId, range: TimeRange) -> Result<Columns> {
        // Memory first: a head sealed and indexed meanwhile is then read twice (harmless),
        // never missed.
        let memory = self.heads.snapshot(series)?;
        let mut chunks = self.engines.index.query_chunks(series, range).await?;
        chunks.sort_by_key(|c| c.location);
        let mut sources: Vec<Columns> = Vec::with_capacity(chunks.len() + memory.sealed.len() + 1);
        for chunk in &chunks {
            sources.push(self.read_chunk(chunk).await?);
        }
        for sealed in &memory.sealed {
            sources.push(sealed.head.points()?);
        }
        if let Some(head) = memory.head {
            sources.push(head);
        }
        Ok(merge(sources, range))
    }

    /// Rebuilds memory state on open: series from the catalog, the index from storage, heads
    /// from the WAL.
    async fn recover(&self, catalog: Replay, wal: Replay) -> Result<()> {
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

    /// The merged points of a series' stored chunks in `range` (no memory sources).
    async fn read_stored(&self, series: SeriesId, range: TimeRange) -> Result<Columns> {
        let mut chunks = self.engines.index.query_chunks(series, range).await?;
        chunks.sort_by_key(|c| c.location);
        let mut sources = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            sources.push(self.read_chunk(chunk).await?);
        }
        Ok(merge(sources, range))
    }

    /// Appends the points of one stored chunk to the columns, in the chunk's order: Gorilla
    /// blocks are decoded in bulk straight into the columns' spare room.
    pub(crate) async fn read_chunk_into(
        &self,
        chunk: &ChunkReference,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<()> {
        let block = self.engines.storage.read_chunk(&chunk.location).await?;
        if block.codec != CodecId::GORILLA {
            let (t, v) = self.read_chunk(chunk).await?;
            ts.extend_from_slice(&t);
            vs.extend_from_slice(&v);
            return Ok(());
        }
        let mut dec = tsdb_gorilla::Decoder::new(&block.data)?;
        if dec.point_count() != u64::from(block.point_count) {
            return Err(point_count_mismatch(&block, dec.point_count()));
        }
        let at = ts.len();
        let n = block.point_count as usize;
        ts.resize(at + n, 0);
        vs.resize(at + n, 0.0);
        let got = dec.decode_into(&mut ts[at..], &mut vs[at..])?;
        ts.truncate(at + got);
        vs.truncate(at + got);
        Ok(())
    }

    /// One stored chunk as columns: Gorilla blocks are decoded in bulk straight into the
    /// columns, other codecs through their `Compressor`.
    pub(crate) async fn read_chunk(&self, chunk: &ChunkReference) -> Result<Columns> {
        let block = self.engines.storage.read_chunk(&chunk.location).await?;
        if block.codec == CodecId::GORILLA {
            return decode_gorilla(&block);
        }
        let codec = self
            .codecs
            .get(&block.codec)
            .ok_or(Error::UnsupportedCodec {
                engine: "database",
                codec: block.codec,
            })?;
        let points = codec.decompress(&block).await?;
        Ok(points.iter().map(|p| (p.timestamp, p.value)).unzip())
    }
}

fn point_count_mismatch(block: &CompressedBlock, found: u64) -> Error {
    Error::corrupt(
        format_args!("chunk of series {}", block.series_id),
        0,
        format_args!(
            "block holds {found} points, its header says {}",
            block.point_count
        ),
    )
}

/// Decodes a Gorilla block into columns, checking its point count against its header.
fn decode_gorilla(block: &CompressedBlock) -> Result<Columns> {
    let mut dec = tsdb_gorilla::Decoder::new(&block.data)?;
    if dec.point_count() != u64::from(block.point_count) {
        return Err(point_count_mismatch(block, dec.point_count()));
    }
    let n = block.point_count as usize;
    let (mut ts, mut vs) = (vec![0i64; n], vec![0f64; n]);
    let got = dec.decode_into(&mut ts, &mut vs)?;
    ts.truncate(got);
    vs.truncate(got);
    Ok((ts, vs))
}

/// Takes the exclusive lock of `<data_dir>/LOCK`. A handle dropped without `close` releases it
/// once its background tasks have stopped, so a busy lock is retried for a few seconds before
/// giving up.
async fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
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

/// A write batch grouped for the heads: by shard, then series, each series' points in the
/// order given.
struct Batch {
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
    fn group(points: &[DataPoint], heads: &Heads) -> Batch {
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
    fn slices(&self) -> Vec<(SeriesId, &[(i64, f64)])> {
        self.groups
            .iter()
            .map(|(s, r)| (*s, &self.flat[r.clone()]))
            .collect()
    }
}
