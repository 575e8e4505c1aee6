//! The rebuild job: read the store, fit, index customers by their
//! recommendation-purpose pseudonym, swap the new snapshot in, and record
//! one audit event. Run by `POST /v1/admin/recs/rebuild`, at start and on
//! the configured schedule; one rebuild at a time per instance.

use std::sync::Arc;
use std::time::Duration;

use super::build::{self, BuildProgress};
use super::model::ModelStats;
use super::serve::Snapshot;
use crate::audit::{Action, AuditEvent, Reason};
use crate::state::{AppState, WeakState};

/// The purpose personalized recommendations serve: customers are
/// addressed by their pseudonym of this purpose, and enter the models
/// only while they consent to it.
pub const PURPOSE: &str = "personalization";

/// Why a rebuild did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("a rebuild is already running")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// A version label: build time (UTC, to the second) plus a counter-free
/// random suffix so two instances' builds are told apart.
fn version_label(now_micros: i64) -> String {
    let secs = now_micros.div_euclid(1_000_000);
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut suffix = [0u8; 3];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        hex::encode(suffix)
    )
}

/// The model parameters in force, with the shared privacy threshold.
pub fn params(state: &AppState) -> super::RecsParams {
    super::RecsParams {
        k: state.config.privacy.k,
        ..state.config.recs.model.clone()
    }
}

/// Builds from the store and swaps the result in. Fails fast with
/// [`RebuildError::Busy`] while another rebuild runs.
pub async fn rebuild(
    state: &AppState,
    progress: &mut dyn BuildProgress,
) -> Result<ModelStats, RebuildError> {
    let Ok(_guard) = state.recs.rebuilding.try_lock() else {
        return Err(RebuildError::Busy);
    };
    let purpose = state
        .purposes
        .parse(PURPOSE)
        .map_err(|_| anyhow::anyhow!("the purpose catalog has no `{PURPOSE}` purpose"))?;
    let consent =
        crate::pipeline::consent::ConsentPredicate::for_purpose(&state.purposes, &purpose);
    let now = state.clock.now_micros();
    let params = params(state);
    let started = std::time::Instant::now();
    let built = build::build(
        &state.db,
        &consent,
        &params,
        version_label(now),
        now,
        progress,
    )
    .await?;
    let rows = built.rows_read;
    // Scoring every customer's lists is CPU: off the async workers.
    let state2 = state.clone();
    let snapshot = tokio::task::spawn_blocking(move || {
        let pseudonymizer = state2.vault.pseudonymizer();
        Snapshot::new(built, |external_id| {
            pseudonymizer.token(&purpose, external_id)
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("scoring customers: {e}"))?;
    let stats = snapshot.stats();
    state.recs.swap(snapshot);
    metrics::gauge!("custodian_recs_model_bytes").set(stats.memory_bytes as f64);
    metrics::gauge!("custodian_recs_model_customers").set(stats.customers as f64);
    tracing::info!(
        version = %stats.version,
        rows,
        customers = stats.customers,
        items = stats.items,
        memory_bytes = stats.memory_bytes,
        ms = started.elapsed().as_millis() as u64,
        "recommendation models swapped in"
    );
    Ok(stats)
}

/// Builds at start (when configured) and then every
/// `recs.rebuild_interval_secs` (0: only on demand).
pub fn spawn_schedule(weak: WeakState) {
    let Some(state) = weak.upgrade() else { return };
    let on_start = state.config.recs.build_on_start;
    let every = state.config.recs.rebuild_interval_secs;
    drop(state);
    if !on_start && every == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut first = on_start;
        loop {
            if !first {
                if every == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(every)).await;
            }
            first = false;
            let Some(state) = weak.upgrade() else { return };
            match rebuild(&state, &mut build::Quiet).await {
                Ok(stats) => {
                    // A scheduled build is a system action: on the trail too.
                    let event = AuditEvent::system("system:recs", Action::RecsBuild, "recs")
                        .records(stats.customers as u64)
                        .allow(Reason::Admin("schedule".to_owned()), 200)
                        .build();
                    if let Err(e) = state.audit.record(event).await {
                        tracing::warn!(error = %e, "scheduled rebuild not audited");
                    }
                }
                Err(RebuildError::Busy) => {}
                Err(RebuildError::Failed(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "scheduled recommendation rebuild failed");
                }
            }
        }
    });
}

/// Shared handle type held in the application state.
pub type Shared = Arc<super::serve::Recommender>;
