//! The streaming encoder.

use tsdb_core::Result;

use crate::bits::BitWriter;
use crate::decoder::Decoder;
use crate::format::{DOD_WIDTHS, FLAG_NAN_VALUES, FORMAT_VERSION, varint_len, write_varint};

/// The leading/trailing-zero window of the last value XOR that opened one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Window {
    /// Leading zero bits (0..=63).
    pub(crate) leading: u32,
    /// Meaningful bits (1..=64); 0 means no window has been opened yet.
    pub(crate) meaningful: u32,
}

impl Window {
    #[inline(always)]
    pub(crate) fn trailing(self) -> u32 {
        64 - self.leading - self.meaningful
    }
}

/// The state both sides keep between points: what the next point is encoded against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) prev_ts: i64,
    pub(crate) prev_delta: i64,
    pub(crate) prev_value: u64,
    pub(crate) window: Window,
}

/// Appends points of one series, one at a time, to a Gorilla bit stream.
///
/// An encoder is small (72 bytes plus its buffer) and allocates nothing per point
/// besides amortised growth of its buffer, so a database can keep one per live series; one
/// holding a single point appended with [`Encoder::append`] has no buffer yet.
/// [`Encoder::snapshot`] gives a complete, decodable block of the points so far without
/// ending the stream; [`Encoder::finish`] gives the block and consumes the encoder;
/// [`Encoder::resume`] continues a finished block.
///
/// Any timestamps (any order, duplicates, `i64::MIN..=i64::MAX`) and any `f64` bit patterns
/// are accepted and decode bit for bit.
///
/// ```
/// use tsdb_gorilla::{Decoder, Encoder};
///
/// let mut enc = Encoder::new();
/// enc.append(1_700_000_000_000, 1.0);
/// enc.append(1_700_000_010_000, 1.0);
/// let block = enc.finish();
/// let points: Vec<(i64, f64)> = Decoder::new(&block)?.collect::<Result<_, _>>()?;
/// assert_eq!(points, [(1_700_000_000_000, 1.0), (1_700_000_010_000, 1.0)]);
/// # Ok::<(), tsdb_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Encoder {
    /// The whole 64-bit words of the bit stream written so far. Empty while the encoder holds
    /// one point appended on its own: the first point is two whole words, its timestamp and
    /// its value, which the state holds as `prev_ts` and `prev_value`.
    buf: Vec<u8>,
    core: Core,
}

/// The first buffer of an encoder fed point by point: the first point's two words and one more
/// for the points after it (an allocator commonly hands out 24 bytes for the price of 16).
const FIRST_BUFFER_BYTES: usize = 24;

/// Everything an encoder keeps besides its buffer: small and `Copy`, so a bulk append works
/// on a local copy the compiler can keep in registers. Flat, so that it packs into 48 bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Core {
    /// The bit writer's pending bits, left-aligned (a [`BitWriter`] taken apart).
    acc: u64,
    /// The last timestamp appended.
    prev_ts: i64,
    /// The last delta between timestamps (0 after the first point).
    prev_delta: i64,
    /// The bits of the last value appended.
    prev_value: u64,
    /// Points appended.
    count: u64,
    /// How many bits of `acc` are pending (`0..=63`).
    filled: u32,
    /// The open XOR window's leading zero bits (see [`Window`]).
    leading: u8,
    /// The open XOR window's meaningful bits; 0 until one is opened.
    meaningful: u8,
    /// Whether a value appended was NaN (recorded in the header's flags).
    nan: bool,
    /// Whether a timestamp may have been smaller than the one before it. While not, the time
    /// range is the first and the last timestamp. (Set a little eagerly for runs of repeats
    /// that wrap around the `i64` range, which is never wrong.)
    unordered: bool,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty encoder with room for about `points` points of typical data.
    pub fn with_capacity(points: usize) -> Self {
        let mut e = Self::default();
        e.buf.reserve(16 + points.saturating_mul(2));
        e
    }

    /// Continues a block produced by [`Encoder::finish`] or [`Encoder::snapshot`]: the
    /// returned encoder holds the same points, and appending to it gives the same bytes as
    /// appending to the original encoder would have.
    ///
    /// Decodes the whole block (it must be valid: [`tsdb_core::Error::Corrupt`] otherwise).
    pub fn resume(block: &[u8]) -> Result<Self> {
        let mut dec = Decoder::new(block)?;
        let mut prev_ts = None;
        let mut unordered = false;
        let mut nan = false;
        for p in dec.by_ref() {
            let (t, v) = p?;
            unordered |= prev_ts.is_some_and(|prev| t < prev);
            prev_ts = Some(t);
            nan |= v.is_nan();
        }
        let count = dec.point_count();
        let (body_start, body_bits, state) = dec.stream_end();
        let mut buf = Vec::new();
        let (acc, filled) = BitWriter::resume(&block[body_start..], body_bits, &mut buf).parts();
        Ok(Encoder {
            buf,
            core: Core {
                acc,
                prev_ts: state.prev_ts,
                prev_delta: state.prev_delta,
                prev_value: state.prev_value,
                count,
                filled,
                // The decoder checked the window: at most 63 leading zeros, 64 bits wide.
                leading: state.window.leading as u8,
                meaningful: state.window.meaningful as u8,
                nan,
                unordered,
            },
        })
    }

    /// Number of points appended so far.
    #[inline]
    pub fn point_count(&self) -> u64 {
        self.core.count
    }

    /// True when no point was appended.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.core.count == 0
    }

    /// True while the only point is held by the state, not yet written to the buffer.
    #[inline(always)]
    fn first_point_pending(&self) -> bool {
        self.core.count == 1 && self.buf.is_empty()
    }

    /// Writes a pending first point to the buffer (allocating it), before more follow.
    #[cold]
    #[inline(never)]
    fn write_first_point(&mut self) {
        self.buf.reserve(FIRST_BUFFER_BYTES);
        // What `Core::append` writes for a first point: two whole words, nothing pending.
        self.buf.extend_from_slice(&self.core.prev_ts.to_be_bytes());
        self.buf
            .extend_from_slice(&self.core.prev_value.to_be_bytes());
    }

    /// Size in bytes of the block [`Encoder::finish`] would return now.
    #[inline]
    pub fn bytes_len(&self) -> usize {
        let pending = if self.first_point_pending() { 16 } else { 0 };
        2 + varint_len(self.core.count) + self.core.bits().byte_len(&self.buf) + pending
    }

    /// Heap bytes reserved by the encoder's buffer.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Releases spare buffer capacity (for encoders that will stay idle).
    pub fn shrink_to_fit(&mut self) {
        self.buf.shrink_to_fit();
    }

    /// The smallest and largest timestamp appended, or `None` when empty.
    ///
    /// Immediate while no timestamp was smaller than the one before it (the first and the last
    /// one); otherwise the block is decoded to find them.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        if self.is_empty() {
            return None;
        }
        Some(
            self.ordered_time_range()
                .unwrap_or_else(|| self.decoded_time_range()),
        )
    }

    /// The time range while the timestamps never decreased: the first and the last one.
    /// `None` when they may have, or when there is no point.
    #[inline]
    pub(crate) fn ordered_time_range(&self) -> Option<(i64, i64)> {
        let c = &self.core;
        if c.count == 0 || c.unordered {
            return None;
        }
        // The stream opens with the first timestamp, whole; a pending first point is the last.
        let first = self
            .buf
            .first_chunk::<8>()
            .map_or(c.prev_ts, |w| i64::from_be_bytes(*w));
        Some((first, c.prev_ts))
    }

    /// The time range of timestamps that went back at some point: decodes the block.
    #[cold]
    #[inline(never)]
    fn decoded_time_range(&self) -> (i64, i64) {
        let block = self.snapshot();
        let mut range = (self.core.prev_ts, self.core.prev_ts);
        // The encoder's own block decodes (the tests hold it to that).
        if let Ok(dec) = Decoder::new(&block) {
            for (t, _) in dec.map_while(Result::ok) {
                range = (range.0.min(t), range.1.max(t));
            }
        }
        range
    }

    /// The last point appended, or `None` when empty.
    pub fn last(&self) -> Option<(i64, f64)> {
        let c = &self.core;
        (c.count > 0).then(|| (c.prev_ts, f64::from_bits(c.prev_value)))
    }

    /// Appends one point.
    #[inline]
    pub fn append(&mut self, timestamp: i64, value: f64) {
        // Nothing written yet: no point, or a first one held by the state (see `buf`).
        if self.buf.is_empty() {
            if self.core.count == 0 {
                self.core.first_point(timestamp, value);
                return;
            }
            self.write_first_point();
        }
        self.core.append_next(&mut self.buf, timestamp, value);
    }

    /// Appends every point of `points`.
    pub fn extend(&mut self, points: impl IntoIterator<Item = (i64, f64)>) {
        for (t, v) in points {
            self.append(t, v);
        }
    }

    /// Appends every point of `points`: the same bytes as [`Encoder::append`] point by point,
    /// faster (the encoder's state stays in registers for the whole slice).
    pub fn extend_from_slice(&mut self, points: &[(i64, f64)]) {
        self.append_all(points.iter().copied());
    }

    /// Appends a timestamp column and a value column, pairwise (the shorter one decides how
    /// many points), like [`Encoder::extend_from_slice`].
    pub fn extend_from_columns(&mut self, timestamps: &[i64], values: &[f64]) {
        self.append_all(timestamps.iter().copied().zip(values.iter().copied()));
    }

    /// The bulk append: works on a local copy of the state. Only iterators over slices come
    /// here, so nothing can panic half-way and leave the copy unwritten.
    ///
    /// Runs of points with the same delta and the same value (`00` codes) are counted in a
    /// tight loop and written 32 codes at a time: the bytes are those of `append`.
    #[inline(always)]
    pub(crate) fn append_all(&mut self, points: impl Iterator<Item = (i64, f64)>) {
        if self.first_point_pending() {
            self.write_first_point();
        }
        let mut core = self.core;
        let mut run = 0u32;
        let mut run_first = 0i64;
        let mut repeat = false;
        for (t, v) in points {
            // Only after a `00` (or within a run) is the next point checked for one: data
            // without repeats pays one well-predicted branch.
            if (run > 0 || repeat)
                && t.wrapping_sub(core.prev_ts) == core.prev_delta
                && v.to_bits() == core.prev_value
            {
                if run == 0 {
                    run_first = t;
                }
                core.prev_ts = t;
                run += 1;
                if run == 32 {
                    core.end_run(&mut self.buf, run, run_first);
                    run = 0;
                }
                continue;
            }
            if run > 0 {
                core.end_run(&mut self.buf, run, run_first);
                run = 0;
            }
            repeat = core.append(&mut self.buf, t, v);
        }
        if run > 0 {
            core.end_run(&mut self.buf, run, run_first);
        }
        self.core = core;
    }
    /// Appends the complete block (header and bit stream) of the points so far to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.bytes_len());
        out.push(FORMAT_VERSION);
        out.push(if self.core.nan { FLAG_NAN_VALUES } else { 0 });
        write_varint(out, self.core.count);
        if self.first_point_pending() {
            out.extend_from_slice(&self.core.prev_ts.to_be_bytes());
            out.extend_from_slice(&self.core.prev_value.to_be_bytes());
        } else {
            self.core.bits().copy_to(&self.buf, out);
        }
    }

    /// A complete, decodable block of the points so far; the encoder stays usable.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes_len());
        self.write_to(&mut out);
        out
    }

    /// Ends the stream and returns the block.
    pub fn finish(self) -> Vec<u8> {
        self.snapshot()
    }
}

impl Core {
    /// The pending bits as a writer.
    #[inline(always)]
    fn bits(&self) -> BitWriter {
        BitWriter::from_parts(self.acc, self.filled)
    }

    /// Writes the low `n` bits of `value` (see [`crate::bits::write_bits`]).
    #[inline(always)]
    fn write(&mut self, buf: &mut Vec<u8>, value: u64, n: u32) {
        crate::bits::write_bits(&mut self.acc, &mut self.filled, buf, value, n);
    }

    /// Accounts for `run` (1..=32) points with the same delta and value, already reflected in
    /// `prev_ts`, the first at `first`: writes their `00` codes.
    #[inline(always)]
    fn end_run(&mut self, buf: &mut Vec<u8>, run: u32, first: i64) {
        self.count += u64::from(run);
        // The run steps by `prev_delta` from the point before it to `prev_ts`: in order when
        // the delta is not negative and no step wrapped around.
        let delta = self.prev_delta;
        let before = first.wrapping_sub(delta);
        let exact_last = delta
            .checked_mul(i64::from(run))
            .and_then(|span| before.checked_add(span));
        self.unordered |= delta < 0 || exact_last != Some(self.prev_ts);
        self.write(buf, 0, 2 * run);
    }

    /// Notes a timestamp smaller than the one before it (out of line: rare in real data).
    #[cold]
    #[inline(never)]
    fn went_back(&mut self) {
        self.unordered = true;
    }

    /// The state after a first point, which is two whole words: the raw timestamp and value.
    #[inline(always)]
    fn first_point(&mut self, timestamp: i64, value: f64) {
        self.nan |= value.is_nan();
        self.prev_ts = timestamp;
        self.prev_delta = 0;
        self.prev_value = value.to_bits();
        self.count = 1;
    }

    /// See [`Encoder::append`]; true when the point repeated the previous delta and value
    /// (a `00` code).
    #[inline(always)]
    fn append(&mut self, buf: &mut Vec<u8>, timestamp: i64, value: f64) -> bool {
        let bits = value.to_bits();
        if self.count == 0 {
            self.write(buf, timestamp as u64, 64);
            self.write(buf, bits, 64);
            self.first_point(timestamp, value);
            return false;
        }
        self.append_next(buf, timestamp, value)
    }

    /// [`Core::append`] of a point after the first.
    #[inline(always)]
    fn append_next(&mut self, buf: &mut Vec<u8>, timestamp: i64, value: f64) -> bool {
        let bits = value.to_bits();
        // (A repeated value, counted in a run, is not seen here; its first one was.)
        self.nan |= value.is_nan();
        if timestamp < self.prev_ts {
            self.went_back();
        }
        self.count += 1;

        let delta = timestamp.wrapping_sub(self.prev_ts);
        let dod = delta.wrapping_sub(self.prev_delta);
        self.prev_ts = timestamp;
        self.prev_delta = delta;
        let xor = bits ^ self.prev_value;
        self.prev_value = bits;

        if dod == 0 {
            if xor == 0 {
                self.write(buf, 0b00, 2);
                return true;
            }
            self.write(buf, 0, 1);
        } else {
            self.write_dod(buf, dod);
        }
        if xor == 0 {
            self.write(buf, 0, 1);
        } else {
            self.write_xor(buf, xor);
        }
        false
    }

    #[inline(always)]
    fn write_dod(&mut self, buf: &mut Vec<u8>, dod: i64) {
        #[inline(always)]
        fn fits(dod: i64, w: u32) -> bool {
            let half = 1i64 << (w - 1);
            (-half..half).contains(&dod)
        }
        #[inline(always)]
        fn low(dod: i64, w: u32) -> u64 {
            (dod as u64) & ((1u64 << w) - 1)
        }
        // Bucket k has k+1 one bits, a zero, and a DOD_WIDTHS[k]-bit two's-complement payload.
        let [w1, w2, w3, w4] = DOD_WIDTHS;
        if fits(dod, w1) {
            self.write(buf, (0b10 << w1) | low(dod, w1), 2 + w1);
        } else if fits(dod, w2) {
            self.write(buf, (0b110 << w2) | low(dod, w2), 3 + w2);
        } else if fits(dod, w3) {
            self.write(buf, (0b1110 << w3) | low(dod, w3), 4 + w3);
        } else if fits(dod, w4) {
            self.write(buf, (0b11110 << w4) | low(dod, w4), 5 + w4);
        } else {
            // Escape: five ones and the full 64-bit delta of delta.
            self.write(buf, 0b11111, 5);
            self.write(buf, dod as u64, 64);
        }
    }

    #[inline(always)]
    fn write_xor(&mut self, buf: &mut Vec<u8>, xor: u64) {
        let lz = xor.leading_zeros();
        let tz = xor.trailing_zeros();
        let w = Window {
            leading: u32::from(self.leading),
            meaningful: u32::from(self.meaningful),
        };
        if w.meaningful != 0 && lz >= w.leading && tz >= w.trailing() {
            // Reuse costs `w.meaningful` payload bits, a new window `12 + (64 - lz - tz)`:
            // take the new window when the old one has gone stale.
            if w.meaningful <= 12 + (64 - lz - tz) {
                let payload = xor >> w.trailing();
                if w.meaningful <= 62 {
                    self.write(buf, (0b10 << w.meaningful) | payload, 2 + w.meaningful);
                } else {
                    self.write(buf, 0b10, 2);
                    self.write(buf, payload, w.meaningful);
                }
                return;
            }
        }
        let meaningful = 64 - lz - tz;
        // `lz <= 63` (`xor != 0`) and `meaningful <= 64`: both fit a byte.
        self.leading = lz as u8;
        self.meaningful = meaningful as u8;
        let header = (0b11 << 12) | (u64::from(lz) << 6) | u64::from(meaningful - 1);
        let payload = xor >> tz;
        if meaningful <= 50 {
            self.write(buf, (header << meaningful) | payload, 14 + meaningful);
        } else {
            self.write(buf, header, 14);
            self.write(buf, payload, meaningful);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_stays_small() {
        assert!(std::mem::size_of::<Encoder>() <= 72);
    }

    #[test]
    fn accessors_track_what_was_appended() {
        let mut e = Encoder::new();
        assert_eq!((e.point_count(), e.time_range(), e.last()), (0, None, None));
        assert_eq!(e.bytes_len(), 3);
        e.append(5, 1.5);
        e.append(-3, 2.5);
        assert_eq!(e.point_count(), 2);
        assert_eq!(e.time_range(), Some((-3, 5)));
        assert_eq!(e.last(), Some((-3, 2.5)));
        assert_eq!(e.bytes_len(), e.snapshot().len());
    }

    #[test]
    fn a_single_point_needs_no_buffer_and_encodes_the_same() {
        let mut e = Encoder::new();
        e.append(1_700_000_000_000, f64::NAN);
        assert_eq!(e.capacity(), 0);
        assert_eq!(e.time_range(), Some((1_700_000_000_000, 1_700_000_000_000)));
        let block = e.snapshot();
        assert_eq!(block, crate::encode(&[(1_700_000_000_000, f64::NAN)]));
        assert_eq!(e.bytes_len(), block.len());
        assert_eq!(
            Encoder::resume(&block).expect("own block").snapshot(),
            block
        );
        // The second point writes the first one out, into a buffer with room for more.
        e.append(1_700_000_010_000, 2.0);
        assert_eq!(e.capacity(), FIRST_BUFFER_BYTES);
        let mut bulk = Encoder::new();
        bulk.append(1_700_000_000_000, f64::NAN);
        bulk.extend_from_slice(&[(1_700_000_010_000, 2.0)]);
        assert_eq!(e.snapshot(), bulk.snapshot());
        assert_eq!(
            e.snapshot(),
            crate::encode(&[(1_700_000_000_000, f64::NAN), (1_700_000_010_000, 2.0)])
        );
    }

    #[test]
    fn time_range_of_timestamps_that_go_back() {
        let points = [(10, 1.0), (20, 1.0), (30, 1.0), (5, 2.0), (25, 2.0)];
        for split in 0..=points.len() {
            let mut e = Encoder::new();
            points[..split].iter().for_each(|&(t, v)| e.append(t, v));
            e.extend_from_slice(&points[split..]);
            assert_eq!(e.time_range(), Some((5, 30)), "split at {split}");
            assert_eq!(e.ordered_time_range(), None);
            let resumed = Encoder::resume(&e.snapshot()).expect("own block");
            assert_eq!(resumed.time_range(), Some((5, 30)));
        }
        let mut ordered = Encoder::new();
        ordered.extend_from_slice(&[(10, 1.0), (10, 1.0), (20, 1.0), (30, 1.0), (40, 1.0)]);
        assert_eq!(ordered.ordered_time_range(), Some((10, 40)));
    }
}
