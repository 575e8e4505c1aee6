//! `/v1/customers`: governed reads (each field in the caller's treatment,
//! consenting customers only where the purpose needs consent) and creation
//! (personal fields sealed before they reach the store).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Action;
use crate::crypto::BlindField;
use crate::db::customers::{self, NewCustomer, Profile};
use crate::error::ApiError;
use crate::http::extract::Caller;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::validate;
use crate::pipeline::consent::ConsentPredicate;
use crate::pipeline::gate::Gate;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(get_customer))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Exact e-mail look-up (through the blind index; the table is never
    /// decrypted). With `phone` too: the customers matching both.
    #[param(max_length = 254)]
    pub email: Option<String>,
    /// Exact phone look-up (blind index).
    #[param(max_length = 64)]
    pub phone: Option<String>,
    /// Only customers of this country.
    pub country: Option<String>,
    /// Cursor from the previous page's `next_cursor` (opaque; valid only
    /// for the caller and purpose it was issued to).
    pub after: Option<String>,
    /// Page size (default 100; above `max_page_size`, 1000 by default, is 400).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerPage {
    /// Each customer with every field in the treatment the caller's role has
    /// for the declared purpose (clear, masked, pseudonym); other fields absent.
    #[schema(value_type = Vec<Object>)]
    pub customers: Vec<Map<String, Value>>,
    /// Customers of this page left out because they have not consented to
    /// the purpose; present only for roles that may read the consent ledger
    /// for the purpose (to others it would say who withheld consent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_out_without_consent: Option<u64>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// List or look up customers.
#[utoipa::path(get, path = "/v1/customers", tag = "customers",
    params(ListQuery, ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = CustomerPage), (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn list_customers(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<ListQuery>,
) -> Result<Json<CustomerPage>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::CustomerRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        let limit = validate::page_limit(q.limit, 100, state.config.max_page_size)?;
        // Set by list pages, which apply consent in their query.
        let mut skipped = None;
        let rows = match (&q.email, &q.phone) {
            (Some(email), Some(phone)) => {
                // Both given: the customers matching both.
                let by_phone: std::collections::HashSet<i64> =
                    blind_lookup(&state, &mut gate, BlindField::Phone, phone, limit)
                        .await?
                        .iter()
                        .map(|r| r.id)
                        .collect();
                let mut rows =
                    blind_lookup(&state, &mut gate, BlindField::Email, email, limit).await?;
                rows.retain(|r| by_phone.contains(&r.id));
                rows
            }
            (Some(email), None) => {
                blind_lookup(&state, &mut gate, BlindField::Email, email, limit).await?
            }
            (None, Some(phone)) => {
                blind_lookup(&state, &mut gate, BlindField::Phone, phone, limit).await?
            }
            (None, None) => {
                let after = match &q.after {
                    Some(c) => state
                        .vault
                        .cursors()
                        .open(&gate.cursor_scope("customers"), c)
                        .ok_or_else(|| {
                            ApiError::bad_request(
                                "invalid_query",
                                "after: not a cursor issued to you for this list and purpose",
                            )
                        })?,
                    None => 0,
                };
                let admitted = ConsentPredicate::for_purpose(&state.purposes, gate.purpose());
                let rows =
                    customers::list_page(&state.db, after, limit, q.country.as_deref(), &admitted)
                        .await?;
                let mut left_out = 0;
                if admitted.required() && gate.may_see_consent_counts() {
                    let full = rows.len() as i64 == limit;
                    let up_to = rows.last().filter(|_| full).map(|r| r.id);
                    let covered =
                        customers::count_in_range(&state.db, after, up_to, q.country.as_deref())
                            .await?;
                    left_out = covered.saturating_sub(rows.len() as i64) as u64;
                }
                skipped = Some(left_out);
                rows
            }
        };
        // Opaque: the internal id of the last row, sealed to this caller,
        // purpose and list. A bare id would link pseudonyms to internal ids.
        let next_cursor = match rows.last() {
            Some(last) if rows.len() as i64 == limit && q.email.is_none() && q.phone.is_none() => {
                Some(
                    state
                        .vault
                        .cursors()
                        .seal(&gate.cursor_scope("customers"), last.id)
                        .map_err(|e| ApiError::internal(anyhow::anyhow!("seal cursor: {e}")))?,
                )
            }
            _ => None,
        };
        // List pages applied consent in their query and counted what it
        // skipped; look-ups by e-mail or phone are thinned here.
        let (kept, left_out) = match skipped {
            Some(left_out) => {
                gate.consent_applied_in_query();
                (rows, left_out)
            }
            None => {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                let ok = gate.consenting(&ids).await?;
                let kept: Vec<_> = rows.into_iter().filter(|r| ok.contains(&r.id)).collect();
                let left_out = (ids.len() - kept.len()) as u64;
                (kept, left_out)
            }
        };
        gate.touch(kept.iter().map(|r| r.id));
        let customers = crate::pipeline::sanitize::customer_rows(&mut gate, &kept).await?;
        Ok(Json(CustomerPage {
            customers,
            left_out_without_consent: gate.may_see_consent_counts().then_some(left_out),
            next_cursor,
        }))
    }
    .await;
    gate.finish(outcome).await
}

async fn blind_lookup(
    state: &AppState,
    gate: &mut Gate<'_>,
    field: BlindField,
    value: &str,
    limit: i64,
) -> Result<Vec<customers::StoredCustomer>, ApiError> {
    // Searching by a direct identifier reveals whether it exists: only roles
    // that may see that field in clear may search by it.
    if !gate.also_allowed(&format!("customer.{}", field.name()), "read_clear") {
        return Err(ApiError::forbidden(
            "your role may not search by this field",
        ));
    }
    let Some(index) = state.vault.blind_index(field, value) else {
        return Ok(Vec::new());
    };
    Ok(customers::find_by_blind_index(&state.db, field, &index, limit).await?)
}

/// Read one customer by the shop's customer id.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "The shop's customer id (external id)", pattern = "^[A-Za-z0-9._-]{1,64}$"),
           ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401), (status = 403), (status = 404),
               (status = 410, description = "the customer was erased"), (status = 503)))]
async fn get_customer(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::CustomerRead);
    let outcome = read_one(&state, &mut gate, &id).await.map(Json);
    gate.finish(outcome).await
}

/// Stages authorize → store → consent → sanitize for one customer; the
/// caller finishes the gate. Shared with the benchmark baseline route so
/// both do exactly the same work but for the audit event.
pub(crate) async fn read_one(
    state: &AppState,
    gate: &mut Gate<'_>,
    id: &str,
) -> Result<Map<String, Value>, ApiError> {
    gate.authorize()?;
    let Some(row) = customers::get_by_external_id(&state.db, id).await? else {
        // An erased customer's old id answers 410 (data subject rights).
        if crate::dsr::erasure::is_erased_subject(state, id).await? {
            return Err(ApiError::Gone);
        }
        return Err(ApiError::NotFound);
    };
    gate.touch([row.id]);
    if row.erased_at.is_some() {
        return Err(ApiError::Gone);
    }
    gate.require_consent(row.id).await?;
    let mut page =
        crate::pipeline::sanitize::customer_rows(gate, std::slice::from_ref(&row)).await?;
    page.pop().ok_or(ApiError::NotFound)
}

/// A customer to create. Personal fields are encrypted before storage.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// The shop's customer id: 1-64 characters of `A-Za-z0-9._-`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub external_id: String,
    #[schema(
        pattern = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){1,3}$",
        max_length = 254
    )]
    pub email: Option<String>,
    /// International format, e.g. `+442079460958` (spaces, `-`, `(`, `)`
    /// and `.` between the 6-15 digits are accepted too).
    #[schema(pattern = r"^\+?[0-9]{6,15}$")]
    pub phone: Option<String>,
    #[schema(
        pattern = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$",
        max_length = 200
    )]
    pub name: Option<String>,
    #[schema(format = Date)]
    pub birth_date: Option<String>,
    #[schema(
        pattern = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$",
        max_length = 16
    )]
    pub postcode: Option<String>,
    #[schema(
        pattern = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$",
        max_length = 100
    )]
    pub city: Option<String>,
    #[schema(
        pattern = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$",
        max_length = 64
    )]
    pub country: Option<String>,
    /// RFC 3339, not in the future; defaults to now.
    #[schema(format = DateTime, pattern = r"^(19[0-9]{2}|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")]
    pub signup_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub external_id: String,
}

/// Create a customer.
#[utoipa::path(post, path = "/v1/customers", tag = "customers",
    request_body = CreateCustomer,
    params(("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 201, body = Created), (status = 401), (status = 403),
               (status = 409, description = "the external id exists, or the person was erased (suppression list)"),
               (status = 413), (status = 422), (status = 503)))]
async fn create_customer(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<CreateCustomer>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::CustomerWrite);
    let outcome = async {
        gate.authorize()?;
        let c = body.into_inner()?;
        validate::external_id(&c.external_id)?;
        let now = state.clock.now_micros();
        let signup_at = match &c.signup_at {
            Some(s) => validate::timestamp("signup_at", s, now)?,
            None => now,
        };
        let new = NewCustomer {
            profile: Profile {
                email: c.email.as_deref().map(validate::email).transpose()?,
                phone: c.phone.as_deref().map(validate::phone).transpose()?,
                name: c
                    .name
                    .as_deref()
                    .map(|v| validate::text("name", v, 200))
                    .transpose()?,
                birth_date: c.birth_date.as_deref().map(validate::date).transpose()?,
                postcode: c
                    .postcode
                    .as_deref()
                    .map(|v| validate::text("postcode", v, 16))
                    .transpose()?,
            },
            city: c
                .city
                .as_deref()
                .map(|v| validate::text("city", v, 100))
                .transpose()?,
            country: c
                .country
                .as_deref()
                .map(|v| validate::text("country", v, 64))
                .transpose()?,
            external_id: c.external_id,
            signup_at,
        };
        // The same person erased earlier does not come back silently: the
        // suppression list refuses (and counts) their id, e-mail and phone.
        if crate::dsr::suppression::is_suppressed(
            &state.db,
            &state.vault,
            Some(&new.external_id),
            new.profile.email.as_deref(),
            new.profile.phone.as_deref(),
            now,
        )
        .await
        .map_err(ApiError::Internal)?
        {
            return Err(ApiError::Conflict(
                "this person was erased: their id, e-mail or phone is on the suppression list"
                    .into(),
            ));
        }
        let mut tx = state.db.pool.begin().await?;
        let created =
            customers::insert_new(&mut tx, &state.vault, std::slice::from_ref(&new), now).await?;
        if created == 0 {
            return Err(ApiError::Conflict(
                "a customer with this external_id already exists".into(),
            ));
        }
        let id: i64 = sqlx::query_scalar("SELECT id FROM customers WHERE external_id = $1")
            .bind(&new.external_id)
            .fetch_one(&mut *tx)
            .await?;
        gate.touch([id]);
        gate.set_status(StatusCode::CREATED);
        gate.commit_audited(tx).await?;
        Ok((
            StatusCode::CREATED,
            Json(Created {
                external_id: new.external_id.clone(),
            }),
        ))
    }
    .await;
    gate.finish(outcome).await
}
