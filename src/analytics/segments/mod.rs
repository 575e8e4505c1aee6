//! Audience segments: the definition language, its compiler, saved
//! segments, and the queries a segment answers (size, distributions,
//! members). Every query is `customer_features f` filtered by the consent
//! predicate of the request's purpose AND the compiled definition.

pub mod compile;
pub mod language;
pub mod scan;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::HashMap;
use utoipa::ToSchema;

use crate::db::Db;
use crate::privacy::{TrueCell, TrueTable};
use compile::{Bind, Sql};
use language::{DefinitionError, Node};

/// Distributions an analyst may ask for beside a segment's size. Each is a
/// partition of the segment (a customer is in exactly one cell).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    Country,
    /// By the category each customer spent most on.
    Category,
    RfmCell,
}

impl Distribution {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Country => "country",
            Self::Category => "category",
            Self::RfmCell => "rfm_cell",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Self::Country => "f.country",
            Self::Category => "f.top_category",
            Self::RfmCell => "f.rfm_cell",
        }
    }
}

/// The predicate of a question: consent for the purpose AND the definition.
pub fn filter(
    node: &Node,
    predicate: &crate::pipeline::consent::ConsentPredicate,
    as_of: i64,
    saved: &HashMap<String, Node>,
) -> Result<Sql, DefinitionError> {
    let purpose = predicate.bind_value();
    let mut sql = Sql::default();
    super::consent_filter(&mut sql, predicate);
    sql.push(" AND ");
    let ctx = compile::Context {
        as_of,
        purpose,
        saved,
    };
    compile::compile(node, &ctx, &mut sql)?;
    Ok(sql)
}

/// Hex SHA-256 of a question: its kind, the compiled SQL and binds (which
/// fix its meaning, saved segments included) and any extra parameters.
pub fn fingerprint(kind: &str, sql: &Sql, extra: &str) -> String {
    let binds = serde_json::to_string(&sql.binds).unwrap_or_default();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [kind, "\n", &sql.text, "\n", &binds, "\n", extra] {
        ctx.update(part.as_bytes());
    }
    hex::encode(ctx.finish().as_ref())
}

/// Distinct customers matching the filter.
pub async fn size(db: &Db, filter: &Sql) -> anyhow::Result<i64> {
    let text = format!(
        "SELECT COUNT(*) FROM customer_features f WHERE {}",
        filter.text
    );
    let n: i64 = filter
        .apply(sqlx::query(&text))
        .fetch_one(&db.pool)
        .await
        .context("segment size")?
        .try_get(0)?;
    Ok(n)
}

/// The segment's size as a one-cell table.
pub fn size_table(n: i64) -> TrueTable {
    TrueTable {
        name: "size".into(),
        sums: Vec::new(),
        cells: vec![TrueCell {
            label: "segment".into(),
            customers: n,
            sums: Vec::new(),
        }],
        fixed_labels: true,
    }
}

/// One distribution of the segment, as a true table.
pub async fn distribution(db: &Db, filter: &Sql, d: Distribution) -> anyhow::Result<TrueTable> {
    let col = d.column();
    let text = format!(
        "SELECT COALESCE({col}, '(none)'), COUNT(*) FROM customer_features f WHERE {} \
         GROUP BY COALESCE({col}, '(none)') ORDER BY 1 LIMIT 1000",
        filter.text
    );
    let rows = filter
        .apply(sqlx::query(&text))
        .fetch_all(&db.pool)
        .await
        .context("segment distribution")?;
    let mut found: HashMap<String, i64> = HashMap::new();
    for r in rows {
        found.insert(r.try_get(0)?, r.try_get(1)?);
    }
    let cells = if d == Distribution::RfmCell {
        // Fixed labels: every cell, empty ones too.
        language::RfmCell::ALL
            .iter()
            .map(|c| c.as_str())
            .chain(["(none)"])
            .map(|l| TrueCell {
                label: l.to_owned(),
                customers: found.get(l).copied().unwrap_or(0),
                sums: Vec::new(),
            })
            .collect()
    } else {
        let mut cells: Vec<TrueCell> = found
            .into_iter()
            .map(|(label, n)| TrueCell {
                label,
                customers: n,
                sums: Vec::new(),
            })
            .collect();
        cells.sort_by(|a, b| a.label.cmp(&b.label));
        cells
    };
    Ok(TrueTable {
        name: d.as_str().into(),
        sums: Vec::new(),
        cells,
        fixed_labels: d == Distribution::RfmCell,
    })
}

/// One page of members' shop ids (the caller pseudonymizes them), in
/// internal id order; `offset` comes from an opaque cursor.
pub async fn members(
    db: &Db,
    filter: &Sql,
    offset: i64,
    limit: i64,
) -> anyhow::Result<Vec<(i64, String)>> {
    let mut sql = filter.clone();
    let l = sql.bind(Bind::Int(limit));
    let o = sql.bind(Bind::Int(offset));
    let text = format!(
        "SELECT c.id, c.external_id FROM customer_features f JOIN customers c ON c.id = f.customer_id \
         WHERE {} ORDER BY f.customer_id LIMIT {l} OFFSET {o}",
        sql.text
    );
    let rows = sql
        .apply(sqlx::query(&text))
        .fetch_all(&db.pool)
        .await
        .context("segment members")?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// A saved segment as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SavedSegment {
    pub id: String,
    pub name: String,
    pub definition: Node,
    /// Who saved it (the token's subject) and under which purpose.
    pub created_by: String,
    pub created_purpose: String,
    /// RFC 3339.
    pub created_at: String,
}

fn saved_from_row(r: &sqlx::any::AnyRow) -> anyhow::Result<SavedSegment> {
    let text: String = r.try_get("definition")?;
    Ok(SavedSegment {
        id: r.try_get("segment_uid")?,
        name: r.try_get("name")?,
        definition: serde_json::from_str(&text).context("stored definition")?,
        created_by: r.try_get("created_by")?,
        created_purpose: r.try_get("created_purpose")?,
        created_at: crate::clock::rfc3339(r.try_get("created_at")?),
    })
}

const SAVED_COLUMNS: &str =
    "segment_uid, name, definition, created_by, created_purpose, created_at";

pub async fn get_saved(db: &Db, id: &str) -> anyhow::Result<Option<SavedSegment>> {
    let row = sqlx::query(&format!(
        "SELECT {SAVED_COLUMNS} FROM segments WHERE segment_uid = $1"
    ))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    row.as_ref().map(saved_from_row).transpose()
}

/// Saved segments, newest first, after an optional cursor (an id).
pub async fn list_saved(db: &Db, limit: i64) -> anyhow::Result<Vec<SavedSegment>> {
    let rows = sqlx::query(&format!(
        "SELECT {SAVED_COLUMNS} FROM segments ORDER BY id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(saved_from_row).collect()
}

pub async fn insert_saved(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    seg: &SavedSegment,
    fingerprint: &str,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO segments (segment_uid, name, definition, fingerprint, created_by, \
         created_purpose, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&seg.id)
    .bind(&seg.name)
    .bind(serde_json::to_string(&seg.definition)?)
    .bind(fingerprint)
    .bind(&seg.created_by)
    .bind(&seg.created_purpose)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes a saved segment; false if there was none.
pub async fn delete_saved(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
) -> anyhow::Result<bool> {
    let r = sqlx::query("DELETE FROM segments WHERE segment_uid = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Most saved segments one definition may pull in, transitively.
const MAX_REFERENCED: usize = 64;

/// Loads every saved segment `ids` refer to, transitively (iteratively,
/// breadth first). A missing one is a definition error at `path`.
pub async fn resolve_saved(
    db: &Db,
    ids: Vec<String>,
) -> Result<HashMap<String, Node>, ResolveError> {
    let mut out: HashMap<String, Node> = HashMap::new();
    let mut queue = ids;
    while let Some(id) = queue.pop() {
        if out.contains_key(&id) {
            continue;
        }
        if out.len() >= MAX_REFERENCED {
            return Err(ResolveError::Invalid(DefinitionError::new(
                "$",
                "refers to too many saved segments",
            )));
        }
        let Some(seg) = get_saved(db, &id).await.map_err(ResolveError::Internal)? else {
            return Err(ResolveError::Invalid(DefinitionError::new(
                "$",
                "refers to a saved segment that does not exist",
            )));
        };
        let mut stack = vec![&seg.definition];
        while let Some(n) = stack.pop() {
            match n {
                Node::All(c) | Node::Any(c) => stack.extend(c.iter()),
                Node::Not(c) => stack.push(c),
                Node::InSegment(r) => queue.push(r.id.clone()),
                _ => {}
            }
        }
        out.insert(id, seg.definition);
    }
    Ok(out)
}

#[derive(Debug)]
pub enum ResolveError {
    Invalid(DefinitionError),
    Internal(anyhow::Error),
}
