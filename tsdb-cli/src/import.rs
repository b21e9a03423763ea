//! `gorilla-tsdb import`: Influx line protocol, Prometheus text exposition and CSV.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, ValueEnum};
use gorilla_tsdb::{DataPoint, Error, Labels, SeriesId, TimeSeriesDB, WalDurability};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tsdb_formats::Precision as FormatPrecision;

use crate::time::parse_timestamp;

/// Points written to the database in one batch.
const BATCH: usize = 50_000;

/// Rejected lines printed one by one; the rest are only counted.
const SHOWN_REJECTS: usize = 20;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Files to import; `-` or none reads stdin.
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

    /// Prometheus: timestamp (ms) for samples without one. Without it such lines are rejected.
    #[arg(long)]
    default_timestamp: Option<i64>,

    /// No progress bar.
    #[arg(long)]
    no_progress: bool,

    #[command(flatten)]
    policies: crate::Policies,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// InfluxDB line protocol: `measurement,tag=v field=1.5 <timestamp>`; each numeric field
    /// becomes the metric `<measurement>_<field>` (`<measurement>` for a field named `value`).
    Influx,
    /// Prometheus text exposition: `metric{label="v"} 1.5 <timestamp ms>`.
    Prometheus,
    /// CSV with a header naming `timestamp` and `value` columns.
    Csv,
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

    /// `t` in this unit as milliseconds.
    fn to_ms(self, t: i64) -> i64 {
        self.unit().to_millis(t)
    }

    fn unit_ms(self) -> i64 {
        match self {
            Precision::S => 1_000,
            _ => 1,
        }
    }
}

/// One rejected line.
struct Reject {
    file: String,
    line: usize,
    reason: String,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Where a point came from, to report it when the database refuses it.
#[derive(Clone, Copy)]
struct Origin {
    file: usize,
    line: usize,
}

/// The import in progress: series known, the batch being filled, counters.
struct Importer<'a> {
    db: &'a TimeSeriesDB,
    series: HashMap<Labels, SeriesId>,
    batch: Vec<DataPoint>,
    origins: Vec<Origin>,
    files: Vec<String>,
    imported: u64,
    rejected: u64,
    bar: ProgressBar,
    started: Instant,
}

impl Importer<'_> {
    fn reject(&mut self, file: usize, line: usize, reason: impl Into<String>) {
        self.rejected += 1;
        if self.rejected as usize <= SHOWN_REJECTS {
            let r = Reject {
                file: self.files[file].clone(),
                line,
                reason: reason.into(),
            };
            self.bar.suspend(|| eprintln!("rejected {r}"));
        }
    }

    async fn push(&mut self, labels: Labels, t: i64, v: f64, origin: Origin) -> Result<(), Error> {
        let id = match self.series.get(&labels) {
            Some(&id) => id,
            None => match self.db.register_series(&labels).await {
                Ok(id) => {
                    self.series.insert(labels, id);
                    id
                }
                Err(e) => {
                    self.reject(origin.file, origin.line, e.to_string());
                    return Ok(());
                }
            },
        };
        self.batch.push(DataPoint::new(id, t, v));
        self.origins.push(origin);
        if self.batch.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the batch. The database takes a batch whole or not at all; when it refuses one,
    /// the points are written one by one so that only the refused ones are rejected.
    async fn flush(&mut self) -> Result<(), Error> {
        let batch = std::mem::take(&mut self.batch);
        let origins = std::mem::take(&mut self.origins);
        if batch.is_empty() {
            return Ok(());
        }
        match self.db.insert_batch(&batch).await {
            Ok(()) => self.imported += batch.len() as u64,
            Err(e) if is_point_error(&e) => {
                for (p, o) in batch.iter().zip(&origins) {
                    match self.db.insert_batch(std::slice::from_ref(p)).await {
                        Ok(()) => self.imported += 1,
                        Err(e) if is_point_error(&e) => {
                            self.reject(o.file, o.line, point_error_reason(&e))
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} points, {:.0} points/s, {} rejected",
            self.imported,
            self.imported as f64 / secs,
            self.rejected
        ));
        Ok(())
    }
}

/// Errors that concern the points, not the database: reject the point and go on.
fn is_point_error(e: &Error) -> bool {
    matches!(
        e,
        Error::OutOfOrder { .. }
            | Error::InTheFuture { .. }
            | Error::InvalidInput { .. }
            | Error::InvalidLabels { .. }
    )
}

/// Why a point was rejected, with a hint where the cause is usually the input's unit.
fn point_error_reason(e: &Error) -> String {
    match e {
        Error::InTheFuture { .. } => format!(
            "{e} (a timestamp in the wrong unit? see --precision; --future-tolerance none accepts any)"
        ),
        _ => e.to_string(),
    }
}

pub(crate) async fn run(data_dir: &Path, args: ImportArgs) -> Result<ExitCode, Error> {
    let extra = parse_label_args(&args.labels)?;
    if args.format == Format::Csv {
        let metric = args.metric.as_deref().unwrap_or_default();
        Labels::new(metric, extra.iter().map(|(k, v)| (k, v)))?;
    }
    let inputs: Vec<PathBuf> = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files.clone()
    };
    let total_bytes: u64 = inputs
        .iter()
        .filter(|p| p.as_os_str() != "-")
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}",
            )
            .map_err(|e| Error::invalid_input(format_args!("progress template: {e}")))?,
        );
        bar
    };

    let db = crate::open(data_dir, WalDurability::Never, &args.policies).await?;
    let mut imp = Importer {
        db: &db,
        series: HashMap::new(),
        batch: Vec::with_capacity(BATCH),
        origins: Vec::with_capacity(BATCH),
        files: inputs
            .iter()
            .map(|p| {
                if p.as_os_str() == "-" {
                    "<stdin>".to_owned()
                } else {
                    p.display().to_string()
                }
            })
            .collect(),
        imported: 0,
        rejected: 0,
        bar: bar.clone(),
        started: Instant::now(),
    };
    let result = import_all(&mut imp, &inputs, &args, &extra).await;
    let (imported, rejected, series) = (imp.imported, imp.rejected, imp.series.len());
    let secs = imp.started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    crate::finish(db, result).await?;
    eprintln!(
        "imported {imported} points of {series} series from {} input(s) in {secs:.2} s \
         ({:.0} points/s); {rejected} line(s) rejected",
        inputs.len(),
        imported as f64 / secs.max(1e-3)
    );
    if rejected > SHOWN_REJECTS as u64 {
        eprintln!("(only the first {SHOWN_REJECTS} rejected lines were shown)");
    }
    Ok(if rejected > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

async fn import_all(
    imp: &mut Importer<'_>,
    inputs: &[PathBuf],
    args: &ImportArgs,
    extra: &[(String, String)],
) -> Result<(), Error> {
    for (file, path) in inputs.iter().enumerate() {
        let text = read_input(path)?;
        match args.format {
            Format::Influx => import_influx(imp, file, &text, args, extra).await?,
            Format::Prometheus => import_prometheus(imp, file, &text, args, extra).await?,
            Format::Csv => import_csv(imp, file, path, &text, args, extra).await?,
        }
        imp.bar.inc(text.len() as u64);
    }
    imp.flush().await
}

fn read_input(path: &Path) -> Result<String, Error> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("<stdin>", e))?;
    } else {
        bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::invalid_input(format_args!(
            "{}: not UTF-8 text (at byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
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

/// Pushes what a text decoder yielded: samples into the batch, rejected lines reported;
/// metadata is not kept by imports.
async fn push_lines(
    imp: &mut Importer<'_>,
    file: usize,
    lines: impl Iterator<Item = tsdb_formats::Line>,
) -> Result<(), Error> {
    use tsdb_formats::Item;
    for line in lines {
        match line.item {
            Item::Sample(s) => {
                let origin = Origin {
                    file,
                    line: line.number,
                };
                imp.push(s.labels, s.timestamp, s.value, origin).await?;
            }
            Item::Rejected(reason) => imp.reject(file, line.number, reason),
            Item::Metadata(_) => {}
        }
    }
    Ok(())
}

async fn import_influx(
    imp: &mut Importer<'_>,
    file: usize,
    text: &str,
    args: &ImportArgs,
    extra: &[(String, String)],
) -> Result<(), Error> {
    let opts = tsdb_formats::influx::Options {
        precision: args
            .precision
            .map_or(FormatPrecision::Nanoseconds, Precision::unit),
        default_timestamp: None,
        extra_labels: extra.to_vec(),
    };
    push_lines(imp, file, tsdb_formats::influx::decode(text, &opts)).await
}

async fn import_prometheus(
    imp: &mut Importer<'_>,
    file: usize,
    text: &str,
    args: &ImportArgs,
    extra: &[(String, String)],
) -> Result<(), Error> {
    let opts = tsdb_formats::prometheus_text::Options {
        precision: args
            .precision
            .map_or(FormatPrecision::Milliseconds, Precision::unit),
        default_timestamp: args.default_timestamp,
        extra_labels: extra.to_vec(),
    };
    let lines = tsdb_formats::prometheus_text::decode(text, &opts).map(|mut line| {
        if matches!(&line.item, tsdb_formats::Item::Rejected(r) if r == "no timestamp") {
            line.item = tsdb_formats::Item::Rejected(
                "no timestamp (give --default-timestamp to import such samples)".to_owned(),
            );
        }
        line
    });
    push_lines(imp, file, lines).await
}

async fn import_csv(
    imp: &mut Importer<'_>,
    file: usize,
    path: &Path,
    text: &str,
    args: &ImportArgs,
    extra: &[(String, String)],
) -> Result<(), Error> {
    let unit = args.precision.unwrap_or(Precision::Ms);
    let metric = args.metric.as_deref().unwrap_or_default();
    let mut pairs = extra.to_vec();
    if args.file_label {
        let stem = path
            .file_stem()
            .map_or_else(|| "stdin".to_owned(), |s| s.to_string_lossy().into_owned());
        pairs.push(("file".to_owned(), stem));
    }
    let labels = Labels::new(metric, pairs.iter().map(|(k, v)| (k, v)))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::invalid_input(format_args!("{}: CSV header: {e}", imp.files[file])))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::invalid_input(format_args!(
                    "{}:1: the CSV header has no {name:?} column (found {:?})",
                    imp.files[file],
                    headers.iter().collect::<Vec<_>>()
                ))
            })
    };
    let (t_col, v_col) = (column("timestamp")?, column("value")?);
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                imp.reject(file, line, format!("CSV: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let (Some(t), Some(v)) = (record.get(t_col), record.get(v_col)) else {
            imp.reject(
                file,
                line,
                format!("expected {} columns, found {}", headers.len(), record.len()),
            );
            continue;
        };
        let t = match parse_timestamp(t, unit.unit_ms()) {
            Ok(t) if matches!(unit, Precision::Ns | Precision::Us) => unit.to_ms(t),
            Ok(t) => t,
            Err(reason) => {
                imp.reject(file, line, reason);
                continue;
            }
        };
        let v = match v.parse::<f64>() {
            Ok(v) => v,
            Err(_) => {
                imp.reject(file, line, format!("value {v:?} is not a number"));
                continue;
            }
        };
        imp.push(labels.clone(), t, v, Origin { file, line })
            .await?;
    }
    Ok(())
}
