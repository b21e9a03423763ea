//! A Redis that loses its data (flushed, or restarted without persistence): reads fail with
//! `StateLost` (never an empty `Ok`) until the owner rebuilt, writes keep working, and
//! instances sharing a prefix converge on one epoch.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tsdb_core::testkit::index::{chunk, labels};
use tsdb_core::{
    ChunkReference, Error, LabelMatcher, Labels, MatchOp, SeriesId, TimeIndex, TimeRange,
};
use tsdb_index_redis::testing::RedisServer;
use tsdb_index_redis::{RedisIndexConfig, RedisTimeIndex};

/// What the owner knows: three series and their chunks.
struct Catalog {
    series: Vec<(SeriesId, Labels)>,
    chunks: Vec<ChunkReference>,
}

fn catalog() -> Catalog {
    let series: Vec<(SeriesId, Labels)> = ["a", "b", "c"]
        .iter()
        .map(|host| {
            let l = labels("up", &[("job", "node"), ("host", host)]);
            (l.series_id(), l)
        })
        .collect();
    let chunks = series
        .iter()
        .flat_map(|(id, _)| (0..5).map(|k| chunk(*id, k * 100, k * 100 + 99, 10, k as u64)))
        .collect();
    Catalog { series, chunks }
}

impl Catalog {
    /// Registers every series and adds every chunk, as the database does on open or rebuild.
    async fn write_to(&self, index: &RedisTimeIndex) {
        for (id, l) in &self.series {
            index.register_series(*id, l).await.expect("register");
        }
        for c in &self.chunks {
            index.add_chunk(c).await.expect("add_chunk");
        }
    }

    fn chunks_of(&self, id: SeriesId) -> Vec<ChunkReference> {
        self.chunks
            .iter()
            .filter(|c| c.series_id == id)
            .copied()
            .collect()
    }
}

fn is_state_lost(r: &Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(
        r,
        Err(Error::StateLost {
            engine: "redis",
            ..
        })
    )
}

/// Every read fails with `StateLost` (retryable); returns the reasons seen.
async fn assert_every_read_lost(index: &RedisTimeIndex, cat: &Catalog, when: &str) -> Vec<String> {
    let id = cat.series[0].0;
    let mut reasons = Vec::new();
    let mut check = |what: &str, r: Result<String, Error>| match r {
        Err(e @ Error::StateLost { .. }) => {
            assert!(e.is_retryable(), "{when}: {what}: {e:?}");
            reasons.push(e.to_string());
        }
        other => panic!("{when}: {what} must fail with StateLost, got {other:?}"),
    };
    let r = index.series_labels(id).await;
    check("series_labels", r.map(|v| format!("{v:?}")));
    let r = index.find_series(&[]).await;
    check("find_series()", r.map(|v| format!("{v:?}")));
    let r = index
        .find_series(&[LabelMatcher::equal("job", "node")])
        .await;
    check("find_series(job=node)", r.map(|v| format!("{v:?}")));
    let r = index
        .find_series(&[LabelMatcher::new("host", MatchOp::RegexMatch, "a|.*c").expect("regex")])
        .await;
    check("find_series(host=~...)", r.map(|v| format!("{v:?}")));
    let r = index.label_names().await;
    check("label_names", r.map(|v| format!("{v:?}")));
    let r = index.label_values("host").await;
    check("label_values", r.map(|v| format!("{v:?}")));
    let r = index.query_chunks(id, TimeRange::ALL).await;
    check("query_chunks", r.map(|v| format!("{v:?}")));
    reasons
}

/// Every read answers, and answers what the catalog holds.
async fn assert_every_read_answers(index: &RedisTimeIndex, cat: &Catalog, when: &str) {
    let mut ids: Vec<SeriesId> = cat.series.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    for (id, l) in &cat.series {
        assert_eq!(
            index.series_labels(*id).await.expect(when),
            Some(l.clone()),
            "{when}: labels"
        );
        assert_eq!(
            index.query_chunks(*id, TimeRange::ALL).await.expect(when),
            cat.chunks_of(*id),
            "{when}: chunks"
        );
    }
    assert_eq!(index.find_series(&[]).await.expect(when), ids, "{when}");
    assert_eq!(
        index
            .find_series(&[LabelMatcher::equal("job", "node")])
            .await
            .expect(when),
        ids,
        "{when}"
    );
    assert_eq!(
        index.label_names().await.expect(when),
        vec!["__name__", "host", "job"],
        "{when}"
    );
    assert_eq!(
        index.label_values("host").await.expect(when),
        vec!["a", "b", "c"],
        "{when}"
    );
    assert!(!index.state_lost().await.expect(when), "{when}: state_lost");
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

async fn flushall(server: &RedisServer) {
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut raw(server).await)
        .await
        .expect("FLUSHALL");
}

async fn epoch_in_redis(server: &RedisServer, prefix: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(format!("{{{prefix}}}:epoch"))
        .query_async(&mut raw(server).await)
        .await
        .expect("GET epoch")
}

fn config(server: &RedisServer, prefix: &str) -> RedisIndexConfig {
    RedisIndexConfig::new(server.url())
        .with_prefix(prefix)
        .with_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn a_flushed_redis_gives_state_lost_on_reads_until_the_owner_rebuilt() {
    let Some(server) = common::server() else {
        return;
    };
    let prefix = common::fresh_prefix("flush");
    let index = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect");
    let cat = catalog();
    cat.write_to(&index).await;
    assert_every_read_answers(&index, &cat, "before the flush").await;
    let before = index.epoch();

    flushall(&server).await;
    assert!(
        index.state_lost().await.expect("state_lost"),
        "state_lost must check Redis now and see the flush"
    );
    let reasons = assert_every_read_lost(&index, &cat, "after the flush").await;
    assert!(
        reasons[0].contains("missing") && reasons[0].contains("flushed"),
        "the reason says what was seen: {}",
        reasons[0]
    );
    // Writes work while lost: the owner registers its series and chunks again.
    cat.write_to(&index).await;
    index.drop_series(SeriesId(12345)).await.expect("drop");
    index
        .remove_chunks(
            cat.series[0].0,
            &[chunk(cat.series[0].0, 0, 0, 1, 999).location],
        )
        .await
        .expect("remove_chunks");
    assert_every_read_lost(&index, &cat, "rebuilt but not marked").await;
    index.mark_rebuilt().await.expect("mark_rebuilt");
    assert_every_read_answers(&index, &cat, "after mark_rebuilt").await;
    assert_ne!(index.epoch(), before, "a new epoch after the loss");
    assert_eq!(
        epoch_in_redis(&server, &prefix).await,
        Some(index.epoch()),
        "the adopted epoch is the one in Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_without_its_data_gives_state_lost_until_the_owner_rebuilt() {
    for tcp in [false, true] {
        let started = if tcp {
            RedisServer::start_tcp()
        } else {
            RedisServer::start()
        };
        let Some(mut server) = started.expect("redis-server must start") else {
            return;
        };
        let prefix = common::fresh_prefix("restart-empty");
        let index = RedisTimeIndex::connect(
            config(&server, &prefix).with_timeout(Duration::from_millis(500)),
        )
        .await
        .expect("connect");
        let cat = catalog();
        cat.write_to(&index).await;
        assert_every_read_answers(&index, &cat, "before the restart").await;

        server
            .restart()
            .expect("restart redis-server (no persistence)");
        // The connection manager reconnects: a call or two may still be Unavailable.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = index.query_chunks(cat.series[0].0, TimeRange::ALL).await;
            match r {
                Err(Error::Unavailable { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(Error::StateLost { .. }) => break,
                other => panic!("tcp={tcp}: query_chunks after an empty restart: {other:?}"),
            }
        }
        assert_every_read_lost(&index, &cat, "after the restart").await;
        assert!(index.state_lost().await.expect("state_lost"));
        cat.write_to(&index).await;
        index.mark_rebuilt().await.expect("mark_rebuilt");
        assert_every_read_answers(&index, &cat, "after the rebuild").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_notice_rebuild_and_converge_on_one_epoch() {
    let Some(server) = common::server() else {
        return;
    };
    let prefix = common::fresh_prefix("two");
    let a = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect a");
    let b = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect b");
    assert_eq!(a.epoch(), b.epoch(), "the second instance adopts the epoch");
    let cat = catalog();
    cat.write_to(&a).await;
    assert_every_read_answers(&b, &cat, "b before the flush").await;

    flushall(&server).await;
    // Both notice, both rebuild, concurrently.
    assert_every_read_lost(&a, &cat, "a after the flush").await;
    assert_every_read_lost(&b, &cat, "b after the flush").await;
    let (ra, rb) = tokio::join!(
        async {
            cat.write_to(&a).await;
            a.mark_rebuilt().await
        },
        async {
            cat.write_to(&b).await;
            b.mark_rebuilt().await
        }
    );
    ra.expect("a mark_rebuilt");
    rb.expect("b mark_rebuilt");
    assert_eq!(a.epoch(), b.epoch(), "one epoch for both");
    assert_eq!(epoch_in_redis(&server, &prefix).await, Some(a.epoch()));
    // Neither sees StateLost again: no ping-pong.
    for round in 0..3 {
        assert_every_read_answers(&a, &cat, &format!("a, round {round}")).await;
        assert_every_read_answers(&b, &cat, &format!("b, round {round}")).await;
        b.mark_rebuilt()
            .await
            .expect("a repeated mark_rebuilt is a no-op");
    }
    assert_eq!(epoch_in_redis(&server, &prefix).await, Some(a.epoch()));
}

#[tokio::test]
async fn an_instance_that_notices_late_adopts_the_epoch_of_the_first_rebuild() {
    let Some(server) = common::server() else {
        return;
    };
    let prefix = common::fresh_prefix("late");
    let a = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect a");
    let b = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect b");
    let cat = catalog();
    cat.write_to(&a).await;
    let old = a.epoch();

    flushall(&server).await;
    assert_every_read_lost(&a, &cat, "a after the flush").await;
    cat.write_to(&a).await;
    a.mark_rebuilt().await.expect("a mark_rebuilt");
    assert_every_read_answers(&a, &cat, "a after its rebuild").await;
    let new = a.epoch();
    assert_ne!(new, old);

    // b has not called anything since the flush: it sees another epoch than its own.
    let reasons = assert_every_read_lost(&b, &cat, "b after a's rebuild").await;
    assert!(
        reasons[0].contains("changed") && reasons[0].contains(&old) && reasons[0].contains(&new),
        "the reason names both epochs: {}",
        reasons[0]
    );
    cat.write_to(&b).await;
    b.mark_rebuilt().await.expect("b mark_rebuilt");
    assert_eq!(b.epoch(), new, "b adopts a's epoch");
    assert_eq!(
        epoch_in_redis(&server, &prefix).await,
        Some(new.clone()),
        "b wrote no epoch of its own"
    );
    assert_every_read_answers(&b, &cat, "b after its rebuild").await;
    assert_every_read_answers(&a, &cat, "a after b's rebuild").await;
}

#[tokio::test]
async fn a_write_that_sees_the_epoch_missing_makes_reads_fail_and_never_hangs() {
    let Some(server) = common::server() else {
        return;
    };
    let prefix = common::fresh_prefix("write-notices");
    let index = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect");
    let cat = catalog();
    cat.write_to(&index).await;
    let epoch = index.epoch();

    flushall(&server).await;
    // The first call after the flush is a write of a series Redis no longer has.
    let started = Instant::now();
    let err = index
        .add_chunk(&chunk(cat.series[0].0, 1000, 1100, 5, 77))
        .await
        .expect_err("the series is gone from Redis");
    assert!(
        matches!(err, Error::SeriesNotFound { .. }),
        "add_chunk of a series Redis lost: {err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "add_chunk hung");
    // Put the old epoch back behind the index's back: only the write can have told it.
    let _: () = redis::cmd("SET")
        .arg(format!("{{{prefix}}}:epoch"))
        .arg(&epoch)
        .query_async(&mut raw(&server).await)
        .await
        .expect("SET epoch");
    assert_every_read_lost(&index, &cat, "after a write saw the epoch missing").await;
    cat.write_to(&index).await;
    index.mark_rebuilt().await.expect("mark_rebuilt");
    assert_every_read_answers(&index, &cat, "after the rebuild").await;
}

#[tokio::test]
async fn a_second_loss_during_the_rebuild_is_not_taken_for_a_finished_rebuild() {
    let Some(server) = common::server() else {
        return;
    };
    let prefix = common::fresh_prefix("twice");
    let index = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect");
    let cat = catalog();
    cat.write_to(&index).await;

    flushall(&server).await;
    assert_every_read_lost(&index, &cat, "after the first flush").await;
    cat.write_to(&index).await;
    flushall(&server).await; // the rebuild is gone again
    index
        .register_series(cat.series[0].0, &cat.series[0].1)
        .await
        .expect("register after the second flush");
    let err = index
        .mark_rebuilt()
        .await
        .expect_err("the rebuild was lost with the second flush");
    assert!(
        matches!(err, Error::StateLost { ref reason, .. } if reason.contains("during the rebuild")),
        "{err:?}"
    );
    assert_every_read_lost(&index, &cat, "after the refused mark_rebuilt").await;
    cat.write_to(&index).await;
    index.mark_rebuilt().await.expect("mark_rebuilt");
    assert_every_read_answers(&index, &cat, "after the second rebuild").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_a_flush_never_answer_from_the_diminished_state() {
    let Some(server) = common::server() else {
        return;
    };
    let prefix = common::fresh_prefix("race");
    let index = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect");
    let cat = Arc::new(catalog());
    cat.write_to(&index).await;
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let index = index.clone();
            let cat = Arc::clone(&cat);
            tokio::spawn(async move {
                let (id, l) = cat.series[r % cat.series.len()].clone();
                let want = cat.chunks_of(id);
                let (mut answers, mut lost) = (0u32, 0u32);
                let deadline = Instant::now() + Duration::from_secs(20);
                while lost < 50 {
                    assert!(Instant::now() < deadline, "reader {r} never saw StateLost");
                    let chunks = index.query_chunks(id, TimeRange::ALL).await;
                    let found = index.series_labels(id).await;
                    let all = index.find_series(&[]).await;
                    for ok in [
                        chunks.as_ref().map(|c| c == &want),
                        found.as_ref().map(|f| f.as_ref() == Some(&l)),
                        all.as_ref().map(|a| a.len() == cat.series.len()),
                    ] {
                        match ok {
                            Ok(true) => answers += 1,
                            Ok(false) => panic!(
                                "reader {r}: a diminished answer: {chunks:?} {found:?} {all:?}"
                            ),
                            Err(Error::StateLost { .. }) => lost += 1,
                            Err(e) => panic!("reader {r}: {e:?}"),
                        }
                    }
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    flushall(&server).await;
    for reader in readers {
        let answers = reader.await.expect("reader");
        assert!(answers > 0, "readers answered before the flush");
    }
    assert!(is_state_lost(&index.label_names().await));
}

#[tokio::test]
async fn connect_creates_or_adopts_the_epoch() {
    let Some(server) = common::server() else {
        return;
    };
    // An empty prefix: the epoch is created.
    let prefix = common::fresh_prefix("connect");
    let a = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect a");
    assert_eq!(epoch_in_redis(&server, &prefix).await, Some(a.epoch()));
    // An existing epoch is adopted.
    let b = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect b");
    assert_eq!(b.epoch(), a.epoch());
    assert!(!b.state_lost().await.expect("state_lost"));

    // Keys of a version without epochs: a new epoch over them, and reads answer from them.
    let prefix = common::fresh_prefix("old-version");
    let cat = catalog();
    cat.write_to(
        &RedisTimeIndex::connect(config(&server, &prefix))
            .await
            .expect("connect writer"),
    )
    .await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{{{prefix}}}:epoch"))
        .query_async(&mut raw(&server).await)
        .await
        .expect("DEL epoch");
    let c = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect c");
    assert_eq!(epoch_in_redis(&server, &prefix).await, Some(c.epoch()));
    assert_every_read_answers(&c, &cat, "over keys without an epoch").await;
}

/// One command as `MONITOR` prints it: its arguments, unquoted (escapes left as printed).
fn monitored_args(line: &str) -> Option<(bool, Vec<String>)> {
    let (client, rest) = line.split_once("] ")?;
    let from_script = client.ends_with(" lua");
    let args = rest
        .trim()
        .trim_matches('"')
        .split("\" \"")
        .map(str::to_owned)
        .collect();
    Some((from_script, args))
}

#[tokio::test]
async fn every_read_checks_the_epoch_in_the_same_transaction() {
    use std::io::{BufRead, BufReader, Write};

    let Some(server) = common::server() else {
        return;
    };
    let prefix = common::fresh_prefix("monitor");
    let index = RedisTimeIndex::connect(config(&server, &prefix))
        .await
        .expect("connect");
    let cat = catalog();
    cat.write_to(&index).await;
    let id = cat.series[0].0;

    let mut monitor = std::os::unix::net::UnixStream::connect(server.dir().join("redis.sock"))
        .expect("monitor connection");
    monitor
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    monitor.write_all(b"MONITOR\r\n").expect("MONITOR");
    let mut lines = BufReader::new(monitor).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("+OK"));

    let mut reads = 0;
    index.series_labels(id).await.expect("series_labels");
    reads += 1;
    index.find_series(&[]).await.expect("find_series");
    reads += 1;
    index
        .find_series(&[
            LabelMatcher::new("host", MatchOp::RegexMatch, ".*").expect("regex"),
            LabelMatcher::equal("job", "node"),
        ])
        .await
        .expect("find_series with a dictionary");
    reads += 2; // two round trips
    index.label_names().await.expect("label_names");
    reads += 1;
    index.label_values("host").await.expect("label_values");
    reads += 1;
    index
        .query_chunks(id, TimeRange::ALL)
        .await
        .expect("query_chunks");
    reads += 2; // the first query learns the longest duration and scans again
    let _: String = redis::cmd("ECHO")
        .arg("end-of-reads")
        .query_async(&mut raw(&server).await)
        .await
        .expect("ECHO");

    let mut log = Vec::new();
    for line in lines {
        let line = line.expect("monitor line");
        if line.contains("\"end-of-reads\"") {
            break;
        }
        log.push(line);
    }
    let log_text = log.join("\n");
    let epoch_key = format!("{{{prefix}}}:epoch");
    let (mut in_multi, mut checked, mut transactions) = (false, false, 0);
    let mut reads_seen = 0;
    for line in &log {
        let Some((from_script, args)) = monitored_args(line) else {
            continue;
        };
        if from_script {
            continue;
        }
        match args[0].to_ascii_uppercase().as_str() {
            "MULTI" => (in_multi, checked) = (true, false),
            "EXEC" => {
                assert!(
                    checked,
                    "a transaction without the epoch check:\n{log_text}"
                );
                (in_multi, transactions) = (false, transactions + 1);
            }
            "GET" if args.get(1) == Some(&epoch_key) => {
                assert!(
                    in_multi,
                    "the epoch read outside a transaction: {line}\n{log_text}"
                );
                checked = true;
            }
            "GET" | "ZRANGE" | "ZRANGEBYLEX" | "ZUNION" => {
                assert!(
                    in_multi && checked,
                    "a read outside the epoch-checked transaction: {line}\n{log_text}"
                );
                reads_seen += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        transactions, reads,
        "one checked transaction per round trip"
    );
    assert!(reads_seen >= reads, "{reads_seen} data commands");
}
