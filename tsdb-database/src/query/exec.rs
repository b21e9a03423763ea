//! Evaluation of a [`RangeQuery`] against the database: planning (index lookups, limits),
//! parallel reading and evaluation, aggregation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tsdb_core::{ChunkReference, Error, LabelMatcher, Labels, Result, SeriesId, TimeRange};

use super::{
    Aggregator, QueryLimits, QueryResult, QueryStats, RangeFunction, RangeQuery, ResultSeries,
    StepValues,
};
use crate::db::{Inner, TimeSeriesDB};
use crate::ingest::MemorySnapshot;
use crate::read::{Columns, SeriesPoints, merge};

/// The `what` of [`Error::LimitExceeded`] for [`QueryLimits::max_series`].
pub(crate) const SERIES_SELECTED: &str = "series selected by the query";
/// The `what` of [`Error::LimitExceeded`] for [`QueryLimits::max_points`].
pub(crate) const POINTS_READ: &str = "points read by the query";
/// The `what` of [`Error::LimitExceeded`] for [`QueryLimits::max_samples`].
pub(crate) const VALUES_HELD: &str = "values held for the query's answer";

/// What the planner found for one series: its labels, the stored chunks overlapping the
/// read range (oldest write first) and what memory holds of it.
struct Planned {
    labels: Labels,
    chunks: Vec<ChunkReference>,
    memory: MemorySnapshot,
}

/// The output of one slice of series.
enum Partial {
    Aggregated(Aggregator),
    Series(Vec<ResultSeries>),
}

impl TimeSeriesDB {
    /// Evaluates a [`RangeQuery`]: see [`crate::query`] for the steps and semantics.
    ///
    /// An unknown series or label selects nothing and gives an empty result. An inverted range,
    /// a step or window that is not positive give [`Error::InvalidInput`]; a query selecting
    /// more series or points (or steps) than [`RangeQuery::limits`] allow gives
    /// [`Error::LimitExceeded`] before anything is read, and one whose answer would hold more
    /// values than [`QueryLimits::max_samples`] stops with it as soon as it goes over.
    pub async fn range_query(&self, query: &RangeQuery) -> Result<QueryResult> {
        query.validate()?;
        let inner = self.inner();
        inner.check_open()?;
        let steps = Arc::new(query.step_timestamps()?);
        let (planned, points) =
            plan_within(inner, &query.matchers, query.read_range(), &query.limits).await?;
        let series = planned.len() as u64;
        let budget = Arc::new(Budget::new(query.limits.max_samples));

        let parallelism = cores();
        let slices = if planned.len() < 16 || points < 50_000 {
            1
        } else {
            (parallelism * 2).min(planned.len())
        };
        let mut partials = Vec::with_capacity(slices);
        let mut stats = QueryStats {
            series,
            ..QueryStats::default()
        };
        if slices <= 1 {
            let (partial, s) = evaluate_slice(inner, query, &steps, planned, &budget).await?;
            partials.push(partial);
            add_stats(&mut stats, s);
        } else {
            let per = planned.len().div_ceil(slices);
            let mut tasks = Vec::with_capacity(slices);
            let mut rest = planned;
            while !rest.is_empty() {
                let tail = rest.split_off(per.min(rest.len()));
                let slice = std::mem::replace(&mut rest, tail);
                let inner = inner.clone();
                let query = query.clone();
                let steps = steps.clone();
                let budget = budget.clone();
                tasks.push(tokio::spawn(async move {
                    evaluate_slice(&inner, &query, &steps, slice, &budget).await
                }));
            }
            for t in tasks {
                let (partial, s) = t
                    .await
                    .map_err(|e| Error::task_failed("query slice", e))??;
                partials.push(partial);
                add_stats(&mut stats, s);
            }
        }

        let steps_vec = Arc::unwrap_or_clone(steps);
        let series = match &query.aggregation {
            Some((op, _)) => {
                let mut total = Aggregator::new(*op, steps_vec.len());
                for p in partials {
                    if let Partial::Aggregated(a) = p {
                        total.merge(a);
                    }
                }
                total.finish(&steps_vec)
            }
            None => {
                let mut all: Vec<ResultSeries> = partials
                    .into_iter()
                    .flat_map(|p| match p {
                        Partial::Series(s) => s,
                        Partial::Aggregated(_) => Vec::new(),
                    })
                    .collect();
                all.sort_by(|a, b| a.labels.cmp(&b.labels));
                all
            }
        };
        Ok(QueryResult {
            steps: steps_vec,
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
        points += p
            .memory
            .sealed
            .iter()
            .map(|s| s.head.len() as u64)
            .sum::<u64>();
        points += p.memory.head.as_ref().map_or(0, |h| h.0.len() as u64);
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
        sources.push(inner.read_chunk(chunk).await?);
    }
    for sealed in &p.memory.sealed {
        sources.push(sealed.head.points()?);
    }
    if let Some(head) = &p.memory.head {
        sources.push(head.clone());
    }
    Ok(merge(sources, range))
}

/// The values a query holds for its answer, shared by its parallel slices.
struct Budget {
    held: AtomicU64,
    limit: u64,
}

impl Budget {
    fn new(limit: u64) -> Self {
        Budget {
            held: AtomicU64::new(0),
            limit,
        }
    }

    /// Counts `n` more values held; [`Error::LimitExceeded`] when over the limit.
    fn hold(&self, n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let total = self.held.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if total > self.limit {
            return Err(Error::LimitExceeded {
                what: VALUES_HELD,
                requested: total,
                limit: self.limit,
            });
        }
        Ok(())
    }
}

/// The cores available to this process, looked up once: `available_parallelism` reads cgroup
/// files on every call, which cost more than a small query itself.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn add_stats(total: &mut QueryStats, s: QueryStats) {
    total.chunks_read += s.chunks_read;
    total.points_read += s.points_read;
    total.points_counted += s.points_counted;
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

/// Reads and evaluates a slice of series, streaming each into the aggregation when there is
/// one. Column buffers are reused from one series to the next.
async fn evaluate_slice(
    inner: &Inner,
    query: &RangeQuery,
    steps: &[i64],
    slice: Vec<Planned>,
    budget: &Budget,
) -> Result<(Partial, QueryStats)> {
    let mut stats = QueryStats::default();
    let mut partial = match &query.aggregation {
        Some((op, _)) => Partial::Aggregated(Aggregator::new(*op, steps.len())),
        None => Partial::Series(Vec::new()),
    };
    let mut scratch = Scratch::default();
    for p in slice {
        let values = evaluate_series(inner, query, steps, &p, &mut scratch, &mut stats).await?;
        match (&mut partial, &query.aggregation) {
            (Partial::Aggregated(agg), Some((_, grouping))) => {
                let added = agg.add(
                    grouping.group_of(&p.labels),
                    || query.output_labels(&p.labels),
                    values,
                );
                budget.hold(added)?;
            }
            (Partial::Series(out), _) => {
                if !values.steps.is_empty() {
                    budget.hold(values.values.len() as u64)?;
                    out.push(ResultSeries {
                        labels: query.output_labels(&p.labels),
                        timestamps: values.steps.iter().map(|&k| steps[k as usize]).collect(),
                        values: values.values,
                    });
                }
            }
            (Partial::Aggregated(_), None) => {}
        }
    }
    Ok((partial, stats))
}

/// Column buffers reused across series.
#[derive(Default)]
struct Scratch {
    ts: Vec<i64>,
    vs: Vec<f64>,
}

/// True when the chunks (sorted by start) do not overlap in time. Chunks written by the
/// database hold strictly ascending timestamps, so disjoint chunks read in start order give
/// sorted, unique columns without merging.
fn disjoint(chunks: &[ChunkReference]) -> bool {
    chunks.windows(2).all(|w| w[0].end_time < w[1].start_time)
}

async fn evaluate_series(
    inner: &Inner,
    query: &RangeQuery,
    steps: &[i64],
    p: &Planned,
    scratch: &mut Scratch,
    stats: &mut QueryStats,
) -> Result<StepValues> {
    let range = query.read_range();
    let memory_empty = p.memory.sealed.is_empty() && p.memory.head.is_none();
    let mut by_start = p.chunks.clone();
    by_start.sort_by_key(|c| c.start_time);
    let chunks_disjoint = disjoint(&by_start);
    if query.function == Some(RangeFunction::Count) && memory_empty && chunks_disjoint {
        return count_from_metadata(inner, query, steps, &by_start, stats).await;
    }
    if chunks_disjoint && read_disjoint(inner, p, &by_start, scratch, stats).await? {
        let (ts, vs) = (&scratch.ts, &scratch.vs);
        let lo = ts.partition_point(|&t| t < range.start);
        let hi = ts.partition_point(|&t| t <= range.end);
        stats.points_read += (hi - lo) as u64;
        return Ok(query.evaluate(steps, &ts[lo..hi], &vs[lo..hi]));
    }
    // General case: overlapping chunks or out-of-order memory; merge, newest source winning.
    let (ts, vs) = read_planned(inner, p, range).await?;
    stats.chunks_read += p.chunks.len() as u64;
    stats.points_read += ts.len() as u64;
    Ok(query.evaluate(steps, &ts, &vs))
}

/// Decodes disjoint chunks in time order straight into the scratch columns, then appends the
/// memory sources. False (nothing to trust in the scratch) when the result would not be
/// strictly ascending, e.g. memory overlapping the chunks: the caller merges instead.
async fn read_disjoint(
    inner: &Inner,
    p: &Planned,
    by_start: &[ChunkReference],
    scratch: &mut Scratch,
    stats: &mut QueryStats,
) -> Result<bool> {
    scratch.ts.clear();
    scratch.vs.clear();
    for chunk in by_start {
        let at = scratch.ts.len();
        inner
            .read_chunk_into(chunk, &mut scratch.ts, &mut scratch.vs)
            .await?;
        stats.chunks_read += 1;
        if !ascending_after(&scratch.ts, at) {
            return Ok(false);
        }
    }
    for sealed in &p.memory.sealed {
        let (t, v) = sealed.head.points()?;
        let at = scratch.ts.len();
        scratch.ts.extend_from_slice(&t);
        scratch.vs.extend_from_slice(&v);
        if !ascending_after(&scratch.ts, at) {
            return Ok(false);
        }
    }
    if let Some((t, v)) = &p.memory.head {
        let at = scratch.ts.len();
        scratch.ts.extend_from_slice(t);
        scratch.vs.extend_from_slice(v);
        if !ascending_after(&scratch.ts, at) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// True when `ts[from - 1..]` is strictly ascending (the appended part, joined to what was
/// there).
fn ascending_after(ts: &[i64], from: usize) -> bool {
    let s = &ts[from.saturating_sub(1)..];
    let Some((_, rest)) = s.split_first() else {
        return true;
    };
    // No early exit (a failure is rare): the loop vectorises.
    s.iter().zip(rest).fold(true, |ok, (a, b)| ok & (a < b))
}

/// `count` per step from the chunks' point counts: a chunk inside a window counts whole
/// without being decoded; only chunks cut by a window edge are decoded. Needs disjoint chunks
/// (sorted by start) and nothing in memory.
async fn count_from_metadata(
    inner: &Inner,
    query: &RangeQuery,
    steps: &[i64],
    chunks: &[ChunkReference],
    stats: &mut QueryStats,
) -> Result<StepValues> {
    let mut out = StepValues::default();
    let mut decoded: Vec<Option<Vec<i64>>> = vec![None; chunks.len()];
    let mut first = 0usize;
    for (k, &t) in steps.iter().enumerate() {
        let from = t.saturating_sub(query.window);
        while first < chunks.len() && chunks[first].end_time <= from {
            first += 1;
        }
        let mut count = 0u64;
        for (j, c) in chunks.iter().enumerate().skip(first) {
            if c.start_time > t {
                break;
            }
            if c.start_time > from && c.end_time <= t {
                count += u64::from(c.point_count);
                stats.points_counted += u64::from(c.point_count);
                continue;
            }
            if decoded[j].is_none() {
                let (mut ts, mut vs) = (Vec::new(), Vec::new());
                inner.read_chunk_into(c, &mut ts, &mut vs).await?;
                stats.chunks_read += 1;
                stats.points_read += ts.len() as u64;
                decoded[j] = Some(ts);
            }
            if let Some(ts) = &decoded[j] {
                let lo = ts.partition_point(|&x| x <= from);
                let hi = ts.partition_point(|&x| x <= t);
                count += (hi - lo) as u64;
            }
        }
        if count > 0 {
            out.steps.push(k as u32);
            out.values.push(count as f64);
        }
    }
    Ok(out)
}
