//! Behaviour of the WAL: round trips, rolling, group commit, truncation, torn tails, damage.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tsdb_core::Error;
use tsdb_wal::format::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use tsdb_wal::{Lsn, Replay, Wal, WalConfig, WalDurability, WalRecovery};

fn config(segment_size: u64, durability: WalDurability) -> WalConfig {
    WalConfig {
        segment_size,
        durability,
        ..WalConfig::default()
    }
}

fn collect(replay: Replay) -> Vec<(Lsn, Vec<u8>)> {
    replay.map(|r| r.expect("replay record")).collect()
}

/// Deterministic payload of varying length (0..=63 bytes) for record `i`.
fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7 % 64) as usize;
    (0..len)
        .map(|j| (i as u8).wrapping_mul(31).wrapping_add(j as u8))
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

fn disk_size(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).expect("meta").len())
        .sum()
}

async fn append_all(wal: &Wal, range: std::ops::Range<u64>) -> Vec<(Lsn, Vec<u8>)> {
    let mut out = Vec::new();
    for i in range {
        let p = payload(i);
        let lsn = wal.append(&p).await.expect("append");
        out.push((lsn, p));
    }
    out
}

#[tokio::test]
async fn round_trip_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, WalDurability::Always);
    let (wal, replay) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    assert_eq!(replay.count(), 0);
    assert_eq!(
        (wal.first_lsn(), wal.last_lsn(), wal.next_lsn()),
        (None, None, Lsn(1))
    );

    let mut expected = append_all(&wal, 0..50).await;
    let batch: Vec<Vec<u8>> = (50..60).map(payload).collect();
    let refs: Vec<&[u8]> = batch.iter().map(|p| p.as_slice()).collect();
    let range = wal.append_batch(&refs).await.expect("batch");
    assert_eq!(range, Lsn(51)..Lsn(61));
    expected.extend((51..61).map(Lsn).zip(batch.iter().cloned()));
    assert_eq!(
        wal.append_batch(&[]).await.expect("empty batch"),
        Lsn(61)..Lsn(61)
    );
    let lsns: Vec<u64> = expected.iter().map(|(l, _)| l.get()).collect();
    assert_eq!(lsns, (1..=60).collect::<Vec<_>>());
    assert_eq!(
        (wal.first_lsn(), wal.last_lsn()),
        (Some(Lsn(1)), Some(Lsn(60)))
    );
    assert_eq!(wal.size_on_disk(), disk_size(dir.path()));
    let stats = wal.stats();
    assert_eq!(
        (stats.records, stats.appends, stats.durable_lsn),
        (60, 51, Some(Lsn(60)))
    );
    wal.close().await.expect("close");
    assert!(matches!(wal.append(b"x").await, Err(Error::Closed { .. })));
    drop(wal);

    let (wal, replay) = Wal::open(dir.path(), cfg.clone()).await.expect("reopen");
    assert_eq!(replay.record_count(), 60);
    assert_eq!(collect(replay), expected);
    assert_eq!(wal.next_lsn(), Lsn(61));
    expected.extend(append_all(&wal, 60..70).await);
    assert_eq!(expected.last().map(|e| e.0), Some(Lsn(70)));
    drop(wal); // without close: every append was acknowledged after fsync

    let (_wal, replay) = Wal::open(dir.path(), cfg).await.expect("reopen 2");
    assert_eq!(collect(replay), expected);
}

#[tokio::test]
async fn segments_roll_and_oversized_records_stand_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(200, WalDurability::Never);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    let mut expected = append_all(&wal, 0..40).await;
    let big = vec![0xAB; 1000];
    let big_lsn = wal.append(&big).await.expect("big record");
    expected.push((big_lsn, big.clone()));
    expected.extend(append_all(&wal, 40..45).await);
    wal.close().await.expect("close");

    let files = segment_files(dir.path());
    assert!(files.len() > 5, "only {} segments", files.len());
    for f in &files {
        let len = std::fs::metadata(f).expect("meta").len();
        let name = f.file_stem().and_then(|s| s.to_str()).expect("name");
        let first: u64 = name.parse().expect("numeric name");
        let bytes = std::fs::read(f).expect("read");
        assert_eq!(
            &bytes[12..20],
            &first.to_le_bytes(),
            "header LSN of {}",
            f.display()
        );
        if first == big_lsn.get() {
            assert_eq!(
                len,
                (SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + big.len()) as u64
            );
        } else {
            assert!(len <= 200, "{} is {len} bytes", f.display());
        }
    }
    let (wal, replay) = Wal::open(dir.path(), cfg).await.expect("reopen");
    assert_eq!(collect(replay), expected);
    assert_eq!(wal.stats().segments, files.len() as u64);
    assert_eq!(wal.size_on_disk(), disk_size(dir.path()));
}

#[tokio::test]
async fn oversized_record_is_a_typed_error_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = WalConfig {
        max_record_size: 100,
        ..config(1 << 20, WalDurability::Always)
    };
    let (wal, _) = Wal::open(dir.path(), cfg).await.expect("open");
    wal.append(&[1; 100]).await.expect("at the limit");
    let err = wal
        .append_batch(&[&[2; 10], &[3; 101]])
        .await
        .expect_err("over the limit");
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                requested: 101,
                limit: 100,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        wal.next_lsn(),
        Lsn(2),
        "no record of the rejected batch was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_under_concurrency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(64 << 10, WalDurability::Always);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    let wal = Arc::new(wal);
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let wal = wal.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..60u64 {
                    let p = format!("task {t} record {i}").into_bytes();
                    let lsn = wal.append(&p).await.expect("append");
                    acked.push((lsn, p));
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("task"));
    }
    acked.sort();
    let lsns: Vec<u64> = acked.iter().map(|(l, _)| l.get()).collect();
    assert_eq!(
        lsns,
        (1..=960).collect::<Vec<_>>(),
        "LSNs unique and gap-free"
    );
    let stats = wal.stats();
    assert_eq!(stats.appends, 960);
    assert!(
        stats.fsyncs < stats.appends,
        "group commit: {} fsyncs for {} appends",
        stats.fsyncs,
        stats.appends
    );
    eprintln!(
        "group commit: {} fsyncs for {} appends",
        stats.fsyncs, stats.appends
    );
    // Every fsync of a segment is timed, each in exactly one bucket or past the last.
    let timed = stats.fsync_latency;
    assert_eq!(timed.count, stats.fsyncs);
    assert!(timed.buckets.iter().sum::<u64>() <= timed.count);
    assert!(timed.total_nanos > 0);
    drop(wal);
    let (_wal, replay) = Wal::open(dir.path(), cfg).await.expect("reopen");
    assert_eq!(
        collect(replay),
        acked,
        "replay order is LSN order, payloads intact"
    );
}

#[tokio::test]
async fn truncation_keeps_everything_at_or_after_lsn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(300, WalDurability::Never);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    let expected = append_all(&wal, 0..120).await;
    let before = segment_files(dir.path());
    assert!(before.len() > 10);
    let deleted = wal.truncate_before(Lsn(60)).await.expect("truncate");
    let after = segment_files(dir.path());
    assert_eq!(after.len(), before.len() - deleted);
    assert!(deleted > 0);
    let first = wal.first_lsn().expect("first");
    assert!(first <= Lsn(60), "first retained {first}");
    assert_eq!(wal.size_on_disk(), disk_size(dir.path()));
    wal.close().await.expect("close");

    let (wal, replay) = Wal::open(dir.path(), cfg.clone()).await.expect("reopen");
    let replayed = collect(replay);
    assert_eq!(replayed.first().map(|r| r.0), Some(first));
    // The oldest segment left holds LSN 60; all older segments are gone.
    let idx = (first.get() - 1) as usize;
    assert_eq!(replayed, expected[idx..]);
    assert!(
        replayed.len() < expected.len() - 40,
        "truncation deleted little"
    );

    // Truncating past the end keeps the active segment; numbering goes on after reopen.
    wal.truncate_before(Lsn(1_000)).await.expect("truncate all");
    assert_eq!(wal.stats().segments, 1);
    wal.close().await.expect("close");
    let (wal, replay) = Wal::open(dir.path(), cfg).await.expect("reopen 2");
    let rest = collect(replay);
    assert_eq!(rest.last().map(|r| r.0), Some(Lsn(120)));
    assert_eq!(wal.append(b"next").await.expect("append"), Lsn(121));
}

/// `truncate_all` leaves one empty segment (its header alone) and the numbering goes on:
/// reopening replays nothing (with no checkpoint telling where to start), the next append
/// gets the next LSN, and what is appended after it is replayed as usual.
#[tokio::test]
async fn truncating_everything_leaves_an_empty_segment_and_numbering_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(4096, WalDurability::Never);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    append_all(&wal, 0..500).await;
    assert!(segment_files(dir.path()).len() > 2);
    let deleted = wal.truncate_all().await.expect("truncate all");
    assert!(deleted > 2, "deleted {deleted}");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(disk_size(dir.path()), SEGMENT_HEADER_LEN as u64);
    assert_eq!(wal.size_on_disk(), SEGMENT_HEADER_LEN as u64);
    assert_eq!(wal.first_lsn(), None);
    // Nothing written since: a second call deletes nothing and starts no segment.
    assert_eq!(wal.truncate_all().await.expect("again"), 0);
    assert_eq!(segment_files(dir.path()).len(), 1);
    wal.close().await.expect("close");

    let (wal, replay) = Wal::open(dir.path(), cfg.clone()).await.expect("reopen");
    assert!(collect(replay).is_empty(), "nothing to replay");
    assert_eq!(wal.append(b"next").await.expect("append"), Lsn(501));
    wal.close().await.expect("close");
    let (_wal, replay) = Wal::open(dir.path(), cfg).await.expect("reopen 2");
    assert_eq!(collect(replay), vec![(Lsn(501), b"next".to_vec())]);
}

/// Writes `n` records into one segment and returns (file path, file bytes, record offsets).
async fn one_segment_log(
    dir: &Path,
    n: u64,
) -> (PathBuf, Vec<u8>, Vec<(Lsn, Vec<u8>)>, Vec<usize>) {
    let (wal, _) = Wal::open(dir, config(1 << 20, WalDurability::Never))
        .await
        .expect("open");
    let records = append_all(&wal, 1..n + 1).await;
    wal.close().await.expect("close");
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    let bytes = std::fs::read(&files[0]).expect("read");
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    for (_, p) in &records {
        offsets.push(at);
        at += RECORD_HEADER_LEN + p.len();
    }
    assert_eq!(at, bytes.len());
    (files[0].clone(), bytes, records, offsets)
}

#[tokio::test]
async fn torn_tail_at_every_byte_is_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, bytes, records, offsets) = one_segment_log(dir.path(), 12).await;
    let cfg = config(1 << 20, WalDurability::Never);
    let from = offsets[offsets.len() - 3];
    for cut in from..bytes.len() {
        std::fs::write(&path, &bytes[..cut]).expect("write cut");
        let (wal, replay) = Wal::open(dir.path(), cfg.clone()).await.expect("open torn");
        let complete = offsets
            .iter()
            .zip(&records)
            .take_while(|(off, (_, p))| *off + RECORD_HEADER_LEN + p.len() <= cut)
            .count();
        let replayed = collect(replay);
        assert_eq!(replayed, records[..complete], "cut at {cut}");
        let repaired_len = std::fs::metadata(&path).expect("meta").len() as usize;
        let kept = offsets.get(complete).copied().unwrap_or(bytes.len());
        assert_eq!(repaired_len, kept, "cut at {cut}: torn bytes dropped");
        // The log goes on right after the last complete record.
        let lsn = wal.append(b"after repair").await.expect("append");
        assert_eq!(lsn, Lsn(complete as u64 + 1));
        wal.close().await.expect("close");
        drop(wal);
        let (_wal, replay) = Wal::open(dir.path(), cfg.clone()).await.expect("reopen");
        let replayed = collect(replay);
        assert_eq!(replayed.len(), complete + 1, "cut at {cut}");
        assert_eq!(replayed[complete], (lsn, b"after repair".to_vec()));
    }
}

#[tokio::test]
async fn torn_segment_creation_is_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(100, WalDurability::Never);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    let records = append_all(&wal, 0..10).await;
    wal.close().await.expect("close");
    let files = segment_files(dir.path());
    let last = files.last().expect("a segment").clone();
    let first_of_last: u64 = last
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("name");
    let header = std::fs::read(&last).expect("read")[..SEGMENT_HEADER_LEN].to_vec();
    for cut in 0..=SEGMENT_HEADER_LEN {
        std::fs::write(&last, &header[..cut]).expect("write");
        let (wal, replay) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
        assert_eq!(
            collect(replay),
            records[..first_of_last as usize - 1],
            "cut at {cut}"
        );
        assert_eq!(wal.next_lsn(), Lsn(first_of_last));
        assert_eq!(
            std::fs::read(&last).expect("read"),
            header,
            "header rewritten"
        );
    }
}

fn assert_corrupt(err: &Error, file: &Path, offset: u64) {
    match err {
        Error::Corrupt {
            source_name,
            offset: at,
            ..
        } => {
            assert!(
                source_name.contains(&*file.file_name().expect("name").to_string_lossy()),
                "{err}"
            );
            assert_eq!(*at, offset, "{err}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn damage_before_valid_records_fails_open_or_is_skipped_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, bytes, records, offsets) = one_segment_log(dir.path(), 10).await;
    let mut damaged = bytes.clone();
    damaged[offsets[4] + RECORD_HEADER_LEN - 1] ^= 0x40; // the LSN of record 5
    std::fs::write(&path, &damaged).expect("write");
    let err = Wal::open(dir.path(), config(1 << 20, WalDurability::Never))
        .await
        .expect_err("damage in the middle");
    assert_corrupt(&err, &path, offsets[4] as u64);
    assert_eq!(
        std::fs::read(&path).expect("read"),
        damaged,
        "strict open modifies nothing"
    );

    let skip = WalConfig {
        recovery: WalRecovery::SkipDamaged,
        ..config(1 << 20, WalDurability::Never)
    };
    let (wal, replay) = Wal::open(dir.path(), skip).await.expect("skip open");
    // Damage with valid records after it is not a torn tail: only record 5 is lost, and the
    // records after it are kept.
    let damage = replay.damage().to_vec();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(
        (damage[0].lost_from, damage[0].lost_to),
        (Lsn(5), Some(Lsn(6)))
    );
    assert_eq!(damage[0].offset, offsets[4] as u64);
    assert!(damage[0].needed);
    let mut kept = records[..4].to_vec();
    kept.extend_from_slice(&records[5..]);
    assert_eq!(collect(replay), kept);
    assert_eq!(wal.append(b"x").await.expect("append"), Lsn(11));
    wal.close().await.expect("close");

    // Once the owner records that records before LSN 6 are not needed any more (its
    // checkpoint), the same damage is only a warning, even for a strict open.
    let behind = WalConfig {
        checkpoint: tsdb_wal::WalCheckpoint {
            needed_from: Lsn(6),
            ..Default::default()
        },
        ..config(1 << 20, WalDurability::Never)
    };
    let (_wal, replay) = Wal::open(dir.path(), behind)
        .await
        .expect("strict open behind");
    assert!(!replay.damage()[0].needed);
    assert_eq!(collect(replay).len(), 10);
}

#[tokio::test]
async fn damage_in_a_sealed_segment_fails_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(200, WalDurability::Never);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    let records = append_all(&wal, 0..40).await;
    wal.close().await.expect("close");
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    // Cut the end of the second segment: a torn tail there is not a crash artefact.
    let second = &files[1];
    let len = std::fs::metadata(second).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(second)
        .expect("open");
    f.set_len(len - 3).expect("cut");
    drop(f);
    let err = Wal::open(dir.path(), cfg.clone())
        .await
        .expect_err("sealed torn");
    let bytes = std::fs::read(second).expect("read");
    // The offset is the start of the cut record.
    let mut at = SEGMENT_HEADER_LEN;
    while at + RECORD_HEADER_LEN <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        if at + RECORD_HEADER_LEN + len > bytes.len() {
            break;
        }
        at += RECORD_HEADER_LEN + len;
    }
    assert_corrupt(&err, second, at as u64);

    // Deleting a middle segment leaves a gap: also refused.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir2.path(), cfg.clone()).await.expect("open");
    append_all(&wal, 0..40).await;
    wal.close().await.expect("close");
    let files = segment_files(dir2.path());
    std::fs::remove_file(&files[1]).expect("rm");
    let err = Wal::open(dir2.path(), cfg.clone()).await.expect_err("gap");
    assert_corrupt(&err, &files[2], 0);
    let skip = WalConfig {
        recovery: WalRecovery::SkipDamaged,
        ..cfg
    };
    let (_wal, replay) = Wal::open(dir2.path(), skip).await.expect("skip open");
    let replayed = collect(replay);
    let second_first: u64 = files[2]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("name");
    let first_missing: u64 = files[1]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("name");
    let expected: Vec<_> = records
        .iter()
        .filter(|(l, _)| l.get() < first_missing || l.get() >= second_first)
        .cloned()
        .collect();
    assert_eq!(replayed, expected);
}

#[tokio::test]
async fn single_bit_flips_are_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, bytes, records, offsets) = one_segment_log(dir.path(), 8).await;
    let cfg = config(1 << 20, WalDurability::Never);
    let last = *offsets.last().expect("records");
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, &flipped).expect("write");
        let byte = bit / 8;
        match Wal::open(dir.path(), cfg.clone()).await {
            Ok((_wal, replay)) => {
                // Only a flip of the last record's length field, which makes the record look
                // cut short, may be taken for a torn tail; a complete record that fails its
                // checksum is damage even at the end of the log.
                assert!(
                    (last..last + 4).contains(&byte),
                    "bit {bit} (byte {byte}) accepted"
                );
                assert_eq!(collect(replay), records[..records.len() - 1], "bit {bit}");
            }
            Err(err) => {
                let expected_offset = if byte < SEGMENT_HEADER_LEN {
                    0
                } else {
                    *offsets.iter().rev().find(|o| **o <= byte).expect("record")
                };
                assert_corrupt(&err, &path, expected_offset as u64);
            }
        }
        std::fs::write(&path, &bytes).expect("restore");
    }
    // SkipDamaged keeps every record but the damaged last one.
    let mut flipped = bytes.clone();
    flipped[last + RECORD_HEADER_LEN] ^= 1;
    std::fs::write(&path, &flipped).expect("write");
    let skip = WalConfig {
        recovery: WalRecovery::SkipDamaged,
        ..cfg
    };
    let (_wal, replay) = Wal::open(dir.path(), skip).await.expect("skip open");
    assert_eq!(replay.damage().len(), 1);
    assert!(replay.damage()[0].needed);
    assert_eq!(collect(replay), records[..records.len() - 1]);
}

#[tokio::test]
async fn interval_and_never_durability() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, WalDurability::Interval(Duration::from_millis(20)));
    let (wal, _) = Wal::open(dir.path(), cfg).await.expect("open");
    append_all(&wal, 0..10).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while wal.stats().durable_lsn != Some(Lsn(10)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "background sync never ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(wal.stats().fsyncs >= 1);

    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), config(1 << 20, WalDurability::Never))
        .await
        .expect("open");
    append_all(&wal, 0..10).await;
    assert_eq!(wal.stats().fsyncs, 0, "Never does not fsync on append");
    assert_eq!(wal.stats().durable_lsn, None);
    wal.sync().await.expect("sync");
    assert_eq!(wal.stats().fsyncs, 1);
    assert_eq!(wal.stats().durable_lsn, Some(Lsn(10)));
}

#[tokio::test]
async fn bad_config_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Wal::open(dir.path(), config(0, WalDurability::Always))
        .await
        .expect_err("zero segment size");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let err = Wal::open(
        dir.path(),
        config(100, WalDurability::Interval(Duration::ZERO)),
    )
    .await
    .expect_err("zero interval");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

#[tokio::test]
async fn replay_survives_truncation_of_its_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(300, WalDurability::Never);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    let expected = append_all(&wal, 0..60).await;
    wal.close().await.expect("close");
    let (wal, replay) = Wal::open(dir.path(), cfg).await.expect("reopen");
    let deleted = wal.truncate_before(Lsn(1_000)).await.expect("truncate");
    assert!(deleted > 3);
    assert_eq!(segment_files(dir.path()).len(), 1);
    // The replay opened its segments before they were deleted and still reads them all.
    assert_eq!(collect(replay), expected);
}

#[tokio::test]
async fn skip_damaged_resets_a_last_segment_with_a_damaged_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(200, WalDurability::Never);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    let records = append_all(&wal, 0..30).await;
    wal.close().await.expect("close");
    let files = segment_files(dir.path());
    let last = files.last().expect("segment").clone();
    let first_of_last: u64 = last
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("name");
    assert!(first_of_last <= 30, "the last segment holds records");
    let mut bytes = std::fs::read(&last).expect("read");
    bytes[0] ^= 1; // magic
    std::fs::write(&last, &bytes).expect("write");

    let err = Wal::open(dir.path(), cfg.clone())
        .await
        .expect_err("strict");
    assert_corrupt(&err, &last, 0);

    let skip = WalConfig {
        recovery: WalRecovery::SkipDamaged,
        ..cfg.clone()
    };
    let (wal, replay) = Wal::open(dir.path(), skip).await.expect("skip open");
    let kept = &records[..first_of_last as usize - 1];
    assert_eq!(collect(replay), kept);
    assert_eq!(
        std::fs::metadata(&last).expect("meta").len(),
        SEGMENT_HEADER_LEN as u64
    );
    assert_eq!(wal.size_on_disk(), disk_size(dir.path()));
    let lsn = wal.append(b"after reset").await.expect("append");
    assert_eq!(lsn, Lsn(first_of_last));
    wal.close().await.expect("close");
    // The repaired log opens strictly again.
    let (_wal, replay) = Wal::open(dir.path(), cfg).await.expect("strict reopen");
    let replayed = collect(replay);
    assert_eq!(&replayed[..kept.len()], kept);
    assert_eq!(replayed[kept.len()..], [(lsn, b"after reset".to_vec())]);
}

#[tokio::test]
async fn a_second_opener_is_refused_while_the_log_is_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, WalDurability::Never);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    let records = append_all(&wal, 0..5).await;
    // Cut the active segment's tail as a crash would, then let a second opener try: it must
    // fail before it repairs (truncates) anything under the live writer.
    let files = segment_files(dir.path());
    let before = std::fs::read(&files[0]).expect("read");
    let err = Wal::open(dir.path(), cfg.clone())
        .await
        .expect_err("second opener");
    assert!(matches!(err, Error::InUse { .. }), "{err:?}");
    assert_eq!(std::fs::read(&files[0]).expect("read"), before);
    // The live writer goes on, and after close the directory can be opened again.
    let lsn = wal.append(b"still mine").await.expect("append");
    wal.close().await.expect("close");
    let (_wal, replay) = Wal::open(dir.path(), cfg).await.expect("reopen");
    let replayed = collect(replay);
    assert_eq!(replayed[..5], records[..]);
    assert_eq!(replayed[5], (lsn, b"still mine".to_vec()));
}

#[tokio::test]
async fn a_read_only_open_never_modifies_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, WalDurability::Never);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    let records = append_all(&wal, 0..6).await;
    // A torn tail (half a record) that a writable open would cut, right after the last
    // record (the live writer's zeros ahead of it go; the last payload ends with a non-zero
    // byte).
    let files = segment_files(dir.path());
    let mut bytes = std::fs::read(&files[0]).expect("read");
    let records_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.truncate(records_end);
    bytes.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
    std::fs::write(&files[0], &bytes).expect("write");
    let ro = WalConfig {
        read_only: true,
        ..cfg.clone()
    };
    // Read-only takes no lock: it reads the log of a live writer.
    let (reader, replay) = Wal::open(dir.path(), ro).await.expect("read-only open");
    assert_eq!(collect(replay), records);
    let err = reader.append(b"x").await.expect_err("read-only append");
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(reader.truncate_before(Lsn(3)).await.is_err());
    assert_eq!(std::fs::read(&files[0]).expect("read"), bytes, "untouched");
    drop(wal);
    let missing = WalConfig {
        read_only: true,
        ..cfg
    };
    assert!(
        Wal::open(dir.path().join("absent"), missing).await.is_err(),
        "a read-only open creates no directory"
    );
    assert!(!dir.path().join("absent").exists());
}

#[tokio::test]
async fn records_the_owner_saw_written_cannot_vanish_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, WalDurability::Never);
    let (path, bytes, _, offsets) = one_segment_log(dir.path(), 10).await;
    let files = [path];
    // Cut the log at an exact record boundary: records 9 and 10 are gone, no torn bytes left.
    std::fs::write(&files[0], &bytes[..offsets[8]]).expect("cut");
    // Without what the owner knows this looks like a clean log of 8 records...
    let ro = WalConfig {
        read_only: true,
        ..cfg.clone()
    };
    let (_r, replay) = Wal::open(dir.path(), ro).await.expect("open");
    assert_eq!(replay.count(), 8);
    // ...but the owner recorded 10 records (its checkpoint mark): the loss is reported.
    let known = WalConfig {
        checkpoint: tsdb_wal::WalCheckpoint {
            needed_from: Lsn(4),
            written_before: Lsn(11),
            closed_cleanly: false,
            active_segment: Lsn(0),
        },
        ..cfg.clone()
    };
    let err = Wal::open(dir.path(), known.clone())
        .await
        .expect_err("records 9 and 10 are missing");
    assert_corrupt(&err, &files[0], offsets[8] as u64);
    let skip = WalConfig {
        recovery: WalRecovery::SkipDamaged,
        ..known
    };
    let (wal, replay) = Wal::open(dir.path(), skip).await.expect("skip");
    let d = replay.damage().to_vec();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].lost_from, d[0].lost_to), (Lsn(9), Some(Lsn(11))));
    // The lost LSNs are never handed out again.
    assert_eq!(wal.append(b"next").await.expect("append"), Lsn(11));
}

#[tokio::test]
async fn damage_at_the_end_of_a_cleanly_closed_log_behind_the_checkpoint_is_harmless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, bytes, records, offsets) = one_segment_log(dir.path(), 8).await;
    let mut flipped = bytes.clone();
    flipped[*offsets.last().expect("records") + RECORD_HEADER_LEN] ^= 4;
    std::fs::write(&path, &flipped).expect("write");
    let clean = WalConfig {
        checkpoint: tsdb_wal::WalCheckpoint {
            needed_from: Lsn(9),
            written_before: Lsn(9),
            closed_cleanly: true,
            active_segment: Lsn(1),
        },
        ..config(1 << 20, WalDurability::Never)
    };
    let (wal, replay) = Wal::open(dir.path(), clean).await.expect("open");
    assert!(!replay.damage()[0].needed, "{:?}", replay.damage());
    assert_eq!(collect(replay), records[..7]);
    assert_eq!(wal.append(b"x").await.expect("append"), Lsn(9));
}

#[tokio::test]
async fn a_removed_active_segment_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(1 << 20, WalDurability::Never);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    append_all(&wal, 0..3).await;
    // The owner checkpoints here: everything so far is in its chunks.
    let seen = tsdb_wal::WalCheckpoint {
        needed_from: wal.next_lsn(),
        written_before: wal.next_lsn(),
        closed_cleanly: false,
        active_segment: wal.active_segment(),
    };
    append_all(&wal, 3..6).await; // needed: after the checkpoint
    wal.close().await.expect("close");
    for f in segment_files(dir.path()) {
        std::fs::remove_file(f).expect("remove");
    }
    let known = WalConfig {
        checkpoint: seen,
        ..cfg.clone()
    };
    let err = Wal::open(dir.path(), known.clone())
        .await
        .expect_err("the active segment is gone");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    // Had the owner closed cleanly at its checkpoint, nothing needed would be lost.
    let clean = WalConfig {
        checkpoint: tsdb_wal::WalCheckpoint {
            closed_cleanly: true,
            ..seen
        },
        ..cfg
    };
    let (wal, replay) = Wal::open(dir.path(), clean).await.expect("open");
    assert!(replay.damage().iter().all(|d| !d.needed));
    assert_eq!(wal.next_lsn(), Lsn(4));
}

/// Appends `n` records to a fresh log and drops it without closing (as a killed process
/// leaves it): the active segment still holds the zeros written ahead of its records.
/// Returns the segment, its bytes, the records and where they end.
async fn killed_log(dir: &Path, n: u64) -> (PathBuf, Vec<u8>, Vec<(Lsn, Vec<u8>)>, usize) {
    let (wal, _) = Wal::open(dir, config(4 << 20, WalDurability::Never))
        .await
        .expect("open");
    let records = append_all(&wal, 1..n + 1).await;
    drop(wal);
    let files = segment_files(dir);
    let bytes = std::fs::read(&files[0]).expect("read");
    let end = SEGMENT_HEADER_LEN
        + records
            .iter()
            .map(|(_, p)| RECORD_HEADER_LEN + p.len())
            .sum::<usize>();
    (files[0].clone(), bytes, records, end)
}

#[tokio::test]
async fn appends_go_into_zeros_written_ahead_and_close_cuts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(4 << 20, WalDurability::Always);
    let (wal, _) = Wal::open(dir.path(), cfg.clone()).await.expect("open");
    let records = append_all(&wal, 1..40).await;
    let end = SEGMENT_HEADER_LEN
        + records
            .iter()
            .map(|(_, p)| RECORD_HEADER_LEN + p.len())
            .sum::<usize>();
    let files = segment_files(dir.path());
    let len = std::fs::metadata(&files[0]).expect("meta").len();
    assert!(len >= (1 << 20), "{len} bytes: nothing written ahead");
    let bytes = std::fs::read(&files[0]).expect("read");
    assert!(
        bytes[end..].iter().all(|&b| b == 0),
        "ahead of the records: zeros"
    );
    assert_eq!(wal.size_on_disk(), disk_size(dir.path()));
    wal.close().await.expect("close");
    assert_eq!(
        std::fs::metadata(&files[0]).expect("meta").len(),
        end as u64,
        "a closed segment ends with its last record"
    );
    let (wal, replay) = Wal::open(dir.path(), cfg).await.expect("reopen");
    assert_eq!(collect(replay), records);
    let more = append_all(&wal, 40..50).await;
    wal.close().await.expect("close");
    let (_wal, replay) = Wal::open(dir.path(), config(4 << 20, WalDurability::Always))
        .await
        .expect("reopen");
    assert_eq!(collect(replay), [records, more].concat());
}

#[tokio::test]
async fn a_killed_writer_leaves_zeros_that_open_cuts_and_appends_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, bytes, records, end) = killed_log(dir.path(), 30).await;
    assert!(bytes.len() > end, "zeros written ahead");
    let cfg = config(4 << 20, WalDurability::Always);
    let (wal, replay) = Wal::open(dir.path(), cfg.clone())
        .await
        .expect("strict open");
    assert!(replay.damage().is_empty(), "{:?}", replay.damage());
    assert_eq!(collect(replay), records);
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), end as u64);
    let more = append_all(&wal, 30..35).await;
    wal.close().await.expect("close");
    let (_wal, replay) = Wal::open(dir.path(), cfg).await.expect("reopen");
    assert_eq!(collect(replay), [records, more].concat());
}

#[tokio::test]
async fn a_write_killed_at_a_page_boundary_is_a_torn_tail_not_damage() {
    for keep in [1usize, 2, 3] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, mut bytes, records, end) = killed_log(dir.path(), 20).await;
        // The next record, 20 KB, of which a killed write(2) copied only the pages up to the
        // `keep`-th page boundary after the record's start: zeros after it, as written ahead.
        let next = Lsn(records.len() as u64 + 1);
        let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8 + 1).collect();
        let mut record = Vec::new();
        assert!(tsdb_wal::format::encode_record(next, &payload, &mut record));
        let cut = (end / 4096 + keep) * 4096;
        assert!(cut < end + record.len());
        let upto = cut - end;
        if bytes.len() < end + record.len() {
            bytes.resize(end + record.len(), 0);
        }
        bytes[end..cut].copy_from_slice(&record[..upto]);
        std::fs::write(&path, &bytes).expect("write");
        let (_wal, replay) = Wal::open(dir.path(), config(4 << 20, WalDurability::Always))
            .await
            .unwrap_or_else(|e| panic!("strict open after a write cut at a page ({keep}): {e}"));
        assert!(replay.damage().is_empty(), "{:?}", replay.damage());
        assert_eq!(collect(replay), records);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), end as u64);
    }
}

#[tokio::test]
async fn a_complete_last_record_damaged_before_the_zeros_is_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, mut bytes, records, end) = killed_log(dir.path(), 20).await;
    let last = records.last().expect("records");
    assert!(!last.1.is_empty());
    // A bit flip in the last record's payload; zeros follow it.
    bytes[end - 1] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write");
    let err = Wal::open(dir.path(), config(4 << 20, WalDurability::Always))
        .await
        .expect_err("a damaged complete record is not a torn write");
    assert!(
        matches!(&err, Error::Corrupt { offset, .. } if *offset == (end - RECORD_HEADER_LEN - last.1.len()) as u64),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bytes,
        "strict open modifies nothing"
    );
}
