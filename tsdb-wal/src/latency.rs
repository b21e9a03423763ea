//! How long fsyncs of the log take, in fixed buckets that a metrics exporter can hand on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of the buckets of [`FsyncLatency`]: 50 µs, doubling up to about
/// 1.6 s. Slower fsyncs are counted in [`FsyncLatency::count`] only.
pub const FSYNC_BUCKET_BOUNDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_4, 0.000_8, 0.001_6, 0.003_2, 0.006_4, 0.012_8, 0.025_6,
    0.051_2, 0.102_4, 0.204_8, 0.409_6, 0.819_2, 1.638_4,
];

/// Durations of the fsyncs of segment files since open (directory fsyncs not included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsyncLatency {
    /// `buckets[i]`: fsyncs that took more than `FSYNC_BUCKET_BOUNDS[i - 1]` (0 for the
    /// first) and at most `FSYNC_BUCKET_BOUNDS[i]` seconds. Not cumulative.
    pub buckets: [u64; FSYNC_BUCKET_BOUNDS.len()],
    /// Every fsync timed, those slower than the last bound included.
    pub count: u64,
    /// Their total duration, in nanoseconds.
    pub total_nanos: u64,
}

/// The live counters behind [`FsyncLatency`].
#[derive(Debug, Default)]
pub(crate) struct Latency {
    buckets: [AtomicU64; FSYNC_BUCKET_BOUNDS.len()],
    count: AtomicU64,
    total_nanos: AtomicU64,
}

impl Latency {
    /// Counts one fsync that took `took`.
    pub(crate) fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = FSYNC_BUCKET_BOUNDS.iter().position(|&b| seconds <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.total_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> FsyncLatency {
        FsyncLatency {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
            total_nanos: self.total_nanos.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duration_lands_in_the_first_bucket_that_holds_it() {
        let l = Latency::default();
        for micros in [10, 50, 51, 1_000, 2_000_000] {
            l.record(Duration::from_micros(micros));
        }
        let s = l.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.total_nanos, (10 + 50 + 51 + 1_000 + 2_000_000) * 1_000);
        assert_eq!(s.buckets[0], 2, "10 µs and 50 µs");
        assert_eq!(s.buckets[1], 1, "51 µs");
        assert_eq!(s.buckets[5], 1, "1 ms is at most 1.6 ms");
        assert_eq!(
            s.buckets.iter().sum::<u64>(),
            4,
            "2 s is past the last bound"
        );
        assert!(FSYNC_BUCKET_BOUNDS.windows(2).all(|w| w[1] == 2.0 * w[0]));
    }
}
