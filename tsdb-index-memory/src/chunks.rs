//! The chunk references of one series, sorted for interval queries.

use std::collections::HashSet;

use tsdb_core::{ChunkLocation, ChunkReference, CodecId, SeriesId, TimeRange};

/// One chunk reference without its series id (the series owns the list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    start: i64,
    end: i64,
    location: ChunkLocation,
    point_count: u32,
    codec: CodecId,
}

impl Entry {
    fn key(&self) -> (i64, i64, ChunkLocation) {
        (self.start, self.end, self.location)
    }
}

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

/// Chunks sorted by `(start, end, location)`, with `max_end[i]` the largest end among the
/// first `i + 1` chunks. Chunks before the first `max_end >= t` all end before `t`.
#[derive(Debug, Default)]
struct Sorted {
    entries: Vec<Entry>,
    max_end: Vec<i64>,
    locations: HashSet<ChunkLocation>,
}

impl Sorted {
    /// Adds a chunk; false (and no change) when its location is already present.
    fn add(&mut self, c: &ChunkReference) -> bool {
        if !self.locations.insert(c.location) {
            return false;
        }
        let e = Entry {
            start: c.start_time,
            end: c.end_time,
            location: c.location,
            point_count: c.point_count,
            codec: c.codec,
        };
        match self.entries.last() {
            // The common case: chunks arrive in time order.
            Some(last) if last.key() > e.key() => {
                let at = self.entries.partition_point(|x| x.key() < e.key());
                self.entries.insert(at, e);
                self.max_end.insert(at, 0);
                self.recompute_max_end(at);
            }
            _ => {
                let prev = self.max_end.last().copied().unwrap_or(i64::MIN);
                self.entries.push(e);
                self.max_end.push(prev.max(e.end));
            }
        }
        true
    }

    fn recompute_max_end(&mut self, from: usize) {
        let mut running = if from == 0 {
            i64::MIN
        } else {
            self.max_end[from - 1]
        };
        for (m, e) in self.max_end[from..].iter_mut().zip(&self.entries[from..]) {
            running = running.max(e.end);
            *m = running;
        }
    }

    fn query(&self, series: SeriesId, range: TimeRange) -> Vec<ChunkReference> {
        let hi = self.entries.partition_point(|e| e.start <= range.end);
        let lo = self.max_end[..hi].partition_point(|&m| m < range.start);
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
        let mut gone: HashSet<ChunkLocation> = HashSet::with_capacity(locations.len());
        for l in locations {
            if self.locations.remove(l) {
                gone.insert(*l);
            }
        }
        if gone.is_empty() {
            return;
        }
        let first = self
            .entries
            .iter()
            .position(|e| gone.contains(&e.location))
            .unwrap_or(self.entries.len());
        self.entries.retain(|e| !gone.contains(&e.location));
        self.max_end.truncate(self.entries.len());
        self.recompute_max_end(first.min(self.entries.len()));
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
            let sorted =
                s.0.as_deref()
                    .map_or((&[][..], &[][..]), |x| (&x.entries[..], &x.max_end[..]));
            for (e, m) in sorted.0.iter().zip(sorted.1) {
                running = running.max(e.end);
                assert_eq!(*m, running, "max_end must be the running maximum");
            }
        }
        assert_eq!(s.len(), all.len());
    }
}
