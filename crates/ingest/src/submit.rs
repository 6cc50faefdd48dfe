//! The boundary between receivers and the pipeline behind them.
//!
//! A receiver validates transport-level things (method, media type, auth,
//! size, compression) and hands the decompressed body to a [`Submit`]. The
//! pipeline decodes, enriches and stores it, and only then answers: the
//! receiver acknowledges what the pipeline says is durable, nothing earlier.

use std::future::Future;
use std::pin::Pin;

use claudewatch_otlp::{Encoding, Signal};

/// One export request, ready for the pipeline.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Which signal.
    pub signal: Signal,
    /// Protobuf or JSON.
    pub encoding: Encoding,
    /// The decompressed body.
    pub body: bytes::Bytes,
    /// The tenant the request's credentials map to.
    pub tenant: Option<String>,
}

/// What the pipeline made of an accepted submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored durably; `rejected` items of `items` were refused (partial success).
    Accepted {
        /// Items in the request.
        items: u64,
        /// Items refused.
        rejected: u64,
        /// Why items were refused (empty when none were).
        message: String,
    },
    /// The body could not be decoded: a client error, never retried.
    Invalid(String),
}

/// Why the pipeline could not take a submission now (the client should retry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Queues or memory are full; retry after the given seconds.
    Busy {
        /// Suggested wait.
        retry_after_secs: u32,
        /// What is full.
        reason: String,
    },
    /// The sink cannot store data right now.
    Unavailable {
        /// Suggested wait.
        retry_after_secs: u32,
        /// What failed.
        reason: String,
    },
    /// The service is shutting down.
    ShuttingDown,
}

impl Refusal {
    /// What a receiver tells the client: the seconds to wait before retrying
    /// and why (the same for every protocol).
    pub fn into_retry(self) -> (u32, String) {
        match self {
            Refusal::Busy {
                retry_after_secs,
                reason,
            }
            | Refusal::Unavailable {
                retry_after_secs,
                reason,
            } => (retry_after_secs, reason),
            Refusal::ShuttingDown => (
                5,
                "shutting down: retry on another instance or later".to_owned(),
            ),
        }
    }
}

/// The future a [`Submit`] returns.
pub type SubmitFuture<'a> = Pin<Box<dyn Future<Output = Result<Verdict, Refusal>> + Send + 'a>>;

/// The pipeline, as the receivers see it.
pub trait Submit: Send + Sync + 'static {
    /// Decodes, processes and durably stores a submission, then answers.
    fn submit(&self, submission: Submission) -> SubmitFuture<'_>;
}
