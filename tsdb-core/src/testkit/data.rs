//! Deterministic adversarial inputs for conformance tests.

use crate::types::{DataPoint, SeriesId};

/// Float bit patterns that codecs get wrong: NaN payloads (the Prometheus stale marker
/// `0x7ff0000000000002` among them), signed zeros, infinities, subnormals and extremes.
pub const SPECIAL_VALUE_BITS: &[u64] = &[
    0x7ff8_0000_0000_0000, // canonical quiet NaN
    0x7ff0_0000_0000_0002, // Prometheus stale marker (signalling NaN)
    0xfff8_0000_0000_0001, // negative NaN with payload
    0x7fff_ffff_ffff_ffff, // NaN, every payload bit set
    0x7ff4_0000_0000_0000, // signalling NaN
    0x8000_0000_0000_0000, // -0.0
    0x0000_0000_0000_0000, // 0.0
    0x7ff0_0000_0000_0000, // +inf
    0xfff0_0000_0000_0000, // -inf
    0x0000_0000_0000_0001, // smallest subnormal
    0x000f_ffff_ffff_ffff, // largest subnormal
    0x0010_0000_0000_0000, // smallest normal
    0x7fef_ffff_ffff_ffff, // f64::MAX
    0xffef_ffff_ffff_ffff, // f64::MIN
    0x3ff0_0000_0000_0001, // 1 + epsilon
    0x5555_5555_5555_5555, // alternating bits
    0xaaaa_aaaa_aaaa_aaaa, // the complement: XOR has 64 meaningful bits
];

/// A small deterministic pseudo-random generator (SplitMix64), so the kit needs no
/// dependencies and failures reproduce.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn series(id: u64, samples: impl IntoIterator<Item = (i64, f64)>) -> Vec<DataPoint> {
    samples
        .into_iter()
        .map(|(t, v)| DataPoint::new(SeriesId(id), t, v))
        .collect()
}

/// Named single-series inputs that together cover the edge cases of timestamp and value
/// encoding. Every series is non-empty.
pub fn adversarial_series() -> Vec<(&'static str, Vec<DataPoint>)> {
    let mut out = Vec::new();
    let specials: Vec<f64> = SPECIAL_VALUE_BITS
        .iter()
        .map(|&b| f64::from_bits(b))
        .collect();

    out.push((
        "special values on a regular grid",
        series(
            1,
            specials
                .iter()
                .enumerate()
                .map(|(i, &v)| (1_700_000_000_000 + i as i64 * 10_000, v)),
        ),
    ));
    out.push((
        "special values repeated and interleaved",
        series(
            2,
            (0..200).map(|i| (i as i64, specials[(i * 7 + i / 3) % specials.len()])),
        ),
    ));
    out.push((
        "extreme timestamps",
        series(
            3,
            [
                i64::MIN,
                i64::MAX,
                i64::MIN,
                0,
                -1,
                i64::MAX,
                i64::MAX - 1,
                i64::MIN + 1,
            ]
            .map(|t| (t, 1.5)),
        ),
    ));
    out.push((
        "decreasing timestamps",
        series(4, (0..500).map(|i| (1_000_000 - i * 37, i as f64))),
    ));
    out.push((
        "duplicate timestamps",
        series(5, (0..300).map(|i| (42, (i % 5) as f64))),
    ));
    out.push((
        "deltas beyond 32 bits",
        series(
            6,
            (0..100).map(|i| (i * (1 << 40) - (i % 3) * (1 << 35), -(i as f64))),
        ),
    ));
    out.push((
        "huge first delta then regular",
        series(
            7,
            std::iter::once((0, 0.0)).chain((1..100).map(|i| ((1 << 50) + i * 1000, 0.0))),
        ),
    ));
    out.push((
        "single point at i64::MIN",
        series(8, [(i64::MIN, f64::NAN)]),
    ));
    out.push((
        "xor with many leading zeros",
        series(
            9,
            (0..200).map(|i| {
                (
                    i * 1000,
                    f64::from_bits(0x4000_0000_0000_0000 | (i as u64 & 3)),
                )
            }),
        ),
    ));
    out.push((
        "xor with 64 meaningful bits",
        series(
            10,
            (0..200).map(|i| {
                (
                    i * 1000,
                    f64::from_bits(if i % 2 == 0 { 0x8000_0000_0000_0001 } else { 0 }),
                )
            }),
        ),
    ));
    let mut rng = SplitMix64(0x5eed);
    out.push((
        "random bits, random timestamps",
        series(
            11,
            (0..2000).map(|_| (rng.next_u64() as i64, f64::from_bits(rng.next_u64()))),
        ),
    ));
    let mut rng = SplitMix64(7);
    let mut t = 1_700_000_000_000i64;
    let mut gauge = Vec::new();
    for i in 0..10_000 {
        t += 10_000 + rng.below(3) as i64 - 1;
        let v = if i % 997 == 0 {
            f64::from_bits(0x7ff0_0000_0000_0002)
        } else {
            (40 + rng.below(4)) as f64
        };
        gauge.push((t, v));
    }
    out.push(("jittered gauge with stale markers", series(12, gauge)));
    let mut rng = SplitMix64(99);
    let mut acc = 0.0f64;
    out.push((
        "counter with resets",
        series(
            13,
            (0..5000).map(|i| {
                acc = if rng.below(1000) == 0 {
                    0.0
                } else {
                    acc + rng.below(100) as f64
                };
                (i * 15_000, acc)
            }),
        ),
    ));
    out.push((
        "slowly drifting decimals",
        series(
            14,
            (0..3000).map(|i| (i * 60_000, 20.0 + (i as f64 * 0.01).sin() * 3.25)),
        ),
    ));
    out
}
