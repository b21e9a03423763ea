//! `delete` and `snapshot`: the data lifecycle commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use gorilla_tsdb::{Error, TimeRange, WalDurability};

use crate::query::parse_matcher;
use crate::time::{now_ms, parse_time};

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Label matchers selecting the series (as in `query --match`); at least one.
    #[arg(long = "match", short = 'm', value_name = "MATCHER", required = true)]
    matchers: Vec<String>,

    /// First timestamp deleted (as in `query --start`). Default: the beginning of time.
    #[arg(long)]
    start: Option<String>,

    /// Last timestamp deleted (as in `query --end`). Default: the end of time.
    #[arg(long)]
    end: Option<String>,

    #[command(flatten)]
    policies: crate::Policies,
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// Where the copy goes: a directory that does not exist yet or is empty.
    target: PathBuf,

    #[command(flatten)]
    policies: crate::Policies,
}

/// Opens a directory that must already hold a database.
async fn open_existing(
    data_dir: &Path,
    policies: &crate::Policies,
) -> Result<gorilla_tsdb::TimeSeriesDB, Error> {
    if !data_dir.join("series").exists() {
        return Err(Error::invalid_input(format_args!(
            "{} holds no database (no series catalog); give --data-dir",
            data_dir.display()
        )));
    }
    crate::open(data_dir, WalDurability::Always, policies).await
}

pub(crate) async fn delete(data_dir: &Path, args: DeleteArgs) -> Result<ExitCode, Error> {
    let matchers = args
        .matchers
        .iter()
        .map(|m| parse_matcher(m))
        .collect::<Result<Vec<_>, _>>()?;
    let now = now_ms();
    let range = TimeRange {
        start: args
            .start
            .as_deref()
            .map_or(Ok(i64::MIN), |s| parse_time(s, now))?,
        end: args
            .end
            .as_deref()
            .map_or(Ok(i64::MAX), |s| parse_time(s, now))?,
    };
    let db = open_existing(data_dir, &args.policies).await?;
    let deleted = db.delete_series(&matchers, range).await;
    let deleted = crate::finish(db, deleted).await?;
    println!("deleted the points of {deleted} series");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn snapshot(data_dir: &Path, args: SnapshotArgs) -> Result<ExitCode, Error> {
    let db = open_existing(data_dir, &args.policies).await?;
    let stats = db.snapshot(&args.target).await;
    let stats = crate::finish(db, stats).await?;
    println!(
        "snapshot of {} series, {} chunks, {} points in {}",
        stats.series,
        stats.chunks,
        stats.points,
        args.target.display()
    );
    Ok(ExitCode::SUCCESS)
}
