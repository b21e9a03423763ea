//! A runner for Prometheus's PromQL test-script format.
//!
//! Supported commands: `load <interval>` followed by indented series lines (`metric{l="v"}
//! 0+10x100 _ stale 5 _x3 1x4`; as in Prometheus's grammar `1x4` and `0+10x4` are five values,
//! `_x3` three missing ones), `clear`, and `eval instant at <time> <expr>`,
//! `eval_ordered instant at ...`, `eval_fail instant at ...` followed by the expected samples
//! (`{l="v"} 3`, or a bare number for a scalar result). Floats are compared with Prometheus's
//! relative tolerance of 1e-6; `NaN` equals `NaN`.

use std::fmt;
use std::sync::Arc;

use tsdb_core::Labels;

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::Expr;

use crate::engine::{Engine, EngineOptions};
use crate::labels::LabelSet;
use crate::source::{MemorySource, STALE_NAN_BITS};
use crate::value::{Value, format_float};

/// The outcome of running one script.
#[derive(Debug, Default, Clone)]
pub struct ScriptReport {
    /// Cases (eval commands) that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// For each failed case: its line number and the first mismatch.
    pub failures: Vec<(usize, String)>,
}

impl fmt::Display for ScriptReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)?;
        for (line, why) in &self.failures {
            write!(f, "\n  line {line}: {why}")?;
        }
        Ok(())
    }
}

/// Whether two floats are equal within Prometheus's test tolerance.
pub fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 1e-6;
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < MIN_NORMAL {
        return diff < EPSILON * MIN_NORMAL;
    }
    diff / (a.abs() + b.abs()) < EPSILON
}

/// Parses a sample value: a number, `Inf`, `-Inf`, `NaN` or `stale`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "stale" => Some(f64::from_bits(STALE_NAN_BITS)),
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => {
            if let Some(hex) = s.strip_prefix("0x") {
                return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
            }
            s.parse().ok()
        }
    }
}

/// Expands one item of series notation into values (`None` for `_`, a missing sample).
pub fn expand_item(item: &str) -> Result<Vec<Option<f64>>, String> {
    let bad = || format!("bad series value {item:?}");
    let Some(xpos) = item
        .rfind('x')
        .filter(|&p| item[p + 1..].chars().all(|c| c.is_ascii_digit()) && p + 1 < item.len())
    else {
        if item == "_" {
            return Ok(vec![None]);
        }
        return parse_value(item).map(|v| vec![Some(v)]).ok_or_else(bad);
    };
    let times: usize = item[xpos + 1..].parse().map_err(|_| bad())?;
    if times > 1_000_000 {
        return Err(format!("series value {item:?} repeats too often"));
    }
    let head = &item[..xpos];
    if head == "_" {
        return Ok(vec![None; times]);
    }
    // Split `base(+|-)increment`: the last sign that is not at the start or after an exponent.
    let bytes = head.as_bytes();
    let split = (1..bytes.len())
        .rev()
        .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
    // As in Prometheus's series grammar, `vxN` and `a+bxN` both give N+1 values (the first
    // and N more); only `_xN` gives exactly N.
    match split {
        None => {
            let v = parse_value(head).ok_or_else(bad)?;
            Ok(vec![Some(v); times + 1])
        }
        Some(i) => {
            let base = parse_value(&head[..i]).ok_or_else(bad)?;
            let inc = parse_value(&head[i..]).ok_or_else(bad)?;
            let mut out = Vec::with_capacity(times + 1);
            let mut v = base;
            out.push(Some(v));
            for _ in 0..times {
                v += inc;
                out.push(Some(v));
            }
            Ok(out)
        }
    }
}

/// Parses a series of the test format, `name{a="b", ...}`, `{a="b", ...}`, `{}` or `name`,
/// with the PromQL parser (Prometheus reads these with its PromQL grammar too): a selector
/// whose matchers are all `=`.
pub fn parse_labels(s: &str) -> Result<LabelSet, String> {
    let s = s.trim();
    let mut set = LabelSet::default();
    // The one label set that is not also a selector (a selector needs a matcher).
    if s.strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .is_some_and(|r| r.trim().is_empty())
    {
        return Ok(set);
    }
    let query = crate::engine::parse(s, &EngineOptions::default())
        .map_err(|e| format!("bad series {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = query.expr() else {
        return Err(format!(
            "bad series {s:?}: not name{{label=\"value\", ...}}"
        ));
    };
    if vs.offset.is_some() || vs.at.is_some() || !vs.matchers.or_matchers.is_empty() {
        return Err(format!(
            "bad series {s:?}: not name{{label=\"value\", ...}}"
        ));
    }
    if let Some(name) = &vs.name {
        set.set("__name__", name);
    }
    for m in &vs.matchers.matchers {
        if !matches!(m.op, PMatchOp::Equal) {
            return Err(format!(
                "bad series {s:?}: label {:?} must be given with =",
                m.name
            ));
        }
        set.set(&m.name, &m.value);
    }
    Ok(set)
}

/// Splits `desc values...` where `desc` may contain spaces inside braces.
fn split_series_line(line: &str) -> (&str, &str) {
    let line = line.trim();
    if let Some(close) = line.find('}').filter(|_| line.contains('{')) {
        // Find the matching closing brace outside quotes.
        let mut quote = None;
        let mut escaped = false;
        for (i, c) in line.char_indices() {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '"' | '\'' | '`' => quote = Some(c),
                '}' => return (&line[..=i], line[i + 1..].trim()),
                _ => {}
            }
        }
        return (&line[..=close], line[close + 1..].trim());
    }
    match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    }
}

struct Case {
    line: usize,
    kind: Kind,
    time_ms: i64,
    expr: String,
    expected: Vec<(Option<LabelSet>, f64)>,
}

#[derive(PartialEq)]
enum Kind {
    Eval,
    Ordered,
    Fail,
}

/// Runs the script `text`; `opts` configures the engine.
pub fn run_script(text: &str, opts: &EngineOptions) -> ScriptReport {
    let mut report = ScriptReport::default();
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(r) => r,
        Err(e) => {
            report.failed += 1;
            report.failures.push((0, format!("no runtime: {e}")));
            return report;
        }
    };
    let source = Arc::new(MemorySource::new());
    let engine = Engine::new(Arc::clone(&source), opts.clone());
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let fail = |report: &mut ScriptReport, line: usize, why: String| {
        report.failed += 1;
        report.failures.push((line, why));
    };
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lineno = i;
        if line == "clear" {
            source.clear();
            continue;
        }
        if let Some(rest) = line.strip_prefix("load ") {
            let Some(interval) = crate::notation::parse_duration_ms(rest).ok() else {
                fail(&mut report, lineno, format!("bad load interval {rest:?}"));
                continue;
            };
            while i < lines.len() && !lines[i].trim().is_empty() {
                let l = lines[i].trim();
                i += 1;
                if l.starts_with('#') {
                    continue;
                }
                if let Err(why) = load_line(&source, l, interval) {
                    fail(&mut report, i, why);
                }
            }
            continue;
        }
        let (kind, rest) = if let Some(r) = line.strip_prefix("eval_fail ") {
            (Kind::Fail, r)
        } else if let Some(r) = line.strip_prefix("eval_ordered ") {
            (Kind::Ordered, r)
        } else if let Some(r) = line.strip_prefix("eval ") {
            (Kind::Eval, r)
        } else {
            fail(&mut report, lineno, format!("unknown command {line:?}"));
            continue;
        };
        let mut expected = Vec::new();
        let mut bad_expect = None;
        while i < lines.len() && !lines[i].trim().is_empty() && !is_command(lines[i]) {
            let l = lines[i].trim();
            i += 1;
            if l.starts_with('#') {
                continue;
            }
            match parse_expected(l) {
                Ok(e) => expected.push(e),
                Err(why) => bad_expect = Some(why),
            }
        }
        let Some(rest) = rest.trim().strip_prefix("instant at ") else {
            fail(
                &mut report,
                lineno,
                format!("only `instant at` evaluations are supported: {line:?}"),
            );
            continue;
        };
        let rest = rest.trim();
        let (time, expr) = match rest.find(char::is_whitespace) {
            Some(p) => (&rest[..p], rest[p..].trim()),
            None => (rest, ""),
        };
        let Some(time_ms) = crate::notation::parse_duration_ms(time).ok() else {
            fail(&mut report, lineno, format!("bad evaluation time {time:?}"));
            continue;
        };
        if let Some(why) = bad_expect {
            fail(&mut report, lineno, why);
            continue;
        }
        let case = Case {
            line: lineno,
            kind,
            time_ms,
            expr: expr.to_owned(),
            expected,
        };
        // Every case twice: evaluated by the engine over the selected samples, and with the
        // source evaluating range functions and instant selectors itself (a database's path).
        let mut outcome = Ok(());
        for rollups in [false, true] {
            if outcome.is_err() {
                break;
            }
            source.set_rollups(rollups);
            let mode = if rollups { " (source rollups)" } else { "" };
            let result = runtime.block_on(engine.instant_query(&case.expr, case.time_ms));
            outcome = check(&case, result).map_err(|why| format!("{why}{mode}"));
            // As Prometheus's runner does: the same query in range mode (one minute either
            // side, one-minute step) must give the same answer at the evaluation time.
            if outcome.is_ok() && case.kind == Kind::Eval {
                let range = runtime.block_on(engine.range_query(
                    &case.expr,
                    case.time_ms - 60_000,
                    case.time_ms + 60_000,
                    60_000,
                ));
                outcome =
                    check_range(&case, range).map_err(|why| format!("in range mode{mode}: {why}"));
            }
        }
        source.set_rollups(false);
        match outcome {
            Ok(()) => report.passed += 1,
            Err(why) => fail(&mut report, case.line, format!("{}: {why}", case.expr)),
        }
    }
    report
}

/// True for a line that starts a new command (ends the block above it).
fn is_command(line: &str) -> bool {
    let l = line.trim();
    l == "clear"
        || ["load ", "eval ", "eval_fail ", "eval_ordered "]
            .iter()
            .any(|p| l.starts_with(p))
}

fn load_line(source: &MemorySource, line: &str, interval: i64) -> Result<(), String> {
    let (desc, values) = split_series_line(line);
    let set = parse_labels(desc)?;
    let metric = set.metric().unwrap_or_default().to_owned();
    let labels = Labels::new(&metric, set.iter().filter(|(k, _)| *k != "__name__"))
        .map_err(|e| format!("bad series {desc:?}: {e}"))?;
    let mut points = Vec::new();
    let mut idx: i64 = 0;
    for item in values.split_whitespace() {
        for v in expand_item(item)? {
            if let Some(v) = v {
                points.push((idx.saturating_mul(interval), v));
            }
            idx += 1;
        }
    }
    source.add(labels, &points).map_err(|e| e.to_string())
}

fn parse_expected(line: &str) -> Result<(Option<LabelSet>, f64), String> {
    let line = line.trim();
    if let Some(v) = parse_value(line) {
        return Ok((None, v));
    }
    let (desc, value) = split_series_line(line);
    let labels = parse_labels(desc)?;
    let v = parse_value(value.trim()).ok_or_else(|| format!("bad expected value in {line:?}"))?;
    Ok((Some(labels), v))
}

/// Checks the range-mode answer at the evaluation time against the expectations.
fn check_range(case: &Case, result: crate::Result<Vec<crate::Series>>) -> Result<(), String> {
    let series = result.map_err(|e| format!("unexpected error: {e}"))?;
    let samples: Vec<crate::Sample> = series
        .into_iter()
        .filter_map(|s| {
            s.points
                .iter()
                .find(|p| p.0 == case.time_ms)
                .map(|p| crate::Sample {
                    metric: s.metric.clone(),
                    timestamp: p.0,
                    value: p.1,
                })
        })
        .collect();
    let value = if case.expected.iter().any(|e| e.0.is_none()) {
        match samples.first() {
            Some(s) => Value::Scalar {
                timestamp: case.time_ms,
                value: s.value,
            },
            None => return Err("no scalar at the evaluation time".into()),
        }
    } else {
        Value::Vector(samples)
    };
    check(case, Ok(value))
}

fn check(case: &Case, result: crate::Result<Value>) -> Result<(), String> {
    if case.kind == Kind::Fail {
        return match result {
            Err(_) => Ok(()),
            Ok(v) => Err(format!("expected an error, got {v}")),
        };
    }
    let value = result.map_err(|e| format!("unexpected error: {e}"))?;
    match value {
        Value::Scalar { value, .. } => match case.expected.as_slice() {
            [(None, want)] if almost_equal(*want, value) => Ok(()),
            [(None, want)] => Err(format!(
                "expected scalar {} got {}",
                format_float(*want),
                format_float(value)
            )),
            _ => Err(format!(
                "expected a vector, got scalar {}",
                format_float(value)
            )),
        },
        Value::String { value, .. } => Err(format!("string result {value:?} cannot be compared")),
        Value::Matrix(_) => Err("received range result on instant evaluation".into()),
        Value::Vector(samples) => {
            if case.expected.iter().any(|e| e.0.is_none()) {
                return Err(format!(
                    "expected a scalar, got a vector of {} samples",
                    samples.len()
                ));
            }
            for (pos, s) in samples.iter().enumerate() {
                let found = case
                    .expected
                    .iter()
                    .position(|e| e.0.as_ref() == Some(&s.metric));
                let Some(j) = found else {
                    return Err(format!("unexpected metric {} in result", s.metric));
                };
                if case.kind == Kind::Ordered && j != pos {
                    return Err(format!(
                        "expected metric {} with value {} at position {} but was at {}",
                        s.metric,
                        format_float(case.expected[j].1),
                        j,
                        pos
                    ));
                }
                if !almost_equal(case.expected[j].1, s.value) {
                    return Err(format!(
                        "expected {} for {} but got {}",
                        format_float(case.expected[j].1),
                        s.metric,
                        format_float(s.value)
                    ));
                }
            }
            if samples.len() != case.expected.len() {
                return Err(format!(
                    "expected {} samples, got {}: {}",
                    case.expected.len(),
                    samples.len(),
                    Value::Vector(samples)
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_notation_expands_like_prometheus() {
        assert_eq!(
            expand_item("1+2x3").expect("valid"),
            vec![Some(1.0), Some(3.0), Some(5.0), Some(7.0)]
        );
        assert_eq!(
            expand_item("5-1x2").expect("valid"),
            vec![Some(5.0), Some(4.0), Some(3.0)]
        );
        assert_eq!(
            expand_item("-1+1x1").expect("valid"),
            vec![Some(-1.0), Some(0.0)]
        );
        assert_eq!(expand_item("_x2").expect("valid"), vec![None, None]);
        assert_eq!(
            expand_item("7x2").expect("valid"),
            vec![Some(7.0), Some(7.0), Some(7.0)]
        );
        // `0x10` is zero repeated (11 values), not a hexadecimal number.
        assert_eq!(expand_item("0x10").expect("valid"), vec![Some(0.0); 11]);
        assert_eq!(expand_item("1e+3").expect("valid"), vec![Some(1000.0)]);
        assert!(expand_item("stale").expect("valid")[0].is_some_and(crate::is_stale));
        assert!(expand_item("abc").is_err());
    }

    #[test]
    fn labels_parse_with_and_without_name() {
        let l = parse_labels(r#"m{a="x", b="y\"z"}"#).expect("valid");
        assert_eq!(l.get("__name__"), Some("m"));
        assert_eq!(l.get("b"), Some("y\"z"));
        assert_eq!(parse_labels("{}").expect("valid").len(), 0);
        assert_eq!(parse_labels("{ }").expect("valid").len(), 0);
        assert_eq!(parse_labels("m").expect("valid").get("__name__"), Some("m"));
        let l = parse_labels(r#"{__name__="m", a='q', b=`r\n`}"#).expect("valid");
        assert_eq!(
            (l.get("__name__"), l.get("a"), l.get("b")),
            (Some("m"), Some("q"), Some("r\\n"))
        );
        assert!(parse_labels(r#"m{a="x""#).is_err());
        assert!(parse_labels(r#"m{a=~"x"}"#).is_err());
        assert!(parse_labels(r#"m{a="x"} offset 5m"#).is_err());
        assert!(parse_labels("sum(m)").is_err());
    }

    #[test]
    fn tolerance_is_relative() {
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.001));
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(!almost_equal(0.0, 1e-300));
    }

    #[test]
    fn a_wrong_expectation_fails_with_the_mismatch() {
        let r = run_script(
            "load 1m\n  m 1 2 3\n\neval instant at 2m m\n  m 4\n",
            &EngineOptions::default(),
        );
        assert_eq!((r.passed, r.failed), (0, 1));
        assert!(r.failures[0].1.contains("expected 4"), "{r}");
    }
}
