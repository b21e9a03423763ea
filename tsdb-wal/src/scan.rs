//! Opening a WAL directory: listing segments, validating every record, repairing a torn tail.
//! Everything here is blocking I/O; [`crate::Wal::open`] runs it on the blocking pool.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tsdb_core::{Error, Result};

use crate::format::{self, Decoded, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::{Lsn, WalRecovery};

/// Extension of segment files.
pub(crate) const SEGMENT_EXT: &str = "wal";

/// The file name of the segment whose first record has LSN `first`.
pub(crate) fn segment_file_name(first: Lsn) -> String {
    format!("{:020}.{SEGMENT_EXT}", first.get())
}

/// Parses a segment file name back into its first LSN.
fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(Lsn)
}

/// A segment as found (and possibly repaired) by the scan.
#[derive(Debug)]
pub(crate) struct ScannedSegment {
    /// LSN of its first record (from its name and header).
    pub(crate) first_lsn: Lsn,
    /// Its path.
    pub(crate) path: PathBuf,
    /// Read handle, kept for replay.
    pub(crate) file: File,
    /// End of the last valid record (records live in `SEGMENT_HEADER_LEN..valid_end`).
    pub(crate) valid_end: u64,
    /// LSN after its last valid record.
    pub(crate) next_lsn: Lsn,
    /// Size on disk after repair.
    pub(crate) size: u64,
}

/// Result of scanning a directory.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Segments in LSN order.
    pub(crate) segments: Vec<ScannedSegment>,
}

/// Lists `*.wal` segment files of `dir`, sorted by first LSN.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir.display(), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_segment_file_name(name) {
            Some(lsn) => out.push((lsn, entry.path())),
            None if name.ends_with(".wal") => {
                tracing::warn!(file = %entry.path().display(), "ignoring a .wal file whose name is not <20-digit LSN>.wal");
            }
            None => {}
        }
    }
    out.sort_by_key(|(lsn, _)| *lsn);
    Ok(out)
}

/// Scans every segment of `dir`; see the README's "Recovery" section for the rules.
pub(crate) fn scan_dir(dir: &Path, recovery: WalRecovery) -> Result<Scan> {
    let listed = list_segments(dir)?;
    let count = listed.len();
    let mut segments: Vec<ScannedSegment> = Vec::with_capacity(count);
    for (i, (name_lsn, path)) in listed.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let expected = segments.last().map(|s| s.next_lsn);
        if let Some(seg) = scan_segment(&path, name_lsn, is_last, expected, recovery)? {
            segments.push(seg);
        }
    }
    Ok(Scan { segments })
}

fn read_all(path: &Path) -> Result<(File, Vec<u8>)> {
    let mut file = File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io(path.display(), e))?;
    Ok((file, bytes))
}

/// Cuts the file at `len` and makes the cut durable.
fn truncate_file(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path.display(), e))?;
    f.set_len(len).map_err(|e| Error::io(path.display(), e))?;
    f.sync_all().map_err(|e| Error::io(path.display(), e))
}

/// Rewrites a segment as an empty one (a fresh header for `first`), durably.
fn reset_segment(path: &Path, first: Lsn) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path.display(), e))?;
    f.set_len(0).map_err(|e| Error::io(path.display(), e))?;
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.write_all(&format::encode_segment_header(first)))
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(path.display(), e))
}

fn scan_segment(
    path: &Path,
    name_lsn: Lsn,
    is_last: bool,
    expected: Option<Lsn>,
    recovery: WalRecovery,
) -> Result<Option<ScannedSegment>> {
    let (_, mut bytes) = read_all(path)?;
    let mut file_len = bytes.len() as u64;

    // The header.
    match format::decode_segment_header(&bytes) {
        Ok(first) if first == name_lsn => {}
        bad => {
            let reason = match bad {
                Ok(first) => format!(
                    "segment header says first LSN {first} but the file name says {name_lsn}"
                ),
                Err(e) => e.to_string(),
            };
            // A segment is created then its header written and synced before any record goes
            // in, so a last segment no longer than a header is a torn creation: nothing in it
            // was ever acknowledged.
            let torn_creation = is_last && bytes.len() <= SEGMENT_HEADER_LEN;
            if torn_creation || (is_last && recovery == WalRecovery::SkipDamaged) {
                tracing::warn!(segment = %path.display(), offset = 0, bytes_dropped = file_len, %reason,
                    "WAL: rewriting the damaged header of the last segment (torn segment creation)");
                reset_segment(path, name_lsn)?;
                // Scan what is on disk now: a header and no records.
                bytes = format::encode_segment_header(name_lsn).to_vec();
                file_len = bytes.len() as u64;
            } else if recovery == WalRecovery::SkipDamaged {
                tracing::warn!(segment = %path.display(), %reason, bytes_skipped = file_len,
                    "WAL: skipping a segment with a damaged header (recovery = SkipDamaged)");
                return Ok(None);
            } else {
                return Err(Error::corrupt(path.display(), 0, reason));
            }
        }
    }
    let first_lsn = name_lsn;

    // Continuity with the previous segment.
    if let Some(expected) = expected
        && first_lsn != expected
    {
        let reason = format!(
            "segment starts at LSN {first_lsn} but the previous segment ends before LSN {expected}"
        );
        if recovery == WalRecovery::SkipDamaged && first_lsn > expected {
            tracing::warn!(segment = %path.display(), missing_from = %expected, missing_to = %first_lsn,
                "WAL: records are missing between segments (recovery = SkipDamaged)");
        } else {
            return Err(Error::corrupt(path.display(), 0, reason));
        }
    }

    // The records.
    let mut offset = SEGMENT_HEADER_LEN;
    let mut next = first_lsn;
    let mut valid_end = file_len.min(SEGMENT_HEADER_LEN as u64);
    while offset < bytes.len() {
        let problem = match format::decode_record(&bytes[offset..]) {
            Decoded::Record {
                lsn, encoded_len, ..
            } if lsn == next => {
                offset += encoded_len;
                next = Lsn(next.get().wrapping_add(1));
                valid_end = offset as u64;
                continue;
            }
            Decoded::Record { lsn, .. } => format!("record has LSN {lsn}, expected {next}"),
            Decoded::Incomplete => "record is cut short".to_string(),
            Decoded::ChecksumMismatch { stored_lsn } => {
                format!("record checksum mismatch (stored LSN {stored_lsn}, expected {next})")
            }
        };
        let follower = find_valid_record(&bytes, offset + 1, next);
        let dropped = file_len - offset as u64;
        if is_last && follower.is_none() {
            tracing::warn!(segment = %path.display(), offset, bytes_dropped = dropped, %problem,
                "WAL: truncating a torn tail");
            truncate_file(path, offset as u64)?;
        } else {
            let context = match follower {
                Some((at, lsn)) => {
                    format!("; a valid record with LSN {lsn} follows at offset {at}")
                }
                None => "; the segment is not the last one".to_string(),
            };
            if recovery != WalRecovery::SkipDamaged {
                return Err(Error::corrupt(
                    path.display(),
                    offset as u64,
                    format!("{problem}{context} (acknowledged records may be damaged)"),
                ));
            }
            if is_last {
                tracing::warn!(segment = %path.display(), offset, bytes_dropped = dropped, %problem, %context,
                    "WAL: truncating the last segment at a damaged record (recovery = SkipDamaged)");
                truncate_file(path, offset as u64)?;
            } else {
                tracing::warn!(segment = %path.display(), offset, bytes_skipped = dropped, %problem, %context,
                    "WAL: skipping the rest of a damaged segment (recovery = SkipDamaged)");
            }
        }
        break;
    }
    let size = if is_last {
        valid_end.max(SEGMENT_HEADER_LEN as u64)
    } else {
        file_len
    };
    // Reopen for replay: the handle stays valid even if the file is deleted later.
    let file = File::open(path).map_err(|e| Error::io(path.display(), e))?;
    Ok(Some(ScannedSegment {
        first_lsn,
        path: path.to_path_buf(),
        file,
        valid_end,
        next_lsn: next,
        size,
    }))
}

/// Looks for a record with a valid checksum and an LSN `>= min_lsn` starting anywhere in
/// `bytes[from..]`. Used to tell a torn tail (nothing valid after the damage) from damage in
/// the middle of acknowledged data.
fn find_valid_record(bytes: &[u8], from: usize, min_lsn: Lsn) -> Option<(usize, Lsn)> {
    let end = bytes.len();
    if end < RECORD_HEADER_LEN {
        return None;
    }
    // A record after `from` has an LSN at most this far above `min_lsn`.
    let max_lsn = min_lsn
        .get()
        .saturating_add((end / RECORD_HEADER_LEN) as u64);
    for at in from..=end - RECORD_HEADER_LEN {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h.copy_from_slice(&bytes[at..at + RECORD_HEADER_LEN]);
        let lsn = format::header_lsn_field(&h);
        if lsn < min_lsn.get() || lsn > max_lsn {
            continue;
        }
        let len = format::header_len_field(&h) as usize;
        let Some(payload) = bytes.get(at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + len) else {
            continue;
        };
        if format::record_checksum(Lsn(lsn), payload) == Some(format::header_crc_field(&h)) {
            return Some((at, Lsn(lsn)));
        }
    }
    None
}
