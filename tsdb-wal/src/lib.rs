#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod format;
mod replay;
mod scan;
mod wal;

pub use replay::Replay;
pub use scan::{SALVAGE_LIMIT, WalDamage};
pub use wal::{Lsn, Wal, WalCheckpoint, WalConfig, WalDurability, WalRecovery, WalStats};
