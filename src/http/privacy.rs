//! `/v1/privacy/budget`: a caller's privacy budget for the declared
//! purpose (spent, remaining, when it refreshes); compliance roles with
//! `privacy_budget read_all` see every principal's.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::pipeline::gate::{Caller, Gate};
use crate::privacy::{budget, epsilon};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_budget))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BudgetQuery {
    /// `own` (default), or `all`: every principal's budget in the current
    /// window (roles with `privacy_budget read_all`).
    #[param(pattern = "^(own|all)$")]
    pub scope: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetView {
    pub principal: String,
    pub purpose: String,
    /// Fresh noisy answers released in the current window.
    pub queries: i64,
    pub spent_epsilon: f64,
    pub remaining_epsilon: f64,
    pub total_epsilon: f64,
    pub epsilon_per_query: f64,
    /// RFC 3339.
    pub window_start: String,
    /// RFC 3339: when the budget refreshes.
    pub refreshes_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetAnswer {
    pub budgets: Vec<BudgetView>,
}

/// The caller's own privacy budget for the declared purpose, or (with
/// `scope=all`, compliance roles) everyone's.
#[utoipa::path(get, path = "/v1/privacy/budget", tag = "privacy",
    params(BudgetQuery, ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = BudgetAnswer), (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn get_budget(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<BudgetQuery>,
) -> Result<Json<BudgetAnswer>, ApiError> {
    let mut gate = Gate::new(&state, &caller, crate::audit::Action::PrivacyBudgetRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        let settings = &state.config.privacy;
        let now = state.clock.now_micros();
        let window = budget::window_start(now, settings.budget_window_secs);
        let len = i64::try_from(settings.budget_window_secs).unwrap_or(0) * 1_000_000;
        let total = settings.budget_micro();
        let view = |principal: String, purpose: String, queries: i64, spent: i64| BudgetView {
            principal,
            purpose,
            queries,
            spent_epsilon: epsilon(spent),
            remaining_epsilon: epsilon((total - spent).max(0)),
            total_epsilon: epsilon(total),
            epsilon_per_query: epsilon(settings.eps_per_query_micro()),
            window_start: crate::clock::rfc3339(window),
            refreshes_at: crate::clock::rfc3339(window + len),
        };
        let budgets = match q.scope.as_deref() {
            None | Some("own") => {
                let own = budget::one(
                    &state.db,
                    &caller.principal.sub,
                    caller.purpose.as_str(),
                    window,
                )
                .await
                .map_err(ApiError::Internal)?;
                let (queries, spent) = own.map(|r| (r.queries, r.spent_micro)).unwrap_or((0, 0));
                vec![view(
                    caller.principal.sub.clone(),
                    caller.purpose.as_str().to_owned(),
                    queries,
                    spent,
                )]
            }
            Some("all") => {
                if !gate.also_allowed("privacy_budget", "read_all") {
                    return Err(ApiError::forbidden(
                        "your role may only see its own privacy budget",
                    ));
                }
                budget::all_in_window(&state.db, window)
                    .await
                    .map_err(ApiError::Internal)?
                    .into_iter()
                    .map(|r| view(r.principal, r.purpose, r.queries, r.spent_micro))
                    .collect()
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "scope: expected own or all",
                ))
            }
        };
        gate.returned([], budgets.len() as u64);
        Ok(Json(BudgetAnswer { budgets }))
    }
    .await;
    gate.finish(outcome).await
}
