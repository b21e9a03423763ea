//! The ingestion side: sharded per-series head buffers and the queue of sealed heads.
//!
//! Series are spread over shards by id; each shard has its own lock, so writers of different
//! series rarely contend. A shard holds its series' state (newest timestamp, head buffer) and a
//! FIFO of heads sealed but not yet written as chunks. Each shard's FIFO is drained by exactly
//! one flush worker, in order, so a series' chunks reach storage in the order they were sealed:
//! a newer chunk always has a greater [`tsdb_core::ChunkLocation`], which is how reads decide
//! which of two overlapping chunks holds the latest write.

mod head;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustc_hash::FxBuildHasher;
use tsdb_core::dense_map::DenseMap;
use tsdb_core::{Error, Result, SeriesId};

pub(crate) use head::{Head, Sealed};

/// What a shard knows of one series: 16 bytes (24 with its key in the map). A series
/// without buffered points (between chunks, after a flush, gone quiet) needs only its newest
/// timestamp; one with a single point (a target's first scrape, an import of the latest
/// values: often a million of them) keeps it in its shard's [`LonePoints`], 40 bytes with
/// no allocation of its own; the heads of the rest are boxed, so that the map's slots stay
/// small.
#[derive(Debug, Default)]
enum SeriesState {
    /// No point accepted yet.
    #[default]
    New,
    /// No head: the newest timestamp accepted so far (for the out-of-order window).
    Idle(i64),
    /// One point, in the in-order head's place, at `lone[at]` of the shard.
    Lone { at: u32, max_ts: i64 },
    /// At least one head.
    Live(Box<Live>),
}

/// A series with buffered points.
///
/// Points newer than any accepted before, or inside the span of the in-order head, go to
/// `head`; older ones (back-fill, a clock stepping back) go to `out_of_order`, sealed as
/// chunks of their own, so that in-order chunks keep their narrow time spans. The two heads
/// never hold the same timestamp: `head` only starts with a point newer than everything
/// accepted, and only takes points from its first timestamp on.
#[derive(Debug)]
struct Live {
    /// Newest timestamp accepted so far (for the out-of-order window).
    max_ts: i64,
    /// The in-order head.
    head: Option<Head>,
    /// Boxed: most series never have one.
    out_of_order: Option<Box<Head>>,
}

impl Live {
    /// The heads, the out-of-order one first (their timestamps never overlap).
    fn heads(&self) -> impl Iterator<Item = &Head> {
        self.out_of_order
            .as_deref()
            .into_iter()
            .chain(self.head.as_ref())
    }

    /// False once both heads were sealed: the series is idle again.
    fn has_heads(&self) -> bool {
        self.head.is_some() || self.out_of_order.is_some()
    }
}

impl SeriesState {
    /// Newest timestamp accepted so far.
    fn max_ts(&self) -> Option<i64> {
        match self {
            SeriesState::New => None,
            SeriesState::Idle(max_ts) | SeriesState::Lone { max_ts, .. } => Some(*max_ts),
            SeriesState::Live(live) => Some(live.max_ts),
        }
    }

    /// The series' boxed heads (see [`Live::heads`]); none unless live (a lone point is in
    /// its shard's [`LonePoints`]).
    fn heads(&self) -> impl Iterator<Item = &Head> {
        match self {
            SeriesState::Live(live) => Some(live.heads()),
            SeriesState::New | SeriesState::Idle(_) | SeriesState::Lone { .. } => None,
        }
        .into_iter()
        .flatten()
    }

    /// Raises the newest accepted timestamp to `t`.
    fn observe(&mut self, t: i64) {
        match self {
            SeriesState::New => *self = SeriesState::Idle(t),
            SeriesState::Idle(max_ts) | SeriesState::Lone { max_ts, .. } => {
                *max_ts = (*max_ts).max(t)
            }
            SeriesState::Live(live) => live.max_ts = live.max_ts.max(t),
        }
    }

    /// Takes the state apart (leaving [`SeriesState::New`]): the newest accepted timestamp
    /// and the heads, if any, or where its lone point is; [`SeriesState::settle`] puts it
    /// back together.
    fn take(&mut self) -> Taken {
        match std::mem::take(self) {
            SeriesState::New => Taken::Heads(None, None),
            SeriesState::Idle(max_ts) => Taken::Heads(Some(max_ts), None),
            SeriesState::Lone { at, max_ts } => Taken::Lone { at, max_ts },
            SeriesState::Live(live) => Taken::Heads(Some(live.max_ts), Some(live)),
        }
    }

    /// The state of `series` with newest accepted timestamp `max_ts` and heads `live`: idle
    /// when they hold no point any more (the box dropped), lone when they hold one in the
    /// in-order head (the box dropped, the point put in `lone`).
    fn settle(
        series: SeriesId,
        max_ts: Option<i64>,
        live: Option<Box<Live>>,
        lone: &mut LonePoints,
    ) -> Self {
        match (max_ts, live) {
            (Some(max_ts), Some(mut live)) if live.has_heads() => {
                if live.out_of_order.is_none()
                    && let Some(head) = &live.head
                    && let Some((t, v)) = head.only_point()
                {
                    let at = lone.push(LonePoint {
                        series,
                        t,
                        v,
                        lsn: head.first_lsn,
                        opened: head.opened,
                    });
                    return SeriesState::Lone { at, max_ts };
                }
                live.max_ts = max_ts;
                SeriesState::Live(live)
            }
            (Some(max_ts), _) => SeriesState::Idle(max_ts),
            // Every point accepted sets `max_ts`: no heads without it.
            (None, _) => SeriesState::New,
        }
    }

    /// Approximate heap bytes held for the series besides its slot in the map.
    fn heap_bytes(&self) -> usize {
        match self {
            SeriesState::Live(live) => {
                std::mem::size_of::<Live>()
                    + live.heads().map(Head::heap_bytes).sum::<usize>()
                    + live
                        .out_of_order
                        .as_ref()
                        .map_or(0, |_| std::mem::size_of::<Head>())
            }
            SeriesState::New | SeriesState::Idle(_) | SeriesState::Lone { .. } => 0,
        }
    }
}

/// A series' state taken apart by [`SeriesState::take`].
enum Taken {
    /// The newest accepted timestamp (none for a new series) and the boxed heads, if any.
    Heads(Option<i64>, Option<Box<Live>>),
    /// A lone point, at `lone[at]`.
    Lone { at: u32, max_ts: i64 },
}

/// The only buffered point of a series in [`SeriesState::Lone`].
#[derive(Clone, Copy, Debug)]
struct LonePoint {
    series: SeriesId,
    t: i64,
    v: f64,
    /// WAL position of the point.
    lsn: u64,
    /// When it arrived (see [`Head::opened`]).
    opened: u64,
}

impl LonePoint {
    /// The in-order head the point stands for (a head of one point allocates nothing).
    fn head(&self) -> Head {
        let mut head = Head::new(self.lsn, self.opened);
        head.push(self.lsn, self.t, self.v);
        head
    }
}

/// A shard's lone points, packed: removing one moves the last into its place (whose series'
/// state is then pointed at the new place), and the vector gives its memory back as it
/// empties.
#[derive(Debug, Default)]
struct LonePoints(Vec<LonePoint>);

impl LonePoints {
    fn push(&mut self, point: LonePoint) -> u32 {
        // Memory runs out long before four billion points (of 40 bytes each).
        let at = u32::try_from(self.0.len()).expect("fewer than 2^32 lone points");
        self.0.push(point);
        at
    }

    fn get(&self, at: u32) -> &LonePoint {
        &self.0[at as usize]
    }

    /// Removes the point at `at`, pointing the state of the one moved into its place there.
    fn remove(
        &mut self,
        at: u32,
        states: &mut DenseMap<SeriesId, SeriesState, FxBuildHasher>,
    ) -> LonePoint {
        let point = self.0.swap_remove(at as usize);
        if let Some(moved) = self.0.get(at as usize)
            && let Some(SeriesState::Lone { at: place, .. }) = states.get_mut(&moved.series)
        {
            *place = at;
        }
        self.shrink();
        point
    }

    /// Keeps only the points whose series are still lone, pointing each at its new place.
    fn retain_lone(&mut self, states: &mut DenseMap<SeriesId, SeriesState, FxBuildHasher>) {
        let mut kept = 0;
        for i in 0..self.0.len() {
            let point = self.0[i];
            if let Some(SeriesState::Lone { at, .. }) = states.get_mut(&point.series)
                && *at as usize == i
            {
                *at = kept as u32;
                self.0[kept] = point;
                kept += 1;
            }
        }
        self.0.truncate(kept);
        self.shrink();
    }

    fn shrink(&mut self) {
        if self.0.is_empty() {
            self.0 = Vec::new();
        } else if self.0.len() < self.0.capacity() / 4 {
            self.0.shrink_to(self.0.capacity() / 2);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }

    fn iter(&self) -> impl Iterator<Item = &LonePoint> + '_ {
        self.0.iter()
    }

    fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<LonePoint>()
    }
}

/// Capacity a shard's queue of sealed heads keeps once drained; a wave of sealing (a flush,
/// heads of many series opened together growing old together) grows it far beyond.
const SEALED_KEPT_CAPACITY: usize = 256;

#[derive(Debug, Default)]
struct Shard {
    /// Packed in one vector (a million series take 24 MB plus 10 for the hash index, where a
    /// `HashMap` touched 52); Fx hashing: series ids are hashes already, or small
    /// caller-chosen numbers.
    series: DenseMap<SeriesId, SeriesState, FxBuildHasher>,
    /// The points of the series in [`SeriesState::Lone`].
    lone: LonePoints,
    sealed: VecDeque<Arc<Sealed>>,
}

/// Points of one series buffered in memory, as a query sees them.
#[derive(Debug, Default)]
pub(crate) struct MemorySnapshot {
    /// Sealed heads still on their way to storage, oldest first.
    pub(crate) sealed: Vec<Arc<Sealed>>,
    /// The live heads' points (out-of-order head, then in-order head; their timestamps never
    /// overlap): the newest writes of all.
    pub(crate) heads: Vec<(Vec<i64>, Vec<f64>)>,
}

impl MemorySnapshot {
    /// True when memory holds no point of the series.
    pub(crate) fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.heads.is_empty()
    }

    /// Points held, an upper bound (duplicates counted).
    pub(crate) fn point_count(&self) -> u64 {
        let sealed: usize = self.sealed.iter().map(|s| s.head.len()).sum();
        let live: usize = self.heads.iter().map(|h| h.0.len()).sum();
        (sealed + live) as u64
    }

    /// The sources to merge after the stored chunks, oldest write first.
    pub(crate) fn into_sources(self) -> Result<Vec<(Vec<i64>, Vec<f64>)>> {
        let mut out = Vec::with_capacity(self.sealed.len() + self.heads.len());
        for sealed in &self.sealed {
            out.push(sealed.head.points()?);
        }
        out.extend(self.heads);
        Ok(out)
    }
}

/// All head buffers of the database.
pub(crate) struct Heads {
    shards: Box<[Mutex<Shard>]>,
    /// The clock heads are opened on (see [`Head::opened`]).
    epoch: Instant,
    chunk_max_points: usize,
    /// Sealed heads waiting to be written, over all shards.
    pub(crate) sealed_waiting: AtomicUsize,
    /// Points held by live heads, over all shards.
    pub(crate) buffered_points: AtomicU64,
    /// Points accepted since open (replayed ones not counted).
    pub(crate) points_written: AtomicU64,
    /// Points buffered again from the WAL when the database opened.
    pub(crate) points_replayed: AtomicU64,
}

impl std::fmt::Debug for Heads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heads")
            .field("shards", &self.shards.len())
            .field("chunk_max_points", &self.chunk_max_points)
            .field("sealed_waiting", &self.sealed_waiting)
            .field("buffered_points", &self.buffered_points)
            .finish_non_exhaustive()
    }
}

impl Heads {
    pub(crate) fn new(shards: usize, chunk_max_points: u32) -> Self {
        Heads {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            epoch: Instant::now(),
            chunk_max_points: chunk_max_points.max(1) as usize,
            sealed_waiting: AtomicUsize::new(0),
            buffered_points: AtomicU64::new(0),
            points_written: AtomicU64::new(0),
            points_replayed: AtomicU64::new(0),
        }
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub(crate) fn shard_of(&self, series: SeriesId) -> usize {
        let h = series.0 ^ (series.0 >> 29);
        (h % self.shards.len() as u64) as usize
    }

    /// Nanoseconds since the heads were created: the time heads are opened at.
    fn clock(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the series known to the heads; true when it was not known before.
    pub(crate) fn register(&self, series: SeriesId) -> bool {
        let mut shard = self.lock(self.shard_of(series));
        shard
            .series
            .get_or_insert_with(series, SeriesState::default)
            .1
    }

    /// Raises the series' newest accepted timestamp to `t` (a point stored in a chunk), so
    /// that the out-of-order window measures from it after a reopen as before.
    pub(crate) fn observe(&self, series: SeriesId, t: i64) {
        let mut shard = self.lock(self.shard_of(series));
        shard
            .series
            .get_or_insert_with(series, SeriesState::default)
            .0
            .observe(t);
    }

    pub(crate) fn is_registered(&self, series: SeriesId) -> bool {
        self.lock(self.shard_of(series))
            .series
            .contains_key(&series)
    }

    /// Every series known to the heads.
    pub(crate) fn series_count(&self) -> usize {
        (0..self.shards.len())
            .map(|s| self.lock(s).series.len())
            .sum()
    }

    /// Checks one shard's groups against registration, the out-of-order window (`window_ms`)
    /// and the oldest timestamp the database keeps (`floor`); nothing is changed.
    pub(crate) fn validate(
        &self,
        shard: usize,
        groups: &[(SeriesId, &[(i64, f64)])],
        window_ms: i64,
        floor: i64,
    ) -> Result<()> {
        let shard = self.lock(shard);
        for &(series, points) in groups {
            let state = shard
                .series
                .get(&series)
                .ok_or(Error::SeriesNotFound { series })?;
            let mut newest = state.max_ts().unwrap_or(i64::MIN);
            for &(t, _) in points {
                let oldest_accepted = newest.saturating_sub(window_ms).max(floor);
                if t < oldest_accepted {
                    return Err(Error::OutOfOrder {
                        series,
                        timestamp: t,
                        oldest_accepted,
                    });
                }
                newest = newest.max(t);
            }
        }
        Ok(())
    }

    /// Adds points written at WAL position `lsn` to one shard's heads, sealing heads that
    /// fill up. Unknown series are created (WAL replay may meet them). Returns how many heads
    /// were sealed.
    pub(crate) fn apply(
        &self,
        shard_index: usize,
        lsn: u64,
        groups: &[(SeriesId, &[(i64, f64)])],
    ) -> usize {
        let mut shard = self.lock(shard_index);
        let Shard {
            series: states,
            lone,
            sealed: sealed_heads,
        } = &mut *shard;
        let mut sealed = 0;
        let mut added = 0u64;
        // When heads opened by this call open: read once, when the first one does.
        let mut now = None;
        for &(series, points) in groups {
            let (mut state, _) = states.get_or_insert_with(series, SeriesState::default);
            let (mut max_ts, mut live) = match state.take() {
                Taken::Heads(max_ts, live) => (max_ts, live),
                Taken::Lone { at, max_ts } => {
                    let point = lone.remove(at, states);
                    state = states.get_mut(&series).expect("the series was just here");
                    let live = Live {
                        max_ts,
                        head: Some(point.head()),
                        out_of_order: None,
                    };
                    (Some(max_ts), Some(Box::new(live)))
                }
            };
            for &(t, v) in points {
                let head = live.as_ref().and_then(|l| l.head.as_ref());
                let in_order = match (head, max_ts) {
                    (_, None) => true,
                    (_, Some(max)) if t > max => true,
                    (Some(head), _) => head.first_timestamp().is_some_and(|first| t >= first),
                    (None, Some(_)) => false,
                };
                max_ts = Some(max_ts.map_or(t, |m| m.max(t)));
                added += 1;
                let live = live.get_or_insert_with(|| {
                    Box::new(Live {
                        max_ts: t,
                        head: None,
                        out_of_order: None,
                    })
                });
                let mut open = || Head::new(lsn, *now.get_or_insert_with(|| self.clock()));
                let full = if in_order {
                    let head = live.head.get_or_insert_with(open);
                    head.push(lsn, t, v);
                    if head.len() >= self.chunk_max_points {
                        live.head.take()
                    } else {
                        None
                    }
                } else {
                    let head = live.out_of_order.get_or_insert_with(|| Box::new(open()));
                    head.push(lsn, t, v);
                    if head.len() >= self.chunk_max_points {
                        live.out_of_order.take().map(|h| *h)
                    } else {
                        None
                    }
                };
                if let Some(full) = full {
                    self.buffered_points
                        .fetch_sub(full.len() as u64, Ordering::Relaxed);
                    sealed_heads.push_back(Arc::new(Sealed::new(series, full)));
                    sealed += 1;
                }
            }
            *state = SeriesState::settle(series, max_ts, live, lone);
        }
        self.buffered_points.fetch_add(added, Ordering::Relaxed);
        self.sealed_waiting.fetch_add(sealed, Ordering::Relaxed);
        sealed
    }

    /// Seals every head matching `pick`; returns how many were sealed.
    fn seal_where(&self, mut pick: impl FnMut(&Head) -> bool) -> usize {
        (0..self.shards.len())
            .map(|s| self.seal_in(s, &mut pick))
            .sum()
    }

    /// Seals the heads of shard `s` that `pick` picks; how many.
    fn seal_in(&self, s: usize, pick: &mut impl FnMut(&Head) -> bool) -> usize {
        let mut total = 0;
        let mut lone_sealed = false;
        let mut shard = self.lock(s);
        let Shard {
            series: states,
            lone,
            sealed,
        } = &mut *shard;
        for (&series, state) in states.iter_mut() {
            let (out_of_order, in_order) = match state {
                SeriesState::Live(live) => {
                    let out_of_order = live.out_of_order.take_if(|h| pick(h)).map(|h| *h);
                    let in_order = live.head.take_if(|h| pick(h));
                    if !live.has_heads() {
                        *state = SeriesState::Idle(live.max_ts);
                    }
                    (out_of_order, in_order)
                }
                SeriesState::Lone { at, max_ts } => {
                    let head = lone.get(*at).head();
                    if !pick(&head) {
                        continue;
                    }
                    // Its place in `lone` is given up below.
                    *state = SeriesState::Idle(*max_ts);
                    lone_sealed = true;
                    (None, Some(head))
                }
                SeriesState::New | SeriesState::Idle(_) => continue,
            };
            for head in out_of_order.into_iter().chain(in_order) {
                self.buffered_points
                    .fetch_sub(head.len() as u64, Ordering::Relaxed);
                sealed.push_back(Arc::new(Sealed::new(series, head)));
                total += 1;
            }
        }
        if lone_sealed {
            lone.retain_lone(states);
        }
        self.sealed_waiting.fetch_add(total, Ordering::Relaxed);
        total
    }

    /// Seals heads whose first point is older than `max_age`.
    pub(crate) fn seal_older_than(&self, max_age: Duration) -> usize {
        let now = self.clock();
        let max_age = u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX);
        self.seal_where(|h| now.saturating_sub(h.opened) >= max_age)
    }

    /// Seals every non-empty head (shutdown).
    pub(crate) fn seal_all(&self) -> usize {
        self.seal_where(|_| true)
    }

    /// Seals every non-empty head of shard `s`; how many.
    pub(crate) fn seal_shard(&self, s: usize) -> usize {
        self.seal_in(s, &mut |_| true)
    }

    /// Seals the heads holding at least `min_points` points (memory pressure).
    pub(crate) fn seal_larger_than(&self, min_points: usize) -> usize {
        self.seal_where(|h| h.len() >= min_points)
    }

    /// The oldest sealed head of a shard, left in place (and visible to queries) until
    /// [`Heads::finish_sealed`].
    pub(crate) fn next_sealed(&self, shard: usize) -> Option<Arc<Sealed>> {
        self.lock(shard).sealed.front().cloned()
    }

    /// Removes the shard's oldest sealed head once its chunk is in storage and the index.
    pub(crate) fn finish_sealed(&self, shard: usize, done: &Arc<Sealed>) {
        let mut shard = self.lock(shard);
        if shard.sealed.front().is_some_and(|s| Arc::ptr_eq(s, done)) {
            shard.sealed.pop_front();
            self.sealed_waiting.fetch_sub(1, Ordering::Relaxed);
            if shard.sealed.is_empty() {
                shard.sealed.shrink_to(SEALED_KEPT_CAPACITY);
            }
        }
    }

    /// The smallest WAL position still needed by a head or a sealed head, if any.
    pub(crate) fn min_lsn(&self) -> Option<u64> {
        (0..self.shards.len())
            .filter_map(|s| {
                let shard = self.lock(s);
                let heads = shard.series.values().flat_map(SeriesState::heads);
                let sealed = shard.sealed.iter().map(|s| &s.head);
                let lone = shard.lone.iter().map(|p| p.lsn);
                heads.chain(sealed).map(|h| h.first_lsn).chain(lone).min()
            })
            .min()
    }

    /// Approximate heap bytes held by live heads.
    pub(crate) fn heap_bytes(&self) -> usize {
        (0..self.shards.len())
            .map(|s| {
                let shard = self.lock(s);
                shard
                    .series
                    .values()
                    .map(SeriesState::heap_bytes)
                    .sum::<usize>()
                    + shard.series.heap_bytes()
                    + shard.lone.heap_bytes()
            })
            .sum()
    }

    /// The oldest timestamp memory holds of `series` (late points included), read from the
    /// heads without decoding them.
    pub(crate) fn oldest(&self, series: SeriesId) -> Option<i64> {
        let shard = self.lock(self.shard_of(series));
        let sealed = shard
            .sealed
            .iter()
            .filter(|s| s.series == series)
            .filter_map(|s| s.head.oldest());
        let state = shard.series.get(&series);
        let live = state
            .into_iter()
            .flat_map(|state| state.heads().filter_map(Head::oldest));
        let lone = match state {
            Some(SeriesState::Lone { at, .. }) => Some(shard.lone.get(*at).t),
            _ => None,
        };
        sealed.chain(live).chain(lone).min()
    }

    /// What a query must see of one series from memory.
    pub(crate) fn snapshot(&self, series: SeriesId) -> Result<MemorySnapshot> {
        let shard = self.lock(self.shard_of(series));
        let sealed = shard
            .sealed
            .iter()
            .filter(|s| s.series == series)
            .cloned()
            .collect();
        let mut heads = Vec::new();
        match shard.series.get(&series) {
            Some(SeriesState::Lone { at, .. }) => {
                let point = shard.lone.get(*at);
                heads.push((vec![point.t], vec![point.v]));
            }
            Some(state) => {
                for head in state.heads() {
                    heads.push(head.points()?);
                }
            }
            None => {}
        }
        Ok(MemorySnapshot { sealed, heads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_series_state_stays_small() {
        // A map slot of 24 bytes for every series; one box for a series with points.
        assert_eq!(std::mem::size_of::<(SeriesId, SeriesState)>(), 24);
        assert!(std::mem::size_of::<Head>() <= 96);
        assert!(std::mem::size_of::<Live>() <= 112);
    }

    /// Every lone state points at its own entry, and there are no other entries.
    fn check_lone_table(heads: &Heads) {
        for s in 0..heads.shard_count() {
            let shard = heads.lock(s);
            let mut lone_states = 0;
            for (series, state) in shard.series.iter() {
                if let SeriesState::Lone { at, .. } = state {
                    assert_eq!(
                        shard.lone.get(*at).series,
                        *series,
                        "lone entry of {series}"
                    );
                    lone_states += 1;
                }
            }
            assert_eq!(shard.lone.len(), lone_states, "shard {s}");
        }
    }

    #[test]
    fn lone_points_are_seen_moved_and_sealed_like_heads() {
        let heads = Heads::new(2, 4);
        // Series 0..40 get a point each; the even ones a second, then a third to some.
        let mut model: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 40];
        let mut lsn = 1;
        for (i, points) in model.iter_mut().enumerate() {
            let series = SeriesId(i as u64);
            let point = [(100 + i as i64, i as f64)];
            heads.apply(heads.shard_of(series), lsn, &[(series, &point[..])]);
            points.push(point[0]);
            lsn += 1;
        }
        check_lone_table(&heads);
        assert_eq!(heads.min_lsn(), Some(1));
        let mut state = 11u64;
        for step in 0..400u64 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (state >> 33) as usize % model.len();
            let series = SeriesId(i as u64);
            match (state >> 20) % 5 {
                0 => {
                    heads.seal_larger_than(2);
                }
                1 if step.is_multiple_of(50) => {
                    heads.seal_all();
                }
                2 => {
                    // Some lone points sealed, others kept (by the parity of their LSN).
                    let shard = (state >> 40) as usize % heads.shard_count();
                    heads.seal_in(shard, &mut |h: &Head| h.first_lsn.is_multiple_of(2));
                }
                _ => {
                    let t = model[i].last().map_or(0, |p| p.0) + 10;
                    let point = [(t, step as f64)];
                    heads.apply(heads.shard_of(series), lsn, &[(series, &point[..])]);
                    model[i].push(point[0]);
                    lsn += 1;
                }
            }
            check_lone_table(&heads);
        }
        // Sealed heads stay visible until written: memory holds every point of each series.
        for (i, points) in model.iter().enumerate() {
            let series = SeriesId(i as u64);
            let snapshot = heads.snapshot(series).expect("decodes");
            let mut seen: Vec<(i64, f64)> = Vec::new();
            for (ts, vs) in snapshot.into_sources().expect("decodes") {
                seen.extend(ts.into_iter().zip(vs));
            }
            seen.sort_by_key(|p| p.0);
            assert_eq!(&seen, points, "series {i}");
            assert_eq!(heads.oldest(series), points.first().map(|p| p.0));
        }
        heads.seal_all();
        check_lone_table(&heads);
        for s in 0..heads.shard_count() {
            let shard = heads.lock(s);
            assert!(
                shard.lone.heap_bytes() == 0,
                "an empty table keeps no memory"
            );
        }
    }

    #[test]
    fn a_series_goes_idle_when_its_heads_are_sealed_and_keeps_its_window() {
        let heads = Heads::new(1, 4);
        let s = SeriesId(7);
        assert!(heads.register(s));
        assert!(!heads.register(s));
        let points = [(10, 1.0), (20, 2.0)];
        heads.apply(0, 1, &[(s, &points[..])]);
        assert_eq!(heads.seal_all(), 1);
        let shard = heads.lock(0);
        assert!(matches!(shard.series.get(&s), Some(SeriesState::Idle(20))));
        drop(shard);
        // Older than the newest accepted point, with a window of 5 ms: refused.
        let late = [(14, 3.0)];
        assert!(heads.validate(0, &[(s, &late[..])], 5, i64::MIN).is_err());
        assert!(heads.validate(0, &[(s, &late[..])], 6, i64::MIN).is_ok());
        // Accepted late, it opens an out-of-order head.
        heads.apply(0, 2, &[(s, &late[..])]);
        let snapshot = heads.snapshot(s).expect("decodes");
        assert_eq!(snapshot.heads, vec![(vec![14], vec![3.0])]);
        assert_eq!(heads.min_lsn(), Some(1));
    }
}
