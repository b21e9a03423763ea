//! Reads: a series' points over a range from its stored chunks and its head buffers.

use tsdb_core::{ChunkReference, CodecId, CompressedBlock, Error, Result, SeriesId, TimeRange};

use super::{Inner, Selector};
use crate::read::{Columns, SeriesPoints, merge};

impl Inner {
    pub(super) async fn query(
        &self,
        selector: Selector,
        range: TimeRange,
    ) -> Result<Vec<SeriesPoints>> {
        let ids = match selector {
            Selector::Series(id) => vec![id],
            Selector::Matchers(m) => self.engines.index.find_series(&m).await?,
        };
        let mut out = Vec::new();
        for id in ids {
            let Some(labels) = self.engines.index.series_labels(id).await? else {
                continue;
            };
            let (timestamps, values) = self.read_series(id, range).await?;
            if !timestamps.is_empty() {
                out.push(SeriesPoints {
                    series_id: id,
                    labels,
                    timestamps,
                    values,
                });
            }
        }
        Ok(out)
    }

    /// Every point of one series in `range`, merged oldest source first: stored chunks by
    /// location (write order), then sealed heads, then the live head.
    pub(crate) async fn read_series(&self, series: SeriesId, range: TimeRange) -> Result<Columns> {
        // Memory first: a head sealed and indexed meanwhile is then read twice (harmless),
        // never missed.
        let memory = self.heads.snapshot(series)?;
        let mut chunks = self.engines.index.query_chunks(series, range).await?;
        chunks.sort_by_key(|c| c.location);
        let mut sources: Vec<Columns> = Vec::with_capacity(chunks.len() + memory.sealed.len() + 1);
        for chunk in &chunks {
            sources.push(self.read_chunk(chunk).await?);
        }
        for sealed in &memory.sealed {
            sources.push(sealed.head.points()?);
        }
        if let Some(head) = memory.head {
            sources.push(head);
        }
        Ok(merge(sources, range))
    }

    /// The merged points of a series' stored chunks in `range` (no memory sources).
    pub(super) async fn read_stored(&self, series: SeriesId, range: TimeRange) -> Result<Columns> {
        let mut chunks = self.engines.index.query_chunks(series, range).await?;
        chunks.sort_by_key(|c| c.location);
        let mut sources = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            sources.push(self.read_chunk(chunk).await?);
        }
        Ok(merge(sources, range))
    }

    /// Appends the points of one stored chunk to the columns, in the chunk's order: Gorilla
    /// blocks are decoded in bulk straight into the columns' spare room.
    pub(crate) async fn read_chunk_into(
        &self,
        chunk: &ChunkReference,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<()> {
        let block = self.engines.storage.read_chunk(&chunk.location).await?;
        if block.codec != CodecId::GORILLA {
            let (t, v) = self.read_chunk(chunk).await?;
            ts.extend_from_slice(&t);
            vs.extend_from_slice(&v);
            return Ok(());
        }
        let mut dec = tsdb_gorilla::Decoder::new(&block.data)?;
        if dec.point_count() != u64::from(block.point_count) {
            return Err(point_count_mismatch(&block, dec.point_count()));
        }
        let at = ts.len();
        let n = block.point_count as usize;
        ts.resize(at + n, 0);
        vs.resize(at + n, 0.0);
        let got = dec.decode_into(&mut ts[at..], &mut vs[at..])?;
        ts.truncate(at + got);
        vs.truncate(at + got);
        Ok(())
    }

    /// One stored chunk as columns: Gorilla blocks are decoded in bulk straight into the
    /// columns, other codecs through their `Compressor`.
    pub(crate) async fn read_chunk(&self, chunk: &ChunkReference) -> Result<Columns> {
        let block = self.engines.storage.read_chunk(&chunk.location).await?;
        if block.codec == CodecId::GORILLA {
            return decode_gorilla(&block);
        }
        let codec = self
            .codecs
            .get(&block.codec)
            .ok_or(Error::UnsupportedCodec {
                engine: "database",
                codec: block.codec,
            })?;
        let points = codec.decompress(&block).await?;
        Ok(points.iter().map(|p| (p.timestamp, p.value)).unzip())
    }
}

pub(super) fn point_count_mismatch(block: &CompressedBlock, found: u64) -> Error {
    Error::corrupt(
        format_args!("chunk of series {}", block.series_id),
        0,
        format_args!(
            "block holds {found} points, its header says {}",
            block.point_count
        ),
    )
}

/// Decodes a Gorilla block into columns, checking its point count against its header.
pub(super) fn decode_gorilla(block: &CompressedBlock) -> Result<Columns> {
    let mut dec = tsdb_gorilla::Decoder::new(&block.data)?;
    if dec.point_count() != u64::from(block.point_count) {
        return Err(point_count_mismatch(block, dec.point_count()));
    }
    let n = block.point_count as usize;
    let (mut ts, mut vs) = (vec![0i64; n], vec![0f64; n]);
    let got = dec.decode_into(&mut ts, &mut vs)?;
    ts.truncate(got);
    vs.truncate(got);
    Ok((ts, vs))
}
