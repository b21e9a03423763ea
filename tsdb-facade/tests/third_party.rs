//! Engines written by a third party, plugged in through the builder: the database uses the
//! configured codec for every chunk it writes and reads, checks what any codec decodes
//! against the chunk's header, and refuses codecs that claim a reserved id.

use std::sync::{Arc, Mutex};

use gorilla_tsdb::core::async_trait;
use gorilla_tsdb::{
    ChunkLocation, ChunkReference, CodecId, CompressedBlock, Compressor, DataPoint, DatabaseConfig,
    Error, LabelMatcher, Labels, Result, SeriesId, StorageEngine, TimeRange, TimeSeriesDBBuilder,
};

/// A plain codec: 16 bytes a point, little-endian timestamp then value bits.
#[derive(Debug)]
struct RawCodec {
    id: CodecId,
    /// Drops the last point on decode (a lossy bug a third party might ship).
    lossy: bool,
}

#[async_trait]
impl Compressor for RawCodec {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn codec_id(&self) -> CodecId {
        self.id
    }

    async fn compress(&self, points: &[DataPoint]) -> Result<CompressedBlock> {
        let Some(first) = points.first() else {
            return Ok(CompressedBlock {
                codec: self.id,
                series_id: SeriesId(0),
                start_time: 0,
                end_time: 0,
                point_count: 0,
                data: gorilla_tsdb::core::Bytes::new(),
            });
        };
        let mut data = Vec::with_capacity(points.len() * 16);
        for (index, p) in points.iter().enumerate() {
            if p.series_id != first.series_id {
                return Err(Error::MixedSeries {
                    expected: first.series_id,
                    found: p.series_id,
                    index,
                });
            }
            data.extend_from_slice(&p.timestamp.to_le_bytes());
            data.extend_from_slice(&p.value.to_bits().to_le_bytes());
        }
        Ok(CompressedBlock {
            codec: self.id,
            series_id: first.series_id,
            start_time: points.iter().map(|p| p.timestamp).min().unwrap_or(0),
            end_time: points.iter().map(|p| p.timestamp).max().unwrap_or(0),
            point_count: u32::try_from(points.len()).map_err(Error::invalid_input)?,
            data: data.into(),
        })
    }

    async fn decompress(&self, block: &CompressedBlock) -> Result<Vec<DataPoint>> {
        if block.codec != self.id {
            return Err(Error::UnsupportedCodec {
                engine: "raw",
                codec: block.codec,
            });
        }
        if block.data.len() != block.point_count as usize * 16 {
            return Err(Error::corrupt(
                "raw block",
                0,
                "length disagrees with the count",
            ));
        }
        let mut out: Vec<DataPoint> = block
            .data
            .chunks_exact(16)
            .map(|c| {
                let mut t = [0u8; 8];
                let mut v = [0u8; 8];
                t.copy_from_slice(&c[..8]);
                v.copy_from_slice(&c[8..]);
                DataPoint::new(
                    block.series_id,
                    i64::from_le_bytes(t),
                    f64::from_bits(u64::from_le_bytes(v)),
                )
            })
            .collect();
        let (lo, hi) = out.iter().fold((i64::MAX, i64::MIN), |(lo, hi), p| {
            (lo.min(p.timestamp), hi.max(p.timestamp))
        });
        if !out.is_empty() && (lo, hi) != (block.start_time, block.end_time) {
            return Err(Error::corrupt("raw block", 0, "time range disagrees"));
        }
        if self.lossy {
            out.pop();
        }
        Ok(out)
    }
}

/// Chunks in a vector: the simplest third-party storage.
#[derive(Debug, Default)]
struct VecStorage {
    chunks: Mutex<Vec<Option<CompressedBlock>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl StorageEngine for VecStorage {
    fn name(&self) -> &'static str {
        "vec"
    }

    async fn write_chunk(&self, block: &CompressedBlock) -> Result<ChunkLocation> {
        if block.point_count == 0 {
            return Err(Error::invalid_input("empty block"));
        }
        let mut chunks = lock(&self.chunks);
        chunks.push(Some(block.clone()));
        Ok(ChunkLocation {
            segment: 0,
            offset: chunks.len() as u64 - 1,
            length: block.data.len() as u64,
        })
    }

    async fn read_chunk(&self, location: &ChunkLocation) -> Result<CompressedBlock> {
        lock(&self.chunks)
            .get(location.offset as usize)
            .cloned()
            .flatten()
            .ok_or(Error::ChunkNotFound {
                engine: "vec",
                location: *location,
            })
    }

    async fn list_chunks(&self) -> Result<Vec<ChunkReference>> {
        Ok(lock(&self.chunks)
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref().map(|b| {
                    ChunkReference::new(
                        b,
                        ChunkLocation {
                            segment: 0,
                            offset: i as u64,
                            length: b.data.len() as u64,
                        },
                    )
                })
            })
            .collect())
    }

    async fn delete_chunks(&self, locations: &[ChunkLocation]) -> Result<()> {
        let mut chunks = lock(&self.chunks);
        for l in locations {
            if let Some(c) = chunks.get_mut(l.offset as usize) {
                *c = None;
            }
        }
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }
}

fn config(dir: &std::path::Path) -> DatabaseConfig {
    DatabaseConfig {
        data_dir: dir.to_path_buf(),
        chunk_max_points: 100,
        ..Default::default()
    }
}

fn labels() -> Labels {
    Labels::new("third_party", [("k", "v")]).expect("labels")
}

fn points(n: i64) -> Vec<(i64, f64)> {
    (0..n).map(|i| (i * 1000, i as f64 * 0.5)).collect()
}

#[tokio::test]
async fn a_third_party_codec_passes_the_kit() {
    tsdb_core::testkit::compressor::run_all(&RawCodec {
        id: CodecId(0x8001),
        lossy: false,
    })
    .await;
}

#[tokio::test]
#[should_panic(expected = "reserved")]
async fn the_kit_rejects_a_reserved_codec_id() {
    tsdb_core::testkit::compressor::run_all(&RawCodec {
        id: CodecId(7),
        lossy: false,
    })
    .await;
}

#[tokio::test]
async fn a_third_party_codec_and_storage_hold_every_chunk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Arc::new(VecStorage::default());
    let db = TimeSeriesDBBuilder::new()
        .with_config(config(dir.path()))
        .with_compressor(RawCodec {
            id: CodecId(0x8001),
            lossy: false,
        })
        .with_storage(storage.clone())
        .build()
        .await
        .expect("open");
    db.insert_series(&labels(), &points(1000))
        .await
        .expect("insert");
    db.flush().await.expect("flush");
    let stored = storage.list_chunks().await.expect("list");
    assert_eq!(stored.len(), 10);
    assert!(
        stored.iter().all(|c| c.codec == CodecId(0x8001)),
        "every chunk is written by the configured codec"
    );
    let found = db
        .query(vec![LabelMatcher::metric("third_party")], TimeRange::ALL)
        .await
        .expect("query");
    assert!(found[0].iter().eq(points(1000)));
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_lossy_codec_is_reported_never_a_short_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TimeSeriesDBBuilder::new()
        .with_config(config(dir.path()))
        .with_compressor(RawCodec {
            id: CodecId(0x8002),
            lossy: true,
        })
        .build()
        .await
        .expect("open");
    db.insert_series(&labels(), &points(1000))
        .await
        .expect("insert");
    db.flush().await.expect("flush");
    let err = db
        .query(&labels(), TimeRange::ALL)
        .await
        .expect_err("the codec lost points");
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("raw")),
        "{err}"
    );
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_codec_claiming_a_reserved_id_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    for id in [0u16, 1, 2, 0x7fff] {
        let err = TimeSeriesDBBuilder::new()
            .with_config(config(dir.path()))
            .with_compressor(RawCodec {
                id: CodecId(id),
                lossy: false,
            })
            .build()
            .await
            .expect_err("a reserved id");
        assert!(matches!(err, Error::InvalidInput { .. }), "{id}: {err}");
    }
}
