//! WAL open + replay on hostile segment files. Two kinds of input:
//!
//! * `Raw`: arbitrary bytes as one segment file (optionally behind a valid header), so every
//!   parser path sees garbage.
//! * `Built`: real records (correct checksums) split over one or two segments, then damaged
//!   (bit flips, overwritten bytes, a cut), so the fuzzer reaches the recovery logic that
//!   random bytes almost never get to (valid records after damage, damaged headers, ...).
//!
//! Checked: no panic; every replayed record is byte-for-byte a record of the input files, in
//! file order (so its checksum passed; damaged bytes between records may be skipped), LSNs
//! are consecutive under strict recovery; for built inputs, every replayed LSN holds the
//! payload written there (never a different one) and an undamaged log replays in full; after
//! a successful open the log accepts an append and replays it after a reopen.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use tsdb_wal::format::{self, SEGMENT_HEADER_LEN};
use tsdb_wal::{Lsn, Wal, WalConfig, WalDurability, WalRecovery};

#[derive(Arbitrary, Debug)]
enum Input {
    Raw {
        skip_damaged: bool,
        valid_header: bool,
        bytes: Vec<u8>,
    },
    Built {
        skip_damaged: bool,
        first_lsn: u16,
        payloads: Vec<Vec<u8>>,
        /// Records before this index go to a first segment, the rest to a second (if > 0).
        split: u8,
        damage: Vec<Damage>,
    },
}

#[derive(Arbitrary, Debug)]
enum Damage {
    Flip { second: bool, at: u16, bit: u8 },
    Set { second: bool, at: u16, byte: u8 },
    Cut { second: bool, at: u16 },
}

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

/// How many of `records` `file` holds, in order, each byte for byte somewhere after the
/// previous one (after the header): recovery may skip damaged bytes between them.
fn check_in_file(file: &[u8], records: &[(Lsn, Vec<u8>)]) -> usize {
    let mut at = SEGMENT_HEADER_LEN;
    let mut n = 0;
    for (lsn, payload) in records {
        let mut enc = Vec::new();
        assert!(format::encode_record(*lsn, payload, &mut enc));
        let Some(found) = file
            .get(at..)
            .and_then(|rest| rest.windows(enc.len()).position(|w| w == &enc[..]))
        else {
            break;
        };
        at += found + enc.len();
        n += 1;
    }
    n
}

async fn run(
    files: &[(u64, Vec<u8>)],
    recovery: WalRecovery,
    written: Option<&[Vec<u8>]>,
    intact: bool,
) {
    let dir = scratch_dir();
    for (first, bytes) in files {
        std::fs::write(dir.path().join(format!("{first:020}.wal")), bytes).expect("write segment");
    }
    let config = WalConfig {
        durability: WalDurability::Never,
        recovery,
        ..WalConfig::default()
    };
    let opened = Wal::open(dir.path(), config.clone()).await;
    if intact {
        assert!(
            opened.is_ok(),
            "an undamaged log failed to open: {:?}",
            opened.err()
        );
    }
    let Ok((wal, replay)) = opened else { return };
    let expected_count = replay.record_count();
    let records: Vec<(Lsn, Vec<u8>)> = replay
        .map(|r| r.expect("replay after a successful open"))
        .collect();
    assert_eq!(records.len() as u64, expected_count);

    // Every replayed record is in the input files, at its place, in order.
    let mut rest = &records[..];
    for (_, bytes) in files {
        let n = check_in_file(bytes, rest);
        rest = &rest[n..];
    }
    assert!(
        rest.is_empty(),
        "replayed {} record(s) that are not in the files",
        rest.len()
    );
    if recovery == WalRecovery::Strict {
        for w in records.windows(2) {
            assert_eq!(w[1].0.get(), w[0].0.get() + 1, "LSNs not consecutive");
        }
    }
    if let Some(written) = written {
        // Never a payload that was not written at that position.
        let first = files.first().map_or(1, |f| f.0);
        for (lsn, payload) in &records {
            let k = (lsn.get() - first) as usize;
            assert_eq!(
                written.get(k),
                Some(payload),
                "LSN {lsn} replayed a payload never written there"
            );
        }
        if intact {
            assert_eq!(
                records.len(),
                written.len(),
                "an undamaged log lost records"
            );
        }
    }

    let lsn = wal.append(b"fuzz").await.expect("append after open");
    if let Some((last, _)) = records.last() {
        assert!(lsn > *last);
    }
    wal.close().await.expect("close");
    drop(wal);
    let (_wal, replay) = Wal::open(dir.path(), config)
        .await
        .expect("reopen after append");
    let again: Vec<(Lsn, Vec<u8>)> = replay.map(|r| r.expect("replay")).collect();
    assert_eq!(again.len(), records.len() + 1);
    assert_eq!(&again[..records.len()], &records[..]);
    assert_eq!(again[records.len()], (lsn, b"fuzz".to_vec()));
}

fn recovery(skip: bool) -> WalRecovery {
    if skip {
        WalRecovery::SkipDamaged
    } else {
        WalRecovery::Strict
    }
}

libfuzzer_sys::fuzz_target!(|input: Input| {
    match input {
        Input::Raw {
            skip_damaged,
            valid_header,
            bytes,
        } => {
            let file = if valid_header {
                let mut f = format::encode_segment_header(Lsn(1)).to_vec();
                f.extend_from_slice(&bytes);
                f
            } else {
                bytes
            };
            let first = format::decode_segment_header(&file).map_or(1, |l| l.get());
            runtime().block_on(run(&[(first, file)], recovery(skip_damaged), None, false));
        }
        Input::Built {
            skip_damaged,
            first_lsn,
            payloads,
            split,
            damage,
        } => {
            let first = u64::from(first_lsn).max(1);
            let split = usize::from(split).min(payloads.len());
            let mut files = Vec::new();
            let mut seg_first = first;
            let mut parts: Vec<&[Vec<u8>]> = [&payloads[..split], &payloads[split..]]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect();
            if parts.is_empty() {
                parts.push(&[]);
            }
            for part in parts {
                let mut bytes = format::encode_segment_header(Lsn(seg_first)).to_vec();
                for (k, p) in part.iter().enumerate() {
                    format::encode_record(Lsn(seg_first + k as u64), p, &mut bytes);
                }
                files.push((seg_first, bytes));
                seg_first += part.len() as u64;
            }
            let intact = damage.is_empty();
            for d in damage {
                let (second, at) = match d {
                    Damage::Flip { second, at, .. }
                    | Damage::Set { second, at, .. }
                    | Damage::Cut { second, at } => (second, at),
                };
                let idx = if second { files.len() - 1 } else { 0 };
                let file = &mut files[idx].1;
                if file.is_empty() {
                    continue;
                }
                let at = usize::from(at) % file.len();
                match d {
                    Damage::Flip { bit, .. } => file[at] ^= 1 << (bit % 8),
                    Damage::Set { byte, .. } => file[at] = byte,
                    Damage::Cut { .. } => file.truncate(at),
                }
            }
            runtime().block_on(run(&files, recovery(skip_damaged), Some(&payloads), intact));
        }
    }
});
