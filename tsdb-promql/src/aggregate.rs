//! Aggregation operators (`sum`, `avg`, ..., `count_values`) with `by`/`without`.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use promql_parser::parser::LabelModifier;
use promql_parser::parser::token;

use crate::engine::{Smp, Val};
use crate::error::{PromqlError, Result};
use crate::labels::{LabelSet, NAME};
use crate::rollup::{quantile, variance};

/// The output labels of the group a sample belongs to.
fn group_labels(labels: &LabelSet, modifier: Option<&LabelModifier>) -> LabelSet {
    match modifier {
        Some(LabelModifier::Include(names)) => {
            let mut l = labels.clone();
            l.retain(|k| names.labels.iter().any(|n| n == k));
            l
        }
        Some(LabelModifier::Exclude(names)) => {
            let mut l = labels.clone();
            l.retain(|k| k != NAME && !names.labels.iter().any(|n| n == k));
            l
        }
        None => LabelSet::default(),
    }
}

/// The group of each label set an aggregation has seen, kept across the steps of a query:
/// the same series come back at every step, and working out their group again (copying
/// their labels, hashing them) would cost more than the aggregation itself. Groups are
/// interned, so that label sets of one group share one [`LabelSet::identity`].
#[derive(Debug, Default)]
pub(crate) struct GroupCache {
    /// `(modifier address, label set identity)` to (the label set, kept alive so that its
    /// identity is not reused, and its interned group).
    by_source: FxHashMap<(usize, usize), (LabelSet, LabelSet)>,
    interned: HashMap<LabelSet, LabelSet>,
}

impl GroupCache {
    /// Starts again when full; only between aggregations, so that within one the groups of
    /// equal label sets stay one.
    fn trim(&mut self) {
        if self.by_source.len() >= Self::MAX {
            self.by_source.clear();
            self.interned.clear();
        }
    }

    /// Entries above which the cache starts again (label sets made at every step, e.g. by
    /// `label_replace`, would otherwise pile up).
    const MAX: usize = 1 << 18;

    fn group(&mut self, labels: &LabelSet, modifier: Option<&LabelModifier>) -> LabelSet {
        let key = (
            modifier.map_or(0, |m| m as *const LabelModifier as usize),
            labels.identity(),
        );
        if let Some((_, group)) = self.by_source.get(&key) {
            return group.clone();
        }
        let g = group_labels(labels, modifier);
        let group = self.interned.entry(g.clone()).or_insert(g).clone();
        self.by_source.insert(key, (labels.clone(), group.clone()));
        group
    }
}

pub(crate) fn aggregate(
    op: u16,
    param: Option<Val>,
    input: Vec<Smp>,
    modifier: Option<&LabelModifier>,
    cache: &mut GroupCache,
) -> Result<Vec<Smp>> {
    // Groups in order of first appearance; interned groups are told apart by identity.
    let mut index: FxHashMap<usize, usize> = FxHashMap::default();
    let mut groups: Vec<(LabelSet, Vec<Smp>)> = Vec::new();
    let count_values_label = match (&param, op) {
        (Some(Val::Str(s)), token::T_COUNT_VALUES) => {
            if !valid_label_name(s) {
                return Err(PromqlError::exec(format!("invalid label name {s:?}")));
            }
            Some(s.clone())
        }
        _ => None,
    };
    let mut by_value: HashMap<LabelSet, usize> = HashMap::new();
    cache.trim();
    for s in input {
        let i = match &count_values_label {
            // The value is part of the group: no caching.
            Some(name) => {
                let mut key = group_labels(&s.labels, modifier);
                key.set(name, &crate::value::format_float(s.v));
                *by_value.entry(key.clone()).or_insert_with(|| {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                })
            }
            None => {
                let key = cache.group(&s.labels, modifier);
                *index.entry(key.identity()).or_insert_with(|| {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                })
            }
        };
        groups[i].1.push(s);
    }
    let scalar_param = match param {
        Some(Val::Scalar(v)) => Some(v),
        _ => None,
    };
    let mut out = Vec::with_capacity(groups.len());
    for (labels, members) in groups {
        let vals = || members.iter().map(|s| s.v);
        let n = members.len() as f64;
        let v = match op {
            token::T_SUM
            | token::T_AVG
            | token::T_COUNT
            | token::T_GROUP
            | token::T_MIN
            | token::T_MAX
            | token::T_STDDEV
            | token::T_STDVAR => fold(op, vals()),
            token::T_COUNT_VALUES => n,
            token::T_QUANTILE => {
                let q = scalar_param.unwrap_or(f64::NAN);
                let mut v: Vec<f64> = vals().collect();
                quantile(q, &mut v)
            }
            token::T_TOPK | token::T_BOTTOMK => {
                let k = scalar_param.unwrap_or(0.0);
                if k.is_nan() {
                    return Err(PromqlError::exec("Parameter value is NaN"));
                }
                let k = if k < 1.0 {
                    0
                } else if k >= members.len() as f64 {
                    members.len()
                } else {
                    k as usize
                };
                out.extend(select_k(members, k, op == token::T_TOPK));
                continue;
            }
            other => {
                return Err(PromqlError::Unsupported(format!(
                    "aggregation {}",
                    token::TokenType::new(other)
                )));
            }
        };
        out.push(Smp { labels, v, ts: 0 });
    }
    Ok(out)
}

/// Whether `op` folds a group's values into one without a parameter ([`fold`]).
pub(crate) fn is_plain_fold(op: u16) -> bool {
    matches!(
        op,
        token::T_SUM
            | token::T_AVG
            | token::T_COUNT
            | token::T_GROUP
            | token::T_MIN
            | token::T_MAX
            | token::T_STDDEV
            | token::T_STDVAR
    )
}

/// The value of a group for the aggregations without a parameter: the members' values in
/// the order of the input vector.
pub(crate) fn fold<I>(op: u16, vals: I) -> f64
where
    I: Iterator<Item = f64> + Clone,
{
    match op {
        _ if FoldState::supports(op) => {
            let mut state = FoldState::new(op);
            for v in vals {
                state.push(op, v);
            }
            state.finish(op)
        }
        token::T_STDDEV => variance(vals).sqrt(),
        token::T_STDVAR => variance(vals),
        _ => f64::NAN,
    }
}

/// The plain folds (`sum` as [`kahan`], `avg` as Prometheus 2.42's running mean: each value
/// moves the mean by `v/n - mean/n`, and once it is infinite, finite values and infinities of
/// its sign leave it; `min`, `max`, `count`, `group`) value by value, so that [`fold`] and
/// the all-steps aggregation of rolled series share one arithmetic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FoldState {
    a: f64,
    b: f64,
    n: u64,
}

impl FoldState {
    /// Whether `op` folds value by value here (`stddev` and `stdvar` do not).
    pub(crate) fn supports(op: u16) -> bool {
        matches!(
            op,
            token::T_SUM
                | token::T_AVG
                | token::T_COUNT
                | token::T_GROUP
                | token::T_MIN
                | token::T_MAX
        )
    }

    /// Nothing folded yet.
    pub(crate) fn new(op: u16) -> Self {
        let start = if matches!(op, token::T_MIN | token::T_MAX) {
            f64::NAN
        } else {
            0.0
        };
        FoldState {
            a: start,
            b: 0.0,
            n: 0,
        }
    }

    /// Values folded so far.
    pub(crate) fn count(&self) -> u64 {
        self.n
    }

    /// Folds in `v`.
    #[inline]
    pub(crate) fn push(&mut self, op: u16, v: f64) {
        match op {
            // As `kahan`.
            token::T_SUM => {
                let t = self.a + v;
                if self.a.is_infinite() || t.is_infinite() {
                    self.b = 0.0;
                } else if self.a.abs() >= v.abs() {
                    self.b += (self.a - t) + v;
                } else {
                    self.b += (v - t) + self.a;
                }
                self.a = t;
            }
            // Prometheus 2.42's running mean (the values divided first, so that values near
            // the float limits do not overflow).
            token::T_AVG => {
                if self.n == 0 {
                    self.a = v;
                } else {
                    let n = (self.n + 1) as f64;
                    let keep = self.a.is_infinite()
                        && (v.is_finite() || (v.is_infinite() && (v > 0.0) == (self.a > 0.0)));
                    if !keep {
                        self.a += v / n - self.a / n;
                    }
                }
            }
            token::T_MIN if self.a.is_nan() || v < self.a => self.a = v,
            token::T_MAX if self.a.is_nan() || v > self.a => self.a = v,
            _ => {}
        }
        self.n += 1;
    }

    /// The fold's result.
    pub(crate) fn finish(&self, op: u16) -> f64 {
        match op {
            token::T_SUM => {
                if self.a.is_finite() {
                    self.a + self.b
                } else {
                    self.a
                }
            }
            token::T_AVG => {
                if self.n == 0 {
                    f64::NAN
                } else {
                    self.a
                }
            }
            token::T_COUNT => self.n as f64,
            token::T_GROUP => 1.0,
            token::T_MIN | token::T_MAX => self.a,
            _ => f64::NAN,
        }
    }
}

/// How the series of a node the source evaluated fall into the groups of one aggregation:
/// worked out once, used at every step.
#[derive(Debug)]
pub(crate) struct RolledGroups {
    /// The group of each series.
    pub(crate) of_series: Vec<usize>,
    /// Each group's labels.
    pub(crate) labels: Vec<LabelSet>,
    /// Every step's answer, `(group, value)` in output order, when worked out for all steps
    /// at once (see `FoldState`).
    pub(crate) steps: Option<Vec<Vec<(usize, f64)>>>,
}

impl RolledGroups {
    pub(crate) fn new<'a>(
        series: impl Iterator<Item = &'a LabelSet>,
        modifier: Option<&LabelModifier>,
    ) -> Self {
        let mut index: HashMap<LabelSet, usize> = HashMap::new();
        let mut labels = Vec::new();
        let of_series = series
            .map(|l| {
                let g = group_labels(l, modifier);
                *index.entry(g.clone()).or_insert_with(|| {
                    labels.push(g);
                    labels.len() - 1
                })
            })
            .collect();
        RolledGroups {
            of_series,
            labels,
            steps: None,
        }
    }
}

pub(crate) fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Sum with Kahan compensation.
pub(crate) fn kahan(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for v in vals {
        let t = sum + v;
        if sum.is_infinite() || t.is_infinite() {
            sum = t;
            c = 0.0;
            continue;
        }
        if sum.abs() >= v.abs() {
            c += (sum - t) + v;
        } else {
            c += (v - t) + sum;
        }
        sum = t;
    }
    if sum.is_finite() { sum + c } else { sum }
}

/// The `k` largest (`top`) or smallest samples, chosen as Prometheus does: a binary heap of
/// `k` samples whose root (the weakest kept, NaN weakest of all) is popped when a strictly
/// better sample comes, which is then pushed; ties among equal values resolve as in
/// Prometheus (checked against it). Output is best first.
fn select_k(members: Vec<Smp>, k: usize, top: bool) -> Vec<Smp> {
    // `weaker(a, b)`: a sits nearer the root than b.
    let weaker = |a: &Smp, b: &Smp| {
        if a.v.is_nan() {
            return true;
        }
        if top { a.v < b.v } else { a.v > b.v }
    };
    let mut heap: Vec<Smp> = Vec::with_capacity(k);
    if k == 0 {
        return heap;
    }
    let sift_up = |heap: &mut Vec<Smp>| {
        let mut j = heap.len() - 1;
        while j > 0 {
            let i = (j - 1) / 2;
            if !weaker(&heap[j], &heap[i]) {
                break;
            }
            heap.swap(i, j);
            j = i;
        }
    };
    for s in members {
        if heap.len() < k {
            heap.push(s);
            sift_up(&mut heap);
            continue;
        }
        let root = &heap[0];
        let better = if top { root.v < s.v } else { root.v > s.v };
        if better || (root.v.is_nan() && !s.v.is_nan()) {
            // Pop the root (the last element takes its place and sinks), then push.
            let last = heap.len() - 1;
            heap.swap(0, last);
            heap.pop();
            let n = heap.len();
            let mut i = 0;
            loop {
                let l = 2 * i + 1;
                if l >= n {
                    break;
                }
                let mut j = l;
                if l + 1 < n && weaker(&heap[l + 1], &heap[l]) {
                    j = l + 1;
                }
                if !weaker(&heap[j], &heap[i]) {
                    break;
                }
                heap.swap(i, j);
                i = j;
            }
            heap.push(s);
            sift_up(&mut heap);
        }
    }
    // Best first; NaN last.
    heap.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if top => b.v.total_cmp(&a.v),
        _ => a.v.total_cmp(&b.v),
    });
    heap
}
