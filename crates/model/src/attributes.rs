//! Key/value text packed into one string: the unmapped attributes of a call.
//!
//! A record's attributes used to be a `BTreeMap<String, String>`: two
//! allocations per attribute plus tree nodes, built and freed once per call.
//! Here they are one string per record, read back without re-validation.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest key or value a [`PackedPairs`] holds, in bytes; longer text is
/// cut at a character boundary.
pub const PACKED_PART_MAX_LEN: usize = u16::MAX as usize;

/// The framing character that announces a three-character length.
const LONG_LEN: u8 = 127;

/// Key/value pairs in insertion order, packed into one string: per pair, the
/// key's and the value's byte length, then their text. A length under 127 is
/// one character of that code; a longer one is the character 127 and then
/// three characters of 7 bits each. The framing is ASCII around UTF-8 text,
/// so the whole is a `String` and slicing it back needs no validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedPairs {
    text: String,
    len: usize,
}

impl PackedPairs {
    /// An empty list with room for `bytes` bytes of pairs.
    pub fn with_capacity(bytes: usize) -> PackedPairs {
        PackedPairs {
            text: String::with_capacity(bytes),
            len: 0,
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of text and framing held.
    pub fn bytes(&self) -> usize {
        self.text.len()
    }

    /// Appends a pair, each part cut at a character boundary to
    /// [`PACKED_PART_MAX_LEN`] bytes.
    pub fn push(&mut self, key: &str, value: &str) {
        let key = cut(key, PACKED_PART_MAX_LEN);
        let value = cut(value, PACKED_PART_MAX_LEN);
        push_len(&mut self.text, key.len());
        push_len(&mut self.text, value.len());
        self.text.push_str(key);
        self.text.push_str(value);
        self.len += 1;
    }

    /// Removes every pair, keeping the allocation.
    pub fn clear(&mut self) {
        self.text.clear();
        self.len = 0;
    }

    /// The pairs in order.
    pub fn iter(&self) -> PairsIter<'_> {
        PairsIter { rest: &self.text }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary, and whether anything was cut.
pub fn cut_utf8(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

fn cut(s: &str, max: usize) -> &str {
    cut_utf8(s, max).0
}

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

/// Iterator over packed pairs as `(key, value)`.
#[derive(Debug, Clone)]
pub struct PairsIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for PairsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let (key_len, a) = read_len(self.rest.as_bytes())?;
        let (value_len, b) = read_len(self.rest.as_bytes().get(a..)?)?;
        let key_start = a + b;
        let value_start = key_start + key_len;
        let end = value_start + value_len;
        let pair = (
            self.rest.get(key_start..value_start)?,
            self.rest.get(value_start..end)?,
        );
        self.rest = self.rest.get(end..)?;
        Some(pair)
    }
}

/// A call's unmapped attributes: a map from key to value, each key once, in
/// ascending key order, packed into one string ([`PackedPairs`]). It reads
/// and serializes like a `BTreeMap<String, String>` (a JSON object with
/// sorted keys).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pairs: PackedPairs,
}

impl Attributes {
    /// No attributes.
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The attributes in ascending key order.
    pub fn iter(&self) -> PairsIter<'_> {
        self.pairs.iter()
    }

    /// The keys in ascending order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// The values, in their keys' order.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(_, v)| v)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value` (replacing a value it had), keeping the order.
    pub fn insert(&mut self, key: &str, value: &str) {
        let mut all: Vec<(&str, &str)> = self.iter().filter(|(k, _)| *k != key).collect();
        let at = all.partition_point(|(k, _)| *k < key);
        all.insert(at, (key, value));
        *self = Attributes::from_sorted_unique(&all);
    }

    /// Removes every attribute.
    pub fn clear(&mut self) {
        self.pairs.clear();
    }

    /// From pairs already in ascending key order, each key once (checked in
    /// debug builds). [`FromIterator`] sorts and deduplicates any pairs.
    pub fn from_sorted_unique(pairs: &[(&str, &str)]) -> Attributes {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        let bytes = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut packed = PackedPairs::with_capacity(bytes);
        for (k, v) in pairs {
            packed.push(k, v);
        }
        Attributes { pairs: packed }
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Attributes {
    /// Sorted by key; a key given twice keeps its last value, as a map would.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Attributes {
        let owned: Vec<(K, V)> = iter.into_iter().collect();
        let mut pairs: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (cut(k.as_ref(), PACKED_PART_MAX_LEN), v.as_ref()))
            .collect();
        pairs.reverse(); // so the stable sort puts the last value of a key first
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        pairs.dedup_by(|later, first| later.0 == first.0);
        Attributes::from_sorted_unique(&pairs)
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a str, &'a str);
    type IntoIter = PairsIter<'a>;

    fn into_iter(self) -> PairsIter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Attributes, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = Attributes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of text to text")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
                let mut pairs: Vec<(String, String)> = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(pairs.into_iter().collect())
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn packed_pairs_keep_order_and_text() {
        let mut p = PackedPairs::default();
        p.push("server.port", "443");
        p.push("", "");
        p.push("ключ", "значение ✓");
        assert_eq!(p.len(), 3);
        let all: Vec<_> = p.iter().collect();
        assert_eq!(
            all,
            vec![("server.port", "443"), ("", ""), ("ключ", "значение ✓")]
        );
    }

    #[test]
    fn lengths_either_side_of_the_long_form_read_back() {
        let mut p = PackedPairs::default();
        let texts: Vec<String> = [0, 1, 126, 127, 128, 300, 16_383, 16_384, 65_535]
            .iter()
            .map(|&n| "v".repeat(n))
            .collect();
        for t in &texts {
            p.push(t, t);
        }
        let back: Vec<(&str, &str)> = p.iter().collect();
        let want: Vec<(&str, &str)> = texts.iter().map(|t| (t.as_str(), t.as_str())).collect();
        assert_eq!(back, want);
    }

    #[test]
    fn push_cuts_each_part_at_a_character_boundary() {
        let mut p = PackedPairs::default();
        let huge = "é".repeat(40_000);
        p.push(&huge, "v");
        let (k, v) = p.iter().next().unwrap();
        assert_eq!(k.len(), PACKED_PART_MAX_LEN - 1, "65,535 splits an é");
        assert_eq!(v, "v");
    }

    #[test]
    fn attributes_read_serialize_and_deserialize_like_a_sorted_map() {
        let pairs = [("b", "2"), ("a", "1 é"), ("c\"q", "x\ny"), ("a", "last")];
        let ours: Attributes = pairs.iter().copied().collect();
        let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        assert_eq!(ours.len(), 3);
        assert_eq!(
            ours.iter().collect::<Vec<_>>(),
            map.clone().into_iter().collect::<Vec<_>>()
        );
        assert_eq!(ours.get("a"), Some("last"));
        assert!(ours.contains_key("c\"q") && !ours.contains_key("z"));
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        let back: Attributes = serde_json::from_str(&serde_json::to_string(&map).unwrap()).unwrap();
        assert_eq!(back, ours);
        assert_eq!(format!("{ours:?}"), format!("{map:?}"));
    }

    #[test]
    fn insert_replaces_and_keeps_the_order() {
        let mut a = Attributes::new();
        a.insert("m", "1");
        a.insert("a", "2");
        a.insert("z", "3");
        a.insert("m", "4");
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![("a", "2"), ("m", "4"), ("z", "3")]
        );
        a.clear();
        assert!(a.is_empty());
    }
}
