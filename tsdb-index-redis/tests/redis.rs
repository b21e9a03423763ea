//! Redis-specific behaviour: shared catalogs, configuration, outages and restarts, corrupt data.

mod common;

use std::time::{Duration, Instant};

use tsdb_core::testkit::index::{chunk, labels};
use tsdb_core::{Error, LabelMatcher, SeriesId, TimeIndex, TimeRange};
use tsdb_index_redis::testing::RedisServer;
use tsdb_index_redis::{RedisIndexConfig, RedisTimeIndex};

#[tokio::test]
async fn two_instances_on_one_prefix_share_the_catalog() {
    let Some(server) = common::server() else {
        return;
    };
    let config = RedisIndexConfig::new(server.url()).with_prefix(common::fresh_prefix("shared"));
    let a = RedisTimeIndex::connect(config.clone())
        .await
        .expect("connect a");
    let b = RedisTimeIndex::connect(config).await.expect("connect b");
    let other = common::index(&server, "other").await;

    let l = labels("up", &[("job", "node")]);
    let id = l.series_id();
    a.register_series(id, &l).await.expect("register via a");
    let c1 = chunk(id, 0, 10, 1, 0);
    a.add_chunk(&c1).await.expect("add via a");
    assert_eq!(
        b.series_labels(id).await.expect("labels via b"),
        Some(l.clone())
    );
    assert_eq!(
        b.find_series(&[LabelMatcher::equal("job", "node")])
            .await
            .expect("find via b"),
        vec![id]
    );
    assert_eq!(
        b.query_chunks(id, TimeRange::ALL)
            .await
            .expect("query via b"),
        vec![c1]
    );
    // b adds a long chunk: a, which has seen only short ones, must still find it.
    let long = chunk(id, -1_000_000, 1_000_000, 2, 0);
    b.add_chunk(&long).await.expect("add via b");
    b.add_chunk(&c1).await.expect("duplicate via b");
    assert_eq!(
        a.query_chunks(id, TimeRange::at(500_000))
            .await
            .expect("query via a"),
        vec![long]
    );
    assert_eq!(
        a.query_chunks(id, TimeRange::at(5))
            .await
            .expect("query via a"),
        vec![long, c1]
    );
    // Another prefix on the same server sees nothing.
    assert!(
        other
            .find_series(&[])
            .await
            .expect("find via other")
            .is_empty()
    );
    assert_eq!(
        other.series_labels(id).await.expect("labels via other"),
        None
    );
    b.drop_series(id).await.expect("drop via b");
    assert_eq!(a.series_labels(id).await.expect("labels via a"), None);
    assert!(a.label_names().await.expect("names via a").is_empty());
}

#[tokio::test]
async fn bad_configuration_is_invalid_input() {
    for prefix in ["", "a{b", "a}"] {
        let err = RedisTimeIndex::connect(
            RedisIndexConfig::new("redis://127.0.0.1:1/").with_prefix(prefix),
        )
        .await
        .expect_err("bad prefix");
        assert!(
            matches!(err, Error::InvalidInput { .. }),
            "prefix {prefix:?}: {err:?}"
        );
    }
    let err = RedisTimeIndex::connect(RedisIndexConfig::new("not a url"))
        .await
        .expect_err("bad url");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let err = RedisTimeIndex::connect(
        RedisIndexConfig::new("redis://127.0.0.1:1/").with_timeout(Duration::ZERO),
    )
    .await
    .expect_err("zero timeout");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

#[tokio::test]
async fn connecting_to_nothing_is_unavailable_within_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("redis+unix://{}", dir.path().join("absent.sock").display());
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = RedisTimeIndex::connect(RedisIndexConfig::new(url).with_timeout(timeout))
        .await
        .expect_err("nothing listens there");
    // A bound on a hang, not a performance figure: generous slack for a loaded machine.
    assert!(
        started.elapsed() < timeout + Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            Error::Unavailable {
                engine: "redis",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

/// Every method, once: each must answer within the bound with `Unavailable` or a correct value.
async fn every_call_during_outage(
    index: &RedisTimeIndex,
    id: SeriesId,
    timeout: Duration,
) -> usize {
    let l = labels("up", &[("job", "node")]);
    let mut unavailable = 0;
    let mut check = |what: &str, started: Instant, err: Option<Error>| {
        assert!(
            started.elapsed() < timeout + Duration::from_secs(2),
            "{what} hung for {:?} while Redis was down",
            started.elapsed()
        );
        if let Some(err) = err {
            assert!(
                matches!(
                    err,
                    Error::Unavailable {
                        engine: "redis",
                        ..
                    }
                ),
                "{what}: {err:?}"
            );
            unavailable += 1;
        }
    };
    let t = Instant::now();
    let r = index.register_series(id, &l).await;
    check("register_series", t, r.err());
    let t = Instant::now();
    let r = index.series_labels(id).await;
    if let Ok(v) = &r {
        assert_eq!(v.as_ref(), Some(&l), "series_labels answered wrongly");
    }
    check("series_labels", t, r.err());
    let t = Instant::now();
    let r = index
        .find_series(&[LabelMatcher::equal("job", "node")])
        .await;
    if let Ok(v) = &r {
        assert_eq!(v, &vec![id], "find_series answered wrongly");
    }
    check("find_series", t, r.err());
    let t = Instant::now();
    let r = index.label_names().await;
    check("label_names", t, r.err());
    let t = Instant::now();
    let r = index.label_values("job").await;
    check("label_values", t, r.err());
    let t = Instant::now();
    let r = index.add_chunk(&chunk(id, 100, 200, 9, 9)).await;
    check("add_chunk", t, r.err());
    let t = Instant::now();
    let r = index
        .query_chunks(id, TimeRange::new(0, 50).expect("range"))
        .await;
    if let Ok(v) = &r {
        assert_eq!(
            v,
            &vec![chunk(id, 0, 10, 1, 0)],
            "query_chunks answered wrongly"
        );
    }
    check("query_chunks", t, r.err());
    let t = Instant::now();
    let r = index
        .remove_chunks(id, &[chunk(id, 0, 0, 7, 7).location])
        .await;
    check("remove_chunks", t, r.err());
    let t = Instant::now();
    let r = index.drop_series(SeriesId(1)).await;
    check("drop_series", t, r.err());
    unavailable
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_gives_unavailable_then_recovers_without_duplicates() {
    let Some(mut server) = RedisServer::start_durable().expect("redis-server must start") else {
        return;
    };
    let timeout = Duration::from_millis(400);
    let index = RedisTimeIndex::connect(
        RedisIndexConfig::new(server.url())
            .with_prefix(common::fresh_prefix("restart"))
            .with_timeout(timeout),
    )
    .await
    .expect("connect");
    let l = labels("up", &[("job", "node")]);
    let id = l.series_id();
    index.register_series(id, &l).await.expect("register");
    index.add_chunk(&chunk(id, 0, 10, 1, 0)).await.expect("add");

    // A writer keeps adding chunks through the outage and retries each until it lands.
    let writer = {
        let index = index.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            for i in 0..40u64 {
                let c = chunk(id, 1_000 + i as i64 * 10, 1_000 + i as i64 * 10 + 9, 2, i);
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let started = Instant::now();
                    match index.add_chunk(&c).await {
                        Ok(()) => break,
                        Err(Error::Unavailable { .. }) => {
                            assert!(
                                started.elapsed() < timeout + Duration::from_secs(2),
                                "add_chunk hung"
                            );
                            assert!(Instant::now() < deadline, "add_chunk never recovered");
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("add_chunk during a restart: {e:?}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.kill();
    let unavailable = every_call_during_outage(&index, id, timeout).await;
    assert_eq!(
        unavailable, 9,
        "with Redis down, every call must fail as Unavailable"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().expect("restart redis-server");

    // Recovery: within a bounded time, calls succeed again and answer correctly.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match index.series_labels(id).await {
            Ok(found) => {
                assert_eq!(found, Some(l.clone()), "labels must survive the restart");
                break;
            }
            Err(Error::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("index did not recover after the restart: {e:?}"),
        }
    }
    let failures = writer.await.expect("writer task");
    assert!(failures > 0, "the writer must have seen the outage");
    let mut want = vec![chunk(id, 0, 10, 1, 0)];
    want.extend(
        (0..40u64).map(|i| chunk(id, 1_000 + i as i64 * 10, 1_000 + i as i64 * 10 + 9, 2, i)),
    );
    let got = index
        .query_chunks(id, TimeRange::ALL)
        .await
        .expect("query after recovery");
    assert_eq!(
        got, want,
        "every chunk exactly once after retries through a restart"
    );
    assert_eq!(
        index.find_series(&[]).await.expect("find after recovery"),
        vec![id]
    );
}

#[tokio::test]
async fn corrupt_entries_are_errors_not_panics() {
    let Some(server) = common::server() else {
        return;
    };
    let prefix = common::fresh_prefix("corrupt");
    let index =
        RedisTimeIndex::connect(RedisIndexConfig::new(server.url()).with_prefix(prefix.clone()))
            .await
            .expect("connect");
    let l = labels("up", &[]);
    let id = l.series_id();
    index.register_series(id, &l).await.expect("register");
    // Write garbage where the index keeps its data, through a plain connection.
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let chunks_key = format!("{{{prefix}:{id}}}:chunks");
    let _: () = redis::cmd("ZADD")
        .arg(&chunks_key)
        .arg(0)
        .arg(&b"short"[..])
        .query_async(&mut conn)
        .await
        .expect("zadd");
    let err = index
        .query_chunks(id, TimeRange::ALL)
        .await
        .expect_err("corrupt entry");
    assert!(
        matches!(err, Error::Corrupt { ref source_name, .. } if source_name.contains("chunks")),
        "{err:?}"
    );
    let labels_key = format!("{{{prefix}:{id}}}:labels");
    let _: () = redis::cmd("SET")
        .arg(&labels_key)
        .arg(&b"no separators"[..])
        .query_async(&mut conn)
        .await
        .expect("set");
    let err = index.series_labels(id).await.expect_err("corrupt labels");
    assert!(
        matches!(err, Error::Corrupt { ref source_name, .. } if source_name.contains("labels")),
        "{err:?}"
    );
    let _: () = redis::cmd("ZADD")
        .arg(format!("{{{prefix}}}:names"))
        .arg(0)
        .arg(&b"\xC3"[..])
        .query_async(&mut conn)
        .await
        .expect("zadd");
    let err = index.label_names().await.expect_err("non-UTF-8 name");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let _: () = redis::cmd("SET")
        .arg(format!("{{{prefix}}}:series"))
        .arg("wrong type")
        .query_async(&mut conn)
        .await
        .expect("set");
    let err = index.find_series(&[]).await.expect_err("wrong type");
    assert!(
        matches!(
            err,
            Error::Engine {
                engine: "redis",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_gives_unavailable_within_the_timeout_then_recovers() {
    let Some(server) = common::server() else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let index = RedisTimeIndex::connect(
        RedisIndexConfig::new(server.url())
            .with_prefix(common::fresh_prefix("frozen"))
            .with_timeout(timeout),
    )
    .await
    .expect("connect");
    let l = labels("up", &[("job", "node")]);
    let id = l.series_id();
    index.register_series(id, &l).await.expect("register");
    index.add_chunk(&chunk(id, 0, 10, 1, 0)).await.expect("add");

    server.pause().expect("SIGSTOP redis-server");
    let unavailable = every_call_during_outage(&index, id, timeout).await;
    server.resume().expect("SIGCONT redis-server");
    assert_eq!(
        unavailable, 9,
        "with Redis frozen, every call must time out as Unavailable"
    );

    // Writes that timed out may or may not have been applied once Redis thawed: either way a
    // retry converges to one copy.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match index.add_chunk(&chunk(id, 100, 200, 9, 9)).await {
            Ok(()) => break,
            Err(Error::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("index did not recover after the freeze: {e:?}"),
        }
    }
    assert_eq!(
        index
            .query_chunks(id, TimeRange::ALL)
            .await
            .expect("query after recovery"),
        vec![chunk(id, 0, 10, 1, 0), chunk(id, 100, 200, 9, 9)],
        "chunks after the freeze: the old one and the retried one, once each"
    );
    assert_eq!(index.series_labels(id).await.expect("labels"), Some(l));
}
