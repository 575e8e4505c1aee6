//! `POST /v1/pseudonyms/resolve`: the privileged, audited way back from a
//! purpose-scoped customer pseudonym (`ps_…`) to the shop's customer id.
//!
//! The request's `X-Purpose` is the resolver's own purpose (for the shipped
//! policy, `compliance_audit`); the body names the purpose the token was
//! issued under, since the same customer has a different token per purpose.
//! Pseudonyms are keyed one-way hashes, so resolution recomputes the token
//! of every customer (in pages) and compares in constant time: linear in the
//! number of customers, acceptable for a rare investigative action. A
//! pseudonym index table is the upgrade path if it becomes frequent.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Action;
use crate::db::customers;
use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::extract::Caller;
use crate::pipeline::gate::Gate;
use crate::state::AppState;

/// Customers read per page while recomputing pseudonyms.
const PAGE: i64 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(resolve_pseudonym))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// A customer pseudonym, `ps_` followed by 22 base64url characters.
    #[schema(pattern = "^ps_[A-Za-z0-9_-]{22}$")]
    pub token: String,
    /// The purpose the token was issued under (not the caller's purpose).
    pub purpose: String,
}

// The token is a pseudonym of a person: keep it out of debug output.
impl std::fmt::Debug for ResolveRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolveRequest")
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Resolved {
    /// The shop's customer id the pseudonym stands for.
    pub external_id: String,
    /// The purpose the pseudonym belongs to.
    pub purpose: String,
}

/// Resolve a customer pseudonym back to the shop's customer id (audited).
#[utoipa::path(post, path = "/v1/pseudonyms/resolve", tag = "pseudonyms",
    request_body = ResolveRequest,
    params(("X-Purpose" = String, Header, description = "The resolver's purpose (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, body = Resolved), (status = 401), (status = 403), (status = 404),
               (status = 422), (status = 503)))]
async fn resolve_pseudonym(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<ResolveRequest>,
) -> Result<Json<Resolved>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::PseudonymResolve);
    let outcome = async {
        gate.authorize()?;
        let req = body.into_inner()?;
        let purpose = state
            .purposes
            .parse(&req.purpose)
            .map_err(|_| ApiError::unprocessable("purpose: not a known purpose"))?;
        let well_formed = req.token.len() == 25
            && req.token.starts_with("ps_")
            && req.token[3..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(ApiError::unprocessable(
                "token: not a customer pseudonym (ps_ and 22 base64url characters)",
            ));
        }
        let pseudonymizer = state.vault.pseudonymizer();
        let mut after = 0;
        loop {
            let page = customers::subject_keys_page(&state.db, after, PAGE).await?;
            let Some((last, _)) = page.last() else {
                return Err(ApiError::NotFound);
            };
            after = *last;
            if let Some((id, external_id)) = page
                .into_iter()
                .find(|(_, key)| pseudonymizer.verify(&purpose, key, &req.token))
            {
                gate.touch([id]);
                gate.returned(
                    [("external_id".to_owned(), crate::domain::Treatment::Clear)],
                    1,
                );
                return Ok(Json(Resolved {
                    external_id,
                    purpose: purpose.as_str().to_owned(),
                }));
            }
        }
    }
    .await;
    gate.finish(outcome).await
}
