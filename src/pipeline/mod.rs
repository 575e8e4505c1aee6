//! Request pipeline stages.

pub mod sanitize;
