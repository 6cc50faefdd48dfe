//! Test support shared by the integration tests (each test file that uses
//! it declares `mod common;`).

pub mod ground_truth;
