//! Aggregation across series, grouped by labels: PromQL's aggregation operators, which the
//! query is written as.

use std::fmt;
use std::str::FromStr;

use tsdb_core::{Error, Labels, METRIC_NAME_LABEL};

use super::ResultLabels;
use super::functions::{number, parse_call, parse_param};

/// An aggregation across series at each step, as PromQL's aggregation operators.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Aggregation {
    /// Sum of the values.
    Sum,
    /// Mean of the values.
    Avg,
    /// Smallest value (NaN only when all are NaN).
    Min,
    /// Largest value (NaN only when all are NaN).
    Max,
    /// Number of series with a value.
    Count,
    /// Population standard deviation.
    Stddev,
    /// Population variance.
    Stdvar,
    /// The φ-quantile of the values.
    Quantile(f64),
    /// The `k` largest values of each group, keeping their series' labels.
    Topk(usize),
    /// The `k` smallest values of each group, keeping their series' labels.
    Bottomk(usize),
}

impl Aggregation {
    /// The PromQL aggregation of `expr` grouped by `grouping`.
    pub fn promql(&self, grouping: &Grouping, expr: &str) -> String {
        let (op, param) = match self {
            Aggregation::Sum => ("sum", None),
            Aggregation::Avg => ("avg", None),
            Aggregation::Min => ("min", None),
            Aggregation::Max => ("max", None),
            Aggregation::Count => ("count", None),
            Aggregation::Stddev => ("stddev", None),
            Aggregation::Stdvar => ("stdvar", None),
            Aggregation::Quantile(q) => ("quantile", Some(number(*q))),
            Aggregation::Topk(k) => ("topk", Some(k.to_string())),
            Aggregation::Bottomk(k) => ("bottomk", Some(k.to_string())),
        };
        let modifier = match grouping {
            Grouping::All => String::new(),
            Grouping::By(names) => format!(" by ({})", names.join(", ")),
            Grouping::Without(names) => format!(" without ({})", names.join(", ")),
        };
        match param {
            Some(p) => format!("{op}{modifier} ({p}, {expr})"),
            None => format!("{op}{modifier} ({expr})"),
        }
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregation::Sum => f.write_str("sum"),
            Aggregation::Avg => f.write_str("avg"),
            Aggregation::Min => f.write_str("min"),
            Aggregation::Max => f.write_str("max"),
            Aggregation::Count => f.write_str("count"),
            Aggregation::Stddev => f.write_str("stddev"),
            Aggregation::Stdvar => f.write_str("stdvar"),
            Aggregation::Quantile(q) => write!(f, "quantile({q})"),
            Aggregation::Topk(k) => write!(f, "topk({k})"),
            Aggregation::Bottomk(k) => write!(f, "bottomk({k})"),
        }
    }
}

impl FromStr for Aggregation {
    type Err = Error;

    /// Parses `sum`, `avg`, ..., `quantile(0.9)`, `topk(5)`, `bottomk(5)`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if let Some(arg) = parse_call(s, &["quantile"]) {
            return Ok(Aggregation::Quantile(parse_param(s, arg)?));
        }
        if let Some(arg) = parse_call(s, &["topk"]) {
            return Ok(Aggregation::Topk(parse_param(s, arg)?));
        }
        if let Some(arg) = parse_call(s, &["bottomk"]) {
            return Ok(Aggregation::Bottomk(parse_param(s, arg)?));
        }
        Ok(match s {
            "sum" => Aggregation::Sum,
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "count" => Aggregation::Count,
            "stddev" => Aggregation::Stddev,
            "stdvar" => Aggregation::Stdvar,
            _ => {
                return Err(Error::invalid_input(format_args!(
                    "unknown aggregation {s:?}; known: sum, avg, min, max, count, stddev, \
                     stdvar, quantile(φ), topk(k), bottomk(k)"
                )));
            }
        })
    }
}

/// Which labels form the groups of an [`Aggregation`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Grouping {
    /// One group of all series (`sum(...)`).
    #[default]
    All,
    /// Groups by the values of these labels (`sum by (a, b)`); other labels are dropped.
    By(Vec<String>),
    /// Groups by every label except these and the metric name (`sum without (a, b)`).
    Without(Vec<String>),
}

impl Grouping {
    /// The labels of the group `labels` falls into.
    pub fn group_of(&self, labels: &Labels) -> ResultLabels {
        match self {
            Grouping::All => ResultLabels::new(),
            Grouping::By(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.to_owned())))
                .collect(),
            Grouping::Without(names) => labels
                .iter()
                .filter(|l| l.name != METRIC_NAME_LABEL && !names.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
        }
    }
}
