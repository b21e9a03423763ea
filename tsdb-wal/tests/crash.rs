//! kill -9 test: a child process appends with `WalDurability::Always` and prints every
//! acknowledged record; the parent SIGKILLs it at random moments, reopens the log and checks
//! that every acknowledged record replays intact and in order.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tsdb_wal::{Lsn, Wal, WalConfig, WalDurability};

const CHILD_DIR_ENV: &str = "TSDB_WAL_CRASH_CHILD_DIR";
const ROUNDS: usize = 30;
const WRITERS: u64 = 4;

fn config() -> WalConfig {
    WalConfig {
        // Small segments so that kills land during segment rolls and truncations too.
        segment_size: 16 << 10,
        durability: WalDurability::Always,
        ..WalConfig::default()
    }
}

/// The payload of record `i` of writer `task`: its identity, then bytes derived from it, of a
/// length between 12 and ~400 bytes.
fn payload(task: u64, i: u64) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(task as u32).to_le_bytes());
    p.extend_from_slice(&i.to_le_bytes());
    let extra = ((task * 131 + i * 17) % 400) as usize;
    let mut x = task.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i;
    for _ in 0..extra {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(x as u8);
    }
    p
}

/// Reads (task, i) back from a payload.
fn identity(p: &[u8]) -> Option<(u64, u64)> {
    let task = u32::from_le_bytes(p.get(0..4)?.try_into().ok()?);
    let i = u64::from_le_bytes(p.get(4..12)?.try_into().ok()?);
    Some((u64::from(task), i))
}

/// Child side: runs only when started by `kill9_crash_recovery` (the env var names the dir).
#[test]
#[ignore = "child process of kill9_crash_recovery; does nothing on its own"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (wal, replay) = Wal::open(&dir, config()).await.expect("child open");
        // Continue each writer's numbering after what is already in the log.
        let mut next_i = [0u64; WRITERS as usize];
        for r in replay {
            let (_, p) = r.expect("child replay");
            if let Some((task, i)) = identity(&p) {
                let slot = &mut next_i[task as usize];
                *slot = (*slot).max(i + 1);
            }
        }
        let wal = Arc::new(wal);
        let stop = Instant::now() + Duration::from_secs(30); // never outlive a dead parent long
        let tasks: Vec<_> = (0..WRITERS)
            .map(|task| {
                let wal = wal.clone();
                let mut i = next_i[task as usize];
                tokio::spawn(async move {
                    while Instant::now() < stop {
                        let p = payload(task, i);
                        let lsn = wal.append(&p).await.expect("child append");
                        {
                            let mut out = std::io::stdout().lock();
                            writeln!(
                                out,
                                "A {} {task} {i} {:08x}",
                                lsn.get(),
                                crc32fast::hash(&p)
                            )
                            .expect("stdout");
                            out.flush().expect("flush");
                        }
                        if task == 0 && i % 64 == 0 && lsn.get() > 300 {
                            let keep = lsn.get() - 300;
                            {
                                let mut out = std::io::stdout().lock();
                                writeln!(out, "T {keep}").expect("stdout");
                                out.flush().expect("flush");
                            }
                            wal.truncate_before(Lsn(keep))
                                .await
                                .expect("child truncate");
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("writer");
        }
    });
}

/// A small deterministic generator for the kill delays (seeded from the clock, printed).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn kill9_crash_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    eprintln!("kill9_crash_recovery seed {seed}");
    let mut rng = SplitMix(seed);
    let exe = std::env::current_exe().expect("current exe");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // lsn -> (task, i, crc) of every acknowledged record.
    let mut acked: BTreeMap<u64, (u64, u64, u32)> = BTreeMap::new();
    let mut truncated_before = 0u64;
    let mut rounds_with_acks = 0;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--ignored",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        // Anywhere from during open/replay to well into the append loop.
        std::thread::sleep(Duration::from_millis(10 + rng.next() % 400));
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        let lines = reader.join().expect("reader");

        let mut acked_this_round = 0;
        for line in &lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["A", lsn, task, i, crc] => {
                    let lsn: u64 = lsn.parse().expect("lsn");
                    let rec = (
                        task.parse().expect("task"),
                        i.parse().expect("i"),
                        u32::from_str_radix(crc, 16).expect("crc"),
                    );
                    let previous = acked.insert(lsn, rec);
                    assert!(
                        previous.is_none(),
                        "round {round}: acknowledged LSN {lsn} reused"
                    );
                    acked_this_round += 1;
                }
                ["T", keep] => {
                    truncated_before = truncated_before.max(keep.parse().expect("keep"));
                }
                _ => {} // the test harness's own lines
            }
        }
        if acked_this_round > 0 {
            rounds_with_acks += 1;
        }

        // Reopen and check.
        rt.block_on(async {
            let (wal, replay) = Wal::open(dir.path(), config())
                .await
                .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
            let mut replayed: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let mut prev: Option<Lsn> = None;
            for r in replay {
                let (lsn, p) = r.unwrap_or_else(|e| panic!("round {round}: replay failed: {e}"));
                if let Some(prev) = prev {
                    assert_eq!(
                        lsn.get(),
                        prev.get() + 1,
                        "round {round}: replay out of order"
                    );
                }
                prev = Some(lsn);
                // Every record, acknowledged or not, is one the child wrote, intact.
                let (task, i) = identity(&p).expect("payload identity");
                assert_eq!(
                    p,
                    payload(task, i),
                    "round {round}: LSN {lsn} payload damaged"
                );
                replayed.insert(lsn.get(), p);
            }
            for (lsn, (task, i, crc)) in acked.range(truncated_before..) {
                let p = replayed
                    .get(lsn)
                    .unwrap_or_else(|| panic!("round {round}: acknowledged LSN {lsn} lost"));
                assert_eq!(
                    identity(p),
                    Some((*task, *i)),
                    "round {round}: LSN {lsn} changed"
                );
                assert_eq!(crc32fast::hash(p), *crc, "round {round}: LSN {lsn} hash");
            }
            wal.close().await.expect("close");
        });
    }
    let elapsed = started.elapsed();
    eprintln!(
        "kill9_crash_recovery: {ROUNDS} rounds, {} acknowledged records, {rounds_with_acks} rounds with acks, truncated before {truncated_before}, {elapsed:?}",
        acked.len()
    );
    assert!(
        rounds_with_acks >= ROUNDS / 2,
        "the child rarely got to append ({rounds_with_acks} of {ROUNDS} rounds): kills did not test much"
    );
    assert!(truncated_before > 0, "truncation never ran in the child");
}
