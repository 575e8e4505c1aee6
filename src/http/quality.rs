//! `/v1/quality`: the data quality report (per source and check: rows
//! checked and failed, verdict, trend over the last runs; open quarantine;
//! the last import of each mapped source) and the quarantine list
//! (reasons and line numbers, never the rows). Counts only: no personal
//! data leaves here.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Action;
use crate::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::http::extract::Caller;
use crate::import::quality::{self, QualityConfig, QualityReport};
use crate::import::quarantine::{self, Entry};
use crate::pipeline::gate::Gate;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(quality_report))
        .routes(routes!(quarantine_list))
}

/// The latest quality run's results with their trends (run the checks
/// with `custodian quality check`).
#[utoipa::path(get, path = "/v1/quality", tag = "quality",
    params(("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = QualityReport), (status = 401), (status = 403), (status = 503)))]
async fn quality_report(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<QualityReport>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::QualityRead);
    let outcome = async {
        gate.authorize()?;
        let config = QualityConfig::load(&state.config.policy_dir).map_err(ApiError::Internal)?;
        let report = quality::report(&state.db, &config)
            .await
            .map_err(ApiError::Internal)?;
        gate.returned([], report.results.len() as u64);
        Ok(Json(report))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QuarantineQuery {
    /// Only this source (`[a-z0-9_]{1,32}`).
    #[param(pattern = "^[a-z0-9_]{1,32}$")]
    pub source: Option<String>,
    /// `open` (default), `replayed` or `all`.
    #[param(pattern = "^(open|replayed|all)$")]
    pub status: Option<String>,
    /// Entries after this id (paging; the last page's `next_after`).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Most entries (1-500, default 100; out of range is 400).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantinePage {
    pub entries: Vec<Entry>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// Quarantine entries: reasons (codes and field names) and line numbers.
#[utoipa::path(get, path = "/v1/quality/quarantine", tag = "quality",
    params(QuarantineQuery, ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = QuarantinePage), (status = 401), (status = 403),
               (status = 422), (status = 503)))]
async fn quarantine_list(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<QuarantineQuery>,
) -> Result<Json<QuarantinePage>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::QuarantineRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        if let Some(s) = &q.source {
            let ok = !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(ApiError::unprocessable(
                    "source: 1-32 characters of a-z0-9_",
                ));
            }
        }
        let status = match q.status.as_deref().unwrap_or("open") {
            "all" => None,
            s @ ("open" | "replayed") => Some(s),
            _ => return Err(ApiError::unprocessable("status: open, replayed or all")),
        };
        let limit = crate::http::validate::page_limit(q.limit, 100, 500)?;
        let after = q.after.unwrap_or(0);
        if after < 0 {
            return Err(ApiError::unprocessable("after: must not be negative"));
        }
        let entries = quarantine::list(&state.db, q.source.as_deref(), status, after, limit)
            .await
            .map_err(ApiError::Internal)?;
        let next_after = (entries.len() as i64 == limit)
            .then(|| entries.last().map(|e| e.id))
            .flatten();
        gate.returned([], entries.len() as u64);
        Ok(Json(QuarantinePage {
            entries,
            next_after,
        }))
    }
    .await;
    gate.finish(outcome).await
}
