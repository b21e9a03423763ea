//! Evaluation of a [`RangeQuery`] against the database: the index plans it (series, chunks
//! and limits, counted before anything is read), the PromQL engine evaluates its text.

use tsdb_core::{ChunkReference, Error, LabelMatcher, Labels, Result, SeriesId, TimeRange};
use tsdb_promql::{Engine, EngineOptions};

use super::{QueryLimits, QueryResult, QueryStats, RangeQuery, ResultSeries};
use crate::db::{Inner, TimeSeriesDB};
use crate::ingest::MemorySnapshot;
use crate::read::{Columns, SeriesPoints, merge};

/// The `what` of [`Error::LimitExceeded`] for [`QueryLimits::max_series`].
pub(crate) const SERIES_SELECTED: &str = "series selected by the query";
/// The `what` of [`Error::LimitExceeded`] for [`QueryLimits::max_points`].
pub(crate) const POINTS_READ: &str = "points read by the query";

/// What the planner found for one series: its labels, the stored chunks overlapping the
/// read range (oldest write first) and what memory holds of it.
struct Planned {
    labels: Labels,
    chunks: Vec<ChunkReference>,
    memory: MemorySnapshot,
}

impl TimeSeriesDB {
    /// Evaluates a [`RangeQuery`]: its PromQL text ([`RangeQuery::to_promql`]) through the
    /// `tsdb-promql` engine over this database, with Prometheus 2.42's semantics.
    ///
    /// An unknown series or label selects nothing and gives an empty result. An inverted range,
    /// a step or window that is not positive give [`Error::InvalidInput`]; a query selecting
    /// more series or points (or steps) than [`RangeQuery::limits`] allow gives
    /// [`Error::LimitExceeded`] before anything is read, and one whose evaluation would hold
    /// more samples than [`QueryLimits::max_samples`] stops with it.
    pub async fn range_query(&self, query: &RangeQuery) -> Result<QueryResult> {
        query.validate()?;
        let inner = self.inner();
        inner.check_open()?;
        let steps = query.step_timestamps()?;
        let (planned, points) =
            plan_within(inner, &query.matchers, query.read_range(), &query.limits).await?;
        let stats = QueryStats {
            series: planned.len() as u64,
            chunks_read: planned.iter().map(|p| p.chunks.len() as u64).sum(),
            points_read: points,
        };
        drop(planned);
        let limits = &query.limits;
        let opts = EngineOptions::default()
            .with_max_samples(usize::try_from(limits.max_samples).unwrap_or(usize::MAX))
            .with_max_series(limits.max_series)
            .with_max_steps(limits.max_steps);
        let engine = Engine::new(self, opts);
        let found = engine
            .range_query(&query.to_promql(), query.start, query.end, query.step)
            .await
            .map_err(Error::from)?;
        let series = found
            .into_iter()
            .map(|s| {
                let (timestamps, values) = s.points.into_iter().unzip();
                ResultSeries {
                    labels: s
                        .metric
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    timestamps,
                    values,
                }
            })
            .collect();
        Ok(QueryResult {
            steps,
            series,
            stats,
        })
    }
}

impl TimeSeriesDB {
    /// The points of every series matched by all `matchers` in `range` (inclusive), as
    /// [`TimeSeriesDB::query`] gives them, within `limits`: when more than
    /// [`QueryLimits::max_series`] series match, or their stored chunks overlapping the range
    /// plus their buffered points are more than [`QueryLimits::max_points`] (counted from
    /// chunk headers), [`Error::LimitExceeded`] before any chunk is decoded. The PromQL
    /// engine reads the database through this, with what is left of its memory budget.
    pub async fn query_within(
        &self,
        matchers: &[LabelMatcher],
        range: TimeRange,
        limits: &QueryLimits,
    ) -> Result<Vec<SeriesPoints>> {
        let inner = self.inner();
        inner.check_open()?;
        let _pin = inner.compactor.pin();
        let (planned, _) = plan_within(inner, matchers, range, limits).await?;
        let mut out = Vec::with_capacity(planned.len());
        for p in planned {
            let (timestamps, values) = read_planned(inner, &p, range).await?;
            if !timestamps.is_empty() {
                out.push(SeriesPoints {
                    series_id: p.labels.series_id(),
                    labels: p.labels,
                    timestamps,
                    values,
                });
            }
        }
        Ok(out)
    }
}

/// Finds and plans the series of `matchers` over `range`, refusing them when they are more
/// than `limits` allow; returns them with the number of points they would decode.
async fn plan_within(
    inner: &Inner,
    matchers: &[LabelMatcher],
    range: TimeRange,
    limits: &QueryLimits,
) -> Result<(Vec<Planned>, u64)> {
    let ids = inner.index_read(inner.engines.index.find_series(matchers).await)?;
    if ids.len() > limits.max_series {
        return Err(Error::LimitExceeded {
            what: SERIES_SELECTED,
            requested: ids.len() as u64,
            limit: limits.max_series as u64,
        });
    }
    let mut planned = Vec::with_capacity(ids.len());
    let mut points = 0u64;
    for id in ids {
        let Some(p) = plan(inner, id, range).await? else {
            continue;
        };
        points += p
            .chunks
            .iter()
            .map(|c| u64::from(c.point_count))
            .sum::<u64>();
        points += p.memory.point_count();
        if points > limits.max_points {
            return Err(Error::LimitExceeded {
                what: POINTS_READ,
                requested: points,
                limit: limits.max_points,
            });
        }
        planned.push(p);
    }
    Ok((planned, points))
}

/// The merged points in `range` of one planned series: its planned chunks (oldest write
/// first), then sealed heads, then the live head; a later write of a timestamp wins.
async fn read_planned(inner: &Inner, p: &Planned, range: TimeRange) -> Result<Columns> {
    let mut sources: Vec<Columns> = Vec::with_capacity(p.chunks.len() + p.memory.sealed.len() + 1);
    for chunk in &p.chunks {
        sources.push(inner.read_chunk(chunk, range).await?);
    }
    for sealed in &p.memory.sealed {
        sources.push(sealed.head.points()?);
    }
    sources.extend(p.memory.heads.iter().cloned());
    Ok(merge(sources, range))
}

/// Memory first, then the index: a head sealed and indexed in between is seen twice
/// (harmless, the merge keeps one), never missed. Recorded damage the read would touch fails
/// it, as every read of the database does.
async fn plan(inner: &Inner, id: SeriesId, range: TimeRange) -> Result<Option<Planned>> {
    let Some(labels) = inner.index_read(inner.engines.index.series_labels(id).await)? else {
        return Ok(None);
    };
    let memory = inner.heads.snapshot(id)?;
    // Sorted by location.
    let mut chunks = inner.chunks_to_read(id, range, None).await?;
    chunks.retain(|c| c.time_range().overlaps(&range));
    Ok(Some(Planned {
        labels,
        chunks,
        memory,
    }))
}
