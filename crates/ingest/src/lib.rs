//! OTLP receivers: the transport contract of OTLP 1.x in front of the pipeline.
//!
//! Architecture invariant: a receiver acknowledges only what its [`Submit`]
//! says was stored; it answers with a retryable status only when a retry can
//! help; no body is ever expanded past the configured limit.

#![forbid(unsafe_code)]

pub mod body;
pub mod grpc;
pub mod http;
pub mod response;
pub mod submit;

pub use grpc::{services as grpc_services, GrpcSettings};
pub use http::{router, HttpSettings};
pub use submit::{Refusal, Submission, Submit, SubmitFuture, Verdict};
