//! The arithmetic of range functions over one window of samples, exactly as Prometheus 2.42
//! does it: shared by this crate's PromQL engine and by the database's typed query engine, so
//! both give the same answers to the last bit.

use std::cmp::Ordering;

/// The `q` quantile of `values` (sorted in place) with linear interpolation between the
/// closest ranks. NaN when `values` is empty or `q` is NaN, -inf for `q < 0`, +inf for `q > 1`;
/// NaN samples sort first, as Go's `sort.Float64s` orders them.
///
/// ```
/// let mut v = [4.0, 1.0, 3.0, 2.0];
/// assert_eq!(tsdb_promql::rollup::quantile(0.5, &mut v), 2.5);
/// ```
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let w = rank - lower;
    values[lower as usize] * (1.0 - w) + values[upper as usize] * w
}

/// Population variance, by Welford's method (stable for values far from zero). NaN for no
/// values.
pub fn variance(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut n, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
    for v in values {
        n += 1.0;
        let d = v - mean;
        mean += d / n;
        m2 += d * (v - mean);
    }
    m2 / n
}

/// The increase of a counter over `values` in time order: the last minus the first, plus the
/// value before every reset (a sample lower than the one before it), added in that order as
/// Prometheus does. 0 for no values.
pub fn counter_increase<I>(values: I) -> f64
where
    I: IntoIterator<Item = f64>,
    I::IntoIter: DoubleEndedIterator + Clone,
{
    let values = values.into_iter();
    let (Some(first), Some(last)) = (values.clone().next(), values.clone().next_back()) else {
        return 0.0;
    };
    let mut increase = last - first;
    let mut prev = 0.0;
    for v in values {
        if v < prev {
            increase += prev;
        }
        prev = v;
    }
    increase
}

/// The samples of a window as `rate`, `increase` and `delta` see them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowSamples {
    /// The first sample: timestamp (ms) and value.
    pub first: (i64, f64),
    /// The last sample.
    pub last: (i64, f64),
    /// How many samples the window holds.
    pub count: usize,
    /// The change over them: [`counter_increase`] for counters, last minus first otherwise.
    pub change: f64,
}

impl WindowSamples {
    /// The samples of a window: `values` in time order, the first at `first_ts` and the last
    /// at `last_ts` (ms); the change is the [`counter_increase`] for a counter. `None` for no
    /// values.
    pub fn new<I>(first_ts: i64, last_ts: i64, values: I, counter: bool) -> Option<Self>
    where
        I: IntoIterator<Item = f64>,
        I::IntoIter: DoubleEndedIterator + ExactSizeIterator + Clone,
    {
        let values = values.into_iter();
        let (first, last) = (values.clone().next()?, values.clone().next_back()?);
        Some(WindowSamples {
            first: (first_ts, first),
            last: (last_ts, last),
            count: values.len(),
            change: if counter {
                counter_increase(values)
            } else {
                last - first
            },
        })
    }
}

/// `rate` (`per_second`), `increase` (`counter`) or `delta` (neither) over the window
/// `(start, end]` (ms): the change over the samples, extrapolated towards the window's edges by
/// at most half an average sample interval beyond the samples (and for counters, not below
/// zero). `None` with fewer than two samples or no time between them.
pub fn extrapolated(
    samples: WindowSamples,
    (start, end): (i64, i64),
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    let WindowSamples {
        first,
        last,
        count,
        change,
    } = samples;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    if count < 2 || sampled <= 0.0 {
        return None;
    }
    let mut to_start = (first.0 - start) as f64 / 1000.0;
    let to_end = (end - last.0) as f64 / 1000.0;
    let avg_gap = sampled / (count - 1) as f64;
    if counter && change > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / change);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_gap * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_gap / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_gap / 2.0
    };
    // One factor, as Prometheus computes it (the order of operations shows in the last bits).
    let mut factor = interval / sampled;
    if per_second {
        factor /= (end - start) as f64 / 1000.0;
    }
    Some(change * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_clamps_and_sorts_nan_first() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(-1.0, &mut v), f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
        let mut with_nan = vec![2.0, f64::NAN, 1.0];
        assert!(quantile(0.0, &mut with_nan).is_nan());
        assert_eq!(quantile(1.0, &mut with_nan), 2.0);
    }

    #[test]
    fn counter_increase_adds_the_value_before_each_reset() {
        assert_eq!(
            counter_increase([10.0, 20.0, 5.0, 15.0]),
            20.0 - 10.0 + 15.0
        );
        assert_eq!(counter_increase(Vec::new()), 0.0);
        assert_eq!(counter_increase([3.0]), 0.0);
    }

    #[test]
    fn variance_of_a_constant_is_zero_and_of_two_points_their_half_spread_squared() {
        assert_eq!(variance([5.0; 10]), 0.0);
        assert_eq!(variance([1.0, 3.0]), 1.0);
        assert!(variance([]).is_nan());
    }

    #[test]
    fn a_steady_counter_extrapolates_to_the_window_edges() {
        // 50, 60, ..., 150 every 10 s at 5..105 s; the window is (0, 110 s].
        let samples = WindowSamples {
            first: (5_000, 50.0),
            last: (105_000, 150.0),
            count: 11,
            change: 100.0,
        };
        // Both edges are 5 s from the samples (under 1.1 intervals) and the counter's zero
        // point lies 50 s before the first sample: extrapolated by 5 s at both ends.
        let increase = extrapolated(samples, (0, 110_000), true, false).expect("two samples");
        assert!((increase - 110.0).abs() < 1e-12, "{increase}");
        let rate = extrapolated(samples, (0, 110_000), true, true).expect("two samples");
        assert!((rate - 1.0).abs() < 1e-12, "{rate}");
        // Starting at 2, the counter reaches zero 2 s before its first sample: that bounds
        // the extrapolation at the start.
        let low = WindowSamples {
            first: (5_000, 2.0),
            change: 100.0,
            ..samples
        };
        let increase = extrapolated(low, (0, 110_000), true, false).expect("two samples");
        assert!(
            (increase - 100.0 * 107.0 / 100.0).abs() < 1e-12,
            "{increase}"
        );
        let one = WindowSamples {
            count: 1,
            ..samples
        };
        assert_eq!(extrapolated(one, (0, 110_000), true, false), None);
    }
}
