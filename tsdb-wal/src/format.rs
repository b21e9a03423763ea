//! The on-disk format, byte by byte (see the crate README for the full description).
//!
//! Every integer is little-endian.
//!
//! Segment header, [`SEGMENT_HEADER_LEN`] bytes:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic [`SEGMENT_MAGIC`] |
//! | 8 | 2 | format version, [`FORMAT_VERSION`] |
//! | 10 | 2 | flags, 0 |
//! | 12 | 8 | LSN of the segment's first record |
//! | 20 | 4 | CRC-32 (IEEE) of bytes 0..20 |
//!
//! Record, [`RECORD_HEADER_LEN`] bytes then the payload:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | payload length `len` |
//! | 4 | 4 | CRC-32 (IEEE) of `lsn (8 bytes) ‖ len (4 bytes) ‖ payload` |
//! | 8 | 8 | the record's LSN |
//! | 16 | `len` | payload |

use crate::Lsn;

/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"GTSDBWAL";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 24;
/// Size of a record's header (length, checksum, LSN) in bytes.
pub const RECORD_HEADER_LEN: usize = 16;
/// LSNs are in `1..MAX_LSN`; a segment header with a first LSN outside is invalid, and an
/// append that would reach it fails. (2^63: unreachable in practice, it keeps arithmetic on
/// LSNs read from disk far from overflow.)
pub const MAX_LSN: u64 = 1 << 63;

/// Why a segment header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes.
    TooShort,
    /// The magic bytes are not [`SEGMENT_MAGIC`].
    BadMagic,
    /// The header checksum does not match.
    BadChecksum,
    /// A format version this crate does not read.
    UnsupportedVersion(u16),
    /// The first LSN is 0 or not below [`MAX_LSN`].
    LsnOutOfRange(u64),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::TooShort => write!(
                f,
                "segment header is shorter than {SEGMENT_HEADER_LEN} bytes"
            ),
            HeaderError::BadMagic => write!(f, "segment header has the wrong magic bytes"),
            HeaderError::BadChecksum => write!(f, "segment header checksum mismatch"),
            HeaderError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "segment format version {v} is not supported (this build reads {FORMAT_VERSION})"
                )
            }
            HeaderError::LsnOutOfRange(l) => {
                write!(f, "segment first LSN {l} is outside 1..{MAX_LSN}")
            }
        }
    }
}

/// Encodes the header of a segment whose first record has LSN `first_lsn`.
pub fn encode_segment_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&0u16.to_le_bytes());
    h[12..20].copy_from_slice(&first_lsn.get().to_le_bytes());
    let crc = crc32fast::hash(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a segment header from the start of `bytes`, returning the segment's first LSN.
pub fn decode_segment_header(bytes: &[u8]) -> Result<Lsn, HeaderError> {
    let h = bytes
        .get(..SEGMENT_HEADER_LEN)
        .ok_or(HeaderError::TooShort)?;
    if h[0..8] != SEGMENT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    if crc32fast::hash(&h[0..20]) != read_u32(h, 20) {
        return Err(HeaderError::BadChecksum);
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let first = read_u64(h, 12);
    if first == 0 || first >= MAX_LSN {
        return Err(HeaderError::LsnOutOfRange(first));
    }
    Ok(Lsn(first))
}

/// The checksum stored in a record: CRC-32 of `lsn ‖ len ‖ payload`.
///
/// Returns `None` when the payload is longer than `u32::MAX` bytes (it cannot be a record).
pub fn record_checksum(lsn: Lsn, payload: &[u8]) -> Option<u32> {
    let len = u32::try_from(payload.len()).ok()?;
    let mut h = crc32fast::Hasher::new();
    h.update(&lsn.get().to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(payload);
    Some(h.finalize())
}

/// Appends the encoded record `(lsn, payload)` to `out`.
///
/// Returns `false` (and appends nothing) when the payload is longer than `u32::MAX` bytes.
pub fn encode_record(lsn: Lsn, payload: &[u8], out: &mut Vec<u8>) -> bool {
    let (Ok(len), Some(crc)) = (u32::try_from(payload.len()), record_checksum(lsn, payload)) else {
        return false;
    };
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&lsn.get().to_le_bytes());
    out.extend_from_slice(payload);
    true
}

/// What [`decode_record`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A record whose checksum matches.
    Record {
        /// The record's LSN.
        lsn: Lsn,
        /// The payload, borrowed from the buffer.
        payload: &'a [u8],
        /// Bytes the record occupies (header and payload).
        encoded_len: usize,
    },
    /// The buffer ends before the record does (a header or payload cut short).
    Incomplete,
    /// The record is complete but its checksum does not match: its bytes are damaged.
    ChecksumMismatch {
        /// The LSN as stored (not trustworthy).
        stored_lsn: u64,
    },
}

/// Decodes the record at the start of `buf`. Never panics, whatever the bytes.
pub fn decode_record(buf: &[u8]) -> Decoded<'_> {
    let Some(h) = buf.get(..RECORD_HEADER_LEN) else {
        return Decoded::Incomplete;
    };
    let len = read_u32(h, 0);
    let crc = read_u32(h, 4);
    let lsn = read_u64(h, 8);
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(RECORD_HEADER_LEN));
    let Some(payload) = end.and_then(|end| buf.get(RECORD_HEADER_LEN..end)) else {
        return Decoded::Incomplete;
    };
    if record_checksum(Lsn(lsn), payload) != Some(crc) {
        return Decoded::ChecksumMismatch { stored_lsn: lsn };
    }
    Decoded::Record {
        lsn: Lsn(lsn),
        payload,
        encoded_len: RECORD_HEADER_LEN + payload.len(),
    }
}

/// Reads the payload length stored in a record header (no validation).
pub(crate) fn header_len_field(h: &[u8; RECORD_HEADER_LEN]) -> u32 {
    read_u32(h, 0)
}

/// Reads the checksum stored in a record header (no validation).
pub(crate) fn header_crc_field(h: &[u8; RECORD_HEADER_LEN]) -> u32 {
    read_u32(h, 4)
}

/// Reads the LSN stored in a record header (no validation).
pub(crate) fn header_lsn_field(h: &[u8; RECORD_HEADER_LEN]) -> u64 {
    read_u64(h, 8)
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(lsn: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(encode_record(Lsn(lsn), payload, &mut out));
        out
    }

    proptest! {
        #[test]
        fn record_round_trips(lsn in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..512),
                              trailing in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut buf = encode(lsn, &payload);
            prop_assert_eq!(buf.len(), RECORD_HEADER_LEN + payload.len());
            let encoded_len = buf.len();
            buf.extend_from_slice(&trailing);
            prop_assert_eq!(
                decode_record(&buf),
                Decoded::Record { lsn: Lsn(lsn), payload: &payload, encoded_len }
            );
        }

        #[test]
        fn every_cut_is_incomplete(lsn in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..128)) {
            let buf = encode(lsn, &payload);
            for cut in 0..buf.len() {
                prop_assert_eq!(decode_record(&buf[..cut]), Decoded::Incomplete, "cut at {}", cut);
            }
        }

        #[test]
        fn single_bit_flips_never_decode_as_valid(lsn in any::<u64>(),
                                                  payload in proptest::collection::vec(any::<u8>(), 0..64),
                                                  bit in any::<prop::sample::Index>()) {
            let mut buf = encode(lsn, &payload);
            let bit = bit.index(buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            match decode_record(&buf) {
                Decoded::Record { .. } => prop_assert!(false, "flipped bit {} decoded as a valid record", bit),
                Decoded::Incomplete | Decoded::ChecksumMismatch { .. } => {}
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Decoded::Record { lsn, payload, encoded_len } = decode_record(&bytes) {
                // Only possible when the bytes really are a record.
                prop_assert_eq!(&encode(lsn.get(), payload)[..], &bytes[..encoded_len]);
            }
            let _ = decode_segment_header(&bytes);
        }

        #[test]
        fn header_round_trips(lsn in 1..MAX_LSN, bit in 0usize..SEGMENT_HEADER_LEN * 8) {
            let mut h = encode_segment_header(Lsn(lsn));
            prop_assert_eq!(decode_segment_header(&h), Ok(Lsn(lsn)));
            prop_assert_eq!(decode_segment_header(&h[..SEGMENT_HEADER_LEN - 1]), Err(HeaderError::TooShort));
            h[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_segment_header(&h).is_err(), "flipped header bit {} accepted", bit);
        }
    }

    #[test]
    fn header_lsn_range() {
        for bad in [0, MAX_LSN, u64::MAX] {
            assert_eq!(
                decode_segment_header(&encode_segment_header(Lsn(bad))),
                Err(HeaderError::LsnOutOfRange(bad))
            );
        }
    }

    #[test]
    fn known_layout() {
        let buf = encode(0x0102_0304_0506_0708, b"hi");
        assert_eq!(&buf[0..4], &2u32.to_le_bytes());
        assert_eq!(&buf[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&buf[16..], b"hi");
        let mut h = crc32fast::Hasher::new();
        h.update(&buf[8..16]);
        h.update(&buf[0..4]);
        h.update(b"hi");
        assert_eq!(&buf[4..8], &h.finalize().to_le_bytes());
    }
}
