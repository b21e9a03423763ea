//! Where the engine reads series from.

use std::sync::RwLock;

use async_trait::async_trait;
use tsdb_core::{LabelMatcher, Labels, TimeRange};

use crate::error::{PromqlError, Result};
use crate::functions::RangeFunction;

/// The stale-marker NaN Prometheus writes when a series disappears; it ends the lookback.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True when `v` is the staleness marker (compared bit for bit; other NaNs are values).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The points of one series in a requested range.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesData {
    /// The series.
    pub labels: Labels,
    /// Ascending, unique timestamps, ms since the epoch.
    pub timestamps: Vec<i64>,
    /// One value per timestamp; staleness markers included as [`STALE_NAN_BITS`] NaNs.
    pub values: Vec<f64>,
}

/// How much one [`SeriesSource::select_bounded`] may return: what is left of the query's
/// memory budget when the selector is fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SelectLimits {
    /// Most points, all series together.
    pub max_points: usize,
    /// Most series.
    pub max_series: usize,
}

impl SelectLimits {
    /// The `what` of the [`tsdb_core::Error::LimitExceeded`] for too many points; the engine
    /// reports it as [`Resource::Samples`](crate::Resource::Samples).
    pub const POINTS: &'static str = "points selected";
    /// The `what` of the [`tsdb_core::Error::LimitExceeded`] for too many series; the engine
    /// reports it as [`Resource::Series`](crate::Resource::Series).
    pub const SERIES: &'static str = "series selected";

    /// Limits of `max_points` points and `max_series` series.
    pub fn new(max_points: usize, max_series: usize) -> Self {
        SelectLimits {
            max_points,
            max_series,
        }
    }

    /// Checks a selection against the limits: [`tsdb_core::Error::LimitExceeded`] with
    /// `what` [`SelectLimits::SERIES`] or [`SelectLimits::POINTS`] when over.
    pub fn check(&self, series: usize, points: usize) -> tsdb_core::Result<()> {
        if series > self.max_series {
            return Err(tsdb_core::Error::LimitExceeded {
                what: Self::SERIES,
                requested: series as u64,
                limit: self.max_series as u64,
            });
        }
        if points > self.max_points {
            return Err(tsdb_core::Error::LimitExceeded {
                what: Self::POINTS,
                requested: points as u64,
                limit: self.max_points as u64,
            });
        }
        Ok(())
    }
}

/// What the engine asks a source to evaluate itself (see [`SeriesSource::select_rollup`]):
/// one selector at many times, either through a range function or as an instant selector.
#[derive(Clone, Debug, PartialEq)]
pub struct RollupRequest {
    /// The selector's matchers.
    pub matchers: Vec<LabelMatcher>,
    /// Evaluation times (ms), ascending and unique: the end of each window, offset and `@`
    /// already applied.
    pub times: Vec<i64>,
    /// What to compute at each time.
    pub kind: RollupKind,
}

/// What a [`RollupRequest`] computes at each time `t`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum RollupKind {
    /// `function(selector[range])`: the function over the samples in `[t - range_ms, t]`,
    /// staleness markers left out.
    Range {
        /// The function.
        function: RangeFunction,
        /// The range of the selector, ms.
        range_ms: i64,
    },
    /// An instant selector: the newest sample in `[t - lookback_ms, t]`, unless it is a
    /// staleness marker.
    Instant {
        /// The lookback delta, ms.
        lookback_ms: i64,
    },
}

/// One series' answers to a [`RollupRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct RolledSeries {
    /// The series.
    pub labels: Labels,
    /// `(index into the request's times, value, timestamp of the sample it came from)` for
    /// every time the series has a value at, ascending by index. (The sample timestamp is the
    /// evaluation time for range functions.)
    pub points: Vec<(u32, f64, i64)>,
}

impl RollupRequest {
    /// The samples the request reads: from the first window's start to the last time.
    pub fn read_range(&self) -> TimeRange {
        let (first, last) = (
            self.times.first().copied().unwrap_or(0),
            self.times.last().copied().unwrap_or(0),
        );
        let back = match self.kind {
            RollupKind::Range { range_ms, .. } => range_ms,
            RollupKind::Instant { lookback_ms } => lookback_ms,
        };
        TimeRange {
            start: first.saturating_sub(back),
            end: last,
        }
    }

    /// Evaluates the request over one series' samples (ascending, unique timestamps, as
    /// [`SeriesData`] holds them), appending to `out` (cleared first). `scratch` is reused
    /// between calls. This is the arithmetic the engine itself uses, so a source that calls
    /// it answers exactly as the engine would.
    pub fn evaluate(
        &self,
        timestamps: &[i64],
        values: &[f64],
        scratch: &mut (Vec<i64>, Vec<f64>),
        out: &mut Vec<(u32, f64, i64)>,
    ) {
        out.clear();
        let n = timestamps.len().min(values.len());
        let (timestamps, values) = (&timestamps[..n], &values[..n]);
        // Most series hold no staleness marker: their windows are then read in place. (A fold
        // without an early exit is vectorised.)
        let has_stale = values.iter().fold(false, |any, v| any | is_stale(*v));
        let (mut lo, mut hi) = (0usize, 0usize);
        // How far each edge moved last time: on a regular series, the guess for this time.
        let (mut lo_step, mut hi_step) = (0usize, 0usize);
        for (i, &t) in self.times.iter().enumerate() {
            // Times ascend: both window edges only move forward.
            let next_hi = advance(&timestamps[..n], hi, hi_step, |pt| pt <= t);
            hi_step = next_hi - hi;
            hi = next_hi;
            match self.kind {
                RollupKind::Range { function, range_ms } => {
                    let start = t.saturating_sub(range_ms);
                    let next_lo = advance(&timestamps[..hi], lo, lo_step, |pt| pt < start);
                    lo_step = next_lo - lo;
                    lo = next_lo;
                    let value = if has_stale {
                        let (ts, vs) = (&mut scratch.0, &mut scratch.1);
                        ts.clear();
                        vs.clear();
                        for (&pt, &pv) in timestamps[lo..hi].iter().zip(&values[lo..hi]) {
                            if !is_stale(pv) {
                                ts.push(pt);
                                vs.push(pv);
                            }
                        }
                        function.apply_columns(ts, vs, (start, t))
                    } else {
                        function.apply_columns(&timestamps[lo..hi], &values[lo..hi], (start, t))
                    };
                    if let Some(v) = value {
                        out.push((i as u32, v, t));
                    }
                }
                RollupKind::Instant { lookback_ms } => {
                    if hi == 0 {
                        continue;
                    }
                    let (pt, pv) = (timestamps[hi - 1], values[hi - 1]);
                    if pt < t.saturating_sub(lookback_ms) || is_stale(pv) {
                        continue;
                    }
                    out.push((i as u32, pv, pt));
                }
            }
        }
    }

    /// Evaluates the request over whole series (what a source that only has points can do).
    pub fn evaluate_all(&self, series: Vec<SeriesData>) -> Vec<RolledSeries> {
        let (mut scratch, mut out) = ((Vec::new(), Vec::new()), Vec::new());
        series
            .into_iter()
            .filter_map(|s| {
                self.evaluate(&s.timestamps, &s.values, &mut scratch, &mut out);
                (!out.is_empty()).then(|| RolledSeries {
                    labels: s.labels,
                    points: out.clone(),
                })
            })
            .collect()
    }
}

/// The first index at or after `from` whose timestamp fails `before` (which holds for a prefix
/// of the ascending `ts`, and for every index below `from`). `guess` is how far the answer
/// probably lies past `from` (the last window's move): checked with two comparisons, and only
/// when it is wrong is the rest searched.
#[inline]
fn advance(ts: &[i64], from: usize, guess: usize, before: impl Fn(i64) -> bool) -> usize {
    let at = from + guess;
    if at <= ts.len() && (at == from || before(ts[at - 1])) && (at == ts.len() || !before(ts[at])) {
        return at;
    }
    from + ts[from..].partition_point(|&t| before(t))
}

/// The data access the engine needs: implemented in memory by [`MemorySource`] and for the
/// database by its facade.
#[async_trait]
pub trait SeriesSource: Send + Sync {
    /// Every series matched by all `matchers`, with its points in `range` (inclusive),
    /// ascending and with unique timestamps (ms since the epoch). Series without points in
    /// the range may be left out.
    async fn select(
        &self,
        matchers: &[LabelMatcher],
        range: TimeRange,
    ) -> tsdb_core::Result<Vec<SeriesData>>;

    /// [`SeriesSource::select`] within `limits`: when the selection would hold more series
    /// or points, [`tsdb_core::Error::LimitExceeded`] (see [`SelectLimits::check`]; a
    /// source may count the points it would have to decode, an upper bound of those it
    /// returns). This is what the engine calls.
    ///
    /// The default selects, then checks; a source that can count before reading should
    /// override it so that a selection over the budget is refused before it is materialised.
    async fn select_bounded(
        &self,
        matchers: &[LabelMatcher],
        range: TimeRange,
        limits: SelectLimits,
    ) -> tsdb_core::Result<Vec<SeriesData>> {
        let found = self.select(matchers, range).await?;
        let points = found.iter().map(|s| s.timestamps.len()).sum();
        limits.check(found.len(), points)?;
        Ok(found)
    }

    /// Evaluates `request` itself, close to the data: a range function over a selector, or an
    /// instant selector, at every evaluation time of a query, so that the engine never holds
    /// the selection's samples. A source can then read only what the windows need, in bulk,
    /// on every core, and answer some functions from what it knows without decoding (a
    /// chunk's point count). It must answer exactly as [`RollupRequest::evaluate`] would over
    /// [`SeriesSource::select`]'s answer (series without any value may be left out), within
    /// `limits` (points are the answers, not the samples read).
    ///
    /// `Ok(None)` (the default) means "not supported": the engine then selects the samples
    /// and evaluates them itself.
    async fn select_rollup(
        &self,
        request: &RollupRequest,
        limits: SelectLimits,
    ) -> tsdb_core::Result<Option<Vec<RolledSeries>>> {
        let _ = (request, limits);
        Ok(None)
    }
}

/// An in-memory [`SeriesSource`], used by the test-script runner and tests.
///
/// ```
/// use tsdb_promql::MemorySource;
/// use tsdb_core::Labels;
/// let source = MemorySource::new();
/// source.add(Labels::new("up", [("job", "a")])?, &[(0, 1.0), (15_000, 1.0)])?;
/// assert_eq!(source.series_count(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct MemorySource {
    series: RwLock<Vec<SeriesData>>,
    /// Answer [`SeriesSource::select_rollup`] (with [`RollupRequest::evaluate_all`]) instead
    /// of leaving the evaluation to the engine: both paths are then tested.
    rollups: std::sync::atomic::AtomicBool,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the source evaluates rollups itself (see [`SeriesSource::select_rollup`]);
    /// off by default.
    pub fn set_rollups(&self, on: bool) {
        self.rollups.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Adds points to the series `labels` (created when new). Points may come in any order;
    /// a point at an existing timestamp replaces it.
    pub fn add(&self, labels: Labels, points: &[(i64, f64)]) -> Result<()> {
        let mut all = self.series.write().map_err(|_| {
            PromqlError::Source(crate::error::SourceError::message(
                "memory source lock poisoned",
            ))
        })?;
        let idx = match all.iter().position(|s| s.labels == labels) {
            Some(i) => i,
            None => {
                all.push(SeriesData {
                    labels,
                    timestamps: Vec::new(),
                    values: Vec::new(),
                });
                all.len() - 1
            }
        };
        let s = &mut all[idx];
        let mut merged: Vec<(i64, f64)> = s
            .timestamps
            .iter()
            .copied()
            .zip(s.values.iter().copied())
            .collect();
        merged.extend_from_slice(points);
        // Stable sort then keep the last of equal timestamps: later points win.
        merged.sort_by_key(|p| p.0);
        let mut dedup: Vec<(i64, f64)> = Vec::with_capacity(merged.len());
        for p in merged {
            match dedup.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => dedup.push(p),
            }
        }
        s.timestamps = dedup.iter().map(|p| p.0).collect();
        s.values = dedup.iter().map(|p| p.1).collect();
        Ok(())
    }

    /// Removes every series.
    pub fn clear(&self) {
        if let Ok(mut all) = self.series.write() {
            all.clear();
        }
    }

    /// Number of series held.
    pub fn series_count(&self) -> usize {
        self.series.read().map(|s| s.len()).unwrap_or(0)
    }

    /// A copy of every series with all its points.
    pub fn all_series(&self) -> Vec<SeriesData> {
        self.series.read().map(|s| s.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl SeriesSource for MemorySource {
    async fn select(
        &self,
        matchers: &[LabelMatcher],
        range: TimeRange,
    ) -> tsdb_core::Result<Vec<SeriesData>> {
        self.select_within(matchers, range, SelectLimits::new(usize::MAX, usize::MAX))
    }

    /// Counts each series before copying it: a selection over the limits copies nothing more.
    async fn select_bounded(
        &self,
        matchers: &[LabelMatcher],
        range: TimeRange,
        limits: SelectLimits,
    ) -> tsdb_core::Result<Vec<SeriesData>> {
        self.select_within(matchers, range, limits)
    }

    async fn select_rollup(
        &self,
        request: &RollupRequest,
        limits: SelectLimits,
    ) -> tsdb_core::Result<Option<Vec<RolledSeries>>> {
        if !self.rollups.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let all = SelectLimits::new(usize::MAX, limits.max_series);
        let series = self.select_within(&request.matchers, request.read_range(), all)?;
        let rolled = request.evaluate_all(series);
        let points = rolled.iter().map(|s| s.points.len()).sum();
        limits.check(rolled.len(), points)?;
        Ok(Some(rolled))
    }
}

impl MemorySource {
    fn select_within(
        &self,
        matchers: &[LabelMatcher],
        range: TimeRange,
        limits: SelectLimits,
    ) -> tsdb_core::Result<Vec<SeriesData>> {
        let all = self
            .series
            .read()
            .map_err(|_| tsdb_core::Error::Unavailable {
                engine: "memory source",
                reason: "lock poisoned".into(),
            })?;
        let mut out = Vec::new();
        let mut points = 0usize;
        for s in all.iter() {
            if !matchers.iter().all(|m| m.matches(s.labels.get(m.name()))) {
                continue;
            }
            let lo = s.timestamps.partition_point(|&t| t < range.start);
            let hi = s.timestamps.partition_point(|&t| t <= range.end);
            if lo >= hi {
                continue;
            }
            points += hi - lo;
            limits.check(out.len() + 1, points)?;
            out.push(SeriesData {
                labels: s.labels.clone(),
                timestamps: s.timestamps[lo..hi].to_vec(),
                values: s.values[lo..hi].to_vec(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::advance;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn advance_finds_the_edge_whatever_the_guess(
            mut ts in proptest::collection::vec(-50i64..50, 0..40),
            from_frac in 0.0f64..1.0,
            guess in 0usize..50,
            edge in -60i64..60,
        ) {
            ts.sort_unstable();
            let expected = ts.partition_point(|&t| t <= edge);
            // `from` lies at or below the answer, as the evaluation loop keeps it.
            let from = (expected as f64 * from_frac) as usize;
            prop_assert_eq!(advance(&ts, from, guess, |t| t <= edge), expected);
            let strict = ts.partition_point(|&t| t < edge);
            let from = (strict as f64 * from_frac) as usize;
            prop_assert_eq!(advance(&ts, from, guess, |t| t < edge), strict);
        }
    }
}
