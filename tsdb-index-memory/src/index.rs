//! [`MemoryTimeIndex`]: the catalog under one lock, chunk lists under sharded locks.

use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use tsdb_core::{
    ChunkLocation, ChunkReference, Error, LabelMatcher, Labels, Result, SeriesId, TimeIndex,
    TimeRange,
};

use crate::catalog::Catalog;
use crate::chunks::SeriesChunks;

/// Number of chunk shards (a power of two).
const SHARDS: usize = 64;

type Shard = RwLock<HashMap<SeriesId, SeriesChunks>>;

/// A [`TimeIndex`] held in memory. Cheap to create; share it as `Arc<MemoryTimeIndex>`.
///
/// Locks are always taken catalog first, then one chunk shard, so a series is in its shard
/// exactly while it is registered: `add_chunk` racing with `drop_series` either lands before
/// the drop (and is dropped with it) or fails with [`Error::SeriesNotFound`].
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

    fn shard(&self, series: SeriesId) -> &Shard {
        // Ids are usually hashes already; the multiply spreads small custom ids too.
        let h = series.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58;
        &self.shards[h as usize % SHARDS]
    }

    fn read_catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_catalog(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(PoisonError::into_inner)
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

fn read(shard: &Shard) -> RwLockReadGuard<'_, HashMap<SeriesId, SeriesChunks>> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(shard: &Shard) -> RwLockWriteGuard<'_, HashMap<SeriesId, SeriesChunks>> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl TimeIndex for MemoryTimeIndex {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn register_series(&self, series: SeriesId, labels: &Labels) -> Result<()> {
        let mut catalog = self.write_catalog();
        if catalog.register(series, labels)? {
            write(self.shard(series)).insert(series, SeriesChunks::default());
        }
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
        let mut shard = write(self.shard(chunk.series_id));
        let chunks = shard
            .get_mut(&chunk.series_id)
            .ok_or(Error::SeriesNotFound {
                series: chunk.series_id,
            })?;
        chunks.add(chunk);
        Ok(())
    }

    async fn query_chunks(
        &self,
        series: SeriesId,
        range: TimeRange,
    ) -> Result<Vec<ChunkReference>> {
        check_range(series, range)?;
        Ok(read(self.shard(series))
            .get(&series)
            .map(|chunks| chunks.query(series, range))
            .unwrap_or_default())
    }

    async fn remove_chunks(&self, series: SeriesId, locations: &[ChunkLocation]) -> Result<()> {
        if let Some(chunks) = write(self.shard(series)).get_mut(&series) {
            chunks.remove(locations);
        }
        Ok(())
    }

    async fn drop_series(&self, series: SeriesId) -> Result<()> {
        let mut catalog = self.write_catalog();
        if catalog.drop_series(series)? {
            write(self.shard(series)).remove(&series);
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
