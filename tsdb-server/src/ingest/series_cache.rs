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

    fn shard_of(key: SeriesKey) -> usize {
        key.top_byte() as usize % SHARDS
    }

    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[shard].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn shard(&self, key: SeriesKey) -> std::sync::MutexGuard<'_, Shard> {
        self.lock(Self::shard_of(key))
    }

    /// The series registered under `key`, if known.
    #[cfg(test)]
    pub(crate) fn get(&self, key: SeriesKey) -> Option<SeriesId> {
        self.shard(key).get(&key).copied()
    }

    /// The series registered under each of `keys`, if known, in their order: each shard is
    /// locked once for all of its keys (a lock per key costs more than the lookup, and its
    /// atomic operations keep the processor from overlapping the lookups' cache misses).
    pub(crate) fn get_many(&self, keys: &[SeriesKey]) -> Vec<Option<SeriesId>> {
        let mut found = vec![None; keys.len()];
        // The keys' positions, grouped by shard (a counting sort).
        let mut starts = [0u32; SHARDS + 1];
        for &key in keys {
            starts[Self::shard_of(key) + 1] += 1;
        }
        for s in 0..SHARDS {
            starts[s + 1] += starts[s];
        }
        let mut next = starts;
        let mut order = vec![0u32; keys.len()];
        for (i, &key) in keys.iter().enumerate() {
            let slot = &mut next[Self::shard_of(key)];
            order[*slot as usize] = i as u32;
            *slot += 1;
        }
        for s in 0..SHARDS {
            let positions = &order[starts[s] as usize..starts[s + 1] as usize];
            if positions.is_empty() {
                continue;
            }
            let shard = self.lock(s);
            for &i in positions {
                found[i as usize] = shard.get(&keys[i as usize]).copied();
            }
        }
        found
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
        let keys: Vec<SeriesKey> = (9_990..10_010u64)
            .map(|i| cache.key(&i.to_le_bytes()))
            .collect();
        let one_by_one: Vec<Option<SeriesId>> = keys.iter().map(|&k| cache.get(k)).collect();
        assert_eq!(cache.get_many(&keys), one_by_one);
        assert!(one_by_one.iter().any(Option::is_some) && one_by_one.iter().any(Option::is_none));
        assert!(cache.len() <= 64 + SHARDS, "{} entries", cache.len());
        cache.clear();
        assert_eq!(cache.len(), 0);
    }
}
