//! [`router`]: every endpoint and the layers around them.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::api::{admin, query, series, status};
use crate::graph;
use crate::ingest::{influx, remote_write, text_import};
use crate::metrics::HttpLabels;
use crate::observe::{RequestIds, http_metrics, request_span};
use crate::state::AppState;

/// The server's routes over `state`, ready to serve or to nest in an application's router:
///
/// | route | what |
/// | --- | --- |
/// | `GET,POST /api/v1/query`, `/api/v1/query_range` | PromQL, as Prometheus 2.42 |
/// | `GET,POST /api/v1/series`, `/api/v1/labels`; `GET /api/v1/label/<name>/values` | series and labels |
/// | `GET /api/v1/metadata`, `/api/v1/status/buildinfo`; `GET,POST /api/v1/query_exemplars` | metadata, version, exemplars (none) |
/// | `GET /api/v1/rules`, `/api/v1/alerts` | no rules, no alerts (Grafana asks) |
/// | `POST /api/v1/write` | Prometheus remote write 1.0 |
/// | `POST /write`, `/api/v2/write` | Influx line protocol (1.x, 2.x) |
/// | `GET /ping`; `GET,POST /query` | InfluxDB's health check; `CREATE DATABASE` only (Telegraf sends it) |
/// | `POST /api/v1/import/prometheus` | Prometheus text exposition |
/// | `POST,PUT /api/v1/admin/tsdb/delete_series`, `clean_tombstones`, `snapshot` | deletion, compaction on demand and snapshots, with [`crate::ServerOptions::enable_admin_api`] |
/// | `GET /metrics` | the server's own metrics |
/// | `GET /-/healthy`, `/-/ready` | liveness, readiness |
/// | `GET /`, `/graph`, `/graph/chart.svg` | the graph page and its chart |
///
/// Around them: request ids (`x-request-id`), a `tracing` span per request, HTTP metrics,
/// panics answered 500, [`crate::ServerOptions::request_timeout`] (503), response gzip
/// compression, and [`crate::ServerOptions::max_body_bytes`] for form bodies.
pub fn router(state: AppState) -> Router {
    let options = state.options().clone();
    let routes = Router::new()
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route(
            "/api/v1/query_exemplars",
            get(query::exemplars).post(query::exemplars),
        )
        .route("/api/v1/series", get(series::series).post(series::series))
        .route(
            "/api/v1/labels",
            get(series::label_names).post(series::label_names),
        )
        .route("/api/v1/label/{name}/values", get(series::label_values))
        .route("/api/v1/metadata", get(status::metadata))
        .route("/api/v1/status/buildinfo", get(status::build_info))
        .route("/api/v1/rules", get(status::rules))
        .route("/api/v1/alerts", get(status::alerts))
        .route("/api/v1/write", post(remote_write::handle))
        .route("/write", post(influx::v1))
        .route("/api/v2/write", post(influx::v2))
        .route("/ping", get(influx::ping).head(influx::ping))
        .route("/query", get(influx::query).post(influx::query))
        .route("/api/v1/import/prometheus", post(text_import::handle))
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(admin::delete_series).put(admin::delete_series),
        )
        .route(
            "/api/v1/admin/tsdb/clean_tombstones",
            post(admin::clean_tombstones).put(admin::clean_tombstones),
        )
        .route(
            "/api/v1/admin/tsdb/snapshot",
            post(admin::snapshot).put(admin::snapshot),
        )
        .route("/metrics", get(status::metrics))
        .route("/-/healthy", get(status::healthy))
        .route("/-/ready", get(status::ready))
        .route("/", get(graph::page))
        .route("/graph", get(graph::page))
        .route("/graph/chart.svg", get(graph::chart_svg))
        .route_layer(middleware::from_fn_with_state(state.clone(), http_metrics))
        .fallback(not_found)
        .with_state(state);
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(RequestIds::new()))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(TraceLayer::new_for_http().make_span_with(request_span))
            .layer(CatchPanicLayer::new())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                options.request_timeout,
            ))
            .layer(CompressionLayer::new())
            .layer(DefaultBodyLimit::max(options.max_body_bytes)),
    )
}

async fn not_found(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    state
        .inner
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            handler: "other".to_owned(),
            code: 404,
        })
        .inc();
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}
