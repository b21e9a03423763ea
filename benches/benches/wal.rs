//! Write-ahead log appends/s: 1 and 8 concurrent appenders, `Always` (fsync per
//! acknowledgement, with group commit) side by side with `Never` (write(2) only).
//!
//! Run: `cargo bench -p tsdb-benches --bench wal`. Each `Always` case prints its fsyncs per
//! append (the group-commit ratio).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tsdb_wal::{Wal, WalConfig, WalDurability};

const PAYLOAD: usize = 100;

fn bench_appends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("wal_append_100B");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, durability) in [
        ("always", WalDurability::Always),
        ("never", WalDurability::Never),
    ] {
        for appenders in [1u64, 8] {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = WalConfig {
                segment_size: 8 << 20,
                durability,
                ..WalConfig::default()
            };
            let (wal, _) = rt.block_on(Wal::open(dir.path(), config)).expect("open");
            let wal = Arc::new(wal);
            group.bench_function(format!("{name}/{appenders}_appenders"), |b| {
                b.iter_custom(|iters| {
                    let per_task = iters.div_ceil(appenders);
                    let elapsed = rt.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..appenders)
                            .map(|_| {
                                let wal = wal.clone();
                                tokio::spawn(async move {
                                    let payload = [7u8; PAYLOAD];
                                    for _ in 0..per_task {
                                        wal.append(&payload).await.expect("append");
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("task");
                        }
                        let elapsed = start.elapsed();
                        // Keep the disk usage bounded (outside the timed part).
                        wal.truncate_before(wal.next_lsn()).await.expect("truncate");
                        elapsed
                    });
                    // Time per append, counting the rounded-up total actually done.
                    elapsed.mul_f64(iters as f64 / (per_task * appenders) as f64)
                })
            });
            let stats = wal.stats();
            if durability == WalDurability::Always {
                eprintln!(
                    "wal {name}/{appenders}_appenders: {} fsyncs for {} appends ({:.3} fsyncs/append)",
                    stats.fsyncs,
                    stats.appends,
                    stats.fsyncs as f64 / stats.appends.max(1) as f64
                );
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_appends);
criterion_main!(benches);
