//! The block format, its encoder and its decoder.
//!
//! ```text
//! byte 0     format version (1)
//! byte 1     flags: bit 0 a value may be NaN, bit 1 the values are decimals
//! byte 2     decimal digits d (0..=9; 0 when the values are not decimals)
//! LEB128     point count n
//! 8 bytes    the first timestamp, big-endian             (n >= 1)
//! LEB128     the first delta, zigzag                     (n >= 2)
//! value 0    decimal: its integer k0, zigzag LEB128; else its bits, 8 bytes big-endian (n >= 1)
//! column     n - 2 deltas of deltas, zigzag              (n >= 2)
//! column     n - 1 values: decimal: differences of the integers, zigzag; else bits XOR the
//!            previous value's bits
//! ```
//!
//! A column is cut into groups of [`GROUP`] entries (the last may be shorter). A group is one
//! width byte `w` (`0..=64`) and its entries at `w` bits each, most significant bit first,
//! zero-padded to a whole byte. Nothing follows the last group.

use tsdb_core::decimal::{MAX_DECIMAL_DIGITS, POWERS_OF_TEN, decimal_digits};
use tsdb_core::{Error, Result};

/// The format version written in the first byte of every block.
pub const FORMAT_VERSION: u8 = 1;

/// Entries a group holds.
pub const GROUP: usize = 32;

/// Most points in one block: decoding allocates the columns the header announces, so the
/// header's count is bounded (1,048,576 points, 16 MiB of columns).
pub const MAX_BLOCK_POINTS: usize = 1 << 20;

const FLAG_NAN: u8 = 1;
const FLAG_DECIMAL: u8 = 2;
const SOURCE: &str = "packed block";

fn corrupt(offset: usize, reason: impl std::fmt::Display) -> Error {
    Error::corrupt(SOURCE, offset as u64, reason)
}

#[inline(always)]
fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

#[inline(always)]
fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], at: &mut usize, what: &str) -> Result<u64> {
    let mut v = 0u64;
    for k in 0..10 {
        let i = *at + k;
        let byte = *data
            .get(i)
            .ok_or_else(|| corrupt(i, format_args!("input ends inside the {what}")))?;
        let bits = u64::from(byte & 0x7f);
        if k == 9 && bits > 1 {
            return Err(corrupt(i, format_args!("the {what} overflows 64 bits")));
        }
        v |= bits << (7 * k);
        if byte & 0x80 == 0 {
            *at = i + 1;
            return Ok(v);
        }
    }
    Err(corrupt(
        *at + 9,
        format_args!("the {what} is longer than 10 bytes"),
    ))
}

fn get_u64(data: &[u8], at: &mut usize, what: &str) -> Result<u64> {
    let bytes = data
        .get(*at..)
        .and_then(|s| s.first_chunk::<8>())
        .ok_or_else(|| corrupt(*at, format_args!("input ends inside the {what}")))?;
    *at += 8;
    Ok(u64::from_be_bytes(*bytes))
}

/// Appends `entries` as groups.
fn pack(entries: &[u64], out: &mut Vec<u8>) {
    for group in entries.chunks(GROUP) {
        let width = 64 - group.iter().fold(0, |a, &e| a | e).leading_zeros();
        out.push(width as u8);
        if width == 0 {
            continue;
        }
        let (mut acc, mut filled) = (0u128, 0u32);
        for &e in group {
            acc |= u128::from(e) << (128 - width - filled);
            filled += width;
            while filled >= 64 {
                out.extend_from_slice(&((acc >> 64) as u64).to_be_bytes());
                acc <<= 64;
                filled -= 64;
            }
        }
        out.extend_from_slice(&((acc >> 64) as u64).to_be_bytes()[..filled.div_ceil(8) as usize]);
    }
}

/// Encodes the columns (same length, at most [`MAX_BLOCK_POINTS`]; the caller checks).
pub(crate) fn encode(timestamps: &[i64], values: &[f64]) -> Vec<u8> {
    encode_as(timestamps, values, decimal_digits(values))
}

/// [`encode`] with the values' decimal form already found (`decimal_digits(values)`).
pub(crate) fn encode_as(
    timestamps: &[i64],
    values: &[f64],
    decimal: Option<(u8, Vec<i64>)>,
) -> Vec<u8> {
    let n = timestamps.len();
    let mut flags = 0;
    if decimal.is_some() {
        flags |= FLAG_DECIMAL;
    } else if values.iter().any(|v| v.is_nan()) {
        flags |= FLAG_NAN;
    }
    let digits = decimal.as_ref().map_or(0, |(d, _)| *d);
    let mut out = Vec::with_capacity(16 + n * 2);
    out.extend_from_slice(&[FORMAT_VERSION, flags, digits]);
    put_varint(&mut out, n as u64);
    if n == 0 {
        return out;
    }
    out.extend_from_slice(&timestamps[0].to_be_bytes());
    let mut entries = Vec::with_capacity(n);
    if n >= 2 {
        let mut delta = timestamps[1].wrapping_sub(timestamps[0]);
        put_varint(&mut out, zigzag(delta));
        for w in timestamps[1..].windows(2) {
            let d = w[1].wrapping_sub(w[0]);
            entries.push(zigzag(d.wrapping_sub(delta)));
            delta = d;
        }
    }
    let ts_entries = std::mem::take(&mut entries);
    match &decimal {
        Some((_, ks)) => {
            put_varint(&mut out, zigzag(ks[0]));
            entries.extend(ks.windows(2).map(|w| zigzag(w[1].wrapping_sub(w[0]))));
        }
        None => {
            out.extend_from_slice(&values[0].to_bits().to_be_bytes());
            entries.extend(values.windows(2).map(|w| w[1].to_bits() ^ w[0].to_bits()));
        }
    }
    pack(&ts_entries, &mut out);
    pack(&entries, &mut out);
    out
}

/// What the header says.
pub(crate) struct Header {
    pub(crate) count: usize,
    pub(crate) may_hold_nan: bool,
    /// `10^d` for a decimal block.
    scale: Option<f64>,
    /// Where the first timestamp starts.
    body: usize,
}

pub(crate) fn read_header(data: &[u8]) -> Result<Header> {
    let version = *data.first().ok_or_else(|| corrupt(0, "empty block"))?;
    if version != FORMAT_VERSION {
        return Err(corrupt(
            0,
            format_args!("unknown format version {version} (this decoder reads {FORMAT_VERSION})"),
        ));
    }
    let (flags, digits) = match data.get(1..3) {
        Some(&[f, d]) => (f, d),
        _ => return Err(corrupt(data.len(), "input ends inside the header")),
    };
    if flags & !(FLAG_NAN | FLAG_DECIMAL) != 0 || flags == FLAG_NAN | FLAG_DECIMAL {
        return Err(corrupt(1, format_args!("invalid flags {flags:#010b}")));
    }
    let decimal = flags & FLAG_DECIMAL != 0;
    if digits > MAX_DECIMAL_DIGITS || (!decimal && digits != 0) {
        return Err(corrupt(2, format_args!("invalid decimal digits {digits}")));
    }
    let mut at = 3;
    let count = get_varint(data, &mut at, "point count")?;
    // Every group takes at least its width byte: a count the bytes cannot hold is refused
    // before anything is allocated for it.
    let most = (data.len() - at)
        .saturating_mul(GROUP)
        .min(MAX_BLOCK_POINTS);
    if count > most as u64 {
        return Err(corrupt(
            3,
            format_args!("header claims {count} points, more than the block can hold ({most})"),
        ));
    }
    Ok(Header {
        count: count as usize,
        may_hold_nan: flags & FLAG_NAN != 0,
        scale: decimal.then(|| POWERS_OF_TEN[usize::from(digits)]),
        body: at,
    })
}

/// The 64 bits of `data` from byte `byte` on, big-endian, zero past the end.
#[inline(always)]
fn load64(data: &[u8], byte: usize) -> u64 {
    match data.get(byte..).and_then(|s| s.first_chunk::<8>()) {
        Some(w) => u64::from_be_bytes(*w),
        None => load64_slow(data, byte),
    }
}

#[cold]
#[inline(never)]
fn load64_slow(data: &[u8], byte: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(rest) = data.get(byte..) {
        w[..rest.len()].copy_from_slice(rest);
    }
    u64::from_be_bytes(w)
}

/// The 128 bits of `data` from byte `byte` on, big-endian, zero past the end.
#[inline(always)]
fn load128(data: &[u8], byte: usize) -> u128 {
    match data.get(byte..).and_then(|s| s.first_chunk::<16>()) {
        Some(w) => u128::from_be_bytes(*w),
        None => load128_slow(data, byte),
    }
}

#[cold]
#[inline(never)]
fn load128_slow(data: &[u8], byte: usize) -> u128 {
    let mut w = [0u8; 16];
    if let Some(rest) = data.get(byte..) {
        w[..rest.len()].copy_from_slice(rest);
    }
    u128::from_be_bytes(w)
}

/// Reads the group at `*at` holding `n` (`1..=GROUP`) entries into `out[..n]`, moves `*at`
/// past it, and returns its width.
#[inline(always)]
fn unpack(data: &[u8], at: &mut usize, n: usize, out: &mut [u64; GROUP]) -> Result<usize> {
    let width = *data
        .get(*at)
        .ok_or_else(|| corrupt(*at, "input ends before a group's width"))? as usize;
    if width > 64 {
        return Err(corrupt(*at, format_args!("group width {width} exceeds 64")));
    }
    let start = *at + 1;
    let bits = n * width;
    let end = start + bits.div_ceil(8);
    if end > data.len() {
        return Err(corrupt(data.len(), "input ends inside a group"));
    }
    // Bytes past the group (the next group's) are loaded and shifted out.
    if width == 0 {
        out[..n].fill(0);
    } else if n == GROUP && width <= 57 {
        unpack_full(data, start, width, out);
    } else if width <= 57 {
        // An entry and its offset in its first byte fit one 64-bit load.
        for (j, e) in out[..n].iter_mut().enumerate() {
            let bit = j * width;
            *e = (load64(data, start + bit / 8) << (bit % 8)) >> (64 - width);
        }
    } else {
        for (j, e) in out[..n].iter_mut().enumerate() {
            let bit = j * width;
            *e = ((load128(data, start + bit / 8) << (bit % 8)) >> (128 - width)) as u64;
        }
    }
    if !bits.is_multiple_of(8) && data[end - 1] & (0xff >> (bits % 8)) != 0 {
        return Err(corrupt(end - 1, "non-zero padding after a group"));
    }
    *at = end;
    Ok(width)
}

/// A whole group of entries of `width` (`1..=57`) bits from byte `start`: one loop per width,
/// so that shifts and offsets are constants the compiler unrolls.
#[inline(always)]
fn unpack_full(data: &[u8], start: usize, width: usize, out: &mut [u64; GROUP]) {
    #[inline(always)]
    fn fixed<const W: usize>(data: &[u8], start: usize, out: &mut [u64; GROUP]) {
        for (j, e) in out.iter_mut().enumerate() {
            let bit = j * W;
            *e = (load64(data, start + bit / 8) << (bit % 8)) >> (64 - W);
        }
    }
    macro_rules! by_width {
        ($($w:literal)*) => {
            match width {
                $($w => fixed::<$w>(data, start, out),)*
                _ => unreachable!("group widths here are 1..=57"),
            }
        };
    }
    by_width!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30
        31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57)
}

/// Decodes a block, appending to the columns; returns the points decoded. On error the
/// columns may hold part of the block.
pub(crate) fn decode(
    data: &[u8],
    timestamps: &mut Vec<i64>,
    values: &mut Vec<f64>,
) -> Result<usize> {
    let h = read_header(data)?;
    let n = h.count;
    if n == 0 {
        if data.len() != h.body {
            return Err(corrupt(h.body, "trailing bytes after an empty block"));
        }
        return Ok(0);
    }
    let mut at = h.body;
    let t0 = get_u64(data, &mut at, "first timestamp")? as i64;
    let d0 = if n >= 2 {
        unzigzag(get_varint(data, &mut at, "first delta")?)
    } else {
        0
    };
    let v0 = match h.scale {
        Some(_) => unzigzag(get_varint(data, &mut at, "first value")?) as u64,
        None => get_u64(data, &mut at, "first value")?,
    };

    let (ts_at, vs_at) = (timestamps.len(), values.len());
    timestamps.resize(ts_at + n, 0);
    values.resize(vs_at + n, 0.0);
    let (ts, vs) = (&mut timestamps[ts_at..], &mut values[vs_at..]);
    let mut group = [0u64; GROUP];

    ts[0] = t0;
    if n >= 2 {
        let (mut t, mut delta) = (t0.wrapping_add(d0), d0);
        ts[1] = t;
        for chunk in ts[2..].chunks_mut(GROUP) {
            if unpack(data, &mut at, chunk.len(), &mut group)? == 0 {
                // A regular stretch: the same delta throughout.
                for out in chunk.iter_mut() {
                    t = t.wrapping_add(delta);
                    *out = t;
                }
                continue;
            }
            for (out, &e) in chunk.iter_mut().zip(&group) {
                delta = delta.wrapping_add(unzigzag(e));
                t = t.wrapping_add(delta);
                *out = t;
            }
        }
    }

    match h.scale {
        Some(scale) => {
            let mut k = v0 as i64;
            vs[0] = k as f64 / scale;
            let mut ks = [0i64; GROUP];
            for chunk in vs[1..].chunks_mut(GROUP) {
                unpack(data, &mut at, chunk.len(), &mut group)?;
                for (out, &e) in ks.iter_mut().zip(&group) {
                    k = k.wrapping_add(unzigzag(e));
                    *out = k;
                }
                // Apart from the running sum, so that the divisions go in vector registers.
                for (out, &k) in chunk.iter_mut().zip(&ks) {
                    *out = k as f64 / scale;
                }
            }
        }
        None => {
            let mut bits = v0;
            vs[0] = f64::from_bits(bits);
            for chunk in vs[1..].chunks_mut(GROUP) {
                unpack(data, &mut at, chunk.len(), &mut group)?;
                for (out, &e) in chunk.iter_mut().zip(&group) {
                    bits ^= e;
                    *out = f64::from_bits(bits);
                }
            }
        }
    }
    if at != data.len() {
        return Err(corrupt(
            at,
            format_args!("{} trailing bytes after the last group", data.len() - at),
        ));
    }
    if !h.may_hold_nan && h.scale.is_none() && vs.iter().any(|v| v.is_nan()) {
        return Err(corrupt(
            1,
            "a NaN value in a block whose header says it holds none",
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_the_extremes() {
        for x in [0, 1, -1, i64::MAX, i64::MIN, 12345, -98765] {
            assert_eq!(unzigzag(zigzag(x)), x);
        }
    }

    #[test]
    fn groups_of_every_width_round_trip() {
        for width in 0..=64u32 {
            for n in [1usize, 7, 31, 32, 33, 64, 100] {
                let entries: Vec<u64> = (0..n as u64)
                    .map(|i| {
                        let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(width);
                        if width == 64 {
                            x
                        } else {
                            x & ((1u64 << width) - 1)
                        }
                    })
                    .collect();
                let mut out = Vec::new();
                pack(&entries, &mut out);
                let mut at = 0;
                let mut got = Vec::new();
                let mut group = [0u64; GROUP];
                for chunk in entries.chunks(GROUP) {
                    unpack(&out, &mut at, chunk.len(), &mut group).expect("unpacks");
                    got.extend_from_slice(&group[..chunk.len()]);
                }
                assert_eq!(got, entries, "width {width}, {n} entries");
                assert_eq!(at, out.len());
            }
        }
    }
}
