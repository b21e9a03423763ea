//! [`serve`] and [`shutdown_signal`]: running the router until SIGTERM or SIGINT, and
//! stopping gracefully.

use std::future::Future;

use tokio::net::TcpListener;

use crate::router::router;
use crate::state::AppState;

/// Serves [`router`] over `state` on `listener` until `shutdown` completes; then stops
/// accepting connections, marks the state as stopping (`/-/ready` answers 503, writes get
/// 503 with `Retry-After`) and waits for the requests in flight to finish. Closing the
/// database is the caller's (it owns it): call [`gorilla_tsdb::TimeSeriesDB::close`] after
/// this returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing the requests in flight");
            state.begin_shutdown();
        })
        .await
}

/// Completes on SIGTERM or SIGINT (Ctrl-C); on platforms without SIGTERM, on Ctrl-C alone.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
