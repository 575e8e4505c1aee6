//! The request pipeline: one module per stage, in the order a request meets
//! them.
//!
//! ```text
//! limits → authenticate → purpose → authorize → consent → store → sanitize | release → audit
//! ```
//!
//! `http::extract` runs the first three (through [`limits`],
//! [`authenticate`] and [`purpose`]) before a handler runs; the handler opens
//! a [`gate::Gate`] for its action, which authorizes ([`authorize`]), checks
//! consent ([`consent`]), and records the one audit event of the request
//! (the `audit` subsystem) before anything leaves. Rows leave through
//! [`sanitize`], aggregates through [`release`]. SQL lives in `db` (and in
//! the analytics compilers), never here.
pub mod authenticate;
pub mod authorize;
pub mod consent;
pub mod gate;
pub mod limits;
pub mod purpose;
pub mod release;
pub mod sanitize;
