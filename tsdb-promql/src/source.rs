//! Where the engine reads series from.

use std::sync::RwLock;

use async_trait::async_trait;
use tsdb_core::{LabelMatcher, Labels, TimeRange};

use crate::error::{PromqlError, Result};

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
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
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
