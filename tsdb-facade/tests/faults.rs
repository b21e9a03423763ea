//! Fault classes the database must survive without silent loss or a hang: damage to every
//! kind of file it keeps (a corruption matrix), a lost catalog tail, the out-of-order window
//! across a reopen, and a disk that fills up and is freed again.
//!
//! Every probe runs under a timeout: a hang is a failure like a wrong answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gorilla_tsdb::{
    DatabaseConfig, Error, LabelMatcher, Labels, TimeRange, TimeSeriesDB, TimeSeriesDBBuilder,
    WalDurability, WalRecovery,
};

/// The longest any open, query or close of a probe may take.
const PROBE: Duration = Duration::from_secs(20);

fn config(dir: &Path) -> DatabaseConfig {
    DatabaseConfig {
        data_dir: dir.to_path_buf(),
        chunk_max_points: 200,
        wal_durability: WalDurability::Always,
        wal_segment_size: 16 << 10,
        stall_timeout: Duration::from_secs(3),
        ..Default::default()
    }
}

async fn open(config: DatabaseConfig) -> Result<TimeSeriesDB, Error> {
    tokio::time::timeout(
        PROBE,
        TimeSeriesDBBuilder::new().with_config(config).build(),
    )
    .await
    .unwrap_or_else(|_| panic!("open hung for {PROBE:?}"))
}

fn series(i: usize) -> Labels {
    Labels::new("temperature", [("sensor", format!("s{i}"))]).expect("labels")
}

/// What every series must hold: `(series index) -> points`.
type Expected = BTreeMap<usize, Vec<(i64, f64)>>;

const SERIES: usize = 6;

fn points_of(i: usize, from: i64, n: i64) -> Vec<(i64, f64)> {
    (from..from + n)
        .map(|k| (k * 10_000, (k as f64) * 0.25 + i as f64))
        .collect()
}

/// A database with chunks, a checkpoint and WAL records behind and ahead of it. With
/// `clean`, closed; else dropped without `close`, as a killed process leaves it.
async fn build(dir: &Path, clean: bool) -> Expected {
    let db = open(config(dir)).await.expect("open");
    let mut expected = Expected::new();
    for i in 0..SERIES {
        let p = points_of(i, 0, 700);
        db.insert_series(&series(i), &p).await.expect("insert");
        expected.insert(i, p);
    }
    db.flush().await.expect("flush");
    for i in 0..SERIES {
        let p = points_of(i, 700, 150);
        db.insert_series(&series(i), &p).await.expect("insert");
        expected.get_mut(&i).expect("series").extend(p);
    }
    if clean {
        db.close().await.expect("close");
    } else {
        // The database records how far its logs are durable a few times a second: a cut of
        // the newest quarter second of writes looks like a torn write after a crash, and is
        // repaired as one (see the WAL README). Older records are known, and protected.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    drop(db);
    expected
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).expect("prefix").to_path_buf(),
                    std::fs::read(&p).expect("read"),
                );
            }
        }
    }
    out
}

fn restore(dir: &Path, pristine: &BTreeMap<PathBuf, Vec<u8>>) {
    for (rel, _) in files(dir) {
        if !pristine.contains_key(&rel) {
            std::fs::remove_file(dir.join(rel)).expect("remove");
        }
    }
    for (rel, bytes) in pristine {
        std::fs::write(dir.join(rel), bytes).expect("restore");
    }
}

/// One fault applied to one file.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Flip { offset: usize, bit: u8 },
    ZeroPage { offset: usize },
    Cut { len: usize },
    Remove,
}

fn apply(path: &Path, bytes: &[u8], fault: Fault) {
    match fault {
        Fault::Flip { offset, bit } => {
            let mut b = bytes.to_vec();
            b[offset] ^= 1 << bit;
            std::fs::write(path, b).expect("write");
        }
        Fault::ZeroPage { offset } => {
            let mut b = bytes.to_vec();
            let end = (offset + 4096).min(b.len());
            b[offset..end].fill(0);
            std::fs::write(path, b).expect("write");
        }
        Fault::Cut { len } => std::fs::write(path, &bytes[..len]).expect("write"),
        Fault::Remove => std::fs::remove_file(path).expect("remove"),
    }
}

/// A deterministic spread of faults over a file of `len` bytes.
fn faults_for(len: usize, seed: u64) -> Vec<Fault> {
    let mut out = vec![Fault::Remove];
    if len == 0 {
        return out;
    }
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..14 {
        let offset = (next() % len as u64) as usize;
        out.push(Fault::Flip {
            offset,
            bit: (next() % 8) as u8,
        });
    }
    // The last bytes are where a torn tail and damage are easiest to confuse.
    out.push(Fault::Flip {
        offset: len - 1,
        bit: 3,
    });
    out.push(Fault::Flip {
        offset: len.saturating_sub(40),
        bit: 0,
    });
    for _ in 0..2 {
        out.push(Fault::ZeroPage {
            offset: (next() % len as u64) as usize,
        });
    }
    out.push(Fault::ZeroPage {
        offset: len.saturating_sub(4096),
    });
    for _ in 0..4 {
        out.push(Fault::Cut {
            len: (next() % len as u64) as usize,
        });
    }
    out
}

/// What one probe saw.
#[derive(Debug, Default)]
struct Tally {
    harmless: usize,
    refused_open: usize,
    reported_on_read: usize,
    recorded: usize,
}

/// Opens the damaged directory and reads every series: each must come back whole, or the
/// open or the read must fail with an error that says what and where, or the loss must be
/// recorded as damage that reads report. Never fewer points with `Ok`.
async fn probe(dir: &Path, expected: &Expected, what: &str, tally: &mut Tally) {
    let db = match open(config(dir)).await {
        Ok(db) => db,
        Err(e) => {
            assert!(
                matches!(e, Error::Corrupt { .. } | Error::Io { .. }),
                "{what}: open failed with an unexpected error: {e}"
            );
            tally.refused_open += 1;
            return;
        }
    };
    let mut reported = false;
    for (i, want) in expected {
        let read = tokio::time::timeout(PROBE, db.query(&series(*i), TimeRange::ALL))
            .await
            .unwrap_or_else(|_| panic!("{what}: query hung"));
        match read {
            Ok(found) => {
                let got: Vec<(i64, f64)> = found.iter().flat_map(|s| s.iter()).collect();
                assert!(
                    got.len() >= want.len(),
                    "{what}: series {i} silently lost {} of {} points (damage recorded: {:?})",
                    want.len() - got.len(),
                    want.len(),
                    db.damage()
                );
                assert!(&got == want, "{what}: series {i} has wrong points");
            }
            Err(e) => {
                assert!(
                    matches!(e, Error::Corrupt { .. }),
                    "{what}: read of series {i} failed with an unexpected error: {e}"
                );
                reported = true;
            }
        }
    }
    if reported {
        tally.reported_on_read += 1;
        // Partial answers name the damage.
        let (_, warnings) = db
            .query_partial(vec![LabelMatcher::metric("temperature")], TimeRange::ALL)
            .await
            .unwrap_or_else(|e| panic!("{what}: a partial read failed: {e}"));
        assert!(
            !warnings.is_empty(),
            "{what}: a partial read names no damage"
        );
    } else if !db.damage().is_empty() {
        tally.recorded += 1;
    } else {
        tally.harmless += 1;
    }
    let closed = tokio::time::timeout(PROBE, db.close())
        .await
        .unwrap_or_else(|_| panic!("{what}: close hung"));
    if let Err(e) = closed {
        panic!("{what}: close failed: {e}");
    }
}

async fn matrix(clean: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = build(dir.path(), clean).await;
    let pristine = files(dir.path());
    let kinds: Vec<&PathBuf> = pristine.keys().collect();
    let names: Vec<String> = kinds.iter().map(|p| p.display().to_string()).collect();
    for must in ["CHECKPOINT", "chunks/", "wal/", "series/"] {
        assert!(
            names.iter().any(|n| n.starts_with(must)),
            "the fixture has no {must} file: {names:?}"
        );
    }
    let mut tally = Tally::default();
    let mut probes = 0;
    for (n, rel) in kinds.iter().enumerate() {
        let bytes = &pristine[*rel];
        for fault in faults_for(bytes.len(), 0x9E37_79B9 ^ n as u64) {
            restore(dir.path(), &pristine);
            apply(&dir.path().join(rel), bytes, fault);
            let what = format!(
                "{} ({} bytes, {}): {fault:?}",
                rel.display(),
                bytes.len(),
                if clean { "closed" } else { "killed" }
            );
            probe(dir.path(), &expected, &what, &mut tally).await;
            probes += 1;
        }
    }
    eprintln!(
        "corruption matrix ({}): {probes} probes over {} files: {tally:?}",
        if clean { "after close" } else { "after a kill" },
        kinds.len()
    );
    assert!(
        tally.refused_open + tally.reported_on_read + tally.recorded > 0,
        "no fault was ever reported: the matrix tests nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_matrix_after_close_reports_or_is_harmless() {
    matrix(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_matrix_after_a_kill_reports_or_is_harmless() {
    matrix(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_found_on_read_is_still_reported_after_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = build(dir.path(), true).await;
    // Flip a bit in the payload of the first chunk while the database is open, so that the
    // open scan does not see it and the first read does.
    let db = open(config(dir.path())).await.expect("open");
    let first = db
        .index()
        .query_chunks(series(0).series_id(), TimeRange::ALL)
        .await
        .expect("chunks")[0];
    let seg = dir
        .path()
        .join("chunks")
        .join(format!("{:020}.seg", first.location.segment));
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[(first.location.offset + 100) as usize] ^= 0x20;
    std::fs::write(&seg, &bytes).expect("write");
    let err = db
        .query(&series(0), TimeRange::ALL)
        .await
        .expect_err("the damaged chunk is reported");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    db.close().await.expect("close");
    drop(db);

    let db = open(config(dir.path())).await.expect("reopen");
    assert_eq!(db.stats().damaged, 1, "{:?}", db.damage());
    let err = db
        .query(&series(0), TimeRange::ALL)
        .await
        .expect_err("still reported after the reopen");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    // Other series and other times of the same series read normally.
    let other = db.query(&series(1), TimeRange::ALL).await.expect("query");
    assert_eq!(other[0].len(), expected[&1].len());
    let later = TimeRange::new(first.end_time + 1, i64::MAX).expect("range");
    assert!(db.query(&series(0), later).await.is_ok());
    // A partial read returns what is left and names the damage.
    let (left, warnings) = db
        .query_partial(&series(0), TimeRange::ALL)
        .await
        .expect("partial");
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        left[0].len() as u32 + first.point_count,
        expected[&0].len() as u32
    );
    // Accepting the loss lets reads answer again, with what is left.
    assert_eq!(db.accept_damage().await.expect("accept"), 1);
    let found = db.query(&series(0), TimeRange::ALL).await.expect("query");
    assert_eq!(found[0].len(), left[0].len());
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_that_lost_its_tail_is_reported_and_close_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(config(dir.path())).await.expect("open");
    for i in 0..3 {
        db.insert_series(&series(i), &points_of(i, 0, 300))
            .await
            .expect("insert");
    }
    db.flush().await.expect("flush");
    // A new series after the checkpoint: its labels are only in the catalog's last record.
    db.insert_series(&series(9), &points_of(9, 0, 50))
        .await
        .expect("insert");
    drop(db);
    let catalog = dir.path().join("series");
    let seg = std::fs::read_dir(&catalog)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .max()
        .expect("a catalog segment");
    let bytes = std::fs::read(&seg).expect("read");
    // The catalog's log writes zeros ahead of its last record (dropped, not closed).
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    std::fs::write(&seg, &bytes[..end - 3]).expect("cut the last record");

    // The registration was after the last checkpoint, so nothing but the WAL's points tells
    // of it: open keeps the points (they go into chunks) and records that their labels are
    // lost. Reads over their times fail until the loss is accepted; close returns.
    let db = open(config(dir.path())).await.expect("open");
    let damage = db.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(
        damage[0]
            .reason
            .contains(&series(9).series_id().to_string()),
        "{damage:?}"
    );
    let err = db
        .query(vec![LabelMatcher::metric("temperature")], TimeRange::ALL)
        .await
        .expect_err("a matcher query over the lost series' times");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    let closed = tokio::time::timeout(PROBE, db.close())
        .await
        .expect("close returns");
    closed.expect("close");
    let db = open(config(dir.path())).await.expect("reopen");
    assert_eq!(db.damage().len(), 1, "still recorded");
    assert_eq!(db.accept_damage().await.expect("accept"), 1);
    assert_eq!(
        db.query(&series(0), TimeRange::ALL).await.expect("query")[0].len(),
        300
    );
    db.close().await.expect("close");

    // A registration before the last checkpoint that vanishes is caught by the mark: a strict
    // open refuses, naming the catalog; SkipDamaged opens and records it.
    std::fs::write(&seg, &bytes[..end / 2]).expect("cut older records");
    let err = open(config(dir.path())).await.expect_err("strict");
    assert!(
        matches!(&err, Error::Corrupt { source_name, .. } if source_name.contains("series")),
        "{err}"
    );
    let db = open(DatabaseConfig {
        wal_recovery: WalRecovery::SkipDamaged,
        ..config(dir.path())
    })
    .await
    .expect("open with SkipDamaged");
    assert!(db.damage().len() > 1, "{:?}", db.damage());
    let closed = tokio::time::timeout(PROBE, db.close())
        .await
        .expect("close returns");
    closed.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_out_of_order_window_holds_after_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A window set (the default accepts any point).
    let config = |dir: &std::path::Path| DatabaseConfig {
        out_of_order_window: Duration::from_secs(600),
        ..config(dir)
    };
    let db = open(config(dir.path())).await.expect("open");
    let day = 86_400_000;
    db.insert(&series(0), 10 * day, 1.0).await.expect("insert");
    db.close().await.expect("close");
    drop(db);
    let db = open(config(dir.path())).await.expect("reopen");
    let err = db
        .insert(&series(0), 9 * day, 2.0)
        .await
        .expect_err("a point a day too old");
    assert!(matches!(err, Error::OutOfOrder { .. }), "{err}");
    db.insert(&series(0), 10 * day - 1000, 3.0)
        .await
        .expect("inside the window");
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_opener_fails_before_touching_a_live_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(config(dir.path())).await.expect("open");
    db.insert_series(&series(0), &points_of(0, 0, 500))
        .await
        .expect("insert");
    let before = files(dir.path());
    for _ in 0..5 {
        let err = open(config(dir.path())).await.expect_err("in use");
        assert!(matches!(err, Error::InUse { .. }), "{err}");
    }
    // The live writer may have checkpointed meanwhile, but nothing it wrote was cut: every
    // segment still begins with what it held before the second openers came.
    let after = files(dir.path());
    for (rel, bytes) in &before {
        let name = rel.display().to_string();
        if name.ends_with(".seg") || name.ends_with(".wal") {
            let now = after.get(rel).map_or(&[][..], Vec::as_slice);
            assert!(now.starts_with(bytes), "{name} was cut by a second opener");
        }
    }
    // A read-only open works beside the writer, sees its points, and changes nothing.
    let reader = open(DatabaseConfig {
        read_only: true,
        ..config(dir.path())
    })
    .await
    .expect("read-only open");
    assert_eq!(
        reader
            .query(&series(0), TimeRange::ALL)
            .await
            .expect("query")[0]
            .len(),
        500
    );
    assert!(matches!(
        reader.insert(&series(0), 1, 1.0).await,
        Err(Error::ReadOnly { .. })
    ));
    reader.close().await.expect("close reader");
    db.insert_series(&series(0), &points_of(0, 500, 10))
        .await
        .expect("the writer goes on");
    db.close().await.expect("close");
    let read_only_elsewhere = open(DatabaseConfig {
        read_only: true,
        ..config(&dir.path().join("nothing-here"))
    })
    .await
    .expect_err("no database there");
    assert!(matches!(read_only_elsewhere, Error::InvalidInput { .. }));
    assert!(!dir.path().join("nothing-here").exists());
}

/// A small tmpfs, mounted for one test and unmounted after it (needs root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB; `None` (after saying so loudly) when this is not possible
    /// here, except under `CI=true`, where it fails.
    fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallDisk { dir }),
            other => {
                let why = format!(
                    "SKIPPED: cannot mount a small tmpfs for the disk-full test (needs root): {other:?}"
                );
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{why} (CI=true: failing instead of skipping)"
                );
                eprintln!("{why}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system of `dir` up with a file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0xA5u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let small = [0xA5u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_clearly_and_they_work_again_once_space_is_freed() {
    let Some(disk) = SmallDisk::mount(8) else {
        return;
    };
    let data = disk.path().join("db");
    let db = open(config(&data)).await.expect("open");
    let mut acknowledged = Expected::new();
    for i in 0..SERIES {
        let p = points_of(i, 0, 400);
        db.insert_series(&series(i), &p).await.expect("insert");
        acknowledged.insert(i, p);
    }
    let filler = fill(disk.path());

    // Writes fail with a clear error, each within the probe bound; none hangs. (Those that
    // fit in the zeros the WAL wrote ahead of its records, at most a segment, succeed.)
    let mut failed = 0;
    for round in 0..30 {
        let p = points_of(0, 400 + round * 500, 500);
        match tokio::time::timeout(PROBE, db.insert_series(&series(0), &p))
            .await
            .expect("a write hung on a full disk")
        {
            Ok(()) => acknowledged.get_mut(&0).expect("series").extend(p),
            Err(e) => {
                assert!(
                    matches!(e, Error::Io { .. } | Error::Unavailable { .. }),
                    "unexpected error on a full disk: {e}"
                );
                failed += 1;
            }
        }
    }
    assert!(failed > 0, "the disk never filled up");
    let flushed = tokio::time::timeout(PROBE, db.flush())
        .await
        .expect("flush hung on a full disk");
    assert!(flushed.is_err(), "flush cannot succeed on a full disk");

    // Space comes back: the same handle takes writes again, no reopen needed.
    std::fs::remove_file(&filler).expect("free space");
    let p = points_of(0, 20_000, 100);
    tokio::time::timeout(PROBE, db.insert_series(&series(0), &p))
        .await
        .expect("a write hung after space was freed")
        .expect("writes work again once space is freed");
    acknowledged.get_mut(&0).expect("series").extend(p);
    tokio::time::timeout(PROBE, db.flush())
        .await
        .expect("flush hung")
        .expect("flush works again once space is freed");
    db.close().await.expect("close");
    drop(db);

    let db = open(config(&data)).await.expect("reopen");
    for (i, want) in &acknowledged {
        let got: Vec<(i64, f64)> = db
            .query(&series(*i), TimeRange::ALL)
            .await
            .expect("query")
            .iter()
            .flat_map(|s| s.iter())
            .collect();
        assert!(
            &got == want,
            "series {i}: {} points, {} acknowledged",
            got.len(),
            want.len()
        );
    }
    db.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_wal_damage_names_the_series_and_times_it_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let expected = build(dir.path(), false).await;
    // The newest WAL record (the last write: series 5, its last 150 points) gets a wrong
    // checksum: a complete record that fails its check is damage, not a torn write.
    let wal_dir = dir.path().join("wal");
    let last = std::fs::read_dir(&wal_dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .max()
        .expect("a WAL segment");
    let mut bytes = std::fs::read(&last).expect("read");
    let mut at = 24;
    let mut last_record = None;
    // Up to the zeros the log writes ahead of its records (LSN 0 is never a record's).
    while at + 16 <= bytes.len() && bytes[at..at + 16].iter().any(|&b| b != 0) {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        last_record = Some(at);
        at += 16 + len;
    }
    let rec = last_record.expect("a record");
    bytes[rec + 5] ^= 0x01; // its CRC field
    std::fs::write(&last, &bytes).expect("write");

    let err = open(config(dir.path())).await.expect_err("strict refuses");
    assert!(
        matches!(&err, Error::Corrupt { offset, .. } if *offset == rec as u64),
        "{err}"
    );
    let db = open(DatabaseConfig {
        wal_recovery: WalRecovery::SkipDamaged,
        ..config(dir.path())
    })
    .await
    .expect("open with SkipDamaged");
    let damage = db.damage();
    let lost = points_of(5, 700, 150);
    let named = damage
        .iter()
        .find(|d| d.series == Some(series(5).series_id()))
        .unwrap_or_else(|| panic!("the lost series is named: {damage:?}"));
    let range = named.range.expect("times");
    assert_eq!(
        (range.start, range.end),
        (lost[0].0, lost[lost.len() - 1].0)
    );
    assert!(named.accepted, "skipping was asked for");
    // Everything else is there; the skipped points are missing, and a partial read says so.
    for (i, want) in &expected {
        let got = db.query(&series(*i), TimeRange::ALL).await.expect("query");
        let n = got.first().map_or(0, |s| s.len());
        if *i == 5 {
            assert_eq!(n, want.len() - lost.len());
        } else {
            assert_eq!(n, want.len());
        }
    }
    let (_, warnings) = db
        .query_partial(&series(5), TimeRange::ALL)
        .await
        .expect("partial");
    assert!(
        warnings
            .iter()
            .any(|d| d.series == Some(series(5).series_id()))
    );
    db.close().await.expect("close");
    // The damage was checkpointed past: a strict open works again, and still lists it.
    let db = open(config(dir.path())).await.expect("strict reopen");
    assert!(!db.damage().is_empty());
    db.close().await.expect("close");
}
