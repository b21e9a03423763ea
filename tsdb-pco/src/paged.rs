//! Format versions 2 and 3: both columns as one pcodec chunk each, cut into pages of
//! [`PAGE_POINTS`] points that decode on their own, with a page table giving each page's
//! byte lengths and time span, so that a read of a short range decodes only the pages it
//! overlaps. From version 3, a page whose timestamps are evenly spaced stores none (its span
//! and point count give them), and a block whose pages all are has no timestamp column. The
//! layout is in the crate README.

use tsdb_core::{Result, TimeRange};

use crate::{
    Decoded, MAX_BLOCK_POINTS, MAX_DECIMAL_DIGITS, POWERS_OF_TEN, VALUES_AS_FLOATS, corrupt,
};

/// Points a page holds (the last page holds the rest).
pub const PAGE_POINTS: usize = 2048;

/// Fixed bytes before the varint sections: version, count, value encoding, page size.
const FIXED_LEN: usize = 10;

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads varints from a byte slice, naming the offset of what fails.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn varint(&mut self, what: &str) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.data.get(self.at) else {
                return Err(corrupt(self.at, format_args!("block ends inside {what}")));
            };
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt(self.at, format_args!("{what} is not a varint")))
    }

    fn length(&mut self, what: &str) -> Result<usize> {
        let v = self.varint(what)?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= self.data.len())
            .ok_or_else(|| {
                corrupt(
                    self.at,
                    format_args!("{what} of {v} bytes is past the block"),
                )
            })
    }
}

fn failed(e: pco::errors::PcoError) -> tsdb_core::Error {
    tsdb_core::Error::invalid_input(format_args!("pco: {e}"))
}

/// Encodes the columns (of equal length, at most [`MAX_BLOCK_POINTS`], not empty), the
/// values either as floats or (`decimals` = `(digits, integers)`) as decimals.
pub(crate) fn encode(
    timestamps: &[i64],
    values: &[f64],
    decimals: Option<(u8, Vec<i64>)>,
) -> Result<Vec<u8>> {
    let count = timestamps.len();
    let pages: Vec<usize> = (0..count.div_ceil(PAGE_POINTS))
        .map(|p| PAGE_POINTS.min(count - p * PAGE_POINTS))
        .collect();
    let config =
        pco::ChunkConfig::default().with_paging_spec(pco::PagingSpec::Exact(pages.clone()));
    let mut spans = Vec::with_capacity(pages.len());
    let mut at = 0usize;
    for &n in &pages {
        let page = &timestamps[at..at + n];
        let (lo, hi, _) = tsdb_core::codec::span(page);
        spans.push(((lo, hi), evenly_spaced(page)));
        at += n;
    }
    let file = pco::wrapped::FileCompressor::default();
    let mut header = Vec::new();
    file.write_header(&mut header).map_err(failed)?;
    let mut ts = if spans.iter().all(|&(_, even)| even) {
        None
    } else {
        Some(file.chunk_compressor(timestamps, &config).map_err(failed)?)
    };
    let (encoding, mut vs) = match &decimals {
        Some((digits, ks)) => (
            digits + 1,
            file.chunk_compressor(ks, &config).map_err(failed)?,
        ),
        None => (
            VALUES_AS_FLOATS,
            file.chunk_compressor(values, &config).map_err(failed)?,
        ),
    };
    let (mut ts_meta, mut vs_meta) = (Vec::new(), Vec::new());
    if let Some(ts) = &ts {
        ts.write_meta(&mut ts_meta).map_err(failed)?;
    }
    vs.write_meta(&mut vs_meta).map_err(failed)?;
    let mut table = Vec::new();
    let mut body = Vec::new();
    let mut previous_min = 0i64;
    for (p, &((min, max), even)) in spans.iter().enumerate() {
        let before = body.len();
        if let Some(ts) = ts.as_mut().filter(|_| !even) {
            ts.write_page(p, &mut body).map_err(failed)?;
        }
        let ts_len = body.len() - before;
        if ts_len == 0 && !even {
            // A length of zero says "evenly spaced": pcodec never writes an empty page.
            return Err(tsdb_core::Error::invalid_input(
                "pcodec wrote an empty timestamp page",
            ));
        }
        vs.write_page(p, &mut body).map_err(failed)?;
        let vs_len = body.len() - before - ts_len;
        push_varint(&mut table, ts_len as u64);
        push_varint(&mut table, vs_len as u64);
        push_varint(&mut table, zigzag(min.wrapping_sub(previous_min)));
        push_varint(&mut table, max.wrapping_sub(min) as u64);
        previous_min = min;
    }
    let mut out = Vec::with_capacity(FIXED_LEN + 16 + table.len() + header.len() + body.len());
    out.push(crate::FORMAT_VERSION);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.push(encoding);
    out.extend_from_slice(&(PAGE_POINTS as u32).to_le_bytes());
    push_varint(&mut out, header.len() as u64);
    push_varint(&mut out, ts_meta.len() as u64);
    push_varint(&mut out, vs_meta.len() as u64);
    out.extend_from_slice(&table);
    out.extend_from_slice(&header);
    out.extend_from_slice(&ts_meta);
    out.extend_from_slice(&vs_meta);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Whether `page` (not empty) is `first, first + step, first + 2 step, ...` for a `step >= 0`:
/// then its span and length give every timestamp.
fn evenly_spaced(page: &[i64]) -> bool {
    let step = match page {
        [first, second, ..] => i128::from(*second) - i128::from(*first),
        _ => 0,
    };
    step >= 0
        && page
            .iter()
            .zip(0i128..)
            .all(|(&t, k)| i128::from(t) == i128::from(page[0]) + k * step)
}

/// Writes the evenly spaced timestamps of a page spanning `span` into `dst` (not empty);
/// fails when the span cannot be cut into `dst.len() - 1` equal steps.
fn fill_evenly(dst: &mut [i64], span: TimeRange) -> std::result::Result<(), &'static str> {
    let width = i128::from(span.end) - i128::from(span.start);
    let steps = dst.len() as i128 - 1;
    let step = match steps {
        _ if width < 0 => return Err("a page's span ends before it starts"),
        0 if width == 0 => 0,
        0 => return Err("a one-point page without timestamps spans more than one instant"),
        _ if width % steps != 0 => {
            return Err("a page without timestamps has a span not divisible into its points");
        }
        _ => width / steps,
    };
    // Each timestamp lies within the span, so adding the step in wrapping 64-bit arithmetic
    // gives it exactly (the step itself may exceed `i64::MAX` when the span is that wide).
    let step = step as u64 as i64;
    let mut t = span.start;
    for slot in dst {
        *slot = t;
        t = t.wrapping_add(step);
    }
    Ok(())
}

/// The smallest range holding both `a` and `b`.
fn hull(a: TimeRange, b: TimeRange) -> TimeRange {
    TimeRange {
        start: a.start.min(b.start),
        end: a.end.max(b.end),
    }
}

/// One page as the table describes it.
struct Page {
    points: usize,
    ts: std::ops::Range<usize>,
    vs: std::ops::Range<usize>,
    span: TimeRange,
}

/// Decodes the pages of a block of `version` 2 or 3 that overlap `range` (every page without
/// one) and appends their points inside `range` to the columns (all the points of a page
/// whose timestamps are out of order); returns the points appended and their span. Each
/// page's timestamps are checked against its span in the table first.
pub(crate) fn decode(
    data: &[u8],
    version: u8,
    range: Option<TimeRange>,
    timestamps: &mut Vec<i64>,
    values: &mut Vec<f64>,
) -> Result<Decoded> {
    let fixed = data
        .get(..FIXED_LEN)
        .ok_or_else(|| corrupt(data.len(), "block ends inside its header"))?;
    let count = u32::from_le_bytes([fixed[1], fixed[2], fixed[3], fixed[4]]) as usize;
    let encoding = fixed[5];
    let page_points = u32::from_le_bytes([fixed[6], fixed[7], fixed[8], fixed[9]]) as usize;
    if encoding > MAX_DECIMAL_DIGITS + 1 {
        return Err(corrupt(
            5,
            format_args!("unknown value encoding {encoding}"),
        ));
    }
    if count > MAX_BLOCK_POINTS {
        return Err(corrupt(
            1,
            format_args!(
                "header says {count} points, more than a block holds ({MAX_BLOCK_POINTS})"
            ),
        ));
    }
    if count == 0 {
        return if data.len() == FIXED_LEN {
            Ok(Decoded::NOTHING)
        } else {
            Err(corrupt(FIXED_LEN, "bytes after an empty block"))
        };
    }
    if page_points == 0 || page_points > MAX_BLOCK_POINTS {
        return Err(corrupt(6, format_args!("pages of {page_points} points")));
    }
    let mut cur = Cursor {
        data,
        at: FIXED_LEN,
    };
    let header_len = cur.length("the pcodec header length")?;
    let ts_meta_len = cur.length("the timestamp metadata length")?;
    let vs_meta_len = cur.length("the value metadata length")?;
    let page_count = count.div_ceil(page_points);
    let mut pages = Vec::with_capacity(page_count);
    let mut previous_min = 0i64;
    let mut body_len = 0usize;
    for p in 0..page_count {
        let ts_len = cur.length("a page's timestamp length")?;
        let vs_len = cur.length("a page's value length")?;
        let min = previous_min.wrapping_add(unzigzag(cur.varint("a page's first timestamp")?));
        let max = min.wrapping_add(cur.varint("a page's time span")? as i64);
        previous_min = min;
        let points = page_points.min(count - p * page_points);
        pages.push((
            points,
            ts_len,
            vs_len,
            TimeRange {
                start: min,
                end: max,
            },
        ));
        body_len = body_len.saturating_add(ts_len).saturating_add(vs_len);
    }
    let header_at = cur.at;
    let ts_meta_at = header_at.saturating_add(header_len);
    let vs_meta_at = ts_meta_at.saturating_add(ts_meta_len);
    let body_at = vs_meta_at.saturating_add(vs_meta_len);
    if body_at.checked_add(body_len) != Some(data.len()) {
        return Err(corrupt(
            FIXED_LEN,
            format_args!(
                "sections of {} bytes after the page table, but the block has {} bytes there",
                body_at.saturating_add(body_len).saturating_sub(header_at),
                data.len().saturating_sub(header_at)
            ),
        ));
    }
    let mut at = body_at;
    let pages: Vec<Page> = pages
        .into_iter()
        .map(|(points, ts_len, vs_len, span)| {
            let page = Page {
                points,
                ts: at..at + ts_len,
                vs: at + ts_len..at + ts_len + vs_len,
                span,
            };
            at += ts_len + vs_len;
            page
        })
        .collect();
    let wanted: Vec<&Page> = pages
        .iter()
        .filter(|p| range.is_none_or(|r| p.span.start <= r.end && r.start <= p.span.end))
        .collect();
    // What the table says of the whole block, for the check against its header.
    let whole_span = pages
        .iter()
        .map(|p| p.span)
        .reduce(hull)
        .map(|span| (count, span));
    if wanted.is_empty() {
        return Ok(Decoded {
            block: whole_span,
            ..Decoded::NOTHING
        });
    }
    let pco_err = |at: usize, what: &'static str| {
        move |e: pco::errors::PcoError| corrupt(at, format_args!("{what}: {e}"))
    };
    let (file, _) = pco::wrapped::FileDecompressor::new(&data[header_at..ts_meta_at])
        .map_err(pco_err(header_at, "pcodec header"))?;
    // Version 3 leaves out the timestamp column when every page is evenly spaced.
    let mut ts_chunk = if version >= 3 && ts_meta_len == 0 {
        None
    } else {
        Some(
            file.chunk_decompressor::<i64, _>(&data[ts_meta_at..vs_meta_at])
                .map_err(pco_err(ts_meta_at, "timestamp metadata"))?
                .0,
        )
    };
    let scale = (encoding != VALUES_AS_FLOATS).then(|| POWERS_OF_TEN[usize::from(encoding - 1)]);
    let mut int_chunk = None;
    let mut float_chunk = None;
    match scale {
        Some(_) => {
            int_chunk = Some(
                file.chunk_decompressor::<i64, _>(&data[vs_meta_at..body_at])
                    .map_err(pco_err(vs_meta_at, "value metadata"))?
                    .0,
            );
        }
        None => {
            float_chunk = Some(
                file.chunk_decompressor::<f64, _>(&data[vs_meta_at..body_at])
                    .map_err(pco_err(vs_meta_at, "value metadata"))?
                    .0,
            );
        }
    }
    let total: usize = wanted.iter().map(|p| p.points).sum();
    let (t_at, v_at) = (timestamps.len(), values.len());
    timestamps.resize(t_at + total, 0);
    values.resize(v_at + total, 0.0);
    // Decimal values decode as integers into one page-sized buffer, then convert.
    let mut ints = Vec::new();
    let mut out = 0usize;
    let mut span: Option<TimeRange> = None;
    for page in wanted {
        let n = page.points;
        let dst = &mut timestamps[t_at + out..t_at + out + n];
        // Whether the page's timestamps are known to be in order (then the points inside
        // the range are found by two binary searches).
        let sorted = if version >= 3 && page.ts.is_empty() {
            fill_evenly(dst, page.span).map_err(|why| corrupt(page.ts.start, why))?;
            true
        } else {
            let chunk = ts_chunk.as_mut().ok_or_else(|| {
                corrupt(
                    page.ts.start,
                    "a page stores timestamps but the block has no timestamp column",
                )
            })?;
            let mut pd = chunk
                .page_decompressor(&data[page.ts.clone()], n)
                .map_err(pco_err(page.ts.start, "timestamp page"))?;
            let progress = pd
                .read(dst)
                .map_err(pco_err(page.ts.start, "timestamp page"))?;
            if progress.n_processed != n || !progress.finished {
                return Err(corrupt(
                    page.ts.start,
                    "timestamp page holds fewer points than its table says",
                ));
            }
            // (An evenly spaced page spans its table's span by construction.)
            let (lo, hi, ascending) = tsdb_core::codec::span(dst);
            if lo != page.span.start || hi != page.span.end {
                return Err(corrupt(
                    page.ts.start,
                    format_args!(
                        "timestamp page spans [{lo}, {hi}], its table says [{}, {}]",
                        page.span.start, page.span.end
                    ),
                ));
            }
            ascending
        };
        // The points of the page a range read keeps: those inside the range (the contract
        // lets the others go, and the reader would only skip them), every point otherwise.
        let keep = match range {
            Some(r) if sorted => {
                dst.partition_point(|&t| t < r.start)..dst.partition_point(|&t| t <= r.end)
            }
            _ => 0..n,
        };
        let dst = &mut values[v_at + out..v_at + out + n];
        let progress = match (scale, &mut int_chunk, &mut float_chunk) {
            (Some(scale), Some(chunk), _) => {
                if ints.len() < n {
                    ints.resize(n, 0i64);
                }
                let ints = &mut ints[..n];
                let mut pd = chunk
                    .page_decompressor(&data[page.vs.clone()], n)
                    .map_err(pco_err(page.vs.start, "value page"))?;
                let progress = pd
                    .read(ints)
                    .map_err(pco_err(page.vs.start, "value page"))?;
                // Only the kept ones are converted, straight to where they stay.
                for (v, &k) in dst.iter_mut().zip(&ints[keep.clone()]) {
                    *v = k as f64 / scale;
                }
                progress
            }
            (None, _, Some(chunk)) => {
                let mut pd = chunk
                    .page_decompressor(&data[page.vs.clone()], n)
                    .map_err(pco_err(page.vs.start, "value page"))?;
                let progress = pd.read(dst).map_err(pco_err(page.vs.start, "value page"))?;
                dst.copy_within(keep.clone(), 0);
                progress
            }
            _ => return Err(corrupt(5, "no value decoder")),
        };
        if progress.n_processed != n || !progress.finished {
            return Err(corrupt(
                page.vs.start,
                "value page holds fewer points than its table says",
            ));
        }
        let kept = keep.len();
        if kept == 0 {
            continue;
        }
        let page_span = if kept == n {
            page.span
        } else {
            let ts = &mut timestamps[t_at + out..t_at + out + n];
            ts.copy_within(keep, 0);
            TimeRange {
                start: ts[0],
                end: ts[kept - 1],
            }
        };
        span = Some(span.map_or(page_span, |s| hull(s, page_span)));
        out += kept;
    }
    timestamps.truncate(t_at + out);
    values.truncate(v_at + out);
    Ok(Decoded {
        points: out,
        span,
        block: whole_span,
    })
}
