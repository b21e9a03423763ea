//! The HTTP API over a real listener: Prometheus's JSON and error classes, writes in every
//! protocol, bad and oversized bodies, overload answers, self-metrics.

mod common;

use std::io::Write;

use common::{TestServer, request, series};
use gorilla_tsdb::{LabelMatcher, TimeRange};
use serde_json::json;
use tsdb_server::ServerOptions;

/// A round time, in ms.
const T0: i64 = 1_700_000_000_000;

/// `m{job="a"}` and `m{job="b"}` (gauges) and `c_total{job="a"}` (a counter), every 15 s
/// for 10 minutes from T0.
async fn with_data(options: ServerOptions) -> TestServer {
    let server = TestServer::start(options).await;
    let points = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
        (0..=40).map(|i| (T0 + i * 15_000, f(i))).collect()
    };
    let (status, body) = server
        .remote_write(&request(vec![
            series(&[("__name__", "m"), ("job", "a")], &points(&|i| i as f64)),
            series(
                &[("__name__", "m"), ("job", "b")],
                &points(&|i| 0.5 * i as f64),
            ),
            series(
                &[("__name__", "c_total"), ("job", "a")],
                &points(&|i| (i * 10) as f64),
            ),
        ]))
        .await;
    assert_eq!(status, 204, "{body}");
    server
}

fn at(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[tokio::test]
async fn query_answers_are_written_as_prometheus_writes_them() {
    let server = with_data(ServerOptions::default()).await;
    let t = T0 + 60_000;
    let (status, body) = server
        .get(&format!("/api/v1/query?query=m&time={}", at(t)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"m","job":"a"},"value":[1700000060,"4"]},{"metric":{"__name__":"m","job":"b"},"value":[1700000060,"2"]}]}}"#
    );
    let (_, body) = server
        .get(&format!("/api/v1/query?query=1%2B1&time={}", at(t + 500)))
        .await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000060.5,"2"]}}"#
    );
    let (_, body) = server
        .get(&format!("/api/v1/query?query=%22a%3Cb%22&time={}", at(t)))
        .await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"string","result":[1700000060,"a\u003cb"]}}"#
    );
    let (status, body) = server
        .get(&format!(
            "/api/v1/query_range?query=sum(rate(c_total[1m]))&start={}&end={}&step=30s",
            at(t),
            at(t + 60_000)
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000060,"0.6666666666666666"],[1700000090,"0.6666666666666666"],[1700000120,"0.6666666666666666"]]}]}}"#
    );
    // POST form: the body's values, as with GET.
    let form = format!("query=m%7Bjob%3D%22b%22%7D&time={}", at(t));
    let (status, _, body) = server
        .post(
            "/api/v1/query",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.into_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""job":"b"},"value":[1700000060,"2"]"#),
        "{body}"
    );
    let form = format!("query=m&start={}&end={}&step=60", at(t), at(t + 60_000));
    let (status, _, body) = server
        .post(
            "/api/v1/query_range",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""values":[[1700000060,"4"],[1700000120,"8"]]"#),
        "{body}"
    );
    server.stop().await;
}

/// `(status, errorType)` of an answer.
async fn error_class(server: &TestServer, path: &str) -> (u16, String) {
    let (status, json) = server.get_json(path).await;
    assert_eq!(json["status"], "error", "{path}: {json}");
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{json}"
    );
    (
        status,
        json["errorType"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn errors_have_prometheus_types_and_status_codes() {
    let server = with_data(ServerOptions::default()).await;
    let bad = (400, "bad_data".to_owned());
    let t = at(T0 + 60_000);
    for path in [
        format!("/api/v1/query?query=sum(&time={t}"),
        "/api/v1/query?query=m&time=yesterday".to_owned(),
        "/api/v1/query?query=m&timeout=soon".to_owned(),
        "/api/v1/query?query=".to_owned(),
        format!("/api/v1/query_range?query=m&start={t}&end=1&step=15"),
        format!("/api/v1/query_range?query=m&start=1&end={t}&step=0"),
        format!("/api/v1/query_range?query=m&start=0&end={t}&step=1"),
        format!("/api/v1/query_range?query=m[5m]&start={t}&end={t}&step=15"),
        format!("/api/v1/query_range?query=m&start={t}&end={t}"),
        "/api/v1/series".to_owned(),
        "/api/v1/series?match[]=rate(m[5m])".to_owned(),
        "/api/v1/series?match[]={job=~\".*\"}".to_owned(),
        "/api/v1/labels?match[]=m{".to_owned(),
        "/api/v1/label/bad-name/values".to_owned(),
    ] {
        assert_eq!(error_class(&server, &path).await, bad, "{path}");
    }
    let (_, json) = server
        .get_json("/api/v1/query?query=m&time=yesterday")
        .await;
    assert_eq!(
        json["error"],
        r#"invalid parameter "time": Invalid time value for 'time': cannot parse "yesterday" to a valid timestamp"#
    );
    // Valid PromQL that fails to evaluate: execution, 422.
    assert_eq!(
        error_class(
            &server,
            &format!("/api/v1/query?query=m%20%2B%20on()%20m&time={t}")
        )
        .await,
        (422, "execution".to_owned())
    );
    // No time left: timeout, 503.
    assert_eq!(
        error_class(
            &server,
            &format!("/api/v1/query?query=m&time={t}&timeout=0")
        )
        .await,
        (503, "timeout".to_owned())
    );
    let (status, _) = server.get("/api/v1/no_such_endpoint").await;
    assert_eq!(status, 404);
    server.stop().await;

    // Over --query.max-samples: execution, 422, with Prometheus's wording.
    let server = with_data(ServerOptions {
        query_max_samples: 10,
        ..ServerOptions::default()
    })
    .await;
    let (status, json) = server
        .get_json(&format!("/api/v1/query?query=m[10m]&time={t}"))
        .await;
    assert_eq!(
        (status, json["errorType"].as_str()),
        (422, Some("execution"))
    );
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("query processing would load too many samples")),
        "{json}"
    );
    server.stop().await;
}

#[tokio::test]
async fn series_labels_and_values() {
    let server = with_data(ServerOptions::default()).await;
    let (status, json) = server.get_json("/api/v1/series?match[]=m").await;
    assert_eq!(status, 200);
    assert_eq!(
        json["data"],
        json!([{"__name__": "m", "job": "a"}, {"__name__": "m", "job": "b"}])
    );
    let (_, json) = server
        .get_json("/api/v1/series?match[]=m{job=\"a\"}&match[]=c_total")
        .await;
    assert_eq!(
        json["data"],
        json!([{"__name__": "c_total", "job": "a"}, {"__name__": "m", "job": "a"}])
    );
    // A time range without samples of the series: nothing.
    let (_, json) = server
        .get_json(&format!(
            "/api/v1/series?match[]=m&start=0&end={}",
            at(T0 - 1)
        ))
        .await;
    assert_eq!(json["data"], json!([]));
    let (_, json) = server
        .get_json(&format!(
            "/api/v1/series?match[]=m&start={}&end={}",
            at(T0 + 600_000),
            at(T0 + 700_000)
        ))
        .await;
    assert_eq!(json["data"].as_array().map(Vec::len), Some(2));
    let (_, json) = server.get_json("/api/v1/labels").await;
    assert_eq!(json["data"], json!(["__name__", "job"]));
    let (_, json) = server.get_json("/api/v1/label/__name__/values").await;
    assert_eq!(json["data"], json!(["c_total", "m"]));
    let (_, json) = server
        .get_json("/api/v1/label/job/values?match[]=m{job=\"b\"}")
        .await;
    assert_eq!(json["data"], json!(["b"]));
    // Label names and values come from the index, for any time range (as Prometheus's head).
    let (_, json) = server
        .get_json(&format!("/api/v1/labels?start=0&end={}", at(T0 - 1)))
        .await;
    assert_eq!(json["data"], json!(["__name__", "job"]));
    let (_, json) = server.get_json("/api/v1/label/nothing/values").await;
    assert_eq!(json["data"], json!([]));
    let (status, json) = server.get_json("/api/v1/status/buildinfo").await;
    assert_eq!(status, 200);
    assert_eq!(json["data"]["version"], "2.42.0");
    let (status, json) = server.get_json("/api/v1/query_exemplars?query=m").await;
    assert_eq!((status, &json["data"]), (200, &json!([])));
    let (status, body) = server.get("/-/healthy").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.get("/-/ready").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn remote_write_keeps_stale_markers_bit_for_bit() {
    let server = TestServer::start(ServerOptions::default()).await;
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let go_nan = f64::from_bits(0x7ff8_0000_0000_0001);
    let (status, body) = server
        .remote_write(&request(vec![series(
            &[("__name__", "up"), ("job", "x")],
            &[(T0, 1.0), (T0 + 15_000, go_nan), (T0 + 30_000, stale)],
        )]))
        .await;
    assert_eq!(status, 204, "{body}");
    let stored = server
        .db
        .query(vec![LabelMatcher::metric("up")], TimeRange::ALL)
        .await
        .expect("query");
    let bits: Vec<u64> = stored[0].values.iter().map(|v| v.to_bits()).collect();
    assert_eq!(
        bits,
        vec![1f64.to_bits(), go_nan.to_bits(), stale.to_bits()]
    );
    // A NaN value is a value; the stale marker ends the series.
    let (_, json) = server
        .get_json(&format!("/api/v1/query?query=up&time={}", at(T0 + 20_000)))
        .await;
    assert_eq!(json["data"]["result"][0]["value"][1], "NaN");
    let (_, json) = server
        .get_json(&format!("/api/v1/query?query=up&time={}", at(T0 + 40_000)))
        .await;
    assert_eq!(json["data"]["result"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn refused_points_are_reported_and_the_others_written() {
    let server = TestServer::start_with(ServerOptions::default(), |c| {
        c.out_of_order_window = std::time::Duration::from_secs(600);
    })
    .await;
    let (status, _) = server
        .remote_write(&request(vec![series(
            &[("__name__", "g")],
            &[(T0 + 3_600_000, 1.0)],
        )]))
        .await;
    assert_eq!(status, 204);
    // One point far behind the newest (beyond the 10-minute window), others fine.
    let (status, body) = server
        .remote_write(&request(vec![
            series(&[("__name__", "g")], &[(T0, 5.0), (T0 + 3_615_000, 2.0)]),
            series(&[("__name__", "h")], &[(T0, 7.0)]),
            series(&[("__name__", "bad-name")], &[(T0, 7.0)]),
        ]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("out_of_order") && body.contains("invalid_labels"),
        "{body}"
    );
    let stored = server
        .db
        .query(
            vec![
                LabelMatcher::new("__name__", gorilla_tsdb::MatchOp::RegexMatch, "g|h")
                    .expect("matcher"),
            ],
            TimeRange::ALL,
        )
        .await
        .expect("query");
    let mut got: Vec<(String, Vec<i64>)> = stored
        .iter()
        .map(|s| (s.labels.to_string(), s.timestamps.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("g".to_owned(), vec![T0 + 3_600_000, T0 + 3_615_000]),
            ("h".to_owned(), vec![T0]),
        ]
    );
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains(
            r#"gorilla_tsdb_samples_rejected_total{protocol="remote_write",reason="out_of_order"} 1"#
        ),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_and_the_server_goes_on() {
    let server = with_data(ServerOptions {
        max_body_bytes: 64 * 1024,
        max_decoded_bytes: 256 * 1024,
        ..ServerOptions::default()
    })
    .await;
    let snappy = [("Content-Encoding", "snappy")];
    // (path, headers, body, the status wanted)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case<'_>> = vec![
        (
            "/api/v1/write",
            snappy.to_vec(),
            b"definitely not snappy".to_vec(),
            400,
        ),
        ("/api/v1/write", snappy.to_vec(), Vec::new(), 400),
        (
            "/api/v1/write",
            snappy.to_vec(),
            snap::raw::Encoder::new()
                .compress_vec(&[0x0a, 0xff, 0xff, 0xff, 0x0f])
                .expect("snappy"),
            400,
        ),
        // Declares 256 MiB: refused before anything is allocated.
        (
            "/api/v1/write",
            snappy.to_vec(),
            vec![0x80, 0x80, 0x80, 0x80, 0x01, 0, 0],
            413,
        ),
        // Decompresses (really) past the decoded limit.
        (
            "/api/v1/write",
            snappy.to_vec(),
            snap::raw::Encoder::new()
                .compress_vec(&vec![0u8; 512 * 1024])
                .expect("snappy"),
            413,
        ),
        (
            "/api/v1/write",
            vec![("Content-Encoding", "gzip")],
            b"x".to_vec(),
            415,
        ),
        ("/api/v1/write", snappy.to_vec(), vec![0u8; 128 * 1024], 413),
        ("/write", vec![], vec![b'x'; 128 * 1024], 413),
        ("/write", vec![], vec![0xff, 0xfe, b'\n'], 400),
        (
            "/write",
            vec![("Content-Encoding", "gzip")],
            b"not gzip".to_vec(),
            400,
        ),
        (
            "/write",
            vec![("Content-Encoding", "br")],
            b"m v=1".to_vec(),
            415,
        ),
        ("/write?precision=fortnight", vec![], b"m v=1".to_vec(), 400),
        ("/api/v2/write", vec![], b"m v=\"text\"".to_vec(), 400),
        (
            "/api/v1/import/prometheus",
            vec![],
            b"m{a=} 1".to_vec(),
            400,
        ),
        (
            "/api/v1/import/prometheus?timestamp=soon",
            vec![],
            b"m 1".to_vec(),
            400,
        ),
        (
            "/api/v1/query",
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            vec![b'a'; 128 * 1024],
            413,
        ),
    ];
    // A gzip bomb: 10 MiB of zeros in a few KiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 10 << 20]).expect("gzip");
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 64 * 1024);
    let mut cases = cases;
    cases.push(("/write", vec![("Content-Encoding", "gzip")], bomb, 413));
    for (path, headers, body, want) in cases {
        let (status, _, text) = server.post(path, &headers, body).await;
        assert_eq!(status, want, "{path} {headers:?}: {text}");
        assert!(!text.is_empty(), "{path}: an explanation is given");
    }
    // Still serving, the data intact.
    let (status, json) = server
        .get_json(&format!(
            "/api/v1/query?query=count(m)&time={}",
            at(T0 + 60_000)
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(json["data"]["result"][0]["value"][1], "2");
    server.stop().await;
}

#[tokio::test]
async fn influx_and_prometheus_text_are_written() {
    let server = TestServer::start(ServerOptions::default()).await;
    let secs = T0 / 1000;
    let (status, _, body) = server
        .post(
            "/write?db=x&precision=s&extra_label=dc%3Deu",
            &[],
            format!("cpu,host=a usage=0.5,idle=9i {secs}\ncpu,host=b value=2 {secs}\n")
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!("mem,host=a used=3 {}\n", T0 * 1_000_000).as_bytes())
        .expect("gzip");
    let (status, _, body) = server
        .post(
            "/api/v2/write?org=o&bucket=b",
            &[("Content-Encoding", "gzip")],
            gz.finish().expect("gzip"),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let text = format!(
        "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{{queue=\"q,1\"}} 4 {T0}\njobs_total{{queue=\"q2\"}} 5\n"
    );
    let (status, _, body) = server
        .post(
            &format!("/api/v1/import/prometheus?timestamp={}", T0 + 1000),
            &[],
            text.into_bytes(),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, json) = server
        .get_json(&format!(
            "/api/v1/query?query={{__name__%3D~%22cpu.*%7Cmem.*%7Cjobs.*%22}}&time={}",
            at(T0 + 1000)
        ))
        .await;
    let mut got: Vec<String> = json["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|s| format!("{} {}", s["metric"], s["value"][1]))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            r#"{"__name__":"cpu","dc":"eu","host":"b"} "2""#,
            r#"{"__name__":"cpu_idle","dc":"eu","host":"a"} "9""#,
            r#"{"__name__":"cpu_usage","dc":"eu","host":"a"} "0.5""#,
            r#"{"__name__":"jobs_total","queue":"q,1"} "4""#,
            r#"{"__name__":"jobs_total","queue":"q2"} "5""#,
            r#"{"__name__":"mem_used","host":"a"} "3""#,
        ]
    );
    let (_, json) = server.get_json("/api/v1/metadata?metric=jobs_total").await;
    assert_eq!(
        json["data"],
        json!({"jobs_total": [{"type": "counter", "help": "Jobs done.", "unit": ""}]})
    );
    server.stop().await;
}

#[tokio::test]
async fn writes_during_shutdown_get_503_with_retry_after() {
    let server = TestServer::start(ServerOptions::default()).await;
    server.state.begin_shutdown();
    let (status, body) = server
        .remote_write(&request(vec![series(&[("__name__", "up")], &[(T0, 1.0)])]))
        .await;
    assert_eq!(status, 503, "{body}");
    let (status, headers, _) = server.post("/write", &[], b"m v=1 1".to_vec()).await;
    assert_eq!(status, 503);
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let (status, _) = server.get("/-/ready").await;
    assert_eq!(status, 503);
    server.stop().await;
}

#[tokio::test]
async fn writes_over_the_concurrency_limit_wait_then_get_503() {
    let server = TestServer::start(ServerOptions {
        write_max_concurrency: 1,
        write_queue_timeout: std::time::Duration::from_millis(200),
        ..ServerOptions::default()
    })
    .await;
    // A write that holds the only slot: its body never ends while we test.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let slow = server
        .client
        .post(format!("{}/write", server.url))
        .body(reqwest::Body::wrap_stream(stream));
    let slow = tokio::spawn(slow.send());
    tx.send(Ok(b"m v=1 1".to_vec())).await.expect("send");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, headers, body) = server.post("/write", &[], b"m v=2 2".to_vec()).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    drop(tx);
    let answered = slow.await.expect("task").expect("answered");
    assert_eq!(answered.status().as_u16(), 204);
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains(r#"gorilla_tsdb_writes_refused_overload_total{protocol="influx_v1"} 1"#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_describe_the_server_and_the_database() {
    let server = with_data(ServerOptions::default()).await;
    let _ = server.get("/api/v1/query?query=m").await;
    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200);
    for wanted in [
        "gorilla_tsdb_samples_ingested_total{protocol=\"remote_write\"} 123",
        "gorilla_tsdb_series 3",
        "gorilla_tsdb_queries_total{endpoint=\"query\"} 1",
        "gorilla_tsdb_query_duration_seconds_count{endpoint=\"query\"} 1",
        "gorilla_tsdb_http_requests_total{handler=\"/api/v1/write\",code=\"204\"} 1",
        "gorilla_tsdb_build_info{",
        "gorilla_tsdb_head_points 123",
        "gorilla_tsdb_flush_queue_depth ",
        "gorilla_tsdb_wal_written_bytes_total ",
        "gorilla_tsdb_wal_appends_total ",
        "gorilla_tsdb_wal_fsync_duration_seconds_bucket{le=\"0.00005\"} ",
        "gorilla_tsdb_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} ",
        "# EOF",
    ] {
        assert!(text.contains(wanted), "missing {wanted:?} in:\n{text}");
    }
    // The histogram counts every fsync the counter does (none happen between the two reads:
    // the server is idle).
    let value = |name: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        line[name.len()..].trim().parse().expect("a count")
    };
    assert_eq!(
        value("gorilla_tsdb_wal_fsync_duration_seconds_count "),
        value("gorilla_tsdb_wal_fsyncs_total ")
    );
    assert_eq!(
        value("gorilla_tsdb_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} "),
        value("gorilla_tsdb_wal_fsyncs_total ")
    );
    // Every answer carries a request id.
    let r = server
        .client
        .get(format!("{}/-/healthy", server.url))
        .send()
        .await
        .expect("answered");
    assert!(r.headers().contains_key("x-request-id"));
    server.stop().await;
}

#[tokio::test]
async fn the_graph_page_shows_a_table_and_a_chart() {
    let server = with_data(ServerOptions::default()).await;
    let end = at(T0 + 600_000);
    let (status, html) = server
        .get(&format!("/graph?query=m&range=10m&end={end}&step=15s"))
        .await;
    assert_eq!(status, 200);
    assert!(html.contains("<textarea name=\"query\""), "{html}");
    assert!(
        html.contains("m{job=&quot;a&quot;}"),
        "the table lists the series: {html}"
    );
    assert!(html.contains("<svg"), "{html}");
    assert!(!html.contains("<script"), "no JavaScript");
    let (status, html) = server.get("/graph?query=sum(").await;
    assert_eq!(status, 200);
    assert!(html.contains("class=\"error\""), "{html}");
    let (status, html) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(html.contains("Enter a PromQL expression"), "{html}");
    let r = server
        .client
        .get(format!(
            "{}/graph/chart.svg?query=rate(c_total[1m])&range=10m&end={end}",
            server.url
        ))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/svg+xml")
    );
    assert!(r.text().await.expect("body").contains("<polyline"));
    server.stop().await;
}

#[tokio::test]
async fn influx_and_grafana_probes_are_answered() {
    let server = TestServer::start(ServerOptions::default()).await;
    let (status, _) = server.get("/ping").await;
    assert_eq!(status, 204);
    let (status, body) = server.get("/query?q=CREATE+DATABASE+%22telegraf%22").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"results":[{"statement_id":0}]}"#)
    );
    let (status, _) = server.get("/query?q=SELECT+*+FROM+cpu").await;
    assert_eq!(status, 400);
    let (status, json) = server.get_json("/api/v1/rules").await;
    assert_eq!((status, &json["data"]), (200, &json!({"groups": []})));
    let (status, json) = server.get_json("/api/v1/alerts").await;
    assert_eq!((status, &json["data"]), (200, &json!({"alerts": []})));
    server.stop().await;
}

/// The admin API: answered 503 `unavailable` unless enabled (as Prometheus without
/// `--web.enable-admin-api`); then `delete_series` deletes the matched points in its range
/// (204), `clean_tombstones` rewrites the chunks without the deleted points (204, the answers
/// unchanged, the compaction counters moved), and `snapshot` answers a name whose directory
/// opens as a database holding the data.
#[tokio::test]
async fn admin_delete_series_and_snapshot() {
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let server = with_data(ServerOptions::default()).await;
    let (status, _, body) = server
        .post(
            "/api/v1/admin/tsdb/delete_series",
            &form,
            b"match[]=m".to_vec(),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("\"errorType\":\"unavailable\"") && body.contains("admin APIs disabled"),
        "{body}"
    );
    server.stop().await;

    let snapshots = tempfile::tempdir().expect("temp dir");
    let server = with_data(ServerOptions {
        enable_admin_api: true,
        snapshot_dir: Some(snapshots.path().to_path_buf()),
        ..ServerOptions::default()
    })
    .await;
    let (status, _, body) = server
        .post("/api/v1/admin/tsdb/delete_series", &form, Vec::new())
        .await;
    assert_eq!(status, 400, "no match[]: {body}");
    // m{job="b"} from the 11th sample on.
    let body = format!(
        "match[]={}&start={}",
        "m%7Bjob%3D%22b%22%7D",
        at(T0 + 150_000)
    );
    let (status, _, text) = server
        .post("/api/v1/admin/tsdb/delete_series", &form, body.into_bytes())
        .await;
    assert_eq!(status, 204, "{text}");
    let counts = || async {
        let (_, json) = server
            .get_json(&format!(
                "/api/v1/query?query=count_over_time(m[1h])&time={}",
                at(T0 + 600_000)
            ))
            .await;
        json["data"]["result"].clone()
    };
    let after_deletion = json!([
        {"metric": {"job": "a"}, "value": [ (T0 + 600_000) / 1000, "41"]},
        {"metric": {"job": "b"}, "value": [ (T0 + 600_000) / 1000, "10"]}
    ]);
    assert_eq!(counts().await, after_deletion);

    // Compaction on demand drops the deleted points from the chunks; answers stay.
    let (status, _, text) = server
        .post("/api/v1/admin/tsdb/clean_tombstones", &form, Vec::new())
        .await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(counts().await, after_deletion);
    let (_, metrics) = server.get("/metrics").await;
    let value = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"));
        line[name.len()..].trim().parse().expect("a count")
    };
    assert!(value("gorilla_tsdb_compaction_rounds_total ") >= 1);
    assert!(value("gorilla_tsdb_compaction_chunks_replaced_total ") >= 1);
    assert!(value("gorilla_tsdb_compaction_chunks_written_total ") >= 1);

    let (status, _, text) = server
        .post("/api/v1/admin/tsdb/snapshot", &form, Vec::new())
        .await;
    assert_eq!(status, 200, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let name = json["data"]["name"].as_str().expect("a name").to_owned();
    assert_eq!(
        name.len(),
        "20240101T000000Z-0123456789abcdef".len(),
        "{name}"
    );
    server.stop().await;
    let copy = gorilla_tsdb::TimeSeriesDBBuilder::new()
        .with_config(gorilla_tsdb::DatabaseConfig {
            data_dir: snapshots.path().join(&name),
            ..Default::default()
        })
        .build()
        .await
        .expect("the snapshot opens");
    let b = copy
        .query(vec![LabelMatcher::equal("job", "b")], TimeRange::ALL)
        .await
        .expect("query");
    assert_eq!(b[0].timestamps.len(), 10, "the deletion is in the snapshot");
    copy.close().await.expect("close");
}

#[tokio::test]
async fn large_answers_arrive_whole() {
    // Two series of 10,001 steps: more samples than the server encodes on the query's task
    // (20,000), so this one is encoded on a blocking thread.
    let server = with_data(ServerOptions::default()).await;
    let (status, body) = server
        .get(&format!(
            "/api/v1/query_range?query=m&start={}&end={}&step=0.06",
            at(T0),
            at(T0 + 600_000)
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let result = v["data"]["result"].as_array().expect("a matrix");
    assert_eq!(result.len(), 2);
    for series in result {
        let scale = if series["metric"]["job"] == "a" {
            1.0
        } else {
            0.5
        };
        let values = series["values"].as_array().expect("values");
        assert_eq!(values.len(), 10_001);
        for (k, point) in values.iter().enumerate() {
            let t_ms = T0 + k as i64 * 60;
            assert_eq!(point[0].as_f64(), Some(t_ms as f64 / 1000.0), "step {k}");
            let want = scale * ((t_ms - T0) / 15_000) as f64;
            let got: f64 = point[1].as_str().expect("text").parse().expect("number");
            assert_eq!(got, want, "step {k}");
        }
    }
    server.stop().await;
}
