//! Compaction: a series' cold chunks (newest point older than
//! [`crate::DatabaseConfig::cold_after`]) and every chunk overlapping them merged into large
//! chunks of the cold codec, duplicates resolved (the last write of a timestamp wins) and
//! deleted points dropped; chunks that the storage engine asks to move (to free segments that
//! are mostly dead) written anew; what was replaced deleted once no read can still hold it.
//!
//! **Crash safety.** The new chunks are durable in storage before they are indexed, and
//! indexed before the chunks they replace leave the index; storage deletes those last. A kill
//! anywhere in between leaves both in storage: a read merges them into the same points (the
//! new chunks hold exactly what the old ones answered, and outrank them as later writes), and
//! the next round merges them again.
//!
//! **Concurrency.** A new chunk outranks every older location, so it must not hide a write
//! that came meanwhile: after writing, the series' buffered points and indexed chunks are
//! looked at again (memory first, as reads do), and if anything new touches the rewritten
//! span the round leaves the series alone (its new chunks are deleted unindexed) and retries
//! it next time. Deletions wait for the series being compacted (a tombstone names chunks by
//! location). Replaced chunks are deleted from storage once every read that began before the
//! index stopped listing them is done ([`Compactor::pin`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tsdb_core::{
    ChunkLocation, ChunkReference, CodecId, Compressor, Error, Result, SeriesId, TimeRange,
};

use super::Inner;
use crate::read::merge;

/// What compaction did (one call of [`crate::TimeSeriesDB::compact`], or every round since
/// open in [`crate::DbStats::compaction`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Series whose chunks were rewritten (once each per call of `compact`; in the totals of
    /// [`crate::DbStats::compaction`], once per round that rewrote them).
    pub series: u64,
    /// Chunks replaced (and deleted from storage once no read holds them).
    pub chunks_replaced: u64,
    /// Chunks written in their place.
    pub chunks_written: u64,
    /// Stored bytes of the chunks replaced.
    pub bytes_replaced: u64,
    /// Stored bytes of the chunks written.
    pub bytes_written: u64,
    /// Points in the chunks written.
    pub points_written: u64,
    /// Series left for the next round because they were written while being compacted.
    pub conflicts: u64,
    /// Series left alone because recorded damage touches them.
    pub damaged: u64,
}

impl CompactionStats {
    pub(crate) fn add(&mut self, other: &CompactionStats) {
        self.series += other.series;
        self.chunks_replaced += other.chunks_replaced;
        self.chunks_written += other.chunks_written;
        self.bytes_replaced += other.bytes_replaced;
        self.bytes_written += other.bytes_written;
        self.points_written += other.points_written;
        self.conflicts += other.conflicts;
        self.damaged += other.damaged;
    }
}

/// Held by a read for as long as it may read chunks the index listed to it: chunks replaced
/// meanwhile stay in storage until it is dropped.
#[derive(Debug)]
pub(crate) struct ReadPin(#[allow(dead_code, reason = "held for its reference count")] Arc<()>);

/// Compaction's state: the lock that serializes it with deletions, the read epoch, the
/// replaced chunks waiting for their readers, and what it did.
#[derive(Debug, Default)]
pub(crate) struct Compactor {
    /// Held while one series is compacted, and while deletions write their tombstones.
    pub(crate) series_lock: tokio::sync::Mutex<()>,
    /// The current read epoch: every read holds a clone of it.
    epoch: Mutex<Arc<()>>,
    /// Chunks out of the index, each batch with the epoch that was current when it left:
    /// deleted from storage once nobody else holds that epoch.
    retired: Mutex<Vec<(Arc<()>, Vec<ChunkLocation>)>>,
    totals: Mutex<CompactionStats>,
    rounds: AtomicU64,
}

impl Compactor {
    /// Pins the chunks the index lists now (see [`ReadPin`]).
    pub(crate) fn pin(&self) -> ReadPin {
        ReadPin(
            self.epoch
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }

    /// Hands chunks that the index no longer lists over for deletion from storage, once the
    /// reads that may have seen them are done.
    pub(crate) fn retire(&self, locations: Vec<ChunkLocation>) {
        if locations.is_empty() {
            return;
        }
        let old = std::mem::take(&mut *self.epoch.lock().unwrap_or_else(PoisonError::into_inner));
        self.retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((old, locations));
    }

    /// Takes the retired chunks that no read can hold any more.
    fn take_quiet(&self) -> Vec<ChunkLocation> {
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        retired.retain_mut(|(epoch, locations)| {
            if Arc::strong_count(epoch) == 1 {
                out.append(locations);
                false
            } else {
                true
            }
        });
        out
    }

    /// Whether retired chunks wait for their readers.
    fn has_retired(&self) -> bool {
        !self
            .retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Rounds run and what they did since open.
    pub(crate) fn totals(&self) -> (u64, CompactionStats) {
        (
            self.rounds.load(Ordering::Relaxed),
            self.totals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// How a round treats the chunks of one series (a pure function of the chunks, so that it
/// can be tested on its own).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Chunks ending before it are cold.
    pub(crate) cutoff: i64,
    /// The codec cold chunks are written in.
    pub(crate) cold: CodecId,
    /// Most points in a chunk written.
    pub(crate) target_points: u32,
}

/// Most points one stretch of chunks brings into memory before it is cut (at a boundary
/// between chunks that do not overlap).
const STRETCH_POINTS: u64 = 1 << 19;

impl Policy {
    /// The stretches of `chunks` (one series) to rewrite, each a set of chunks to merge into
    /// new ones. Chunks overlapping each other form components (points of one timestamp can
    /// only be in one component); a component is rewritten when a chunk of it is cold, in
    /// `moved` or holds deleted points. A component that is one settled chunk (cold codec, at least half the target
    /// size, nothing deleted in it, not to be moved) is left alone and cuts the stretches.
    /// A stretch of one chunk is only rewritten when that chunk is to be moved, holds deleted
    /// points or is not yet in the cold codec.
    pub(crate) fn plan(
        &self,
        chunks: &[ChunkReference],
        moved: &HashSet<ChunkLocation>,
        hides_points: impl Fn(&ChunkReference) -> bool,
    ) -> Vec<Vec<ChunkReference>> {
        let mut sorted = chunks.to_vec();
        sorted.sort_by_key(|c| (c.start_time, c.location));
        let mut components: Vec<Vec<ChunkReference>> = Vec::new();
        let mut reach = i64::MIN;
        for c in sorted {
            match components.last_mut() {
                Some(last) if c.start_time <= reach => last.push(c),
                _ => components.push(vec![c]),
            }
            reach = reach.max(c.end_time);
        }
        let wanted = |c: &ChunkReference| {
            c.end_time < self.cutoff || moved.contains(&c.location) || hides_points(c)
        };
        let settled = |component: &[ChunkReference]| match component {
            [c] => {
                c.codec == self.cold
                    && c.end_time < self.cutoff
                    && 2 * u64::from(c.point_count) >= u64::from(self.target_points)
                    && !moved.contains(&c.location)
                    && !hides_points(c)
            }
            _ => false,
        };
        let worth = |stretch: &[ChunkReference]| match stretch {
            [] => false,
            [c] => {
                moved.contains(&c.location)
                    || hides_points(c)
                    || (c.end_time < self.cutoff && c.codec != self.cold)
            }
            _ => true,
        };
        let mut stretches = Vec::new();
        let mut current: Vec<ChunkReference> = Vec::new();
        let mut points = 0u64;
        for component in components {
            let cut = !component.iter().any(wanted) || settled(&component);
            let size: u64 = component.iter().map(|c| u64::from(c.point_count)).sum();
            if cut || (points > 0 && points + size > STRETCH_POINTS) {
                if worth(&current) {
                    stretches.push(std::mem::take(&mut current));
                }
                current.clear();
                points = 0;
            }
            if !cut {
                points += size;
                current.extend(component);
            }
        }
        if worth(&current) {
            stretches.push(current);
        }
        for stretch in &mut stretches {
            // Merged oldest write first.
            stretch.sort_by_key(|c| c.location);
        }
        stretches
    }
}

/// The time span of a set of chunks.
fn span(chunks: &[ChunkReference]) -> TimeRange {
    TimeRange {
        start: chunks.iter().map(|c| c.start_time).min().unwrap_or(0),
        end: chunks.iter().map(|c| c.end_time).max().unwrap_or(-1),
    }
}

/// Splits `len` points into the fewest runs of at most `target`, of nearly equal sizes.
fn runs(len: usize, target: u32) -> impl Iterator<Item = std::ops::Range<usize>> {
    let target = (target as usize).max(1);
    let parts = len.div_ceil(target).max(1);
    (0..parts).map(move |i| (i * len / parts)..((i + 1) * len / parts))
}

/// What became of one series.
enum Outcome {
    Nothing,
    Done(CompactionStats),
    Conflict,
    Damaged,
}

impl Inner {
    /// One compaction round over every series, to completion. With `throttle`, pauses after
    /// each series for as long as it took (compaction then takes at most half a core).
    pub(crate) async fn compaction_round(
        &self,
        throttle: bool,
        rewritten: &mut HashSet<SeriesId>,
    ) -> Result<CompactionStats> {
        let started = Instant::now();
        let cutoff = crate::clock::now_ms()
            .saturating_sub(i64::try_from(self.config.cold_after.as_millis()).unwrap_or(i64::MAX));
        let policy = Policy {
            cutoff,
            cold: self.engines.cold.codec_id(),
            target_points: self.config.compacted_chunk_points.clamp(1, 1 << 20),
        };
        let moved: HashSet<ChunkLocation> = self
            .engines
            .storage
            .relocation_candidates()
            .await?
            .into_iter()
            .map(|c| c.location)
            .collect();
        // Storage's listing picks the series worth a look; each is planned again from the
        // index under the lock.
        let mut by_series: BTreeMap<SeriesId, Vec<ChunkReference>> = BTreeMap::new();
        for chunk in self.engines.storage.list_chunks().await? {
            // Rollup chunks are the tiers' own (`build_tiers` moves them).
            if chunk.codec != CodecId::ROLLUP {
                by_series.entry(chunk.series_id).or_default().push(chunk);
            }
        }
        let mut round = CompactionStats::default();
        let mut sealed = false;
        for (series, chunks) in by_series {
            if self.lifecycle.is_shut_down() {
                break;
            }
            let hides = |c: &ChunkReference| !self.tombstones.hiding(c).is_empty();
            if policy.plan(&chunks, &moved, hides).is_empty() {
                continue;
            }
            let began = Instant::now();
            if !sealed {
                // What this round writes goes to a file of its own, so that the files holding
                // what it replaces empty and go.
                self.engines.storage.seal().await?;
                sealed = true;
            }
            match self.compact_series(series, &policy, &moved).await {
                Ok(Outcome::Done(stats)) => {
                    round.add(&stats);
                    rewritten.insert(series);
                }
                Ok(Outcome::Nothing) => {}
                Ok(Outcome::Conflict) => round.conflicts += 1,
                Ok(Outcome::Damaged) => round.damaged += 1,
                Err(e) => {
                    self.note_round(&round);
                    return Err(e);
                }
            }
            self.delete_retired().await;
            if throttle {
                self.lifecycle.pause(began.elapsed()).await;
            }
        }
        self.note_round(&round);
        if round.series > 0 || round.conflicts > 0 {
            tracing::info!(
                series = round.series,
                chunks_replaced = round.chunks_replaced,
                chunks_written = round.chunks_written,
                bytes_replaced = round.bytes_replaced,
                bytes_written = round.bytes_written,
                conflicts = round.conflicts,
                damaged = round.damaged,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "compaction round done"
            );
        }
        Ok(round)
    }

    fn note_round(&self, round: &CompactionStats) {
        self.compactor.rounds.fetch_add(1, Ordering::Relaxed);
        self.compactor
            .totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(round);
    }

    /// Rewrites the stretches of one series that `policy` picks (see the module docs for
    /// the order of the steps).
    async fn compact_series(
        &self,
        series: SeriesId,
        policy: &Policy,
        moved: &HashSet<ChunkLocation>,
    ) -> Result<Outcome> {
        let _lock = self.compactor.series_lock.lock().await;
        if self.damage.blocking(series, TimeRange::ALL).is_some() {
            return Ok(Outcome::Damaged);
        }
        let chunks = self.index_read(
            self.engines
                .index
                .query_chunks(series, TimeRange::ALL)
                .await,
        )?;
        let hides = |c: &ChunkReference| !self.tombstones.hiding(c).is_empty();
        let stretches = policy.plan(&chunks, moved, hides);
        if stretches.is_empty() {
            return Ok(Outcome::Nothing);
        }
        let mut written: Vec<ChunkReference> = Vec::new();
        let result = self
            .write_stretches(series, policy, &stretches, &mut written)
            .await;
        let outcome = match result {
            Ok(true) => self.swap_in(series, &chunks, &stretches, &written).await,
            Ok(false) => Ok(Outcome::Damaged),
            Err(e) => Err(e),
        };
        if !matches!(outcome, Ok(Outcome::Done(_))) && !written.is_empty() {
            // Not indexed: nothing reads them.
            let locations: Vec<ChunkLocation> = written.iter().map(|c| c.location).collect();
            if let Err(e) = self.engines.storage.delete_chunks(&locations).await {
                tracing::warn!(
                    %series,
                    "could not delete {} unindexed compacted chunks (a later round merges them away): {e}",
                    locations.len()
                );
            }
        }
        outcome
    }

    /// Writes the merged points of each stretch as new chunks, durably. `false` when a chunk
    /// fails its checks (recorded as damage; the series is left as it is).
    async fn write_stretches(
        &self,
        series: SeriesId,
        policy: &Policy,
        stretches: &[Vec<ChunkReference>],
        written: &mut Vec<ChunkReference>,
    ) -> Result<bool> {
        for stretch in stretches {
            let mut sources = Vec::with_capacity(stretch.len());
            for chunk in stretch {
                match self.read_chunk(chunk, TimeRange::ALL).await {
                    Ok(columns) => sources.push(columns),
                    Err(Error::Corrupt { .. }) => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
            let (ts, vs) = merge(sources, TimeRange::ALL);
            for run in runs(ts.len(), policy.target_points) {
                let (ts, vs) = (&ts[run.clone()], &vs[run]);
                let Some(&last) = ts.last() else { continue };
                let codec: &Arc<dyn Compressor> = if last < policy.cutoff {
                    &self.engines.cold
                } else {
                    &self.engines.compressor
                };
                let block = codec.compress_columns(series, ts, vs).await?;
                let location = self.engines.storage.write_chunk(&block).await?;
                written.push(ChunkReference::new(&block, location));
            }
        }
        if !written.is_empty() {
            self.engines.storage.sync().await?;
        }
        Ok(true)
    }

    /// Indexes the chunks written in place of the stretches and retires the stretches,
    /// unless the series was written meanwhile where they lie.
    async fn swap_in(
        &self,
        series: SeriesId,
        before: &[ChunkReference],
        stretches: &[Vec<ChunkReference>],
        written: &[ChunkReference],
    ) -> Result<Outcome> {
        let spans: Vec<TimeRange> = stretches.iter().map(|s| span(s)).collect();
        let touches = |start: i64, end: i64| spans.iter().any(|r| start <= r.end && r.start <= end);
        // Memory first: a head sealed and indexed meanwhile is then seen in one or the other.
        let memory = self.heads.snapshot(series)?;
        let buffered = memory
            .sealed
            .iter()
            .filter_map(|s| s.head.time_range())
            .any(|(start, end)| touches(start, end))
            || memory
                .heads
                .iter()
                .any(|(ts, _)| ts.iter().any(|&t| touches(t, t)));
        if buffered {
            return Ok(Outcome::Conflict);
        }
        let known: HashSet<ChunkLocation> =
            before.iter().chain(written).map(|c| c.location).collect();
        let now = self.index_read(
            self.engines
                .index
                .query_chunks(series, TimeRange::ALL)
                .await,
        )?;
        if now
            .iter()
            .any(|c| !known.contains(&c.location) && touches(c.start_time, c.end_time))
        {
            return Ok(Outcome::Conflict);
        }
        for chunk in written {
            self.engines.index.add_chunk(chunk).await?;
        }
        let replaced: Vec<ChunkLocation> = stretches.iter().flatten().map(|c| c.location).collect();
        self.engines.index.remove_chunks(series, &replaced).await?;
        let stats = CompactionStats {
            series: 1,
            chunks_replaced: replaced.len() as u64,
            chunks_written: written.len() as u64,
            bytes_replaced: stretches.iter().flatten().map(|c| c.location.length).sum(),
            bytes_written: written.iter().map(|c| c.location.length).sum(),
            points_written: written.iter().map(|c| u64::from(c.point_count)).sum(),
            conflicts: 0,
            damaged: 0,
        };
        self.compactor.retire(replaced);
        Ok(Outcome::Done(stats))
    }

    /// Deletes from storage the retired chunks no read holds any more; a failure is logged
    /// and retried later.
    pub(crate) async fn delete_retired(&self) {
        let quiet = self.compactor.take_quiet();
        if quiet.is_empty() {
            return;
        }
        if let Err(e) = self.engines.storage.delete_chunks(&quiet).await {
            tracing::warn!(
                "deleting {} replaced chunks failed (will retry): {e}",
                quiet.len()
            );
            self.compactor.retire(quiet);
        }
    }

    /// Deletes every retired chunk, waiting for the reads that hold them (at most
    /// `stall_timeout`; what is left is merged away by a later round after a reopen).
    pub(crate) async fn delete_all_retired(&self) {
        let deadline = Instant::now() + self.config.stall_timeout;
        loop {
            self.delete_retired().await;
            if !self.compactor.has_retired() || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The background compaction: a throttled round every
    /// [`crate::DatabaseConfig::compaction_interval`].
    pub(super) async fn compaction_service(self: Arc<Self>) {
        let Some(interval) = self.config.compaction_interval else {
            return;
        };
        loop {
            self.lifecycle.pause(interval).await;
            if self.lifecycle.is_shut_down() {
                return;
            }
            if let Err(e) = self.compaction_round(true, &mut HashSet::new()).await {
                tracing::warn!("compaction round failed (will retry): {e}");
            }
            if let Err(e) = self.build_tiers(true).await {
                tracing::warn!("building the rollup tiers failed (will retry): {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunk(location: u64, start: i64, end: i64, points: u32, codec: CodecId) -> ChunkReference {
        ChunkReference {
            series_id: SeriesId(1),
            location: ChunkLocation {
                segment: 0,
                offset: location,
                length: 10,
            },
            start_time: start,
            end_time: end,
            point_count: points,
            codec,
        }
    }

    fn policy() -> Policy {
        Policy {
            cutoff: 1_000,
            cold: CodecId::PCO,
            target_points: 100,
        }
    }

    #[test]
    fn settled_cold_chunks_cut_stretches_and_hot_ones_are_left() {
        let p = policy();
        let chunks = [
            chunk(1, 0, 9, 10, CodecId::GORILLA),
            chunk(2, 10, 19, 10, CodecId::GORILLA),
            chunk(3, 20, 99, 80, CodecId::PCO),
            chunk(4, 100, 109, 10, CodecId::GORILLA),
            chunk(5, 2_000, 2_009, 10, CodecId::GORILLA),
        ];
        let plan = p.plan(&chunks, &HashSet::new(), |_| false);
        let offsets: Vec<Vec<u64>> = plan
            .iter()
            .map(|s| s.iter().map(|c| c.location.offset).collect())
            .collect();
        // 1 and 2 merge; 3 is settled; 4 alone is re-encoded; 5 is hot.
        assert_eq!(offsets, vec![vec![1, 2], vec![4]]);
        // A lone small chunk already in the cold codec is left.
        let lone = [chunk(1, 0, 9, 10, CodecId::PCO)];
        assert!(p.plan(&lone, &HashSet::new(), |_| false).is_empty());
        // ...unless it holds deleted points or is to be moved.
        assert_eq!(p.plan(&lone, &HashSet::new(), |_| true).len(), 1);
        let moved: HashSet<ChunkLocation> = [lone[0].location].into();
        assert_eq!(p.plan(&lone, &moved, |_| false).len(), 1);
        // A hot chunk overlapping a cold one is merged with it.
        let overlap = [
            chunk(1, 0, 500, 10, CodecId::PCO),
            chunk(2, 400, 5_000, 10, CodecId::GORILLA),
        ];
        assert_eq!(p.plan(&overlap, &HashSet::new(), |_| false)[0].len(), 2);
    }

    #[test]
    fn runs_cover_every_point_once_within_the_target() {
        for len in [0usize, 1, 99, 100, 101, 199, 200, 201, 10_000] {
            let all: Vec<std::ops::Range<usize>> = runs(len, 100).collect();
            assert_eq!(all.first().map(|r| r.start), Some(0));
            assert_eq!(all.last().map(|r| r.end), Some(len));
            for w in all.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            assert!(all.iter().all(|r| r.len() <= 100), "{len}: {all:?}");
            if len >= 100 {
                assert!(all.iter().all(|r| r.len() >= 50), "{len}: {all:?}");
            }
        }
    }

    proptest! {
        /// Whatever the chunks: stretches are disjoint; every chunk of a stretch is wanted
        /// or overlaps one that is; no chunk left out overlaps a chunk rewritten (points of a
        /// timestamp are never split between a rewritten and a kept chunk); and a second
        /// plan over the result of the first rewrites nothing again unless some chunk
        /// still needs it.
        #[test]
        fn plans_rewrite_whole_overlap_components(
            spans in proptest::collection::vec((0i64..3_000, 0i64..300, 1u32..150, any::<bool>()), 0..24),
            moved_mask in any::<u32>(),
        ) {
            let p = policy();
            let chunks: Vec<ChunkReference> = spans
                .iter()
                .enumerate()
                .map(|(i, &(start, len, points, cold))| {
                    chunk(i as u64, start, start + len, points, if cold { CodecId::PCO } else { CodecId::GORILLA })
                })
                .collect();
            let moved: HashSet<ChunkLocation> = chunks
                .iter()
                .enumerate()
                .filter(|(i, _)| moved_mask >> (i % 32) & 1 == 1)
                .map(|(_, c)| c.location)
                .collect();
            let plan = p.plan(&chunks, &moved, |_| false);
            let rewritten: Vec<ChunkReference> = plan.iter().flatten().copied().collect();
            let unique: HashSet<ChunkLocation> = rewritten.iter().map(|c| c.location).collect();
            prop_assert_eq!(unique.len(), rewritten.len());
            for kept in chunks.iter().filter(|c| !unique.contains(&c.location)) {
                for r in &rewritten {
                    prop_assert!(
                        kept.end_time < r.start_time || r.end_time < kept.start_time,
                        "kept {:?} overlaps rewritten {:?}", kept, r
                    );
                }
            }
            for stretch in &plan {
                prop_assert!(stretch.iter().any(|c| c.end_time < p.cutoff || moved.contains(&c.location)));
            }
            // Every cold chunk not in the cold codec, or to be moved, is rewritten.
            for c in &chunks {
                if moved.contains(&c.location) || (c.end_time < p.cutoff && c.codec != p.cold) {
                    prop_assert!(unique.contains(&c.location), "{:?} left", c);
                }
            }
        }
    }
}
