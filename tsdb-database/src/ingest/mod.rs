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

/// What a shard knows of one series: 16 bytes (24 with its key in the map), the heads boxed,
/// since a series without buffered points (between chunks, after a flush, gone quiet) needs
/// only its newest timestamp, and a map of boxes wastes little on its empty slots.
#[derive(Debug, Default)]
enum SeriesState {
    /// No point accepted yet.
    #[default]
    New,
    /// No head: the newest timestamp accepted so far (for the out-of-order window).
    Idle(i64),
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
            SeriesState::Idle(max_ts) => Some(*max_ts),
            SeriesState::Live(live) => Some(live.max_ts),
        }
    }

    /// The series' heads (see [`Live::heads`]); none unless live.
    fn heads(&self) -> impl Iterator<Item = &Head> {
        match self {
            SeriesState::Live(live) => Some(live.heads()),
            SeriesState::New | SeriesState::Idle(_) => None,
        }
        .into_iter()
        .flatten()
    }

    /// Raises the newest accepted timestamp to `t`.
    fn observe(&mut self, t: i64) {
        match self {
            SeriesState::New => *self = SeriesState::Idle(t),
            SeriesState::Idle(max_ts) => *max_ts = (*max_ts).max(t),
            SeriesState::Live(live) => live.max_ts = live.max_ts.max(t),
        }
    }

    /// Takes the state apart (leaving [`SeriesState::New`]): the newest accepted timestamp
    /// and the heads, if any; [`SeriesState::settle`] puts it back together.
    fn take(&mut self) -> (Option<i64>, Option<Box<Live>>) {
        match std::mem::take(self) {
            SeriesState::New => (None, None),
            SeriesState::Idle(max_ts) => (Some(max_ts), None),
            SeriesState::Live(live) => (Some(live.max_ts), Some(live)),
        }
    }

    /// The state of a series with newest accepted timestamp `max_ts` and heads `live` (whose
    /// box is dropped when it holds no head any more).
    fn settle(max_ts: Option<i64>, live: Option<Box<Live>>) -> Self {
        match (max_ts, live) {
            (Some(max_ts), Some(mut live)) if live.has_heads() => {
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
            SeriesState::New | SeriesState::Idle(_) => 0,
        }
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
        let shard = &mut *shard;
        let mut sealed = 0;
        let mut added = 0u64;
        // When heads opened by this call open: read once, when the first one does.
        let mut now = None;
        for &(series, points) in groups {
            let (state, _) = shard
                .series
                .get_or_insert_with(series, SeriesState::default);
            let (mut max_ts, mut live) = state.take();
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
                    shard.sealed.push_back(Arc::new(Sealed::new(series, full)));
                    sealed += 1;
                }
            }
            *state = SeriesState::settle(max_ts, live);
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
        let mut shard = self.lock(s);
        let shard = &mut *shard;
        for (&series, state) in shard.series.iter_mut() {
            let SeriesState::Live(live) = state else {
                continue;
            };
            let out_of_order = live.out_of_order.take_if(|h| pick(h)).map(|h| *h);
            let in_order = live.head.take_if(|h| pick(h));
            if !live.has_heads() {
                *state = SeriesState::Idle(live.max_ts);
            }
            for head in out_of_order.into_iter().chain(in_order) {
                self.buffered_points
                    .fetch_sub(head.len() as u64, Ordering::Relaxed);
                shard.sealed.push_back(Arc::new(Sealed::new(series, head)));
                total += 1;
            }
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
                heads.chain(sealed).map(|h| h.first_lsn).min()
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
        let live = shard
            .series
            .get(&series)
            .into_iter()
            .flat_map(|state| state.heads().filter_map(Head::oldest));
        sealed.chain(live).min()
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
        if let Some(state) = shard.series.get(&series) {
            for head in state.heads() {
                heads.push(head.points()?);
            }
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
