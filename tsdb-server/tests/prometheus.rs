//! A real Prometheus 2.42 and this server, side by side: Prometheus scrapes itself and the
//! server's `/metrics` every second and remote-writes everything to the server; then the
//! same queries (instant and range) and the same series and label requests go to both over
//! HTTP, and the answers must be the same: label sets, timestamps, values within 1e-9
//! (relative), and for malformed queries the same error class.
//!
//! Needs `prometheus` on PATH (Debian's package; `.ci/run` installs it). Without it the
//! test says so loudly and passes, except under `CI=true`, where it fails.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::Value;
use tsdb_server::ServerOptions;

/// The Prometheus child, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !path.is_empty()).then_some(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_prometheus(binary: &str, server: &str) -> Prometheus {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let server_host = server.trim_start_matches("http://");
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
  - job_name: gorilla
    static_configs:
      - targets: ["{server_host}"]
remote_write:
  - url: {server}/api/v1/write
    queue_config:
      batch_send_deadline: 200ms
      min_shards: 1
      max_shards: 1
      min_backoff: 50ms
      max_backoff: 1s
    metadata_config:
      send_interval: 1s
"#
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write the config");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus starts");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// GET `base/path?params`: status and JSON.
async fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, &str)],
) -> (u16, Value) {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let url = format!("{base}{path}?{query}");
    let r = client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.expect("a body");
    let json =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"));
    (status, json)
}

fn float(v: &Value) -> f64 {
    match v.as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or_else(|_| panic!("value {s:?}")),
        None => panic!("value {v} is not a string"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// A query answer as `label set -> [(timestamp, value)]`, for comparison.
fn normalize(data: &Value) -> (String, BTreeMap<String, Vec<(f64, f64)>>) {
    let kind = data["resultType"].as_str().unwrap_or_default().to_owned();
    let result = &data["result"];
    let point = |p: &Value| (p[0].as_f64().expect("timestamp"), float(&p[1]));
    let mut out = BTreeMap::new();
    match kind.as_str() {
        "scalar" | "string" => {
            let v = if kind == "scalar" {
                float(&result[1])
            } else {
                0.0
            };
            out.insert(
                result[1].to_string(),
                vec![(result[0].as_f64().expect("ts"), v)],
            );
        }
        "vector" => {
            for s in result.as_array().expect("vector") {
                let key = s["metric"].to_string();
                assert!(
                    out.insert(key.clone(), vec![point(&s["value"])]).is_none(),
                    "{key} twice"
                );
            }
        }
        "matrix" => {
            for s in result.as_array().expect("matrix") {
                let points = s["values"]
                    .as_array()
                    .map_or_else(Vec::new, |v| v.iter().map(point).collect());
                out.insert(s["metric"].to_string(), points);
            }
        }
        other => panic!("result type {other:?}"),
    }
    (kind, out)
}

/// Why two answers differ, if they do.
fn difference(ours: &Value, theirs: &Value) -> Option<String> {
    if ours["status"] != theirs["status"] {
        return Some(format!("status: ours {ours}, Prometheus {theirs}"));
    }
    let (kind_a, a) = normalize(&ours["data"]);
    let (kind_b, b) = normalize(&theirs["data"]);
    if kind_a != kind_b {
        return Some(format!("result types {kind_a} and {kind_b}"));
    }
    let keys_a: Vec<&String> = a.keys().collect();
    let keys_b: Vec<&String> = b.keys().collect();
    if keys_a != keys_b {
        return Some(format!("series: ours {keys_a:?}, Prometheus {keys_b:?}"));
    }
    for (key, pa) in &a {
        let pb = &b[key];
        let same = pa.len() == pb.len()
            && pa
                .iter()
                .zip(pb)
                .all(|(x, y)| x.0 == y.0 && close(x.1, y.1));
        if !same {
            return Some(format!("{key}: ours {pa:?}, Prometheus {pb:?}"));
        }
    }
    None
}

/// Asks both, retrying while they differ (remote write may still be catching up on the
/// newest samples); panics with the difference when they still differ after `patience`.
async fn same_answer(
    client: &reqwest::Client,
    ours: &str,
    theirs: &str,
    path: &str,
    params: &[(&str, &str)],
    patience: Duration,
) -> Value {
    let deadline = Instant::now() + patience;
    loop {
        let (status_b, b) = get(client, theirs, path, params).await;
        let (status_a, a) = get(client, ours, path, params).await;
        assert_eq!(
            b["status"], "success",
            "Prometheus failed {path} {params:?}: {b}"
        );
        let diff = if status_a == status_b {
            difference(&a, &b)
        } else {
            Some(format!("status {status_a} vs {status_b}"))
        };
        match diff {
            None => return b,
            Some(d) if Instant::now() >= deadline => {
                panic!("{path} {params:?} differs from Prometheus: {d}\nours: {a}\nPrometheus: {b}")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// `data` of a list answer (series, labels, values) as a sorted list of JSON texts.
fn listing(v: &Value) -> Vec<String> {
    let mut items: Vec<String> = v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(Value::to_string)
        .collect();
    items.sort();
    items
}

async fn same_listing(
    client: &reqwest::Client,
    ours: &str,
    theirs: &str,
    path: &str,
    params: &[(&str, &str)],
    patience: Duration,
) -> usize {
    let deadline = Instant::now() + patience;
    loop {
        let (_, b) = get(client, theirs, path, params).await;
        let (_, a) = get(client, ours, path, params).await;
        assert_eq!(b["status"], "success", "Prometheus failed {path}: {b}");
        let (la, lb) = (listing(&a), listing(&b));
        if la == lb {
            return lb.len();
        }
        if Instant::now() >= deadline {
            let missing: Vec<&String> = lb.iter().filter(|x| !la.contains(x)).collect();
            let extra: Vec<&String> = la.iter().filter(|x| !lb.contains(x)).collect();
            panic!("{path} {params:?} differs: missing here {missing:?}, extra here {extra:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_a_real_prometheus_fed_by_remote_write() {
    let Some(binary) = prometheus_binary() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "prometheus is not installed, and CI=true: install it (apt-get install prometheus)"
            );
        }
        eprintln!(
            "\n!!!! SKIPPED: `prometheus` is not on PATH; install it (apt-get install prometheus) to compare with a real Prometheus 2.42 !!!!\n"
        );
        return;
    };
    let server = TestServer::start(ServerOptions::default()).await;
    let prometheus = start_prometheus(&binary, &server.url);
    let client = reqwest::Client::new();
    let (ours, theirs) = (server.url.as_str(), prometheus.url.as_str());

    let started = Instant::now();
    loop {
        let ready = client.get(format!("{theirs}/-/ready")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "prometheus did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A dozen scrapes of each target.
    tokio::time::sleep(Duration::from_secs(14)).await;
    let now = common_now_ms();
    // A time both have in full: Prometheus committed every scrape before it; the server
    // has it once remote write has caught up, which the first comparison waits for.
    let t = now - 2_500;
    let (t_text, start_text) = (secs(t), secs(t - 10_000));
    // Every raw sample of the last minute, compared: the server has caught up when equal.
    let everything = [
        ("query", r#"{__name__=~".+"}[1m]"#),
        ("time", t_text.as_str()),
    ];
    same_answer(
        &client,
        ours,
        theirs,
        "/api/v1/query",
        &everything,
        Duration::from_secs(30),
    )
    .await;

    let at_minus_3 = secs(t - 3_000);
    let queries: Vec<String> = vec![
        "up".into(),
        "scrape_duration_seconds".into(),
        r#"prometheus_http_requests_total{handler="/metrics"}"#.into(),
        "rate(prometheus_http_requests_total[5s])".into(),
        "irate(process_cpu_seconds_total[5s])".into(),
        "increase(prometheus_tsdb_head_samples_appended_total[8s])".into(),
        "rate(gorilla_tsdb_http_requests_total[6s])".into(),
        "sum by (job) (up)".into(),
        "avg by (job, instance) (scrape_samples_scraped)".into(),
        "sum without (instance) (rate(scrape_samples_scraped[5s]))".into(),
        "count by (__name__) ({__name__=~\"go_gc.*\"})".into(),
        "histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[8s])))".into(),
        "histogram_quantile(0.5, sum by (le, handler) (rate(gorilla_tsdb_http_request_duration_seconds_bucket[8s])))".into(),
        "up offset 3s".into(),
        "rate(prometheus_http_requests_total[5s] offset 2s)".into(),
        format!("scrape_duration_seconds @ {at_minus_3}"),
        "max_over_time(rate(process_cpu_seconds_total[3s])[8s:1s])".into(),
        "avg_over_time(scrape_samples_scraped[6s:2s])".into(),
        "scrape_samples_scraped / on(job, instance) scrape_series_added".into(),
        "up * on(instance) group_left(job) scrape_duration_seconds".into(),
        "up and on(job) scrape_samples_scraped > 0".into(),
        "up unless on(job) up{job=\"gorilla\"}".into(),
        "scrape_samples_scraped > bool 10".into(),
        "absent(nonexistent_metric)".into(),
        "absent(up)".into(),
        "absent_over_time(nonexistent_metric[5s])".into(),
        "label_replace(up, \"port\", \"$1\", \"instance\", \".*:(.*)\")".into(),
        "label_join(up, \"both\", \"/\", \"job\", \"instance\")".into(),
        "deriv(process_resident_memory_bytes[8s])".into(),
        "quantile_over_time(0.5, scrape_duration_seconds[8s])".into(),
        "stddev_over_time(scrape_duration_seconds[8s])".into(),
        "changes(scrape_series_added[8s])".into(),
        "count(count by (__name__) ({job=\"gorilla\"}))".into(),
        "sum by (__name__) ({__name__=~\"prometheus_tsdb_.*_total\"})".into(),
        "scalar(count(up))".into(),
        "time()".into(),
        "vector(1) + 2".into(),
        "timestamp(up)".into(),
    ];
    let mut compared = 0;
    for q in &queries {
        let answer = same_answer(
            &client,
            ours,
            theirs,
            "/api/v1/query",
            &[("query", q), ("time", &t_text)],
            Duration::from_secs(5),
        )
        .await;
        // An empty answer would compare equal for nothing: each query selects something,
        // except the one that asks for the absence of what is there.
        let (_, series) = normalize(&answer["data"]);
        assert!(series.is_empty() == (q == "absent(up)"), "{q}: {answer}");
        compared += 1;
        if q.contains('@') {
            continue;
        }
        same_answer(
            &client,
            ours,
            theirs,
            "/api/v1/query_range",
            &[
                ("query", q),
                ("start", &start_text),
                ("end", &t_text),
                ("step", "1s"),
            ],
            Duration::from_secs(5),
        )
        .await;
        compared += 1;
    }
    // `@ start()` / `@ end()` in a range query.
    same_answer(
        &client,
        ours,
        theirs,
        "/api/v1/query_range",
        &[
            ("query", "up @ start() - up @ end()"),
            ("start", &start_text),
            ("end", &t_text),
            ("step", "2"),
        ],
        Duration::from_secs(5),
    )
    .await;
    compared += 1;

    // Malformed queries: the same error class (and status code) as Prometheus.
    for (path, params) in [
        (
            "/api/v1/query",
            vec![("query", "sum("), ("time", t_text.as_str())],
        ),
        (
            "/api/v1/query",
            vec![("query", "rate(up)"), ("time", t_text.as_str())],
        ),
        (
            "/api/v1/query",
            vec![("query", "up{job=~\"(\"}"), ("time", t_text.as_str())],
        ),
        ("/api/v1/query", vec![("query", "up"), ("time", "soon")]),
        ("/api/v1/query", vec![("query", "")]),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up[5m]"),
                ("start", start_text.as_str()),
                ("end", t_text.as_str()),
                ("step", "1"),
            ],
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", t_text.as_str()),
                ("end", start_text.as_str()),
                ("step", "1"),
            ],
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", start_text.as_str()),
                ("end", t_text.as_str()),
                ("step", "0"),
            ],
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "up"),
                ("start", "0"),
                ("end", t_text.as_str()),
                ("step", "1"),
            ],
        ),
        (
            "/api/v1/query",
            vec![("query", "up + on() up"), ("time", t_text.as_str())],
        ),
        // Names dropped by rate() leave two series with the same labels.
        (
            "/api/v1/query",
            vec![
                (
                    "query",
                    "rate({__name__=~\"prometheus_tsdb_.*_total\"}[5s])",
                ),
                ("time", t_text.as_str()),
            ],
        ),
        ("/api/v1/series", vec![]),
        ("/api/v1/series", vec![("match[]", "{job=~\".*\"}")]),
        ("/api/v1/label/not-a-name/values", vec![]),
    ] {
        let (status_b, b) = get(&client, theirs, path, &params).await;
        let (status_a, a) = get(&client, ours, path, &params).await;
        assert_eq!(
            b["status"], "error",
            "Prometheus accepted {path} {params:?}: {b}"
        );
        assert_eq!(
            (status_a, &a["status"], &a["errorType"]),
            (status_b, &b["status"], &b["errorType"]),
            "{path} {params:?}: ours {a}, Prometheus {b}"
        );
        compared += 1;
    }

    // Series and labels over the window both have in full.
    let window = [("start", start_text.as_str()), ("end", t_text.as_str())];
    for matcher in [
        "up",
        "{job=\"gorilla\"}",
        "{__name__=~\"prometheus_http.*\"}",
    ] {
        let mut params = vec![("match[]", matcher)];
        params.extend(window);
        let n = same_listing(
            &client,
            ours,
            theirs,
            "/api/v1/series",
            &params,
            Duration::from_secs(5),
        )
        .await;
        assert!(n > 0, "{matcher} selects something");
        compared += 1;
    }
    let mut two = vec![("match[]", "up"), ("match[]", "scrape_duration_seconds")];
    two.extend(window);
    same_listing(
        &client,
        ours,
        theirs,
        "/api/v1/series",
        &two,
        Duration::from_secs(5),
    )
    .await;
    // Without a time range both list every series they know: new ones (made by these very
    // requests) reach the server a moment later, hence the patience.
    let patience = Duration::from_secs(20);
    let labels = same_listing(&client, ours, theirs, "/api/v1/labels", &[], patience).await;
    assert!(labels > 5);
    same_listing(
        &client,
        ours,
        theirs,
        "/api/v1/labels",
        &[("match[]", "up")],
        patience,
    )
    .await;
    let names = same_listing(
        &client,
        ours,
        theirs,
        "/api/v1/label/__name__/values",
        &[],
        patience,
    )
    .await;
    assert!(names > 100, "{names} metric names");
    same_listing(
        &client,
        ours,
        theirs,
        "/api/v1/label/job/values",
        &[],
        patience,
    )
    .await;
    same_listing(
        &client,
        ours,
        theirs,
        "/api/v1/label/handler/values",
        &[("match[]", "prometheus_http_requests_total")],
        patience,
    )
    .await;
    compared += 6;
    eprintln!("{compared} answers compared with Prometheus: all the same");

    drop(prometheus);
    server.stop().await;
}

fn common_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
