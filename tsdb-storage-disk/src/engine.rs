//! [`LocalDiskEngine`]: opening, writing, reading, deleting and group commit.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};

use async_trait::async_trait;
use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};
use tsdb_core::{
    ChunkLocation, ChunkReference, CompressedBlock, DirLock, Error, Result, StorageDamage,
    StorageEngine, group_commit::GroupCommit, marker, marker::sync_dir,
};

use crate::config::{Durability, LocalDiskConfig};
use crate::format::{
    DELETION_ENTRY_LEN, Deletion, MAX_PAYLOAD, RecordMeta, decode_deletion, encode_deletion,
    encode_record, header_crc_of, parse_header, parse_record, record_len,
};
use crate::segment::{
    Entry, Lookup, Scan, SegmentState, Storage, parse_segment_file_name, scan, segment_file_name,
};

const ENGINE: &str = "local-disk";
/// Name of the deletion log inside the store directory.
pub(crate) const DELETION_LOG: &str = "deletions.log";
const DELETION_LOG_TMP: &str = "deletions.log.tmp";
/// Name of the file holding the smallest segment number never used.
pub(crate) const NEXT_SEGMENT: &str = "next-segment";
/// Name of the file holding the synced watermark: how far the store was durable at the last
/// explicit `sync` or `close`.
pub(crate) const SYNCED_END: &str = "synced-end";
/// The sealed segments holding live chunks (and those found missing): see [`write_sealed`].
pub(crate) const SEALED: &str = "sealed-segments";
/// How long open waits for a handle dropped without `close` to release the directory lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn segment_limit() -> Error {
    Error::LimitExceeded {
        what: "segment number",
        requested: u64::MAX,
        limit: u64::MAX - 1,
    }
}

/// Durably records that no segment numbered `next` or higher was ever created: written before
/// segment `next - 1` is created, so that numbers are never reused even if the newest segment
/// files disappear.
fn write_next_segment(dir: &Path, next: u64) -> Result<()> {
    marker::write(dir, NEXT_SEGMENT, &next.to_le_bytes())
}

/// The number stored by [`write_next_segment`], `None` when the file is missing or damaged.
fn read_next_segment(dir: &Path) -> Option<u64> {
    read_marker_u64s::<1>(dir, NEXT_SEGMENT).map(|[n]| n)
}

/// Durably records that every byte of segment `segment` before `offset` (and every earlier
/// segment) was synced: at open, invalid bytes below it are damage, never a torn tail.
fn write_synced_end(dir: &Path, segment: u64, offset: u64) -> Result<()> {
    let mut body = segment.to_le_bytes().to_vec();
    body.extend_from_slice(&offset.to_le_bytes());
    marker::write(dir, SYNCED_END, &body)
}

/// The watermark stored by [`write_synced_end`]: `(segment, offset)`, `None` when missing or
/// damaged (then torn tails are judged without it, as before it existed).
fn read_synced_end(dir: &Path) -> Option<(u64, u64)> {
    read_marker_u64s::<2>(dir, SYNCED_END).map(|[s, o]| (s, o))
}

/// Durably records each sealed segment that holds live chunks with the length it was sealed
/// at (and those found missing or cut before, with the length they had): a listed segment
/// missing or shorter at open is damage, never a silent loss. Written when a segment is
/// sealed, and before a segment with no live chunk is removed.
fn write_sealed(dir: &Path, sealed: &BTreeMap<u64, u64>) -> Result<()> {
    let body: Vec<u8> = sealed
        .iter()
        .flat_map(|(id, len)| id.to_le_bytes().into_iter().chain(len.to_le_bytes()))
        .collect();
    marker::write(dir, SEALED, &body)
}

/// What [`write_sealed`] stored; `None` (logged when damaged) without a usable file (a store
/// written before it existed: then removed or cut sealed segments go unnoticed, as before).
fn read_sealed(dir: &Path) -> Option<BTreeMap<u64, u64>> {
    let u64_at = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    };
    match marker::read(dir, SEALED) {
        Ok(Some(body)) if body.len() % 16 == 0 => Some(
            body.chunks_exact(16)
                .map(|b| (u64_at(&b[..8]), u64_at(&b[8..])))
                .collect(),
        ),
        Ok(None) => None,
        Ok(Some(_)) | Err(_) => {
            tracing::warn!(file = %dir.join(SEALED).display(), "damaged marker file; going on without it");
            None
        }
    }
}

/// A marker file holding `N` little-endian `u64`s; `None` (logged) when missing or damaged.
fn read_marker_u64s<const N: usize>(dir: &Path, name: &str) -> Option<[u64; N]> {
    let body = match marker::read(dir, name) {
        Ok(Some(body)) if body.len() == N * 8 => body,
        Ok(None) => return None,
        Ok(Some(_)) | Err(_) => {
            tracing::warn!(file = %dir.join(name).display(), "damaged marker file; going on without it");
            return None;
        }
    };
    let mut out = [0u64; N];
    for (i, v) in out.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[i * 8..i * 8 + 8]);
        *v = u64::from_le_bytes(b);
    }
    Some(out)
}

/// A crash-safe [`StorageEngine`] keeping chunks in append-only segment files of a local
/// directory. See the crate documentation for the format, durability and concurrency.
///
/// Cloning is cheap: clones share the same open store.
#[derive(Clone)]
pub struct LocalDiskEngine {
    inner: Arc<Inner>,
}

impl fmt::Debug for LocalDiskEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalDiskEngine")
            .field("dir", &self.inner.dir)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    dir: PathBuf,
    config: LocalDiskConfig,
    /// Every segment and its records. Held only for short, non-blocking updates and lookups.
    state: RwLock<State>,
    /// The append side. Held while a record is encoded and written (no fsync, except when a
    /// full segment is sealed).
    writer: Mutex<Writer>,
    /// Group commit: how far the appended bytes are known durable, and who is fsyncing.
    commit: GroupCommit,
    /// The deletion log; held across its fsync, so deletions run one at a time.
    deletions: tokio::sync::Mutex<DeletionLog>,
    /// Files or bytes the store knows it had synced but could not find at open.
    missing: Vec<StorageDamage>,
    /// The sealed segments holding live chunks, with the length each was sealed at (those
    /// found missing or cut at open included, so that every later open reports them too): what
    /// [`write_sealed`] records.
    sealed: Mutex<BTreeMap<u64, u64>>,
    /// The directory lock (none when read-only), released by `close` or with the last handle.
    lock: Mutex<Option<DirLock>>,
    /// The synced watermark last written, so an idle store does not rewrite it.
    marked: tokio::sync::Mutex<Option<(u64, u64)>>,
}

struct State {
    segments: BTreeMap<u64, SegmentState>,
    active: u64,
}

struct Writer {
    active: u64,
    file: Arc<File>,
    /// Where the next record goes in the active segment.
    pos: u64,
    /// The smallest segment number never used (see [`write_next_segment`]).
    next_free: u64,
    /// Bytes appended since open, across segments: the group-commit sequence number.
    written: u64,
    buf: Vec<u8>,
    closed: bool,
    /// Set when a write or fsync failed in a way that leaves durability unknown.
    poisoned: Option<String>,
}

struct DeletionLog {
    file: Option<File>,
    len: u64,
}

/// Hands out a memory map as the owner of [`Bytes`]: the map lives as long as any view of it.
struct MapOwner(Arc<Mmap>);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn io_err(context: impl fmt::Display, source: io::Error) -> Error {
    Error::io(context, source)
}

fn read_only_err(operation: &'static str) -> Error {
    Error::ReadOnly {
        engine: ENGINE,
        operation,
    }
}

fn not_found(location: &ChunkLocation) -> Error {
    Error::ChunkNotFound {
        engine: ENGINE,
        location: *location,
    }
}

fn poisoned_err(reason: &str) -> Error {
    Error::Poisoned {
        engine: ENGINE,
        reason: reason.to_owned(),
    }
}

/// Runs blocking file work off the async worker threads when a tokio runtime is around.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| io::Error::other(format!("blocking task failed: {e}"))),
        Err(_) => Ok(f()),
    }
}

/// Maps the first `len` bytes of `file`, `None` when `len` is zero.
fn map_file(file: &File, len: u64, path: &str) -> Result<Option<Arc<Mmap>>> {
    if len == 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| {
        io_err(
            path,
            io::Error::other("segment larger than the address space"),
        )
    })?;
    // SAFETY: the map is read-only and never covers more than `len` bytes, which the file
    // holds: this engine maps a segment once it is sealed (synced, never written again) or, at
    // open, at the length the file has then; it never truncates a file below what a map of it
    // is read at (the last segment is scanned at open through a map that is dropped before
    // its torn tail is cut; the active segment's own map, `map_active`, is only read below the
    // write position). Removing a segment unlinks its name; the inode and the map stay valid
    // until the last view is dropped. Another process truncating a segment file of an open
    // store is outside the contract (documented in the README).
    #[allow(unsafe_code)]
    let map = unsafe { MmapOptions::new().len(len).map(file) }
        .map_err(|e| io_err(format_args!("mmap of {path}"), e))?;
    Ok(Some(Arc::new(map)))
}

/// Maps the active segment `file` of a writable store for reads of the records appended to
/// it, `span` bytes (the most a segment grows to; the map may reach past the end of the file).
/// `None` (reads then copy) when the map cannot be made.
fn map_active(file: &File, span: u64, path: &str) -> Option<Arc<Mmap>> {
    let span = usize::try_from(span).ok().filter(|&s| s > 0)?;
    // SAFETY: the map is read-only and only bytes below the active segment's write position
    // are read through it (the records the index holds, `Inner::read`); the file always holds
    // them: the engine appends, and only truncates past that position (the torn tail at open,
    // before this map exists; the part of a failed append). Pages past the end of the file are
    // never touched. Writes through the file are seen through the map (one page cache).
    #[allow(unsafe_code)]
    let map = unsafe { MmapOptions::new().len(span).map(file) };
    match map {
        Ok(map) => Some(Arc::new(map)),
        Err(e) => {
            tracing::debug!("active segment {path} not mapped ({e}): reads copy");
            None
        }
    }
}

impl LocalDiskEngine {
    /// Opens the store in `dir` (creating the directory and an empty store if needed) with
    /// the default configuration: [`Durability::Always`], 64 MiB segments.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, LocalDiskConfig::default()).await
    }

    /// Opens the store in `dir` with `config`.
    ///
    /// Recovery happens here: a torn tail of the last segment is cut off (logged at `warn`),
    /// damaged records elsewhere are logged at `error` and reported by reads, deletions are
    /// replayed, and segment files without live chunks are removed. With
    /// [`Durability::Interval`] this must run inside a tokio runtime, which hosts the
    /// background fsync task.
    pub async fn open_with(dir: impl AsRef<Path>, config: LocalDiskConfig) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        if matches!(config.get_durability(), Durability::Interval(_))
            && tokio::runtime::Handle::try_current().is_err()
        {
            return Err(Error::invalid_input(
                "Durability::Interval needs a tokio runtime for its background fsync",
            ));
        }
        let read_only = config.is_read_only();
        let segment_size = config.get_segment_size();
        let (opened, lock) = {
            let dir = dir.clone();
            blocking(move || -> Result<(Opened, Option<DirLock>)> {
                let lock = if read_only {
                    None
                } else {
                    create_store_dir(&dir)?;
                    Some(DirLock::acquire(&dir, ENGINE, LOCK_WAIT)?)
                };
                Ok((recover(&dir, read_only, segment_size)?, lock))
            })
            .await
            .map_err(|e| io_err("open of the local-disk store", e))??
        };
        let inner = Arc::new(Inner {
            dir,
            config,
            state: RwLock::new(State {
                segments: opened.segments,
                active: opened.active,
            }),
            writer: Mutex::new(Writer {
                active: opened.active,
                file: opened.active_file,
                pos: opened.active_len,
                next_free: opened.next_free,
                written: 0,
                buf: Vec::new(),
                closed: false,
                poisoned: None,
            }),
            commit: GroupCommit::new(0),
            deletions: tokio::sync::Mutex::new(DeletionLog {
                file: None,
                len: opened.deletion_log_len,
            }),
            missing: opened.missing,
            sealed: Mutex::new(opened.sealed),
            lock: Mutex::new(lock),
            marked: tokio::sync::Mutex::new(None),
        });
        if let Durability::Interval(period) = config.get_durability()
            && !read_only
        {
            tokio::spawn(background_sync(Arc::downgrade(&inner), period));
        }
        Ok(LocalDiskEngine { inner })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> LocalDiskConfig {
        self.inner.config
    }
}

async fn background_sync(engine: Weak<Inner>, period: std::time::Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        let (target, closed) = {
            let w = inner.lock_writer();
            (w.written, w.closed)
        };
        if let Err(e) = inner.sync_to(target).await {
            tracing::error!(dir = %inner.dir.display(), error = %e, "background fsync failed");
        }
        if closed {
            return;
        }
    }
}

/// What recovery hands to the engine.
struct Opened {
    segments: BTreeMap<u64, SegmentState>,
    active: u64,
    active_file: Arc<File>,
    active_len: u64,
    deletion_log_len: u64,
    next_free: u64,
    missing: Vec<StorageDamage>,
    sealed: BTreeMap<u64, u64>,
}

/// Creates the store's directory (and makes its name durable) when it does not exist.
fn create_store_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_err(format_args!("creating {}", dir.display()), e))?;
        // Make the new directory's own name durable too.
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// Whether the bytes after the last valid record of the last segment are what an interrupted
/// write leaves (a record cut short, or zeros), rather than a damaged complete record.
fn looks_torn(tail: &[u8], segment: u64, offset: u64) -> bool {
    tail.iter().all(|&b| b == 0)
        || matches!(
            parse_record(tail, segment, offset),
            Err(crate::format::Invalid::Incomplete { .. })
        )
}

fn recover(dir: &Path, read_only: bool, segment_size: u64) -> Result<Opened> {
    let synced_end = read_synced_end(dir);
    let mut missing = Vec::new();
    let mut ids = BTreeSet::new();
    let listing =
        std::fs::read_dir(dir).map_err(|e| io_err(format_args!("listing {}", dir.display()), e))?;
    for item in listing {
        let item = item.map_err(|e| io_err(format_args!("listing {}", dir.display()), e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = parse_segment_file_name(name) {
            ids.insert(id);
        } else if name.ends_with(".seg") {
            tracing::warn!(file = name, dir = %dir.display(), "ignoring a file named like a segment with a malformed number");
        }
    }
    let path_of = |id: u64| -> Arc<str> {
        Arc::from(dir.join(segment_file_name(id)).to_string_lossy().as_ref())
    };

    let mut segments = BTreeMap::new();
    let last = ids.last().copied();
    let mut active_file = None;
    let mut active_len = 0;
    for &id in &ids {
        let path = path_of(id);
        if Some(id) == last {
            let file = OpenOptions::new()
                .read(true)
                .write(!read_only)
                .open(&*path)
                .map_err(|e| io_err(&path, e))?;
            let file_len = file.metadata().map_err(|e| io_err(&path, e))?.len();
            // Read-only: a copy, not a map (a writer opening meanwhile may cut the file). Else
            // through a temporary map, dropped before the file may be truncated.
            let (mut found, tail_torn) = if read_only {
                let len = usize::try_from(file_len).map_err(|_| {
                    io_err(
                        &path,
                        io::Error::other("segment larger than the address space"),
                    )
                })?;
                let mut bytes = vec![0u8; len];
                file.read_exact_at(&mut bytes, 0)
                    .map_err(|e| io_err(&path, e))?;
                let found = scan(&bytes, id);
                let torn = looks_torn(&bytes[found.valid_end as usize..], id, found.valid_end);
                (found, torn)
            } else {
                let map = map_file(&file, file_len, &path)?;
                let found = map.as_deref().map_or_else(Scan::default, |m| scan(m, id));
                let torn = map.as_deref().is_none_or(|m| {
                    looks_torn(&m[found.valid_end as usize..], id, found.valid_end)
                });
                (found, torn)
            };
            // Bytes the last sync made durable are never a torn tail.
            let durable = match synced_end {
                Some((seg, off)) if seg == id => off,
                Some((seg, _)) if seg > id => file_len,
                _ => 0,
            };
            if durable > file_len {
                missing.push(StorageDamage {
                    source: path.to_string(),
                    offset: file_len,
                    length: durable - file_len,
                    reason: format!(
                        "the segment is {file_len} bytes long but {durable} bytes of it were synced: it was cut"
                    ),
                    chunk: None,
                });
            }
            if found.valid_end < file_len {
                let cut = tail_torn && found.valid_end >= durable.min(file_len);
                if cut && !read_only {
                    tracing::warn!(
                        segment = %path,
                        offset = found.valid_end,
                        dropped_bytes = file_len - found.valid_end,
                        reason = found.tail_reason.as_deref().unwrap_or("invalid bytes"),
                        "truncating the torn tail of the last segment: the bytes after the last valid record hold no complete record"
                    );
                    file.set_len(found.valid_end).map_err(|e| {
                        io_err(format_args!("truncating the torn tail of {path}"), e)
                    })?;
                    found.damage.retain(|d| d.offset < found.valid_end);
                } else if cut {
                    // What a live writer is still appending is not damage.
                    found.damage.retain(|d| d.offset < found.valid_end);
                } else {
                    // A damaged complete record, or bytes that were synced: damage, kept for
                    // inspection and reported; new records go after it.
                    found.valid_end = file_len;
                }
            }
            log_damage(&path, &found);
            active_len = found.valid_end;
            let map = (!read_only)
                .then(|| map_active(&file, segment_size.max(active_len), &path))
                .flatten();
            let file = Arc::new(file);
            active_file = Some(file.clone());
            segments.insert(
                id,
                SegmentState::new(path, found, Storage::Active { file, map }),
            );
        } else {
            let file = File::open(&*path).map_err(|e| io_err(&path, e))?;
            let len = file.metadata().map_err(|e| io_err(&path, e))?.len();
            let map = map_file(&file, len, &path)?;
            let found = map.as_deref().map_or_else(Scan::default, |m| scan(m, id));
            log_damage(&path, &found);
            segments.insert(id, SegmentState::new(path, found, Storage::Mapped(map)));
        }
    }

    // Sealed segments as recorded; those present and not recorded (a store older than the
    // record) are taken as they are.
    let mut sealed = read_sealed(dir).unwrap_or_default();
    for (&id, &len) in &sealed {
        let now = segments
            .get(&id)
            .map(|s: &SegmentState| s.storage.sealed_len());
        let reason = match now {
            None if !ids.contains(&id) => format!(
                "segment {id} is missing, but it was sealed holding live chunks: the file was removed; points of any series may be missing here"
            ),
            Some(Some(now)) if now < len => format!(
                "segment {id} is {now} bytes long, but it was sealed at {len} bytes: it was cut; points of any series may be missing here"
            ),
            _ => continue,
        };
        let from = now.flatten().unwrap_or(0);
        missing.push(StorageDamage {
            source: path_of(id).to_string(),
            offset: from,
            length: len - from,
            reason,
            chunk: None,
        });
    }
    for (&id, seg) in &segments {
        if Some(id) != last
            && let Some(len) = seg.storage.sealed_len()
        {
            let entry = sealed.entry(id).or_insert(len);
            *entry = (*entry).max(len);
        }
    }
    if let Some((seg, off)) = synced_end
        && !ids.contains(&seg)
        && last.is_none_or(|l| seg > l)
    {
        missing.push(StorageDamage {
            source: path_of(seg).to_string(),
            offset: 0,
            length: off,
            reason: format!(
                "segment {seg} is missing, but {off} bytes of it were synced: the file was removed"
            ),
            chunk: None,
        });
    }
    for m in &missing {
        tracing::error!(source = %m.source, offset = m.offset, reason = %m.reason, "synced chunk data is missing");
    }

    // Replay the deletion log. Entries that match nothing (their segment is gone, or their
    // record was a torn tail and its offset will be reused) are dropped by rewriting the log.
    let log_path = dir.join(DELETION_LOG);
    let mut rewrite = false;
    let mut kept: Vec<Deletion> = Vec::new();
    match std::fs::read(&log_path) {
        Ok(bytes) => {
            if bytes.len() % DELETION_ENTRY_LEN != 0 {
                tracing::warn!(
                    file = %log_path.display(),
                    offset = bytes.len() - bytes.len() % DELETION_ENTRY_LEN,
                    dropped_bytes = bytes.len() % DELETION_ENTRY_LEN,
                    "dropping the torn tail of the deletion log"
                );
                rewrite = true;
            }
            for (i, raw) in bytes.chunks_exact(DELETION_ENTRY_LEN).enumerate() {
                let Some(d) = decode_deletion(raw) else {
                    tracing::error!(
                        file = %log_path.display(),
                        offset = i * DELETION_ENTRY_LEN,
                        "deletion log entry fails its checksum; the chunk it deleted (if any) is live again"
                    );
                    rewrite = true;
                    continue;
                };
                let loc = ChunkLocation {
                    segment: d.segment,
                    offset: d.offset,
                    length: d.length,
                };
                if segments
                    .get_mut(&d.segment)
                    .is_some_and(|seg| seg.delete(&loc))
                {
                    kept.push(d);
                } else {
                    rewrite = true;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(log_path.display(), e)),
    }

    // Remove sealed segments with nothing left worth keeping.
    let dead: Vec<u64> = segments
        .iter()
        .filter(|(id, seg)| !read_only && Some(**id) != last && seg.is_dead())
        .map(|(id, _)| *id)
        .collect();
    for id in &dead {
        sealed.remove(id);
    }
    if !read_only {
        // Recorded as they are now, the dead ones left out before they go.
        write_sealed(dir, &sealed)?;
    }
    for id in &dead {
        if let Some(seg) = segments.remove(id) {
            drop(seg);
            let path = path_of(*id);
            std::fs::remove_file(&*path).map_err(|e| io_err(format_args!("removing {path}"), e))?;
            tracing::info!(segment = %path, "removed a segment with no live chunks");
        }
    }
    if !dead.is_empty() {
        sync_dir(dir)?;
        kept.retain(|d| segments.contains_key(&d.segment));
        rewrite = true;
    }

    let mut deletion_log_len = (kept.len() * DELETION_ENTRY_LEN) as u64;
    if rewrite && !read_only {
        deletion_log_len = rewrite_deletion_log(dir, &kept)?;
    }

    let mut next_free = read_next_segment(dir)
        .unwrap_or(0)
        .max(last.map_or(0, |id| id.saturating_add(1)));
    let (active, active_file) = match (last, active_file) {
        (Some(id), Some(file)) => (id, file),
        // Nothing to append to, and nothing will be: a placeholder handle.
        _ if read_only => (
            next_free,
            Arc::new(File::open(dir).map_err(|e| io_err(dir.display(), e))?),
        ),
        _ => {
            let id = next_free;
            next_free = id.checked_add(1).ok_or_else(segment_limit)?;
            write_next_segment(dir, next_free)?;
            let path = path_of(id);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&*path)
                .map_err(|e| io_err(format_args!("creating {path}"), e))?;
            sync_dir(dir)?;
            let map = map_active(&file, segment_size, &path);
            let file = Arc::new(file);
            segments.insert(
                id,
                SegmentState::new(
                    path,
                    Scan::default(),
                    Storage::Active {
                        file: file.clone(),
                        map,
                    },
                ),
            );
            (id, file)
        }
    };
    Ok(Opened {
        segments,
        active,
        active_file,
        active_len,
        deletion_log_len,
        next_free,
        missing,
        sealed,
    })
}

fn log_damage(path: &str, found: &Scan) {
    for d in &found.damage {
        tracing::error!(
            segment = %path,
            offset = d.offset,
            length = d.len,
            reason = %d.reason,
            "damaged bytes in a segment: left out of listings, reads there report Error::Corrupt"
        );
    }
}

impl Inner {
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock cannot leave the writer half-updated in a way that
        // matters: positions are advanced only after a write succeeded.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, block: &CompressedBlock) -> Result<(u64, ChunkLocation)> {
        if block.point_count == 0 {
            return Err(Error::invalid_input(
                "cannot store an empty block (point_count is 0)",
            ));
        }
        if block.data.len() > MAX_PAYLOAD {
            return Err(Error::LimitExceeded {
                what: "chunk payload bytes",
                requested: block.data.len() as u64,
                limit: MAX_PAYLOAD as u64,
            });
        }
        if self.config.is_read_only() {
            return Err(read_only_err("write_chunk"));
        }
        let len = record_len(block.data.len());
        let mut w = self.lock_writer();
        if w.closed {
            return Err(Error::Closed { engine: ENGINE });
        }
        if let Some(reason) = &w.poisoned {
            return Err(poisoned_err(reason));
        }
        if w.pos > 0 && w.pos + len > self.config.get_segment_size() {
            self.rotate(&mut w)?;
        }
        let w = &mut *w;
        w.buf.clear();
        encode_record(&mut w.buf, w.active, w.pos, block);
        if let Err(e) = w.file.write_all_at(&w.buf, w.pos) {
            // Cut whatever part of the record reached the file, so the next record starts
            // where the index expects it. If even that fails, stop taking writes.
            if let Err(e2) = w.file.set_len(w.pos) {
                w.poisoned = Some(format!("write failed ({e}) and could not be undone ({e2})"));
            }
            let path = segment_file_name(w.active);
            return Err(io_err(format_args!("appending to segment {path}"), e));
        }
        let location = ChunkLocation {
            segment: w.active,
            offset: w.pos,
            length: len,
        };
        {
            let mut st = self.write_state();
            if let Some(seg) = st.segments.get_mut(&w.active) {
                seg.entries
                    .push(Entry::live(w.pos, len, header_crc_of(&w.buf)));
                seg.live += 1;
            }
        }
        w.pos += len;
        w.written += len;
        if w.buf.capacity() > 4 << 20 {
            w.buf = Vec::new();
        }
        Ok((w.written, location))
    }

    /// Seals the active segment (fsync, then map) and starts the next one.
    fn rotate(&self, w: &mut Writer) -> Result<()> {
        let next = w
            .active
            .checked_add(1)
            .ok_or_else(segment_limit)?
            .max(w.next_free);
        let after = next.checked_add(1).ok_or_else(segment_limit)?;
        let (old_id, sealed_len) = (w.active, w.pos);
        let old_path = self.dir.join(segment_file_name(w.active));
        let old_name = old_path.to_string_lossy().into_owned();
        if let Err(e) = w.file.sync_data() {
            let err = io_err(format_args!("fsync of {old_name}"), e);
            w.poisoned = Some(err.to_string());
            return Err(err);
        }
        // Everything appended so far is durable now.
        let written = w.written;
        self.commit.note_durable(written);
        let map = map_file(&w.file, w.pos, &old_name)?;
        write_next_segment(&self.dir, after)?;
        w.next_free = after;
        let path = self.dir.join(segment_file_name(next));
        let name: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(format_args!("creating {name}"), e))?;
        sync_dir(&self.dir)?;
        let active_map = map_active(&file, self.config.get_segment_size(), &name);
        let file = Arc::new(file);
        {
            let mut st = self.write_state();
            if let Some(old) = st.segments.get_mut(&w.active) {
                old.storage = Storage::Mapped(map);
            }
            st.segments.insert(
                next,
                SegmentState::new(
                    name,
                    Scan::default(),
                    Storage::Active {
                        file: file.clone(),
                        map: active_map,
                    },
                ),
            );
            st.active = next;
        }
        w.active = next;
        w.file = file;
        w.pos = 0;
        self.record_sealed(Some((old_id, sealed_len)), &[]);
        Ok(())
    }

    /// Records the sealed segments: `sealed` (numbered, with the length it was sealed at) added,
    /// `removed` taken out (see [`write_sealed`]); `false` when that failed (logged: removing a
    /// segment must then wait).
    fn record_sealed(&self, sealed: Option<(u64, u64)>, removed: &[u64]) -> bool {
        let mut record = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((id, len)) = sealed {
            record.insert(id, len);
        }
        for id in removed {
            record.remove(id);
        }
        match write_sealed(&self.dir, &record) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "recording the sealed segments failed");
                false
            }
        }
    }

    /// Returns once every byte up to sequence number `target` is durable, running the fsync
    /// itself or waiting for the one in flight (group commit). After a failed fsync every call
    /// fails: the kernel may have dropped the dirty pages, so a retry could "succeed" without
    /// the data.
    async fn sync_to(&self, target: u64) -> Result<()> {
        self.commit
            .wait_durable(target, || async {
                if let Some(reason) = &self.lock_writer().poisoned {
                    return Err(poisoned_err(reason));
                }
                // Let the writers that the previous fsync just acknowledged append their next
                // record first, so that this fsync covers them too: without this, batches
                // alternate between one writer and all the others.
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                let (file, upto, active) = {
                    let w = self.lock_writer();
                    (w.file.clone(), w.written, w.active)
                };
                // Segments before the active one were fsynced when sealed, so syncing the
                // active file makes everything up to `upto` durable.
                match blocking(move || file.sync_data()).await.and_then(|r| r) {
                    Ok(()) => Ok(upto),
                    Err(e) => {
                        let reason =
                            format!("fsync of segment {} failed: {e}", segment_file_name(active));
                        self.lock_writer().poisoned.get_or_insert(reason);
                        Err(io_err(
                            format_args!("fsync of segment {}", segment_file_name(active)),
                            e,
                        ))
                    }
                }
            })
            .await
    }

    fn read(&self, loc: &ChunkLocation) -> Result<CompressedBlock> {
        let (storage, entry, path) = {
            let st = self.read_state();
            let Some(seg) = st.segments.get(&loc.segment) else {
                return Err(not_found(loc));
            };
            match seg.lookup(loc) {
                Lookup::Live(e) => (seg.storage.clone(), *e, seg.path.clone()),
                Lookup::Damaged(d) => {
                    return Err(Error::corrupt(
                        &seg.path,
                        loc.offset,
                        format_args!(
                            "damaged region of {} bytes at offset {}: {}",
                            d.len, d.offset, d.reason
                        ),
                    ));
                }
                Lookup::Missing => return Err(not_found(loc)),
            }
        };
        let start = usize::try_from(entry.offset).map_err(|_| not_found(loc))?;
        let len = usize::try_from(entry.len()).map_err(|_| not_found(loc))?;
        let end = start + len;
        let (owner, rel) = match storage {
            Storage::Mapped(Some(map)) => {
                if map.len() < end {
                    return Err(Error::corrupt(
                        &path,
                        loc.offset,
                        "record runs past the end of the mapped segment",
                    ));
                }
                (Bytes::from_owner(MapOwner(map)), start)
            }
            Storage::Mapped(None) => {
                return Err(Error::corrupt(&path, loc.offset, "segment is empty"));
            }
            Storage::Active { map: Some(map), .. } if end <= map.len() => {
                (Bytes::from_owner(MapOwner(map)), start)
            }
            Storage::Active { file, .. } => {
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, entry.offset)
                    .map_err(|e| io_err(format_args!("reading {path} at offset {start}"), e))?;
                (Bytes::from(buf), 0)
            }
        };
        let record = &owner[rel..rel + len];
        let rec = match parse_record(record, loc.segment, loc.offset) {
            Ok(rec) if rec.len == entry.len() && rec.header_crc == entry.header_crc => rec,
            Ok(_) => {
                return Err(self.damaged_on_read(
                    loc,
                    &path,
                    "record differs from what was indexed when the segment was opened or written"
                        .to_owned(),
                    None,
                ));
            }
            Err(why) => {
                // What the chunk held, if its header is still the one indexed.
                let meta = parse_header(record, loc.segment, loc.offset)
                    .ok()
                    .filter(|h| h.header_crc == entry.header_crc)
                    .map(|h| h.meta);
                return Err(self.damaged_on_read(loc, &path, why.to_string(), meta));
            }
        };
        let payload = rec.payload_range();
        Ok(CompressedBlock {
            codec: rec.meta.codec,
            series_id: rec.meta.series_id,
            start_time: rec.meta.start_time,
            end_time: rec.meta.end_time,
            point_count: rec.meta.point_count,
            data: owner.slice(rel + payload.start..rel + payload.end),
        })
    }

    /// Records that the chunk at `loc` failed its check on read (its bytes changed after the
    /// segment was opened or written): it leaves the listing and reads report it as damaged.
    fn damaged_on_read(
        &self,
        loc: &ChunkLocation,
        path: &str,
        reason: String,
        meta: Option<RecordMeta>,
    ) -> Error {
        tracing::error!(
            segment = %path,
            offset = loc.offset,
            length = loc.length,
            reason = %reason,
            "a chunk failed its checksum on read; it is now reported as damaged"
        );
        let mut st = self.write_state();
        if let Some(seg) = st.segments.get_mut(&loc.segment) {
            seg.mark_damaged(loc, reason.clone(), meta);
        }
        Error::corrupt(path, loc.offset, reason)
    }

    /// Every live chunk, its metadata read from its header again. A header that no longer
    /// reads as the one indexed makes its chunk damaged (reported, not listed).
    fn list(&self) -> Vec<ChunkReference> {
        self.list_where(|_| true)
    }

    /// [`Self::list`] restricted to the segments `keep` picks.
    fn list_where(&self, keep: impl Fn(&SegmentState) -> bool) -> Vec<ChunkReference> {
        let mut changed: Vec<(ChunkLocation, Arc<str>, String)> = Vec::new();
        let out = {
            let st = self.read_state();
            let mut out = Vec::with_capacity(st.segments.values().map(|s| s.live).sum());
            for (&id, seg) in st.segments.iter().filter(|(_, seg)| keep(seg)) {
                for e in seg.entries.iter().filter(|e| e.is_live()) {
                    let location = ChunkLocation {
                        segment: id,
                        offset: e.offset,
                        length: e.len(),
                    };
                    match seg.header(id, e) {
                        Ok(meta) => out.push(ChunkReference {
                            series_id: meta.series_id,
                            location,
                            start_time: meta.start_time,
                            end_time: meta.end_time,
                            point_count: meta.point_count,
                            codec: meta.codec,
                        }),
                        Err(why) => changed.push((location, seg.path.clone(), why)),
                    }
                }
            }
            out
        };
        for (location, path, why) in changed {
            let _ = self.damaged_on_read(&location, &path, why, None);
        }
        out
    }

    /// The live chunks of segments whose bytes are mostly those of deleted chunks: once
    /// they are written elsewhere and deleted, the segment file is removed. An active
    /// segment that qualifies is sealed first, so that the copies land in a new one.
    fn relocation_candidates(&self) -> Result<Vec<ChunkReference>> {
        if self.config.is_read_only() {
            return Ok(Vec::new());
        }
        let active_wasteful = {
            let st = self.read_state();
            st.segments.get(&st.active).is_some_and(mostly_dead)
        };
        if active_wasteful {
            let mut w = self.lock_writer();
            if !w.closed && w.poisoned.is_none() && w.pos > 0 {
                self.rotate(&mut w)?;
            }
        }
        Ok(self.list_where(mostly_dead))
    }

    async fn delete(&self, locations: &[ChunkLocation]) -> Result<()> {
        if self.config.is_read_only() {
            return Err(read_only_err("delete_chunks"));
        }
        let mut log = self.deletions.lock().await;
        let todo: Vec<Deletion> = {
            let st = self.read_state();
            let set: BTreeSet<Deletion> = locations
                .iter()
                .filter(|l| st.segments.get(&l.segment).is_some_and(|s| s.deletable(l)))
                .map(|l| Deletion {
                    segment: l.segment,
                    offset: l.offset,
                    length: l.length,
                })
                .collect();
            set.into_iter().collect()
        };
        if todo.is_empty() {
            return Ok(());
        }
        let mut out = Vec::with_capacity(todo.len() * DELETION_ENTRY_LEN);
        for d in &todo {
            encode_deletion(&mut out, *d);
        }
        let log_path = self.dir.join(DELETION_LOG);
        let file = match log.file.take() {
            Some(f) => f,
            None => {
                let existed = log_path.exists();
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&log_path)
                    .map_err(|e| io_err(log_path.display(), e))?;
                if !existed {
                    sync_dir(&self.dir)?;
                }
                f
            }
        };
        let at = log.len;
        let (file, res) = blocking(move || {
            let res = file
                .write_all_at(&out, at)
                .and_then(|()| file.sync_data())
                .inspect_err(|_| {
                    // Leave no half entry behind; a failed truncation shows up as a torn
                    // entry that the next open drops.
                    let _ = file.set_len(at);
                });
            (file, res)
        })
        .await
        .map_err(|e| io_err(log_path.display(), e))?;
        log.file = Some(file);
        res.map_err(|e| io_err(format_args!("appending to {}", log_path.display()), e))?;
        log.len = at + (todo.len() * DELETION_ENTRY_LEN) as u64;

        let (mut removed, mut removed_ids) = (Vec::new(), Vec::new());
        {
            let mut st = self.write_state();
            for d in &todo {
                let loc = ChunkLocation {
                    segment: d.segment,
                    offset: d.offset,
                    length: d.length,
                };
                if let Some(seg) = st.segments.get_mut(&d.segment) {
                    seg.delete(&loc);
                }
            }
            let active = st.active;
            let dead: Vec<u64> = todo
                .iter()
                .map(|d| d.segment)
                .filter(|id| *id != active && st.segments.get(id).is_some_and(|s| s.is_dead()))
                .collect();
            for id in dead {
                if let Some(seg) = st.segments.remove(&id) {
                    removed.push(seg.path.clone());
                    removed_ids.push(id);
                }
            }
        }
        // Readers holding a view of a removed segment keep its map, and so its inode, alive:
        // unlinking only removes the name. The file is never truncated. The list of sealed
        // segments goes first: a listed segment that is missing is damage.
        if !removed.is_empty() && !self.record_sealed(None, &removed_ids) {
            // Left for the next open, which removes segments with no live chunk.
            removed.clear();
        }
        let segments_removed = !removed.is_empty();
        for path in removed {
            match std::fs::remove_file(&*path) {
                Ok(()) => tracing::debug!(segment = %path, "removed a segment with no live chunks"),
                Err(e) => {
                    tracing::warn!(segment = %path, error = %e, "could not remove a segment with no live chunks; the next open retries")
                }
            }
        }
        if segments_removed {
            self.shrink_deletion_log(&mut log)?;
        }
        Ok(())
    }

    /// Rewrites the deletion log without the entries of removed segments once those are most
    /// of it (what the next open would do anyway).
    fn shrink_deletion_log(&self, log: &mut DeletionLog) -> Result<()> {
        let needed: Vec<Deletion> = {
            let st = self.read_state();
            st.segments
                .iter()
                .flat_map(|(&segment, seg)| {
                    let dead = seg
                        .entries
                        .iter()
                        .filter(|e| !e.is_live())
                        .map(move |e| Deletion {
                            segment,
                            offset: e.offset,
                            length: e.len(),
                        });
                    let damaged = seg
                        .damage
                        .iter()
                        .filter(|d| d.deleted)
                        .map(move |d| Deletion {
                            segment,
                            offset: d.offset,
                            length: d.len,
                        });
                    dead.chain(damaged)
                })
                .collect()
        };
        let entries = log.len / DELETION_ENTRY_LEN as u64;
        if entries < 2 * needed.len() as u64 + 1024 {
            return Ok(());
        }
        // The appending handle still points at the old file: dropped, reopened on next use.
        log.file = None;
        log.len = rewrite_deletion_log(&self.dir, &needed)?;
        Ok(())
    }
}

#[async_trait]
impl StorageEngine for LocalDiskEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    async fn write_chunk(&self, block: &CompressedBlock) -> Result<ChunkLocation> {
        let (seq, location) = self.inner.write(block)?;
        if self.inner.config.get_durability() == Durability::Always {
            self.inner.sync_to(seq).await?;
        }
        Ok(location)
    }

    async fn read_chunk(&self, location: &ChunkLocation) -> Result<CompressedBlock> {
        self.inner.read(location)
    }

    async fn list_chunks(&self) -> Result<Vec<ChunkReference>> {
        Ok(self.inner.list())
    }

    async fn delete_chunks(&self, locations: &[ChunkLocation]) -> Result<()> {
        self.inner.delete(locations).await
    }

    async fn sync(&self) -> Result<()> {
        self.inner.sync_and_mark(false).await
    }

    async fn close(&self) -> Result<()> {
        let result = self.inner.sync_and_mark(true).await;
        // Another opener may take the directory now: this handle refuses every write.
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        result
    }

    async fn relocation_candidates(&self) -> Result<Vec<ChunkReference>> {
        self.inner.relocation_candidates()
    }

    /// Seals the active segment (fsync, then map) and starts the next one, unless it is
    /// empty.
    async fn seal(&self) -> Result<()> {
        if self.inner.config.is_read_only() {
            return Err(read_only_err("seal"));
        }
        let mut w = self.inner.lock_writer();
        if w.closed {
            return Err(Error::Closed { engine: ENGINE });
        }
        if let Some(reason) = &w.poisoned {
            return Err(poisoned_err(reason));
        }
        if w.pos > 0 {
            self.inner.rotate(&mut w)?;
        }
        Ok(())
    }

    async fn damage(&self) -> Result<Vec<StorageDamage>> {
        Ok(self.inner.damage())
    }
}

/// Replaces the deletion log of `dir` with `kept` (written beside it, synced, renamed over
/// it); returns its new length.
fn rewrite_deletion_log(dir: &Path, kept: &[Deletion]) -> Result<u64> {
    let log_path = dir.join(DELETION_LOG);
    let tmp = dir.join(DELETION_LOG_TMP);
    let mut out = Vec::with_capacity(kept.len() * DELETION_ENTRY_LEN);
    for d in kept {
        encode_deletion(&mut out, *d);
    }
    let write = || -> io::Result<()> {
        let f = File::create(&tmp)?;
        f.write_all_at(&out, 0)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &log_path)
    };
    write().map_err(|e| io_err(format_args!("rewriting {}", log_path.display()), e))?;
    sync_dir(dir)?;
    Ok(out.len() as u64)
}

/// Whether at least half of a segment's record bytes belong to deleted chunks while some
/// chunk in it is still live: rewriting the live ones frees the file.
fn mostly_dead(seg: &SegmentState) -> bool {
    let (mut live, mut total) = (0u64, 0u64);
    for e in &seg.entries {
        total += e.len();
        if e.is_live() {
            live += e.len();
        }
    }
    live > 0 && total - live >= live
}

impl Inner {
    /// Makes everything written durable, then records how far (the synced watermark), so that
    /// a later open never takes those bytes for a torn tail. With `close`, stops writes first.
    async fn sync_and_mark(&self, close: bool) -> Result<()> {
        let (target, segment, pos) = {
            let mut w = self.lock_writer();
            if close {
                w.closed = true;
            }
            (w.written, w.active, w.pos)
        };
        self.sync_to(target).await?;
        if self.config.is_read_only() || target == 0 {
            return Ok(());
        }
        let mut marked = self.marked.lock().await;
        if *marked == Some((segment, pos)) {
            return Ok(());
        }
        let dir = self.dir.clone();
        blocking(move || write_synced_end(&dir, segment, pos))
            .await
            .map_err(|e| io_err("writing the synced watermark", e))??;
        *marked = Some((segment, pos));
        Ok(())
    }

    /// Every damaged region not deleted, and every synced file or byte range found missing.
    fn damage(&self) -> Vec<StorageDamage> {
        let st = self.read_state();
        let mut out = self.missing.clone();
        for (&id, seg) in &st.segments {
            for d in seg.damage.iter().filter(|d| !d.deleted) {
                out.push(StorageDamage {
                    source: seg.path.to_string(),
                    offset: d.offset,
                    length: d.len,
                    reason: d.reason.clone(),
                    chunk: d.meta.map(|m| ChunkReference {
                        series_id: m.series_id,
                        location: ChunkLocation {
                            segment: id,
                            offset: d.offset,
                            length: d.len,
                        },
                        start_time: m.start_time,
                        end_time: m.end_time,
                        point_count: m.point_count,
                        codec: m.codec,
                    }),
                });
            }
        }
        out
    }
}
