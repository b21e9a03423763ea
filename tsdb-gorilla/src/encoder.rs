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
/// An encoder is small (104 bytes plus its buffer) and allocates nothing per point
/// besides amortised growth of its buffer, so a database can keep one per live series.
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
    /// The whole 64-bit words of the bit stream written so far.
    buf: Vec<u8>,
    core: Core,
}

/// Everything an encoder keeps besides its buffer: small and `Copy`, so a bulk append works
/// on a local copy the compiler can keep in registers.
#[derive(Clone, Copy, Debug, Default)]
struct Core {
    bits: BitWriter,
    count: u64,
    state: State,
    min_ts: i64,
    max_ts: i64,
    /// Whether a value appended was NaN (recorded in the header's flags).
    nan: bool,
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
        let mut min_ts = i64::MAX;
        let mut max_ts = i64::MIN;
        let mut nan = false;
        for p in dec.by_ref() {
            let (t, v) = p?;
            min_ts = min_ts.min(t);
            max_ts = max_ts.max(t);
            nan |= v.is_nan();
        }
        let count = dec.point_count();
        let (body_start, body_bits, state) = dec.stream_end();
        let mut buf = Vec::new();
        let bits = BitWriter::resume(&block[body_start..], body_bits, &mut buf);
        if count == 0 {
            min_ts = 0;
            max_ts = 0;
        }
        Ok(Encoder {
            buf,
            core: Core {
                bits,
                count,
                state,
                min_ts,
                max_ts,
                nan,
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

    /// Size in bytes of the block [`Encoder::finish`] would return now.
    #[inline]
    pub fn bytes_len(&self) -> usize {
        2 + varint_len(self.core.count) + self.core.bits.byte_len(&self.buf)
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
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let c = &self.core;
        (c.count > 0).then_some((c.min_ts, c.max_ts))
    }

    /// The last point appended, or `None` when empty.
    pub fn last(&self) -> Option<(i64, f64)> {
        let c = &self.core;
        (c.count > 0).then(|| (c.state.prev_ts, f64::from_bits(c.state.prev_value)))
    }

    /// Appends one point.
    #[inline]
    pub fn append(&mut self, timestamp: i64, value: f64) {
        self.core.append(&mut self.buf, timestamp, value);
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
        let mut core = self.core;
        let mut run = 0u32;
        let mut run_first = 0i64;
        let mut repeat = false;
        for (t, v) in points {
            // Only after a `00` (or within a run) is the next point checked for one: data
            // without repeats pays one well-predicted branch.
            if (run > 0 || repeat)
                && t.wrapping_sub(core.state.prev_ts) == core.state.prev_delta
                && v.to_bits() == core.state.prev_value
            {
                if run == 0 {
                    run_first = t;
                }
                core.state.prev_ts = t;
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
        self.core.bits.copy_to(&self.buf, out);
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
    /// Accounts for `run` (1..=32) points with the same delta and value, already reflected in
    /// `state.prev_ts`, the first at `first`: writes their `00` codes.
    #[inline(always)]
    fn end_run(&mut self, buf: &mut Vec<u8>, run: u32, first: i64) {
        self.count += u64::from(run);
        let (last, delta) = (self.state.prev_ts, self.state.prev_delta);
        let exact_last = delta
            .checked_mul(i64::from(run - 1))
            .and_then(|span| first.checked_add(span));
        if exact_last == Some(last) {
            // A constant delta: the extremes are the ends.
            self.min_ts = self.min_ts.min(first).min(last);
            self.max_ts = self.max_ts.max(first).max(last);
        } else {
            self.wrapped_run_extremes(first, delta, run);
        }
        self.bits.write(buf, 0, 2 * run);
    }

    /// The time range after a run that wrapped around the i64 range: every point is looked at.
    #[cold]
    #[inline(never)]
    fn wrapped_run_extremes(&mut self, first: i64, delta: i64, run: u32) {
        let mut t = first;
        for _ in 0..run {
            self.min_ts = self.min_ts.min(t);
            self.max_ts = self.max_ts.max(t);
            t = t.wrapping_add(delta);
        }
    }

    /// See [`Encoder::append`]; true when the point repeated the previous delta and value
    /// (a `00` code).
    #[inline(always)]
    fn append(&mut self, buf: &mut Vec<u8>, timestamp: i64, value: f64) -> bool {
        let bits = value.to_bits();
        // (A repeated value, counted in a run, is not seen here; its first one was.)
        self.nan |= value.is_nan();
        if self.count == 0 {
            self.bits.write(buf, timestamp as u64, 64);
            self.bits.write(buf, bits, 64);
            self.state.prev_ts = timestamp;
            self.state.prev_delta = 0;
            self.state.prev_value = bits;
            self.min_ts = timestamp;
            self.max_ts = timestamp;
            self.count = 1;
            return false;
        }
        self.min_ts = self.min_ts.min(timestamp);
        self.max_ts = self.max_ts.max(timestamp);
        self.count += 1;

        let delta = timestamp.wrapping_sub(self.state.prev_ts);
        let dod = delta.wrapping_sub(self.state.prev_delta);
        self.state.prev_ts = timestamp;
        self.state.prev_delta = delta;
        let xor = bits ^ self.state.prev_value;
        self.state.prev_value = bits;

        if dod == 0 {
            if xor == 0 {
                self.bits.write(buf, 0b00, 2);
                return true;
            }
            self.bits.write(buf, 0, 1);
        } else {
            self.write_dod(buf, dod);
        }
        if xor == 0 {
            self.bits.write(buf, 0, 1);
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
            self.bits.write(buf, (0b10 << w1) | low(dod, w1), 2 + w1);
        } else if fits(dod, w2) {
            self.bits.write(buf, (0b110 << w2) | low(dod, w2), 3 + w2);
        } else if fits(dod, w3) {
            self.bits.write(buf, (0b1110 << w3) | low(dod, w3), 4 + w3);
        } else if fits(dod, w4) {
            self.bits.write(buf, (0b11110 << w4) | low(dod, w4), 5 + w4);
        } else {
            // Escape: five ones and the full 64-bit delta of delta.
            self.bits.write(buf, 0b11111, 5);
            self.bits.write(buf, dod as u64, 64);
        }
    }

    #[inline(always)]
    fn write_xor(&mut self, buf: &mut Vec<u8>, xor: u64) {
        let lz = xor.leading_zeros();
        let tz = xor.trailing_zeros();
        let w = self.state.window;
        if w.meaningful != 0 && lz >= w.leading && tz >= w.trailing() {
            // Reuse costs `w.meaningful` payload bits, a new window `12 + (64 - lz - tz)`:
            // take the new window when the old one has gone stale.
            if w.meaningful <= 12 + (64 - lz - tz) {
                let payload = xor >> w.trailing();
                if w.meaningful <= 62 {
                    self.bits
                        .write(buf, (0b10 << w.meaningful) | payload, 2 + w.meaningful);
                } else {
                    self.bits.write(buf, 0b10, 2);
                    self.bits.write(buf, payload, w.meaningful);
                }
                return;
            }
        }
        let meaningful = 64 - lz - tz;
        self.state.window = Window {
            leading: lz,
            meaningful,
        };
        let header = (0b11 << 12) | (u64::from(lz) << 6) | u64::from(meaningful - 1);
        let payload = xor >> tz;
        if meaningful <= 50 {
            self.bits
                .write(buf, (header << meaningful) | payload, 14 + meaningful);
        } else {
            self.bits.write(buf, header, 14);
            self.bits.write(buf, payload, meaningful);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_stays_small() {
        assert!(std::mem::size_of::<Encoder>() <= 104);
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
}
