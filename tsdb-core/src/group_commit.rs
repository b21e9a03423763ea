//! Group commit: many tasks wait for a position to become durable, one sync serves them all.
//!
//! Shared by every append-only file of the workspace (the WAL, the disk engine's segments):
//! it knows nothing about files. The caller numbers what it writes with a monotonically
//! increasing `u64` position (an LSN, a byte count), writes first, then calls
//! [`GroupCommit::wait_durable`] with the position of its last write and a `sync` closure.
//!
//! Leader/follower scheme: the first waiter whose position is not durable takes the leader
//! lock and runs `sync`, which must make durable *everything written so far* and return the
//! highest position it covered (a snapshot taken *before* syncing). Waiters that arrive while
//! a sync runs queue (asynchronously, no thread blocked) on the leader lock; when it is
//! released, the next one either finds its position already covered and returns at once, or
//! becomes the next leader and syncs everything written meanwhile in one go. So with `n`
//! concurrent writers there are about two syncs per "round" instead of `n`. A leader whose
//! future is dropped mid-sync releases the lock with it, so another waiter takes over.
//!
//! What a failed sync means is the caller's to decide: after a failed fsync the kernel may
//! have dropped dirty pages, so a file engine's closure records the failure and fails every
//! later call at once (poisoning) instead of retrying.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use tsdb_core::group_commit::GroupCommit;
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let written = AtomicU64::new(0);
//! let commit = GroupCommit::new(0);
//! let pos = written.fetch_add(10, Ordering::SeqCst) + 10; // "wrote" 10 bytes
//! commit
//!     .wait_durable(pos, || async {
//!         let upto = written.load(Ordering::SeqCst); // snapshot, then sync (fsync here)
//!         Ok(upto)
//!     })
//!     .await?;
//! assert_eq!(commit.durable(), 10);
//! # Ok::<(), tsdb_core::Error>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Result;

/// Coordinates waiters on a durable-position watermark.
#[derive(Debug)]
pub struct GroupCommit {
    /// Every position `<=` this is durable.
    durable: AtomicU64,
    /// Held by the task running a sync.
    leader: tokio::sync::Mutex<()>,
    /// Completed syncs (for stats).
    syncs: AtomicU64,
}

impl GroupCommit {
    /// A watermark that starts at `durable` (everything up to it is already durable).
    pub fn new(durable: u64) -> Self {
        GroupCommit {
            durable: AtomicU64::new(durable),
            leader: tokio::sync::Mutex::new(()),
            syncs: AtomicU64::new(0),
        }
    }

    /// The highest position known durable.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Notes that everything up to `position` became durable without [`Self::wait_durable`]
    /// (a file fsynced when it was sealed, say).
    pub fn note_durable(&self, position: u64) {
        self.durable.fetch_max(position, Ordering::AcqRel);
    }

    /// How many syncs ran to completion.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Returns once `target` is durable, running `sync` (as the leader) when needed.
    ///
    /// `sync` must snapshot the highest written position, make everything up to it durable and
    /// return that position. An error from `sync` is returned to the leader only; the next
    /// waiter retries with its own call (a caller that must not retry after a failed sync,
    /// e.g. fsync, makes its closure fail fast).
    pub async fn wait_durable<F, Fut>(&self, target: u64, mut sync: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<u64>>,
    {
        while self.durable() < target {
            let _leader = self.leader.lock().await;
            if self.durable() >= target {
                break;
            }
            let reached = sync().await?;
            self.syncs.fetch_add(1, Ordering::Relaxed);
            let before = self.durable.fetch_max(reached, Ordering::AcqRel);
            if reached <= before && reached < target {
                // The sync did not cover our position and made no progress: the caller broke
                // the contract (wrote after snapshotting). Bail out instead of spinning.
                return Err(crate::Error::invalid_input(format!(
                    "group commit: sync covered position {reached} but {target} was awaited"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_syncs() {
        let gc = Arc::new(GroupCommit::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let gc = gc.clone();
            let written = written.clone();
            tasks.push(tokio::spawn(async move {
                let pos = written.fetch_add(1, Ordering::SeqCst) + 1;
                gc.wait_durable(pos, || {
                    let snapshot = written.load(Ordering::SeqCst);
                    async move {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        Ok(snapshot)
                    }
                })
                .await
                .expect("sync");
                assert!(gc.durable() >= pos);
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(gc.durable(), 64);
        assert!(gc.syncs() < 64, "{} syncs for 64 waiters", gc.syncs());
    }

    #[tokio::test]
    async fn sync_error_reaches_the_leader_and_is_retried_by_the_next() {
        let gc = GroupCommit::new(0);
        let err = gc
            .wait_durable(1, || async { Err(crate::Error::invalid_input("boom")) })
            .await;
        assert!(err.is_err());
        assert_eq!(gc.durable(), 0);
        gc.wait_durable(1, || async { Ok(1) }).await.expect("retry");
        assert_eq!(gc.durable(), 1);
        // Already durable: the closure is not called.
        gc.wait_durable(1, || async { panic!("must not sync") })
            .await
            .expect("no-op");
    }
}
