//! `gorilla-tsdb query`: matchers, range, step, function, grouping; table, JSON or CSV.
//!
//! Every kind of query prints alike: a table with labels in PromQL notation, times in RFC 3339
//! and values as Prometheus writes them; the Prometheus HTTP API's JSON, byte for byte what
//! `gorilla-tsdb serve` answers (both use `tsdb-render`); or CSV `labels,timestamp,value`.
//!
//! Both kinds of query (flags, PROMQL) run within memory limits (`--max-samples`,
//! `--max-series`, ...) and what is printed is bounded: at most `--max-output-series` series
//! (the rest is left out with a note, exit status 2) and `--max-output-bytes` bytes (printing
//! stops with an error).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use gorilla_tsdb::promql::{EngineOptions, LabelSet, Series, Value};
use gorilla_tsdb::query::{
    Aggregation, DEFAULT_LOOKBACK_MS, Grouping, QueryLimits, QueryResult, RangeFunction, RangeQuery,
};
use gorilla_tsdb::{Error, LabelMatcher, MatchOp};

use crate::time::{format_time, now_ms, parse_duration, parse_time};

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// A PromQL expression (Prometheus 2.42 semantics), e.g. `sum by (region) (rate(m[5m]))`.
    /// Evaluated at `--time` (instant query), or over `--start`..`--end` every `--step`
    /// (range query). Without it, the flags below describe the query.
    #[arg(value_name = "PROMQL")]
    promql: Option<String>,

    /// With PROMQL: evaluate an instant query at this time (same forms as --start).
    #[arg(long, requires = "promql")]
    time: Option<String>,

    /// Label matcher `name=value`, `name!=value`, `name=~regex` or `name!~regex`
    /// (repeatable; all must match). `__name__` is the metric name.
    #[arg(long = "match", short = 'm', value_name = "MATCHER")]
    matchers: Vec<String>,

    /// Shorthand for `--match __name__=<metric>`.
    #[arg(long)]
    metric: Option<String>,

    /// First step: `now-1h`, RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC), seconds since the epoch or `<n>ms`.
    #[arg(long, default_value = "now-1h")]
    start: String,

    /// Last step (same forms as --start).
    #[arg(long, default_value = "now")]
    end: String,

    /// Distance between steps, e.g. `60s`. Default: about 250 steps over the range.
    #[arg(long)]
    step: Option<String>,

    /// Range function applied per series over --window: avg, min, max, sum, count, last,
    /// stddev, stdvar, quantile(φ), rate, increase, delta, irate, changes, resets
    /// (`_over_time` suffixes accepted). The flags build a PromQL query (`--print-promql`
    /// shows it), evaluated like a PromQL text.
    #[arg(long, short = 'f')]
    function: Option<String>,

    /// Prints the PromQL query the flags build, and exits.
    #[arg(long)]
    print_promql: bool,

    /// Sliding window of the function, e.g. `5m`; without a function, how far back a step
    /// looks for the series' last point. Default: 5m.
    #[arg(long, short = 'w')]
    window: Option<String>,

    /// Aggregation across series: sum, avg, min, max, count, stddev, stdvar, quantile(φ),
    /// topk(k), bottomk(k).
    #[arg(long, short = 'a')]
    aggregate: Option<String>,

    /// Group the aggregation by these labels (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "without")]
    by: Vec<String>,

    /// Group the aggregation by every label except these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    without: Vec<String>,

    /// Output format: `table` (labels in PromQL notation, RFC 3339 times in UTC, values as
    /// Prometheus writes them), `json` (the Prometheus HTTP API's answer, as `serve` gives
    /// it), `csv` (`labels,timestamp,value` rows, RFC 3339 times).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,

    /// Refuse queries selecting more series than this; with PROMQL, holding more series at
    /// once (fetched, or in any intermediate result). Default: 1,000,000 for flag queries,
    /// 10,000,000 with PROMQL.
    #[arg(long)]
    max_series: Option<usize>,

    /// Refuse flag queries reading more points than this (counted from chunk headers, before
    /// anything is decoded).
    #[arg(long, default_value_t = QueryLimits::default().max_points)]
    max_points: u64,

    /// Most samples a query may hold in memory at once. With PROMQL: Prometheus's
    /// --query.max-samples (points fetched, which the database counts before decoding them,
    /// intermediate vectors and the result); for flag queries, the values of the result or of
    /// the aggregation's per-step state.
    #[arg(long, default_value_t = QueryLimits::default().max_samples)]
    max_samples: u64,

    /// With PROMQL: most bytes of label names and values a query may hold at once.
    #[arg(long, default_value_t = EngineOptions::default().max_label_bytes)]
    max_label_bytes: usize,

    /// With PROMQL: longest label value `label_replace`/`label_join` may make, in bytes (the
    /// longest value a series can be stored with).
    #[arg(long, default_value_t = EngineOptions::default().max_label_value_bytes)]
    max_label_value_bytes: usize,

    /// Print at most this many series (samples of an instant vector): the others are left
    /// out with a note on stderr, and the exit status is 2.
    #[arg(long, default_value_t = DEFAULT_MAX_OUTPUT_SERIES)]
    max_output_series: usize,

    /// Stop printing after this many bytes: the output is cut there, with an error (exit
    /// status 1).
    #[arg(long, default_value_t = DEFAULT_MAX_OUTPUT_BYTES)]
    max_output_bytes: u64,
}

/// Default of `--max-output-series`.
const DEFAULT_MAX_OUTPUT_SERIES: usize = 10_000;

/// Default of `--max-output-bytes`: 256 MiB.
const DEFAULT_MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;

/// The `what` of the error for `--max-output-bytes`.
const OUTPUT_BYTES: &str = "bytes of output (--max-output-bytes)";

/// A writer that takes at most `limit` bytes: a write that would go over fails, and
/// `wanted` tells (at least) how many bytes the whole output needed.
struct Bounded<W> {
    inner: W,
    written: u64,
    limit: u64,
    wanted: Option<u64>,
}

impl<W: Write> Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let after = self.written.saturating_add(buf.len() as u64);
        if after > self.limit {
            self.wanted = Some(after);
            return Err(std::io::Error::other("the output limit is reached"));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Prints to stdout through `body`, at most `limit` bytes: beyond that what fitted is
/// printed and the error is [`Error::LimitExceeded`].
fn print_bounded(
    limit: u64,
    body: impl FnOnce(&mut Bounded<BufWriter<std::io::StdoutLock<'static>>>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let mut out = Bounded {
        inner: BufWriter::new(std::io::stdout().lock()),
        written: 0,
        limit,
        wanted: None,
    };
    let written = body(&mut out).and_then(|()| out.flush());
    match (written, out.wanted) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(wanted)) => {
            // What fitted is printed; a cut line is ended so that the note stands apart.
            let _ = out.inner.write_all(b"\n").and_then(|()| out.inner.flush());
            eprintln!(
                "note: the output was cut after {} bytes; narrow the query or raise \
                 --max-output-bytes",
                out.written
            );
            Err(Error::LimitExceeded {
                what: OUTPUT_BYTES,
                requested: wanted,
                limit,
            })
        }
        (Err(e), None) => Err(Error::io("stdout", e)),
    }
}

/// Keeps the first `max` items; returns how many there were when some were dropped.
fn keep_first<T>(items: &mut Vec<T>, max: usize) -> Option<usize> {
    let total = items.len();
    (total > max).then(|| {
        items.truncate(max);
        total
    })
}

/// Tells on stderr what `--max-output-series` left out; the exit status to return.
fn output_status(truncated: Option<usize>, max: usize) -> ExitCode {
    match truncated {
        Some(total) => {
            eprintln!(
                "note: printed {max} of {total} series; the others were left out \
                 (raise --max-output-series to print them)"
            );
            ExitCode::from(2)
        }
        None => ExitCode::SUCCESS,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned columns `series time value`: a row per sample.
    Table,
    /// The Prometheus HTTP API's answer (`{"status":"success","data":{"resultType":...}}`).
    Json,
    /// CSV `labels,timestamp,value` rows.
    Csv,
}

/// `name=value`, `name!=value`, `name=~re`, `name!~re`.
pub(crate) fn parse_matcher(s: &str) -> Result<LabelMatcher, Error> {
    let ops = [
        ("!~", MatchOp::RegexNoMatch),
        ("=~", MatchOp::RegexMatch),
        ("!=", MatchOp::NotEqual),
        ("=", MatchOp::Equal),
    ];
    let (at, len, op) = ops
        .iter()
        .filter_map(|&(text, op)| s.find(text).map(|i| (i, text.len(), op)))
        .min_by_key(|&(i, len, _)| (i, std::cmp::Reverse(len)))
        .ok_or_else(|| {
            Error::invalid_input(format_args!(
                "matcher {s:?}: expected name=value, name!=value, name=~regex or name!~regex"
            ))
        })?;
    let name = s[..at].trim();
    let value = s[at + len..].trim().trim_matches('"');
    if name.is_empty() {
        return Err(Error::invalid_input(format_args!(
            "matcher {s:?} has no label name"
        )));
    }
    LabelMatcher::new(name, op, value)
}

fn build(args: &QueryArgs) -> Result<RangeQuery, Error> {
    let mut matchers = args
        .matchers
        .iter()
        .map(|m| parse_matcher(m))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(metric) = &args.metric {
        matchers.push(LabelMatcher::metric(metric));
    }
    if matchers.is_empty() {
        return Err(Error::invalid_input(
            "give at least one --match or --metric to select series",
        ));
    }
    let now = now_ms();
    let start = parse_time(&args.start, now)?;
    let end = parse_time(&args.end, now)?;
    let step = match &args.step {
        Some(s) => parse_duration(s)?,
        None => ((end.saturating_sub(start)) / 250).max(1_000),
    };
    let window = match &args.window {
        Some(w) => parse_duration(w)?,
        None => DEFAULT_LOOKBACK_MS,
    };
    let defaults = QueryLimits::default();
    let mut q = RangeQuery::new(matchers, start, end, step)
        .with_window(window)
        .with_limits(QueryLimits {
            max_series: args.max_series.unwrap_or(defaults.max_series),
            max_points: args.max_points,
            max_samples: args.max_samples,
            ..defaults
        });
    if let Some(f) = &args.function {
        q = q.with_function(f.parse::<RangeFunction>()?, window);
    }
    if let Some(a) = &args.aggregate {
        let grouping = if !args.by.is_empty() {
            Grouping::By(args.by.clone())
        } else if !args.without.is_empty() {
            Grouping::Without(args.without.clone())
        } else {
            Grouping::All
        };
        q = q.with_aggregation(a.parse::<Aggregation>()?, grouping);
    } else if !args.by.is_empty() || !args.without.is_empty() {
        return Err(Error::invalid_input(
            "--by/--without need an --aggregate function",
        ));
    }
    q.validate()?;
    Ok(q)
}

pub(crate) async fn run(data_dir: &Path, args: QueryArgs) -> Result<ExitCode, Error> {
    if let Some(text) = &args.promql {
        return run_promql(data_dir, text, &args).await;
    }
    let query = build(&args)?;
    if args.print_promql {
        println!("{}", query.to_promql());
        return Ok(ExitCode::SUCCESS);
    }
    let db = crate::open_read_only(data_dir).await?;
    let result = db.range_query(&query).await;
    let result = crate::finish(db, result).await?;
    if args.output == Output::Table {
        let s = &result.stats;
        eprintln!(
            "read {} points of {} series from {} chunks",
            s.points_read, s.series, s.chunks_read
        );
    }
    print_value(&args, matrix(result))
}

/// A flag query's result as the PromQL range query's answer it is.
fn matrix(result: QueryResult) -> Value {
    Value::Matrix(
        result
            .series
            .into_iter()
            .map(|s| Series {
                metric: LabelSet::from_pairs(s.labels),
                points: s.timestamps.into_iter().zip(s.values).collect(),
            })
            .collect(),
    )
}

/// Prints `value` as `--output` says, within `--max-output-series` and `--max-output-bytes`.
fn print_value(args: &QueryArgs, mut value: Value) -> Result<ExitCode, Error> {
    let truncated = match &mut value {
        Value::Vector(samples) => keep_first(samples, args.max_output_series),
        Value::Matrix(series) => keep_first(series, args.max_output_series),
        Value::Scalar { .. } | Value::String { .. } => None,
    };
    let empty = match &value {
        Value::Vector(samples) => samples.is_empty(),
        Value::Matrix(series) => series.is_empty(),
        Value::Scalar { .. } | Value::String { .. } => false,
    };
    print_bounded(args.max_output_bytes, |out| match args.output {
        Output::Table => write_table(out, &value),
        Output::Json => {
            out.write_all(tsdb_render::json::SUCCESS_START.as_bytes())?;
            tsdb_render::json::write_query_data(out, &value)?;
            out.write_all(b"}\n")
        }
        Output::Csv => write_csv(out, &value),
    })?;
    if empty && args.output == Output::Table {
        eprintln!("note: the query returned no data");
        let flags = [
            ("--time", args.time.as_deref()),
            ("--start", Some(args.start.as_str())),
            ("--end", Some(args.end.as_str())),
        ];
        for (flag, text) in flags {
            if let Some(hint) = text.and_then(|t| crate::time::milliseconds_hint(flag, t)) {
                eprintln!("{hint}");
            }
        }
    }
    Ok(output_status(truncated, args.max_output_series))
}

/// The PromQL engine's options from the flags.
fn engine_options(args: &QueryArgs) -> EngineOptions {
    let opts = EngineOptions::default()
        .with_max_samples(usize::try_from(args.max_samples).unwrap_or(usize::MAX))
        .with_max_label_bytes(args.max_label_bytes)
        .with_max_label_value_bytes(args.max_label_value_bytes);
    match args.max_series {
        Some(n) => opts.with_max_series(n),
        None => opts,
    }
}

/// What a PromQL query evaluates.
pub(crate) enum Evaluation {
    /// An instant query at this time (ms).
    Instant(i64),
    /// A range query: from, to, every (ms).
    Range { start: i64, end: i64, step: i64 },
}

/// The default step of a range: about 250 steps, at least a second.
pub(crate) fn default_step(start: i64, end: i64) -> i64 {
    (end.saturating_sub(start) / 250).max(1_000)
}

/// Evaluates PromQL `text` against the database of `data_dir` (opened for reading).
pub(crate) async fn evaluate(
    data_dir: &Path,
    text: &str,
    what: Evaluation,
    opts: EngineOptions,
) -> Result<Value, Error> {
    use gorilla_tsdb::promql::{Engine, parse};
    // Parse before opening the database, so that a typo costs nothing.
    parse(text, &opts)?;
    let db = std::sync::Arc::new(crate::open_read_only(data_dir).await?);
    let engine = Engine::new(db.clone(), opts);
    let result = match what {
        Evaluation::Instant(t) => engine.instant_query(text, t).await.map_err(Error::from),
        Evaluation::Range { start, end, step } => engine
            .range_query(text, start, end, step)
            .await
            .map(Value::Matrix)
            .map_err(Error::from),
    };
    drop(engine);
    let db = std::sync::Arc::into_inner(db)
        .ok_or_else(|| Error::invalid_input("the database is still in use after the query"))?;
    crate::finish(db, result).await
}

/// Evaluates a PromQL expression: an instant query with `--time`, else a range query.
async fn run_promql(data_dir: &Path, text: &str, args: &QueryArgs) -> Result<ExitCode, Error> {
    let opts = engine_options(args);
    gorilla_tsdb::promql::parse(text, &opts)?;
    let now = now_ms();
    let what = match &args.time {
        Some(t) => Evaluation::Instant(parse_time(t, now)?),
        None => {
            let start = parse_time(&args.start, now)?;
            let end = parse_time(&args.end, now)?;
            let step = match &args.step {
                Some(s) => parse_duration(s)?,
                None => default_step(start, end),
            };
            Evaluation::Range { start, end, step }
        }
    };
    let value = evaluate(data_dir, text, what, opts).await?;
    print_value(args, value)
}

/// The rows of a result: `(labels in PromQL notation, time, value text)`, a series' label
/// text made once.
fn for_each_row(
    value: &Value,
    mut row: impl FnMut(&str, i64, &str) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use tsdb_render::json::value_text;
    use tsdb_render::notation::label_set;
    match value {
        Value::Scalar { timestamp, value } => row("", *timestamp, &value_text(*value)),
        Value::String { timestamp, value } => row("", *timestamp, value),
        Value::Vector(samples) => samples
            .iter()
            .try_for_each(|s| row(&label_set(&s.metric), s.timestamp, &value_text(s.value))),
        Value::Matrix(series) => series.iter().try_for_each(|s| {
            let labels = label_set(&s.metric);
            s.points
                .iter()
                .try_for_each(|&(t, v)| row(&labels, t, &value_text(v)))
        }),
    }
}

/// Aligned columns `series  time  value` (`time  value` for a scalar or a string), a row
/// per sample; nothing for an empty result.
fn write_table(out: &mut impl Write, value: &Value) -> std::io::Result<()> {
    use tsdb_render::notation::label_set;
    let labelled = !matches!(value, Value::Scalar { .. } | Value::String { .. });
    let (mut w0, mut w1, mut rows) = (6, 4, 0usize);
    let mut widen = |t: i64| w1 = w1.max(format_time(t).len());
    match value {
        Value::Scalar { timestamp, .. } | Value::String { timestamp, .. } => widen(*timestamp),
        Value::Vector(samples) => {
            for s in samples {
                w0 = w0.max(label_set(&s.metric).chars().count());
                widen(s.timestamp);
            }
        }
        Value::Matrix(series) => {
            for s in series.iter().filter(|s| !s.points.is_empty()) {
                w0 = w0.max(label_set(&s.metric).chars().count());
                s.points.iter().for_each(|&(t, _)| widen(t));
            }
        }
    }
    for_each_row(value, |labels, t, v| {
        if rows == 0 {
            if labelled {
                write!(out, "{:<w0$}  ", "series")?;
            }
            writeln!(out, "{:<w1$}  value", "time")?;
        }
        rows += 1;
        if labelled {
            // Padded by characters, not bytes.
            let pad = w0.saturating_sub(labels.chars().count());
            write!(out, "{labels}{:pad$}  ", "")?;
        }
        writeln!(out, "{:<w1$}  {v}", format_time(t))
    })
}

/// CSV `labels,timestamp,value`: labels in PromQL notation (empty for a scalar or a
/// string), the time in RFC 3339 (UTC), the value as Prometheus writes it.
fn write_csv(out: &mut impl Write, value: &Value) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["labels", "timestamp", "value"])?;
    for_each_row(value, |labels, t, v| {
        w.write_record([labels, format_time(t).as_str(), v])?;
        Ok(())
    })?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_with_the_right_operator() {
        let m = parse_matcher("host=~a|b").expect("valid");
        assert_eq!(
            (m.name(), m.op(), m.value()),
            ("host", MatchOp::RegexMatch, "a|b")
        );
        let m = parse_matcher("env!=\"prod\"").expect("valid");
        assert_eq!(
            (m.name(), m.op(), m.value()),
            ("env", MatchOp::NotEqual, "prod")
        );
        let m = parse_matcher("x!~y=z").expect("valid");
        assert_eq!(
            (m.name(), m.op(), m.value()),
            ("x", MatchOp::RegexNoMatch, "y=z")
        );
        assert!(parse_matcher("novalue").is_err());
        assert!(parse_matcher("=x").is_err());
    }
}
