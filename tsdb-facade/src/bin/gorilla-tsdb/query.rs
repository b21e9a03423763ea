//! `gorilla-tsdb query`: matchers, range, step, function, grouping; table, JSON or CSV.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use gorilla_tsdb::query::{
    Aggregation, DEFAULT_LOOKBACK_MS, Grouping, QueryLimits, QueryResult, RangeFunction, RangeQuery,
};
use gorilla_tsdb::{Error, LabelMatcher, MatchOp, WalDurability};

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

    /// First step: `now-1h`, RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or ms since the epoch.
    #[arg(long, default_value = "now-1h")]
    start: String,

    /// Last step (same forms as --start).
    #[arg(long, default_value = "now")]
    end: String,

    /// Distance between steps, e.g. `60s`. Default: about 250 steps over the range.
    #[arg(long)]
    step: Option<String>,

    /// Range function applied per series over --window: avg, min, max, sum, count, first,
    /// last, stddev, stdvar, quantile(φ), rate, increase, delta, irate, changes, resets
    /// (`_over_time` suffixes accepted).
    #[arg(long, short = 'f')]
    function: Option<String>,

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

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,

    /// Refuse queries selecting more series than this.
    #[arg(long, default_value_t = QueryLimits::default().max_series)]
    max_series: usize,

    /// Refuse queries reading more points than this.
    #[arg(long, default_value_t = QueryLimits::default().max_points)]
    max_points: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// One row per series and step, aligned.
    Table,
    /// A JSON document: steps, series with labels and values, stats.
    Json,
    /// CSV `timestamp,value,<labels...>` rows.
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
    let mut q = RangeQuery::new(matchers, start, end, step)
        .with_window(window)
        .with_limits(QueryLimits {
            max_series: args.max_series,
            max_points: args.max_points,
            ..QueryLimits::default()
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
    let db = crate::open(data_dir, WalDurability::Never).await?;
    let result = db.range_query(&query).await;
    let result = crate::finish(db, result).await?;
    let mut out = std::io::stdout().lock();
    let written = match args.output {
        Output::Table => write_table(&mut out, &result),
        Output::Json => write_json(&mut out, &result),
        Output::Csv => write_csv(&mut out, &result),
    };
    written.map_err(|e| Error::io("stdout", e))?;
    Ok(ExitCode::SUCCESS)
}

/// Evaluates a PromQL expression: an instant query with `--time`, else a range query.
async fn run_promql(data_dir: &Path, text: &str, args: &QueryArgs) -> Result<ExitCode, Error> {
    use gorilla_tsdb::promql::{Engine, EngineOptions, Value, parse};
    let opts = EngineOptions::default();
    // Parse before opening the database, so that a typo costs nothing.
    parse(text, &opts)?;
    let now = now_ms();
    let db = std::sync::Arc::new(crate::open(data_dir, WalDurability::Never).await?);
    let engine = Engine::new(db.clone(), opts);
    let result = match &args.time {
        Some(t) => match parse_time(t, now) {
            Ok(t) => engine.instant_query(text, t).await.map_err(Error::from),
            Err(e) => Err(e),
        },
        None => match (parse_time(&args.start, now), parse_time(&args.end, now)) {
            (Ok(start), Ok(end)) => {
                let step = match &args.step {
                    Some(s) => parse_duration(s),
                    None => Ok((end.saturating_sub(start) / 250).max(1_000)),
                };
                match step {
                    Ok(step) => engine
                        .range_query(text, start, end, step)
                        .await
                        .map(Value::Matrix)
                        .map_err(Error::from),
                    Err(e) => Err(e),
                }
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
    };
    drop(engine);
    let db = std::sync::Arc::into_inner(db)
        .ok_or_else(|| Error::invalid_input("the database is still in use after the query"))?;
    let value = crate::finish(db, result).await?;
    let mut out = std::io::stdout().lock();
    let written = match args.output {
        Output::Table => writeln!(out, "{value}"),
        Output::Json => serde_json::to_writer_pretty(&mut out, &value)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        Output::Csv => write_promql_csv(&mut out, &value),
    };
    written.map_err(|e| Error::io("stdout", e))?;
    Ok(ExitCode::SUCCESS)
}

/// One output row: labels, timestamp, value.
type PromqlRow = (Vec<(String, String)>, i64, f64);

/// CSV `timestamp,value,<labels...>` rows of a PromQL result.
fn write_promql_csv(
    out: &mut impl Write,
    value: &gorilla_tsdb::promql::Value,
) -> std::io::Result<()> {
    use gorilla_tsdb::promql::{Value, format_float};
    let rows: Vec<PromqlRow> = match value {
        Value::Scalar { timestamp, value } => vec![(Vec::new(), *timestamp, *value)],
        Value::String { .. } => Vec::new(),
        Value::Vector(samples) => samples
            .iter()
            .map(|s| (owned(s.metric.iter()), s.timestamp, s.value))
            .collect(),
        Value::Matrix(series) => series
            .iter()
            .flat_map(|s| {
                let labels = owned(s.metric.iter());
                s.points.iter().map(move |&(t, v)| (labels.clone(), t, v))
            })
            .collect(),
    };
    let mut names: Vec<String> = rows
        .iter()
        .flat_map(|r| r.0.iter().map(|l| l.0.clone()))
        .collect();
    names.sort();
    names.dedup();
    let mut w = csv::Writer::from_writer(out);
    let mut header = vec!["timestamp".to_owned(), "value".to_owned()];
    header.extend(names.iter().cloned());
    w.write_record(&header)?;
    for (labels, t, v) in rows {
        let mut row = vec![t.to_string(), format_float(v)];
        row.extend(names.iter().map(|n| {
            labels
                .iter()
                .find(|l| &l.0 == n)
                .map(|l| l.1.clone())
                .unwrap_or_default()
        }));
        w.write_record(&row)?;
    }
    w.flush()
}

fn owned<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    labels.map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn labels_text(labels: &gorilla_tsdb::query::ResultLabels) -> String {
    let inner: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    let name = labels.get("__name__").map_or("", String::as_str);
    format!("{name}{{{}}}", inner.join(", "))
}

fn write_table(out: &mut impl Write, r: &QueryResult) -> std::io::Result<()> {
    let rows: Vec<(String, String, String)> = r
        .series
        .iter()
        .flat_map(|s| {
            let l = labels_text(&s.labels);
            s.timestamps
                .iter()
                .zip(&s.values)
                .map(move |(&t, &v)| (l.clone(), format_time(t), v.to_string()))
        })
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(6).max(6);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(4).max(4);
    writeln!(out, "{:<w0$}  {:<w1$}  value", "series", "time")?;
    for (l, t, v) in &rows {
        writeln!(out, "{l:<w0$}  {t:<w1$}  {v}")?;
    }
    writeln!(
        out,
        "({} series, {} values; read {} points of {} series from {} chunks)",
        r.series.len(),
        rows.len(),
        r.stats.points_read,
        r.stats.series,
        r.stats.chunks_read
    )
}

fn write_json(out: &mut impl Write, r: &QueryResult) -> std::io::Result<()> {
    use serde_json::{Value, json};
    // JSON has no NaN or infinities: they are written as strings, as Prometheus does.
    let num = |v: f64| {
        if v.is_finite() {
            json!(v)
        } else {
            Value::String(v.to_string())
        }
    };
    let doc = json!({
        "steps": r.steps.len(),
        "series": r.series.iter().map(|s| json!({
            "labels": s.labels,
            "values": s.timestamps.iter().zip(&s.values)
                .map(|(&t, &v)| json!([t, num(v)])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "stats": {
            "series": r.stats.series,
            "chunks_read": r.stats.chunks_read,
            "points_read": r.stats.points_read,
        },
    });
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::other)?;
    writeln!(out)
}

fn write_csv(out: &mut impl Write, r: &QueryResult) -> std::io::Result<()> {
    let mut names: Vec<&String> = r.series.iter().flat_map(|s| s.labels.keys()).collect();
    names.sort();
    names.dedup();
    let mut w = csv::Writer::from_writer(out);
    let mut header = vec!["timestamp".to_owned(), "value".to_owned()];
    header.extend(names.iter().map(|n| n.to_string()));
    w.write_record(&header)?;
    for s in &r.series {
        for (&t, &v) in s.timestamps.iter().zip(&s.values) {
            let mut row = vec![t.to_string(), v.to_string()];
            row.extend(
                names
                    .iter()
                    .map(|n| s.labels.get(*n).cloned().unwrap_or_default()),
            );
            w.write_record(&row)?;
        }
    }
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
