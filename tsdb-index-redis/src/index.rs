//! [`RedisTimeIndex`] and its configuration.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, Value};
use tsdb_core::{
    ChunkLocation, ChunkReference, Error, LabelMatcher, Labels, MatchOp, Result, SeriesId,
    TimeIndex, TimeRange,
};

use crate::epoch::{self, Epoch, Verdict};
use crate::keys::{self, Keys};
use crate::scripts;

const ENGINE: &str = "redis";

/// `find_series` lets Redis merge a selection of more postings lists than this (`ZUNION`).
const MERGE_ABOVE: usize = 16;

/// How [`RedisTimeIndex`] reaches Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisIndexConfig {
    /// `redis://host:port/db` or `redis+unix:///path/to/socket`.
    pub url: String,
    /// Every key starts with `{<prefix>` (see the crate docs); instances that share a Redis
    /// and a prefix share one catalog. Must be non-empty and free of `{` and `}`.
    pub prefix: String,
    /// The longest any call waits for Redis, connecting included; past it the call returns
    /// [`Error::Unavailable`].
    pub timeout: Duration,
}

impl RedisIndexConfig {
    /// Default prefix.
    pub const DEFAULT_PREFIX: &'static str = "tsdb";
    /// Default timeout: 2 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// The configuration for `url` with the default prefix and timeout.
    pub fn new(url: impl Into<String>) -> Self {
        RedisIndexConfig {
            url: url.into(),
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// Sets [`RedisIndexConfig::prefix`].
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`RedisIndexConfig::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A [`TimeIndex`] kept in Redis, shared by every instance with the same Redis and prefix.
///
/// Cheap to clone (clones share one reconnecting connection and one epoch). Each write is one
/// Lua script, so it applies in full or not at all; every call is bounded by the configured
/// timeout. Every read checks the epoch key in the same atomic round trip, so a Redis that
/// lost its data gives [`Error::StateLost`], never a diminished answer (see the crate docs,
/// "Failure model").
#[derive(Clone)]
pub struct RedisTimeIndex {
    conn: ConnectionManager,
    keys: Keys,
    /// The name of the epoch key, built once.
    epoch_key: Arc<[u8]>,
    config: RedisIndexConfig,
    /// An upper bound, learned from answers, of `end - start` over the chunks of the series
    /// queried so far: `query_chunks` scans from `range.start - bound` and checks the series'
    /// real maximum in the same round trip.
    duration_bound: Arc<AtomicU64>,
    /// The adopted epoch and whether this instance is lost.
    epoch: Arc<Epoch>,
}

impl fmt::Debug for RedisTimeIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTimeIndex")
            .field("url", &self.config.url)
            .field("prefix", &self.config.prefix)
            .field("timeout", &self.config.timeout)
            .field("lost", &self.epoch.is_lost())
            .finish_non_exhaustive()
    }
}

/// Maps a Redis error: outages and "try again" answers are [`Error::Unavailable`].
fn map_err(e: RedisError) -> Error {
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || !matches!(e.retry_method(), redis::RetryMethod::NoRetry);
    if transient {
        tracing::debug!(error = %e, "redis unavailable");
        Error::Unavailable {
            engine: ENGINE,
            reason: e.to_string(),
        }
    } else {
        Error::Engine {
            engine: ENGINE,
            source: Box::new(e),
        }
    }
}

/// Converts one reply (an element of a pipeline's answer).
fn parse<T: FromRedisValue>(v: Value) -> Result<T> {
    T::from_redis_value(v).map_err(|e| map_err(e.into()))
}

/// Splits a script's `{status, epoch}` reply.
fn status_and_epoch(reply: Value, script: &str) -> Result<(Value, Option<Vec<u8>>)> {
    match reply {
        Value::Array(items) if items.len() <= 2 => {
            let mut items = items.into_iter();
            let status = items.next().unwrap_or(Value::Nil);
            let epoch = items.next().map(parse).transpose()?.flatten();
            Ok((status, epoch))
        }
        other => Err(Error::corrupt(
            format_args!("redis {script} script reply"),
            0,
            format_args!("unexpected reply {other:?}"),
        )),
    }
}

fn utf8(bytes: Vec<u8>, key: &[u8]) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        Error::corrupt(
            String::from_utf8_lossy(key),
            e.utf8_error().valid_up_to() as u64,
            "label text is not UTF-8",
        )
    })
}

/// What one matcher needs fetched, and how its postings combine.
enum Plan {
    /// The union of these postings keys (`exclude`: every series except it).
    Postings { keys: Vec<Vec<u8>>, exclude: bool },
    /// The label's values must be read first (regex, or a matcher on "").
    Dictionary,
}

impl RedisTimeIndex {
    /// Connects to Redis (bounded by the timeout) and checks the configuration.
    pub async fn connect(config: RedisIndexConfig) -> Result<Self> {
        if config.prefix.is_empty() || config.prefix.contains(['{', '}']) {
            return Err(Error::invalid_input(format_args!(
                "redis key prefix {:?} must be non-empty and free of '{{' and '}}'",
                config.prefix
            )));
        }
        if config.timeout.is_zero() {
            return Err(Error::invalid_input("redis timeout must be positive"));
        }
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| Error::invalid_input(format_args!("redis url {:?}: {e}", config.url)))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(3)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(config.timeout);
        let conn = bounded(
            config.timeout,
            ConnectionManager::new_with_config(client, manager_config),
        )
        .await?;
        let keys = Keys::new(&config.prefix);
        let epoch_key: Arc<[u8]> = keys.epoch().into();
        // Adopt the epoch, creating it if there is none, in one transaction that also tells
        // whether index keys exist without one.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("EXISTS")
            .arg(keys.all_series())
            .arg(keys.names())
            .cmd("SET")
            .arg(&*epoch_key)
            .arg(epoch::new_token())
            .arg("NX")
            .cmd("GET")
            .arg(&*epoch_key);
        let mut c = conn.clone();
        let (existing, created, current): (u64, Option<String>, Option<Vec<u8>>) =
            bounded(config.timeout, pipe.query_async(&mut c)).await?;
        let Some(current) = current else {
            return Err(Error::corrupt(
                String::from_utf8_lossy(&epoch_key),
                0,
                "no epoch right after SET NX",
            ));
        };
        if created.is_some() && existing > 0 {
            // Written by a version of this crate without epochs, or the key was deleted (or
            // evicted): either way the keys here are all there is to trust.
            tracing::warn!(
                prefix = %config.prefix,
                "redis index keys without an epoch key: starting a new epoch over them"
            );
        }
        Ok(RedisTimeIndex {
            conn,
            keys,
            epoch: Arc::new(Epoch::new(&epoch_key, current)),
            epoch_key,
            config,
            duration_bound: Default::default(),
        })
    }

    /// The epoch token this instance trusts (see the crate docs, "Failure model"): instances
    /// whose reads answer share one.
    pub fn epoch(&self) -> String {
        String::from_utf8_lossy(&self.epoch.adopted()).into_owned()
    }

    /// A MULTI/EXEC pipeline that reads the epoch key first; add the read's commands and run it
    /// with [`RedisTimeIndex::run_read`].
    fn read_pipe(&self) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("GET").arg(&*self.epoch_key);
        pipe
    }

    /// Runs a [`RedisTimeIndex::read_pipe`] and returns the replies after the epoch's, once
    /// the epoch shows that they were read from the whole state.
    async fn run_read(&self, pipe: &redis::Pipeline) -> Result<std::vec::IntoIter<Value>> {
        self.fail_if_lost().await?;
        let mut replies = self.run_pipe::<Vec<Value>>(pipe).await?.into_iter();
        let seen: Option<Vec<u8>> = parse(replies.next().unwrap_or(Value::Nil))?;
        match self.epoch.observe(seen.as_deref()) {
            Verdict::Intact => Ok(replies),
            Verdict::Lost => Err(self.lost_error().await),
        }
    }

    /// The next reply of a [`RedisTimeIndex::run_read`].
    fn next_reply<T: FromRedisValue>(replies: &mut std::vec::IntoIter<Value>) -> Result<T> {
        match replies.next() {
            Some(v) => parse(v),
            None => Err(Error::corrupt(
                "redis transaction reply",
                0,
                "fewer replies than commands",
            )),
        }
    }

    /// `Err(StateLost)` while lost; reads call it before anything else.
    async fn fail_if_lost(&self) -> Result<()> {
        if self.epoch.is_lost() {
            return Err(self.lost_error().await);
        }
        Ok(())
    }

    /// The error a read of a lost instance returns: [`Error::StateLost`] once the loss is
    /// pinned (pinning it first if needed: one round trip), or the error that kept it from
    /// being pinned ([`Error::Unavailable`] when Redis is down).
    async fn lost_error(&self) -> Error {
        if self.epoch.pinned_reason().is_none() {
            match self.current_epoch().await {
                Ok(current) => self.epoch.pin(current),
                Err(e) => return e,
            }
        }
        match self.epoch.pinned_reason() {
            Some(reason) => Error::StateLost {
                engine: ENGINE,
                reason,
            },
            // `mark_rebuilt` cleared the loss meanwhile: the caller may simply retry.
            None => Error::Unavailable {
                engine: ENGINE,
                reason: "the index was rebuilt during this call; retry it".to_owned(),
            },
        }
    }

    /// The epoch token in Redis now, created (`SET NX`) if the key is missing.
    async fn current_epoch(&self) -> Result<Vec<u8>> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&*self.epoch_key)
            .arg(epoch::new_token())
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&*self.epoch_key);
        let (current,): (Option<Vec<u8>>,) = self.run_pipe(&pipe).await?;
        current.ok_or_else(|| {
            Error::corrupt(
                String::from_utf8_lossy(&self.epoch_key),
                0,
                "no epoch right after SET NX",
            )
        })
    }

    /// Runs a write script and returns its status, after noting the epoch it saw (a write
    /// never fails because of the epoch).
    async fn run_write(&self, inv: &redis::ScriptInvocation<'_>, script: &str) -> Result<Value> {
        let reply = self.run_script::<Value>(inv).await?;
        let (status, seen) = status_and_epoch(reply, script)?;
        self.epoch.observe(seen.as_deref());
        Ok(status)
    }

    /// The configuration this index was made with.
    pub fn config(&self) -> &RedisIndexConfig {
        &self.config
    }

    async fn run<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        bounded(self.config.timeout, cmd.query_async(&mut conn)).await
    }

    async fn run_pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        let mut conn = self.conn.clone();
        bounded(self.config.timeout, pipe.query_async(&mut conn)).await
    }

    /// Adds, for every label, the keys of its value set and postings and the name and value
    /// as arguments: the tail that the register and drop scripts share.
    fn push_label_keys(&self, inv: &mut redis::ScriptInvocation<'_>, labels: &Labels) {
        for l in labels.iter() {
            inv.key(self.keys.values(&l.name))
                .key(self.keys.postings(&l.name, &l.value))
                .arg(&l.name)
                .arg(&l.value);
        }
    }

    async fn run_script<T: FromRedisValue>(&self, inv: &redis::ScriptInvocation<'_>) -> Result<T> {
        let mut conn = self.conn.clone();
        bounded(self.config.timeout, inv.invoke_async(&mut conn)).await
    }

    /// The series' labels and the epoch read with them, in one transaction.
    async fn read_labels(
        &self,
        series: SeriesId,
    ) -> Result<(Option<Vec<u8>>, Option<(Vec<u8>, Labels)>)> {
        let key = self.keys.labels(series);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(&*self.epoch_key)
            .cmd("GET")
            .arg(&key);
        let (seen, raw): (Option<Vec<u8>>, Option<Vec<u8>>) = self.run_pipe(&pipe).await?;
        let labels = raw
            .map(|bytes| {
                let labels = Labels::from_canonical_bytes(&bytes).map_err(|e| match e {
                    Error::Corrupt { offset, reason, .. } => Error::corrupt(&key, offset, reason),
                    Error::InvalidLabels { reason } => Error::corrupt(&key, 0, reason),
                    other => other,
                })?;
                Ok((bytes, labels))
            })
            .transpose()?;
        Ok((seen, labels))
    }

    /// Every member of a name or value dictionary, checked against the epoch.
    async fn read_dictionary(&self, key: Vec<u8>) -> Result<Vec<String>> {
        let mut pipe = self.read_pipe();
        pipe.cmd("ZRANGE").arg(&key).arg(0).arg(-1);
        let raw: Vec<Vec<u8>> = Self::next_reply(&mut self.run_read(&pipe).await?)?;
        raw.into_iter().map(|b| utf8(b, &key)).collect()
    }

    fn plan(&self, m: &LabelMatcher) -> Plan {
        match m.op() {
            MatchOp::Equal if !m.value().is_empty() => Plan::Postings {
                keys: vec![self.keys.postings(m.name(), m.value())],
                exclude: false,
            },
            MatchOp::NotEqual if !m.value().is_empty() => Plan::Postings {
                keys: vec![self.keys.postings(m.name(), m.value())],
                exclude: true,
            },
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => match m.regex_literals() {
                // `a|b|c` without an empty branch: the values selected (`=~`) or excluded
                // (`!~`) are exactly these; no need to read the dictionary.
                Some(literals) if !literals.iter().any(String::is_empty) => {
                    let unique: BTreeSet<&String> = literals.iter().collect();
                    Plan::Postings {
                        keys: unique
                            .into_iter()
                            .map(|v| self.keys.postings(m.name(), v))
                            .collect(),
                        exclude: m.op() == MatchOp::RegexNoMatch,
                    }
                }
                _ => Plan::Dictionary,
            },
            MatchOp::Equal | MatchOp::NotEqual => Plan::Dictionary,
        }
    }
}

/// Runs `f` within `timeout`; a late or failed answer is [`Error::Unavailable`].
async fn bounded<T>(
    timeout: Duration,
    f: impl Future<Output = std::result::Result<T, RedisError>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(Error::Unavailable {
            engine: ENGINE,
            reason: format!("no answer within {timeout:?}"),
        }),
    }
}

/// The `[min` bound of a `ZRANGEBYLEX` over chunk entries starting at or after `t`.
fn lex_from(t: i64) -> Vec<u8> {
    let mut b = vec![b'['];
    b.extend_from_slice(&keys::time_bytes(t));
    b
}

/// The `(max` bound of a `ZRANGEBYLEX` over chunk entries starting at or before `t`.
fn lex_through(t: i64) -> Vec<u8> {
    match t.checked_add(1) {
        Some(next) => {
            let mut b = vec![b'('];
            b.extend_from_slice(&keys::time_bytes(next));
            b
        }
        None => b"+".to_vec(),
    }
}

/// The lowest start a chunk may have and still reach `start`, given the longest duration.
fn scan_start(start: i64, max_duration: u64) -> i64 {
    let lo = i128::from(start) - i128::from(max_duration);
    i64::try_from(lo).unwrap_or(i64::MIN)
}

/// Ascending, deduplicated union of id lists.
fn union(lists: Vec<Vec<SeriesId>>) -> Vec<SeriesId> {
    let mut out: Vec<SeriesId> = lists.into_iter().flatten().collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[async_trait]
impl TimeIndex for RedisTimeIndex {
    fn name(&self) -> &'static str {
        ENGINE
    }

    async fn register_series(&self, series: SeriesId, labels: &Labels) -> Result<()> {
        let id = keys::id_bytes(series);
        let canonical = labels.canonical_bytes();
        let mut inv = scripts::REGISTER.prepare_invoke();
        inv.key(self.keys.labels(series))
            .key(self.keys.all_series())
            .key(self.keys.names())
            .key(&*self.epoch_key)
            .arg(&canonical)
            .arg(&id[..]);
        self.push_label_keys(&mut inv, labels);
        match self.run_write(&inv, "register").await? {
            Value::Int(0 | 1) => Ok(()),
            Value::BulkString(existing) => Err(Error::SeriesIdCollision {
                series,
                existing: Labels::from_canonical_bytes(&existing)
                    .map(|l| l.to_string())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&existing).into_owned()),
                new: labels.to_string(),
            }),
            other => Err(Error::corrupt(
                "redis register script reply",
                0,
                format_args!("unexpected reply {other:?}"),
            )),
        }
    }

    async fn series_labels(&self, series: SeriesId) -> Result<Option<Labels>> {
        self.fail_if_lost().await?;
        let (seen, labels) = self.read_labels(series).await?;
        match self.epoch.observe(seen.as_deref()) {
            Verdict::Intact => Ok(labels.map(|(_, l)| l)),
            Verdict::Lost => Err(self.lost_error().await),
        }
    }

    async fn find_series(&self, matchers: &[LabelMatcher]) -> Result<Vec<SeriesId>> {
        // Each round trip below checks the epoch; this covers answers that need none.
        self.fail_if_lost().await?;
        // Round trip 1: the value dictionaries of the matchers that need one.
        let plans: Vec<Plan> = matchers.iter().map(|m| self.plan(m)).collect();
        let dict_matchers: Vec<&LabelMatcher> = matchers
            .iter()
            .zip(&plans)
            .filter(|(_, p)| matches!(p, Plan::Dictionary))
            .map(|(m, _)| m)
            .collect();
        let mut dictionaries: Vec<Vec<Vec<u8>>> = Vec::new();
        if !dict_matchers.is_empty() {
            let mut pipe = self.read_pipe();
            for m in &dict_matchers {
                let prefix = m.regex_literal_prefix();
                // A regex with a literal prefix cannot match "", so its selection (`=~`) or
                // exclusion (`!~`) consists of values under the prefix: scan only those.
                if !prefix.is_empty() {
                    let mut from = b"[".to_vec();
                    from.extend_from_slice(prefix.as_bytes());
                    let mut to = b"(".to_vec();
                    to.extend_from_slice(prefix.as_bytes());
                    to.push(0xFF);
                    pipe.cmd("ZRANGEBYLEX")
                        .arg(self.keys.values(m.name()))
                        .arg(from)
                        .arg(to);
                } else {
                    pipe.cmd("ZRANGE")
                        .arg(self.keys.values(m.name()))
                        .arg(0)
                        .arg(-1);
                }
            }
            dictionaries = self
                .run_read(&pipe)
                .await?
                .map(parse)
                .collect::<Result<_>>()?;
        }
        // Resolve every matcher to postings keys.
        let mut selections: Vec<(Vec<Vec<u8>>, bool)> = Vec::with_capacity(plans.len());
        let mut dicts = dict_matchers.iter().zip(dictionaries);
        for plan in plans {
            match plan {
                Plan::Postings { keys, exclude } => selections.push((keys, exclude)),
                Plan::Dictionary => {
                    let Some((m, values)) = dicts.next() else {
                        return Err(Error::corrupt(
                            "redis find_series pipeline reply",
                            0,
                            "fewer replies than commands",
                        ));
                    };
                    let exclude = m.matches_empty();
                    let mut keys = Vec::new();
                    for raw in values {
                        let value = utf8(raw, &self.keys.values(m.name()))?;
                        if m.matches(Some(&value)) != exclude {
                            keys.push(self.keys.postings(m.name(), &value));
                        }
                    }
                    selections.push((keys, exclude));
                }
            }
        }
        // A positive selection without postings selects nothing.
        if selections
            .iter()
            .any(|(k, exclude)| !exclude && k.is_empty())
        {
            return Ok(Vec::new());
        }
        // Round trip 2: every postings list needed (and all series when no selection is
        // positive).
        let need_all = selections.iter().all(|(_, exclude)| *exclude);
        // A selection of many postings lists (a regex over a high-cardinality label) is merged
        // by Redis in one ZUNION (score-0 sets list the union in byte order, i.e. id order);
        // a few lists are read as they are, which costs Redis less than building a union.
        let mut pipe = self.read_pipe();
        for (keys, _) in &selections {
            if keys.len() > MERGE_ABOVE {
                pipe.cmd("ZUNION").arg(keys.len()).arg(keys);
            } else {
                for k in keys {
                    pipe.cmd("ZRANGE").arg(k).arg(0).arg(-1);
                }
            }
        }
        if need_all {
            pipe.cmd("ZRANGE")
                .arg(self.keys.all_series())
                .arg(0)
                .arg(-1);
        }
        let mut replies = self.run_read(&pipe).await?;
        let mut next_ids = |key: &[u8]| -> Result<Vec<SeriesId>> {
            let raw: Vec<Vec<u8>> = Self::next_reply(&mut replies)?;
            raw.iter().map(|b| keys::decode_id(b, key)).collect()
        };
        let mut include: Option<Vec<SeriesId>> = None;
        let mut exclude: BTreeSet<SeriesId> = BTreeSet::new();
        for (keys, is_exclude) in &selections {
            let ids = match keys.first() {
                Some(first) if keys.len() > MERGE_ABOVE => union(vec![next_ids(first)?]),
                _ => {
                    let mut lists = Vec::with_capacity(keys.len());
                    for k in keys {
                        lists.push(next_ids(k)?);
                    }
                    union(lists)
                }
            };
            if *is_exclude {
                exclude.extend(ids);
            } else {
                include = Some(match include {
                    None => ids,
                    Some(mut acc) => {
                        let set: BTreeSet<SeriesId> = ids.into_iter().collect();
                        acc.retain(|id| set.contains(id));
                        acc
                    }
                });
            }
        }
        let mut result = match include {
            Some(ids) => ids,
            None => next_ids(&self.keys.all_series())?,
        };
        result.retain(|id| !exclude.contains(id));
        Ok(result)
    }

    async fn label_names(&self) -> Result<Vec<String>> {
        self.read_dictionary(self.keys.names()).await
    }

    async fn label_values(&self, name: &str) -> Result<Vec<String>> {
        self.read_dictionary(self.keys.values(name)).await
    }

    async fn add_chunk(&self, chunk: &ChunkReference) -> Result<()> {
        if chunk.start_time > chunk.end_time {
            return Err(Error::invalid_input(format_args!(
                "chunk of series {} at {} starts at {} after its end {}",
                chunk.series_id, chunk.location, chunk.start_time, chunk.end_time
            )));
        }
        let series = chunk.series_id;
        let duration = chunk.end_time.abs_diff(chunk.start_time);
        let mut inv = scripts::ADD_CHUNK.prepare_invoke();
        inv.key(self.keys.labels(series))
            .key(self.keys.chunks(series))
            .key(self.keys.locations(series))
            .key(self.keys.max_duration(series))
            .key(&*self.epoch_key)
            .arg(&keys::encode_entry(chunk)[..])
            .arg(&keys::location_bytes(&chunk.location)[..])
            .arg(&duration.to_be_bytes()[..]);
        // A series that a Redis restarted empty no longer has is `SeriesNotFound`, at once;
        // the epoch in the same reply then shows the loss, so reads give `StateLost`.
        match parse::<i64>(self.run_write(&inv, "add_chunk").await?)? {
            -1 => Err(Error::SeriesNotFound { series }),
            _ => Ok(()),
        }
    }

    async fn query_chunks(
        &self,
        series: SeriesId,
        range: TimeRange,
    ) -> Result<Vec<ChunkReference>> {
        if range.start > range.end {
            return Err(Error::invalid_input(format_args!(
                "query_chunks of series {series}: range start {} is after its end {}",
                range.start, range.end
            )));
        }
        let chunks_key = self.keys.chunks(series);
        let max_key = self.keys.max_duration(series);
        let mut bound = self.duration_bound.load(Ordering::Relaxed);
        let mut pipe = self.read_pipe();
        pipe.cmd("ZRANGE").arg(&max_key).arg(-1).arg(-1);
        pipe.cmd("ZRANGEBYLEX")
            .arg(&chunks_key)
            .arg(lex_from(scan_start(range.start, bound)))
            .arg(lex_through(range.end));
        let mut replies = self.run_read(&pipe).await?;
        let max: Vec<Vec<u8>> = Self::next_reply(&mut replies)?;
        let mut entries: Vec<Vec<u8>> = Self::next_reply(&mut replies)?;
        let actual = match max.first() {
            Some(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| {
                Error::corrupt(
                    &max_key,
                    0,
                    format_args!("duration of {} bytes, expected 8", b.len()),
                )
            })?),
            None => 0,
        };
        if actual > bound {
            // This series has longer chunks than any seen: scan again from further back.
            self.duration_bound.fetch_max(actual, Ordering::Relaxed);
            bound = actual;
            let mut pipe = self.read_pipe();
            pipe.cmd("ZRANGEBYLEX")
                .arg(&chunks_key)
                .arg(lex_from(scan_start(range.start, bound)))
                .arg(lex_through(range.end));
            entries = Self::next_reply(&mut self.run_read(&pipe).await?)?;
        }
        entries
            .iter()
            .filter(|e| keys::entry_end(e).is_none_or(|end| end >= range.start))
            .map(|e| keys::decode_entry(series, e, &chunks_key))
            .collect()
    }

    async fn remove_chunks(&self, series: SeriesId, locations: &[ChunkLocation]) -> Result<()> {
        if locations.is_empty() {
            return Ok(());
        }
        let mut inv = scripts::REMOVE_CHUNKS.prepare_invoke();
        inv.key(self.keys.chunks(series))
            .key(self.keys.locations(series))
            .key(&*self.epoch_key);
        for l in locations {
            inv.arg(&keys::location_bytes(l)[..]);
        }
        parse::<i64>(self.run_write(&inv, "remove_chunks").await?).map(|_| ())
    }

    async fn drop_series(&self, series: SeriesId) -> Result<()> {
        // Read the labels to name the postings keys, then drop atomically if they are
        // unchanged (a concurrent drop and re-register with other labels makes us re-read).
        // A write: works while lost (the epoch read is only noted).
        for _ in 0..8 {
            let (seen, found) = self.read_labels(series).await?;
            self.epoch.observe(seen.as_deref());
            let Some((canonical, labels)) = found else {
                return Ok(());
            };
            let id = keys::id_bytes(series);
            let mut inv = scripts::DROP.prepare_invoke();
            inv.key(self.keys.labels(series))
                .key(self.keys.chunks(series))
                .key(self.keys.locations(series))
                .key(self.keys.max_duration(series))
                .key(self.keys.all_series())
                .key(self.keys.names())
                .key(&*self.epoch_key)
                .arg(&canonical)
                .arg(&id[..]);
            self.push_label_keys(&mut inv, &labels);
            if parse::<i64>(self.run_write(&inv, "drop").await?)? != -1 {
                return Ok(());
            }
        }
        Err(Error::Unavailable {
            engine: ENGINE,
            reason: format!("series {series} kept changing during drop_series"),
        })
    }

    async fn state_lost(&self) -> Result<bool> {
        if !self.epoch.is_lost() {
            let seen: Option<Vec<u8>> = self.run(redis::cmd("GET").arg(&*self.epoch_key)).await?;
            if self.epoch.observe(seen.as_deref()) == Verdict::Intact {
                return Ok(false);
            }
        }
        match self.lost_error().await {
            Error::StateLost { .. } => Ok(true),
            // Rebuilt meanwhile.
            Error::Unavailable { .. } if !self.epoch.is_lost() => Ok(false),
            e => Err(e),
        }
    }

    async fn mark_rebuilt(&self) -> Result<()> {
        let current = self.current_epoch().await?;
        self.epoch
            .rebuilt(current)
            .map_err(|reason| Error::StateLost {
                engine: ENGINE,
                reason,
            })
    }
}
