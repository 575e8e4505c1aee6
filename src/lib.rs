//! Custodian: a privacy-compliant data governance gateway.
//!
//! Every read and write of the shop's marketing data passes one pipeline
//! (see `DESIGN.md`):
//!
//! ```text
//! limits → authenticate → purpose → authorize → consent → store → sanitize → audit → response
//! ```
//!
//! Code tour (arrows point down: `http` and `cli` use everything below;
//! `pipeline` uses `audit`, `crypto` and `db`; `db` uses only `config` and
//! `domain`):
//! - [`startup`] builds the application (binds first, so tests use port 0);
//! - [`http`] holds the thin route handlers, one file per resource, and the
//!   extractors that run limits, authenticate and purpose;
//! - [`pipeline`] holds one module per stage, the [`pipeline::gate`] that
//!   walks an operation through them, and the release step for aggregates;
//! - [`audit`] is the trail: events, actions, writer, store, verification;
//! - [`dsr`] answers data subject requests (access, portability,
//!   rectification, erasure by crypto-shredding) on top of `audit`,
//!   `crypto` and `db`;
//! - [`analytics`] computes segments and profiles in the database, and
//!   [`privacy`] decides what of them may leave (k, noise, budget);
//! - [`db`] owns the store and its queries; [`crypto`] the keys and ciphers;
//! - [`recs`] owns the recommendation models, their build, serving and eval;
//! - [`config`], [`error`], [`telemetry`], [`clock`], [`secret`] are the
//!   plumbing.
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

pub mod analytics;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod demo;
pub mod domain;
pub mod dsr;
pub mod error;
pub mod fuzzing;
pub mod http;
pub mod import;
pub mod pipeline;
pub mod privacy;
pub mod recs;
pub mod secret;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod whole;
