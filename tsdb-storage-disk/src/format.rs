//! The bytes on disk: chunk records in segment files and entries of the deletion log.
//!
//! Everything is little-endian. The layouts are written down byte by byte in the crate README;
//! keep the two in step.

use tsdb_core::{CodecId, CompressedBlock, SeriesId};

/// First four bytes of every chunk record.
pub(crate) const RECORD_MAGIC: [u8; 4] = *b"GTSC";
/// The record format this crate writes and reads.
pub(crate) const FORMAT_VERSION: u16 = 1;
/// Bytes before the payload: the header, ending with its own checksum.
pub(crate) const HEADER_LEN: usize = 60;
/// Bytes of the header covered by the header checksum.
const HEADER_CRC_AT: usize = 56;
/// Bytes after the payload: the record checksum.
pub(crate) const TRAILER_LEN: usize = 4;
/// Fixed bytes of a record: header and trailer.
pub(crate) const RECORD_OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;
/// Largest payload a record may carry (1 GiB).
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// First four bytes of every deletion log entry.
pub(crate) const DELETION_MAGIC: [u8; 4] = *b"GDEL";
/// Size of one deletion log entry.
pub(crate) const DELETION_ENTRY_LEN: usize = 32;

/// The metadata of one record, as its header states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    pub(crate) codec: CodecId,
    pub(crate) series_id: SeriesId,
    pub(crate) start_time: i64,
    pub(crate) end_time: i64,
    pub(crate) point_count: u32,
}

impl RecordMeta {
    #[cfg(test)]
    pub(crate) fn of(block: &CompressedBlock) -> Self {
        RecordMeta {
            codec: block.codec,
            series_id: block.series_id,
            start_time: block.start_time,
            end_time: block.end_time,
            point_count: block.point_count,
        }
    }
}

/// Total length of the record that carries `payload_len` bytes.
pub(crate) fn record_len(payload_len: usize) -> u64 {
    (RECORD_OVERHEAD + payload_len) as u64
}

/// Appends the record of `block`, stored in `segment` at `offset`, to `out`.
///
/// The caller has checked `block.data.len() <= MAX_PAYLOAD`.
pub(crate) fn encode_record(out: &mut Vec<u8>, segment: u64, offset: u64, block: &CompressedBlock) {
    let start = out.len();
    out.reserve(RECORD_OVERHEAD + block.data.len());
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&block.codec.0.to_le_bytes());
    out.extend_from_slice(&segment.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&block.series_id.0.to_le_bytes());
    out.extend_from_slice(&block.start_time.to_le_bytes());
    out.extend_from_slice(&block.end_time.to_le_bytes());
    out.extend_from_slice(&block.point_count.to_le_bytes());
    out.extend_from_slice(&(block.data.len() as u32).to_le_bytes());
    let header_crc = crc32fast::hash(&out[start..start + HEADER_CRC_AT]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&block.data);
    let record_crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&record_crc.to_le_bytes());
}

/// The header checksum of a record [`encode_record`] wrote at the start of `record`.
pub(crate) fn header_crc_of(record: &[u8]) -> u32 {
    u32_at(record, HEADER_CRC_AT)
}

/// Why bytes at some offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// The bytes end before the record does: what a crash in the middle of a write leaves.
    Incomplete { have: u64, need: u64 },
    /// The header is not one this crate wrote for this place (magic, version, header
    /// checksum, segment, offset or payload length is wrong).
    BadHeader(String),
    /// The header is sound but the record checksum fails: `len` is the length the header gives.
    BadChecksum {
        len: u64,
        stored: u32,
        computed: u32,
    },
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Incomplete { have, need } => {
                write!(f, "incomplete record: {have} bytes present, {need} needed")
            }
            Invalid::BadHeader(why) => write!(f, "bad record header: {why}"),
            Invalid::BadChecksum {
                len,
                stored,
                computed,
            } => write!(
                f,
                "record of {len} bytes fails its checksum (stored {stored:#010x}, computed {computed:#010x})"
            ),
        }
    }
}

/// A record whose header and checksum were verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) meta: RecordMeta,
    /// The header's own checksum: a fingerprint of the header (metadata, segment, offset).
    pub(crate) header_crc: u32,
    /// Total record length, header to trailer.
    pub(crate) len: u64,
}

impl Record {
    /// Where the payload lies, relative to the record's first byte.
    pub(crate) fn payload_range(&self) -> std::ops::Range<usize> {
        HEADER_LEN..self.len as usize - TRAILER_LEN
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks the record header at the start of `bytes`, which must belong to `segment` at
/// `offset`. Returns the metadata and the total record length; the payload is not checked.
pub(crate) fn parse_header(bytes: &[u8], segment: u64, offset: u64) -> Result<Record, Invalid> {
    if bytes.len() < HEADER_LEN {
        // A prefix of the magic is what a torn header looks like; anything else is garbage.
        let n = bytes.len().min(RECORD_MAGIC.len());
        if bytes[..n] != RECORD_MAGIC[..n] {
            return Err(Invalid::BadHeader("magic mismatch".into()));
        }
        return Err(Invalid::Incomplete {
            have: bytes.len() as u64,
            need: HEADER_LEN as u64,
        });
    }
    let h = &bytes[..HEADER_LEN];
    if h[..4] != RECORD_MAGIC {
        return Err(Invalid::BadHeader("magic mismatch".into()));
    }
    let stored = u32_at(h, HEADER_CRC_AT);
    let computed = crc32fast::hash(&h[..HEADER_CRC_AT]);
    if stored != computed {
        return Err(Invalid::BadHeader(format!(
            "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    let version = u16_at(h, 4);
    if version != FORMAT_VERSION {
        return Err(Invalid::BadHeader(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    let seg = u64_at(h, 8);
    if seg != segment {
        return Err(Invalid::BadHeader(format!(
            "record names segment {seg}, found in segment {segment}"
        )));
    }
    let off = u64_at(h, 16);
    if off != offset {
        return Err(Invalid::BadHeader(format!(
            "record names offset {off}, found at offset {offset}"
        )));
    }
    let payload_len = u32_at(h, 52) as usize;
    if payload_len > MAX_PAYLOAD {
        return Err(Invalid::BadHeader(format!(
            "payload length {payload_len} exceeds the limit {MAX_PAYLOAD}"
        )));
    }
    let meta = RecordMeta {
        codec: CodecId(u16_at(h, 6)),
        series_id: SeriesId(u64_at(h, 24)),
        start_time: u64_at(h, 32) as i64,
        end_time: u64_at(h, 40) as i64,
        point_count: u32_at(h, 48),
    };
    Ok(Record {
        meta,
        header_crc: stored,
        len: record_len(payload_len),
    })
}

/// Checks the whole record at the start of `bytes` (header and checksum).
pub(crate) fn parse_record(bytes: &[u8], segment: u64, offset: u64) -> Result<Record, Invalid> {
    let rec = parse_header(bytes, segment, offset)?;
    let len = rec.len as usize;
    if bytes.len() < len {
        return Err(Invalid::Incomplete {
            have: bytes.len() as u64,
            need: rec.len,
        });
    }
    check_record_crc(&bytes[..len])?;
    Ok(rec)
}

/// Checks the trailing checksum of a complete record.
pub(crate) fn check_record_crc(record: &[u8]) -> Result<(), Invalid> {
    let body = record.len() - TRAILER_LEN;
    let stored = u32_at(record, body);
    let computed = crc32fast::hash(&record[..body]);
    if stored != computed {
        return Err(Invalid::BadChecksum {
            len: record.len() as u64,
            stored,
            computed,
        });
    }
    Ok(())
}

/// One entry of the deletion log: the chunk at this location is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Deletion {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) length: u64,
}

/// Appends the entry of `d` to `out`.
pub(crate) fn encode_deletion(out: &mut Vec<u8>, d: Deletion) {
    let start = out.len();
    out.extend_from_slice(&DELETION_MAGIC);
    out.extend_from_slice(&d.segment.to_le_bytes());
    out.extend_from_slice(&d.offset.to_le_bytes());
    out.extend_from_slice(&d.length.to_le_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Decodes one deletion entry (`bytes.len() == DELETION_ENTRY_LEN`); `None` when it fails its
/// magic or checksum.
pub(crate) fn decode_deletion(bytes: &[u8]) -> Option<Deletion> {
    if bytes.len() != DELETION_ENTRY_LEN || bytes[..4] != DELETION_MAGIC {
        return None;
    }
    if crc32fast::hash(&bytes[..28]) != u32_at(bytes, 28) {
        return None;
    }
    Some(Deletion {
        segment: u64_at(bytes, 4),
        offset: u64_at(bytes, 12),
        length: u64_at(bytes, 20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn block(data: &[u8]) -> CompressedBlock {
        CompressedBlock {
            codec: CodecId(7),
            series_id: SeriesId(0x0102_0304_0506_0708),
            start_time: -5,
            end_time: i64::MAX,
            point_count: 3,
            data: Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn record_round_trips_and_has_documented_layout() {
        let b = block(b"hello");
        let mut out = Vec::new();
        encode_record(&mut out, 9, 128, &b);
        assert_eq!(out.len() as u64, record_len(5));
        assert_eq!(&out[..4], b"GTSC");
        assert_eq!(u16_at(&out, 4), 1);
        assert_eq!(u16_at(&out, 6), 7);
        assert_eq!(u64_at(&out, 8), 9);
        assert_eq!(u64_at(&out, 16), 128);
        assert_eq!(u64_at(&out, 24), 0x0102_0304_0506_0708);
        assert_eq!(u64_at(&out, 32) as i64, -5);
        assert_eq!(u64_at(&out, 40) as i64, i64::MAX);
        assert_eq!(u32_at(&out, 48), 3);
        assert_eq!(u32_at(&out, 52), 5);
        assert_eq!(&out[60..65], b"hello");
        let rec = parse_record(&out, 9, 128).expect("valid record");
        assert_eq!(rec.meta, RecordMeta::of(&b));
        assert_eq!(&out[rec.payload_range()], b"hello");
        assert!(matches!(
            parse_record(&out, 8, 128),
            Err(Invalid::BadHeader(_))
        ));
        assert!(matches!(
            parse_record(&out, 9, 0),
            Err(Invalid::BadHeader(_))
        ));
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_bit_flip_is_caught() {
        let mut out = Vec::new();
        encode_record(&mut out, 1, 0, &block(&[0xAB; 40]));
        for cut in 0..out.len() {
            assert!(
                matches!(
                    parse_record(&out[..cut], 1, 0),
                    Err(Invalid::Incomplete { .. })
                ),
                "prefix of {cut} bytes"
            );
        }
        for bit in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(parse_record(&bad, 1, 0).is_err(), "bit {bit} flipped");
        }
    }

    #[test]
    fn deletion_entries_round_trip_and_reject_damage() {
        let d = Deletion {
            segment: 3,
            offset: 4096,
            length: 1088,
        };
        let mut out = Vec::new();
        encode_deletion(&mut out, d);
        assert_eq!(out.len(), DELETION_ENTRY_LEN);
        assert_eq!(decode_deletion(&out), Some(d));
        for bit in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_deletion(&bad), None, "bit {bit} flipped");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn any_block() -> impl Strategy<Value = CompressedBlock> {
            (
                any::<u16>(),
                any::<u64>(),
                any::<i64>(),
                any::<i64>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..600),
            )
                .prop_map(|(codec, series, start, end, points, data)| {
                    CompressedBlock {
                        codec: CodecId(codec),
                        series_id: SeriesId(series),
                        start_time: start,
                        end_time: end,
                        point_count: points,
                        data: Bytes::from(data),
                    }
                })
        }

        proptest! {
            #[test]
            fn records_round_trip(block in any_block(), segment in any::<u64>(), offset in any::<u64>()) {
                let mut out = Vec::new();
                encode_record(&mut out, segment, offset, &block);
                prop_assert_eq!(out.len() as u64, record_len(block.data.len()));
                let rec = parse_record(&out, segment, offset).expect("valid");
                prop_assert_eq!(rec.meta, RecordMeta::of(&block));
                prop_assert_eq!(&out[rec.payload_range()], &block.data[..]);
            }

            #[test]
            fn decoding_arbitrary_bytes_never_panics_and_is_exact(
                bytes in proptest::collection::vec(any::<u8>(), 0..300),
                segment in 0u64..3,
                offset in 0u64..3,
            ) {
                if let Ok(rec) = parse_record(&bytes, segment, offset) {
                    // Whatever decodes is exactly what the encoder writes for it.
                    let block = CompressedBlock {
                        codec: rec.meta.codec,
                        series_id: rec.meta.series_id,
                        start_time: rec.meta.start_time,
                        end_time: rec.meta.end_time,
                        point_count: rec.meta.point_count,
                        data: Bytes::copy_from_slice(&bytes[rec.payload_range()]),
                    };
                    let mut again = Vec::new();
                    encode_record(&mut again, segment, offset, &block);
                    prop_assert_eq!(&again[..], &bytes[..rec.len as usize]);
                }
                let _ = decode_deletion(&bytes[..bytes.len().min(DELETION_ENTRY_LEN)]);
            }

            #[test]
            fn deletions_round_trip(segment in any::<u64>(), offset in any::<u64>(), length in any::<u64>()) {
                let d = Deletion { segment, offset, length };
                let mut out = Vec::new();
                encode_deletion(&mut out, d);
                prop_assert_eq!(decode_deletion(&out), Some(d));
            }
        }
    }
}
