//! Outcome classification (SPEC.md section 2): from HTTP status, API error
//! type, exception class names, error messages and stream error events.
//!
//! An explicit status code wins over everything derived; 429 and 529 are never
//! confused (a 529 is only ever derived from `529`, `overloaded_error` or an
//! `OverloadedError` class).

use claudewatch_model::{LimitKind, Outcome};

/// Everything known about how one call ended, merged from all its evidence.
#[derive(Debug, Clone, Default)]
pub struct ErrorEvidence<'a> {
    /// HTTP status of the last attempt, when stated.
    pub http_status: Option<u16>,
    /// API error type, when stated.
    pub api_error_type: Option<&'a str>,
    /// Exception class name, when stated.
    pub exception_type: Option<&'a str>,
    /// Error message / status description.
    pub message: Option<&'a str>,
    /// Some source says the call failed.
    pub failed: bool,
    /// The call was streamed.
    pub stream: Option<bool>,
}

/// The classification of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// How the call ended.
    pub outcome: Outcome,
    /// HTTP status, explicit or derived (`None` when nothing says).
    pub http_status: Option<u16>,
    /// API error type, explicit or derived.
    pub error_type: Option<String>,
    /// Any of the three overload forms.
    pub overload: bool,
    /// Which limit a 429 names.
    pub limit_kind: Option<LimitKind>,
}

/// Classifies one call from its merged evidence.
pub fn classify(ev: &ErrorEvidence<'_>) -> Classification {
    let parsed = ev.message.map(parse_error_text).unwrap_or_default();
    let class = ev.exception_type.map(short_class_name);
    // An exception class only speaks for a status it agrees with: an explicit
    // 529 stays a 529 whatever class a wrapper raised.
    let explicit_status = ev.http_status.or(parsed.status);
    let class_info = class
        .and_then(class_status)
        .filter(|c| explicit_status.is_none() || c.status.is_none() || c.status == explicit_status);

    let error_type: Option<String> = ev
        .api_error_type
        .filter(|t| is_api_error_type(t))
        .map(str::to_owned)
        .or_else(|| parsed.error_type.clone())
        .or_else(|| class_info.and_then(|c| c.error_type).map(str::to_owned));

    let status = ev
        .http_status
        .or(parsed.status)
        .or_else(|| error_type.as_deref().and_then(status_for_error_type))
        .or_else(|| class_info.and_then(|c| c.status));

    let error_type = error_type.or_else(|| {
        status
            .filter(|s| *s >= 400)
            .and_then(error_type_for_status)
            .map(str::to_owned)
    });

    let failed = ev.failed || error_type.is_some() || status.is_some_and(|s| s >= 400);
    let outcome = match status {
        Some(s) if (200..300).contains(&s) => match (failed, ev.stream) {
            (false, _) => Outcome::Success,
            // A non-streamed 2xx arrives whole: a failure flag without an
            // error type is the caller's own code failing after the call.
            (true, Some(false)) if error_type.is_none() => Outcome::Success,
            (true, Some(false)) => Outcome::Unknown,
            // A 2xx stream that then failed: it died mid-way.
            (true, _) => Outcome::StreamError,
        },
        Some(s) => outcome_for_status(s),
        None => match class_info.and_then(|c| c.network) {
            Some(o) => o,
            None if failed => Outcome::Unknown,
            None => Outcome::Success,
        },
    };

    let overloaded_text = |t: &str| {
        t.trim().eq_ignore_ascii_case("overloaded")
            || t.contains("'message': 'Overloaded'")
            || t.contains("\"message\":\"Overloaded\"")
            || t.contains("\"message\": \"Overloaded\"")
    };
    let overload = outcome == Outcome::Overloaded
        || error_type.as_deref() == Some("overloaded_error")
        || (outcome == Outcome::ApiError && ev.message.is_some_and(overloaded_text));

    let limit_kind = if outcome == Outcome::RateLimited {
        ev.message.and_then(limit_kind_from_message)
    } else {
        None
    };

    Classification {
        outcome,
        http_status: status,
        error_type,
        overload,
        limit_kind,
    }
}

/// Maps an HTTP error status to its outcome.
#[allow(clippy::match_overlapping_arm)] // specific statuses first, then the 4xx/5xx ranges
pub fn outcome_for_status(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Success,
        400 => Outcome::InvalidRequest,
        401 => Outcome::Authentication,
        402 => Outcome::Billing,
        403 => Outcome::Permission,
        404 => Outcome::NotFound,
        413 => Outcome::RequestTooLarge,
        429 => Outcome::RateLimited,
        500 => Outcome::ApiError,
        504 => Outcome::ApiTimeout,
        529 => Outcome::Overloaded,
        400..=499 => Outcome::ClientError,
        500..=599 => Outcome::ServerError,
        _ => Outcome::Unknown,
    }
}

/// The API error type Anthropic sends with a status.
pub fn error_type_for_status(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        500 => "api_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => return None,
    })
}

/// The status Anthropic sends with an API error type.
pub fn status_for_error_type(error_type: &str) -> Option<u16> {
    Some(match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}

/// True for the API's error type names (not exception classes or `error`).
pub fn is_api_error_type(t: &str) -> bool {
    status_for_error_type(t).is_some()
}

#[derive(Clone, Copy)]
struct ClassInfo {
    status: Option<u16>,
    error_type: Option<&'static str>,
    network: Option<Outcome>,
}

fn short_class_name(class: &str) -> &str {
    class.rsplit(['.', ':']).next().unwrap_or(class).trim()
}

/// Exception classes of the Anthropic Python and TypeScript SDKs (and httpx).
fn class_status(class: &str) -> Option<ClassInfo> {
    let http = |status: u16| ClassInfo {
        status: Some(status),
        error_type: error_type_for_status(status),
        network: None,
    };
    Some(match class {
        "BadRequestError" => http(400),
        "AuthenticationError" => http(401),
        "PermissionDeniedError" => http(403),
        "NotFoundError" => http(404),
        "ConflictError" => ClassInfo {
            status: Some(409),
            error_type: None,
            network: None,
        },
        "RequestTooLargeError" => http(413),
        "UnprocessableEntityError" => ClassInfo {
            status: Some(422),
            error_type: None,
            network: None,
        },
        "RateLimitError" => http(429),
        "OverloadedError" => http(529),
        // Before OverloadedError existed, SDKs raised InternalServerError for
        // every status >= 500, 529 included: the message decides when present.
        "InternalServerError" => http(500),
        "ServiceUnavailableError" => ClassInfo {
            status: Some(503),
            error_type: None,
            network: None,
        },
        "DeadlineExceededError" | "GatewayTimeoutError" => http(504),
        "APITimeoutError" | "TimeoutException" | "ReadTimeout" | "ConnectTimeout"
        | "WriteTimeout" | "PoolTimeout" | "TimeoutError" => ClassInfo {
            status: None,
            error_type: None,
            network: Some(Outcome::Timeout),
        },
        "APIConnectionError"
        | "ConnectError"
        | "RemoteProtocolError"
        | "ConnectionError"
        | "NetworkError" => ClassInfo {
            status: None,
            error_type: None,
            network: Some(Outcome::ConnectionError),
        },
        _ => return None,
    })
}

/// What an error text such as `Error code: 429 - {'type': 'error', 'error':
/// {'type': 'rate_limit_error', ...}, 'request_id': 'req_...'}` reveals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedError {
    /// `Error code: NNN`.
    pub status: Option<u16>,
    /// The inner API error type.
    pub error_type: Option<String>,
    /// The `req_...` id, if the body holds one.
    pub request_id: Option<String>,
}

/// Parses the status, API error type and request id out of an error text
/// (Python repr or JSON of the API's error body).
pub fn parse_error_text(text: &str) -> ParsedError {
    let mut out = ParsedError::default();
    for marker in ["Error code: ", "status code ", "status_code=", "status: "] {
        if let Some(pos) = text.find(marker) {
            let digits: String = text[pos + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(s) = digits.parse::<u16>() {
                if (100..600).contains(&s) {
                    out.status = Some(s);
                    break;
                }
            }
        }
    }
    let mut rest = text;
    while let Some(pos) = rest.find("type") {
        let after = &rest[pos + 4..];
        let value = after
            .trim_start_matches(['\'', '"'])
            .trim_start()
            .trim_start_matches(':')
            .trim_start();
        let value = value.trim_start_matches(['\'', '"']);
        let word: String = value
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if is_api_error_type(&word) {
            out.error_type = Some(word);
            break;
        }
        rest = after;
    }
    if let Some(pos) = text.find("req_") {
        let id: String = text[pos..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if id.len() > 8 {
            out.request_id = Some(id);
        }
    }
    out
}

/// Which limit a 429's message names, if it names one.
pub fn limit_kind_from_message(message: &str) -> Option<LimitKind> {
    let m = message.to_ascii_lowercase();
    if m.contains("long context") {
        Some(LimitKind::LongContext)
    } else if m.contains("spend")
        || m.contains("monthly")
        || m.contains("usage limit")
        || m.contains("billing")
    {
        Some(LimitKind::Spend)
    } else if m.contains("output tokens per") {
        Some(LimitKind::OutputTokens)
    } else if m.contains("input tokens per") {
        Some(LimitKind::InputTokens)
    } else if m.contains("tokens per") {
        Some(LimitKind::Tokens)
    } else if m.contains("requests per") || m.contains("request rate") {
        Some(LimitKind::Requests)
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn with_status(s: u16) -> Classification {
        classify(&ErrorEvidence {
            http_status: Some(s),
            ..Default::default()
        })
    }

    #[test]
    fn every_documented_status_maps_to_its_outcome() {
        let table = [
            (200, Outcome::Success, None),
            (400, Outcome::InvalidRequest, Some("invalid_request_error")),
            (401, Outcome::Authentication, Some("authentication_error")),
            (402, Outcome::Billing, Some("billing_error")),
            (403, Outcome::Permission, Some("permission_error")),
            (404, Outcome::NotFound, Some("not_found_error")),
            (413, Outcome::RequestTooLarge, Some("request_too_large")),
            (429, Outcome::RateLimited, Some("rate_limit_error")),
            (500, Outcome::ApiError, Some("api_error")),
            (504, Outcome::ApiTimeout, Some("timeout_error")),
            (529, Outcome::Overloaded, Some("overloaded_error")),
            (418, Outcome::ClientError, None),
            (503, Outcome::ServerError, None),
        ];
        for (status, outcome, et) in table {
            let c = with_status(status);
            assert_eq!(c.outcome, outcome, "{status}");
            assert_eq!(c.error_type.as_deref(), et, "{status}");
        }
    }

    #[test]
    fn rate_limit_and_overload_never_confused() {
        let c429 = with_status(429);
        let c529 = with_status(529);
        assert_eq!(c429.outcome, Outcome::RateLimited);
        assert!(!c429.overload);
        assert_eq!(c529.outcome, Outcome::Overloaded);
        assert!(c529.overload);
    }

    #[test]
    fn explicit_status_wins_over_exception_class() {
        // Older SDKs raise InternalServerError for a 529.
        let c = classify(&ErrorEvidence {
            http_status: Some(529),
            exception_type: Some("anthropic.InternalServerError"),
            failed: true,
            ..Default::default()
        });
        assert_eq!(c.outcome, Outcome::Overloaded);
    }

    #[test]
    fn message_status_wins_over_exception_class() {
        let c = classify(&ErrorEvidence {
            exception_type: Some("InternalServerError"),
            message: Some("Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}"),
            failed: true,
            ..Default::default()
        });
        assert_eq!(c.outcome, Outcome::Overloaded);
        assert_eq!(c.http_status, Some(529));
    }

    #[test]
    fn class_names_alone_classify() {
        for (class, outcome, status) in [
            ("RateLimitError", Outcome::RateLimited, Some(429)),
            ("anthropic.OverloadedError", Outcome::Overloaded, Some(529)),
            ("BadRequestError", Outcome::InvalidRequest, Some(400)),
            (
                "anthropic.AuthenticationError",
                Outcome::Authentication,
                Some(401),
            ),
            ("NotFoundError", Outcome::NotFound, Some(404)),
            ("InternalServerError", Outcome::ApiError, Some(500)),
            ("anthropic.APITimeoutError", Outcome::Timeout, None),
            ("APIConnectionError", Outcome::ConnectionError, None),
        ] {
            let c = classify(&ErrorEvidence {
                exception_type: Some(class),
                failed: true,
                ..Default::default()
            });
            assert_eq!((c.outcome, c.http_status), (outcome, status), "{class}");
        }
    }

    #[test]
    fn unknown_exception_is_unknown_not_success() {
        let c = classify(&ErrorEvidence {
            exception_type: Some("ValueError"),
            failed: true,
            ..Default::default()
        });
        assert_eq!(c.outcome, Outcome::Unknown);
    }

    #[test]
    fn a_failed_non_streamed_200_is_not_a_stream_error() {
        let ev = |error: Option<&'static str>| ErrorEvidence {
            http_status: Some(200),
            failed: true,
            stream: Some(false),
            api_error_type: error,
            ..ErrorEvidence::default()
        };
        assert_eq!(classify(&ev(None)).outcome, Outcome::Success);
        assert_eq!(
            classify(&ev(Some("overloaded_error"))).outcome,
            Outcome::Unknown
        );
    }

    #[test]
    fn an_exception_class_never_overrides_an_explicit_status() {
        let c = classify(&ErrorEvidence {
            http_status: Some(529),
            exception_type: Some("anthropic.RateLimitError"),
            failed: true,
            ..ErrorEvidence::default()
        });
        assert_eq!(c.outcome, Outcome::Overloaded);
        assert_eq!(c.error_type.as_deref(), Some("overloaded_error"));
        assert!(c.overload);
        assert_eq!(c.limit_kind, None);
    }

    #[test]
    fn midstream_overload_is_stream_error_and_overload() {
        let c = classify(&ErrorEvidence {
            http_status: Some(200),
            api_error_type: Some("overloaded_error"),
            failed: true,
            stream: Some(true),
            ..Default::default()
        });
        assert_eq!(c.outcome, Outcome::StreamError);
        assert!(c.overload);
        assert_eq!(c.error_type.as_deref(), Some("overloaded_error"));
    }

    #[test]
    fn api_error_saying_overloaded_is_flagged_but_keeps_its_outcome() {
        let c = classify(&ErrorEvidence {
            http_status: Some(500),
            message: Some("Overloaded"),
            failed: true,
            ..Default::default()
        });
        assert_eq!(c.outcome, Outcome::ApiError);
        assert!(c.overload);
        let plain = classify(&ErrorEvidence {
            http_status: Some(500),
            message: Some("Internal server error"),
            ..Default::default()
        });
        assert!(!plain.overload);
    }

    #[test]
    fn error_text_yields_status_type_and_request_id() {
        let p = parse_error_text(
            "Error code: 429 - {'type': 'error', 'error': {'type': 'rate_limit_error', 'message': \"x\"}, 'request_id': 'req_011CWeMiT2d5BBOEoKlf8cu2svatL'}",
        );
        assert_eq!(p.status, Some(429));
        assert_eq!(p.error_type.as_deref(), Some("rate_limit_error"));
        assert_eq!(
            p.request_id.as_deref(),
            Some("req_011CWeMiT2d5BBOEoKlf8cu2svatL")
        );
        let j = parse_error_text(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_abcdefghij"}"#,
        );
        assert_eq!(j.error_type.as_deref(), Some("overloaded_error"));
        assert_eq!(j.status, None);
    }

    #[test]
    fn limit_kinds_from_messages() {
        let cases = [
            ("This request would exceed your organization's rate limit of 1,000 requests per minute", Some(LimitKind::Requests)),
            ("... rate limit of 8,000 output tokens per minute ...", Some(LimitKind::OutputTokens)),
            ("... rate limit of 40,000 input tokens per minute ...", Some(LimitKind::InputTokens)),
            ("... exceed the rate limit of 80,000 tokens per minute", Some(LimitKind::Tokens)),
            ("You have reached your specified API usage limits (monthly spend)", Some(LimitKind::Spend)),
            ("Extra usage is required for long context requests", Some(LimitKind::LongContext)),
            ("Rate limited", None),
        ];
        for (msg, kind) in cases {
            assert_eq!(limit_kind_from_message(msg), kind, "{msg}");
        }
        let c = classify(&ErrorEvidence {
            http_status: Some(429),
            message: Some(cases[0].0),
            ..Default::default()
        });
        assert_eq!(c.limit_kind, Some(LimitKind::Requests));
    }
}
