//! `gorilla-tsdb`: import, query and inspect a Gorilla TSDB data directory.

#![deny(unsafe_code)]

// Fewer allocator arenas, so that memory freed on one thread serves the others, and free
// pages given back between an import's phases.
mod arenas;
mod import;
mod inspect;
mod lifecycle;
mod plot;
mod query;
mod series;
#[cfg(feature = "server")]
mod serve;
mod time;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use gorilla_tsdb::{
    DatabaseConfig, Error, TimeSeriesDB, TimeSeriesDBBuilder, WalDurability, WalRecovery,
};

/// Import, query and inspect a Gorilla TSDB data directory.
#[derive(Debug, Parser)]
#[command(name = "gorilla-tsdb", version, about)]
struct Cli {
    /// The database's data directory (created if absent).
    #[arg(
        long,
        global = true,
        env = "GORILLA_TSDB_DATA_DIR",
        default_value = "./tsdb-data"
    )]
    data_dir: PathBuf,

    /// What opening for writing does with damage in the WAL or the series catalog:
    /// `strict` refuses to open and names the file and offset; `skip-damaged` keeps every
    /// record it can read and records what was lost (shown by `stats` and `repair`).
    #[arg(long, global = true, value_enum, default_value_t = Recovery::Strict)]
    wal_recovery: Recovery,

    #[command(subcommand)]
    command: Command,
}

/// `--wal-recovery`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Recovery {
    /// Refuse to open a damaged log.
    Strict,
    /// Open anyway, skipping damaged records.
    SkipDamaged,
}

/// The recovery policy of this run, set once from the command line.
static WAL_RECOVERY: OnceLock<WalRecovery> = OnceLock::new();

#[derive(Debug, Subcommand)]
enum Command {
    /// Imports points from Influx line protocol, Prometheus text exposition or CSV files
    /// (or stdin). Rejected lines are reported with file and line and counted; the exit
    /// status is 2 when any line was rejected (the good ones are imported).
    Import(import::ImportArgs),
    /// Selects series by label matchers over a time range, optionally applies a range
    /// function over a sliding window at each step and aggregates across series.
    Query(Box<query::QueryArgs>),
    /// Lists the series matching PromQL selectors (every series without one), one a line in
    /// PromQL notation; with --start/--end, those with a sample in the range.
    Series(series::SeriesArgs),
    /// Lists the label names of the series matching PromQL selectors (all without one).
    Labels(series::LabelsArgs),
    /// Lists the values of label NAME among the series matching PromQL selectors (all
    /// without one).
    LabelValues(series::LabelValuesArgs),
    /// Draws a PromQL range query as a line chart, SVG or PNG by the output file's
    /// extension: a line per series, the query as the title, a legend of their labels.
    Plot(Box<plot::PlotArgs>),
    /// Series, chunks, points, bytes on disk and bytes per point, by codec.
    Stats(inspect::StatsArgs),
    /// The chunks of the series selected by label matchers.
    Inspect(inspect::InspectArgs),
    /// Opens the database for writing (recovering it), lists every loss it has recorded and,
    /// with `--accept-damage`, accepts them so that queries stop failing on them.
    Repair(inspect::RepairArgs),
    /// Deletes the points of the series selected by label matchers inside a time range
    /// (written before the command; durable tombstones hide them from every read).
    Delete(lifecycle::DeleteArgs),
    /// Runs compaction to completion: cold chunks merged into large chunks of the cold codec
    /// (pco), deleted points dropped, mostly dead chunk files freed; prints what it did and
    /// the data directory's bytes a point.
    Compact(lifecycle::CompactArgs),
    /// Writes a consistent copy of the database into another directory, which opens as a
    /// database of its own.
    Snapshot(lifecycle::SnapshotArgs),
    /// Serves the database over HTTP: the Prometheus 2.42 query API (for Grafana),
    /// remote write, Influx line protocol, Prometheus text import, /metrics and a graph
    /// page at /. Stops gracefully on SIGTERM or SIGINT.
    #[cfg(feature = "server")]
    Serve(Box<serve::ServeArgs>),
}

fn main() -> ExitCode {
    arenas::configure();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if cli.command.only_prints() {
        end_quietly_when_the_output_closes();
    }
    let given = |id: &str| {
        matches
            .value_source(id)
            .is_some_and(|s| s != ValueSource::DefaultValue)
    };
    let explicit = Explicit {
        data_dir: given("data_dir"),
        wal_recovery: given("wal_recovery"),
    };
    let _ = WAL_RECOVERY.set(match cli.wal_recovery {
        Recovery::Strict => WalRecovery::Strict,
        Recovery::SkipDamaged => WalRecovery::SkipDamaged,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, explicit));
    // A query of `serve` that outlived its timeout may still be evaluating on a blocking
    // thread: the database is closed by now, so do not wait for it long.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Which global flags were given (on the command line or in the environment), not left at
/// their defaults: `serve` lets a configuration file set them otherwise.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
struct Explicit {
    data_dir: bool,
    wal_recovery: bool,
}

impl Command {
    /// Whether the command only reads the database and prints what it found.
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Query(_)
                | Command::Series(_)
                | Command::Labels(_)
                | Command::LabelValues(_)
                | Command::Stats(_)
                | Command::Inspect(_)
        )
    }
}

/// Lets a closed pipe on the output end the process quietly, as it does Unix tools
/// (`gorilla-tsdb series | head`), instead of a write error or, from `println!`, a panic.
/// Only for commands that just print: one that writes to the database finishes its work.
#[cfg(unix)]
#[allow(unsafe_code)]
fn end_quietly_when_the_output_closes() {
    // SAFETY: restores the default disposition of one signal (Rust's runtime set it to
    // ignored); no handler runs our code, and no other thread exists yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Other platforms report the failed write.
#[cfg(not(unix))]
fn end_quietly_when_the_output_closes() {}

#[cfg_attr(not(feature = "server"), allow(unused_variables))]
async fn run(cli: Cli, explicit: Explicit) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Import(args) => import::run(&cli.data_dir, args).await,
        Command::Query(args) => query::run(&cli.data_dir, *args).await,
        Command::Series(args) => series::series(&cli.data_dir, args).await,
        Command::Labels(args) => series::labels(&cli.data_dir, args).await,
        Command::LabelValues(args) => series::label_values(&cli.data_dir, args).await,
        Command::Plot(args) => plot::run(&cli.data_dir, *args).await,
        Command::Stats(args) => inspect::stats(&cli.data_dir, args).await,
        Command::Inspect(args) => inspect::inspect(&cli.data_dir, args).await,
        Command::Repair(args) => inspect::repair(&cli.data_dir, args).await,
        Command::Delete(args) => lifecycle::delete(&cli.data_dir, args).await,
        Command::Compact(args) => lifecycle::compact(&cli.data_dir, args).await,
        Command::Snapshot(args) => lifecycle::snapshot(&cli.data_dir, args).await,
        #[cfg(feature = "server")]
        Command::Serve(args) => {
            let global = serve::GlobalFlags {
                data_dir: explicit.data_dir.then(|| cli.data_dir.clone()),
                wal_recovery: explicit
                    .wal_recovery
                    .then(|| WAL_RECOVERY.get().copied().unwrap_or_default()),
            };
            serve::run(*args, global).await
        }
    }
}

/// Opens the data directory for reading only: nothing is created, repaired or written, and
/// a database another process is writing can be read. A directory without a database is an
/// error.
async fn open_read_only(data_dir: &std::path::Path) -> Result<TimeSeriesDB, Error> {
    TimeSeriesDBBuilder::new()
        .with_config(DatabaseConfig {
            data_dir: data_dir.to_path_buf(),
            read_only: true,
            ..DatabaseConfig::default()
        })
        .build()
        .await
}

/// What a command that writes accepts and keeps, as the database's options.
#[derive(Debug, Args)]
pub(crate) struct Policies {
    /// How far behind its series' newest point a point is still accepted, e.g. `10m`.
    /// Default: any point (older ones go to out-of-order chunks).
    #[arg(long, value_parser = duration_flag)]
    out_of_order_window: Option<std::time::Duration>,

    /// How far ahead of the clock a point may be, e.g. `1h`; `none` accepts any timestamp.
    /// Default: 10m.
    #[arg(long, value_parser = optional_duration_flag)]
    future_tolerance: Option<OptionalDuration>,

    /// Delete chunks older than this against the clock, e.g. `15d` (points older than it are
    /// refused). Default: keep everything.
    #[arg(long, value_parser = duration_flag)]
    retention: Option<std::time::Duration>,
}

impl Policies {
    fn apply(&self, config: &mut DatabaseConfig) {
        if let Some(w) = self.out_of_order_window {
            config.out_of_order_window = w;
        }
        if let Some(OptionalDuration(f)) = self.future_tolerance {
            config.future_tolerance = f;
        }
        if self.retention.is_some() {
            config.retention = self.retention;
        }
    }
}

/// A duration flag (`10m`, `15d`, `500ms`, `1h30m`, or seconds: the workspace's notation).
pub(crate) fn duration_flag(text: &str) -> Result<std::time::Duration, String> {
    let ms = time::parse_duration(text).map_err(|e| e.to_string())?;
    u64::try_from(ms)
        .map(std::time::Duration::from_millis)
        .map_err(|_| format!("{text:?} is negative"))
}

/// `RESOLUTION[:RETENTION]` (e.g. `5m:400d`, `1h`) as a rollup tier.
pub(crate) fn rollup_flag(text: &str) -> Result<gorilla_tsdb::RollupTier, String> {
    let (resolution, retention) = match text.split_once(':') {
        Some((r, k)) => (r, Some(duration_flag(k)?)),
        None => (text, None),
    };
    Ok(gorilla_tsdb::RollupTier {
        resolution: duration_flag(resolution)?,
        retention,
    })
}

/// A duration, or `none`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OptionalDuration(pub(crate) Option<std::time::Duration>);

/// A duration flag that may be `none`.
pub(crate) fn optional_duration_flag(text: &str) -> Result<OptionalDuration, String> {
    if matches!(text.trim(), "none" | "off") {
        return Ok(OptionalDuration(None));
    }
    duration_flag(text).map(|d| OptionalDuration(Some(d)))
}

/// Opens the data directory for writing with `policies`. Imports skip per-write fsyncs:
/// `close` makes everything durable at the end.
async fn open(
    data_dir: &std::path::Path,
    durability: WalDurability,
    policies: &Policies,
) -> Result<TimeSeriesDB, Error> {
    open_with(data_dir, durability, policies, |_| {}).await
}

/// [`open`], with `tune` applied to the configuration last.
async fn open_with(
    data_dir: &std::path::Path,
    durability: WalDurability,
    policies: &Policies,
    tune: impl FnOnce(&mut DatabaseConfig),
) -> Result<TimeSeriesDB, Error> {
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir.display(), e))?;
    let mut config = DatabaseConfig {
        data_dir: data_dir.to_path_buf(),
        wal_durability: durability,
        wal_recovery: WAL_RECOVERY.get().copied().unwrap_or_default(),
        ..DatabaseConfig::default()
    };
    policies.apply(&mut config);
    tune(&mut config);
    TimeSeriesDBBuilder::new().with_config(config).build().await
}

/// Closes the database, keeping the first error.
async fn finish<T>(db: TimeSeriesDB, result: Result<T, Error>) -> Result<T, Error> {
    let closed = db.close().await;
    let value = result?;
    closed?;
    Ok(value)
}
