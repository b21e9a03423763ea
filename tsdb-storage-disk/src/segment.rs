//! What the engine knows about one segment file: its records, its damaged regions and how to
//! reach its bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use memmap2::Mmap;
use tsdb_core::ChunkLocation;

use crate::format::{
    HEADER_LEN, Invalid, MAX_PAYLOAD, RECORD_MAGIC, RecordMeta, parse_header, parse_record,
    record_len,
};

/// File name of segment `id`: twenty decimal digits and `.seg`, so names sort like ids.
pub(crate) fn segment_file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// The segment id of a file name made by [`segment_file_name`], `None` for any other name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One verified record of a segment: 16 bytes (a million one-point chunks are 16 MB of
/// them), its metadata left in the file (the header is read again to list chunks, and the
/// checksum of that header tells it is the same one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) offset: u64,
    /// The record's length in the low 31 bits (a record holds at most [`MAX_PAYLOAD`] bytes
    /// of payload, 2^30), and whether it is live in the top one.
    len_and_live: u32,
    /// The record header's checksum, as verified when the record was written or scanned.
    pub(crate) header_crc: u32,
}

impl Entry {
    const LIVE: u32 = 1 << 31;

    /// A live record of `len` bytes at `offset`, `len` at most [`record_len`] of
    /// [`MAX_PAYLOAD`] (what the writer and the parser of records accept).
    pub(crate) fn live(offset: u64, len: u64, header_crc: u32) -> Entry {
        debug_assert!(len <= record_len(MAX_PAYLOAD));
        Entry {
            offset,
            len_and_live: (len as u32 & !Self::LIVE) | Self::LIVE,
            header_crc,
        }
    }

    /// The record's length in bytes.
    pub(crate) fn len(&self) -> u64 {
        u64::from(self.len_and_live & !Self::LIVE)
    }

    /// Whether the record is live (not deleted).
    pub(crate) fn is_live(&self) -> bool {
        self.len_and_live & Self::LIVE != 0
    }

    /// Marks the record deleted.
    fn kill(&mut self) {
        self.len_and_live &= !Self::LIVE;
    }
}

/// Bytes of a segment that hold no valid record; reads there report [`tsdb_core::Error::Corrupt`].
#[derive(Clone, Debug)]
pub(crate) struct Damage {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) reason: String,
    /// A caller deleted the location that starts here: reads say "not found" and the region
    /// no longer keeps the segment file alive.
    pub(crate) deleted: bool,
    /// What the damaged record held, when its header survived.
    pub(crate) meta: Option<RecordMeta>,
}

/// What a scan of a segment's bytes found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) entries: Vec<Entry>,
    pub(crate) damage: Vec<Damage>,
    /// End of the last valid record: the bytes after it hold no valid record.
    pub(crate) valid_end: u64,
    /// Why the bytes right after `valid_end` are not a record, when there are any.
    pub(crate) tail_reason: Option<String>,
}

/// Finds every valid record in `bytes`, the contents of segment `segment`.
///
/// A record is valid when its header and record checksums pass and it names this segment and
/// its own offset. Invalid bytes become damaged regions: after a record whose header is sound
/// but whose checksum fails, scanning goes on right after it; after a damaged header, at the
/// next offset that starts a valid record.
pub(crate) fn scan(bytes: &[u8], segment: u64) -> Scan {
    let mut scan = Scan::default();
    let len = bytes.len() as u64;
    let mut pos = 0u64;
    while pos < len {
        let here = &bytes[pos as usize..];
        match parse_record(here, segment, pos) {
            Ok(rec) => {
                scan.entries.push(Entry::live(pos, rec.len, rec.header_crc));
                pos += rec.len;
                scan.valid_end = pos;
                scan.tail_reason = None;
            }
            Err(invalid) => {
                if scan.tail_reason.is_none() {
                    scan.tail_reason = Some(invalid.to_string());
                }
                let (end, meta) = match invalid {
                    Invalid::BadChecksum { len: rec_len, .. } => (
                        pos + rec_len,
                        parse_header(here, segment, pos).ok().map(|r| r.meta),
                    ),
                    Invalid::Incomplete { .. } | Invalid::BadHeader(_) => {
                        (resync(bytes, pos + 1, segment).unwrap_or(len), None)
                    }
                };
                scan.damage.push(Damage {
                    offset: pos,
                    len: end - pos,
                    reason: invalid.to_string(),
                    deleted: false,
                    meta,
                });
                pos = end;
            }
        }
    }
    scan
}

/// The first offset at or after `from` where a valid record starts.
fn resync(bytes: &[u8], from: u64, segment: u64) -> Option<u64> {
    let mut at = from as usize;
    while at + RECORD_MAGIC.len() <= bytes.len() {
        let found = bytes[at..]
            .windows(RECORD_MAGIC.len())
            .position(|w| w == RECORD_MAGIC)?;
        at += found;
        if parse_record(&bytes[at..], segment, at as u64).is_ok() {
            return Some(at as u64);
        }
        at += 1;
    }
    None
}

/// How a segment's bytes are reached.
#[derive(Clone, Debug)]
pub(crate) enum Storage {
    /// The segment being appended to. With `map` (a writable store), a map of the size a
    /// segment may grow to, through which the records written so far are read; without it (a
    /// read-only store, beside a writer that may cut the file), or past its end, positioned
    /// reads (a copy).
    Active {
        file: Arc<File>,
        map: Option<Arc<Mmap>>,
    },
    /// A sealed segment, mapped up to its synced length (`None` when empty).
    Mapped(Option<Arc<Mmap>>),
}

impl Storage {
    /// The length of a sealed segment (`None` for the active one).
    pub(crate) fn sealed_len(&self) -> Option<u64> {
        match self {
            Storage::Mapped(map) => Some(map.as_ref().map_or(0, |m| m.len() as u64)),
            Storage::Active { .. } => None,
        }
    }
}

/// What a location points at.
pub(crate) enum Lookup<'a> {
    Live(&'a Entry),
    Damaged(&'a Damage),
    Missing,
}

/// The engine's view of one segment.
#[derive(Debug)]
pub(crate) struct SegmentState {
    pub(crate) path: Arc<str>,
    pub(crate) entries: Vec<Entry>,
    pub(crate) damage: Vec<Damage>,
    pub(crate) storage: Storage,
    pub(crate) live: usize,
}

impl SegmentState {
    pub(crate) fn new(path: Arc<str>, scan: Scan, storage: Storage) -> Self {
        let live = scan.entries.iter().filter(|e| e.is_live()).count();
        SegmentState {
            path,
            entries: scan.entries,
            damage: scan.damage,
            storage,
            live,
        }
    }

    pub(crate) fn lookup(&self, loc: &ChunkLocation) -> Lookup<'_> {
        if let Ok(i) = self.entries.binary_search_by_key(&loc.offset, |e| e.offset) {
            let e = &self.entries[i];
            return if e.is_live() && e.len() == loc.length {
                Lookup::Live(e)
            } else {
                Lookup::Missing
            };
        }
        self.damage
            .iter()
            .find(|d| !d.deleted && d.offset <= loc.offset && loc.offset - d.offset < d.len)
            .map_or(Lookup::Missing, Lookup::Damaged)
    }

    /// Marks the chunk at `loc` deleted; true when something changed.
    pub(crate) fn delete(&mut self, loc: &ChunkLocation) -> bool {
        if let Ok(i) = self.entries.binary_search_by_key(&loc.offset, |e| e.offset) {
            let e = &mut self.entries[i];
            if e.is_live() && e.len() == loc.length {
                e.kill();
                self.live -= 1;
                return true;
            }
            return false;
        }
        if let Some(d) = self
            .damage
            .iter_mut()
            .find(|d| !d.deleted && d.offset == loc.offset)
        {
            d.deleted = true;
            return true;
        }
        false
    }

    /// Turns the live chunk at `loc` into a damaged region (its bytes failed a check on read).
    /// `meta` is what the record held, when its header is still the one indexed.
    pub(crate) fn mark_damaged(
        &mut self,
        loc: &ChunkLocation,
        reason: String,
        meta: Option<RecordMeta>,
    ) {
        if let Ok(i) = self.entries.binary_search_by_key(&loc.offset, |e| e.offset) {
            let e = self.entries[i];
            if e.is_live() && e.len() == loc.length {
                self.entries.remove(i);
                self.live -= 1;
                self.damage.push(Damage {
                    offset: e.offset,
                    len: e.len(),
                    reason,
                    deleted: false,
                    meta,
                });
            }
        }
    }

    /// The metadata of live record `e` of this segment (number `id`), read from its header,
    /// which must still be the one verified when it was written or scanned.
    pub(crate) fn header(&self, id: u64, e: &Entry) -> Result<RecordMeta, String> {
        let start = usize::try_from(e.offset).map_err(|_| "offset out of range".to_owned())?;
        let end = start + HEADER_LEN;
        let mut copy = [0u8; HEADER_LEN];
        let bytes: &[u8] = match &self.storage {
            Storage::Mapped(Some(map)) | Storage::Active { map: Some(map), .. }
                if end <= map.len() =>
            {
                &map[start..end]
            }
            Storage::Active { file, .. } => {
                file.read_exact_at(&mut copy, e.offset)
                    .map_err(|err| format!("reading the record header: {err}"))?;
                &copy
            }
            Storage::Mapped(_) => return Err("record header past the end of the segment".into()),
        };
        match parse_header(bytes, id, e.offset) {
            Ok(h) if h.header_crc == e.header_crc && h.len == e.len() => Ok(h.meta),
            Ok(_) => Err("record header differs from what was indexed".into()),
            Err(why) => Err(why.to_string()),
        }
    }

    /// Whether `loc` names something [`Self::delete`] would delete.
    pub(crate) fn deletable(&self, loc: &ChunkLocation) -> bool {
        match self.entries.binary_search_by_key(&loc.offset, |e| e.offset) {
            Ok(i) => self.entries[i].is_live() && self.entries[i].len() == loc.length,
            Err(_) => self
                .damage
                .iter()
                .any(|d| !d.deleted && d.offset == loc.offset),
        }
    }

    /// True when nothing in the segment is worth keeping: no live chunk, and no damaged
    /// region that a caller may still ask about.
    pub(crate) fn is_dead(&self) -> bool {
        self.live == 0 && self.damage.iter().all(|d| d.deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::encode_record;
    use bytes::Bytes;
    use tsdb_core::{CodecId, CompressedBlock, SeriesId};

    #[test]
    fn an_entry_packs_its_length_and_liveness_in_16_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        let longest = record_len(MAX_PAYLOAD);
        for len in [1, 72, longest] {
            let mut e = Entry::live(1 << 40, len, 7);
            assert_eq!(
                (e.offset, e.len(), e.header_crc, e.is_live()),
                (1 << 40, len, 7, true)
            );
            e.kill();
            assert_eq!((e.len(), e.is_live()), (len, false));
        }
    }

    fn records(segment: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            let offset = out.len() as u64;
            let block = CompressedBlock {
                codec: CodecId(1),
                series_id: SeriesId(5),
                start_time: 1,
                end_time: 2,
                point_count: 1,
                data: Bytes::copy_from_slice(p),
            };
            encode_record(&mut out, segment, offset, &block);
        }
        out
    }

    #[test]
    fn names_round_trip_and_reject_others() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        for bad in [
            "42.seg",
            "0000000000000000004x.seg",
            "00000000000000000042.log",
            "99999999999999999999.seg",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn scan_finds_records_and_skips_a_damaged_header() {
        let mut bytes = records(3, &[b"aaaa", b"bbbbbbbb", b"cc"]);
        assert_eq!(scan(&bytes, 3).entries.len(), 3);
        // Damage the second record's header: the third is still found.
        let second = 68;
        bytes[second + 9] ^= 0x10;
        let s = scan(&bytes, 3);
        assert_eq!(
            s.entries.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![0, 140]
        );
        assert_eq!(s.damage.len(), 1);
        assert_eq!((s.damage[0].offset, s.damage[0].len), (68, 72));
        assert_eq!(s.valid_end, bytes.len() as u64);
    }

    #[test]
    fn scan_reports_torn_tail() {
        let bytes = records(0, &[b"aaaa", b"bbbbbbbb"]);
        let s = scan(&bytes[..bytes.len() - 3], 0);
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.valid_end, 68);
        assert!(s.tail_reason.is_some_and(|r| r.contains("incomplete")));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Records separated by garbage are all found, at their offsets, and nothing else
            /// is (the garbage never contains the record magic, so it cannot hide a record).
            #[test]
            fn scan_finds_every_record_between_garbage(
                parts in proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 0..200),
                     proptest::collection::vec(0u8..0x40, 0..40)),
                    0..12),
            ) {
                let mut bytes = Vec::new();
                let mut want = Vec::new();
                for (payload, garbage) in &parts {
                    let offset = bytes.len() as u64;
                    let block = CompressedBlock {
                        codec: CodecId(1),
                        series_id: SeriesId(offset),
                        start_time: 0,
                        end_time: 0,
                        point_count: 1,
                        data: Bytes::copy_from_slice(payload),
                    };
                    encode_record(&mut bytes, 4, offset, &block);
                    want.push(offset);
                    bytes.extend_from_slice(garbage);
                }
                let s = scan(&bytes, 4);
                prop_assert_eq!(s.entries.iter().map(|e| e.offset).collect::<Vec<_>>(), want);
                let covered: u64 = s.entries.iter().map(|e| e.len()).sum::<u64>()
                    + s.damage.iter().map(|d| d.len).sum::<u64>();
                prop_assert_eq!(covered, bytes.len() as u64, "records and damage tile the file");
            }

            #[test]
            fn scan_of_arbitrary_bytes_never_panics_and_finds_only_valid_records(
                bytes in proptest::collection::vec(any::<u8>(), 0..400),
            ) {
                let s = scan(&bytes, 0);
                for e in &s.entries {
                    let rec = &bytes[e.offset as usize..(e.offset + e.len()) as usize];
                    prop_assert!(parse_record(rec, 0, e.offset).is_ok());
                }
                prop_assert!(s.valid_end <= bytes.len() as u64);
            }
        }
    }
}
