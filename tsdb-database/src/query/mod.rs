//! The typed query API: select series by label matchers, apply a range function over a
//! sliding window at each step of a grid, and aggregate across series grouped by labels.
//!
//! A [`RangeQuery`] is a builder of PromQL ([`RangeQuery::to_promql`]):
//! [`crate::TimeSeriesDB::range_query`] evaluates it with the `tsdb-promql` engine, the one
//! evaluator of the database, so it has Prometheus 2.42's semantics exactly: a window at step
//! `t` holds the points in `[t - window, t]`; without a function, a series' value at `t` is
//! its last point in `[t - window, t]` (the lookback of an instant selector). Before anything
//! is read, the index counts the series and the points of the chunks overlapping the range,
//! and the query is refused when they exceed [`QueryLimits`].
//!
//! ```
//! use tsdb_database::query::{Aggregation, Grouping, RangeFunction, RangeQuery};
//! use tsdb_core::LabelMatcher;
//! // sum by (region) (avg_over_time(cpu[5m])) over one hour at a one-minute step
//! let q = RangeQuery::new(vec![LabelMatcher::metric("cpu")], 0, 3_600_000, 60_000)
//!     .with_function(RangeFunction::Avg, 300_000)
//!     .with_aggregation(Aggregation::Sum, Grouping::By(vec!["region".into()]));
//! assert_eq!(q.step_timestamps()?.len(), 61);
//! assert_eq!(
//!     q.to_promql(),
//!     r#"sum by (region) (avg_over_time({__name__="cpu"}[5m]))"#
//! );
//! # Ok::<(), tsdb_core::Error>(())
//! ```

mod aggregate;
mod exec;
mod functions;

use std::collections::BTreeMap;

use tsdb_core::{Error, LabelMatcher, MatchOp, Result, TimeRange};

pub use aggregate::{Aggregation, Grouping};
pub use functions::RangeFunction;

pub(crate) use exec::{POINTS_READ, SERIES_SELECTED};

/// Default window of a selection without a function: Prometheus' lookback delta, 5 minutes.
pub const DEFAULT_LOOKBACK_MS: i64 = 300_000;

/// Labels of a result series: the series' own (minus the metric name once a function or
/// aggregation changed the meaning of the value), or the labels of an aggregation group.
pub type ResultLabels = BTreeMap<String, String>;

/// Bounds a query must stay within, each refused with [`Error::LimitExceeded`] naming it:
/// series, points and steps before any chunk is read, the values held for the answer as soon
/// as they would go over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Most series a query may select. Default: 1,000,000.
    pub max_series: usize,
    /// Most points a query may read (stored chunks overlapping the range plus buffered
    /// points), counted from chunk headers before anything is decoded. Default: 200,000,000.
    pub max_points: u64,
    /// Most steps of the evaluation grid. Default: 1,000,000.
    pub max_steps: usize,
    /// Most samples the evaluation may hold at once (PromQL's `max_samples`). Default:
    /// 50,000,000.
    pub max_samples: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_series: 1_000_000,
            max_points: 200_000_000,
            max_steps: 1_000_000,
            max_samples: 50_000_000,
        }
    }
}

impl QueryLimits {
    /// Sets [`QueryLimits::max_series`].
    pub fn with_max_series(mut self, n: usize) -> Self {
        self.max_series = n;
        self
    }

    /// Sets [`QueryLimits::max_points`].
    pub fn with_max_points(mut self, n: u64) -> Self {
        self.max_points = n;
        self
    }

    /// Sets [`QueryLimits::max_steps`].
    pub fn with_max_steps(mut self, n: usize) -> Self {
        self.max_steps = n;
        self
    }

    /// Sets [`QueryLimits::max_samples`].
    pub fn with_max_samples(mut self, n: u64) -> Self {
        self.max_samples = n;
        self
    }
}

/// A query over a time range, evaluated on a grid of steps. See the [module](self) docs.
#[derive(Clone, Debug)]
pub struct RangeQuery {
    /// Series matching all of these (Prometheus semantics).
    pub matchers: Vec<LabelMatcher>,
    /// First step (ms, inclusive).
    pub start: i64,
    /// No step is after this (ms, inclusive).
    pub end: i64,
    /// Distance between steps (ms, > 0).
    pub step: i64,
    /// The range function applied per series, if any.
    pub function: Option<RangeFunction>,
    /// Width (ms, > 0) of the window `[t - window, t]` seen at step `t`: the function's range,
    /// or the lookback of a plain selection. Default: [`DEFAULT_LOOKBACK_MS`].
    pub window: i64,
    /// Aggregation across series and its grouping, if any.
    pub aggregation: Option<(Aggregation, Grouping)>,
    /// Limits the query must stay within.
    pub limits: QueryLimits,
}

impl RangeQuery {
    /// A plain selection of the series matching `matchers` at the steps
    /// `start, start + step, ... <= end`.
    pub fn new(matchers: Vec<LabelMatcher>, start: i64, end: i64, step: i64) -> Self {
        RangeQuery {
            matchers,
            start,
            end,
            step,
            function: None,
            window: DEFAULT_LOOKBACK_MS,
            aggregation: None,
            limits: QueryLimits::default(),
        }
    }

    /// An evaluation at the single instant `t`.
    pub fn instant(matchers: Vec<LabelMatcher>, t: i64) -> Self {
        Self::new(matchers, t, t, 1)
    }

    /// Applies `function` over a window of `window` ms.
    pub fn with_function(mut self, function: RangeFunction, window: i64) -> Self {
        self.function = Some(function);
        self.window = window;
        self
    }

    /// Sets the lookback window of a plain selection (or the function's window).
    pub fn with_window(mut self, window: i64) -> Self {
        self.window = window;
        self
    }

    /// Aggregates across series.
    pub fn with_aggregation(mut self, op: Aggregation, grouping: Grouping) -> Self {
        self.aggregation = Some((op, grouping));
        self
    }

    /// Uses these limits.
    pub fn with_limits(mut self, limits: QueryLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks the arguments: [`Error::InvalidInput`] for an inverted range, a step or window
    /// that is not positive, a bad function or aggregation parameter;
    /// [`Error::LimitExceeded`] for too many steps.
    pub fn validate(&self) -> Result<()> {
        TimeRange::new(self.start, self.end)?;
        if self.step <= 0 {
            return Err(Error::invalid_input(format_args!(
                "query step must be positive, got {} ms",
                self.step
            )));
        }
        if self.window <= 0 {
            return Err(Error::invalid_input(format_args!(
                "query window must be positive, got {} ms",
                self.window
            )));
        }
        if let Some(RangeFunction::Quantile(q)) = self.function
            && q.is_nan()
        {
            return Err(Error::invalid_input("quantile parameter is NaN"));
        }
        if let Some((Aggregation::Topk(0) | Aggregation::Bottomk(0), _)) = self.aggregation {
            return Err(Error::invalid_input("topk/bottomk need k >= 1"));
        }
        let steps = self.step_count();
        if steps > self.limits.max_steps as u128 {
            return Err(Error::LimitExceeded {
                what: "query steps",
                requested: u64::try_from(steps).unwrap_or(u64::MAX),
                limit: self.limits.max_steps as u64,
            });
        }
        Ok(())
    }

    fn step_count(&self) -> u128 {
        let span = (i128::from(self.end) - i128::from(self.start)).max(0) as u128;
        span / self.step.max(1) as u128 + 1
    }

    /// The timestamps of the steps, after [`Self::validate`].
    pub fn step_timestamps(&self) -> Result<Vec<i64>> {
        self.validate()?;
        let n = self.step_count() as usize;
        Ok((0..n as i64).map(|k| self.start + k * self.step).collect())
    }

    /// The span of points the query reads: `[start - window, end]`.
    pub fn read_range(&self) -> TimeRange {
        TimeRange {
            start: self.start.saturating_sub(self.window),
            end: self.end,
        }
    }

    /// The query as PromQL text: the selector of the matchers (`{name="value", ...}`), the
    /// function over `selector[<window>ms]` (or, without one, the selector itself, or
    /// `last_over_time` over the window when it is not the 5-minute lookback), then the
    /// aggregation.
    pub fn to_promql(&self) -> String {
        let selector = selector(&self.matchers);
        let window = duration(self.window);
        let inner = match self.function {
            Some(f) => f.promql(&format!("{selector}[{window}]")),
            None if self.window == DEFAULT_LOOKBACK_MS => selector,
            None => format!("last_over_time({selector}[{window}])"),
        };
        match &self.aggregation {
            Some((op, grouping)) => op.promql(grouping, &inner),
            None => inner,
        }
    }
}

/// A PromQL duration of `ms` milliseconds in whole units (`1d2h3m4s5ms`), which the parser
/// reads back exactly whatever the size.
fn duration(ms: i64) -> String {
    let mut left = ms.max(1);
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        let n = left / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            left -= n * size;
        }
    }
    out
}

/// The PromQL selector of `matchers`; no matcher selects every series (`{__name__=~".+"}`).
fn selector(matchers: &[LabelMatcher]) -> String {
    if matchers.is_empty() {
        return r#"{__name__=~".+"}"#.to_owned();
    }
    let parts: Vec<String> = matchers
        .iter()
        .map(|m| {
            let op = match m.op() {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
                MatchOp::RegexMatch => "=~",
                MatchOp::RegexNoMatch => "!~",
            };
            format!("{}{op}{}", m.name(), quote(m.value()))
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// A PromQL string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One series of a query result.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultSeries {
    /// Its labels.
    pub labels: ResultLabels,
    /// Step timestamps (ms) that have a value, ascending.
    pub timestamps: Vec<i64>,
    /// `values[i]` is the value at `timestamps[i]`.
    pub values: Vec<f64>,
}

/// Work counters of one query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Series selected by the matchers.
    pub series: u64,
    /// Stored chunks overlapping the range (what the evaluation reads at most).
    pub chunks_read: u64,
    /// Points of those chunks and of the head buffers, counted from chunk headers before
    /// anything was read (an upper bound of the points decoded).
    pub points_read: u64,
}

/// The answer to a [`RangeQuery`].
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// The step timestamps of the grid.
    pub steps: Vec<i64>,
    /// Result series ordered by labels; series without any value are left out.
    pub series: Vec<ResultSeries>,
    /// What the query did.
    pub stats: QueryStats,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_become_promql_that_parses() {
        let m = vec![
            LabelMatcher::metric("http_requests_total"),
            LabelMatcher::new("path", MatchOp::RegexMatch, r#"/a"b\.c.*"#).expect("matcher"),
            LabelMatcher::new("code", MatchOp::NotEqual, "500").expect("matcher"),
        ];
        let q = RangeQuery::new(m, 0, 60_000, 15_000)
            .with_function(RangeFunction::Quantile(0.99), 120_000)
            .with_aggregation(Aggregation::Topk(3), Grouping::Without(vec!["host".into()]));
        let text = q.to_promql();
        assert_eq!(
            text,
            r#"topk without (host) (3, quantile_over_time(0.99, {__name__="http_requests_total", path=~"/a\"b\\.c.*", code!="500"}[2m]))"#
        );
        let parsed = tsdb_promql::parse(&text, &tsdb_promql::EngineOptions::default());
        assert!(parsed.is_ok(), "{text}: {parsed:?}");
        let plain = RangeQuery::new(vec![], 0, 0, 1);
        assert_eq!(plain.to_promql(), r#"{__name__=~".+"}"#);
        assert_eq!(
            plain.with_window(60_000).to_promql(),
            r#"last_over_time({__name__=~".+"}[1m])"#
        );
        // Long and odd windows read back exactly.
        for ms in [1, 999, 86_400_000 * 400 + 1, 31_536_000_123] {
            let text = RangeQuery::new(vec![LabelMatcher::metric("m")], 0, 0, 1)
                .with_function(RangeFunction::Count, ms)
                .to_promql();
            let q = tsdb_promql::parse(&text, &tsdb_promql::EngineOptions::default())
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            let promql_parser::parser::Expr::Call(c) = q.expr() else {
                panic!("{text}: not a call")
            };
            let promql_parser::parser::Expr::MatrixSelector(m) = c.args.args[0].as_ref() else {
                panic!("{text}: not a matrix")
            };
            assert_eq!(m.range.as_millis() as i64, ms, "{text}");
        }
    }
}
