//! Telemetry: logging through `tracing` (human-readable by default, JSON
//! lines with `--log-format json`) and the Prometheus recorder behind
//! `/metrics`. Spans carry request ids, route templates and opaque subject
//! ids only; never an email, a token, a key, a path with ids in it or a
//! query string.
//!
//! The recorder is installed once, before anything records (see
//! [`metrics_handle`]), with histogram buckets so latencies render as
//! Prometheus histograms (not summaries), and every metric family is
//! described so that `# HELP` and `# TYPE` precede it.

use crate::config::{log_filter, ConfigError, LogConfig, LogFormat};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::sync::OnceLock;

/// Latency buckets, in seconds: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Audit batch sizes: powers of two up to `audit.max_batch`'s bound.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// The process-wide Prometheus recorder, installed on first call. Call it
/// before recording anything: a value recorded before the recorder exists
/// is lost (that is how `custodian_audit_healthy` used to go missing).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("custodian_audit_batch_size".into()),
                        BATCH_BUCKETS,
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case our
            // handle still renders what we record through it.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// `# HELP` for every family Custodian records.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("custodian_http_requests_total", "HTTP requests by method, route template, status, decision (allow, deny, error) and deny reason class");
    describe_histogram!(
        "custodian_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method, route template and status"
    );
    describe_counter!(
        "custodian_auth_failures_total",
        "Failed authentications by reason"
    );
    describe_counter!(
        "custodian_auth_failures_unaudited_total",
        "Failed authentications past the audit rate limit (counted, not audited)"
    );
    describe_counter!(
        "custodian_rate_limited_total",
        "Requests refused by a rate limit, by kind"
    );
    describe_counter!(
        "custodian_consent_denials_total",
        "Requests refused because the customer has not consented, by purpose"
    );
    describe_gauge!(
        "custodian_audit_healthy",
        "1 while the audit trail can record, 0 while requests fail closed"
    );
    describe_gauge!(
        "custodian_audit_queue_depth",
        "Audit events waiting for the writer"
    );
    describe_histogram!(
        "custodian_audit_batch_size",
        "Audit events committed per batch (group commit)"
    );
    describe_histogram!(
        "custodian_audit_commit_seconds",
        Unit::Seconds,
        "Time to chain and commit one audit batch"
    );
    describe_counter!("custodian_audit_batches_total", "Audit batches committed");
    describe_counter!("custodian_audit_events_total", "Audit events committed");
    describe_counter!(
        "custodian_audit_failed_batches_total",
        "Audit batches that failed to commit"
    );
    describe_counter!(
        "custodian_audit_rejected_total",
        "Audit events refused before the writer, by reason"
    );
    describe_counter!(
        "custodian_audit_checkpoints_total",
        "Signed audit checkpoints written"
    );
    describe_histogram!(
        "custodian_audit_index_seconds",
        Unit::Seconds,
        "Time of one pass filling the audit customer index"
    );
    describe_counter!(
        "custodian_audit_indexed_blocks_total",
        "Audit blocks indexed by customer"
    );
    describe_counter!(
        "custodian_audit_index_failures_total",
        "Failed audit index passes"
    );
    describe_histogram!(
        "custodian_audit_wal_checkpoint_seconds",
        Unit::Seconds,
        "SQLite WAL checkpoints of the audit file"
    );
    describe_gauge!(
        "custodian_key_rotation_remaining",
        "Data keys not yet re-wrapped to the active key version"
    );
    describe_counter!(
        "custodian_key_rotation_rewrapped_total",
        "Data keys re-wrapped by key rotation"
    );
    // Other subsystems' families (describe a new one here: a test holds
    // every family to having `# HELP`).
    describe_counter!(
        "custodian_bodies_refused_total",
        "Request bodies refused before parsing, by status"
    );
    describe_counter!(
        "custodian_targets_refused_total",
        "Requests refused for a malformed request target"
    );
    describe_counter!(
        "custodian_connections_refused_total",
        "Connections refused before a request was read"
    );
    describe_counter!(
        "custodian_tls_handshake_failures_total",
        "TLS handshakes that failed or timed out, by reason (error, timeout)"
    );
    describe_counter!(
        "custodian_jwks_fetches_total",
        "Fetches of the configured JWKS URL, by result (ok, error: the current keys stay)"
    );
    describe_counter!(
        "custodian_jwks_refetches_limited_total",
        "Unknown-kid refetches of the JWKS skipped by the refetch rate limit"
    );
    describe_gauge!(
        "custodian_jwks_keys",
        "Verification keys currently loaded from the JWKS URL"
    );
    describe_gauge!(
        "custodian_recs_model_bytes",
        Unit::Bytes,
        "Memory of the loaded recommendation models"
    );
    describe_gauge!(
        "custodian_recs_model_customers",
        "Customers with a personalization profile in the loaded recommendation models"
    );
    describe_counter!(
        "custodian_tls_reloads_total",
        "TLS certificate reloads (SIGHUP), by result (ok, error: the old certificate stays)"
    );
    describe_counter!(
        "custodian_gate_cancelled_total",
        "Governed requests cancelled before their outcome (request timeout or client gone); each is audited as `cancelled`"
    );
    describe_counter!(
        "custodian_dsr_requests_total",
        "Data subject requests opened, by kind"
    );
    describe_counter!(
        "custodian_dsr_documents_total",
        "Data subject access/portability documents produced, by format"
    );
    describe_counter!(
        "custodian_dsr_documents_expired_total",
        "Data subject documents removed after expiry"
    );
    describe_counter!("custodian_dsr_erasures_total", "Erasures carried out");
    describe_counter!(
        "custodian_dsr_keys_destroyed_total",
        "Customer data keys destroyed by erasure"
    );
    describe_counter!(
        "custodian_dsr_suppressed_total",
        "Re-imports refused by the suppression list, by field"
    );
    describe_counter!(
        "custodian_privacy_releases_total",
        "Analytic answers released, by purpose and mechanism (exact, discrete_laplace, sticky)"
    );
    describe_counter!(
        "custodian_privacy_epsilon_spent_micro_total",
        "Privacy budget spent by committed noisy releases, in millionths of epsilon, by purpose (summed over principals)"
    );
    describe_histogram!(
        "custodian_feature_refresh_seconds",
        Unit::Seconds,
        "Time to refresh the per-customer analytics features"
    );
}

/// Installs the global subscriber. Safe to call more than once (tests): later
/// calls are ignored. A bad `CUSTODIAN_LOG` is refused, not ignored.
pub fn init(config: &LogConfig) -> Result<(), ConfigError> {
    let filter = log_filter(config)?;
    // Colour codes only for a terminal: a log file or journald gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Human => builder.try_init(),
    };
    Ok(())
}
