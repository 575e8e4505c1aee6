//! `/v1/consents` and `/v1/purposes`: the consent ledger (append-only; the
//! current state is the latest event per purpose) and the purpose catalog.
//! No route here updates or deletes a ledger event.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Action;
use crate::db::customers;
use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::extract::{Authenticated, Caller};
use crate::http::validate;
use crate::pipeline::consent::{self, ConsentChange, ConsentEvent, Receipt};
use crate::pipeline::gate::Gate;
use crate::pipeline::purpose::LegalBasis;
use crate::state::AppState;

/// Where a consent event came from.
pub const SOURCES: &[&str] = &[
    "web_form",
    "app",
    "crm",
    "email_link",
    "support_call",
    "import",
    "paper",
];
/// Largest batch one request may record.
pub const MAX_BATCH: usize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_purposes))
        .routes(routes!(get_consents, record_consents))
        .routes(routes!(get_receipt))
}

#[derive(Serialize, ToSchema)]
pub struct PurposeView {
    pub id: String,
    pub description: String,
    /// `consent`, `contract`, `legitimate_interest` or `legal_obligation`.
    pub legal_basis: String,
    /// Whether data may be used for this purpose only with the customer's consent.
    pub consent_required: bool,
    pub retention_days: u32,
}

fn basis_name(b: LegalBasis) -> &'static str {
    match b {
        LegalBasis::Consent => "consent",
        LegalBasis::Contract => "contract",
        LegalBasis::LegitimateInterest => "legitimate_interest",
        LegalBasis::LegalObligation => "legal_obligation",
    }
}

/// The purpose catalog: what `X-Purpose` may name.
#[utoipa::path(get, path = "/v1/purposes", tag = "consents", security(("bearer" = [])),
    responses((status = 200, body = Vec<PurposeView>), (status = 401)))]
async fn list_purposes(
    State(state): State<AppState>,
    _auth: Authenticated,
) -> Json<Vec<PurposeView>> {
    Json(
        state
            .purposes
            .all()
            .iter()
            .map(|p| PurposeView {
                id: p.id.to_string(),
                description: p.description.clone(),
                legal_basis: basis_name(p.legal_basis).to_owned(),
                consent_required: p.consent_required,
                retention_days: p.retention_days,
            })
            .collect(),
    )
}

#[derive(Serialize, ToSchema)]
pub struct ConsentState {
    pub customer_id: String,
    /// The latest event per purpose.
    pub current: Vec<ConsentEvent>,
    /// Every event, oldest first.
    pub history: Vec<ConsentEvent>,
}

/// A customer's current consent state and full history.
#[utoipa::path(get, path = "/v1/consents/{customer_id}", tag = "consents",
    params(("customer_id" = String, Path, description = "The shop's customer id", pattern = "^[A-Za-z0-9._-]{1,64}$"),
           ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = ConsentState), (status = 401), (status = 403), (status = 404), (status = 503)))]
async fn get_consents(
    State(state): State<AppState>,
    caller: Caller,
    Path(customer_id): Path<String>,
) -> Result<Json<ConsentState>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::ConsentRead);
    let outcome = async {
        gate.authorize()?;
        let id = customers::id_of(&state.db, &customer_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        gate.touch([id]);
        let history = consent::history(&state.db, id)
            .await
            .map_err(ApiError::Internal)?;
        let current = consent::current_state(&history)
            .into_iter()
            .cloned()
            .collect();
        gate.returned([], 1);
        Ok(Json(ConsentState {
            customer_id,
            current,
            history,
        }))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentBatch {
    /// 1 to 100 changes, recorded in order (for one purpose, the last is current).
    #[schema(min_items = 1, max_items = 100)]
    pub changes: Vec<ConsentChangeInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentChangeInput {
    /// A purpose whose legal basis is consent.
    pub purpose: String,
    /// `true` records a grant, `false` a withdrawal.
    pub granted: bool,
    /// One of `web_form`, `app`, `crm`, `email_link`, `support_call`, `import`, `paper`.
    #[schema(value_type = ConsentSource)]
    pub source: String,
    /// What the customer was shown or said (e.g. the version of the consent text).
    #[schema(
        pattern = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$",
        max_length = 4000
    )]
    pub evidence: Option<String>,
    /// RFC 3339; defaults to now. Never in the future.
    #[schema(format = DateTime, pattern = r"^(19[0-9]{2}|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")]
    pub occurred_at: Option<String>,
}

/// Where a consent event came from (the values of [`SOURCES`]).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // documents `source` in the OpenAPI document
pub enum ConsentSource {
    WebForm,
    App,
    Crm,
    EmailLink,
    SupportCall,
    Import,
    Paper,
}

#[derive(Serialize, ToSchema)]
pub struct Receipts {
    pub receipts: Vec<Receipt>,
}

/// Record grants and withdrawals (one transaction: all or nothing).
#[utoipa::path(post, path = "/v1/consents/{customer_id}", tag = "consents",
    request_body = ConsentBatch,
    params(("customer_id" = String, Path, description = "The shop's customer id", pattern = "^[A-Za-z0-9._-]{1,64}$"),
           ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 201, body = Receipts), (status = 401), (status = 403), (status = 404),
               (status = 413), (status = 422), (status = 503)))]
async fn record_consents(
    State(state): State<AppState>,
    caller: Caller,
    Path(customer_id): Path<String>,
    body: ApiJson<ConsentBatch>,
) -> Result<(StatusCode, Json<Receipts>), ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::ConsentWrite);
    let outcome = async {
        gate.authorize()?;
        let batch = body.into_inner()?;
        let now = state.clock.now_micros();
        let changes = validate_batch(&state, &batch, now)?;
        // Withdrawing must be as easy as granting; recording a grant needs the
        // stronger `consent grant` permission so that roles taking
        // withdrawals cannot manufacture consent.
        if changes.iter().any(|c| c.granted) && !gate.also_allowed("consent", "grant") {
            return Err(ApiError::forbidden(
                "your role may record withdrawals, not grants",
            ));
        }
        let id = customers::id_of(&state.db, &customer_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        gate.touch([id]);
        let mut tx = state.db.pool.begin().await?;
        let recorded = consent::append(&mut tx, id, &changes, &caller.principal.sub, now)
            .await
            .map_err(ApiError::Internal)?;
        let pseudonymizer = state.vault.pseudonymizer();
        let receipts = changes
            .iter()
            .zip(recorded)
            .map(|(c, (receipt_id, hash))| Receipt {
                receipt_id,
                customer_pseudonym: pseudonymizer
                    .token(&crate::domain::PurposeId(c.purpose.clone()), &customer_id),
                purpose: c.purpose.clone(),
                granted: c.granted,
                occurred_at: crate::clock::rfc3339(c.occurred_at),
                recorded_at: crate::clock::rfc3339(now),
                evidence_sha256: hash.map(hex::encode),
            })
            .collect::<Vec<_>>();
        gate.set_status(StatusCode::CREATED);
        gate.returned([], receipts.len() as u64);
        gate.commit_audited(tx).await?;
        Ok((StatusCode::CREATED, Json(Receipts { receipts })))
    }
    .await;
    gate.finish(outcome).await
}

/// Checks a whole batch before anything is written.
fn validate_batch(
    state: &AppState,
    batch: &ConsentBatch,
    now: i64,
) -> Result<Vec<ConsentChange>, ApiError> {
    if batch.changes.is_empty() || batch.changes.len() > MAX_BATCH {
        return Err(ApiError::unprocessable(format!(
            "changes: between 1 and {MAX_BATCH} entries"
        )));
    }
    batch
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let purpose = state.purposes.parse(&c.purpose).map_err(|_| {
                ApiError::unprocessable(format!("changes[{i}].purpose: unknown purpose"))
            })?;
            let consent_based = state
                .purposes
                .get(&purpose)
                .is_some_and(|p| p.consent_required);
            if !consent_based {
                return Err(ApiError::unprocessable(format!(
                    "changes[{i}].purpose: this purpose does not rest on consent"
                )));
            }
            if !SOURCES.contains(&c.source.as_str()) {
                return Err(ApiError::unprocessable(format!(
                    "changes[{i}].source: one of {}",
                    SOURCES.join(", ")
                )));
            }
            let evidence = c
                .evidence
                .as_deref()
                .map(|e| validate::text(&format!("changes[{i}].evidence"), e, 4000))
                .transpose()?;
            let occurred_at = match &c.occurred_at {
                Some(t) => validate::timestamp(&format!("changes[{i}].occurred_at"), t, now)?,
                None => now,
            };
            Ok(ConsentChange {
                purpose: purpose.as_str().to_owned(),
                granted: c.granted,
                occurred_at,
                source: c.source.clone(),
                evidence,
            })
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
pub struct ReceiptCheck {
    pub customer_id: String,
    pub event: ConsentEvent,
    /// Whether this event is still the customer's current state for its purpose.
    pub current: bool,
}

/// Look a receipt up in the ledger.
#[utoipa::path(get, path = "/v1/consents/receipts/{receipt_id}", tag = "consents",
    params(("receipt_id" = String, Path, description = "Receipt id from a grant or withdrawal", pattern = "^[A-Za-z0-9._-]{1,64}$"),
           ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = ReceiptCheck), (status = 401), (status = 403), (status = 404), (status = 503)))]
async fn get_receipt(
    State(state): State<AppState>,
    caller: Caller,
    Path(receipt_id): Path<String>,
) -> Result<Json<ReceiptCheck>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::ConsentRead);
    let outcome = async {
        gate.authorize()?;
        let (id, event) = consent::by_receipt(&state.db, &receipt_id)
            .await
            .map_err(ApiError::Internal)?
            .ok_or(ApiError::NotFound)?;
        gate.touch([id]);
        let history = consent::history(&state.db, id)
            .await
            .map_err(ApiError::Internal)?;
        let current = consent::current_state(&history)
            .iter()
            .any(|e| e.receipt_id == event.receipt_id);
        let customer_id = sqlx::query_scalar("SELECT external_id FROM customers WHERE id = $1")
            .bind(id)
            .fetch_one(&state.db.pool)
            .await?;
        gate.returned([], 1);
        Ok(Json(ReceiptCheck {
            customer_id,
            event,
            current,
        }))
    }
    .await;
    gate.finish(outcome).await
}
