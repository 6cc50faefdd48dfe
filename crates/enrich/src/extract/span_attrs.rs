//! One pass over a span's (or log record's) attributes that indexes every key
//! any supported convention maps, and sets aside the rest.

use claudewatch_otlp::view::{KeyValueRef, ValueRef};

macro_rules! known_keys {
    ($($field:ident => $($key:literal)|+ ;)*) => {
        /// The mapped attributes of one item, by meaning. Each field holds the
        /// value of the first of its keys present.
        #[derive(Default)]
        pub struct SpanAttrs<'a> {
            $(#[doc = concat!($($key, " "),+)] pub $field: Option<ValueRef<'a>>,)*
            /// Attributes no convention maps (content keys excluded later).
            pub rest: smallvec::SmallVec<[KeyValueRef<'a>; 16]>,
        }

        impl<'a> SpanAttrs<'a> {
            /// Indexes `attributes` in one pass.
            pub fn index(attributes: &[KeyValueRef<'a>]) -> SpanAttrs<'a> {
                let mut a = SpanAttrs::default();
                a.reindex(attributes);
                a
            }

            /// Forgets what was indexed and indexes `attributes`, in place:
            /// the per-span path reuses one (the struct is a few kilobytes,
            /// and copying it out per span showed in profiles).
            pub fn reindex(&mut self, attributes: &[KeyValueRef<'a>]) {
                $(self.$field = None;)*
                self.rest.clear();
                for kv in attributes {
                    if kv.value == ValueRef::Empty {
                        continue;
                    }
                    match kv.key {
                        $($($key)|+ => { if self.$field.is_none() { self.$field = Some(kv.value); } })*
                        _ => self.rest.push(*kv),
                    }
                }
            }
        }
    };
}

known_keys! {
    provider_name => "gen_ai.provider.name";
    system => "gen_ai.system";
    operation => "gen_ai.operation.name";
    request_model => "gen_ai.request.model";
    response_model => "gen_ai.response.model";
    response_id => "gen_ai.response.id";
    input_tokens => "gen_ai.usage.input_tokens" | "gen_ai.usage.prompt_tokens";
    output_tokens => "gen_ai.usage.output_tokens" | "gen_ai.usage.completion_tokens";
    cache_read => "gen_ai.usage.cache_read.input_tokens" | "gen_ai.usage.cache_read_input_tokens" | "gen_ai.usage.input_tokens.cached";
    cache_write => "gen_ai.usage.cache_write.input_tokens" | "gen_ai.usage.cache_creation.input_tokens" | "gen_ai.usage.cache_creation_input_tokens" | "gen_ai.usage.input_tokens.cache_write";
    cache_write_5m => "anthropic.usage.cache_creation.ephemeral_5m_input_tokens";
    cache_write_1h => "anthropic.usage.cache_creation.ephemeral_1h_input_tokens";
    total_tokens => "gen_ai.usage.total_tokens" | "llm.usage.total_tokens" | "gen_ai.client.token.usage";
    stream => "gen_ai.request.stream" | "gen_ai.is_streaming" | "llm.is_streaming";
    ttft_first_chunk => "gen_ai.response.time_to_first_chunk";
    ttft_server => "gen_ai.server.time_to_first_token";
    finish_reasons => "gen_ai.response.finish_reasons" | "llm.finish_reason";
    stop_reason => "anthropic.message.stop_reason";
    error_type => "error.type";
    http_status => "http.response.status_code" | "http.status_code";
    http_method => "http.request.method" | "http.method";
    url => "url.full" | "http.url";
    url_path => "url.path" | "http.target";
    server_address => "server.address" | "net.peer.name";
    request_id => "anthropic.request.id";
    organization_id => "anthropic.organization.id";
    resend_count => "http.request.resend_count";
    service_tier => "anthropic.response.service_tier";
    service => "service.name";
    environment => "deployment.environment.name" | "deployment.environment";
    sdk_name => "telemetry.sdk.name";
    oi_kind => "openinference.span.kind";
    llm_provider => "llm.provider";
    llm_system => "llm.system";
    llm_model => "llm.model_name";
    llm_prompt => "llm.token_count.prompt";
    llm_completion => "llm.token_count.completion";
    llm_total => "llm.token_count.total";
    llm_cache_read => "llm.token_count.prompt_details.cache_read";
    llm_cache_write => "llm.token_count.prompt_details.cache_write";
    llm_invocation => "llm.invocation_parameters";
    output_value => "output.value";
    output_mime => "output.mime_type";
    llm_request_type => "llm.request.type";
    logfire_msg => "logfire.msg";
    logfire_span_type => "logfire.span_type";
    request_data => "request_data";
    response_data => "response_data";
    async_flag => "async";
}
