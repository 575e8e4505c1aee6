//! Custodian: a privacy-compliant data governance gateway.
//!
//! Every read and write of the shop's marketing data passes one pipeline
//! (see `DESIGN.md`):
//!
//! ```text
//! limits → authenticate → purpose → authorize → consent → store → sanitize → audit → response
//! ```
//!
//! Code tour:
//! - [`startup`] builds the application (binds first, so tests use port 0);
//! - [`http`] holds the thin route handlers, one file per resource;
//! - [`pipeline`] holds one module per stage;
//! - [`db`] owns the store and its queries; [`crypto`] the keys and ciphers;
//! - [`recs`] owns the recommendation models, their build, serving and eval;
//! - [`config`], [`error`], [`telemetry`], [`clock`] are the plumbing.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod audit;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
pub mod http;
pub mod import;
pub mod pipeline;
pub mod recs;
pub mod secret;
pub mod startup;
pub mod state;
pub mod telemetry;
