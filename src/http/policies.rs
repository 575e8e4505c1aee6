//! `/v1/admin/policies`: read the access policy in force, and replace it.
//!
//! A replacement is validated whole (every line parses, every object, action
//! and purpose is known) before anything is stored; a bad file is refused
//! with 422 naming the first bad line and the policy in force stays. An
//! accepted one is stored with a new revision, applied on this instance at
//! once and on every other instance through NOTIFY or the revision poll.
//! Both routes go through the gate like any data route, so reading or
//! changing the policy is authorized by the policy itself and audited
//! (a write as `policy.change`, the same action the CLI records).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Action;
use crate::db::policy_store;
use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::extract::Caller;
use crate::pipeline::authorize::safety::{self, PolicyDiff};
use crate::pipeline::authorize::sync::{self, PolicyChangeError};
use crate::pipeline::gate::Gate;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, replace_policy))
        .routes(routes!(preview_policy))
        .routes(routes!(rollback_policy))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
}

/// The policy this instance enforces.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyDocument {
    /// Hex SHA-256 of the canonical (sorted) rules this instance enforces.
    pub version: String,
    /// The latest stored revision.
    pub revision: i64,
    /// Whether this instance already enforces the latest stored revision
    /// (false only briefly, after a change made through another instance).
    pub in_sync: bool,
    /// The rules, one `policy.csv` line each.
    pub rules: Vec<String>,
    /// The same rules as one CSV text, ready to edit and send back.
    pub csv: String,
}

/// A replacement policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    /// The whole policy in `policy.csv` format (`p, ROLE, OBJECT, ACTION,
    /// PURPOSE` and `g, ROLE, PARENT` lines; `#` comments and blank lines
    /// allowed). It replaces every rule in force, and must keep a rule that
    /// lets some role manage the policy (`p, ROLE, policy, write, PURPOSE`).
    pub csv: String,
}

/// The stored replacement.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyStored {
    /// Hex SHA-256 of the canonical rules now in force.
    pub version: String,
    /// The new stored revision.
    pub revision: i64,
}

/// One stored revision of the policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersion {
    pub revision: i64,
    /// Hex SHA-256 of `csv`: the `policy_version` audit events carry.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub version: String,
    /// Who stored it (`bootstrap` for the seed from `policy.csv`).
    pub actor: String,
    /// When it was stored (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The canonical rules of this revision (sorted `policy.csv` lines);
    /// absent in listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csv: Option<String>,
}

impl PolicyVersion {
    fn from_stored(r: policy_store::Revision, with_rules: bool) -> Self {
        Self {
            revision: r.revision,
            version: r.version,
            actor: r.actor,
            created_at: crate::clock::rfc3339(r.created_at),
            csv: with_rules.then_some(r.rules_csv),
        }
    }
}

/// Stored revisions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersions {
    pub versions: Vec<PolicyVersion>,
}

/// Every stored revision of the policy, newest first (at most 1,000).
#[utoipa::path(get, path = "/v1/admin/policies/versions", tag = "admin",
    params(("X-Purpose" = String, Header, description = "Purpose id (`compliance_audit` in the shipped policy)")),
    security(("bearer" = [])),
    responses((status = 200, body = PolicyVersions), (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PolicyVersions>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::PolicyRead);
    let outcome = async {
        gate.authorize()?;
        let versions: Vec<PolicyVersion> = policy_store::revisions(&state.db, None, 1_000)
            .await?
            .into_iter()
            .map(|r| PolicyVersion::from_stored(r, false))
            .collect();
        gate.returned(Vec::new(), versions.len() as u64);
        Ok(Json(PolicyVersions { versions }))
    }
    .await;
    gate.finish(outcome).await
}

/// The exact rules of one past or present policy version: by the hex
/// SHA-256 an audit event's `policy_version` names, or by revision number.
#[utoipa::path(get, path = "/v1/admin/policies/{version}", tag = "admin",
    params(
        ("version" = String, Path, description = "64 hex digits (a `policy_version`) or a revision number",
            pattern = "^([0-9a-f]{64}|[1-9][0-9]{0,17})$"),
        ("X-Purpose" = String, Header, description = "Purpose id (`compliance_audit` in the shipped policy)")),
    security(("bearer" = [])),
    responses((status = 200, body = PolicyVersion), (status = 400), (status = 401), (status = 403),
               (status = 404), (status = 503)))]
async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    Path(version): Path<String>,
) -> Result<Json<PolicyVersion>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::PolicyRead);
    let outcome = async {
        gate.authorize()?;
        let key = parse_version_key(&version)?;
        let found = policy_store::revision_by(&state.db, key)
            .await?
            .ok_or(ApiError::NotFound)?;
        gate.returned(Vec::new(), 1);
        Ok(Json(PolicyVersion::from_stored(found, true)))
    }
    .await;
    gate.finish(outcome).await
}

fn parse_version_key(raw: &str) -> Result<policy_store::RevisionKey<'_>, ApiError> {
    let is_hash = raw.len() == 64 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if is_hash {
        return Ok(policy_store::RevisionKey::Version(raw));
    }
    let is_number = !raw.is_empty()
        && raw.len() <= 18
        && !raw.starts_with('0')
        && raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<i64>() {
        Ok(n) if is_number => Ok(policy_store::RevisionKey::Number(n)),
        _ => Err(ApiError::bad_request(
            "invalid_version",
            "expected 64 lowercase hex digits or a revision number",
        )),
    }
}

/// Read the access policy in force.
#[utoipa::path(get, path = "/v1/admin/policies", tag = "admin",
    params(("X-Purpose" = String, Header, description = "Purpose id (`compliance_audit` in the shipped policy)")),
    security(("bearer" = [])),
    responses((status = 200, body = PolicyDocument), (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PolicyDocument>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::PolicyRead);
    let outcome = async {
        gate.authorize()?;
        let policy = state.authorizer.current();
        let latest = policy_store::latest(&state.db).await?;
        let (revision, in_sync) = match latest {
            Some((revision, sha256)) => (revision, sha256 == policy.version()),
            None => (0, false),
        };
        let rules: Vec<String> = policy.rules().iter().map(|r| r.to_csv_line()).collect();
        let mut csv = rules.join("\n");
        csv.push('\n');
        gate.returned(Vec::new(), rules.len() as u64);
        Ok(Json(PolicyDocument {
            version: policy.version().to_owned(),
            revision,
            in_sync,
            rules,
            csv,
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// Replace the whole access policy (the data protection officer only, in the
/// shipped policy). Body: `{"csv": "<policy.csv text>"}`.
#[utoipa::path(post, path = "/v1/admin/policies", tag = "admin",
    request_body = NewPolicy,
    params(("X-Purpose" = String, Header, description = "Purpose id (`compliance_audit` in the shipped policy)")),
    security(("bearer" = [])),
    responses((status = 200, body = PolicyStored), (status = 400), (status = 401), (status = 403),
               (status = 413), (status = 422, description = "refused whole; the message names the first bad line"),
               (status = 503)))]
async fn replace_policy(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<NewPolicy>,
) -> Result<Json<PolicyStored>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::PolicyChange);
    let outcome = async {
        gate.authorize()?;
        let body = body.into_inner()?;
        store(&state, &mut gate, &caller, body.csv).await.map(Json)
    }
    .await;
    gate.finish(outcome).await
}

/// Stores `csv` as the policy: validated, written in a transaction that
/// commits only once the change's audit event is durable, then applied here.
async fn store(
    state: &AppState,
    gate: &mut Gate<'_>,
    caller: &Caller,
    csv: String,
) -> Result<PolicyStored, ApiError> {
    let (tx, staged) = sync::stage(
        &state.db,
        &state.authorizer,
        csv,
        &state.purposes,
        state.config.policy.allow_wildcard_purpose,
        &caller.principal.sub,
        state.clock.now_micros(),
    )
    .await
    .map_err(refusal)?;
    gate.commit_audited(tx).await?;
    let (version, revision) = staged.apply(&state.authorizer);
    Ok(PolicyStored { version, revision })
}

fn refusal(e: PolicyChangeError) -> ApiError {
    match e {
        PolicyChangeError::Invalid(reason) => {
            // A rule type is not length-checked: cap what is echoed.
            let reason: String = reason.chars().take(300).collect();
            ApiError::unprocessable(format!("policy refused: {reason}"))
        }
        PolicyChangeError::Store(e) => ApiError::Internal(e),
    }
}

/// What a replacement would do, without doing it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyPreview {
    /// Hex SHA-256 the policy would have.
    pub version: String,
    /// The version in force now.
    pub current_version: String,
    /// Who would gain and who would lose which permission (role
    /// inheritance expanded).
    pub changes: PolicyDiff,
}

/// Preview a replacement policy: the same checks as a replacement (422 for
/// a policy that would be refused), and who gains and loses what. Nothing
/// is stored; the preview is audited like a read of the policy.
#[utoipa::path(post, path = "/v1/admin/policies/preview", tag = "admin",
    request_body = NewPolicy,
    params(("X-Purpose" = String, Header, description = "Purpose id (`compliance_audit` in the shipped policy)")),
    security(("bearer" = [])),
    responses((status = 200, body = PolicyPreview), (status = 400), (status = 401), (status = 403),
               (status = 413), (status = 422, description = "the policy would be refused; the message says why"),
               (status = 503)))]
async fn preview_policy(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<NewPolicy>,
) -> Result<Json<PolicyPreview>, ApiError> {
    // Audited as a read of the policy (nothing changes), but only who may
    // change the policy may try changes out.
    let mut gate = Gate::new(&state, &caller, Action::PolicyRead);
    let outcome = async {
        gate.authorize()?;
        if !gate.also_allowed("policy", "write") {
            return Err(ApiError::forbidden(
                "the policy does not allow this for your role and purpose",
            ));
        }
        let body = body.into_inner()?;
        let current = state.authorizer.current();
        let compiled = sync::validate_safe(
            &state.authorizer,
            body.csv,
            &state.purposes,
            state.config.policy.allow_wildcard_purpose,
        )
        .await
        .map_err(refusal)?;
        let changes = safety::diff(current.rules(), compiled.rules());
        gate.returned(
            Vec::new(),
            (changes.gained.len() + changes.lost.len()) as u64,
        );
        Ok(Json(PolicyPreview {
            version: compiled.version().to_owned(),
            current_version: current.version().to_owned(),
            changes,
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// Which earlier policy to put back.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// 64 hex digits (a `policy_version`, as audit events name it) or a
    /// revision number, as listed by `GET /v1/admin/policies/versions`.
    #[schema(pattern = "^([0-9a-f]{64}|[1-9][0-9]{0,17})$")]
    pub version: String,
}

/// Roll back to an earlier policy: its rules are stored again as a new
/// revision (history is never rewritten), after the same checks as any
/// replacement, so a rollback cannot lock everyone out either. Audited as
/// `policy.change`.
#[utoipa::path(post, path = "/v1/admin/policies/rollback", tag = "admin",
    request_body = Rollback,
    params(("X-Purpose" = String, Header, description = "Purpose id (`compliance_audit` in the shipped policy)")),
    security(("bearer" = [])),
    responses((status = 200, body = PolicyStored), (status = 400), (status = 401), (status = 403),
               (status = 404, description = "no such version"),
               (status = 422, description = "the earlier policy would be refused today"),
               (status = 503)))]
async fn rollback_policy(
    State(state): State<AppState>,
    caller: Caller,
    body: ApiJson<Rollback>,
) -> Result<Json<PolicyStored>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::PolicyChange);
    let outcome = async {
        gate.authorize()?;
        let body = body.into_inner()?;
        let key = parse_version_key(&body.version)?;
        let earlier = policy_store::revision_by(&state.db, key)
            .await?
            .ok_or(ApiError::NotFound)?;
        store(&state, &mut gate, &caller, earlier.rules_csv)
            .await
            .map(Json)
    }
    .await;
    gate.finish(outcome).await
}
