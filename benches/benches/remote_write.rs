//! Prometheus remote write into HTTP receivers, side by side: the same snappy-compressed
//! `WriteRequest` bodies, built before the clock starts, are sent to every target by 8
//! concurrent senders over keep-alive connections, as Prometheus 2.42's queue manager does
//! (each series always through the same sender, 500 samples a request: its default
//! `max_samples_per_send`). Prints one JSON object.
//!
//! ```text
//! RW_TARGETS="ours=http://127.0.0.1:9201,vm=http://127.0.0.1:8428" \
//! RW_SERIES=1000 RW_SAMPLES=4000000 cargo bench -p tsdb-benches --bench remote_write
//! ```
//!
//! - `RW_TARGETS`: `name=base URL` pairs; bodies go to `<base>/api/v1/write`;
//! - `RW_SERIES` (1,000), `RW_SAMPLES` (4M, rounded to whole rounds of every series);
//! - `RW_PIDS`: `name=pid` pairs: the resident memory of each target is read from
//!   `/proc/<pid>/status` before and after its run, and reported per series;
//! - `RW_METRIC` (`bench_rw`): the metric name, so that runs into one receiver stay apart.
//!
//! A 2xx answer counts the request's samples as written; 429 and 5xx are retried after the
//! `Retry-After` the receiver asks for (or 100 ms) and counted as `retried`; any other answer
//! stops the run with an error. `benches/vm/remote_write.sh` runs it against `gorilla-tsdb
//! serve` and VictoriaMetrics.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use tsdb_formats::remote_write::{Label, Sample, TimeSeries, WriteRequest};

/// Concurrent senders (Prometheus' shards).
const SENDERS: usize = 8;
/// Samples a request: Prometheus 2.42's default `max_samples_per_send`.
const SAMPLES_PER_REQUEST: usize = 500;
/// Scrape interval of the generated data.
const INTERVAL_MS: i64 = 15_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pairs(name: &str) -> Vec<(String, String)> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The labels of series `i`, sorted by name as remote write requires.
fn labels(metric: &str, i: usize) -> Vec<Label> {
    let label = |name: &str, value: String| Label {
        name: name.to_owned(),
        value,
    };
    vec![
        label("__name__", metric.to_owned()),
        label("instance", format!("host-{}:9100", i / 10)),
        label("job", "bench".to_owned()),
        label("series", format!("s{i}")),
    ]
}

/// Value of series `i` at round `r`: a two-decimal gauge that wanders (deterministic).
fn value(i: usize, r: usize) -> f64 {
    let mut z = (i as u64) << 32 ^ r as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (5_000 + (i % 100) as i64 * 10 + (z % 201) as i64 - 100) as f64 / 100.0
}

/// Every sender's request bodies, in the order it sends them, and the samples of each.
fn build_bodies(metric: &str, series: usize, rounds: usize, t0: i64) -> Vec<Vec<(Vec<u8>, usize)>> {
    let mut out = Vec::with_capacity(SENDERS);
    for sender in 0..SENDERS {
        let mine: Vec<usize> = (sender..series).step_by(SENDERS).collect();
        let label_sets: Vec<Vec<Label>> = mine.iter().map(|&i| labels(metric, i)).collect();
        let mut bodies = Vec::new();
        let mut pending: Vec<TimeSeries> = Vec::new();
        let mut samples = 0;
        let mut flush = |pending: &mut Vec<TimeSeries>, samples: &mut usize| {
            if *samples == 0 {
                return;
            }
            let req = WriteRequest {
                timeseries: std::mem::take(pending),
                metadata: Vec::new(),
            };
            let raw = req.encode_to_vec();
            let body = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy compresses any input");
            bodies.push((body, *samples));
            *samples = 0;
        };
        for r in 0..rounds {
            let t = t0 + r as i64 * INTERVAL_MS;
            for (k, &i) in mine.iter().enumerate() {
                pending.push(TimeSeries {
                    labels: label_sets[k].clone(),
                    samples: vec![Sample {
                        value: value(i, r),
                        timestamp: t,
                    }],
                    exemplars: Vec::new(),
                    histograms: Vec::new(),
                });
                samples += 1;
                if samples == SAMPLES_PER_REQUEST {
                    flush(&mut pending, &mut samples);
                }
            }
        }
        flush(&mut pending, &mut samples);
        out.push(bodies);
    }
    out
}

struct Outcome {
    seconds: f64,
    samples: usize,
    requests: usize,
    retried: usize,
    p99_ms: f64,
}

async fn send_all(
    client: &reqwest::Client,
    url: &str,
    bodies: &[Vec<(Vec<u8>, usize)>],
) -> Result<Outcome, String> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mine in bodies {
        let (client, url, mine) = (client.clone(), url.to_owned(), mine.clone());
        tasks.push(tokio::spawn(async move {
            let (mut samples, mut retried, mut latencies) = (0usize, 0usize, Vec::new());
            for (body, n) in mine {
                loop {
                    let sent = Instant::now();
                    let resp = client
                        .post(&url)
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body.clone())
                        .send()
                        .await
                        .map_err(|e| format!("{url}: {e}"))?;
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let text = resp.text().await.unwrap_or_default();
                    latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                    if status.is_success() {
                        samples += n;
                        break;
                    }
                    if status.as_u16() == 429 || status.is_server_error() {
                        retried += 1;
                        let wait = retry_after.map_or(Duration::from_millis(100), |s| {
                            Duration::from_secs(s.min(5))
                        });
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(format!("{url}: {status}: {text}"));
                }
            }
            Ok::<_, String>((samples, retried, latencies))
        }));
    }
    let (mut samples, mut retried, mut latencies) = (0, 0, Vec::new());
    for t in tasks {
        let (s, r, l) = t.await.map_err(|e| format!("sender task: {e}"))??;
        samples += s;
        retried += r;
        latencies.extend(l);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let p99_ms = latencies
        .get(((latencies.len() as f64 * 0.99) as usize).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    Ok(Outcome {
        seconds,
        samples,
        requests: latencies.len(),
        retried,
        p99_ms,
    })
}

fn main() {
    let targets = pairs("RW_TARGETS");
    if targets.is_empty() {
        eprintln!("remote_write: set RW_TARGETS=name=http://host:port,... (see the file's doc)");
        return;
    }
    let pids = pairs("RW_PIDS");
    let series: usize = env_or("RW_SERIES", 1_000).max(1);
    let wanted: usize = env_or("RW_SAMPLES", 4_000_000);
    let metric: String = env_or("RW_METRIC", "bench_rw".to_owned());
    let rounds = wanted.div_ceil(series).max(1);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // The newest sample a minute ago: inside every receiver's future guard.
    let t0 = now_ms - 60_000 - rounds as i64 * INTERVAL_MS;
    let built = Instant::now();
    let bodies = build_bodies(&metric, series, rounds, t0);
    let requests: usize = bodies.iter().map(Vec::len).sum();
    let bytes: usize = bodies.iter().flatten().map(|(b, _)| b.len()).sum();
    eprintln!(
        "remote_write: {series} series x {rounds} rounds = {} samples in {requests} requests ({:.1} MB snappy), built in {:.1} s",
        series * rounds,
        bytes as f64 / 1e6,
        built.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut parts = Vec::new();
    for (name, base) in &targets {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(SENDERS)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        let url = format!("{}/api/v1/write", base.trim_end_matches('/'));
        let pid = pids.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone());
        let rss_before = pid.as_deref().and_then(tsdb_benches::rss_bytes);
        match rt.block_on(send_all(&client, &url, &bodies)) {
            Ok(o) => {
                // Let the receiver settle (background flushes) before its memory is read.
                std::thread::sleep(Duration::from_secs(2));
                let rss_after = pid.as_deref().and_then(tsdb_benches::rss_bytes);
                let per_series = match (rss_before, rss_after) {
                    (Some(b), Some(a)) => {
                        format!("{:.1}", a.saturating_sub(b) as f64 / series as f64)
                    }
                    _ => "null".to_owned(),
                };
                let rate = o.samples as f64 / o.seconds;
                eprintln!(
                    "{name}: {} samples in {:.2} s = {:.0} samples/s ({} requests, {} retried, p99 {:.1} ms), RSS {:?} -> {:?}, {per_series} B/series",
                    o.samples,
                    o.seconds,
                    rate,
                    o.requests,
                    o.retried,
                    o.p99_ms,
                    rss_before,
                    rss_after
                );
                parts.push(format!(
                    "\"{name}\":{{\"samples\":{},\"seconds\":{},\"samples_per_s\":{rate},\"requests\":{},\"retried\":{},\"p99_ms\":{},\"rss_before\":{},\"rss_after\":{},\"rss_per_series\":{per_series}}}",
                    o.samples,
                    o.seconds,
                    o.requests,
                    o.retried,
                    o.p99_ms,
                    rss_before.map_or("null".to_owned(), |v| v.to_string()),
                    rss_after.map_or("null".to_owned(), |v| v.to_string()),
                ));
            }
            Err(e) => {
                eprintln!("{name}: FAILED: {e}");
                parts.push(format!("\"{name}\":{{\"error\":{e:?}}}"));
            }
        }
    }
    println!(
        "{{\"series\":{series},\"rounds\":{rounds},\"samples\":{},\"first_ms\":{t0},\"last_ms\":{},\"metric\":{metric:?},{}}}",
        series * rounds,
        t0 + (rounds as i64 - 1) * INTERVAL_MS,
        parts.join(",")
    );
}
