//! Differential check against Prometheus (driven by `scripts/differential.sh`).
//!
//! * `promql-differential gen`: prints the test data as OpenMetrics text.
//! * `promql-differential times`: prints the evaluation times (seconds), one a line.
//! * `promql-differential range`: prints the range query's start, end and step (seconds).
//! * `promql-differential compare <corpus> <answers.jsonl> <ranges.jsonl>`: evaluates every
//!   query of the corpus at every time, and as one range query, with this engine and compares
//!   with Prometheus's answers (one JSON reply of `/api/v1/query` a line, queries outer, times
//!   inner; one reply of `/api/v1/query_range` a line per query); prints each mismatch and a
//!   `N passed, N failed` line.

use std::collections::BTreeMap;

use tsdb_core::Labels;
use tsdb_promql::testscript::almost_equal;
use tsdb_promql::{Engine, EngineOptions, LabelSet, MemorySource, Value};

const BASE: i64 = 1_600_000_000;
const STEP: i64 = 15;
const POINTS: i64 = 480;
const TIMES: [i64; 4] = [BASE + 1800, BASE + 3667, BASE + 5400, BASE + 7185];
/// The range query of each corpus query: start, end and step in seconds.
const RANGE: (i64, i64, i64) = (BASE + 3000, BASE + 4800, 60);

/// Deterministic pseudo-random numbers (a 64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Every series: name, labels and `(seconds, value)` points.
/// One generated series: metric name, labels, `(seconds, value)` points.
type GenSeries = (String, Vec<(String, String)>, Vec<(i64, f64)>);

fn dataset() -> Vec<GenSeries> {
    let mut rng = Lcg(42);
    let mut out = Vec::new();
    for job in ["api", "db"] {
        for instance in ["0", "1", "2"] {
            let mut v = 0.0;
            let mut pts = Vec::new();
            for i in 0..POINTS {
                if job == "db" && instance == "1" && i == 200 {
                    v = 0.0; // a counter reset
                }
                v += (rng.next() * 20.0).floor();
                // A gap of ten minutes in one series.
                if job == "api" && instance == "2" && (300..340).contains(&i) {
                    continue;
                }
                pts.push((BASE + i * STEP, v));
            }
            out.push((
                "http_requests_total".to_owned(),
                vec![
                    ("instance".into(), instance.into()),
                    ("job".into(), job.into()),
                ],
                pts,
            ));
        }
    }
    for room in ["a", "b", "c", "d"] {
        let mut pts = Vec::new();
        let mut v = 20.0;
        for i in 0..POINTS {
            v += ((rng.next() - 0.5) * 200.0).round() / 100.0;
            pts.push((BASE + i * STEP, (v * 100.0f64).round() / 100.0));
        }
        out.push((
            "temperature_celsius".to_owned(),
            vec![("room".into(), room.into())],
            pts,
        ));
    }
    for job in ["api", "db"] {
        let bounds = ["0.05", "0.1", "0.5", "1", "+Inf"];
        let mut counts = [0.0f64; 5];
        let mut series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 5];
        for i in 0..POINTS {
            let n = (rng.next() * 10.0).floor();
            for _ in 0..(n as usize) {
                let x = rng.next() * 1.2;
                for (b, bound) in bounds.iter().enumerate() {
                    let le: f64 = if *bound == "+Inf" {
                        f64::INFINITY
                    } else {
                        bound.parse().unwrap_or(0.0)
                    };
                    if x <= le {
                        counts[b] += 1.0;
                    }
                }
            }
            for b in 0..5 {
                series[b].push((BASE + i * STEP, counts[b]));
            }
        }
        for (b, pts) in series.into_iter().enumerate() {
            out.push((
                "latency_seconds_bucket".to_owned(),
                vec![("job".into(), job.into()), ("le".into(), bounds[b].into())],
                pts,
            ));
        }
    }
    out
}

fn generate() {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, labels, pts) in dataset() {
        let ls: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let lines = by_name.entry(name.clone()).or_default();
        for (t, v) in pts {
            lines.push(format!("{name}{{{}}} {v} {t}", ls.join(",")));
        }
    }
    for (name, lines) in by_name {
        println!("# TYPE {name} gauge");
        for l in lines {
            println!("{l}");
        }
    }
    println!("# EOF");
}

/// Prometheus's answer reduced to comparable form.
fn prom_answer(line: &str) -> Answer {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
    if v["status"] != "success" {
        return Err(format!("error: {}", v["error"]));
    }
    let data = &v["data"];
    let num = |s: &serde_json::Value| -> f64 {
        match s.as_str() {
            Some("+Inf") => f64::INFINITY,
            Some("-Inf") => f64::NEG_INFINITY,
            Some(x) => x.parse().unwrap_or(f64::NAN),
            None => f64::NAN,
        }
    };
    match data["resultType"].as_str() {
        Some("scalar") => Ok(vec![(LabelSet::default(), num(&data["result"][1]))]),
        Some("vector") => Ok(data["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let labels = s["metric"]
                            .as_object()
                            .map(|o| {
                                LabelSet::from_pairs(o.iter().map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_owned())
                                }))
                            })
                            .unwrap_or_default();
                        (labels, num(&s["value"][1]))
                    })
                    .collect()
            })
            .unwrap_or_default()),
        Some("matrix") => {
            let mut out = Vec::new();
            for s in data["result"].as_array().into_iter().flatten() {
                let labels =
                    s["metric"]
                        .as_object()
                        .map(|o| {
                            LabelSet::from_pairs(o.iter().map(|(k, v)| {
                                (k.clone(), v.as_str().unwrap_or_default().to_owned())
                            }))
                        })
                        .unwrap_or_default();
                for p in s["values"].as_array().into_iter().flatten() {
                    let mut l = labels.clone();
                    l.set("__t", &p[0].to_string());
                    out.push((l, num(&p[1])));
                }
            }
            Ok(out)
        }
        other => Err(format!("result type {other:?}")),
    }
}

/// Our range-query answer in the flattened form of [`prom_answer`] (time as label `__t`).
fn ours_range(v: tsdb_promql::Result<Vec<tsdb_promql::Series>>) -> Answer {
    match v {
        Err(e) => Err(format!("error: {e}")),
        Ok(series) => Ok(series
            .into_iter()
            .flat_map(|s| {
                s.points.into_iter().map(move |(t, v)| {
                    let mut l = s.metric.clone();
                    l.set("__t", &format!("{}", t / 1000));
                    (l, v)
                })
            })
            .collect()),
    }
}

fn ours(v: tsdb_promql::Result<Value>) -> Answer {
    match v {
        Err(e) => Err(format!("error: {e}")),
        Ok(Value::Scalar { value, .. }) => Ok(vec![(LabelSet::default(), value)]),
        Ok(Value::Vector(s)) => Ok(s.into_iter().map(|s| (s.metric, s.value)).collect()),
        Ok(other) => Err(format!("result type {other:?}")),
    }
}

fn same(
    a: &Result<Vec<(LabelSet, f64)>, String>,
    b: &Result<Vec<(LabelSet, f64)>, String>,
) -> bool {
    match (a, b) {
        (Err(_), Err(_)) => true,
        (Ok(a), Ok(b)) => {
            let mut a = a.clone();
            let mut b = b.clone();
            a.sort_by(|x, y| x.0.cmp(&y.0));
            b.sort_by(|x, y| x.0.cmp(&y.0));
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|(x, y)| x.0 == y.0 && almost_equal(x.1, y.1))
        }
        _ => false,
    }
}

/// A comparable answer: `(labels, value)` pairs, or the error text.
type Answer = Result<Vec<(LabelSet, f64)>, String>;

/// Counts of the comparisons made so far.
#[derive(Default)]
struct Tally {
    pass: usize,
    fail: usize,
    nonempty: usize,
}

impl Tally {
    /// Compares one answer of Prometheus with ours and prints a mismatch, naming `what`.
    fn add(&mut self, theirs: &Answer, mine: &Answer, what: &str) {
        if theirs.as_ref().is_ok_and(|v| !v.is_empty()) {
            self.nonempty += 1;
        }
        if same(theirs, mine) {
            self.pass += 1;
        } else {
            self.fail += 1;
            println!("MISMATCH {what}\n  prometheus: {theirs:?}\n  ours:       {mine:?}");
        }
    }
}

fn compare(
    corpus: &str,
    answers: &str,
    ranges: &str,
) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    let source = MemorySource::new();
    for (name, labels, pts) in dataset() {
        let pts: Vec<(i64, f64)> = pts.into_iter().map(|(t, v)| (t * 1000, v)).collect();
        source.add(Labels::new(&name, labels)?, &pts)?;
    }
    let engine = Engine::new(source, EngineOptions::default());
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let corpus = std::fs::read_to_string(corpus)?;
    let answers = std::fs::read_to_string(answers)?;
    let mut answers = answers.lines();
    let ranges = std::fs::read_to_string(ranges)?;
    let mut ranges = ranges.lines();
    let mut tally = Tally::default();
    for q in corpus
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        for t in TIMES {
            let theirs = prom_answer(answers.next().ok_or("fewer answers than queries")?);
            let mine = ours(rt.block_on(engine.instant_query(q, t * 1000)));
            tally.add(&theirs, &mine, &format!("at {t}: {q}"));
        }
        let theirs = prom_answer(ranges.next().ok_or("fewer range answers than queries")?);
        let (s, e, step) = RANGE;
        let mine = ours_range(rt.block_on(engine.range_query(q, s * 1000, e * 1000, step * 1000)));
        tally.add(&theirs, &mine, &format!("in range query: {q}"));
    }
    let Tally {
        pass,
        fail,
        nonempty,
    } = tally;
    println!("{nonempty} of the comparisons had a non-empty answer from Prometheus");
    Ok((pass, fail))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") => generate(),
        Some("times") => {
            for t in TIMES {
                println!("{t}");
            }
        }
        Some("range") => println!("{} {} {}", RANGE.0, RANGE.1, RANGE.2),
        Some("compare") if args.len() == 4 => match compare(&args[1], &args[2], &args[3]) {
            Ok((pass, fail)) => {
                println!("{pass} passed, {fail} failed");
                if fail > 0 {
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("compare: {e}");
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!(
                "usage: promql-differential gen | times | range | compare <corpus> <answers.jsonl> <ranges.jsonl>"
            );
            std::process::exit(2);
        }
    }
}
