#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use tsdb_core::{
    CodecId, CompressedBlock, Compressor, DataPoint, Error, Result, SeriesId, TimeRange,
    async_trait, codec,
};

mod paged;
pub use paged::PAGE_POINTS;

/// The format version written in the first byte of every block (blocks of version 1, one
/// pcodec file a column without pages, and of version 2, whose pages all store their
/// timestamps, are still read).
pub const FORMAT_VERSION: u8 = 3;

/// Version 2: pages as in version 3, but every page stores its timestamps.
const FORMAT_VERSION_2: u8 = 2;

/// The name used in [`Error::Corrupt`] errors.
const SOURCE: &str = "pco block";

/// Most points in one block: decoding allocates the columns the header announces, so the
/// header's count is bounded (1,048,576 points, 16 MiB of columns).
pub const MAX_BLOCK_POINTS: usize = 1 << 20;

/// The header of version 1 blocks, which have no value-encoding byte.
const HEADER_LEN_V1: usize = 13;

use tsdb_core::decimal::POWERS_OF_TEN;
pub use tsdb_core::decimal::{MAX_DECIMAL_DIGITS, decimal_digits};

/// How a block's values are encoded (the byte after the point count): as floats, or as
/// decimals with `encoding - 1` digits.
const VALUES_AS_FLOATS: u8 = 0;

/// The cold-tier codec as a [`Compressor`] (codec id [`CodecId::PCO`]): timestamps and
/// values as two [pcodec](https://docs.rs/pco) columns, which finds the decimal structure,
/// common deltas and repeats that Gorilla's XOR cannot use.
///
/// Lossless for every `f64` bit pattern (NaN payloads and `-0.0` included) and every `i64`
/// timestamp, in any order. Slower to encode than Gorilla and meant for data that has gone
/// cold (rewritten by compaction), not for the write path.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tsdb_core::Result<()> {
/// use tsdb_core::{Compressor, DataPoint, SeriesId};
/// use tsdb_pco::PcoCompressor;
/// let points: Vec<DataPoint> = (0..1_000)
///     .map(|i| DataPoint::new(SeriesId(7), 1_700_000_000_000 + i * 10_000, (5_000 + i % 37) as f64 / 100.0))
///     .collect();
/// let block = PcoCompressor::new().compress(&points).await?;
/// assert!(block.data.len() < points.len() * 2, "{} bytes", block.data.len());
/// assert_eq!(PcoCompressor::new().decompress(&block).await?, points);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PcoCompressor {
    _private: (),
}

/// What one decode appended to the columns: how many points, and their smallest and largest
/// timestamp (`None` when no point); and what the block says of itself, when its own table
/// tells (its point count and span, whatever part of it was decoded).
#[derive(Clone, Copy, Debug)]
struct Decoded {
    points: usize,
    span: Option<TimeRange>,
    block: Option<(usize, TimeRange)>,
}

impl Decoded {
    const NOTHING: Self = Self {
        points: 0,
        span: None,
        block: None,
    };

    /// Checks what a decode of `block` gave against its header: every point when `whole`
    /// (the count and span equal the header's), otherwise some of them (no more points and
    /// within its span).
    fn check(self, block: &CompressedBlock, whole: bool) -> Result<()> {
        let count = block.point_count as usize;
        if let Some((points, span)) = self.block
            && (points != count || span.start != block.start_time || span.end != block.end_time)
        {
            return Err(corrupt(
                1,
                format_args!(
                    "the block's table says {points} points over [{}, {}], its header \
                     {count} over [{}, {}]",
                    span.start, span.end, block.start_time, block.end_time
                ),
            ));
        }
        if (whole && self.points != count) || self.points > count {
            return Err(corrupt(
                1,
                format_args!(
                    "block holds {} points but its header says {count}",
                    self.points
                ),
            ));
        }
        let Some(span) = self.span else {
            return Ok(());
        };
        let agrees = if whole {
            span.start == block.start_time && span.end == block.end_time
        } else {
            block.start_time <= span.start && span.end <= block.end_time
        };
        if !agrees {
            return Err(corrupt(
                1,
                format_args!(
                    "timestamps span [{}, {}], the block says [{}, {}]",
                    span.start, span.end, block.start_time, block.end_time
                ),
            ));
        }
        Ok(())
    }
}

fn corrupt(offset: usize, reason: impl std::fmt::Display) -> Error {
    Error::corrupt(SOURCE, offset as u64, reason)
}

/// Decodes one pcodec column into `dst`, which it must fill exactly.
fn column<T: pco::data_types::Number>(
    src: &[u8],
    dst: &mut [T],
    offset: usize,
    what: &str,
) -> Result<()> {
    let progress = pco::standalone::simple_decompress_into(src, dst)
        .map_err(|e| corrupt(offset, format_args!("{what} column: {e}")))?;
    if progress.n_processed != dst.len() || !progress.finished {
        return Err(corrupt(
            offset,
            format_args!(
                "{what} column holds {} numbers{}, the header says {}",
                progress.n_processed,
                if progress.finished { "" } else { " or more" },
                dst.len()
            ),
        ));
    }
    Ok(())
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// Decodes a block of format version 1: a 13-byte header (version, count, the two column
/// lengths) and two pcodec standalone files, values always as floats.
fn decode_v1(data: &[u8], timestamps: &mut Vec<i64>, values: &mut Vec<f64>) -> Result<usize> {
    let count = u32_at(data, 1).ok_or_else(|| corrupt(1, "block ends inside its header"))? as usize;
    let ts_len =
        u32_at(data, 5).ok_or_else(|| corrupt(5, "block ends inside its header"))? as usize;
    let vs_len =
        u32_at(data, 9).ok_or_else(|| corrupt(9, "block ends inside its header"))? as usize;
    let ts_end = HEADER_LEN_V1 + ts_len;
    if ts_end.checked_add(vs_len) != Some(data.len()) {
        return Err(corrupt(
            5,
            format_args!(
                "columns of {ts_len} and {vs_len} bytes after the header, but the block has {} bytes",
                data.len().saturating_sub(HEADER_LEN_V1)
            ),
        ));
    }
    if count == 0 {
        if data.len() != HEADER_LEN_V1 {
            return Err(corrupt(HEADER_LEN_V1, "bytes after an empty block"));
        }
        return Ok(0);
    }
    if count > MAX_BLOCK_POINTS {
        return Err(corrupt(
            1,
            format_args!(
                "header says {count} points, more than a block holds ({MAX_BLOCK_POINTS})"
            ),
        ));
    }
    // Into columns of the announced size: what a damaged column says of its own length
    // allocates nothing, and a column holding more or fewer numbers is damage.
    let (t_at, v_at) = (timestamps.len(), values.len());
    timestamps.resize(t_at + count, 0);
    values.resize(v_at + count, 0.0);
    column(
        &data[HEADER_LEN_V1..ts_end],
        &mut timestamps[t_at..],
        HEADER_LEN_V1,
        "timestamp",
    )?;
    column(&data[ts_end..], &mut values[v_at..], ts_end, "value")?;
    Ok(count)
}

impl PcoCompressor {
    /// The codec.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes the columns (of equal length) into a block's bytes (format version 3).
    pub fn encode_columns(&self, timestamps: &[i64], values: &[f64]) -> Result<Vec<u8>> {
        if timestamps.len() != values.len() {
            return Err(Error::invalid_input(format_args!(
                "{} timestamps but {} values",
                timestamps.len(),
                values.len()
            )));
        }
        if timestamps.len() > MAX_BLOCK_POINTS {
            return Err(Error::invalid_input(format_args!(
                "a block holds at most {MAX_BLOCK_POINTS} points, got {}",
                timestamps.len()
            )));
        }
        if timestamps.is_empty() {
            let mut out = vec![FORMAT_VERSION, 0, 0, 0, 0, VALUES_AS_FLOATS];
            out.extend_from_slice(&(paged::PAGE_POINTS as u32).to_le_bytes());
            return Ok(out);
        }
        // Values printed as decimals are stored as the integers they are in their last
        // digit: pcodec's float modes would spend bits on each value's rounding error.
        paged::encode(timestamps, values, decimal_digits(values))
    }

    /// Decodes a block's bytes, appending to the columns; checks that both columns hold the
    /// count the header says. On error the columns may hold part of the block.
    pub fn decode_columns(
        &self,
        data: &[u8],
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<usize> {
        Ok(self.decode(data, None, timestamps, values)?.points)
    }

    /// [`Self::decode_columns`] restricted to the pages whose points overlap `range`: every
    /// point of the block inside `range` is appended, with at most the rest of their pages
    /// (blocks of format version 1 are decoded whole).
    pub fn decode_columns_in(
        &self,
        data: &[u8],
        range: TimeRange,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<usize> {
        Ok(self.decode(data, Some(range), timestamps, values)?.points)
    }

    fn decode(
        &self,
        data: &[u8],
        range: Option<TimeRange>,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<Decoded> {
        match *data.first().ok_or_else(|| corrupt(0, "empty block"))? {
            1 => {
                let at = timestamps.len();
                let points = decode_v1(data, timestamps, values)?;
                let (start, end, _) = codec::span(&timestamps[at..]);
                Ok(Decoded {
                    points,
                    span: (points > 0).then_some(TimeRange { start, end }),
                    block: None,
                })
            }
            version @ (FORMAT_VERSION_2 | FORMAT_VERSION) => {
                paged::decode(data, version, range, timestamps, values)
            }
            version => Err(corrupt(
                0,
                format_args!(
                    "unknown format version {version} (this decoder reads 1 to {FORMAT_VERSION})"
                ),
            )),
        }
    }

    fn block(
        &self,
        series: SeriesId,
        timestamps: &[i64],
        values: &[f64],
    ) -> Result<CompressedBlock> {
        let data = self.encode_columns(timestamps, values)?;
        Ok(codec::block_of(CodecId::PCO, series, timestamps, data))
    }

    /// [`Compressor::decompress_into`] without `async`, checked against the block's codec,
    /// point count and time range.
    pub fn decompress_columns(
        &self,
        block: &CompressedBlock,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<()> {
        codec::expect_codec(block, CodecId::PCO, "pco")?;
        self.decode(&block.data, None, timestamps, values)?
            .check(block, true)
    }
}

#[async_trait]
impl Compressor for PcoCompressor {
    fn name(&self) -> &'static str {
        "pco"
    }

    fn codec_id(&self) -> CodecId {
        CodecId::PCO
    }

    async fn compress(&self, points: &[DataPoint]) -> Result<CompressedBlock> {
        let (series, ts, vs) = codec::split_points(points)?;
        self.block(series, &ts, &vs)
    }

    async fn decompress(&self, block: &CompressedBlock) -> Result<Vec<DataPoint>> {
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        self.decompress_columns(block, &mut ts, &mut vs)?;
        Ok(ts
            .into_iter()
            .zip(vs)
            .map(|(t, v)| DataPoint::new(block.series_id, t, v))
            .collect())
    }

    async fn compress_columns(
        &self,
        series: SeriesId,
        timestamps: &[i64],
        values: &[f64],
    ) -> Result<CompressedBlock> {
        self.block(series, timestamps, values)
    }

    async fn decompress_into(
        &self,
        block: &CompressedBlock,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<()> {
        self.decompress_columns(block, timestamps, values)
    }

    async fn decompress_range_into(
        &self,
        block: &CompressedBlock,
        range: TimeRange,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<()> {
        if range.start <= block.start_time && block.end_time <= range.end {
            return self.decompress_columns(block, timestamps, values);
        }
        if block.codec != CodecId::PCO {
            return Err(Error::UnsupportedCodec {
                engine: "pco",
                codec: block.codec,
            });
        }
        // Only part of the block: its points must still be within what its header says.
        self.decode(&block.data, Some(range), timestamps, values)?
            .check(block, false)
    }

    /// A block whose values are decimals holds no NaN (decoding checks nothing else: a
    /// damaged encoding byte fails the decode that would have answered).
    fn may_hold_nan(&self, block: &CompressedBlock) -> bool {
        !(block
            .data
            .first()
            .is_some_and(|v| [FORMAT_VERSION_2, FORMAT_VERSION].contains(v))
            && block
                .data
                .get(5)
                .is_some_and(|&e| e != VALUES_AS_FLOATS && e <= MAX_DECIMAL_DIGITS + 1))
    }
}
