//! Custodian: a privacy-compliant data governance gateway.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

pub mod domain;
pub mod pipeline;
