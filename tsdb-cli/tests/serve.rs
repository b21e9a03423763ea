//! `gorilla-tsdb serve` as a process: configured by a TOML file, killed with SIGKILL in the
//! middle of remote writes (every sample answered 2xx must be there after the restart), and
//! stopped with SIGTERM (a graceful stop closes the database).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use tsdb_formats::remote_write::{Label, Sample, TimeSeries, WriteRequest};

const T0: i64 = 1_700_000_000_000;

/// A server process and its address.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `gorilla-tsdb serve` with a configuration file listening on a free port; waits
/// for the line that says where it listens.
fn start(dir: &Path) -> Server {
    let config = dir.join("tsdb.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[database]\ndata_dir = {:?}\nwal_durability = \"always\"\nretention = \"3650d\"\n",
            dir.join("data")
        ),
    )
    .expect("write the config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gorilla-tsdb"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env_remove("GORILLA_TSDB_DATA_DIR")
        .env_remove("GORILLA_TSDB_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .expect("stderr");
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_owned();
        }
    };
    // Keep draining stderr so that the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

fn request(writer: usize, batch: i64) -> (WriteRequest, Vec<(String, i64, f64)>) {
    let mut series = Vec::new();
    let mut expected = Vec::new();
    for s in 0..10 {
        let name = format!("w{writer}_s{s}");
        let samples: Vec<Sample> = (0..10)
            .map(|j| {
                let t = T0 + batch * 10_000 + j * 1_000;
                let v = (batch * 100 + j) as f64 + 0.25;
                expected.push((name.clone(), t, v));
                Sample {
                    value: v,
                    timestamp: t,
                }
            })
            .collect();
        series.push(TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "kill_test".into(),
                },
                Label {
                    name: "series".into(),
                    value: name,
                },
            ],
            samples,
            ..TimeSeries::default()
        });
    }
    (
        WriteRequest {
            timeseries: series,
            ..WriteRequest::default()
        },
        expected,
    )
}

/// Every `(series, t, v)` stored, read back over HTTP.
async fn stored(client: &reqwest::Client, url: &str) -> Vec<(String, i64, f64)> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", "kill_test[100y]")
        .append_pair("time", &format!("{}", T0 / 1000 + 10_000_000))
        .finish();
    let body = client
        .get(format!("{url}/api/v1/query?{query}"))
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("body");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["status"], "success", "{json}");
    let mut out = Vec::new();
    for s in json["data"]["result"].as_array().expect("matrix") {
        let name = s["metric"]["series"]
            .as_str()
            .expect("series label")
            .to_owned();
        for p in s["values"].as_array().expect("values") {
            let t = (p[0].as_f64().expect("ts") * 1000.0).round() as i64;
            let v: f64 = p[1].as_str().expect("value").parse().expect("number");
            out.push((name.clone(), t, v));
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_remote_write_loses_no_acknowledged_sample() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = start(dir.path());
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, url, stop) = (client.clone(), server.url.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut batch = 0;
            while !stop.load(Ordering::SeqCst) && batch < 100_000 {
                let (req, expected) = request(w, batch);
                let body = snap::raw::Encoder::new()
                    .compress_vec(&req.encode_to_vec())
                    .expect("snappy");
                let sent = client
                    .post(format!("{url}/api/v1/write"))
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => acknowledged.extend(expected),
                    Ok(r) => panic!("refused: {} {:?}", r.status(), r.text().await),
                    // The server is gone: what was not answered is not promised.
                    Err(_) => break,
                }
                batch += 1;
            }
            acknowledged
        }));
    }
    // Let writes flow, then kill the server while they still do.
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.expect("writer"));
    }
    assert!(
        acknowledged.len() >= 1_000,
        "only {} samples acknowledged in {:?}",
        acknowledged.len(),
        started.elapsed()
    );
    drop(server);

    let server = start(dir.path());
    let stored = stored(&client, &server.url).await;
    let missing: Vec<&(String, i64, f64)> = acknowledged
        .iter()
        .filter(|a| {
            stored
                .binary_search_by(|s| s.partial_cmp(a).expect("no NaN"))
                .is_err()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged samples lost, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{} acknowledged samples, all there after SIGKILL and restart ({} stored)",
        acknowledged.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_and_closes_the_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = start(dir.path());
    let client = reqwest::Client::new();
    let (req, expected) = request(0, 0);
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy");
    let r = client
        .post(format!("{}/api/v1/write", server.url))
        .header("Content-Encoding", "snappy")
        .body(body)
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status().as_u16(), 204);
    let pid = server.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = server.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    drop(server);
    // Closed: the data is in chunks (nothing to replay), and all of it is there.
    let out = Command::new(env!("CARGO_BIN_EXE_gorilla-tsdb"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["stats"])
        .output()
        .expect("stats runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("points in chunks 100"), "{text}");
    assert!(text.contains("points buffered  0 "), "{text}");
    let server = start(dir.path());
    let stored = stored(&client, &server.url).await;
    let mut expected = expected;
    expected.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    assert_eq!(stored, expected);
}
