//! Reading OTLP `AnyValue`s leniently, and deciding which attributes are
//! message content that must never be copied.

use claudewatch_model::ATTRIBUTE_VALUE_MAX_LEN;
pub use claudewatch_otlp::view::{KeyValueRef, ValueRef};

/// Longest value accepted for a mapped identifier (model, ids, error type).
/// Longer values are treated as absent and counted as invalid.
pub const MAX_MAPPED_VALUE_LEN: usize = 512;

/// The value as an integer: ints, integral doubles, and numeric strings.
pub fn as_i64(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Int(i) => Some(i),
        ValueRef::Double(d) if d.fract() == 0.0 && d.is_finite() && d.abs() < 9.0e15 => {
            Some(d as i64)
        }
        ValueRef::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The value as a non-negative count.
pub fn as_u64(v: ValueRef<'_>) -> Option<u64> {
    as_i64(v).and_then(|i| u64::try_from(i).ok())
}

/// The value as a float: doubles, ints and numeric strings.
pub fn as_f64(v: ValueRef<'_>) -> Option<f64> {
    match v {
        ValueRef::Double(d) if d.is_finite() => Some(d),
        ValueRef::Int(i) => Some(i as f64),
        ValueRef::Str(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// The value as a boolean: bools and the strings `true`/`false`.
pub fn as_bool(v: ValueRef<'_>) -> Option<bool> {
    match v {
        ValueRef::Bool(b) => Some(b),
        ValueRef::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        ValueRef::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// The value as a string slice, if it is a string.
pub fn as_str(v: ValueRef<'_>) -> Option<&str> {
    match v {
        ValueRef::Str(s) => Some(s),
        _ => None,
    }
}

/// A mapped identifier: a non-empty string of sane length.
pub fn as_ident(v: ValueRef<'_>) -> Option<&str> {
    as_str(v)
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_MAPPED_VALUE_LEN)
}

/// First element of a string array (e.g. `gen_ai.response.finish_reasons`), or the string itself.
pub fn first_string(v: ValueRef<'_>) -> Option<&str> {
    match v {
        ValueRef::Str(s) => Some(s),
        ValueRef::Array(a) => a.first().and_then(as_str),
        _ => None,
    }
}

/// Renders any value as a bounded display string for the unmapped-attributes
/// map, into `out` (cleared first, its allocation reused); returns whether the
/// value was truncated.
pub fn render_bounded_into(v: ValueRef<'_>, out: &mut String) -> bool {
    out.clear();
    render_into(v, out, 0);
    if out.len() <= ATTRIBUTE_VALUE_MAX_LEN {
        return false;
    }
    let end = floor_char_boundary(out, ATTRIBUTE_VALUE_MAX_LEN);
    out.truncate(end);
    true
}

fn render_into(v: ValueRef<'_>, out: &mut String, depth: usize) {
    use std::fmt::Write;
    if out.len() > ATTRIBUTE_VALUE_MAX_LEN || depth > 8 {
        return;
    }
    match v {
        ValueRef::Empty => {}
        ValueRef::Str(s) => out.push_str(&s[..floor_char_boundary(s, ATTRIBUTE_VALUE_MAX_LEN + 1)]),
        ValueRef::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        ValueRef::Int(i) => out.push_str(itoa::Buffer::new().format(i)),
        ValueRef::Double(d) => {
            let _ = write!(out, "{d}");
        }
        ValueRef::Bytes(b) => {
            let _ = write!(out, "<{} bytes>", b.len());
        }
        ValueRef::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render_into(x, out, depth + 1);
                if out.len() > ATTRIBUTE_VALUE_MAX_LEN {
                    break;
                }
            }
            out.push(']');
        }
        ValueRef::Kvlist(kv) => {
            out.push('{');
            for (i, x) in kv.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(x.key);
                out.push('=');
                render_into(x.value, out, depth + 1);
                if out.len() > ATTRIBUTE_VALUE_MAX_LEN {
                    break;
                }
            }
            out.push('}');
        }
    }
}

pub use claudewatch_model::cut_utf8;

fn floor_char_boundary(s: &str, max: usize) -> usize {
    cut_utf8(s, max).0.len()
}

/// True for attribute keys that carry message content (prompts, completions,
/// tool arguments, raw request/response bodies). These are never copied.
pub fn is_content_key(key: &str) -> bool {
    let exact = matches!(
        key,
        "gen_ai.input.messages"
            | "gen_ai.output.messages"
            | "gen_ai.system_instructions"
            | "gen_ai.tool.definitions"
            | "gen_ai.tool.call.arguments"
            | "gen_ai.tool.call.result"
            | "gen_ai.prompt"
            | "gen_ai.completion"
            | "input.value"
            | "output.value"
            | "llm.prompts"
            | "llm.input_messages"
            | "llm.output_messages"
            | "llm.tools"
            | "llm.prompt_template.template"
            | "llm.prompt_template.variables"
            | "request_data"
            | "response_data"
            | "events"
            | "prompt"
            | "prompt_text"
            | "response"
            | "tool_input"
            | "tool_parameters"
            | "exception.stacktrace"
            | "gen_ai.content.prompt"
            | "gen_ai.content.completion"
            | "traceloop.entity.input"
            | "traceloop.entity.output"
            | "llm.function_call"
            | "mlflow.spanInputs"
            | "mlflow.spanOutputs"
            | "pydantic_ai.all_messages"
            | "all_messages_events"
            | "final_result"
    );
    const PREFIXES: &[&str] = &[
        "gen_ai.prompt.",
        "gen_ai.completion.",
        "gen_ai.input.",
        "gen_ai.output.messages.",
        "llm.input_messages.",
        "llm.output_messages.",
        "llm.prompts.",
        "llm.completions.",
        "llm.tools.",
        "input.",
        "output.",
        // Vercel AI SDK, OpenLLMetry tool definitions.
        "ai.prompt",
        "ai.response.text",
        "ai.response.toolCalls",
        "ai.response.object",
        "ai.toolCall.",
        "llm.request.functions.",
    ];
    // Every prefix starts with g, l, i, o or a: most keys are decided by their first byte.
    exact
        || (matches!(
            key.as_bytes().first(),
            Some(b'g' | b'l' | b'i' | b'o' | b'a')
        ) && PREFIXES.iter().any(|p| key.starts_with(p)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_from_any_numeric_form() {
        assert_eq!(as_u64(ValueRef::Int(5)), Some(5));
        assert_eq!(as_u64(ValueRef::Str("42")), Some(42));
        assert_eq!(as_u64(ValueRef::Int(-1)), None);
        assert_eq!(as_u64(ValueRef::Double(3.0)), Some(3));
        assert_eq!(as_u64(ValueRef::Double(3.5)), None);
        assert_eq!(as_f64(ValueRef::Str("0.25")), Some(0.25));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(200);
        let (t, cut) = cut_utf8(&s, 255);
        assert!(cut);
        assert_eq!(t.len(), 254);
        assert_eq!(cut_utf8("abc", 3), ("abc", false));
    }

    #[test]
    fn content_keys_are_recognised() {
        assert!(is_content_key("gen_ai.input.messages"));
        assert!(is_content_key("llm.input_messages.0.message.content"));
        assert!(is_content_key("gen_ai.prompt.0.content"));
        assert!(!is_content_key("gen_ai.request.model"));
        assert!(!is_content_key("llm.token_count.prompt"));
        for k in [
            "ai.prompt.messages",
            "ai.response.text",
            "ai.toolCall.args",
            "llm.request.functions.0.name",
            "mlflow.spanInputs",
        ] {
            assert!(is_content_key(k), "{k}");
        }
    }
}
