//! The audit trail, a subsystem of its own: every decision of the gateway,
//! allowed or denied, becomes one typed [`AuditEvent`] in a tamper-evident,
//! per-instance hash chain with Ed25519-signed checkpoints. This module
//! owns the event type and its closed set of [`Action`]s (`action`), the
//! canonical encoding (`event`), the fail-closed group-commit
//! [`AuditWriter`] (`writer`), the block store (`store`), verification
//! (`verify`), querying and export (`export`), retention pruning (`prune`)
//! and the checkpoint signing key (`key`). The request pipeline only builds
//! events and records them (`pipeline::gate`); the storage layer (`db`)
//! knows nothing of this module.
//!
//! # Recording an event directly (handlers go through `pipeline::gate`)
//!
//! ```ignore
//! let event = AuditEvent::builder(&principal, Action::CustomerRead, "/v1/customers/{id}")
//!     .policy_version(Some(policy_hash))
//!     .request_id(request_id)
//!     .purpose(&purpose)
//!     .customer(id)
//!     .field("email", Treatment::Masked)
//!     .records(1)
//!     .allow(Reason::Policy(rule), 200)
//!     .build();
//! state.audit.record(event).await?; // Err → 503 audit_unavailable, no data
//! ```
//!
//! # Canonical encoding, format version 1
//!
//! `hash(n) = SHA-256(prev_hash || canonical(n))`, with `prev_hash` the hash
//! of event `n-1` of the same instance, or 32 zero bytes for seq 1. The
//! canonical encoding is binary, in this fixed order, with integers
//! big-endian, strings as a `u32` byte length followed by their UTF-8 bytes,
//! and lists as a `u32` element count followed by the elements:
//!
//! 1. `u8` version = 1;
//! 2. string instance; `i64` seq; `i64` occurred_at (µs since the epoch);
//! 3. string request_id; string actor; list of string roles;
//! 4. string action code (`customer.read`, ...); string resource;
//! 5. list of `i64` customer ids (as stored; the builder sorts and
//!    deduplicates them);
//! 6. purpose: `u8` 0 when absent, or `u8` 1 then the string;
//! 7. `u8` decision (0 deny, 1 allow); string reason (`policy:…`,
//!    `consent:…`, `auth:…`, `admin:…`);
//! 8. list of fields, each a string name then a `u8` treatment (0 dropped,
//!    1 pseudonym, 2 masked, 3 clear);
//! 9. `u32` HTTP status; `u64` number of records returned.
//!
//! # Canonical encoding, format version 2
//!
//! Written by this version; version 1 events (older chains) are still read
//! and verified byte for byte. Items 1 to 9 as in version 1, with `u8`
//! version = 2, then, each optional as `u8` 0 when absent or `u8` 1
//! followed by the value:
//!
//! 10. policy version: the 32 raw bytes of the SHA-256 of the canonical
//!     policy text that decided (`GET /v1/admin/policies/{version}` shows
//!     it; absent when no policy was consulted, as for a failed
//!     authentication);
//! 11. privacy block: string mechanism; `u64` epsilon spent in millionths;
//!     `u32` k; `u32` suppressed cells; 32 bytes query fingerprint (SHA-256
//!     of the question's canonical form); `i64` budget remaining in
//!     millionths;
//! 12. subject-rights block: string request id; string kind; string step;
//! 13. served block: string model; string model version; `u8` personalized
//!     (0 or 1); list of `i64` product ids returned.
//!
//! A decoder refuses unknown versions, unknown tags and trailing bytes.
//!
//! There are no floats, no maps and no optional omissions, so the encoding
//! does not depend on JSON formatting or key order. The store keeps exactly
//! these bytes: one `audit_blocks` row per writer batch holds its events
//! back to back, each with its hashes (layout in [`store::encode_block`]),
//! and readers decode them with [`event::decode_canonical`]. Checkpoints sign
//! `"custodian.audit.checkpoint.v1" || string instance || i64 seq ||
//! hash[32] || i64 signed_at` with Ed25519.
//!
//! # What the trail guarantees, and what it does not
//!
//! A request's event is committed before its data is returned; if it
//! cannot be, the request fails closed (503). Anyone holding the public key
//! can detect, from the store or from an NDJSON export, any change,
//! deletion, insertion or reordering of events up to the last signed
//! checkpoint, and a truncation of the chain below a signed checkpoint. A
//! hash chain has no secret: someone with write access to the database can
//! rewrite or drop the events *after* the last checkpoint and re-hash them
//! consistently; checkpoints (every `audit.checkpoint_every_events` events
//! or `audit.checkpoint_interval_secs` seconds, and at shutdown) bound that
//! window, and copying checkpoints off the database host closes it. A
//! rewrite that re-hashes events before a checkpoint is reported at the
//! checkpoint (`checkpoint_mismatch`), not at the first edited event. The
//! `audit_event_customers` table is a derived index for the customer filter,
//! filled outside the commits by the chain's writer process
//! (`store::index_customers`, progress in `audit_index_progress`), and is
//! not covered by the chain. On SQLite the audit tables live in their own
//! file, attached as schema `audit` (see `db`). Events hold ids (subject, customer ids,
//! field names), never personal values or tokens.

pub mod action;
pub mod event;
pub mod export;
pub mod key;
pub mod prune;
pub mod stats;
pub mod store;
pub mod verify;
pub mod writer;

pub use action::Action;
pub use event::{
    AuditEvent, Builder, Decision, Hash, PrivacyBlock, Reason, Served, SubjectRights, ANONYMOUS,
    GENESIS,
};
pub use export::{export_stream, query, AuditFilter, ExportFormat, Page, QueryError};
pub use key::{Checkpoint, PublicKey, Signer};
pub use prune::{prune, PruneReport};
pub use store::StoredEvent;
pub use verify::{
    check_since, heads, verify_ndjson, verify_store, Problem, ProblemKind, VerifyMode, VerifyReport,
};
pub use writer::{AuditUnavailable, AuditWriter, Receipt, WriterOptions};
