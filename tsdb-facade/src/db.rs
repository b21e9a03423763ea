//! [`TimeSeriesDB`]: the database handle, and the state its tasks share ([`Inner`]). The
//! work itself is in the submodules: `write` (the write path), `flush` (chunks, checkpoints,
//! retention), `read` (reads of stored and buffered points) and `recover` (opening).

mod flush;
mod read;
mod recover;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, RwLock};
use tokio::task::JoinHandle;
use tsdb_core::{
    CodecId, Compressor, DataPoint, Error, LabelMatcher, Labels, Result, SeriesId, StorageEngine,
    TimeIndex, TimeRange,
};
use tsdb_wal::{Wal, WalConfig};

use crate::config::DatabaseConfig;
use crate::ingest::Heads;
use crate::read::SeriesPoints;
use recover::lock_data_dir;

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
}
