//! Label values stored inline when short, so a scan of a value dictionary (a regex over every
//! `instance`, say) reads B-tree nodes only instead of chasing one heap pointer per value.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

/// Values up to this many bytes live inside the dictionary's nodes.
const INLINE: usize = 30;

/// A label value; compares, hashes and borrows as its `str`.
#[derive(Clone)]
pub(crate) enum Value {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Value {
    pub(crate) fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Value::Inline { len, bytes }
            }
            _ => Value::Heap(s.into()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Always valid: the bytes are a whole `str`, copied in `new`.
            Value::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Value::Heap(s) => s,
        }
    }
}

impl Borrow<str> for Value {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap_values_behave_as_their_text() {
        let texts = [
            "",
            "a",
            "host-12345",
            "é\"\\\n",
            &"x".repeat(30),
            &"y".repeat(31),
            &"é".repeat(40),
        ];
        for a in texts {
            let va = Value::new(a);
            assert_eq!(va.as_str(), a);
            for b in texts {
                let vb = Value::new(b);
                assert_eq!(va.cmp(&vb), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(va == vb, a == b);
            }
        }
        assert!(matches!(Value::new(&"x".repeat(30)), Value::Inline { .. }));
        assert!(matches!(Value::new(&"x".repeat(31)), Value::Heap(_)));
    }
}
