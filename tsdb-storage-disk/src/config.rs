//! How a [`crate::LocalDiskEngine`] is configured.

use std::time::Duration;

use tsdb_core::{Error, Result};

/// When an acknowledged write is on stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `write_chunk` returns after the chunk is fsynced. Writers that arrive while an fsync
    /// runs share the next one (group commit). Nothing acknowledged is lost, even on power
    /// loss.
    Always,
    /// `write_chunk` returns once the chunk is in the operating system's page cache; a
    /// background task fsyncs every `Duration`. A process crash loses nothing acknowledged; an
    /// operating-system crash or power loss can lose the writes acknowledged during the last
    /// interval (plus the fsync in flight).
    Interval(Duration),
}

/// Settings of a [`crate::LocalDiskEngine`]: durability policy and segment size.
///
/// ```
/// use std::time::Duration;
/// use tsdb_storage_disk::{Durability, LocalDiskConfig};
///
/// let config = LocalDiskConfig::default()
///     .durability(Durability::Interval(Duration::from_millis(100)))
///     .segment_size(16 << 20);
/// assert_eq!(config.get_segment_size(), 16 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalDiskConfig {
    durability: Durability,
    segment_size: u64,
    read_only: bool,
}

impl LocalDiskConfig {
    /// The default segment size: 64 MiB.
    pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
    /// The smallest segment size accepted: 4 KiB.
    pub const MIN_SEGMENT_SIZE: u64 = 4 << 10;
    /// The largest segment size accepted: 1 TiB.
    pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;

    /// Sets the durability policy (default [`Durability::Always`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the size at which a segment is sealed and a new one started (default 64 MiB).
    /// A chunk larger than this gets a segment of its own.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// The durability policy.
    pub fn get_durability(&self) -> Durability {
        self.durability
    }

    /// The segment size in bytes.
    pub fn get_segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Opens without the directory lock and without modifying anything (no torn-tail repair,
    /// no clean-up, no directory creation); writes and deletions fail with
    /// [`tsdb_core::Error::ReadOnly`]. For tools that inspect a store another process may be
    /// writing. Default `false`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Whether the store is opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(Self::MIN_SEGMENT_SIZE..=Self::MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return Err(Error::invalid_input(format_args!(
                "segment size {} is outside {}..={}",
                self.segment_size,
                Self::MIN_SEGMENT_SIZE,
                Self::MAX_SEGMENT_SIZE
            )));
        }
        if let Durability::Interval(d) = self.durability
            && d.is_zero()
        {
            return Err(Error::invalid_input(
                "durability interval must be longer than zero",
            ));
        }
        Ok(())
    }
}

impl Default for LocalDiskConfig {
    fn default() -> Self {
        LocalDiskConfig {
            durability: Durability::Always,
            segment_size: Self::DEFAULT_SEGMENT_SIZE,
            read_only: false,
        }
    }
}
