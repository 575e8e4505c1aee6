//! `/v1/segments`: ad-hoc segment queries, saved segments, members, and the
//! RFM builtin. Each handler walks the gate (authorize, parse after it, so
//! an unauthorized caller learns nothing from validation), computes true
//! aggregates in the database (`analytics`), and lets numbers leave only
//! through the release step (`privacy`), whose budget debit commits with
//! the request's audit event.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::analytics::segments::compile::{Sql, DAY_MICROS};
use crate::analytics::segments::language::{self, DefinitionError, Node, ParseError};
use crate::analytics::segments::{self as seg, Distribution, SavedSegment};
use crate::analytics::{profiles, DataVersion};
use crate::audit::Action;
use crate::domain::Treatment;
use crate::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::pipeline::consent::ConsentPredicate;
use crate::pipeline::gate::{Caller, Gate};
use crate::privacy::{PrivacyError, PrivacyNote, Release, Released, ReleasedCount, ReleasedTable};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(query_segment))
        .routes(routes!(list_segments, save_segment))
        .routes(routes!(get_segment, delete_segment))
        .routes(routes!(segment_members))
        .routes(routes!(rfm_builtin))
}

/// A JSON body kept as bytes: parsed inside the handler, after the gate,
/// by the non-recursive pre-scan and the typed parser.
pub struct DefinitionBody(Result<Bytes, ApiError>);

impl<S: Send + Sync> FromRequest<S> for DefinitionBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
                    || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !is_json {
            return Ok(Self(Err(ApiError::UnsupportedMediaType)));
        }
        Ok(Self(
            Bytes::from_request(req, state)
                .await
                .map_err(|_| ApiError::PayloadTooLarge),
        ))
    }
}

impl DefinitionBody {
    pub fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, ApiError> {
        let bytes = self.0?;
        language::parse(&bytes).map_err(|e| match e {
            ParseError::Syntax => {
                ApiError::bad_request("malformed_json", "the body is not valid JSON")
            }
            ParseError::Invalid(e) => invalid(&e),
        })
    }
}

/// 422 naming the JSON path of the first error, never the value.
pub fn invalid(e: &DefinitionError) -> ApiError {
    ApiError::unprocessable(format!("invalid definition at {}: {}", e.path, e.message))
}

/// The reference time of a question: `as_of` if given (RFC 3339, not in the
/// future), else the start of the current UTC day, so that asking the same
/// question again today is the same question (and free).
pub fn as_of(state: &AppState, given: Option<&str>) -> Result<i64, ApiError> {
    let now = state.clock.now_micros();
    match given {
        None => Ok(now - now.rem_euclid(DAY_MICROS)),
        Some(s) => match crate::clock::parse_rfc3339(s) {
            Some(t) if t <= now && t >= 0 => Ok(t),
            _ => Err(ApiError::unprocessable(
                "invalid definition at $.as_of: an RFC 3339 time, not in the future",
            )),
        },
    }
}

/// A segment query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub definition: Node,
    /// Distributions of the segment to release beside its size.
    #[serde(default)]
    pub distributions: Vec<Distribution>,
    /// List members (pseudonyms scoped to the request's purpose); only for
    /// roles with `segment read_members`.
    #[serde(default)]
    pub members: Option<MembersPage>,
    /// RFC 3339 reference time of windows and day counts (default: the start
    /// of the current UTC day); not in the future.
    #[schema(format = DateTime, pattern = r"^(197[1-9]|19[89][0-9]|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")]
    pub as_of: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MembersPage {
    /// Page size (default 100; above `max_page_size`, 1000 by default, is 400).
    #[param(minimum = 1, maximum = 1000)]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Members {
    /// Pseudonyms scoped to the request's purpose.
    pub pseudonyms: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueryAnswer {
    /// Hex SHA-256 of the question (same question, same fingerprint).
    pub fingerprint: String,
    /// Distinct consenting customers in the segment.
    pub size: ReleasedCount,
    /// Each requested distribution; cells under k are left out of
    /// distributions whose labels come from the data.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub distributions: Vec<ReleasedTable>,
    /// Present when members were requested and may be listed (size ≥ k).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Members>,
    pub privacy: PrivacyNote,
}

pub fn map_privacy_error(e: PrivacyError, state: &AppState) -> ApiError {
    match e {
        PrivacyError::Exhausted {
            remaining_micro,
            refreshes_at_micros,
        } => ApiError::PrivacyBudgetExhausted {
            remaining_epsilon: crate::privacy::epsilon(remaining_micro),
            refreshes_at: crate::clock::rfc3339(refreshes_at_micros),
            retry_after_secs: u64::try_from(
                (refreshes_at_micros - state.clock.now_micros()).max(0) / 1_000_000 + 1,
            )
            .unwrap_or(1),
        },
        PrivacyError::Internal(e) => ApiError::Internal(e),
    }
}

/// Everything needed to run one definition for one caller.
pub struct Prepared {
    pub filter: Sql,
    pub data: DataVersion,
    pub as_of: i64,
}

/// Validates, resolves saved segments, refreshes features, makes sure the
/// profile clusters it mentions exist, and compiles. `base` is the JSON
/// path of the definition in the body.
pub async fn prepare(
    state: &AppState,
    gate: &Gate<'_>,
    node: &Node,
    base: &str,
    as_of: i64,
) -> Result<Prepared, ApiError> {
    let purposes = &state.purposes;
    let stats =
        language::validate(node, base, &|p| purposes.contains(p)).map_err(|e| invalid(&e))?;
    let saved = seg::resolve_saved(&state.db, stats.segments.clone())
        .await
        .map_err(|e| match e {
            seg::ResolveError::Invalid(e) => invalid(&e),
            seg::ResolveError::Internal(e) => ApiError::Internal(e),
        })?;
    let now = state.clock.now_micros();
    let data = state
        .analytics
        .ensure_fresh(&state.db, now)
        .await
        .map_err(ApiError::Internal)?;
    let purpose = gate.purpose().as_str();
    let predicate = ConsentPredicate::for_purpose(&state.purposes, gate.purpose());
    let filter = seg::filter(node, &predicate, as_of, &saved).map_err(|e| {
        invalid(&DefinitionError::new(
            format!("{base}{}", e.path.trim_start_matches('$')),
            e.message,
        ))
    })?;
    // Cluster conditions (also inside saved segments) need current
    // assignments for this purpose.
    let mut ks = stats.cluster_ks.clone();
    for n in saved.values() {
        if let Ok(s) = language::validate(n, "$", &|p| purposes.contains(p)) {
            ks.extend(s.cluster_ks);
        }
    }
    ks.sort_unstable();
    ks.dedup();
    for k in ks {
        if !profiles::assignments_current(&state.db, purpose, k, &data.id)
            .await
            .map_err(ApiError::Internal)?
        {
            let mut base_filter = Sql::default();
            crate::analytics::consent_filter(&mut base_filter, &predicate);
            let k_us = usize::try_from(k).map_err(|_| ApiError::unprocessable("k out of range"))?;
            let model = profiles::fit(&state.db, &base_filter, k_us, as_of)
                .await
                .map_err(ApiError::Internal)?;
            profiles::assign(
                &state.db,
                &base_filter,
                &model,
                purpose,
                &data.id,
                as_of,
                now,
            )
            .await
            .map_err(ApiError::Internal)?;
        }
    }
    Ok(Prepared {
        filter,
        data,
        as_of,
    })
}

/// Opens the release for this caller and question.
pub fn release_for<'a>(
    state: &'a AppState,
    caller: &'a Caller,
    exact: bool,
    fingerprint: String,
    data: &DataVersion,
) -> Release<'a> {
    Release {
        settings: &state.config.privacy,
        db: &state.db,
        principal: caller.principal.sub.as_str(),
        purpose: caller.purpose.as_str(),
        fingerprint,
        data_version: data.id.clone(),
        exact,
        now: state.clock.now_micros(),
    }
}

/// Records the audit event (with the debit's transaction, when there is
/// one) and returns once both are durable.
/// Without a debit (exact or repeated answers) the block rides on the
/// event `finish` records.
pub async fn commit(gate: &mut Gate<'_>, released: &mut Released<'static>) -> Result<(), ApiError> {
    let block = released.evidence.block();
    match released.tx.take() {
        Some(tx) => gate.release(tx, block).await?,
        None => gate.privacy(block),
    }
    // Counted once the debit is durable: a release whose audit write failed
    // spent nothing.
    released.evidence.record(gate.purpose().as_str());
    Ok(())
}

/// A page size: default 100, and outside 1..=`max_page_size` a 400 (never
/// silently clamped).
fn page_limit(state: &AppState, limit: Option<u32>) -> Result<i64, ApiError> {
    match limit.unwrap_or(100) {
        n if (1..=state.config.max_page_size).contains(&n) => Ok(i64::from(n)),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            "limit: must be between 1 and max_page_size",
        )),
    }
}

/// One page of members, as purpose-scoped pseudonyms, if the segment
/// rests on at least k customers.
/// One page of a segment's members, read but not yet released.
struct MemberRows {
    rows: Vec<(i64, String)>,
    offset: i64,
    limit: i64,
    list: String,
}

/// Reads one page of members (`None` below k). Runs before the release
/// opens its transaction: a request never holds a pooled connection while
/// it waits for a second one (enough such requests at once would hold the
/// whole pool and wait on each other).
async fn member_rows(
    state: &AppState,
    gate: &Gate<'_>,
    filter: &Sql,
    true_size: i64,
    page: &MembersPage,
) -> Result<Option<MemberRows>, ApiError> {
    let limit = page_limit(state, page.limit)?;
    if true_size < i64::from(state.config.privacy.k) {
        return Ok(None);
    }
    let list = format!(
        "segment_members:{}",
        seg::fingerprint("segment.members", filter, "")
    );
    let offset = match page.cursor.as_deref() {
        None => 0,
        Some(c) => state
            .vault
            .cursors()
            .open(&gate.cursor_scope(&list), c)
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "cursor: not a cursor issued to you for this segment and purpose",
                )
            })?,
    };
    let rows = seg::members(&state.db, filter, offset, limit)
        .await
        .map_err(ApiError::Internal)?;
    Ok(Some(MemberRows {
        rows,
        offset,
        limit,
        list,
    }))
}

/// The page as it leaves: pseudonyms under the caller's purpose, the
/// customers recorded on the gate, an opaque cursor for the next page.
fn member_page(
    state: &AppState,
    gate: &mut Gate<'_>,
    page: MemberRows,
) -> Result<Members, ApiError> {
    let MemberRows {
        rows,
        offset,
        limit,
        list,
    } = page;
    let purpose = gate.purpose().clone();
    let p = state.vault.pseudonymizer();
    let pseudonyms: Vec<String> = rows.iter().map(|(_, ext)| p.token(&purpose, ext)).collect();
    gate.touch(rows.iter().map(|(id, _)| *id));
    gate.returned(
        [("customer.external_id".to_owned(), Treatment::Pseudonym)],
        pseudonyms.len() as u64,
    );
    let next_cursor = if rows.len() as i64 == limit {
        let scope = gate.cursor_scope(&list);
        Some(
            state
                .vault
                .cursors()
                .seal(&scope, offset + rows.len() as i64)
                .map_err(|e| ApiError::internal(anyhow::anyhow!("seal cursor: {e}")))?,
        )
    } else {
        None
    };
    Ok(Members {
        pseudonyms,
        next_cursor,
    })
}

/// Size, distributions and (for member roles) members of a segment.
#[utoipa::path(post, path = "/v1/segments/query", tag = "segments",
    request_body = QueryRequest,
    params(("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = QueryAnswer),
        (status = 400, description = "Malformed JSON or missing purpose"),
        (status = 401), (status = 403),
        (status = 413),
        (status = 422, description = "Invalid definition: the message names the JSON path of the first error (depth at most 16, at most 256 nodes, windows 1-3650 days), never the value"),
        (status = 429, description = "Rate limited, or `privacy_budget_exhausted` with `remaining_epsilon` and `refreshes_at` (and `Retry-After`)"),
        (status = 503)))]
async fn query_segment(
    State(state): State<AppState>,
    caller: Caller,
    body: DefinitionBody,
) -> Result<Json<QueryAnswer>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::SegmentRead);
    let outcome = async {
        gate.authorize()?;
        let req: QueryRequest = body.parse()?;
        if req.members.is_some() && !gate.also_allowed("segment", "read_members") {
            return Err(ApiError::forbidden(
                "your role may not list segment members for this purpose",
            ));
        }
        let mut dists = req.distributions.clone();
        dists.dedup();
        let at = as_of(&state, req.as_of.as_deref())?;
        let prep = prepare(&state, &gate, &req.definition, "$.definition", at).await?;
        let extra = dists
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let fp = seg::fingerprint("segment.query", &prep.filter, &extra);
        let member_rows = match &req.members {
            Some(page) => {
                let n = seg::size(&state.db, &prep.filter)
                    .await
                    .map_err(ApiError::Internal)?;
                member_rows(&state, &gate, &prep.filter, n, page).await?
            }
            None => None,
        };
        let release = release_for(
            &state,
            &caller,
            gate.also_allowed("segment", "read_members"),
            fp.clone(),
            &prep.data,
        );
        let mut released = match release
            .sticky()
            .await
            .map_err(|e| map_privacy_error(e, &state))?
        {
            Some(r) => r,
            None => {
                let n = seg::size(&state.db, &prep.filter)
                    .await
                    .map_err(ApiError::Internal)?;
                let mut tables = vec![seg::size_table(n)];
                for d in &dists {
                    tables.push(
                        seg::distribution(&state.db, &prep.filter, *d)
                            .await
                            .map_err(ApiError::Internal)?,
                    );
                }
                release
                    .release(&tables)
                    .await
                    .map_err(|e| map_privacy_error(e, &state))?
            }
        };
        let members = member_rows
            .map(|rows| member_page(&state, &mut gate, rows))
            .transpose()?;
        commit(&mut gate, &mut released).await?;
        let mut tables = std::mem::take(&mut released.tables).into_iter();
        let size = tables
            .next()
            .and_then(|t| t.cells.into_iter().next())
            .map(|c| c.customers)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("release without size")))?;
        Ok(Json(QueryAnswer {
            fingerprint: fp,
            size,
            distributions: tables.collect(),
            members,
            privacy: released.note.clone(),
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// A definition to save under a name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    /// 1-200 printable characters, not only white space.
    #[schema(
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        max_length = 200
    )]
    pub name: String,
    pub definition: Node,
}

/// Save a named segment definition.
#[utoipa::path(post, path = "/v1/segments", tag = "segments",
    request_body = SaveRequest,
    params(("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 201, body = SavedSegment), (status = 400), (status = 401), (status = 403),
               (status = 413), (status = 422, description = "Invalid definition (JSON path of the first error)"), (status = 503)))]
async fn save_segment(
    State(state): State<AppState>,
    caller: Caller,
    body: DefinitionBody,
) -> Result<(StatusCode, Json<SavedSegment>), ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::SegmentWrite);
    let outcome = async {
        gate.authorize()?;
        let req: SaveRequest = body.parse()?;
        if req.name.trim().is_empty()
            || req.name.chars().count() > 200
            || req.name.chars().any(char::is_control)
        {
            return Err(ApiError::unprocessable(
                "invalid definition at $.name: 1-200 printable characters",
            ));
        }
        let purposes = &state.purposes;
        let stats = language::validate(&req.definition, "$.definition", &|p| purposes.contains(p))
            .map_err(|e| invalid(&e))?;
        let saved = seg::resolve_saved(&state.db, stats.segments)
            .await
            .map_err(|e| match e {
                seg::ResolveError::Invalid(e) => invalid(&e),
                seg::ResolveError::Internal(e) => ApiError::Internal(e),
            })?;
        // Compiling checks the combined limits with saved segments inlined.
        let filter = seg::filter(
            &req.definition,
            &ConsentPredicate::for_purpose(&state.purposes, gate.purpose()),
            0,
            &saved,
        )
        .map_err(|e| invalid(&e))?;
        let now = state.clock.now_micros();
        let segment = SavedSegment {
            id: format!("seg_{}", uuid::Uuid::new_v4().simple()),
            name: req.name,
            definition: req.definition,
            created_by: caller.principal.sub.clone(),
            created_purpose: caller.purpose.as_str().to_owned(),
            created_at: crate::clock::rfc3339(now),
        };
        let mut tx = state.db.pool.begin().await?;
        seg::insert_saved(
            &mut tx,
            &segment,
            &seg::fingerprint("segment", &filter, ""),
            now,
        )
        .await
        .map_err(ApiError::Internal)?;
        gate.set_status(StatusCode::CREATED);
        gate.commit_audited(tx).await?;
        Ok((StatusCode::CREATED, Json(segment)))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many (default 100, at most `max_page_size`), newest first.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentList {
    pub segments: Vec<SavedSegment>,
}

/// List saved segments (definitions only; no numbers).
#[utoipa::path(get, path = "/v1/segments", tag = "segments",
    params(ListQuery, ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = SegmentList), (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn list_segments(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<ListQuery>,
) -> Result<Json<SegmentList>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::SegmentRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        let limit = page_limit(&state, q.limit)?;
        let segments = seg::list_saved(&state.db, limit)
            .await
            .map_err(ApiError::Internal)?;
        gate.returned([], segments.len() as u64);
        Ok(Json(SegmentList { segments }))
    }
    .await;
    gate.finish(outcome).await
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if language::is_segment_id(id) {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

/// Read one saved segment.
#[utoipa::path(get, path = "/v1/segments/{id}", tag = "segments",
    params(("id" = String, Path, description = "Segment id (`seg_...`)", pattern = "^seg_[0-9a-f]{32}$"),
           ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = SavedSegment), (status = 401), (status = 403), (status = 404), (status = 503)))]
async fn get_segment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SavedSegment>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::SegmentRead);
    let outcome = async {
        gate.authorize()?;
        check_id(&id)?;
        let s = seg::get_saved(&state.db, &id)
            .await
            .map_err(ApiError::Internal)?
            .ok_or(ApiError::NotFound)?;
        gate.returned([], 1);
        Ok(Json(s))
    }
    .await;
    gate.finish(outcome).await
}

/// Delete a saved segment (409 while other saved segments refer to it).
#[utoipa::path(delete, path = "/v1/segments/{id}", tag = "segments",
    params(("id" = String, Path, description = "Segment id (`seg_...`)", pattern = "^seg_[0-9a-f]{32}$"),
           ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409), (status = 503)))]
async fn delete_segment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::SegmentWrite);
    let outcome = async {
        gate.authorize()?;
        check_id(&id)?;
        let mut tx = state.db.pool.begin().await?;
        // Ids are `seg_` + hex (checked above), so the pattern is literal.
        let referenced: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM segments WHERE segment_uid <> $1 AND definition LIKE $2 LIMIT 1",
        )
        .bind(&id)
        .bind(format!("%\"{id}\"%"))
        .fetch_optional(&mut *tx)
        .await?;
        if referenced.is_some() {
            return Err(ApiError::Conflict(
                "other saved segments refer to this one; delete them first".into(),
            ));
        }
        if !seg::delete_saved(&mut tx, &id)
            .await
            .map_err(ApiError::Internal)?
        {
            return Err(ApiError::NotFound);
        }
        gate.set_status(StatusCode::NO_CONTENT);
        gate.commit_audited(tx).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MembersAnswer {
    pub segment_id: String,
    /// Exact size (member roles get exact numbers; k threshold applies).
    pub size: ReleasedCount,
    /// Absent when the segment rests on fewer than k customers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Members>,
}

/// Members of a saved segment, as pseudonyms scoped to the request's
/// purpose (roles with `segment read_members` only; consenting customers
/// only; never for a segment under k).
#[utoipa::path(get, path = "/v1/segments/{id}/members", tag = "segments",
    params(("id" = String, Path, description = "Segment id (`seg_...`)", pattern = "^seg_[0-9a-f]{32}$"), MembersPage,
           ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = MembersAnswer), (status = 400), (status = 401), (status = 403),
              (status = 404), (status = 422), (status = 503)))]
async fn segment_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: ApiQuery<MembersPage>,
) -> Result<Json<MembersAnswer>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::SegmentReadMembers);
    let outcome = async {
        gate.authorize()?;
        let page = q.into_inner()?;
        check_id(&id)?;
        let s = seg::get_saved(&state.db, &id)
            .await
            .map_err(ApiError::Internal)?
            .ok_or(ApiError::NotFound)?;
        let at = as_of(&state, None)?;
        let prep = prepare(&state, &gate, &s.definition, "$", at).await?;
        let n = seg::size(&state.db, &prep.filter)
            .await
            .map_err(ApiError::Internal)?;
        let fp = seg::fingerprint("segment.members", &prep.filter, "");
        let release = release_for(
            &state,
            &caller,
            gate.also_allowed("segment", "read_members"),
            fp,
            &prep.data,
        );
        let rows = member_rows(&state, &gate, &prep.filter, n, &page).await?;
        let mut released = release
            .release(&[seg::size_table(n)])
            .await
            .map_err(|e| map_privacy_error(e, &state))?;
        let members = rows
            .map(|rows| member_page(&state, &mut gate, rows))
            .transpose()?;
        commit(&mut gate, &mut released).await?;
        let size = released
            .tables
            .first()
            .and_then(|t| t.cells.first())
            .map(|c| c.customers.clone())
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("release without size")))?;
        Ok(Json(MembersAnswer {
            segment_id: id.clone(),
            size,
            members,
        }))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    /// RFC 3339 reference time (default: the start of the current UTC
    /// day); not in the future.
    #[param(format = DateTime, pattern = r"^(197[1-9]|19[89][0-9]|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")]
    pub as_of: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RfmAnswer {
    pub fingerprint: String,
    /// The eleven standard cells with size and average recency (days),
    /// frequency (orders) and spend (currency units).
    pub cells: Vec<crate::privacy::ReleasedCell>,
    pub privacy: PrivacyNote,
}

/// The standard RFM cells of consenting customers. Scores are quintiles
/// by rank among customers with an order (5 best); the cell follows
/// R and FM = ⌊(F + M) / 2⌋ (see the README for the table).
#[utoipa::path(get, path = "/v1/segments/builtin/rfm", tag = "segments",
    params(AsOfQuery, ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = RfmAnswer), (status = 400), (status = 401), (status = 403),
              (status = 422), (status = 429), (status = 503)))]
async fn rfm_builtin(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<AsOfQuery>,
) -> Result<Json<RfmAnswer>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::SegmentRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        let at = as_of(&state, q.as_of.as_deref())?;
        let data = state
            .analytics
            .ensure_fresh(&state.db, state.clock.now_micros())
            .await
            .map_err(ApiError::Internal)?;
        let mut filter = Sql::default();
        crate::analytics::consent_filter(
            &mut filter,
            &ConsentPredicate::for_purpose(&state.purposes, gate.purpose()),
        );
        let fp = seg::fingerprint("segment.rfm", &filter, &at.to_string());
        let release = release_for(
            &state,
            &caller,
            gate.also_allowed("segment", "read_members"),
            fp.clone(),
            &data,
        );
        let mut released = match release
            .sticky()
            .await
            .map_err(|e| map_privacy_error(e, &state))?
        {
            Some(r) => r,
            None => {
                let table = crate::analytics::rfm::cells(&state.db, filter.clone(), at)
                    .await
                    .map_err(ApiError::Internal)?;
                release
                    .release(&[table])
                    .await
                    .map_err(|e| map_privacy_error(e, &state))?
            }
        };
        commit(&mut gate, &mut released).await?;
        let cells = std::mem::take(&mut released.tables)
            .into_iter()
            .next()
            .map(|t| t.cells)
            .unwrap_or_default();
        Ok(Json(RfmAnswer {
            fingerprint: fp,
            cells,
            privacy: released.note.clone(),
        }))
    }
    .await;
    gate.finish(outcome).await
}
