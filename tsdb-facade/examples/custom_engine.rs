//! Bring your own engines: a third-party codec and a third-party storage engine, written
//! against the `tsdb-core` traits alone, checked with the conformance kit (`tsdb-core`'s
//! feature `testkit`, a dev-dependency), then plugged into the database.
//!
//! ```text
//! cargo run -p tsdb-facade --example custom_engine
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gorilla_tsdb::{DatabaseConfig, LabelMatcher, Labels, TimeRange, TimeSeriesDBBuilder};
use tsdb_core::{
    ChunkLocation, ChunkReference, CodecId, CompressedBlock, Compressor, DataPoint,
    DynStorageEngine, Error, Result, SeriesId, StorageEngine, async_trait,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// A third-party codec: no compression at all, 16 bytes a point (little-endian timestamp, then
// the value's bits), which makes it lossless for every f64, NaN payloads included.

/// Ids below 0x8000 belong to the project; a third-party codec picks one above.
const RAW_CODEC: CodecId = CodecId(0x8042);

#[derive(Debug)]
struct RawCodec;

#[async_trait]
impl Compressor for RawCodec {
    fn name(&self) -> &'static str {
        "raw-le"
    }

    fn codec_id(&self) -> CodecId {
        RAW_CODEC
    }

    async fn compress(&self, points: &[DataPoint]) -> Result<CompressedBlock> {
        let series_id = points.first().map_or(SeriesId(0), |p| p.series_id);
        let mut data = Vec::with_capacity(points.len() * 16);
        for (index, p) in points.iter().enumerate() {
            if p.series_id != series_id {
                return Err(Error::MixedSeries {
                    expected: series_id,
                    found: p.series_id,
                    index,
                });
            }
            data.extend_from_slice(&p.timestamp.to_le_bytes());
            data.extend_from_slice(&p.value.to_bits().to_le_bytes());
        }
        Ok(CompressedBlock {
            codec: RAW_CODEC,
            series_id,
            start_time: points.iter().map(|p| p.timestamp).min().unwrap_or(0),
            end_time: points.iter().map(|p| p.timestamp).max().unwrap_or(0),
            point_count: u32::try_from(points.len()).map_err(Error::invalid_input)?,
            data: data.into(),
        })
    }

    async fn decompress(&self, block: &CompressedBlock) -> Result<Vec<DataPoint>> {
        if block.codec != RAW_CODEC {
            return Err(Error::UnsupportedCodec {
                engine: self.name(),
                codec: block.codec,
            });
        }
        // The bytes must agree with the header: length, then the time bounds.
        if block.data.len() as u64 != u64::from(block.point_count) * 16 {
            return Err(Error::corrupt(
                "raw block",
                0,
                "length disagrees with the count",
            ));
        }
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        let points: Vec<DataPoint> = block
            .data
            .chunks_exact(16)
            .map(|c| {
                let (t, v) = c.split_at(8);
                DataPoint::new(block.series_id, word(t) as i64, f64::from_bits(word(v)))
            })
            .collect();
        let min = points.iter().map(|p| p.timestamp).min();
        let max = points.iter().map(|p| p.timestamp).max();
        if !points.is_empty() && (min, max) != (Some(block.start_time), Some(block.end_time)) {
            return Err(Error::corrupt("raw block", 0, "time bounds disagree"));
        }
        Ok(points)
    }
}

// ---------------------------------------------------------------------------------------------
// A third-party storage engine: chunks in a map. The map (the "store") outlives the engine, as
// files outlive a disk engine, so a second engine opened on it finds every chunk again.

#[derive(Clone, Debug, Default)]
struct MemoryStore(Arc<Mutex<StoreState>>);

#[derive(Debug, Default)]
struct StoreState {
    next_offset: u64,
    chunks: BTreeMap<ChunkLocation, CompressedBlock>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct MemoryEngine {
    store: MemoryStore,
    closed: AtomicBool,
}

impl MemoryEngine {
    fn open(store: MemoryStore) -> Self {
        MemoryEngine {
            store,
            closed: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl StorageEngine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory-map"
    }

    async fn write_chunk(&self, block: &CompressedBlock) -> Result<ChunkLocation> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed {
                engine: self.name(),
            });
        }
        if block.point_count == 0 {
            return Err(Error::invalid_input("an empty block is not stored"));
        }
        let mut state = self.store.lock();
        // Offsets only grow, so locations follow write order, across reopen too.
        let location = ChunkLocation {
            segment: 0,
            offset: state.next_offset,
            length: block.data.len() as u64,
        };
        state.next_offset += 1;
        state.chunks.insert(location, block.clone());
        Ok(location)
    }

    async fn read_chunk(&self, location: &ChunkLocation) -> Result<CompressedBlock> {
        self.store
            .lock()
            .chunks
            .get(location)
            .cloned()
            .ok_or(Error::ChunkNotFound {
                engine: self.name(),
                location: *location,
            })
    }

    async fn list_chunks(&self) -> Result<Vec<ChunkReference>> {
        let state = self.store.lock();
        Ok(state
            .chunks
            .iter()
            .map(|(location, block)| ChunkReference::new(block, *location))
            .collect())
    }

    async fn delete_chunks(&self, locations: &[ChunkLocation]) -> Result<()> {
        let mut state = self.store.lock();
        for location in locations {
            state.chunks.remove(location);
        }
        Ok(())
    }

    async fn sync(&self) -> Result<()> {
        Ok(()) // As durable as the process: nothing to flush.
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------

/// The conformance kit panics with the broken rule's name if an engine breaks its contract.
async fn check_with_the_kit() {
    tsdb_core::testkit::compressor::run_all(&RawCodec).await;
    // The storage checks open stores by name, and reopen one to test that chunks survive.
    let stores: Arc<Mutex<HashMap<String, MemoryStore>>> = Arc::default();
    tsdb_core::testkit::storage::run_all(move |name| {
        let store = stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name)
            .or_default()
            .clone();
        async move { Arc::new(MemoryEngine::open(store)) as Arc<DynStorageEngine> }
    })
    .await;
    println!("conformance kit: RawCodec and MemoryEngine pass");
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    check_with_the_kit().await;

    // The WAL and the series catalog still live in `data_dir`; chunks go to our engine.
    let dir = tempfile::tempdir()?;
    let config = DatabaseConfig {
        data_dir: dir.path().to_path_buf(),
        chunk_max_points: 100, // small chunks, so that a few are written
        ..Default::default()
    };
    let store = MemoryStore::default();
    let open = || {
        TimeSeriesDBBuilder::new()
            .with_config(config.clone())
            .with_compressor(RawCodec)
            .with_storage(MemoryEngine::open(store.clone()))
            .build()
    };

    let db = open().await?;
    let temperature = Labels::new("room_temperature_celsius", [("room", "lab")])?;
    let points: Vec<(i64, f64)> = (0..250)
        .map(|i| {
            (
                1_700_000_000_000 + i * 60_000,
                20.0 + (i as f64 / 10.0).sin(),
            )
        })
        .collect();
    db.insert_series(&temperature, &points).await?;
    db.close().await?; // seals every buffered point into chunks of our codec, in our storage

    {
        let state = store.lock();
        println!("the store holds {} chunks:", state.chunks.len());
        for (location, block) in &state.chunks {
            println!(
                "  {location}: codec {:#06x}, {} points, {} bytes",
                block.codec.0,
                block.point_count,
                block.data.len()
            );
        }
    }

    // Reopen: the index is rebuilt from `list_chunks`, reads decode with `RawCodec`.
    let db = open().await?;
    let found = db
        .query(
            vec![LabelMatcher::metric("room_temperature_celsius")],
            TimeRange::ALL,
        )
        .await?;
    for series in &found {
        println!("{}: {} points read back", series.labels, series.len());
        for (t, v) in series.iter().take(3) {
            println!("  {t} {v:.3}");
        }
    }
    let read: Vec<(i64, f64)> = found.iter().flat_map(|s| s.iter()).collect();
    if read != points {
        return Err("the points read back differ from those written".into());
    }
    println!("all {} points read back exactly", read.len());
    db.close().await?;
    Ok(())
}
