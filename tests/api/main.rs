//! One integration-test binary; each module covers one feature over real HTTP.

mod browser;
mod helpers;

mod audit;
mod audit_http;
mod authn;
mod cli;
mod consents;
mod console;
mod crypto;
mod customers;
mod dsr;
mod event_schema;
mod gate;
mod health;
mod import;
mod import_cdnow;
mod import_mapped;
mod jwks;
mod keys;
mod ops;
mod orders;
mod policy;
mod quality;
mod recs;
mod security;
mod segments;
mod stats;
mod tls;
