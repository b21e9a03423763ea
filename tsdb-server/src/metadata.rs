//! The metadata of metric families (type, help, unit) as remote write and `# TYPE`/`# HELP`
//! lines bring it, for `/api/v1/metadata`. Kept in memory, bounded in families; a restart
//! starts empty again (Prometheus re-sends metadata every minute).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use tsdb_formats::MetricMetadata;

/// One metadata record: `(type, help, unit)`.
pub(crate) type Record = (&'static str, String, String);

/// One family's metadata records.
type Records = BTreeSet<Record>;

/// Most distinct records kept per family (Prometheus keeps one per target).
const RECORDS_PER_FAMILY: usize = 16;

/// Families and their metadata, at most `max_families` of them.
#[derive(Debug)]
pub(crate) struct MetadataStore {
    families: Mutex<BTreeMap<String, Records>>,
    max_families: usize,
}

impl MetadataStore {
    pub(crate) fn new(max_families: usize) -> Self {
        MetadataStore {
            families: Mutex::new(BTreeMap::new()),
            max_families,
        }
    }

    /// Records what was received; families beyond the limit are not kept.
    pub(crate) fn record(&self, items: impl IntoIterator<Item = MetricMetadata>) {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        for m in items {
            let full = families.len() >= self.max_families;
            let records = match families.get_mut(&m.metric) {
                Some(r) => r,
                None if full => continue,
                None => families.entry(m.metric.clone()).or_default(),
            };
            let record = (m.kind.as_str(), m.help, m.unit);
            if records.len() < RECORDS_PER_FAMILY || records.contains(&record) {
                records.insert(record);
            }
        }
    }

    /// `(family, records)` for `metric` (or every family), at most `limit` families.
    pub(crate) fn list(
        &self,
        metric: Option<&str>,
        limit: Option<usize>,
    ) -> Vec<(String, Vec<Record>)> {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        families
            .iter()
            .filter(|(name, _)| metric.is_none_or(|m| m == name.as_str()))
            .take(limit.unwrap_or(usize::MAX))
            .map(|(name, records)| (name.clone(), records.iter().cloned().collect()))
            .collect()
    }
}
