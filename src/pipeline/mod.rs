//! The request pipeline, one module per stage, in the order a request meets
//! them:
//!
//! ```text
//! limits → authenticate → purpose → authorize → consent → store → sanitize → audit
//! ```
pub mod audit;
pub mod authenticate;
pub mod authorize;
pub mod consent;
pub mod gate;
pub mod limits;
pub mod purpose;
pub mod sanitize;
