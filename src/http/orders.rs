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
use crate::import::event_schema::EventSchema;
use crate::pipeline::gate::Gate;
use crate::state::AppState;

/// Largest event batch one request may carry.
pub const MAX_EVENTS: usize = 1000;
use crate::import::event_schema::{STORE_CHANNELS as CHANNELS, STORE_KINDS as KINDS};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(customer_orders))
        .routes(routes!(ingest_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    /// Most orders to return, newest first (default 50; above `max_page_size`,
    /// 1000 by default, is 400).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerOrders {
    pub customer_id: String,
    pub orders: Vec<OrderView>,
}

/// A customer's orders and returns, newest first.
#[utoipa::path(get, path = "/v1/customers/{id}/orders", tag = "customers",
    params(("id" = String, Path, description = "The shop's customer id", pattern = "^[A-Za-z0-9._-]{1,64}$"), OrdersQuery,
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
        let limit = validate::page_limit(q.limit, 50, state.config.max_page_size)?;
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
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<EventInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// The sender's unique id for the event (unique within the batch too);
    /// resending it is a no-op.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub event_id: String,
    /// The shop's customer id, absent for anonymous browsing.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub customer_id: Option<String>,
    /// `view`, `search`, `add_to_cart`, `purchase` or `click`.
    #[schema(value_type = EventKind)]
    pub kind: String,
    /// The product's SKU, if the event concerns one.
    #[schema(
        pattern = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$",
        max_length = 64
    )]
    pub product_sku: Option<String>,
    /// `web`, `app`, `email`, `store` or `other`.
    #[schema(value_type = EventChannel)]
    pub channel: String,
    /// RFC 3339, not in the future.
    #[schema(format = DateTime, pattern = r"^(19[0-9]{2}|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")]
    pub occurred_at: String,
    /// Properties of the event, as the event schema declares them for its
    /// kind (`policies/events.toml`): unplanned properties, missing
    /// required ones and type mismatches refuse the batch, each reported.
    #[schema(value_type = Option<Object>)]
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The kinds of browsing event (the values of `KINDS`).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // documents `kind` in the OpenAPI document
pub enum EventKind {
    View,
    Search,
    AddToCart,
    Purchase,
    Click,
}

/// The channels an event arrives through (the values of `CHANNELS`).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // documents `channel` in the OpenAPI document
pub enum EventChannel {
    Web,
    App,
    Email,
    Store,
    Other,
}

#[derive(Serialize, ToSchema)]
pub struct Ingested {
    /// Events stored by this request.
    pub accepted: u64,
    /// Events already stored earlier (same `event_id`).
    pub duplicates: u64,
}

/// Ingest a batch of browsing events, validated against the declared event
/// schema (a tracking plan): every violation of every event is listed in
/// the 422 message, and the batch is refused whole.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body = EventBatch,
    params(("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 201, body = Ingested),
               (status = 404, description = "An event names a customer or product that does not exist (code `not_found`)"),
               (status = 422)))]
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
        let mut violations = Vec::new();
        for (i, e) in batch.events.iter().enumerate() {
            let v = state.event_schema.check(
                &format!("events[{i}]"),
                &e.kind,
                e.product_sku.is_some(),
                e.properties.as_ref(),
            );
            if !v.is_empty() {
                violations.push((i, v));
            }
        }
        if !violations.is_empty() {
            return Err(ApiError::unprocessable(EventSchema::message(
                n,
                &violations,
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
                    ApiError::MissingReference(
                        format!("events[{i}].customer_id: no such customer").into(),
                    )
                })?),
                None => None,
            };
            let product_id = match &e.product_sku {
                Some(p) => Some(*product_ids.get(p).ok_or_else(|| {
                    ApiError::MissingReference(
                        format!("events[{i}].product_sku: no such product").into(),
                    )
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
                properties: e
                    .properties
                    .as_ref()
                    .filter(|p| !p.is_empty())
                    .map(|p| serde_json::Value::Object(p.clone()).to_string()),
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
