//! Reading: merging chunks, sealed heads and the live head of a series into one time-ordered
//! answer.

use tsdb_core::{Labels, SeriesId, TimeRange};

/// The points of one series in a time range, as columns, in time order, one per timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesPoints {
    /// The series.
    pub series_id: SeriesId,
    /// Its labels.
    pub labels: Labels,
    /// Timestamps (ms since the epoch), ascending and unique.
    pub timestamps: Vec<i64>,
    /// `values[i]` is the value at `timestamps[i]`.
    pub values: Vec<f64>,
}

impl SeriesPoints {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// True when no point is in the range.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// `(timestamp, value)` pairs.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (i64, f64)> + '_ {
        self.timestamps
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }
}

/// Columns of one source (a chunk or a head), any order.
pub(crate) type Columns = (Vec<i64>, Vec<f64>);

/// Merges sources given **oldest first** into sorted, unique columns restricted to `range`;
/// where sources share a timestamp the newest source wins, and within one source the later
/// point wins.
pub(crate) fn merge(sources: Vec<Columns>, range: TimeRange) -> Columns {
    let mut parts: Vec<Columns> = sources
        .into_iter()
        .map(|(ts, vs)| clip_sorted_unique(ts, vs, range))
        .filter(|(ts, _)| !ts.is_empty())
        .collect();
    match parts.len() {
        0 => return (Vec::new(), Vec::new()),
        1 => return parts.pop().unwrap_or_default(),
        _ => {}
    }
    // Fast path: sources that do not overlap in time are concatenated.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| parts[i].0[0]);
    let disjoint = order
        .windows(2)
        .all(|w| parts[w[0]].0.last() < parts[w[1]].0.first());
    if disjoint {
        let total = parts.iter().map(|p| p.0.len()).sum();
        let (mut ts, mut vs) = (Vec::with_capacity(total), Vec::with_capacity(total));
        for i in order {
            ts.extend_from_slice(&parts[i].0);
            vs.extend_from_slice(&parts[i].1);
        }
        return (ts, vs);
    }
    let mut all: Vec<(i64, usize, f64)> = parts
        .iter()
        .enumerate()
        .flat_map(|(rank, (ts, vs))| ts.iter().zip(vs).map(move |(&t, &v)| (t, rank, v)))
        .collect();
    all.sort_unstable_by_key(|&(t, rank, _)| (t, rank));
    let mut ts = Vec::with_capacity(all.len());
    let mut vs = Vec::with_capacity(all.len());
    for (i, &(t, _, v)) in all.iter().enumerate() {
        if all.get(i + 1).is_none_or(|next| next.0 != t) {
            ts.push(t);
            vs.push(v);
        }
    }
    (ts, vs)
}

/// Restricts one source to `range`, sorted with one point per timestamp (the later wins).
fn clip_sorted_unique(ts: Vec<i64>, vs: Vec<f64>, range: TimeRange) -> Columns {
    let strictly_sorted = ts.windows(2).all(|w| w[0] < w[1]);
    if strictly_sorted {
        let lo = ts.partition_point(|&t| t < range.start);
        let hi = ts.partition_point(|&t| t <= range.end);
        if lo == 0 && hi == ts.len() {
            return (ts, vs);
        }
        return (ts[lo..hi].to_vec(), vs[lo..hi].to_vec());
    }
    let mut pairs: Vec<(i64, usize, f64)> = ts
        .into_iter()
        .zip(vs)
        .enumerate()
        .filter(|(_, (t, _))| range.contains(*t))
        .map(|(i, (t, v))| (t, i, v))
        .collect();
    pairs.sort_unstable_by_key(|&(t, i, _)| (t, i));
    let mut out: Columns = (
        Vec::with_capacity(pairs.len()),
        Vec::with_capacity(pairs.len()),
    );
    for (i, &(t, _, v)) in pairs.iter().enumerate() {
        if pairs.get(i + 1).is_none_or(|next| next.0 != t) {
            out.0.push(t);
            out.1.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// The merge equals a reference that replays every source in age order into a map.
        #[test]
        fn merge_matches_last_write_wins_reference(
            sources in proptest::collection::vec(
                proptest::collection::vec((-50i64..50, -1000i32..1000), 0..30), 0..5),
            a in -60i64..60, len in 0i64..120,
        ) {
            let range = TimeRange { start: a, end: a + len };
            let mut reference = BTreeMap::new();
            for src in &sources {
                for &(t, v) in src {
                    if range.contains(t) {
                        reference.insert(t, v as f64);
                    }
                }
            }
            let cols: Vec<Columns> = sources
                .iter()
                .map(|s| (s.iter().map(|p| p.0).collect(), s.iter().map(|p| p.1 as f64).collect()))
                .collect();
            let (ts, vs) = merge(cols, range);
            let got: BTreeMap<i64, f64> = ts.iter().copied().zip(vs.iter().copied()).collect();
            prop_assert_eq!(ts.len(), got.len(), "timestamps must be unique");
            prop_assert!(ts.windows(2).all(|w| w[0] < w[1]), "timestamps must ascend");
            prop_assert_eq!(got, reference);
        }
    }
}
