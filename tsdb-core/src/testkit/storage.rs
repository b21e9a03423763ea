//! Conformance tests for [`StorageEngine`] implementations.
//!
//! Every check panics with a message naming the broken rule. Most take an **empty** store;
//! [`reopen_keeps_everything`] needs to open the same store twice, so [`run_all`] takes a
//! function that opens the store called `name` (creating it empty the first time, and giving
//! the same store back once the previous engine for `name` was closed and dropped). Each check
//! uses its own name.
//!
//! ```no_run
//! # use std::path::PathBuf;
//! # use tsdb_core::{ChunkLocation, ChunkReference, CompressedBlock, Result, StorageEngine};
//! # #[derive(Debug)]
//! # struct MyEngine;
//! # impl MyEngine {
//! #     async fn open(_: PathBuf) -> Result<Self> {
//! #         Ok(MyEngine)
//! #     }
//! # }
//! # #[tsdb_core::async_trait]
//! # impl StorageEngine for MyEngine {
//! #     fn name(&self) -> &'static str {
//! #         "my-engine"
//! #     }
//! #     async fn write_chunk(&self, _: &CompressedBlock) -> Result<ChunkLocation> {
//! #         unimplemented!()
//! #     }
//! #     async fn read_chunk(&self, _: &ChunkLocation) -> Result<CompressedBlock> {
//! #         unimplemented!()
//! #     }
//! #     async fn list_chunks(&self) -> Result<Vec<ChunkReference>> {
//! #         unimplemented!()
//! #     }
//! #     async fn delete_chunks(&self, _: &[ChunkLocation]) -> Result<()> {
//! #         unimplemented!()
//! #     }
//! #     async fn sync(&self) -> Result<()> {
//! #         unimplemented!()
//! #     }
//! # }
//! # // Doc tests are not built with `--test`, which drops `#[test]` functions unchecked: this
//! # // shim makes `#[tokio::test]` mean `#[tokio::main]`, so the test below is compiled.
//! # mod tokio {
//! #     pub use ::tokio::main as test;
//! #     pub use ::tokio::*;
//! # }
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn conforms() {
//!     let dir = tempfile::tempdir().unwrap();
//!     let base = dir.path().to_path_buf();
//!     tsdb_core::testkit::storage::run_all(move |name| {
//!         let path = base.join(name);
//!         async move {
//!             std::sync::Arc::new(MyEngine::open(path).await.unwrap())
//!                 as std::sync::Arc<tsdb_core::DynStorageEngine>
//!         }
//!     })
//!     .await;
//! }
//! # fn main() {
//! #     conforms();
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::data::SplitMix64;
use crate::error::Error;
use crate::storage::{DynStorageEngine, StorageEngine};
use crate::types::{ChunkLocation, ChunkReference, CodecId, CompressedBlock, SeriesId};

/// Runs every check of this module, each on its own store opened by `open(name)`.
pub async fn run_all<F, Fut>(open: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Arc<DynStorageEngine>>,
{
    round_trip(&*open("round_trip".into()).await).await;
    rejects_empty_block(&*open("rejects_empty_block".into()).await).await;
    listing(&*open("listing".into()).await).await;
    deletion(&*open("deletion".into()).await).await;
    unknown_locations(&*open("unknown_locations".into()).await).await;
    reopen_keeps_everything(|| open("reopen".into())).await;
    concurrent_writers_and_readers(open("concurrent".into()).await).await;
    compaction_moves(&*open("compaction".into()).await).await;
    close_stops_writes(&*open("close".into()).await).await;
}

/// A deterministic block: payload sizes cycle through small, 1 KiB and larger than 64 KiB,
/// metadata covers extreme values.
pub fn sample_block(rng: &mut SplitMix64, i: usize) -> CompressedBlock {
    const SIZES: [usize; 6] = [1, 17, 1024, 333, 70_000, 4096];
    let len = SIZES[i % SIZES.len()];
    let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    let (start_time, end_time) = match i % 4 {
        0 => (i64::MIN, i64::MAX),
        1 => (-5, -5),
        2 => (1_700_000_000_000, 1_700_000_060_000),
        _ => {
            let a = rng.next_u64() as i64;
            let b = rng.next_u64() as i64;
            (a.min(b), a.max(b))
        }
    };
    CompressedBlock {
        codec: CodecId(if i.is_multiple_of(5) { 0xFFFF } else { 1 }),
        series_id: SeriesId(match i % 3 {
            0 => 0,
            1 => u64::MAX,
            _ => rng.next_u64(),
        }),
        start_time,
        end_time,
        point_count: if i.is_multiple_of(7) {
            u32::MAX
        } else {
            1 + rng.below(10_000) as u32
        },
        data: Bytes::from(data),
    }
}

async fn write_all(
    e: &dyn StorageEngine,
    blocks: &[CompressedBlock],
) -> Vec<(ChunkLocation, CompressedBlock)> {
    let mut out = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let loc = e
            .write_chunk(b)
            .await
            .unwrap_or_else(|err| panic!("{}: write_chunk of block {i} failed: {err}", e.name()));
        out.push((loc, b.clone()));
    }
    out
}

fn blocks(seed: u64, n: usize) -> Vec<CompressedBlock> {
    let mut rng = SplitMix64(seed);
    (0..n).map(|i| sample_block(&mut rng, i)).collect()
}

async fn assert_reads_back(e: &dyn StorageEngine, loc: &ChunkLocation, want: &CompressedBlock) {
    match e.read_chunk(loc).await {
        Ok(got) => assert!(
            got == *want,
            "{}: read_chunk({loc}) must return the block exactly as written; got {} bytes \
             (codec {}, series {}, {}..={}, {} points), wrote {} bytes (codec {}, series {}, \
             {}..={}, {} points)",
            e.name(),
            got.data.len(),
            got.codec,
            got.series_id,
            got.start_time,
            got.end_time,
            got.point_count,
            want.data.len(),
            want.codec,
            want.series_id,
            want.start_time,
            want.end_time,
            want.point_count,
        ),
        Err(err) => panic!(
            "{}: read_chunk({loc}) of a written chunk failed: {err}",
            e.name()
        ),
    }
}

async fn assert_not_found(e: &dyn StorageEngine, loc: &ChunkLocation, what: &str) {
    match e.read_chunk(loc).await {
        Err(Error::ChunkNotFound { location, .. }) => assert_eq!(
            location,
            *loc,
            "{}: ChunkNotFound must name the location asked for",
            e.name()
        ),
        Ok(b) => panic!(
            "{}: read_chunk({loc}) of {what} must give ChunkNotFound, got a block of {} bytes",
            e.name(),
            b.data.len()
        ),
        Err(err) => panic!(
            "{}: read_chunk({loc}) of {what} must give ChunkNotFound, got {err:?}",
            e.name()
        ),
    }
}

fn expected_listing(written: &[(ChunkLocation, CompressedBlock)]) -> Vec<ChunkReference> {
    let mut refs: Vec<_> = written
        .iter()
        .map(|(loc, b)| ChunkReference::new(b, *loc))
        .collect();
    refs.sort_by_key(|r| r.location);
    refs
}

async fn assert_listing(e: &dyn StorageEngine, want: &[ChunkReference], when: &str) {
    let got = e
        .list_chunks()
        .await
        .unwrap_or_else(|err| panic!("{}: list_chunks failed {when}: {err}", e.name()));
    assert!(
        got.windows(2).all(|w| w[0].location < w[1].location),
        "{}: list_chunks must be ordered by location, without duplicates ({when})",
        e.name()
    );
    if got != want {
        let got_set: BTreeSet<_> = got.iter().map(|r| r.location).collect();
        let want_set: BTreeSet<_> = want.iter().map(|r| r.location).collect();
        let missing: Vec<_> = want_set.difference(&got_set).take(3).collect();
        let extra: Vec<_> = got_set.difference(&want_set).take(3).collect();
        panic!(
            "{}: list_chunks {when} must list every live chunk with its metadata: {} listed, \
             {} expected; missing {missing:?}, unexpected {extra:?} (or metadata differs)",
            e.name(),
            got.len(),
            want.len()
        );
    }
}

/// What compaction asks of an engine: `seal` leaves every chunk readable and writes going on;
/// `relocation_candidates` offers only live chunks, as listed; and moving what it offers
/// (a copy written, then the original deleted) keeps every chunk's bytes and empties the
/// offer.
pub async fn compaction_moves(e: &dyn StorageEngine) {
    let written = write_all(e, &blocks(9, 36)).await;
    let (gone, kept): (Vec<_>, Vec<_>) = written
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 4 != 0);
    let gone: Vec<ChunkLocation> = gone.iter().map(|(_, (l, _))| *l).collect();
    e.delete_chunks(&gone)
        .await
        .unwrap_or_else(|err| panic!("{}: delete_chunks failed: {err}", e.name()));
    e.seal()
        .await
        .unwrap_or_else(|err| panic!("{}: seal failed: {err}", e.name()));
    let mut kept: Vec<(ChunkLocation, CompressedBlock)> =
        kept.into_iter().map(|(_, w)| w).collect();
    for (loc, b) in &kept {
        assert_reads_back(e, loc, b).await;
    }
    kept.extend(write_all(e, &blocks(10, 4)).await);
    assert_listing(e, &expected_listing(&kept), "after seal and more writes").await;
    for _ in 0..3 {
        let offered = e
            .relocation_candidates()
            .await
            .unwrap_or_else(|err| panic!("{}: relocation_candidates failed: {err}", e.name()));
        if offered.is_empty() {
            break;
        }
        for c in &offered {
            let i = kept
                .iter()
                .position(|(l, b)| ChunkReference::new(b, *l) == *c)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: relocation_candidates offers a chunk that is not live as listed (or offers it twice): {c:?}",
                        e.name()
                    )
                });
            let (old, block) = kept.swap_remove(i);
            let new = e
                .write_chunk(&block)
                .await
                .unwrap_or_else(|err| panic!("{}: writing a moved chunk failed: {err}", e.name()));
            e.delete_chunks(&[old])
                .await
                .unwrap_or_else(|err| panic!("{}: deleting a moved chunk failed: {err}", e.name()));
            kept.push((new, block));
        }
    }
    for (loc, b) in &kept {
        assert_reads_back(e, loc, b).await;
    }
    assert_listing(e, &expected_listing(&kept), "after moving what was offered").await;
}

/// Written blocks read back exactly (every field, every byte), locations are distinct even for
/// identical blocks, and reads in any order work.
pub async fn round_trip(e: &dyn StorageEngine) {
    let bs = blocks(1, 30);
    let written = write_all(e, &bs).await;
    let again = write_all(e, &bs[..3]).await;
    let mut seen = BTreeSet::new();
    for (loc, _) in written.iter().chain(&again) {
        assert!(
            seen.insert(*loc),
            "{}: write_chunk returned location {loc} twice; every call stores a new chunk",
            e.name()
        );
    }
    for (loc, b) in written.iter().rev().chain(&again) {
        assert_reads_back(e, loc, b).await;
    }
    for (loc, b) in written.iter().step_by(7) {
        assert_reads_back(e, loc, b).await;
    }
}

/// A block with no points is refused with [`Error::InvalidInput`] and nothing is stored.
pub async fn rejects_empty_block(e: &dyn StorageEngine) {
    let empty = CompressedBlock {
        codec: CodecId(1),
        series_id: SeriesId(0),
        start_time: 0,
        end_time: 0,
        point_count: 0,
        data: Bytes::new(),
    };
    match e.write_chunk(&empty).await {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!(
            "{}: write_chunk of an empty block must give InvalidInput, got {other:?}",
            e.name()
        ),
    }
    assert_listing(e, &[], "after refusing an empty block").await;
}

/// `list_chunks` gives nothing for an empty store, then exactly one reference per written
/// chunk, with its metadata, ordered by location.
pub async fn listing(e: &dyn StorageEngine) {
    assert_listing(e, &[], "on an empty store").await;
    let written = write_all(e, &blocks(2, 40)).await;
    assert_listing(e, &expected_listing(&written), "after 40 writes").await;
}

/// Deleted chunks read as [`Error::ChunkNotFound`] and leave the listing; deleting again,
/// deleting unknown locations and deleting nothing are harmless; other chunks stay intact.
pub async fn deletion(e: &dyn StorageEngine) {
    let written = write_all(e, &blocks(3, 24)).await;
    let (gone, kept): (Vec<_>, Vec<_>) = written
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 3 != 1);
    let gone: Vec<_> = gone.into_iter().map(|(_, w)| w).collect();
    let kept: Vec<_> = kept.into_iter().map(|(_, w)| w).collect();
    let gone_locs: Vec<_> = gone.iter().map(|(l, _)| *l).collect();

    e.delete_chunks(&gone_locs[..gone_locs.len() / 2])
        .await
        .unwrap_or_else(|err| panic!("{}: delete_chunks failed: {err}", e.name()));
    e.delete_chunks(&gone_locs).await.unwrap_or_else(|err| {
        panic!(
            "{}: delete_chunks with some already deleted locations must succeed: {err}",
            e.name()
        )
    });
    for (loc, _) in &gone {
        assert_not_found(e, loc, "a deleted chunk").await;
    }
    for (loc, b) in &kept {
        assert_reads_back(e, loc, b).await;
    }
    assert_listing(e, &expected_listing(&kept), "after deletions").await;

    e.delete_chunks(&gone_locs).await.unwrap_or_else(|err| {
        panic!(
            "{}: deleting the same chunks again must succeed: {err}",
            e.name()
        )
    });
    e.delete_chunks(&[])
        .await
        .unwrap_or_else(|err| panic!("{}: deleting nothing must succeed: {err}", e.name()));
    let last = kept.last().map(|(l, _)| *l).expect("kept chunks");
    let unknown = [
        ChunkLocation {
            segment: last.segment.wrapping_add(1000),
            offset: 0,
            length: 10,
        },
        ChunkLocation {
            segment: last.segment,
            offset: last.offset.wrapping_add(1),
            length: last.length,
        },
        ChunkLocation {
            segment: last.segment,
            offset: last.offset,
            length: last.length.wrapping_add(1),
        },
    ];
    e.delete_chunks(&unknown).await.unwrap_or_else(|err| {
        panic!(
            "{}: deleting unknown locations must be ignored, got {err}",
            e.name()
        )
    });
    for (loc, b) in &kept {
        assert_reads_back(e, loc, b).await;
    }
    assert_listing(
        e,
        &expected_listing(&kept),
        "after repeated and unknown deletions",
    )
    .await;
}

/// Locations that were never returned by `write_chunk` (wrong segment, offsets inside or past
/// a chunk, wrong lengths, extreme numbers) give [`Error::ChunkNotFound`], never a block.
pub async fn unknown_locations(e: &dyn StorageEngine) {
    let probe = ChunkLocation {
        segment: 0,
        offset: 0,
        length: 64,
    };
    assert_not_found(e, &probe, "a location in an empty store").await;
    let written = write_all(e, &blocks(4, 12)).await;
    let real: BTreeSet<_> = written.iter().map(|(l, _)| *l).collect();
    let mut candidates = Vec::new();
    for (l, _) in [&written[0], &written[5], &written[11]] {
        let l = *l;
        for (ds, doff, dlen) in [
            (0, 1, 0),
            (0, u64::MAX, 0),
            (0, 0, 1),
            (0, 0, u64::MAX),
            (0, 1, u64::MAX),
            (1, 0, 0),
            (1000, 0, 0),
            (0, l.length, 0),
            (0, l.length.wrapping_mul(100), 0),
            (0, 0, l.length.wrapping_neg()),
        ] {
            candidates.push(ChunkLocation {
                segment: l.segment.wrapping_add(ds),
                offset: l.offset.wrapping_add(doff),
                length: l.length.wrapping_add(dlen),
            });
        }
        candidates.push(ChunkLocation { length: 0, ..l });
    }
    candidates.extend([
        ChunkLocation {
            segment: u64::MAX,
            offset: u64::MAX,
            length: u64::MAX,
        },
        ChunkLocation {
            segment: 0,
            offset: u64::MAX - 3,
            length: 7,
        },
        ChunkLocation {
            segment: u64::MAX,
            offset: 0,
            length: 1,
        },
    ]);
    for c in candidates.iter().filter(|c| !real.contains(c)) {
        assert_not_found(e, c, "a location never written").await;
    }
    for (loc, b) in &written {
        assert_reads_back(e, loc, b).await;
    }
}

/// Everything written, synced and not deleted is back after closing and reopening, at the same
/// locations; deleted chunks stay deleted; new writes after a reopen do not overwrite old
/// chunks. The second reopen follows a `sync` and a drop without `close`.
pub async fn reopen_keeps_everything<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<DynStorageEngine>>,
{
    let e = open().await;
    let name = e.name();
    let written = write_all(&*e, &blocks(5, 40)).await;
    assert_write_order(name, written.iter().map(|(l, _)| *l), "one store");
    let deleted: Vec<_> = written.iter().step_by(4).map(|(l, _)| *l).collect();
    e.delete_chunks(&deleted)
        .await
        .unwrap_or_else(|err| panic!("{name}: delete_chunks failed: {err}"));
    let mut live: Vec<_> = written
        .iter()
        .filter(|(l, _)| !deleted.contains(l))
        .cloned()
        .collect();
    e.close()
        .await
        .unwrap_or_else(|err| panic!("{name}: close failed: {err}"));
    drop(e);

    let e = open().await;
    assert_listing(&*e, &expected_listing(&live), "after close and reopen").await;
    for (loc, b) in &live {
        assert_reads_back(&*e, loc, b).await;
    }
    for loc in &deleted {
        assert_not_found(&*e, loc, "a chunk deleted before the reopen").await;
    }
    let more = write_all(&*e, &blocks(6, 10)).await;
    assert_write_order(
        name,
        written.iter().chain(&more).map(|(l, _)| *l),
        "writes before and after a reopen",
    );
    for (loc, _) in &more {
        assert!(
            !live.iter().any(|(l, _)| l == loc),
            "{name}: a write after reopen returned {loc}, the location of a live chunk"
        );
    }
    live.extend(more);
    for (loc, b) in &live {
        assert_reads_back(&*e, loc, b).await;
    }
    e.sync()
        .await
        .unwrap_or_else(|err| panic!("{name}: sync failed: {err}"));
    drop(e);

    let e = open().await;
    assert_listing(&*e, &expected_listing(&live), "after sync, drop and reopen").await;
    for (loc, b) in &live {
        assert_reads_back(&*e, loc, b).await;
    }
    e.close()
        .await
        .unwrap_or_else(|err| panic!("{name}: close failed: {err}"));
}

/// Locations of chunks written one after the other must increase (the contract's write order).
fn assert_write_order(name: &str, locations: impl Iterator<Item = ChunkLocation>, what: &str) {
    let locations: Vec<_> = locations.collect();
    for pair in locations.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{name}: {what}: location {} was returned after {}, but locations must follow write order",
            pair[1],
            pair[0]
        );
    }
}

/// Eight writer tasks and four reader tasks at once: every write gets its own location, every
/// chunk reads back exactly while others are being written, and the listing ends complete.
/// Needs a tokio runtime (it spawns tasks).
pub async fn concurrent_writers_and_readers(e: Arc<DynStorageEngine>) {
    const WRITERS: u64 = 8;
    const PER_WRITER: usize = 25;
    let name = e.name();
    let done: Arc<Mutex<Vec<(ChunkLocation, CompressedBlock)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let e = e.clone();
        let done = done.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = SplitMix64(100 + w);
            for i in 0..PER_WRITER {
                let b = sample_block(&mut rng, i + w as usize);
                let loc = e
                    .write_chunk(&b)
                    .await
                    .unwrap_or_else(|err| panic!("{name}: concurrent write_chunk failed: {err}"));
                done.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((loc, b));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut readers = Vec::new();
    for r in 0..4u64 {
        let e = e.clone();
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            let mut rng = SplitMix64(200 + r);
            let mut checked = 0usize;
            while checked < 100 {
                let pick = {
                    let d = done.lock().unwrap_or_else(PoisonError::into_inner);
                    (!d.is_empty()).then(|| d[rng.below(d.len() as u64) as usize].clone())
                };
                if let Some((loc, b)) = pick {
                    assert_reads_back(&*e, &loc, &b).await;
                    checked += 1;
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in writers.into_iter().chain(readers) {
        if let Err(err) = t.await {
            std::panic::resume_unwind(err.into_panic());
        }
    }
    let all = std::mem::take(&mut *done.lock().unwrap_or_else(PoisonError::into_inner));
    let distinct: BTreeMap<_, _> = all.iter().map(|(l, b)| (*l, b)).collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "{name}: concurrent writes must get distinct locations"
    );
    for (loc, b) in &all {
        assert_reads_back(&*e, loc, b).await;
    }
    assert_listing(&*e, &expected_listing(&all), "after concurrent writes").await;
}

/// After `close`, writes fail with [`Error::Closed`].
pub async fn close_stops_writes(e: &dyn StorageEngine) {
    let written = write_all(e, &blocks(7, 3)).await;
    e.close()
        .await
        .unwrap_or_else(|err| panic!("{}: close failed: {err}", e.name()));
    match e.write_chunk(&written[0].1).await {
        Err(Error::Closed { .. }) => {}
        other => panic!(
            "{}: write_chunk after close must give Error::Closed, got {other:?}",
            e.name()
        ),
    }
}
