//! Bit-level I/O: a big-endian bit writer that buffers 64 bits at a time, and a reader that
//! loads whole 64-bit words.

/// Appends bits most-significant first: whole words go to a byte buffer the caller passes in;
/// up to 63 pending bits wait in `acc`, left-aligned. Keeping the buffer outside lets a bulk
/// encode hold this (and the rest of the encoder state) in registers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BitWriter {
    acc: u64,
    filled: u32,
}

impl BitWriter {
    /// A writer that continues after `bits` bits of `bytes`: fills `buf` with the whole words
    /// and keeps the rest pending (padding bits of the last byte are ignored and overwritten).
    pub(crate) fn resume(bytes: &[u8], bits: u64, buf: &mut Vec<u8>) -> Self {
        let whole_words = (bits / 64) as usize;
        buf.clear();
        buf.reserve(bytes.len() + 16);
        buf.extend_from_slice(&bytes[..whole_words * 8]);
        let filled = (bits % 64) as u32;
        let mut word = [0u8; 8];
        let rest = &bytes[whole_words * 8..];
        let n = rest.len().min(8);
        word[..n].copy_from_slice(&rest[..n]);
        let acc = if filled == 0 {
            0
        } else {
            u64::from_be_bytes(word) & (u64::MAX << (64 - filled))
        };
        BitWriter { acc, filled }
    }

    /// A writer with `filled` (`0..=63`) pending bits, left-aligned in `acc`: the inverse of
    /// [`BitWriter::parts`], for state kept unpacked.
    #[inline(always)]
    pub(crate) fn from_parts(acc: u64, filled: u32) -> Self {
        debug_assert!(filled < 64);
        BitWriter { acc, filled }
    }

    /// The pending bits (left-aligned) and how many there are (`0..=63`).
    #[inline(always)]
    pub(crate) fn parts(self) -> (u64, u32) {
        (self.acc, self.filled)
    }

    /// Writes the low `n` bits of `value` (`1 <= n <= 64`; higher bits must be zero). (The
    /// encoder keeps a writer's two fields in its own flat state and calls [`write_bits`].)
    #[cfg(test)]
    pub(crate) fn write(&mut self, buf: &mut Vec<u8>, value: u64, n: u32) {
        write_bits(&mut self.acc, &mut self.filled, buf, value, n);
    }

    /// Number of bits written so far, `buf` holding the whole words.
    #[cfg(test)]
    pub(crate) fn bit_len(&self, buf: &[u8]) -> u64 {
        buf.len() as u64 * 8 + u64::from(self.filled)
    }

    /// Number of bytes the bits written so far occupy (the last one zero-padded).
    #[inline]
    pub(crate) fn byte_len(&self, buf: &[u8]) -> usize {
        buf.len() + self.filled.div_ceil(8) as usize
    }

    /// Appends the written bits (`buf` and the pending ones), zero-padded to a whole byte, to
    /// `out`.
    pub(crate) fn copy_to(&self, buf: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(buf);
        let tail = self.filled.div_ceil(8) as usize;
        out.extend_from_slice(&self.acc.to_be_bytes()[..tail]);
    }
}

/// Writes the low `n` bits of `value` (`1 <= n <= 64`; higher bits must be zero) after the
/// `filled` pending bits of `acc`: a [`BitWriter`] kept as two fields of a larger state.
#[inline(always)]
pub(crate) fn write_bits(acc: &mut u64, filled: &mut u32, buf: &mut Vec<u8>, value: u64, n: u32) {
    debug_assert!((1..=64).contains(&n));
    debug_assert!(n == 64 || value >> n == 0);
    let free = 64 - *filled;
    if n < free {
        *acc |= value << (free - n);
        *filled += n;
    } else {
        let spill = n - free;
        // `free >= 1`, so `spill <= 63` and `value >> spill` keeps the top `free` bits.
        *acc |= value >> spill;
        buf.extend_from_slice(&acc.to_be_bytes());
        *acc = if spill == 0 { 0 } else { value << (64 - spill) };
        *filled = spill;
    }
}

/// The 64 bits of `data` starting at byte `byte`, big-endian; zero bytes past the end.
#[inline(always)]
fn load(data: &[u8], byte: usize) -> u64 {
    match data.get(byte..).and_then(|s| s.first_chunk::<8>()) {
        Some(w) => u64::from_be_bytes(*w),
        None => load_slow(data, byte),
    }
}

#[cold]
#[inline(never)]
fn load_slow(data: &[u8], byte: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(rest) = data.get(byte..) {
        w[..rest.len()].copy_from_slice(rest);
    }
    u64::from_be_bytes(w)
}

/// The bits of `data` from bit `pos` on, left-aligned: at least 57 of them are valid (bits
/// past the end of `data` read as zero).
#[inline(always)]
pub(crate) fn peek_at(data: &[u8], pos: usize) -> u64 {
    load(data, pos >> 3) << (pos & 7)
}

/// The 128 bits of `data` starting at byte `byte`, big-endian; zero bytes past the end.
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

/// Like [`peek_at`] with 128 bits: at least 121 of them are valid.
#[inline(always)]
pub(crate) fn peek128_at(data: &[u8], pos: usize) -> u128 {
    load128(data, pos >> 3) << (pos & 7)
}

/// Reads `n` bits (`1 <= n <= 64`) at `*pos` and advances it.
#[inline(always)]
pub(crate) fn read_at(data: &[u8], pos: &mut usize, n: u32) -> u64 {
    if n <= 57 {
        let v = peek_at(data, *pos) >> (64 - n);
        *pos += n as usize;
        v
    } else {
        let hi = peek_at(data, *pos) >> 32;
        *pos += 32;
        let lo = peek_at(data, *pos) >> (96 - n);
        *pos += n as usize - 32;
        (hi << (n - 32)) | lo
    }
}

/// Reads bits most-significant first from a byte slice (the decoder uses the free functions
/// above directly; this wrapper serves the tests).
#[cfg(test)]
#[derive(Clone, Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

#[cfg(test)]
impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader { data, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn end(&self) -> usize {
        self.data.len() * 8
    }

    pub(crate) fn read(&mut self, n: u32) -> u64 {
        read_at(self.data, &mut self.pos, n)
    }

    pub(crate) fn read_long(&mut self, n: u32) -> u64 {
        read_at(self.data, &mut self.pos, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_reader_agree_on_every_width() {
        let mut w = BitWriter::default();
        let mut buf = Vec::new();
        let mut expect = Vec::new();
        let mut x = 0x1234_5678_9abc_def0u64;
        for i in 0..1000u32 {
            let n = i % 64 + 1;
            x = x.rotate_left(13).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let v = if n == 64 { x } else { x & ((1 << n) - 1) };
            w.write(&mut buf, v, n);
            expect.push((v, n));
        }
        let mut bytes = Vec::new();
        w.copy_to(&buf, &mut bytes);
        assert_eq!(bytes.len() as u64, w.bit_len(&buf).div_ceil(8));
        let mut r = BitReader::new(&bytes, 0);
        for (v, n) in expect {
            assert_eq!(r.read_long(n), v, "width {n}");
        }
        assert_eq!(r.pos() as u64, w.bit_len(&buf));
    }

    #[test]
    fn resume_continues_the_same_bit_stream() {
        let (mut one, mut one_buf) = (BitWriter::default(), Vec::new());
        for i in 0..200u64 {
            one.write(&mut one_buf, i & 0x1f, 5);
        }
        let mut bytes = Vec::new();
        one.copy_to(&one_buf, &mut bytes);
        let mut two_buf = Vec::new();
        let mut two = BitWriter::resume(&bytes, one.bit_len(&one_buf), &mut two_buf);
        for i in 0..200u64 {
            one.write(&mut one_buf, i & 0x7, 3);
            two.write(&mut two_buf, i & 0x7, 3);
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        one.copy_to(&one_buf, &mut a);
        two.copy_to(&two_buf, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn reading_past_the_end_gives_zeros() {
        let data = [0xffu8; 3];
        let mut r = BitReader::new(&data, 20);
        assert_eq!(r.read(8), 0b1111_0000);
        assert_eq!(r.read(57), 0);
        assert!(r.pos() > r.end());
    }
}
