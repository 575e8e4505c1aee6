//! The event stream import: web logs and app analytics as NDJSON, one
//! event per line in the shape `POST /v1/events` takes (`event_id`,
//! `customer_id`, `kind`, `product_sku`, `channel`, `occurred_at`,
//! `properties`), checked against the same declared event schema.
//!
//! Unlike the API, which refuses a batch whole so a client can resend it,
//! a log file is taken line by line: events that pass are stored (a re-run
//! adds nothing, by `event_id`), events that do not are quarantined with
//! every violation (`schema_violation` naming the path, `unknown_customer`,
//! `unknown_product`, `bad_json`, `truncated_line`, …), encrypted like the
//! other sources' failed rows.

use anyhow::Context;
use serde::Deserialize;
use sqlx::{Any, Transaction};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

use super::event_schema::{EventSchema, STORE_CHANNELS, STORE_KINDS};
use super::mapped::{MappedSummary, NothingWritten};
use super::quarantine::{self, Problem, ProblemCode, RunInfo, RunKey};
use super::Progress;
use crate::crypto::Vault;
use crate::db::events::{self, NewEvent};
use crate::db::Db;

/// Events per transaction.
pub const BATCH_EVENTS: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    event_id: String,
    customer_id: Option<String>,
    kind: String,
    product_sku: Option<String>,
    channel: String,
    occurred_at: String,
    properties: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One event stream import.
pub struct EventImport<'a> {
    pub db: &'a Db,
    pub vault: &'a Vault,
    pub schema: &'a EventSchema,
    /// The stream's name (`[a-z0-9_]{1,32}`), for the quarantine and reports.
    pub source: &'a str,
    pub actor: &'a str,
    pub now: i64,
}

struct Line {
    line_no: i64,
    raw: zeroize::Zeroizing<Vec<u8>>,
    parsed: Result<EventLine, Vec<Problem>>,
    /// The quarantine entry this line is replayed from.
    replayed_from: Option<i64>,
}

impl EventImport<'_> {
    /// Imports an NDJSON stream. Errors when the run stops (unreadable
    /// input, database failure); bad events are quarantined.
    pub async fn run<R: Read + Send>(
        &self,
        reader: R,
        progress: &dyn Progress,
    ) -> anyhow::Result<MappedSummary> {
        let started = Instant::now();
        self.check_source()?;
        let mut reader = BufReader::with_capacity(1 << 16, reader);
        let head = reader
            .fill_buf()
            .context("cannot read the input")
            .context(NothingWritten)?;
        if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
            return Err(anyhow::anyhow!(
                "line 1: the file is UTF-16; convert it to UTF-8"
            ))
            .context(NothingWritten);
        }
        let key = self.start_run().await.context(NothingWritten)?;
        let mut summary = self.new_summary(key.run_id);
        let result: anyhow::Result<()> = async {
            let mut batch = Vec::with_capacity(BATCH_EVENTS);
            let mut buf = Vec::new();
            let mut line_no = 0i64;
            loop {
                buf.clear();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .with_context(|| format!("line {}: cannot read", line_no + 1))?;
                if n == 0 {
                    break;
                }
                line_no += 1;
                let complete = buf.ends_with(b"\n");
                let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
                let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                summary.rows_read += 1;
                batch.push(self.parse(line_no, bytes, complete));
                if batch.len() >= BATCH_EVENTS {
                    self.flush(&key, &mut batch, &mut summary).await?;
                    progress.update(0, summary.rows_read);
                }
            }
            self.flush(&key, &mut batch, &mut summary).await
        }
        .await;
        self.finish_run(&key, &mut summary, started, result, progress)
            .await
    }

    /// Replays the stream's open quarantine entries (after the event
    /// schema, a product or a customer they lacked was fixed): the lines go
    /// through the same checks as on import; those that pass are stored and
    /// their entries resolved (ciphertext dropped), the others stay open
    /// with their reasons brought up to date.
    pub async fn replay(&self, progress: &dyn Progress) -> anyhow::Result<MappedSummary> {
        let started = Instant::now();
        self.check_source()?;
        let key = self.start_run().await.context(NothingWritten)?;
        let mut summary = self.new_summary(key.run_id);
        let mut pages = quarantine::OpenPages::new(
            self.db,
            self.vault.keyring(),
            self.source,
            "events",
            BATCH_EVENTS as i64,
        );
        let result: anyhow::Result<()> = async {
            loop {
                let page = pages.next().await?;
                if page.is_empty() {
                    break;
                }
                let mut batch: Vec<Line> = page
                    .into_iter()
                    .map(|entry| {
                        summary.rows_read += 1;
                        let mut line = self.parse(entry.line_no, &entry.row, true);
                        line.replayed_from = Some(entry.id);
                        line
                    })
                    .collect();
                self.flush(&key, &mut batch, &mut summary).await?;
                progress.update(0, summary.rows_read);
            }
            Ok(())
        }
        .await;
        self.finish_run(&key, &mut summary, started, result, progress)
            .await
    }

    fn check_source(&self) -> anyhow::Result<()> {
        let valid = !self.source.is_empty()
            && self.source.len() <= 32
            && self
                .source
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(anyhow::anyhow!("--source: 1-32 characters of a-z0-9_"))
                .context(NothingWritten);
        }
        Ok(())
    }

    async fn start_run(&self) -> anyhow::Result<RunKey> {
        quarantine::start_run(
            self.db,
            &self.vault.keyring(),
            &RunInfo {
                source: self.source,
                entity: "events",
                format: "ndjson",
                mapping_sha256: "",
                actor: self.actor,
                now: self.now,
            },
        )
        .await
    }

    fn new_summary(&self, run_id: i64) -> MappedSummary {
        MappedSummary {
            run_id,
            source: self.source.to_owned(),
            entity: "events".to_owned(),
            ..MappedSummary::default()
        }
    }

    async fn finish_run(
        &self,
        key: &RunKey,
        summary: &mut MappedSummary,
        started: Instant,
        result: anyhow::Result<()>,
        progress: &dyn Progress,
    ) -> anyhow::Result<MappedSummary> {
        summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let json = serde_json::to_value(&*summary)?;
        let recorded =
            quarantine::finish_run(self.db, key.run_id, result.is_ok(), &json, self.now).await;
        progress.finish();
        result?;
        recorded?;
        Ok(std::mem::take(summary))
    }

    fn parse(&self, line_no: i64, bytes: &[u8], complete: bool) -> Line {
        let raw = zeroize::Zeroizing::new(bytes.to_vec());
        let parsed = match std::str::from_utf8(bytes) {
            Err(_) => Err(vec![Problem::row(ProblemCode::InvalidUtf8)]),
            Ok(text) => match serde_json::from_str::<EventLine>(text) {
                Ok(e) => self.check(&e).map(|()| e),
                Err(_) if !complete => Err(vec![Problem::row(ProblemCode::TruncatedLine)]),
                Err(_) => Err(vec![Problem::row(ProblemCode::BadJson)]),
            },
        };
        Line {
            line_no,
            raw,
            parsed,
            replayed_from: None,
        }
    }

    fn check(&self, e: &EventLine) -> Result<(), Vec<Problem>> {
        let mut problems: Vec<Problem> = self
            .schema
            .check(
                "event",
                &e.kind,
                e.product_sku.is_some(),
                e.properties.as_ref(),
            )
            .into_iter()
            .map(|v| Problem {
                code: ProblemCode::SchemaViolation,
                field: v.split(':').next().map(str::to_owned),
            })
            .collect();
        if super::validate_key(&e.event_id).is_none() {
            problems.push(Problem::new(ProblemCode::BadFormat, "event_id"));
        }
        if e.customer_id
            .as_deref()
            .is_some_and(|c| super::validate_key(c).is_none())
        {
            problems.push(Problem::new(ProblemCode::BadFormat, "customer_id"));
        }
        if !STORE_CHANNELS.contains(&e.channel.as_str()) {
            problems.push(Problem::new(ProblemCode::UnknownValue, "channel"));
        }
        match crate::clock::parse_rfc3339(&e.occurred_at) {
            None => problems.push(Problem::new(ProblemCode::BadFormat, "occurred_at")),
            Some(t) if t > self.now + 300_000_000 => {
                problems.push(Problem::new(ProblemCode::OutOfRange, "occurred_at"));
            }
            Some(_) => {}
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    async fn flush(
        &self,
        key: &RunKey,
        batch: &mut Vec<Line>,
        summary: &mut MappedSummary,
    ) -> anyhow::Result<()> {
        let lines = std::mem::take(batch);
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .db
            .pool
            .begin()
            .await
            .context("cannot start a transaction")?;
        let customers: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.parsed.as_ref().ok()?.customer_id.as_deref())
            .collect();
        let skus: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.parsed.as_ref().ok()?.product_sku.as_deref())
            .collect();
        let customer_ids = super::store::customer_ids(&mut tx, &customers).await?;
        let product_ids = crate::db::products::ids_by_sku(&mut tx, &skus).await?;
        let mut rows = Vec::new();
        let mut uids = HashSet::new();
        for line in &lines {
            let event = match &line.parsed {
                Ok(e) => e,
                Err(problems) => {
                    self.quarantine(&mut tx, key, line, problems, summary)
                        .await?;
                    continue;
                }
            };
            let mut problems = Vec::new();
            let customer_id = match &event.customer_id {
                Some(c) => match customer_ids.get(c) {
                    Some(id) => Some(*id),
                    None => {
                        problems.push(Problem::new(ProblemCode::UnknownCustomer, "customer_id"));
                        None
                    }
                },
                None => None,
            };
            let product_id = match &event.product_sku {
                Some(p) => match product_ids.get(p) {
                    Some(id) => Some(*id),
                    None => {
                        problems.push(Problem::new(ProblemCode::UnknownProduct, "product_sku"));
                        None
                    }
                },
                None => None,
            };
            if !problems.is_empty() {
                self.quarantine(&mut tx, key, line, &problems, summary)
                    .await?;
                continue;
            }
            if let Some(id) = line.replayed_from {
                quarantine::resolve(&mut tx, id, key.run_id).await?;
            }
            if !uids.insert(event.event_id.as_str()) {
                summary.already_present += 1;
                continue;
            }
            let (Some(kind), Some(channel)) = (
                STORE_KINDS.iter().find(|k| **k == event.kind),
                STORE_CHANNELS.iter().find(|c| **c == event.channel),
            ) else {
                continue;
            };
            rows.push(NewEvent {
                event_uid: event.event_id.clone(),
                customer_id,
                kind,
                product_id,
                channel,
                occurred_at: crate::clock::parse_rfc3339(&event.occurred_at).unwrap_or(0),
                properties: event
                    .properties
                    .as_ref()
                    .filter(|p| !p.is_empty())
                    .map(|p| serde_json::Value::Object(p.clone()).to_string()),
            });
        }
        let created = events::insert_many(&mut tx, &rows, self.now).await?;
        summary.imported += created;
        summary.already_present += rows.len() as u64 - created;
        tx.commit()
            .await
            .context("cannot commit an import batch (is the database writable?)")?;
        Ok(())
    }

    async fn quarantine(
        &self,
        tx: &mut Transaction<'_, Any>,
        key: &RunKey,
        line: &Line,
        problems: &[Problem],
        summary: &mut MappedSummary,
    ) -> anyhow::Result<()> {
        summary.quarantined += 1;
        for p in problems {
            *summary
                .problems
                .entry(p.code.as_str().to_owned())
                .or_insert(0) += 1;
        }
        if let Some(id) = line.replayed_from {
            return quarantine::update_reasons(tx, id, problems).await;
        }
        let existing = quarantine::find_open(
            tx,
            &self.vault.keyring(),
            self.source,
            "events",
            line.line_no,
            &line.raw,
        )
        .await?;
        match existing {
            Some(id) => quarantine::update_reasons(tx, id, problems).await,
            None => {
                let entry = quarantine::NewEntry {
                    source: self.source,
                    entity: "events",
                    line_no: line.line_no,
                    problems,
                    row: &line.raw,
                    now: self.now,
                };
                quarantine::insert(tx, key, &entry).await
            }
        }
    }
}
