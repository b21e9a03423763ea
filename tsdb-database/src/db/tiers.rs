//! Rollup tiers, built and read (the buckets and their storage: `crate::tiers`).
//!
//! - Building ([`Inner::build_tiers`], after each compaction round): for every series and
//!   tier, the buckets from where the tier stopped (or from where the series was written or
//!   deleted since, see [`Tiers::note_written`]) up to `cold_after` ago are computed from the
//!   raw points, group by group; a group's chunks are written, synced, swapped in, and the
//!   chunks they replace retired like compaction's. The state file records the new end last:
//!   a kill before leaves the old end, from where the next round builds again.
//! - Raw points already gone (past [`crate::DatabaseConfig::retention`]) cannot be summed
//!   again: their buckets are kept as they are, unless a deletion touched them.
//! - Reading ([`Inner::tiered_series`]): a request a tier answers (see
//!   [`crate::tiers::tier_answers`]) takes each series' windows up to where the tier is valid
//!   for it from the tier, the later ones from raw data.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use tsdb_core::{ChunkLocation, ChunkReference, CodecId, Error, Result, SeriesId, TimeRange};
use tsdb_promql::{RollupKind, RollupRequest};

use super::Inner;
use crate::config::RollupTier;
use crate::read::{Columns, merge};
use crate::tiers::{
    Agg, Buckets, ChunkOf, GROUP_BUCKETS, TierState, answer, ceil_to, derived_id, group_labels,
    group_of, needs, tier_answers, tier_key, unwrap, wrap,
};

/// Raw points this close to the retention cutoff may be deleted while a group is built:
/// their buckets are kept rather than summed again.
const RETENTION_MARGIN_MS: i64 = 3_600_000;

/// Groups built between two syncs of storage.
const SYNC_EVERY_GROUPS: usize = 512;

/// A group written, waiting for storage to be synced before it replaces the old one.
struct Pending {
    series: SeriesId,
    r: i64,
    old: Vec<ChunkLocation>,
    new: Vec<ChunkReference>,
    buckets: u64,
}

/// What the rollup tiers did since open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RollupStats {
    /// Groups of buckets (a chunk each) written.
    pub groups_written: u64,
    /// Buckets written.
    pub buckets_written: u64,
    /// Rollup chunks deleted by the tiers' retention.
    pub chunks_expired: u64,
    /// Series whose answer to a query came (at least partly) from a tier.
    pub series_answered: u64,
}

#[derive(Clone, Copy, Debug)]
struct Spec {
    r: i64,
    retention_ms: Option<i64>,
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Each series' rollup chunks, per tier resolution.
type TierChunks = HashMap<(SeriesId, i64), Vec<ChunkReference>>;

/// The rollup tiers' component: their specification, state and chunks.
#[derive(Debug)]
pub(crate) struct Tiers {
    /// The tiers configured (built on), by ascending resolution.
    specs: Vec<Spec>,
    /// The resolutions of the tiers read: those configured, and those built before (a tier
    /// no longer configured answers what it holds, and is kept track of, but not built on).
    readable: RwLock<Vec<i64>>,
    state: Mutex<TierState>,
    /// Per tier, the newest label it is built or being built to: a chunk written at or
    /// before it marks its series for that tier.
    reach: Mutex<BTreeMap<i64, i64>>,
    /// The state changed since it was last stored.
    changed: AtomicBool,
    /// The newest label any tier is built or being built to: a chunk written at or before it
    /// makes its series dirty.
    horizon: AtomicI64,
    chunks: RwLock<TierChunks>,
    /// One build at a time.
    building: tokio::sync::Mutex<()>,
    groups_written: AtomicU64,
    buckets_written: AtomicU64,
    chunks_expired: AtomicU64,
    series_answered: AtomicU64,
}

impl Tiers {
    /// The tiers of `tiers`, with the state stored in `dir`.
    pub(crate) fn new(tiers: &[RollupTier], dir: &std::path::Path) -> Result<Tiers> {
        let mut specs = Vec::new();
        for t in tiers {
            let r = millis(t.resolution);
            if !(1..=365 * 86_400_000).contains(&r) {
                return Err(Error::invalid_input(format_args!(
                    "a rollup tier's resolution must be between 1 ms and a year, not {:?}",
                    t.resolution
                )));
            }
            specs.push(Spec {
                r,
                retention_ms: t.retention.map(millis),
            });
        }
        specs.sort_by_key(|s| s.r);
        if specs.windows(2).any(|w| w[0].r == w[1].r) {
            return Err(Error::invalid_input(
                "two rollup tiers have the same resolution",
            ));
        }
        let state = TierState::load(dir)?;
        // Tiers built before stay tracked even when not configured now: a later open that
        // configures them again must know what was written since.
        let horizon = state.newest_built();
        let readable: BTreeSet<i64> = specs
            .iter()
            .map(|s| s.r)
            .chain(state.built_until.keys().copied())
            .collect();
        Ok(Tiers {
            specs,
            readable: RwLock::new(readable.into_iter().collect()),
            reach: Mutex::new(state.built_until.clone()),
            state: Mutex::new(state),
            changed: AtomicBool::new(false),
            horizon: AtomicI64::new(horizon),
            chunks: RwLock::new(HashMap::new()),
            building: tokio::sync::Mutex::new(()),
            groups_written: AtomicU64::new(0),
            buckets_written: AtomicU64::new(0),
            chunks_expired: AtomicU64::new(0),
            series_answered: AtomicU64::new(0),
        })
    }

    /// Takes `other`'s state (a snapshot copying its tiers).
    pub(crate) fn copy_state_of(&self, other: &Tiers) {
        let state = other.state().clone();
        let horizon = state.newest_built();
        *self.reach() = state.built_until.clone();
        {
            let mut readable = self
                .readable
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let all: BTreeSet<i64> = readable
                .iter()
                .copied()
                .chain(state.built_until.keys().copied())
                .collect();
            *readable = all.into_iter().collect();
        }
        *self.state() = state;
        self.horizon.fetch_max(horizon, Ordering::SeqCst);
        self.changed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stats(&self) -> RollupStats {
        RollupStats {
            groups_written: self.groups_written.load(Ordering::Relaxed),
            buckets_written: self.buckets_written.load(Ordering::Relaxed),
            chunks_expired: self.chunks_expired.load(Ordering::Relaxed),
            series_answered: self.series_answered.load(Ordering::Relaxed),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TierState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn readable(&self) -> Vec<i64> {
        self.readable
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reach(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, i64>> {
        self.reach.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tier of `r` is built or being built to `label`: raised before any raw point of
    /// the build is read.
    fn extend_reach(&self, r: i64, label: i64) {
        let mut reach = self.reach();
        let entry = reach.entry(r).or_insert(label);
        *entry = (*entry).max(label);
        self.horizon.fetch_max(label, Ordering::SeqCst);
    }

    /// A chunk of `series` starting at `start` is about to be written from memory: when a
    /// tier is (being) built that far, the series' buckets from there are built again.
    pub(crate) fn note_written(&self, series: SeriesId, start: i64) {
        if start <= self.horizon.load(Ordering::SeqCst) {
            self.mark(series, start, false);
        }
    }

    /// Points of `series` from `start` on were deleted.
    pub(crate) fn note_deleted(&self, series: SeriesId, start: i64) {
        if self.horizon.load(Ordering::SeqCst) > i64::MIN {
            self.mark(series, start, true);
        }
    }

    fn mark(&self, series: SeriesId, from: i64, any: bool) {
        let reach = self.reach();
        let mut state = self.state();
        for (&r, &until) in reach.iter() {
            if any || from <= until {
                let entry = state.dirty.entry((r, series)).or_insert(from);
                *entry = (*entry).min(from);
                self.changed.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Stores the state if it changed (before the WAL is truncated behind the chunks that
    /// marked series dirty, so that the marks outlive the WAL records).
    pub(crate) fn persist(&self, dir: &std::path::Path) -> Result<()> {
        if !self.changed.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let state = self.state().clone();
        state
            .store(dir)
            .inspect_err(|_| self.changed.store(true, Ordering::SeqCst))
    }

    /// Takes the rollup chunks of storage's listing in: those of a tier read (see
    /// `readable`) whose series `known` knows. Returns how many were not.
    pub(crate) fn adopt(
        &self,
        listed: impl IntoIterator<Item = ChunkReference>,
        known: impl Fn(SeriesId) -> bool,
    ) -> usize {
        let mut map = self.chunks.write().unwrap_or_else(PoisonError::into_inner);
        let readable = self.readable();
        let mut unknown = 0;
        'chunks: for chunk in listed {
            for &r in &readable {
                let base = SeriesId(chunk.series_id.0 ^ tier_key(r));
                if known(base) {
                    map.entry((base, r)).or_default().push(chunk);
                    continue 'chunks;
                }
            }
            unknown += 1;
        }
        unknown
    }

    /// The oldest label the tier of `r` still holds every bucket from: its retention's
    /// cutoff, with a margin for the retention round running meanwhile.
    fn kept_from(&self, r: i64) -> i64 {
        self.specs
            .iter()
            .find(|s| s.r == r)
            .and_then(|s| s.retention_ms)
            .map_or(i64::MIN, |keep| {
                crate::clock::now_ms()
                    .saturating_sub(keep)
                    .saturating_add(GROUP_BUCKETS * r)
            })
    }

    /// The coarsest tier that answers `request`.
    pub(crate) fn pick(&self, request: &RollupRequest) -> Option<i64> {
        self.readable()
            .iter()
            .rev()
            .copied()
            .find(|&r| tier_answers(request, r))
    }

    /// The newest label at which the tier of `r` holds the buckets of `series` as the raw
    /// points are (memory not considered).
    fn valid_until(&self, series: SeriesId, r: i64) -> i64 {
        let state = self.state();
        let built = state.built_until.get(&r).copied().unwrap_or(i64::MIN);
        let dirty = state
            .dirty
            .get(&(r, series))
            .map_or(i64::MAX, |&d| d.saturating_sub(1));
        built.min(dirty)
    }

    fn chunks_of(&self, series: SeriesId, r: i64) -> Vec<ChunkReference> {
        self.chunks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(series, r))
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces `old` chunks of the series' tier by `new` ones.
    fn swap(&self, series: SeriesId, r: i64, old: &[ChunkLocation], new: Vec<ChunkReference>) {
        let mut map = self.chunks.write().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry((series, r)).or_default();
        entry.retain(|c| !old.contains(&c.location));
        entry.extend(new);
        if entry.is_empty() {
            map.remove(&(series, r));
        }
    }
}

impl Inner {
    /// Reads the buckets of a tier with labels in `labels`, from `chunks` (the newest write of
    /// a label winning), and whether the aggregates agree on their labels (see
    /// [`Buckets::from_columns`]).
    async fn read_buckets(
        &self,
        chunks: &[ChunkReference],
        labels: TimeRange,
        read: &[Agg],
    ) -> Result<(Buckets, bool)> {
        let mut refs: Vec<&ChunkReference> = chunks
            .iter()
            .filter(|c| c.start_time <= labels.end && labels.start <= c.end_time)
            .collect();
        refs.sort_by_key(|c| c.location);
        let mut sources: BTreeMap<Agg, Vec<Columns>> = BTreeMap::new();
        for chunk in refs {
            let block = self.note_damaged(
                chunk,
                self.engines.storage.read_chunk(&chunk.location).await,
            )?;
            let (_, parts) = self.note_damaged(chunk, unwrap(&block))?;
            for (agg, inner) in parts {
                if !read.contains(&agg) {
                    continue;
                }
                let inner_ref = ChunkReference::new(&inner, chunk.location);
                let (mut ts, mut vs) = (Vec::new(), Vec::new());
                let decoded = self
                    .decoder
                    .decode_into(&inner_ref, &inner, labels, &mut ts, &mut vs)
                    .await;
                self.note_damaged(chunk, decoded)?;
                sources.entry(agg).or_default().push((ts, vs));
            }
        }
        let columns = sources
            .into_iter()
            .map(|(agg, s)| (agg, merge(s, labels)))
            .collect();
        Ok(Buckets::from_columns(columns, read))
    }

    /// Whether recorded damage touches the chunks of the tier `r` of `series` in `labels`.
    fn tier_damaged(&self, series: SeriesId, r: i64, labels: TimeRange) -> bool {
        !self.damage.is_empty()
            && !self
                .damage
                .touching(derived_id(series, r), labels)
                .is_empty()
    }

    /// Answers `request` for one series from the tier of `r` where it is valid, and from raw
    /// points after; `false` (nothing done) when the tier answers none of its windows.
    pub(super) async fn tiered_series(
        &self,
        id: SeriesId,
        request: &RollupRequest,
        r: i64,
        out: &mut Vec<(u32, f64, i64)>,
    ) -> Result<bool> {
        let RollupKind::Range { function, range_ms } = request.kind else {
            return Ok(false);
        };
        out.clear();
        let mut valid = self.tiers.valid_until(id, r);
        if let Some(oldest) = self.heads.oldest(id) {
            valid = valid.min(oldest.saturating_sub(1));
        }
        let times = &request.times;
        let k = times.partition_point(|&t| t <= valid);
        if k == 0 {
            return Ok(false);
        }
        let chunks = self.tiers.chunks_of(id, r);
        let labels = TimeRange {
            start: times[0].saturating_sub(range_ms),
            end: times[k - 1],
        };
        // A tier chunk storage lost (or found damaged) is no longer listed: the buckets
        // left would answer as if its points were never written. Buckets past the tier's
        // retention are gone too, while raw points may still be there.
        if self.tier_damaged(id, r, labels) || labels.start < self.tiers.kept_from(r) {
            return Ok(false);
        }
        let buckets = match self.read_buckets(&chunks, labels, needs(function)).await {
            Ok((b, true)) => b,
            // Damage is recorded, and the next build writes the group again; a build cut
            // short is finished by the next one.
            Ok((_, false)) | Err(Error::Corrupt { .. }) => {
                tracing::warn!(
                    series = id.0,
                    "a rollup tier of the series is damaged; raw data answers"
                );
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if !answer(function, range_ms, &times[..k], 0, &buckets, out) {
            return Ok(false);
        }
        if k < times.len() {
            let rest = RollupRequest {
                matchers: Vec::new(),
                times: times[k..].to_vec(),
                kind: request.kind,
            };
            let (ts, vs) = self.read_series_with(id, rest.read_range(), None).await?;
            let (mut scratch, mut later) = ((Vec::new(), Vec::new()), Vec::new());
            rest.evaluate(&ts, &vs, &mut scratch, &mut later);
            out.extend(later.into_iter().map(|(i, v, t)| (i + k as u32, v, t)));
        }
        self.tiers.series_answered.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Builds every configured tier up to `cold_after` ago (see the module docs), applies
    /// their retention and moves the rollup chunks storage asks to move. Throttled (the
    /// background service), it pauses after each series as long as the series took, as
    /// compaction does.
    pub(crate) async fn build_tiers(&self, throttle: bool) -> Result<()> {
        if self.tiers.specs.is_empty() || self.config.read_only {
            return Ok(());
        }
        let _one = self.tiers.building.lock().await;
        let now = crate::clock::now_ms();
        let cold = now.saturating_sub(millis(self.config.cold_after));
        let raw_from = self.config.retention.map(|keep| {
            now.saturating_sub(millis(keep))
                .saturating_add(RETENTION_MARGIN_MS)
        });
        let (targets, dirty) = {
            let state = self.tiers.state();
            let targets: Vec<(Spec, Option<i64>, i64)> = self
                .tiers
                .specs
                .iter()
                .map(|s| {
                    let built = state.built_until.get(&s.r).copied();
                    // Never back (a clock stepping back, a longer `cold_after`).
                    let until = crate::tiers::floor_to(cold, s.r).max(built.unwrap_or(i64::MIN));
                    (*s, built, until)
                })
                .collect();
            (targets, state.dirty.clone())
        };
        // Writes from now on at or before the new ends mark their series: raised before any
        // raw point is read.
        for &(spec, _, until) in &targets {
            self.tiers.extend_reach(spec.r, until);
        }
        self.tier_retention(now).await?;
        self.relocate_rollups().await?;

        let mut spans: BTreeMap<SeriesId, Vec<(i64, i64)>> = BTreeMap::new();
        for chunk in self.engines.storage.list_chunks().await? {
            if chunk.codec != CodecId::ROLLUP {
                spans
                    .entry(chunk.series_id)
                    .or_default()
                    .push((chunk.start_time, chunk.end_time));
            }
        }
        for &(_, series) in dirty.keys() {
            spans.entry(series).or_default();
        }
        // What a build writes starts a file of its own: groups are written anew every
        // round, and the files they leave behind then empty whole.
        self.engines.storage.seal().await?;
        let mut pending = Vec::new();
        let mut worked = std::time::Duration::ZERO;
        for (series, spans) in &spans {
            if self.lifecycle.is_shut_down() {
                return self.tier_swap_in(pending).await;
            }
            let began = std::time::Instant::now();
            for &(spec, built, until) in &targets {
                let r = spec.r;
                let first_raw = spans.iter().map(|s| s.0).min();
                let mut from = match built {
                    Some(b) => b.saturating_add(r),
                    None => match first_raw {
                        Some(f) => ceil_to(f, r),
                        None => continue,
                    },
                };
                if let Some(&d) = dirty.get(&(r, *series)) {
                    from = from.min(ceil_to(d, r));
                }
                if from > until {
                    continue;
                }
                let mut groups = BTreeSet::new();
                let (g_from, g_to) = (group_of(from, r), group_of(until, r));
                for &(start, end) in spans {
                    let (a, b) = (group_of(ceil_to(start, r), r), group_of(ceil_to(end, r), r));
                    for g in a.max(g_from)..=b.min(g_to) {
                        groups.insert(g);
                    }
                }
                for c in self.tiers.chunks_of(*series, r) {
                    let g = group_of(c.start_time, r);
                    if c.end_time >= from && (g_from..=g_to).contains(&g) {
                        groups.insert(g);
                    }
                }
                for g in groups {
                    if let Some(p) = self
                        .build_group(*series, r, g, (from, until), raw_from)
                        .await?
                    {
                        pending.push(p);
                    }
                }
            }
            if pending.len() >= SYNC_EVERY_GROUPS {
                self.tier_swap_in(std::mem::take(&mut pending)).await?;
            }
            // Pauses of at least 10 ms: the timer does not do finer ones well.
            worked += began.elapsed();
            if throttle && worked >= std::time::Duration::from_millis(10) {
                self.lifecycle.pause(std::mem::take(&mut worked)).await;
            }
        }
        self.tier_swap_in(pending).await?;
        {
            let mut state = self.tiers.state();
            for &(spec, _, until) in &targets {
                state.built_until.insert(spec.r, until);
            }
            // Marks made meanwhile stay, for the next build.
            for (key, from) in &dirty {
                let built = targets.iter().any(|t| t.0.r == key.0);
                if built && state.dirty.get(key) == Some(from) {
                    state.dirty.remove(key);
                }
            }
            self.tiers.changed.store(true, Ordering::SeqCst);
        }
        let dir = self.config.data_dir.clone();
        let tiers = &self.tiers;
        tiers.persist(&dir)?;
        self.delete_retired().await;
        Ok(())
    }

    /// Makes the groups' new chunks durable, then puts them in place of the old ones, which
    /// are deleted once no read holds them.
    async fn tier_swap_in(&self, pending: Vec<Pending>) -> Result<()> {
        if pending.iter().any(|p| !p.new.is_empty()) {
            self.engines.storage.sync().await?;
        }
        for p in pending {
            self.tiers
                .buckets_written
                .fetch_add(p.buckets, Ordering::Relaxed);
            self.tiers.groups_written.fetch_add(1, Ordering::Relaxed);
            self.tiers.swap(p.series, p.r, &p.old, p.new);
            self.compactor.retire(p.old);
        }
        Ok(())
    }

    /// Builds the buckets of group `g` of the tier `r` of `series` whose labels lie in
    /// `labels` (raw points from `raw_from` on are there to sum), and writes them; `None`
    /// when the group is as it should be already.
    async fn build_group(
        &self,
        series: SeriesId,
        r: i64,
        g: i64,
        labels: (i64, i64),
        raw_from: Option<i64>,
    ) -> Result<Option<Pending>> {
        let _pin = self.compactor.pin();
        let (first, last) = group_labels(g, r);
        let (lo, hi) = (labels.0.max(first), labels.1.min(last));
        let summable = |label: i64| raw_from.is_none_or(|f| label - r + 1 >= f);
        let old_chunks: Vec<ChunkReference> = self
            .tiers
            .chunks_of(series, r)
            .into_iter()
            .filter(|c| group_of(c.start_time, r) == g)
            .collect();
        let whole = TimeRange {
            start: first,
            end: last,
        };
        let read = if self.tier_damaged(series, r, whole) {
            Err(Error::Corrupt {
                source_name: format!("rollup tier {r} ms of series {}", series.0),
                offset: 0,
                reason: "recorded damage touches the group".to_owned(),
            })
        } else {
            self.read_buckets(&old_chunks, whole, &Agg::ALL).await
        };
        let (old, lo) = match read {
            Ok((b, _)) => (b, lo),
            Err(Error::Corrupt { .. }) => {
                tracing::warn!(
                    series = series.0,
                    group = g,
                    "a rollup group is damaged; built again from the raw points still there"
                );
                (Buckets::default(), first)
            }
            Err(e) => return Err(e),
        };
        let mut kept = old.clone();
        kept.retain(|l| {
            l < lo
                || (l <= hi
                    && !summable(l)
                    && !self.tombstones.touching(
                        series,
                        TimeRange {
                            start: l - r + 1,
                            end: l,
                        },
                    ))
        });
        // The first label whose bucket's raw points are all still there.
        let raw_lo = raw_from.map_or(lo, |f| lo.max(ceil_to(f.saturating_add(r - 1), r)));
        let mut fresh = Buckets::default();
        if raw_lo <= hi {
            let (ts, vs) = self
                .read_series_with(
                    series,
                    TimeRange {
                        start: raw_lo - r + 1,
                        end: hi,
                    },
                    None,
                )
                .await?;
            fresh.add_samples(&ts, &vs, r);
        }
        let mut buckets = kept;
        buckets.append(fresh);
        if buckets == old && old_chunks.len() <= 1 {
            // Nothing changed, and no group is held twice (a build cut short leaves that).
            return Ok(None);
        }
        let mut parts = Vec::new();
        for agg in Agg::ALL {
            let (ls, vs) = buckets.column(agg);
            if ls.is_empty() {
                continue;
            }
            let inner = self
                .engines
                .cold
                .compress_columns(derived_id(series, r), ls, vs)
                .await?;
            parts.push((agg, inner));
        }
        let mut written = Vec::new();
        if !parts.is_empty() {
            let block = wrap(
                ChunkOf {
                    base: series,
                    resolution_ms: r,
                },
                &parts,
            );
            let location = self.engines.storage.write_chunk(&block).await?;
            written.push(ChunkReference::new(&block, location));
        }
        Ok(Some(Pending {
            series,
            r,
            old: old_chunks.iter().map(|c| c.location).collect(),
            new: written,
            buckets: buckets.labels.len() as u64,
        }))
    }

    /// Deletes the rollup chunks past their tier's retention.
    async fn tier_retention(&self, now: i64) -> Result<()> {
        let mut expired = Vec::new();
        {
            let map = self
                .tiers
                .chunks
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for ((series, r), chunks) in map.iter() {
                let Some(spec) = self.tiers.specs.iter().find(|s| s.r == *r) else {
                    continue;
                };
                let Some(keep) = spec.retention_ms else {
                    continue;
                };
                let cutoff = now.saturating_sub(keep);
                for c in chunks {
                    if c.end_time < cutoff {
                        expired.push((*series, *r, c.location));
                    }
                }
            }
        }
        if expired.is_empty() {
            return Ok(());
        }
        let mut by: HashMap<(SeriesId, i64), Vec<ChunkLocation>> = HashMap::new();
        for (s, r, l) in &expired {
            by.entry((*s, *r)).or_default().push(*l);
        }
        for ((s, r), locations) in by {
            self.tiers.swap(s, r, &locations, Vec::new());
        }
        self.tiers
            .chunks_expired
            .fetch_add(expired.len() as u64, Ordering::Relaxed);
        self.compactor
            .retire(expired.into_iter().map(|e| e.2).collect());
        Ok(())
    }

    /// Writes anew the rollup chunks that storage offers to move (those in mostly dead files).
    async fn relocate_rollups(&self) -> Result<()> {
        let offered: Vec<ChunkReference> = self
            .engines
            .storage
            .relocation_candidates()
            .await?
            .into_iter()
            .filter(|c| c.codec == CodecId::ROLLUP)
            .collect();
        if offered.is_empty() {
            return Ok(());
        }
        let mut moved = Vec::new();
        for chunk in offered {
            let block = self.engines.storage.read_chunk(&chunk.location).await?;
            let Ok((of, _)) = unwrap(&block) else {
                continue;
            };
            let known = self
                .tiers
                .chunks_of(of.base, of.resolution_ms)
                .iter()
                .any(|c| c.location == chunk.location);
            if !known {
                continue;
            }
            let location = self.engines.storage.write_chunk(&block).await?;
            moved.push((of, chunk.location, ChunkReference::new(&block, location)));
        }
        self.engines.storage.sync().await?;
        let mut old = Vec::new();
        for (of, from, to) in moved {
            self.tiers
                .swap(of.base, of.resolution_ms, &[from], vec![to]);
            old.push(from);
        }
        self.compactor.retire(old);
        Ok(())
    }
}
