//! `/v1/audit`: the compliance side of the audit trail over HTTP: filtered,
//! paginated reads, streaming exports (NDJSON for offline verification, CSV
//! for spreadsheets), verification of the store, and the public key
//! auditors check checkpoints with.
//!
//! Every route goes through the gate (object `audit`; actions `read`,
//! `export`, `verify`), so only compliance roles under the
//! `compliance_audit` purpose get through, and every use of the trail,
//! allowed or denied, is itself one audit event. Query parameters are
//! parsed after authorization, so an unauthorized caller learns nothing
//! from validation errors and bad requests are audited too.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{
    self, export::MAX_LIMIT, Action, AuditFilter, Decision, ExportFormat, StoredEvent,
};
use crate::clock::parse_rfc3339;
use crate::db::customers;
use crate::error::ApiError;
use crate::http::extract::Caller;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::http::validate;
use crate::pipeline::gate::Gate;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(export_events))
        .routes(routes!(verify_trail))
        .routes(routes!(audit_head))
        .routes(routes!(verify_since))
        .routes(routes!(public_key))
}

/// Query parameters of `GET /v1/audit` and `GET /v1/audit/export`. The
/// filters are shared and combined with AND; `cursor` and `limit` belong to
/// the list, `format` to the export (a parameter of the other route is a 400).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Events at or after this time (RFC 3339, inclusive).
    pub from: Option<String>,
    /// Events before this time (RFC 3339, exclusive).
    pub to: Option<String>,
    /// Only this gateway instance's chain.
    pub instance: Option<String>,
    /// The actor (`sub` claim, or `anonymous` for failed authentications).
    pub actor: Option<String>,
    /// The shop's customer id (external id, as in `/v1/customers/{id}`):
    /// events that touched this customer. An unknown id matches nothing.
    pub customer: Option<String>,
    /// The internal customer id as stored in events' `customers` list
    /// (still works after the customer row is erased). With `customer` too,
    /// both must name the same customer.
    pub customer_id: Option<String>,
    /// The declared purpose.
    pub purpose: Option<String>,
    /// The action code, e.g. `customer.read`, `audit.read`, `auth.failed`.
    pub action: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// The HTTP status of the request (100-599).
    pub status: Option<String>,
    /// List only: the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// List only: page size, 1-1000 (default 100).
    pub limit: Option<String>,
    /// Export only: `ndjson` (default; verifiable offline) or `csv` (events only).
    pub format: Option<String>,
}

/// The filters both audit routes take, as the OpenAPI document states them
/// (with the constraints the server checks). Documentation only: the
/// handlers parse [`AuditQuery`], which refuses a parameter of the other
/// route with a 400.
macro_rules! audit_filter_params {
    ($name:ident, $doc:literal, { $($extra:tt)* }) => {
        #[doc = $doc]
        #[derive(Debug, Deserialize, IntoParams)]
        #[into_params(parameter_in = Query)]
        #[allow(dead_code)] // read by utoipa's derive only
        pub struct $name {
            /// Events at or after this time (RFC 3339, inclusive).
            #[param(format = DateTime)]
            pub from: Option<String>,
            /// Events before this time (RFC 3339, exclusive).
            #[param(format = DateTime)]
            pub to: Option<String>,
            /// Only this gateway instance's chain.
            #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")]
            pub instance: Option<String>,
            /// The actor (`sub` claim, or `anonymous` for failed authentications).
            #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")]
            pub actor: Option<String>,
            /// The shop's customer id (external id, as in `/v1/customers/{id}`):
            /// events that touched this customer. An unknown id matches nothing.
            #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
            pub customer: Option<String>,
            /// The internal customer id as stored in events' `customers` list
            /// (still works after the customer row is erased). With `customer` too,
    /// both must name the same customer.
            #[param(minimum = 0)]
            pub customer_id: Option<i64>,
            /// The declared purpose.
            #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")]
            pub purpose: Option<String>,
            /// The action code, e.g. `customer.read`, `audit.read`, `auth.failed`.
            #[param(pattern = r"^[a-z._]{1,256}$")]
            pub action: Option<String>,
            /// `allow` or `deny`.
            #[param(inline)]
            pub decision: Option<DecisionParam>,
            /// The HTTP status of the request.
            #[param(minimum = 100, maximum = 599)]
            pub status: Option<u16>,
            $($extra)*
        }
    };
}

/// `allow` or `deny`, as the audit filters take it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // documentation of the parameter only
pub enum DecisionParam {
    Allow,
    Deny,
}

/// `ndjson` or `csv`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // documentation of the parameter only
pub enum FormatParam {
    Ndjson,
    Csv,
}

audit_filter_params!(AuditListParams, "Query parameters of `GET /v1/audit`.", {
    /// The previous page's `next_cursor` (opaque).
    #[param(min_length = 1, max_length = 200)]
    pub cursor: Option<String>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
});

audit_filter_params!(AuditExportParams, "Query parameters of `GET /v1/audit/export`.", {
    /// `ndjson` (default; verifiable offline) or `csv` (events only).
    #[param(inline)]
    pub format: Option<FormatParam>,
});

fn invalid(message: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// Parses the filters into an [`AuditFilter`], resolving an external
/// customer id to the internal id the trail stores (and noting it on the
/// gate: reading a customer's trail touches that customer).
async fn to_filter(
    state: &AppState,
    gate: &mut Gate<'_>,
    q: &AuditQuery,
) -> Result<AuditFilter, ApiError> {
    let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| {
                parse_rfc3339(s).ok_or_else(|| {
                    invalid(format!(
                        "{name}: must be an RFC 3339 timestamp, e.g. 2026-01-31T12:00:00Z"
                    ))
                })
            })
            .transpose()
    };
    let from = time("from", &q.from)?;
    let to = time("to", &q.to)?;
    // `from` at or after `to` is an empty interval: it matches nothing.
    let text = |name: &'static str, v: &Option<String>| -> Result<Option<String>, ApiError> {
        match v.as_deref() {
            None => Ok(None),
            Some(s) if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) => Err(
                invalid(format!("{name}: 1-256 characters, no control characters")),
            ),
            Some(s) => Ok(Some(s.to_owned())),
        }
    };
    let action = match text("action", &q.action)? {
        None => None,
        Some(a)
            if a.chars()
                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_') =>
        {
            Some(Action::parse(&a))
        }
        Some(_) => {
            return Err(invalid(
                "action: an action code such as customer.read or audit.export",
            ))
        }
    };
    let decision = match q.decision.as_deref() {
        None => None,
        Some(d) => {
            Some(Decision::parse(d).ok_or_else(|| invalid("decision: must be allow or deny"))?)
        }
    };
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<u16>()
                .ok()
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| invalid("status: must be an HTTP status, 100-599"))?,
        ),
    };
    let customer_id = match q.customer_id.as_deref() {
        None => None,
        Some(s) => Some(crate::http::validate::non_negative_int("customer_id", s)?),
    };
    let customer = match (&q.customer, customer_id) {
        (Some(external), given) => {
            validate::identifier("customer", external)
                .map_err(|_| invalid("customer: 1-64 characters of A-Za-z0-9._-"))?;
            // An unknown (or erased) external id matches no event: -1 is
            // never a customer id.
            let mut id = customers::id_of(&state.db, external).await?.unwrap_or(-1);
            // Both given: one customer, so they must name the same one.
            if given.is_some_and(|g| g != id) {
                id = -1;
            }
            if id >= 0 {
                gate.touch([id]);
            }
            Some(id)
        }
        (None, Some(id)) => {
            gate.touch([id]);
            Some(id)
        }
        (None, None) => None,
    };
    Ok(AuditFilter {
        from,
        to,
        instance: text("instance", &q.instance)?,
        actor: text("actor", &q.actor)?,
        customer,
        purpose: text("purpose", &q.purpose)?,
        action,
        decision,
        status,
    })
}

/// One page of the trail, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// Events with their place in the chain (`instance`, `seq`, `prev_hash`,
    /// `hash`, hex), newest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<StoredEvent>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Read the audit trail (compliance roles only; this read is itself audited).
///
/// The event of this read is written after the page is read, so it appears
/// in the next read, not in this one.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(AuditListParams, ("X-Purpose" = String, Header, description = "Purpose id (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, body = EventPage), (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<AuditQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::AuditRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        if q.format.is_some() {
            return Err(invalid("format: only for /v1/audit/export"));
        }
        let filter = to_filter(&state, &mut gate, &q).await?;
        let limit = match q.limit.as_deref() {
            None => 100,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| invalid(format!("limit: must be between 1 and {MAX_LIMIT}")))?,
        };
        let page = audit::query(&state.db, &filter, q.cursor.as_deref(), limit).await?;
        gate.returned(std::iter::empty(), page.events.len() as u64);
        Ok(Json(EventPage {
            events: page.events,
            next_cursor: page.next_cursor,
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// Export the trail as a stream (compliance roles only).
///
/// NDJSON (`application/x-ndjson`) holds a header line, then per instance
/// its signed checkpoints and its events in seq order with `seq`,
/// `prev_hash` and `hash`: everything `custodian audit verify --file
/// export.ndjson --public-key key.pem` needs (the key from
/// `GET /v1/audit/public-key`). CSV (`text/csv`) holds the events only.
///
/// The audit event of an export is committed *before* the first byte is
/// sent (nothing leaves unaudited), so it records that an export started,
/// and it is included in the export itself. The body is streamed page by
/// page in constant memory; if the store fails midway the connection is
/// aborted, so a partial download never ends cleanly.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit",
    params(AuditExportParams, ("X-Purpose" = String, Header, description = "Purpose id (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, description = "The export: NDJSON by default, CSV with `format=csv`",
                content((String = "application/x-ndjson"), (String = "text/csv")),
                headers(("content-disposition" = String, description = "attachment; filename=custodian-audit-<time>.<ext>"))),
               (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn export_events(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::AuditExport);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        if q.cursor.is_some() || q.limit.is_some() {
            return Err(invalid(
                "cursor, limit: only for /v1/audit (an export is never paged)",
            ));
        }
        let format = match q.format.as_deref().unwrap_or("ndjson") {
            "ndjson" => ExportFormat::Ndjson,
            "csv" => ExportFormat::Csv,
            _ => return Err(invalid("format: must be ndjson or csv")),
        };
        let filter = to_filter(&state, &mut gate, &q).await?;
        Ok((format, filter))
    }
    .await;
    // The export's event is durable before any data leaves.
    let (format, filter) = gate.finish(outcome).await?;
    let ext = match format {
        ExportFormat::Ndjson => "ndjson",
        ExportFormat::Csv => "csv",
    };
    let stamp = crate::clock::rfc3339(state.clock.now_micros())
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(15)
        .collect::<String>();
    let disposition = format!("attachment; filename=\"custodian-audit-{stamp}.{ext}\"");
    let stream = audit::export_stream(
        state.db.clone(),
        filter,
        format,
        state.audit.signer(),
        state.clock.now_micros(),
    )
    .inspect_err(|e| {
        tracing::error!(
            error = format!("{e:#}"),
            "audit export failed midway; aborting the response"
        );
    });
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The outcome of verifying every chain in the store.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResult {
    /// True when no problem was found.
    pub intact: bool,
    /// Chains (instances) verified.
    pub chains: u64,
    /// Events verified intact before the first problem (all of them when intact).
    pub events: u64,
    /// Checkpoint signatures verified.
    pub checkpoints: u64,
    /// The first problem, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<ProblemBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemBody {
    pub instance: String,
    pub seq: i64,
    /// `modified`, `deleted`, `inserted`, `reordered`, `truncated`,
    /// `checkpoint_mismatch` or `bad_signature`.
    pub kind: &'static str,
    /// Ids and hashes only, never event content.
    pub detail: String,
}

/// Verify the stored trail (compliance roles only).
///
/// Recomputes every chain and checks every checkpoint signature against
/// this instance's public key; checkpoints signed by another key (a rotated
/// key, another instance with its own key) are reported as `bad_signature`:
/// use `custodian audit verify --public-key …` with every key for those.
/// A tampered trail is still a 200 with `intact: false`.
#[utoipa::path(post, path = "/v1/audit/verify", tag = "audit",
    params(("X-Purpose" = String, Header, description = "Purpose id (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, body = VerifyResult), (status = 401), (status = 403), (status = 503)))]
async fn verify_trail(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<VerifyResult>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::AuditVerify);
    let outcome = async {
        gate.authorize()?;
        let keys = [*state.audit.public_key()];
        let report = audit::verify_store(&state.db, &keys, &|_| {})
            .await
            .map_err(ApiError::Internal)?;
        gate.returned(std::iter::empty(), report.events);
        if let Some(p) = &report.problem {
            tracing::warn!(instance = %p.instance, seq = p.seq, kind = p.kind.as_str(), "audit trail verification failed");
        }
        Ok(Json(VerifyResult {
            intact: report.is_intact(),
            chains: report.chains,
            events: report.events,
            checkpoints: report.checkpoints,
            problem: report.problem.map(|p| ProblemBody {
                instance: p.instance,
                seq: p.seq,
                kind: p.kind.as_str(),
                detail: p.detail,
            }),
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// The checkpoint verification key of this instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKeyBody {
    /// Hex of the first 8 bytes of SHA-256 of the raw key; checkpoints name it.
    pub key_id: String,
    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo, RFC 8410), for
    /// `custodian audit verify --public-key`.
    pub pem: String,
    /// The raw 32-byte key as 64 hex digits.
    pub hex: String,
    /// The instance whose chain this key signs.
    pub instance: String,
}

/// The public key auditors verify checkpoints with (compliance roles only).
///
/// Fetching it over the API is convenient, not trust: an auditor should
/// compare the key id with one obtained out of band (`custodian audit
/// public-key` on the host), since whoever controls this server controls
/// this answer.
#[utoipa::path(get, path = "/v1/audit/public-key", tag = "audit",
    params(("X-Purpose" = String, Header, description = "Purpose id (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, body = PublicKeyBody), (status = 401), (status = 403), (status = 503)))]
async fn public_key(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PublicKeyBody>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::AuditRead);
    let outcome = async {
        gate.authorize()?;
        let key = state.audit.public_key();
        Ok(Json(PublicKeyBody {
            key_id: key.key_id(),
            pem: key.to_pem(),
            hex: key.to_hex(),
            instance: state.audit.instance().to_owned(),
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// The latest signed checkpoint of every chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct Heads {
    /// One per chain; keep them where the operator cannot change them and
    /// send them back to `POST /v1/audit/verify/since` later.
    #[schema(value_type = Vec<Object>)]
    pub heads: Vec<audit::export::CheckpointLine>,
}

/// The signed head of every chain, for an auditor to keep.
#[utoipa::path(get, path = "/v1/audit/head", tag = "audit",
    params(("X-Purpose" = String, Header, description = "Purpose id (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, body = Heads), (status = 401), (status = 403), (status = 503)))]
async fn audit_head(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Heads>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::AuditVerify);
    let outcome = async {
        gate.authorize()?;
        let heads = audit::heads(&state.db).await.map_err(ApiError::Internal)?;
        gate.returned(std::iter::empty(), heads.len() as u64);
        Ok(Json(Heads {
            heads: heads
                .iter()
                .map(audit::export::CheckpointLine::from_checkpoint)
                .collect(),
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// Heads saved earlier.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Since {
    pub heads: Vec<audit::export::CheckpointLine>,
}

/// Verify the trail and that it still contains and extends heads saved
/// earlier (`GET /v1/audit/head`): a rollback or a rewrite is `intact:
/// false`, naming the gap.
#[utoipa::path(post, path = "/v1/audit/verify/since", tag = "audit",
    request_body = Since,
    params(("X-Purpose" = String, Header, description = "Purpose id (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, body = VerifyResult), (status = 401), (status = 403), (status = 422), (status = 503)))]
async fn verify_since(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<Since>,
) -> Result<Json<VerifyResult>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::AuditVerify);
    let outcome = async {
        gate.authorize()?;
        let saved: Vec<_> = body
            .into_inner()?
            .heads
            .into_iter()
            .map(audit::export::CheckpointLine::into_checkpoint)
            .collect();
        let keys = [*state.audit.public_key()];
        // The auditor's question first: does the trail extend what they saw?
        let since = audit::check_since(&state.db, &keys, &saved)
            .await
            .map_err(ApiError::Internal)?;
        let mut report = audit::verify_store(&state.db, &keys, &|_| {})
            .await
            .map_err(ApiError::Internal)?;
        if since.is_some() {
            report.problem = since;
        }
        gate.returned(std::iter::empty(), report.events);
        Ok(Json(VerifyResult {
            intact: report.is_intact(),
            chains: report.chains,
            events: report.events,
            checkpoints: report.checkpoints,
            problem: report.problem.map(|p| ProblemBody {
                instance: p.instance,
                seq: p.seq,
                kind: p.kind.as_str(),
                detail: p.detail,
            }),
        }))
    }
    .await;
    gate.finish(outcome).await
}
