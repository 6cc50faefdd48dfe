//! The traffic mix: what each generated call is (convention, model, stream,
//! outcome, tokens, twin layout), as a pure function of the seed and the call
//! index.

use crate::ids::Rng;

/// How a call is instrumented: which spans describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// The Anthropic Python SDK's own span alone (`anthropic.messages.create`).
    AnthropicSdk,
    /// OpenLLMetry/Traceloop `anthropic.chat` wrapping the SDK span: duplicate
    /// twins, nested in one trace or unlinked roots as in the captured fixture.
    TraceloopTwin,
    /// OpenLIT `chat <model>` with one httpx `POST` child span per HTTP attempt.
    OpenLit,
    /// The OpenTelemetry GenAI Anthropic instrumentation's `chat <model>`
    /// span with the SDK span nested under it (duplicate twins).
    OtelGenAiTwin,
    /// A hand-instrumented application following the GenAI semantic
    /// conventions (`gen_ai.*`, semconv 1.40+), no SDK span.
    GenAiSemconv,
}

impl Convention {
    /// Every convention, in mix order.
    pub const ALL: [Convention; 5] = [
        Convention::AnthropicSdk,
        Convention::TraceloopTwin,
        Convention::OpenLit,
        Convention::OtelGenAiTwin,
        Convention::GenAiSemconv,
    ];
    /// Share of calls (out of 100).
    fn weight(self) -> u32 {
        match self {
            Convention::AnthropicSdk => 30,
            Convention::TraceloopTwin => 25,
            Convention::OpenLit => 20,
            Convention::OtelGenAiTwin => 10,
            Convention::GenAiSemconv => 15,
        }
    }
}

/// What the Claude API did with the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// 200, with usage.
    Success,
    /// 429 `rate_limit_error` (the caller's own quota).
    RateLimited,
    /// 529 `overloaded_error` (platform overload).
    Overloaded,
    /// 500 `api_error`.
    ApiError,
    /// A stream that died with an `overloaded_error` event after a 200.
    MidStreamError,
    /// 529, 529, then 200: one SDK call, three HTTP attempts.
    RetriedOverload,
}

impl Scenario {
    /// Every scenario, in mix order.
    pub const ALL: [Scenario; 6] = [
        Scenario::Success,
        Scenario::RateLimited,
        Scenario::Overloaded,
        Scenario::ApiError,
        Scenario::MidStreamError,
        Scenario::RetriedOverload,
    ];

    /// The outcome claudewatch must record for the call (its `outcome` field).
    pub fn expected_outcome(self) -> &'static str {
        match self {
            Scenario::Success | Scenario::RetriedOverload => "success",
            Scenario::RateLimited => "rate_limited",
            Scenario::Overloaded => "overloaded",
            Scenario::ApiError => "api_error",
            Scenario::MidStreamError => "stream_error",
        }
    }

    /// Share of calls (out of 100) for a convention; 0 where the convention
    /// cannot show the scenario faithfully (OpenLIT and the GenAI
    /// instrumentations export no span for a stream that died mid-way).
    fn weight(self, c: Convention) -> u32 {
        let sdk_span = matches!(
            c,
            Convention::AnthropicSdk | Convention::TraceloopTwin | Convention::OtelGenAiTwin
        );
        match self {
            Scenario::Success => 80,
            Scenario::RateLimited => 7,
            Scenario::Overloaded => 5,
            Scenario::ApiError => 3,
            Scenario::MidStreamError
                if matches!(c, Convention::AnthropicSdk | Convention::TraceloopTwin) =>
            {
                3
            }
            Scenario::MidStreamError => 0,
            Scenario::RetriedOverload if sdk_span || c == Convention::OpenLit => 2,
            Scenario::RetriedOverload => 0,
        }
    }

    /// HTTP status of the final attempt.
    pub fn http_status(self) -> u16 {
        match self {
            Scenario::Success | Scenario::MidStreamError | Scenario::RetriedOverload => 200,
            Scenario::RateLimited => 429,
            Scenario::Overloaded => 529,
            Scenario::ApiError => 500,
        }
    }

    /// True when the call failed (no usable answer).
    pub fn failed(self) -> bool {
        !matches!(self, Scenario::Success | Scenario::RetriedOverload)
    }
}

/// A model the mix uses: the id as sent and as served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// `gen_ai.request.model` (alias).
    pub request: &'static str,
    /// `gen_ai.response.model` (dated id the API returns).
    pub response: &'static str,
    /// False for a model the default price table does not price.
    pub priced: bool,
}

/// The models, with their share of calls (out of 100).
pub const MODELS: [(Model, u32); 5] = [
    (
        Model {
            request: "claude-sonnet-4-5",
            response: "claude-sonnet-4-5-20250929",
            priced: true,
        },
        50,
    ),
    (
        Model {
            request: "claude-haiku-4-5",
            response: "claude-haiku-4-5-20251001",
            priced: true,
        },
        25,
    ),
    (
        Model {
            request: "claude-opus-4-1",
            response: "claude-opus-4-1-20250805",
            priced: true,
        },
        10,
    ),
    (
        Model {
            request: "claude-opus-4-5",
            response: "claude-opus-4-5-20251101",
            priced: true,
        },
        10,
    ),
    // Retired and not in the default price table: records must say "unpriced".
    (
        Model {
            request: "claude-3-opus-20240229",
            response: "claude-3-opus-20240229",
            priced: false,
        },
        5,
    ),
];

/// How the two twin spans of one call are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TwinLayout {
    /// Not a twin convention.
    None,
    /// The wrapper span is the SDK span's parent, in one trace.
    Nested,
    /// Both spans are roots of different traces (as OpenLLMetry really does).
    Unlinked,
}

/// The traffic of a run: its seed and how it departs from the default mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Seed of the mix and of every id.
    pub seed: u64,
    /// Share of calls (out of 100) turned into 529 `overloaded_error`s, on top
    /// of the mix's own (a platform overload burst); 0 keeps the mix.
    pub overloaded_percent: u64,
    /// Organisations the calls are spread over (1 to 4; 1 puts the whole
    /// run's requests on one organisation's quota).
    pub organizations: usize,
}

impl From<u64> for Mix {
    /// The default mix of `seed`.
    fn from(seed: u64) -> Mix {
        Mix {
            seed,
            overloaded_percent: 0,
            organizations: ORGANIZATIONS,
        }
    }
}

/// Organisations of the default mix (the table in `spans`).
pub const ORGANIZATIONS: usize = 4;

impl Mix {
    /// Call `index` of this run.
    pub fn call(&self, index: u64) -> CallSpec {
        let mut spec = CallSpec::generate(self.seed, index);
        if self.overloaded_percent > 0
            && Rng::for_call(self.seed ^ 0x0b5e_55ed_0529, index).percent(self.overloaded_percent)
        {
            spec.scenario = Scenario::Overloaded;
            spec.stream_helper = false;
            spec.duration_ns = spec.duration_ns.min(40_000_000);
            spec.split = false;
        }
        spec.org %= self.organizations.clamp(1, ORGANIZATIONS);
        spec
    }
}

/// One generated call, fully determined by `(seed, index)`.
#[derive(Debug, Clone)]
pub struct CallSpec {
    /// The call's index in the run (0-based).
    pub index: u64,
    /// Which spans describe it.
    pub convention: Convention,
    /// What the API did.
    pub scenario: Scenario,
    /// The model.
    pub model: Model,
    /// A streaming call.
    pub stream: bool,
    /// Streamed with `messages.stream()` (OpenLLMetry omits its stream flag).
    pub stream_helper: bool,
    /// Uncached input tokens (the API's `input_tokens`).
    pub input_tokens: u64,
    /// Cache-read input tokens.
    pub cache_read: u64,
    /// Cache-write input tokens (5-minute TTL).
    pub cache_write: u64,
    /// Output tokens (for a mid-stream error: tokens streamed before it).
    pub output_tokens: u64,
    /// `max_tokens` of the request.
    pub max_tokens: u64,
    /// Time to first content token, seconds (streams).
    pub ttft_s: f64,
    /// Duration of the SDK call, nanoseconds.
    pub duration_ns: u64,
    /// Twin layout.
    pub twin: TwinLayout,
    /// The wrapper span is wanted in a later export request than the SDK span.
    pub split: bool,
    /// Index into the organisation table.
    pub org: usize,
    /// Index into the prompt table.
    pub prompt: usize,
}

impl CallSpec {
    /// Call `index` of the run seeded with `seed`.
    pub fn generate(seed: u64, index: u64) -> CallSpec {
        let mut r = Rng::for_call(seed, index);
        let cw: Vec<u32> = Convention::ALL.iter().map(|c| c.weight()).collect();
        let convention = Convention::ALL[r.weighted(&cw)];
        let sw: Vec<u32> = Scenario::ALL.iter().map(|s| s.weight(convention)).collect();
        let scenario = Scenario::ALL[r.weighted(&sw)];
        let mw: Vec<u32> = MODELS.iter().map(|m| m.1).collect();
        let model = MODELS[r.weighted(&mw)].0;
        let stream = scenario == Scenario::MidStreamError || r.percent(40);
        let stream_helper = stream && r.percent(30);
        let cached = r.percent(25);
        let (cache_read, cache_write) = if cached {
            (r.range(1, 16) * 512, r.range(0, 4) * 256)
        } else {
            (0, 0)
        };
        let input_tokens = r.range(12, 4000);
        let output_tokens = match scenario {
            Scenario::MidStreamError => r.range(1, 40),
            _ => r.range(8, 900),
        };
        let ttft_s = if stream {
            r.range(250, 1750) as f64 / 1000.0
        } else {
            0.0
        };
        let duration_ns = match scenario {
            Scenario::RateLimited | Scenario::Overloaded | Scenario::ApiError => {
                r.range(6, 40) * 1_000_000
            }
            Scenario::RetriedOverload => r.range(1300, 2600) * 1_000_000,
            _ if stream => {
                (ttft_s * 1e9) as u64 + output_tokens.min(400) * r.range(8, 25) * 1_000_000 / 10
            }
            _ => r.range(300, 3000) * 1_000_000,
        };
        let twin = match convention {
            Convention::TraceloopTwin if r.percent(50) => TwinLayout::Unlinked,
            Convention::TraceloopTwin | Convention::OtelGenAiTwin => TwinLayout::Nested,
            _ => TwinLayout::None,
        };
        // OpenLLMetry exports nothing for a stream that died mid-way: no twin to split.
        let has_wrapper = twin != TwinLayout::None
            && !(convention == Convention::TraceloopTwin && scenario == Scenario::MidStreamError);
        let split = has_wrapper && r.percent(15);
        CallSpec {
            index,
            convention,
            scenario,
            model,
            stream,
            stream_helper,
            input_tokens,
            cache_read,
            cache_write,
            output_tokens,
            max_tokens: [256, 512, 1024, 4096, 8192][r.range(0, 4) as usize],
            ttft_s,
            duration_ns,
            twin,
            split,
            org: r.range(0, 3) as usize,
            prompt: r.range(0, 7) as usize,
        }
    }

    /// Input tokens as the folding conventions report them (input + cache).
    pub fn folded_input(&self) -> u64 {
        self.input_tokens + self.cache_read + self.cache_write
    }

    /// Number of spans the call is described by.
    pub fn span_count(&self) -> usize {
        let attempts = if self.scenario == Scenario::RetriedOverload {
            3
        } else {
            1
        };
        match self.convention {
            Convention::AnthropicSdk | Convention::GenAiSemconv => 1,
            Convention::TraceloopTwin if self.scenario == Scenario::MidStreamError => 1,
            Convention::TraceloopTwin | Convention::OtelGenAiTwin => 2,
            Convention::OpenLit => 1 + attempts,
        }
    }

    /// The tokens the call's record must hold when the call succeeded:
    /// (uncached input, cache read, cache write, output).
    pub fn expected_tokens(&self) -> Option<(u64, u64, u64, u64)> {
        (!self.scenario.failed()).then_some((
            self.input_tokens,
            self.cache_read,
            self.cache_write,
            self.output_tokens,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_mixed() {
        let a: Vec<_> = (0..2000).map(|i| CallSpec::generate(7, i)).collect();
        let b: Vec<_> = (0..2000).map(|i| CallSpec::generate(7, i)).collect();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(format!("{x:?}"), format!("{y:?}"));
        }
        for c in Convention::ALL {
            assert!(a.iter().any(|s| s.convention == c), "{c:?}");
        }
        for s in Scenario::ALL {
            assert!(a.iter().any(|x| x.scenario == s), "{s:?}");
        }
        assert!(a.iter().any(|s| s.split));
        assert!(a.iter().any(|s| !s.model.priced));
        assert!(
            !a.iter()
                .any(|s| s.convention == Convention::OpenLit
                    && s.scenario == Scenario::MidStreamError)
        );
    }
}
