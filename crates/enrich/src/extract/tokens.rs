//! Cache-token folding: the one place that decides, per convention and
//! version, whether an input-token attribute includes the cache tokens.
//!
//! The Anthropic API's `input_tokens` excludes cache reads and writes. Several
//! instrumentations add them in; pricing that folded number as plain input
//! double-bills. `docs/conventions.md` documents each decision and its source.

use crate::observation::Convention;

/// What a convention's input-token attribute counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMeaning {
    /// Uncached input + cache reads + cache writes.
    Folded,
    /// Uncached input only, as the API reports it.
    Uncached,
}

/// Facts about the emitter that the folding decision depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Emitter<'a> {
    /// Instrumentation version (scope version).
    pub version: Option<&'a str>,
    /// `telemetry.sdk.language` of the resource (`python`, `nodejs`, ...).
    pub language: Option<&'a str>,
    /// The call was streamed.
    pub stream: bool,
    /// Generic GenAI spans: `gen_ai.provider.name` is present (semconv >= 1.37).
    pub has_provider_name: bool,
    /// Generic GenAI spans: a cache attribute is present.
    pub has_cache_attrs: bool,
}

/// Decides what the input attribute of `convention` means.
pub fn input_meaning(convention: Convention, e: Emitter<'_>) -> InputMeaning {
    use InputMeaning::*;
    match convention {
        // anthropic SDK 2.x built-in spans: input + cache_read + cache_write.
        Convention::AnthropicSdk => Folded,
        // OpenLLMetry adds cache_read and cache_creation into input_tokens.
        Convention::OpenLlmetry => Folded,
        // opentelemetry-instrumentation-genai-anthropic follows semconv >= 1.40.
        Convention::OtelAnthropic => Folded,
        // OpenLIT reports the API's uncached input_tokens.
        Convention::OpenLit => Uncached,
        // Claude Code logs and metrics: uncached.
        Convention::ClaudeCode => Uncached,
        // Logfire copies the API's usage.input_tokens.
        Convention::Logfire => Uncached,
        Convention::OpenInference => {
            let js = matches!(
                e.language,
                Some("nodejs" | "webjs" | "javascript" | "typescript")
            );
            let v = e.version.map(parse_version);
            let old_python =
                v.is_some_and(|v| v < (0, 1, 14)) || (e.stream && v.is_some_and(|v| v < (1, 0, 0)));
            if js || old_python {
                Uncached
            } else {
                Folded
            }
        }
        Convention::GenAi => {
            if e.has_provider_name && e.has_cache_attrs {
                // semconv >= 1.40: input_tokens SHOULD include cached tokens.
                Folded
            } else {
                // gen_ai.system-era emitters pass Anthropic's raw count; and with
                // no cache attributes both readings give the same number.
                Uncached
            }
        }
        Convention::HttpClient => Uncached,
    }
}

/// The uncached input count from a convention's input attribute, and whether
/// the numbers contradict the convention (folded input smaller than its cache
/// parts: then the attribute is taken as uncached).
pub fn uncached_input(
    input: u64,
    cache_read: u64,
    cache_write: u64,
    meaning: InputMeaning,
) -> (u64, bool) {
    match meaning {
        InputMeaning::Uncached => (input, false),
        InputMeaning::Folded => match input.checked_sub(cache_read.saturating_add(cache_write)) {
            Some(rest) => (rest, false),
            None => (input, true),
        },
    }
}

/// Parses `1.2.3`, `0.1b0`, `v2.0.0-rc1` into a comparable triple.
pub fn parse_version(v: &str) -> (u32, u32, u32) {
    let mut nums = v.trim_start_matches('v').split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().unwrap_or(0)
    });
    (
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn folded_conventions_subtract_cache() {
        assert_eq!(
            uncached_input(5430, 4096, 1024, InputMeaning::Folded),
            (310, false)
        );
        assert_eq!(
            uncached_input(310, 4096, 1024, InputMeaning::Uncached),
            (310, false)
        );
        // Contradiction: a folded input cannot be below its parts.
        assert_eq!(
            uncached_input(310, 4096, 1024, InputMeaning::Folded),
            (310, true)
        );
    }

    #[test]
    fn meanings_per_convention() {
        let e = Emitter::default();
        assert_eq!(
            input_meaning(Convention::AnthropicSdk, e),
            InputMeaning::Folded
        );
        assert_eq!(
            input_meaning(Convention::OpenLlmetry, e),
            InputMeaning::Folded
        );
        assert_eq!(
            input_meaning(Convention::OpenLit, e),
            InputMeaning::Uncached
        );
        assert_eq!(
            input_meaning(Convention::ClaudeCode, e),
            InputMeaning::Uncached
        );
    }

    #[test]
    fn openinference_depends_on_version_language_and_streaming() {
        let py = |v, stream| Emitter {
            version: Some(v),
            language: Some("python"),
            stream,
            ..Default::default()
        };
        assert_eq!(
            input_meaning(Convention::OpenInference, py("1.1.2", true)),
            InputMeaning::Folded
        );
        assert_eq!(
            input_meaning(Convention::OpenInference, py("0.1.20", false)),
            InputMeaning::Folded
        );
        assert_eq!(
            input_meaning(Convention::OpenInference, py("0.1.20", true)),
            InputMeaning::Uncached
        );
        assert_eq!(
            input_meaning(Convention::OpenInference, py("0.1.13", false)),
            InputMeaning::Uncached
        );
        let js = Emitter {
            version: Some("0.1.21"),
            language: Some("nodejs"),
            ..Default::default()
        };
        assert_eq!(
            input_meaning(Convention::OpenInference, js),
            InputMeaning::Uncached
        );
    }

    #[test]
    fn generic_genai_by_semconv_era() {
        let modern = Emitter {
            has_provider_name: true,
            has_cache_attrs: true,
            ..Default::default()
        };
        assert_eq!(
            input_meaning(Convention::GenAi, modern),
            InputMeaning::Folded
        );
        let legacy = Emitter {
            has_provider_name: false,
            has_cache_attrs: true,
            ..Default::default()
        };
        assert_eq!(
            input_meaning(Convention::GenAi, legacy),
            InputMeaning::Uncached
        );
    }

    #[test]
    fn versions_compare() {
        assert!(parse_version("0.62.4") > parse_version("0.9.1"));
        assert_eq!(parse_version("1.0b0"), (1, 0, 0));
        assert_eq!(parse_version("v2.1.330"), (2, 1, 330));
    }
}
