//! [`DirLock`]: one writer per directory, enforced by the operating system.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// An exclusive advisory lock (`flock(2)`) on a directory itself, held until dropped.
///
/// Every store that writes a directory (the database, the disk engine, the WAL) takes one
/// before it reads or repairs anything there, so a second opener fails with
/// [`Error::InUse`] instead of truncating files under a live writer. The lock is on the
/// directory's own inode, not on a file inside it: deleting or replacing files in the
/// directory cannot defeat it, and the kernel releases it when the holder dies (SIGKILL
/// included). Two handles of one process conflict too.
///
/// ```
/// # let tmp = tempfile::tempdir().expect("temp dir");
/// use tsdb_core::DirLock;
/// use std::time::Duration;
/// let held = DirLock::acquire(tmp.path(), "example", Duration::ZERO)?;
/// assert!(DirLock::acquire(tmp.path(), "example", Duration::ZERO).is_err());
/// drop(held);
/// assert!(DirLock::acquire(tmp.path(), "example", Duration::ZERO).is_ok());
/// # Ok::<(), tsdb_core::Error>(())
/// ```
#[derive(Debug)]
pub struct DirLock {
    _dir: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (which must exist) for `holder` (e.g. `"database"`), retrying for up to
    /// `wait` while another handle holds it (a handle dropped without closing releases it once
    /// its background tasks stop). Blocks the calling thread: call it from blocking code.
    pub fn acquire(dir: &Path, holder: &'static str, wait: Duration) -> Result<DirLock> {
        let file = File::open(dir).map_err(|e| Error::io(dir.display(), e))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(DirLock {
                        _dir: file,
                        path: dir.to_path_buf(),
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        return Err(Error::InUse {
                            path: dir.display().to_string(),
                            holder,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format_args!("locking {}", dir.display()), e));
                }
            }
        }
    }

    /// The locked directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
