//! Self-monitoring: the server's and the database's metrics in one `prometheus-client`
//! registry, served at `/metrics` in the OpenMetrics text format.
//!
//! The database's own counters (series, head points and bytes, flush queue depth, chunks
//! written, WAL bytes) are read from [`TimeSeriesDB::stats`] at each scrape; the server
//! counts samples ingested and rejected (by protocol and reason), write batches and their
//! latency (WAL durability included), queries by endpoint (count, errors, latency), and
//! HTTP requests by handler and status code.

use std::sync::Arc;

use gorilla_tsdb::TimeSeriesDB;
use gorilla_tsdb::database::FSYNC_BUCKET_BOUNDS;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// `{protocol}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProtocolLabel {
    pub(crate) protocol: &'static str,
}

/// `{protocol, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectLabels {
    pub(crate) protocol: &'static str,
    pub(crate) reason: &'static str,
}

/// `{endpoint}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EndpointLabel {
    pub(crate) endpoint: &'static str,
}

/// `{endpoint, type}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueryErrorLabels {
    pub(crate) endpoint: &'static str,
    pub(crate) r#type: &'static str,
}

/// `{handler, code}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HttpLabels {
    pub(crate) handler: String,
    pub(crate) code: u16,
}

/// `{handler}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HandlerLabel {
    pub(crate) handler: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    rustc: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to ~52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

/// The server's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) samples_ingested: Family<ProtocolLabel, Counter>,
    pub(crate) samples_rejected: Family<RejectLabels, Counter>,
    pub(crate) write_batches: Counter,
    pub(crate) write_duration: HistogramFamily<ProtocolLabel>,
    pub(crate) writes_refused_overload: Family<ProtocolLabel, Counter>,
    pub(crate) queries: Family<EndpointLabel, Counter>,
    pub(crate) query_errors: Family<QueryErrorLabels, Counter>,
    pub(crate) query_duration: HistogramFamily<EndpointLabel>,
    pub(crate) queries_in_flight: Gauge,
    pub(crate) http_requests: Family<HttpLabels, Counter>,
    pub(crate) http_duration: HistogramFamily<HandlerLabel>,
}

impl Metrics {
    pub(crate) fn new(db: Arc<TimeSeriesDB>) -> Metrics {
        let mut registry = Registry::with_prefix("gorilla_tsdb");
        let m = Metrics {
            samples_ingested: Family::default(),
            samples_rejected: Family::default(),
            write_batches: Counter::default(),
            write_duration: Family::new_with_constructor(latency_histogram),
            writes_refused_overload: Family::default(),
            queries: Family::default(),
            query_errors: Family::default(),
            query_duration: Family::new_with_constructor(latency_histogram),
            queries_in_flight: Gauge::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            registry: Registry::default(),
        };
        registry.register(
            "samples_ingested",
            "Samples written to the database, by protocol",
            m.samples_ingested.clone(),
        );
        registry.register(
            "samples_rejected",
            "Samples refused, by protocol and reason",
            m.samples_rejected.clone(),
        );
        registry.register(
            "write_batches",
            "Point batches written (one WAL append each)",
            m.write_batches.clone(),
        );
        registry.register(
            "write_duration_seconds",
            "Time to write a request's points, until they are as durable as the WAL policy says",
            m.write_duration.clone(),
        );
        registry.register(
            "writes_refused_overload",
            "Write requests answered 503 because the server or the database was overloaded",
            m.writes_refused_overload.clone(),
        );
        registry.register(
            "queries",
            "Queries evaluated, by endpoint",
            m.queries.clone(),
        );
        registry.register(
            "query_errors",
            "Queries that failed, by endpoint and error type",
            m.query_errors.clone(),
        );
        registry.register(
            "query_duration_seconds",
            "Query latency, by endpoint",
            m.query_duration.clone(),
        );
        registry.register(
            "queries_in_flight",
            "Queries being evaluated now",
            m.queries_in_flight.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by handler and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by handler",
            m.http_duration.clone(),
        );
        registry.register(
            "build",
            "The server's version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                rustc: env!("CARGO_PKG_RUST_VERSION"),
            }),
        );
        registry.register_collector(Box::new(DbCollector { db }));
        Metrics { registry, ..m }
    }

    /// The metrics in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The database's counters, read at each scrape.
#[derive(Debug)]
struct DbCollector {
    db: Arc<TimeSeriesDB>,
}

impl Collector for DbCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.db.stats();
        let gauges = [
            ("series", "Series known", s.series),
            (
                "head_points",
                "Points in head buffers, not yet in chunks",
                s.buffered_points,
            ),
            (
                "head_bytes",
                "Approximate heap bytes of the head buffers",
                s.buffered_bytes,
            ),
            (
                "flush_queue_depth",
                "Sealed heads waiting to be written to storage",
                s.chunks_pending,
            ),
            ("wal_bytes", "Bytes of WAL on disk", s.wal_bytes),
            ("damage_entries", "Entries in the damage log", s.damaged),
            (
                "flush_failures",
                "Consecutive failed attempts to store or index a chunk",
                s.flush_failures,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        let counters = [
            (
                "chunks_written",
                "Chunks written to storage since open",
                s.chunks_written,
            ),
            (
                "points_written",
                "Points accepted since open",
                s.points_written,
            ),
            (
                "points_replayed",
                "Points replayed from the WAL when the database opened",
                s.points_replayed,
            ),
            (
                "wal_written_bytes",
                "Bytes appended to the WAL since open",
                s.wal_bytes_written,
            ),
            ("wal_appends", "WAL appends since open", s.wal_appends),
            (
                "wal_fsyncs",
                "fsyncs of WAL segment files since open",
                s.wal_fsyncs,
            ),
            (
                "compaction_rounds",
                "Compaction rounds run since open",
                s.compaction_rounds,
            ),
            (
                "compaction_series",
                "Series whose chunks compaction rewrote since open",
                s.compaction.series,
            ),
            (
                "compaction_chunks_replaced",
                "Chunks replaced by compaction since open",
                s.compaction.chunks_replaced,
            ),
            (
                "compaction_chunks_written",
                "Chunks written by compaction since open",
                s.compaction.chunks_written,
            ),
            (
                "compaction_replaced_bytes",
                "Stored bytes of the chunks compaction replaced since open",
                s.compaction.bytes_replaced,
            ),
            (
                "compaction_written_bytes",
                "Stored bytes of the chunks compaction wrote since open",
                s.compaction.bytes_written,
            ),
            (
                "compaction_conflicts",
                "Series compaction left for a later round because they were written meanwhile",
                s.compaction.conflicts,
            ),
            (
                "rollup_groups_written",
                "Groups of rollup-tier buckets (a chunk each) written since open",
                s.rollup.groups_written,
            ),
            (
                "rollup_buckets_written",
                "Rollup-tier buckets written since open",
                s.rollup.buckets_written,
            ),
            (
                "rollup_chunks_expired",
                "Rollup-tier chunks deleted by their tier's retention since open",
                s.rollup.chunks_expired,
            ),
            (
                "rollup_series_answered",
                "Series whose query answer came from a rollup tier since open",
                s.rollup.series_answered,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let fsyncs = s.wal_fsync_latency;
        // Read while fsyncs go on: the count may lag the buckets by one.
        let in_buckets: u64 = fsyncs.buckets.iter().sum();
        let count = fsyncs.count.max(in_buckets);
        let buckets: Vec<(f64, u64)> = FSYNC_BUCKET_BOUNDS
            .iter()
            .copied()
            .zip(fsyncs.buckets)
            .chain(std::iter::once((f64::INFINITY, count - in_buckets)))
            .collect();
        let mut metric = encoder.encode_descriptor(
            "wal_fsync_duration_seconds",
            "How long fsyncs of WAL segment files took",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(
            fsyncs.total_nanos as f64 / 1e9,
            count,
            &buckets,
            None,
        )?;
        Ok(())
    }
}
