//! The log itself: configuration, appends with group commit, truncation, stats.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tsdb_core::group_commit::GroupCommit;
use tsdb_core::marker::sync_dir;
use tsdb_core::{DirLock, Error, Result};

use crate::format::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::latency::{FsyncLatency, Latency};
use crate::replay::Replay;
use crate::scan::{self, ScanRules, segment_file_name};

/// Name used in errors.
const ENGINE: &str = "tsdb-wal";
/// How long open waits for a handle that was dropped without closing to let go of the
/// directory lock (its background tasks stop within moments).
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// How far ahead of the last record the active segment is filled with zeros (capped at the
/// segment size). An fdatasync of a file whose length changed must commit the new length to
/// the file system's journal; appends into space already written as zeros leave the length
/// alone, so their fsync writes only the data: measured on ext4 here, 133-147 µs a 7 KB
/// append + fdatasync against 226-265 µs growing the file.
const PREALLOCATE: u64 = 1 << 20;
/// Zeros written at a time while preallocating.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Log sequence number: the position of a record in the log.
///
/// Records are numbered 1, 2, 3, ... in append order, without gaps; numbers are never reused
/// (truncation deletes old records but the numbering goes on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The LSN as a plain number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// When an append is made durable (fsync) before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalDurability {
    /// `append` returns after the record is written **and** fsynced. Concurrent appends share
    /// fsyncs (group commit). An acknowledged record survives a process kill and a power loss.
    Always,
    /// `append` returns after write(2); a background task fsyncs at least this often. An
    /// acknowledged record survives a process kill; a power loss or OS crash can lose those
    /// acknowledged in the last interval (plus the time one fsync takes).
    Interval(Duration),
    /// `append` returns after write(2); the OS writes back when it likes (or on
    /// [`Wal::sync`]/[`Wal::close`]). An acknowledged record survives a process kill; a power
    /// loss or OS crash can lose any record not covered by an explicit sync. For tests and
    /// benchmarks.
    Never,
}

/// What [`Wal::open`] does when it finds damage that is not a torn tail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalRecovery {
    /// Refuse to open: return [`Error::Corrupt`] naming the segment file and offset. Nothing
    /// is modified except torn-tail repair. The default: acknowledged data is never skipped
    /// silently.
    #[default]
    Strict,
    /// Open anyway, dropping what cannot be trusted, with a `warn!` for each: the rest of a
    /// damaged segment is skipped (the file is left as it is for inspection, except the last
    /// segment, which is truncated at the damage so appends can go on), segments with a
    /// damaged header are skipped, and gaps in the LSN sequence are accepted. Replay then has
    /// holes. For an operator who prefers a partial recovery to none.
    SkipDamaged,
}

/// Configuration of a [`Wal`].
#[derive(Clone, Debug)]
pub struct WalConfig {
    /// A segment is closed and a new one started when the next record would make it larger
    /// than this many bytes. A record larger than a segment still goes in, alone in its
    /// segment. Default 64 MiB.
    pub segment_size: u64,
    /// When appends are made durable. Default [`WalDurability::Always`].
    pub durability: WalDurability,
    /// Largest payload accepted by [`Wal::append`], in bytes; larger ones fail with
    /// [`Error::LimitExceeded`]. Default 128 MiB. Open reads one whole segment into memory at
    /// a time, so this also bounds open's memory.
    pub max_record_size: u32,
    /// What open does with damage that is not a torn tail. Default [`WalRecovery::Strict`].
    pub recovery: WalRecovery,
    /// What the log's owner recorded of it (from its checkpoint), so that open can tell
    /// harmless damage from lost records. Default: nothing known.
    pub checkpoint: WalCheckpoint,
    /// Open without the directory lock and without modifying anything: no torn-tail repair,
    /// no directory creation; every append fails with [`Error::ReadOnly`]. For tools that
    /// inspect a log another process may be writing. Default `false`.
    pub read_only: bool,
}

/// What the owner of a log knows of it from its own durable records (the database keeps it
/// in its checkpoint mark). [`Wal::open`] uses it to judge damage:
///
/// - records before `needed_from` are durable elsewhere, so damage there is only a warning,
///   and the log never hands out an LSN below it;
/// - every record before `written_before` existed when the owner last looked, so a log that
///   now ends earlier (a cut file, a removed segment) lost acknowledged records, which is
///   damage, not a torn tail;
/// - with `closed_cleanly`, nothing was appended after `written_before`, so damage at the very
///   end of the log is confined to records before it;
/// - `active_segment` (when not `Lsn(0)`) is the first LSN of the segment that was being
///   appended to ([`Wal::active_segment`]); it is never deleted by truncation, so when its
///   file is gone, records appended to it since may be lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalCheckpoint {
    /// Records before this LSN are not needed any more.
    pub needed_from: Lsn,
    /// The log held every record before this LSN.
    pub written_before: Lsn,
    /// Nothing was appended after `written_before`.
    pub closed_cleanly: bool,
    /// The segment being appended to, by its first LSN; `Lsn(0)` when not known.
    pub active_segment: Lsn,
}

impl Default for WalCheckpoint {
    fn default() -> Self {
        WalCheckpoint {
            needed_from: Lsn(1),
            written_before: Lsn(1),
            closed_cleanly: false,
            active_segment: Lsn(0),
        }
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_size: 64 << 20,
            durability: WalDurability::Always,
            max_record_size: 128 << 20,
            recovery: WalRecovery::Strict,
            checkpoint: WalCheckpoint::default(),
            read_only: false,
        }
    }
}

/// Counters and sizes, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalStats {
    /// Calls of `append`/`append_batch` that wrote at least one record, since open.
    pub appends: u64,
    /// Records appended since open.
    pub records: u64,
    /// Bytes written to segments since open (headers included).
    pub bytes_written: u64,
    /// fsyncs of segment files since open (group commits, explicit syncs, segment rolls).
    pub fsyncs: u64,
    /// How long those fsyncs took.
    pub fsync_latency: FsyncLatency,
    /// fsyncs of the directory since open (segment creation and deletion).
    pub dir_fsyncs: u64,
    /// Segment files in the log.
    pub segments: u64,
    /// Total size of the segment files, in bytes.
    pub size_on_disk: u64,
    /// LSN of the oldest record retained, if any.
    pub first_lsn: Option<Lsn>,
    /// LSN of the newest record, if any.
    pub last_lsn: Option<Lsn>,
    /// Every record up to this LSN is known fsynced (None if none is).
    pub durable_lsn: Option<Lsn>,
}

#[derive(Debug)]
struct SegmentMeta {
    first_lsn: Lsn,
    path: PathBuf,
    size: u64,
}

#[derive(Debug)]
struct State {
    /// Write handle of the active (last) segment.
    file: Arc<File>,
    active: SegmentMeta,
    /// Length of the active segment's file: `active.size` (its records) plus zeros written
    /// ahead of them ([`PREALLOCATE`]).
    allocated: u64,
    /// Older segments, oldest first. All of them are fsynced.
    sealed: VecDeque<SegmentMeta>,
    /// LSN the next record gets.
    next_lsn: Lsn,
    /// The directory gained an entry not yet fsynced.
    dir_dirty: bool,
    closed: bool,
    /// Set after a failed write or fsync: the file's state is unknown, so no more appends.
    poisoned: Option<String>,
    /// Scratch buffer for encoding.
    buf: Vec<u8>,
}

#[derive(Debug, Default)]
struct Counters {
    appends: AtomicU64,
    records: AtomicU64,
    bytes_written: AtomicU64,
    fsyncs: AtomicU64,
    fsync_latency: Latency,
    dir_fsyncs: AtomicU64,
    // Mirrors of the state, readable without its lock.
    segments: AtomicU64,
    size_on_disk: AtomicU64,
    first_lsn: AtomicU64,
    next_lsn: AtomicU64,
    active_first: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    config: WalConfig,
    state: tokio::sync::Mutex<State>,
    commit: GroupCommit,
    /// Serializes truncations (segments must be deleted oldest first).
    truncating: tokio::sync::Mutex<()>,
    counters: Counters,
    /// The directory lock (none when read-only), released by `close` or with the last handle.
    lock: std::sync::Mutex<Option<DirLock>>,
}

/// The write-ahead log. Cheap to clone (an `Arc` inside); all methods take `&self` and may be
/// called from many tasks at once.
///
/// Needs a tokio runtime (any flavor) for `open` and every async method.
#[derive(Debug, Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

fn closed() -> Error {
    Error::Closed { engine: ENGINE }
}

fn poisoned(reason: &str) -> Error {
    Error::Poisoned {
        engine: ENGINE,
        reason: reason.to_owned(),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::task_failed("WAL file", e))?
}

/// Writes all of `buf` at `offset` (positioned: the file's cursor is not used).
fn write_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(buf)
    }
}

/// Creates a segment file with its header, without fsync.
fn create_segment(dir: &Path, first: Lsn) -> Result<(File, PathBuf)> {
    let path = dir.join(segment_file_name(first));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(path.display(), e))?;
    if let Err(e) = file.write_all(&format::encode_segment_header(first)) {
        let _ = std::fs::remove_file(&path);
        return Err(Error::io(path.display(), e));
    }
    Ok((file, path))
}

impl Wal {
    /// Opens the log in `dir` (created if missing), repairs a torn tail, and returns the log
    /// ready for appends with a [`Replay`] of every record it holds.
    ///
    /// Damage other than a torn tail fails with [`Error::Corrupt`] naming the segment and
    /// offset, unless `config.recovery` is [`WalRecovery::SkipDamaged`]. Only one `Wal` may
    /// use a directory at a time (not enforced).
    pub async fn open(dir: impl AsRef<Path>, config: WalConfig) -> Result<(Wal, Replay)> {
        let dir = dir.as_ref().to_path_buf();
        if config.segment_size == 0 {
            return Err(Error::invalid_input("WAL segment_size must be > 0"));
        }
        if config.durability == WalDurability::Interval(Duration::ZERO) {
            return Err(Error::invalid_input("WAL durability interval must be > 0"));
        }
        let rules = ScanRules {
            recovery: config.recovery,
            read_only: config.read_only,
            needed_from: config.checkpoint.needed_from,
            written_before: config.checkpoint.written_before,
            closed_cleanly: config.checkpoint.closed_cleanly,
            active_segment: config.checkpoint.active_segment,
        };
        let (state, replay, dir_fsyncs, lock) = blocking(move || {
            let lock = if rules.read_only {
                None
            } else {
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
                Some(DirLock::acquire(&dir, ENGINE, LOCK_WAIT)?)
            };
            let mut scan = scan::scan_dir(&dir, rules)?;
            let replay = Replay::new(&mut scan.segments, scan.damage)?;
            let mut dir_fsyncs = 0;
            let mut sealed: VecDeque<SegmentMeta> = scan
                .segments
                .iter()
                .map(|s| SegmentMeta {
                    first_lsn: s.first_lsn,
                    path: s.path.clone(),
                    size: s.size,
                })
                .collect();
            let scanned_next = scan.segments.last().map_or(Lsn(1), |s| s.next_lsn);
            // Never hand out an LSN the owner has seen, even if the log lost its newest records.
            let floor = rules.needed_from.max(rules.written_before);
            let next_lsn = scanned_next.max(floor);
            let active = if next_lsn > scanned_next {
                None
            } else {
                sealed.pop_back()
            };
            let (file, active) = match active {
                Some(active) if rules.read_only => {
                    let file = File::open(&active.path)
                        .map_err(|e| Error::io(active.path.display(), e))?;
                    (file, active)
                }
                Some(active) => {
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&active.path)
                        .map_err(|e| Error::io(active.path.display(), e))?;
                    (file, active)
                }
                None if rules.read_only => {
                    // Nothing to append to, and nothing will be: a placeholder handle.
                    let file = File::open(&dir).map_err(|e| Error::io(dir.display(), e))?;
                    let meta = SegmentMeta {
                        first_lsn: next_lsn,
                        path: dir.join(scan::segment_file_name(next_lsn)),
                        size: 0,
                    };
                    (file, meta)
                }
                None => {
                    let (file, path) = create_segment(&dir, next_lsn)?;
                    file.sync_all().map_err(|e| Error::io(path.display(), e))?;
                    sync_dir(&dir)?;
                    dir_fsyncs += 1;
                    let meta = SegmentMeta {
                        first_lsn: next_lsn,
                        path,
                        size: SEGMENT_HEADER_LEN as u64,
                    };
                    (file, meta)
                }
            };
            // The scan cut the last segment after its last record.
            let allocated = active.size;
            let state = State {
                file: Arc::new(file),
                allocated,
                active,
                sealed,
                next_lsn,
                dir_dirty: false,
                closed: false,
                poisoned: None,
                buf: Vec::new(),
            };
            Ok((state, replay, dir_fsyncs, lock))
        })
        .await?;
        tracing::info!(dir = %config_dir(&state).display(), records = replay.record_count(),
            next_lsn = %state.next_lsn, segments = state.sealed.len() + 1, "WAL opened");

        let counters = Counters::default();
        counters.dir_fsyncs.store(dir_fsyncs, Ordering::Relaxed);
        let dir = config_dir(&state).to_path_buf();
        // What open found is on disk; treat it as durable (it was fsynced by whoever wrote it,
        // or it survived the crash, which is what durable means to a reader).
        let commit = GroupCommit::new(state.next_lsn.get().saturating_sub(1));
        let interval = match config.durability {
            WalDurability::Interval(d) => Some(d),
            _ => None,
        };
        let inner = Arc::new(Inner {
            dir,
            config,
            state: tokio::sync::Mutex::new(state),
            commit,
            truncating: tokio::sync::Mutex::new(()),
            counters,
            lock: std::sync::Mutex::new(lock),
        });
        {
            let st = inner.state.lock().await;
            inner.publish(&st);
        }
        if let Some(period) = interval.filter(|_| !inner.config.read_only) {
            tokio::spawn(interval_syncer(Arc::downgrade(&inner), period));
        }
        Ok((Wal { inner }, replay))
    }

    /// Appends one record; resolves to its LSN once it is durable per the configured
    /// [`WalDurability`].
    ///
    /// If the future is dropped before it resolves, the record may or may not be in the log.
    pub async fn append(&self, payload: &[u8]) -> Result<Lsn> {
        let range = self.append_batch(&[payload]).await?;
        Ok(range.start)
    }

    /// Appends records in order with consecutive LSNs; resolves to their LSN range once all
    /// are durable per the configured [`WalDurability`]. An empty batch does nothing and
    /// returns an empty range.
    ///
    /// Records are written with one write(2) per segment touched and share one fsync. If the
    /// future is dropped before it resolves, a prefix of the batch may be in the log.
    pub async fn append_batch(&self, payloads: &[&[u8]]) -> Result<Range<Lsn>> {
        let inner = &self.inner;
        let max = inner.config.max_record_size;
        for p in payloads {
            if p.len() as u64 > u64::from(max) {
                return Err(Error::LimitExceeded {
                    what: "WAL record size in bytes",
                    requested: p.len() as u64,
                    limit: u64::from(max),
                });
            }
        }
        let range = {
            let mut st = inner.state.lock().await;
            inner.write_locked(&mut st, payloads).await?
        };
        if range.is_empty() {
            return Ok(range);
        }
        inner.counters.appends.fetch_add(1, Ordering::Relaxed);
        if inner.config.durability == WalDurability::Always {
            inner.sync_to(range.end.get() - 1).await?;
        }
        Ok(range)
    }

    /// Makes every record appended so far durable (fsync), whatever the durability setting.
    pub async fn sync(&self) -> Result<()> {
        let written = self.inner.written();
        self.inner.sync_to(written).await
    }

    /// Deletes the segments whose records all have an LSN `< lsn`; call it once everything
    /// before `lsn` is durable elsewhere.
    ///
    /// Works on whole segments: the active segment is never deleted, and records before `lsn`
    /// that share a segment with later ones stay (and replay again after reopen). Segments are
    /// deleted oldest first, each deletion made durable (directory fsync) before the next, so
    /// a crash leaves a gap-free log. Returns the number of segments deleted.
    pub async fn truncate_before(&self, lsn: Lsn) -> Result<usize> {
        let inner = &self.inner;
        if inner.config.read_only {
            return Err(Error::ReadOnly {
                engine: ENGINE,
                operation: "truncate",
            });
        }
        let _one_at_a_time = inner.truncating.lock().await;
        let doomed: Vec<PathBuf> = {
            let mut st = inner.state.lock().await;
            if st.closed {
                return Err(closed());
            }
            let mut doomed = Vec::new();
            loop {
                let next_first = match st.sealed.get(1) {
                    Some(s) => s.first_lsn,
                    None if !st.sealed.is_empty() => st.active.first_lsn,
                    None => break,
                };
                if next_first > lsn {
                    break;
                }
                if let Some(s) = st.sealed.pop_front() {
                    doomed.push(s.path);
                }
            }
            inner.publish(&st);
            doomed
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let dir = inner.dir.clone();
        let n = doomed.len();
        let dir_syncs = blocking(move || {
            for path in &doomed {
                std::fs::remove_file(path).map_err(|e| Error::io(path.display(), e))?;
                sync_dir(&dir)?;
                tracing::debug!(segment = %path.display(), "WAL segment deleted");
            }
            Ok(doomed.len() as u64)
        })
        .await?;
        inner
            .counters
            .dir_fsyncs
            .fetch_add(dir_syncs, Ordering::Relaxed);
        Ok(n)
    }

    /// Starts an empty segment at the next LSN and deletes every segment before it, for a log
    /// whose every record is applied and durable elsewhere (a database after a clean close):
    /// the log then takes one segment header on disk, and LSNs go on from where they were. The
    /// new segment is durable before any old one is deleted, so a crash leaves either the old
    /// segments or the new one. Returns the number of segments deleted.
    pub async fn truncate_all(&self) -> Result<usize> {
        let inner = &self.inner;
        if inner.config.read_only {
            return Err(Error::ReadOnly {
                engine: ENGINE,
                operation: "truncate",
            });
        }
        let (file, path, dir_dirty) = {
            let mut st = inner.state.lock().await;
            if st.closed {
                return Err(closed());
            }
            if let Some(reason) = &st.poisoned {
                return Err(poisoned(reason));
            }
            if st.active.size > SEGMENT_HEADER_LEN as u64 {
                inner.roll(&mut st).await?;
            }
            (
                st.file.clone(),
                st.active.path.clone(),
                std::mem::take(&mut st.dir_dirty),
            )
        };
        let dir = inner.dir.clone();
        let synced = blocking(move || {
            file.sync_all().map_err(|e| Error::io(path.display(), e))?;
            if dir_dirty {
                sync_dir(&dir)?;
            }
            Ok(())
        })
        .await;
        if let Err(e) = synced {
            inner.state.lock().await.dir_dirty |= dir_dirty;
            return Err(e);
        }
        self.truncate_before(self.next_lsn()).await
    }

    /// Syncs everything appended and refuses further appends ([`Error::Closed`]). Idempotent.
    pub async fn close(&self) -> Result<()> {
        let written = {
            let mut st = self.inner.state.lock().await;
            if st.closed {
                return Ok(());
            }
            st.closed = true;
            if !self.inner.config.read_only
                && st.poisoned.is_none()
                && let Err(e) = Inner::cut_preallocated(&mut st)
            {
                // The zeros stay; the next open cuts them.
                tracing::warn!(error = %e, "WAL: could not cut the zeros after the last record at close");
            }
            st.next_lsn.get().saturating_sub(1)
        };
        let synced = self.inner.sync_to(written).await;
        // Another opener may take the directory now: this handle refuses every write.
        self.inner
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        synced
    }

    /// LSN of the oldest record retained, or `None` if the log holds none.
    pub fn first_lsn(&self) -> Option<Lsn> {
        let c = &self.inner.counters;
        let first = c.first_lsn.load(Ordering::Acquire);
        (first < c.next_lsn.load(Ordering::Acquire)).then_some(Lsn(first))
    }

    /// LSN of the newest record, or `None` if the log holds none.
    pub fn last_lsn(&self) -> Option<Lsn> {
        let c = &self.inner.counters;
        let next = c.next_lsn.load(Ordering::Acquire);
        (c.first_lsn.load(Ordering::Acquire) < next).then(|| Lsn(next - 1))
    }

    /// The first LSN of the segment appends go to (its file name); for the owner's
    /// [`WalCheckpoint::active_segment`].
    pub fn active_segment(&self) -> Lsn {
        Lsn(self.inner.counters.active_first.load(Ordering::Acquire))
    }

    /// The LSN the next appended record gets.
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.inner.counters.next_lsn.load(Ordering::Acquire))
    }

    /// Total size of the segment files, in bytes.
    pub fn size_on_disk(&self) -> u64 {
        self.inner.counters.size_on_disk.load(Ordering::Acquire)
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Counters and sizes (a consistent-enough snapshot for metrics; fields are read one by
    /// one without a lock).
    pub fn stats(&self) -> WalStats {
        let c = &self.inner.counters;
        let durable = self.inner.commit.durable();
        WalStats {
            appends: c.appends.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            fsync_latency: c.fsync_latency.snapshot(),
            dir_fsyncs: c.dir_fsyncs.load(Ordering::Relaxed),
            segments: c.segments.load(Ordering::Relaxed),
            size_on_disk: c.size_on_disk.load(Ordering::Relaxed),
            first_lsn: self.first_lsn(),
            last_lsn: self.last_lsn(),
            durable_lsn: (durable > 0).then_some(Lsn(durable)),
        }
    }
}

fn config_dir(st: &State) -> &Path {
    st.active.path.parent().unwrap_or(Path::new("."))
}

impl Inner {
    fn written(&self) -> u64 {
        self.counters
            .next_lsn
            .load(Ordering::Acquire)
            .saturating_sub(1)
    }

    /// Copies what the lock-free accessors read.
    fn publish(&self, st: &State) {
        let c = &self.counters;
        let first = st.sealed.front().unwrap_or(&st.active).first_lsn;
        let size = st.allocated.max(st.active.size) + st.sealed.iter().map(|s| s.size).sum::<u64>();
        c.first_lsn.store(first.get(), Ordering::Release);
        c.next_lsn.store(st.next_lsn.get(), Ordering::Release);
        c.active_first
            .store(st.active.first_lsn.get(), Ordering::Release);
        c.size_on_disk.store(size, Ordering::Release);
        c.segments
            .store(st.sealed.len() as u64 + 1, Ordering::Release);
    }

    /// Writes `payloads` (sizes already checked) with the state lock held.
    async fn write_locked(&self, st: &mut State, payloads: &[&[u8]]) -> Result<Range<Lsn>> {
        if st.closed {
            return Err(closed());
        }
        if self.config.read_only {
            return Err(Error::ReadOnly {
                engine: ENGINE,
                operation: "append",
            });
        }
        if let Some(reason) = &st.poisoned {
            return Err(poisoned(reason));
        }
        let start = st.next_lsn;
        let mut buf = std::mem::take(&mut st.buf);
        buf.clear();
        let mut lsn = start;
        let result = async {
            for p in payloads {
                let rec = (RECORD_HEADER_LEN + p.len()) as u64;
                let has_records = st.active.size + buf.len() as u64 > SEGMENT_HEADER_LEN as u64;
                if has_records && st.active.size + buf.len() as u64 + rec > self.config.segment_size
                {
                    self.flush_buf(st, &mut buf, lsn)?;
                    self.roll(st).await?;
                }
                if lsn.get() >= format::MAX_LSN - 1 {
                    self.flush_buf(st, &mut buf, lsn)?;
                    return Err(Error::LimitExceeded {
                        what: "WAL LSN",
                        requested: lsn.get(),
                        limit: format::MAX_LSN - 1,
                    });
                }
                if !format::encode_record(lsn, p, &mut buf) {
                    return Err(Error::invalid_input(
                        "WAL payload longer than u32::MAX bytes",
                    ));
                }
                lsn = Lsn(lsn.get() + 1);
            }
            self.flush_buf(st, &mut buf, lsn)
        }
        .await;
        if buf.capacity() <= 1 << 20 {
            st.buf = buf;
        }
        self.publish(st);
        result?;
        Ok(start..lsn)
    }

    /// Writes `buf` to the active segment; on success the records in it (up to `next`) count
    /// as written. A failed write (the disk full, say) is undone by cutting the file back to
    /// where the write began, so the log takes appends again once the cause is gone; only if
    /// that cut fails too is the log poisoned.
    fn flush_buf(&self, st: &mut State, buf: &mut Vec<u8>, next: Lsn) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = st.active.size + buf.len() as u64;
        if end > st.allocated {
            self.preallocate(st, end);
        }
        if let Err(e) = write_at(&st.file, buf, st.active.size) {
            let err = Error::io(st.active.path.display(), e);
            // Cut back to the records (the zeros ahead go too; the next append writes them
            // again).
            st.allocated = st.active.size;
            if let Err(e2) = st.file.set_len(st.active.size) {
                st.poisoned = Some(format!("{err}, and cutting the partial write failed: {e2}"));
            }
            buf.clear();
            return Err(err);
        }
        let n = buf.len() as u64;
        self.counters
            .records
            .fetch_add(next.get() - st.next_lsn.get(), Ordering::Relaxed);
        self.counters.bytes_written.fetch_add(n, Ordering::Relaxed);
        st.active.size += n;
        st.next_lsn = next;
        buf.clear();
        Ok(())
    }

    /// Writes zeros past the last record so that the active segment is at least `end` bytes
    /// long, [`PREALLOCATE`] ahead when the segment size allows. Best effort: when it fails
    /// (the disk full) the file is cut back to its records and the append writes past them,
    /// growing the file as it would without preallocation.
    fn preallocate(&self, st: &mut State, end: u64) {
        let target = end.max((st.active.size + PREALLOCATE).min(self.config.segment_size));
        let from = st.allocated.max(st.active.size);
        match fill_zeros(&st.file, from, target) {
            Ok(()) => st.allocated = target,
            Err(e) => {
                tracing::debug!(segment = %st.active.path.display(), error = %e,
                    "WAL: could not write zeros ahead of the records");
                if st.file.set_len(st.active.size).is_ok() {
                    st.allocated = st.active.size;
                }
            }
        }
    }

    /// Cuts the active segment's zeros written ahead of its last record, so that a sealed or
    /// closed segment ends with its last record.
    fn cut_preallocated(st: &mut State) -> Result<()> {
        if st.allocated > st.active.size {
            st.file
                .set_len(st.active.size)
                .map_err(|e| Error::io(st.active.path.display(), e))?;
        }
        st.allocated = st.active.size;
        Ok(())
    }

    /// Seals the active segment (fsync) and starts a new one at `st.next_lsn`.
    ///
    /// The old segment is fsynced *before* the new file exists, so after any crash every
    /// segment but the last is complete on disk. The new file and the directory entry are
    /// fsynced by the next sync.
    async fn roll(&self, st: &mut State) -> Result<()> {
        if let Err(e) = Self::cut_preallocated(st) {
            st.poisoned = Some(e.to_string());
            return Err(e);
        }
        let old = st.file.clone();
        let old_path = st.active.path.clone();
        let synced = blocking(move || {
            let started = Instant::now();
            old.sync_data()
                .map_err(|e| Error::io(old_path.display(), e))?;
            Ok(started.elapsed())
        })
        .await;
        match synced {
            Ok(took) => self.counters.fsync_latency.record(took),
            Err(e) => {
                st.poisoned = Some(e.to_string());
                return Err(e);
            }
        }
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        // A segment that cannot be created (the disk full) leaves the old one active and
        // complete; the next append tries again.
        let (file, path) = create_segment(&self.dir, st.next_lsn)?;
        tracing::debug!(segment = %path.display(), "WAL segment started");
        self.counters
            .bytes_written
            .fetch_add(SEGMENT_HEADER_LEN as u64, Ordering::Relaxed);
        let new = SegmentMeta {
            first_lsn: st.next_lsn,
            path,
            size: SEGMENT_HEADER_LEN as u64,
        };
        let old = std::mem::replace(&mut st.active, new);
        st.sealed.push_back(old);
        st.file = Arc::new(file);
        st.allocated = SEGMENT_HEADER_LEN as u64;
        st.dir_dirty = true;
        Ok(())
    }

    /// Returns once every record up to LSN `target` is fsynced (group commit).
    async fn sync_to(&self, target: u64) -> Result<()> {
        self.commit
            .wait_durable(target, || async {
                let (file, path, upto, dir_dirty) = {
                    let mut st = self.state.lock().await;
                    if let Some(reason) = &st.poisoned {
                        return Err(poisoned(reason));
                    }
                    let dirty = std::mem::take(&mut st.dir_dirty);
                    (
                        st.file.clone(),
                        st.active.path.clone(),
                        st.next_lsn.get() - 1,
                        dirty,
                    )
                };
                let dir = self.dir.clone();
                let res = blocking(move || {
                    let started = Instant::now();
                    file.sync_data().map_err(|e| Error::io(path.display(), e))?;
                    let took = started.elapsed();
                    if dir_dirty {
                        sync_dir(&dir)?;
                    }
                    Ok(took)
                })
                .await;
                match res {
                    Ok(took) => {
                        self.counters.fsync_latency.record(took);
                        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                        if dir_dirty {
                            self.counters.dir_fsyncs.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(upto)
                    }
                    Err(e) => {
                        // After a failed fsync the kernel may have dropped the dirty pages:
                        // a retry could "succeed" without the data. Refuse everything.
                        self.state.lock().await.poisoned = Some(e.to_string());
                        Err(e)
                    }
                }
            })
            .await
    }
}

/// Writes zeros over `from..to` of `file`.
fn fill_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64);
        write_at(file, &ZEROS[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

/// Background task of [`WalDurability::Interval`]: fsyncs at least every `period` while
/// there are unsynced records; ends when the WAL is closed or dropped.
async fn interval_syncer(wal: Weak<Inner>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = wal.upgrade() else { return };
        if inner.state.lock().await.closed {
            return;
        }
        let written = inner.written();
        if written > inner.commit.durable()
            && let Err(e) = inner.sync_to(written).await
        {
            tracing::warn!(error = %e, "WAL background sync failed; stopping it");
            return;
        }
    }
}
