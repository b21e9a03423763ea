//! The database's life: open, closing, shut down; the wake-ups its background tasks sleep
//! on; the tasks themselves and the directory lock, held until the database is closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::task::JoinHandle;
use tsdb_core::{DirLock, Error, Result};

/// Where the database is in its life, and what its background tasks wait on.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// `close` was called: no more reads or writes.
    closing: AtomicBool,
    /// The background tasks stop.
    shutdown: AtomicBool,
    /// Wakes every task that sleeps between retries, at shutdown.
    stopping: Notify,
    /// Wakes the maintenance task early (memory pressure, a lost index, shutdown).
    maintenance: Notify,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Held until `close` or drop: one process (and handle) per data directory.
    dir_lock: Mutex<Option<DirLock>>,
}

impl Lifecycle {
    pub(crate) fn new(dir_lock: Option<DirLock>) -> Self {
        Lifecycle {
            closing: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            stopping: Notify::new(),
            maintenance: Notify::new(),
            tasks: Mutex::new(Vec::new()),
            dir_lock: Mutex::new(dir_lock),
        }
    }

    /// [`Error::Closed`] once `close` was called.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closing.load(Ordering::Relaxed) {
            Err(Error::Closed { engine: "database" })
        } else {
            Ok(())
        }
    }

    /// Starts closing; `false` when another call already did.
    pub(crate) fn begin_close(&self) -> bool {
        !self.closing.swap(true, Ordering::SeqCst)
    }

    /// True once the background tasks are told to stop.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Tells the background tasks to stop and wakes those that sleep.
    pub(crate) fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.maintenance.notify_one();
        self.stopping.notify_waiters();
    }

    /// Sleeps for `pause`, or less when the database shuts down meanwhile.
    pub(crate) async fn pause(&self, pause: Duration) {
        // Registered before the check, so a shutdown in between is not missed.
        let stopping = self.stopping.notified();
        if !self.is_shut_down() {
            let _ = tokio::time::timeout(pause, stopping).await;
        }
    }

    /// Wakes the maintenance task now.
    pub(crate) fn wake_maintenance(&self) {
        self.maintenance.notify_one();
    }

    /// What the maintenance task sleeps on between rounds.
    pub(crate) fn maintenance_wakeup(&self) -> Notified<'_> {
        self.maintenance.notified()
    }

    /// The background tasks started at open.
    pub(crate) fn set_tasks(&self, tasks: Vec<JoinHandle<()>>) {
        *self.tasks.lock().unwrap_or_else(PoisonError::into_inner) = tasks;
    }

    /// The background tasks, for `close` to wait for.
    pub(crate) fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Lets another opener take the directory.
    pub(crate) fn release_dir(&self) {
        self.dir_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
