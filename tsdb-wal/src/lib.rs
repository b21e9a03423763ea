#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod format;
mod latency;
mod replay;
mod scan;
mod wal;

pub use latency::{FSYNC_BUCKET_BOUNDS, FsyncLatency};
pub use replay::Replay;
pub use scan::{SALVAGE_LIMIT, WalDamage};
pub use wal::{Lsn, Wal, WalCheckpoint, WalConfig, WalDurability, WalRecovery, WalStats};
