//! Snapshots: a consistent copy of the database in another directory, which opens as a
//! database of its own.

use std::path::Path;

use tsdb_core::{ChunkReference, Error, Result};

use super::{Inner, TimeSeriesDB};
use crate::builder::TimeSeriesDBBuilder;
use crate::config::DatabaseConfig;
use crate::records;
use crate::tombstones::remove_hidden;

/// What [`crate::TimeSeriesDB::snapshot`] copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Series registered in the copy.
    pub series: u64,
    /// Chunks written to the copy.
    pub chunks: u64,
    /// Points in those chunks.
    pub points: u64,
}

impl Inner {
    /// Copies everything written before the call into a new database in `dir` (which must
    /// not exist or be empty), through its default engines and this database's codec: the
    /// series catalog, every stored chunk in write order (so the last write of a timestamp
    /// still wins), deleted points left out, and the damage log. The copy is built in
    /// `<dir>.partial` and renamed to `dir` when complete.
    pub(super) async fn snapshot(&self, dir: &Path) -> Result<SnapshotStats> {
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::invalid_input(format_args!(
                "snapshot directory {} is not empty",
                dir.display()
            )));
        }
        // Everything acknowledged so far into chunks: the chunks are then the whole state.
        self.flush_all().await?;
        // The chunks listed stay in storage until the copy is done.
        let _pin = self.compactor.pin();
        let mut chunks = self.engines.storage.list_chunks().await?;
        chunks.sort_by_key(|c| c.location);
        let series = self.catalog_series().await?;

        // Built beside `dir` and renamed into place once complete: a snapshot cut short (a
        // crash, a full disk) never looks like a whole one.
        let name = dir.file_name().ok_or_else(|| {
            Error::invalid_input(format_args!(
                "snapshot directory {} has no name",
                dir.display()
            ))
        })?;
        let mut partial_name = name.to_os_string();
        partial_name.push(".partial");
        let partial = dir.with_file_name(partial_name);
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(|e| Error::io(partial.display(), e))?;
        }
        let copy = TimeSeriesDBBuilder::new()
            .with_config(DatabaseConfig {
                data_dir: partial.clone(),
                redis_url: None,
                read_only: false,
                ..self.config.clone()
            })
            .with_compressor(self.engines.compressor.clone())
            .with_cold_compressor(self.engines.cold.clone())
            .build()
            .await?;
        let result = self.copy_into(&copy, &series, &chunks).await;
        let closed = copy.close().await;
        let stats = result?;
        closed?;
        if dir.exists() {
            // Empty (checked above): replaced by the complete copy.
            std::fs::remove_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
        }
        std::fs::rename(&partial, dir).map_err(|e| Error::io(dir.display(), e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(parent.display(), e))?;
        }
        Ok(stats)
    }

    async fn copy_into(
        &self,
        copy: &TimeSeriesDB,
        series: &[(tsdb_core::SeriesId, tsdb_core::Labels)],
        chunks: &[ChunkReference],
    ) -> Result<SnapshotStats> {
        let target = copy.inner();
        let mut stats = SnapshotStats::default();
        for batch in series.chunks(1024) {
            let pairs: Vec<_> = batch.iter().map(|(id, labels)| (*id, labels)).collect();
            target.register_new(&pairs).await?;
            stats.series += batch.len() as u64;
        }
        // The tiers' state first: the copy then reads every tier the source reads.
        target.tiers.copy_state_of(&self.tiers);
        let known: std::collections::HashSet<tsdb_core::SeriesId> =
            series.iter().map(|(id, _)| *id).collect();
        for chunk in chunks {
            let block = self.engines.storage.read_chunk(&chunk.location).await?;
            if chunk.codec == tsdb_core::CodecId::ROLLUP {
                // The tiers' chunks as they are, with the tiers' state below.
                let location = target.engines.storage.write_chunk(&block).await?;
                target
                    .tiers
                    .adopt([ChunkReference::new(&block, location)], |id| {
                        known.contains(&id)
                    });
                stats.chunks += 1;
                continue;
            }
            let hidden = self.tombstones.hiding(chunk);
            let block = if hidden.is_empty() {
                block
            } else {
                let (mut ts, mut vs) = (Vec::new(), Vec::new());
                self.decoder
                    .decode_into(chunk, &block, tsdb_core::TimeRange::ALL, &mut ts, &mut vs)
                    .await?;
                remove_hidden(&mut ts, &mut vs, 0, &hidden);
                if ts.is_empty() {
                    continue;
                }
                target
                    .engines
                    .compressor
                    .compress_columns(chunk.series_id, &ts, &vs)
                    .await?
            };
            let location = target.engines.storage.write_chunk(&block).await?;
            match target
                .engines
                .index
                .add_chunk(&ChunkReference::new(&block, location))
                .await
            {
                // A chunk whose series lost its labels: kept in storage, as here.
                Ok(()) | Err(Error::SeriesNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            stats.chunks += 1;
            stats.points += u64::from(block.point_count);
        }
        for damage in self.damage.all() {
            target.damage.record(damage)?;
        }
        target.tiers.persist(&target.config.data_dir)?;
        Ok(stats)
    }

    /// Every series of the catalog with its labels.
    async fn catalog_series(&self) -> Result<Vec<(tsdb_core::SeriesId, tsdb_core::Labels)>> {
        let (_log, records) = tsdb_wal::Wal::open(
            self.config.data_dir.join("series"),
            tsdb_wal::WalConfig {
                read_only: true,
                recovery: tsdb_wal::WalRecovery::SkipDamaged,
                ..tsdb_wal::WalConfig::default()
            },
        )
        .await?;
        let mut out = Vec::new();
        for record in records {
            let (_, record) = record?;
            out.push(records::decode_series(&record)?);
        }
        out.sort_by_key(|(id, _)| *id);
        out.dedup_by_key(|(id, _)| *id);
        Ok(out)
    }
}
