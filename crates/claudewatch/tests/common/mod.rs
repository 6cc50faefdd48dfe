//! Test support shared by the integration tests (each test file that uses
//! it declares `mod common;`).

#[allow(dead_code)] // not every test file compares with ground truth
pub mod ground_truth;
pub mod load;
pub mod process;
