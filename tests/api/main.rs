//! One integration-test binary; each module covers one feature over real HTTP.

mod helpers;

mod audit;
mod audit_http;
mod customers;
mod health;
