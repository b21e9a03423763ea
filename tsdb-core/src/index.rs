//! The [`TimeIndex`] trait: which series match these labels, which chunks cover this time.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::labels::Labels;
use crate::matcher::LabelMatcher;
use crate::types::{ChunkLocation, ChunkReference, SeriesId, TimeRange};

/// The catalog of series and of the chunks that hold their points.
///
/// # Contract
/// Series:
/// - `register_series` is idempotent for the same id and labels. An id already registered with
///   other labels gives [`crate::Error::SeriesIdCollision`] and changes nothing. Ids are usually
///   [`Labels::series_id`], but the index does not require it.
/// - `series_labels` of an unknown id is `Ok(None)`.
/// - `drop_series` removes the labels, the postings and every chunk reference of the series; a
///   later `register_series` of the same id starts with no chunks. Label names and values used
///   by no remaining series disappear from `label_names` and `label_values`.
///
/// Lookups:
/// - `find_series` returns the ids of series matched by **all** matchers (Prometheus semantics,
///   see [`LabelMatcher`]: anchored regexes, a missing label reads as the empty value, so a
///   matcher that accepts `""` also selects the series without that label, including when no
///   series has the label at all), ascending, without duplicates. No matchers select every
///   series. Several matchers on the same label all apply.
/// - `label_names` and `label_values` are sorted ascending (byte order) without duplicates;
///   `__name__` is a label name like the others. An unknown label has no values (`Ok(vec![])`).
///
/// Chunks (identified within their series by their [`ChunkLocation`]):
/// - `add_chunk` needs a registered series ([`crate::Error::SeriesNotFound`] otherwise) and
///   `start_time <= end_time` ([`crate::Error::InvalidInput`] otherwise). Adding a reference
///   whose series and location are already present is a no-op, even if its other fields differ
///   (the first one stays), so retries are harmless. Chunks of one series may overlap in time.
/// - `query_chunks` returns the series' chunks whose `[start_time, end_time]` overlaps `range`
///   (both inclusive), ordered by `start_time`, then `end_time`, then location (segment, offset,
///   length), each once. Unknown series give `Ok(vec![])`; an inverted range
///   (`start > end`) gives [`crate::Error::InvalidInput`]. Every `i64` is a valid time.
/// - `remove_chunks` forgets the chunks at the given locations and ignores locations, or a
///   series, that are not there. `drop_series` of an unknown id is `Ok(())`.
///
/// Concurrency and failures:
/// - Every method may be called concurrently; a call's effects are visible to every call that
///   starts after it returned, including through another instance sharing the same backend.
/// - A failed call returns an error and leaves the index either unchanged or fully changed for
///   that call, so any call can be retried; [`crate::Error::Unavailable`] marks backend outages.
/// - An index whose backend can lose what was written to it (a Redis restarted empty) must
///   notice it and never answer a read from the diminished state: reads fail with
///   [`crate::Error::StateLost`] while writes (`register_series`, `add_chunk`,
///   `remove_chunks`, `drop_series`) still succeed, so that the owner can register its series
///   and chunks again; the owner then calls [`TimeIndex::mark_rebuilt`] and reads answer again.
///
/// The conformance kit (`tsdb_core::testkit::index`, feature `testkit`) checks all this.
#[async_trait]
pub trait TimeIndex: Send + Sync + Debug + 'static {
    /// A short, stable name, e.g. `"memory"`.
    fn name(&self) -> &'static str;

    /// Registers a series and its labels.
    async fn register_series(&self, series: SeriesId, labels: &Labels) -> Result<()>;

    /// The labels of a series, if registered.
    async fn series_labels(&self, series: SeriesId) -> Result<Option<Labels>>;

    /// Series matched by every matcher, ascending.
    async fn find_series(&self, matchers: &[LabelMatcher]) -> Result<Vec<SeriesId>>;

    /// Every label name in use, ascending.
    async fn label_names(&self) -> Result<Vec<String>>;

    /// Every value of label `name` in use, ascending.
    async fn label_values(&self, name: &str) -> Result<Vec<String>>;

    /// Records a stored chunk of a registered series.
    async fn add_chunk(&self, chunk: &ChunkReference) -> Result<()>;

    /// The series' chunks that overlap `range`, ordered by start time.
    async fn query_chunks(&self, series: SeriesId, range: TimeRange)
    -> Result<Vec<ChunkReference>>;

    /// Forgets the series' chunks at `locations`.
    async fn remove_chunks(&self, series: SeriesId, locations: &[ChunkLocation]) -> Result<()>;

    /// Forgets a series: its labels and all its chunk references.
    async fn drop_series(&self, series: SeriesId) -> Result<()>;

    /// Whether the backend has lost state since the last check (see the contract); checks
    /// the backend now. Default: `Ok(false)`, for indexes that cannot lose state.
    async fn state_lost(&self) -> Result<bool> {
        Ok(false)
    }

    /// Tells the index that its owner has registered every series and added every chunk again
    /// after [`crate::Error::StateLost`]; reads answer again. Default: `Ok(())`.
    async fn mark_rebuilt(&self) -> Result<()> {
        Ok(())
    }
}

/// An index behind a pointer: `Arc<DynTimeIndex>`.
pub type DynTimeIndex = dyn TimeIndex;

macro_rules! forward_index {
    ($($wrapper:ident),*) => {$(
        #[deny(clippy::missing_trait_methods)]
        #[async_trait]
        impl<T: TimeIndex + ?Sized> TimeIndex for $wrapper<T> {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            async fn register_series(&self, series: SeriesId, labels: &Labels) -> Result<()> {
                (**self).register_series(series, labels).await
            }
            async fn series_labels(&self, series: SeriesId) -> Result<Option<Labels>> {
                (**self).series_labels(series).await
            }
            async fn find_series(&self, matchers: &[LabelMatcher]) -> Result<Vec<SeriesId>> {
                (**self).find_series(matchers).await
            }
            async fn label_names(&self) -> Result<Vec<String>> {
                (**self).label_names().await
            }
            async fn label_values(&self, name: &str) -> Result<Vec<String>> {
                (**self).label_values(name).await
            }
            async fn add_chunk(&self, chunk: &ChunkReference) -> Result<()> {
                (**self).add_chunk(chunk).await
            }
            async fn query_chunks(
                &self,
                series: SeriesId,
                range: TimeRange,
            ) -> Result<Vec<ChunkReference>> {
                (**self).query_chunks(series, range).await
            }
            async fn remove_chunks(&self, series: SeriesId, locations: &[ChunkLocation]) -> Result<()> {
                (**self).remove_chunks(series, locations).await
            }
            async fn drop_series(&self, series: SeriesId) -> Result<()> {
                (**self).drop_series(series).await
            }
            async fn state_lost(&self) -> Result<bool> {
                (**self).state_lost().await
            }
            async fn mark_rebuilt(&self) -> Result<()> {
                (**self).mark_rebuilt().await
            }
        }
    )*};
}

forward_index!(Arc, Box);
