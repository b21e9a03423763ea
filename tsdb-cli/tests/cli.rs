//! The `gorilla-tsdb` command line on real recordings and on small files written here.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn cli(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gorilla-tsdb"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("GORILLA_TSDB_DATA_DIR")
        .output()
        .expect("the binary runs")
}

fn cli_stdin(data_dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gorilla-tsdb"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("the binary finishes")
}

/// Asserts that `output` (a command's stderr or stdout) contains every one of `wanted`.
fn assert_says(output: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(output.contains(w), "missing {w:?} in:\n{output}");
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a range query printing JSON (the Prometheus API's matrix) and returns each series'
/// labels (a JSON object) and `(ms, value)` points.
fn query_json(data_dir: &Path, args: &[&str]) -> Vec<(Value, Vec<(i64, f64)>)> {
    let mut all = vec!["query", "--output", "json"];
    all.extend_from_slice(args);
    let out = cli(data_dir, &all);
    assert!(out.status.success(), "query failed: {}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(doc["status"], "success", "{doc}");
    assert_eq!(doc["data"]["resultType"], "matrix", "{doc}");
    doc["data"]["result"]
        .as_array()
        .expect("result array")
        .iter()
        .map(|s| {
            let values = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| {
                    (
                        (p[0].as_f64().expect("timestamp") * 1000.0).round() as i64,
                        p[1].as_str()
                            .expect("value text")
                            .parse::<f64>()
                            .expect("a number"),
                    )
                })
                .collect();
            (s["metric"].clone(), values)
        })
        .collect()
}

#[test]
fn influx_import_reports_bad_lines_and_keeps_the_good_ones_around_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("points.lp");
    std::fs::write(
        &file,
        "# a comment\n\
         cpu,host=a,region=eu usage=1.5,idle=98i 1700000000000000000\n\
         cpu,host=a,region=eu usage=oops 1700000010000000000\n\
         \n\
         cpu,host=a,region=eu usage=2.5 1700000010000000000\n\
         cpu,host=b,region=eu usage=3.5 1700000010000000000\n\
         cpu,host=a,region=eu name=\"text\" 1700000020000000000\n\
         cpu,host=a usage=4.5\n\
         cpu,host=a,region=eu usage=5.5 1700000030000000000\n",
    )
    .expect("write");
    let data = dir.path().join("db");
    // Lines without a timestamp are refused here (they would take the import's time).
    let out = cli(
        &data,
        &[
            "import",
            "--no-progress",
            "--default-timestamp",
            "none",
            file.to_str().expect("utf8"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "rejects give exit status 2: {stderr}"
    );
    let name = file.display().to_string();
    assert_says(
        &stderr,
        &[
            &format!("{name}:3: field \"usage\": value \"oops\" is not a number"),
            &format!("{name}:7: field \"name\" is a string"),
            &format!("{name}:8: no timestamp"),
            "3 line(s) and 0 point(s) rejected",
            "imported 5 points of 3 series",
        ],
    );

    let got = query_json(
        &data,
        &[
            "--metric",
            "cpu_usage",
            "--match",
            "host=a",
            "--start",
            "1700000000000ms",
            "--end",
            "1700000030000ms",
            "--step",
            "10s",
            "--window",
            "10s",
        ],
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0["host"], "a");
    // The line at 20 s was rejected; PromQL's window [10 s, 20 s] still holds the point of
    // 10 s, so 20 s shows it.
    assert_eq!(
        got[0].1,
        vec![
            (1_700_000_000_000, 1.5),
            (1_700_000_010_000, 2.5),
            (1_700_000_020_000, 2.5),
            (1_700_000_030_000, 5.5)
        ]
    );
    let idle = query_json(
        &data,
        &[
            "--metric",
            "cpu_idle",
            "--start",
            "1700000000000ms",
            "--end",
            "1700000000000ms",
        ],
    );
    assert_eq!(idle[0].1, vec![(1_700_000_000_000, 98.0)]);
}

#[test]
fn prometheus_text_from_stdin_with_bad_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = "# HELP http_requests_total Requests.\n\
                 # TYPE http_requests_total counter\n\
                 http_requests_total{method=\"get\",path=\"/a,b\"} 10 1000\n\
                 http_requests_total{method=\"get\",path=\"/a,b\"} 25 61000\n\
                 http_requests_total{method=\"get\",path=\"/a,b\"} abc 121000\n\
                 http_requests_total{method=\"post\"} 7\n\
                 http_requests_total{method=\"get\",path=\"/a,b\"} 5 121000\n\
                 http_requests_total{method=\"get\",path=\"/a,b\"} 15 181000\n";
    let data = dir.path().join("db");
    let out = cli_stdin(
        &data,
        &[
            "import",
            "--format",
            "prometheus",
            "--no-progress",
            "--default-timestamp",
            "none",
        ],
        input,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            "<stdin>:5: value \"abc\" is not a number",
            "<stdin>:6: no timestamp",
            "imported 4 points of 1 series",
        ],
    );
    // 10, 25, 5, 15: one counter reset, at 121 s.
    let got = query_json(
        &data,
        &[
            "--match",
            "__name__=http_requests_total",
            "--match",
            "path=/a,b",
            "--start",
            "181000ms",
            "--end",
            "181000ms",
            "--function",
            "resets",
            "--window",
            "1h",
        ],
    );
    assert_eq!(got[0].1, vec![(181_000, 1.0)]);
    let got = query_json(
        &data,
        &[
            "--metric",
            "http_requests_total",
            "--start",
            "181000ms",
            "--end",
            "181000ms",
            "--function",
            "last",
            "--window",
            "1h",
        ],
    );
    assert_eq!(got[0].0["path"], "/a,b");
    assert_eq!(got[0].1, vec![(181_000, 15.0)]);
}

#[test]
fn csv_import_with_labels_then_query_stats_and_inspect() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("temp.csv");
    std::fs::write(
        &file,
        "timestamp,value\n\
         2024-01-01 00:00:00,1.25\n\
         2024-01-01 00:01:00,2.25\n\
         2024-01-01 00:02:00,not-a-number\n\
         yesterday,3\n\
         2024-01-01 00:03:00\n\
         2024-01-01 00:04:00,4.25\n",
    )
    .expect("write");
    let data = dir.path().join("db");
    let path = file.to_str().expect("utf8");
    let out = cli(
        &data,
        &[
            "import",
            "--format",
            "csv",
            "--metric",
            "temp",
            "--label",
            "site=lab",
            "--no-progress",
            path,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            &format!("{path}:4: value \"not-a-number\""),
            &format!("{path}:5: timestamp \"yesterday\""),
            &format!("{path}:6: expected 2 columns, found 1"),
            "imported 3 points of 1 series",
        ],
    );

    let got = query_json(
        &data,
        &[
            "--match",
            "site=lab",
            "--start",
            "2024-01-01 00:04:00",
            "--end",
            "2024-01-01 00:04:00",
            "--function",
            "avg",
            "--window",
            "10m",
        ],
    );
    assert_eq!(
        got[0].1,
        vec![(1_704_067_440_000, (1.25 + 2.25 + 4.25) / 3.0)]
    );

    // CSV output: header with the labels, one row per value.
    let out = cli(
        &data,
        &[
            "query",
            "--metric",
            "temp",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-01 00:04:00",
            "--step",
            "2m",
            "--window",
            "1m",
            "--output",
            "csv",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // PromQL's windows include their left edge: at 00:02 the window [00:01, 00:02] holds the
    // point of 00:01.
    assert_eq!(
        text(&out.stdout),
        "labels,timestamp,value\n\
         \"temp{site=\"\"lab\"\"}\",2024-01-01T00:00:00Z,1.25\n\
         \"temp{site=\"\"lab\"\"}\",2024-01-01T00:02:00Z,2.25\n\
         \"temp{site=\"\"lab\"\"}\",2024-01-01T00:04:00Z,4.25\n"
    );

    let out = cli(&data, &["stats", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["series"], 1);
    assert_eq!(doc["points_in_chunks"], 3);
    // Decimals are flushed by the packed codec (`DatabaseConfig::pack_decimal_chunks`).
    assert_eq!(doc["by_codec"][0]["codec"], "packed");
    assert!(doc["bytes_on_disk"].as_u64().expect("bytes") > 0);

    let out = cli(&data, &["inspect", "--match", "site=lab"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_says(
        &stdout,
        &["1 chunks, 3 points in chunks", "2024-01-01T00:00:00Z"],
    );
}

/// `gorilla-tsdb label-values host | head -1`, and the same for every command that prints:
/// the reader goes away after the first line and the command ends without an error message
/// or a panic.
#[test]
fn a_closed_output_pipe_ends_printing_commands_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    for h in 0..20_000 {
        text.push_str(&format!("m{{host=\"host-{h:05}\"}} {h} 1700000000000\n"));
    }
    let out = cli_stdin(
        dir.path(),
        &["import", "--format", "prometheus", "-"],
        &text,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [
        &["label-values", "host"][..],
        &["series"],
        &["query", "m", "--time", "1700000000"],
        &["inspect", "-m", "__name__=m"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gorilla-tsdb"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut first = [0u8; 64];
        let n = std::io::Read::read(&mut stdout, &mut first).expect("reads");
        assert!(n > 0, "{args:?} printed nothing");
        drop(stdout);
        let out = child.wait_with_output().expect("the binary finishes");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("error") && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn bad_query_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("db");
    for (args, says) in [
        (
            vec!["query", "--metric", "m", "--start", "100", "--end", "50"],
            "after its end",
        ),
        (
            vec!["query", "--metric", "m", "--step", "0"],
            "step must be positive",
        ),
        (
            vec!["query", "--metric", "m", "--function", "median"],
            "unknown range function",
        ),
        (vec!["query", "--match", "novalue"], "matcher \"novalue\""),
        (vec!["query"], "at least one --match"),
    ] {
        let out = cli(&data, &args);
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn real_recordings_import_and_aggregate_like_the_loader_says() {
    let Some(shared) = tsdb_testdata::real::shared_data_dir("gorilla-tsdb CLI on NAB files") else {
        return;
    };
    let group = shared.join("nab/realKnownCause");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("db");
    for name in ["nyc_taxi.csv", "machine_temperature_system_failure.csv"] {
        let path = group.join(name);
        let out = cli(
            &data,
            &[
                "import",
                "--format",
                "csv",
                "--metric",
                "nab",
                "--file-label",
                "--no-progress",
                path.to_str().expect("utf8"),
            ],
        );
        let stderr = text(&out.stderr);
        let points =
            tsdb_testdata::real::parse_nab(&path, &std::fs::read_to_string(&path).expect("read"))
                .expect("the loader parses it");
        // Every point is taken, in whatever order the file has it (one of these machines'
        // clock steps back 55 minutes).
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains("0 line(s) and 0 point(s) rejected"),
            "{name}: {stderr}"
        );
        // count and average over the whole file equal the loader's (last write wins).
        let kept: std::collections::BTreeMap<i64, f64> = points.iter().copied().collect();
        let first = *kept.keys().next().expect("points");
        let last = *kept.keys().last().expect("points");
        let stem = name.trim_end_matches(".csv");
        let span = format!("{}ms", last - first + 1);
        let (start, end) = (format!("{last}ms"), format!("{last}ms"));
        let m = format!("file={stem}");
        let count = query_json(
            &data,
            &[
                "--match", &m, "--start", &start, "--end", &end, "-f", "count", "-w", &span,
            ],
        );
        assert_eq!(count[0].1, vec![(last, kept.len() as f64)], "{name}");
        let avg = query_json(
            &data,
            &[
                "--match", &m, "--start", &start, "--end", &end, "-f", "avg", "-w", &span,
            ],
        );
        let mean = kept.values().sum::<f64>() / kept.len() as f64;
        assert!(
            (avg[0].1[0].1 - mean).abs() < 1e-9 * mean.abs().max(1.0),
            "{name}"
        );
    }
    // Both files, aggregated by file label: one series each.
    let out = cli(&data, &["stats", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["series"], 2);
}

#[test]
fn promql_queries_run_instant_and_range() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lp = dir.path().join("in.lp");
    std::fs::write(
        &lp,
        "cpu,host=a,region=eu usage=1.5 1700000000000000000\n\
         cpu,host=b,region=eu usage=2.5 1700000000000000000\n\
         cpu,host=c,region=us usage=7 1700000000000000000\n\
         cpu,host=a,region=eu usage=3.5 1700000060000000000\n",
    )
    .expect("write input");
    let data = dir.path().join("db");
    let out = cli(&data, &["import", lp.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));

    // Instant query, Prometheus API JSON.
    let out = cli(
        &data,
        &[
            "query",
            "sum by (region) (cpu_usage)",
            "--time",
            "1700000060000ms",
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "instant: {}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(doc["data"]["resultType"], "vector");
    let mut got: Vec<(String, String)> = doc["data"]["result"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| {
            (
                s["metric"]["region"].as_str().unwrap_or("").to_owned(),
                s["value"][1].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("eu".into(), "6".into()), ("us".into(), "7".into())]
    );

    // Range query as CSV: host a at 0 s, 30 s (looked back) and 60 s.
    let out = cli(
        &data,
        &[
            "query",
            "cpu_usage{host=\"a\"}",
            "--start",
            "1700000000000ms",
            "--end",
            "1700000060000ms",
            "--step",
            "30s",
            "-o",
            "csv",
        ],
    );
    assert!(out.status.success(), "range: {}", text(&out.stderr));
    let values: Vec<String> = csv::Reader::from_reader(out.stdout.as_slice())
        .records()
        .map(|r| r.expect("a CSV row")[2].to_owned())
        .collect();
    assert_eq!(values, ["1.5", "1.5", "3.5"]);

    // A syntax error names the position and fails without touching the data.
    let out = cli(&data, &["query", "sum(", "--time", "0"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("parse error at byte"),
        "{}",
        text(&out.stderr)
    );
}

/// Imports `cpu_usage{host="a"|"b"|"c"}` at 1,700,000,000 s and 60 s later into `dir/db`.
fn three_hosts(dir: &Path) -> std::path::PathBuf {
    let lp = dir.join("in.lp");
    std::fs::write(
        &lp,
        "cpu,host=a usage=1 1700000000000000000\n\
         cpu,host=b usage=2 1700000000000000000\n\
         cpu,host=c usage=3 1700000000000000000\n\
         cpu,host=a usage=4 1700000060000000000\n\
         cpu,host=b usage=5 1700000060000000000\n\
         cpu,host=c usage=6 1700000060000000000\n",
    )
    .expect("write input");
    let data = dir.join("db");
    let out = cli(
        &data,
        &["import", "--no-progress", lp.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    data
}

const RANGE: [&str; 6] = [
    "--start",
    "1700000000000ms",
    "--end",
    "1700000060000ms",
    "--step",
    "30s",
];

#[test]
fn query_output_is_cut_at_max_output_series_with_a_note() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = three_hosts(dir.path());
    // Flag query: two of the three series, valid JSON, exit status 2.
    let mut args = vec!["query", "--metric", "cpu_usage", "-o", "json"];
    args.extend(RANGE);
    args.extend(["--max-output-series", "2"]);
    let out = cli(&data, &args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(doc["data"]["result"].as_array().map(Vec::len), Some(2));
    assert_says(
        &text(&out.stderr),
        &["printed 2 of 3 series", "--max-output-series"],
    );
    // PromQL instant vector: one sample of three.
    let out = cli(
        &data,
        &[
            "query",
            "cpu_usage",
            "--time",
            "1700000060000ms",
            "-o",
            "json",
            "--max-output-series",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(doc["data"]["result"].as_array().map(Vec::len), Some(1));
    assert_says(&text(&out.stderr), &["printed 1 of 3 series"]);
    // Within the limit nothing is left out.
    let mut args = vec!["query", "cpu_usage", "-o", "csv"];
    args.extend(RANGE);
    let out = cli(&data, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1 + 3 * 3);
}

#[test]
fn query_output_stops_at_max_output_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = three_hosts(dir.path());
    for promql in [false, true] {
        let mut args = if promql {
            vec!["query", "cpu_usage"]
        } else {
            vec!["query", "--metric", "cpu_usage"]
        };
        args.extend(RANGE);
        args.extend(["--max-output-bytes", "120"]);
        let out = cli(&data, &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "promql {promql}: {stderr}");
        // What fitted, and a newline ending the cut line.
        assert!(out.stdout.len() <= 121, "{}", out.stdout.len());
        assert_says(
            &stderr,
            &[
                "the output was cut after",
                "bytes of output (--max-output-bytes)",
                "the limit is 120",
            ],
        );
        // Without the flag the whole answer is printed.
        args.truncate(args.len() - 2);
        let out = cli(&data, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(out.stdout.len() > 121);
    }
}

#[test]
fn query_memory_limits_come_from_the_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = three_hosts(dir.path());
    // PromQL: Prometheus's --query.max-samples.
    let mut args = vec!["query", "cpu_usage", "--max-samples", "4"];
    args.extend(RANGE);
    let out = cli(&data, &args);
    assert!(!out.status.success());
    assert_says(
        &text(&out.stderr),
        &[
            "samples loaded into memory in query execution",
            "the limit is 4",
        ],
    );
    // Flag query: the same engine, the same budget.
    let mut args = vec!["query", "--metric", "cpu_usage", "--max-samples", "4"];
    args.extend(RANGE);
    let out = cli(&data, &args);
    assert!(!out.status.success());
    assert_says(
        &text(&out.stderr),
        &[
            "samples loaded into memory in query execution",
            "the limit is 4",
        ],
    );
    // Series, both kinds.
    for mut args in [
        vec!["query", "cpu_usage", "--max-series", "2"],
        vec!["query", "--metric", "cpu_usage", "--max-series", "2"],
    ] {
        args.extend(RANGE);
        let out = cli(&data, &args);
        assert!(!out.status.success());
        assert_says(
            &text(&out.stderr),
            &["series", "would be 3", "the limit is 2"],
        );
    }
    // Label values made by label_replace.
    let doubled = r#"label_replace(cpu_usage, "host", "$1$1", "host", "(.*)")"#;
    let out = cli(
        &data,
        &[
            "query",
            doubled,
            "--time",
            "1700000060000ms",
            "--max-label-value-bytes",
            "1",
        ],
    );
    assert!(!out.status.success());
    assert_says(
        &text(&out.stderr),
        &[
            "bytes of a label value made by the query would be 2",
            "the limit is 1",
        ],
    );
    // The query of the fault report fails at once at the default 16 KiB.
    let mut nested = "cpu_usage".to_owned();
    for _ in 0..28 {
        nested = format!(r#"label_replace({nested}, "host", "$1$1", "host", "(.*)")"#);
    }
    let out = cli(&data, &["query", &nested, "--time", "1700000060000ms"]);
    assert!(!out.status.success());
    assert_says(
        &text(&out.stderr),
        &[
            "bytes of a label value made by the query would be 32768",
            "the limit is 16384",
        ],
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn import_rejects_oversized_labels_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lp = dir.path().join("in.lp");
    let huge = "x".repeat(20_000);
    std::fs::write(
        &lp,
        format!(
            "cpu,host={huge} usage=1 1700000000000000000\n\
             cpu,host=a usage=2 1700000000000000000\n"
        ),
    )
    .expect("write input");
    let data = dir.path().join("db");
    let out = cli(
        &data,
        &["import", "--no-progress", lp.to_str().expect("utf-8")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            ":1: invalid labels: the value of label \"host\" is 20000 bytes long",
            "the limit is 16384 bytes",
            "imported 1 points of 1 series",
        ],
    );
}

#[test]
fn read_commands_work_beside_a_live_writer_and_writers_are_refused() {
    use gorilla_tsdb::{DatabaseConfig, Labels, TimeRange, TimeSeriesDBBuilder};
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("db");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let config = DatabaseConfig {
        data_dir: data.clone(),
        chunk_max_points: 100,
        ..Default::default()
    };
    let db = rt
        .block_on(
            TimeSeriesDBBuilder::new()
                .with_config(config.clone())
                .build(),
        )
        .expect("the live writer opens");
    let labels = Labels::new("live", [("host", "a")]).expect("labels");
    let mut written = 0i64;
    let mut write = |n: i64| {
        let points: Vec<(i64, f64)> = (written..written + n)
            .map(|i| (1_700_000_000_000 + i * 1000, i as f64))
            .collect();
        rt.block_on(db.insert_series(&labels, &points))
            .expect("write");
        written += n;
    };
    write(250);
    // Many read-only commands while the writer goes on writing: each sees a consistent
    // database and none touches the writer's files.
    for round in 0..12 {
        let stats = cli(&data, &["stats"]);
        assert!(stats.status.success(), "stats: {}", text(&stats.stderr));
        assert_says(&text(&stats.stdout), &["series           1"]);
        let query = cli(&data, &["query", "live"]);
        assert!(query.status.success(), "query: {}", text(&query.stderr));
        if round % 4 == 0 {
            let import = cli_stdin(&data, &["import", "--format", "prometheus"], "live 1 1\n");
            assert!(!import.status.success(), "a second writer must be refused");
            assert_says(&text(&import.stderr), &["in use"]);
        }
        write(40);
    }
    rt.block_on(db.close()).expect("close");
    drop(db);
    let db = rt
        .block_on(TimeSeriesDBBuilder::new().with_config(config).build())
        .expect("reopen");
    let found = rt
        .block_on(db.query(&labels, TimeRange::ALL))
        .expect("query");
    assert_eq!(
        found[0].len() as i64,
        written,
        "every acknowledged point is there"
    );
    rt.block_on(db.close()).expect("close");
    // Read commands on a directory without a database say so and create nothing.
    let empty = dir.path().join("nothing");
    let out = cli(&empty, &["stats"]);
    assert!(!out.status.success());
    let out = cli(&empty, &["query", "live"]);
    assert!(!out.status.success());
    assert_says(&text(&out.stderr), &["holds no database"]);
    assert!(
        !empty.exists(),
        "a read command created {}",
        empty.display()
    );
}

#[test]
fn flag_queries_are_promql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = cli(
        dir.path(),
        &[
            "query",
            "--metric",
            "cpu",
            "--match",
            "host=~web.*",
            "-f",
            "rate",
            "-w",
            "5m",
            "--aggregate",
            "sum",
            "--by",
            "region",
            "--print-promql",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        r#"sum by (region) (rate({host=~"web.*", __name__="cpu"}[5m]))"#
    );
}

/// The lifecycle from the command line: a point far in the future is refused with a hint
/// about the timestamp's unit (and taken with `--future-tolerance none`), `delete` hides
/// points, `snapshot` writes a copy that the other commands open, and commands that need a
/// database say so on a directory without one.
#[test]
fn future_points_delete_and_snapshot_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("db");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // Milliseconds given where the format expects milliseconds, and one in microseconds.
    let input = format!(
        "cpu{{host=\"a\"}} 1 {}\ncpu{{host=\"a\"}} 2 {}\ncpu{{host=\"a\"}} 3 {}\n",
        now - 2_000,
        now - 1_000,
        now * 1_000
    );
    let out = cli_stdin(
        &data,
        &["import", "--format", "prometheus", "--no-progress"],
        &input,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("too far in the future") && stderr.contains("--precision"),
        "{stderr}"
    );
    let out = cli_stdin(
        &data,
        &[
            "import",
            "--format",
            "prometheus",
            "--no-progress",
            "--future-tolerance",
            "none",
        ],
        &format!("cpu{{host=\"b\"}} 9 {}\n", now * 1_000),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = cli(
        &data,
        &[
            "delete",
            "--match",
            "host=\"a\"",
            "--end",
            &format!("{}ms", now - 1_500),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("1 series"),
        "{}",
        text(&out.stdout)
    );
    let start = format!("{}ms", now - 10_000);
    let end = format!("{now}ms");
    let a = query_json(
        &data,
        &[
            "--match",
            "host=\"a\"",
            "--start",
            &start,
            "--end",
            &end,
            "--step",
            "1s",
        ],
    );
    assert!(
        a.iter()
            .all(|(_, points)| points.iter().all(|&(_, v)| v == 2.0)),
        "only the point after the deleted range: {a:?}"
    );

    let snap = dir.path().join("snap");
    let out = cli(&data, &["snapshot", snap.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli(&snap, &["stats"]);
    let stats = text(&out.stdout);
    assert!(
        out.status.success() && stats.contains("series           2"),
        "{stats}"
    );

    let empty = dir.path().join("nothing-here");
    for args in [vec!["stats"], vec!["delete", "--match", "host=\"a\""]] {
        let out = cli(&empty, &args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains("no database")
                || text(&out.stderr).contains("not a data directory"),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!empty.exists(), "{args:?} created the directory");
    }
}

/// `compact` rewrites what the other commands wrote: it says how many series and chunks it
/// rewrote and the bytes a point of the data directory, `stats` then shows the cold codec,
/// and queries answer as before.
#[test]
fn compact_rewrites_cold_chunks_and_answers_stay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("db");
    let mut lines = String::new();
    for s in 0..3 {
        for i in 0..3_000i64 {
            let cents = 5_000 + (i * 37 + s * 11) % 400;
            lines.push_str(&format!(
                "gauge{{host=\"h{s}\"}} {}.{:02} {}\n",
                cents / 100,
                cents % 100,
                1_700_000_000_000 + i * 10_000
            ));
        }
    }
    let out = cli_stdin(
        &data,
        &["import", "-f", "prometheus", "--no-progress"],
        &lines,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let range = [
        "--match",
        "__name__=gauge",
        "--start",
        "1700000000",
        "--end",
        "1700029990",
        "--step",
        "10s",
    ];
    let before = query_json(&data, &range);
    assert_eq!(before.len(), 3);

    let out = cli(&data, &["compact", "--cold-after", "0s"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_says(
        &stdout,
        &["compacted 3 series", "9000 points stored", "bytes a point"],
    );
    let out = cli(&data, &["stats"]);
    assert_says(&text(&out.stdout), &["pco"]);
    assert_eq!(query_json(&data, &range), before);

    // A rollup tier: built on demand, shown by `stats`, answering the queries on its grid
    // as the raw points did (`query` does not configure it: it reads it all the same).
    let on_grid = [
        "max_over_time(gauge[10m])",
        "--start",
        "1700000400",
        "--end",
        "1700029800",
        "--step",
        "5m",
    ];
    let raw = query_json(&data, &on_grid);
    assert_eq!(raw.len(), 3);
    let out = cli(
        &data,
        &["compact", "--cold-after", "0s", "--rollup", "5m:400d"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_says(
        &stdout,
        &[
            "rollup tiers: 303 buckets written in 3 groups",
            "9000 points stored",
        ],
    );
    assert_says(&text(&cli(&data, &["stats"]).stdout), &["rollup"]);
    assert_eq!(query_json(&data, &on_grid), raw);
    let out = cli(&data, &["compact", "--rollup", "5m:later"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_says(&text(&out.stderr), &["--rollup"]);

    // Nothing cold any more: a second run rewrites nothing.
    let out = cli(&data, &["compact", "--cold-after", "0s"]);
    assert_says(&text(&out.stdout), &["compacted 0 series"]);
    // Bad flags are clear errors.
    let out = cli(&data, &["compact", "--chunk-points", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_says(&text(&out.stderr), &["--chunk-points"]);
}
