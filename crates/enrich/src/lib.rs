//! Stream enrichment: OTLP requests in, one exact call record per Claude call out.
//!
//! The stages, each its own module:
//! 1. [`extract`]: every span or log record about a Claude call becomes an
//!    [`Observation`], read with its convention's rules (cache-token folding in
//!    [`extract::tokens`]);
//! 2. [`merge`]: observations of the same call are grouped;
//! 3. [`assemble`]: each group becomes a [`CallRecord`] with its outcome
//!    ([`classify`]), normalised model ([`model_id`]) and exact cost ([`pricing`]).
//!
//! Architecture invariant: this crate does no IO and cannot fail on any input;
//! bad items are counted in [`ExtractStats`], never panicked on.

#![forbid(unsafe_code)]

pub mod assemble;
pub mod attrs;
pub mod classify;
pub mod extract;
pub mod links;
pub mod merge;
pub mod model_id;
pub mod observation;
pub mod pricing;
pub mod text;
pub mod window;

pub use claudewatch_model::CallRecord;
pub use extract::ExtractStats;
pub use observation::Observation;
pub use pricing::PriceTable;
pub use window::{
    extract_request, Extracted, MergeWindow, Origin, Sealed, WindowLimits, WindowStats,
};

use claudewatch_otlp::ExportRequest;

/// Configuration of an [`Enricher`].
#[derive(Debug, Clone)]
pub struct EnrichConfig {
    /// The price table.
    pub prices: PriceTable,
    /// Tenant to stamp on every record, if the deployment has one.
    pub tenant: Option<String>,
    /// Caps on the unmapped attributes kept per observation.
    pub attribute_limits: AttributeLimits,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            prices: PriceTable::default_table(),
            tenant: None,
            attribute_limits: AttributeLimits::default(),
        }
    }
}

/// Caps on the unmapped attributes of an observation, at most the record's
/// own limits ([`claudewatch_model::ATTRIBUTES_MAX_COUNT`] and
/// [`claudewatch_model::ATTRIBUTE_VALUE_MAX_LEN`]). What they cut is counted
/// in [`ExtractStats::dropped_attributes`] and [`ExtractStats::truncated_values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeLimits {
    /// Attributes kept per observation.
    pub max_count: usize,
    /// Bytes kept of each value (cut at a character boundary).
    pub max_value_bytes: usize,
}

impl Default for AttributeLimits {
    fn default() -> Self {
        AttributeLimits {
            max_count: claudewatch_model::ATTRIBUTES_MAX_COUNT,
            max_value_bytes: claudewatch_model::ATTRIBUTE_VALUE_MAX_LEN,
        }
    }
}

impl AttributeLimits {
    /// Applies the caps to observations just extracted.
    pub fn apply(&self, obs: &mut [Observation], stats: &mut ExtractStats) {
        if *self == AttributeLimits::default() {
            return; // extraction already applied the record's own limits
        }
        for o in obs {
            let (dropped, truncated) = o.unmapped.limit(self.max_count, self.max_value_bytes);
            stats.dropped_attributes += dropped;
            stats.truncated_values += truncated;
        }
    }
}

/// Counters of one enrichment run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrichStats {
    /// What extraction saw.
    pub extract: ExtractStats,
    /// Call records produced.
    pub calls: u64,
    /// Observations folded into another observation's call (duplicates,
    /// twins, wrapper spans, HTTP attempts).
    pub merged: u64,
}

/// Turns OTLP requests into call records. Feed requests in arrival order with
/// [`Enricher::push`], then take the records with [`Enricher::finish`].
#[derive(Debug)]
pub struct Enricher {
    config: EnrichConfig,
    seq: u64,
    pending: Vec<Observation>,
    stats: EnrichStats,
}

impl Enricher {
    /// A new enricher.
    pub fn new(config: EnrichConfig) -> Enricher {
        Enricher {
            config,
            seq: 0,
            pending: Vec::new(),
            stats: EnrichStats::default(),
        }
    }

    /// Extracts the observations of one request and holds them for merging.
    pub fn push(&mut self, req: &ExportRequest) {
        let from = self.pending.len();
        extract::extract(
            req,
            &mut self.seq,
            &mut self.stats.extract,
            &mut self.pending,
        );
        self.config
            .attribute_limits
            .apply(&mut self.pending[from..], &mut self.stats.extract);
    }

    /// Decodes and extracts a protobuf traces request in one pass, borrowing
    /// strings from `bytes` (zero-copy) when the encoding is canonical. The
    /// result is the same as `push(&decode(...)?)`, only faster.
    pub fn push_traces_protobuf(
        &mut self,
        bytes: &[u8],
    ) -> Result<(), claudewatch_otlp::DecodeError> {
        let mut holder = None;
        let batch = claudewatch_otlp::trace_batch_protobuf(bytes, &mut holder)?;
        let from = self.pending.len();
        extract::extract_traces(
            &batch,
            &mut self.seq,
            &mut self.stats.extract,
            &mut self.pending,
        );
        self.config
            .attribute_limits
            .apply(&mut self.pending[from..], &mut self.stats.extract);
        Ok(())
    }

    /// Merges everything pushed so far into call records, in arrival order.
    pub fn finish(&mut self) -> Vec<CallRecord> {
        let mut obs = std::mem::take(&mut self.pending);
        let records = records_of(&mut obs, &self.config);
        self.stats.calls += records.len() as u64;
        self.stats.merged += (obs.len() - records.len()) as u64;
        records
    }

    /// Counters so far.
    pub fn stats(&self) -> &EnrichStats {
        &self.stats
    }
}

/// Merges a set of observations into call records, in order of each call's
/// first arrival. The observations' owned fields are moved into the records.
pub fn records_of(obs: &mut [Observation], config: &EnrichConfig) -> Vec<CallRecord> {
    let grouping = merge::group(obs);
    let groups: Vec<&[usize]> = grouping.iter().collect();
    records_of_groups(obs, &groups, config)
}

/// Assembles one record per group of observation indices (from [`merge::group`]).
pub fn records_of_groups(
    obs: &mut [Observation],
    groups: &[&[usize]],
    config: &EnrichConfig,
) -> Vec<CallRecord> {
    let mut records = Vec::with_capacity(groups.len());
    records_of_groups_into(obs, groups, config, &mut records);
    records
}

/// [`records_of_groups`], appending to `records` (whose capacity a caller
/// may reuse from one batch to the next).
pub fn records_of_groups_into(
    obs: &mut [Observation],
    groups: &[&[usize]],
    config: &EnrichConfig,
    records: &mut Vec<CallRecord>,
) {
    let mut models = assemble::ModelCache::default();
    records.extend(groups.iter().map(|g| {
        assemble::assemble(
            obs,
            g,
            &config.prices,
            config.tenant.as_deref(),
            &mut models,
        )
    }));
}
