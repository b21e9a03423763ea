//! Flushing: sealed heads compressed into chunks, stored and indexed by the flush workers
//! (the [`Flusher`] is their state), and flushing everything on demand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use tsdb_core::{ChunkReference, CodecId, CompressedBlock, Compressor, Error, Result, TimeRange};
use tsdb_packed::PackedCompressor;

use super::Inner;
use crate::damage::Damage;
use crate::ingest::Sealed;

/// Sealed heads [`Inner::flush_all`] lets wait for storage before it seals another shard.
const FLUSH_AHEAD: usize = 32_768;

/// How often [`Inner::flush_all`] looks at the sealed heads still waiting while there are
/// more than [`FLUSH_WOKEN`].
const FLUSH_POLL: Duration = Duration::from_millis(2);

/// Sealed heads left below which [`Inner::flush_all`] is woken by each one stored.
const FLUSH_WOKEN: usize = 256;

/// What became of one attempt to store and index a sealed head.
pub(super) enum Persisted {
    /// Stored and indexed.
    Done,
    /// Stored, but the index refuses it for good (it knows no such series: the catalog lost
    /// the labels). The chunk is kept in storage and the loss recorded.
    Unindexable,
}

/// The flush workers' state: a wake-up each, whether storing makes progress, the last
/// failure, and the chunks written.
#[derive(Debug)]
pub(crate) struct Flusher {
    /// One per flush worker: there is sealed work in its shards.
    wakeups: Box<[Notify]>,
    /// Writers and `flush` waiting for sealed heads to be stored.
    room: Notify,
    /// Sealed heads stored since open: `flush`, `close` and writers watch it for progress.
    progress: AtomicU64,
    chunks_written: AtomicU64,
    /// The last error of storing or indexing a chunk, and how many attempts failed in a row
    /// (reset by a success): what `flush` and `close` report when they give up.
    failure: Mutex<Option<(u64, String)>>,
    stall_timeout: Duration,
}

/// What [`Flusher::stalled_since`] compares with: the progress count last seen, and when.
pub(crate) type ProgressWatch = (u64, tokio::time::Instant);

impl Flusher {
    pub(crate) fn new(workers: usize, stall_timeout: Duration) -> Self {
        Flusher {
            wakeups: (0..workers.max(1)).map(|_| Notify::new()).collect(),
            room: Notify::new(),
            progress: AtomicU64::new(0),
            chunks_written: AtomicU64::new(0),
            failure: Mutex::new(None),
            stall_timeout,
        }
    }

    /// Number of flush workers.
    pub(crate) fn workers(&self) -> usize {
        self.wakeups.len()
    }

    /// Wakes the worker that drains `shard`.
    pub(crate) fn wake_for(&self, shard: usize) {
        self.wakeups[shard % self.wakeups.len()].notify_one();
    }

    /// Wakes every worker, and everyone waiting for room.
    pub(crate) fn wake_all(&self) {
        for n in self.wakeups.iter() {
            n.notify_one();
        }
        self.room.notify_waiters();
    }

    /// What waiting for room (a sealed head stored) sleeps on.
    pub(crate) fn room(&self) -> Notified<'_> {
        self.room.notified()
    }

    /// One sealed head is done with (`indexed`: written as a chunk and indexed).
    fn stored(&self, indexed: bool) {
        if indexed {
            self.chunks_written.fetch_add(1, Ordering::Relaxed);
        }
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.progress.fetch_add(1, Ordering::SeqCst);
        self.room.notify_waiters();
    }

    /// Records the `attempt`-th failure in a row.
    fn failed(&self, attempt: u32, what: String) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((u64::from(attempt), what));
    }

    /// Chunks written and indexed since open.
    pub(crate) fn chunks_written(&self) -> u64 {
        self.chunks_written.load(Ordering::Relaxed)
    }

    /// Consecutive failed attempts to store or index a chunk (0 when storing works).
    pub(crate) fn consecutive_failures(&self) -> u64 {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, |f| f.0)
    }

    /// Starts watching whether sealed heads get stored (see [`Self::stalled_since`]).
    pub(crate) fn watch(&self) -> ProgressWatch {
        (
            self.progress.load(Ordering::SeqCst),
            tokio::time::Instant::now(),
        )
    }

    /// True once no sealed head was stored for `stall_timeout` since `watch` last saw one.
    pub(crate) fn stalled_since(&self, watch: &mut ProgressWatch) -> bool {
        let now = self.progress.load(Ordering::SeqCst);
        if now != watch.0 {
            *watch = (now, tokio::time::Instant::now());
            return false;
        }
        watch.1.elapsed() >= self.stall_timeout
    }

    /// The error of a flush or write that waited `stall_timeout` for storing to progress,
    /// with `waiting` sealed heads left.
    pub(crate) fn stalled(&self, what: &str, waiting: usize) -> Error {
        let last = self
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map_or_else(|| "no error reported, storage is slow".to_owned(), |f| f.1);
        Error::Unavailable {
            engine: "database",
            reason: format!(
                "{what}: {waiting} chunks could not be stored for {:?} (last error: {last}); their points stay in the WAL and are replayed on the next open",
                self.stall_timeout
            ),
        }
    }
}

impl Inner {
    /// Writes one sealed head as a chunk and indexes it (one attempt; the caller retries).
    pub(super) async fn persist(&self, sealed: &Sealed) -> Result<Persisted> {
        let stored = *sealed.stored.lock().unwrap_or_else(PoisonError::into_inner);
        let block = self.seal_to_block(sealed).await?;
        let location = match stored {
            Some(location) => location,
            None => {
                self.tiers.note_written(block.series_id, block.start_time);
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
        Ok(Persisted::Done)
    }

    /// Notes a failed attempt (what `flush`, `close` and `stats` report), then sleeps with
    /// exponential backoff (at most a second, so shutdown is noticed quickly).
    async fn note_failure(&self, what: &str, error: &Error, attempt: &mut u32) {
        *attempt += 1;
        if matches!(error, Error::StateLost { .. }) {
            self.index_lost.store(true, Ordering::SeqCst);
            self.lifecycle.wake_maintenance();
        }
        tracing::warn!(attempt = *attempt, "{what} failed (will retry): {error}");
        self.flusher.failed(*attempt, format!("{what}: {error}"));
        self.lifecycle
            .pause(Duration::from_millis(10u64 << (*attempt).min(7)))
            .await;
    }

    pub(super) async fn seal_to_block(&self, sealed: &Sealed) -> Result<CompressedBlock> {
        let compressor = &self.engines.compressor;
        // Decimals go to the packed codec (see `DatabaseConfig::pack_decimal_chunks`).
        if self.config.pack_decimal_chunks && compressor.writes_gorilla_format() {
            let (ts, vs) = sealed.head.points()?;
            if let Some(block) =
                PackedCompressor::new().compress_decimals(sealed.series, &ts, &vs)?
            {
                return Ok(block);
            }
        }
        // Head buffers hold Gorilla blocks: a codec that writes that very format takes them
        // as they are, every other codec encodes the points itself.
        if compressor.writes_gorilla_format()
            && let Some(data) = sealed.head.clean_block()
        {
            return Ok(gorilla_block(compressor.codec_id(), sealed, data));
        }
        let (ts, vs) = sealed.head.points()?;
        compressor.compress_columns(sealed.series, &ts, &vs).await
    }

    /// Drains the sealed heads of this worker's shards, oldest first per shard. A head that
    /// cannot be stored stays first in its shard (and its points in the WAL) and is retried
    /// with backoff until it is, or until shutdown: the worker never gives up silently.
    pub(super) async fn flush_worker(self: Arc<Self>, worker: usize) {
        let shards: Vec<usize> = (worker..self.heads.shard_count())
            .step_by(self.flusher.workers())
            .collect();
        let mut attempt = 0u32;
        loop {
            let wakeup = self.flusher.wakeups[worker].notified();
            let mut did_work = false;
            let mut failed = false;
            'shards: for &shard in &shards {
                while let Some(sealed) = self.heads.next_sealed(shard) {
                    if self.lifecycle.is_shut_down() {
                        return;
                    }
                    match self.persist(&sealed).await {
                        Ok(done) => {
                            attempt = 0;
                            self.heads.finish_sealed(shard, &sealed);
                            self.flusher.stored(matches!(done, Persisted::Done));
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
            if self.lifecycle.is_shut_down() {
                return;
            }
            if !did_work && !failed {
                let _ = tokio::time::timeout(Duration::from_secs(1), wakeup).await;
            }
        }
    }

    /// Seals every head and waits until all sealed heads are stored, then checkpoints. Fails
    /// (the chunks stay in the WAL) once storing makes no progress for `stall_timeout`.
    ///
    /// Shards are sealed a few at a time, while fewer than [`FLUSH_AHEAD`] sealed heads wait:
    /// a sealed head is a new allocation, so sealing a million heads at once would hold them
    /// twice over (and leave the freed heads' memory to the allocator, not to the sealed
    /// heads that follow).
    pub(super) async fn flush_all(&self) -> Result<()> {
        let mut watch = self.flusher.watch();
        for shard in 0..self.heads.shard_count() {
            self.wait_sealed_below(FLUSH_AHEAD, &mut watch).await?;
            if self.heads.seal_shard(shard) > 0 {
                self.flusher.wake_for(shard);
            }
        }
        self.wait_sealed_below(1, &mut watch).await?;
        if self.heads.sealed_waiting.load(Ordering::SeqCst) > 0 {
            return Err(self.stalled("flush"));
        }
        self.checkpoint().await
    }

    /// Waits until fewer than `n` sealed heads wait for storage (or shutdown); fails once
    /// storing makes no progress for `stall_timeout`.
    async fn wait_sealed_below(&self, n: usize, watch: &mut ProgressWatch) -> Result<()> {
        loop {
            let waiting = self.heads.sealed_waiting.load(Ordering::SeqCst);
            if waiting < n || self.lifecycle.is_shut_down() {
                break;
            }
            if waiting <= FLUSH_WOKEN {
                // The last few: woken as each is stored, so that a small flush returns at once.
                let room = self.flusher.room();
                let _ = tokio::time::timeout(Duration::from_millis(20), room).await;
            } else {
                // Polled, not woken by every stored head: a million of those wake-ups took
                // a third of closing a million-series import.
                tokio::time::sleep(FLUSH_POLL).await;
            }
            if self.flusher.stalled_since(watch) {
                return Err(self.stalled("flush"));
            }
        }
        Ok(())
    }

    /// [`Flusher::stalled`] with the sealed heads waiting now.
    pub(super) fn stalled(&self, what: &str) -> Error {
        self.flusher
            .stalled(what, self.heads.sealed_waiting.load(Ordering::SeqCst))
    }
}

/// A head's clean Gorilla block as a chunk of `codec`.
fn gorilla_block(codec: CodecId, sealed: &Sealed, data: Vec<u8>) -> CompressedBlock {
    let (start_time, end_time) = sealed.head.time_range().unwrap_or((0, 0));
    CompressedBlock {
        codec,
        series_id: sealed.series,
        start_time,
        end_time,
        point_count: sealed.head.len() as u32,
        data: data.into(),
    }
}
