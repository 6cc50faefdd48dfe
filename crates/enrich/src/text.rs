//! Compact text for observations: the merge window holds hundreds of
//! thousands of them, so text that repeats across calls is interned and the
//! unmapped attributes are packed into one allocation.

use std::cell::RefCell;
use std::sync::Arc;

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
/// string: per entry, the key's and the value's byte length, then their text.
/// A length under 127 is one character of that code; a longer one is the
/// character 127 and then three characters of 7 bits each, so the buffer stays
/// ASCII framing around UTF-8 text and reading it back needs no validation.
/// Keys and values are already bounded (128 and
/// [`claudewatch_model::ATTRIBUTE_VALUE_MAX_LEN`] bytes), far below the
/// 65,535 that [`Unmapped::push`] enforces anyway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unmapped {
    text: String,
    len: usize,
}

/// The framing character that announces a three-character length.
const LONG_LEN: u8 = 127;

fn push_len(out: &mut String, n: usize) {
    if n < usize::from(LONG_LEN) {
        out.push(char::from(n as u8));
    } else {
        out.push(char::from(LONG_LEN));
        for shift in [14, 7, 0] {
            out.push(char::from(((n >> shift) & 0x7f) as u8));
        }
    }
}

/// Reads a length written by [`push_len`]: `(length, characters used)`.
fn read_len(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.first()?;
    if first < LONG_LEN {
        return Some((usize::from(first), 1));
    }
    let d = b.get(1..4)?;
    let n = (usize::from(d[0]) << 14) | (usize::from(d[1]) << 7) | usize::from(d[2]);
    Some((n, 4))
}

impl Unmapped {
    /// An empty list with room for `bytes` bytes of entries.
    pub fn with_capacity(bytes: usize) -> Unmapped {
        Unmapped {
            text: String::with_capacity(bytes),
            len: 0,
        }
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends an attribute (each part cut at a character boundary to 65,535 bytes).
    pub fn push(&mut self, key: &str, value: &str) {
        let (key, _) = cut_utf8(key, usize::from(u16::MAX));
        let (value, _) = cut_utf8(value, usize::from(u16::MAX));
        push_len(&mut self.text, key.len());
        push_len(&mut self.text, value.len());
        self.text.push_str(key);
        self.text.push_str(value);
        self.len += 1;
    }

    /// The attributes in order.
    pub fn iter(&self) -> UnmappedIter<'_> {
        UnmappedIter { rest: &self.text }
    }

    /// Keeps at most `max_count` attributes and cuts values to
    /// `max_value_bytes`; returns how many attributes were dropped and how
    /// many values were cut.
    pub fn limit(&mut self, max_count: usize, max_value_bytes: usize) -> (u64, u64) {
        let fits = self.len <= max_count && self.iter().all(|(_, v)| v.len() <= max_value_bytes);
        if fits {
            return (0, 0);
        }
        let dropped = self.len.saturating_sub(max_count) as u64;
        let mut truncated = 0;
        let mut kept = Unmapped::with_capacity(self.text.len());
        for (key, value) in self.iter().take(max_count) {
            let (value, cut) = cut_utf8(value, max_value_bytes);
            truncated += u64::from(cut);
            kept.push(key, value);
        }
        *self = kept;
        (dropped, truncated)
    }
}

/// Iterator over [`Unmapped`] attributes as `(key, value)`.
#[derive(Debug, Clone)]
pub struct UnmappedIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for UnmappedIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let (key_len, a) = read_len(self.rest.as_bytes())?;
        let (value_len, b) = read_len(self.rest.as_bytes().get(a..)?)?;
        let key_start = a + b;
        let value_start = key_start + key_len;
        let end = value_start + value_len;
        let entry = (
            self.rest.get(key_start..value_start)?,
            self.rest.get(value_start..end)?,
        );
        self.rest = self.rest.get(end..)?;
        Some(entry)
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
    fn unmapped_keeps_order_and_text() {
        let mut u = Unmapped::default();
        u.push("server.port", "443");
        u.push("", "");
        u.push("ключ", "значение ✓");
        assert_eq!(u.len(), 3);
        let all: Vec<_> = u.iter().collect();
        assert_eq!(
            all,
            vec![("server.port", "443"), ("", ""), ("ключ", "значение ✓")]
        );
    }

    #[test]
    fn unmapped_lengths_either_side_of_the_long_form_read_back() {
        let mut u = Unmapped::default();
        let texts: Vec<String> = [0, 1, 126, 127, 128, 300, 16_383, 16_384, 65_535]
            .iter()
            .map(|&n| "v".repeat(n))
            .collect();
        for t in &texts {
            u.push(t, t);
        }
        let back: Vec<(&str, &str)> = u.iter().collect();
        let want: Vec<(&str, &str)> = texts.iter().map(|t| (t.as_str(), t.as_str())).collect();
        assert_eq!(back, want);
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

    #[test]
    fn push_bounds_each_part() {
        let mut u = Unmapped::default();
        let huge = "é".repeat(40_000);
        u.push(&huge, "v");
        let (k, v) = u.iter().next().unwrap_or_default();
        assert!(k.len() <= usize::from(u16::MAX) && k.len() >= usize::from(u16::MAX) - 1);
        assert_eq!(v, "v");
    }
}
