//! `gorilla-tsdb stats` and `gorilla-tsdb inspect`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use gorilla_tsdb::{Error, TimeRange, WalDurability};

use crate::query::parse_matcher;
use crate::time::format_time;

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RepairArgs {
    /// Accept every recorded loss: queries touching it stop failing (the entries stay listed,
    /// marked accepted).
    #[arg(long)]
    accept_damage: bool,

    #[command(flatten)]
    policies: crate::Policies,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Label matchers selecting the series (as in `query --match`); at least one.
    #[arg(long = "match", short = 'm', value_name = "MATCHER", required = true)]
    matchers: Vec<String>,
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

#[derive(Default)]
struct CodecTotals {
    chunks: u64,
    points: u64,
    bytes: u64,
}

pub(crate) async fn stats(data_dir: &Path, args: StatsArgs) -> Result<ExitCode, Error> {
    if !data_dir.is_dir() {
        return Err(Error::invalid_input(format_args!(
            "{} is not a data directory",
            data_dir.display()
        )));
    }
    let db = crate::open_read_only(data_dir).await?;
    let gathered = async {
        let counters = db.stats();
        let chunks = db.storage().list_chunks().await?;
        Ok::<_, Error>((counters, chunks, db.damage()))
    }
    .await;
    let (counters, chunks, damage) = crate::finish(db, gathered).await?;
    let mut by_codec: BTreeMap<u16, CodecTotals> = BTreeMap::new();
    for c in &chunks {
        let t = by_codec.entry(c.codec.0).or_default();
        t.chunks += 1;
        t.points += u64::from(c.point_count);
        t.bytes += c.location.length;
    }
    // Raw points only: the rollup tiers' chunks hold buckets (their row counts them).
    let raw = |id: &&u16| gorilla_tsdb::CodecId(**id) != gorilla_tsdb::CodecId::ROLLUP;
    let chunk_points: u64 = by_codec
        .iter()
        .filter(|(id, _)| raw(id))
        .map(|(_, t)| t.points)
        .sum();
    let chunk_bytes: u64 = by_codec
        .iter()
        .filter(|(id, _)| raw(id))
        .map(|(_, t)| t.bytes)
        .sum();
    let on_disk = dir_bytes(data_dir);
    let per_point = |bytes: u64, points: u64| {
        if points == 0 {
            0.0
        } else {
            bytes as f64 / points as f64
        }
    };
    if args.json {
        let doc = serde_json::json!({
            "data_dir": data_dir.display().to_string(),
            "series": counters.series,
            "chunks": chunks.len(),
            "points_in_chunks": chunk_points,
            "points_buffered": counters.buffered_points,
            "chunk_bytes": chunk_bytes,
            "bytes_on_disk": on_disk,
            "bytes_per_point": per_point(chunk_bytes, chunk_points),
            "damage": damage.iter().map(|d| serde_json::json!({
                "source": d.source,
                "offset": d.offset,
                "length": d.length,
                "series": d.series.map(|s| s.0),
                "start": d.range.map(|r| r.start),
                "end": d.range.map(|r| r.end),
                "reason": d.reason,
                "accepted": d.accepted,
            })).collect::<Vec<_>>(),
            "by_codec": by_codec.iter().map(|(id, t)| serde_json::json!({
                "codec": codec_name(*id),
                "chunks": t.chunks,
                "points": t.points,
                "bytes": t.bytes,
                "bytes_per_point": per_point(t.bytes, t.points),
            })).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(Error::invalid_input)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("data directory   {}", data_dir.display());
    println!("series           {}", counters.series);
    println!("chunks           {}", chunks.len());
    println!("points in chunks {chunk_points}");
    println!("points buffered  {} (WAL only)", counters.buffered_points);
    println!("chunk bytes      {chunk_bytes} (rollup tiers apart, below)");
    println!("bytes on disk    {on_disk} (chunks, index-free segments, WAL, catalog)");
    println!(
        "bytes/point      {:.3}",
        per_point(chunk_bytes, chunk_points)
    );
    println!();
    println!(
        "{:<10} {:>10} {:>14} {:>14} {:>11}",
        "codec", "chunks", "points", "bytes", "bytes/point"
    );
    for (id, t) in &by_codec {
        println!(
            "{:<10} {:>10} {:>14} {:>14} {:>11.3}",
            codec_name(*id),
            t.chunks,
            t.points,
            t.bytes,
            per_point(t.bytes, t.points)
        );
    }
    print_damage(&damage);
    Ok(ExitCode::SUCCESS)
}

fn print_damage(damage: &[gorilla_tsdb::Damage]) {
    let open = damage.iter().filter(|d| !d.accepted).count();
    println!();
    println!(
        "damage           {} recorded, {open} not accepted{}",
        damage.len(),
        if open > 0 {
            " (queries touching it fail; see `gorilla-tsdb repair`)"
        } else {
            ""
        }
    );
    for d in damage {
        println!("  {d}");
    }
}

/// `gorilla-tsdb repair`.
pub(crate) async fn repair(data_dir: &Path, args: RepairArgs) -> Result<ExitCode, Error> {
    if !data_dir.join("series").is_dir() && !data_dir.join("wal").is_dir() {
        return Err(Error::invalid_input(format_args!(
            "{} holds no database",
            data_dir.display()
        )));
    }
    let db = crate::open(data_dir, WalDurability::Always, &args.policies).await?;
    let result = async {
        let accepted = if args.accept_damage {
            db.accept_damage().await?
        } else {
            0
        };
        Ok::<_, Error>((db.damage(), accepted))
    }
    .await;
    let (damage, accepted) = crate::finish(db, result).await?;
    print_damage(&damage);
    if args.accept_damage {
        println!("accepted {accepted} entries");
    }
    Ok(ExitCode::SUCCESS)
}

fn codec_name(id: u16) -> String {
    match gorilla_tsdb::CodecId(id) {
        gorilla_tsdb::CodecId::GORILLA => "gorilla".to_owned(),
        gorilla_tsdb::CodecId::PCO => "pco".to_owned(),
        gorilla_tsdb::CodecId::ROLLUP => "rollup".to_owned(),
        gorilla_tsdb::CodecId::PACKED => "packed".to_owned(),
        _ => format!("codec {id}"),
    }
}

pub(crate) async fn inspect(data_dir: &Path, args: InspectArgs) -> Result<ExitCode, Error> {
    let matchers = args
        .matchers
        .iter()
        .map(|m| parse_matcher(m))
        .collect::<Result<Vec<_>, _>>()?;
    let db = crate::open_read_only(data_dir).await?;
    let gathered = async {
        let mut out = Vec::new();
        for (id, labels) in db.find_series(&matchers).await? {
            let mut chunks = db.index().query_chunks(id, TimeRange::ALL).await?;
            chunks.sort_by_key(|c| (c.start_time, c.location));
            let points = db
                .query(id, TimeRange::ALL)
                .await?
                .first()
                .map_or(0, |s| s.len());
            out.push((id, labels, chunks, points));
        }
        Ok::<_, Error>(out)
    }
    .await;
    let series = crate::finish(db, gathered).await?;
    if series.is_empty() {
        println!("no series matches");
    }
    for (id, labels, chunks, points) in series {
        let in_chunks: u64 = chunks.iter().map(|c| u64::from(c.point_count)).sum();
        let bytes: u64 = chunks.iter().map(|c| c.location.length).sum();
        let selector = tsdb_render::notation::selector(
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
        println!("series {id} {selector}");
        println!(
            "  {} chunks, {in_chunks} points in chunks, {points} distinct points readable, \
             {bytes} bytes",
            chunks.len()
        );
        println!(
            "  {:>8} {:>10} {:>8}  {:<24} {:<24} {:>7} {:>7} {:>8}",
            "segment", "offset", "bytes", "first", "last", "points", "codec", "B/point"
        );
        for c in &chunks {
            println!(
                "  {:>8} {:>10} {:>8}  {:<24} {:<24} {:>7} {:>7} {:>8.3}",
                c.location.segment,
                c.location.offset,
                c.location.length,
                format_time(c.start_time),
                format_time(c.end_time),
                c.point_count,
                codec_name(c.codec.0),
                c.location.length as f64 / f64::from(c.point_count.max(1))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
