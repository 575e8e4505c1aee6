//! `/v1/admin/keys`: key metadata (versions, data-key counts, rotation
//! progress; never key material) and starting a KEK rotation, which runs in
//! the background (see [`crate::crypto::rotation`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Action;
use crate::crypto::rotation::{self, KeyStatus, RotationError, DEFAULT_BATCH};
use crate::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::http::extract::Caller;
use crate::pipeline::gate::Gate;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(key_status))
        .routes(routes!(rotate_keys))
}

/// Key versions, how many data keys each wraps, and rotation progress.
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    params(("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = KeyStatus), (status = 401), (status = 403), (status = 503)))]
async fn key_status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<KeyStatus>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::KeysRead);
    let outcome = async {
        gate.authorize()?;
        let status = rotation::status(&state.db, state.clock.now_micros())
            .await
            .map_err(ApiError::Internal)?;
        gate.returned([], status.versions.len() as u64);
        Ok(Json(status))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RotateQuery {
    /// Data keys re-wrapped per transaction (1-10000, default 500).
    #[param(minimum = 1, maximum = 10000)]
    pub batch_size: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotationStarted {
    /// The KEK version every data key is being re-wrapped to.
    pub version: u32,
    /// `true` when an interrupted rotation was resumed instead of a new
    /// version being added.
    pub resumed: bool,
}

/// Start a KEK rotation (or resume an interrupted one). Answers 202 at once;
/// follow progress with `GET /v1/admin/keys`. 409 while a rotation runs.
#[utoipa::path(post, path = "/v1/admin/keys/rotate", tag = "admin",
    params(RotateQuery, ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 202, body = RotationStarted), (status = 401), (status = 403),
               (status = 409), (status = 503)))]
async fn rotate_keys(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<RotateQuery>,
) -> Result<(StatusCode, Json<RotationStarted>), ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::KeyRotate);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        // Refused before anything starts, never clamped.
        let batch = match q.batch_size {
            None => DEFAULT_BATCH,
            Some(b @ 1..=10_000) => i64::from(b),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "batch_size: must be between 1 and 10000",
                ))
            }
        };
        let owner = rotation::owner_id(&state.config.instance());
        let job = match rotation::start(
            &state.vault,
            &state.db,
            owner,
            state.clock.now_micros(),
            false,
        )
        .await
        {
            Ok(Some(job)) => job,
            Ok(None) => return Err(ApiError::internal(anyhow::anyhow!("rotation not started"))),
            Err(RotationError::InProgress) => {
                return Err(ApiError::Conflict(
                    "a key rotation is already in progress".into(),
                ))
            }
            Err(RotationError::Other(e)) => return Err(ApiError::Internal(e)),
        };
        gate.set_status(StatusCode::ACCEPTED);
        Ok((job, batch))
    }
    .await;
    // The request's own event is durable before the job starts. Should it
    // fail (503), the lease is left to go stale and another instance, or
    // this one, resumes the rotation within a minute.
    let (job, batch) = gate.finish(outcome).await?;
    let answer = RotationStarted {
        version: job.version,
        resumed: job.resumed,
    };
    tokio::spawn(crate::startup::run_audited(state.clone(), job, batch));
    Ok((StatusCode::ACCEPTED, Json(answer)))
}
