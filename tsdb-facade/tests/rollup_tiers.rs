//! Rollup tiers: PromQL answers served from a tier are the answers over the raw points (any
//! order of writes, overwrites, staleness markers, deletions, reopens), a write or deletion
//! below a built tier is never hidden by it, and the tier keeps answering after retention
//! has deleted the raw points.

use std::sync::Arc;
use std::time::Duration;

use gorilla_tsdb::promql::{Engine, EngineOptions, STALE_NAN_BITS, Series};
use gorilla_tsdb::{
    DatabaseConfig, LabelMatcher, Labels, RollupTier, TimeRange, TimeSeriesDB, TimeSeriesDBBuilder,
    WalDurability,
};
use proptest::prelude::*;

const MINUTE: i64 = 60_000;
/// A start aligned to every resolution used here.
const T0: i64 = 1_600_000_200 * 1000 / (60 * MINUTE) * (60 * MINUTE);

fn config(dir: &std::path::Path, tiers: bool) -> DatabaseConfig {
    DatabaseConfig {
        data_dir: dir.to_path_buf(),
        chunk_max_points: 16,
        wal_durability: WalDurability::Never,
        compaction_interval: None,
        cold_after: Duration::ZERO,
        compacted_chunk_points: 64,
        rollup_tiers: if tiers {
            vec![
                RollupTier {
                    resolution: Duration::from_secs(30),
                    retention: None,
                },
                RollupTier {
                    resolution: Duration::from_secs(120),
                    retention: None,
                },
            ]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

async fn open(dir: &std::path::Path, tiers: bool) -> Arc<TimeSeriesDB> {
    Arc::new(
        TimeSeriesDBBuilder::new()
            .with_config(config(dir, tiers))
            .build()
            .await
            .expect("database opens"),
    )
}

fn labels(s: usize) -> Labels {
    Labels::new("tier_test", [("series", s.to_string())]).expect("valid labels")
}

const FUNCTIONS: [&str; 7] = [
    "count_over_time",
    "sum_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "last_over_time",
    "present_over_time",
];

/// The queries compared: every function a tier answers, over windows that the 30 s and the
/// 2 min tiers answer, and one neither does (a step off the grid).
fn queries() -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for f in FUNCTIONS {
        out.push((format!("{f}(tier_test[2m])"), 2 * MINUTE));
        out.push((format!("{f}(tier_test[1m])"), 30_000));
        out.push((format!("{f}(tier_test[4m] offset 2m)"), 2 * MINUTE));
    }
    out.push(("sum_over_time(tier_test[2m])".to_owned(), 45_000));
    out
}

async fn answers(db: &Arc<TimeSeriesDB>, query: &str, step: i64, to: i64) -> Vec<Series> {
    let engine = Engine::new(db.clone(), EngineOptions::default());
    let mut got = engine
        .range_query(query, T0 - 10 * MINUTE, to, step)
        .await
        .expect("range query");
    got.sort_by(|a, b| format!("{:?}", a.metric).cmp(&format!("{:?}", b.metric)));
    got
}

/// Bit for bit (NaN equal to NaN), except sums and means: within rounding.
fn assert_same(query: &str, tiered: &[Series], raw: &[Series]) {
    let rounding = query.starts_with("sum") || query.starts_with("avg");
    assert_eq!(tiered.len(), raw.len(), "{query}: series differ");
    for (t, r) in tiered.iter().zip(raw) {
        assert_eq!(t.metric, r.metric, "{query}");
        assert_eq!(
            t.points.len(),
            r.points.len(),
            "{query} {:?}: {:?} vs {:?}",
            t.metric,
            t.points,
            r.points
        );
        for (a, b) in t.points.iter().zip(&r.points) {
            assert_eq!(a.0, b.0, "{query}");
            let same = a.1.to_bits() == b.1.to_bits()
                || (a.1.is_nan() && b.1.is_nan())
                || (rounding && (a.1 - b.1).abs() <= 1e-9 * a.1.abs().max(b.1.abs()).max(1.0));
            assert!(same, "{query} at {}: tier {} raw {}", a.0, a.1, b.1);
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write(usize, Vec<(i64, f64)>),
    Compact,
    Delete(usize, i64, i64),
    Reopen,
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-5_000i64..5_000).prop_map(|c| c as f64 / 100.0),
        1 => Just(f64::from_bits(STALE_NAN_BITS)),
        1 => Just(f64::NAN),
        1 => Just(-0.0),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Timestamps on a 5 s grid (often on bucket edges) or anywhere, over 40 minutes.
    let ts = prop_oneof![(0i64..480).prop_map(|i| i * 5_000), 0i64..2_400_000];
    prop_oneof![
        6 => (0usize..3, proptest::collection::vec((ts, value()), 1..120))
            .prop_map(|(s, p)| Op::Write(s, p.into_iter().map(|(t, v)| (T0 + t, v)).collect())),
        3 => Just(Op::Compact),
        1 => (0usize..3, 0i64..2_400_000, 0i64..600_000)
            .prop_map(|(s, a, len)| Op::Delete(s, T0 + a, T0 + a + len)),
        1 => Just(Op::Reopen),
    ]
}

fn selector(s: usize) -> Vec<LabelMatcher> {
    vec![
        LabelMatcher::equal("__name__", "tier_test"),
        LabelMatcher::equal("series", s.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Every answer of a database with tiers equals that of one without, whatever happened
    /// to the raw points since the tiers were built; and, once built, the tiers answer.
    #[test]
    fn tier_answers_are_raw_answers(ops in proptest::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let (td, pd) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
            let (mut tiered, mut plain) = (open(td.path(), true).await, open(pd.path(), false).await);
            for op in &ops {
                match op {
                    Op::Write(s, points) => {
                        for db in [&tiered, &plain] {
                            db.insert_series(&labels(*s), points).await.expect("insert");
                        }
                    }
                    Op::Compact => {
                        for db in [&tiered, &plain] {
                            db.flush().await.expect("flush");
                            db.compact().await.expect("compact");
                        }
                    }
                    Op::Delete(s, a, b) => {
                        for db in [&tiered, &plain] {
                            db.delete_series(&selector(*s), TimeRange { start: *a, end: *b })
                                .await
                                .expect("delete");
                        }
                    }
                    Op::Reopen => {
                        tiered.close().await.expect("close");
                        plain.close().await.expect("close");
                        tiered = open(td.path(), true).await;
                        plain = open(pd.path(), false).await;
                    }
                }
                // Between the steps too: what was written since a build must show.
                let (q, step) = &queries()[0];
                let to = T0 + 50 * MINUTE;
                assert_same(q, &answers(&tiered, q, *step, to).await, &answers(&plain, q, *step, to).await);
            }
            for db in [&tiered, &plain] {
                db.flush().await.expect("flush");
                db.compact().await.expect("compact");
            }
            let before = tiered.stats().rollup.series_answered;
            for (q, step) in queries() {
                let to = T0 + 50 * MINUTE;
                assert_same(&q, &answers(&tiered, &q, step, to).await, &answers(&plain, &q, step, to).await);
            }
            let wrote = ops.iter().any(|o| matches!(o, Op::Write(..)));
            if wrote {
                assert!(tiered.stats().rollup.series_answered > before, "no answer came from a tier");
            }
            tiered.close().await.expect("close");
            plain.close().await.expect("close");
        });
    }
}

/// The wall clock, ms.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// A 5-minute tier kept for `keep`, over [`config`] without tiers.
fn five_minute_tier(dir: &std::path::Path, keep: Duration) -> DatabaseConfig {
    DatabaseConfig {
        rollup_tiers: vec![RollupTier {
            resolution: Duration::from_secs(300),
            retention: Some(keep),
        }],
        ..config(dir, false)
    }
}

/// Past the raw data's retention, the tier answers what the raw points answered.
#[tokio::test]
async fn tiers_outlive_raw_retention() {
    let dir = tempfile::tempdir().expect("dir");
    let hour = 60 * MINUTE;
    let start = (now_ms() - 6 * hour) / (5 * MINUTE) * (5 * MINUTE);
    let cfg = five_minute_tier(dir.path(), Duration::from_secs(30 * 86_400));
    let open_it = || async {
        Arc::new(
            TimeSeriesDBBuilder::new()
                .with_config(cfg.clone())
                .build()
                .await
                .expect("opens"),
        )
    };
    let db = open_it().await;
    for s in 0..2 {
        let points: Vec<(i64, f64)> = (0..2_000)
            .map(|i| {
                (
                    start + i * 10_000,
                    ((i * 7 + s as i64 * 3) % 101) as f64 / 4.0,
                )
            })
            .collect();
        db.insert_series(&labels(s), &points).await.expect("insert");
    }
    db.flush().await.expect("flush");
    db.compact().await.expect("compact");
    let queries = [
        "avg_over_time(tier_test[5m])",
        "max_over_time(tier_test[15m])",
        "count_over_time(tier_test[5m])",
    ];
    let engine = || Engine::new(db.clone(), EngineOptions::default());
    let (from, to) = (start + 10 * MINUTE, start + 2 * hour);
    let mut before = Vec::new();
    for q in queries {
        before.push(
            engine()
                .range_query(q, from, to, 5 * MINUTE)
                .await
                .expect("query"),
        );
    }
    assert!(
        before
            .iter()
            .all(|b| b.len() == 2 && b[0].points.len() > 20)
    );
    // Raw points older than 3 hours go; a restart then forgets nothing of the tier.
    db.close().await.expect("close");
    let db = Arc::new(
        TimeSeriesDBBuilder::new()
            .with_config(DatabaseConfig {
                retention: Some(Duration::from_secs(3 * 3600)),
                ..cfg.clone()
            })
            .build()
            .await
            .expect("opens"),
    );
    assert!(db.apply_retention().await.expect("retention") > 0);
    db.compact().await.expect("compact");
    let raw = db
        .query(
            &labels(0),
            TimeRange {
                start: from,
                end: to,
            },
        )
        .await
        .expect("raw query");
    assert!(raw.is_empty(), "the raw points are gone");
    let engine = Engine::new(db.clone(), EngineOptions::default());
    for (q, want) in queries.iter().zip(&before) {
        let got = engine
            .range_query(q, from, to, 5 * MINUTE)
            .await
            .expect("query");
        assert_eq!(&got, want, "{q} after retention");
    }
    assert!(db.stats().rollup.series_answered >= 6);
    db.close().await.expect("close");
}

/// `query`'s value at `t`, over series 0 from `T0 + 10m` to `T0 + 30m` at a 2 minute step.
async fn value_at(db: &Arc<TimeSeriesDB>, query: &str, t: i64) -> f64 {
    let got = Engine::new(db.clone(), EngineOptions::default())
        .range_query(query, T0 + 10 * MINUTE, T0 + 30 * MINUTE, 2 * MINUTE)
        .await
        .expect("query");
    got[0]
        .points
        .iter()
        .find(|p| p.0 == t)
        .map(|p| p.1)
        .expect("a point at the time")
}

/// Writes series 0 on a 5 s grid from `T0` (400 points of `value(i)`), flushes and builds.
async fn written_and_built(db: &Arc<TimeSeriesDB>, value: impl Fn(i64) -> f64) {
    let points: Vec<(i64, f64)> = (0..400).map(|i| (T0 + i * 5_000, value(i))).collect();
    db.insert_series(&labels(0), &points).await.expect("insert");
    db.flush().await.expect("flush");
    db.compact().await.expect("compact");
}

/// A point written below a built tier shows at once (from memory, then from its chunk), and
/// the next build takes it in.
#[tokio::test]
async fn a_late_write_shows_at_once_and_is_built_in() {
    let dir = tempfile::tempdir().expect("dir");
    let db = open(dir.path(), true).await;
    written_and_built(&db, |_| 1.0).await;
    let q = "count_over_time(tier_test[2m])";
    let at = T0 + 20 * MINUTE;
    // 2 min windows, both ends in: 25 points of a 5 s grid.
    assert_eq!(value_at(&db, q, at).await, 25.0);
    let answered = db.stats().rollup.series_answered;
    assert!(answered > 0, "the tier answers");
    // Between two grid points: one more in that window, in memory only.
    db.insert(&labels(0), at - 2_500, 7.0)
        .await
        .expect("late insert");
    assert_eq!(value_at(&db, q, at).await, 26.0, "from memory");
    let before = T0 + 16 * MINUTE;
    assert_eq!(
        value_at(&db, q, before).await,
        25.0,
        "the windows before from the tier"
    );
    assert!(db.stats().rollup.series_answered > answered);
    db.flush().await.expect("flush");
    assert_eq!(value_at(&db, q, at).await, 26.0, "from its chunk");
    db.compact().await.expect("compact");
    assert!(db.stats().rollup.buckets_written > 0);
    let answered = db.stats().rollup.series_answered;
    assert_eq!(
        value_at(&db, q, at).await,
        26.0,
        "from the tier built again"
    );
    assert!(db.stats().rollup.series_answered > answered);
    db.close().await.expect("close");
}

/// A database opened without its tiers configured (a command-line tool) still answers from
/// them and keeps track of what it writes below them, for the next open that builds them.
#[tokio::test]
async fn an_open_without_the_tiers_reads_them_and_tracks_its_writes() {
    let dir = tempfile::tempdir().expect("dir");
    let db = open(dir.path(), true).await;
    written_and_built(&db, |i| i as f64).await;
    db.close().await.expect("close");
    let q = "max_over_time(tier_test[2m])";
    let at = T0 + 20 * MINUTE;

    let db = open(dir.path(), false).await;
    assert_eq!(value_at(&db, q, at).await, 240.0);
    assert!(db.stats().rollup.series_answered > 0, "read from the tier");
    db.insert(&labels(0), at - 2_500, 1e6)
        .await
        .expect("late insert");
    db.flush().await.expect("flush");
    db.compact().await.expect("compact builds no tier here");
    assert_eq!(db.stats().rollup.groups_written, 0);
    assert_eq!(value_at(&db, q, at).await, 1e6);
    db.close().await.expect("close");

    let db = open(dir.path(), true).await;
    assert_eq!(
        value_at(&db, q, at).await,
        1e6,
        "the mark outlived the reopen"
    );
    db.compact().await.expect("compact");
    assert!(db.stats().rollup.groups_written > 0);
    let answered = db.stats().rollup.series_answered;
    assert_eq!(value_at(&db, q, at).await, 1e6);
    assert!(
        db.stats().rollup.series_answered > answered,
        "the tier built again answers"
    );
    db.close().await.expect("close");
}

/// A snapshot carries the tiers: opened on its own, it answers from them what the source does.
#[tokio::test]
async fn a_snapshot_answers_from_the_tiers_it_copied() {
    let dir = tempfile::tempdir().expect("dir");
    let db = open(dir.path(), true).await;
    for s in 0..3 {
        let points: Vec<(i64, f64)> = (0..600)
            .map(|i| (T0 + i * 4_000 + s as i64, ((i * 13 + s as i64) % 17) as f64))
            .collect();
        db.insert_series(&labels(s), &points).await.expect("insert");
    }
    db.flush().await.expect("flush");
    db.compact().await.expect("compact");
    let q = "avg_over_time(tier_test[4m])";
    let want = answers(&db, q, 2 * MINUTE, T0 + 50 * MINUTE).await;
    assert_eq!(want.len(), 3);
    let copy = dir.path().join("copy");
    db.snapshot(&copy).await.expect("snapshot");
    db.close().await.expect("close");
    let snap = open(&copy, false).await;
    let got = answers(&snap, q, 2 * MINUTE, T0 + 50 * MINUTE).await;
    assert_eq!(got, want);
    assert!(
        snap.stats().rollup.series_answered >= 3,
        "answered from the copied tiers"
    );
    snap.close().await.expect("close");
}

/// Every file under `dir` (the directory lock left out).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with("LOCK") {
                out.push(p);
            }
        }
    }
    out
}

/// Puts `dir` back as `pristine` held it: the files written since (a damage log) removed.
fn restore(dir: &std::path::Path, pristine: &[(std::path::PathBuf, Vec<u8>)]) {
    for p in files_under(dir) {
        if !pristine.iter().any(|(q, _)| *q == p) {
            std::fs::remove_file(&p).expect("remove a file written since");
        }
    }
    for (p, b) in pristine {
        std::fs::write(p, b).expect("restore");
    }
}

/// Every file of a database with tiers damaged in turn (removed, cut, bits flipped): the
/// database refuses to open, or a read fails naming the damage, or the answers on the tiers'
/// grid are those over the points the raw read returns; never a tier answering as if points
/// it lost were never written.
#[tokio::test]
async fn damage_never_makes_a_tier_answer_silently_wrong() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = |dir: &std::path::Path| DatabaseConfig {
        wal_durability: WalDurability::Always,
        ..config(dir, true)
    };
    let db = Arc::new(
        TimeSeriesDBBuilder::new()
            .with_config(cfg(dir.path()))
            .build()
            .await
            .expect("opens"),
    );
    for s in 0..2 {
        let points: Vec<(i64, f64)> = (0..500)
            .map(|i| (T0 + i * 5_000 + s as i64, (i % 9) as f64))
            .collect();
        db.insert_series(&labels(s), &points).await.expect("insert");
    }
    db.flush().await.expect("flush");
    db.compact().await.expect("compact");
    db.close().await.expect("close");

    let pristine: Vec<(std::path::PathBuf, Vec<u8>)> = files_under(dir.path())
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect();
    assert!(pristine.iter().any(|(p, _)| p.ends_with("ROLLUPS")));
    let (mut refused, mut reported, mut checked) = (0, 0, 0);
    let q = "count_over_time(tier_test[2m])";
    for (n, (path, bytes)) in pristine.iter().enumerate() {
        // Removed, cut in half, and three bits flipped in turn.
        for f in 0..5usize {
            restore(dir.path(), &pristine);
            let mut damaged = bytes.clone();
            match f {
                0 => std::fs::remove_file(path).expect("remove"),
                1 => damaged.truncate(damaged.len() / 2),
                k if !damaged.is_empty() => {
                    let at = (n * 7919 + k * 104_729) % damaged.len();
                    damaged[at] ^= 1 << (k % 8);
                }
                _ => {}
            }
            if f > 0 {
                std::fs::write(path, &damaged).expect("damage");
            }
            let db = match TimeSeriesDBBuilder::new()
                .with_config(cfg(dir.path()))
                .build()
                .await
            {
                Ok(db) => Arc::new(db),
                Err(e) => {
                    assert!(
                        matches!(
                            e,
                            gorilla_tsdb::Error::Corrupt { .. } | gorilla_tsdb::Error::Io { .. }
                        ),
                        "{}: {e}",
                        path.display()
                    );
                    refused += 1;
                    continue;
                }
            };
            for s in 0..2 {
                let raw = db.query(&labels(s), TimeRange::ALL).await;
                let engine = Engine::new(db.clone(), EngineOptions::default());
                let sel = format!("count_over_time(tier_test{{series=\"{s}\"}}[2m])");
                let tiered = engine
                    .range_query(&sel, T0, T0 + 50 * MINUTE, 2 * MINUTE)
                    .await;
                let (raw, tiered) = match (raw, tiered) {
                    (Ok(r), Ok(t)) => (r, t),
                    (a, b) => {
                        assert!(
                            a.as_ref()
                                .err()
                                .is_none_or(|e| matches!(e, gorilla_tsdb::Error::Corrupt { .. }))
                                && b.as_ref()
                                    .err()
                                    .is_none_or(|e| format!("{e}").contains("corrupt")),
                            "{}: unexpected errors {:?} {:?}",
                            path.display(),
                            a.err(),
                            b.err()
                        );
                        reported += 1;
                        continue;
                    }
                };
                let points: Vec<i64> = raw
                    .first()
                    .map(|r| r.timestamps.clone())
                    .unwrap_or_default();
                let mut want = Vec::new();
                for t in (T0..=T0 + 50 * MINUTE).step_by(2 * MINUTE as usize) {
                    let c = points
                        .iter()
                        .filter(|&&p| t - 2 * MINUTE <= p && p <= t)
                        .count();
                    if c > 0 {
                        want.push((t, c as f64));
                    }
                }
                let got = tiered.first().map(|t| t.points.clone()).unwrap_or_default();
                assert_eq!(
                    got,
                    want,
                    "{q} of series {s} after fault {f} to {}",
                    path.display()
                );
                checked += 1;
            }
            db.close().await.expect("close");
        }
    }
    eprintln!(
        "tier damage matrix: {refused} refused to open, {reported} reads failed, {checked} answers checked"
    );
    assert!(checked > 0 && refused + reported > 0);
}

/// A tier's own retention shorter than the raw data's: past it, the raw points answer.
#[tokio::test]
async fn past_a_tiers_retention_the_raw_points_answer() {
    let dir = tempfile::tempdir().expect("dir");
    let hour = 60 * MINUTE;
    let start = (now_ms() - 50 * hour) / (5 * MINUTE) * (5 * MINUTE);
    let db = Arc::new(
        TimeSeriesDBBuilder::new()
            .with_config(five_minute_tier(dir.path(), Duration::from_secs(86_400)))
            .build()
            .await
            .expect("opens"),
    );
    let points: Vec<(i64, f64)> = (0..3_600)
        .map(|i| (start + i * 10_000, (i % 13) as f64))
        .collect();
    db.insert_series(&labels(0), &points).await.expect("insert");
    db.flush().await.expect("flush");
    // The first build writes the buckets; the second finds them past the tier's retention.
    db.compact().await.expect("compact");
    db.compact().await.expect("compact");
    assert!(
        db.stats().rollup.chunks_expired > 0,
        "the tier's retention deleted its buckets"
    );
    let q = "count_over_time(tier_test[5m])";
    let got = Engine::new(db.clone(), EngineOptions::default())
        .range_query(q, start + 5 * MINUTE, start + 9 * hour, 5 * MINUTE)
        .await
        .expect("query");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].points.len(),
        108,
        "every window answered from the raw points"
    );
    assert!(
        got[0].points.iter().all(|p| p.1 == 30.0 || p.1 == 31.0),
        "{:?}",
        got[0].points
    );
    db.close().await.expect("close");
}
