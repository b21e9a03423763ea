//! `delete`, `compact` and `snapshot`: the data lifecycle commands.

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
pub(crate) struct CompactArgs {
    /// Chunks whose newest point is older than this (against the clock) are rewritten into
    /// the cold codec, e.g. `2h`; `0s` takes everything stored.
    #[arg(long, value_parser = crate::duration_flag, default_value = "2h")]
    cold_after: std::time::Duration,

    /// Most points in a chunk compaction writes.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    chunk_points: u32,

    /// A rollup tier to build, `RESOLUTION[:RETENTION]` (e.g. `5m:400d`); repeat for several.
    /// Give the tiers the database is served with: those not given are not built on.
    #[arg(long = "rollup", value_parser = crate::rollup_flag)]
    rollups: Vec<gorilla_tsdb::RollupTier>,

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
    open_existing_with(data_dir, policies, |_| {}).await
}

/// [`open_existing`], with `tune` applied to the configuration.
async fn open_existing_with(
    data_dir: &Path,
    policies: &crate::Policies,
    tune: impl FnOnce(&mut gorilla_tsdb::DatabaseConfig),
) -> Result<gorilla_tsdb::TimeSeriesDB, Error> {
    if !data_dir.join("series").exists() {
        return Err(Error::invalid_input(format_args!(
            "{} holds no database (no series catalog); give --data-dir",
            data_dir.display()
        )));
    }
    crate::open_with(data_dir, WalDurability::Always, policies, tune).await
}

/// Bytes of every file under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

pub(crate) async fn compact(data_dir: &Path, args: CompactArgs) -> Result<ExitCode, Error> {
    let before = bytes_under(data_dir);
    let db = open_existing_with(data_dir, &args.policies, |config| {
        config.cold_after = args.cold_after;
        config.compacted_chunk_points = args.chunk_points;
        config.rollup_tiers = args.rollups.clone();
        // This command runs it itself, to completion.
        config.compaction_interval = None;
    })
    .await?;
    let started = std::time::Instant::now();
    let result = async {
        let stats = db.compact().await?;
        let points: u64 = db
            .storage()
            .list_chunks()
            .await?
            .iter()
            .filter(|c| c.codec != gorilla_tsdb::CodecId::ROLLUP)
            .map(|c| u64::from(c.point_count))
            .sum();
        Ok((stats, points, db.stats().rollup))
    }
    .await;
    let (stats, points, rollup) = crate::finish(db, result).await?;
    let after = bytes_under(data_dir);
    println!(
        "compacted {} series in {:.1}s: {} chunks ({} bytes) into {} chunks ({} bytes)",
        stats.series,
        started.elapsed().as_secs_f64(),
        stats.chunks_replaced,
        stats.bytes_replaced,
        stats.chunks_written,
        stats.bytes_written,
    );
    if stats.conflicts > 0 || stats.damaged > 0 {
        println!(
            "left alone: {} series written meanwhile, {} touched by recorded damage (see `repair`)",
            stats.conflicts, stats.damaged
        );
    }
    if rollup.groups_written > 0 || rollup.chunks_expired > 0 {
        println!(
            "rollup tiers: {} buckets written in {} groups, {} expired chunks deleted",
            rollup.buckets_written, rollup.groups_written, rollup.chunks_expired
        );
    }
    let per_point = if points == 0 {
        String::new()
    } else {
        format!(", {:.3} bytes a point", after as f64 / points as f64)
    };
    println!(
        "data directory: {before} bytes before, {after} bytes after, {points} points stored{per_point}"
    );
    Ok(ExitCode::SUCCESS)
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
