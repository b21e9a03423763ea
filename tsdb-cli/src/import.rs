//! `gorilla-tsdb import`: Influx line protocol, Prometheus text exposition and CSV, from
//! files or stdin, plain or gzip.
//!
//! A pipeline with bounded memory whatever the input: a reader thread cuts the input into
//! chunks of whole lines ([`read`]), worker threads scan them in place and resolve series
//! through a cache keyed by the series' bytes ([`parse`]), and the writer applies the
//! chunks in input order, so that each series' points arrive in the order written: the
//! chunk's new series registered in one batch, then its points in one batch ([`write`]).
//! At most a few chunks are in flight at once.
//!
//! Counts: lines read, points imported, and what was refused, by reason: whole lines (a
//! line that imported nothing, counted by its first problem) and points (an Influx field
//! refused while the rest of its line was taken, or a point the database refused). The
//! first rejections are printed with file, line and what was wrong; the exit status is 2
//! when anything was refused.

mod parse;
mod read;
mod write;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Args, ValueEnum};
use gorilla_tsdb::{Error, Labels, WalDurability};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tsdb_formats::{Precision as FormatPrecision, csv, influx, prometheus_text};

use crate::time::{now_ms, parse_time};
use parse::{Format as Parsing, Worker};
use read::{Buffers, CsvInput, InFlightBudget, Reader};
use write::{SHOWN_REJECTS, Totals, Writer};

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Files to import (plain, or gzip: named .gz or starting with gzip's magic bytes);
    /// `-` or none reads stdin.
    files: Vec<PathBuf>,

    /// Input format.
    #[arg(long, short, value_enum, default_value_t = Format::Influx)]
    format: Format,

    /// CSV: the metric name of the imported series.
    #[arg(long, required_if_eq("format", "csv"))]
    metric: Option<String>,

    /// CSV: a label `k=v` of the imported series (repeatable). Influx and Prometheus: a label
    /// added to every series.
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,

    /// CSV: add a label `file=<file stem>` so that each file is its own series.
    #[arg(long)]
    file_label: bool,

    /// Unit of numeric timestamps: Influx defaults to ns, Prometheus to ms, CSV to ms.
    #[arg(long, value_enum)]
    precision: Option<Precision>,

    /// Influx and Prometheus: the time of lines without a timestamp: `now` (the default:
    /// the time the import starts, as a scrape or InfluxDB gives them), another time in the
    /// forms `query --start` takes (`now-1h`, RFC 3339, ...), or `none` to reject such
    /// lines. The summary says how many lines took it.
    #[arg(long, value_name = "TIME")]
    default_timestamp: Option<String>,

    /// Influx: what boolean fields become.
    #[arg(long, value_enum, default_value_t = InfluxBool::AsNumber)]
    influx_bool: InfluxBool,

    /// Influx: what integer fields (`12i`, `12u`) become.
    #[arg(long, value_enum, default_value_t = InfluxInt::AsFloat)]
    influx_int: InfluxInt,

    /// Parsing threads (default: one per core, at most 16).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// No progress bar.
    #[arg(long)]
    no_progress: bool,

    #[command(flatten)]
    policies: crate::Policies,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// InfluxDB line protocol: `measurement,tag=v field=1.5 <timestamp>`; each numeric field
    /// becomes the metric `<measurement>_<field>` (`<measurement>` for a field named `value`);
    /// string fields are rejected by name; a line's bad fields cost those fields only.
    Influx,
    /// Prometheus text exposition: `metric{label="v"} 1.5 <timestamp ms>`.
    Prometheus,
    /// CSV with a header naming `timestamp` and `value` columns; a record is one line.
    Csv,
}

/// `--influx-bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum InfluxBool {
    /// `true` is 1, `false` 0.
    AsNumber,
    /// Rejected, by field name.
    Reject,
}

/// `--influx-int`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum InfluxInt {
    /// The nearest float (exact up to 2^53).
    AsFloat,
    /// Rejected beyond 2^53, where a float would round them.
    Exact,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Precision {
    /// Nanoseconds.
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

impl Precision {
    /// The unit, as the decoders name it.
    fn unit(self) -> FormatPrecision {
        match self {
            Precision::Ns => FormatPrecision::Nanoseconds,
            Precision::Us => FormatPrecision::Microseconds,
            Precision::Ms => FormatPrecision::Milliseconds,
            Precision::S => FormatPrecision::Seconds,
        }
    }
}

/// The parsers' options from the flags.
fn parsing(args: &ImportArgs, extra: &[(String, String)]) -> Result<Parsing, Error> {
    let default_timestamp = match args.default_timestamp.as_deref().map(str::trim) {
        Some("none") => None,
        given => Some(
            parse_time(given.unwrap_or("now"), now_ms())
                .map_err(|e| Error::invalid_input(format_args!("--default-timestamp: {e}")))?,
        ),
    };
    let unit = |default| args.precision.map_or(default, Precision::unit);
    Ok(match args.format {
        Format::Influx => Parsing::Influx(influx::Options {
            precision: unit(FormatPrecision::Nanoseconds),
            default_timestamp,
            extra_labels: extra.to_vec(),
            booleans: match args.influx_bool {
                InfluxBool::AsNumber => influx::Booleans::AsNumber,
                InfluxBool::Reject => influx::Booleans::Reject,
            },
            integers: match args.influx_int {
                InfluxInt::AsFloat => influx::Integers::AsFloat,
                InfluxInt::Exact => influx::Integers::Exact,
            },
        }),
        Format::Prometheus => Parsing::Prometheus(prometheus_text::Options {
            precision: unit(FormatPrecision::Milliseconds),
            default_timestamp,
            extra_labels: extra.to_vec(),
        }),
        Format::Csv => {
            if args.default_timestamp.is_some() {
                return Err(Error::invalid_input(
                    "--default-timestamp: CSV records always have a timestamp",
                ));
            }
            Parsing::Csv(csv::Options {
                precision: unit(FormatPrecision::Milliseconds),
            })
        }
    })
}

/// The series of a CSV file's points.
fn csv_series(
    metric: &str,
    extra: &[(String, String)],
    file_label: bool,
    path: &Path,
) -> Result<Labels, Error> {
    let mut pairs = extra.to_vec();
    if file_label {
        let stem = if path.as_os_str() == "-" {
            "stdin".to_owned()
        } else {
            path.file_stem().map_or_else(
                || "stdin".to_owned(),
                |s| {
                    let s = s.to_string_lossy();
                    // `a.csv.gz` is the file `a`.
                    s.strip_suffix(".csv").unwrap_or(&s).to_owned()
                },
            )
        };
        pairs.push(("file".to_owned(), stem));
    }
    Labels::new(metric, pairs.iter().map(|(k, v)| (k, v)))
}

pub(crate) async fn run(data_dir: &Path, args: ImportArgs) -> Result<ExitCode, Error> {
    let extra = parse_label_args(&args.labels)?;
    if args.format == Format::Csv {
        let metric = args.metric.as_deref().unwrap_or_default();
        Labels::new(metric, extra.iter().map(|(k, v)| (k, v)))?;
    }
    let format = Arc::new(parsing(&args, &extra)?);
    let default_timestamp = format.default_timestamp();
    let inputs: Vec<PathBuf> = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files.clone()
    };
    let named: Vec<(PathBuf, String)> = inputs
        .iter()
        .map(|p| {
            let name = if p.as_os_str() == "-" {
                "<stdin>".to_owned()
            } else {
                p.display().to_string()
            };
            (p.clone(), name)
        })
        .collect();
    let bar = progress_bar(&args, &inputs)?;

    let db = Arc::new(crate::open(data_dir, WalDurability::Never, &args.policies).await?);
    let workers = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .clamp(1, 16);
    // Chunks in flight (read, parsed, waiting to be written): a memory budget of two chunks
    // for every parser and two more, whatever the input.
    let budget = Arc::new(InFlightBudget::new((2 * workers + 2).min(24) * read::CHUNK));
    let buffers = Arc::new(Buffers::default());
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel(workers + 1);
    let (parsed_tx, parsed_rx) = tokio::sync::mpsc::unbounded_channel();
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    let csv = (args.format == Format::Csv).then(|| {
        let metric = args.metric.clone().unwrap_or_default();
        let extra = extra.clone();
        let file_label = args.file_label;
        Box::new(
            move |path: &Path, name: &str, header: &[u8]| -> Result<CsvInput, Error> {
                let header = csv::Header::parse(header)
                    .map_err(|r| Error::invalid_input(format_args!("{name}:1: {r}")))?;
                let labels = csv_series(&metric, &extra, file_label, path)?;
                Ok(CsvInput {
                    header,
                    id: labels.series_id(),
                    labels,
                })
            },
        ) as Box<dyn Fn(&Path, &str, &[u8]) -> Result<CsvInput, Error> + Send>
    });
    let done = Arc::new(read::Done::default());
    let reader = Reader {
        done: done.clone(),
        chunks: chunk_tx,
        budget: budget.clone(),
        buffers: buffers.clone(),
        csv,
    };
    let reading = std::thread::Builder::new()
        .name("import-read".to_owned())
        .spawn(move || reader.run(named))
        .map_err(|e| Error::io("the import's reading thread", e))?;
    for i in 0..workers {
        let (worker, rx, tx, buffers, budget) = (
            Worker::new(format.clone(), workers),
            chunk_rx.clone(),
            parsed_tx.clone(),
            buffers.clone(),
            budget.clone(),
        );
        std::thread::Builder::new()
            .name(format!("import-parse-{i}"))
            .spawn(move || worker.run(rx, tx, buffers, &budget))
            .map_err(|e| Error::io("an import parsing thread", e))?;
    }
    drop(parsed_tx);

    let (registered_tx, registered_rx) = tokio::sync::mpsc::unbounded_channel();
    let registering = tokio::spawn(write::register_in_order(
        db.clone(),
        parsed_rx,
        registered_tx,
        done,
    ));
    let mut writer = Writer::new(&db, bar.clone(), budget.clone());
    let result = writer.run(registered_rx).await;
    // Stops the reader if the writer stopped early (a failed input, a database error).
    budget.close();
    let totals = writer.totals();
    let started = writer.started;
    let read = started.elapsed().as_secs_f64();
    drop(writer);
    // Over by now (the writer saw its channel close), or stopping (the writer failed).
    if result.is_err() {
        registering.abort();
    }
    let registered = match registering.await {
        Ok(r) => r,
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(Error::invalid_input(format_args!(
            "the import's registering task failed: {e}"
        ))),
    };
    let result = result.and(registered);
    bar.finish_and_clear();
    // The read buffers kept for reuse (a few 2.5 MiB ones) go back before closing, whose
    // flush of every head is when memory peaks.
    drop(buffers);
    crate::arenas::give_back_free_pages();
    let closed = db.close().await;
    // The process ends next: its memory (a million series' worth, maybe) goes back to the
    // OS at once instead of being freed piece by piece. `close` has stopped everything.
    std::mem::forget(db);
    result?;
    closed?;
    if reading.is_finished() {
        let _ = reading.join();
    }
    let secs = started.elapsed().as_secs_f64();
    report(&totals, inputs.len(), secs, secs - read, default_timestamp);
    Ok(if totals.rejected_lines() + totals.rejected_points() > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn progress_bar(args: &ImportArgs, inputs: &[PathBuf]) -> Result<ProgressBar, Error> {
    if args.no_progress {
        return Ok(ProgressBar::hidden());
    }
    let sizes: Option<u64> = inputs
        .iter()
        .map(|p| {
            (p.as_os_str() != "-")
                .then(|| std::fs::metadata(p).ok().map(|m| m.len()))
                .flatten()
        })
        .sum();
    let template = match sizes {
        Some(_) => "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}",
        None => "{spinner} [{elapsed_precise}] {bytes} {msg}",
    };
    let bar = ProgressBar::with_draw_target(sizes, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template)
            .map_err(|e| Error::invalid_input(format_args!("progress template: {e}")))?,
    );
    Ok(bar)
}

/// `3 syntax, 1 no_timestamp`.
fn by_reason(counts: &std::collections::BTreeMap<&'static str, u64>) -> String {
    let mut all: Vec<(&str, u64)> = counts.iter().map(|(k, v)| (*k, *v)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    all.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary. `secs` runs from the start to the database closed (every point in chunks
/// on disk), `closing` of it after the last chunk was written.
fn report(totals: &Totals, inputs: usize, secs: f64, closing: f64, default_timestamp: Option<i64>) {
    let (lines, points) = (totals.rejected_lines(), totals.rejected_points());
    eprintln!(
        "imported {} points of {} series from {} line(s) of {inputs} input(s) in {secs:.2} s \
         ({:.0} points/s, {:.1} MB/s; closing took {closing:.2} s); {lines} line(s) and \
         {points} point(s) rejected",
        totals.points,
        totals.series,
        totals.lines,
        totals.points as f64 / secs.max(1e-3),
        totals.bytes as f64 / 1e6 / secs.max(1e-3),
    );
    if lines > 0 {
        eprintln!("rejected lines: {}", by_reason(&totals.lines_rejected));
    }
    if points > 0 {
        eprintln!("rejected points: {}", by_reason(&totals.points_rejected));
    }
    if totals.defaulted_lines > 0 {
        let at = default_timestamp.map_or_else(String::new, |t| {
            format!(" ({})", crate::time::format_time(t))
        });
        eprintln!(
            "{} line(s) had no timestamp and were imported at --default-timestamp{at}",
            totals.defaulted_lines
        );
    }
    if totals.shown > SHOWN_REJECTS {
        eprintln!("(only the first {SHOWN_REJECTS} rejections were shown)");
    }
}

fn parse_label_args(args: &[String]) -> Result<Vec<(String, String)>, Error> {
    args.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| {
                    Error::invalid_input(format_args!("--label {a:?}: expected name=value"))
                })
        })
        .collect()
}
