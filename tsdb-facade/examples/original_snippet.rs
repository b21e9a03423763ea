//! The API sketch from the original design, unchanged. It needs a Redis server on
//! `localhost:6379` and a writable `/var/lib/tsdb`:
//!
//! ```text
//! cargo run -p tsdb-facade --features index-redis --example original_snippet
//! ```

// The sketch binds `db` and imports `DataPoint` without using them; keep it as written.
#![allow(unused_variables, unused_imports)]

use gorilla_tsdb::{DataPoint, DatabaseConfig, TimeSeriesDBBuilder};
use std::path::PathBuf;
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = DatabaseConfig {
        data_dir: PathBuf::from("/var/lib/tsdb"),
        redis_url: Some("redis://localhost:6379".to_string()),
        ..Default::default()
    };
    let db = TimeSeriesDBBuilder::new()
        .with_compressor(gorilla_tsdb::compression::GorillaCompressor::new())
        .with_config(config)
        .build()
        .await?;
    Ok(())
}
