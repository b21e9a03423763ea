//! Keys for series by the bytes their labels arrived as, for caches that map those bytes to a
//! series id without keeping the bytes.
//!
//! A [`SeriesKey`] is the 128-bit SipHash-1-3 of the bytes under keys a [`SeriesKeys`] draws
//! at random, so that a sender can neither predict nor craft two label encodings that share a
//! key; the chance of an accidental one among a billion series is below 1e-20. A key takes
//! 16 bytes whatever the labels' length, and [`SeriesKeyMap`] packs entries with their ids
//! in a [`DenseMap`] beside a hash index of 4-byte positions.

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use siphasher::sip128::{Hasher128, SipHasher13};
use tsdb_core::dense_map::DenseMap;

/// The random keys the [`SeriesKey`]s of one cache are made under.
#[derive(Clone, Copy)]
pub struct SeriesKeys(u64, u64);

impl SeriesKeys {
    /// Keys drawn at random (two draws of the standard library's randomly seeded hasher).
    pub fn random() -> Self {
        let seed = std::collections::hash_map::RandomState::new();
        SeriesKeys(seed.hash_one(0x5e71e5u64), seed.hash_one(0xcac4eu64))
    }

    /// The key of one label encoding.
    pub fn key(&self, label_bytes: &[u8]) -> SeriesKey {
        let mut h = SipHasher13::new_with_keys(self.0, self.1);
        h.write(label_bytes);
        SeriesKey::from(h.finish128().as_u128())
    }
}

impl std::fmt::Debug for SeriesKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys themselves are secret.
        f.write_str("SeriesKeys")
    }
}

/// A label encoding's key, as two words: 8-byte aligned, so that an entry with a series id
/// takes 24 bytes where a 16-byte aligned `u128` would need 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesKey(u64, u64);

impl From<u128> for SeriesKey {
    fn from(key: u128) -> Self {
        SeriesKey(key as u64, (key >> 64) as u64)
    }
}

impl SeriesKey {
    /// The key's top byte, uniformly random: for picking a shard.
    pub fn top_byte(&self) -> u8 {
        (self.1 >> 56) as u8
    }
}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// The hasher of [`SeriesKeyMap`]: a key's low word is uniformly random already, so it is
/// the hash.
#[derive(Default)]
pub struct SeriesKeyHasher(u64);

impl Hasher for SeriesKeyHasher {
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

impl std::fmt::Debug for SeriesKeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeriesKeyHasher")
    }
}

/// Values by [`SeriesKey`], packed.
pub type SeriesKeyMap<V> = DenseMap<SeriesKey, V, BuildHasherDefault<SeriesKeyHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tell_encodings_apart_and_differ_between_draws() {
        let keys = SeriesKeys::random();
        let a = keys.key(b"m{a=\"1\"}");
        assert_eq!(a, keys.key(b"m{a=\"1\"}"));
        assert_ne!(a, keys.key(b"m{a=\"2\"}"));
        assert_ne!(a, SeriesKeys::random().key(b"m{a=\"1\"}"));
        let mut map = SeriesKeyMap::default();
        for i in 0..10_000u64 {
            assert!(map.insert(keys.key(&i.to_le_bytes()), i));
        }
        for i in 0..10_000u64 {
            assert_eq!(map.get(&keys.key(&i.to_le_bytes())), Some(&i));
        }
        assert_eq!(std::mem::size_of::<(SeriesKey, u64)>(), 24);
    }
}
