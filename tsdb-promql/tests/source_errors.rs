//! An error of the series source keeps its kind through the engine.

use tsdb_core::{Error, LabelMatcher, TimeRange};
use tsdb_promql::{Engine, EngineOptions, PromqlError, SeriesData, SeriesSource};

/// A source whose backend is down.
struct Unreachable;

#[tsdb_core::async_trait]
impl SeriesSource for Unreachable {
    async fn select(
        &self,
        _matchers: &[LabelMatcher],
        _range: TimeRange,
    ) -> tsdb_core::Result<Vec<SeriesData>> {
        Err(Error::Unavailable {
            engine: "redis",
            reason: "connection refused".into(),
        })
    }
}

#[tokio::test]
async fn a_source_outage_is_still_retryable_through_promql() {
    let engine = Engine::new(Unreachable, EngineOptions::default());
    for query in ["up", "sum by (job) (rate(http_requests_total[5m]))"] {
        let err = engine
            .instant_query(query, 1_000_000)
            .await
            .expect_err("the source is down");
        assert!(matches!(err, PromqlError::Source(_)), "{err:?}");
        assert!(err.is_retryable(), "{query}: {err}");
        assert!(matches!(
            err.source_error(),
            Some(Error::Unavailable { .. })
        ));
        // Back in the contract's error, the kind is the source's own.
        let back: Error = err.into();
        assert!(matches!(back, Error::Unavailable { .. }), "{back:?}");
        assert!(back.is_retryable());
    }
}
