//! Reads: a series' points over a range from its stored chunks and its head buffers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tsdb_core::{
    ChunkReference, CodecId, CompressedBlock, Compressor, Error, Result, SeriesId, TimeRange, codec,
};

use super::{Inner, Selector};
use crate::damage::Damage;
use crate::read::{Columns, SeriesPoints, merge};
use crate::tombstones::remove_hidden;

/// Decoding stored chunks: the codecs the database reads (Gorilla and the configured one),
/// and what reads decoded or answered from headers.
#[derive(Debug)]
pub(crate) struct ChunkDecoder {
    codecs: HashMap<CodecId, Arc<dyn Compressor>>,
    decoded: AtomicU64,
    answered_by_header: AtomicU64,
}

impl ChunkDecoder {
    /// Reads the built-in codecs' blocks (Gorilla, packed, and pco with the `pco` feature) and
    /// those of the `configured` ones.
    pub(crate) fn new(configured: &[&Arc<dyn Compressor>]) -> Self {
        let mut codecs: HashMap<CodecId, Arc<dyn Compressor>> = HashMap::new();
        codecs.insert(
            CodecId::GORILLA,
            Arc::new(tsdb_gorilla::GorillaCompressor::new()),
        );
        codecs.insert(
            CodecId::PACKED,
            Arc::new(tsdb_packed::PackedCompressor::new()),
        );
        #[cfg(feature = "pco")]
        codecs.insert(CodecId::PCO, Arc::new(tsdb_pco::PcoCompressor::new()));
        for codec in configured {
            codecs.insert(codec.codec_id(), Arc::clone(codec));
        }
        ChunkDecoder {
            codecs,
            decoded: AtomicU64::new(0),
            answered_by_header: AtomicU64::new(0),
        }
    }

    /// The codec that wrote `block`.
    pub(crate) fn codec_of(&self, block: &CompressedBlock) -> Result<&Arc<dyn Compressor>> {
        self.codecs
            .get(&block.codec)
            .ok_or(Error::UnsupportedCodec {
                engine: "database",
                codec: block.codec,
            })
    }

    /// Decodes `block` (read from `chunk`) onto the columns through its codec, checked
    /// against its header: every point when `range` covers the block, otherwise at least
    /// those inside `range` (a codec may skip parts of the block that lie outside it).
    pub(crate) async fn decode_into(
        &self,
        chunk: &ChunkReference,
        block: &CompressedBlock,
        range: TimeRange,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<Ascending> {
        let codec = self.codec_of(block)?;
        self.decoded.fetch_add(1, Ordering::Relaxed);
        let at = ts.len();
        let whole = range.start <= block.start_time && block.end_time <= range.end;
        if whole {
            codec.decompress_into(block, ts, vs).await?;
        } else {
            codec.decompress_range_into(block, range, ts, vs).await?;
        }
        check_decoded(block, chunk, codec.name(), &ts[at..], vs.len() - at, whole)
    }

    /// Notes a chunk whose header answered a read.
    pub(crate) fn answered_by_header(&self) {
        self.answered_by_header.fetch_add(1, Ordering::Relaxed);
    }

    /// `(chunks decoded, chunks answered by their header)` since open.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.decoded.load(Ordering::Relaxed),
            self.answered_by_header.load(Ordering::Relaxed),
        )
    }
}

impl Inner {
    pub(super) async fn query(
        &self,
        selector: Selector,
        range: TimeRange,
    ) -> Result<Vec<SeriesPoints>> {
        self.query_with(selector, range, None).await
    }

    /// [`Self::query`]; with `partial`, damage does not fail the read: what it touches is
    /// pushed there and the series is read from what is left.
    pub(super) async fn query_with(
        &self,
        selector: Selector,
        range: TimeRange,
        mut partial: Option<&mut Vec<Damage>>,
    ) -> Result<Vec<SeriesPoints>> {
        let _pin = self.compactor.pin();
        // Damage whose series is unknown might concern any selection, found or not.
        if let Some(d) = self.damage.blocking_unknown(range) {
            match partial.as_deref_mut() {
                Some(warnings) => warnings.push(d),
                None => return Err(d.to_error_unknown()),
            }
        }
        let ids = match selector {
            Selector::Series(id) => vec![id],
            Selector::Matchers(m) => self.index_read(self.engines.index.find_series(&m).await)?,
        };
        let mut out = Vec::new();
        for id in ids {
            let Some(labels) = self.index_read(self.engines.index.series_labels(id).await)? else {
                continue;
            };
            let (timestamps, values) = self
                .read_series_with(id, range, partial.as_deref_mut())
                .await?;
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

    /// Passes an index answer through, noting a lost index state so that the maintenance task
    /// rebuilds it at once.
    pub(crate) fn index_read<T>(&self, answer: Result<T>) -> Result<T> {
        if let Err(Error::StateLost { .. }) = &answer {
            self.index_lost.store(true, Ordering::SeqCst);
            self.lifecycle.wake_maintenance();
        }
        answer
    }

    /// The series' indexed chunks overlapping `range`, after checking the damage log: a read
    /// that recorded damage touches fails with [`Error::Corrupt`] (or, with `partial`, notes
    /// the damage and goes on with what is left).
    pub(crate) async fn chunks_to_read(
        &self,
        series: SeriesId,
        range: TimeRange,
        partial: Option<&mut Vec<Damage>>,
    ) -> Result<Vec<ChunkReference>> {
        if !self.damage.is_empty() {
            match partial {
                Some(warnings) => {
                    for d in self.damage.touching(series, range) {
                        if !warnings.contains(&d) {
                            warnings.push(d);
                        }
                    }
                }
                None => {
                    if let Some(d) = self.damage.blocking(series, range) {
                        return Err(d.to_error(series));
                    }
                }
            }
        }
        let mut chunks = self.index_read(self.engines.index.query_chunks(series, range).await)?;
        chunks.sort_by_key(|c| c.location);
        Ok(chunks)
    }

    /// Every point of one series in `range`, merged oldest source first: stored chunks by
    /// location (write order), then sealed heads, then the live head.
    pub(super) async fn read_series_with(
        &self,
        series: SeriesId,
        range: TimeRange,
        mut partial: Option<&mut Vec<Damage>>,
    ) -> Result<Columns> {
        // Memory first: a head sealed and indexed meanwhile is then read twice (harmless),
        // never missed.
        let memory = self.heads.snapshot(series)?;
        let chunks = self
            .chunks_to_read(series, range, partial.as_deref_mut())
            .await?;
        let mut sources: Vec<Columns> = Vec::with_capacity(chunks.len() + memory.sealed.len() + 1);
        for chunk in &chunks {
            match self.read_chunk(chunk, range).await {
                Ok(columns) => sources.push(columns),
                Err(e) => match (&e, partial.as_deref_mut()) {
                    (Error::Corrupt { .. }, Some(warnings)) => {
                        warnings.extend(self.damage.touching(series, range));
                        warnings.dedup();
                    }
                    _ => return Err(e),
                },
            }
        }
        sources.extend(memory.into_sources()?);
        Ok(merge(sources, range))
    }

    /// The merged points of a series' stored chunks in `range` (no memory sources, no
    /// tombstones applied: what storage holds); chunks that fail their checks are left out
    /// (and recorded as damage).
    pub(super) async fn read_stored(&self, series: SeriesId, range: TimeRange) -> Result<Columns> {
        let mut chunks = self.engines.index.query_chunks(series, range).await?;
        chunks.sort_by_key(|c| c.location);
        let mut sources = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            // What storage holds, deleted points too: replay must see them as stored.
            match self.read_chunk_raw(chunk, range).await {
                Ok(columns) => sources.push(columns),
                // Recorded as damage; the WAL's copy of its points (if any) is replayed.
                Err(Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(merge(sources, range))
    }

    /// Appends the points of one stored chunk to the columns, in the chunk's order, without
    /// those deleted: Gorilla blocks are decoded in bulk straight into the columns' spare room.
    pub(crate) async fn read_chunk_into(
        &self,
        chunk: &ChunkReference,
        range: TimeRange,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<Ascending> {
        let at = ts.len();
        let result = self.decode_chunk_into(chunk, range, ts, vs).await;
        if result.is_err() {
            ts.truncate(at);
            vs.truncate(at);
        }
        let ascending = self.note_damaged(chunk, result)?;
        remove_hidden(ts, vs, at, &self.tombstones.hiding(chunk));
        Ok(ascending)
    }

    /// Records a chunk that failed its checks on read in the damage log, so that the loss is
    /// still known after a reopen (when storage may no longer list the chunk at all).
    pub(crate) fn note_damaged<T>(&self, chunk: &ChunkReference, result: Result<T>) -> Result<T> {
        if let Err(Error::Corrupt {
            source_name,
            offset,
            reason,
        }) = &result
        {
            let recorded = self.damage.record(Damage {
                source: source_name.clone(),
                offset: *offset,
                length: chunk.location.length,
                reason: format!(
                    "chunk at {} failed its checks on read: {reason}",
                    chunk.location
                ),
                series: Some(chunk.series_id),
                range: Some(TimeRange {
                    start: chunk.start_time,
                    end: chunk.end_time,
                }),
                accepted: false,
            });
            if let Err(e) = recorded {
                tracing::error!("could not record damage: {e}");
            }
        }
        result
    }

    /// Decodes one stored chunk through the codec that wrote it (whatever it is), then checks
    /// what came out against the chunk's header: as many points as it says, every timestamp
    /// inside its time range. A codec that loses or invents points gives [`Error::Corrupt`],
    /// never a silently short answer.
    async fn decode_chunk_into(
        &self,
        chunk: &ChunkReference,
        range: TimeRange,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<Ascending> {
        let block = self.engines.storage.read_chunk(&chunk.location).await?;
        self.decoder.decode_into(chunk, &block, range, ts, vs).await
    }

    /// One stored chunk as columns, decoded by its codec and checked against its header,
    /// without the points deleted: every point inside `range`, and maybe others.
    pub(crate) async fn read_chunk(
        &self,
        chunk: &ChunkReference,
        range: TimeRange,
    ) -> Result<Columns> {
        let (mut ts, mut vs) = self.read_chunk_raw(chunk, range).await?;
        remove_hidden(&mut ts, &mut vs, 0, &self.tombstones.hiding(chunk));
        Ok((ts, vs))
    }

    /// [`Self::read_chunk`] with the deleted points left in (what storage holds).
    async fn read_chunk_raw(&self, chunk: &ChunkReference, range: TimeRange) -> Result<Columns> {
        let mut columns = (Vec::new(), Vec::new());
        let result = self
            .decode_chunk_into(chunk, range, &mut columns.0, &mut columns.1)
            .await
            .map(|_| columns);
        self.note_damaged(chunk, result)
    }
}

/// Whether decoded timestamps are strictly ascending (as every chunk the database writes is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ascending(pub(crate) bool);

/// Checks decoded columns against the block's header (see `decode_chunk_into`), in one pass
/// that also tells whether the timestamps are strictly ascending.
fn check_decoded(
    block: &CompressedBlock,
    chunk: &ChunkReference,
    codec: &str,
    ts: &[i64],
    values: usize,
    whole: bool,
) -> Result<Ascending> {
    let wrong = |what: String| {
        Err(Error::corrupt(
            format_args!("chunk at {} of series {}", chunk.location, block.series_id),
            0,
            format_args!("codec {codec} ({}) decoded {what}", block.codec),
        ))
    };
    let count = block.point_count as usize;
    if ts.len() != values || ts.len() > count || (whole && ts.len() != count) {
        return wrong(format!(
            "{} timestamps and {values} values, the header says {} points",
            ts.len(),
            block.point_count
        ));
    }
    if ts.is_empty() {
        return Ok(Ascending(true));
    }
    let (lo, hi, ascending) = codec::span(ts);
    let outside = lo < block.start_time || block.end_time < hi;
    if outside || (whole && (lo != block.start_time || hi != block.end_time)) {
        return wrong(format!(
            "timestamps spanning [{lo}, {hi}], the header says [{}, {}]",
            block.start_time, block.end_time
        ));
    }
    Ok(Ascending(ascending))
}
