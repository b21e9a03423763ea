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
        let mut all = self
            .series
            .write()
            .map_err(|_| PromqlError::Source("memory source lock poisoned".into()))?;
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
        let all = self
            .series
            .read()
            .map_err(|_| tsdb_core::Error::Unavailable {
                engine: "memory source",
                reason: "lock poisoned".into(),
            })?;
        let mut out = Vec::new();
        for s in all.iter() {
            if !matchers.iter().all(|m| m.matches(s.labels.get(m.name()))) {
                continue;
            }
            let lo = s.timestamps.partition_point(|&t| t < range.start);
            let hi = s.timestamps.partition_point(|&t| t <= range.end);
            if lo >= hi {
                continue;
            }
            out.push(SeriesData {
                labels: s.labels.clone(),
                timestamps: s.timestamps[lo..hi].to_vec(),
                values: s.values[lo..hi].to_vec(),
            });
        }
        Ok(out)
    }
}
