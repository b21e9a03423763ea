//! Constants of the bit format (see the crate README for the spec).

/// The format version written in the first byte of every block.
pub(crate) const FORMAT_VERSION: u8 = 2;

/// The first version, still read: no flags byte (so nothing is known of NaN values).
pub(crate) const FORMAT_VERSION_1: u8 = 1;

/// Flag of version 2's flags byte: some value of the block is NaN.
pub(crate) const FLAG_NAN_VALUES: u8 = 0b1;

/// The name used in [`tsdb_core::Error::Corrupt`] errors.
pub(crate) const SOURCE: &str = "gorilla block";

/// Payload widths of the delta-of-delta buckets selected by 1, 2, 3 and 4 leading one bits
/// (`10`, `110`, `1110`, `11110`). Zero is the single bit `0`; `11111` escapes to 64 bits.
pub(crate) const DOD_WIDTHS: [u32; 4] = [3, 11, 20, 32];

/// Bits of the first point (raw timestamp and raw value).
pub(crate) const FIRST_POINT_BITS: u64 = 128;

/// Fewest bits any later point can take (`0` for the timestamp, `0` for the value).
pub(crate) const MIN_POINT_BITS: u64 = 2;

/// Writes `n` as LEB128.
pub(crate) fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Length of `n` as LEB128.
pub(crate) fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros()).div_ceil(7) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_matches_written_length() {
        for n in [0, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut v = Vec::new();
            write_varint(&mut v, n);
            assert_eq!(v.len(), varint_len(n), "{n}");
        }
    }
}
