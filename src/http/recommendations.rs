//! Recommendation routes: personalized top-N for a customer (by their
//! `personalization` pseudonym), products that go together, and popular
//! products. Thin: the gate authorizes, the consent stage decides whether
//! a personalized answer is allowed (on every request, so a withdrawal
//! takes effect at once), the served snapshot answers from memory, and the
//! audit event records model, version, personalization and the items.
//!
//! A customer who is unknown, erased or not consenting gets the same
//! popularity answer (`personalized: false`): the response never tells
//! which, only the audit event does.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{Action, PrivacyBlock, Served};
use crate::domain::Treatment;
use crate::error::ApiError;
use crate::http::extract::{ApiQuery, Caller};
use crate::pipeline::gate::Gate;
use crate::recs::job::{self, RebuildError};
use crate::recs::model::{ModelStats, Scored, Source};
use crate::recs::serve::Snapshot;
use crate::recs::Mode;
use crate::state::AppState;

/// Largest list a route returns.
pub const MAX_N: usize = 100;
const DEFAULT_N: usize = 10;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(for_customer))
        .routes(routes!(together))
        .routes(routes!(popular))
        .routes(routes!(rebuild))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CustomerQuery {
    /// Items to return (1-100, default 10).
    #[param(minimum = 1, maximum = 100)]
    pub n: Option<usize>,
    /// `new` (default): only items the customer has not bought or viewed;
    /// `repeat`: bought items may come back (buy again).
    pub mode: Option<Mode>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TogetherQuery {
    /// Items to return (1-100, default 10).
    #[param(minimum = 1, maximum = 100)]
    pub n: Option<usize>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PopularQuery {
    /// Country name as stored (for example `United Kingdom`); unknown or
    /// absent: the overall ranking.
    #[param(max_length = 64)]
    pub country: Option<String>,
    /// Items to return (1-100, default 10).
    #[param(minimum = 1, maximum = 100)]
    pub n: Option<usize>,
}

/// One recommended product.
#[derive(Debug, Serialize, ToSchema)]
pub struct Item {
    /// The product's SKU.
    pub product_id: String,
    /// The model's score (comparable within one answer only).
    pub score: f32,
    /// Which model put the item here.
    pub source: Source,
    /// Rule measures, for association-rule items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleMeasures>,
}

/// Support, confidence and lift of a rule `{product} → item`, rounded to
/// four decimals.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleMeasures {
    pub support: f32,
    pub confidence: f32,
    pub lift: f32,
}

/// An answer: the model and version that produced it, and the items.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recommendations {
    /// `ease`, `ease+buy_again`, `association_rules+item_similarity` or
    /// `popularity`.
    pub model: &'static str,
    /// The build that answered.
    pub model_version: String,
    /// Whether the list is personal to the customer (only with their
    /// current `personalization` consent).
    pub personalized: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    pub items: Vec<Item>,
}

fn list_len(n: Option<usize>) -> Result<usize, ApiError> {
    match n {
        None => Ok(DEFAULT_N),
        Some(n) if (1..=MAX_N).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::unprocessable("n: must be between 1 and 100")),
    }
}

fn snapshot(state: &AppState) -> Result<Arc<Snapshot>, ApiError> {
    state.recs.current().ok_or(ApiError::Unavailable)
}

fn round4(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}

fn items(
    snap: &Snapshot,
    scored: impl IntoIterator<Item = (Scored, Option<RuleMeasures>)>,
) -> Vec<Item> {
    scored
        .into_iter()
        .filter_map(|(s, rule)| {
            Some(Item {
                product_id: snap.model.items.key(s.item)?.to_owned(),
                score: round4(s.score),
                source: s.source,
                rule,
            })
        })
        .collect()
}

/// The answer's evidence for the audit event: what leaves (product ids,
/// model, version, whether it is personal) and the privacy block (the k
/// threshold every served item, pair, rule and neighbour met at build
/// time). Recommendations spend no budget: no noisy number leaves, only
/// items that k customers support.
fn note(gate: &mut Gate<'_>, snap: &Snapshot, answer: &Recommendations, question: &str) {
    gate.returned(
        [
            ("product_id".to_owned(), Treatment::Clear),
            ("score".to_owned(), Treatment::Clear),
        ],
        answer.items.len() as u64,
    );
    let items = answer
        .items
        .iter()
        .filter_map(|i| snap.model.items.get(&i.product_id))
        .map(|i| snap.model.product_id(i))
        .collect();
    gate.served(Served {
        model: answer.model.to_owned(),
        model_version: answer.model_version.clone(),
        personalized: answer.personalized,
        items,
    });
    let digest = ring::digest::digest(&ring::digest::SHA256, question.as_bytes());
    gate.privacy(PrivacyBlock {
        mechanism: "k_threshold".to_owned(),
        epsilon_spent_micros: 0,
        k: snap.model.params.k,
        suppressed_cells: 0,
        fingerprint: crate::audit::event::to_hash(digest.as_ref()).unwrap_or_default(),
        budget_remaining_micros: 0,
    });
}

/// A well-formed customer pseudonym: `ps_` and 22 base64url characters.
fn is_pseudonym(token: &str) -> bool {
    token.len() == 25
        && token.starts_with("ps_")
        && token
            .bytes()
            .skip(3)
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Personalized top-N for a customer, by their `personalization`
/// pseudonym. Without current consent (or history) the answer is
/// popularity, and says so only through `personalized: false`.
#[utoipa::path(get, path = "/v1/recommendations/customers/{pseudonym}", tag = "recommendations",
    params(("pseudonym" = String, Path, description = "The customer's personalization pseudonym (ps_…)", pattern = "^ps_[A-Za-z0-9_-]{22}$"),
           CustomerQuery,
           ("X-Purpose" = String, Header, description = "personalization")),
    security(("bearer" = [])),
    responses((status = 200, body = Recommendations), (status = 400), (status = 401), (status = 403),
               (status = 422, description = "malformed pseudonym, n out of range"),
               (status = 503, description = "audit unavailable, or no model built yet")))]
async fn for_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(token): Path<String>,
    q: ApiQuery<CustomerQuery>,
) -> Result<Json<Recommendations>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::RecommendationRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        let n = list_len(q.n)?;
        let mode = q.mode.unwrap_or(Mode::New);
        if !is_pseudonym(&token) {
            return Err(ApiError::unprocessable(
                "pseudonym: not a customer pseudonym (ps_ and 22 base64url characters)",
            ));
        }
        let snap = snapshot(&state)?;
        let found = snap
            .customer(&token)
            .filter(|(id, _)| !state.recs.is_forgotten(*id));
        // Pseudonyms of another purpose never match: the index holds only
        // personalization tokens, so only that purpose can personalize.
        let allowed = match found {
            Some((id, _)) if caller.purpose.as_str() == job::PURPOSE => {
                gate.touch([id]);
                gate.consenting(&[id]).await?.contains(&id)
            }
            _ => false,
        };
        let answer = match found {
            Some((_, lists)) if allowed => Recommendations {
                model: match mode {
                    Mode::New => "ease",
                    Mode::Repeat => "ease+buy_again",
                },
                model_version: snap.model.version.clone(),
                personalized: true,
                mode: Some(mode),
                items: items(&snap, lists.top(mode, n).iter().map(|s| (*s, None))),
            },
            _ => Recommendations {
                model: "popularity",
                model_version: snap.model.version.clone(),
                personalized: false,
                mode: Some(mode),
                items: items(
                    &snap,
                    snap.model.popular(None, n).into_iter().map(|s| (s, None)),
                ),
            },
        };
        note(
            &mut gate,
            &snap,
            &answer,
            &format!("customer\0{mode:?}\0{n}"),
        );
        Ok(Json(answer))
    }
    .await;
    gate.finish(outcome).await
}

/// Products frequently bought together with a product (association rules
/// `{product} → item`, then item-to-item neighbours; popularity for an
/// unknown product). Nothing rests on fewer than k distinct customers.
#[utoipa::path(get, path = "/v1/recommendations/products/{id}/together", tag = "recommendations",
    params(("id" = String, Path, description = "The product's SKU"), TogetherQuery,
           ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = Recommendations), (status = 400), (status = 401), (status = 403),
               (status = 422, description = "n out of range"),
               (status = 503, description = "audit unavailable, or no model built yet")))]
async fn together(
    State(state): State<AppState>,
    caller: Caller,
    Path(sku): Path<String>,
    q: ApiQuery<TogetherQuery>,
) -> Result<Json<Recommendations>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::RecommendationRead);
    let outcome = async {
        gate.authorize()?;
        let n = list_len(q.into_inner()?.n)?;
        let snap = snapshot(&state)?;
        let found = snap
            .model
            .items
            .get(&sku)
            .map(|i| snap.model.together(i, n));
        let answer = match found {
            Some(list) if !list.is_empty() => Recommendations {
                model: "association_rules+item_similarity",
                model_version: snap.model.version.clone(),
                personalized: false,
                mode: None,
                items: items(
                    &snap,
                    list.into_iter().map(|(s, r)| {
                        (
                            s,
                            r.map(|r| RuleMeasures {
                                support: round4(r.support),
                                confidence: round4(r.confidence),
                                lift: round4(r.lift),
                            }),
                        )
                    }),
                ),
            },
            _ => Recommendations {
                model: "popularity",
                model_version: snap.model.version.clone(),
                personalized: false,
                mode: None,
                items: items(
                    &snap,
                    snap.model.popular(None, n).into_iter().map(|s| (s, None)),
                ),
            },
        };
        note(&mut gate, &snap, &answer, &format!("together\0{sku}\0{n}"));
        Ok(Json(answer))
    }
    .await;
    gate.finish(outcome).await
}

/// Products most distinct customers bought recently, for a country
/// (filled up from the overall ranking).
#[utoipa::path(get, path = "/v1/recommendations/popular", tag = "recommendations",
    params(PopularQuery, ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = Recommendations), (status = 400), (status = 401), (status = 403),
               (status = 422, description = "n out of range, country too long"),
               (status = 503, description = "audit unavailable, or no model built yet")))]
async fn popular(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<PopularQuery>,
) -> Result<Json<Recommendations>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::RecommendationRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        let n = list_len(q.n)?;
        if q.country.as_ref().is_some_and(|c| c.chars().count() > 64) {
            return Err(ApiError::unprocessable("country: at most 64 characters"));
        }
        let snap = snapshot(&state)?;
        let answer = Recommendations {
            model: "popularity",
            model_version: snap.model.version.clone(),
            personalized: false,
            mode: None,
            items: items(
                &snap,
                snap.model
                    .popular(q.country.as_deref(), n)
                    .into_iter()
                    .map(|s| (s, None)),
            ),
        };
        let question = format!("popular\0{}\0{n}", q.country.as_deref().unwrap_or(""));
        note(&mut gate, &snap, &answer, &question);
        Ok(Json(answer))
    }
    .await;
    gate.finish(outcome).await
}

/// Rebuild the recommendation models from the store now and swap them in
/// atomically; answers when the new models serve. 409 while a rebuild runs.
#[utoipa::path(post, path = "/v1/admin/recs/rebuild", tag = "admin",
    params(("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = ModelStats), (status = 401), (status = 403), (status = 409),
               (status = 503)))]
async fn rebuild(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ModelStats>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::RecsRebuild);
    let outcome = async {
        gate.authorize()?;
        let stats = match job::rebuild(&state, &mut crate::recs::build::Quiet).await {
            Ok(s) => s,
            Err(RebuildError::Busy) => {
                return Err(ApiError::Conflict("a rebuild is already running".into()))
            }
            Err(RebuildError::Failed(e)) => return Err(ApiError::Internal(e)),
        };
        gate.set_status(StatusCode::OK);
        gate.returned([], stats.customers as u64);
        Ok(Json(stats))
    }
    .await;
    gate.finish(outcome).await
}
