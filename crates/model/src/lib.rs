//! The call record: one exact record per Claude API call.
//!
//! Every later stage (storage, alerts, reports) reads this type. Its JSON field
//! names are the ClickHouse column names, so renaming a field is a schema change.
//!
//! Architecture invariant: this crate holds plain data and its vocabulary; it
//! does no IO and knows nothing about OTLP or any instrumentation.

#![forbid(unsafe_code)]

mod attributes;
mod outcome;
mod record;

pub use attributes::{cut_utf8, Attributes, PackedPairs, PairsIter, PACKED_PART_MAX_LEN};
pub use outcome::{Blame, LimitKind, Outcome, Provider};
pub use record::{CallRecord, ATTRIBUTES_MAX_COUNT, ATTRIBUTE_VALUE_MAX_LEN};
pub use rust_decimal::Decimal;
