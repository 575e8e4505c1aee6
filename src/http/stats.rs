//! Aggregations for the compliance console's charts, computed on the
//! server so the page never loads the trail: decisions over time, denials
//! by actor and reason, customer-data accesses by purpose (all from the
//! trail's hourly summaries, `audit::stats`), and consent rates by purpose
//! over time (from the consent ledger).
//!
//! Every route goes through the gate like any other read: the trail's
//! summaries need `audit read`, consent rates `consent read` (compliance
//! roles, `compliance_audit` purpose), and each call is one audit event.
//! Consent rates are numbers about customers: a point resting on fewer
//! than `privacy.k` customers leaves as `suppressed`, never as its value,
//! and the answer leaves through the release step ([`Gate::release`]) with
//! its privacy block in the event.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::stats::{self, StatsFilter, HOUR_MICROS};
use crate::audit::{Action, PrivacyBlock};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::db::consent_stats;
use crate::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::http::extract::Caller;
use crate::pipeline::gate::Gate;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(decisions))
        .routes(routes!(denials))
        .routes(routes!(purposes))
        .routes(routes!(consent_rates))
}

/// Most points one time series may hold; a wider range needs a wider bucket.
pub const MAX_POINTS: i64 = 2_000;

/// Default range when `from` is absent: the 30 days before `to`.
const DEFAULT_DAYS: i64 = 30;

/// RFC 3339 with a UTC offset, as the range parameters take it (a subset
/// of what `clock::parse_rfc3339` reads: years 1900-2099, seconds 00-59).
macro_rules! range_params {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize, IntoParams)]
        #[into_params(parameter_in = Query)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Start (RFC 3339, inclusive; rounded down to the hour, or to
            /// the day for day buckets). Default: `days` before `to`. Must
            /// be before `to`; not with `days`.
            #[param(format = DateTime, pattern = r"^(19[0-9]{2}|20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")]
            pub from: Option<String>,
            /// End (RFC 3339, exclusive; rounded up to the hour or day).
            /// Default: now.
            #[param(format = DateTime, pattern = r"^(19[0-9]{2}|20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")]
            pub to: Option<String>,
            /// The length of the range ending at `to`, in days (1-366,
            /// default 30), instead of `from`.
            #[param(minimum = 1, maximum = 366)]
            pub days: Option<u32>,
            $($(#[$fmeta])* pub $field: Option<$ty>,)*
        }
    };
}

range_params! {
    /// Query parameters of the trail's time series (decisions) and of
    /// accesses by purpose.
    TrailQuery {
        /// `hour` or `day` (default `day`). A range of at most 2,000 buckets.
        #[param(pattern = "^(hour|day)$")]
        bucket: String,
        /// Only events declaring this purpose.
        #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")]
        purpose: String,
        /// Only events of this actor.
        #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")]
        actor: String,
    }
}

range_params! {
    /// Query parameters of denials by actor and reason.
    DenialsQuery {
        /// Only events declaring this purpose.
        #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")]
        purpose: String,
        /// Only events of this actor.
        #[param(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,256}$")]
        actor: String,
        /// How many (actor, reason) rows, 1-100 (default 10).
        #[param(minimum = 1, maximum = 100)]
        limit: u32,
    }
}

range_params! {
    /// Query parameters of consent rates over time.
    RatesQuery {
        /// `hour` or `day` (default `day`). A range of at most 2,000 buckets.
        #[param(pattern = "^(hour|day)$")]
        bucket: String,
    }
}

/// What every chart route's parameters come to.
#[derive(Debug, Default)]
struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    days: Option<u32>,
    bucket: Option<String>,
    purpose: Option<String>,
    actor: Option<String>,
}

impl From<TrailQuery> for StatsQuery {
    fn from(q: TrailQuery) -> Self {
        Self {
            from: q.from,
            to: q.to,
            days: q.days,
            bucket: q.bucket,
            purpose: q.purpose,
            actor: q.actor,
        }
    }
}

impl From<DenialsQuery> for StatsQuery {
    fn from(q: DenialsQuery) -> Self {
        Self {
            from: q.from,
            to: q.to,
            days: q.days,
            bucket: None,
            purpose: q.purpose,
            actor: q.actor,
        }
    }
}

impl From<RatesQuery> for StatsQuery {
    fn from(q: RatesQuery) -> Self {
        Self {
            from: q.from,
            to: q.to,
            days: q.days,
            bucket: q.bucket,
            purpose: None,
            actor: None,
        }
    }
}

fn invalid(message: &'static str) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// A parsed time range: whole buckets `[from, to)` in bucket units.
struct Range {
    bucket_hours: i64,
    from: i64,
    to: i64,
}

impl Range {
    fn bucket_name(&self) -> &'static str {
        if self.bucket_hours == 1 {
            "hour"
        } else {
            "day"
        }
    }

    fn start_of(&self, bucket: i64) -> String {
        rfc3339(
            bucket
                .saturating_mul(self.bucket_hours)
                .saturating_mul(HOUR_MICROS),
        )
    }

    fn hours(&self) -> (i64, i64) {
        (
            self.from.saturating_mul(self.bucket_hours),
            self.to.saturating_mul(self.bucket_hours),
        )
    }
}

fn parse_range(state: &AppState, q: &StatsQuery) -> Result<Range, ApiError> {
    let bucket_hours = match q.bucket.as_deref() {
        None | Some("day") => 24,
        Some("hour") => 1,
        Some(_) => return Err(invalid("bucket: must be hour or day")),
    };
    let time = |v: &Option<String>, name: &'static str| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| parse_rfc3339(s).ok_or_else(|| invalid(name)))
            .transpose()
    };
    let width = bucket_hours * HOUR_MICROS;
    let to = time(
        &q.to,
        "to: must be an RFC 3339 timestamp, e.g. 2026-01-31T12:00:00Z",
    )?
    .unwrap_or_else(|| state.clock.now_micros());
    let days = match (&q.days, &q.from) {
        (Some(_), Some(_)) => return Err(invalid("use either from or days, not both")),
        (Some(d), None) => Some(i64::from(*d))
            .filter(|d| (1..=366).contains(d))
            .ok_or_else(|| invalid("days: must be between 1 and 366"))?,
        (None, _) => DEFAULT_DAYS,
    };
    let from = time(
        &q.from,
        "from: must be an RFC 3339 timestamp, e.g. 2026-01-01T00:00:00Z",
    )?
    .unwrap_or_else(|| to.saturating_sub(days * 24 * HOUR_MICROS));
    if from >= to {
        return Err(invalid("from: must be before to"));
    }
    let (from, to) = (
        from.div_euclid(width),
        to.saturating_add(width - 1).div_euclid(width),
    );
    if to - from > MAX_POINTS {
        return Err(invalid(
            "from, to: at most 2000 buckets; choose a shorter range or bucket=day",
        ));
    }
    Ok(Range {
        bucket_hours,
        from,
        to,
    })
}

fn text(v: &Option<String>, message: &'static str) -> Result<Option<String>, ApiError> {
    match v.as_deref() {
        None => Ok(None),
        Some(s) if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) => {
            Err(invalid(message))
        }
        Some(s) => Ok(Some(s.to_owned())),
    }
}

fn trail_filter(state: &AppState, q: &StatsQuery) -> Result<(Range, StatsFilter), ApiError> {
    let range = parse_range(state, q)?;
    let (from_hour, to_hour) = range.hours();
    let filter = StatsFilter {
        from_hour,
        to_hour,
        purpose: text(
            &q.purpose,
            "purpose: 1-256 characters, no control characters",
        )?,
        actor: text(&q.actor, "actor: 1-256 characters, no control characters")?,
    };
    Ok((range, filter))
}

/// One bucket of the decisions series.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionPoint {
    /// Start of the bucket (RFC 3339, UTC).
    pub start: String,
    pub allow: i64,
    pub deny: i64,
}

/// Allowed and denied events per bucket, every bucket of the range present.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionSeries {
    /// `hour` or `day`.
    pub bucket: &'static str,
    /// The range covered, in whole buckets.
    pub from: String,
    pub to: String,
    pub points: Vec<DecisionPoint>,
    pub total_allow: i64,
    pub total_deny: i64,
}

/// Decisions over time (compliance roles; audited).
///
/// Counted from hourly summaries the trail's writer keeps beside the
/// customer index, so the newest events appear within about a second.
#[utoipa::path(get, path = "/v1/audit/stats/decisions", tag = "audit",
    params(TrailQuery, ("X-Purpose" = String, Header, description = "Purpose id (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, body = DecisionSeries), (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn decisions(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<TrailQuery>,
) -> Result<Json<DecisionSeries>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::AuditRead);
    let outcome = async {
        gate.authorize()?;
        let (range, filter) = trail_filter(&state, &q.into_inner()?.into())?;
        let rows = stats::decisions_over_time(&state.db, &filter, range.bucket_hours)
            .await
            .map_err(ApiError::Internal)?;
        let mut rows = rows.into_iter().peekable();
        let mut points = Vec::new();
        for b in range.from..range.to {
            let (mut allow, mut deny) = (0, 0);
            while let Some(&(rb, a, d)) = rows.peek() {
                if rb > b {
                    break;
                }
                if rb == b {
                    allow += a;
                    deny += d;
                }
                rows.next();
            }
            points.push(DecisionPoint {
                start: range.start_of(b),
                allow,
                deny,
            });
        }
        gate.returned(std::iter::empty(), points.len() as u64);
        Ok(Json(DecisionSeries {
            bucket: range.bucket_name(),
            from: range.start_of(range.from),
            to: range.start_of(range.to),
            total_allow: points.iter().map(|p| p.allow).sum(),
            total_deny: points.iter().map(|p| p.deny).sum(),
            points,
        }))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DenialRow {
    pub actor: String,
    /// The rendered reason (`policy:…`, `consent:…`, `auth:…`, `input:…`).
    pub reason: String,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Denials {
    pub from: String,
    pub to: String,
    /// Largest first.
    pub rows: Vec<DenialRow>,
}

/// Denied events by actor and reason, largest first (compliance roles; audited).
#[utoipa::path(get, path = "/v1/audit/stats/denials", tag = "audit",
    params(DenialsQuery, ("X-Purpose" = String, Header, description = "Purpose id (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, body = Denials), (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn denials(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<DenialsQuery>,
) -> Result<Json<Denials>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::AuditRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        let limit = match q.limit {
            None => 10,
            Some(l) => Some(i64::from(l))
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| invalid("limit: must be between 1 and 100"))?,
        };
        let (range, filter) = trail_filter(&state, &q.into())?;
        let rows = stats::denials(&state.db, &filter, limit)
            .await
            .map_err(ApiError::Internal)?;
        gate.returned(std::iter::empty(), rows.len() as u64);
        Ok(Json(Denials {
            from: range.start_of(range.from),
            to: range.start_of(range.to),
            rows: rows
                .into_iter()
                .map(|(actor, reason, count)| DenialRow {
                    actor,
                    reason,
                    count,
                })
                .collect(),
        }))
    }
    .await;
    gate.finish(outcome).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PurposeRow {
    /// The declared purpose; absent for requests refused before one was known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    pub allow: i64,
    pub deny: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Purposes {
    pub from: String,
    pub to: String,
    /// Most allowed first.
    pub rows: Vec<PurposeRow>,
}

/// Accesses to customer data by purpose: events that touched at least one
/// customer, allowed and denied (compliance roles; audited).
#[utoipa::path(get, path = "/v1/audit/stats/purposes", tag = "audit",
    params(TrailQuery, ("X-Purpose" = String, Header, description = "Purpose id (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, body = Purposes), (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn purposes(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<TrailQuery>,
) -> Result<Json<Purposes>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::AuditRead);
    let outcome = async {
        gate.authorize()?;
        let (range, filter) = trail_filter(&state, &q.into_inner()?.into())?;
        let rows = stats::accesses_by_purpose(&state.db, &filter)
            .await
            .map_err(ApiError::Internal)?;
        gate.returned(std::iter::empty(), rows.len() as u64);
        Ok(Json(Purposes {
            from: range.start_of(range.from),
            to: range.start_of(range.to),
            rows: rows
                .into_iter()
                .map(|(purpose, allow, deny)| PurposeRow {
                    purpose: Some(purpose).filter(|p| !p.is_empty()),
                    allow,
                    deny,
                })
                .collect(),
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// One bucket's consent numbers for one purpose, at the bucket's end.
#[derive(Debug, Serialize, ToSchema)]
pub struct RatePoint {
    /// Start of the bucket (RFC 3339, UTC); the numbers hold at its end.
    pub start: String,
    /// Customers signed up by then and still in the store; absent when
    /// suppressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customers: Option<i64>,
    /// Of them, with a current grant; absent when suppressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted: Option<i64>,
    /// `granted / customers`, 0-1; absent when suppressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// True when the point rests on fewer than `k` customers (either
    /// count), so no number is released for it.
    pub suppressed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PurposeRates {
    pub purpose: String,
    pub points: Vec<RatePoint>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentRates {
    pub bucket: &'static str,
    pub from: String,
    pub to: String,
    /// The threshold applied: no released count is below it.
    pub k: i64,
    /// Every purpose whose legal basis is consent.
    pub purposes: Vec<PurposeRates>,
}

/// Consent rates by purpose over time (compliance roles; audited).
///
/// Exact counts above `privacy.k`, no noise: only for roles granted
/// `consent rates` that may also read each customer's consent under a
/// purpose that needs no consent (others: 403).
///
/// For each consent-based purpose and bucket: customers with a current
/// grant at the bucket's end, out of the customers signed up by then.
#[utoipa::path(get, path = "/v1/consents/rates", tag = "consents",
    params(RatesQuery, ("X-Purpose" = String, Header, description = "Purpose id (compliance_audit)")),
    security(("bearer" = [])),
    responses((status = 200, body = ConsentRates), (status = 400), (status = 401), (status = 403), (status = 503)))]
async fn consent_rates(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<RatesQuery>,
) -> Result<Json<ConsentRates>, ApiError> {
    let mut gate = Gate::new(&state, &caller, Action::ConsentRates);
    let outcome = async {
        gate.authorize()?;
        // The precondition of releasing exact counts, checked whatever a
        // policy change grants: this caller may read any one customer's
        // consent for this purpose, so the totals tell them nothing new.
        if !gate.also_allowed("consent", "read") || gate.consent_required() {
            return Err(ApiError::forbidden(
                "consent rates are exact: only for roles that may read every customer's consent",
            ));
        }
        let range = parse_range(&state, &q.into_inner()?.into())?;
        let width = range.bucket_hours * HOUR_MICROS;
        let changes = consent_stats::grant_changes(&state.db, width)
            .await
            .map_err(ApiError::Internal)?;
        let signups = consent_stats::signups(&state.db, width)
            .await
            .map_err(ApiError::Internal)?;
        let k = i64::from(state.config.privacy.k);
        let customers = consent_stats::running_totals(&signups, range.from, range.to);
        let mut purposes = Vec::new();
        for p in state.purposes.all().iter().filter(|p| p.consent_required) {
            let id = p.id.to_string();
            let changes = changes.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            let granted = consent_stats::running_totals(changes, range.from, range.to);
            let points = (range.from..range.to)
                .zip(customers.iter().zip(granted))
                .map(|(b, (&customers, granted))| {
                    let suppressed = customers < k || granted < k;
                    RatePoint {
                        start: range.start_of(b),
                        customers: (!suppressed).then_some(customers),
                        granted: (!suppressed).then_some(granted),
                        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                        rate: (!suppressed).then(|| granted as f64 / customers as f64),
                        suppressed,
                    }
                })
                .collect();
            purposes.push(PurposeRates {
                purpose: id,
                points,
            });
        }
        gate.returned(std::iter::empty(), purposes.len() as u64);
        // Numbers about customers leave through the release step: k
        // applied, evidence in the event, but no noise and nothing debited:
        // `consent.rates` is granted only to roles that may read every
        // customer's consent evidence (`consent.read` under a purpose that
        // needs no consent), for whom noise would hide nothing they cannot
        // count exactly (SECURITY.md, "The compliance console").
        let suppressed = purposes
            .iter()
            .flat_map(|p| &p.points)
            .filter(|p| p.suppressed)
            .count();
        let question = format!(
            "consent_rates|{}|{}|{}",
            range.bucket_name(),
            range.from,
            range.to
        );
        let block = PrivacyBlock {
            mechanism: "k_threshold".to_owned(),
            epsilon_spent_micros: 0,
            k: state.config.privacy.k,
            suppressed_cells: u32::try_from(suppressed).unwrap_or(u32::MAX),
            fingerprint: crate::audit::event::to_hash(
                ring::digest::digest(&ring::digest::SHA256, question.as_bytes()).as_ref(),
            )
            .unwrap_or(crate::audit::GENESIS),
            budget_remaining_micros: 0,
        };
        let tx = state
            .db
            .pool
            .begin()
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        gate.release(tx, block).await?;
        Ok(Json(ConsentRates {
            bucket: range.bucket_name(),
            from: range.start_of(range.from),
            to: range.start_of(range.to),
            k,
            purposes,
        }))
    }
    .await;
    gate.finish(outcome).await
}
