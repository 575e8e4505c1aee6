//! `/v1/dsr`: data subject requests. Thin handlers over `crate::dsr`: each
//! opens a gate for (`dsr`, act), which authorizes and records the access
//! decision; what changes for the data subject is recorded step by step by
//! `dsr::trail`. The shipped policy lets the `dpo` act and the
//! `compliance_officer` read, for the `compliance_audit` purpose.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{Action, SubjectRights};
use crate::clock::rfc3339;
use crate::crypto::BlindField;
use crate::db::customers;
use crate::dsr::actions;
use crate::dsr::certificate::Certificate;
use crate::dsr::documents::{self, Format};
use crate::dsr::erasure::{self, Outcome};
use crate::dsr::hold::{self, Hold};
use crate::dsr::rectify::{self, Corrections};
use crate::dsr::requests::{self, ListFilter, NewRequest, RequestRow};
use crate::dsr::suppression::{self, Totals};
use crate::dsr::trail::{self, Actor};
use crate::dsr::{export, random_id, Channel, DsrError, Kind, Requester, Status, DAY_MICROS};
use crate::error::ApiError;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::validate;
use crate::pipeline::gate::{Caller, Gate};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_request, list_requests))
        .routes(routes!(get_request))
        .routes(routes!(extend_request))
        .routes(routes!(refuse_request))
        .routes(routes!(export_request))
        .routes(routes!(download_document))
        .routes(routes!(rectify_request))
        .routes(routes!(erase_request))
        .routes(routes!(get_certificate))
        .routes(routes!(set_legal_hold))
        .routes(routes!(lift_legal_hold))
        .routes(routes!(suppression_totals))
}

fn actor(caller: &Caller) -> Actor<'_> {
    Actor::Caller {
        principal: &caller.principal,
        request_id: &caller.request_id,
        purpose: &caller.purpose,
    }
}

/// One step of a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    pub step: String,
    /// RFC 3339.
    pub at: String,
    /// Who performed it (`sub` claim, or `system:…`).
    pub actor: String,
    /// Non-personal detail: field names, counts, the destroyed key's id.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
    /// The audit event recording the step (`instance#seq`).
    pub audit_event: Option<String>,
}

/// A generated document, downloadable until it expires.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    pub id: String,
    /// `json` (access) or `zip` (portability).
    pub format: String,
    pub bytes: i64,
    pub sha256: String,
    pub created_at: String,
    pub expires_at: String,
    /// Where to download it.
    pub href: String,
}

/// A data subject request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    /// The shop's customer id; after an erasure, the customer's tombstone.
    pub customer: String,
    pub customer_erased: bool,
    #[schema(value_type = String)]
    pub kind: Kind,
    #[schema(value_type = String)]
    pub status: Status,
    /// Why it was refused or is on hold.
    pub status_reason: Option<String>,
    #[schema(value_type = String)]
    pub requested_by: Requester,
    #[schema(value_type = String)]
    pub channel: Channel,
    pub received_at: String,
    pub due_at: String,
    pub overdue: bool,
    pub extended_at: Option<String>,
    pub extension_reason: Option<String>,
    pub opened_by: String,
    pub completed_at: Option<String>,
    /// Steps so far (on single-request responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
    /// The current document of an access or portability request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentView>,
    /// The customer's active legal hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<Hold>,
    /// What the caller may do next with this request: the steps its state
    /// admits that the caller's policy also allows, among `extend`,
    /// `refuse`, `export`, `rectify`, `erase`, `hold` and `lift_hold`
    /// (the last two for the request's customer). Empty for a role that
    /// may only read, and for a closed request. The routes still decide
    /// every call.
    pub actions: Vec<String>,
}

fn view(r: &RequestRow, now: i64) -> RequestView {
    RequestView {
        id: r.uid.clone(),
        customer: r.customer_key.clone(),
        customer_erased: r.customer_erased,
        kind: r.kind,
        status: r.status,
        status_reason: r.status_reason.clone(),
        requested_by: r.requested_by,
        channel: r.channel,
        received_at: rfc3339(r.received_at),
        due_at: rfc3339(r.due_at),
        overdue: r.is_overdue(now),
        extended_at: r.extended_at.map(rfc3339),
        extension_reason: r.extension_reason.clone(),
        opened_by: r.opened_by.clone(),
        completed_at: r.completed_at.map(rfc3339),
        steps: None,
        document: None,
        legal_hold: None,
        actions: Vec::new(),
    }
}

/// The next steps for `r` that the caller's policy allows.
fn allowed_steps(gate: &Gate<'_>, r: &RequestRow, cx: actions::Context) -> Vec<String> {
    actions::possible(r, cx)
        .into_iter()
        .filter(|step| {
            step.action()
                .operation()
                .is_some_and(|(object, act)| gate.also_allowed(object, act))
        })
        .map(|step| step.as_str().to_owned())
        .collect()
}

/// The full view of one request: steps, document, hold.
async fn full_view(
    state: &AppState,
    gate: &Gate<'_>,
    r: &RequestRow,
) -> Result<RequestView, ApiError> {
    let now = state.clock.now_micros();
    let mut v = view(r, now);
    let steps = requests::steps(&state.db, r.id).await?;
    v.steps = Some(
        steps
            .into_iter()
            .map(|s| StepView {
                step: s.step,
                at: rfc3339(s.at),
                actor: s.actor,
                detail: s
                    .detail
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok()),
                audit_event: match (s.audit_instance, s.audit_seq) {
                    (Some(i), Some(n)) => Some(format!("{i}#{n}")),
                    _ => None,
                },
            })
            .collect(),
    );
    v.document = documents::current(&state.db, r.id, now)
        .await?
        .map(|d| document_view(r, &d));
    if !r.customer_erased {
        v.legal_hold = hold::active(&state.db, r.customer_id)
            .await
            .map_err(ApiError::Internal)?;
    }
    let cx = actions::Context {
        hold_active: v.legal_hold.is_some(),
        erasure_begun: !actions::erasures_begun(&state.db, &[r.id])
            .await?
            .is_empty(),
    };
    v.actions = allowed_steps(gate, r, cx);
    Ok(v)
}

fn document_view(r: &RequestRow, d: &documents::Document) -> DocumentView {
    DocumentView {
        id: d.uid.clone(),
        format: d.format.as_str().to_owned(),
        bytes: d.bytes,
        sha256: hex::encode(&d.sha256),
        created_at: rfc3339(d.created_at),
        expires_at: rfc3339(d.expires_at),
        href: format!("/v1/dsr/{}/document", r.uid),
    }
}

/// Loads a request by its public id (`dsr_` and 32 hex digits).
async fn load(state: &AppState, gate: &mut Gate<'_>, id: &str) -> Result<RequestRow, ApiError> {
    let well_formed = id.len() == 36
        && id.starts_with("dsr_")
        && id.bytes().skip(4).all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err(ApiError::NotFound);
    }
    let r = requests::get(&state.db, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    gate.touch([r.customer_id]);
    gate.subject_rights(SubjectRights {
        request_id: r.uid.clone(),
        kind: r.kind.as_str().to_owned(),
        step: "request".to_owned(),
    });
    Ok(r)
}

fn require_kind(r: &RequestRow, kinds: &[Kind]) -> Result<(), ApiError> {
    if !kinds.contains(&r.kind) {
        return Err(ApiError::Conflict(
            "this operation does not apply to a request of this kind".into(),
        ));
    }
    if !r.status.is_open() {
        return Err(ApiError::Conflict("the request is closed".into()));
    }
    Ok(())
}

/// Opens a request for a data subject.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// The shop's customer id. Exactly one of `customer_id` and `email`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub customer_id: Option<String>,
    /// The customer's e-mail (found through the blind index).
    #[schema(
        pattern = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){1,3}$",
        max_length = 254
    )]
    pub email: Option<String>,
    /// `access`, `portability`, `rectification` or `erasure`.
    #[schema(pattern = "^(access|portability|rectification|erasure)$")]
    pub kind: String,
    /// `data_subject`, `authorized_agent` or `parent_or_guardian`.
    #[schema(pattern = "^(data_subject|authorized_agent|parent_or_guardian)$")]
    pub requested_by: String,
    /// `email`, `web_form`, `post`, `phone`, `in_person` or `other`.
    #[schema(pattern = "^(email|web_form|post|phone|in_person|other)$")]
    pub channel: String,
    /// RFC 3339, when the request reached the shop (defaults to now; not in
    /// the future). The due date counts from it.
    #[schema(format = DateTime, pattern = r"^(19[0-9]{2}|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")]
    pub received_at: Option<String>,
}

impl std::fmt::Debug for OpenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenRequest")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Which customer a request is for.
async fn resolve_customer(state: &AppState, body: &OpenRequest) -> Result<i64, ApiError> {
    match (&body.customer_id, &body.email) {
        (Some(external), None) => {
            validate::identifier("customer_id", external)?;
            let row: Option<(i64, Option<i64>)> =
                sqlx::query_as("SELECT id, erased_at FROM customers WHERE external_id = $1")
                    .bind(external)
                    .fetch_optional(&state.db.pool)
                    .await?;
            match row {
                Some((_, Some(_))) => Err(ApiError::Gone),
                Some((id, None)) => Ok(id),
                None if erasure::is_erased_subject(state, external).await? => Err(ApiError::Gone),
                None => Err(ApiError::MissingReference(
                    "customer_id: no such customer".into(),
                )),
            }
        }
        (None, Some(email)) => {
            let email = validate::email(email)?;
            let Some(index) = state.vault.blind_index(BlindField::Email, &email) else {
                return Err(ApiError::unprocessable("email: not an e-mail address"));
            };
            let found =
                customers::find_by_blind_index(&state.db, BlindField::Email, &index, 2).await?;
            match found.as_slice() {
                [one] => Ok(one.id),
                [] => Err(ApiError::MissingReference(
                    "email: no customer has this e-mail".into(),
                )),
                _ => Err(ApiError::Conflict(
                    "several customers have this e-mail; open the request by customer_id".into(),
                )),
            }
        }
        _ => Err(ApiError::unprocessable(
            "exactly one of customer_id and email is required",
        )),
    }
}

/// Open a data subject request.
#[utoipa::path(post, path = "/v1/dsr", tag = "dsr",
    request_body = OpenRequest,
    params(("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 201, body = RequestView),
        (status = 400), (status = 401), (status = 403),
        (status = 409, description = "an open request of this kind exists, or the e-mail is ambiguous"),
        (status = 410, description = "the customer was erased"),
        (status = 413), (status = 415),
        (status = 404, description = "no customer has this `customer_id` or e-mail"),
        (status = 422, description = "an invalid field, or not exactly one of `customer_id` and `email` (the value is never echoed)"),
        (status = 503)))]
async fn open_request(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<OpenRequest>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrOpen);
    let outcome = async {
        gate.authorize()?;
        let body = body.into_inner()?;
        let kind = Kind::parse(&body.kind).ok_or_else(|| {
            ApiError::unprocessable("kind: one of access, portability, rectification, erasure")
        })?;
        let requested_by = Requester::parse(&body.requested_by).ok_or_else(|| {
            ApiError::unprocessable(
                "requested_by: one of data_subject, authorized_agent, parent_or_guardian",
            )
        })?;
        let channel = Channel::parse(&body.channel).ok_or_else(|| {
            ApiError::unprocessable(
                "channel: one of email, web_form, post, phone, in_person, other",
            )
        })?;
        let now = state.clock.now_micros();
        let received_at = match &body.received_at {
            Some(s) => validate::timestamp("received_at", s, now)?,
            None => now,
        };
        let customer_id = resolve_customer(&state, &body).await?;
        gate.touch([customer_id]);
        let new = NewRequest {
            customer_id,
            kind,
            requested_by,
            channel,
            received_at,
        };
        let due_at = received_at
            .saturating_add(i64::from(state.config.dsr.deadline_days).saturating_mul(DAY_MICROS));
        let uid = random_id("dsr_")?;
        let mut tx = state.db.pool.begin().await?;
        let id = requests::insert(&mut tx, &new, &uid, due_at, &caller.principal.sub, now).await?;
        let row = requests::get_in(&mut tx, id)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("inserted request not found")))?;
        gate.subject_rights(SubjectRights {
            request_id: row.uid.clone(),
            kind: kind.as_str().to_owned(),
            step: "request".to_owned(),
        });
        let detail = serde_json::json!({
            "kind": kind.as_str(),
            "requested_by": requested_by.as_str(),
            "channel": channel.as_str(),
        });
        trail::step(
            &state,
            &mut tx,
            &actor(&caller),
            &row,
            "opened",
            Some(&detail),
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("custodian_dsr_requests_total", "kind" => kind.as_str()).increment(1);
        gate.set_status(StatusCode::CREATED);
        Ok((
            StatusCode::CREATED,
            Json(full_view(&state, &gate, &row).await?),
        ))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// received, in_progress, on_hold, completed or refused.
    #[param(pattern = "^(received|in_progress|on_hold|completed|refused)$")]
    pub status: Option<String>,
    /// access, portability, rectification or erasure.
    #[param(pattern = "^(access|portability|rectification|erasure)$")]
    pub kind: Option<String>,
    /// Only open requests past their due date.
    pub overdue: Option<bool>,
    /// Only open requests due within this many days (0-3650).
    #[param(minimum = 0, maximum = 3650)]
    pub due_within_days: Option<u32>,
    /// Cursor from the previous page's `next_cursor`.
    #[param(pattern = "^(0|[1-9][0-9]{0,17})$")]
    pub after: Option<String>,
    /// Page size (default 100; above `max_page_size`, 1000 by default, is 400).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestPage {
    pub requests: Vec<RequestView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// List data subject requests, oldest first.
#[utoipa::path(get, path = "/v1/dsr", tag = "dsr",
    params(ListQuery, ("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 200, body = RequestPage), (status = 400), (status = 401), (status = 403),
               (status = 503)))]
async fn list_requests(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<ListQuery>,
) -> Result<Json<RequestPage>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        let invalid = |m: &'static str| ApiError::bad_request("invalid_query", m);
        let now = state.clock.now_micros();
        let filter = ListFilter {
            status: q
                .status
                .as_deref()
                .map(|s| Status::parse(s).ok_or_else(|| invalid("status: not a request status")))
                .transpose()?,
            kind: q
                .kind
                .as_deref()
                .map(|s| Kind::parse(s).ok_or_else(|| invalid("kind: not a request kind")))
                .transpose()?,
            overdue: q.overdue.unwrap_or(false),
            due_before: q
                .due_within_days
                .map(|d| {
                    (d <= 3650)
                        .then(|| now.saturating_add(i64::from(d) * DAY_MICROS))
                        .ok_or_else(|| invalid("due_within_days: at most 3650"))
                })
                .transpose()?,
            now,
            after_id: match &q.after {
                Some(c) => crate::http::validate::non_negative_int("after", c)?,
                None => 0,
            },
            limit: crate::http::validate::page_limit(q.limit, 100, state.config.max_page_size)?,
        };
        let rows = requests::list(&state.db, &filter).await?;
        gate.touch(rows.iter().map(|r| r.customer_id));
        let next_cursor = (rows.len() as i64 == filter.limit)
            .then(|| rows.last().map(|r| r.id.to_string()))
            .flatten();
        gate.returned([], rows.len() as u64);
        // Holds and begun erasures of the whole page in two queries.
        let live: Vec<i64> = rows
            .iter()
            .filter(|r| !r.customer_erased)
            .map(|r| r.customer_id)
            .collect();
        let holds = actions::active_holds(&state.db, &live).await?;
        let erasures: Vec<i64> = rows
            .iter()
            .filter(|r| r.kind == Kind::Erasure)
            .map(|r| r.id)
            .collect();
        let begun = actions::erasures_begun(&state.db, &erasures).await?;
        let requests = rows
            .iter()
            .map(|r| {
                let mut v = view(r, now);
                v.legal_hold = holds.get(&r.customer_id).cloned();
                let cx = actions::Context {
                    hold_active: v.legal_hold.is_some(),
                    erasure_begun: begun.contains(&r.id),
                };
                v.actions = allowed_steps(&gate, r, cx);
                v
            })
            .collect();
        Ok(Json(RequestPage {
            requests,
            next_cursor,
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// Show one request with its steps.
#[utoipa::path(get, path = "/v1/dsr/{id}", tag = "dsr",
    params(("id" = String, Path, description = "Request id (dsr_…)", pattern = "^dsr_[0-9A-Fa-f]{32}$"),
           ("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 200, body = RequestView), (status = 401), (status = 403), (status = 404),
               (status = 503)))]
async fn get_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrRead);
    let outcome = async {
        gate.authorize()?;
        let r = load(&state, &mut gate, &id).await?;
        gate.returned([], 1);
        Ok(Json(full_view(&state, &gate, &r).await?))
    }
    .await;
    gate.finish(outcome).await
}

/// A reason (1-500 characters). Write the legal ground, not personal data.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[schema(
        pattern = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$",
        max_length = 500
    )]
    pub reason: String,
}

/// Extend the due date once (GDPR Art. 12(3)), with a reason.
#[utoipa::path(post, path = "/v1/dsr/{id}/extend", tag = "dsr",
    request_body = ReasonBody,
    params(("id" = String, Path, description = "Request id (dsr_…)", pattern = "^dsr_[0-9A-Fa-f]{32}$"),
           ("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 200, body = RequestView), (status = 401), (status = 403), (status = 404),
               (status = 409, description = "already extended, or closed"), (status = 422),
               (status = 503)))]
async fn extend_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiJson<ReasonBody>,
) -> Result<Json<RequestView>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrManage);
    let outcome = async {
        gate.authorize()?;
        let r = load(&state, &mut gate, &id).await?;
        let reason = validate::text("reason", &body.into_inner()?.reason, 500)?;
        let now = state.clock.now_micros();
        let add = i64::from(state.config.dsr.extension_days) * DAY_MICROS;
        let mut tx = state.db.pool.begin().await?;
        if !requests::extend(&mut tx, r.id, add, &reason, now).await? {
            return Err(ApiError::Conflict(
                "the request was already extended once, or is closed".into(),
            ));
        }
        let detail = serde_json::json!({ "days": state.config.dsr.extension_days });
        trail::step(
            &state,
            &mut tx,
            &actor(&caller),
            &r,
            "extended",
            Some(&detail),
        )
        .await?;
        tx.commit().await?;
        let r = requests::get_by_id(&state.db, r.id)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok(Json(full_view(&state, &gate, &r).await?))
    }
    .await;
    gate.finish(outcome).await
}

/// Refuse a request (Art. 12(4)), with a reason; it is closed.
#[utoipa::path(post, path = "/v1/dsr/{id}/refuse", tag = "dsr",
    request_body = ReasonBody,
    params(("id" = String, Path, description = "Request id (dsr_…)", pattern = "^dsr_[0-9A-Fa-f]{32}$"),
           ("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 200, body = RequestView), (status = 401), (status = 403), (status = 404),
               (status = 409, description = "closed, or an erasure already begun"), (status = 422),
               (status = 503)))]
async fn refuse_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiJson<ReasonBody>,
) -> Result<Json<RequestView>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrManage);
    let outcome = async {
        gate.authorize()?;
        let r = load(&state, &mut gate, &id).await?;
        let reason = validate::text("reason", &body.into_inner()?.reason, 500)?;
        let begun: Option<String> =
            sqlx::query_scalar("SELECT state FROM dsr_erasures WHERE request_id = $1")
                .bind(r.id)
                .fetch_optional(&state.db.pool)
                .await?;
        if begun.is_some() {
            return Err(ApiError::Conflict(
                "the erasure has begun and cannot be refused".into(),
            ));
        }
        let now = state.clock.now_micros();
        let mut tx = state.db.pool.begin().await?;
        if !requests::set_status(&mut tx, r.id, Status::Refused, Some(&reason), now).await? {
            return Err(ApiError::Conflict("the request is closed".into()));
        }
        trail::step(&state, &mut tx, &actor(&caller), &r, "refused", None).await?;
        tx.commit().await?;
        let r = requests::get_by_id(&state.db, r.id)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok(Json(full_view(&state, &gate, &r).await?))
    }
    .await;
    gate.finish(outcome).await
}

/// Fulfil an access (JSON document) or portability (zip of CSV files)
/// request: the document is generated, stored encrypted under the
/// customer's key, and downloadable until `dsr.document_ttl_hours`.
#[utoipa::path(post, path = "/v1/dsr/{id}/export", tag = "dsr",
    params(("id" = String, Path, description = "Request id (dsr_…)", pattern = "^dsr_[0-9A-Fa-f]{32}$"),
           ("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 201, body = RequestView, description = "the document is ready"),
               (status = 202, body = RequestView, description = "still being generated (a large customer); the request shows it when ready"),
               (status = 401), (status = 403), (status = 404),
               (status = 409, description = "not an access or portability request, or closed"),
               (status = 410), (status = 500, description = "a stored record failed its integrity check"),
               (status = 503)))]
async fn export_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrExport);
    let outcome = async {
        gate.authorize()?;
        let r = load(&state, &mut gate, &id).await?;
        require_kind(&r, &[Kind::Access, Kind::Portability])?;
        let format = if r.kind == Kind::Portability {
            Format::Zip
        } else {
            Format::Json
        };
        let mut tx = state.db.pool.begin().await?;
        let now = state.clock.now_micros();
        if !requests::set_status(&mut tx, r.id, Status::InProgress, None, now).await? {
            return Err(ApiError::Conflict("the request is closed".into()));
        }
        tx.commit().await?;
        let done = bounded(
            &state,
            fulfil_export(state.clone(), caller.clone(), r.clone(), format),
        )
        .await?;
        let status = if done.is_some() {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        gate.set_status(status);
        let r = requests::get_by_id(&state.db, r.id)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok((status, Json(full_view(&state, &gate, &r).await?)))
    }
    .await;
    gate.finish(outcome).await
}

/// Generates the document and completes the request (in its own task).
async fn fulfil_export(
    state: AppState,
    caller: Caller,
    r: RequestRow,
    format: Format,
) -> Result<(), DsrError> {
    let doc = export::generate(&state, &r, format).await?;
    let now = state.clock.now_micros();
    let mut tx = state.db.pool.begin().await?;
    if !requests::set_status(&mut tx, r.id, Status::Completed, None, now).await? {
        return Err(DsrError::Conflict("the request is closed"));
    }
    let detail = serde_json::json!({
        "document": doc.uid,
        "format": format.as_str(),
        "bytes": doc.bytes,
        "sha256": hex::encode(&doc.sha256),
    });
    trail::step(
        &state,
        &mut tx,
        &actor(&caller),
        &r,
        "document_ready",
        Some(&detail),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Runs `work` in a task of its own, so that a long export or erasure is
/// not cut off by the request time limit (which would cancel it mid-way),
/// and waits for it up to half that limit. `Ok(None)`: still running; it
/// completes on its own (the request view shows `in_progress` until then)
/// and logs a failure, after which the DPO can run the operation again.
async fn bounded<T: Send + 'static>(
    state: &AppState,
    work: impl std::future::Future<Output = Result<T, DsrError>> + Send + 'static,
) -> Result<Option<T>, ApiError> {
    let mut handle = tokio::spawn(async move {
        let result = work.await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "data subject request operation failed");
        }
        result
    });
    let wait = std::time::Duration::from_millis(state.config.server.request_timeout_ms / 2);
    match tokio::time::timeout(wait, &mut handle).await {
        Ok(Ok(result)) => Ok(Some(result?)),
        Ok(Err(e)) => Err(ApiError::internal(anyhow::anyhow!(
            "data subject request task failed: {e}"
        ))),
        Err(_) => Ok(None),
    }
}

/// Download the request's document (audited). Streamed; `x-document-sha256`
/// carries the digest to check it against.
#[utoipa::path(get, path = "/v1/dsr/{id}/document", tag = "dsr",
    params(("id" = String, Path, description = "Request id (dsr_…)", pattern = "^dsr_[0-9A-Fa-f]{32}$"),
           ("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 200, description = "application/json (access) or application/zip (portability)"),
               (status = 401), (status = 403),
               (status = 404, description = "no document, or it expired and was deleted"),
               (status = 410), (status = 503)))]
async fn download_document(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrDownload);
    let outcome = async {
        gate.authorize()?;
        let r = load(&state, &mut gate, &id).await?;
        let now = state.clock.now_micros();
        documents::delete_expired(&state.db, now)
            .await
            .map_err(ApiError::Internal)?;
        let doc = documents::current(&state.db, r.id, now)
            .await?
            .ok_or(ApiError::NotFound)?;
        let cipher = documents::customer_cipher(&state, r.customer_id).await?;
        let mut tx = state.db.pool.begin().await?;
        let detail = serde_json::json!({ "document": doc.uid });
        trail::step(
            &state,
            &mut tx,
            &actor(&caller),
            &r,
            "downloaded",
            Some(&detail),
        )
        .await?;
        tx.commit().await?;
        gate.returned([], 1);
        let filename = format!(
            "attachment; filename=\"{}.{}\"",
            doc.uid,
            doc.format.as_str()
        );
        let mut response = Body::from_stream(documents::stream(state.clone(), doc.clone(), cipher))
            .into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(doc.format.content_type()),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&filename) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&hex::encode(&doc.sha256)) {
            headers.insert("x-document-sha256", v);
        }
        Ok(response)
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rectified {
    pub request: RequestView,
    /// The fields whose value changed (never the values).
    pub changed: Vec<String>,
}

/// Rectify profile fields (Art. 16); the request is completed.
#[utoipa::path(post, path = "/v1/dsr/{id}/rectify", tag = "dsr",
    request_body = Corrections,
    params(("id" = String, Path, description = "Request id (dsr_…)", pattern = "^dsr_[0-9A-Fa-f]{32}$"),
           ("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 200, body = Rectified), (status = 401), (status = 403), (status = 404),
               (status = 409, description = "not a rectification request, or closed"),
               (status = 410), (status = 422), (status = 503)))]
async fn rectify_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiJson<Corrections>,
) -> Result<Json<Rectified>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrRectify);
    let outcome = async {
        gate.authorize()?;
        let r = load(&state, &mut gate, &id).await?;
        require_kind(&r, &[Kind::Rectification])?;
        let c = body.into_inner()?;
        if c.is_empty() {
            return Err(ApiError::unprocessable(
                "at least one field to correct is required",
            ));
        }
        let text = |f: &'static str, v: &Option<String>, max: usize| {
            v.as_deref().map(|v| validate::text(f, v, max)).transpose()
        };
        let checked = Corrections {
            email: c.email.as_deref().map(validate::email).transpose()?,
            phone: c.phone.as_deref().map(validate::phone).transpose()?,
            name: text("name", &c.name, 200)?,
            birth_date: c.birth_date.as_deref().map(validate::date).transpose()?,
            postcode: text("postcode", &c.postcode, 16)?,
            city: text("city", &c.city, 100)?,
            country: text("country", &c.country, 64)?,
        };
        let changed = rectify::rectify(&state, &actor(&caller), &r, &checked).await?;
        let r = requests::get_by_id(&state.db, r.id)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok(Json(Rectified {
            request: full_view(&state, &gate, &r).await?,
            changed: changed.into_iter().map(str::to_owned).collect(),
        }))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Erased {
    pub request: RequestView,
    /// The signed certificate (absent while on hold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Certificate>,
}

/// Erase the customer (crypto-shredding) and issue the certificate. Under
/// a legal hold nothing is erased: the request goes on hold (202).
#[utoipa::path(post, path = "/v1/dsr/{id}/erase", tag = "dsr",
    params(("id" = String, Path, description = "Request id (dsr_…)", pattern = "^dsr_[0-9A-Fa-f]{32}$"),
           ("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 200, body = Erased), (status = 202, body = Erased, description = "on hold, or still running (a large customer; it completes on its own)"),
               (status = 401), (status = 403), (status = 404),
               (status = 409, description = "not an erasure request, or closed"),
               (status = 410), (status = 503)))]
async fn erase_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Erased>), ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrErase);
    let outcome = async {
        gate.authorize()?;
        let r = load(&state, &mut gate, &id).await?;
        require_kind(&r, &[Kind::Erasure])?;
        let work = {
            let (state, caller, r) = (state.clone(), caller.clone(), r.clone());
            async move { erasure::erase(&state, &actor(&caller), &r, None).await }
        };
        let outcome = bounded(&state, work).await?;
        let r = requests::get_by_id(&state.db, r.id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let request = full_view(&state, &gate, &r).await?;
        match outcome {
            Some(Outcome::Completed(cert)) => Ok((
                StatusCode::OK,
                Json(Erased {
                    request,
                    certificate: Some(*cert),
                }),
            )),
            // On hold, or still running (a large customer): 202.
            Some(Outcome::OnHold(_) | Outcome::Stopped(_)) | None => {
                gate.set_status(StatusCode::ACCEPTED);
                Ok((
                    StatusCode::ACCEPTED,
                    Json(Erased {
                        request,
                        certificate: None,
                    }),
                ))
            }
        }
    }
    .await;
    gate.finish(outcome).await
}

/// The erasure certificate of a completed erasure request.
#[utoipa::path(get, path = "/v1/dsr/{id}/certificate", tag = "dsr",
    params(("id" = String, Path, description = "Request id (dsr_…)", pattern = "^dsr_[0-9A-Fa-f]{32}$"),
           ("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 200, body = Certificate), (status = 401), (status = 403),
               (status = 404, description = "no such request, or not erased yet"), (status = 503)))]
async fn get_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Certificate>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrRead);
    let outcome = async {
        gate.authorize()?;
        let r = load(&state, &mut gate, &id).await?;
        let cert = erasure::stored_certificate(&state, r.id)
            .await?
            .ok_or(ApiError::NotFound)?;
        gate.returned([], 1);
        Ok(Json(cert))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// The shop's customer id.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub customer_id: String,
    /// Why (1-500 characters): the legal ground, not personal data.
    #[schema(
        pattern = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$",
        max_length = 500
    )]
    pub reason: String,
}

impl std::fmt::Debug for HoldBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HoldBody(<redacted>)")
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HoldView {
    pub customer_id: String,
    /// Whether a hold is active now.
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
}

async fn live_customer(state: &AppState, external: &str) -> Result<i64, ApiError> {
    validate::identifier("customer_id", external)?;
    let row: Option<(i64, Option<i64>)> =
        sqlx::query_as("SELECT id, erased_at FROM customers WHERE external_id = $1")
            .bind(external)
            .fetch_optional(&state.db.pool)
            .await?;
    match row {
        Some((id, None)) => Ok(id),
        Some((_, Some(_))) => Err(ApiError::Gone),
        None if erasure::is_erased_subject(state, external).await? => Err(ApiError::Gone),
        None => Err(ApiError::MissingReference(
            "customer_id: no such customer".into(),
        )),
    }
}

/// Put a customer under a legal hold: they cannot be erased until it is lifted.
#[utoipa::path(post, path = "/v1/dsr/legal-holds", tag = "dsr",
    request_body = HoldBody,
    params(("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 201, body = HoldView), (status = 401), (status = 403),
               (status = 404, description = "no such customer"),
               (status = 409, description = "a hold is already active"), (status = 410),
               (status = 422), (status = 503)))]
async fn set_legal_hold(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<HoldBody>,
) -> Result<(StatusCode, Json<HoldView>), ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrHold);
    let outcome = async {
        gate.authorize()?;
        let body = body.into_inner()?;
        let reason = validate::text("reason", &body.reason, 500)?;
        let id = live_customer(&state, &body.customer_id).await?;
        gate.touch([id]);
        let now = state.clock.now_micros();
        let mut tx = state.db.pool.begin().await?;
        if !hold::set(&mut tx, id, &reason, &caller.principal.sub, now)
            .await
            .map_err(ApiError::Internal)?
        {
            return Err(ApiError::Conflict(
                "a legal hold is already active for this customer".into(),
            ));
        }
        gate.set_status(StatusCode::CREATED);
        gate.commit_audited(tx).await?;
        Ok((
            StatusCode::CREATED,
            Json(HoldView {
                customer_id: body.customer_id.clone(),
                active: true,
                hold: hold::active(&state.db, id)
                    .await
                    .map_err(ApiError::Internal)?,
            }),
        ))
    }
    .await;
    gate.finish(outcome).await
}

/// Lift a customer's legal hold; erasure requests on hold return to `received`.
#[utoipa::path(post, path = "/v1/dsr/legal-holds/{customer_id}/lift", tag = "dsr",
    request_body = ReasonBody,
    params(("customer_id" = String, Path, description = "The shop's customer id", pattern = "^[A-Za-z0-9._-]{1,64}$"),
           ("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 200, body = HoldView), (status = 401), (status = 403),
               (status = 404, description = "no such customer, or no active hold"), (status = 410), (status = 422),
               (status = 503)))]
async fn lift_legal_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(customer): Path<String>,
    body: ApiJson<ReasonBody>,
) -> Result<Json<HoldView>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrHold);
    let outcome = async {
        gate.authorize()?;
        let reason = validate::text("reason", &body.into_inner()?.reason, 500)?;
        let id = live_customer(&state, &customer).await?;
        gate.touch([id]);
        let now = state.clock.now_micros();
        let held: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM dsr_requests WHERE customer_id = $1 AND status = 'on_hold'",
        )
        .bind(id)
        .fetch_all(&state.db.pool)
        .await?;
        let mut tx = state.db.pool.begin().await?;
        if !hold::lift(&mut tx, id, &reason, &caller.principal.sub, now)
            .await
            .map_err(ApiError::Internal)?
        {
            return Err(ApiError::NotFound);
        }
        for rid in held {
            if let Some(r) = requests::get_in(&mut tx, rid).await? {
                requests::set_status(&mut tx, rid, Status::Received, None, now).await?;
                trail::step(&state, &mut tx, &actor(&caller), &r, "hold_lifted", None).await?;
            }
        }
        gate.commit_audited(tx).await?;
        Ok(Json(HoldView {
            customer_id: customer.clone(),
            active: false,
            hold: None,
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// Totals of the suppression list: entries (blind indexes of erased
/// customers' e-mail and phone) and refusals counted.
#[utoipa::path(get, path = "/v1/dsr/suppression", tag = "dsr",
    params(("X-Purpose" = String, Header, description = "compliance_audit")),
    security(("bearer" = [])),
    responses((status = 200, body = Totals), (status = 401), (status = 403), (status = 503)))]
async fn suppression_totals(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Totals>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::DsrRead);
    let outcome = async {
        gate.authorize()?;
        Ok(Json(
            suppression::totals(&state.db)
                .await
                .map_err(ApiError::Internal)?,
        ))
    }
    .await;
    gate.finish(outcome).await
}
