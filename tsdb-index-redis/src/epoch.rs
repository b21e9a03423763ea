//! The epoch: a random token under the prefix that tells an instance whether Redis still holds
//! what was written to it.
//!
//! An instance adopts the token when it connects. Every read fetches the key in the same
//! MULTI/EXEC as the data it reads, and every write script returns it, so a Redis that restarted
//! empty or was flushed (key missing) or that another instance rebuilt (key changed) is noticed
//! by the first call that reaches it. The instance is then *lost*: reads fail with
//! [`Error::StateLost`](tsdb_core::Error::StateLost) until the owner has registered its series
//! and chunks again and called `mark_rebuilt`.
//!
//! Before the first `StateLost` is given out, the instance *pins* the epoch that the owner's
//! rebuild will be written under: it creates a new token if the key is missing (`SET NX`) and
//! remembers the token now current. `mark_rebuilt` adopts that token only if it is still
//! current, so a second loss during the rebuild (which deletes the pinned token for good) is
//! not mistaken for a finished rebuild. Instances sharing a prefix pin the same token: only a
//! missing key is ever written, so they converge on one epoch without ping-pong.

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh token: creation time in milliseconds (for people reading Redis) and 128 random bits.
pub(crate) fn new_token() -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = since.as_millis().to_string();
    out.push('-');
    for salt in 0..2u8 {
        // `RandomState` is seeded from the OS per thread and stepped per instance.
        let mut h = RandomState::new().build_hasher();
        h.write_u128(since.as_nanos());
        h.write_u32(std::process::id());
        h.write_u64(n);
        h.write_u8(salt);
        let _ = write!(out, "{:016x}", h.finish());
    }
    out.into_bytes()
}

/// What a reply's epoch means for the reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The adopted epoch: the state the reply was read from is whole.
    Intact,
    /// Another or no epoch: the instance is lost (it just became so, or already was).
    Lost,
}

/// Why the instance is lost, and the epoch its rebuild is written under.
#[derive(Debug)]
struct Lost {
    reason: String,
    /// The token that was current when the loss was pinned; `None` until then.
    pinned: Option<Vec<u8>>,
}

#[derive(Debug)]
struct State {
    adopted: Vec<u8>,
    lost: Option<Lost>,
}

/// The epoch an instance trusts, and whether it is lost. Shared by clones of one instance.
#[derive(Debug)]
pub(crate) struct Epoch {
    /// The key's name, for messages.
    key: String,
    /// Mirrors `state.lost.is_some()`, so the healthy path never takes the lock before a read.
    is_lost: AtomicBool,
    state: Mutex<State>,
}

fn show(token: &[u8]) -> String {
    String::from_utf8_lossy(token).into_owned()
}

impl Epoch {
    /// An instance that adopted `token`.
    pub(crate) fn new(key: &[u8], token: Vec<u8>) -> Self {
        Epoch {
            key: show(key),
            is_lost: AtomicBool::new(false),
            state: Mutex::new(State {
                adopted: token,
                lost: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The adopted token.
    pub(crate) fn adopted(&self) -> Vec<u8> {
        self.lock().adopted.clone()
    }

    /// Whether the instance is lost (no lock taken).
    pub(crate) fn is_lost(&self) -> bool {
        self.is_lost.load(Ordering::Acquire)
    }

    /// Judges the epoch a reply carried (`None`: the key was missing); another epoch than the
    /// adopted one makes the instance lost.
    pub(crate) fn observe(&self, seen: Option<&[u8]>) -> Verdict {
        let mut st = self.lock();
        if seen == Some(st.adopted.as_slice()) {
            return Verdict::Intact;
        }
        if st.lost.is_none() {
            let reason = match seen {
                None => format!(
                    "the epoch key {} is missing: Redis restarted without its data or was \
                     flushed",
                    self.key
                ),
                Some(other) => format!(
                    "the epoch key {} changed from {} to {}: Redis lost its data and another \
                     instance sharing the prefix started a new epoch (it may have rebuilt its \
                     series already)",
                    self.key,
                    show(&st.adopted),
                    show(other)
                ),
            };
            tracing::warn!(key = %self.key, %reason, "redis index lost its state");
            st.lost = Some(Lost {
                reason,
                pinned: None,
            });
            self.is_lost.store(true, Ordering::Release);
        }
        Verdict::Lost
    }

    /// The message of [`Error::StateLost`](tsdb_core::Error::StateLost) once the loss is
    /// pinned; `None` when the instance is not lost or the loss is not pinned yet.
    pub(crate) fn pinned_reason(&self) -> Option<String> {
        let st = self.lock();
        let lost = st.lost.as_ref()?;
        lost.pinned.as_ref()?;
        Some(format!(
            "{}; reads fail until the owner registers its series and chunks again and calls \
             mark_rebuilt",
            lost.reason
        ))
    }

    /// Records `current`, the token in Redis right after the loss was noticed, as the epoch of
    /// the rebuild, unless one is recorded already.
    pub(crate) fn pin(&self, current: Vec<u8>) {
        let mut st = self.lock();
        if let Some(lost) = st.lost.as_mut()
            && lost.pinned.is_none()
        {
            lost.pinned = Some(current);
        }
    }

    /// `mark_rebuilt`, given `current`, the token in Redis now: adopts it and clears the loss
    /// if it is the pinned one; otherwise stays (or becomes) lost, pins `current` and returns
    /// why the owner must rebuild again.
    pub(crate) fn rebuilt(&self, current: Vec<u8>) -> Result<(), String> {
        let mut st = self.lock();
        let reason = match &st.lost {
            None if current == st.adopted => return Ok(()),
            None => format!(
                "the epoch key {} changed from {} to {} without this instance noticing a \
                 loss, so its rebuild may predate the loss",
                self.key,
                show(&st.adopted),
                show(&current)
            ),
            Some(Lost {
                pinned: Some(p), ..
            }) if *p == current => {
                tracing::info!(key = %self.key, epoch = %show(&current), "redis index rebuilt");
                st.adopted = current;
                st.lost = None;
                self.is_lost.store(false, Ordering::Release);
                return Ok(());
            }
            Some(Lost {
                pinned: Some(p), ..
            }) => format!(
                "the epoch key {} changed during the rebuild (from {} to {}): Redis lost its \
                 data again, so the rebuild may be incomplete",
                self.key,
                show(p),
                show(&current)
            ),
            Some(Lost { pinned: None, .. }) => format!(
                "the loss noticed at the epoch key {} was not pinned before the rebuild, so the \
                 rebuild may predate it",
                self.key
            ),
        };
        tracing::warn!(key = %self.key, %reason, "redis index rebuild not accepted");
        st.lost = Some(Lost {
            reason: reason.clone(),
            pinned: Some(current),
        });
        self.is_lost.store(true, Ordering::Release);
        Err(format!(
            "{reason}; register the series and chunks again, then call mark_rebuilt"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> Epoch {
        Epoch::new(b"{p}:epoch", b"A".to_vec())
    }

    #[test]
    fn tokens_differ() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.len() > 32, "{}", show(&a));
    }

    #[test]
    fn the_adopted_epoch_is_intact() {
        let e = epoch();
        assert_eq!(e.observe(Some(b"A")), Verdict::Intact);
        assert!(!e.is_lost());
        assert_eq!(e.pinned_reason(), None);
        assert_eq!(e.rebuilt(b"A".to_vec()), Ok(()));
    }

    #[test]
    fn a_missing_epoch_is_lost_until_the_pinned_epoch_is_rebuilt() {
        let e = epoch();
        assert_eq!(e.observe(None), Verdict::Lost);
        assert!(e.is_lost());
        assert_eq!(e.pinned_reason(), None, "not pinned yet");
        e.pin(b"B".to_vec());
        e.pin(b"C".to_vec()); // a later pin does not move the first
        let reason = e.pinned_reason().expect("pinned");
        assert!(reason.contains("missing"), "{reason}");
        // Replies read before the loss are still whole; others are not.
        assert_eq!(e.observe(Some(b"A")), Verdict::Intact);
        assert_eq!(e.observe(Some(b"B")), Verdict::Lost);
        assert_eq!(e.rebuilt(b"B".to_vec()), Ok(()));
        assert!(!e.is_lost());
        assert_eq!(e.adopted(), b"B".to_vec());
        assert_eq!(e.observe(Some(b"B")), Verdict::Intact);
    }

    #[test]
    fn a_changed_epoch_names_both_tokens() {
        let e = epoch();
        assert_eq!(e.observe(Some(b"B")), Verdict::Lost);
        e.pin(b"B".to_vec());
        let reason = e.pinned_reason().expect("pinned");
        assert!(reason.contains("changed from A to B"), "{reason}");
    }

    #[test]
    fn a_second_loss_during_the_rebuild_is_not_accepted() {
        let e = epoch();
        e.observe(None);
        e.pin(b"B".to_vec());
        let err = e.rebuilt(b"C".to_vec()).expect_err("B was lost");
        assert!(err.contains("during the rebuild"), "{err}");
        assert!(e.is_lost());
        // The next rebuild is written under C.
        assert_eq!(e.rebuilt(b"C".to_vec()), Ok(()));
        assert_eq!(e.adopted(), b"C".to_vec());
    }

    #[test]
    fn an_unpinned_or_unnoticed_loss_needs_another_rebuild() {
        let e = epoch();
        e.observe(None);
        assert!(e.rebuilt(b"B".to_vec()).is_err());
        assert_eq!(e.rebuilt(b"B".to_vec()), Ok(()));

        let e = epoch();
        let err = e.rebuilt(b"B".to_vec()).expect_err("never noticed");
        assert!(err.contains("without this instance noticing"), "{err}");
        assert!(e.is_lost());
        assert!(e.pinned_reason().is_some());
        assert_eq!(e.rebuilt(b"B".to_vec()), Ok(()));
    }
}
