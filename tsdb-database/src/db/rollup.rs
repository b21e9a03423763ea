//! Reads evaluated near the data: the PromQL engine's range functions and instant selectors
//! ([`tsdb_promql::RollupRequest`]) over every selected series, on every core, one series
//! at a time per core, so that a query never holds its selection's samples.

use std::sync::{Arc, OnceLock};

use tsdb_core::{Error, LabelMatcher, Result, SeriesId, TimeRange};
use tsdb_promql::{RangeFunction, RolledSeries, RollupKind, RollupRequest, SelectLimits};

use super::Inner;
use crate::read::merge;
use crate::tombstones::remove_hidden;

/// The cores available to this process, looked up once (`available_parallelism` reads
/// cgroup files).
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Below this many series a request is evaluated on the calling task.
const SERIES_PER_TASK: usize = 16;

/// Tasks a request is split into, per core.
const TASKS_PER_CORE: usize = 4;

/// Reused buffers of one task.
#[derive(Default)]
struct Scratch {
    ts: Vec<i64>,
    vs: Vec<f64>,
    window: (Vec<i64>, Vec<f64>),
    out: Vec<(u32, f64, i64)>,
    /// Points per evaluation time counted from chunk headers.
    counts: Vec<u64>,
}

impl Inner {
    /// Evaluates `request` over every series its matchers select, within `limits` (the
    /// series selected, and the answers' points).
    pub(crate) async fn rollup(
        self: &Arc<Self>,
        request: &RollupRequest,
        limits: SelectLimits,
    ) -> Result<Vec<RolledSeries>> {
        let _pin = self.compactor.pin();
        // Damage whose series is unknown might concern any selection.
        if let Some(d) = self.damage.blocking_unknown(request.read_range()) {
            return Err(d.to_error_unknown());
        }
        let ids = self.series_for(&request.matchers).await?;
        limits.check(ids.len(), 0)?;
        let request = Arc::new(request.clone());
        // A few tasks a core, so that a core done early takes over the rest.
        let parts = (cores() * TASKS_PER_CORE)
            .min(ids.len().div_ceil(SERIES_PER_TASK))
            .max(1);
        let mut rolled = Vec::with_capacity(ids.len());
        if parts == 1 {
            rolled = self.rollup_part(&request, &ids).await?;
        } else {
            let per = ids.len().div_ceil(parts);
            let tasks: Vec<_> = ids
                .chunks(per)
                .map(|part| {
                    let (inner, request, part) = (self.clone(), request.clone(), part.to_vec());
                    tokio::spawn(async move { inner.rollup_part(&request, &part).await })
                })
                .collect();
            for t in tasks {
                rolled.extend(t.await.map_err(|e| Error::task_failed("rollup", e))??);
            }
        }
        let points = rolled.iter().map(|s| s.points.len()).sum();
        limits.check(rolled.len(), points)?;
        Ok(rolled)
    }

    async fn series_for(&self, matchers: &[LabelMatcher]) -> Result<Vec<SeriesId>> {
        self.index_read(self.engines.index.find_series(matchers).await)
    }

    /// One task's share: each series read (its chunks overlapping the windows, its buffered
    /// points) and evaluated in turn, through the same buffers.
    async fn rollup_part(
        &self,
        request: &RollupRequest,
        ids: &[SeriesId],
    ) -> Result<Vec<RolledSeries>> {
        let range = request.read_range();
        let tier = self.tiers.pick(request);
        let mut s = Scratch::default();
        let mut out = Vec::new();
        for &id in ids {
            let Some(labels) = self.index_read(self.engines.index.series_labels(id).await)? else {
                continue;
            };
            if let Some(r) = tier
                && self.tiered_series(id, request, r, &mut s.out).await?
            {
                if !s.out.is_empty() {
                    out.push(RolledSeries {
                        labels,
                        points: s.out.clone(),
                    });
                }
                continue;
            }
            let counted = match request.kind {
                RollupKind::Range {
                    function: RangeFunction::CountOverTime,
                    range_ms,
                } => {
                    self.count_from_headers(id, request, range_ms, &mut s)
                        .await?
                }
                _ => false,
            };
            if !counted {
                self.read_columns(id, range, &mut s).await?;
                request.evaluate(&s.ts, &s.vs, &mut s.window, &mut s.out);
            }
            if !s.out.is_empty() {
                out.push(RolledSeries {
                    labels,
                    points: s.out.clone(),
                });
            }
        }
        Ok(out)
    }

    /// The series' points in `range` into `s.ts`/`s.vs`, sorted and unique. Chunks that do
    /// not overlap each other, with nothing buffered, are decoded straight into the buffers;
    /// anything else goes through the general merge.
    async fn read_columns(&self, id: SeriesId, range: TimeRange, s: &mut Scratch) -> Result<()> {
        s.ts.clear();
        s.vs.clear();
        let memory = self.heads.snapshot(id)?;
        let mut chunks = self.chunks_to_read(id, range, None).await?;
        chunks.sort_by_key(|c| (c.start_time, c.location));
        let disjoint = chunks.windows(2).all(|w| w[0].end_time < w[1].start_time);
        if memory.is_empty() && disjoint {
            // Chunks in time order whose spans do not overlap, each strictly ascending inside:
            // the whole is strictly ascending.
            let mut ascending = true;
            for chunk in &chunks {
                ascending &= self
                    .read_chunk_into(chunk, range, &mut s.ts, &mut s.vs)
                    .await?
                    .0;
            }
            if ascending {
                return Ok(());
            }
            s.ts.clear();
            s.vs.clear();
        }
        chunks.sort_by_key(|c| c.location);
        let mut sources = Vec::with_capacity(chunks.len() + memory.sealed.len() + 1);
        for chunk in &chunks {
            sources.push(self.read_chunk(chunk, range).await?);
        }
        sources.extend(memory.into_sources()?);
        let (ts, vs) = merge(sources, range);
        s.ts = ts;
        s.vs = vs;
        Ok(())
    }

    /// `count_over_time(selector[range_ms])` of one series into `s.out`, taking the count of
    /// every chunk that lies inside a window (and only touches windows it lies inside) from
    /// its header when its codec says no value can be NaN (a staleness marker is one, and is
    /// not counted); the other chunks are decoded and counted as [`RollupRequest::evaluate`]
    /// does. `false` (nothing done) when memory holds points of the series or its chunks
    /// overlap in time: the general path then reads it.
    async fn count_from_headers(
        &self,
        id: SeriesId,
        request: &RollupRequest,
        range_ms: i64,
        s: &mut Scratch,
    ) -> Result<bool> {
        let memory = self.heads.snapshot(id)?;
        if !memory.is_empty() {
            return Ok(false);
        }
        let mut chunks = self.chunks_to_read(id, request.read_range(), None).await?;
        chunks.sort_by_key(|c| (c.start_time, c.location));
        if !chunks.windows(2).all(|w| w[0].end_time < w[1].start_time) {
            return Ok(false);
        }
        let times = &request.times;
        s.ts.clear();
        s.vs.clear();
        s.counts.clear();
        s.counts.resize(times.len(), 0);
        for chunk in &chunks {
            // Windows `[t - range_ms, t]` holding the whole chunk: `t` in
            // `[end, start + range_ms]`; those holding part of it end inside it or start
            // inside it.
            let (start, end) = (chunk.start_time, chunk.end_time);
            let whole_from = times.partition_point(|&t| t < end);
            let whole_to = times.partition_point(|&t| t <= start.saturating_add(range_ms));
            let partial = times.iter().any(|&t| {
                (start <= t && t < end)
                    || (start < t.saturating_sub(range_ms) && t.saturating_sub(range_ms) <= end)
            });
            if whole_from >= whole_to && !partial {
                continue;
            }
            let block = self.note_damaged(
                chunk,
                self.engines.storage.read_chunk(&chunk.location).await,
            )?;
            let nan_free = !self.decoder.codec_of(&block)?.may_hold_nan(&block);
            let hidden = self.tombstones.hiding(chunk);
            if nan_free && !partial && hidden.is_empty() {
                self.decoder.answered_by_header();
                for count in &mut s.counts[whole_from..whole_to] {
                    *count += u64::from(block.point_count);
                }
            } else {
                let at = s.ts.len();
                let decoded = self
                    .decoder
                    .decode_into(chunk, &block, request.read_range(), &mut s.ts, &mut s.vs)
                    .await;
                if decoded.is_err() {
                    s.ts.truncate(at);
                    s.vs.truncate(at);
                }
                if !self.note_damaged(chunk, decoded)?.0 {
                    return Ok(false);
                }
                remove_hidden(&mut s.ts, &mut s.vs, at, &hidden);
            }
        }
        request.evaluate(&s.ts, &s.vs, &mut s.window, &mut s.out);
        if s.counts.iter().any(|&c| c > 0) {
            for &(i, v, _) in &s.out {
                s.counts[i as usize] += v as u64;
            }
            s.out.clear();
            for (i, (&count, &t)) in s.counts.iter().zip(times).enumerate() {
                if count > 0 {
                    s.out.push((i as u32, count as f64, t));
                }
            }
        }
        Ok(true)
    }
}
