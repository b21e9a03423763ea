//! Series already registered, by the bytes their labels arrived as: a known series costs one
//! keyed hash of those bytes and one lookup, instead of decoding its labels and asking the
//! index.
//!
//! The key is the 128-bit SipHash-1-3 of the bytes under keys drawn at random when the server
//! starts, so that a sender can neither predict nor craft two label sets that share a key (the
//! chance of an accidental one, with a billion series, is below 1e-20). Nothing but the key
//! and the id is kept: 24 bytes a series, and about 10 more for the hash index. Each shard is emptied when it grows past its
//! share of the capacity (the next write of those series registers them again, which is
//! idempotent), and the whole cache when the database says it no longer knows an id.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;

use gorilla_tsdb::SeriesId;
use gorilla_tsdb::core::dense_map::DenseMap;
use siphasher::sip128::{Hasher128, SipHasher13};

/// Shards (a power of two), so that concurrent writers rarely meet on a lock.
const SHARDS: usize = 16;

/// The keys are uniformly random already: their low 64 bits are the hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, low: u64) {
        self.0 = low;
    }
}

/// A key as two words: 8-byte aligned, so an entry with its id takes 24 bytes, not the 32 a
/// 16-byte aligned `u128` would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stored(u64, u64);

impl std::hash::Hash for Stored {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

impl From<u128> for Stored {
    fn from(key: u128) -> Self {
        Stored(key as u64, (key >> 64) as u64)
    }
}

/// Packed: the entries in one vector, a hash index of 4-byte positions beside it.
type Shard = DenseMap<Stored, SeriesId, BuildHasherDefault<KeyHasher>>;

/// The cache (see the module doc).
#[derive(Debug)]
pub(crate) struct SeriesCache {
    keys: (u64, u64),
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

impl SeriesCache {
    /// A cache of at most about `capacity` series.
    pub(crate) fn new(capacity: usize) -> Self {
        // Random keys: two draws of the standard library's randomly seeded hasher.
        let seed = std::collections::hash_map::RandomState::new();
        let keys = (seed.hash_one(0x5e71e5u64), seed.hash_one(0xcac4eu64));
        SeriesCache {
            keys,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// The key of a label encoding.
    pub(crate) fn key(&self, label_bytes: &[u8]) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write(label_bytes);
        h.finish128().as_u128()
    }

    fn shard(&self, key: u128) -> std::sync::MutexGuard<'_, Shard> {
        let shard = &self.shards[(key >> 120) as usize % SHARDS];
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The series registered under `key`, if known.
    pub(crate) fn get(&self, key: u128) -> Option<SeriesId> {
        self.shard(key).get(&Stored::from(key)).copied()
    }

    /// Remembers `id` under `key`.
    pub(crate) fn insert(&self, key: u128, id: SeriesId) {
        let mut shard = self.shard(key);
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(Stored::from(key), id);
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

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher")
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
