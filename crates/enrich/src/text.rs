//! Compact text for observations: the merge window holds hundreds of
//! thousands of them, so text that repeats across calls is interned and the
//! unmapped attributes are packed into one allocation.

use std::cell::RefCell;
use std::sync::Arc;

use claudewatch_model::{PackedPairs, PairsIter};
use rustc_hash::FxHashSet;

use crate::attrs::cut_utf8;

/// Distinct strings one thread keeps interned; when full, the cache starts
/// over (hostile input with ever new values costs memory only up to here).
const INTERN_MAX_ENTRIES: usize = 4096;

/// Strings longer than this are not interned (they are unlikely to repeat).
const INTERN_MAX_LEN: usize = 128;

thread_local! {
    static INTERNED: RefCell<FxHashSet<Arc<str>>> = RefCell::new(FxHashSet::default());
}

/// A shared copy of `s`: every call of this thread with equal text gets the
/// same allocation (service names, models, organization ids repeat on almost
/// every call).
pub fn intern(s: &str) -> Arc<str> {
    if s.len() > INTERN_MAX_LEN {
        return Arc::from(s);
    }
    INTERNED.with(|cell| {
        let mut set = cell.borrow_mut();
        if let Some(shared) = set.get(s) {
            return Arc::clone(shared);
        }
        if set.len() >= INTERN_MAX_ENTRIES {
            set.clear();
        }
        let shared: Arc<str> = Arc::from(s);
        set.insert(Arc::clone(&shared));
        shared
    })
}

/// The unmapped attributes of an observation, in order, packed into one
/// string ([`PackedPairs`]). Keys and values are already bounded (128 and
/// [`claudewatch_model::ATTRIBUTE_VALUE_MAX_LEN`] bytes), far below the
/// packing's own limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unmapped {
    pairs: PackedPairs,
}

impl Unmapped {
    /// An empty list with room for `bytes` bytes of entries.
    pub fn with_capacity(bytes: usize) -> Unmapped {
        Unmapped {
            pairs: PackedPairs::with_capacity(bytes),
        }
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Appends an attribute.
    pub fn push(&mut self, key: &str, value: &str) {
        self.pairs.push(key, value);
    }

    /// The attributes in order.
    pub fn iter(&self) -> PairsIter<'_> {
        self.pairs.iter()
    }

    /// Keeps at most `max_count` attributes and cuts values to
    /// `max_value_bytes`; returns how many attributes were dropped and how
    /// many values were cut.
    pub fn limit(&mut self, max_count: usize, max_value_bytes: usize) -> (u64, u64) {
        let fits = self.len() <= max_count && self.iter().all(|(_, v)| v.len() <= max_value_bytes);
        if fits {
            return (0, 0);
        }
        let dropped = self.len().saturating_sub(max_count) as u64;
        let mut truncated = 0;
        let mut kept = Unmapped::with_capacity(self.pairs.bytes());
        for (key, value) in self.iter().take(max_count) {
            let (value, cut) = cut_utf8(value, max_value_bytes);
            truncated += u64::from(cut);
            kept.push(key, value);
        }
        *self = kept;
        (dropped, truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_text_is_shared_and_equal() {
        let a = intern("checkout");
        let b = intern(&String::from("checkout"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "checkout");
        let long = "x".repeat(INTERN_MAX_LEN + 1);
        assert!(!Arc::ptr_eq(&intern(&long), &intern(&long)));
    }

    #[test]
    fn the_intern_cache_is_bounded() {
        for i in 0..INTERN_MAX_ENTRIES * 2 {
            let _ = intern(&format!("value-{i}"));
        }
        INTERNED.with(|cell| assert!(cell.borrow().len() <= INTERN_MAX_ENTRIES));
        assert_eq!(&*intern("value-1"), "value-1");
    }

    #[test]
    fn unmapped_limit_drops_and_cuts_at_char_boundaries() {
        let mut u = Unmapped::default();
        u.push("a", "ééé");
        u.push("b", "short");
        u.push("c", "dropped");
        assert_eq!(u.limit(2, 3), (1, 2));
        let all: Vec<_> = u.iter().collect();
        assert_eq!(all, vec![("a", "é"), ("b", "sho")]);
        let before = u.clone();
        assert_eq!(u.limit(2, 3), (0, 0));
        assert_eq!(u, before);
    }
}
