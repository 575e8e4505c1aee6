//! `/v1/profiles/clusters`: customer profiles by k-means, released as
//! aggregates only (each cluster's size, centroid in original units, top
//! categories and a generated label), through the release step.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::analytics::profiles;
use crate::analytics::segments::compile::{Bind, Sql};
use crate::analytics::segments::fingerprint;
use crate::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::http::segments::{as_of, commit, map_privacy_error, release_for};
use crate::pipeline::gate::{Caller, Gate};
use crate::privacy::{NamedAverage, PrivacyNote, ReleasedCell, ReleasedCount};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(clusters))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClustersQuery {
    /// Number of clusters, 2-10 (default 5).
    #[param(minimum = 2, maximum = 10)]
    pub k: Option<u32>,
    /// RFC 3339 reference time for recency (default: start of the current
    /// UTC day); not in the future.
    #[param(format = DateTime, pattern = r"^(197[1-9]|19[89][0-9]|20[01][0-9]|202[0-5])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$")]
    pub as_of: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cluster {
    /// 0 is the cluster with the highest average spend.
    pub cluster: usize,
    pub size: ReleasedCount,
    /// Averages in original units: recency (days), frequency (orders),
    /// monetary (currency units), basket size (items per order), and the
    /// share (%) of each top category (`share_pct:<category>`).
    pub centroid: Vec<NamedAverage>,
    /// The cluster's categories by released average share, highest first.
    pub top_categories: Vec<String>,
    /// Generated from the released numbers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClustersAnswer {
    pub fingerprint: String,
    pub k: usize,
    /// The categories whose shares are features (overall top by spend).
    pub categories: Vec<String>,
    pub clusters: Vec<Cluster>,
    pub privacy: PrivacyNote,
}

/// Customer profiles: k-means++ clusters (fixed seed, standardized log
/// features) of consenting customers, as aggregates only.
#[utoipa::path(get, path = "/v1/profiles/clusters", tag = "profiles",
    params(ClustersQuery, ("X-Purpose" = String, Header, description = "Purpose id")),
    security(("bearer" = [])),
    responses((status = 200, body = ClustersAnswer), (status = 400), (status = 401), (status = 403),
              (status = 422, description = "k outside 2-10 or a bad as_of"),
              (status = 429, description = "Rate limited or privacy budget exhausted"), (status = 503)))]
async fn clusters(
    State(state): State<AppState>,
    caller: Caller,
    q: ApiQuery<ClustersQuery>,
) -> Result<Json<ClustersAnswer>, ApiError> {
    let mut gate = Gate::new(&state, &caller, crate::audit::Action::ProfileRead);
    let outcome = async {
        gate.authorize()?;
        let q = q.into_inner()?;
        let k = q.k.unwrap_or(5);
        if !(2..=10).contains(&k) {
            return Err(ApiError::unprocessable("k: must be between 2 and 10"));
        }
        let k = k as usize;
        let at = as_of(&state, q.as_of.as_deref())?;
        let now = state.clock.now_micros();
        let data = state
            .analytics
            .ensure_fresh(&state.db, now)
            .await
            .map_err(ApiError::Internal)?;
        let purpose = caller.purpose.as_str();
        let mut filter = Sql::default();
        crate::analytics::consent_filter(
            &mut filter,
            &crate::pipeline::consent::ConsentPredicate::for_purpose(
                &state.purposes,
                gate.purpose(),
            ),
        );
        let mut fp_sql = filter.clone();
        fp_sql.bind(Bind::Int(k as i64));
        let fp = fingerprint("profiles.clusters", &fp_sql, &at.to_string());
        let exact = gate.also_allowed("segment", "read_members");
        let release = release_for(&state, &caller, exact, fp.clone(), &data);
        // The model is deterministic for the data; fitting it again on a
        // sticky answer costs time but no privacy, and names the categories.
        let model = profiles::fit(&state.db, &filter, k, at)
            .await
            .map_err(ApiError::Internal)?;
        let mut released = match release
            .sticky()
            .await
            .map_err(|e| map_privacy_error(e, &state))?
        {
            Some(r) => r,
            None => {
                let table =
                    profiles::assign(&state.db, &filter, &model, purpose, &data.id, at, now)
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
        let clusters = describe(cells, &model.categories);
        Ok(Json(ClustersAnswer {
            fingerprint: fp,
            k,
            categories: model.categories.clone(),
            clusters,
            privacy: released.note.clone(),
        }))
    }
    .await;
    gate.finish(outcome).await
}

/// Names the category shares, ranks top categories and writes labels, from
/// the released numbers only (post-processing costs no privacy).
fn describe(cells: Vec<ReleasedCell>, categories: &[String]) -> Vec<Cluster> {
    let avg_of = |c: &ReleasedCell, name: &str| {
        c.averages
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.value.value)
    };
    let mut weighted = (0.0, 0.0);
    for c in &cells {
        if let (Some(n), Some(s)) = (c.customers.value, avg_of(c, "avg_monetary")) {
            weighted.0 += n as f64 * s;
            weighted.1 += n as f64;
        }
    }
    let overall = if weighted.1 > 0.0 {
        weighted.0 / weighted.1
    } else {
        0.0
    };
    cells
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut centroid = Vec::new();
            let mut shares: Vec<(String, f64)> = Vec::new();
            for a in c.averages {
                match a.name.strip_prefix("share_category_") {
                    Some(pos) => {
                        let name = pos
                            .parse::<usize>()
                            .ok()
                            .and_then(|p| p.checked_sub(1))
                            .and_then(|p| categories.get(p))
                            .cloned()
                            .unwrap_or_default();
                        if let Some(v) = a.value.value {
                            shares.push((name.clone(), v));
                        }
                        centroid.push(NamedAverage {
                            name: format!("share_pct:{name}"),
                            value: a.value,
                        });
                    }
                    None => centroid.push(a),
                }
            }
            shares.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
            let top_categories: Vec<String> = shares
                .iter()
                .filter(|s| s.1 > 0.0)
                .take(2)
                .map(|s| s.0.clone())
                .collect();
            let label = (!c.customers.suppressed).then(|| {
                let avg = |n: &str| {
                    centroid
                        .iter()
                        .find(|a| a.name == n)
                        .and_then(|a| a.value.value)
                };
                profiles::label(&avg, overall, top_categories.first().map(String::as_str))
            });
            Cluster {
                cluster: i,
                size: c.customers,
                centroid,
                top_categories,
                label,
            }
        })
        .collect()
}
