//! Fault tests: torn tails at every byte offset, every single-bit flip, and a few damaged
//! store files. Whatever the damage, a read either returns the exact bytes written or an
//! error; chunks the damage did not touch are all still there.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tsdb_core::{ChunkLocation, CodecId, CompressedBlock, Error, SeriesId, StorageEngine};
use tsdb_storage_disk::{Durability, LocalDiskConfig, LocalDiskEngine};

/// Everything this test binary logs, so tests can check what recovery reported.
fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged_lines_mentioning(needle: &str) -> Vec<String> {
    let buf = log_buffer().lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

fn block(i: u64, len: usize) -> CompressedBlock {
    CompressedBlock {
        codec: CodecId(1 + (i % 3) as u16),
        series_id: SeriesId(0xABCD_0000 + i),
        start_time: i as i64 * 1000,
        end_time: i as i64 * 1000 + 999,
        point_count: 10 + i as u32,
        data: Bytes::from(
            (0..len)
                .map(|j| (j as u64 * 31 + i * 7) as u8)
                .collect::<Vec<u8>>(),
        ),
    }
}

fn small_segments() -> LocalDiskConfig {
    LocalDiskConfig::default().segment_size(LocalDiskConfig::MIN_SEGMENT_SIZE)
}

/// No fsync on the write path, so that thousands of reopen rounds stay fast; these tests
/// never crash the machine, so the page cache is as good as the disk.
fn no_fsync() -> LocalDiskConfig {
    small_segments().durability(Durability::Interval(Duration::from_secs(3600)))
}

type Snapshot = BTreeMap<String, Vec<u8>>;

fn snapshot(dir: &Path) -> Snapshot {
    std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| {
            let e = e.expect("dir entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read file"),
            )
        })
        .collect()
}

fn restore(dir: &Path, snap: &Snapshot) {
    for e in std::fs::read_dir(dir).expect("list dir") {
        std::fs::remove_file(e.expect("dir entry").path()).expect("remove file");
    }
    for (name, bytes) in snap {
        std::fs::write(dir.join(name), bytes).expect("write file");
    }
}

fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// Builds a store whose segment 0 is sealed and small (three records), segment 1 sealed with
/// one large record, and segment 2 active with three records.
async fn build_store(dir: &Path) -> Vec<(ChunkLocation, CompressedBlock)> {
    let e = LocalDiskEngine::open_with(dir, small_segments())
        .await
        .expect("open");
    let mut out = Vec::new();
    for (i, len) in [
        (0, 20),
        (1, 45),
        (2, 7),
        (3, 4000),
        (4, 30),
        (5, 1),
        (6, 64),
    ] {
        let b = block(i, len);
        let loc = e.write_chunk(&b).await.expect("write");
        out.push((loc, b));
    }
    e.close().await.expect("close");
    let segs: Vec<u64> = out.iter().map(|(l, _)| l.segment).collect();
    assert_eq!(segs, [0, 0, 0, 1, 2, 2, 2], "test store layout");
    out
}

/// Damage never turns into wrong bytes: every chunk reads back exactly, or (only the chunks
/// in `may_fail`) fails with `Corrupt` or `ChunkNotFound`. Returns the failed chunks' errors.
async fn check_store(
    e: &LocalDiskEngine,
    chunks: &[(ChunkLocation, CompressedBlock)],
    may_fail: &dyn Fn(&ChunkLocation) -> bool,
    what: &str,
) -> Vec<(ChunkLocation, Error)> {
    let mut failed = Vec::new();
    for (loc, want) in chunks {
        match e.read_chunk(loc).await {
            Ok(got) => assert!(got == *want, "{what}: {loc} returned wrong bytes as good"),
            Err(err) => {
                assert!(
                    may_fail(loc),
                    "{what}: undamaged chunk {loc} failed to read: {err}"
                );
                assert!(
                    matches!(err, Error::Corrupt { .. } | Error::ChunkNotFound { .. }),
                    "{what}: {loc} failed with an unexpected error {err:?}"
                );
                failed.push((*loc, err));
            }
        }
    }
    let listed = e.list_chunks().await.expect("list");
    for r in &listed {
        let (_, want) = chunks
            .iter()
            .find(|(l, _)| *l == r.location)
            .unwrap_or_else(|| panic!("{what}: listing invents a chunk at {}", r.location));
        assert_eq!(
            *r,
            tsdb_core::ChunkReference::new(want, r.location),
            "{what}: listing has wrong metadata"
        );
    }
    for (loc, _) in chunks {
        let is_listed = listed.iter().any(|r| r.location == *loc);
        let is_failed = failed.iter().any(|(l, _)| l == loc);
        assert_eq!(
            is_listed, !is_failed,
            "{what}: {loc} must be listed exactly when it reads back"
        );
    }
    failed
}

#[tokio::test]
async fn torn_tail_at_every_offset_is_cut_and_logged() {
    log_buffer();
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    let pristine = snapshot(dir.path());
    let last = seg_name(2);
    let last_path = dir.path().join(&last);
    let full_len = pristine[&last].len() as u64;
    let first_cut = chunks[4].0.offset;
    let mut truncations_logged = 0;
    for cut in first_cut..=full_len {
        restore(dir.path(), &pristine);
        // A crash before the store was ever synced explicitly: no watermark says how far it
        // was durable, so a cut tail is taken for a torn write (see the next test for a cut
        // of synced bytes).
        std::fs::remove_file(dir.path().join("synced-end")).expect("remove watermark");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&last_path)
            .expect("open segment");
        f.set_len(cut).expect("truncate");
        drop(f);
        let what = format!("last segment cut at {cut} of {full_len}");
        let intact = |l: &ChunkLocation| l.segment < 2 || l.offset + l.length <= cut;
        let e = LocalDiskEngine::open_with(dir.path(), no_fsync())
            .await
            .unwrap_or_else(|err| panic!("{what}: open failed: {err}"));
        let failed = check_store(&e, &chunks, &|l| !intact(l), &what).await;
        for (loc, err) in &failed {
            assert!(
                matches!(err, Error::ChunkNotFound { .. }),
                "{what}: a torn record is cut away, so {loc} must be not found, got {err}"
            );
        }
        assert_eq!(
            failed.len(),
            chunks.iter().filter(|(l, _)| !intact(l)).count(),
            "{what}: every chunk past the cut must be gone"
        );
        let valid_end = chunks
            .iter()
            .filter(|(l, _)| l.segment == 2 && intact(l))
            .map(|(l, _)| l.offset + l.length)
            .max()
            .unwrap_or(0);
        let file_len = std::fs::metadata(&last_path).expect("stat").len();
        assert_eq!(
            file_len, valid_end,
            "{what}: the file must be truncated to the end of the last complete record"
        );
        if cut > valid_end {
            truncations_logged += 1;
        }
        // The store takes new writes where the torn record was, and they survive a reopen.
        let extra = block(99, 50);
        let loc = e.write_chunk(&extra).await.expect("write after recovery");
        assert_eq!(
            (loc.segment, loc.offset),
            (2, valid_end),
            "{what}: append position"
        );
        drop(e);
        let e = LocalDiskEngine::open_with(dir.path(), no_fsync())
            .await
            .expect("reopen");
        let got = e.read_chunk(&loc).await.expect("read after reopen");
        assert!(got == extra, "{what}: the write after recovery changed");
        let mut all: Vec<_> = chunks.iter().filter(|(l, _)| intact(l)).cloned().collect();
        all.push((loc, extra));
        assert!(
            check_store(&e, &all, &|_| false, &what).await.is_empty(),
            "{what}: nothing may fail after the second reopen"
        );
    }
    let lines = logged_lines_mentioning("truncating the torn tail");
    let ours: Vec<_> = lines
        .iter()
        .filter(|l| l.contains(&*last_path.to_string_lossy()))
        .collect();
    assert!(
        ours.len() >= truncations_logged && truncations_logged > 0,
        "each truncation must be logged: {truncations_logged} truncations, {} log lines",
        ours.len()
    );
    assert!(
        ours.iter()
            .all(|l| l.contains("dropped_bytes=") && l.contains("offset=")),
        "the log line must say what was dropped: {:?}",
        ours.first()
    );
}

/// Flips `bit` of file `name` in a restored copy of the store, reopens and checks.
async fn flip_and_check(
    dir: &Path,
    pristine: &Snapshot,
    chunks: &[(ChunkLocation, CompressedBlock)],
    name: &str,
    segment: u64,
    bit: usize,
) {
    restore(dir, pristine);
    let mut bytes = pristine[name].clone();
    bytes[bit / 8] ^= 1 << (bit % 8);
    std::fs::write(dir.join(name), &bytes).expect("write flipped");
    let byte = (bit / 8) as u64;
    let hit =
        |l: &ChunkLocation| l.segment == segment && l.offset <= byte && byte < l.offset + l.length;
    let what = format!("bit {bit} of {name} flipped");
    let e = LocalDiskEngine::open_with(dir, no_fsync())
        .await
        .unwrap_or_else(|err| panic!("{what}: open failed: {err}"));
    let failed = check_store(&e, chunks, &hit, &what).await;
    let owner = chunks
        .iter()
        .find(|(l, _)| hit(l))
        .map(|(l, _)| *l)
        .unwrap_or_else(|| panic!("{what}: every byte of a segment belongs to a record"));
    assert_eq!(
        failed.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![owner],
        "{what}: the flip must be detected in the chunk it hit, and only there"
    );
    let is_last_record = chunks.last().is_some_and(|(l, _)| *l == owner);
    match &failed[0].1 {
        Error::Corrupt {
            source_name,
            offset,
            ..
        } => {
            assert!(
                source_name.ends_with(name) && *offset == owner.offset,
                "{what}: Corrupt must name the segment file and offset, got {source_name} at {offset}"
            );
        }
        Error::ChunkNotFound { .. } => assert!(
            is_last_record,
            "{what}: only the last record of the last segment may be dropped as a torn tail"
        ),
        other => panic!("{what}: unexpected {other:?}"),
    }
}

#[tokio::test]
async fn every_bit_flip_in_a_segment_is_detected() {
    log_buffer();
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    let pristine = snapshot(dir.path());
    // Every bit of the small sealed segment and of the active one.
    for segment in [0u64, 2] {
        let name = seg_name(segment);
        for bit in 0..pristine[&name].len() * 8 {
            flip_and_check(dir.path(), &pristine, &chunks, &name, segment, bit).await;
        }
    }
    // The large record of segment 1: every header and trailer bit, and a sample of the rest.
    let name = seg_name(1);
    let len = pristine[&name].len() * 8;
    let bits = (0..60 * 8)
        .chain((60 * 8..len - 32).step_by(97))
        .chain(len - 32..len);
    for bit in bits {
        flip_and_check(dir.path(), &pristine, &chunks, &name, 1, bit).await;
    }
}

#[tokio::test]
async fn damage_is_reported_with_file_and_offset_and_does_not_stop_the_store() {
    log_buffer();
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    // Zero out the middle record of segment 0 (header and payload).
    let path = dir.path().join(seg_name(0));
    let mut bytes = std::fs::read(&path).expect("read");
    let victim = chunks[1].0;
    for b in &mut bytes[victim.offset as usize..(victim.offset + victim.length) as usize] {
        *b = 0;
    }
    std::fs::write(&path, &bytes).expect("write");
    let e = LocalDiskEngine::open(dir.path()).await.expect("open");
    match e.read_chunk(&victim).await {
        Err(Error::Corrupt {
            source_name,
            offset,
            reason,
        }) => {
            assert_eq!(source_name, path.to_string_lossy());
            assert_eq!(offset, victim.offset);
            assert!(!reason.is_empty());
        }
        other => panic!("a zeroed record must read as Corrupt, got {other:?}"),
    }
    let failed = check_store(&e, &chunks, &|l| *l == victim, "zeroed record").await;
    assert_eq!(failed.len(), 1);
    assert!(
        !logged_lines_mentioning("damaged bytes in a segment")
            .iter()
            .filter(|l| l.contains(&*path.to_string_lossy()))
            .collect::<Vec<_>>()
            .is_empty(),
        "damage found at open must be logged"
    );
    // The store still takes writes, and deleting the damaged location is accepted and lasts.
    let extra = block(77, 10);
    let loc = e.write_chunk(&extra).await.expect("write");
    e.delete_chunks(&[victim]).await.expect("delete damaged");
    assert!(matches!(
        e.read_chunk(&victim).await,
        Err(Error::ChunkNotFound { .. })
    ));
    e.close().await.expect("close");
    drop(e);
    let e = LocalDiskEngine::open(dir.path()).await.expect("reopen");
    assert!(matches!(
        e.read_chunk(&victim).await,
        Err(Error::ChunkNotFound { .. })
    ));
    assert!(e.read_chunk(&loc).await.expect("read") == extra);
}

#[tokio::test]
async fn a_segment_whose_chunks_are_all_deleted_is_removed_and_stays_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    let e = LocalDiskEngine::open(dir.path()).await.expect("open");
    let seg0: Vec<_> = chunks
        .iter()
        .filter(|(l, _)| l.segment == 0)
        .map(|(l, _)| *l)
        .collect();
    // A reader holds a view of a chunk of segment 0 across the removal of its file.
    let held = e.read_chunk(&seg0[0]).await.expect("read");
    e.delete_chunks(&seg0).await.expect("delete");
    assert!(
        !dir.path().join(seg_name(0)).exists(),
        "a sealed segment without live chunks must be removed"
    );
    assert!(
        held == chunks[0].1,
        "a view taken before the removal stays valid"
    );
    // The active segment is never removed, even when all its chunks are deleted.
    let seg2: Vec<_> = chunks
        .iter()
        .filter(|(l, _)| l.segment == 2)
        .map(|(l, _)| *l)
        .collect();
    e.delete_chunks(&seg2).await.expect("delete");
    assert!(dir.path().join(seg_name(2)).exists());
    drop(e);
    let e = LocalDiskEngine::open(dir.path()).await.expect("reopen");
    for loc in seg0.iter().chain(&seg2) {
        assert!(
            matches!(e.read_chunk(loc).await, Err(Error::ChunkNotFound { .. })),
            "{loc} must stay deleted"
        );
    }
    let listed: Vec<_> = e
        .list_chunks()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.location)
        .collect();
    assert_eq!(listed, vec![chunks[3].0]);
    assert_eq!(
        e.damage().await.expect("damage"),
        [],
        "a segment the store removed itself is no damage"
    );
    drop(e);
    // New segments get new numbers: a stale deletion can never hit a new chunk.
    let e = LocalDiskEngine::open_with(dir.path(), small_segments())
        .await
        .expect("reopen");
    let b = block(55, 5000);
    let loc = e.write_chunk(&b).await.expect("write");
    assert!(loc.segment > 2, "segment numbers are never reused: {loc}");
    drop(e);
    let e = LocalDiskEngine::open(dir.path()).await.expect("reopen");
    assert!(e.read_chunk(&loc).await.expect("read") == b);
}

#[tokio::test]
async fn a_damaged_deletion_log_is_repaired_without_losing_chunks() {
    log_buffer();
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    let e = LocalDiskEngine::open(dir.path()).await.expect("open");
    e.delete_chunks(&[chunks[4].0, chunks[5].0])
        .await
        .expect("delete");
    drop(e);
    // A torn last entry (a crash while appending) loses only that deletion.
    let log = dir.path().join("deletions.log");
    let bytes = std::fs::read(&log).expect("read log");
    assert_eq!(bytes.len(), 64, "two 32-byte entries");
    std::fs::write(&log, &bytes[..50]).expect("tear log");
    let e = LocalDiskEngine::open(dir.path()).await.expect("open");
    assert!(matches!(
        e.read_chunk(&chunks[4].0).await,
        Err(Error::ChunkNotFound { .. })
    ));
    assert!(e.read_chunk(&chunks[5].0).await.expect("read") == chunks[5].1);
    assert_eq!(
        std::fs::metadata(&log).expect("stat").len(),
        32,
        "torn entry dropped"
    );
    drop(e);
    // Garbage in the log never deletes or breaks anything else.
    std::fs::write(&log, [0xA5u8; 100]).expect("garbage log");
    let e = LocalDiskEngine::open(dir.path()).await.expect("open");
    let failed = check_store(&e, &chunks, &|_| false, "garbage deletion log").await;
    assert!(failed.is_empty());
}

#[tokio::test]
async fn write_path_rejects_bad_input_and_rotates_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let e = LocalDiskEngine::open_with(dir.path(), small_segments())
        .await
        .expect("open");
    let mut empty = block(1, 10);
    empty.point_count = 0;
    assert!(matches!(
        e.write_chunk(&empty).await,
        Err(Error::InvalidInput { .. })
    ));
    let mut locs = Vec::new();
    for i in 0..40 {
        locs.push(e.write_chunk(&block(i, 500)).await.expect("write"));
    }
    let segments: std::collections::BTreeSet<_> = locs.iter().map(|l| l.segment).collect();
    assert!(
        segments.len() >= 5,
        "4 KiB segments must rotate: {segments:?}"
    );
    for id in &segments {
        let len = std::fs::metadata(dir.path().join(seg_name(*id)))
            .expect("stat")
            .len();
        assert!(
            len <= LocalDiskConfig::MIN_SEGMENT_SIZE,
            "segment {id} is {len} bytes"
        );
    }
    assert!(matches!(
        LocalDiskEngine::open_with(
            dir.path().join("x"),
            LocalDiskConfig::default().segment_size(10)
        )
        .await,
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        LocalDiskEngine::open_with(
            dir.path().join("y"),
            LocalDiskConfig::default().durability(Durability::Interval(Duration::ZERO))
        )
        .await,
        Err(Error::InvalidInput { .. })
    ));
}

#[tokio::test]
async fn segment_numbers_are_never_reused_even_if_the_newest_files_vanish() {
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    std::fs::remove_file(dir.path().join(seg_name(2))).expect("remove newest segment");
    let e = LocalDiskEngine::open_with(dir.path(), small_segments())
        .await
        .expect("open");
    let mut new = Vec::new();
    for i in 0..4 {
        let b = block(200 + i, 3000);
        new.push((e.write_chunk(&b).await.expect("write"), b));
    }
    assert!(
        new.iter().all(|(l, _)| l.segment != 2),
        "segment 2 was used once and must not be used again: {:?}",
        new.iter().map(|(l, _)| l.segment).collect::<Vec<_>>()
    );
    for (loc, _) in chunks.iter().filter(|(l, _)| l.segment == 2) {
        assert!(
            matches!(e.read_chunk(loc).await, Err(Error::ChunkNotFound { .. })),
            "{loc}: a chunk of the vanished segment must not be found"
        );
    }
    drop(e);
    let e = LocalDiskEngine::open_with(dir.path(), small_segments())
        .await
        .expect("reopen");
    for (loc, b) in &new {
        assert!(e.read_chunk(loc).await.expect("read") == *b);
    }
}

/// Writers, readers and a deleter at once, with segments small enough that deletions remove
/// whole segment files while readers hold views of them: live chunks always read back
/// exactly, deleted ones are not found, and the store reopens to the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_and_segment_removal_race_with_reads_and_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let e = LocalDiskEngine::open_with(dir.path(), no_fsync())
        .await
        .expect("open");
    let written: Arc<Mutex<Vec<(ChunkLocation, CompressedBlock)>>> = Arc::default();
    let deleted: Arc<Mutex<Vec<ChunkLocation>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..3u64 {
        let (e, written) = (e.clone(), written.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..150 {
                let b = block(w * 1000 + i, 200 + (i as usize * 37) % 900);
                let loc = e.write_chunk(&b).await.expect("write");
                written.lock().expect("lock").push((loc, b));
                tokio::task::yield_now().await;
            }
        }));
    }
    {
        let (e, written, deleted) = (e.clone(), written.clone(), deleted.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..60 {
                // Delete the oldest half of what is there, which empties whole segments.
                let victims: Vec<ChunkLocation> = {
                    let mut w = written.lock().expect("lock");
                    w.sort_by_key(|(l, _)| *l);
                    let n = w.len() / 2;
                    w.drain(..n).map(|(l, _)| l).collect()
                };
                // Recorded before the call: a reader may see them gone before it returns.
                deleted
                    .lock()
                    .expect("lock")
                    .extend(victims.iter().copied());
                e.delete_chunks(&victims).await.expect("delete");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for r in 0..2u64 {
        let (e, written, deleted) = (e.clone(), written.clone(), deleted.clone());
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            for i in 0..400usize {
                let pick = {
                    let w = written.lock().expect("lock");
                    (!w.is_empty()).then(|| w[(i * 7 + r as usize) % w.len()].clone())
                };
                if let Some((loc, want)) = pick {
                    match e.read_chunk(&loc).await {
                        Ok(got) => {
                            assert!(got == want, "{loc} returned wrong bytes");
                            if i % 10 == 0 {
                                held.push((got, want));
                            }
                        }
                        // Deleted between the pick and the read.
                        Err(Error::ChunkNotFound { .. }) => assert!(
                            deleted.lock().expect("lock").contains(&loc),
                            "{loc} is live but was not found"
                        ),
                        Err(other) => panic!("{loc}: {other}"),
                    }
                }
                tokio::task::yield_now().await;
            }
            // Views stay valid after their segments were removed.
            for (got, want) in held {
                assert!(got == want, "a held view changed");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let live = written.lock().expect("lock").clone();
    let gone = deleted.lock().expect("lock").clone();
    let segments_left = std::fs::read_dir(dir.path())
        .expect("list")
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count();
    let segments_used: std::collections::BTreeSet<_> = live
        .iter()
        .map(|(l, _)| l.segment)
        .chain(gone.iter().map(|l| l.segment))
        .collect();
    assert!(
        segments_left < segments_used.len(),
        "emptied segments must be removed: {segments_left} files for {} segments used",
        segments_used.len()
    );
    e.close().await.expect("close");
    drop(e);
    let e = LocalDiskEngine::open_with(dir.path(), no_fsync())
        .await
        .expect("reopen");
    assert!(
        check_store(&e, &live, &|_| false, "after the race")
            .await
            .is_empty()
    );
    for loc in &gone {
        assert!(
            matches!(e.read_chunk(loc).await, Err(Error::ChunkNotFound { .. })),
            "{loc} must stay deleted"
        );
    }
    let listed = e.list_chunks().await.expect("list").len();
    assert_eq!(listed, live.len(), "exactly the live chunks are listed");
}

/// Bytes that change under an open store (sealed segments are mapped, the active one is read
/// with positioned reads) are caught by the checksum on every read, never returned as good.
#[tokio::test]
async fn damage_after_open_is_caught_on_read() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    let e = LocalDiskEngine::open_with(dir.path(), small_segments())
        .await
        .expect("open");
    // One payload byte of a record in sealed segment 0, one in active segment 2.
    for (victim, _) in [&chunks[1], &chunks[5]] {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join(seg_name(victim.segment)))
            .expect("open segment");
        let at = victim.offset + 60;
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, at).expect("read byte");
        f.write_all_at(&[byte[0] ^ 0x01], at).expect("flip byte");
        match e.read_chunk(victim).await {
            Err(Error::Corrupt {
                source_name,
                offset,
                ..
            }) => {
                assert!(source_name.ends_with(&seg_name(victim.segment)));
                assert_eq!(offset, victim.offset);
            }
            other => {
                panic!("{victim}: a byte changed after open must read as Corrupt, got {other:?}")
            }
        }
    }
    let failed = check_store(
        &e,
        &chunks,
        &|l| *l == chunks[1].0 || *l == chunks[5].0,
        "damage after open",
    )
    .await;
    assert_eq!(failed.len(), 2);
}

#[tokio::test]
async fn a_cut_of_synced_bytes_or_a_removed_last_segment_is_reported_not_repaired() {
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    let pristine = snapshot(dir.path());
    let last_path = dir.path().join(seg_name(2));
    let full_len = pristine[&seg_name(2)].len() as u64;
    // Cut the last segment at an exact record boundary, after a close made it durable.
    let boundary = chunks
        .iter()
        .filter(|(l, _)| l.segment == 2)
        .map(|(l, _)| l.offset)
        .max()
        .expect("a chunk in segment 2");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&last_path)
        .expect("open segment");
    f.set_len(boundary).expect("cut");
    drop(f);
    let e = LocalDiskEngine::open_with(dir.path(), no_fsync())
        .await
        .expect("open");
    let damage = e.damage().await.expect("damage");
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(damage[0].source.ends_with(&seg_name(2)), "{damage:?}");
    assert_eq!(
        (damage[0].offset, damage[0].length),
        (boundary, full_len - boundary)
    );
    e.close().await.expect("close");
    drop(e);

    // The newest segment file removed: reported as missing.
    restore(dir.path(), &pristine);
    std::fs::remove_file(&last_path).expect("remove the last segment");
    let e = LocalDiskEngine::open_with(dir.path(), no_fsync())
        .await
        .expect("open");
    let damage = e.damage().await.expect("damage");
    assert!(
        damage
            .iter()
            .any(|d| d.source.ends_with(&seg_name(2)) && d.reason.contains("missing")),
        "{damage:?}"
    );
}

/// A sealed segment holding live chunks, removed or cut at a record boundary behind the
/// store's back: reported at every open, never a silent loss of its chunks.
#[tokio::test]
async fn a_removed_or_cut_sealed_segment_is_reported_at_every_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    let pristine = snapshot(dir.path());
    let seg0 = dir.path().join(seg_name(0));
    let second = chunks[1].0.offset;
    for fault in ["removed", "cut"] {
        restore(dir.path(), &pristine);
        if fault == "removed" {
            std::fs::remove_file(&seg0).expect("remove a sealed segment");
        } else {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&seg0)
                .expect("open");
            f.set_len(second).expect("cut before the second record");
        }
        for open in 0..2 {
            let e = LocalDiskEngine::open_with(dir.path(), no_fsync())
                .await
                .expect("open");
            let damage = e.damage().await.expect("damage");
            let want = if fault == "removed" {
                "sealed holding live chunks"
            } else {
                "it was cut"
            };
            assert!(
                damage
                    .iter()
                    .any(|d| d.source.ends_with(&seg_name(0)) && d.reason.contains(want)),
                "{fault}, open {open}: {damage:?}"
            );
            e.close().await.expect("close");
        }
    }
}

#[tokio::test]
async fn a_damaged_last_record_is_kept_as_damage_with_its_series_and_times() {
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    let (last_loc, last_block) = chunks
        .iter()
        .filter(|(l, _)| l.segment == 2)
        .max_by_key(|(l, _)| l.offset)
        .cloned()
        .expect("a chunk in segment 2");
    let path = dir.path().join(seg_name(2));
    let mut bytes = std::fs::read(&path).expect("read");
    // A flipped payload bit of the newest record: its header still names its chunk.
    bytes[(last_loc.offset + 70) as usize] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write");
    // Without the watermark too: a damaged complete record is not a torn tail.
    std::fs::remove_file(dir.path().join("synced-end")).expect("remove watermark");
    let e = LocalDiskEngine::open_with(dir.path(), no_fsync())
        .await
        .expect("open");
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        bytes.len() as u64,
        "not truncated"
    );
    let err = e.read_chunk(&last_loc).await.expect_err("damaged");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    let damage = e.damage().await.expect("damage");
    assert_eq!(damage.len(), 1, "{damage:?}");
    let chunk = damage[0].chunk.expect("the header survived");
    assert_eq!(chunk, tsdb_core::ChunkReference::new(&last_block, last_loc));
}

#[tokio::test]
async fn a_second_opener_never_repairs_under_a_live_writer_and_read_only_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let live = LocalDiskEngine::open_with(dir.path(), no_fsync())
        .await
        .expect("open");
    let block = CompressedBlock {
        codec: CodecId::GORILLA,
        series_id: SeriesId(7),
        start_time: 1,
        end_time: 2,
        point_count: 2,
        data: Bytes::from_static(b"payload"),
    };
    let first = live.write_chunk(&block).await.expect("write");
    // Half a record at the end, as if the live writer were in the middle of an append.
    let path = dir.path().join(seg_name(first.segment));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open segment");
    f.write_all(b"GTSC\x01\x00").expect("append");
    drop(f);
    let before = std::fs::read(&path).expect("read");
    let err = LocalDiskEngine::open_with(dir.path(), no_fsync())
        .await
        .expect_err("second opener");
    assert!(matches!(err, Error::InUse { .. }), "{err:?}");
    // Even with every other file of the directory deleted, the lock holds: it is on the
    // directory itself.
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        let p = entry.expect("entry").path();
        if p != path {
            let _ = std::fs::remove_file(p);
        }
    }
    assert!(matches!(
        LocalDiskEngine::open_with(dir.path(), no_fsync()).await,
        Err(Error::InUse { .. })
    ));
    let reader = LocalDiskEngine::open_with(dir.path(), no_fsync().read_only(true))
        .await
        .expect("read-only open beside the writer");
    assert_eq!(reader.read_chunk(&first).await.expect("read"), block);
    assert!(
        reader.damage().await.expect("damage").is_empty(),
        "a write in progress is not damage"
    );
    assert!(matches!(
        reader.write_chunk(&block).await,
        Err(Error::ReadOnly { .. })
    ));
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "nothing modified"
    );
    // After close, the directory can be opened again.
    live.close().await.expect("close");
    let reopened = LocalDiskEngine::open_with(dir.path(), no_fsync())
        .await
        .expect("reopen after close");
    assert_eq!(reopened.read_chunk(&first).await.expect("read"), block);
}

#[tokio::test]
async fn bytes_changed_under_an_open_store_are_damage_that_names_the_chunk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let chunks = build_store(dir.path()).await;
    let e = LocalDiskEngine::open(dir.path()).await.expect("open");
    let path = dir.path().join(seg_name(0));
    let mut bytes = std::fs::read(&path).expect("read");
    // One payload byte of the second record (its header stays intact), and the header
    // checksum of the third (the record no longer is the one indexed).
    let (hit, hit_block) = (chunks[1].0, chunks[1].1.clone());
    bytes[hit.offset as usize + 60 + 3] ^= 0x10;
    let gone = chunks[2].0;
    bytes[gone.offset as usize + 56] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");

    assert!(matches!(
        e.read_chunk(&hit).await,
        Err(Error::Corrupt { .. })
    ));
    let listed = e.list_chunks().await.expect("list");
    assert!(
        !listed
            .iter()
            .any(|c| c.location == hit || c.location == gone)
    );
    assert_eq!(
        listed.len(),
        chunks.len() - 2,
        "every other chunk is still listed"
    );
    let damage = e.damage().await.expect("damage");
    let named = damage
        .iter()
        .find(|d| d.offset == hit.offset)
        .and_then(|d| d.chunk)
        .expect("the payload flip is reported with the chunk it hit");
    assert_eq!(
        (
            named.series_id,
            named.start_time,
            named.end_time,
            named.point_count
        ),
        (
            hit_block.series_id,
            hit_block.start_time,
            hit_block.end_time,
            hit_block.point_count
        )
    );
    assert!(
        damage.iter().any(|d| d.offset == gone.offset),
        "a changed header is reported too"
    );
    check_store(
        &e,
        &chunks,
        &|l| *l == hit || *l == gone,
        "changed while open",
    )
    .await;
}

/// Segments whose bytes are mostly deleted chunks offer their live chunks for relocation
/// (the active one is sealed first, so that copies land elsewhere); once the copies are
/// written and the originals deleted, the files go, and the deletion log sheds the entries
/// of removed segments while every deletion that still matters survives a reopen.
#[tokio::test]
async fn mostly_dead_segments_offer_their_chunks_and_the_deletion_log_shrinks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let e = LocalDiskEngine::open_with(dir.path(), no_fsync())
        .await
        .expect("open");
    let mut written = Vec::new();
    for i in 0..3_000u64 {
        let b = block(i, 40);
        written.push((e.write_chunk(&b).await.expect("write"), b));
    }
    assert!(
        e.relocation_candidates()
            .await
            .expect("candidates")
            .is_empty(),
        "nothing deleted, nothing to move"
    );
    // Delete three chunks in four: every segment, the active one too, is mostly dead.
    let (gone, kept): (Vec<_>, Vec<_>) = written.iter().enumerate().partition(|(i, _)| i % 4 != 0);
    let gone: Vec<ChunkLocation> = gone.iter().map(|(_, (l, _))| *l).collect();
    e.delete_chunks(&gone).await.expect("delete");
    let active_before = written.last().map(|(l, _)| l.segment).expect("a chunk");
    let offered = e.relocation_candidates().await.expect("candidates");
    let mut offered_locations: Vec<ChunkLocation> = offered.iter().map(|c| c.location).collect();
    offered_locations.sort();
    let mut kept_locations: Vec<ChunkLocation> = kept.iter().map(|(_, (l, _))| *l).collect();
    kept_locations.sort();
    assert_eq!(
        offered_locations, kept_locations,
        "every live chunk is offered"
    );
    // Move them, as compaction does: write anew, then delete the original.
    let mut moved = Vec::new();
    for (_, (loc, b)) in &kept {
        let new = e.write_chunk(b).await.expect("write the copy");
        assert!(
            new.segment > active_before,
            "copies go to a new segment: {new}"
        );
        moved.push((new, b.clone()));
        e.delete_chunks(&[*loc]).await.expect("delete the original");
    }
    for id in 0..=active_before {
        assert!(
            !dir.path().join(seg_name(id)).exists(),
            "segment {id} is removed"
        );
    }
    let log_len = std::fs::metadata(dir.path().join("deletions.log")).map_or(0, |m| m.len());
    assert!(
        log_len < 32 * 1024,
        "the deletion log sheds entries of removed segments: {log_len} bytes for {} deletions",
        gone.len() + kept.len()
    );
    drop(e);
    let e = LocalDiskEngine::open(dir.path()).await.expect("reopen");
    let mut listed: Vec<ChunkLocation> = e
        .list_chunks()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.location)
        .collect();
    listed.sort();
    let mut expected: Vec<ChunkLocation> = moved.iter().map(|(l, _)| *l).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for (loc, b) in &moved {
        assert!(e.read_chunk(loc).await.expect("read") == *b);
    }
}
