//! Checkpoints: the WAL truncated behind what storage holds durably, and the checkpoint mark
//! that tells the next open where replay starts and how far the logs went (the
//! [`Checkpointer`] is their state).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::RwLock;
use tsdb_core::{Error, Result};
use tsdb_wal::{Lsn, Wal};

use super::Inner;
use crate::checkpoint_mark::{self, Mark};

/// How often the log ends are recorded between checkpoints while the logs grow.
const MARK_INTERVAL: Duration = Duration::from_millis(250);

/// The checkpoint's state.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    /// Writers hold it shared from WAL append to head apply; the checkpoint takes it
    /// exclusively so that no WAL record is between the two when it reads the heads' LSNs.
    pub(crate) apply_gate: RwLock<()>,
    /// Serialises checkpoints and marks (the maintenance task's, the marker's and `flush`'s).
    one_at_a_time: tokio::sync::Mutex<()>,
    /// `needed_from` of the newest checkpoint mark.
    marked_needed_from: AtomicU64,
    /// The mark last written.
    last_mark: Mutex<Option<Mark>>,
}

impl Checkpointer {
    /// The state after opening with the mark that said `needed_from`.
    pub(crate) fn new(needed_from: u64) -> Self {
        Checkpointer {
            apply_gate: RwLock::new(()),
            one_at_a_time: tokio::sync::Mutex::new(()),
            marked_needed_from: AtomicU64::new(needed_from),
            last_mark: Mutex::new(None),
        }
    }
}

impl Inner {
    /// Truncates the WAL before the oldest record whose points are not yet durable chunks.
    pub(super) async fn checkpoint(&self) -> Result<()> {
        let _one_at_a_time = self.checkpointer.one_at_a_time.lock().await;
        let keep_from = {
            let _exclusive = self.checkpointer.apply_gate.write().await;
            self.heads
                .min_lsn()
                .unwrap_or_else(|| self.wal.next_lsn().get())
        };
        self.engines.storage.sync().await?;
        // The mark records how far the logs are durable: make that everything written.
        self.wal.sync().await?;
        self.catalog.sync().await?;
        // The series these chunks marked for the rollup tiers to build again, before the WAL
        // records that would mark them again on replay go.
        self.tiers.persist(&self.config.data_dir)?;
        // The mark first, then the truncation: the mark never names a deleted segment. It
        // lets the next open skip the records already in chunks and tells it how far the
        // logs went.
        self.write_mark(keep_from, false).await?;
        self.wal.truncate_before(Lsn(keep_from)).await?;
        Ok(())
    }

    /// Durably records the checkpoint mark: WAL records before `needed_from` are in chunks,
    /// and the logs hold every record they have made durable so far.
    pub(crate) async fn write_mark(&self, needed_from: u64, clean: bool) -> Result<()> {
        let durable = |wal: &Wal| wal.stats().durable_lsn.map_or(1, |l| l.get() + 1);
        self.checkpointer
            .marked_needed_from
            .fetch_max(needed_from, Ordering::SeqCst);
        let mark = Mark {
            needed_from,
            wal_written_before: if clean {
                self.wal.next_lsn().get()
            } else {
                durable(&self.wal)
            },
            catalog_written_before: if clean {
                self.catalog.next_lsn().get()
            } else {
                durable(&self.catalog)
            },
            wal_active: self.wal.active_segment().get(),
            catalog_active: self.catalog.active_segment().get(),
            clean,
        };
        if !clean
            && self
                .checkpointer
                .last_mark
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                == Some(&mark)
        {
            return Ok(());
        }
        let dir = self.config.data_dir.clone();
        tokio::task::spawn_blocking(move || checkpoint_mark::write(&dir, mark))
            .await
            .map_err(|e| Error::task_failed("checkpoint mark", e))??;
        *self
            .checkpointer
            .last_mark
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(mark);
        Ok(())
    }

    /// Between checkpoints, records how far the logs are durable every [`MARK_INTERVAL`]
    /// while they grow, so that a cut or removed log segment loses no more than that window
    /// silently (a torn write and a cut of the newest records look alike; older records are
    /// known to the mark, and their loss is reported).
    pub(super) async fn keep_log_ends_marked(self: Arc<Self>) {
        loop {
            if self.lifecycle.is_shut_down() {
                return;
            }
            self.lifecycle.pause(MARK_INTERVAL).await;
            if self.lifecycle.is_shut_down() {
                return;
            }
            let _one_at_a_time = self.checkpointer.one_at_a_time.lock().await;
            let needed_from = self.checkpointer.marked_needed_from.load(Ordering::SeqCst);
            if let Err(e) = self.write_mark(needed_from, false).await {
                tracing::warn!("recording the log ends failed: {e}");
            }
        }
    }
}
