//! Plain data types shared by every engine.

use std::fmt;

use bytes::Bytes;

use crate::error::{Error, Result};

/// Identifies one time series. Derived from its labels by [`crate::Labels::series_id`], or
/// chosen by the caller.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeriesId(pub u64);

impl SeriesId {
    /// The id as a plain number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for SeriesId {
    fn from(id: u64) -> Self {
        SeriesId(id)
    }
}

impl From<SeriesId> for u64 {
    fn from(id: SeriesId) -> Self {
        id.0
    }
}

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeriesId({:016x})", self.0)
    }
}

/// One sample: a value of a series at a moment.
///
/// `timestamp` is milliseconds since the Unix epoch by the database's convention; codecs and
/// storage treat it as an opaque `i64` and accept any value, in any order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DataPoint {
    /// The series the point belongs to.
    pub series_id: SeriesId,
    /// Milliseconds since the Unix epoch (UTC).
    pub timestamp: i64,
    /// The sample value. Every bit pattern is kept, NaN payloads included.
    pub value: f64,
}

impl DataPoint {
    /// A point of `series_id` at `timestamp` (ms since the epoch) with `value`.
    pub fn new(series_id: impl Into<SeriesId>, timestamp: i64, value: f64) -> Self {
        DataPoint {
            series_id: series_id.into(),
            timestamp,
            value,
        }
    }

    /// Bit-exact equality: values are compared by `f64::to_bits`, so NaNs with equal payloads
    /// are equal and `0.0` differs from `-0.0`.
    pub fn bit_eq(&self, other: &DataPoint) -> bool {
        self.series_id == other.series_id
            && self.timestamp == other.timestamp
            && self.value.to_bits() == other.value.to_bits()
    }
}

/// A span of time, **inclusive at both ends**: `start <= t && t <= end`.
///
/// Inclusive ends are the rule everywhere in Gorilla TSDB: queries, chunk bounds, retention.
/// They let [`TimeRange::ALL`] cover every `i64` and make a single instant `start == end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeRange {
    /// First instant in the range (inclusive).
    pub start: i64,
    /// Last instant in the range (inclusive).
    pub end: i64,
}

impl TimeRange {
    /// Every representable instant.
    pub const ALL: TimeRange = TimeRange {
        start: i64::MIN,
        end: i64::MAX,
    };

    /// The range `[start, end]`; [`Error::InvalidInput`] when `start > end`.
    pub fn new(start: i64, end: i64) -> Result<Self> {
        if start > end {
            return Err(Error::invalid_input(format_args!(
                "time range start {start} is after its end {end}"
            )));
        }
        Ok(TimeRange { start, end })
    }

    /// The single instant `t`.
    pub const fn at(t: i64) -> Self {
        TimeRange { start: t, end: t }
    }

    /// True when `t` lies in the range.
    pub const fn contains(&self, t: i64) -> bool {
        self.start <= t && t <= self.end
    }

    /// True when the two ranges share at least one instant.
    pub const fn overlaps(&self, other: &TimeRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// Identifies the codec that wrote a [`CompressedBlock`].
///
/// Ids below `0x8000` are assigned by this project (`1` is Gorilla, `2` the cold-tier pco
/// codec, `3` the database's rollup container, `4` the bit-packed column codec); third-party codecs pick one in `0x8000..=0xFFFF`. `0` is never a valid codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CodecId(pub u16);

impl CodecId {
    /// The Gorilla codec of the `tsdb-gorilla` crate.
    pub const GORILLA: CodecId = CodecId(1);
    /// The cold-tier codec of the `tsdb-pco` crate (pcodec columns).
    pub const PCO: CodecId = CodecId(2);
    /// The database's container of rollup-tier chunks (a chunk of another codec, with the
    /// series, tier and aggregate it holds); never a codec of the write path.
    pub const ROLLUP: CodecId = CodecId(3);
    /// The bit-packed column codec of the `tsdb-packed` crate (fast to decode).
    pub const PACKED: CodecId = CodecId(4);
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Points of one series as encoded by a [`crate::Compressor`].
///
/// `start_time` and `end_time` are the smallest and largest timestamp in the block (inclusive),
/// which is not necessarily the first and last point when points were given out of order. An
/// empty block has `point_count == 0` and `start_time == end_time == 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressedBlock {
    /// The codec that wrote `data`.
    pub codec: CodecId,
    /// The series all points belong to.
    pub series_id: SeriesId,
    /// Smallest timestamp in the block.
    pub start_time: i64,
    /// Largest timestamp in the block.
    pub end_time: i64,
    /// Number of points encoded in `data`.
    pub point_count: u32,
    /// The encoded bytes; `data.len()` is the block's size. Cheap to clone and may borrow a
    /// memory-mapped file.
    pub data: Bytes,
}

impl CompressedBlock {
    /// The block's time span.
    pub fn time_range(&self) -> TimeRange {
        TimeRange {
            start: self.start_time,
            end: self.end_time,
        }
    }
}

/// Where a storage engine keeps one chunk. The three numbers are the engine's to interpret
/// (for `LocalDiskEngine`: segment number, byte offset and record length); callers store and
/// pass them back unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkLocation {
    /// Segment (file, object, ...) number.
    pub segment: u64,
    /// Byte offset inside the segment.
    pub offset: u64,
    /// Length in bytes of what is stored there.
    pub length: u64,
}

impl fmt::Display for ChunkLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {} offset {} length {}",
            self.segment, self.offset, self.length
        )
    }
}

/// What an index knows about one stored chunk: where it is and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkReference {
    /// The series of every point in the chunk.
    pub series_id: SeriesId,
    /// Where the storage engine put it.
    pub location: ChunkLocation,
    /// Smallest timestamp in the chunk (inclusive).
    pub start_time: i64,
    /// Largest timestamp in the chunk (inclusive).
    pub end_time: i64,
    /// Number of points.
    pub point_count: u32,
    /// The codec that encoded it.
    pub codec: CodecId,
}

impl ChunkReference {
    /// The reference for `block` stored at `location`.
    pub fn new(block: &CompressedBlock, location: ChunkLocation) -> Self {
        ChunkReference {
            series_id: block.series_id,
            location,
            start_time: block.start_time,
            end_time: block.end_time,
            point_count: block.point_count,
            codec: block.codec,
        }
    }

    /// The chunk's time span.
    pub fn time_range(&self) -> TimeRange {
        TimeRange {
            start: self.start_time,
            end: self.end_time,
        }
    }
}
