//! Rollup tiers (downsampling): what the compaction service keeps of each series at a coarser
//! resolution, so that long ranges are answered without reading every raw point, and after
//! retention has deleted them.
//!
//! A tier of resolution `R` holds, for every bucket `(k - R, k]` (`k` a multiple of `R`, the
//! bucket's *label*) that has a sample other than a staleness marker, its count, sum, minimum,
//! maximum and last value, and, when a sample lies exactly on `k`, that sample's value (the
//! *end*). PromQL's window `[t - W, t]` of a range function at `t` (a multiple of `R`, `W` one
//! too) is then exactly the buckets labelled `t - W + R ..= t` and the end of bucket `t - W`.
//!
//! A tier's buckets are stored in chunks of one *group* of [`GROUP_BUCKETS`] consecutive
//! labels each (so that building on rewrites only the newest group): a container
//! ([`CodecId::ROLLUP`]) naming the series and the tier, holding each aggregate's
//! `(label, value)` points encoded by the cold codec, so that storage's listing alone rebuilds
//! the tiers on open, no index ever sees them, and a read decodes only the aggregates it
//! needs.
//!
//! How far each tier is built, and the series written to since where it was built, live in
//! `<data_dir>/ROLLUPS` (see [`TierState`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tsdb_core::{Bytes, CodecId, CompressedBlock, Error, Result, SeriesId};
use tsdb_promql::{RangeFunction, RollupKind, RollupRequest, STALE_NAN_BITS};

/// Buckets in one group (one chunk).
pub(crate) const GROUP_BUCKETS: i64 = 1024;

const FILE: &str = "ROLLUPS";
const CONTAINER_VERSION: u8 = 1;
/// Version, series, resolution, number of parts.
const CONTAINER_HEADER: usize = 1 + 8 + 8 + 1;

/// One aggregate a tier keeps per bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Agg {
    Count = 0,
    Sum = 1,
    Min = 2,
    Max = 3,
    Last = 4,
    /// The value of the sample exactly on the bucket's label, when there is one.
    End = 5,
}

impl Agg {
    pub(crate) const ALL: [Agg; 6] = [
        Agg::Count,
        Agg::Sum,
        Agg::Min,
        Agg::Max,
        Agg::Last,
        Agg::End,
    ];

    fn from_code(code: u8) -> Option<Agg> {
        Agg::ALL.get(usize::from(code)).copied()
    }
}

/// The id under which the tier of `resolution_ms` of `base` is stored: `base` XOR a key of
/// the tier, so that the base is found again from it.
pub(crate) fn derived_id(base: SeriesId, resolution_ms: i64) -> SeriesId {
    SeriesId(base.0 ^ tier_key(resolution_ms))
}

/// The key [`derived_id`] XORs in.
pub(crate) fn tier_key(resolution_ms: i64) -> u64 {
    // splitmix64 of the resolution: any fixed, well-mixed key will do.
    let mut z = (resolution_ms as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x5157_4C4C_5550_0001);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a rollup chunk's container says it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkOf {
    pub(crate) base: SeriesId,
    pub(crate) resolution_ms: i64,
}

/// Per aggregate: code, codec, point count, start, end, payload length.
const PART_HEADER: usize = 1 + 2 + 4 + 8 + 8 + 4;

/// Wraps the aggregates of one group (`parts`, each its `(label, value)` points encoded by a
/// codec of the database) in one rollup container: version, series, resolution, the number
/// of parts, a header per part, then their payloads. The outer block spans the count
/// column's labels (every bucket has a count).
pub(crate) fn wrap(of: ChunkOf, parts: &[(Agg, CompressedBlock)]) -> CompressedBlock {
    let payload: usize = parts.iter().map(|(_, b)| b.data.len()).sum();
    let mut data = Vec::with_capacity(CONTAINER_HEADER + parts.len() * PART_HEADER + payload);
    data.push(CONTAINER_VERSION);
    data.extend_from_slice(&of.base.0.to_le_bytes());
    data.extend_from_slice(&of.resolution_ms.to_le_bytes());
    data.push(parts.len() as u8);
    for (agg, b) in parts {
        data.push(*agg as u8);
        data.extend_from_slice(&b.codec.0.to_le_bytes());
        data.extend_from_slice(&b.point_count.to_le_bytes());
        data.extend_from_slice(&b.start_time.to_le_bytes());
        data.extend_from_slice(&b.end_time.to_le_bytes());
        data.extend_from_slice(&(b.data.len() as u32).to_le_bytes());
    }
    for (_, b) in parts {
        data.extend_from_slice(&b.data);
    }
    let count = parts.iter().find(|(a, _)| *a == Agg::Count).map(|(_, b)| b);
    CompressedBlock {
        codec: CodecId::ROLLUP,
        series_id: derived_id(of.base, of.resolution_ms),
        start_time: count.map_or(0, |b| b.start_time),
        end_time: count.map_or(0, |b| b.end_time),
        point_count: count.map_or(0, |b| b.point_count),
        data: Bytes::from(data),
    }
}

/// The container's header and its parts (sharing the block's bytes), checked against the
/// outer block.
pub(crate) fn unwrap(block: &CompressedBlock) -> Result<(ChunkOf, Vec<(Agg, CompressedBlock)>)> {
    let corrupt = |reason: String| Error::Corrupt {
        source_name: format!("rollup chunk of series {}", block.series_id.0),
        offset: 0,
        reason,
    };
    let d = &block.data;
    if d.len() < CONTAINER_HEADER || d[0] != CONTAINER_VERSION {
        return Err(corrupt(format!(
            "not a version {CONTAINER_VERSION} rollup container ({} bytes)",
            d.len()
        )));
    }
    let bytes = |at: usize, n: usize| -> Result<&[u8]> {
        d.get(at..at + n)
            .ok_or_else(|| corrupt(format!("cut short at byte {at} of {}", d.len())))
    };
    let u64_at = |at: usize| -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes(at, 8)?);
        Ok(u64::from_le_bytes(b))
    };
    let u32_at = |at: usize| -> Result<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(bytes(at, 4)?);
        Ok(u32::from_le_bytes(b))
    };
    let base = SeriesId(u64_at(1)?);
    let resolution_ms = u64_at(9)? as i64;
    if resolution_ms <= 0 || derived_id(base, resolution_ms) != block.series_id {
        return Err(corrupt(format!(
            "its header (series {}, tier {resolution_ms} ms) does not name the chunk's series",
            base.0
        )));
    }
    let n = usize::from(d[17]);
    let mut at = CONTAINER_HEADER;
    let mut payload_at = CONTAINER_HEADER + n * PART_HEADER;
    let mut parts = Vec::with_capacity(n);
    for _ in 0..n {
        let code = bytes(at, 1)?[0];
        let agg =
            Agg::from_code(code).ok_or_else(|| corrupt(format!("unknown aggregate {code}")))?;
        let codec = bytes(at + 1, 2)?;
        let codec = CodecId(u16::from_le_bytes([codec[0], codec[1]]));
        let point_count = u32_at(at + 3)?;
        let start_time = u64_at(at + 7)? as i64;
        let end_time = u64_at(at + 15)? as i64;
        let len = u32_at(at + 23)? as usize;
        bytes(payload_at, len)?;
        parts.push((
            agg,
            CompressedBlock {
                codec,
                series_id: block.series_id,
                start_time,
                end_time,
                point_count,
                data: block.data.slice(payload_at..payload_at + len),
            },
        ));
        at += PART_HEADER;
        payload_at += len;
    }
    if payload_at != d.len() {
        return Err(corrupt(format!(
            "{} bytes after its parts",
            d.len().saturating_sub(payload_at)
        )));
    }
    Ok((
        ChunkOf {
            base,
            resolution_ms,
        },
        parts,
    ))
}

/// The first multiple of `r` at or after `t`.
pub(crate) fn ceil_to(t: i64, r: i64) -> i64 {
    let down = t.div_euclid(r).saturating_mul(r);
    if down == t { t } else { down.saturating_add(r) }
}

/// The last multiple of `r` at or before `t`.
pub(crate) fn floor_to(t: i64, r: i64) -> i64 {
    t.div_euclid(r).saturating_mul(r)
}

/// The group of the bucket labelled `label`: labels `(g·S, (g+1)·S]`, `S` = [`GROUP_BUCKETS`]`·r`.
pub(crate) fn group_of(label: i64, r: i64) -> i64 {
    (label - 1).div_euclid(GROUP_BUCKETS * r)
}

/// The labels `(first, last)` of group `g`.
pub(crate) fn group_labels(g: i64, r: i64) -> (i64, i64) {
    let span = GROUP_BUCKETS * r;
    (g * span + r, g * span + span)
}

/// A tier's buckets of one series, by ascending label: every aggregate but `end` has a value
/// for every label; `end` only for the buckets with a sample on their label.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Buckets {
    pub(crate) labels: Vec<i64>,
    pub(crate) count: Vec<f64>,
    pub(crate) sum: Vec<f64>,
    pub(crate) min: Vec<f64>,
    pub(crate) max: Vec<f64>,
    pub(crate) last: Vec<f64>,
    pub(crate) end: (Vec<i64>, Vec<f64>),
}

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

impl Buckets {
    /// The column of `agg` (`end`'s values; its labels are `end.0`).
    pub(crate) fn column(&self, agg: Agg) -> (&[i64], &[f64]) {
        match agg {
            Agg::Count => (&self.labels, &self.count),
            Agg::Sum => (&self.labels, &self.sum),
            Agg::Min => (&self.labels, &self.min),
            Agg::Max => (&self.labels, &self.max),
            Agg::Last => (&self.labels, &self.last),
            Agg::End => (&self.end.0, &self.end.1),
        }
    }

    /// Rebuilds from one column per aggregate (as decoded from storage; those of `read`
    /// only, the others left NaN), and whether the dense columns agree on their labels. When
    /// they do not (a build killed between writing a group's aggregates: some of the new
    /// ones are there, beside the old ones), the labels all of them hold are kept: the old
    /// and new chunks of a group agree on those.
    pub(crate) fn from_columns(
        mut columns: BTreeMap<Agg, (Vec<i64>, Vec<f64>)>,
        read: &[Agg],
    ) -> (Buckets, bool) {
        let dense: Vec<Agg> = [Agg::Count, Agg::Sum, Agg::Min, Agg::Max, Agg::Last]
            .into_iter()
            .filter(|a| *a == Agg::Count || read.contains(a))
            .collect();
        let mut labels: Option<Vec<i64>> = None;
        let mut consistent = true;
        for agg in &dense {
            let l = columns.get(agg).map(|c| c.0.clone()).unwrap_or_default();
            labels = Some(match labels {
                None => l,
                Some(common) => {
                    if common != l {
                        consistent = false;
                    }
                    common
                        .into_iter()
                        .filter(|x| l.binary_search(x).is_ok())
                        .collect()
                }
            });
        }
        let labels = labels.unwrap_or_default();
        let mut column = |agg: Agg| -> Vec<f64> {
            if !dense.contains(&agg) {
                return vec![f64::NAN; labels.len()];
            }
            let (l, v) = columns.remove(&agg).unwrap_or_default();
            labels
                .iter()
                .map(|x| l.binary_search(x).map_or(f64::NAN, |i| v[i]))
                .collect()
        };
        let (count, sum, min, max, last) = (
            column(Agg::Count),
            column(Agg::Sum),
            column(Agg::Min),
            column(Agg::Max),
            column(Agg::Last),
        );
        let end = columns.remove(&Agg::End).unwrap_or_default();
        let buckets = Buckets {
            labels,
            count,
            sum,
            min,
            max,
            last,
            end,
        };
        (buckets, consistent)
    }

    /// Appends the buckets of the samples `ts`/`vs` (ascending, unique timestamps, none in a
    /// bucket already held), computed with PromQL's own arithmetic; staleness markers are
    /// left out, as PromQL leaves them out of every window.
    pub(crate) fn add_samples(&mut self, ts: &[i64], vs: &[f64], r: i64) {
        let mut window: (Vec<i64>, Vec<f64>) = (Vec::new(), Vec::new());
        let mut i = 0;
        while i < ts.len() {
            let label = ceil_to(ts[i], r);
            let mut j = i;
            window.0.clear();
            window.1.clear();
            while j < ts.len() && ts[j] <= label {
                if !is_stale(vs[j]) {
                    window.0.push(ts[j]);
                    window.1.push(vs[j]);
                }
                j += 1;
            }
            i = j;
            let (wt, wv) = (&window.0, &window.1);
            let Some(&last) = wv.last() else {
                continue;
            };
            let span = (label - r, label);
            let apply = |f: RangeFunction| f.apply_columns(wt, wv, span).unwrap_or(f64::NAN);
            self.labels.push(label);
            self.count.push(wv.len() as f64);
            self.sum.push(apply(RangeFunction::SumOverTime));
            self.min.push(apply(RangeFunction::MinOverTime));
            self.max.push(apply(RangeFunction::MaxOverTime));
            self.last.push(last);
            if wt.last() == Some(&label) {
                self.end.0.push(label);
                self.end.1.push(last);
            }
        }
    }

    /// Keeps the buckets whose label `keep` accepts.
    pub(crate) fn retain(&mut self, keep: impl Fn(i64) -> bool) {
        let mut out = Buckets::default();
        for i in 0..self.labels.len() {
            if keep(self.labels[i]) {
                out.labels.push(self.labels[i]);
                out.count.push(self.count[i]);
                out.sum.push(self.sum[i]);
                out.min.push(self.min[i]);
                out.max.push(self.max[i]);
                out.last.push(self.last[i]);
            }
        }
        for (&l, &v) in self.end.0.iter().zip(&self.end.1) {
            if keep(l) {
                out.end.0.push(l);
                out.end.1.push(v);
            }
        }
        *self = out;
    }

    /// Appends `other`, whose labels all come after this one's.
    pub(crate) fn append(&mut self, mut other: Buckets) {
        self.labels.append(&mut other.labels);
        self.count.append(&mut other.count);
        self.sum.append(&mut other.sum);
        self.min.append(&mut other.min);
        self.max.append(&mut other.max);
        self.last.append(&mut other.last);
        self.end.0.append(&mut other.end.0);
        self.end.1.append(&mut other.end.1);
    }
}

/// The aggregates [`answer`] reads for `function`.
pub(crate) fn needs(function: RangeFunction) -> &'static [Agg] {
    match function {
        RangeFunction::SumOverTime | RangeFunction::AvgOverTime => {
            &[Agg::Count, Agg::End, Agg::Sum]
        }
        RangeFunction::MinOverTime => &[Agg::Count, Agg::End, Agg::Min],
        RangeFunction::MaxOverTime => &[Agg::Count, Agg::End, Agg::Max],
        RangeFunction::LastOverTime => &[Agg::Count, Agg::End, Agg::Last],
        _ => &[Agg::Count, Agg::End],
    }
}

/// The range functions a tier answers (see [`answer`]).
pub(crate) fn answers(function: RangeFunction) -> bool {
    matches!(
        function,
        RangeFunction::CountOverTime
            | RangeFunction::SumOverTime
            | RangeFunction::AvgOverTime
            | RangeFunction::MinOverTime
            | RangeFunction::MaxOverTime
            | RangeFunction::LastOverTime
            | RangeFunction::PresentOverTime
    )
}

/// Whether the tier of resolution `r` answers `request`: a range function it answers, a
/// range that is a multiple of `r`, and every evaluation time a multiple of `r`.
pub(crate) fn tier_answers(request: &RollupRequest, r: i64) -> bool {
    let RollupKind::Range { function, range_ms } = request.kind else {
        return false;
    };
    answers(function)
        && range_ms > 0
        && range_ms % r == 0
        && request.times.iter().all(|t| t.rem_euclid(r) == 0)
}

/// Evaluates `function` over windows `[t - range_ms, t]` for each of `times` (all multiples
/// of `r`, as [`tier_answers`] requires) from the buckets, appending `(index_base + i, value,
/// t)`. `false` (and `out` as it was) when a sum the mean needs is not finite: PromQL's mean
/// then takes a path that buckets cannot follow, and the raw points must answer.
pub(crate) fn answer(
    function: RangeFunction,
    range_ms: i64,
    times: &[i64],
    index_base: u32,
    b: &Buckets,
    out: &mut Vec<(u32, f64, i64)>,
) -> bool {
    let at = out.len();
    let (mut lo, mut hi, mut e) = (0usize, 0usize, 0usize);
    let (mut wt, mut wv) = (Vec::new(), Vec::new());
    for (i, &t) in times.iter().enumerate() {
        let start = t.saturating_sub(range_ms);
        while hi < b.labels.len() && b.labels[hi] <= t {
            hi += 1;
        }
        while lo < hi && b.labels[lo] <= start {
            lo += 1;
        }
        while e < b.end.0.len() && b.end.0[e] < start {
            e += 1;
        }
        let end = (e < b.end.0.len() && b.end.0[e] == start).then(|| b.end.1[e]);
        let count = b.count[lo..hi].iter().sum::<f64>() + f64::from(u8::from(end.is_some()));
        if count == 0.0 {
            continue;
        }
        // The window's values in time order: the end of the bucket before, then the buckets.
        let mut gather = |column: &[f64]| {
            wt.clear();
            wv.clear();
            if let Some(v) = end {
                wt.push(start);
                wv.push(v);
            }
            wt.extend_from_slice(&b.labels[lo..hi]);
            wv.extend_from_slice(&column[lo..hi]);
        };
        let value = match function {
            RangeFunction::CountOverTime => count,
            RangeFunction::PresentOverTime => 1.0,
            RangeFunction::LastOverTime => {
                if hi > lo {
                    b.last[hi - 1]
                } else {
                    end.unwrap_or(f64::NAN)
                }
            }
            RangeFunction::MinOverTime | RangeFunction::MaxOverTime => {
                gather(if function == RangeFunction::MinOverTime {
                    &b.min
                } else {
                    &b.max
                });
                function
                    .apply_columns(&wt, &wv, (start, t))
                    .unwrap_or(f64::NAN)
            }
            RangeFunction::SumOverTime | RangeFunction::AvgOverTime => {
                gather(&b.sum);
                let sum = RangeFunction::SumOverTime
                    .apply_columns(&wt, &wv, (start, t))
                    .unwrap_or(f64::NAN);
                if function == RangeFunction::SumOverTime {
                    sum
                } else if sum.is_finite() {
                    sum / count
                } else {
                    out.truncate(at);
                    return false;
                }
            }
            _ => {
                out.truncate(at);
                return false;
            }
        };
        out.push((index_base + i as u32, value, t));
    }
    true
}

/// How far each tier is built, and where series were written to below it since.
///
/// File `<data_dir>/ROLLUPS`, replaced whole (written beside it, fsynced, renamed), one
/// entry a line, each ending with the CRC-32 of the rest of it:
///
/// - `1 \t tier \t resolution_ms \t built_until`: every bucket labelled at or before
///   `built_until` is built, for every series;
/// - `1 \t dirty \t resolution_ms \t series \t from`: points of `series` at or after `from`
///   were written or deleted after the buckets of that tier were built, which must be built
///   again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TierState {
    pub(crate) built_until: BTreeMap<i64, i64>,
    /// By tier resolution and series.
    pub(crate) dirty: BTreeMap<(i64, SeriesId), i64>,
}

impl TierState {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// The newest label any tier is built to (`i64::MIN` when none is).
    pub(crate) fn newest_built(&self) -> i64 {
        self.built_until.values().copied().max().unwrap_or(i64::MIN)
    }

    /// The state in `dir` (empty when there is no file).
    pub(crate) fn load(dir: &Path) -> Result<TierState> {
        let path = Self::path(dir);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TierState::default()),
            Err(e) => return Err(Error::io(path.display(), e)),
        };
        Self::parse(&text, &path.display().to_string())
    }

    /// The state in `text` (the file's bytes), damage named as in `source`.
    pub(crate) fn parse(text: &[u8], source: &str) -> Result<TierState> {
        let mut state = TierState::default();
        let mut offset = 0u64;
        for line in text.split_inclusive(|&b| b == b'\n') {
            let bad = || Error::Corrupt {
                source_name: source.to_owned(),
                offset,
                reason: "a line of the rollup tiers' state fails its check".to_owned(),
            };
            let body = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.strip_suffix('\n'))
                .ok_or_else(bad)?;
            let (body, crc) = body.rsplit_once('\t').ok_or_else(bad)?;
            if u32::from_str_radix(crc, 16).ok() != Some(crc32fast::hash(body.as_bytes())) {
                return Err(bad());
            }
            let f: Vec<&str> = body.split('\t').collect();
            match f[..] {
                ["1", "tier", r, until] => {
                    let (r, until) = (
                        r.parse().map_err(|_| bad())?,
                        until.parse().map_err(|_| bad())?,
                    );
                    state.built_until.insert(r, until);
                }
                ["1", "dirty", r, series, from] => {
                    let (r, s, from) = (
                        r.parse().map_err(|_| bad())?,
                        series.parse().map_err(|_| bad())?,
                        from.parse().map_err(|_| bad())?,
                    );
                    state.dirty.insert((r, SeriesId(s)), from);
                }
                _ => return Err(bad()),
            }
            offset += line.len() as u64;
        }
        Ok(state)
    }

    /// Durably replaces the state in `dir`.
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        tsdb_core::marker::replace(&Self::path(dir), &self.encode())
    }

    /// The file's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut text = String::new();
        let mut line = |body: String| {
            let crc = crc32fast::hash(body.as_bytes());
            text.push_str(&format!("{body}\t{crc:08x}\n"));
        };
        for (r, until) in &self.built_until {
            line(format!("1\ttier\t{r}\t{until}"));
        }
        for ((r, series), from) in &self.dirty {
            line(format!("1\tdirty\t{r}\t{}\t{from}", series.0));
        }
        text.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(function: RangeFunction, range_ms: i64, times: Vec<i64>) -> RollupRequest {
        RollupRequest {
            matchers: Vec::new(),
            times,
            kind: RollupKind::Range { function, range_ms },
        }
    }

    const FUNCTIONS: [RangeFunction; 7] = [
        RangeFunction::CountOverTime,
        RangeFunction::SumOverTime,
        RangeFunction::AvgOverTime,
        RangeFunction::MinOverTime,
        RangeFunction::MaxOverTime,
        RangeFunction::LastOverTime,
        RangeFunction::PresentOverTime,
    ];

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => (-10_000i64..10_000).prop_map(|c| c as f64 / 100.0),
            1 => Just(f64::from_bits(STALE_NAN_BITS)),
            1 => Just(f64::NAN),
            1 => Just(-0.0),
            1 => Just(0.0),
            1 => any::<f64>(),
        ]
    }

    /// Within rounding for sums and means (a sum of bucket sums); bit for bit otherwise.
    fn same(function: RangeFunction, a: f64, b: f64) -> bool {
        if a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) {
            return true;
        }
        matches!(
            function,
            RangeFunction::SumOverTime | RangeFunction::AvgOverTime
        ) && (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    proptest! {
        /// A tier's answer to every function it answers is the answer over the raw samples.
        #[test]
        fn tier_answers_equal_raw_answers(
            steps in proptest::collection::vec((1i64..40, value()), 0..300),
            r in prop_oneof![Just(10i64), Just(30), Just(60)],
            windows in 1i64..6,
            step in 1i64..4,
            first in -20i64..40,
            function in 0usize..FUNCTIONS.len(),
        ) {
            let function = FUNCTIONS[function];
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            let mut t = -200;
            for (gap, v) in steps {
                t += gap;
                ts.push(t);
                vs.push(v);
            }
            let mut b = Buckets::default();
            b.add_samples(&ts, &vs, r);
            let times: Vec<i64> = (0..40).map(|i| (first + i * step) * r).collect();
            let req = request(function, windows * r, times.clone());
            prop_assert!(tier_answers(&req, r));
            let (mut raw, mut scratch) = (Vec::new(), (Vec::new(), Vec::new()));
            req.evaluate(&ts, &vs, &mut scratch, &mut raw);
            let mut tiered = Vec::new();
            if answer(function, windows * r, &times, 0, &b, &mut tiered) {
                prop_assert_eq!(raw.len(), tiered.len(), "{:?} {:?}", raw, tiered);
                for (x, y) in raw.iter().zip(&tiered) {
                    prop_assert_eq!((x.0, x.2), (y.0, y.2));
                    prop_assert!(same(function, x.1, y.1), "{:?}: raw {} tier {}", function, x.1, y.1);
                }
            } else {
                prop_assert!(function == RangeFunction::AvgOverTime);
                prop_assert!(tiered.is_empty());
            }
        }

        /// Buckets built in pieces, group by group, equal buckets built at once.
        #[test]
        fn buckets_build_in_pieces(gaps in proptest::collection::vec(1i64..50, 1..400), cut in 0usize..400) {
            let r = 20;
            let ts: Vec<i64> = gaps.iter().scan(0i64, |t, g| { *t += g; Some(*t) }).collect();
            let vs: Vec<f64> = ts.iter().map(|&t| (t % 7) as f64).collect();
            let mut whole = Buckets::default();
            whole.add_samples(&ts, &vs, r);
            let split = ceil_to(ts[cut.min(ts.len() - 1)], r);
            let at = ts.partition_point(|&t| t <= split);
            let mut pieces = Buckets::default();
            pieces.add_samples(&ts[..at], &vs[..at], r);
            let mut rest = Buckets::default();
            rest.add_samples(&ts[at..], &vs[at..], r);
            pieces.append(rest);
            prop_assert_eq!(whole, pieces);
        }
    }

    #[test]
    fn derived_ids_lead_back_to_their_series() {
        let base = SeriesId(0x1234_5678_9abc_def0);
        let (five, hour) = (derived_id(base, 300_000), derived_id(base, 3_600_000));
        assert!(five != base && hour != base && five != hour);
        assert_eq!(SeriesId(five.0 ^ tier_key(300_000)), base);
    }

    #[test]
    fn containers_round_trip_and_refuse_damage() {
        let part = |agg, codec, start, data: &'static [u8]| {
            (
                agg,
                CompressedBlock {
                    codec,
                    series_id: SeriesId(0),
                    start_time: start,
                    end_time: 9,
                    point_count: 2,
                    data: Bytes::from_static(data),
                },
            )
        };
        let parts = [
            part(Agg::Count, CodecId::PCO, 5, b"counts"),
            part(Agg::End, CodecId::GORILLA, 9, b"e"),
        ];
        let of = ChunkOf {
            base: SeriesId(77),
            resolution_ms: 60_000,
        };
        let block = wrap(of, &parts);
        assert_eq!(block.codec, CodecId::ROLLUP);
        assert_eq!(
            (block.start_time, block.end_time, block.point_count),
            (5, 9, 2)
        );
        let (back, inside) = unwrap(&block).expect("a container just written");
        assert_eq!(back, of);
        assert_eq!(inside.len(), 2);
        for ((agg, want), (got_agg, got)) in parts.iter().zip(&inside) {
            assert_eq!(agg, got_agg);
            assert_eq!(
                (
                    got.codec,
                    got.start_time,
                    got.end_time,
                    got.point_count,
                    &got.data[..]
                ),
                (
                    want.codec,
                    want.start_time,
                    want.end_time,
                    want.point_count,
                    &want.data[..]
                )
            );
        }
        let mut other = block.clone();
        other.series_id = SeriesId(78);
        assert!(matches!(unwrap(&other), Err(Error::Corrupt { .. })));
        for cut in 0..block.data.len() {
            let mut short = block.clone();
            short.data = short.data.slice(..cut);
            assert!(
                matches!(unwrap(&short), Err(Error::Corrupt { .. })),
                "cut at {cut}"
            );
        }
    }

    proptest! {
        /// Any bytes: an error or parts that lie inside the block, never a panic.
        #[test]
        fn any_container_bytes_are_refused_or_parsed(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let block = CompressedBlock {
                codec: CodecId::ROLLUP,
                series_id: SeriesId(0),
                start_time: 0,
                end_time: 0,
                point_count: 0,
                data: Bytes::from(data),
            };
            let _ = unwrap(&block);
        }

        /// Any bytes in the state file: a state or `Corrupt`, never a panic.
        #[test]
        fn any_state_file_bytes_are_refused_or_parsed(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::write(TierState::path(dir.path()), &data).expect("write");
            match TierState::load(dir.path()) {
                Ok(_) | Err(Error::Corrupt { .. }) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }

    #[test]
    fn the_fuzzing_entry_points_parse_what_was_written() {
        let part = CompressedBlock {
            codec: CodecId::PCO,
            series_id: SeriesId(0),
            start_time: 1,
            end_time: 2,
            point_count: 2,
            data: Bytes::from_static(b"xy"),
        };
        let of = ChunkOf {
            base: SeriesId(5),
            resolution_ms: 1000,
        };
        assert!(crate::fuzzing::rollup_container(
            &wrap(of, &[(Agg::Count, part)]).data
        ));
        assert!(!crate::fuzzing::rollup_container(b"\x01short"));
        let mut state = TierState::default();
        state.built_until.insert(1000, 7);
        state.dirty.insert((1000, SeriesId(3)), -2);
        assert!(crate::fuzzing::rollup_state(&state.encode()));
        assert!(!crate::fuzzing::rollup_state(b"1\ttier\t1\t2\tdeadbeef\n"));
    }

    #[test]
    fn state_round_trips_and_names_a_damaged_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            TierState::load(dir.path()).expect("no file"),
            TierState::default()
        );
        let mut state = TierState::default();
        state.built_until.insert(300_000, 1_700_000_100_000);
        state.dirty.insert((300_000, SeriesId(u64::MAX)), -5);
        state.store(dir.path()).expect("stored");
        assert_eq!(TierState::load(dir.path()).expect("loaded"), state);
        let path = TierState::path(dir.path());
        let mut bytes = std::fs::read(&path).expect("read");
        let second = bytes.iter().position(|&b| b == b'\n').expect("two lines") + 1;
        bytes[second + 3] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        match TierState::load(dir.path()) {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, second as u64),
            other => panic!("damage not reported: {other:?}"),
        }
    }

    #[test]
    fn groups_tile_the_labels() {
        let r = 300_000;
        for label in [r, 2 * r, GROUP_BUCKETS * r, GROUP_BUCKETS * r + r, -r, 0] {
            let (first, last) = group_labels(group_of(label, r), r);
            assert!(first <= label && label <= last, "{label}: {first}..{last}");
        }
    }
}
