//! Maintenance, the background task that keeps the database in shape: seals heads that are
//! old or too many, rebuilds an index that lost its state, checkpoints the WAL and applies
//! retention, each on its own schedule.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tsdb_core::{CodecId, Error, Result};

use super::Inner;
use crate::records;

impl Inner {
    /// Registers every series of the catalog and adds every stored chunk to the index again,
    /// after the index reported that its backend lost state (a Redis restarted empty); reads
    /// fail with [`Error::StateLost`] until this is done.
    pub(super) async fn rebuild_index(&self) -> Result<()> {
        let dir = self.config.data_dir.join("series");
        let (_log, catalog) = tsdb_wal::Wal::open(
            &dir,
            tsdb_wal::WalConfig {
                read_only: true,
                recovery: tsdb_wal::WalRecovery::SkipDamaged,
                ..tsdb_wal::WalConfig::default()
            },
        )
        .await?;
        let mut series = 0usize;
        for record in catalog {
            let (_, record) = record?;
            let (id, labels) = records::decode_series(&record)?;
            self.engines.index.register_series(id, &labels).await?;
            series += 1;
        }
        let chunks = self.engines.storage.list_chunks().await?;
        for chunk in chunks.iter().filter(|c| c.codec != CodecId::ROLLUP) {
            match self.engines.index.add_chunk(chunk).await {
                Ok(()) | Err(Error::SeriesNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.engines.index.mark_rebuilt().await?;
        tracing::warn!(
            series,
            chunks = chunks.len(),
            "the index lost its state and was rebuilt from the catalog and storage"
        );
        Ok(())
    }

    /// Seals old or oversized heads, truncates the WAL behind what storage holds, applies
    /// retention.
    pub(super) async fn maintenance(self: Arc<Self>) {
        let tick = (self.config.flush_interval / 8)
            .min(self.config.checkpoint_interval)
            .clamp(Duration::from_millis(10), Duration::from_secs(10));
        let mut last_checkpoint = tokio::time::Instant::now();
        let mut last_retention = tokio::time::Instant::now();
        loop {
            let _ = tokio::time::timeout(tick, self.lifecycle.maintenance_wakeup()).await;
            if self.lifecycle.is_shut_down() {
                return;
            }
            let mut sealed = self.heads.seal_older_than(self.config.flush_interval);
            if self.heads.buffered_points.load(Ordering::Relaxed) > self.config.max_buffered_points
            {
                let largest = (self.config.chunk_max_points as usize / 4).max(1);
                sealed += self.heads.seal_larger_than(largest);
                if self.heads.buffered_points.load(Ordering::Relaxed)
                    > self.config.max_buffered_points
                {
                    sealed += self.heads.seal_all();
                }
            }
            if sealed > 0 {
                self.flusher.wake_all();
            }
            let lost = self.index_lost.swap(false, Ordering::SeqCst)
                || self.engines.index.state_lost().await.unwrap_or(false);
            if lost && let Err(e) = self.rebuild_index().await {
                tracing::warn!("rebuilding the index failed (will retry): {e}");
                self.index_lost.store(true, Ordering::SeqCst);
            }
            self.delete_retired().await;
            if last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                last_checkpoint = tokio::time::Instant::now();
                if let Err(e) = self.checkpoint().await {
                    tracing::warn!("WAL checkpoint failed: {e}");
                }
            }
            if self.config.retention.is_some()
                && last_retention.elapsed() >= Duration::from_secs(60)
            {
                last_retention = tokio::time::Instant::now();
                if let Err(e) = self.apply_retention().await {
                    tracing::warn!("retention failed: {e}");
                }
            }
        }
    }
}
