//! Series already registered, by the bytes their labels arrived as: a known series costs one
//! keyed hash of those bytes and one lookup, instead of decoding its labels and asking the
//! index.
//!
//! Keys are [`SeriesKey`]s (see `tsdb_formats::series_key`) under keys drawn at random when
//! the server starts. Nothing but the key and the id is kept: 24 bytes a series, and about 10
//! more for the hash index. Each shard is emptied when it grows past its share of the
//! capacity (the next write of those series registers them again, which is idempotent), and
//! the whole cache when the database says it no longer knows an id.

use std::sync::Mutex;

use gorilla_tsdb::SeriesId;
use tsdb_formats::series_key::{SeriesKey, SeriesKeyMap, SeriesKeys};

/// Shards (a power of two), so that concurrent writers rarely meet on a lock.
const SHARDS: usize = 16;

type Shard = SeriesKeyMap<SeriesId>;

/// The cache (see the module doc).
#[derive(Debug)]
pub(crate) struct SeriesCache {
    keys: SeriesKeys,
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

impl SeriesCache {
    /// A cache of at most about `capacity` series.
    pub(crate) fn new(capacity: usize) -> Self {
        SeriesCache {
            keys: SeriesKeys::random(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// The key of a label encoding.
    pub(crate) fn key(&self, label_bytes: &[u8]) -> SeriesKey {
        self.keys.key(label_bytes)
    }

    fn shard(&self, key: SeriesKey) -> std::sync::MutexGuard<'_, Shard> {
        let shard = &self.shards[key.top_byte() as usize % SHARDS];
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The series registered under `key`, if known.
    pub(crate) fn get(&self, key: SeriesKey) -> Option<SeriesId> {
        self.shard(key).get(&key).copied()
    }

    /// Remembers `id` under `key`.
    pub(crate) fn insert(&self, key: SeriesKey, id: SeriesId) {
        let mut shard = self.shard(key);
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(key, id);
    }

    /// Forgets everything (the database no longer knows an id it gave).
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Series remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tell_label_encodings_apart_and_the_cache_stays_bounded() {
        let cache = SeriesCache::new(64);
        let a = cache.key(b"\x0a\x0c\x0a\x08__name__\x12\x00");
        assert_eq!(a, cache.key(b"\x0a\x0c\x0a\x08__name__\x12\x00"));
        assert_ne!(a, cache.key(b"\x0a\x0c\x0a\x08__name__\x12\x01"));
        // Another server draws other keys.
        assert_ne!(
            a,
            SeriesCache::new(64).key(b"\x0a\x0c\x0a\x08__name__\x12\x00")
        );
        for i in 0..10_000u64 {
            let k = cache.key(&i.to_le_bytes());
            cache.insert(k, SeriesId(i));
            assert_eq!(cache.get(k), Some(SeriesId(i)));
        }
        assert!(cache.len() <= 64 + SHARDS, "{} entries", cache.len());
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
