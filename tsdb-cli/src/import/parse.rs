//! Chunks parsed on worker threads into points of series ids: each line scanned in place
//! (no allocation for a line of a known series), series resolved through a cache keyed by
//! a keyed hash of the series' bytes as written, so that a known series costs one hash
//! and one lookup, and a new one is parsed once per worker.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};

use gorilla_tsdb::{DataPoint, Error, Labels, SeriesId};
use tsdb_formats::series_key::{SeriesKey, SeriesKeyMap, SeriesKeys};
use tsdb_formats::{Reject, RejectKind, csv, influx, lines, prometheus_text};

use super::read::{Body, Buffers, Chunk, InFlightBudget, Input};

/// Rejections a chunk keeps the message of (the writer shows the first ones of the whole
/// import; the rest are only counted).
pub(super) const KEPT_MESSAGES: usize = 20;

/// Entries in one generation of the series caches of all workers together (each worker's
/// share, at least [`MIN_CACHE_ENTRIES`]); two generations are kept, so the caches hold at
/// most twice this many, about 40 bytes each: 32 MB.
const CACHE_ENTRIES: usize = 400_000;

/// Entries in one generation of one worker's cache, at least.
const MIN_CACHE_ENTRIES: usize = 16_384;

/// The formats' options, as the command line set them.
#[derive(Debug)]
pub(super) enum Format {
    Influx(influx::Options),
    Prometheus(prometheus_text::Options),
    Csv(csv::Options),
}

impl Format {
    /// The time given to lines without a timestamp, if any.
    pub(super) fn default_timestamp(&self) -> Option<i64> {
        match self {
            Format::Influx(o) => o.default_timestamp,
            Format::Prometheus(o) => o.default_timestamp,
            Format::Csv(_) => None,
        }
    }
}

/// Rejections counted by kind.
#[derive(Clone, Debug, Default)]
pub(super) struct KindCounts(pub(super) [u64; RejectKind::ALL.len()]);

impl KindCounts {
    fn add(&mut self, kind: RejectKind) {
        self.0[kind.index()] += 1;
    }
}

/// One rejection to show: the line within the chunk (from 1), and why.
#[derive(Debug)]
pub(super) struct Shown {
    pub(super) line: u64,
    pub(super) reject: Reject,
}

/// A chunk, parsed.
#[derive(Debug)]
pub(super) struct Parsed {
    pub(super) seq: u64,
    pub(super) input: Arc<Input>,
    pub(super) skipped_lines: u64,
    pub(super) input_bytes: u64,
    /// Lines in the chunk (blank ones and comments included).
    pub(super) lines: u64,
    /// Lines that held points (or should have): not blank, not comments.
    pub(super) data_lines: u64,
    /// Lines imported without a timestamp of their own, at the default.
    pub(super) defaulted_lines: u64,
    /// Series this worker saw first in this chunk (the writer registers those still new).
    pub(super) new_series: Vec<Labels>,
    /// Every series the chunk has points of, once each (or a few times).
    pub(super) seen: Vec<SeriesId>,
    pub(super) points: Vec<DataPoint>,
    /// The line (within the chunk, from 1) of each point.
    pub(super) origins: Vec<u32>,
    /// Whole lines refused, by kind.
    pub(super) lines_rejected: KindCounts,
    /// Points (Influx fields) refused while the rest of their line was taken, by kind.
    pub(super) points_rejected: KindCounts,
    /// The first rejections, with their messages.
    pub(super) shown: Vec<Shown>,
    /// Series of `new_series` the database refused to register, and why.
    pub(super) refused: Vec<(SeriesId, Error)>,
    /// The input failed here: the import stops.
    pub(super) failure: Option<Error>,
    /// What the chunk weighs in the in-flight budget (see [`InFlightBudget`]).
    pub(super) weight: usize,
}

impl Parsed {
    /// Heap bytes the parsed chunk holds, about (allocator overhead included for the
    /// labels' strings, the bulk of a chunk of new series).
    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let labels: usize = self
            .new_series
            .iter()
            .map(|l| {
                size_of::<Labels>()
                    + l.iter()
                        .map(|x| size_of_val(x) + x.name.capacity() + x.value.capacity() + 32)
                        .sum::<usize>()
            })
            .sum();
        labels
            + self.points.capacity() * size_of::<DataPoint>()
            + self.origins.capacity() * size_of::<u32>()
            + self.seen.capacity() * size_of::<SeriesId>()
    }
}

/// A series id with the last chunk it was seen in.
#[derive(Clone, Copy)]
struct Entry {
    id: SeriesId,
    seq: u64,
}

/// Series bytes as written -> series id, in two generations: when the newer is full it
/// becomes the older and the older is dropped, so memory stays bounded and the series in
/// use stay found. The bytes are not kept: entries are by their [`SeriesKey`] (32 bytes
/// with the entry, whatever the labels' length). From the second generation on, one that was
/// almost never asked for an entry it had (a file of series each written once) is dropped
/// instead of kept as the older one, which halves what the cache holds when it cannot help.
/// (The first is always kept: it can have no hits in a file whose series come back only after
/// more than a generation.)
struct SeriesCache {
    keys: SeriesKeys,
    now: SeriesKeyMap<Entry>,
    old: SeriesKeyMap<Entry>,
    /// Entries in one generation.
    limit: usize,
    /// Lookups that found their entry since the newer generation began.
    hits: usize,
    /// Whether a generation was ever full.
    rotated: bool,
}

impl SeriesCache {
    /// The id of `bytes`, and whether this is its first time in chunk `seq`; when the
    /// bytes are not known, their key, for [`Self::insert`] (so that they are hashed once).
    fn get(&mut self, bytes: &[u8], seq: u64) -> Result<(SeriesId, bool), SeriesKey> {
        let key = self.keys.key(bytes);
        if let Some(e) = self.now.get_mut(&key) {
            let first = e.seq != seq;
            e.seq = seq;
            self.hits += 1;
            return Ok((e.id, first));
        }
        // Copied into the newer generation (the older one is dropped whole later).
        let Some(&e) = self.old.get(&key) else {
            return Err(key);
        };
        self.hits += 1;
        let first = e.seq != seq;
        self.put(key, Entry { id: e.id, seq });
        Ok((e.id, first))
    }

    /// Records `id` for the bytes whose key [`Self::get`] returned.
    fn insert(&mut self, key: SeriesKey, id: SeriesId, seq: u64) {
        self.put(key, Entry { id, seq });
    }

    fn put(&mut self, key: SeriesKey, e: Entry) {
        if self.now.len() >= self.limit {
            let full = std::mem::take(&mut self.now);
            // Fewer hits than a sixteenth of the entries: keeping it would not pay.
            self.old = if !self.rotated || self.hits >= full.len() / 16 {
                full
            } else {
                SeriesKeyMap::default()
            };
            self.hits = 0;
            self.rotated = true;
        }
        self.now.insert(key, e);
    }
}

/// A parsing thread's state.
pub(super) struct Worker {
    format: Arc<Format>,
    cache: SeriesCache,
    /// CSV: the inputs whose series this worker has announced.
    csv_seen: Vec<usize>,
    key: Vec<u8>,
}

impl Worker {
    /// A worker, one of `workers`.
    pub(super) fn new(format: Arc<Format>, workers: usize) -> Worker {
        Worker {
            format,
            cache: SeriesCache {
                keys: SeriesKeys::random(),
                now: SeriesKeyMap::default(),
                old: SeriesKeyMap::default(),
                limit: (CACHE_ENTRIES / workers.max(1)).max(MIN_CACHE_ENTRIES),
                hits: 0,
                rotated: false,
            },
            csv_seen: Vec::new(),
            key: Vec::new(),
        }
    }

    /// Parses chunks until there are no more or the writer is gone.
    pub(super) fn run(
        mut self,
        chunks: Arc<Mutex<Receiver<Chunk>>>,
        parsed: tokio::sync::mpsc::UnboundedSender<Parsed>,
        buffers: Arc<Buffers>,
        budget: &InFlightBudget,
    ) {
        loop {
            let next = chunks.lock().unwrap_or_else(PoisonError::into_inner).recv();
            let Ok(chunk) = next else { return };
            let reserved = chunk.reserved;
            let (mut result, buffer) = self.parse(chunk);
            if let Some(buffer) = buffer {
                buffers.give_back(buffer);
            }
            result.weight = budget.charge(result.heap_bytes(), reserved);
            if parsed.send(result).is_err() {
                return;
            }
        }
    }

    fn parse(&mut self, chunk: Chunk) -> (Parsed, Option<Vec<u8>>) {
        let mut out = Parsed {
            seq: chunk.seq,
            input: chunk.input,
            skipped_lines: chunk.skipped_lines,
            input_bytes: chunk.input_bytes,
            lines: 0,
            data_lines: 0,
            defaulted_lines: 0,
            new_series: Vec::new(),
            seen: Vec::new(),
            points: Vec::new(),
            origins: Vec::new(),
            lines_rejected: KindCounts::default(),
            points_rejected: KindCounts::default(),
            shown: Vec::new(),
            refused: Vec::new(),
            failure: None,
            weight: 0,
        };
        let data = match chunk.body {
            Body::Lines(data) => data,
            Body::TooLong => {
                out.lines = 1;
                out.data_lines = 1;
                reject_line(
                    &mut out,
                    1,
                    Reject::new(
                        RejectKind::LineTooLong,
                        format!(
                            "line longer than {} MiB, skipped",
                            super::read::MAX_LINE >> 20
                        ),
                    ),
                );
                return (out, None);
            }
            Body::Failed(e) => {
                out.failure = Some(e);
                return (out, None);
            }
        };
        // About one point per 60 bytes of input.
        let guess = data.len() / 48;
        out.points.reserve(guess);
        out.origins.reserve(guess);
        let format = self.format.clone();
        match &*format {
            Format::Prometheus(opts) => self.prometheus(&data, opts, &mut out),
            Format::Influx(opts) => self.influx(&data, opts, &mut out),
            Format::Csv(opts) => self.csv(&data, opts, &mut out),
        }
        (out, Some(data))
    }

    fn prometheus(&mut self, data: &[u8], opts: &prometheus_text::Options, out: &mut Parsed) {
        let seq = out.seq;
        for (n, line) in lines(data) {
            out.lines = n as u64;
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            out.data_lines += 1;
            let sample = match prometheus_text::scan_line(line, opts) {
                Ok(prometheus_text::Scanned::Sample(s)) => s,
                Ok(_) => continue,
                Err(r) => {
                    reject_line(out, n, r);
                    continue;
                }
            };
            let key = sample.series.as_bytes();
            let id = match self.cache.get(key, seq) {
                Ok((id, first)) => {
                    if first {
                        out.seen.push(id);
                    }
                    id
                }
                Err(key) => match sample.labels(opts) {
                    Ok(labels) => {
                        let id = labels.series_id();
                        self.cache.insert(key, id, seq);
                        out.seen.push(id);
                        out.new_series.push(labels);
                        id
                    }
                    Err(r) => {
                        reject_line(out, n, r);
                        continue;
                    }
                },
            };
            out.points
                .push(DataPoint::new(id, sample.timestamp, sample.value));
            out.origins.push(n as u32);
            out.defaulted_lines += u64::from(sample.defaulted);
        }
    }

    fn influx(&mut self, data: &[u8], opts: &influx::Options, out: &mut Parsed) {
        let seq = out.seq;
        let mut field_rejects: Vec<Reject> = Vec::new();
        for (n, line) in lines(data) {
            out.lines = n as u64;
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            out.data_lines += 1;
            let scanned = match influx::scan_line(line, opts) {
                Ok(Some(l)) => l,
                Ok(None) => continue,
                Err(r) => {
                    reject_line(out, n, r);
                    continue;
                }
            };
            let (points_before, seen_before, new_before) =
                (out.points.len(), out.seen.len(), out.new_series.len());
            let mut tags: Option<influx::SeriesTags> = None;
            let mut line_reject: Option<Reject> = None;
            field_rejects.clear();
            for field in scanned.fields(opts) {
                let value = match field.value {
                    Ok(v) => v,
                    Err(r) => {
                        field_rejects.push(r);
                        continue;
                    }
                };
                self.key.clear();
                self.key.extend_from_slice(scanned.series.as_bytes());
                self.key.push(b' ');
                self.key.extend_from_slice(field.key.as_bytes());
                let id = match self.cache.get(&self.key, seq) {
                    Ok((id, first)) => {
                        if first {
                            out.seen.push(id);
                        }
                        id
                    }
                    Err(key) => {
                        if tags.is_none() {
                            match scanned.tags(opts) {
                                Ok(t) => tags = Some(t),
                                Err(r) => {
                                    line_reject = Some(r);
                                    break;
                                }
                            }
                        }
                        let Some(t) = &tags else { break };
                        match t.labels(field.key) {
                            Ok(labels) => {
                                let id = labels.series_id();
                                self.cache.insert(key, id, seq);
                                out.seen.push(id);
                                out.new_series.push(labels);
                                id
                            }
                            Err(r) => {
                                field_rejects.push(r);
                                continue;
                            }
                        }
                    }
                };
                out.points
                    .push(DataPoint::new(id, scanned.timestamp, value));
                out.origins.push(n as u32);
            }
            if let Some(r) = line_reject {
                // The tags are bad: the line is refused as a whole.
                out.points.truncate(points_before);
                out.origins.truncate(points_before);
                out.seen.truncate(seen_before);
                out.new_series.truncate(new_before);
                reject_line(out, n, r);
                continue;
            }
            if out.points.len() == points_before && !field_rejects.is_empty() {
                // Nothing of the line was taken: it is refused, for its first field's reason.
                let first = field_rejects.remove(0);
                reject_line(out, n, first);
            }
            if out.points.len() > points_before {
                out.defaulted_lines += u64::from(scanned.defaulted);
            }
            for r in field_rejects.drain(..) {
                reject_point(out, n, r);
            }
        }
    }

    fn csv(&mut self, data: &[u8], opts: &csv::Options, out: &mut Parsed) {
        let input = out.input.clone();
        let Some(file) = &input.csv else { return };
        if !self.csv_seen.contains(&input.index) {
            self.csv_seen.push(input.index);
            out.new_series.push(file.labels.clone());
        }
        let mut any = false;
        for (n, line) in lines(data) {
            out.lines = n as u64;
            if line.is_empty() {
                continue;
            }
            out.data_lines += 1;
            match file.header.scan(line, opts) {
                Ok(Some((t, v))) => {
                    any = true;
                    out.points.push(DataPoint::new(file.id, t, v));
                    out.origins.push(n as u32);
                }
                Ok(None) => {}
                Err(r) => reject_line(out, n, r),
            }
        }
        if any {
            out.seen.push(file.id);
        }
    }
}

fn keep(out: &mut Parsed, line: usize, reject: Reject) {
    if out.shown.len() < KEPT_MESSAGES {
        out.shown.push(Shown {
            line: line as u64,
            reject,
        });
    }
}

fn reject_line(out: &mut Parsed, line: usize, reject: Reject) {
    out.lines_rejected.add(reject.kind);
    keep(out, line, reject);
}

fn reject_point(out: &mut Parsed, line: usize, reject: Reject) {
    out.points_rejected.add(reject.kind);
    keep(out, line, reject);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(limit: usize) -> SeriesCache {
        SeriesCache {
            keys: SeriesKeys::random(),
            now: SeriesKeyMap::default(),
            old: SeriesKeyMap::default(),
            limit,
            hits: 0,
            rotated: false,
        }
    }

    /// Looks `n` up, inserting it when missing; whether it was found.
    fn lookup(c: &mut SeriesCache, n: u64, seq: u64) -> bool {
        let bytes = format!("m{{id=\"{n}\"}}");
        match c.get(bytes.as_bytes(), seq) {
            Ok((id, _)) => {
                assert_eq!(id, SeriesId(n), "the id recorded for {bytes}");
                true
            }
            Err(key) => {
                c.insert(key, SeriesId(n), seq);
                false
            }
        }
    }

    #[test]
    fn series_coming_back_after_more_than_a_generation_are_found() {
        let mut c = cache(100);
        // 150 series in a cycle, more than a generation holds: the first pass finds none, so
        // its generation has no hits, and is kept all the same (dropped, the next passes
        // would find none either); later passes find a third or more.
        for pass in 0..8u64 {
            let found = (0..150).filter(|&n| lookup(&mut c, n, pass)).count();
            if pass > 0 {
                assert!(found >= 50, "pass {pass}: {found} of 150 found");
            }
        }
        // A cycle that fits a generation is always found.
        let mut c = cache(100);
        for pass in 0..4u64 {
            let found = (0..90).filter(|&n| lookup(&mut c, n, pass)).count();
            assert_eq!(found, if pass == 0 { 0 } else { 90 });
        }
    }

    #[test]
    fn a_cache_that_never_hits_keeps_one_generation() {
        let mut c = cache(100);
        for n in 0..1_000 {
            assert!(!lookup(&mut c, n, 0));
        }
        assert!(
            c.old.is_empty(),
            "an older generation without hits is dropped"
        );
        assert!(c.now.len() <= 100);
        // Series seen again now and then keep it.
        let mut c = cache(100);
        for n in 0..1_000u64 {
            lookup(&mut c, n, 0);
            lookup(&mut c, n, 0);
        }
        assert!(!c.old.is_empty());
    }
}
