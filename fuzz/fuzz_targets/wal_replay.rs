//! Arbitrary bytes as a WAL segment file: open + replay must never panic, and every record
//! replayed must be one that passes its checksum in the input, in order, without gaps.
//! If open succeeds, the log must also accept an append and replay it after a reopen.
//!
//! Input: the first byte chooses the mode (odd: a valid header for LSN 1 is put before the
//! rest, so the fuzzer spends its time on records), the rest is the file.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use tsdb_wal::format::{self, SEGMENT_HEADER_LEN};
use tsdb_wal::{Lsn, Wal, WalConfig, WalDurability, WalRecovery};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fn scratch_dir() -> tempfile::TempDir {
    // tmpfs when available: fsync is free there.
    if Path::new("/dev/shm").is_dir() {
        if let Ok(d) = tempfile::tempdir_in("/dev/shm") {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// Checks that `records` are the records at the start of `file` (after the header), each
/// byte-identical to its re-encoding (so its stored checksum is the right one).
fn check_prefix(file: &[u8], records: &[(Lsn, Vec<u8>)]) {
    let Ok(first) = format::decode_segment_header(file) else {
        // Header was rewritten by repair: then no record may have been kept.
        assert!(records.is_empty(), "records replayed from a segment with a bad header");
        return;
    };
    let mut at = SEGMENT_HEADER_LEN;
    for (k, (lsn, payload)) in records.iter().enumerate() {
        assert_eq!(lsn.get(), first.get().wrapping_add(k as u64), "LSNs not consecutive");
        let mut enc = Vec::new();
        assert!(format::encode_record(*lsn, payload, &mut enc));
        assert_eq!(file.get(at..at + enc.len()), Some(&enc[..]), "replayed a record not in the file");
        at += enc.len();
    }
}

async fn run(file: &[u8], recovery: WalRecovery) {
    let dir = scratch_dir();
    let first = format::decode_segment_header(file).map_or(1, |l| l.get());
    let name = format!("{first:020}.wal");
    std::fs::write(dir.path().join(&name), file).expect("write segment");
    let config = WalConfig { durability: WalDurability::Never, recovery, ..WalConfig::default() };
    let Ok((wal, replay)) = Wal::open(dir.path(), config.clone()).await else {
        return;
    };
    let expected_count = replay.record_count();
    let records: Vec<(Lsn, Vec<u8>)> = replay.map(|r| r.expect("replay after a successful open")).collect();
    assert_eq!(records.len() as u64, expected_count);
    check_prefix(file, &records);

    let lsn = wal.append(b"fuzz").await.expect("append after open");
    if let Some((last, _)) = records.last() {
        assert_eq!(lsn.get(), last.get().wrapping_add(1));
    }
    wal.close().await.expect("close");
    drop(wal);
    let (_wal, replay) = Wal::open(dir.path(), config).await.expect("reopen after append");
    let again: Vec<(Lsn, Vec<u8>)> = replay.map(|r| r.expect("replay")).collect();
    assert_eq!(again.len(), records.len() + 1);
    assert_eq!(&again[..records.len()], &records[..]);
    assert_eq!(again[records.len()], (lsn, b"fuzz".to_vec()));
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let file: Vec<u8> = if mode & 1 == 1 {
        let mut f = format::encode_segment_header(Lsn(1)).to_vec();
        f.extend_from_slice(rest);
        f
    } else {
        rest.to_vec()
    };
    let recovery = if mode & 2 == 2 { WalRecovery::SkipDamaged } else { WalRecovery::Strict };
    runtime().block_on(run(&file, recovery));
});
