//! The chunk references of one series, sorted for interval queries.

use std::collections::HashSet;

use tsdb_core::{ChunkLocation, ChunkReference, CodecId, SeriesId, TimeRange};

/// One chunk reference without its series id (the series owns the list), with the largest
/// end among the chunks up to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    start: i64,
    end: i64,
    /// The largest `end` of this entry and every one before it: chunks before the first
    /// entry with `max_end >= t` all end before `t`.
    max_end: i64,
    location: ChunkLocation,
    point_count: u32,
    codec: CodecId,
}

impl Entry {
    fn key(&self) -> (i64, i64, ChunkLocation) {
        (self.start, self.end, self.location)
    }
}

/// Up to this many chunks a series' locations are checked by a scan; beyond it a hash set
/// finds duplicates.
const SCAN: usize = 32;

/// The chunks of a series: nothing but a null pointer until its first chunk, so that a
/// registered series whose points are all still in memory (every new one) costs 8 bytes here.
#[derive(Debug, Default)]
pub(crate) struct SeriesChunks(Option<Box<Sorted>>);

impl SeriesChunks {
    /// Adds a chunk; false (and no change) when its location is already present.
    pub(crate) fn add(&mut self, c: &ChunkReference) -> bool {
        self.0.get_or_insert_with(Box::default).add(c)
    }

    /// The chunks overlapping `range` (`range.start <= range.end`), in order.
    pub(crate) fn query(&self, series: SeriesId, range: TimeRange) -> Vec<ChunkReference> {
        self.0
            .as_ref()
            .map_or_else(Vec::new, |s| s.query(series, range))
    }

    /// Removes the chunks at `locations`; absent ones are ignored.
    pub(crate) fn remove(&mut self, locations: &[ChunkLocation]) {
        if let Some(s) = self.0.as_mut() {
            s.remove(locations);
            if s.entries.is_empty() {
                self.0 = None;
            }
        }
    }

    /// Number of chunks.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |s| s.entries.len())
    }
}

/// Chunks sorted by `(start, end, location)`; the set of their locations once there are more
/// than [`SCAN`].
#[derive(Debug, Default)]
struct Sorted {
    entries: Vec<Entry>,
    // Boxed: 8 bytes in every series' list instead of 48, and most lists never have the set.
    #[allow(clippy::box_collection)]
    locations: Option<Box<HashSet<ChunkLocation>>>,
}

impl Sorted {
    fn contains(&self, location: &ChunkLocation) -> bool {
        match &self.locations {
            Some(set) => set.contains(location),
            None => self.entries.iter().any(|e| e.location == *location),
        }
    }

    /// Adds a chunk; false (and no change) when its location is already present.
    fn add(&mut self, c: &ChunkReference) -> bool {
        if self.contains(&c.location) {
            return false;
        }
        let e = Entry {
            start: c.start_time,
            end: c.end_time,
            max_end: c.end_time,
            location: c.location,
            point_count: c.point_count,
            codec: c.codec,
        };
        // Most series have a chunk or two: no room reserved for more until there are more.
        if self.entries.len() < 4 {
            self.entries.reserve_exact(1);
        }
        match self.entries.last() {
            // The common case: chunks arrive in time order.
            Some(last) if last.key() > e.key() => {
                let at = self.entries.partition_point(|x| x.key() < e.key());
                self.entries.insert(at, e);
                self.recompute_max_end(at);
            }
            last => {
                let prev = last.map_or(i64::MIN, |l| l.max_end);
                self.entries.push(Entry {
                    max_end: prev.max(e.end),
                    ..e
                });
            }
        }
        match &mut self.locations {
            Some(set) => {
                set.insert(c.location);
            }
            None if self.entries.len() > SCAN => {
                self.locations = Some(Box::new(self.entries.iter().map(|e| e.location).collect()));
            }
            None => {}
        }
        true
    }

    fn recompute_max_end(&mut self, from: usize) {
        let mut running = if from == 0 {
            i64::MIN
        } else {
            self.entries[from - 1].max_end
        };
        for e in &mut self.entries[from..] {
            running = running.max(e.end);
            e.max_end = running;
        }
    }

    fn query(&self, series: SeriesId, range: TimeRange) -> Vec<ChunkReference> {
        let hi = self.entries.partition_point(|e| e.start <= range.end);
        let lo = self.entries[..hi].partition_point(|e| e.max_end < range.start);
        self.entries[lo..hi]
            .iter()
            .filter(|e| e.end >= range.start)
            .map(|e| ChunkReference {
                series_id: series,
                location: e.location,
                start_time: e.start,
                end_time: e.end,
                point_count: e.point_count,
                codec: e.codec,
            })
            .collect()
    }

    fn remove(&mut self, locations: &[ChunkLocation]) {
        let gone: HashSet<ChunkLocation> = locations
            .iter()
            .filter(|l| self.contains(l))
            .copied()
            .collect();
        if gone.is_empty() {
            return;
        }
        if let Some(set) = &mut self.locations {
            set.retain(|l| !gone.contains(l));
        }
        let first = self
            .entries
            .iter()
            .position(|e| gone.contains(&e.location))
            .unwrap_or(self.entries.len());
        self.entries.retain(|e| !gone.contains(&e.location));
        self.recompute_max_end(first.min(self.entries.len()));
        if self.entries.len() <= SCAN / 2 {
            self.locations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(start: i64, end: i64, off: u64) -> ChunkReference {
        ChunkReference {
            series_id: SeriesId(1),
            location: ChunkLocation {
                segment: 0,
                offset: off,
                length: 1,
            },
            start_time: start,
            end_time: end,
            point_count: 1,
            codec: CodecId::GORILLA,
        }
    }

    fn brute(all: &[ChunkReference], range: TimeRange) -> Vec<ChunkReference> {
        let mut v: Vec<ChunkReference> = all
            .iter()
            .filter(|c| c.time_range().overlaps(&range))
            .copied()
            .collect();
        v.sort_by_key(|c| (c.start_time, c.end_time, c.location));
        v
    }

    #[test]
    fn max_end_stays_consistent_through_inserts_and_removals() {
        let mut rng = tsdb_core::testkit::data::SplitMix64(9);
        let mut s = SeriesChunks::default();
        let mut all: Vec<ChunkReference> = Vec::new();
        for i in 0..400u64 {
            let start = rng.below(1000) as i64;
            let c = chunk(start, start + rng.below(80) as i64, i);
            assert!(s.add(&c));
            all.push(c);
            // A location already present is a no-op, whatever the other fields say.
            let again = all[rng.below(all.len() as u64) as usize];
            assert!(!s.add(&ChunkReference {
                start_time: again.start_time - 5,
                ..again
            }));
            if i % 7 == 0 {
                let victim = all.remove(rng.below(all.len() as u64) as usize);
                s.remove(&[victim.location]);
            }
            let a = rng.below(1100) as i64;
            let range = TimeRange {
                start: a,
                end: a + rng.below(50) as i64,
            };
            assert_eq!(s.query(SeriesId(1), range), brute(&all, range), "step {i}");
            let mut running = i64::MIN;
            let entries = s.0.as_deref().map_or(&[][..], |x| &x.entries[..]);
            for e in entries {
                running = running.max(e.end);
                assert_eq!(e.max_end, running, "max_end must be the running maximum");
            }
        }
        assert_eq!(s.len(), all.len());
    }
}
