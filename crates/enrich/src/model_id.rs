//! Model-id normalisation: every spelling of a Claude model id to its family
//! and version (`claude-sonnet-4-5`), and the API surface the spelling implies.
//!
//! Handles dated ids (`claude-sonnet-4-5-20250929`), aliases
//! (`claude-3-5-sonnet-latest`, `claude-sonnet-4-0`), Bedrock ids with region
//! prefixes and ARNs (`us.anthropic.claude-sonnet-4-5-20250929-v1:0`), Vertex
//! ids (`claude-sonnet-4-5@20250929`, `publishers/anthropic/models/...`) and
//! context suffixes (`[1m]`).

use claudewatch_model::Provider;

/// A normalised model id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    /// Family and version, e.g. `claude-sonnet-4-5` or `claude-3-5-haiku`.
    pub family: String,
    /// The surface the id's spelling implies (`None` for a plain id).
    pub provider: Option<Provider>,
}

/// The surface a model id's spelling implies (Bedrock, Vertex), without
/// normalising it: a cheap check for the per-span path.
pub fn provider_hint(raw: &str) -> Option<Provider> {
    if !raw.bytes().any(|b| matches!(b, b'.' | b'@' | b':' | b'/')) {
        return None;
    }
    normalize(raw).and_then(|m| m.provider)
}

const TIERS: &[&str] = &["opus", "sonnet", "haiku", "instant"];

/// Whether `raw` contains `claude` in any case: every Claude model id does
/// (the normalised id starts with it and is a piece of the lowercased input).
fn contains_claude(raw: &str) -> bool {
    raw.as_bytes()
        .windows(6)
        .any(|w| w.eq_ignore_ascii_case(b"claude"))
}

/// Whether `raw` is a Claude model id (`normalize(raw).is_some()`), for the
/// per-span detection path: no allocation for other words, and the answer
/// for ids already seen by this thread from a small memo.
pub fn is_claude(raw: &str) -> bool {
    use std::cell::RefCell;
    const MEMO_MAX: usize = 4096;
    thread_local! {
        static MEMO: RefCell<rustc_hash::FxHashMap<Box<str>, bool>> = RefCell::default();
    }
    if !contains_claude(raw) {
        return false;
    }
    MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some(&known) = memo.get(raw) {
            return known;
        }
        let known = normalize(raw).is_some();
        if memo.len() >= MEMO_MAX {
            memo.clear();
        }
        memo.insert(raw.into(), known);
        known
    })
}

/// Normalises a model id; `None` when it is not a Claude model id.
pub fn normalize(raw: &str) -> Option<ModelId> {
    if !contains_claude(raw) {
        return None;
    }
    let mut id = raw.trim().to_ascii_lowercase();
    let mut provider = None;

    if id.starts_with("arn:") {
        provider = Some(Provider::Bedrock);
        id = id.rsplit('/').next().unwrap_or_default().to_owned();
    }
    if let Some(pos) = id.find("publishers/anthropic/models/") {
        provider = Some(Provider::Vertex);
        id = id[pos + "publishers/anthropic/models/".len()..].to_owned();
    }
    if let Some(at) = id.find('@') {
        provider = Some(Provider::Vertex);
        id.truncate(at);
    }
    if let Some(bracket) = id.find('[') {
        id.truncate(bracket);
    }
    if let Some(pos) = id.find("anthropic.") {
        provider = Some(Provider::Bedrock);
        id = id[pos + "anthropic.".len()..].to_owned();
    }
    // Bedrock version suffix: -v1:0, -v2:0, -v1
    if let Some(pos) = id.rfind("-v") {
        let tail = &id[pos + 2..];
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == ':') {
            id.truncate(pos);
        }
    }
    if let Some(colon) = id.find(':') {
        id.truncate(colon);
    }
    if !id.starts_with("claude") {
        return None;
    }

    let mut parts: Vec<&str> = id.split('-').filter(|p| !p.is_empty()).collect();
    // Drop trailing noise: dates, "latest", anything that is not a version or tier.
    while let Some(last) = parts.last() {
        let is_date = last.len() == 8 && last.chars().all(|c| c.is_ascii_digit());
        let keep = !is_date
            && (TIERS.contains(last)
                || (last.len() <= 2 && last.chars().all(|c| c.is_ascii_digit())));
        if keep || parts.len() == 1 {
            break;
        }
        parts.pop();
    }
    if parts.first() != Some(&"claude") || parts.len() < 2 {
        return None;
    }
    // Drop anything after the version once a tier and a version were seen
    // (e.g. suffixes such as "-thinking").
    let tier_first = parts.get(1).is_some_and(|p| TIERS.contains(p));
    if tier_first {
        // claude-sonnet-4-0 is the alias of claude-sonnet-4.
        if parts.len() == 4 && parts[3] == "0" {
            parts.pop();
        }
    }
    if !parts.iter().skip(1).any(|p| TIERS.contains(p)) && parts.len() < 2 {
        return None;
    }
    Some(ModelId {
        family: parts.join("-"),
        provider,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fam(id: &str) -> Option<String> {
        normalize(id).map(|m| m.family)
    }

    #[test]
    fn is_claude_agrees_with_normalize() {
        for id in [
            "claude-sonnet-4-5",
            "CLAUDE-3-5-HAIKU-20241022",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-5@20250929",
            "gpt-4o",
            "chat",
            "claude",
            "claudette",
            "",
        ] {
            for _ in 0..2 {
                assert_eq!(is_claude(id), normalize(id).is_some(), "{id}");
            }
        }
    }

    #[test]
    fn dated_aliases_and_suffixes() {
        for (id, family) in [
            ("claude-sonnet-4-5", "claude-sonnet-4-5"),
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-opus-4-1-20250805", "claude-opus-4-1"),
            ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
            ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
            ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
            ("claude-3-haiku-20240307", "claude-3-haiku"),
            ("claude-3-sonnet-20240229", "claude-3-sonnet"),
            ("claude-sonnet-4-0", "claude-sonnet-4"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("claude-opus-4-0", "claude-opus-4"),
            ("claude-opus-4-5-20251101", "claude-opus-4-5"),
            ("claude-sonnet-4-5[1m]", "claude-sonnet-4-5"),
            ("Claude-Sonnet-4-5", "claude-sonnet-4-5"),
        ] {
            assert_eq!(fam(id).as_deref(), Some(family), "{id}");
        }
    }

    #[test]
    fn bedrock_and_vertex_ids() {
        let b = normalize("us.anthropic.claude-sonnet-4-5-20250929-v1:0").unwrap();
        assert_eq!(
            (b.family.as_str(), b.provider),
            ("claude-sonnet-4-5", Some(Provider::Bedrock))
        );
        assert_eq!(
            fam("anthropic.claude-3-5-sonnet-20241022-v2:0").as_deref(),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(
            fam("global.anthropic.claude-haiku-4-5-20251001-v1:0").as_deref(),
            Some("claude-haiku-4-5")
        );
        assert_eq!(
            fam("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0").as_deref(),
            Some("claude-opus-4-1")
        );
        let v = normalize("claude-sonnet-4-5@20250929").unwrap();
        assert_eq!(
            (v.family.as_str(), v.provider),
            ("claude-sonnet-4-5", Some(Provider::Vertex))
        );
        assert_eq!(
            fam("projects/p/locations/us-east5/publishers/anthropic/models/claude-3-5-haiku@20241022").as_deref(),
            Some("claude-3-5-haiku")
        );
        assert_eq!(normalize("claude-sonnet-4-5").unwrap().provider, None);
    }

    #[test]
    fn non_claude_ids_are_none() {
        assert_eq!(fam("gpt-4o"), None);
        assert_eq!(fam(""), None);
        assert_eq!(fam("anthropic.titan"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_is_idempotent(s in "\\PC{0,60}") {
            proptest::prop_assert_eq!(is_claude(&s), normalize(&s).is_some());
            if let Some(m) = normalize(&s) {
                proptest::prop_assert_eq!(normalize(&m.family).map(|x| x.family), Some(m.family.clone()));
            }
        }

        #[test]
        fn date_and_bedrock_wrapping_do_not_change_family(
            tier in "(opus|sonnet|haiku)", major in 3u8..9, minor in 1u8..9, date in 20240101u32..20291231
        ) {
            let base = format!("claude-{tier}-{major}-{minor}");
            let family = normalize(&base).unwrap().family;
            proptest::prop_assert_eq!(&family, &base);
            for spelled in [
                format!("{base}-{date}"),
                format!("us.anthropic.{base}-{date}-v1:0"),
                format!("{base}@{date}"),
                format!("{base}[1m]"),
            ] {
                proptest::prop_assert_eq!(normalize(&spelled).map(|m| m.family), Some(family.clone()), "{}", spelled);
            }
        }
    }
}
