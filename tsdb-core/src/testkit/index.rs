//! Conformance tests for [`TimeIndex`] implementations.
//!
//! Every check takes an **empty** index and panics with a message naming the broken rule.
//! [`run_all`] asks a factory for a fresh empty index before each check. [`compare_random`]
//! applies one seeded random operation sequence to two indexes and asserts that they give the
//! same answers; [`ReferenceIndex`] is a slow, obviously correct index to compare against.
//!
//! ```no_run
//! # // The kit's own reference index stands in for yours here.
//! # type MyIndex = tsdb_core::testkit::index::ReferenceIndex;
//! # // Doc tests are not built with `--test`, which drops `#[test]` functions unchecked: this
//! # // shim makes `#[tokio::test]` mean `#[tokio::main]`, so the test below is compiled.
//! # mod tokio {
//! #     pub use ::tokio::main as test;
//! #     pub use ::tokio::*;
//! # }
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn conforms() {
//!     tsdb_core::testkit::index::run_all(|| async {
//!         std::sync::Arc::new(MyIndex::default()) as std::sync::Arc<tsdb_core::DynTimeIndex>
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

use async_trait::async_trait;

use super::data::SplitMix64;
use crate::error::{Error, Result};
use crate::index::{DynTimeIndex, TimeIndex};
use crate::labels::Labels;
use crate::matcher::{LabelMatcher, MatchOp};
use crate::types::{ChunkLocation, ChunkReference, CodecId, SeriesId, TimeRange};

/// Runs every check of this module, each on a fresh empty index from `fresh`.
pub async fn run_all<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<DynTimeIndex>>,
{
    registration_is_idempotent_and_detects_collisions(&*fresh().await).await;
    equality_matchers(&*fresh().await).await;
    empty_value_matches_missing_label(&*fresh().await).await;
    regex_matchers_are_anchored(&*fresh().await).await;
    matchers_combine_with_and(&*fresh().await).await;
    label_names_and_values(&*fresh().await).await;
    chunks_need_a_registered_series_and_valid_times(&*fresh().await).await;
    query_chunks_boundaries_and_order(&*fresh().await).await;
    query_chunks_extreme_times(&*fresh().await).await;
    query_chunks_finds_long_chunks_among_short_ones(&*fresh().await).await;
    duplicate_chunks_are_no_ops(&*fresh().await).await;
    remove_chunks(&*fresh().await).await;
    drop_series(&*fresh().await).await;
    lookups_over_many_series(&*fresh().await).await;
    concurrent_use(fresh().await).await;
    for seed in [1, 2, 3] {
        compare_random(&*fresh().await, &ReferenceIndex::default(), seed, 300).await;
    }
}

/// Labels of metric `m`; panics on invalid labels (test input only).
pub fn labels(metric: &str, pairs: &[(&str, &str)]) -> Labels {
    Labels::new(metric, pairs.iter().copied()).expect("test labels are valid")
}

/// A chunk reference of `series` at `[start, end]` stored at segment `seg`, offset `off`.
pub fn chunk(series: SeriesId, start: i64, end: i64, seg: u64, off: u64) -> ChunkReference {
    ChunkReference {
        series_id: series,
        location: ChunkLocation {
            segment: seg,
            offset: off,
            length: off.wrapping_add(100),
        },
        start_time: start,
        end_time: end,
        point_count: 120,
        codec: CodecId::GORILLA,
    }
}

async fn register(index: &dyn TimeIndex, labels: &Labels) -> SeriesId {
    let id = labels.series_id();
    index
        .register_series(id, labels)
        .await
        .unwrap_or_else(|e| panic!("{}: register_series({labels}) failed: {e}", index.name()));
    id
}

async fn find(index: &dyn TimeIndex, matchers: &[LabelMatcher]) -> Vec<SeriesId> {
    index.find_series(matchers).await.unwrap_or_else(|e| {
        panic!(
            "{}: find_series({}) failed: {e}",
            index.name(),
            show(matchers)
        )
    })
}

async fn query(
    index: &dyn TimeIndex,
    series: SeriesId,
    start: i64,
    end: i64,
) -> Vec<ChunkReference> {
    index
        .query_chunks(series, TimeRange { start, end })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}: query_chunks({series}, [{start}, {end}]) failed: {e}",
                index.name()
            )
        })
}

async fn add(index: &dyn TimeIndex, c: &ChunkReference) {
    index
        .add_chunk(c)
        .await
        .unwrap_or_else(|e| panic!("{}: add_chunk({c:?}) failed: {e}", index.name()));
}

fn show(matchers: &[LabelMatcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(","))
}

fn re(name: &str, op: MatchOp, value: &str) -> LabelMatcher {
    LabelMatcher::new(name, op, value).expect("test regex compiles")
}

fn sorted(mut ids: Vec<SeriesId>) -> Vec<SeriesId> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Registration is idempotent; an id taken by other labels is a collision that changes nothing.
pub async fn registration_is_idempotent_and_detects_collisions(index: &dyn TimeIndex) {
    let name = index.name();
    let a = labels("up", &[("job", "node")]);
    let b = labels("up", &[("job", "api")]);
    let id = register(index, &a).await;
    register(index, &a).await;
    assert_eq!(
        index.series_labels(id).await.expect("series_labels"),
        Some(a.clone()),
        "{name}: series_labels must return the registered labels"
    );
    assert_eq!(
        find(index, &[]).await,
        vec![id],
        "{name}: registering twice must not duplicate the series"
    );
    match index.register_series(id, &b).await {
        Err(Error::SeriesIdCollision { series, .. }) => {
            assert_eq!(series, id, "{name}: collision must name the id")
        }
        other => panic!(
            "{name}: registering other labels under a taken id must give SeriesIdCollision, got {other:?}"
        ),
    }
    assert_eq!(
        index.series_labels(id).await.expect("series_labels"),
        Some(a.clone()),
        "{name}: a collision must not change the registered labels"
    );
    assert!(
        find(index, &[LabelMatcher::equal("job", "api")])
            .await
            .is_empty(),
        "{name}: a collision must not add postings"
    );
    assert_eq!(
        index.label_values("job").await.expect("label_values"),
        vec!["node".to_owned()],
        "{name}: a collision must not add label values"
    );
    // Any id may be used, including ones not derived from the labels.
    let custom = SeriesId(u64::MAX);
    index
        .register_series(custom, &b)
        .await
        .expect("register custom id");
    assert_eq!(
        index.series_labels(custom).await.expect("series_labels"),
        Some(b.clone())
    );
    let zero = SeriesId(0);
    let c = labels("up", &[("job", "zero")]);
    index
        .register_series(zero, &c)
        .await
        .expect("register id 0");
    assert_eq!(
        find(index, &[LabelMatcher::metric("up")]).await,
        sorted(vec![id, custom, zero]),
        "{name}: ids 0 and u64::MAX are valid and results are ascending"
    );
    assert_eq!(
        index
            .series_labels(SeriesId(12345))
            .await
            .expect("series_labels"),
        None,
        "{name}: an unknown id has no labels"
    );
}

struct Fixture {
    /// up{job="node",env="prod"}
    node_prod: SeriesId,
    /// up{job="node",env="dev"}
    node_dev: SeriesId,
    /// up{job="api"} (no env)
    api: SeriesId,
    /// http_requests_total{job="api",env="prod",path="/a"}
    http_a: SeriesId,
    /// http_requests_total{job="api",env="staging",path="/ab"}
    http_ab: SeriesId,
}

async fn fixture(index: &dyn TimeIndex) -> Fixture {
    Fixture {
        node_prod: register(index, &labels("up", &[("job", "node"), ("env", "prod")])).await,
        node_dev: register(index, &labels("up", &[("job", "node"), ("env", "dev")])).await,
        api: register(index, &labels("up", &[("job", "api")])).await,
        http_a: register(
            index,
            &labels(
                "http_requests_total",
                &[("job", "api"), ("env", "prod"), ("path", "/a")],
            ),
        )
        .await,
        http_ab: register(
            index,
            &labels(
                "http_requests_total",
                &[("job", "api"), ("env", "staging"), ("path", "/ab")],
            ),
        )
        .await,
    }
}

async fn expect_find(index: &dyn TimeIndex, matchers: &[LabelMatcher], want: Vec<SeriesId>) {
    let got = find(index, matchers).await;
    assert_eq!(
        got,
        sorted(want),
        "{}: find_series({}) must select exactly these series, ascending",
        index.name(),
        show(matchers)
    );
}

/// `=` and `!=`, on ordinary labels and on `__name__`.
pub async fn equality_matchers(index: &dyn TimeIndex) {
    let f = fixture(index).await;
    let all = vec![f.node_prod, f.node_dev, f.api, f.http_a, f.http_ab];
    expect_find(index, &[], all.clone()).await;
    expect_find(
        index,
        &[LabelMatcher::metric("up")],
        vec![f.node_prod, f.node_dev, f.api],
    )
    .await;
    expect_find(
        index,
        &[LabelMatcher::equal("job", "api")],
        vec![f.api, f.http_a, f.http_ab],
    )
    .await;
    expect_find(
        index,
        &[LabelMatcher::equal("env", "prod")],
        vec![f.node_prod, f.http_a],
    )
    .await;
    expect_find(index, &[LabelMatcher::equal("env", "nope")], vec![]).await;
    expect_find(index, &[LabelMatcher::metric("nope")], vec![]).await;
    // `!=` keeps series without the label (their value reads as "").
    expect_find(
        index,
        &[LabelMatcher::not_equal("env", "prod")],
        vec![f.node_dev, f.api, f.http_ab],
    )
    .await;
    expect_find(
        index,
        &[LabelMatcher::not_equal("__name__", "up")],
        vec![f.http_a, f.http_ab],
    )
    .await;
    expect_find(index, &[LabelMatcher::not_equal("env", "nope")], all).await;
    // Values are compared exactly: no prefix or case folding.
    expect_find(index, &[LabelMatcher::equal("path", "/a")], vec![f.http_a]).await;
    expect_find(index, &[LabelMatcher::equal("env", "Prod")], vec![]).await;
}

/// A matcher that accepts `""` selects series without the label, also for unknown labels.
pub async fn empty_value_matches_missing_label(index: &dyn TimeIndex) {
    let f = fixture(index).await;
    let all = vec![f.node_prod, f.node_dev, f.api, f.http_a, f.http_ab];
    expect_find(index, &[LabelMatcher::equal("env", "")], vec![f.api]).await;
    expect_find(
        index,
        &[LabelMatcher::not_equal("env", "")],
        vec![f.node_prod, f.node_dev, f.http_a, f.http_ab],
    )
    .await;
    expect_find(
        index,
        &[LabelMatcher::equal("path", "")],
        vec![f.node_prod, f.node_dev, f.api],
    )
    .await;
    // A label no series has: every series lacks it.
    expect_find(index, &[LabelMatcher::equal("zone", "")], all.clone()).await;
    expect_find(index, &[LabelMatcher::not_equal("zone", "")], vec![]).await;
    expect_find(index, &[LabelMatcher::equal("zone", "x")], vec![]).await;
    expect_find(index, &[LabelMatcher::not_equal("zone", "x")], all.clone()).await;
    expect_find(index, &[re("zone", MatchOp::RegexMatch, ".*")], all.clone()).await;
    expect_find(index, &[re("zone", MatchOp::RegexMatch, ".+")], vec![]).await;
    expect_find(
        index,
        &[re("zone", MatchOp::RegexNoMatch, ".+")],
        all.clone(),
    )
    .await;
    expect_find(index, &[re("zone", MatchOp::RegexNoMatch, ".*")], vec![]).await;
    // Regexes that accept "" on a label some series have.
    expect_find(
        index,
        &[re("env", MatchOp::RegexMatch, "prod|")],
        vec![f.node_prod, f.api, f.http_a],
    )
    .await;
    expect_find(index, &[re("env", MatchOp::RegexMatch, ".*")], all.clone()).await;
    expect_find(
        index,
        &[re("env", MatchOp::RegexMatch, ".+")],
        vec![f.node_prod, f.node_dev, f.http_a, f.http_ab],
    )
    .await;
    expect_find(
        index,
        &[re("env", MatchOp::RegexNoMatch, ".+")],
        vec![f.api],
    )
    .await;
    expect_find(
        index,
        &[re("env", MatchOp::RegexNoMatch, "prod|")],
        vec![f.node_dev, f.http_ab],
    )
    .await;
    expect_find(
        index,
        &[re("env", MatchOp::RegexNoMatch, "dev")],
        vec![f.node_prod, f.api, f.http_a, f.http_ab],
    )
    .await;
}

/// `=~` and `!~` are anchored at both ends, alternation included.
pub async fn regex_matchers_are_anchored(index: &dyn TimeIndex) {
    let f = fixture(index).await;
    expect_find(
        index,
        &[re("path", MatchOp::RegexMatch, "/a")],
        vec![f.http_a],
    )
    .await;
    expect_find(
        index,
        &[re("path", MatchOp::RegexMatch, "/a.*")],
        vec![f.http_a, f.http_ab],
    )
    .await;
    expect_find(index, &[re("path", MatchOp::RegexMatch, "a")], vec![]).await;
    expect_find(
        index,
        &[re("path", MatchOp::RegexMatch, "/a|b")],
        vec![f.http_a],
    )
    .await;
    expect_find(
        index,
        &[re("env", MatchOp::RegexMatch, "prod|dev")],
        vec![f.node_prod, f.node_dev, f.http_a],
    )
    .await;
    expect_find(index, &[re("env", MatchOp::RegexMatch, "pro")], vec![]).await;
    expect_find(index, &[re("env", MatchOp::RegexMatch, "ro")], vec![]).await;
    expect_find(
        index,
        &[re("__name__", MatchOp::RegexMatch, "http_.*")],
        vec![f.http_a, f.http_ab],
    )
    .await;
    expect_find(index, &[re("__name__", MatchOp::RegexMatch, "u")], vec![]).await;
    expect_find(
        index,
        &[re("__name__", MatchOp::RegexNoMatch, "u")],
        vec![f.node_prod, f.node_dev, f.api, f.http_a, f.http_ab],
    )
    .await;
    expect_find(
        index,
        &[re("__name__", MatchOp::RegexNoMatch, "up")],
        vec![f.http_a, f.http_ab],
    )
    .await;
    expect_find(
        index,
        &[re("path", MatchOp::RegexNoMatch, "/a")],
        vec![f.node_prod, f.node_dev, f.api, f.http_ab],
    )
    .await;
    expect_find(
        index,
        &[re("job", MatchOp::RegexMatch, "(?i)API")],
        vec![f.api, f.http_a, f.http_ab],
    )
    .await;
}

/// Several matchers select the intersection; matchers on one label all apply.
pub async fn matchers_combine_with_and(index: &dyn TimeIndex) {
    let f = fixture(index).await;
    expect_find(
        index,
        &[
            LabelMatcher::metric("up"),
            LabelMatcher::equal("job", "node"),
        ],
        vec![f.node_prod, f.node_dev],
    )
    .await;
    expect_find(
        index,
        &[
            LabelMatcher::metric("up"),
            LabelMatcher::not_equal("env", "dev"),
        ],
        vec![f.node_prod, f.api],
    )
    .await;
    expect_find(
        index,
        &[
            LabelMatcher::equal("job", "api"),
            re("env", MatchOp::RegexMatch, "prod|staging"),
            re("path", MatchOp::RegexNoMatch, "/ab"),
        ],
        vec![f.http_a],
    )
    .await;
    expect_find(
        index,
        &[
            re("env", MatchOp::RegexMatch, ".+"),
            re("env", MatchOp::RegexMatch, "d.*"),
            LabelMatcher::not_equal("env", "dev"),
        ],
        vec![],
    )
    .await;
    expect_find(
        index,
        &[
            LabelMatcher::equal("env", "prod"),
            LabelMatcher::equal("env", "dev"),
        ],
        vec![],
    )
    .await;
    // Only negative matchers: subtract from all series.
    expect_find(
        index,
        &[
            LabelMatcher::not_equal("job", "node"),
            re("path", MatchOp::RegexNoMatch, "/a"),
        ],
        vec![f.api, f.http_ab],
    )
    .await;
    expect_find(
        index,
        &[LabelMatcher::equal("env", ""), LabelMatcher::metric("up")],
        vec![f.api],
    )
    .await;
}

/// `label_names` and `label_values` are sorted, deduplicated and follow drops.
pub async fn label_names_and_values(index: &dyn TimeIndex) {
    let name = index.name();
    assert!(
        index.label_names().await.expect("label_names").is_empty(),
        "{name}: empty index has no label names"
    );
    let f = fixture(index).await;
    let names = index.label_names().await.expect("label_names");
    assert_eq!(
        names,
        ["__name__", "env", "job", "path"],
        "{name}: label_names"
    );
    assert_eq!(
        index.label_values("env").await.expect("label_values"),
        ["dev", "prod", "staging"],
        "{name}: label_values(env)"
    );
    assert_eq!(
        index.label_values("__name__").await.expect("label_values"),
        ["http_requests_total", "up"],
        "{name}: label_values(__name__)"
    );
    assert!(
        index
            .label_values("zone")
            .await
            .expect("label_values")
            .is_empty(),
        "{name}: unknown label has no values"
    );
    index.drop_series(f.http_a).await.expect("drop_series");
    index.drop_series(f.http_ab).await.expect("drop_series");
    assert_eq!(
        index.label_names().await.expect("label_names"),
        ["__name__", "env", "job"],
        "{name}: a label used by no series must disappear"
    );
    assert_eq!(
        index.label_values("env").await.expect("label_values"),
        ["dev", "prod"],
        "{name}: a value used by no series must disappear"
    );
    assert_eq!(
        index.label_values("__name__").await.expect("label_values"),
        ["up"],
        "{name}: metric names follow drops"
    );
    assert!(
        index
            .label_values("path")
            .await
            .expect("label_values")
            .is_empty(),
        "{name}: dropped label has no values"
    );
    // Non-ASCII values are kept and sorted by bytes.
    register(index, &labels("up", &[("env", "é\"\\\n")])).await;
    assert_eq!(
        index.label_values("env").await.expect("label_values"),
        ["dev", "prod", "é\"\\\n"],
        "{name}: values sort by bytes"
    );
}

/// `add_chunk` rejects unknown series and inverted times; `query_chunks` rejects inverted ranges.
pub async fn chunks_need_a_registered_series_and_valid_times(index: &dyn TimeIndex) {
    let name = index.name();
    let unknown = SeriesId(42);
    match index.add_chunk(&chunk(unknown, 0, 10, 1, 0)).await {
        Err(Error::SeriesNotFound { series }) => {
            assert_eq!(series, unknown, "{name}: SeriesNotFound names the series")
        }
        other => {
            panic!("{name}: add_chunk of an unknown series must give SeriesNotFound, got {other:?}")
        }
    }
    assert!(
        query(index, unknown, i64::MIN, i64::MAX).await.is_empty(),
        "{name}: unknown series has no chunks"
    );
    let id = register(index, &labels("up", &[])).await;
    match index.add_chunk(&chunk(id, 11, 10, 1, 0)).await {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!(
            "{name}: add_chunk with start_time > end_time must give InvalidInput, got {other:?}"
        ),
    }
    match index.query_chunks(id, TimeRange { start: 5, end: 4 }).await {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!(
            "{name}: query_chunks with an inverted range must give InvalidInput, got {other:?}"
        ),
    }
    assert!(
        query(index, id, i64::MIN, i64::MAX).await.is_empty(),
        "{name}: rejected chunks must not be stored"
    );
    index
        .remove_chunks(unknown, &[chunk(unknown, 0, 1, 1, 0).location])
        .await
        .expect("remove_chunks of unknown series is Ok");
    index
        .drop_series(unknown)
        .await
        .expect("drop_series of unknown series is Ok");
}

/// Inclusive ends at every boundary; results ordered by start, end, then location.
pub async fn query_chunks_boundaries_and_order(index: &dyn TimeIndex) {
    let name = index.name();
    let id = register(index, &labels("up", &[("job", "a")])).await;
    let other = register(index, &labels("up", &[("job", "b")])).await;
    let a = chunk(id, 10, 20, 1, 0);
    let b = chunk(id, 20, 30, 1, 200);
    let c = chunk(id, 15, 25, 2, 0); // overlaps a and b
    let d = chunk(id, 10, 20, 0, 500); // same span as a, smaller location
    let e = chunk(id, 10, 15, 3, 0); // same start, smaller end
    let p = chunk(id, 40, 40, 1, 900); // a single instant
    let x = chunk(other, 0, 100, 1, 0); // another series, same location as a
    // Added out of order on purpose.
    for ch in [&p, &b, &a, &x, &c, &e, &d] {
        add(index, ch).await;
    }
    let cases: &[((i64, i64), &[&ChunkReference])] = &[
        ((i64::MIN, i64::MAX), &[&e, &d, &a, &c, &b, &p]),
        ((20, 20), &[&d, &a, &c, &b]),
        ((21, 29), &[&c, &b]),
        ((26, 30), &[&b]),
        ((31, 39), &[]),
        ((40, 40), &[&p]),
        ((41, i64::MAX), &[]),
        ((0, 9), &[]),
        ((0, 10), &[&e, &d, &a]),
        ((16, 16), &[&d, &a, &c]),
        ((i64::MIN, 14), &[&e, &d, &a]),
        ((30, 40), &[&b, &p]),
    ];
    for ((start, end), want) in cases {
        let got = query(index, id, *start, *end).await;
        let want: Vec<ChunkReference> = want.iter().map(|c| **c).collect();
        assert_eq!(
            got, want,
            "{name}: query_chunks([{start}, {end}]) must return the overlapping chunks ordered by (start, end, location)"
        );
    }
    assert_eq!(
        query(index, other, 100, 100).await,
        vec![x],
        "{name}: series keep their own chunks"
    );
    assert_eq!(
        query(index, other, 101, 200).await,
        vec![],
        "{name}: end is inclusive, not beyond"
    );
}

/// Chunks at `i64::MIN`, `i64::MAX`, around `±2^53` and spanning everything are exact.
pub async fn query_chunks_extreme_times(index: &dyn TimeIndex) {
    let name = index.name();
    let id = register(index, &labels("up", &[])).await;
    let big = 1i64 << 53;
    let min = chunk(id, i64::MIN, i64::MIN, 1, 0);
    let max = chunk(id, i64::MAX, i64::MAX, 1, 1);
    let all = chunk(id, i64::MIN, i64::MAX, 1, 2);
    let b1 = chunk(id, big + 1, big + 1, 1, 3);
    let b2 = chunk(id, big + 2, big + 3, 1, 4);
    let neg = chunk(id, -big - 3, -big - 1, 1, 5);
    let zero = chunk(id, -1, 0, 1, 6);
    for c in [&max, &b2, &min, &zero, &b1, &neg, &all] {
        add(index, c).await;
    }
    let cases: &[((i64, i64), &[&ChunkReference])] = &[
        ((i64::MIN, i64::MIN), &[&min, &all]),
        ((i64::MAX, i64::MAX), &[&all, &max]),
        (
            (i64::MIN, i64::MAX),
            &[&min, &all, &neg, &zero, &b1, &b2, &max],
        ),
        ((big + 1, big + 1), &[&all, &b1]),
        ((big + 2, big + 2), &[&all, &b2]),
        ((big, big), &[&all]),
        ((big + 4, i64::MAX - 1), &[&all]),
        ((-big - 1, -big - 1), &[&all, &neg]),
        ((-big, -2), &[&all]),
        ((0, 0), &[&all, &zero]),
        ((i64::MIN + 1, -big - 4), &[&all]),
    ];
    for ((start, end), want) in cases {
        let got = query(index, id, *start, *end).await;
        let want: Vec<ChunkReference> = want.iter().map(|c| **c).collect();
        assert_eq!(
            got, want,
            "{name}: query_chunks([{start}, {end}]) with extreme times must be exact"
        );
    }
    // Locations with extreme numbers round-trip.
    let mut far = chunk(id, 5, 5, u64::MAX, u64::MAX);
    far.location.length = u64::MAX;
    far.point_count = u32::MAX;
    far.codec = CodecId(u16::MAX);
    add(index, &far).await;
    assert_eq!(
        query(index, id, 5, 5).await,
        vec![all, far],
        "{name}: extreme locations and counts are kept exactly"
    );
}

/// A long chunk that started long ago is found among many short, later ones.
pub async fn query_chunks_finds_long_chunks_among_short_ones(index: &dyn TimeIndex) {
    let name = index.name();
    let id = register(index, &labels("up", &[])).await;
    let long = chunk(id, 0, 10_000, 9, 0);
    add(index, &long).await;
    let mut short = Vec::new();
    for i in 0..200i64 {
        let c = chunk(id, 100 + i * 10, 100 + i * 10 + 9, 1, i as u64);
        add(index, &c).await;
        short.push(c);
    }
    let got = query(index, id, 1_000, 1_000).await;
    assert_eq!(
        got,
        vec![long, short[90]],
        "{name}: a long chunk must be found even when many chunks start after it"
    );
    let got = query(index, id, 5_000, 6_000).await;
    assert_eq!(
        got,
        vec![long],
        "{name}: only the long chunk covers [5000, 6000]"
    );
    let got = query(index, id, 10_000, 20_000).await;
    assert_eq!(got, vec![long], "{name}: the long chunk's inclusive end");
    let got = query(index, id, 10_001, 20_000).await;
    assert!(got.is_empty(), "{name}: nothing after the long chunk's end");
}

/// Re-adding a location is a no-op, even with other fields; equal spans at other locations stay.
pub async fn duplicate_chunks_are_no_ops(index: &dyn TimeIndex) {
    let name = index.name();
    let id = register(index, &labels("up", &[])).await;
    let a = chunk(id, 10, 20, 1, 0);
    add(index, &a).await;
    add(index, &a).await;
    let mut changed = a;
    changed.start_time = 0;
    changed.end_time = 100;
    changed.point_count = 1;
    add(index, &changed).await;
    assert_eq!(
        query(index, id, i64::MIN, i64::MAX).await,
        vec![a],
        "{name}: re-adding a location must keep the first reference only"
    );
    let twin = chunk(id, 10, 20, 1, 1);
    add(index, &twin).await;
    assert_eq!(
        query(index, id, 15, 15).await,
        vec![a, twin],
        "{name}: equal spans at different locations are different chunks"
    );
}

/// `remove_chunks` removes exactly the given locations and ignores the rest.
pub async fn remove_chunks(index: &dyn TimeIndex) {
    let name = index.name();
    let id = register(index, &labels("up", &[("job", "a")])).await;
    let other = register(index, &labels("up", &[("job", "b")])).await;
    let cs: Vec<ChunkReference> = (0..6)
        .map(|i| chunk(id, i * 10, i * 10 + 15, 1, i as u64))
        .collect();
    for c in &cs {
        add(index, c).await;
    }
    let o = chunk(other, 0, 100, 1, 1); // same location as cs[1], other series
    add(index, &o).await;
    index
        .remove_chunks(
            id,
            &[
                cs[1].location,
                cs[4].location,
                chunk(id, 0, 0, 77, 77).location,
                cs[1].location,
            ],
        )
        .await
        .expect("remove_chunks");
    assert_eq!(
        query(index, id, i64::MIN, i64::MAX).await,
        vec![cs[0], cs[2], cs[3], cs[5]],
        "{name}: remove_chunks must remove the given locations only"
    );
    assert_eq!(
        query(index, other, 0, 0).await,
        vec![o],
        "{name}: remove_chunks must not touch other series"
    );
    index
        .remove_chunks(id, &[cs[1].location])
        .await
        .expect("removing again is Ok");
    index
        .remove_chunks(id, &[])
        .await
        .expect("removing nothing is Ok");
    // A removed location can be added again, with new times.
    let again = chunk(id, 1000, 1001, 1, 1);
    add(index, &again).await;
    assert_eq!(
        query(index, id, 1000, 1000).await,
        vec![again],
        "{name}: a removed location can be reused"
    );
    assert_eq!(
        query(index, id, 12, 12).await,
        vec![cs[0]],
        "{name}: the old span of a reused location is gone"
    );
}

/// `drop_series` forgets labels, postings and chunks; re-registration starts empty.
pub async fn drop_series(index: &dyn TimeIndex) {
    let name = index.name();
    let f = fixture(index).await;
    add(index, &chunk(f.api, 0, 10, 1, 0)).await;
    add(index, &chunk(f.node_dev, 0, 10, 1, 0)).await;
    index.drop_series(f.api).await.expect("drop_series");
    index
        .drop_series(f.api)
        .await
        .expect("drop_series twice is Ok");
    assert_eq!(
        index.series_labels(f.api).await.expect("series_labels"),
        None,
        "{name}: dropped series has no labels"
    );
    assert!(
        query(index, f.api, i64::MIN, i64::MAX).await.is_empty(),
        "{name}: dropped series has no chunks"
    );
    expect_find(
        index,
        &[LabelMatcher::equal("job", "api")],
        vec![f.http_a, f.http_ab],
    )
    .await;
    expect_find(index, &[LabelMatcher::equal("env", "")], vec![]).await;
    expect_find(
        index,
        &[],
        vec![f.node_prod, f.node_dev, f.http_a, f.http_ab],
    )
    .await;
    match index.add_chunk(&chunk(f.api, 0, 10, 1, 5)).await {
        Err(Error::SeriesNotFound { .. }) => {}
        other => {
            panic!("{name}: add_chunk after drop_series must give SeriesNotFound, got {other:?}")
        }
    }
    assert_eq!(
        query(index, f.node_dev, 5, 5).await.len(),
        1,
        "{name}: other series keep their chunks"
    );
    let api = labels("up", &[("job", "api")]);
    index
        .register_series(f.api, &api)
        .await
        .expect("re-register");
    assert!(
        query(index, f.api, i64::MIN, i64::MAX).await.is_empty(),
        "{name}: a re-registered series starts without chunks"
    );
    expect_find(index, &[LabelMatcher::equal("env", "")], vec![f.api]).await;
    // After a drop, the id may carry other labels.
    index.drop_series(f.api).await.expect("drop_series");
    let other = labels("up", &[("job", "other")]);
    index
        .register_series(f.api, &other)
        .await
        .expect("register other labels under a freed id");
    assert_eq!(
        index.series_labels(f.api).await.expect("series_labels"),
        Some(other),
        "{name}: a freed id can be reused"
    );
}

/// Lookups over a few thousand series, where selections are unions of many postings lists,
/// compared with [`ReferenceIndex`].
pub async fn lookups_over_many_series(index: &dyn TimeIndex) {
    let reference = ReferenceIndex::default();
    for i in 0..3_000u64 {
        let instance = format!("host-{i}");
        let job = format!("job-{}", i % 40);
        let mut pairs = vec![("instance", instance.as_str()), ("job", job.as_str())];
        if i % 3 != 0 {
            pairs.push(("env", ["prod", "dev"][(i % 2) as usize]));
        }
        let l = labels(&format!("m{}", i % 7), &pairs);
        register(index, &l).await;
        register(&reference, &l).await;
    }
    let cases: Vec<Vec<LabelMatcher>> = vec![
        vec![re("instance", MatchOp::RegexMatch, "host-1.*")],
        vec![re("instance", MatchOp::RegexMatch, ".*7.*")],
        vec![re("instance", MatchOp::RegexMatch, ".*7")],
        vec![re("instance", MatchOp::RegexMatch, "host-(1|2)0.")],
        vec![
            LabelMatcher::metric("m3"),
            re("instance", MatchOp::RegexMatch, "host-2.*"),
        ],
        vec![
            LabelMatcher::metric("m3"),
            re("job", MatchOp::RegexMatch, "job-(1|2|3).*"),
        ],
        vec![
            re("job", MatchOp::RegexMatch, "job-1.*"),
            re("instance", MatchOp::RegexNoMatch, "host-1.*"),
        ],
        vec![
            LabelMatcher::equal("job", "job-5"),
            re("instance", MatchOp::RegexNoMatch, ".*1.*"),
        ],
        vec![
            LabelMatcher::equal("env", ""),
            re("job", MatchOp::RegexMatch, "job-3."),
        ],
        vec![
            re("env", MatchOp::RegexMatch, "prod|"),
            LabelMatcher::not_equal("job", "job-1"),
        ],
        vec![re("instance", MatchOp::RegexNoMatch, "host-.*")],
        vec![re("instance", MatchOp::RegexMatch, "host-42|host-43|nope")],
        vec![LabelMatcher::equal("instance", "host-42")],
    ];
    for matchers in cases {
        let want = find(&reference, &matchers).await;
        expect_find(index, &matchers, want).await;
    }
}

/// Many tasks registering, adding, querying and dropping at once leave an exact final state.
pub async fn concurrent_use(index: Arc<DynTimeIndex>) {
    const TASKS: u64 = 8;
    const SERIES: u64 = 16;
    const CHUNKS: u64 = 10;
    let name = index.name();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let index = Arc::clone(&index);
        tasks.push(tokio::spawn(async move {
            for s in 0..SERIES {
                // Every task registers every series: concurrent idempotent registration.
                let l = labels("conc", &[("s", &s.to_string()), ("parity", if s % 2 == 0 { "even" } else { "odd" })]);
                let id = SeriesId(s + 1);
                index.register_series(id, &l).await.expect("concurrent register_series");
                for c in 0..CHUNKS {
                    // Tasks t and t+1 add the same locations: concurrent duplicates.
                    let owner = t / 2;
                    let ch = chunk(id, (c * 100) as i64, (c * 100 + 99) as i64, owner, c);
                    index.add_chunk(&ch).await.expect("concurrent add_chunk");
                }
                let got = index.query_chunks(id, TimeRange::ALL).await.expect("concurrent query_chunks");
                assert!(got.windows(2).all(|w| (w[0].start_time, w[0].end_time, w[0].location) < (w[1].start_time, w[1].end_time, w[1].location)), "{name}: concurrent query_chunks must stay ordered without duplicates");
                let found = index.find_series(&[LabelMatcher::metric("conc")]).await.expect("concurrent find_series");
                assert!(found.windows(2).all(|w| w[0] < w[1]) && found.contains(&id), "{name}: concurrent find_series must be ascending and see this task's registration");
            }
            // Temporary series, registered and dropped by this task only.
            let tmp = labels("tmp", &[("t", &t.to_string())]);
            let tid = SeriesId(1000 + t);
            index.register_series(tid, &tmp).await.expect("register tmp");
            index.add_chunk(&chunk(tid, 0, 1, 0, 0)).await.expect("add tmp chunk");
            index.drop_series(tid).await.expect("drop tmp");
        }));
    }
    for task in tasks {
        task.await.expect("a concurrent task panicked");
    }
    let all: Vec<SeriesId> = (1..=SERIES).map(SeriesId).collect();
    expect_find(&*index, &[], all).await;
    expect_find(
        &*index,
        &[LabelMatcher::equal("parity", "even")],
        (1..=SERIES)
            .filter(|i| (i - 1) % 2 == 0)
            .map(SeriesId)
            .collect(),
    )
    .await;
    assert_eq!(
        index.label_values("t").await.expect("label_values"),
        Vec::<String>::new(),
        "{name}: dropped tmp series leave no values"
    );
    for s in 1..=SERIES {
        let got = query(&*index, SeriesId(s), i64::MIN, i64::MAX).await;
        assert_eq!(
            got.len() as u64,
            CHUNKS * TASKS / 2,
            "{name}: series {s} must hold each distinct chunk exactly once after concurrent adds"
        );
    }
}

/// Whether two results agree: equal values, or errors of the same kind.
fn same_outcome<T: PartialEq + std::fmt::Debug>(a: &Result<T>, b: &Result<T>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => std::mem::discriminant(x) == std::mem::discriminant(y),
        _ => false,
    }
}

/// Applies the same seeded random sequence of `steps` operations to `a` and `b` (both empty)
/// and asserts that every answer is the same (errors compared by kind).
///
/// The sequence covers every method, collisions, unknown ids, duplicate and overlapping
/// chunks, extreme times and all matcher kinds.
pub async fn compare_random(a: &dyn TimeIndex, b: &dyn TimeIndex, seed: u64, steps: usize) {
    let mut rng = SplitMix64(seed);
    let metrics = ["up", "cpu", "mem"];
    let names = ["job", "env", "zone"];
    let values = ["a", "b", "ab", "c"];
    let regexes = ["a.*", "b|", ".*", ".+", "a|c", "", "ab?", "[bc]"];
    let times = [
        i64::MIN,
        i64::MIN + 1,
        -(1 << 53) - 1,
        -5,
        0,
        3,
        7,
        10,
        1 << 53,
        (1 << 53) + 1,
        i64::MAX - 1,
        i64::MAX,
    ];
    let mut known: Vec<SeriesId> = vec![SeriesId(7)];
    let ctx = |step: usize, op: &str| {
        format!(
            "seed {seed} step {step}: {op}: {} and {} disagree",
            a.name(),
            b.name()
        )
    };
    for step in 0..steps {
        let mut pick = |n: usize| rng.below(n as u64) as usize;
        let series = known[pick(known.len())];
        match pick(10) {
            0 | 1 => {
                let mut pairs = Vec::new();
                for n in names {
                    if pick(3) > 0 {
                        pairs.push((n, values[pick(values.len())]));
                    }
                }
                let l = Labels::new(metrics[pick(metrics.len())], pairs).expect("valid labels");
                // Mostly the derived id; sometimes a small forced id to provoke collisions.
                let id = if pick(4) == 0 {
                    SeriesId(pick(4) as u64)
                } else {
                    l.series_id()
                };
                let (x, y) = (
                    a.register_series(id, &l).await,
                    b.register_series(id, &l).await,
                );
                assert!(
                    same_outcome(&x, &y),
                    "{}: {x:?} vs {y:?}",
                    ctx(step, &format!("register_series({id}, {l})"))
                );
                if x.is_ok() && !known.contains(&id) {
                    known.push(id);
                }
            }
            2 | 3 => {
                let s = times[pick(times.len())];
                let e = if pick(5) == 0 {
                    times[pick(times.len())]
                } else {
                    s.saturating_add(pick(20) as i64)
                };
                let c = chunk(series, s, e, pick(3) as u64, pick(6) as u64);
                let (x, y) = (a.add_chunk(&c).await, b.add_chunk(&c).await);
                assert!(
                    same_outcome(&x, &y),
                    "{}: {x:?} vs {y:?}",
                    ctx(step, &format!("add_chunk({c:?})"))
                );
            }
            4 => {
                let locs: Vec<ChunkLocation> = (0..pick(3))
                    .map(|_| chunk(series, 0, 0, pick(3) as u64, pick(6) as u64).location)
                    .collect();
                let (x, y) = (
                    a.remove_chunks(series, &locs).await,
                    b.remove_chunks(series, &locs).await,
                );
                assert!(
                    same_outcome(&x, &y),
                    "{}: {x:?} vs {y:?}",
                    ctx(step, &format!("remove_chunks({series}, {locs:?})"))
                );
            }
            5 => {
                if pick(3) == 0 {
                    let (x, y) = (a.drop_series(series).await, b.drop_series(series).await);
                    assert!(
                        same_outcome(&x, &y),
                        "{}: {x:?} vs {y:?}",
                        ctx(step, &format!("drop_series({series})"))
                    );
                } else {
                    let (x, y) = (a.series_labels(series).await, b.series_labels(series).await);
                    assert!(
                        same_outcome(&x, &y),
                        "{}: {x:?} vs {y:?}",
                        ctx(step, &format!("series_labels({series})"))
                    );
                }
            }
            6 | 7 => {
                let (s, e) = (times[pick(times.len())], times[pick(times.len())]);
                let range = TimeRange { start: s, end: e };
                let (x, y) = (
                    a.query_chunks(series, range).await,
                    b.query_chunks(series, range).await,
                );
                assert!(
                    same_outcome(&x, &y),
                    "{}: {x:?} vs {y:?}",
                    ctx(step, &format!("query_chunks({series}, {range:?})"))
                );
            }
            8 => {
                let mut ms = Vec::new();
                for _ in 0..pick(3) + 1 {
                    let n = if pick(4) == 0 {
                        "__name__"
                    } else {
                        names[pick(names.len())]
                    };
                    let v = if n == "__name__" && pick(2) == 0 {
                        metrics[pick(metrics.len())]
                    } else {
                        values[pick(values.len())]
                    };
                    let m = match pick(6) {
                        0 => LabelMatcher::equal(n, v),
                        1 => LabelMatcher::not_equal(n, v),
                        2 => LabelMatcher::equal(n, ""),
                        3 => LabelMatcher::not_equal(n, ""),
                        4 => re(n, MatchOp::RegexMatch, regexes[pick(regexes.len())]),
                        _ => re(n, MatchOp::RegexNoMatch, regexes[pick(regexes.len())]),
                    };
                    ms.push(m);
                }
                let (x, y) = (a.find_series(&ms).await, b.find_series(&ms).await);
                assert!(
                    same_outcome(&x, &y),
                    "{}: {x:?} vs {y:?}",
                    ctx(step, &format!("find_series({})", show(&ms)))
                );
            }
            _ => {
                if pick(2) == 0 {
                    let (x, y) = (a.label_names().await, b.label_names().await);
                    assert!(
                        same_outcome(&x, &y),
                        "{}: {x:?} vs {y:?}",
                        ctx(step, "label_names()")
                    );
                } else {
                    let n = if pick(4) == 0 {
                        "__name__"
                    } else {
                        names[pick(names.len())]
                    };
                    let (x, y) = (a.label_values(n).await, b.label_values(n).await);
                    assert!(
                        same_outcome(&x, &y),
                        "{}: {x:?} vs {y:?}",
                        ctx(step, &format!("label_values({n})"))
                    );
                }
            }
        }
    }
    // Final full comparison.
    let (x, y) = (a.find_series(&[]).await, b.find_series(&[]).await);
    assert!(
        same_outcome(&x, &y),
        "seed {seed}: final series lists differ: {x:?} vs {y:?}"
    );
    for s in &known {
        let (x, y) = (
            a.query_chunks(*s, TimeRange::ALL).await,
            b.query_chunks(*s, TimeRange::ALL).await,
        );
        assert!(
            same_outcome(&x, &y),
            "seed {seed}: final chunks of {s} differ: {x:?} vs {y:?}"
        );
    }
}

/// Each series' labels and chunks, by location.
type ReferenceState = BTreeMap<SeriesId, (Labels, BTreeMap<ChunkLocation, ChunkReference>)>;

/// A slow, obviously correct [`TimeIndex`]: every query scans everything. For comparisons only.
#[derive(Debug, Default)]
pub struct ReferenceIndex {
    series: Mutex<ReferenceState>,
}

impl ReferenceIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReferenceState> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl TimeIndex for ReferenceIndex {
    fn name(&self) -> &'static str {
        "reference"
    }

    async fn register_series(&self, series: SeriesId, labels: &Labels) -> Result<()> {
        let mut all = self.lock();
        if let Some((existing, _)) = all.get(&series) {
            if existing != labels {
                return Err(Error::SeriesIdCollision {
                    series,
                    existing: existing.to_string(),
                    new: labels.to_string(),
                });
            }
            return Ok(());
        }
        all.insert(series, (labels.clone(), BTreeMap::new()));
        Ok(())
    }

    async fn series_labels(&self, series: SeriesId) -> Result<Option<Labels>> {
        Ok(self.lock().get(&series).map(|(l, _)| l.clone()))
    }

    async fn find_series(&self, matchers: &[LabelMatcher]) -> Result<Vec<SeriesId>> {
        Ok(self
            .lock()
            .iter()
            .filter(|(_, (l, _))| matchers.iter().all(|m| m.matches(l.get(m.name()))))
            .map(|(id, _)| *id)
            .collect())
    }

    async fn label_names(&self) -> Result<Vec<String>> {
        let names: BTreeSet<String> = self
            .lock()
            .values()
            .flat_map(|(l, _)| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .collect();
        Ok(names.into_iter().collect())
    }

    async fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let values: BTreeSet<String> = self
            .lock()
            .values()
            .filter_map(|(l, _)| l.get(name).map(str::to_owned))
            .collect();
        Ok(values.into_iter().collect())
    }

    async fn add_chunk(&self, chunk: &ChunkReference) -> Result<()> {
        if chunk.start_time > chunk.end_time {
            return Err(Error::invalid_input("chunk start_time after end_time"));
        }
        let mut all = self.lock();
        let (_, chunks) = all.get_mut(&chunk.series_id).ok_or(Error::SeriesNotFound {
            series: chunk.series_id,
        })?;
        chunks.entry(chunk.location).or_insert(*chunk);
        Ok(())
    }

    async fn query_chunks(
        &self,
        series: SeriesId,
        range: TimeRange,
    ) -> Result<Vec<ChunkReference>> {
        if range.start > range.end {
            return Err(Error::invalid_input("inverted range"));
        }
        let mut out: Vec<ChunkReference> = self
            .lock()
            .get(&series)
            .map(|(_, c)| {
                c.values()
                    .filter(|c| c.time_range().overlaps(&range))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|c| (c.start_time, c.end_time, c.location));
        Ok(out)
    }

    async fn remove_chunks(&self, series: SeriesId, locations: &[ChunkLocation]) -> Result<()> {
        if let Some((_, chunks)) = self.lock().get_mut(&series) {
            for l in locations {
                chunks.remove(l);
            }
        }
        Ok(())
    }

    async fn drop_series(&self, series: SeriesId) -> Result<()> {
        self.lock().remove(&series);
        Ok(())
    }
}
