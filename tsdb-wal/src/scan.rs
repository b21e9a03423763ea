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

/// A run of consecutive valid records inside a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// Offset of the run's first record.
    pub(crate) start: u64,
    /// Offset just past its last record.
    pub(crate) end: u64,
    /// LSN of its first record.
    pub(crate) first_lsn: Lsn,
    /// LSN after its last record.
    pub(crate) next_lsn: Lsn,
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
    /// The runs of valid records, in order (more than one only around skipped damage).
    pub(crate) spans: Vec<Span>,
    /// LSN after its last valid record.
    pub(crate) next_lsn: Lsn,
    /// Size on disk after repair.
    pub(crate) size: u64,
}

/// Damage that [`crate::Wal::open`] found: bytes that held, or may have held, acknowledged
/// records, and the LSNs that were lost with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalDamage {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the damage in it.
    pub offset: u64,
    /// Bytes that were skipped or cut (0 for a missing range of records).
    pub bytes: u64,
    /// First LSN lost.
    pub lost_from: Lsn,
    /// LSN after the last one lost (`None` when unknown: the damage runs to the end of the log).
    pub lost_to: Option<Lsn>,
    /// Whether the lost records were still needed (at or after
    /// [`crate::WalCheckpoint::needed_from`]); damage behind it is only a warning.
    pub needed: bool,
    /// What was wrong.
    pub reason: String,
    /// The damaged bytes as found (the first [`SALVAGE_LIMIT`] of them; empty for a missing
    /// range), so that the owner can still tell what they held, e.g. which series a damaged
    /// record named. Nothing in them is trustworthy.
    pub content: Vec<u8>,
}

/// How many damaged bytes a [`WalDamage`] keeps for salvage.
pub const SALVAGE_LIMIT: usize = 4 << 20;

impl std::fmt::Display for WalDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {} ({} bytes): {}; LSNs {}..{} lost",
            self.segment.display(),
            self.offset,
            self.bytes,
            self.reason,
            self.lost_from,
            self.lost_to
                .map_or_else(|| "end".to_owned(), |l| l.to_string())
        )
    }
}

/// What the scan decided for one segment, applied once the whole log is classified.
#[derive(Debug)]
enum Repair {
    /// Cut the file at this length.
    Truncate(u64),
    /// Rewrite an empty header.
    ResetHeader,
}

/// Result of scanning a directory.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Segments in LSN order.
    pub(crate) segments: Vec<ScannedSegment>,
    /// Damage found, needed or not (the caller logs it; needed damage is only here when the
    /// recovery policy allowed skipping it).
    pub(crate) damage: Vec<WalDamage>,
}

/// How to scan: the recovery policy and what the owner knows of the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanRules {
    pub(crate) recovery: WalRecovery,
    pub(crate) read_only: bool,
    pub(crate) needed_from: Lsn,
    pub(crate) written_before: Lsn,
    pub(crate) closed_cleanly: bool,
    pub(crate) active_segment: Lsn,
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
///
/// Two phases: every segment is classified first (nothing is written), then, if the policy
/// accepts what was found, torn tails are cut and torn headers rewritten (unless read-only).
pub(crate) fn scan_dir(dir: &Path, rules: ScanRules) -> Result<Scan> {
    let listed = list_segments(dir)?;
    let count = listed.len();
    let mut segments: Vec<ScannedSegment> = Vec::with_capacity(count);
    let mut damage: Vec<WalDamage> = Vec::new();
    let mut repairs: Vec<(PathBuf, Lsn, Repair)> = Vec::new();
    for (i, (name_lsn, path)) in listed.into_iter().enumerate() {
        let is_last = i + 1 == count;
        // Continuity with the previous segment; a damaged run at the end of the previous
        // segment ends where this one starts.
        if let Some(open) = damage.last_mut()
            && open.lost_to.is_none()
        {
            open.lost_to = Some(name_lsn);
        }
        if let Some(prev) = segments.last()
            && name_lsn != prev.next_lsn
            && damage.last().is_none_or(|d| d.lost_to != Some(name_lsn))
        {
            if name_lsn < prev.next_lsn {
                return Err(Error::corrupt(
                    path.display(),
                    0,
                    format!(
                        "segment starts at LSN {name_lsn} but the previous segment already reaches LSN {}",
                        prev.next_lsn
                    ),
                ));
            }
            damage.push(WalDamage {
                segment: path.clone(),
                offset: 0,
                bytes: 0,
                lost_from: prev.next_lsn,
                lost_to: Some(name_lsn),
                needed: false,
                content: Vec::new(),
                reason: format!(
                    "records are missing between segments: the previous segment ends before LSN {}, this one starts at LSN {name_lsn}",
                    prev.next_lsn
                ),
            });
        }
        let found = scan_segment(&path, name_lsn, is_last, rules.written_before)?;
        damage.extend(found.damage);
        if let Some(repair) = found.repair {
            repairs.push((path.clone(), name_lsn, repair));
        }
        if let Some(seg) = found.segment {
            segments.push(seg);
        }
    }
    // The segment the owner saw being appended to is gone: records appended to it since the
    // owner looked may be lost (truncation never deletes the active segment).
    let active = rules.active_segment;
    if active.get() > 0 && !segments.iter().any(|s| s.first_lsn == active) {
        let next = segments.iter().map(|s| s.first_lsn).find(|&f| f > active);
        if !damage
            .iter()
            .any(|d| d.lost_from <= active && d.lost_to.is_none_or(|t| t > active))
        {
            damage.push(WalDamage {
                segment: dir.join(segment_file_name(active)),
                offset: 0,
                bytes: 0,
                lost_from: active,
                lost_to: next,
                needed: false,
                content: Vec::new(),
                reason: "the segment that was being appended to at the last checkpoint is missing (removed)".to_owned(),
            });
        }
    }
    // The log ends before what the owner knows was written (a cut at a record boundary, the
    // newest segment removed).
    let end = segments.last().map_or(Lsn(1), |s| s.next_lsn);
    if end < rules.written_before && !damage.iter().any(|d| d.lost_to.is_none()) {
        let (segment, offset) = segments.last().map_or_else(
            || (dir.to_path_buf(), 0),
            |s| {
                (
                    s.path.clone(),
                    s.spans
                        .last()
                        .map_or(SEGMENT_HEADER_LEN as u64, |sp| sp.end),
                )
            },
        );
        damage.push(WalDamage {
            segment,
            offset,
            bytes: 0,
            lost_from: end,
            lost_to: Some(rules.written_before),
            needed: false,
            content: Vec::new(),
            reason: format!(
                "the log ends at LSN {end}, before LSN {}, which its owner recorded as written (a cut file or a removed segment)",
                rules.written_before
            ),
        });
    }
    for d in &mut damage {
        if d.lost_to.is_none() && rules.closed_cleanly {
            // Nothing was appended after the clean close that recorded `written_before`.
            d.lost_to = Some(rules.written_before.max(d.lost_from));
        }
        d.needed = d.lost_to.is_none_or(|to| to > rules.needed_from);
    }
    if rules.recovery == WalRecovery::Strict
        && let Some(d) = damage.iter().find(|d| d.needed)
    {
        return Err(Error::corrupt(
            d.segment.display(),
            d.offset,
            format!(
                "{}; LSNs from {} lost (acknowledged records may be damaged; open with WalRecovery::SkipDamaged to keep the rest)",
                d.reason, d.lost_from
            ),
        ));
    }
    for d in &damage {
        if d.needed {
            tracing::warn!(damage = %d, "WAL: skipping damaged records (recovery = SkipDamaged)");
        } else {
            tracing::warn!(damage = %d, "WAL: damage in records no longer needed (behind the checkpoint)");
        }
    }
    if !rules.read_only {
        for (path, first, repair) in &repairs {
            match repair {
                Repair::Truncate(len) => truncate_file(path, *len)?,
                Repair::ResetHeader => reset_segment(path, *first)?,
            }
        }
    }
    Ok(Scan { segments, damage })
}

/// What [`scan_segment`] found in one file.
struct SegmentScan {
    segment: Option<ScannedSegment>,
    damage: Vec<WalDamage>,
    repair: Option<Repair>,
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
    written_before: Lsn,
) -> Result<SegmentScan> {
    let (_, bytes) = read_all(path)?;
    let file_len = bytes.len() as u64;
    let mut damage = Vec::new();
    let mut repair = None;

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
            if torn_creation {
                tracing::warn!(segment = %path.display(), offset = 0, bytes_dropped = file_len, %reason,
                    "WAL: rewriting the torn header of the last segment (torn segment creation)");
            } else {
                damage.push(WalDamage {
                    segment: path.to_path_buf(),
                    offset: 0,
                    bytes: file_len,
                    lost_from: name_lsn,
                    lost_to: None,
                    needed: false,
                    content: bytes[..bytes.len().min(SALVAGE_LIMIT)].to_vec(),
                    reason: format!("damaged segment header: {reason}"),
                });
            }
            if !is_last {
                return Ok(SegmentScan {
                    segment: None,
                    damage,
                    repair: None,
                });
            }
            let file = File::open(path).map_err(|e| Error::io(path.display(), e))?;
            return Ok(SegmentScan {
                segment: Some(ScannedSegment {
                    first_lsn: name_lsn,
                    path: path.to_path_buf(),
                    file,
                    spans: Vec::new(),
                    next_lsn: name_lsn,
                    size: SEGMENT_HEADER_LEN as u64,
                }),
                damage,
                repair: Some(Repair::ResetHeader),
            });
        }
    }

    // The records, in runs separated by damage.
    let mut spans: Vec<Span> = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    let mut next = name_lsn;
    let mut run = (offset, next);
    let mut valid_end = SEGMENT_HEADER_LEN as u64;
    let mut broken = false;
    while offset < bytes.len() {
        let decoded = format::decode_record(&bytes[offset..]);
        let problem = match decoded {
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
        if run.0 < offset {
            spans.push(Span {
                start: run.0 as u64,
                end: offset as u64,
                first_lsn: run.1,
                next_lsn: next,
            });
        }
        if let Some((at, lsn)) = find_valid_record(&bytes, offset + 1, next) {
            // Damage with valid records after it: skip just the damaged bytes.
            damage.push(WalDamage {
                segment: path.to_path_buf(),
                offset: offset as u64,
                bytes: (at - offset) as u64,
                lost_from: next,
                lost_to: Some(lsn),
                needed: false,
                content: bytes[offset..at.min(offset + SALVAGE_LIMIT)].to_vec(),
                reason: format!("{problem}; a valid record with LSN {lsn} follows at offset {at}"),
            });
            offset = at;
            next = lsn;
            run = (offset, next);
            continue;
        }
        let tail = &bytes[offset..];
        let zeros = tail.iter().all(|&b| b == 0);
        let torn = zeros
            || matches!(decoded, Decoded::Incomplete)
            || (matches!(decoded, Decoded::ChecksumMismatch { .. })
                && cut_at_a_page(&bytes, offset));
        if is_last && torn && next >= written_before {
            // The remains of a write that was never acknowledged, or the zeros the log writes
            // ahead of its records.
            if zeros {
                tracing::info!(segment = %path.display(), offset, bytes_dropped = tail.len(),
                    "WAL: cutting the zeros after the last record (space written ahead of appends)");
            } else {
                tracing::warn!(segment = %path.display(), offset, bytes_dropped = tail.len(), %problem,
                    "WAL: cutting a torn tail");
            }
        } else {
            let reason = if !is_last {
                format!("{problem}; the segment is not the last one")
            } else if torn {
                format!(
                    "{problem} at the end of the log, but records up to LSN {} were recorded as written",
                    written_before.get().saturating_sub(1)
                )
            } else {
                format!(
                    "{problem}: a complete record is damaged at the end of the log (bit rot or tampering; after a power loss, possibly a torn unacknowledged write)"
                )
            };
            // How far the loss runs is not known here: to the next segment's first LSN
            // (scan_dir fills it in) or, in the last segment, to the end of the log.
            damage.push(WalDamage {
                segment: path.to_path_buf(),
                offset: offset as u64,
                bytes: tail.len() as u64,
                lost_from: next,
                lost_to: None,
                needed: false,
                content: tail[..tail.len().min(SALVAGE_LIMIT)].to_vec(),
                reason,
            });
        }
        broken = true;
        break;
    }
    if !broken && run.0 < offset {
        spans.push(Span {
            start: run.0 as u64,
            end: valid_end,
            first_lsn: run.1,
            next_lsn: next,
        });
    }
    if is_last && valid_end < file_len {
        repair = Some(Repair::Truncate(valid_end));
    }
    let size = if is_last { valid_end } else { file_len };
    // Reopen for replay: the handle stays valid even if the file is deleted later.
    let file = File::open(path).map_err(|e| Error::io(path.display(), e))?;
    Ok(SegmentScan {
        segment: Some(ScannedSegment {
            first_lsn: name_lsn,
            path: path.to_path_buf(),
            file,
            spans,
            next_lsn: next,
            size,
        }),
        damage,
        repair,
    })
}

/// The granularity at which an interrupted write(2) stops copying into the page cache (a
/// process killed mid-write), and at which pages reach the disk.
const PAGE: usize = 4096;

/// Whether the record at `at` (its header intact enough to give a length that fits in the
/// file) looks like a write interrupted at a page boundary inside it, into the zeros the log
/// writes ahead of its records: everything from some page boundary inside the record to the
/// end of the file is zero.
///
/// A complete record damaged later (bit rot) reads the same only when its own bytes happen
/// to be zero from a page boundary inside it to its end.
fn cut_at_a_page(bytes: &[u8], at: usize) -> bool {
    let Some(header) = bytes.get(at..at + RECORD_HEADER_LEN) else {
        return false;
    };
    let mut h = [0u8; RECORD_HEADER_LEN];
    h.copy_from_slice(header);
    let end = at + RECORD_HEADER_LEN + format::header_len_field(&h) as usize;
    // Where the run of zeros that ends the file starts.
    let zeros_from = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let boundary = zeros_from.max(at + 1).next_multiple_of(PAGE);
    boundary < end
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
