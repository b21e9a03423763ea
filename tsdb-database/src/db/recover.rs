//! Opening: recovery from the catalog, storage and the WAL.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use tsdb_core::{ChunkLocation, ChunkReference, CodecId, Result, SeriesId, TimeRange};
use tsdb_wal::{Replay, WalDamage};

use super::Inner;
use crate::checkpoint_mark::Mark;
use crate::damage::Damage;
use crate::records;

impl Inner {
    /// Rebuilds memory state on open: series from the catalog, the index from storage, heads
    /// from the WAL; records every loss found on the way in the damage log. Returns whether
    /// needed WAL records were skipped (with [`tsdb_wal::WalRecovery::SkipDamaged`]).
    pub(super) async fn recover(&self, catalog: Replay, wal: Replay, mark: Mark) -> Result<bool> {
        for d in catalog.damage() {
            self.record_log_damage(d, "series catalog")?;
        }
        let mut known = BTreeMap::new();
        for record in catalog {
            let (_, record) = record?;
            let (id, labels) = records::decode_series(&record)?;
            known.insert(id, labels);
        }
        for (id, labels) in &known {
            self.engines.index.register_series(*id, labels).await?;
            self.heads.register(*id);
        }
        // Make the index agree with storage: add what it lacks, drop what storage lost.
        let mut stored: BTreeMap<SeriesId, Vec<ChunkReference>> = BTreeMap::new();
        let mut rollups = Vec::new();
        for chunk in self.engines.storage.list_chunks().await? {
            if chunk.codec == CodecId::ROLLUP {
                rollups.push(chunk);
                continue;
            }
            // The out-of-order window holds against stored points too, not only buffered ones.
            self.heads.observe(chunk.series_id, chunk.end_time);
            stored.entry(chunk.series_id).or_default().push(chunk);
        }
        let unknown = self.tiers.adopt(rollups, |id| known.contains_key(&id));
        if unknown > 0 {
            tracing::info!(
                chunks = unknown,
                "rollup chunks of tiers not configured now are kept, unused"
            );
        }
        for d in self.engines.storage.damage().await? {
            self.damage.record(Damage {
                source: d.source,
                offset: d.offset,
                length: d.length,
                reason: d.reason,
                series: d.chunk.map(|c| c.series_id),
                range: d.chunk.map(|c| TimeRange {
                    start: c.start_time,
                    end: c.end_time,
                }),
                accepted: false,
            })?;
        }
        for (series, chunks) in &stored {
            if !known.contains_key(series) {
                self.record_unlabeled(*series, chunks.iter().map(|c| (c.start_time, c.end_time)))?;
                continue;
            }
            let indexed = self
                .engines
                .index
                .query_chunks(*series, TimeRange::ALL)
                .await?;
            for chunk in chunks {
                if !indexed.iter().any(|c| c.location == chunk.location) {
                    self.engines.index.add_chunk(chunk).await?;
                }
            }
            let dangling: Vec<ChunkLocation> = indexed
                .iter()
                .filter(|c| !chunks.iter().any(|s| s.location == c.location))
                .map(|c| c.location)
                .collect();
            if !dangling.is_empty() {
                self.engines.index.remove_chunks(*series, &dangling).await?;
            }
        }
        let mut skipped = false;
        for d in wal.damage() {
            skipped |= d.needed;
            self.record_log_damage(d, "WAL")?;
        }
        // Replay: the last write of each timestamp wins. Points that storage already holds
        // with the same value (written as chunks before the crash, while their WAL records
        // were kept) are not buffered again.
        let records = wal.record_count();
        let mut writes: HashMap<SeriesId, Vec<(i64, u64, f64)>> = HashMap::new();
        for record in wal {
            let (lsn, record) = record?;
            if lsn.get() < mark.needed_from {
                continue;
            }
            for (series, points) in records::decode_points(&record)? {
                let w = writes.entry(series).or_default();
                w.extend(points.iter().map(|&(t, v)| (t, lsn.get(), v)));
            }
        }
        let (mut replayed, mut already_stored) = (0u64, 0u64);
        for (series, mut points) in writes {
            // Stable sort by timestamp keeps WAL order among equal timestamps; keep the last.
            points.sort_by_key(|p| p.0);
            let mut finals: Vec<(i64, u64, f64)> = Vec::with_capacity(points.len());
            for p in points {
                match finals.last_mut() {
                    Some(last) if last.0 == p.0 => *last = p,
                    _ => finals.push(p),
                }
            }
            let (Some(first), Some(last)) = (finals.first(), finals.last()) else {
                continue;
            };
            let range = TimeRange {
                start: first.0,
                end: last.0,
            };
            if !known.contains_key(&series) {
                // Kept (they go into chunks), but no query can select them without labels.
                self.record_unlabeled(series, [(range.start, range.end)])?;
            }
            // The chunks these records went into may have been stored without the rollup
            // tiers' mark being kept (it is kept at the checkpoint that would drop these
            // records): marked again.
            self.tiers.note_written(series, range.start);
            let (stored_ts, stored_vs) = self.read_stored(series, range).await?;
            let shard = self.heads.shard_of(series);
            for (t, lsn, v) in finals {
                let stored = stored_ts
                    .binary_search(&t)
                    .ok()
                    .is_some_and(|i| stored_vs[i].to_bits() == v.to_bits());
                if stored {
                    already_stored += 1;
                } else {
                    self.heads.apply(shard, lsn, &[(series, &[(t, v)])]);
                    replayed += 1;
                }
            }
        }
        self.heads
            .points_replayed
            .store(replayed, Ordering::Relaxed);
        if records > 0 {
            tracing::info!(
                "WAL replay: {records} records, {replayed} points buffered again, {already_stored} already in chunks"
            );
        }
        Ok(skipped)
    }

    /// Records WAL or catalog damage that open found: needed records that were skipped are a
    /// loss the operator accepted by asking for `SkipDamaged`; damage behind the checkpoint
    /// only a warning (logged by the WAL, not recorded).
    fn record_log_damage(&self, d: &WalDamage, log: &str) -> Result<()> {
        if !d.needed {
            return Ok(());
        }
        let to = d
            .lost_to
            .map_or_else(|| "the end".to_owned(), |l| format!("LSN {}", l.get() - 1));
        let salvaged = salvage(d);
        let named = if salvaged.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = salvaged
                .iter()
                .map(|(s, r)| match r {
                    Some(r) => format!("{s} (times {}..={})", r.start, r.end),
                    None => s.to_string(),
                })
                .collect();
            format!(
                "; the damaged bytes still name series {} (unverified)",
                list.join(", ")
            )
        };
        let damage = |series, range| Damage {
            source: d.segment.display().to_string(),
            offset: d.offset,
            length: d.bytes,
            reason: format!(
                "{log} records from LSN {} to {to} were skipped (recovery = SkipDamaged): {}{named}",
                d.lost_from.get(),
                d.reason
            ),
            series,
            range,
            accepted: true,
        };
        self.damage.record(damage(None, None))?;
        for (series, range) in salvaged {
            self.damage.record(damage(Some(series), range))?;
        }
        Ok(())
    }
    /// Records that points of `series` exist (in chunks or the WAL) while the catalog has no
    /// labels for it. No query can select the series, and any matcher might have selected
    /// it, so the damage covers every series over those times.
    fn record_unlabeled(
        &self,
        series: SeriesId,
        ranges: impl IntoIterator<Item = (i64, i64)>,
    ) -> Result<()> {
        let (mut start, mut end) = (i64::MAX, i64::MIN);
        for (s, e) in ranges {
            start = start.min(s);
            end = end.max(e);
        }
        self.damage.record(Damage {
            source: self.config.data_dir.join("series").display().to_string(),
            offset: 0,
            length: 0,
            reason: format!(
                "the series catalog has no labels for series {series} (the catalog lost records): its points are kept, but no query can select them"
            ),
            series: None,
            range: (start <= end).then_some(TimeRange { start, end }),
            accepted: false,
        })?;
        Ok(())
    }
}

/// What the damaged bytes of a WAL or catalog record still say: the series (and, for point
/// records, the time range) of every record-shaped run of bytes whose LSN lies in the lost
/// range and whose payload still decodes. The checksum failed, so none of it is trusted; it
/// only tells the operator what was probably lost.
fn salvage(d: &WalDamage) -> Vec<(SeriesId, Option<TimeRange>)> {
    let bytes = &d.content;
    let lost_to = d.lost_to.map_or(u64::MAX, |l| l.get());
    let mut found: BTreeMap<SeriesId, Option<TimeRange>> = BTreeMap::new();
    let mut at = 0usize;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let mut lsn = [0u8; 8];
        lsn.copy_from_slice(&bytes[at + 8..at + 16]);
        let lsn = u64::from_le_bytes(lsn);
        let payload = bytes.get(at + 16..(at + 16).saturating_add(len as usize));
        let (Some(payload), true) = (payload, (d.lost_from.get()..lost_to).contains(&lsn)) else {
            at += 1;
            continue;
        };
        if let Ok(groups) = records::decode_points(payload) {
            for (series, points) in groups {
                let (lo, hi) = points.iter().fold((i64::MAX, i64::MIN), |(lo, hi), p| {
                    (lo.min(p.0), hi.max(p.0))
                });
                let range = found.entry(series).or_insert(None);
                if lo <= hi {
                    *range = Some(match *range {
                        Some(r) => TimeRange {
                            start: r.start.min(lo),
                            end: r.end.max(hi),
                        },
                        None => TimeRange { start: lo, end: hi },
                    });
                }
            }
        } else if let Ok((series, _)) = records::decode_series(payload) {
            found.entry(series).or_insert(None);
        } else {
            at += 1;
            continue;
        }
        at += 16 + len as usize;
    }
    found.into_iter().collect()
}
