//! The [`StorageEngine`] trait: durable homes for compressed chunks.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{ChunkLocation, ChunkReference, CompressedBlock};

/// Bytes a storage engine found damaged (see [`StorageEngine::damage`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageDamage {
    /// What held the bytes, e.g. a segment file path.
    pub source: String,
    /// Byte offset of the damage in `source`.
    pub offset: u64,
    /// Bytes affected (0 when a whole file is missing).
    pub length: u64,
    /// What was wrong.
    pub reason: String,
    /// The chunk the bytes held, when its header survived: its series and time range tell
    /// which reads the loss touches. `None` when it is not known.
    pub chunk: Option<ChunkReference>,
}

/// Keeps compressed chunks and gives them back.
///
/// # Contract
/// - `write_chunk` stores a non-empty block (an empty one is [`crate::Error::InvalidInput`])
///   and returns its location once it is as durable as the engine's configured policy
///   promises. Every call stores a new chunk, even for identical blocks.
/// - Locations follow write order: a chunk whose `write_chunk` started after another's returned
///   has a greater location (by `ChunkLocation`'s `Ord`), also across reopen. The database
///   relies on it to let a newer chunk win over an older one that holds the same timestamp.
/// - `read_chunk` returns the block exactly as written (every field equal). A location that was
///   never returned by `write_chunk`, or was deleted, gives [`crate::Error::ChunkNotFound`];
///   bytes that fail their checksum give [`crate::Error::Corrupt`] naming where. Wrong bytes are
///   never returned as good.
/// - `list_chunks` returns a reference for every live chunk, ordered by location, so that an
///   index can be rebuilt from storage alone. Chunks whose bytes are damaged are left out (and
///   the engine logs them); reading them reports the damage.
/// - `delete_chunks` removes chunks; unknown or already deleted locations are ignored, so a
///   retried delete is harmless. Deleted chunks stay deleted after a reopen.
/// - `sync` makes every write acknowledged so far durable, whatever the policy.
/// - `close` makes everything durable; writes after it fail with [`crate::Error::Closed`].
/// - Reopening the same store (engine specific) gives back every chunk written and synced,
///   at the same locations.
/// - All methods may be called concurrently from many tasks.
///
/// The conformance kit (`tsdb_core::testkit::storage`, feature `testkit`) checks all this.
#[async_trait]
pub trait StorageEngine: Send + Sync + Debug + 'static {
    /// A short, stable name, e.g. `"local-disk"`.
    fn name(&self) -> &'static str;

    /// Stores a block and returns where it is.
    async fn write_chunk(&self, block: &CompressedBlock) -> Result<ChunkLocation>;

    /// Reads back the block stored at `location`.
    async fn read_chunk(&self, location: &ChunkLocation) -> Result<CompressedBlock>;

    /// Every live chunk, ordered by location.
    async fn list_chunks(&self) -> Result<Vec<ChunkReference>>;

    /// Deletes the chunks at `locations` (idempotent).
    async fn delete_chunks(&self, locations: &[ChunkLocation]) -> Result<()>;

    /// Makes every acknowledged write durable.
    async fn sync(&self) -> Result<()>;

    /// Makes everything durable and stops taking writes. The default calls [`Self::sync`].
    async fn close(&self) -> Result<()> {
        self.sync().await
    }

    /// Ends the file (or object) new chunks are appended to, so that the chunks written next
    /// do not share it with those written before. Compaction calls it before writing the
    /// chunks that replace others, so that what it replaces can be freed whole. Default:
    /// nothing (an engine without such files).
    async fn seal(&self) -> Result<()> {
        Ok(())
    }

    /// Live chunks the engine would like written again elsewhere so that it can reclaim the
    /// space of deleted chunks around them (for example every live chunk of a segment file
    /// that is mostly dead). The database's compaction writes each one anew, indexes the copy
    /// and then deletes it, after which the engine frees the space. Default: none.
    async fn relocation_candidates(&self) -> Result<Vec<ChunkReference>> {
        Ok(Vec::new())
    }

    /// Damage found so far (at open, or by reads since): bytes that held or may have held
    /// chunks and fail their checks, and files the engine knows it wrote but cannot find.
    /// The database records it durably and refuses to answer silently from what is left.
    /// Default: none known.
    async fn damage(&self) -> Result<Vec<StorageDamage>> {
        Ok(Vec::new())
    }
}

/// A storage engine behind a pointer: `Arc<DynStorageEngine>`.
pub type DynStorageEngine = dyn StorageEngine;

macro_rules! forward_storage {
    ($($wrapper:ident),*) => {$(
        #[deny(clippy::missing_trait_methods)]
        #[async_trait]
        impl<T: StorageEngine + ?Sized> StorageEngine for $wrapper<T> {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            async fn write_chunk(&self, block: &CompressedBlock) -> Result<ChunkLocation> {
                (**self).write_chunk(block).await
            }
            async fn read_chunk(&self, location: &ChunkLocation) -> Result<CompressedBlock> {
                (**self).read_chunk(location).await
            }
            async fn list_chunks(&self) -> Result<Vec<ChunkReference>> {
                (**self).list_chunks().await
            }
            async fn delete_chunks(&self, locations: &[ChunkLocation]) -> Result<()> {
                (**self).delete_chunks(locations).await
            }
            async fn sync(&self) -> Result<()> {
                (**self).sync().await
            }
            async fn close(&self) -> Result<()> {
                (**self).close().await
            }
            async fn seal(&self) -> Result<()> {
                (**self).seal().await
            }
            async fn relocation_candidates(&self) -> Result<Vec<ChunkReference>> {
                (**self).relocation_candidates().await
            }
            async fn damage(&self) -> Result<Vec<StorageDamage>> {
                (**self).damage().await
            }
        }
    )*};
}

forward_storage!(Arc, Box);
