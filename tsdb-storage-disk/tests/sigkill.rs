//! Fault test (a): a child process writes chunks in a loop and prints every acknowledged
//! location; the parent kills it with SIGKILL at a random moment, reopens the store and checks
//! that every acknowledged chunk reads back bit-exact, round after round on the same store.
//!
//! This file has its own `main` (`harness = false`): run with the child environment variable
//! set, the same binary is the writer.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tsdb_core::testkit::data::SplitMix64;
use tsdb_core::{ChunkLocation, CodecId, CompressedBlock, Error, SeriesId, StorageEngine};
use tsdb_storage_disk::{Durability, LocalDiskConfig, LocalDiskEngine};

const CHILD_DIR: &str = "TSDB_STORAGE_SIGKILL_CHILD_DIR";
const CHILD_ROUND: &str = "TSDB_STORAGE_SIGKILL_CHILD_ROUND";
const ROUNDS: u64 = 40;
const WRITERS: u64 = 4;
/// Stop starting new rounds after this long (the test stays bounded on a slow machine), but
/// only once at least `MIN_ROUNDS` ran.
const BUDGET: Duration = Duration::from_secs(25);
const MIN_ROUNDS: u64 = 30;

/// The chunk that writer `task` writes as its `seq`-th in `round`: its identity is in the
/// metadata, so any listed chunk can be checked, not only the acknowledged ones.
fn chunk(round: u64, task: u64, seq: u64) -> CompressedBlock {
    let id = (round << 40) | (task << 32) | seq;
    let mut rng = SplitMix64(id ^ 0x5EED);
    let len = match rng.below(10) {
        0 => 20_000 + rng.below(30_000) as usize,
        1..=3 => 1024,
        _ => 1 + rng.below(3000) as usize,
    };
    let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    CompressedBlock {
        codec: CodecId(1),
        series_id: SeriesId(id),
        start_time: id as i64,
        end_time: id as i64 + len as i64,
        point_count: 1 + (id % 1000) as u32,
        data: Bytes::from(data),
    }
}

fn config(round: u64) -> LocalDiskConfig {
    let durability = if round % 3 == 2 {
        Durability::Interval(Duration::from_millis(20))
    } else {
        Durability::Always
    };
    LocalDiskConfig::default()
        .durability(durability)
        .segment_size(256 << 10)
}

fn child(dir: &str, round: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let engine = LocalDiskEngine::open_with(dir, config(round))
            .await
            .expect("child: open");
        println!("OPEN");
        let mut tasks = Vec::new();
        for task in 0..WRITERS {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                for seq in 0.. {
                    let loc = engine
                        .write_chunk(&chunk(round, task, seq))
                        .await
                        .expect("child: write");
                    // Printed only once acknowledged; stdout is line-buffered.
                    println!(
                        "ACK {round} {task} {seq} {} {} {}",
                        loc.segment, loc.offset, loc.length
                    );
                }
            }));
        }
        for t in tasks {
            t.await.expect("child: writer task");
        }
    });
}

struct Acked {
    round: u64,
    task: u64,
    seq: u64,
}

fn parse_ack(line: &str) -> Option<(ChunkLocation, Acked)> {
    let mut it = line.strip_prefix("ACK ")?.split(' ');
    let mut next = || it.next()?.parse::<u64>().ok();
    let (round, task, seq) = (next()?, next()?, next()?);
    let loc = ChunkLocation {
        segment: next()?,
        offset: next()?,
        length: next()?,
    };
    Some((loc, Acked { round, task, seq }))
}

/// Runs one child, kills it at a random moment and returns what it acknowledged. With
/// `after_open`, the moment is measured from the child's "store open" line (so that it gets
/// to write even on a loaded machine); otherwise from its start (killing it during recovery).
fn run_child(
    dir: &Path,
    round: u64,
    kill_after: Duration,
    after_open: bool,
) -> (Vec<(ChunkLocation, Acked)>, bool) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        // A line cut by the kill has no newline: it is not an acknowledgement.
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') {
                if line == "OPEN\n" {
                    let _ = opened_tx.send(());
                }
                lines.push(line.trim_end().to_owned());
            }
            line.clear();
        }
        lines
    });
    if after_open {
        // Bounded: a child that cannot open in time is killed anyway (and the check below
        // reports it).
        let _ = opened_rx.recv_timeout(Duration::from_secs(20));
    }
    std::thread::sleep(kill_after);
    // `Child::kill` sends SIGKILL on Unix.
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("wait for child");
    assert!(
        status.code().is_none(),
        "round {round}: the child must die of SIGKILL, not exit by itself ({status})"
    );
    let lines = reader.join().expect("reader thread");
    let opened = lines.iter().any(|l| l == "OPEN");
    (lines.iter().filter_map(|l| parse_ack(l)).collect(), opened)
}

async fn verify(
    engine: &LocalDiskEngine,
    acked: &BTreeMap<ChunkLocation, CompressedBlock>,
    deleted: &[ChunkLocation],
    round: u64,
) {
    for (loc, want) in acked {
        match engine.read_chunk(loc).await {
            Ok(got) => assert!(
                got == *want,
                "round {round}: acknowledged chunk at {loc} came back different"
            ),
            Err(e) => panic!("round {round}: acknowledged chunk at {loc} is lost: {e}"),
        }
    }
    for loc in deleted {
        assert!(
            matches!(
                engine.read_chunk(loc).await,
                Err(Error::ChunkNotFound { .. })
            ),
            "round {round}: deleted chunk at {loc} came back"
        );
    }
    let listed = engine.list_chunks().await.expect("list");
    let mut listed_acked = 0;
    for r in &listed {
        // Chunks written but killed before their acknowledgement was printed may be listed;
        // each must be exactly the chunk its metadata names.
        let id = r.series_id.0;
        let want = match acked.get(&r.location) {
            Some(b) => b.clone(),
            None => chunk(id >> 40, (id >> 32) & 0xFF, id & 0xFFFF_FFFF),
        };
        let got = engine.read_chunk(&r.location).await.unwrap_or_else(|e| {
            panic!(
                "round {round}: listed chunk at {} fails to read: {e}",
                r.location
            )
        });
        assert!(
            got == want,
            "round {round}: listed chunk at {} is not the chunk its metadata names",
            r.location
        );
        listed_acked += usize::from(acked.contains_key(&r.location));
    }
    assert_eq!(
        listed_acked,
        acked.len(),
        "round {round}: every acknowledged chunk must be listed"
    );
}

fn parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rng = SplitMix64(0xC0FFEE);
    let mut acked: BTreeMap<ChunkLocation, CompressedBlock> = BTreeMap::new();
    let mut deleted: Vec<ChunkLocation> = Vec::new();
    let started = Instant::now();
    let mut rounds = 0;
    let mut opened_rounds = 0;
    let mut writing_rounds = 0;
    let mut total_acked = 0;
    for round in 0..ROUNDS {
        if round >= MIN_ROUNDS && started.elapsed() > BUDGET {
            break;
        }
        // Mostly kill mid-writing; sometimes right at start-up, during recovery.
        let during_startup = rng.below(6) == 0;
        let kill_after = if during_startup {
            Duration::from_millis(rng.below(15))
        } else {
            Duration::from_millis(1 + rng.below(150))
        };
        let (acks, opened) = run_child(dir.path(), round, kill_after, !during_startup);
        if !during_startup {
            writing_rounds += 1;
            opened_rounds += usize::from(opened);
        }
        total_acked += acks.len();
        for (loc, a) in acks {
            assert_eq!(a.round, round, "ack of another round");
            let block = chunk(a.round, a.task, a.seq);
            assert!(
                acked.insert(loc, block).is_none(),
                "round {round}: location {loc} acknowledged twice"
            );
        }
        rt.block_on(async {
            let engine = LocalDiskEngine::open_with(dir.path(), config(round))
                .await
                .unwrap_or_else(|e| panic!("round {round}: reopen after SIGKILL failed: {e}"));
            verify(&engine, &acked, &deleted, round).await;
            // Delete a few chunks now and then: deletions must survive later kills too.
            if round % 4 == 3 {
                let victims: Vec<_> = acked.keys().step_by(7).copied().collect();
                engine.delete_chunks(&victims).await.expect("delete");
                for v in &victims {
                    acked.remove(v);
                }
                deleted.extend(victims);
            }
            engine.close().await.expect("close");
        });
        rounds += 1;
    }
    assert!(rounds >= MIN_ROUNDS, "only {rounds} rounds ran");
    assert!(
        opened_rounds == writing_rounds && total_acked >= writing_rounds,
        "the children must get to write: {opened_rounds} of {writing_rounds} opened the store, \
         {total_acked} chunks acknowledged"
    );
    println!(
        "sigkill: {rounds} rounds, {total_acked} chunks acknowledged, {} live, {} deleted, all read back bit-exact ({:.1} s)",
        acked.len(),
        deleted.len(),
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    if let (Ok(dir), Ok(round)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ROUND)) {
        child(&dir, round.parse().expect("round number"));
        return;
    }
    // `cargo test -- --list` and test-name filters: this binary holds one test.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("sigkill_rounds: test");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty()
        && !filters
            .iter()
            .any(|f| "sigkill_rounds".contains(f.as_str()))
    {
        println!("sigkill_rounds: filtered out");
        return;
    }
    parent();
}
