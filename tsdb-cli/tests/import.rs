//! `gorilla-tsdb import`: counts and messages, every listed bad input as a named reject of
//! its own line, gzip input, the Influx field rules, chunk boundaries and long lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use gorilla_tsdb::{DatabaseConfig, LabelMatcher, Labels, TimeRange, TimeSeriesDBBuilder};
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

fn cli_stdin(data_dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gorilla-tsdb"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let feeding = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("the binary finishes");
    feeding.join().expect("feeding").expect("write stdin");
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that `output` contains every one of `wanted`.
fn assert_says(output: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(output.contains(w), "missing {w:?} in:\n{output}");
    }
}

/// Asserts that `output` contains none of `unwanted`.
fn assert_silent_about(output: &str, unwanted: &[&str]) {
    for w in unwanted {
        assert!(!output.contains(w), "unexpected {w:?} in:\n{output}");
    }
}

/// `(labels, points)` of every series of `metric`, read through the library (the database
/// opened read-only), sorted by labels.
fn points(data_dir: &Path, metric: &str) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let db = TimeSeriesDBBuilder::new()
            .with_config(DatabaseConfig {
                data_dir: data_dir.to_path_buf(),
                read_only: true,
                ..DatabaseConfig::default()
            })
            .build()
            .await
            .expect("the database opens");
        let found = db
            .query(
                vec![LabelMatcher::equal("__name__", metric)],
                TimeRange::ALL,
            )
            .await
            .expect("query");
        let mut all: Vec<(Labels, Vec<(i64, f64)>)> = found
            .into_iter()
            .map(|s| {
                let pts = s
                    .timestamps
                    .iter()
                    .copied()
                    .zip(s.values.iter().copied())
                    .collect();
                (s.labels, pts)
            })
            .collect();
        all.sort_by_key(|s| s.0.to_string());
        db.close().await.expect("close");
        all
    })
}

fn stats(data_dir: &Path) -> Value {
    let out = cli(data_dir, &["stats", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn stored_points(data_dir: &Path) -> u64 {
    let s = stats(data_dir);
    s["points_in_chunks"].as_u64().expect("points")
        + s["points_buffered"].as_u64().expect("buffered")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write input");
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

#[test]
fn influx_lines_and_points_are_counted_apart_and_bad_fields_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "in.lp",
        b"cpu,host=a usage=1.5,idle=oops,user=2i,name=\"x\",big=1e400 1700000000000000000\n\
          cpu,host=a usage=2.5 1700000010000000000\n\
          cpu,host=a name=\"only text\" 1700000020000000000\n\
          cpu,host=a usage=3.5 1700000030000000000 trailing\n\
          cpu,host=a usage=t,ok=FALSE 1700000040000000000\n",
    );
    let data = dir.path().join("db");
    let name = file.display().to_string();
    let out = cli(&data, &["import", "--no-progress", &name]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            &format!("{name}:1: field \"idle\": value \"oops\" is not a number"),
            &format!("{name}:1: field \"name\" is a string; only numbers are imported"),
            &format!("{name}:1: field \"big\": value \"1e400\" is out of range"),
            &format!("{name}:3: field \"name\" is a string"),
            &format!("{name}:4: unexpected \"trailing\" after the timestamp"),
            "imported 5 points of 3 series from 5 line(s)",
            "2 line(s) and 3 point(s) rejected",
            "rejected lines: 1 string_field, 1 syntax",
            "rejected points: 1 bad_value, 1 string_field, 1 value_out_of_range",
        ],
    );
    assert_silent_about(&stderr, &["No fields were provided"]);
    let usage = points(&data, "cpu_usage");
    assert_eq!(
        usage[0].1,
        vec![
            (1_700_000_000_000, 1.5),
            (1_700_000_010_000, 2.5),
            (1_700_000_040_000, 1.0)
        ]
    );
    let user = points(&data, "cpu_user");
    assert_eq!(user[0].1, vec![(1_700_000_000_000, 2.0)]);
    let ok = points(&data, "cpu_ok");
    assert_eq!(ok[0].1, vec![(1_700_000_040_000, 0.0)]);
}

#[test]
fn influx_booleans_and_integers_follow_the_flags() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = b"m,h=a b=true,i=9007199254740993i,u=7u,f=1.5 1700000000000000000\n";
    let data = dir.path().join("strict");
    let out = cli_stdin(
        &data,
        &[
            "import",
            "--no-progress",
            "--influx-bool",
            "reject",
            "--influx-int",
            "exact",
        ],
        input,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            "<stdin>:1: field \"b\" is a boolean; booleans are refused (--influx-bool as-number",
            "<stdin>:1: field \"i\": value \"9007199254740993i\" is beyond 2^53",
            "imported 2 points of 2 series",
            "rejected points: 1 boolean_field, 1 inexact_integer",
        ],
    );
    let data = dir.path().join("default");
    let out = cli_stdin(&data, &["import", "--no-progress"], input);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_says(&text(&out.stderr), &["imported 4 points of 4 series"]);
    let b = points(&data, "m_b");
    assert_eq!(b[0].1, vec![(1_700_000_000_000, 1.0)]);
    let i = points(&data, "m_i");
    assert_eq!(i[0].1, vec![(1_700_000_000_000, 9_007_199_254_740_992.0)]);
}

#[test]
fn default_timestamp_now_imports_lines_without_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("db");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let out = cli_stdin(
        &data,
        &[
            "import",
            "--format",
            "prometheus",
            "--no-progress",
            "--default-timestamp",
            "now",
        ],
        b"m{} 1\nm{a=\"b\"} 2\nm 3 1700000000000\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_says(&text(&out.stderr), &["imported 3 points of 2 series"]);
    let got = points(&data, "m");
    assert_eq!(got.len(), 2, "{got:?}");
    let recent = |t: i64| t >= before && t <= before + 60_000;
    assert_eq!(got[0].1.len(), 2, "{got:?}");
    assert_eq!(got[0].1[0], (1_700_000_000_000, 3.0));
    assert!(recent(got[0].1[1].0) && got[0].1[1].1 == 1.0, "{got:?}");
    assert_eq!(got[1].1.len(), 1, "{got:?}");
    assert!(recent(got[1].1[0].0), "{got:?}");
    // Influx too, and a bad time is a clear error.
    let out = cli_stdin(
        &data,
        &["import", "--no-progress", "--default-timestamp", "now-1h"],
        b"n v=1\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli_stdin(
        &data,
        &["import", "--no-progress", "--default-timestamp", "soon"],
        b"n v=1\n",
    );
    assert!(!out.status.success());
    assert_says(&text(&out.stderr), &["--default-timestamp", "soon"]);
}

#[test]
fn every_listed_bad_prometheus_line_is_a_named_reject_of_that_line_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = Vec::new();
    input.extend_from_slice(b"# TYPE m gauge\n");
    input.extend_from_slice(b"m{a=\"1\"} 1 1000\n"); // 2
    input.extend_from_slice(b"m{a=\"1\"} 1e400 2000\n"); // 3
    input.extend_from_slice(b"m{a=\"1\"} 3 3000 garbage\n"); // 4
    input.extend_from_slice(b"m{a=\"\xff\"} 4 4000\n"); // 5
    input.extend_from_slice(b"m{a=\"1\"} +Inf 5000\n"); // 6
    input.extend_from_slice(b"m{a=\"1\"} NaN 6000\n"); // 7
    input.extend_from_slice(b"m{} 7 7000\n"); // 8
    input.extend_from_slice(b"m{a=\"1\"} 8 99999999999999999999\n"); // 9
    input.extend_from_slice(b"m{a=\"1\"} 9 9000\n"); // 10
    input.extend_from_slice(b"m{a=\"1\"} 10\n"); // 11: at the import's time
    input.extend_from_slice(b"m{} 11\n"); // 12: m{} 1, valid, at the import's time
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let data = dir.path().join("db");
    let out = cli_stdin(
        &data,
        &["import", "--format", "prometheus", "--no-progress"],
        &input,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            "<stdin>:3: value \"1e400\" is out of range for a 64-bit float",
            "<stdin>:4: unexpected \"garbage\" after the timestamp",
            "<stdin>:5: not UTF-8 text (an invalid byte at column 6)",
            "<stdin>:9: timestamp \"99999999999999999999\" is out of range",
            "imported 7 points of 2 series from 11 line(s)",
            "4 line(s) and 0 point(s) rejected",
            "rejected lines: 1 invalid_utf8, 1 syntax, 1 timestamp_out_of_range, 1 value_out_of_range",
            "2 line(s) had no timestamp and were imported at --default-timestamp (",
        ],
    );
    let got = points(&data, "m");
    assert_eq!(got.len(), 2);
    // m{} is m.
    assert_eq!(got[0].1.len(), 2, "{got:?}");
    assert_eq!(got[0].1[0], (7000, 7.0));
    assert_eq!(got[0].1[1].1, 11.0);
    assert!(got[0].1[1].0 >= before, "{got:?}");
    let a: Vec<i64> = got[1].1.iter().map(|p| p.0).collect();
    assert_eq!(a[..4], [1000, 5000, 6000, 9000]);
    assert!(a[4] >= before && got[1].1[4].1 == 10.0, "{got:?}");
    // --default-timestamp none refuses lines without a timestamp, saying how to take them.
    let out = cli_stdin(
        &dir.path().join("none"),
        &[
            "import",
            "--format",
            "prometheus",
            "--no-progress",
            "--default-timestamp",
            "none",
        ],
        b"m{} 1\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_says(
        &text(&out.stderr),
        &[
            "<stdin>:1: no timestamp (--default-timestamp none refuses such lines",
            "rejected lines: 1 no_timestamp",
        ],
    );
}

#[test]
fn every_listed_bad_csv_line_is_a_named_reject_of_that_line_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = Vec::new();
    input.extend_from_slice(b"timestamp,value\n");
    input.extend_from_slice(b"1000,1\n"); // 2
    input.extend_from_slice(b"1e30,2\n"); // 3
    input.extend_from_slice(b"99999999999999999999,3\n"); // 4
    input.extend_from_slice(b"4000,\"4\n"); // 5: unterminated quote
    input.extend_from_slice(b"5000,5\n"); // 6
    input.extend_from_slice(b"6000,\xff\n"); // 7
    input.extend_from_slice(b"7000,1e400\n"); // 8
    input.extend_from_slice(b"8000,+Inf\n"); // 9
    input.extend_from_slice(b"\"9000\",\"9\"\n"); // 10
    let file = write(dir.path(), "points.csv", &input);
    let name = file.display().to_string();
    let data = dir.path().join("db");
    let out = cli(
        &data,
        &[
            "import",
            "--format",
            "csv",
            "--metric",
            "c",
            "--no-progress",
            &name,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            &format!("{name}:3: timestamp \"1e30\" is out of range"),
            &format!("{name}:4: timestamp \"99999999999999999999\" is out of range"),
            &format!("{name}:5: unterminated quote"),
            &format!("{name}:7: not UTF-8 text"),
            &format!("{name}:8: value \"1e400\" is out of range"),
            "imported 4 points of 1 series from 9 line(s)",
            "5 line(s) and 0 point(s) rejected",
            "rejected lines: 2 timestamp_out_of_range,",
        ],
    );
    let got = points(&data, "c");
    assert_eq!(
        got[0].1.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1000, 5000, 8000, 9000]
    );
    assert_eq!(got[0].1[2].1, f64::INFINITY);
}

#[test]
fn gzip_by_extension_by_magic_and_on_stdin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lines: String = (0..1000)
        .map(|i| {
            format!(
                "g{{s=\"{}\"}} {i} {}\n",
                i % 10,
                1_700_000_000_000i64 + i * 1000
            )
        })
        .collect();
    let gz = gzip(lines.as_bytes());
    let named = write(dir.path(), "a.prom.gz", &gz);
    let unnamed = write(dir.path(), "b.prom", &gz);
    let data = dir.path().join("db");
    let out = cli(
        &data,
        &[
            "import",
            "--format",
            "prometheus",
            "--no-progress",
            named.to_str().expect("utf-8"),
            unnamed.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_says(
        &text(&out.stderr),
        &["imported 2000 points of 10 series from 2000 line(s) of 2 input(s)"],
    );
    let data = dir.path().join("stdin");
    let out = cli_stdin(
        &data,
        &["import", "--format", "prometheus", "--no-progress"],
        &gz,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(stored_points(&data), 1000);
    // A .gz file that is not gzip is an error naming it.
    let fake = write(dir.path(), "c.prom.gz", lines.as_bytes());
    let out = cli(
        &data,
        &[
            "import",
            "--format",
            "prometheus",
            "--no-progress",
            fake.to_str().expect("utf-8"),
        ],
    );
    assert!(!out.status.success());
    assert_says(&text(&out.stderr), &["c.prom.gz", "not gzip"]);
    // A corrupt gzip stream stops the import with an error, after what came before.
    let mut cut = gzip(lines.as_bytes());
    let half = cut.len() / 2;
    cut[half] ^= 0xff;
    cut.truncate(half + 10);
    let broken = write(dir.path(), "d.prom.gz", &cut);
    let out = cli(
        &dir.path().join("broken"),
        &[
            "import",
            "--format",
            "prometheus",
            "--no-progress",
            broken.to_str().expect("utf-8"),
        ],
    );
    assert!(!out.status.success(), "{}", text(&out.stderr));
    assert_says(&text(&out.stderr), &["d.prom.gz"]);
}

/// Several chunks of input (a chunk is 2 MiB): every point there, in order per series, and
/// line numbers right far into the file.
#[test]
fn big_inputs_keep_order_and_line_numbers_across_chunks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let series = 7;
    let per_series = 40_000;
    let mut input = String::new();
    let mut line = 0;
    let mut bad_lines = Vec::new();
    for t in 0..per_series {
        for s in 0..series {
            line += 1;
            if t % 10_000 == 5_000 && s == 3 {
                input.push_str(&format!("big{{s=\"{s}\"}} oops {t}\n"));
                bad_lines.push(line);
                continue;
            }
            input.push_str(&format!(
                "big{{s=\"{s}\",pad=\"{:040}\"}} {t} {}\n",
                0,
                1_700_000_000_000i64 + t * 1000
            ));
        }
    }
    assert!(input.len() > 8 << 20, "{} bytes", input.len());
    let file = write(dir.path(), "big.prom", input.as_bytes());
    let name = file.display().to_string();
    let data = dir.path().join("db");
    let out = cli(
        &data,
        &[
            "import",
            "--format",
            "prometheus",
            "--no-progress",
            "--threads",
            "3",
            &name,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for l in &bad_lines {
        assert_says(
            &stderr,
            &[&format!("{name}:{l}: value \"oops\" is not a number")],
        );
    }
    let total = series * per_series;
    assert_says(
        &stderr,
        &[&format!(
            "imported {} points of {series} series from {total} line(s)",
            total - bad_lines.len() as i64
        )],
    );
    let got = points(&data, "big");
    assert_eq!(got.len(), series as usize);
    for (labels, pts) in &got {
        let want = if labels.get("s") == Some("3") {
            per_series as usize - bad_lines.len()
        } else {
            per_series as usize
        };
        assert_eq!(pts.len(), want, "{labels}");
        assert!(
            pts.windows(2).all(|w| w[0].0 < w[1].0),
            "{labels}: in order"
        );
        assert!(
            pts.iter()
                .all(|&(t, v)| t == 1_700_000_000_000 + v as i64 * 1000)
        );
    }
}

#[test]
fn a_line_longer_than_the_limit_is_rejected_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = b"m v=1 1700000000000000000\n".to_vec();
    input.extend_from_slice(b"m,h=");
    input.extend(std::iter::repeat_n(b'x', 9 << 20));
    input.extend_from_slice(b" v=2 1700000001000000000\nm v=3 1700000002000000000\n");
    let file = write(dir.path(), "long.lp", &input);
    let name = file.display().to_string();
    let data = dir.path().join("db");
    let out = cli(&data, &["import", "--no-progress", &name]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            &format!("{name}:2: line longer than 8 MiB, skipped"),
            "imported 2 points of 1 series from 3 line(s)",
            "rejected lines: 1 line_too_long",
        ],
    );
    let got = points(&data, "m_v");
    assert_eq!(
        got[0].1,
        vec![(1_700_000_000_000, 1.0), (1_700_000_002_000, 3.0)]
    );
}

#[test]
fn csv_files_each_with_their_header_and_series() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = write(
        dir.path(),
        "a.csv",
        b"\n\ntimestamp,value\n1000,1\n2000,2\n",
    );
    let b = write(
        dir.path(),
        "b.csv.gz",
        &gzip(b"value,timestamp\n3,3000\nbad,4000\n"),
    );
    let data = dir.path().join("db");
    let out = cli(
        &data,
        &[
            "import",
            "--format",
            "csv",
            "--metric",
            "f",
            "--file-label",
            "--no-progress",
            a.to_str().expect("utf-8"),
            b.to_str().expect("utf-8"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            &format!("{}:3: value \"bad\" is not a number", b.display()),
            "imported 3 points of 2 series from 4 line(s) of 2 input(s)",
        ],
    );
    let got = points(&data, "f");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0.get("file"), Some("a"));
    assert_eq!(got[0].1, vec![(1000, 1.0), (2000, 2.0)]);
    assert_eq!(got[1].0.get("file"), Some("b"));
    assert_eq!(got[1].1, vec![(3000, 3.0)]);
    // A header without the columns is an error naming the file and what it found.
    let c = write(dir.path(), "c.csv", b"time,v\n1,2\n");
    let out = cli(
        &data,
        &[
            "import",
            "--format",
            "csv",
            "--metric",
            "f",
            "--no-progress",
            c.to_str().expect("utf-8"),
        ],
    );
    assert!(!out.status.success());
    assert_says(
        &text(&out.stderr),
        &[&format!(
            "{}:1: the CSV header has no \"timestamp\" column",
            c.display()
        )],
    );
}

#[test]
fn many_new_series_register_in_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input: String = (0..50_000)
        .map(|i| format!("fresh{{id=\"{i}\"}} {i} 1700000000000\n"))
        .collect();
    let data = dir.path().join("db");
    let out = cli_stdin(
        &data,
        &["import", "--format", "prometheus", "--no-progress"],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_says(
        &text(&out.stderr),
        &["imported 50000 points of 50000 series"],
    );
    let s = stats(&data);
    assert_eq!(s["series"], 50_000);
    // Again: the same series are known, the points rewritten.
    let out = cli_stdin(
        &data,
        &["import", "--format", "prometheus", "--no-progress"],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(stats(&data)["series"], 50_000);
}

/// Points the database refuses (older than the out-of-order window) are counted and named
/// by line, whole batch or not: more series refused than the batch retries take out one by
/// one.
#[test]
fn points_the_database_refuses_are_counted_by_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = String::new();
    let mut late_lines = Vec::new();
    let mut line = 0;
    for s in 0..25 {
        line += 1;
        input.push_str(&format!("w{{s=\"{s}\"}} 1 1700003600000\n"));
    }
    for s in 0..25 {
        line += 1;
        input.push_str(&format!("w{{s=\"{s}\"}} 2 1700000000000\n"));
        late_lines.push(line);
        line += 1;
        input.push_str(&format!("w{{s=\"{s}\"}} 3 1700003599000\n"));
    }
    let data = dir.path().join("db");
    let out = cli_stdin(
        &data,
        &[
            "import",
            "--format",
            "prometheus",
            "--no-progress",
            "--out-of-order-window",
            "1m",
        ],
        input.as_bytes(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_says(
        &stderr,
        &[
            "imported 50 points of 25 series from 75 line(s)",
            "0 line(s) and 25 point(s) rejected",
            "rejected points: 25 out_of_order",
            "(only the first 20 rejections were shown)",
        ],
    );
    // The first 20, in line order.
    let shown: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("rejected <stdin>:"))
        .collect();
    assert_eq!(shown.len(), 20, "{stderr}");
    for (l, want) in shown.iter().zip(&late_lines) {
        assert!(
            l.starts_with(&format!("rejected <stdin>:{want}: point at 1700000000000")),
            "{l}"
        );
        assert!(l.contains("older than the database accepts"), "{l}");
    }
    assert_eq!(stored_points(&data), 50);
}
