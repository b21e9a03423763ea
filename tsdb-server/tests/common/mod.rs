//! A server over a temporary database, on a free loopback port, for the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use gorilla_tsdb::{DatabaseConfig, TimeSeriesDB, TimeSeriesDBBuilder};
use prost::Message;
use tsdb_formats::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use tsdb_server::{AppState, ServerOptions};

/// A running server; stopped (and its database closed) by [`TestServer::stop`].
pub struct TestServer {
    pub url: String,
    pub db: Arc<TimeSeriesDB>,
    pub state: AppState,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(options: ServerOptions) -> TestServer {
        Self::start_with(options, |_| {}).await
    }

    /// With the database configured by `configure` too.
    pub async fn start_with(
        options: ServerOptions,
        configure: impl FnOnce(&mut DatabaseConfig),
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = DatabaseConfig {
            data_dir: dir.path().to_path_buf(),
            ..DatabaseConfig::default()
        };
        configure(&mut config);
        let db = TimeSeriesDBBuilder::new()
            .with_config(config)
            .build()
            .await
            .expect("the database opens");
        let db = Arc::new(db);
        let state = AppState::new(db.clone(), options);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tsdb_server::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer {
            url,
            db,
            state,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// GET `path` (with its query string); status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the request is answered");
        let status = r.status().as_u16();
        (status, r.text().await.expect("a body"))
    }

    /// GET `path` and parse the JSON answer.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path).await;
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
        (status, json)
    }

    /// POST `body` to `path` with these headers; status, headers and body.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self.client.post(format!("{}{path}", self.url)).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let r = request.send().await.expect("the request is answered");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.expect("a body"))
    }

    /// Sends a remote-write request; the status and body.
    pub async fn remote_write(&self, request: &WriteRequest) -> (u16, String) {
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .expect("snappy");
        let (status, _, text) = self
            .post(
                "/api/v1/write",
                &[
                    ("Content-Encoding", "snappy"),
                    ("Content-Type", "application/x-protobuf"),
                    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
                ],
                body,
            )
            .await;
        (status, text)
    }

    /// Stops serving and closes the database.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the server task").expect("served");
        }
        self.db.close().await.expect("the database closes");
    }
}

/// A remote-write series.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(k, v)| Label {
                name: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..TimeSeries::default()
    }
}

/// A remote-write request of these series.
pub fn request(series: Vec<TimeSeries>) -> WriteRequest {
    WriteRequest {
        timeseries: series,
        ..WriteRequest::default()
    }
}
