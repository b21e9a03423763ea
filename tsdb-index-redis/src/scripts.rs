//! The Lua scripts that make each write atomic (Redis runs a script without interleaving).
//!
//! Each script also returns the epoch key's value (see [`crate::epoch`]), read in the same
//! atomic step, so a write notices a Redis that lost its state without a round trip of its own.

use std::sync::LazyLock;

use redis::Script;

/// `register_series`. KEYS: labels, series, names, epoch, then per label its values key and
/// its postings key. ARGV: canonical labels, id member, then per label its name and value.
/// Returns `{status, epoch}`: status 1 when registered, 0 when already registered with these
/// labels, or the labels already registered (a bulk string) on a collision, in which case
/// nothing changed; epoch is the epoch key's value (nil when missing).
pub(crate) static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local epoch = redis.call('GET', KEYS[4])
local cur = redis.call('GET', KEYS[1])
if cur then
  if cur == ARGV[1] then return {0, epoch} end
  return {cur, epoch}
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
for i = 1, (#KEYS - 4) / 2 do
  redis.call('ZADD', KEYS[3], 0, ARGV[1 + 2 * i])
  redis.call('ZADD', KEYS[3 + 2 * i], 0, ARGV[2 + 2 * i])
  redis.call('ZADD', KEYS[4 + 2 * i], 0, ARGV[2])
end
return {1, epoch}
",
    )
});

/// `drop_series`. KEYS: labels, chunks, locations, maxdur, series, names, epoch, then per
/// label its values key and postings key. ARGV: the canonical labels read before, id member,
/// then per label its name and value. Returns `{status, epoch}`: status 1 when dropped, 0
/// when not registered, -1 when the labels changed since they were read (nothing changed;
/// read again and retry); epoch as for [`REGISTER`].
pub(crate) static DROP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local epoch = redis.call('GET', KEYS[7])
local cur = redis.call('GET', KEYS[1])
if not cur then return {0, epoch} end
if cur ~= ARGV[1] then return {-1, epoch} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[2])
for i = 1, (#KEYS - 7) / 2 do
  local vkey = KEYS[6 + 2 * i]
  local pkey = KEYS[7 + 2 * i]
  redis.call('ZREM', pkey, ARGV[2])
  if redis.call('EXISTS', pkey) == 0 then
    redis.call('ZREM', vkey, ARGV[2 + 2 * i])
    if redis.call('EXISTS', vkey) == 0 then
      redis.call('ZREM', KEYS[6], ARGV[1 + 2 * i])
    end
  end
end
return {1, epoch}
",
    )
});

/// `add_chunk`. KEYS: labels, chunks, locations, maxdur, epoch. ARGV: entry member,
/// location, duration (8 bytes big-endian). Returns `{status, epoch}`: status 1 when added, 0
/// when the location was present (nothing changed), -1 when the series is not registered
/// (nothing changed); epoch as for [`REGISTER`].
pub(crate) static ADD_CHUNK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local epoch = redis.call('GET', KEYS[5])
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, epoch} end
if redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[1]) == 0 then return {0, epoch} end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -2)
return {1, epoch}
",
    )
});

/// `remove_chunks`. KEYS: chunks, locations, epoch. ARGV: locations. Returns `{removed,
/// epoch}`: how many were removed, and epoch as for [`REGISTER`]. The series' largest
/// duration is kept: it only bounds the query's scan from below.
pub(crate) static REMOVE_CHUNKS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local epoch = redis.call('GET', KEYS[3])
local n = 0
for i = 1, #ARGV do
  local m = redis.call('HGET', KEYS[2], ARGV[i])
  if m then
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return {n, epoch}
",
    )
});
