//! What a Prometheus user sees from `gorilla-tsdb`: query tables in PromQL notation with
//! RFC 3339 times, `-o json` in the Prometheus HTTP API's shape (the same bytes as
//! `gorilla-tsdb serve` answers), CSV, `series`/`labels`/`label-values`, `plot` and
//! `inspect`, on a small data set imported first.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn cli(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gorilla-tsdb"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("GORILLA_TSDB_DATA_DIR")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `args`, which must succeed; its stdout.
fn ok(data_dir: &Path, args: &[&str]) -> String {
    let out = cli(data_dir, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `args`, which must succeed and print JSON; the document.
fn ok_json(data_dir: &Path, args: &[&str]) -> Value {
    let out = ok(data_dir, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// The stdout lines of `args`, as a set.
fn lines(data_dir: &Path, args: &[&str]) -> BTreeSet<String> {
    ok(data_dir, args).lines().map(str::to_owned).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// 1,700,000,000 s: 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000_000;

/// `cpu_usage` of three hosts at T0 and T0 + 60 s, a counter whose label value needs
/// escaping, and `late_metric` ten minutes later, imported into `dir/db`.
fn dataset(dir: &Path) -> PathBuf {
    let data = dir.join("db");
    let input = format!(
        "cpu_usage{{host=\"a\",region=\"eu\"}} 1.5 {t0}\n\
         cpu_usage{{host=\"b\",region=\"eu\"}} 2.5 {t0}\n\
         cpu_usage{{host=\"c\",region=\"us\"}} 7 {t0}\n\
         cpu_usage{{host=\"a\",region=\"eu\"}} 3.5 {t1}\n\
         cpu_usage{{host=\"b\",region=\"eu\"}} 0.25 {t1}\n\
         cpu_usage{{host=\"c\",region=\"us\"}} 8 {t1}\n\
         http_requests_total{{method=\"get\",path=\"/a\\\"b\"}} 10 {t0}\n\
         http_requests_total{{method=\"get\",path=\"/a\\\"b\"}} 25 {t1}\n\
         late_metric{{x=\"1\"}} 5 {t10}\n",
        t0 = T0,
        t1 = T0 + 60_000,
        t10 = T0 + 600_000
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_gorilla-tsdb"))
        .arg("--data-dir")
        .arg(&data)
        .args(["import", "--format", "prometheus", "--no-progress"])
        .env_remove("GORILLA_TSDB_DATA_DIR")
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
    let out = child.wait_with_output().expect("the import finishes");
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    data
}

/// `--start T0 --end T0+60s --step 30s`.
fn range() -> Vec<String> {
    vec![
        "--start".into(),
        format!("{T0}ms"),
        "--end".into(),
        format!("{}ms", T0 + 60_000),
        "--step".into(),
        "30s".into(),
    ]
}

fn with_range<'a>(args: &[&'a str], range: &'a [String]) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(range.iter().map(String::as_str));
    all
}

#[test]
fn the_table_shows_promql_labels_rfc3339_times_and_prometheus_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path());
    let r = range();
    // Range query: a row per sample, labels in PromQL notation.
    let out = ok(&data, &with_range(&["query", "cpu_usage"], &r));
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 1 + 3 * 3, "{out}");
    let header: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(header, ["series", "time", "value"], "{out}");
    let cells = |row: &str| -> Vec<String> {
        // The labels hold a ", ": split on the column gaps (two spaces).
        row.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        cells(rows[1]),
        [
            r#"cpu_usage{host="a", region="eu"}"#,
            "2023-11-14T22:13:20Z",
            "1.5"
        ]
    );
    assert_eq!(
        cells(rows[3]),
        [
            r#"cpu_usage{host="a", region="eu"}"#,
            "2023-11-14T22:14:20Z",
            "3.5"
        ]
    );
    assert_eq!(cells(rows[6])[2], "0.25");
    // The columns are aligned.
    let at = rows[0].find("time").expect("time column");
    assert!(rows[1..].iter().all(|r| r[at..].starts_with("2023-11-14T")));
    // An instant vector: a row per series; a value needing escapes is quoted as Prometheus
    // quotes it.
    let out = ok(
        &data,
        &[
            "query",
            "http_requests_total",
            "--time",
            &format!("{}ms", T0 + 60_000),
        ],
    );
    assert!(
        out.contains(
            r#"http_requests_total{method="get", path="/a\"b"}  2023-11-14T22:14:20Z  25"#
        ),
        "{out}"
    );
    // A scalar, at a time with milliseconds.
    let out = ok(
        &data,
        &["query", "1 / 8", "--time", &format!("{}ms", T0 + 500)],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "time                      value",
            "2023-11-14T22:13:20.500Z  0.125"
        ]
    );
    // Flag queries print alike.
    let out = ok(
        &data,
        &with_range(&["query", "--metric", "cpu_usage", "--match", "host=c"], &r),
    );
    assert!(
        out.contains(r#"cpu_usage{host="c", region="us"}  2023-11-14T22:13:50Z  7"#),
        "{out}"
    );
}

#[test]
fn json_is_the_prometheus_api_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path());
    let r = range();
    let doc = ok_json(
        &data,
        &with_range(&["query", r#"cpu_usage{host="a"}"#, "-o", "json"], &r),
    );
    assert_eq!(
        doc,
        json!({"status": "success", "data": {"resultType": "matrix", "result": [{
            "metric": {"__name__": "cpu_usage", "host": "a", "region": "eu"},
            "values": [[1_700_000_000, "1.5"], [1_700_000_030, "1.5"], [1_700_000_060, "3.5"]],
        }]}})
    );
    let doc = ok_json(
        &data,
        &[
            "query",
            "sum by (region) (cpu_usage)",
            "--time",
            &format!("{}ms", T0 + 60_000),
            "-o",
            "json",
        ],
    );
    assert_eq!(
        doc,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"region": "eu"}, "value": [1_700_000_060, "3.75"]},
            {"metric": {"region": "us"}, "value": [1_700_000_060, "8"]},
        ]}})
    );
    let doc = ok_json(
        &data,
        &[
            "query",
            "2 * 3",
            "--time",
            &format!("{}ms", T0 + 1_500),
            "-o",
            "json",
        ],
    );
    assert_eq!(
        doc,
        json!({"status": "success", "data": {"resultType": "scalar", "result": [1_700_000_001.5, "6"]}})
    );
    // The flags build PromQL; their answer is the same bytes as the PromQL text's.
    let flags = with_range(
        &[
            "query",
            "--metric",
            "cpu_usage",
            "-f",
            "rate",
            "-w",
            "1m",
            "-a",
            "sum",
        ],
        &r,
    );
    let promql = ok(&data, &[flags.as_slice(), &["--print-promql"]].concat());
    let by_flags = ok(&data, &[flags.as_slice(), &["-o", "json"]].concat());
    let by_text = ok(
        &data,
        &with_range(&["query", promql.trim(), "-o", "json"], &r),
    );
    assert_eq!(by_flags, by_text);
    assert!(by_flags.starts_with(r#"{"status":"success","data":{"resultType":"matrix""#));
}

#[test]
fn csv_rows_are_labels_timestamp_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path());
    let r = range();
    let out = ok(&data, &with_range(&["query", "cpu_usage", "-o", "csv"], &r));
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    assert_eq!(
        reader
            .headers()
            .expect("a header")
            .iter()
            .collect::<Vec<_>>(),
        ["labels", "timestamp", "value"]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("a row").iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 9);
    assert_eq!(
        rows[5],
        [
            r#"cpu_usage{host="b", region="eu"}"#,
            "2023-11-14T22:14:20Z",
            "0.25"
        ]
    );
    let hosts: BTreeSet<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(hosts.len(), 3);
}

#[test]
fn series_labels_and_label_values_list_what_is_there() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path());
    let all = set(&[
        r#"cpu_usage{host="a", region="eu"}"#,
        r#"cpu_usage{host="b", region="eu"}"#,
        r#"cpu_usage{host="c", region="us"}"#,
        r#"http_requests_total{method="get", path="/a\"b"}"#,
        r#"late_metric{x="1"}"#,
    ]);
    assert_eq!(lines(&data, &["series"]), all);
    // Selectors as positionals or --match: a series matching any is listed.
    assert_eq!(
        lines(
            &data,
            &[
                "series",
                r#"cpu_usage{region="eu"}"#,
                "--match",
                "late_metric"
            ]
        ),
        set(&[
            r#"cpu_usage{host="a", region="eu"}"#,
            r#"cpu_usage{host="b", region="eu"}"#,
            r#"late_metric{x="1"}"#,
        ])
    );
    assert_eq!(
        lines(&data, &["series", "region=~e.*"]),
        set(&[
            r#"cpu_usage{host="a", region="eu"}"#,
            r#"cpu_usage{host="b", region="eu"}"#,
        ])
    );
    // A time range keeps the series with a sample in it.
    let later = format!("{}ms", T0 + 300_000);
    assert_eq!(
        lines(&data, &["series", "--start", &later]),
        set(&[r#"late_metric{x="1"}"#])
    );
    assert_eq!(
        lines(&data, &["series", "--end", &format!("{}ms", T0 + 60_000)]).len(),
        4
    );
    // JSON as /api/v1/series answers.
    let doc = ok_json(&data, &["series", "cpu_usage{host=\"c\"}", "-o", "json"]);
    assert_eq!(
        doc,
        json!({"status": "success", "data": [
            {"__name__": "cpu_usage", "host": "c", "region": "us"}
        ]})
    );

    assert_eq!(
        lines(&data, &["labels"]),
        set(&["__name__", "host", "method", "path", "region", "x"])
    );
    assert_eq!(
        lines(&data, &["labels", "cpu_usage"]),
        set(&["__name__", "host", "region"])
    );
    assert_eq!(
        lines(&data, &["labels", "--start", &later]),
        set(&["__name__", "x"])
    );
    assert_eq!(
        ok_json(&data, &["labels", "late_metric", "-o", "json"]),
        json!({"status": "success", "data": ["__name__", "x"]})
    );

    assert_eq!(
        lines(&data, &["label-values", "host"]),
        set(&["a", "b", "c"])
    );
    assert_eq!(
        lines(&data, &["label-values", "host", "--match", "region=eu"]),
        set(&["a", "b"])
    );
    assert_eq!(
        ok_json(&data, &["label-values", "__name__", "-o", "json"]),
        json!({"status": "success", "data": ["cpu_usage", "http_requests_total", "late_metric"]})
    );
    assert_eq!(lines(&data, &["label-values", "path"]), set(&["/a\"b"]));

    // Mistakes are clear errors.
    for (args, says) in [
        (vec!["label-values", "a-b"], "invalid label name"),
        (
            vec!["series", "rate(cpu_usage[5m])"],
            "not a series selector",
        ),
        (vec!["series", "cpu_usage{"], "parse error"),
    ] {
        let out = cli(&data, &args);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn plot_draws_a_line_and_a_legend_entry_per_series() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path());
    let r = range();
    let svg_path = dir.path().join("cpu.svg");
    let svg_arg = svg_path.to_str().expect("utf-8");
    let out = ok(
        &data,
        &with_range(&["plot", "cpu_usage", "-o", svg_arg], &r[..4]),
    );
    assert!(out.contains("3 series"), "{out}");
    let svg = std::fs::read_to_string(&svg_path).expect("the SVG");
    assert!(svg.contains("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    // A line per series (and the legend's sample of its colour), each in its own colour.
    let strokes: BTreeSet<&str> = svg
        .lines()
        .filter(|l| l.starts_with("<polyline") || l.starts_with("<path"))
        .filter_map(|l| {
            let at = l.find("stroke=\"#")? + "stroke=\"".len();
            l.get(at..at + 7)
        })
        .filter(|c| *c != "#000000")
        .collect();
    assert!(strokes.len() >= 3, "{strokes:?}");
    let unescaped = svg.replace("&quot;", "\"");
    for labels in [
        r#"cpu_usage{host="a", region="eu"}"#,
        r#"cpu_usage{host="b", region="eu"}"#,
        r#"cpu_usage{host="c", region="us"}"#,
    ] {
        assert!(unescaped.contains(labels), "the legend lacks {labels}");
    }
    // The title is the query; the time axis is labelled with times of day and the date.
    assert!(
        unescaped.lines().any(|l| l.trim() == "cpu_usage"),
        "no title: {svg}"
    );
    assert!(unescaped.contains("22:13:20"), "{svg}");
    assert!(unescaped.contains("2023-11-14 (UTC)"), "{svg}");

    // PNG by the extension.
    let png_path = dir.path().join("cpu.png");
    ok(
        &data,
        &with_range(
            &[
                "plot",
                "sum(cpu_usage)",
                "-o",
                png_path.to_str().expect("utf-8"),
            ],
            &r,
        ),
    );
    let png = std::fs::read(&png_path).expect("the PNG");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 2_000);

    // Another extension is refused before anything is drawn.
    let out = cli(&data, &["plot", "cpu_usage", "-o", "chart.jpg"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(".svg or .png"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn inspect_names_series_as_promql_selectors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path());
    let out = ok(
        &data,
        &["inspect", "--match", "__name__=http_requests_total"],
    );
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with("series "), "{out}");
    assert!(
        first.ends_with(r#" http_requests_total{method="get", path="/a\"b"}"#),
        "{out}"
    );
}

/// The CLI's JSON is the server's answer, byte for byte (the CLI ends it with a newline).
#[cfg(feature = "server")]
#[test]
fn json_is_what_the_server_answers() {
    use std::io::{BufRead, BufReader, Read};

    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path());
    let r = range();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gorilla-tsdb"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0", "--retention", "36500d"])
        .env_remove("GORILLA_TSDB_DATA_DIR")
        .env_remove("GORILLA_TSDB_LISTEN")
        .env_remove("GORILLA_TSDB_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().expect("stderr");
    let child = Kill(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .expect("stderr");
        if let Some(at) = line.find("http://") {
            break line[at + "http://".len()..]
                .trim()
                .trim_end_matches('/')
                .to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let get = |path: &str| -> String {
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        let (head, body) = answer.split_once("\r\n\r\n").expect("headers end");
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
        body.to_owned()
    };
    let pairs: &[(&str, &[&str])] = &[
        (
            "/api/v1/query_range?query=cpu_usage&start=1700000000&end=1700000060&step=30",
            &with_range(&["query", "cpu_usage", "-o", "json"], &r),
        ),
        (
            "/api/v1/query?query=sum%20by%20(region)%20(rate(cpu_usage%5B5m%5D))%20/%203&time=1700000060.5",
            &[
                "query",
                "sum by (region) (rate(cpu_usage[5m])) / 3",
                "--time",
                "1700000060500ms",
                "-o",
                "json",
            ],
        ),
        (
            "/api/v1/query?query=http_requests_total&time=1700000060",
            &[
                "query",
                "http_requests_total",
                "--time",
                "1700000060000ms",
                "-o",
                "json",
            ],
        ),
        (
            "/api/v1/query?query=1e-7&time=1700000000",
            &["query", "1e-7", "--time", "1700000000000ms", "-o", "json"],
        ),
        (
            "/api/v1/series?match%5B%5D=cpu_usage&match%5B%5D=http_requests_total",
            &["series", "cpu_usage", "http_requests_total", "-o", "json"],
        ),
        ("/api/v1/labels", &["labels", "-o", "json"]),
        (
            "/api/v1/label/host/values",
            &["label-values", "host", "-o", "json"],
        ),
    ];
    for (path, args) in pairs {
        let served = get(path);
        let printed = ok(&data, args);
        assert_eq!(printed, format!("{served}\n"), "{path} vs {args:?}");
    }
    drop(child);
}
