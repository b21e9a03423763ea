//! [`TimeSeriesDB`]: the database handle, and what its tasks share ([`Inner`]): the engines,
//! the logs, and one component for each phase of the data flow, each owning its state and
//! living in the submodule named after it:
//!
//! - `write`: the write path into the WAL and the head buffers ([`Heads`], in `ingest`);
//! - `flush`: sealed heads into stored, indexed chunks ([`flush::Flusher`]);
//! - `checkpoint`: the WAL truncated behind durable chunks, the checkpoint mark
//!   ([`checkpoint::Checkpointer`]);
//! - `maintenance`: the background task that seals, checkpoints and rebuilds on schedule;
//! - `retention`: expired chunks deleted; `delete`: points deleted by tombstones;
//! - `compact`: cold chunks merged into large ones of the cold codec, mostly dead segments
//!   freed ([`compact::Compactor`]);
//! - `read` and `rollup`: the read planner, stored chunks decoded ([`read::ChunkDecoder`])
//!   and merged with buffered points, PromQL's range functions evaluated near the data;
//! - `recover`: opening, the catalog and the WAL replayed; `snapshot`: a consistent copy;
//! - `lifecycle`: open, closing, shut down, and the background tasks ([`lifecycle::Lifecycle`]).

mod checkpoint;
mod compact;
mod delete;
mod flush;
mod lifecycle;
mod maintenance;
mod read;
mod recover;
mod retention;
mod rollup;
mod snapshot;
mod tiers;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tsdb_core::{
    CodecId, Compressor, DataPoint, DirLock, Error, LabelMatcher, Labels, Result, SeriesId,
    StorageEngine, TimeIndex, TimeRange,
};
use tsdb_wal::{Lsn, Wal, WalCheckpoint, WalConfig};

use crate::checkpoint_mark;
use crate::config::DatabaseConfig;
use crate::damage::{Damage, DamageLog};
use crate::ingest::Heads;
use crate::read::SeriesPoints;
use crate::tombstones::Tombstones;
use checkpoint::Checkpointer;
pub use compact::CompactionStats;
use compact::Compactor;
use flush::Flusher;
use lifecycle::Lifecycle;
use read::ChunkDecoder;
pub use snapshot::SnapshotStats;
pub use tiers::RollupStats;
use tiers::Tiers;

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
    /// WAL appends (one a write call) since open.
    pub wal_appends: u64,
    /// fsyncs of WAL segment files since open.
    pub wal_fsyncs: u64,
    /// How long those fsyncs took.
    pub wal_fsync_latency: crate::FsyncLatency,
    /// Entries in the damage log (see [`TimeSeriesDB::damage`]); accepted ones included.
    pub damaged: u64,
    /// Consecutive failed attempts to store or index a chunk (0 when storing works).
    pub flush_failures: u64,
    /// Stored chunks decoded by reads since open.
    pub chunks_decoded: u64,
    /// Stored chunks whose header answered a read since open, without decoding
    /// (`count_over_time` over a chunk without NaN values).
    pub chunks_answered_by_header: u64,
    /// Compaction rounds run since open (background and [`TimeSeriesDB::compact`]).
    pub compaction_rounds: u64,
    /// What those rounds did.
    pub compaction: CompactionStats,
    /// What the rollup tiers did.
    pub rollup: RollupStats,
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
    /// The codec of the chunks compaction writes for cold data.
    pub(crate) cold: Arc<dyn Compressor>,
    pub(crate) storage: Arc<dyn StorageEngine>,
    pub(crate) index: Arc<dyn TimeIndex>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    config: DatabaseConfig,
    pub(crate) engines: Engines,
    wal: Wal,
    catalog: Wal,
    /// Ingestion: the head buffers and the sealed heads waiting for the flusher.
    pub(crate) heads: Heads,
    flusher: Flusher,
    checkpointer: Checkpointer,
    /// Stored chunks decoded for reads.
    pub(crate) decoder: ChunkDecoder,
    /// Compaction's lock, read epochs and replaced chunks.
    pub(crate) compactor: Compactor,
    lifecycle: Lifecycle,
    /// Losses found (damaged chunks, skipped WAL records, lost labels), kept durably.
    pub(crate) damage: DamageLog,
    /// What `delete_series` deleted, applied by every read.
    pub(crate) tombstones: Tombstones,
    /// The rollup tiers: their state and chunks.
    pub(crate) tiers: Tiers,
    /// The index reported that its backend lost state: the maintenance task rebuilds it.
    pub(crate) index_lost: AtomicBool,
}

impl TimeSeriesDB {
    /// Opens the database over the given engines: replays the series catalog and the WAL,
    /// reconciles the index with storage, and starts the background tasks.
    pub(crate) async fn open(
        config: DatabaseConfig,
        engines: Engines,
        dir_lock: Option<DirLock>,
    ) -> Result<Self> {
        let codec = engines.compressor.codec_id();
        let ours = (codec == CodecId::GORILLA && engines.compressor.writes_gorilla_format())
            || (codec == CodecId::PACKED && engines.compressor.name() == "packed");
        if codec.0 == 0 || (codec.0 < 0x8000 && !ours) {
            return Err(Error::invalid_input(format_args!(
                "codec {} ({}) uses a reserved id: third-party codecs pick one in 0x8000..=0xFFFF",
                engines.compressor.name(),
                codec
            )));
        }
        let dir = &config.data_dir;
        let mark = checkpoint_mark::read(dir);
        let log_config = |segment_size, needed_from, written_before, active| WalConfig {
            segment_size,
            durability: config.wal_durability,
            recovery: config.wal_recovery,
            read_only: config.read_only,
            checkpoint: WalCheckpoint {
                needed_from: Lsn(needed_from),
                written_before: Lsn(written_before),
                closed_cleanly: mark.clean,
                active_segment: Lsn(active),
            },
            ..WalConfig::default()
        };
        // Every registration is needed for ever: the catalog has no checkpoint of its own.
        let (catalog, catalog_records) = Wal::open(
            dir.join("series"),
            log_config(
                16 << 20,
                1,
                mark.catalog_written_before,
                mark.catalog_active,
            ),
        )
        .await?;
        let (wal, wal_records) = Wal::open(
            dir.join("wal"),
            log_config(
                config.wal_segment_size,
                mark.needed_from,
                mark.wal_written_before,
                mark.wal_active,
            ),
        )
        .await?;
        let damage = DamageLog::load(dir, config.read_only)?;
        let tombstones = Tombstones::load(dir, config.read_only)?;
        let tiers = Tiers::new(&config.rollup_tiers, dir)?;

        let inner = Arc::new(Inner {
            heads: Heads::new(config.ingest_shards, config.chunk_max_points),
            flusher: Flusher::new(config.flush_workers, config.stall_timeout),
            checkpointer: Checkpointer::new(mark.needed_from),
            decoder: ChunkDecoder::new(&[&engines.compressor, &engines.cold]),
            compactor: Compactor::default(),
            lifecycle: Lifecycle::new(dir_lock),
            engines,
            wal,
            catalog,
            damage,
            tombstones,
            tiers,
            index_lost: AtomicBool::new(false),
            config,
        });
        let skipped_wal_damage = inner.recover(catalog_records, wal_records, mark).await?;
        if inner.config.read_only {
            return Ok(TimeSeriesDB { inner });
        }
        // From now on records may be appended after what the mark says: it is not clean.
        inner.write_mark(mark.needed_from, false).await?;
        let mut tasks = Vec::new();
        for w in 0..inner.flusher.workers() {
            let inner = inner.clone();
            tasks.push(tokio::spawn(async move { inner.flush_worker(w).await }));
        }
        let maintenance = inner.clone();
        tasks.push(tokio::spawn(async move { maintenance.maintenance().await }));
        let marker = inner.clone();
        tasks.push(tokio::spawn(
            async move { marker.keep_log_ends_marked().await },
        ));
        let compaction = inner.clone();
        tasks.push(tokio::spawn(async move {
            compaction.compaction_service().await
        }));
        inner.lifecycle.set_tasks(tasks);
        if skipped_wal_damage {
            // Move the checkpoint past the skipped damage at once, so that the next strict
            // open does not stop at it again: every replayed point goes into chunks now.
            inner.flush_all().await?;
        }
        Ok(TimeSeriesDB { inner })
    }

    /// Registers a series (idempotent) and returns its id, [`Labels::series_id`].
    pub async fn register_series(&self, labels: &Labels) -> Result<SeriesId> {
        self.inner.check_writable("register_series")?;
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
        let (chunks_decoded, chunks_answered_by_header) = i.decoder.counts();
        let wal = i.wal.stats();
        let (compaction_rounds, compaction) = i.compactor.totals();
        DbStats {
            series: i.heads.series_count() as u64,
            points_written: i.heads.points_written.load(Ordering::Relaxed),
            buffered_points: i.heads.buffered_points.load(Ordering::Relaxed),
            buffered_bytes: i.heads.heap_bytes() as u64,
            chunks_pending: i.heads.sealed_waiting.load(Ordering::Relaxed) as u64,
            chunks_written: i.flusher.chunks_written(),
            points_replayed: i.heads.points_replayed.load(Ordering::Relaxed),
            wal_bytes: i.wal.size_on_disk(),
            wal_bytes_written: wal.bytes_written,
            wal_appends: wal.appends,
            wal_fsyncs: wal.fsyncs,
            wal_fsync_latency: wal.fsync_latency,
            damaged: i.damage.all().len() as u64,
            flush_failures: i.flusher.consecutive_failures(),
            chunks_decoded,
            chunks_answered_by_header,
            compaction_rounds,
            compaction,
            rollup: i.tiers.stats(),
        }
    }

    /// Every loss the database has found and recorded (damaged or missing chunk bytes, WAL
    /// records skipped by [`crate::WalRecovery::SkipDamaged`], series whose labels were lost),
    /// oldest first. Survives reopening. Reads that touch an unaccepted entry fail with
    /// [`Error::Corrupt`]; see [`Damage`].
    pub fn damage(&self) -> Vec<Damage> {
        self.inner.damage.all()
    }

    /// Accepts every recorded loss: reads stop failing because of it (the entries stay
    /// listed, marked accepted). Returns how many entries were newly accepted.
    pub async fn accept_damage(&self) -> Result<usize> {
        self.inner.damage.accept_all()
    }

    /// Like [`TimeSeriesDB::query`], but a series touched by recorded damage is read from
    /// what is left instead of failing; the damage it touches is returned beside the points
    /// (the warnings of a partial answer).
    pub async fn query_partial(
        &self,
        selector: impl Into<Selector>,
        range: TimeRange,
    ) -> Result<(Vec<SeriesPoints>, Vec<Damage>)> {
        self.inner.check_open()?;
        let mut warnings = Vec::new();
        let points = self
            .inner
            .query_with(selector.into(), range, Some(&mut warnings))
            .await?;
        Ok((points, warnings))
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
        self.inner.check_writable("flush")?;
        self.inner.flush_all().await
    }

    /// Deletes the points of every series `matchers` select inside `range` (inclusive, ms)
    /// written before this call, as Prometheus's `delete_series` does; returns how many series
    /// had points there. Durable when it returns: a tombstone hides the points from every read
    /// (compaction will drop them from the chunks); points written afterwards, at any
    /// timestamp, are kept. Writes every buffered point into chunks first (like
    /// [`Self::flush`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tsdb_core::Error> {
    /// # let dir = tempfile::tempdir().map_err(|e| tsdb_core::Error::io("temp dir", e))?;
    /// use tsdb_core::{LabelMatcher, Labels, TimeRange};
    /// use tsdb_database::{DatabaseConfig, TimeSeriesDBBuilder};
    /// let db = TimeSeriesDBBuilder::new()
    ///     .with_config(DatabaseConfig { data_dir: dir.path().into(), ..Default::default() })
    ///     .build()
    ///     .await?;
    /// let cpu = Labels::new("cpu", [("host", "a")])?;
    /// db.insert_series(&cpu, &[(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)]).await?;
    /// let deleted = db
    ///     .delete_series(&[LabelMatcher::equal("host", "a")], TimeRange { start: 1_500, end: 2_500 })
    ///     .await?;
    /// assert_eq!(deleted, 1);
    /// assert_eq!(db.query(&cpu, TimeRange::ALL).await?[0].timestamps, vec![1_000, 3_000]);
    /// db.close().await
    /// # }
    /// ```
    pub async fn delete_series(&self, matchers: &[LabelMatcher], range: TimeRange) -> Result<u64> {
        self.inner.check_writable("delete_series")?;
        self.inner.delete_series(matchers, range).await
    }

    /// Writes a consistent copy of the database into `dir` (absent or empty), which opens as
    /// a database of its own: every point acknowledged before the call (buffered ones are
    /// written into chunks first, like [`Self::flush`]), deleted points left out, the series
    /// catalog and the damage log. The copy uses the default engines under `dir` and this
    /// database's codec; writes may go on meanwhile (they are not in the copy). It is built
    /// in `<dir>.partial` and renamed to `dir` once complete, so a snapshot cut short never
    /// passes for a whole one.
    pub async fn snapshot(&self, dir: impl AsRef<std::path::Path>) -> Result<SnapshotStats> {
        self.inner.check_writable("snapshot")?;
        self.inner.snapshot(dir.as_ref()).await
    }

    /// Deletes the chunks that [`DatabaseConfig::retention`] has expired (the background task
    /// also does it every minute); returns how many were deleted. Points still in head
    /// buffers are not affected until sealed.
    pub async fn apply_retention(&self) -> Result<usize> {
        self.inner.check_writable("apply_retention")?;
        self.inner.apply_retention().await
    }

    /// Runs compaction now, to completion, without the background service's throttle:
    /// every series' chunks whose newest point is older than [`DatabaseConfig::cold_after`]
    /// (and every chunk overlapping them) are merged into chunks of up to
    /// [`DatabaseConfig::compacted_chunk_points`] points in the cold codec, with deleted
    /// points dropped and a rewritten timestamp's last write kept; chunks in storage files
    /// that are mostly dead are written anew so the files can go. Returns once what was
    /// replaced is deleted from storage (after the reads that began before may still hold
    /// it). Writes and reads may go on meanwhile; a series written where it is being
    /// rewritten is left for the next round (counted in [`CompactionStats::conflicts`]).
    /// Then the rollup tiers ([`DatabaseConfig::rollup_tiers`]) are built up to
    /// `cold_after` ago, and their retention applied ([`DbStats::rollup`] counts it).
    ///
    /// Safe against a kill at any moment: new chunks are durable and indexed before the old
    /// ones are removed, and a read merges both into the same points until they are.
    pub async fn compact(&self) -> Result<CompactionStats> {
        self.inner.check_writable("compact")?;
        let mut total = CompactionStats::default();
        let mut rewritten = std::collections::HashSet::new();
        // A round frees the chunks it replaced; the segments that leaves mostly dead are
        // moved by the next one.
        for _ in 0..3 {
            let round = self.inner.compaction_round(false, &mut rewritten).await;
            self.inner.delete_all_retired().await;
            let round = round?;
            total.add(&round);
            if round.chunks_written == 0 && round.chunks_replaced == 0 {
                break;
            }
        }
        total.series = rewritten.len() as u64;
        let tiers = self.inner.build_tiers(false).await;
        self.inner.delete_all_retired().await;
        tiers?;
        Ok(total)
    }

    /// Stops taking writes, writes every buffered point into chunks, makes storage durable,
    /// truncates the WAL and stops the background tasks. Later calls give [`Error::Closed`].
    ///
    /// Returns within about [`DatabaseConfig::stall_timeout`] even when chunks cannot be
    /// stored (the disk full, the index gone): it then says how many chunks were left, whose
    /// points stay in the WAL and are replayed by the next open; the engines are closed and
    /// the directory released either way.
    pub async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if !inner.lifecycle.begin_close() {
            return Err(Error::Closed { engine: "database" });
        }
        if inner.config.read_only {
            return Ok(());
        }
        // Wait for writers between WAL append and head apply.
        drop(inner.checkpointer.apply_gate.write().await);
        let flushed = inner.flush_all().await;
        inner.shut_down();
        for t in inner.lifecycle.take_tasks() {
            let abort = t.abort_handle();
            if tokio::time::timeout(inner.config.stall_timeout, t)
                .await
                .is_err()
            {
                tracing::error!("a background task did not stop in time; aborting it");
                abort.abort();
            }
        }
        inner.delete_retired().await;
        let storage = inner.engines.storage.close().await;
        if flushed.is_ok() && storage.is_ok() && inner.heads.min_lsn().is_none() {
            // Every record is in durable chunks and the mark says none is needed: the WAL
            // keeps nothing but an empty segment, and the next open replays nothing.
            if let Err(e) = inner.wal.truncate_all().await {
                tracing::warn!("truncating the WAL at close failed (it is replayed instead): {e}");
            }
        }
        let wal = inner.wal.close().await;
        let catalog = inner.catalog.close().await;
        if flushed.is_ok() && storage.is_ok() && wal.is_ok() && catalog.is_ok() {
            // Everything is in chunks: the next open replays nothing and knows the logs ended
            // here.
            inner.write_mark(inner.wal.next_lsn().get(), true).await?;
        }
        inner.lifecycle.release_dir();
        flushed?;
        storage?;
        wal?;
        catalog
    }
}

impl Drop for TimeSeriesDB {
    fn drop(&mut self) {
        // Without `close`, stop the background tasks; the WAL keeps every acknowledged point.
        self.inner.shut_down();
    }
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        self.lifecycle.check_open()
    }

    /// Refuses writes in a read-only database.
    pub(crate) fn check_writable(&self, operation: &'static str) -> Result<()> {
        self.check_open()?;
        if self.config.read_only {
            return Err(Error::ReadOnly {
                engine: "database",
                operation,
            });
        }
        Ok(())
    }

    /// Stops the background tasks and wakes everyone waiting on them.
    fn shut_down(&self) {
        self.lifecycle.shut_down();
        self.flusher.wake_all();
    }
}
