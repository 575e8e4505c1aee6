pub mod authorize;
pub mod purpose;
