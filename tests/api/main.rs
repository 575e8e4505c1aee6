//! One integration-test binary; each module covers one feature over real HTTP.

mod helpers;

mod audit;
mod customers;
mod health;
mod import;
