//! The decoder: an iterator of points and a bulk decode into columns.

use tsdb_core::{Error, Result};

use crate::bits::BitReader;
use crate::encoder::{State, Window};
use crate::format::{
    DOD_WIDTHS, FIRST_POINT_BITS, FORMAT_VERSION, MAX_HEADER_LEN, MIN_POINT_BITS, SOURCE,
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
    reader: BitReader<'a>,
    body_start: usize,
    count: u64,
    decoded: u64,
    state: State,
    done: bool,
}

fn corrupt_at(bit: usize, reason: impl std::fmt::Display) -> Error {
    Error::corrupt(
        SOURCE,
        (bit / 8) as u64,
        format_args!("bit {bit}: {reason}"),
    )
}

/// Reads the header: the version byte and the LEB128 point count.
fn read_header(data: &[u8]) -> Result<(u64, usize)> {
    let version = *data
        .first()
        .ok_or_else(|| Error::corrupt(SOURCE, 0, "empty input: the header is missing"))?;
    if version != FORMAT_VERSION {
        return Err(Error::corrupt(
            SOURCE,
            0,
            format_args!("unknown format version {version} (this decoder reads {FORMAT_VERSION})"),
        ));
    }
    let mut count = 0u64;
    for i in 1..MAX_HEADER_LEN {
        let byte = *data
            .get(i)
            .ok_or_else(|| Error::corrupt(SOURCE, i as u64, "input ends inside the point count"))?;
        let shift = 7 * (i as u32 - 1);
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
            return Ok((count, i + 1));
        }
    }
    Err(Error::corrupt(
        SOURCE,
        (MAX_HEADER_LEN - 1) as u64,
        "point count is longer than 10 bytes",
    ))
}

impl<'a> Decoder<'a> {
    /// Reads the header of `block`. Fails with [`Error::Corrupt`] when the header is invalid or
    /// claims more points than the block's size can hold.
    pub fn new(block: &'a [u8]) -> Result<Self> {
        let (count, body_start) = read_header(block)?;
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
            reader: BitReader::new(block, body_start * 8),
            body_start,
            count,
            decoded: 0,
            state: State::default(),
            done: false,
        })
    }

    /// The number of points the header claims (bounded by the block's size).
    pub fn point_count(&self) -> u64 {
        self.count
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
            (self.reader.pos() - self.body_start * 8) as u64,
            self.state,
        )
    }

    /// Checks what follows the last point: zero padding up to the end of its byte, nothing more.
    fn check_end(&self) -> Result<()> {
        let pos = self.reader.pos();
        let end = self.reader.end();
        if pos > end {
            return Err(corrupt_at(end, "input ends inside the last point"));
        }
        let used_bytes = pos.div_ceil(8);
        let data = self.reader.data();
        if used_bytes < data.len() {
            return Err(Error::corrupt(
                SOURCE,
                used_bytes as u64,
                format_args!(
                    "{} trailing bytes after the last point",
                    data.len() - used_bytes
                ),
            ));
        }
        if !pos.is_multiple_of(8) {
            let last = data[pos / 8];
            if last & (0xff >> (pos % 8)) != 0 {
                return Err(corrupt_at(pos, "non-zero padding after the last point"));
            }
        }
        Ok(())
    }

    /// Decodes the next point without the end check.
    #[inline(always)]
    fn decode_point(&mut self) -> Result<(i64, u64)> {
        let r = &mut self.reader;
        let s = &mut self.state;
        if self.decoded == 0 {
            let start = r.pos();
            let t = r.read_long(64) as i64;
            let v = r.read_long(64);
            if r.pos() > r.end() {
                return Err(corrupt_at(start, "input ends inside the first point"));
            }
            s.prev_ts = t;
            s.prev_delta = 0;
            s.prev_value = v;
            self.decoded = 1;
            return Ok((t, v));
        }
        let start = r.pos();

        // Timestamp: delta of delta.
        let p = r.peek();
        let ones = (!p).leading_zeros().min(5);
        let dod = match ones {
            0 => {
                r.consume(1);
                0
            }
            5 => {
                r.consume(5);
                r.read_long(64) as i64
            }
            _ => {
                let w = DOD_WIDTHS[ones as usize - 1];
                let prefix = ones + 1;
                r.consume(prefix + w);
                ((p << prefix) as i64) >> (64 - w)
            }
        };
        let delta = s.prev_delta.wrapping_add(dod);
        let t = s.prev_ts.wrapping_add(delta);
        s.prev_delta = delta;
        s.prev_ts = t;

        // Value: XOR with the previous one.
        let p = r.peek();
        if p >> 63 == 0 {
            r.consume(1);
        } else if p >> 62 == 0b10 {
            let w = s.window;
            if w.meaningful == 0 {
                return Err(corrupt_at(
                    r.pos(),
                    "window reuse before any window was opened",
                ));
            }
            let payload = if w.meaningful <= 55 {
                r.consume(2 + w.meaningful);
                (p << 2) >> (64 - w.meaningful)
            } else {
                r.consume(2);
                r.read_long(w.meaningful)
            };
            s.prev_value ^= payload << w.trailing();
        } else {
            let leading = ((p >> 56) & 63) as u32;
            let meaningful = ((p >> 50) & 63) as u32 + 1;
            if leading + meaningful > 64 {
                return Err(corrupt_at(
                    r.pos(),
                    format_args!(
                        "window of {leading} leading and {meaningful} meaningful bits exceeds 64"
                    ),
                ));
            }
            let payload = if meaningful <= 43 {
                r.consume(14 + meaningful);
                (p << 14) >> (64 - meaningful)
            } else {
                r.consume(14);
                r.read_long(meaningful)
            };
            let w = Window {
                leading,
                meaningful,
            };
            s.window = w;
            s.prev_value ^= payload << w.trailing();
        }
        if r.pos() > r.end() {
            return Err(corrupt_at(start, "input ends inside a point"));
        }
        self.decoded += 1;
        Ok((t, s.prev_value))
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
        match self.decode_point() {
            Ok((t, v)) => Ok(Some((t, f64::from_bits(v)))),
            Err(e) => {
                self.done = true;
                self.decoded = self.count;
                Err(e)
            }
        }
    }

    /// Decodes up to `min(timestamps.len(), values.len())` points into the two columns and
    /// returns how many were written. When this decodes the last point, the end check runs too.
    pub fn decode_into(&mut self, timestamps: &mut [i64], values: &mut [f64]) -> Result<usize> {
        let want = self
            .remaining()
            .min(timestamps.len() as u64)
            .min(values.len() as u64) as usize;
        if self.done {
            return Ok(0);
        }
        for (t_out, v_out) in timestamps[..want].iter_mut().zip(&mut values[..want]) {
            match self.decode_point() {
                Ok((t, v)) => {
                    *t_out = t;
                    *v_out = f64::from_bits(v);
                }
                Err(e) => {
                    self.done = true;
                    self.decoded = self.count;
                    return Err(e);
                }
            }
        }
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
