//! `/v1/customers/{id}/orders` and `/v1/events`: a customer's purchase
//! history (governed like the customer: policy for `order read`, consent for
//! consent-based purposes) and batch ingestion of browsing events.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Action;
use crate::db::customers;
use crate::db::events::{self, NewEvent};
use crate::db::orders::{self, OrderView};
use crate::error::ApiError;
use crate::http::extract::Caller;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::validate;
use crate::pipeline::gate::Gate;
use crate::state::AppState;

/// Largest event batch one request may carry.
pub const MAX_EVENTS: usize = 1000;
const KINDS: &[&str] = &["view", "search", "add_to_cart", "purchase", "click"];
const CHANNELS: &[&str] = &["web", "app", "email", "store", "other"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(customer_orders))
        .routes(routes!(ingest_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    /// Most orders to return, newest first (default 50, at most `max_page_size`).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerOrders {
    pub customer_id: String,
    pub orders: Vec<OrderView>,
}

/// A customer's orders and returns, newest first.
#[utoipa::path(get, path = "/v1/customers/{id}/orders", tag = "customers",
    params(("id" = String, Path, description = "The shop's customer id"), OrdersQuery,
           ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = CustomerOrders), (status = 401), (status = 403), (status = 404), (status = 503)))]
async fn customer_orders(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: ApiQuery<OrdersQuery>,
) -> Result<Json<CustomerOrders>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::OrderRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        let customer = customers::id_of(&state.db, &id)
            .await?
            .ok_or(ApiError::NotFound)?;
        gate.touch([customer]);
        gate.require_consent(customer).await?;
        let limit = i64::from(q.limit.unwrap_or(50).clamp(1, state.config.max_page_size));
        let orders = orders::for_customer(&state.db, customer, limit).await?;
        // `order read` grants the purchase history as a whole (there are no
        // per-field order rules yet); the audit event says what left.
        gate.returned(
            [
                "order_id",
                "kind",
                "return_of",
                "placed_at",
                "country",
                "total_cents",
                "lines",
            ]
            .map(|f| (f.to_owned(), crate::domain::Treatment::Clear)),
            orders.len() as u64,
        );
        Ok(Json(CustomerOrders {
            customer_id: id,
            orders,
        }))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// 1 to 1000 events; the whole batch is accepted or refused.
    pub events: Vec<EventInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// The sender's unique id for the event; resending it is a no-op.
    pub event_id: String,
    /// The shop's customer id, absent for anonymous browsing.
    pub customer_id: Option<String>,
    /// `view`, `search`, `add_to_cart`, `purchase` or `click`.
    pub kind: String,
    /// The product's SKU, if the event concerns one.
    pub product_sku: Option<String>,
    /// `web`, `app`, `email`, `store` or `other`.
    pub channel: String,
    /// RFC 3339, not in the future.
    pub occurred_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct Ingested {
    /// Events stored by this request.
    pub accepted: u64,
    /// Events already stored earlier (same `event_id`).
    pub duplicates: u64,
}

/// Ingest a batch of browsing events.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body = EventBatch,
    params(("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 201, body = Ingested), (status = 401), (status = 403), (status = 413),
               (status = 422), (status = 503)))]
async fn ingest_events(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<EventBatch>,
) -> Result<(StatusCode, Json<Ingested>), ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::EventWrite);
    let outcome = async {
        gate.authorize()?;
        let batch = body.into_inner()?;
        let now = state.clock.now_micros();
        let n = batch.events.len();
        if n == 0 || n > MAX_EVENTS {
            return Err(ApiError::unprocessable(format!(
                "events: between 1 and {MAX_EVENTS} entries"
            )));
        }
        let mut uids = HashSet::with_capacity(n);
        for (i, e) in batch.events.iter().enumerate() {
            validate::identifier(&format!("events[{i}].event_id"), &e.event_id)?;
            if !uids.insert(e.event_id.as_str()) {
                return Err(ApiError::unprocessable(format!(
                    "events[{i}].event_id: appears twice"
                )));
            }
            if let Some(c) = &e.customer_id {
                validate::identifier(&format!("events[{i}].customer_id"), c)?;
            }
            if let Some(p) = &e.product_sku {
                validate::text(&format!("events[{i}].product_sku"), p, 64)?;
            }
        }
        let mut tx = state.db.pool.begin().await?;
        let customer_keys: Vec<&str> = batch
            .events
            .iter()
            .filter_map(|e| e.customer_id.as_deref())
            .collect();
        let skus: Vec<&str> = batch
            .events
            .iter()
            .filter_map(|e| e.product_sku.as_deref())
            .collect();
        let customer_ids = crate::import::store::customer_ids(&mut tx, &customer_keys)
            .await
            .map_err(ApiError::Internal)?;
        let product_ids = crate::db::products::ids_by_sku(&mut tx, &skus).await?;
        let mut rows = Vec::with_capacity(n);
        for (i, e) in batch.events.iter().enumerate() {
            let kind = KINDS.iter().find(|k| **k == e.kind).ok_or_else(|| {
                ApiError::unprocessable(format!("events[{i}].kind: one of {}", KINDS.join(", ")))
            })?;
            let channel = CHANNELS.iter().find(|c| **c == e.channel).ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "events[{i}].channel: one of {}",
                    CHANNELS.join(", ")
                ))
            })?;
            let customer_id = match &e.customer_id {
                Some(c) => Some(*customer_ids.get(c).ok_or_else(|| {
                    ApiError::unprocessable(format!("events[{i}].customer_id: unknown customer"))
                })?),
                None => None,
            };
            let product_id = match &e.product_sku {
                Some(p) => Some(*product_ids.get(p).ok_or_else(|| {
                    ApiError::unprocessable(format!("events[{i}].product_sku: unknown product"))
                })?),
                None => None,
            };
            rows.push(NewEvent {
                event_uid: e.event_id.clone(),
                customer_id,
                kind,
                product_id,
                channel,
                occurred_at: validate::timestamp(
                    &format!("events[{i}].occurred_at"),
                    &e.occurred_at,
                    now,
                )?,
            });
        }
        let accepted = events::insert_many(&mut tx, &rows, now).await?;
        gate.touch(customer_ids.values().copied());
        gate.set_status(StatusCode::CREATED);
        gate.returned([], 0);
        gate.commit_audited(tx).await?;
        Ok((
            StatusCode::CREATED,
            Json(Ingested {
                accepted,
                duplicates: n as u64 - accepted,
            }),
        ))
    }
    .await;
    gate.finish(outcome).await
}
