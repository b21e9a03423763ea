//! Range functions of the typed query API: names of PromQL's range functions, which the
//! query is written as (the evaluation is PromQL's, in `tsdb-promql`).

use std::fmt;
use std::str::FromStr;

use tsdb_core::Error;

/// A function of the points of one series inside a sliding window `[t - window, t]`: one of
/// PromQL's range functions (see [`RangeFunction::promql`]).
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

    /// The PromQL call of this function over `matrix` (a range selector, `sel[5m]`).
    pub fn promql(&self, matrix: &str) -> String {
        match self {
            RangeFunction::Avg => format!("avg_over_time({matrix})"),
            RangeFunction::Min => format!("min_over_time({matrix})"),
            RangeFunction::Max => format!("max_over_time({matrix})"),
            RangeFunction::Sum => format!("sum_over_time({matrix})"),
            RangeFunction::Count => format!("count_over_time({matrix})"),
            RangeFunction::Last => format!("last_over_time({matrix})"),
            RangeFunction::Stddev => format!("stddev_over_time({matrix})"),
            RangeFunction::Stdvar => format!("stdvar_over_time({matrix})"),
            RangeFunction::Quantile(q) => format!("quantile_over_time({}, {matrix})", number(*q)),
            RangeFunction::Rate => format!("rate({matrix})"),
            RangeFunction::Increase => format!("increase({matrix})"),
            RangeFunction::Delta => format!("delta({matrix})"),
            RangeFunction::Irate => format!("irate({matrix})"),
            RangeFunction::Changes => format!("changes({matrix})"),
            RangeFunction::Resets => format!("resets({matrix})"),
        }
    }
}

/// A number as PromQL reads it back exactly (`NaN`, `Inf`, `-Inf` included).
pub(crate) fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 {
            "Inf".to_owned()
        } else {
            "-Inf".to_owned()
        }
    } else {
        format!("{v:?}")
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
    fn promql_calls_read_back_as_written() {
        for f in [
            RangeFunction::Rate,
            RangeFunction::Quantile(0.25),
            RangeFunction::Quantile(f64::NAN),
        ] {
            let text = f.promql("m[5m]");
            assert!(
                tsdb_promql::parse(&text, &tsdb_promql::EngineOptions::default()).is_ok(),
                "{text}"
            );
        }
        assert_eq!(RangeFunction::Avg.promql("m[5m]"), "avg_over_time(m[5m])");
    }
}
