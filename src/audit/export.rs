//! Reading the trail: filtered, cursor-paginated queries (newest first) for
//! `GET /v1/audit`, and streaming exports (NDJSON or CSV) for
//! `GET /v1/audit/export`, paging internally so memory stays constant.
//!
//! NDJSON export lines, one JSON object each, tagged by `type`:
//! a `header` (`{"type":"header","format":"custodian-audit","version":1,
//! "filtered":bool}`), then per instance (by name) its `checkpoint` lines
//! (`instance, seq, hash, signed_at, key_id, signature`, hex) followed by
//! its `event` lines in seq order (every event field plus `instance, seq,
//! prev_hash, hash`, hex), and last a `manifest` signed with the checkpoint
//! key (filter, and per chain the event count and first and last seq and
//! hash). That is all `custodian audit verify --file` needs. CSV carries the events with their hashes but no checkpoints; it
//! is for spreadsheets, not for verification.

use axum::body::Bytes;
use base64::Engine;
use futures::Stream;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::event::hex_hash;
use super::event::{Action, Decision};
use super::key::Checkpoint;
use super::stats::HOUR_MICROS;
use super::store::{self, ReadRow, StoredEvent};
use crate::db::Db;
use crate::error::ApiError;

/// Filters of `GET /v1/audit` and the export; every one optional, combined
/// with AND. Times are microseconds, `from` inclusive, `to` exclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub instance: Option<String>,
    pub actor: Option<String>,
    pub customer: Option<i64>,
    pub purpose: Option<String>,
    pub action: Option<Action>,
    pub decision: Option<Decision>,
    pub status: Option<u16>,
}

impl AuditFilter {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a decoded event passes every filter. The block query only
    /// narrows (by time, instance and the customer index); this decides.
    pub fn matches(&self, s: &StoredEvent) -> bool {
        let e = &s.event;
        self.from.is_none_or(|v| e.occurred_at >= v)
            && self.to.is_none_or(|v| e.occurred_at < v)
            && self.instance.as_ref().is_none_or(|v| *v == s.instance)
            && self.actor.as_ref().is_none_or(|v| *v == e.actor)
            && self.customer.is_none_or(|v| e.customers.contains(&v))
            && self
                .purpose
                .as_ref()
                .is_none_or(|v| Some(v) == e.purpose.as_ref())
            && self.action.as_ref().is_none_or(|v| *v == e.action)
            && self.decision.is_none_or(|v| v == e.decision)
            && self.status.is_none_or(|v| v == e.status)
    }
}

/// One page of events, newest first.
#[derive(Clone, Debug, Serialize)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// Pass back as `cursor` for the next (older) page; `None` at the end.
    pub next_cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("invalid cursor")]
    BadCursor,
    #[error("audit store error")]
    Store(#[from] anyhow::Error),
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::BadCursor => ApiError::bad_request("invalid_cursor", "invalid cursor"),
            QueryError::Store(e) => ApiError::internal(e),
        }
    }
}

/// Largest page `query` returns.
pub const MAX_LIMIT: u32 = 1000;

#[derive(Clone)]
enum Bind {
    Int(i64),
    Text(String),
}

/// A WHERE clause under construction, numbering `$n` as it goes.
#[derive(Clone, Default)]
struct Where {
    sql: String,
    binds: Vec<Bind>,
}

impl Where {
    /// Appends `AND condition`, numbering each `?` in it as the next `$n`.
    fn and(&mut self, condition: &str, values: Vec<Bind>) {
        self.sql.push_str(if self.sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        });
        let mut n = self.binds.len();
        for (i, part) in condition.split('?').enumerate() {
            if i > 0 {
                n += 1;
                self.sql.push_str(&format!("${n}"));
            }
            self.sql.push_str(part);
        }
        self.binds.extend(values);
    }

    /// The block-level part of `filter`: the blocks that can hold a match.
    fn filter(filter: &AuditFilter) -> Self {
        let mut w = Where::default();
        if let Some(v) = filter.from {
            w.and("b.at >= ?", vec![Bind::Int(v)]);
        }
        if let Some(v) = filter.to {
            w.and("b.at < ?", vec![Bind::Int(v)]);
        }
        if let Some(v) = &filter.instance {
            w.and("b.instance = ?", vec![Bind::Text(v.clone())]);
        }
        // Actor, purpose, action and decision are matched on decoded
        // events, but the hourly summaries (`audit_stats`) know which hours
        // of a chain hold any such event, and every event of a block has
        // the block's time: a block of an hour without one cannot match
        // and is not read. Blocks the summaries have not counted yet are
        // read and matched as before, so nothing is missed.
        let keys: Vec<(&str, String)> = [
            ("actor", filter.actor.clone()),
            ("purpose", filter.purpose.clone()),
            (
                "action",
                filter.action.as_ref().map(|a| a.as_str().to_owned()),
            ),
            ("decision", filter.decision.map(|d| d.as_str().to_owned())),
        ]
        .into_iter()
        .filter_map(|(column, value)| value.map(|v| (column, v)))
        .collect();
        if !keys.is_empty() {
            let mut condition = format!(
                "(b.first_seq > COALESCE((SELECT p.counted_through FROM audit_stats_progress p \
                 WHERE p.instance = b.instance), 0) \
                 OR EXISTS (SELECT 1 FROM audit_stats s WHERE s.instance = b.instance \
                 AND s.hour = b.at / {HOUR_MICROS} AND s.events > 0"
            );
            for (column, _) in &keys {
                condition.push_str(&format!(" AND s.{column} = ?"));
            }
            condition.push_str("))");
            w.and(
                &condition,
                keys.into_iter().map(|(_, v)| Bind::Text(v)).collect(),
            );
        }
        if let Some(v) = filter.customer {
            // The index lags the writer by up to one indexing pass: blocks
            // past their chain's progress are read and matched without it.
            w.and(
                "(EXISTS (SELECT 1 FROM audit_event_customers c WHERE c.customer_id = ? \
                 AND c.instance = b.instance AND c.seq BETWEEN b.first_seq AND b.last_seq) \
                 OR b.last_seq > COALESCE((SELECT p.indexed_through FROM audit_index_progress p \
                 WHERE p.instance = b.instance), 0))",
                vec![Bind::Int(v)],
            );
        }
        w
    }

    /// Blocks strictly before `(at, instance, first_seq)` in newest-first
    /// order (`inclusive`: that block too).
    fn before(&mut self, at: i64, instance: &str, first_seq: i64, inclusive: bool) {
        let op = if inclusive { "<=" } else { "<" };
        self.and(
            &format!(
                "(b.at < ? OR (b.at = ? AND b.instance < ?) \
                 OR (b.at = ? AND b.instance = ? AND b.first_seq {op} ?))"
            ),
            vec![
                Bind::Int(at),
                Bind::Int(at),
                Bind::Text(instance.to_owned()),
                Bind::Int(at),
                Bind::Text(instance.to_owned()),
                Bind::Int(first_seq),
            ],
        );
    }
}

fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    binds: Vec<Bind>,
) -> Query<'q, Any, AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::Int(v) => q.bind(v),
            Bind::Text(v) => q.bind(v),
        };
    }
    q
}

/// Opaque cursor: base64url of `v1:<occurred_at>:<seq>:<instance>`.
fn encode_cursor(e: &StoredEvent) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "v1:{}:{}:{}",
        e.event.occurred_at, e.seq, e.instance
    ))
}

fn decode_cursor(c: &str) -> Option<(i64, i64, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let mut parts = text.splitn(4, ':');
    if parts.next()? != "v1" {
        return None;
    }
    let at = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    Some((at, seq, parts.next()?.to_owned()))
}

/// Blocks fetched per round of a query.
const QUERY_BLOCKS: i64 = 200;
/// Blocks of a query's first fetch.
const FIRST_BLOCKS: i64 = 2;

/// Events matching `filter`, newest first (by time, then instance, then
/// seq), `limit` at most (capped at [`MAX_LIMIT`]), after `cursor`. Reads
/// blocks newest first until the page is full: a filter on actor, purpose,
/// action, decision or status reads every block of the time range it
/// covers, the customer filter only blocks the index names.
pub async fn query(
    db: &Db,
    filter: &AuditFilter,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page, QueryError> {
    let want = usize::try_from(limit.clamp(1, MAX_LIMIT)).unwrap_or(1);
    let cursor = cursor
        .map(|c| decode_cursor(c).ok_or(QueryError::BadCursor))
        .transpose()?;
    let mut base = Where::filter(filter);
    if let Some((at, seq, instance)) = &cursor {
        base.before(*at, instance, *seq, true);
    }
    let older_than_cursor = |e: &StoredEvent| match &cursor {
        None => true,
        Some((at, seq, instance)) => {
            (e.event.occurred_at, e.instance.as_str(), e.seq) < (*at, instance.as_str(), *seq)
        }
    };
    let mut events = Vec::new();
    let mut scanned: Option<(i64, String, i64)> = None;
    // Few blocks first (a first page is usually in the newest one or two),
    // more while the filter keeps missing: a page never fetches hundreds
    // of blocks' bytes to show one block's events.
    let mut batch = FIRST_BLOCKS;
    'scan: loop {
        let mut w = base.clone();
        if let Some((at, instance, first_seq)) = &scanned {
            w.before(*at, instance, *first_seq, false);
        }
        let sql = format!(
            "SELECT b.at, b.instance, b.first_seq, b.events FROM audit_blocks b{} \
             ORDER BY b.at DESC, b.instance DESC, b.first_seq DESC LIMIT {batch}",
            w.sql
        );
        let blocks = bind_all(sqlx::query(&sql), w.binds)
            .fetch_all(&db.pool)
            .await
            .and_then(|rows| {
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                    .collect::<Result<Vec<(i64, String, i64, Vec<u8>)>, sqlx::Error>>()
            })
            .map_err(|e| QueryError::Store(e.into()))?;
        let fetched = blocks.len();
        for (at, instance, first_seq, bytes) in blocks {
            for row in store::decode_block(&instance, first_seq, &bytes)
                .into_iter()
                .rev()
            {
                let e = match row {
                    ReadRow::Ok(e) => e,
                    ReadRow::Bad { seq, why } => {
                        return Err(QueryError::Store(anyhow::anyhow!(
                            "audit event {instance}#{seq} unreadable: {why}"
                        )))
                    }
                };
                if older_than_cursor(&e) && filter.matches(&e) {
                    events.push(e);
                    if events.len() > want {
                        break 'scan;
                    }
                }
            }
            scanned = Some((at, instance, first_seq));
        }
        if i64::try_from(fetched).unwrap_or(0) < batch {
            break;
        }
        batch = (batch * 4).min(QUERY_BLOCKS);
    }
    let more = events.len() > want;
    events.truncate(want);
    let next_cursor = if more {
        events.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Page {
        events,
        next_cursor,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Ndjson,
    Csv,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "application/x-ndjson",
            ExportFormat::Csv => "text/csv",
        }
    }
}

/// A line of the NDJSON export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Header(Header),
    Checkpoint(CheckpointLine),
    Event(Box<StoredEvent>),
    Manifest(Manifest),
}

/// What an export claims, signed with the checkpoint key as the file's last
/// line: the filter it was made with, and per chain how many events it
/// holds and its first and last (seq, hash). The header's `filtered` flag
/// is not signed, so verification trusts this instead: a file with an event
/// line removed and its header relabelled "filtered" no longer verifies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub body: ManifestBody,
    pub key_id: String,
    /// Ed25519 over `custodian.audit.manifest.v1 ‖ canonical JSON of body`, hex.
    pub signature: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestBody {
    /// The filter, as `name=value` pairs in a fixed order; empty: everything.
    pub filter: String,
    pub chains: Vec<ChainSummary>,
    /// When the export was made (microseconds).
    pub exported_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSummary {
    pub instance: String,
    pub events: u64,
    pub first_seq: i64,
    #[serde(with = "hex_hash")]
    pub first_hash: super::event::Hash,
    pub last_seq: i64,
    #[serde(with = "hex_hash")]
    pub last_hash: super::event::Hash,
}

impl ManifestBody {
    /// The bytes the signature covers (serde_json writes struct fields in
    /// declaration order, so parse-and-reserialize gives the same bytes).
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn count(&mut self, e: &StoredEvent) {
        match self.chains.last_mut() {
            Some(c) if c.instance == e.instance => {
                c.events += 1;
                c.last_seq = e.seq;
                c.last_hash = e.hash;
            }
            _ => self.chains.push(ChainSummary {
                instance: e.instance.clone(),
                events: 1,
                first_seq: e.seq,
                first_hash: e.hash,
                last_seq: e.seq,
                last_hash: e.hash,
            }),
        }
    }
}

impl AuditFilter {
    /// A stable text of the filter for the manifest.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        };
        put("from", self.from.map(|v| v.to_string()));
        put("to", self.to.map(|v| v.to_string()));
        put("instance", self.instance.clone());
        put("actor", self.actor.clone());
        put("customer", self.customer.map(|v| v.to_string()));
        put("purpose", self.purpose.clone());
        put(
            "action",
            self.action.as_ref().map(|a| a.as_str().to_owned()),
        );
        put("decision", self.decision.map(|d| d.as_str().to_owned()));
        put("status", self.status.map(|s| s.to_string()));
        parts.join("&")
    }
}

/// Signs `body` into the manifest line.
pub fn sign_manifest(signer: &super::key::Signer, body: ManifestBody) -> Manifest {
    let signature = hex::encode(signer.sign_manifest(&body.canonical()));
    Manifest {
        body,
        key_id: signer.public_key().key_id(),
        signature,
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// A filtered export has gaps; verification then checks what it has.
    pub filtered: bool,
}

/// A signed chain head, as `GET /v1/audit/head` gives it and
/// `POST /v1/audit/verify/since` takes it back.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointLine {
    /// The instance whose chain this is.
    pub instance: String,
    #[serde(deserialize_with = "crate::whole::whole")]
    pub seq: i64,
    /// SHA-256 of the event at `seq`, in hex.
    #[serde(with = "hex_hash")]
    #[schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$")]
    pub hash: super::event::Hash,
    /// When the head was signed (microseconds since the Unix epoch).
    #[serde(deserialize_with = "crate::whole::whole")]
    pub signed_at: i64,
    pub key_id: String,
    /// Ed25519 signature, in hex (anything else fails verification).
    pub signature: String,
}

impl CheckpointLine {
    pub fn from_checkpoint(cp: &Checkpoint) -> Self {
        Self {
            instance: cp.instance.clone(),
            seq: cp.seq,
            hash: cp.hash,
            signed_at: cp.signed_at,
            key_id: cp.key_id.clone(),
            signature: hex::encode(&cp.signature),
        }
    }

    pub fn into_checkpoint(self) -> Checkpoint {
        Checkpoint {
            instance: self.instance,
            seq: self.seq,
            hash: self.hash,
            signed_at: self.signed_at,
            key_id: self.key_id,
            // Undecodable hex simply fails signature verification.
            signature: hex::decode(&self.signature).unwrap_or_default(),
        }
    }
}

/// Blocks per export page (a block holds one writer batch).
const EXPORT_BLOCKS: i64 = 100;

enum Stage {
    Header,
    Instances,
    Chain {
        instances: Vec<String>,
        checkpoints_done: bool,
        after: i64,
    },
    Done,
    /// The manifest is out.
    Finished,
}

/// Streams the events matching `filter` (and, for NDJSON, every checkpoint
/// of the instances exported), per instance in seq order, one page of
/// [`EXPORT_PAGE`] rows in memory at a time.
///
/// NDJSON ends with a [`Manifest`] signed by `signer`, made at `now`.
pub fn export_stream(
    db: Db,
    filter: AuditFilter,
    format: ExportFormat,
    signer: std::sync::Arc<super::key::Signer>,
    now: i64,
) -> impl Stream<Item = anyhow::Result<Bytes>> + Send + 'static {
    let manifest = ManifestBody {
        filter: filter.describe(),
        chains: Vec::new(),
        exported_at: now,
    };
    futures::stream::try_unfold((Stage::Header, manifest), move |(stage, mut manifest)| {
        let db = db.clone();
        let filter = filter.clone();
        let signer = signer.clone();
        async move {
            let mut stage = stage;
            loop {
                match stage {
                    Stage::Header => {
                        let bytes = match format {
                            ExportFormat::Ndjson => ndjson(&Line::Header(Header {
                                format: "custodian-audit".to_owned(),
                                version: 1,
                                filtered: !filter.is_empty(),
                            }))?,
                            ExportFormat::Csv => csv_header()?,
                        };
                        return Ok(Some((Bytes::from(bytes), (Stage::Instances, manifest))));
                    }
                    Stage::Instances => {
                        let mut instances = store::instances(&db).await?;
                        if let Some(only) = &filter.instance {
                            instances.retain(|i| i == only);
                        }
                        instances.reverse(); // popped from the back
                        stage = Stage::Chain {
                            instances,
                            checkpoints_done: false,
                            after: 0,
                        };
                    }
                    Stage::Chain {
                        mut instances,
                        checkpoints_done,
                        after,
                    } => {
                        let Some(instance) = instances.last().cloned() else {
                            stage = Stage::Done;
                            continue;
                        };
                        if !checkpoints_done {
                            let mut out = Vec::new();
                            if format == ExportFormat::Ndjson {
                                for cp in store::checkpoints(&db, &instance).await? {
                                    out.extend(ndjson(&Line::Checkpoint(
                                        CheckpointLine::from_checkpoint(&cp),
                                    ))?);
                                }
                            }
                            let next = Stage::Chain {
                                instances,
                                checkpoints_done: true,
                                after: 0,
                            };
                            if out.is_empty() {
                                stage = next;
                                continue;
                            }
                            return Ok(Some((Bytes::from(out), (next, manifest))));
                        }
                        let (rows, next_block) =
                            export_page(&db, &filter, &instance, after).await?;
                        let Some(last) = next_block else {
                            instances.pop();
                            stage = Stage::Chain {
                                instances,
                                checkpoints_done: false,
                                after: 0,
                            };
                            continue;
                        };
                        let mut out = Vec::new();
                        for row in rows {
                            match (row, format) {
                                (ReadRow::Ok(e), ExportFormat::Ndjson) => {
                                    manifest.count(&e);
                                    out.extend(ndjson(&Line::Event(Box::new(e)))?);
                                }
                                (ReadRow::Ok(e), ExportFormat::Csv) => out.extend(csv_row(&e)?),
                                // Exported as unreadable so verification names it.
                                (ReadRow::Bad { seq, .. }, ExportFormat::Ndjson) => out.extend(
                                    format!("{{\"type\":\"event\",\"instance\":{},\"seq\":{seq},\"unreadable\":true}}\n",
                                        serde_json::to_string(&instance)?).into_bytes(),
                                ),
                                (ReadRow::Bad { .. }, ExportFormat::Csv) => {}
                            }
                        }
                        stage = Stage::Chain {
                            instances,
                            checkpoints_done: true,
                            after: last,
                        };
                        if !out.is_empty() {
                            return Ok(Some((Bytes::from(out), (stage, manifest))));
                        }
                    }
                    Stage::Done => {
                        if format != ExportFormat::Ndjson {
                            return Ok(None);
                        }
                        let line = ndjson(&Line::Manifest(sign_manifest(
                            &signer,
                            std::mem::take(&mut manifest),
                        )))?;
                        return Ok(Some((Bytes::from(line), (Stage::Finished, manifest))));
                    }
                    Stage::Finished => return Ok(None),
                }
            }
        }
    })
}

/// The next blocks of `instance` after block key `after`, decoded and
/// filtered, and the key to continue from (`None`: the chain is done).
/// Unreadable events are kept, so that verification names them.
async fn export_page(
    db: &Db,
    filter: &AuditFilter,
    instance: &str,
    after: i64,
) -> anyhow::Result<(Vec<ReadRow>, Option<i64>)> {
    let mut w = Where::filter(filter);
    w.and(
        "b.instance = ? AND b.first_seq > ?",
        vec![Bind::Text(instance.to_owned()), Bind::Int(after)],
    );
    let sql = format!(
        "SELECT b.first_seq, b.events FROM audit_blocks b{} ORDER BY b.first_seq \
         LIMIT {EXPORT_BLOCKS}",
        w.sql
    );
    let blocks = bind_all(sqlx::query(&sql), w.binds)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<Vec<(i64, Vec<u8>)>, sqlx::Error>>()?;
    let next = blocks.last().map(|(first, _)| *first);
    let rows = blocks
        .iter()
        .flat_map(|(first, bytes)| store::decode_block(instance, *first, bytes))
        .filter(|r| match r {
            ReadRow::Ok(e) => filter.matches(e),
            ReadRow::Bad { .. } => true,
        })
        .collect();
    Ok((rows, next))
}

fn ndjson(line: &Line) -> anyhow::Result<Vec<u8>> {
    let mut v = serde_json::to_vec(line)?;
    v.push(b'\n');
    Ok(v)
}

const CSV_COLUMNS: [&str; 17] = [
    "instance",
    "seq",
    "occurred_at",
    "request_id",
    "actor",
    "roles",
    "action",
    "resource",
    "customers",
    "purpose",
    "decision",
    "reason",
    "fields",
    "status",
    "records",
    "prev_hash",
    "hash",
];

fn csv_header() -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    Ok(w.into_inner()?)
}

/// Caller-controlled text (token claims, request ids) could start with a
/// spreadsheet formula; a leading apostrophe makes spreadsheet programs show
/// it as text instead of evaluating it. The NDJSON export, which offline
/// verification reads, keeps the values exact.
fn spreadsheet_safe(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    }
}

fn csv_row(s: &StoredEvent) -> anyhow::Result<Vec<u8>> {
    let e = &s.event;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        s.instance.clone(),
        s.seq.to_string(),
        crate::clock::rfc3339(e.occurred_at),
        spreadsheet_safe(&e.request_id),
        spreadsheet_safe(&e.actor),
        spreadsheet_safe(&e.roles.join(" ")),
        e.action.as_str().to_owned(),
        spreadsheet_safe(&e.resource),
        e.customers
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        e.purpose.clone().unwrap_or_default(),
        e.decision.as_str().to_owned(),
        spreadsheet_safe(&e.reason),
        e.fields
            .iter()
            .map(|(f, t)| format!("{f}={}", t.as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        e.status.to_string(),
        e.records.to_string(),
        hex::encode(s.prev_hash),
        hex::encode(s.hash),
    ])?;
    Ok(w.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_numbers_placeholders_in_order() {
        let f = AuditFilter {
            from: Some(5),
            actor: Some("a".into()),
            customer: Some(7),
            instance: Some("gw".into()),
            status: Some(403),
            ..AuditFilter::default()
        };
        let mut w = Where::filter(&f);
        assert!(w.sql.contains("b.at >= $1"), "{}", w.sql);
        assert!(w.sql.contains("b.instance = $2"), "{}", w.sql);
        // The actor narrows blocks to the hours whose summaries name it
        // (and is matched on decoded events); status only on decoded events.
        assert!(w.sql.contains("s.actor = $3"), "{}", w.sql);
        assert!(w.sql.contains("c.customer_id = $4"), "{}", w.sql);
        assert!(!w.sql.contains("status"), "{}", w.sql);
        assert_eq!(w.binds.len(), 4);
        w.before(1, "gw", 2, true);
        assert!(w.sql.ends_with("b.first_seq <= $10))"), "{}", w.sql);
    }

    #[test]
    fn filter_matches_decoded_events() {
        use crate::domain::Treatment;
        let event = super::super::AuditEvent::system("svc", Action::CustomerRead, "/r")
            .customer(7)
            .field("email", Treatment::Masked)
            .allow(super::super::Reason::Admin("x".into()), 200)
            .build();
        let s = StoredEvent {
            instance: "gw".into(),
            seq: 1,
            event,
            prev_hash: [0; 32],
            hash: [0; 32],
        };
        let yes = [
            AuditFilter::default(),
            AuditFilter {
                customer: Some(7),
                ..Default::default()
            },
            AuditFilter {
                actor: Some("svc".into()),
                status: Some(200),
                ..Default::default()
            },
            AuditFilter {
                decision: Some(Decision::Allow),
                ..Default::default()
            },
        ];
        let no = [
            AuditFilter {
                customer: Some(8),
                ..Default::default()
            },
            AuditFilter {
                actor: Some("other".into()),
                ..Default::default()
            },
            AuditFilter {
                purpose: Some("marketing".into()),
                ..Default::default()
            },
            AuditFilter {
                action: Some(Action::AuditRead),
                ..Default::default()
            },
            AuditFilter {
                status: Some(403),
                ..Default::default()
            },
            AuditFilter {
                instance: Some("gw-2".into()),
                ..Default::default()
            },
            AuditFilter {
                from: Some(s.event.occurred_at + 1),
                ..Default::default()
            },
            AuditFilter {
                to: Some(s.event.occurred_at),
                ..Default::default()
            },
        ];
        for f in yes {
            assert!(f.matches(&s), "{f:?}");
        }
        for f in no {
            assert!(!f.matches(&s), "{f:?}");
        }
    }

    #[test]
    fn cursor_round_trips_and_rejects_junk() {
        assert_eq!(decode_cursor("junk"), None);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v1:12:3:gw-1");
        assert_eq!(decode_cursor(&raw), Some((12, 3, "gw-1".into())));
    }
}

#[cfg(test)]
mod csv_tests {
    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(
            super::spreadsheet_safe("=HYPERLINK(\"x\")"),
            "'=HYPERLINK(\"x\")"
        );
        assert_eq!(super::spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(super::spreadsheet_safe("alice"), "alice");
    }
}
