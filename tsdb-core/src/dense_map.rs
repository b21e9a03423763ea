//! [`DenseMap`]: a hash map whose entries sit packed in one vector, for per-series tables of
//! millions of small entries.
//!
//! An open-addressing table (`std`'s `HashMap`) spreads its entries over all its slots, so
//! every slot's memory is touched and resident: right after it doubles, half of it is empty
//! slots. Here the table holds only 4-byte positions and the entries are appended to a
//! vector, whose spare capacity is never touched (and so, for large vectors, never
//! resident). A million 24-byte entries take about 34 MB instead of 52.
//!
//! Entries are never removed one by one (the tables this serves only grow), only all at once
//! with [`DenseMap::clear`].

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

/// A growing hash map with its entries packed in insertion order (see the module doc).
pub struct DenseMap<K, V, S> {
    entries: Vec<(K, V)>,
    /// Positions in `entries`, by the hash of their key.
    index: HashTable<u32>,
    hasher: S,
}

impl<K, V, S: Default> Default for DenseMap<K, V, S> {
    fn default() -> Self {
        DenseMap {
            entries: Vec::new(),
            index: HashTable::new(),
            hasher: S::default(),
        }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug, S> std::fmt::Debug for DenseMap<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> DenseMap<K, V, S> {
    fn position(&self, key: &K) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| self.entries[i as usize].0 == *key)
            .map(|&i| i as usize)
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// The value of `key`, to change.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.position(key).map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &K) -> bool {
        self.position(key).is_some()
    }

    /// The value of `key`, made by `make` first when there is none; and whether it was made.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> (&mut V, bool) {
        if let Some(i) = self.position(&key) {
            return (&mut self.entries[i].1, false);
        }
        let hash = self.hasher.hash_one(&key);
        // Memory runs out long before four billion entries (of at least 8 bytes each).
        let at = u32::try_from(self.entries.len()).expect("fewer than 2^32 entries");
        self.entries.push((key, make()));
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(hash, at, |&i| hasher.hash_one(&entries[i as usize].0));
        (&mut self.entries[at as usize].1, true)
    }

    /// Sets the value of `key`; true when `key` had none.
    pub fn insert(&mut self, key: K, value: V) -> bool {
        let mut value = Some(value);
        let (slot, new) = self.get_or_insert_with(key, || value.take().expect("taken once"));
        if let Some(v) = value {
            *slot = v;
        }
        new
    }
}

impl<K, V, S> DenseMap<K, V, S> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every entry and gives the memory back.
    pub fn clear(&mut self) {
        self.entries = Vec::new();
        self.index = HashTable::new();
    }

    /// The entries, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The entries with their values to change, in insertion order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> + '_ {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// The values, in insertion order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Heap bytes reserved (capacity, whether touched or not).
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(K, V)>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::hash::RandomState;

    #[test]
    fn behaves_as_a_hash_map_that_only_grows() {
        let mut state = 17u64;
        let mut below = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let mut map: DenseMap<u64, u64, RandomState> = DenseMap::default();
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut order: Vec<u64> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for step in 0..20_000u64 {
            let k = below(5_000);
            match below(3) {
                0 => {
                    assert_eq!(map.insert(k, step), model.insert(k, step).is_none());
                }
                1 => {
                    let (v, new) = map.get_or_insert_with(k, || step);
                    assert_eq!(new, !model.contains_key(&k));
                    *v += 1;
                    *model.entry(k).or_insert(step) += 1;
                }
                _ => {
                    assert_eq!(map.get(&k), model.get(&k));
                    assert_eq!(map.contains_key(&k), model.contains_key(&k));
                }
            }
            if model.contains_key(&k) && seen.insert(k) {
                order.push(k);
            }
        }
        assert_eq!(map.len(), model.len());
        let keys: Vec<u64> = map.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, order, "insertion order");
        for (k, v) in map.iter_mut() {
            *v = *k;
        }
        assert!(map.values().zip(&order).all(|(v, k)| v == k));
        map.clear();
        assert!(map.is_empty() && map.get(&order[0]).is_none());
    }
}
