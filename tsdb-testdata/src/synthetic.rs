//! Deterministic synthetic series. The same `(n, seed)` always gives the same points.
//!
//! Timestamps are milliseconds and start at `1_700_000_000_000` (November 2023).

use tsdb_core::testkit::data::SplitMix64;

use crate::Dataset;

/// The first timestamp of every synthetic series.
pub const START_MS: i64 = 1_700_000_000_000;

/// The Prometheus stale marker, a signalling NaN.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A 10 s scrape grid with ±1 ms jitter: point `i` is at `START_MS + 10_000 * i + j` with `j`
/// uniform in `{-1, 0, 1}`.
fn jittered_grid(rng: &mut SplitMix64, i: usize) -> i64 {
    START_MS + 10_000 * i as i64 + rng.below(3) as i64 - 1
}

/// A Prometheus-like gauge: 10 s scrapes with ±1 ms jitter; an integer value starting at 100
/// that changes by a step in `-3..=3` at one scrape in ten and otherwise repeats; one scrape
/// in 500 is the stale marker NaN ([`STALE_NAN_BITS`]).
pub fn prom_gauge(n: usize, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = SplitMix64(seed);
    let mut value = 100i64;
    (0..n)
        .map(|i| {
            let t = jittered_grid(&mut rng, i);
            if rng.below(10) == 0 {
                value += rng.below(7) as i64 - 3;
            }
            let v = if rng.below(500) == 0 {
                f64::from_bits(STALE_NAN_BITS)
            } else {
                value as f64
            };
            (t, v)
        })
        .collect()
}

/// A counter (e.g. requests served): 10 s scrapes with ±1 ms jitter, an integer total that
/// grows by `0..100` per scrape and resets to zero once in 5 000 scrapes.
pub fn counter(n: usize, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = SplitMix64(seed);
    let mut total = 0u64;
    (0..n)
        .map(|i| {
            let t = jittered_grid(&mut rng, i);
            if rng.below(5_000) == 0 {
                total = 0;
            } else {
                total += rng.below(100);
            }
            (t, total as f64)
        })
        .collect()
}

/// Random values: uniform doubles in `[0, 1)` with all 53 bits of precision, on an exact
/// 1 s grid. The worst case for value compression short of random bit patterns.
pub fn random(n: usize, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|i| {
            let v = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            (START_MS + 1_000 * i as i64, v)
        })
        .collect()
}

/// A gauge with two decimals (prices, percentages, temperatures): a random walk in cents, by
/// a step uniform in `-1.00..=1.00`, on an exact 10 s grid. Decimal values have no short
/// binary form, so Gorilla's XOR windows change at random: the hard case for its decoder
/// (the data of the query comparison with VictoriaMetrics).
pub fn cents(n: usize, seed: u64) -> Vec<(i64, f64)> {
    let mut rng = SplitMix64(seed);
    let mut cents = 5_000i64;
    (0..n)
        .map(|i| {
            cents = (cents + rng.below(201) as i64 - 100).max(0);
            (START_MS + 10_000 * i as i64, cents as f64 / 100.0)
        })
        .collect()
}

/// A constant `42.0` on an exact 10 s grid: the best case.
pub fn constant(n: usize) -> Vec<(i64, f64)> {
    (0..n)
        .map(|i| (START_MS + 10_000 * i as i64, 42.0))
        .collect()
}

/// Points per segment of [`mixed`].
pub const MIXED_SEGMENT: usize = 1_024;

/// A mixed series: segments of [`MIXED_SEGMENT`] points taken in turn from a gauge, a
/// counter, random values and a constant (the generators above, with the same seed), all
/// placed on one 10 s grid with ±1 ms jitter. It exercises every code path of a codec in one
/// series, in the proportions of a realistic mix.
pub fn mixed(n: usize, seed: u64) -> Vec<(i64, f64)> {
    let kinds = [
        prom_gauge(n, seed),
        counter(n, seed),
        random(n, seed),
        constant(n),
    ];
    let mut rng = SplitMix64(seed ^ 0x006d_6978_6564);
    (0..n)
        .map(|i| {
            let kind = &kinds[(i / MIXED_SEGMENT) % kinds.len()];
            (jittered_grid(&mut rng, i), kind[i].1)
        })
        .collect()
}

/// Every synthetic series with `n` points, as datasets of group `"synthetic"` named
/// `prom-gauge`, `counter`, `random`, `cents`, `constant` and `mixed`.
pub fn all(n: usize, seed: u64) -> Vec<Dataset> {
    [
        ("prom-gauge", prom_gauge(n, seed)),
        ("counter", counter(n, seed)),
        ("random", random(n, seed)),
        ("cents", cents(n, seed)),
        ("constant", constant(n)),
        ("mixed", mixed(n, seed)),
    ]
    .into_iter()
    .map(|(name, points)| Dataset {
        group: "synthetic".to_owned(),
        name: name.to_owned(),
        points,
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_sized() {
        for d in all(3_000, 11) {
            assert_eq!(d.points.len(), 3_000, "{}", d.name);
        }
        let bits = |s: &[(i64, f64)]| s.iter().map(|&(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
        for (a, b) in all(5_000, 3).iter().zip(&all(5_000, 3)) {
            assert_eq!(bits(&a.points), bits(&b.points), "{}", a.name);
        }
        assert_ne!(bits(&prom_gauge(500, 3)), bits(&prom_gauge(500, 4)));
    }

    #[test]
    fn gauge_has_jitter_repeats_and_stale_markers() {
        let g = prom_gauge(20_000, 1);
        for (i, w) in g.windows(2).enumerate() {
            let d = w[1].0 - w[0].0;
            assert!((9_998..=10_002).contains(&d), "delta {d} at {i}");
        }
        assert!(g.windows(2).any(|w| w[1].0 - w[0].0 != 10_000), "no jitter");
        let stale = g.iter().filter(|p| p.1.to_bits() == STALE_NAN_BITS).count();
        assert!((10..=100).contains(&stale), "{stale} stale markers");
        let repeats = g
            .windows(2)
            .filter(|w| w[0].1.to_bits() == w[1].1.to_bits())
            .count();
        assert!(repeats > g.len() * 8 / 10, "only {repeats} repeated values");
        assert!(
            g.iter().all(|p| p.1.is_nan() || p.1.fract() == 0.0),
            "non-integer gauge value"
        );
    }

    #[test]
    fn counter_only_grows_between_resets() {
        let c = counter(20_000, 2);
        let drops = c.windows(2).filter(|w| w[1].1 < w[0].1).count();
        assert!(drops <= 10, "{drops} drops");
        assert!(
            c.windows(2)
                .filter(|w| w[1].1 < w[0].1)
                .all(|w| w[1].1 == 0.0)
        );
    }

    #[test]
    fn mixed_cycles_through_the_kinds() {
        let n = MIXED_SEGMENT * 4;
        let m = mixed(n, 5);
        let c = constant(n);
        let r = random(n, 5);
        assert_eq!(m[2 * MIXED_SEGMENT].1, r[2 * MIXED_SEGMENT].1);
        assert_eq!(m[3 * MIXED_SEGMENT + 7].1, c[3 * MIXED_SEGMENT + 7].1);
        assert!(
            m.windows(2)
                .all(|w| (9_998..=10_002).contains(&(w[1].0 - w[0].0)))
        );
    }
}
