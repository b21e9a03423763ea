//! The decoder: an iterator of points and a bulk decode into columns.

use std::mem::MaybeUninit;

use tsdb_core::{DataPoint, Error, Result, SeriesId};

use crate::bits::{peek128_at, read_at};
use crate::encoder::{State, Window};
use crate::format::{
    DOD_WIDTHS, FIRST_POINT_BITS, FLAG_NAN_VALUES, FORMAT_VERSION, FORMAT_VERSION_1,
    MIN_POINT_BITS, SOURCE,
};

/// Decodes a block written by [`crate::Encoder`].
///
/// Use it as an [`Iterator`] of `Result<(timestamp, value)>`, or decode in bulk with
/// [`Decoder::decode_into`]. After the last point the decoder checks that nothing but zero
/// padding follows; a violation is reported as one final `Err` item (iterator) or as the
/// error of the call that decoded the last point (bulk).
///
/// Any input gives points or [`Error::Corrupt`] naming `"gorilla block"` and the byte offset
/// (the reason names the bit offset); it never panics, and its memory use does not depend on
/// the claimed point count.
#[derive(Clone, Debug)]
pub struct Decoder<'a> {
    data: &'a [u8],
    /// Bit position of the next point.
    pos: usize,
    body_start: usize,
    count: u64,
    may_hold_nan: bool,
    decoded: u64,
    state: State,
    done: bool,
}

/// Why a point could not be decoded (kept small so the hot loop stays in registers).
#[derive(Clone, Copy, Debug)]
enum Bad {
    ReuseWithoutWindow,
    WindowTooWide(u32, u32),
}

fn corrupt_at(bit: usize, reason: impl std::fmt::Display) -> Error {
    Error::corrupt(
        SOURCE,
        (bit / 8) as u64,
        format_args!("bit {bit}: {reason}"),
    )
}

#[cold]
fn bad_code(bit: usize, bad: Bad) -> Error {
    match bad {
        Bad::ReuseWithoutWindow => corrupt_at(bit, "window reuse before any window was opened"),
        Bad::WindowTooWide(l, m) => corrupt_at(
            bit,
            format_args!("window of {l} leading and {m} meaningful bits exceeds 64"),
        ),
    }
}

#[cold]
fn overrun(start: usize) -> Error {
    corrupt_at(start, "input ends inside a point")
}

/// What a block's header says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    /// Points that follow.
    pub(crate) count: u64,
    /// Byte offset of the bit stream.
    pub(crate) body_start: usize,
    /// Whether a value may be NaN (always for version 1, which does not record it).
    pub(crate) may_hold_nan: bool,
}

/// Reads the header: the version byte, (from version 2) the flags byte, and the LEB128
/// point count.
pub(crate) fn read_header(data: &[u8]) -> Result<Header> {
    let version = *data
        .first()
        .ok_or_else(|| Error::corrupt(SOURCE, 0, "empty input: the header is missing"))?;
    let (count_at, may_hold_nan) = match version {
        FORMAT_VERSION => {
            let flags = *data
                .get(1)
                .ok_or_else(|| Error::corrupt(SOURCE, 1, "input ends before the flags byte"))?;
            if flags & !FLAG_NAN_VALUES != 0 {
                return Err(Error::corrupt(
                    SOURCE,
                    1,
                    format_args!("unknown flags {flags:#010b} in the header"),
                ));
            }
            (2, flags & FLAG_NAN_VALUES != 0)
        }
        FORMAT_VERSION_1 => (1, true),
        _ => {
            return Err(Error::corrupt(
                SOURCE,
                0,
                format_args!(
                    "unknown format version {version} (this decoder reads {FORMAT_VERSION_1} and {FORMAT_VERSION})"
                ),
            ));
        }
    };
    let mut count = 0u64;
    for k in 0..10 {
        let i = count_at + k;
        let byte = *data
            .get(i)
            .ok_or_else(|| Error::corrupt(SOURCE, i as u64, "input ends inside the point count"))?;
        let shift = 7 * k as u32;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return Err(Error::corrupt(
                SOURCE,
                i as u64,
                "point count overflows 64 bits",
            ));
        }
        count |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(Header {
                count,
                body_start: i + 1,
                may_hold_nan,
            });
        }
    }
    Err(Error::corrupt(
        SOURCE,
        (count_at + 9) as u64,
        "point count is longer than 10 bytes",
    ))
}

/// Decodes the first point (raw timestamp and value).
#[inline]
fn first_point(data: &[u8], pos: &mut usize, s: &mut State) -> (i64, u64) {
    let t = read_at(data, pos, 64) as i64;
    let v = read_at(data, pos, 64);
    s.prev_ts = t;
    s.prev_delta = 0;
    s.prev_value = v;
    (t, v)
}

/// Decodes one point after the first. Reading past the end of `data` yields zero bits; the
/// caller compares `pos` with the end.
///
/// One 128-bit load serves the whole point (at most 37 timestamp bits and 78 value bits,
/// 121 valid bits loaded) except after the 64-bit timestamp escape.
#[inline(always)]
fn next_point(data: &[u8], pos: &mut usize, s: &mut State) -> Result<(i64, u64), Bad> {
    next_point_from(data, peek128_at(data, *pos), pos, s)
}

/// [`next_point`] with the 128 bits at `*pos` already loaded into `w`.
#[inline(always)]
fn next_point_from(
    data: &[u8],
    mut w: u128,
    pos: &mut usize,
    s: &mut State,
) -> Result<(i64, u64), Bad> {
    let p = (w >> 64) as u64;

    // Timestamp: delta of delta.
    let ones = (!p).leading_zeros();
    let dod = match ones {
        0 => {
            *pos += 1;
            w <<= 1;
            0
        }
        1..=4 => {
            let width = match ones {
                1 => DOD_WIDTHS[0],
                2 => DOD_WIDTHS[1],
                3 => DOD_WIDTHS[2],
                _ => DOD_WIDTHS[3],
            };
            let prefix = ones + 1;
            *pos += (prefix + width) as usize;
            w <<= prefix + width;
            ((p << prefix) as i64) >> (64 - width)
        }
        _ => {
            *pos += 5;
            let dod = read_at(data, pos, 64) as i64;
            w = peek128_at(data, *pos);
            dod
        }
    };
    s.prev_delta = s.prev_delta.wrapping_add(dod);
    s.prev_ts = s.prev_ts.wrapping_add(s.prev_delta);

    // Value: XOR with the previous one. `w` holds at least 84 valid bits here.
    let p = (w >> 64) as u64;
    if p >> 63 == 0 {
        *pos += 1;
    } else if p >> 62 == 0b10 {
        let win = s.window;
        if win.meaningful == 0 {
            return Err(Bad::ReuseWithoutWindow);
        }
        *pos += (2 + win.meaningful) as usize;
        let payload = ((w << 2) >> (128 - win.meaningful)) as u64;
        s.prev_value ^= payload << win.trailing();
    } else {
        let leading = ((p >> 56) & 63) as u32;
        let meaningful = ((p >> 50) & 63) as u32 + 1;
        if leading + meaningful > 64 {
            return Err(Bad::WindowTooWide(leading, meaningful));
        }
        *pos += (14 + meaningful) as usize;
        let payload = ((w << 14) >> (128 - meaningful)) as u64;
        let win = Window {
            leading,
            meaningful,
        };
        s.window = win;
        s.prev_value ^= payload << win.trailing();
    }
    Ok((s.prev_ts, s.prev_value))
}

/// Applies a point's delta of delta (its value is already in `s`) and writes the point to row
/// `i` of `out`.
#[inline(always)]
fn emit(s: &mut State, dod: i64, out: &mut impl Sink, i: usize) {
    s.prev_delta = s.prev_delta.wrapping_add(dod);
    s.prev_ts = s.prev_ts.wrapping_add(s.prev_delta);
    out.put(i, s.prev_ts, s.prev_value);
}

/// Where bulk decoding writes points: rows `0, 1, 2, ...` up to [`Sink::room`], in order.
trait Sink {
    /// How many points fit.
    fn room(&self) -> usize;
    /// Writes row `i`: timestamp `t`, value bits `v`.
    fn put(&mut self, i: usize, t: i64, v: u64);
    /// Writes rows `i..i + run` (`run >= 1`, within room): timestamps `t + delta`,
    /// `t + 2 delta`, ... (wrapping) and value bits `v`. Returns the last timestamp.
    fn fill(&mut self, i: usize, run: usize, t: i64, delta: i64, v: u64) -> i64;
}

/// A timestamp column and a value column.
struct Columns<'c> {
    ts: &'c mut [i64],
    vs: &'c mut [f64],
}

impl Sink for Columns<'_> {
    #[inline(always)]
    fn room(&self) -> usize {
        self.ts.len().min(self.vs.len())
    }

    #[inline(always)]
    fn put(&mut self, i: usize, t: i64, v: u64) {
        self.ts[i] = t;
        self.vs[i] = f64::from_bits(v);
    }

    #[inline(always)]
    fn fill(&mut self, i: usize, run: usize, t: i64, delta: i64, v: u64) -> i64 {
        fill_run(
            &mut self.ts[i..i + run],
            &mut self.vs[i..i + run],
            t,
            delta,
            f64::from_bits(v),
        )
    }
}

/// Points of one series written into a vector's spare capacity, in order, noting the smallest
/// and largest timestamp. `filled` counts the slots written: every slot below it holds a point.
struct Rows<'r> {
    rows: &'r mut [MaybeUninit<DataPoint>],
    filled: usize,
    series: SeriesId,
    min: i64,
    max: i64,
}

impl Sink for Rows<'_> {
    #[inline(always)]
    fn room(&self) -> usize {
        self.rows.len()
    }

    #[inline(always)]
    fn put(&mut self, i: usize, timestamp: i64, value: u64) {
        assert_eq!(i, self.filled, "rows are written in order");
        self.min = self.min.min(timestamp);
        self.max = self.max.max(timestamp);
        self.rows[i].write(DataPoint {
            series_id: self.series,
            timestamp,
            value: f64::from_bits(value),
        });
        self.filled = i + 1;
    }

    #[inline(always)]
    fn fill(&mut self, i: usize, run: usize, t: i64, delta: i64, value: u64) -> i64 {
        assert_eq!(i, self.filled, "rows are written in order");
        let slots = &mut self.rows[i..i + run];
        let first = t.wrapping_add(delta);
        let last = fill_rows(slots, self.series, t, delta, f64::from_bits(value));
        self.filled = i + run;
        // A constant delta puts the run's extremes at its ends, unless it wrapped around the
        // i64 range on the way: then every row is looked at.
        let exact_last = delta
            .checked_mul(run as i64 - 1)
            .and_then(|span| first.checked_add(span));
        if exact_last == Some(last) {
            self.min = self.min.min(first).min(last);
            self.max = self.max.max(first).max(last);
        } else {
            let mut t = t;
            for _ in 0..run {
                t = t.wrapping_add(delta);
                self.min = self.min.min(t);
                self.max = self.max.max(t);
            }
        }
        last
    }
}

/// [`fill_run`] for [`Rows`].
#[inline(never)]
fn fill_rows(
    slots: &mut [MaybeUninit<DataPoint>],
    series_id: SeriesId,
    mut t: i64,
    delta: i64,
    value: f64,
) -> i64 {
    for slot in slots {
        t = t.wrapping_add(delta);
        slot.write(DataPoint {
            series_id,
            timestamp: t,
            value,
        });
    }
    t
}

/// Writes a run of points with a constant delta and value; returns the last timestamp.
///
/// Kept out of line: inlined, the compiler's vectorised set-up for this loop would be redone
/// after every other point of the decode loop.
#[inline(never)]
fn fill_run(ts: &mut [i64], vs: &mut [f64], mut t: i64, delta: i64, v: f64) -> i64 {
    for (t_out, v_out) in ts.iter_mut().zip(vs) {
        t = t.wrapping_add(delta);
        *t_out = t;
        *v_out = v;
    }
    t
}

impl<'a> Decoder<'a> {
    /// Reads the header of `block`. Fails with [`Error::Corrupt`] when the header is invalid or
    /// claims more points than the block's size can hold.
    pub fn new(block: &'a [u8]) -> Result<Self> {
        let Header {
            count,
            body_start,
            may_hold_nan,
        } = read_header(block)?;
        let body_bits = (block.len() - body_start) as u64 * 8;
        let max_count = if body_bits < FIRST_POINT_BITS {
            0
        } else {
            1 + (body_bits - FIRST_POINT_BITS) / MIN_POINT_BITS
        };
        if count > max_count {
            return Err(Error::corrupt(
                SOURCE,
                1,
                format_args!(
                    "header claims {count} points but {} body bytes hold at most {max_count}",
                    block.len() - body_start
                ),
            ));
        }
        Ok(Decoder {
            data: block,
            pos: body_start * 8,
            body_start,
            count,
            may_hold_nan,
            decoded: 0,
            state: State::default(),
            done: false,
        })
    }

    /// The number of points the header claims (bounded by the block's size).
    pub fn point_count(&self) -> u64 {
        self.count
    }

    /// Whether the header allows a NaN value (a staleness marker is one): `false` only for a
    /// block whose header records that no value is NaN (from format version 2).
    pub fn may_hold_nan(&self) -> bool {
        self.may_hold_nan
    }

    /// Points not decoded yet.
    pub fn remaining(&self) -> u64 {
        self.count - self.decoded
    }

    /// Byte offset where the bit stream starts, bit length of the stream, and the state after
    /// the last decoded point (for [`crate::Encoder::resume`]).
    pub(crate) fn stream_end(&self) -> (usize, u64, State) {
        (
            self.body_start,
            (self.pos - self.body_start * 8) as u64,
            self.state,
        )
    }

    fn end_bits(&self) -> usize {
        self.data.len() * 8
    }

    /// Checks what follows the last point: zero padding up to the end of its byte, nothing more.
    fn check_end(&self) -> Result<()> {
        let pos = self.pos;
        if pos > self.end_bits() {
            return Err(corrupt_at(
                self.end_bits(),
                "input ends inside the last point",
            ));
        }
        let used_bytes = pos.div_ceil(8);
        if used_bytes < self.data.len() {
            return Err(Error::corrupt(
                SOURCE,
                used_bytes as u64,
                format_args!(
                    "{} trailing bytes after the last point",
                    self.data.len() - used_bytes
                ),
            ));
        }
        if !pos.is_multiple_of(8) {
            let last = self.data[pos / 8];
            if last & (0xff >> (pos % 8)) != 0 {
                return Err(corrupt_at(pos, "non-zero padding after the last point"));
            }
        }
        Ok(())
    }

    /// Marks the decoder finished after an error.
    #[cold]
    fn fail(&mut self, e: Error) -> Error {
        self.done = true;
        self.decoded = self.count;
        e
    }

    /// Decodes the next point; `Ok(None)` after the last one (once the end check passed).
    pub fn next_point(&mut self) -> Result<Option<(i64, f64)>> {
        if self.decoded == self.count {
            if !self.done {
                self.done = true;
                self.check_end()?;
            }
            return Ok(None);
        }
        let start = self.pos;
        let point = if self.decoded == 0 {
            Ok(first_point(self.data, &mut self.pos, &mut self.state))
        } else {
            next_point(self.data, &mut self.pos, &mut self.state)
        };
        match point {
            Ok(_) if self.pos > self.end_bits() => Err(self.fail(overrun(start))),
            Ok((t, v)) => {
                self.decoded += 1;
                Ok(Some((t, f64::from_bits(v))))
            }
            Err(bad) => Err(self.fail(bad_code(start, bad))),
        }
    }

    /// Decodes up to `min(timestamps.len(), values.len())` points into the two columns and
    /// returns how many were written. When this decodes the last point, the end check runs too.
    /// After an error the contents of the columns are unspecified.
    pub fn decode_into(&mut self, timestamps: &mut [i64], values: &mut [f64]) -> Result<usize> {
        self.decode_dispatched(&mut Columns {
            ts: timestamps,
            vs: values,
        })
    }

    /// Decodes the remaining points onto the end of `rows` as points of `series` (room for them
    /// is reserved first) and returns the smallest and largest timestamp decoded (`i64::MAX`,
    /// `i64::MIN` when none). After an error `rows` is as it was.
    pub(crate) fn decode_rows(
        &mut self,
        series: SeriesId,
        rows: &mut Vec<DataPoint>,
    ) -> Result<(i64, i64)> {
        let n = usize::try_from(self.remaining()).unwrap_or(usize::MAX);
        rows.reserve(n);
        let at = rows.len();
        let mut sink = Rows {
            rows: &mut rows.spare_capacity_mut()[..n],
            filled: 0,
            series,
            min: i64::MAX,
            max: i64::MIN,
        };
        self.decode_dispatched(&mut sink)?;
        let (filled, min, max) = (sink.filled, sink.min, sink.max);
        // SAFETY: the first `filled` slots of the spare capacity are initialised: `Rows` writes
        // slot `filled` (or `filled..filled + run`) and only then advances `filled` past it,
        // and asserts that every write starts at `filled`.
        #[allow(unsafe_code)]
        unsafe {
            rows.set_len(at + filled)
        };
        Ok((min, max))
    }

    /// [`Decoder::decode_to`] through the build of the loop for this CPU.
    #[inline(always)]
    fn decode_dispatched(&mut self, out: &mut impl Sink) -> Result<usize> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("lzcnt")
        {
            // SAFETY: `decode_to_bmi2` only needs the CPU to have BMI2 and LZCNT, which was
            // checked just above.
            #[allow(unsafe_code)]
            return unsafe { self.decode_to_bmi2(out) };
        }
        self.decode_to(out)
    }

    /// [`Decoder::decode_to`] compiled for CPUs with BMI2 and LZCNT (x86-64 since 2013):
    /// shifts by a register without the `cl` constraint and a one-instruction leading-zero
    /// count take about a tenth of the decode loop's time off. The same code as the portable
    /// path; only the instructions chosen differ.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "bmi1,bmi2,lzcnt")]
    fn decode_to_bmi2(&mut self, out: &mut impl Sink) -> Result<usize> {
        self.decode_to(out)
    }

    /// [`Decoder::decode_into`] for any [`Sink`].
    #[inline(always)]
    fn decode_to(&mut self, out: &mut impl Sink) -> Result<usize> {
        if self.done {
            return Ok(0);
        }
        let want = self.remaining().min(out.room() as u64) as usize;
        let mut i = 0;
        if self.decoded == 0 && want > 0 {
            let (t, v) = first_point(self.data, &mut self.pos, &mut self.state);
            out.put(0, t, v);
            i = 1;
        }
        // The hot loop works on copies in registers. Reading past the end of the data is
        // harmless (zero bits; the count is bounded by the data size), so the overrun check
        // runs once, after the loop.
        let data = self.data;
        let mut pos = self.pos;
        let mut state = self.state;
        let n = want;
        while i < n {
            let w = peek128_at(data, pos);
            let p = (w >> 64) as u64;
            if p >> 62 == 0 {
                // `00`: same delta, same value. Long runs (constant stretches) are emitted
                // in one go, up to 32 points from the top 64 bits of one load (all valid: a
                // load holds at least 121); short ones point by point, which avoids the
                // set-up cost of the batched loop.
                let run = (p.leading_zeros() as usize / 2).min(n - i);
                if run >= 8 {
                    state.prev_ts =
                        out.fill(i, run, state.prev_ts, state.prev_delta, state.prev_value);
                    pos += 2 * run;
                    i += run;
                } else {
                    emit(&mut state, 0, out, i);
                    pos += 2;
                    i += 1;
                }
                continue;
            }
            // Branches on the code shapes that dominate real series, so that while a shape
            // repeats the next point's position is known before its bits are loaded. Each
            // shape below lies in the top 64 bits of `w` (all valid); the rest, and every
            // invalid code, goes to `next_point_from`.
            let win = state.window;
            if p >> 62 == 0b10 {
                // `10ddd`: a small delta of delta (jittered scrapes), then `0` (same value) or
                // `10` and a payload in the current window.
                let q = p << 5;
                let value_len = if q >> 63 == 0 {
                    1
                } else if q >> 62 == 0b10 && win.meaningful != 0 && win.meaningful <= 57 {
                    let payload = (q << 2) >> (64 - win.meaningful);
                    state.prev_value ^= payload << win.trailing();
                    2 + win.meaningful as usize
                } else {
                    0
                };
                if value_len != 0 {
                    emit(&mut state, ((p << 2) as i64) >> 61, out, i);
                    pos += 5 + value_len;
                    i += 1;
                    continue;
                }
            } else if p >> 61 == 0b010 {
                // `0` `10` payload: same delta, value in the current window.
                if win.meaningful != 0 && win.meaningful <= 61 {
                    let payload = (p << 3) >> (64 - win.meaningful);
                    state.prev_value ^= payload << win.trailing();
                    emit(&mut state, 0, out, i);
                    pos += 3 + win.meaningful as usize;
                    i += 1;
                    continue;
                }
            } else if p >> 61 == 0b011 {
                // `0` `11` header payload: same delta, value in a new window.
                let win = Window {
                    leading: ((p >> 55) & 63) as u32,
                    meaningful: ((p >> 49) & 63) as u32 + 1,
                };
                if win.leading + win.meaningful <= 64 {
                    let r = (p << 15) | ((w as u64) >> 49);
                    state.prev_value ^= (r >> (64 - win.meaningful)) << win.trailing();
                    state.window = win;
                    emit(&mut state, 0, out, i);
                    pos += 15 + win.meaningful as usize;
                    i += 1;
                    continue;
                }
            }
            let point_start = pos;
            match next_point_from(data, w, &mut pos, &mut state) {
                Ok((t, v)) => out.put(i, t, v),
                Err(bad) => return Err(self.fail(bad_code(point_start, bad))),
            }
            i += 1;
        }
        self.pos = pos;
        self.state = state;
        if self.pos > self.end_bits() {
            return Err(self.fail(overrun(self.end_bits())));
        }
        self.decoded += want as u64;
        if self.decoded == self.count {
            self.done = true;
            self.check_end()?;
        }
        Ok(want)
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<(i64, f64)>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.next_point().transpose()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining()).unwrap_or(usize::MAX);
        (0, n.checked_add(1))
    }
}

/// Decodes a whole block into a timestamp column and a value column.
pub fn decode_to_vecs(block: &[u8]) -> Result<(Vec<i64>, Vec<f64>)> {
    let mut dec = Decoder::new(block)?;
    // The count is bounded by the block size in `Decoder::new`.
    let n = dec.point_count() as usize;
    let mut ts = vec![0i64; n];
    let mut vs = vec![0f64; n];
    dec.decode_into(&mut ts, &mut vs)?;
    Ok((ts, vs))
}

/// Decodes a whole block into `(timestamp, value)` pairs.
pub fn decode(block: &[u8]) -> Result<Vec<(i64, f64)>> {
    let mut dec = Decoder::new(block)?;
    let mut out = Vec::with_capacity(dec.point_count() as usize);
    while let Some(p) = dec.next_point()? {
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `block` in batches of `batch` points, through the portable loop or through
    /// [`Decoder::decode_into`] (which runs the BMI2 build where the CPU has it).
    fn decode_in_batches(block: &[u8], batch: usize, portable: bool) -> Result<Vec<(i64, u64)>> {
        let mut dec = Decoder::new(block)?;
        let (mut ts, mut vs) = (vec![0; batch], vec![0.0; batch]);
        let mut out = Vec::new();
        loop {
            let got = if portable {
                dec.decode_to(&mut Columns {
                    ts: &mut ts,
                    vs: &mut vs,
                })?
            } else {
                dec.decode_into(&mut ts, &mut vs)?
            };
            if got == 0 {
                return Ok(out);
            }
            out.extend(
                ts[..got]
                    .iter()
                    .zip(&vs[..got])
                    .map(|(&t, v)| (t, v.to_bits())),
            );
        }
    }

    /// Both builds of the loop agree: same points, same errors at the same offsets. (On a CPU
    /// without BMI2 both are the portable build.)
    fn builds_agree(block: &[u8], batch: usize) {
        let portable = decode_in_batches(block, batch, true).map_err(|e| e.to_string());
        let dispatched = decode_in_batches(block, batch, false).map_err(|e| e.to_string());
        assert_eq!(portable, dispatched);
        // Rows for `Compressor::decompress`: the same points, or the same error and nothing.
        let mut rows = Vec::new();
        let as_rows = Decoder::new(block)
            .and_then(|mut d| d.decode_rows(SeriesId(7), &mut rows))
            .map(|(min, max)| {
                let points: Vec<(i64, u64)> = rows
                    .iter()
                    .map(|p| (p.timestamp, p.value.to_bits()))
                    .collect();
                let ts = points.iter().map(|p| p.0);
                assert_eq!(
                    (min, max),
                    (
                        ts.clone().min().unwrap_or(i64::MAX),
                        ts.max().unwrap_or(i64::MIN)
                    )
                );
                assert!(rows.iter().all(|p| p.series_id == SeriesId(7)));
                points
            })
            .map_err(|e| e.to_string());
        assert_eq!(portable, as_rows);
    }

    proptest! {
        #[test]
        fn portable_and_cpu_specific_loops_decode_alike(
            points in proptest::collection::vec(
                (0i64..5, prop_oneof![Just(0.0), Just(1.5), any::<f64>(), (0u32..1000).prop_map(|c| f64::from(c) / 100.0)]),
                0..400,
            ),
            batch in 1usize..64,
        ) {
            let mut t = 1_700_000_000_000i64;
            let series: Vec<(i64, f64)> = points
                .into_iter()
                .map(|(jitter, v)| {
                    t += 15_000 + jitter;
                    (t, v)
                })
                .collect();
            let block = crate::encode(&series);
            builds_agree(&block, batch);
            let expected: Vec<(i64, u64)> = series.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            prop_assert_eq!(decode_in_batches(&block, batch, false).ok(), Some(expected));
            // Damaged copies: both builds report the same error (or the same points).
            for k in (0..block.len()).step_by(7) {
                let mut bad = block.clone();
                bad[k] ^= 0x5a;
                builds_agree(&bad, batch);
            }
        }

        #[test]
        fn portable_and_cpu_specific_loops_agree_on_arbitrary_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            batch in 1usize..64,
        ) {
            builds_agree(&data, batch);
        }
    }
}
