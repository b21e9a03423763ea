//! Range functions: one value from the points of a series inside a window, as Prometheus
//! defines them (`avg_over_time`, `rate`, ...).

use std::fmt;
use std::str::FromStr;

use tsdb_core::Error;
use tsdb_promql::rollup::{WindowSamples, extrapolated, quantile, variance};

/// A function of the points of one series inside a sliding window `(t - window, t]`.
///
/// The names are those of PromQL without the `_over_time` suffix. Counter functions
/// (`rate`, `increase`, `irate`, `resets`) treat a drop in value as a counter reset, as
/// Prometheus does: the value before the drop is added back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RangeFunction {
    /// Mean of the values (`avg_over_time`).
    Avg,
    /// Smallest value (`min_over_time`); NaN only when every value is NaN.
    Min,
    /// Largest value (`max_over_time`); NaN only when every value is NaN.
    Max,
    /// Sum of the values (`sum_over_time`).
    Sum,
    /// Number of points (`count_over_time`).
    Count,
    /// Value of the oldest point in the window.
    First,
    /// Value of the newest point in the window (`last_over_time`).
    Last,
    /// Population standard deviation (`stddev_over_time`).
    Stddev,
    /// Population variance (`stdvar_over_time`).
    Stdvar,
    /// The φ-quantile of the values, `0 <= φ <= 1` (`quantile_over_time`); φ below 0 gives
    /// `-Inf`, above 1 `+Inf`, as in Prometheus.
    Quantile(f64),
    /// Per-second increase of a counter, extrapolated to the window edges (`rate`).
    Rate,
    /// Increase of a counter over the window, extrapolated to its edges (`increase`).
    Increase,
    /// Difference between last and first value of a gauge, extrapolated (`delta`).
    Delta,
    /// Per-second increase between the last two points (`irate`).
    Irate,
    /// Number of times the value changed (`changes`).
    Changes,
    /// Number of counter resets, i.e. drops in value (`resets`).
    Resets,
}

impl RangeFunction {
    /// Every function taking no parameter, with its name (for help texts and parsers).
    pub const NAMES: &'static [&'static str] = &[
        "avg",
        "min",
        "max",
        "sum",
        "count",
        "first",
        "last",
        "stddev",
        "stdvar",
        "rate",
        "increase",
        "delta",
        "irate",
        "changes",
        "resets",
        "quantile(φ)",
    ];

    /// Applies the function to the points of one window ending at `t` (ms) of width
    /// `window` (ms). `ts` and `vs` hold the points in `(t - window, t]`, ascending; `None`
    /// when the function has no value (empty window, or fewer points than it needs).
    pub fn apply(&self, ts: &[i64], vs: &[f64], t: i64, window: i64) -> Option<f64> {
        if vs.is_empty() {
            return None;
        }
        let n = vs.len() as f64;
        Some(match *self {
            RangeFunction::Avg => vs.iter().sum::<f64>() / n,
            RangeFunction::Min => vs.iter().copied().fold(f64::NAN, nan_min),
            RangeFunction::Max => vs.iter().copied().fold(f64::NAN, nan_max),
            RangeFunction::Sum => vs.iter().sum(),
            RangeFunction::Count => n,
            RangeFunction::First => vs[0],
            RangeFunction::Last => vs[vs.len() - 1],
            RangeFunction::Stddev => variance(vs.iter().copied()).sqrt(),
            RangeFunction::Stdvar => variance(vs.iter().copied()),
            RangeFunction::Quantile(q) => {
                let mut sorted = vs.to_vec();
                quantile(q, &mut sorted)
            }
            RangeFunction::Rate => change_over(ts, vs, t, window, true, true)?,
            RangeFunction::Increase => change_over(ts, vs, t, window, true, false)?,
            RangeFunction::Delta => change_over(ts, vs, t, window, false, false)?,
            RangeFunction::Irate => {
                let k = vs.len();
                if k < 2 {
                    return None;
                }
                let (prev, last) = (vs[k - 2], vs[k - 1]);
                let dt = (ts[k - 1] - ts[k - 2]) as f64 / 1000.0;
                if dt == 0.0 {
                    return None;
                }
                let inc = if last < prev { last } else { last - prev };
                inc / dt
            }
            RangeFunction::Changes => vs
                .windows(2)
                .filter(|w| w[0] != w[1] && !(w[0].is_nan() && w[1].is_nan()))
                .count() as f64,
            RangeFunction::Resets => vs.windows(2).filter(|w| w[1] < w[0]).count() as f64,
        })
    }
}

impl fmt::Display for RangeFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            RangeFunction::Avg => "avg",
            RangeFunction::Min => "min",
            RangeFunction::Max => "max",
            RangeFunction::Sum => "sum",
            RangeFunction::Count => "count",
            RangeFunction::First => "first",
            RangeFunction::Last => "last",
            RangeFunction::Stddev => "stddev",
            RangeFunction::Stdvar => "stdvar",
            RangeFunction::Quantile(q) => return write!(f, "quantile({q})"),
            RangeFunction::Rate => "rate",
            RangeFunction::Increase => "increase",
            RangeFunction::Delta => "delta",
            RangeFunction::Irate => "irate",
            RangeFunction::Changes => "changes",
            RangeFunction::Resets => "resets",
        };
        f.write_str(name)
    }
}

impl FromStr for RangeFunction {
    type Err = Error;

    /// Parses `avg`, `avg_over_time`, `rate`, `quantile(0.9)`, `quantile_over_time(0.9)`, ...
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if let Some(arg) = parse_call(s, &["quantile", "quantile_over_time"]) {
            return Ok(RangeFunction::Quantile(parse_param(s, arg)?));
        }
        let base = s.strip_suffix("_over_time").unwrap_or(s);
        Ok(match base {
            "avg" => RangeFunction::Avg,
            "min" => RangeFunction::Min,
            "max" => RangeFunction::Max,
            "sum" => RangeFunction::Sum,
            "count" => RangeFunction::Count,
            "first" => RangeFunction::First,
            "last" => RangeFunction::Last,
            "stddev" => RangeFunction::Stddev,
            "stdvar" => RangeFunction::Stdvar,
            "rate" => RangeFunction::Rate,
            "increase" => RangeFunction::Increase,
            "delta" => RangeFunction::Delta,
            "irate" => RangeFunction::Irate,
            "changes" => RangeFunction::Changes,
            "resets" => RangeFunction::Resets,
            _ => {
                return Err(Error::invalid_input(format_args!(
                    "unknown range function {s:?}; known: {}",
                    RangeFunction::NAMES.join(", ")
                )));
            }
        })
    }
}

/// The argument text of `name(arg)` when `s` is a call of one of `names`.
pub(crate) fn parse_call<'a>(s: &'a str, names: &[&str]) -> Option<&'a str> {
    let (name, rest) = s.split_once('(')?;
    let arg = rest.strip_suffix(')')?;
    names.contains(&name.trim()).then_some(arg.trim())
}

pub(crate) fn parse_param<T: FromStr>(call: &str, arg: &str) -> Result<T, Error> {
    arg.parse()
        .map_err(|_| Error::invalid_input(format_args!("bad parameter {arg:?} in {call:?}")))
}

/// `min` that ignores NaN unless both are NaN (Prometheus' `min_over_time`).
pub(crate) fn nan_min(acc: f64, v: f64) -> f64 {
    if acc.is_nan() || v < acc { v } else { acc }
}

/// `max` that ignores NaN unless both are NaN.
pub(crate) fn nan_max(acc: f64, v: f64) -> f64 {
    if acc.is_nan() || v > acc { v } else { acc }
}

/// `rate`, `increase` and `delta` of the window `(t - window, t]` holding the samples
/// `ts`/`vs`, with Prometheus' extrapolation ([`tsdb_promql::rollup::extrapolated`]).
fn change_over(
    ts: &[i64],
    vs: &[f64],
    t: i64,
    window: i64,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    let samples = WindowSamples::new(*ts.first()?, *ts.last()?, vs.iter().copied(), counter)?;
    extrapolated(samples, (t - window, t), counter, per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in [
            RangeFunction::Avg,
            RangeFunction::Rate,
            RangeFunction::Quantile(0.9),
            RangeFunction::Resets,
        ] {
            assert_eq!(f.to_string().parse::<RangeFunction>().expect("parses"), f);
        }
        assert_eq!(
            "avg_over_time".parse::<RangeFunction>().expect("parses"),
            RangeFunction::Avg
        );
        assert!("median".parse::<RangeFunction>().is_err());
        assert!("quantile(x)".parse::<RangeFunction>().is_err());
    }

    #[test]
    fn rate_of_a_steady_counter_is_its_slope_despite_a_reset() {
        // Every 10 s: 10, 20, 30, 40, then a reset to 0 at 50 s, then 10 .. 50.
        let ts: Vec<i64> = (1..=10).map(|i| i * 10_000).collect();
        let vs: Vec<f64> = (1..=10)
            .map(|i| {
                if i < 5 {
                    i as f64 * 10.0
                } else {
                    (i - 5) as f64 * 10.0
                }
            })
            .collect();
        // Increase over the samples: 30 before the reset + 50 after = 80 in 90 s, extrapolated
        // by 10 s to the window start (within 1.1 average intervals, and before the counter's
        // zero point at 90 s * 10 / 80 = 11.25 s): 80 * 100 / 90 over the 100 s window.
        let rate = RangeFunction::Rate
            .apply(&ts, &vs, 100_000, 100_000)
            .expect("two points or more");
        let expected = 80.0 * 100.0 / 90.0 / 100.0;
        assert!((rate - expected).abs() < 1e-12, "{rate} != {expected}");
        assert_eq!(
            RangeFunction::Resets.apply(&ts, &vs, 100_000, 100_000),
            Some(1.0)
        );
        assert_eq!(
            RangeFunction::Irate.apply(&ts, &vs, 100_000, 100_000),
            Some(1.0)
        );
    }
}
