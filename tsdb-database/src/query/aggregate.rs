//! Aggregation across series, grouped by labels, one value per step.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use tsdb_core::{Error, Labels, METRIC_NAME_LABEL};

use tsdb_promql::rollup::quantile;

use super::functions::{nan_max, nan_min, parse_call, parse_param};
use super::{ResultLabels, ResultSeries, StepValues};

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
    /// True when the aggregation needs only running totals per group (it then never holds
    /// the per-series values: results are streamed into the totals).
    pub fn is_streaming(&self) -> bool {
        !matches!(
            self,
            Aggregation::Quantile(_) | Aggregation::Topk(_) | Aggregation::Bottomk(_)
        )
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

/// Running totals of one group, one slot per step.
#[derive(Clone, Debug)]
pub(crate) struct Totals {
    count: Vec<u32>,
    /// Sum for sum/avg; running mean for stddev/stdvar; min or max.
    a: Vec<f64>,
    /// Welford's M2 for stddev/stdvar.
    m2: Vec<f64>,
}

impl Totals {
    fn new(steps: usize, op: Aggregation) -> Self {
        Totals {
            count: vec![0; steps],
            a: vec![0.0; steps],
            m2: if matches!(op, Aggregation::Stddev | Aggregation::Stdvar) {
                vec![0.0; steps]
            } else {
                Vec::new()
            },
        }
    }

    fn add(&mut self, op: Aggregation, step: usize, v: f64) {
        let c = &mut self.count[step];
        let a = &mut self.a[step];
        *c += 1;
        match op {
            Aggregation::Sum | Aggregation::Avg => *a += v,
            Aggregation::Min => *a = if *c == 1 { v } else { nan_min(*a, v) },
            Aggregation::Max => *a = if *c == 1 { v } else { nan_max(*a, v) },
            Aggregation::Stddev | Aggregation::Stdvar => {
                let delta = v - *a;
                *a += delta / f64::from(*c);
                self.m2[step] += delta * (v - *a);
            }
            _ => {}
        }
    }

    fn merge(&mut self, op: Aggregation, other: &Totals) {
        for s in 0..self.count.len() {
            let (cb, b) = (other.count[s], other.a[s]);
            if cb == 0 {
                continue;
            }
            let ca = self.count[s];
            if ca == 0 {
                self.count[s] = cb;
                self.a[s] = b;
                if !self.m2.is_empty() {
                    self.m2[s] = other.m2[s];
                }
                continue;
            }
            let a = &mut self.a[s];
            match op {
                Aggregation::Sum | Aggregation::Avg => *a += b,
                Aggregation::Min => *a = nan_min(*a, b),
                Aggregation::Max => *a = nan_max(*a, b),
                Aggregation::Stddev | Aggregation::Stdvar => {
                    // Chan et al.'s parallel combination of mean and M2.
                    let n = f64::from(ca + cb);
                    let delta = b - *a;
                    *a += delta * f64::from(cb) / n;
                    self.m2[s] += other.m2[s] + delta * delta * f64::from(ca) * f64::from(cb) / n;
                }
                _ => {}
            }
            self.count[s] = ca + cb;
        }
    }

    fn finish(&self, op: Aggregation, timestamps: &[i64], labels: ResultLabels) -> ResultSeries {
        let mut out = ResultSeries {
            labels,
            timestamps: Vec::new(),
            values: Vec::new(),
        };
        for (s, &c) in self.count.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let a = self.a[s];
            let v = match op {
                Aggregation::Avg => a / f64::from(c),
                Aggregation::Count => f64::from(c),
                Aggregation::Stdvar => self.m2[s] / f64::from(c),
                Aggregation::Stddev => (self.m2[s] / f64::from(c)).sqrt(),
                _ => a,
            };
            out.timestamps.push(timestamps[s]);
            out.values.push(v);
        }
        out
    }
}

/// Accumulates per-series step values into groups: running totals for the streaming
/// aggregations, the series themselves for quantile/topk/bottomk.
#[derive(Clone, Debug)]
pub(crate) struct Aggregator {
    op: Aggregation,
    steps: usize,
    totals: BTreeMap<ResultLabels, Totals>,
    held: BTreeMap<ResultLabels, Vec<(ResultLabels, StepValues)>>,
}

impl Aggregator {
    pub(crate) fn new(op: Aggregation, steps: usize) -> Self {
        Aggregator {
            op,
            steps,
            totals: BTreeMap::new(),
            held: BTreeMap::new(),
        }
    }

    /// Adds one series' values; `series_labels` is only kept for topk/bottomk. Returns how
    /// many values the aggregator holds more: a slot per step for a new group of a streaming
    /// aggregation, the series' values otherwise.
    pub(crate) fn add(
        &mut self,
        group: ResultLabels,
        series_labels: impl FnOnce() -> ResultLabels,
        values: StepValues,
    ) -> u64 {
        if values.steps.is_empty() {
            return 0;
        }
        if self.op.is_streaming() {
            let mut added = 0;
            let totals = self.totals.entry(group).or_insert_with(|| {
                added = self.steps as u64;
                Totals::new(self.steps, self.op)
            });
            for (&s, &v) in values.steps.iter().zip(&values.values) {
                totals.add(self.op, s as usize, v);
            }
            added
        } else {
            let keep = match self.op {
                Aggregation::Topk(_) | Aggregation::Bottomk(_) => series_labels(),
                _ => ResultLabels::new(),
            };
            let added = values.values.len() as u64;
            self.held.entry(group).or_default().push((keep, values));
            added
        }
    }

    /// Combines the work of another aggregator of the same query.
    pub(crate) fn merge(&mut self, other: Aggregator) {
        for (group, totals) in other.totals {
            match self.totals.get_mut(&group) {
                Some(mine) => mine.merge(self.op, &totals),
                None => {
                    self.totals.insert(group, totals);
                }
            }
        }
        for (group, mut series) in other.held {
            self.held.entry(group).or_default().append(&mut series);
        }
    }

    /// The result series, ordered by labels.
    pub(crate) fn finish(self, timestamps: &[i64]) -> Vec<ResultSeries> {
        let op = self.op;
        let mut out: Vec<ResultSeries> = self
            .totals
            .into_iter()
            .map(|(labels, t)| t.finish(op, timestamps, labels))
            .filter(|s| !s.timestamps.is_empty())
            .collect();
        for (group, series) in self.held {
            match op {
                Aggregation::Quantile(q) => {
                    let mut dense: Vec<Vec<f64>> = vec![Vec::new(); self.steps];
                    for (_, sv) in &series {
                        for (&s, &v) in sv.steps.iter().zip(&sv.values) {
                            dense[s as usize].push(v);
                        }
                    }
                    let mut r = ResultSeries {
                        labels: group,
                        timestamps: Vec::new(),
                        values: Vec::new(),
                    };
                    for (s, mut vs) in dense.into_iter().enumerate() {
                        if !vs.is_empty() {
                            r.timestamps.push(timestamps[s]);
                            r.values.push(quantile(q, &mut vs));
                        }
                    }
                    out.push(r);
                }
                Aggregation::Topk(k) | Aggregation::Bottomk(k) => {
                    out.extend(select_k(
                        &series,
                        k,
                        matches!(op, Aggregation::Topk(_)),
                        self.steps,
                        timestamps,
                    ));
                }
                _ => {}
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// topk/bottomk of one group: at each step the `k` series with the largest (smallest) values,
/// NaN last; each chosen series keeps its labels and the values of the steps it was chosen at.
fn select_k(
    series: &[(ResultLabels, StepValues)],
    k: usize,
    top: bool,
    steps: usize,
    timestamps: &[i64],
) -> Vec<ResultSeries> {
    let mut at_step: Vec<Vec<(usize, f64)>> = vec![Vec::new(); steps];
    for (i, (_, sv)) in series.iter().enumerate() {
        for (&s, &v) in sv.steps.iter().zip(&sv.values) {
            at_step[s as usize].push((i, v));
        }
    }
    let mut chosen: Vec<ResultSeries> = series
        .iter()
        .map(|(labels, _)| ResultSeries {
            labels: labels.clone(),
            timestamps: Vec::new(),
            values: Vec::new(),
        })
        .collect();
    for (s, mut candidates) in at_step.into_iter().enumerate() {
        candidates.sort_by(|a, b| {
            let key = |v: f64| if v.is_nan() { None } else { Some(v) };
            let (x, y) = (key(a.1), key(b.1));
            let by_value = match (x, y) {
                (Some(x), Some(y)) if top => y.total_cmp(&x),
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            by_value.then_with(|| series[a.0].0.cmp(&series[b.0].0))
        });
        for &(i, v) in candidates.iter().take(k) {
            chosen[i].timestamps.push(timestamps[s]);
            chosen[i].values.push(v);
        }
    }
    chosen.retain(|r| !r.timestamps.is_empty());
    chosen
}
