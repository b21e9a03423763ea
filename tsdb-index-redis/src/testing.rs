//! A throwaway `redis-server` for tests and benchmarks (feature `test-util`).
//!
//! [`RedisServer::start`] runs `redis-server` from `PATH` in a temporary directory, listening
//! on a unix socket there (or on a free loopback port with [`RedisServer::start_tcp`]), and
//! kills it when dropped. When the binary is missing it prints a loud notice and returns
//! `Ok(None)` so the caller can skip, except when the environment has `CI=true`, where a
//! missing server is an error.
//!
//! ```no_run
//! # async fn demo() -> tsdb_core::Result<()> {
//! use tsdb_index_redis::{RedisIndexConfig, RedisTimeIndex, testing::RedisServer};
//! let Some(server) = RedisServer::start()? else { return Ok(()) }; // skipped, notice printed
//! let index = RedisTimeIndex::connect(RedisIndexConfig::new(server.url())).await?;
//! # Ok(()) }
//! ```

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tsdb_core::{Error, Result};

/// How long to wait for a started server to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server listens.
#[derive(Debug, Clone)]
enum Endpoint {
    Unix(PathBuf),
    Tcp(u16),
}

/// A `redis-server` child process in its own temporary directory.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    endpoint: Endpoint,
    durable: bool,
}

impl RedisServer {
    /// Starts a server on a unix socket, without persistence. `Ok(None)` (after a loud notice
    /// on stderr) when `redis-server` is not on `PATH` and `CI` is not `true`.
    pub fn start() -> Result<Option<Self>> {
        Self::launch(false, false)
    }

    /// Like [`RedisServer::start`] but on a free loopback TCP port.
    pub fn start_tcp() -> Result<Option<Self>> {
        Self::launch(true, false)
    }

    /// Like [`RedisServer::start`] with an append-only file synced on every write, so the
    /// data survives [`RedisServer::kill`] and [`RedisServer::restart`].
    pub fn start_durable() -> Result<Option<Self>> {
        Self::launch(false, true)
    }

    fn launch(tcp: bool, durable: bool) -> Result<Option<Self>> {
        if !binary_available() {
            let msg =
                "redis-server is not on PATH: install it (Debian: apt-get install redis-server)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                return Err(Error::Unavailable {
                    engine: "redis",
                    reason: format!("{msg}; CI=true, so this is a failure"),
                });
            }
            // Written to the stderr handle, not with `eprintln!`, so the test harness does not
            // capture it: a skipped test must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!!!! SKIPPED: {msg} !!!!!!!!!!\n"
            );
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix("tsdb-redis-")
            .tempdir()
            .map_err(|e| Error::io("a temporary directory for redis-server", e))?;
        let endpoint = if tcp {
            Endpoint::Tcp(free_port()?)
        } else {
            Endpoint::Unix(dir.path().join("redis.sock"))
        };
        let mut server = RedisServer {
            child: None,
            dir,
            endpoint,
            durable,
        };
        server.spawn()?;
        Ok(Some(server))
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--daemonize", "no", "--loglevel", "warning"])
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let _ = std::fs::remove_file(path);
                cmd.args(["--port", "0", "--unixsocket"])
                    .arg(path)
                    .args(["--unixsocketperm", "700"]);
            }
            Endpoint::Tcp(port) => {
                cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
            }
        }
        if self.durable {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io("spawning redis-server", e))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Unavailable {
                    engine: "redis",
                    reason: format!(
                        "redis-server exited at start with {status}; see {}",
                        self.log_path().display()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Error::Unavailable {
            engine: "redis",
            reason: format!("redis-server did not answer PING within {START_TIMEOUT:?}"),
        })
    }

    /// True when the server answers `PING` (and is not loading its data).
    fn ping(&self) -> bool {
        fn exchange(mut s: impl Read + Write) -> bool {
            let mut buf = [0u8; 7];
            s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
        }
        match &self.endpoint {
            Endpoint::Unix(path) => std::os::unix::net::UnixStream::connect(path).is_ok_and(|s| {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                exchange(s)
            }),
            Endpoint::Tcp(port) => {
                std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok_and(|s| {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                    exchange(s)
                })
            }
        }
    }

    /// The URL to connect to, e.g. `redis+unix:///tmp/.../redis.sock`.
    pub fn url(&self) -> String {
        match &self.endpoint {
            Endpoint::Unix(path) => format!("redis+unix://{}", path.display()),
            Endpoint::Tcp(port) => format!("redis://127.0.0.1:{port}/"),
        }
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The temporary directory the server runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server at once (SIGKILL), as a crash would. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused process dies on SIGKILL too; continue it anyway so nothing lingers.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers, the worst
    /// case for a client without timeouts. [`RedisServer::resume`] thaws it.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Thaws a server frozen by [`RedisServer::pause`] (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, sig: &str) -> Result<()> {
        let Some(child) = &self.child else {
            return Err(Error::invalid_input("redis-server is not running"));
        };
        let status = Command::new("kill")
            .arg(sig)
            .arg(child.id().to_string())
            .status()
            .map_err(|e| Error::io(format_args!("kill {sig} redis-server"), e))?;
        if !status.success() {
            return Err(Error::invalid_input(format_args!(
                "kill {sig} redis-server exited with {status}"
            )));
        }
        Ok(())
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server if it runs and starts it again at the same address and directory
    /// (data survives only for [`RedisServer::start_durable`]).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn binary_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("binding 127.0.0.1:0", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("reading a bound port", e))?
        .port();
    Ok(port)
}
