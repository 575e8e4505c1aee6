//! A benchmark-only baseline: the customer read of `GET /v1/customers/{id}`
//! with every stage (authentication, purpose, policy, consent, field
//! treatment) except the audit event, so `bench/load.sh` can measure what
//! the audit trail costs on the request path.
//!
//! It is mounted only when `server.bench_baseline_route = true`, which
//! configuration refuses in production mode, and it is not in the OpenAPI
//! document. It returns personal data (in the caller's treatment) without
//! leaving a trace in the audit trail: never enable it on a gateway that
//! holds real data. A global "audit off" switch was rejected for the same
//! reason: it would turn every route into this one.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value};

use crate::audit::Action;
use crate::error::ApiError;
use crate::http::extract::Caller;
use crate::pipeline::gate::Gate;
use crate::state::AppState;

/// The baseline route when `enabled`, else nothing.
pub fn router(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new();
    }
    tracing::warn!(
        "server.bench_baseline_route: GET /bench/baseline/customers/{{id}} serves customer \
         data WITHOUT audit events; for benchmarks on synthetic data only"
    );
    Router::new().route("/bench/baseline/customers/{id}", get(unaudited_customer))
}

async fn unaudited_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    // The same work as `customers::get_customer`; the gate is dropped
    // instead of finished, so no event is recorded.
    let mut gate = Gate::new(&state, &caller, Action::CustomerRead);
    super::customers::read_one(&state, &mut gate, &id)
        .await
        .map(Json)
}
