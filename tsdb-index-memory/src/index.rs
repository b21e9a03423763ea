//! [`MemoryTimeIndex`]: the catalog under one lock, chunk lists under sharded locks.

use std::fmt;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use tsdb_core::{
    ChunkLocation, ChunkReference, Error, LabelMatcher, Labels, Result, SeriesId, TimeIndex,
    TimeRange,
};

use crate::catalog::Catalog;
use crate::chunks::SeriesChunks;
use crate::postings::Ordinal;

/// Number of chunk shards (a power of two).
const SHARDS: usize = 64;

/// The chunks of the ordinals `o` with `o % SHARDS` the shard's number, at `o / SHARDS`.
type Shard = RwLock<Vec<SeriesChunks>>;

/// A [`TimeIndex`] held in memory. Cheap to create; share it as `Arc<MemoryTimeIndex>`.
///
/// A series' chunks are found by its catalog ordinal, in a slot of one of the shards' vectors
/// (40 bytes, a lone chunk inline), where a map from series id to a box took 100 bytes.
/// Locks are always taken catalog first, then one chunk shard (all of them, in order, when a
/// rebuild of the catalog renumbers the ordinals), so an ordinal's chunks are those of the
/// series the catalog gives it: `add_chunk` racing with `drop_series` either lands before the
/// drop (and is dropped with it) or fails with [`Error::SeriesNotFound`].
pub struct MemoryTimeIndex {
    catalog: RwLock<Catalog>,
    shards: Box<[Shard]>,
}

impl MemoryTimeIndex {
    /// An empty index.
    pub fn new() -> Self {
        MemoryTimeIndex {
            catalog: RwLock::new(Catalog::default()),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    /// The shard and the position in it of ordinal `o`'s chunks.
    fn slot(&self, o: Ordinal) -> (&Shard, usize) {
        let o = o as usize;
        (&self.shards[o % SHARDS], o / SHARDS)
    }

    fn read_catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_catalog(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves every ordinal's chunks to its new number after a catalog rebuild; the caller
    /// holds the catalog's write lock.
    fn renumber(&self, renumbered: &[Ordinal]) {
        let mut shards: Vec<_> = self.shards.iter().map(write).collect();
        let mut fresh: Vec<Vec<SeriesChunks>> = (0..SHARDS)
            .map(|s| Vec::with_capacity(renumbered.len().saturating_sub(s).div_ceil(SHARDS)))
            .collect();
        for (new, &old) in renumbered.iter().enumerate() {
            let old = old as usize;
            let chunks = shards[old % SHARDS]
                .get_mut(old / SHARDS)
                .map(std::mem::take)
                .unwrap_or_default();
            fresh[new % SHARDS].push(chunks);
        }
        for (shard, fresh) in shards.iter_mut().zip(fresh) {
            **shard = fresh;
        }
    }
}

impl Default for MemoryTimeIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryTimeIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTimeIndex").finish_non_exhaustive()
    }
}

fn read(shard: &Shard) -> RwLockReadGuard<'_, Vec<SeriesChunks>> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(shard: &Shard) -> RwLockWriteGuard<'_, Vec<SeriesChunks>> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl TimeIndex for MemoryTimeIndex {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn register_series(&self, series: SeriesId, labels: &Labels) -> Result<()> {
        self.write_catalog().register(series, labels)?;
        Ok(())
    }

    async fn series_labels(&self, series: SeriesId) -> Result<Option<Labels>> {
        self.read_catalog().labels(series)
    }

    async fn find_series(&self, matchers: &[LabelMatcher]) -> Result<Vec<SeriesId>> {
        Ok(self.read_catalog().find(matchers))
    }

    async fn label_names(&self) -> Result<Vec<String>> {
        Ok(self.read_catalog().label_names())
    }

    async fn label_values(&self, name: &str) -> Result<Vec<String>> {
        Ok(self.read_catalog().label_values(name))
    }

    async fn add_chunk(&self, chunk: &ChunkReference) -> Result<()> {
        if chunk.start_time > chunk.end_time {
            return Err(Error::invalid_input(format_args!(
                "chunk of series {} at {} starts at {} after its end {}",
                chunk.series_id, chunk.location, chunk.start_time, chunk.end_time
            )));
        }
        let series = chunk.series_id;
        let catalog = self.read_catalog();
        let o = catalog
            .ordinal(series)
            .ok_or(Error::SeriesNotFound { series })?;
        let (shard, at) = self.slot(o);
        let mut shard = write(shard);
        if shard.len() <= at {
            // Empty slots up to this ordinal's.
            shard.resize_with(at + 1, SeriesChunks::default);
        }
        shard[at].add(chunk);
        Ok(())
    }

    async fn query_chunks(
        &self,
        series: SeriesId,
        range: TimeRange,
    ) -> Result<Vec<ChunkReference>> {
        check_range(series, range)?;
        let catalog = self.read_catalog();
        let Some(o) = catalog.ordinal(series) else {
            return Ok(Vec::new());
        };
        let (shard, at) = self.slot(o);
        Ok(read(shard)
            .get(at)
            .map(|chunks| chunks.query(series, range))
            .unwrap_or_default())
    }

    async fn remove_chunks(&self, series: SeriesId, locations: &[ChunkLocation]) -> Result<()> {
        let catalog = self.read_catalog();
        if let Some(o) = catalog.ordinal(series) {
            let (shard, at) = self.slot(o);
            if let Some(chunks) = write(shard).get_mut(at) {
                chunks.remove(locations);
            }
        }
        Ok(())
    }

    async fn drop_series(&self, series: SeriesId) -> Result<()> {
        let mut catalog = self.write_catalog();
        if let Some(o) = catalog.drop_series(series) {
            let (shard, at) = self.slot(o);
            if let Some(chunks) = write(shard).get_mut(at) {
                *chunks = SeriesChunks::default();
            }
            if let Some(renumbered) = catalog.rebuild_if_due()? {
                self.renumber(&renumbered);
            }
        }
        Ok(())
    }
}

/// [`Error::InvalidInput`] for an inverted range.
fn check_range(series: SeriesId, range: TimeRange) -> Result<()> {
    if range.start > range.end {
        return Err(Error::invalid_input(format_args!(
            "query_chunks of series {series}: range start {} is after its end {}",
            range.start, range.end
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tsdb_core::CodecId;

    use super::*;

    fn labels(i: u64) -> Labels {
        Labels::new("m", [("series", format!("s{i}"))]).expect("valid")
    }

    fn chunk(i: u64, n: u64) -> ChunkReference {
        ChunkReference {
            series_id: labels(i).series_id(),
            location: ChunkLocation {
                segment: i,
                offset: n,
                length: 10,
            },
            start_time: (n * 100) as i64,
            end_time: (n * 100 + 50) as i64,
            point_count: 5,
            codec: CodecId::GORILLA,
        }
    }

    /// Dropping most series rebuilds the catalog, which renumbers the ordinals: every live
    /// series keeps exactly its own chunks, and new series and chunks land after it.
    #[tokio::test]
    async fn chunks_follow_their_series_through_a_catalog_rebuild() -> Result<()> {
        let index = MemoryTimeIndex {
            catalog: RwLock::new(Catalog::with_rebuild_min_dead(16)),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        };
        let n = 1_000;
        for i in 0..n {
            index
                .register_series(labels(i).series_id(), &labels(i))
                .await?;
            // Series i has i % 3 chunks: some none at all.
            for c in 0..i % 3 {
                index.add_chunk(&chunk(i, c)).await?;
            }
        }
        let all = TimeRange::new(i64::MIN, i64::MAX)?;
        // Drop four in five: the dead outnumber the live, so the catalog is rebuilt.
        for i in (0..n).filter(|i| i % 5 != 0) {
            index.drop_series(labels(i).series_id()).await?;
        }
        for i in 0..n {
            let got = index.query_chunks(labels(i).series_id(), all).await?;
            let want: Vec<_> = if i % 5 == 0 {
                (0..i % 3).map(|c| chunk(i, c)).collect()
            } else {
                Vec::new()
            };
            assert_eq!(got, want, "series {i}");
        }
        // A dropped series comes back without its old chunks; new chunks go to their series.
        index
            .register_series(labels(1).series_id(), &labels(1))
            .await?;
        assert_eq!(
            index.query_chunks(labels(1).series_id(), all).await?,
            vec![]
        );
        index.add_chunk(&chunk(1, 7)).await?;
        index.add_chunk(&chunk(5, 7)).await?;
        assert_eq!(
            index.query_chunks(labels(1).series_id(), all).await?,
            vec![chunk(1, 7)]
        );
        assert_eq!(
            index.query_chunks(labels(5).series_id(), all).await?,
            vec![chunk(5, 0), chunk(5, 1), chunk(5, 7)]
        );
        assert!(matches!(
            index.add_chunk(&chunk(2, 0)).await,
            Err(Error::SeriesNotFound { .. })
        ));
        Ok(())
    }

    /// Chunks added and queried on several threads while other series come and go, so
    /// that the catalog is rebuilt (the ordinals renumbered) many times under them: every
    /// query sees only the chunks of its own series, and at the end each series that stayed
    /// has exactly the chunks added to it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_adds_and_queries_survive_rebuilds() -> Result<()> {
        use std::sync::Arc;
        let index = Arc::new(MemoryTimeIndex {
            catalog: RwLock::new(Catalog::with_rebuild_min_dead(64)),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        });
        let stable = 300u64;
        let per_series = 20u64;
        // Each stable series between four that go away, so that rebuilds move its ordinal.
        let early = |i: u64, j: u64| 20_000 + i * 4 + j;
        for i in 0..stable {
            for j in 0..4 {
                let e = early(i, j);
                index
                    .register_series(labels(e).series_id(), &labels(e))
                    .await?;
            }
            index
                .register_series(labels(i).series_id(), &labels(i))
                .await?;
        }
        let all = TimeRange::new(i64::MIN, i64::MAX)?;
        let mut tasks = Vec::new();
        // Two writers, each adding half of every stable series' chunks.
        for half in 0..2u64 {
            let index = index.clone();
            tasks.push(tokio::spawn(async move {
                for n in (half..per_series).step_by(2) {
                    for i in 0..stable {
                        index.add_chunk(&chunk(i, n)).await?;
                    }
                    tokio::task::yield_now().await;
                }
                Ok::<(), Error>(())
            }));
        }
        // Churn: series registered, given a chunk and dropped, a rebuild every few hundred.
        {
            let index = index.clone();
            tasks.push(tokio::spawn(async move {
                for i in 10_000..13_000u64 {
                    if i < 10_000 + stable {
                        for j in 0..4 {
                            index
                                .drop_series(labels(early(i - 10_000, j)).series_id())
                                .await?;
                        }
                    }
                    index
                        .register_series(labels(i).series_id(), &labels(i))
                        .await?;
                    index.add_chunk(&chunk(i, 0)).await?;
                    if i % 3 != 0 {
                        index.drop_series(labels(i).series_id()).await?;
                    }
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                Ok(())
            }));
        }
        // A reader: whatever it sees of a series is that series' own chunks, in order.
        {
            let index = index.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..40u64 {
                    for i in (round % 7..stable).step_by(7) {
                        let got = index.query_chunks(labels(i).series_id(), all).await?;
                        assert!(got.len() as u64 <= per_series, "series {i}: {got:?}");
                        for c in &got {
                            assert_eq!(c.series_id, labels(i).series_id());
                            assert_eq!(*c, chunk(i, c.location.offset), "series {i}");
                        }
                    }
                    tokio::task::yield_now().await;
                }
                Ok(())
            }));
        }
        for t in tasks {
            t.await.expect("the task runs")?;
        }
        let ordinals = index.read_catalog().ordinals();
        assert!(ordinals < 4_500, "rebuilt: {ordinals} ordinals");
        for i in 0..stable {
            let got = index.query_chunks(labels(i).series_id(), all).await?;
            let want: Vec<_> = (0..per_series).map(|n| chunk(i, n)).collect();
            assert_eq!(got, want, "series {i}");
        }
        for i in 10_000..13_000u64 {
            let got = index.query_chunks(labels(i).series_id(), all).await?;
            let want = if i % 3 == 0 {
                vec![chunk(i, 0)]
            } else {
                vec![]
            };
            assert_eq!(got, want, "churned series {i}");
        }
        Ok(())
    }
}
