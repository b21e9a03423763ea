//! The query engine: select series by label matchers, apply a range function over a sliding
//! window at each step of a grid, and aggregate across series grouped by labels.
//!
//! A [`RangeQuery`] is evaluated by [`crate::TimeSeriesDB::range_query`]:
//!
//! 1. the index finds the series matching [`RangeQuery::matchers`];
//! 2. for each series the index lists the chunks overlapping `[start - window, end]`
//!    (pruning by time before anything is read), and the head buffers give the points not yet
//!    in chunks; the query is refused when the series or points exceed [`QueryLimits`]
//!    (before anything is decoded);
//! 3. series are read and evaluated in parallel (one task per slice of series, all cores):
//!    only overlapping chunks are decoded, in bulk into columns;
//! 4. at each step `t` of the grid `start, start + step, ... <= end`, the [`RangeFunction`]
//!    gets the points in `(t - window, t]`; without a function, the series' value at `t` is
//!    its last point in `(t - window, t]` (the lookback of an instant selector);
//! 5. an [`Aggregation`] combines the series of each group; sum, avg, min, max, count, stddev
//!    and stdvar keep running totals only (per-series results are never materialized);
//! 6. the values the query holds for its answer (result values, or an aggregation's slots
//!    per group and step) are counted as they are made: over [`QueryLimits::max_samples`]
//!    the query stops with [`Error::LimitExceeded`].
//!
//! Semantics follow PromQL (left-open windows as in Prometheus 3 and VictoriaMetrics).
//!
//! ```
//! use tsdb_database::query::{Aggregation, Grouping, RangeFunction, RangeQuery};
//! use tsdb_core::LabelMatcher;
//! // sum by (region) (avg_over_time(cpu[5m])) over one hour at a one-minute step
//! let q = RangeQuery::new(vec![LabelMatcher::metric("cpu")], 0, 3_600_000, 60_000)
//!     .with_function(RangeFunction::Avg, 300_000)
//!     .with_aggregation(Aggregation::Sum, Grouping::By(vec!["region".into()]));
//! assert_eq!(q.step_timestamps()?.len(), 61);
//! # Ok::<(), tsdb_core::Error>(())
//! ```

mod aggregate;
mod exec;
mod functions;

use std::collections::BTreeMap;

use tsdb_core::{Error, LabelMatcher, Labels, METRIC_NAME_LABEL, Result, TimeRange};

pub use aggregate::{Aggregation, Grouping};
pub use functions::RangeFunction;

pub(crate) use aggregate::Aggregator;
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
    /// Most values the query may hold for its answer at once: the values of the result
    /// series without aggregation; with one, a slot per group and step (sum, avg, ...) or
    /// every series' values (quantile, topk, bottomk). Default: 50,000,000, as PromQL's
    /// `max_samples`.
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
    /// Width (ms, > 0) of the window `(t - window, t]` seen at step `t`: the function's range,
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

    /// The span of points the query reads: `(start - window, end]`, inclusive form.
    pub fn read_range(&self) -> TimeRange {
        TimeRange {
            start: self.start.saturating_sub(self.window).saturating_add(1),
            end: self.end,
        }
    }

    /// Labels of the result of one series without aggregation.
    pub(crate) fn output_labels(&self, labels: &Labels) -> ResultLabels {
        labels
            .iter()
            .filter(|l| self.function.is_none() || l.name != METRIC_NAME_LABEL)
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    }

    /// Evaluates one series' points (ascending, unique, covering [`Self::read_range`]) at
    /// every step.
    pub(crate) fn evaluate(&self, steps: &[i64], ts: &[i64], vs: &[f64]) -> StepValues {
        let mut out = StepValues::default();
        let (mut lo, mut hi) = (0usize, 0usize);
        for (k, &t) in steps.iter().enumerate() {
            let from = t.saturating_sub(self.window);
            // `ts` is strictly ascending: search onwards from where the last step stopped.
            hi += gallop(&ts[hi..], |x| x <= t);
            lo += gallop(&ts[lo..hi], |x| x <= from);
            if lo >= hi {
                continue;
            }
            let v = match self.function {
                None => Some(vs[hi - 1]),
                Some(f) => f.apply(&ts[lo..hi], &vs[lo..hi], t, self.window),
            };
            if let Some(v) = v {
                out.steps.push(k as u32);
                out.values.push(v);
            }
        }
        out
    }
}

/// The number of leading elements of `sorted` for which `below` holds (it must hold for a
/// prefix): an exponential search, so the cost grows with the answer, not with the slice.
fn gallop(sorted: &[i64], below: impl Fn(i64) -> bool) -> usize {
    let mut end = 1;
    while end <= sorted.len() && below(sorted[end - 1]) {
        end *= 2;
    }
    let start = end / 2;
    let end = end.min(sorted.len());
    start + sorted[start..end].partition_point(|&x| below(x))
}

/// One series evaluated on the step grid: the steps that have a value, and the values.
#[derive(Clone, Debug, Default)]
pub(crate) struct StepValues {
    pub(crate) steps: Vec<u32>,
    pub(crate) values: Vec<f64>,
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
    /// Stored chunks decoded (only chunks overlapping the range are).
    pub chunks_read: u64,
    /// Points read from chunks and head buffers, after merging.
    pub points_read: u64,
    /// Points counted from chunk headers without decoding (`count` over windows that hold
    /// whole chunks).
    pub points_counted: u64,
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
    use super::gallop;

    #[test]
    fn gallop_counts_the_prefix_like_a_linear_scan() {
        let sorted: Vec<i64> = (0..100).map(|i| i * 3).collect();
        for len in 0..=sorted.len() {
            let s = &sorted[..len];
            for bound in -2..305 {
                let linear = s.iter().take_while(|&&x| x <= bound).count();
                assert_eq!(gallop(s, |x| x <= bound), linear, "len {len} bound {bound}");
            }
        }
    }
}
