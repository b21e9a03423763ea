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
use std::time::Duration;

use rustc_hash::FxHashMap;
use tsdb_core::{Error, Result, SeriesId};

pub(crate) use head::{Head, Sealed};

/// What a shard knows of one series.
///
/// Points newer than any accepted before, or inside the span of the in-order head, go to
/// `head`; older ones (back-fill, a clock stepping back) go to `out_of_order`, sealed as
/// chunks of their own, so that in-order chunks keep their narrow time spans. The two heads
/// never hold the same timestamp: `head` only starts with a point newer than everything
/// accepted, and only takes points from its first timestamp on.
#[derive(Debug, Default)]
struct SeriesState {
    /// Newest timestamp accepted so far (for the out-of-order window).
    max_ts: Option<i64>,
    head: Option<Head>,
    /// Boxed: most series never have one.
    out_of_order: Option<Box<Head>>,
}

impl SeriesState {
    fn heads(&self) -> impl Iterator<Item = &Head> {
        self.out_of_order
            .as_deref()
            .into_iter()
            .chain(self.head.as_ref())
    }
}

#[derive(Debug, Default)]
struct Shard {
    /// Fx hashing: series ids are hashes already, or small caller-chosen numbers.
    series: FxHashMap<SeriesId, SeriesState>,
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

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the series known to the heads; true when it was not known before.
    pub(crate) fn register(&self, series: SeriesId) -> bool {
        let mut shard = self.lock(self.shard_of(series));
        if shard.series.contains_key(&series) {
            return false;
        }
        shard.series.insert(series, SeriesState::default());
        true
    }

    /// Raises the series' newest accepted timestamp to `t` (a point stored in a chunk), so
    /// that the out-of-order window measures from it after a reopen as before.
    pub(crate) fn observe(&self, series: SeriesId, t: i64) {
        let mut shard = self.lock(self.shard_of(series));
        let state = shard.series.entry(series).or_default();
        state.max_ts = Some(state.max_ts.map_or(t, |m| m.max(t)));
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
            let mut newest = state.max_ts.unwrap_or(i64::MIN);
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
        for &(series, points) in groups {
            let state = shard.series.entry(series).or_default();
            for &(t, v) in points {
                let in_order = match (&state.head, state.max_ts) {
                    (_, None) => true,
                    (_, Some(max)) if t > max => true,
                    (Some(head), _) => head.first_timestamp().is_some_and(|first| t >= first),
                    (None, Some(_)) => false,
                };
                state.max_ts = Some(state.max_ts.map_or(t, |m| m.max(t)));
                added += 1;
                let full = if in_order {
                    let head = state.head.get_or_insert_with(|| Head::new(lsn));
                    head.push(lsn, t, v);
                    if head.len() >= self.chunk_max_points {
                        state.head.take()
                    } else {
                        None
                    }
                } else {
                    let head = state
                        .out_of_order
                        .get_or_insert_with(|| Box::new(Head::new(lsn)));
                    head.push(lsn, t, v);
                    if head.len() >= self.chunk_max_points {
                        state.out_of_order.take().map(|h| *h)
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
        }
        self.buffered_points.fetch_add(added, Ordering::Relaxed);
        self.sealed_waiting.fetch_add(sealed, Ordering::Relaxed);
        sealed
    }

    /// Seals every head matching `pick`; returns how many were sealed.
    fn seal_where(&self, mut pick: impl FnMut(&Head) -> bool) -> usize {
        let mut total = 0;
        for s in 0..self.shards.len() {
            let mut shard = self.lock(s);
            let shard = &mut *shard;
            for (&series, state) in shard.series.iter_mut() {
                let out_of_order = state.out_of_order.take_if(|h| pick(h)).map(|h| *h);
                let in_order = state.head.take_if(|h| pick(h));
                for head in out_of_order.into_iter().chain(in_order) {
                    self.buffered_points
                        .fetch_sub(head.len() as u64, Ordering::Relaxed);
                    shard.sealed.push_back(Arc::new(Sealed::new(series, head)));
                    total += 1;
                }
            }
        }
        self.sealed_waiting.fetch_add(total, Ordering::Relaxed);
        total
    }

    /// Seals heads whose first point is older than `max_age`.
    pub(crate) fn seal_older_than(&self, max_age: Duration) -> usize {
        self.seal_where(|h| h.opened.elapsed() >= max_age)
    }

    /// Seals every non-empty head (shutdown).
    pub(crate) fn seal_all(&self) -> usize {
        self.seal_where(|_| true)
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
                    .map(|st| {
                        st.heads().map(Head::heap_bytes).sum::<usize>()
                            + st.out_of_order
                                .as_ref()
                                .map_or(0, |_| std::mem::size_of::<Head>())
                    })
                    .sum::<usize>()
                    + shard.series.capacity() * std::mem::size_of::<(SeriesId, SeriesState)>()
            })
            .sum()
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
