//! `gorilla-tsdb serve`: the database as an HTTP service (the `tsdb-server` crate).
//!
//! Settings come from, in order of precedence: flags, `GORILLA_TSDB_*` environment
//! variables (each flag names its own), the TOML file of `--config`, the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gorilla_tsdb::{DatabaseConfig, Error, TimeSeriesDBBuilder, WalDurability, WalRecovery};
use tsdb_server::config::parse_wal_durability;
use tsdb_server::{AppState, ConfigFile, ServerOptions};

/// Where the server listens unless told otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:9201";

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:9201; port 0 picks a free one, printed on
    /// stderr).
    #[arg(long, env = "GORILLA_TSDB_LISTEN")]
    listen: Option<SocketAddr>,

    /// A TOML file of settings: `[http]`, `[database]` (the fields of DatabaseConfig),
    /// `[query]`, `[write]`; durations like `15d`, `2m`, `500ms`. Flags win over it.
    #[arg(long, env = "GORILLA_TSDB_CONFIG")]
    config: Option<PathBuf>,

    /// Delete chunks older than this (by data time), e.g. `15d`. Default: keep everything.
    #[arg(long, env = "GORILLA_TSDB_RETENTION", value_parser = crate::duration_flag)]
    retention: Option<Duration>,

    /// When writes are fsynced before they are acknowledged: `always` (the default),
    /// `never`, or an interval such as `10ms`.
    #[arg(long, env = "GORILLA_TSDB_WAL_DURABILITY", value_parser = durability)]
    wal_durability: Option<WalDurability>,

    /// Seal a head buffer into a chunk this long after its first point, e.g. `1h`.
    #[arg(long, env = "GORILLA_TSDB_FLUSH_INTERVAL", value_parser = crate::duration_flag)]
    flush_interval: Option<Duration>,

    /// How far behind its series' newest point a point is still accepted, e.g. `10m`.
    /// Default: any point (older ones go to out-of-order chunks).
    #[arg(long, env = "GORILLA_TSDB_OUT_OF_ORDER_WINDOW", value_parser = crate::duration_flag)]
    out_of_order_window: Option<Duration>,

    /// How far ahead of the clock a point may be, e.g. `10m` (the default); `none` accepts
    /// any timestamp.
    #[arg(long, env = "GORILLA_TSDB_FUTURE_TOLERANCE", value_parser = crate::optional_duration_flag)]
    future_tolerance: Option<crate::OptionalDuration>,

    /// Points per chunk.
    #[arg(long, env = "GORILLA_TSDB_CHUNK_MAX_POINTS")]
    chunk_max_points: Option<u32>,

    /// Keep the index in Redis at this URL (e.g. `redis://127.0.0.1:6379`).
    #[arg(long, env = "GORILLA_TSDB_REDIS_URL")]
    redis_url: Option<String>,

    /// Longest a query may run (Prometheus's --query.timeout), e.g. `2m`.
    #[arg(long = "query.timeout", env = "GORILLA_TSDB_QUERY_TIMEOUT", value_parser = crate::duration_flag)]
    query_timeout: Option<Duration>,

    /// Most samples a query may hold in memory at once (Prometheus's --query.max-samples).
    #[arg(long = "query.max-samples", env = "GORILLA_TSDB_QUERY_MAX_SAMPLES")]
    query_max_samples: Option<usize>,

    /// Queries evaluated at once (Prometheus's --query.max-concurrency).
    #[arg(
        long = "query.max-concurrency",
        env = "GORILLA_TSDB_QUERY_MAX_CONCURRENCY"
    )]
    query_max_concurrency: Option<usize>,

    /// How far back an instant selector looks (Prometheus's --query.lookback-delta).
    #[arg(long = "query.lookback-delta", env = "GORILLA_TSDB_QUERY_LOOKBACK_DELTA", value_parser = crate::duration_flag)]
    query_lookback_delta: Option<Duration>,

    /// Largest request body, in bytes, as sent.
    #[arg(long = "http.max-body-bytes", env = "GORILLA_TSDB_HTTP_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,

    /// Longest any request may take, e.g. `5m`.
    #[arg(long = "http.request-timeout", env = "GORILLA_TSDB_HTTP_REQUEST_TIMEOUT", value_parser = crate::duration_flag)]
    request_timeout: Option<Duration>,

    /// Largest write body once decompressed, in bytes.
    #[arg(
        long = "write.max-decoded-bytes",
        env = "GORILLA_TSDB_WRITE_MAX_DECODED_BYTES"
    )]
    max_decoded_bytes: Option<usize>,

    /// Answer /api/v1/admin/tsdb/delete_series and /api/v1/admin/tsdb/snapshot (snapshots go
    /// to <data dir>/snapshots), as Prometheus's flag of the same name.
    #[arg(long = "web.enable-admin-api", env = "GORILLA_TSDB_ENABLE_ADMIN_API")]
    enable_admin_api: bool,

    /// Write requests processed at once; more wait, then get 503 with Retry-After.
    #[arg(
        long = "write.max-concurrency",
        env = "GORILLA_TSDB_WRITE_MAX_CONCURRENCY"
    )]
    write_max_concurrency: Option<usize>,
}

fn durability(text: &str) -> Result<WalDurability, String> {
    parse_wal_durability(text).map_err(|e| e.to_string())
}

/// What the global flags gave, when they were given (not defaults).
pub(crate) struct GlobalFlags {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) wal_recovery: Option<WalRecovery>,
}

/// The database and server settings from the file, then the flags.
fn settings(
    args: &ServeArgs,
    global: &GlobalFlags,
) -> Result<(DatabaseConfig, ServerOptions, SocketAddr), Error> {
    let mut db = DatabaseConfig::default();
    let mut server = ServerOptions::default();
    let mut listen = None;
    if let Some(path) = &args.config {
        let file = ConfigFile::load(path)?;
        file.apply(&mut db, &mut server)?;
        listen = file.http.listen;
    }
    if let Some(d) = &global.data_dir {
        db.data_dir.clone_from(d);
    }
    if let Some(r) = global.wal_recovery {
        db.wal_recovery = r;
    }
    fn set<T: Clone>(field: &mut T, value: &Option<T>) {
        if let Some(v) = value {
            *field = v.clone();
        }
    }
    if args.retention.is_some() {
        db.retention = args.retention;
    }
    set(&mut db.wal_durability, &args.wal_durability);
    set(&mut db.flush_interval, &args.flush_interval);
    set(&mut db.out_of_order_window, &args.out_of_order_window);
    if let Some(crate::OptionalDuration(f)) = args.future_tolerance {
        db.future_tolerance = f;
    }
    set(&mut db.chunk_max_points, &args.chunk_max_points);
    if args.redis_url.is_some() {
        db.redis_url.clone_from(&args.redis_url);
    }
    if args.enable_admin_api {
        server.enable_admin_api = true;
    }
    server.snapshot_dir = Some(db.data_dir.join("snapshots"));
    set(&mut server.query_timeout, &args.query_timeout);
    set(&mut server.query_max_samples, &args.query_max_samples);
    set(
        &mut server.query_max_concurrency,
        &args.query_max_concurrency,
    );
    set(&mut server.query_lookback_delta, &args.query_lookback_delta);
    set(&mut server.max_body_bytes, &args.max_body_bytes);
    set(&mut server.request_timeout, &args.request_timeout);
    set(&mut server.max_decoded_bytes, &args.max_decoded_bytes);
    set(
        &mut server.write_max_concurrency,
        &args.write_max_concurrency,
    );
    let listen = match args.listen.or(listen) {
        Some(a) => a,
        None => DEFAULT_LISTEN
            .parse()
            .map_err(|e| Error::invalid_input(format_args!("{DEFAULT_LISTEN}: {e}")))?,
    };
    Ok((db, server, listen))
}

pub(crate) async fn run(args: ServeArgs, global: GlobalFlags) -> Result<ExitCode, Error> {
    let (config, options, listen) = settings(&args, &global)?;
    // Listen first: a taken port costs nothing, not a database open and close.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::io(format_args!("listening on {listen}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io("the listening socket", e))?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Error::io(config.data_dir.display(), e))?;
    let data_dir = config.data_dir.clone();
    let db = Arc::new(
        TimeSeriesDBBuilder::new()
            .with_config(config)
            .build()
            .await?,
    );
    eprintln!(
        "gorilla-tsdb {} serving {} on http://{bound}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display()
    );
    let state = AppState::new(db.clone(), options);
    let served = tsdb_server::serve(listener, state, tsdb_server::shutdown_signal()).await;
    eprintln!("gorilla-tsdb: stopped accepting requests; closing the database");
    let closed = db.close().await;
    served.map_err(|e| Error::io("serving HTTP", e))?;
    closed?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("tsdb.toml");
        std::fs::write(
            &file,
            "[http]\nlisten = \"127.0.0.1:9999\"\n[database]\nretention = \"15d\"\nchunk_max_points = 77\n[query]\ntimeout = \"30s\"\n",
        )
        .expect("write");
        let args = Wrapper::try_parse_from([
            "x",
            "--config",
            file.to_str().expect("utf-8 path"),
            "--retention",
            "2d",
            "--query.max-samples",
            "123",
        ])
        .expect("parses")
        .serve;
        let global = GlobalFlags {
            data_dir: Some(dir.path().to_path_buf()),
            wal_recovery: None,
        };
        let (db, server, listen) = settings(&args, &global).expect("valid");
        assert_eq!(
            listen,
            "127.0.0.1:9999".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(db.retention, Some(Duration::from_secs(2 * 86_400)));
        assert_eq!(db.chunk_max_points, 77);
        assert_eq!(db.data_dir, dir.path());
        assert_eq!(server.query_timeout, Duration::from_secs(30));
        assert_eq!(server.query_max_samples, 123);
        assert!(Wrapper::try_parse_from(["x", "--wal-durability", "sometimes"]).is_err());
    }
}
