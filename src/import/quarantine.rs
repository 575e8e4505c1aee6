//! Quarantine: the rows a mapped import could not take, kept with their
//! reasons until the mapping or the data is fixed and they are replayed.
//!
//! Failed rows carry personal data (that is often why they failed: a
//! malformed e-mail is still an e-mail), so they are stored like customer
//! data: each import run has its own data key (AES-256-GCM, generated like
//! a customer's DEK and stored only wrapped under the active KEK, bound to
//! the record id `-run_id` so it can never be unwrapped as a customer's
//! key), and each row is encrypted under it with associated data naming
//! `quarantine`, `row` and the row's line number in the run. The reasons
//! are codes and column names, never values, and are readable without the
//! key; the row itself only through the vault. A replayed row keeps its
//! reasons and loses its ciphertext.
//!
//! Runs are recorded in `import_runs` with their counts, so reports and
//! trends read them without touching the data.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};
use std::collections::HashMap;
use std::sync::Arc;
use zeroize::Zeroizing;

use crate::crypto::{FieldCipher, FieldPlace, Keyring};
use crate::db::Db;

/// Why a row was quarantined: a code and the standard field or column it
/// concerns. Never the value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    pub code: ProblemCode,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(code: ProblemCode, field: &str) -> Self {
        Self {
            code,
            field: Some(field.to_owned()),
        }
    }

    pub fn row(code: ProblemCode) -> Self {
        Self { code, field: None }
    }
}

/// The closed set of quarantine reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// NDJSON: the line is not a JSON object.
    BadJson,
    /// The last line of the file ends without a newline and does not parse.
    TruncatedLine,
    /// CSV: not as many fields as the header.
    WrongColumnCount,
    /// NDJSON: an object or array where a value was expected.
    NestedValue,
    /// A required field is empty and has no default.
    MissingRequired,
    /// The value does not have the field's format (date, number, id, …).
    BadFormat,
    /// The value is not one the standard accepts (country, currency,
    /// consent answer).
    UnknownValue,
    /// The value is out of the field's range (quantity, price, time).
    OutOfRange,
    /// Lines of one order disagree on its customer, time or currency.
    InconsistentOrder,
    /// The order names a customer the store does not have (yet).
    UnknownCustomer,
    /// Another line of the same order failed; orders are taken whole.
    OrderHasInvalidLines,
    /// The event does not match the declared event schema (the field names
    /// the path: `event.kind`, `event.properties.query`, …).
    SchemaViolation,
    /// The event names a product the store does not have.
    UnknownProduct,
}

impl ProblemCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid_utf8",
            Self::BadJson => "bad_json",
            Self::TruncatedLine => "truncated_line",
            Self::WrongColumnCount => "wrong_column_count",
            Self::NestedValue => "nested_value",
            Self::MissingRequired => "missing_required",
            Self::BadFormat => "bad_format",
            Self::UnknownValue => "unknown_value",
            Self::OutOfRange => "out_of_range",
            Self::InconsistentOrder => "inconsistent_order",
            Self::UnknownCustomer => "unknown_customer",
            Self::OrderHasInvalidLines => "order_has_invalid_lines",
            Self::SchemaViolation => "schema_violation",
            Self::UnknownProduct => "unknown_product",
        }
    }
}

/// The encryption of one run's quarantined rows.
pub struct RunKey {
    pub run_id: i64,
    cipher: FieldCipher,
}

impl std::fmt::Debug for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunKey")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

fn place(line_no: i64) -> FieldPlace<'static> {
    FieldPlace {
        resource: "quarantine",
        field: "row",
        record_id: line_no,
    }
}

/// The record id a run's data key is wrapped for: negative, so no wrapped
/// run key is ever accepted as a customer's (customer ids are positive).
fn wrap_id(run_id: i64) -> i64 {
    -run_id
}

impl RunKey {
    pub fn seal(&self, line_no: i64, row: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.cipher
            .encrypt(place(line_no), row)
            .map_err(|e| anyhow::anyhow!("sealing a quarantined row: {e}"))
    }

    pub fn open(&self, line_no: i64, ct: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        self.cipher
            .decrypt(place(line_no), ct)
            .map_err(|e| anyhow::anyhow!("opening quarantined row of run {}: {e}", self.run_id))
    }
}

/// What a run is.
#[derive(Clone, Debug)]
pub struct RunInfo<'a> {
    pub source: &'a str,
    pub entity: &'a str,
    pub format: &'a str,
    pub mapping_sha256: &'a str,
    pub actor: &'a str,
    pub now: i64,
}

/// Records a run and creates its data key.
pub async fn start_run(db: &Db, keyring: &Keyring, info: &RunInfo<'_>) -> anyhow::Result<RunKey> {
    let mut tx = db
        .pool
        .begin()
        .await
        .context("cannot start a transaction")?;
    let run_id: i64 = sqlx::query_scalar(
        "INSERT INTO import_runs (source, entity, format, mapping_sha256, actor, started_at, \
         status) VALUES ($1, $2, $3, $4, $5, $6, 'running') RETURNING id",
    )
    .bind(info.source)
    .bind(info.entity)
    .bind(info.format)
    .bind(info.mapping_sha256)
    .bind(info.actor)
    .bind(info.now)
    .fetch_one(&mut *tx)
    .await
    .context("cannot record the import run")?;
    let dek = keyring
        .generate_dek()
        .map_err(|e| anyhow::anyhow!("run key: {e}"))?;
    let wrapped = keyring
        .wrap_dek(&dek, wrap_id(run_id))
        .map_err(|e| anyhow::anyhow!("run key: {e}"))?;
    sqlx::query("UPDATE import_runs SET kek_version = $1, wrapped_dek = $2 WHERE id = $3")
        .bind(i64::from(wrapped.kek_version))
        .bind(&wrapped.bytes)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await.context("cannot record the import run")?;
    Ok(RunKey {
        run_id,
        cipher: dek.cipher(),
    })
}

/// Marks a run finished with its summary (JSON).
pub async fn finish_run(
    db: &Db,
    run_id: i64,
    ok: bool,
    summary: &serde_json::Value,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE import_runs SET status = $1, summary = $2, finished_at = $3 WHERE id = $4")
        .bind(if ok { "completed" } else { "failed" })
        .bind(summary.to_string())
        .bind(now)
        .bind(run_id)
        .execute(&db.pool)
        .await
        .context("cannot record the end of the import run")?;
    Ok(())
}

/// The key of an earlier run, to open its rows.
pub async fn run_key(db: &Db, keyring: &Keyring, run_id: i64) -> anyhow::Result<RunKey> {
    let mut conn = db.pool.acquire().await?;
    run_key_in(&mut conn, keyring, run_id).await
}

async fn run_key_in(
    conn: &mut sqlx::AnyConnection,
    keyring: &Keyring,
    run_id: i64,
) -> anyhow::Result<RunKey> {
    let row = sqlx::query("SELECT kek_version, wrapped_dek FROM import_runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await?
        .with_context(|| format!("import run {run_id} not found"))?;
    let version: Option<i64> = row.try_get(0)?;
    let wrapped: Option<Vec<u8>> = row.try_get(1)?;
    let (Some(version), Some(wrapped)) = (version, wrapped) else {
        anyhow::bail!("import run {run_id} has no key");
    };
    let version = u32::try_from(version).context("import run: bad key version")?;
    let dek = keyring
        .unwrap_dek(version, &wrapped, wrap_id(run_id))
        .map_err(|e| anyhow::anyhow!("import run {run_id}: {e}"))?;
    Ok(RunKey {
        run_id,
        cipher: dek.cipher(),
    })
}

/// A row to quarantine.
pub struct NewEntry<'a> {
    pub source: &'a str,
    pub entity: &'a str,
    pub line_no: i64,
    pub problems: &'a [Problem],
    /// The row in clear; stored only encrypted.
    pub row: &'a [u8],
    pub now: i64,
}

/// A new quarantine entry.
pub async fn insert(
    tx: &mut Transaction<'_, Any>,
    key: &RunKey,
    entry: &NewEntry<'_>,
) -> anyhow::Result<()> {
    let NewEntry {
        source,
        entity,
        line_no,
        problems,
        row,
        now,
    } = *entry;
    let ct = key.seal(line_no, row)?;
    sqlx::query(
        "INSERT INTO quarantine (run_id, source, entity, line_no, reasons, row_ct, status, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7)",
    )
    .bind(key.run_id)
    .bind(source)
    .bind(entity)
    .bind(line_no)
    .bind(serde_json::to_string(problems)?)
    .bind(ct)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The open entry holding exactly `row` at `line_no` of (source, entity),
/// from an earlier run of the same file: a re-run updates it instead of
/// quarantining the same row twice. Rows are compared decrypted (the
/// quarantine keeps no hash of personal data).
pub async fn find_open(
    tx: &mut Transaction<'_, Any>,
    keyring: &Keyring,
    source: &str,
    entity: &str,
    line_no: i64,
    row: &[u8],
) -> anyhow::Result<Option<i64>> {
    let candidates = sqlx::query(
        "SELECT id, run_id, row_ct FROM quarantine WHERE source = $1 AND entity = $2 \
         AND line_no = $3 AND status = 'open' ORDER BY id",
    )
    .bind(source)
    .bind(entity)
    .bind(line_no)
    .fetch_all(&mut **tx)
    .await?;
    for c in candidates {
        let id: i64 = c.try_get(0)?;
        let run_id: i64 = c.try_get(1)?;
        let Some(ct) = c.try_get::<Option<Vec<u8>>, _>(2)? else {
            continue;
        };
        let key = run_key_in(tx, keyring, run_id).await?;
        if key.open(line_no, &ct)?.as_slice() == row {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// A replayed entry that now passed: resolved, ciphertext dropped.
pub async fn resolve(tx: &mut Transaction<'_, Any>, id: i64, run_id: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE quarantine SET status = 'replayed', row_ct = NULL, resolved_run_id = $1 \
         WHERE id = $2",
    )
    .bind(run_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A replayed entry that failed again: its reasons are brought up to date.
pub async fn update_reasons(
    tx: &mut Transaction<'_, Any>,
    id: i64,
    problems: &[Problem],
) -> anyhow::Result<()> {
    sqlx::query("UPDATE quarantine SET reasons = $1 WHERE id = $2")
        .bind(serde_json::to_string(problems)?)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One quarantine entry as listed (no row content).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: i64,
    pub run_id: i64,
    pub source: String,
    pub entity: String,
    pub line_no: i64,
    #[schema(value_type = Vec<Object>)]
    pub reasons: Vec<Problem>,
    pub status: String,
    pub created_at: i64,
}

/// Entries of a source (all sources with `None`), oldest first, after `after_id`.
pub async fn list(
    db: &Db,
    source: Option<&str>,
    status: Option<&str>,
    after_id: i64,
    limit: i64,
) -> anyhow::Result<Vec<Entry>> {
    let rows = sqlx::query(
        "SELECT id, run_id, source, entity, line_no, reasons, status, created_at \
         FROM quarantine WHERE ($1 IS NULL OR source = $1) AND ($2 IS NULL OR status = $2) \
         AND id > $3 ORDER BY id LIMIT $4",
    )
    .bind(source)
    .bind(status)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let reasons: String = r.try_get(5)?;
            Ok(Entry {
                id: r.try_get(0)?,
                run_id: r.try_get(1)?,
                source: r.try_get(2)?,
                entity: r.try_get(3)?,
                line_no: r.try_get(4)?,
                reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                status: r.try_get(6)?,
                created_at: r.try_get(7)?,
            })
        })
        .collect()
}

/// An open entry with its row, decrypted, for a replay.
pub struct OpenRow {
    pub id: i64,
    pub line_no: i64,
    pub row: Zeroizing<Vec<u8>>,
}

/// Open entries of (source, entity) after `after_id`, decrypted, oldest
/// first. `keys` caches run keys across pages.
pub async fn open_rows(
    db: &Db,
    keyring: &Keyring,
    keys: &mut HashMap<i64, Arc<RunKey>>,
    source: &str,
    entity: &str,
    after_id: i64,
    limit: i64,
) -> anyhow::Result<Vec<OpenRow>> {
    let rows = sqlx::query(
        "SELECT id, run_id, line_no, row_ct FROM quarantine \
         WHERE source = $1 AND entity = $2 AND status = 'open' AND id > $3 \
         ORDER BY id LIMIT $4",
    )
    .bind(source)
    .bind(entity)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let run_id: i64 = r.try_get(1)?;
        let line_no: i64 = r.try_get(2)?;
        let ct: Option<Vec<u8>> = r.try_get(3)?;
        let Some(ct) = ct else { continue };
        let key = match keys.get(&run_id) {
            Some(k) => k.clone(),
            None => {
                let k = Arc::new(run_key(db, keyring, run_id).await?);
                keys.insert(run_id, k.clone());
                k
            }
        };
        out.push(OpenRow {
            id,
            line_no,
            row: key.open(line_no, &ct)?,
        });
    }
    Ok(out)
}

/// The open entries of one (source, entity), page by page, for a replay.
/// Entries that fail again stay open, so each page starts after the last
/// one read rather than at the first open entry.
pub struct OpenPages<'a> {
    db: &'a Db,
    keyring: Arc<Keyring>,
    keys: HashMap<i64, Arc<RunKey>>,
    source: &'a str,
    entity: &'a str,
    after: i64,
    limit: i64,
}

impl<'a> OpenPages<'a> {
    pub fn new(
        db: &'a Db,
        keyring: Arc<Keyring>,
        source: &'a str,
        entity: &'a str,
        limit: i64,
    ) -> Self {
        Self {
            db,
            keyring,
            keys: HashMap::new(),
            source,
            entity,
            after: 0,
            limit,
        }
    }

    /// The next page, decrypted; empty when every open entry was read.
    pub async fn next(&mut self) -> anyhow::Result<Vec<OpenRow>> {
        let page = open_rows(
            self.db,
            &self.keyring,
            &mut self.keys,
            self.source,
            self.entity,
            self.after,
            self.limit,
        )
        .await?;
        if let Some(last) = page.last() {
            self.after = last.id;
        }
        Ok(page)
    }
}

/// Open quarantine entries per source.
pub async fn open_counts(db: &Db) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT source, COUNT(*) FROM quarantine WHERE status = 'open' GROUP BY source \
         ORDER BY source",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
