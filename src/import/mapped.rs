//! The mapped import: any system's customers or orders, as CSV or NDJSON,
//! through a [`Mapping`] into the standard schema, standardized, matched
//! against the people already in the store, and written in batches, one
//! transaction each (the batch's data and its quarantined rows together).
//!
//! Every input row ends up in exactly one bucket of the [`MappedSummary`]:
//! `imported` (created), `merged` (linked to a customer the store already
//! had: the same external id, or the same normalized e-mail or phone,
//! compared through the blind index), `already_present` (an earlier run of
//! this source brought it), `quarantined` (with its reasons), or `skipped`
//! (with a reason). The buckets add up to `rows_read`.
//!
//! **Duplicates across sources.** A customer row's key is the mapping's
//! `id_prefix` plus its id. It is the same person as a stored customer when,
//! in this order: this source brought that key before (`customer_sources`);
//! a customer has that external id; or, for each rule of `match_on` (default
//! e-mail, then phone), a customer has the same blind index of the
//! normalized value (trimmed, case-folded e-mail; E.164 phone). Ties go to
//! the oldest customer. The stored customer is kept as it is (first source
//! wins; nothing is overwritten by a later source), the link is recorded
//! in `customer_sources` with the rule that made it, and the row's consent
//! goes to the linked customer's ledger. Values are never compared in clear.
//!
//! **Orders** are taken whole: the lines of one order (consecutive rows with
//! the same `order_id`) are imported together, or quarantined together when
//! any line fails, so a replay brings the whole order.

use anyhow::Context;
use serde::Serialize;
use sqlx::{Any, Row, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::time::Instant;

use super::input::{RawRow, Rows};
use super::mapping::{Entity, FieldKind, Mapping, MatchRule};
use super::quarantine::{self, Problem, ProblemCode, RunInfo, RunKey};
use super::standardize;
use super::store::insert_customers;
use super::Progress;
use crate::crypto::{BlindField, Vault};
use crate::db::bulk::{list_placeholders, Placeholders};
use crate::db::consents::{self, NewConsentEvent};
use crate::db::customers::{NewCustomer, Profile};
use crate::db::orders::{self, NewOrder, NewOrderLine, OrderKind};
use crate::db::products::{self, NewProduct};
use crate::db::Db;

/// Rows per transaction.
pub const BATCH_ROWS: usize = 500;
/// Largest quantity of one order line accepted.
pub const MAX_QUANTITY: i64 = 100_000;
/// Largest unit price accepted, in cents.
pub const MAX_UNIT_PRICE_CENTS: i64 = 100_000_000;

/// The context of an error that stopped a run before it wrote anything
/// (a bad header, a mapping naming a missing column, a read-only store):
/// there is nothing to audit or to clean up.
#[derive(Clone, Copy, Debug)]
pub struct NothingWritten;

impl std::fmt::Display for NothingWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nothing was written")
    }
}

impl NothingWritten {
    /// Whether `result` failed before writing anything.
    pub fn in_result<T>(result: &anyhow::Result<T>) -> bool {
        result
            .as_ref()
            .err()
            .is_some_and(|e| e.downcast_ref::<NothingWritten>().is_some())
    }
}

/// Where a row came from: the file, or an open quarantine entry (a replay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    File,
    Quarantine(i64),
}

/// Why a row was skipped (counted, not quarantined: there is nothing to fix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MappedSkip {
    /// The person matched an erased customer, or is on the DSR suppression
    /// list: they are not brought back.
    ErasedPerson,
    /// The row repeats a key already seen in this batch.
    DuplicateInBatch,
}

/// The outcome of a mapped import or a replay.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MappedSummary {
    pub run_id: i64,
    pub source: String,
    pub entity: String,
    pub rows_read: u64,
    pub imported: u64,
    pub merged: u64,
    pub already_present: u64,
    pub quarantined: u64,
    pub skipped: BTreeMap<MappedSkip, u64>,
    /// Replays: quarantined rows that now passed.
    pub replayed: u64,
    pub customers_created: u64,
    pub profiles_sealed: u64,
    /// Merged customers by the rule that linked them.
    pub merged_by: BTreeMap<String, u64>,
    pub orders_created: u64,
    pub order_lines_created: u64,
    pub products_created: u64,
    pub consents_recorded: u64,
    /// Quarantine reasons, counted per problem (a row may have several).
    pub problems: BTreeMap<String, u64>,
    pub elapsed_ms: u64,
}

impl MappedSummary {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// `rows_read` = the sum of the buckets.
    pub fn adds_up(&self) -> bool {
        self.rows_read
            == self.imported
                + self.merged
                + self.already_present
                + self.quarantined
                + self.skipped_total()
    }

    fn skip(&mut self, r: MappedSkip) {
        *self.skipped.entry(r).or_insert(0) += 1;
    }
}

impl std::fmt::Display for MappedSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let row = |f: &mut std::fmt::Formatter<'_>, label: &str, n: u64| {
            writeln!(f, "  {label:<42} {n:>10}")
        };
        writeln!(
            f,
            "{} import of {} finished (run {}): {} rows in {:.1} s",
            self.entity,
            self.source,
            self.run_id,
            self.rows_read,
            self.elapsed_ms as f64 / 1000.0
        )?;
        writeln!(f, "rows")?;
        row(f, "read", self.rows_read)?;
        row(f, "imported", self.imported)?;
        row(f, "merged into existing customers", self.merged)?;
        row(f, "already present (earlier run)", self.already_present)?;
        row(f, "quarantined", self.quarantined)?;
        row(f, "skipped", self.skipped_total())?;
        if self.replayed > 0 {
            row(f, "replayed from quarantine", self.replayed)?;
        }
        writeln!(f, "written")?;
        row(f, "customers created", self.customers_created)?;
        for (rule, n) in &self.merged_by {
            row(f, &format!("customers linked by {rule}"), *n)?;
        }
        row(f, "orders created", self.orders_created)?;
        row(f, "order lines created", self.order_lines_created)?;
        row(f, "products created", self.products_created)?;
        row(f, "consent events recorded", self.consents_recorded)?;
        if !self.skipped.is_empty() {
            writeln!(f, "skipped rows by reason")?;
            for (reason, n) in &self.skipped {
                let label = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                row(f, &label, *n)?;
            }
        }
        if !self.problems.is_empty() {
            writeln!(f, "quarantine reasons")?;
            for (code, n) in &self.problems {
                row(f, code, *n)?;
            }
        }
        Ok(())
    }
}

/// What one import needs.
pub struct MappedImport<'a> {
    pub db: &'a Db,
    pub vault: &'a Vault,
    pub mapping: &'a Mapping,
    /// Who runs it (`cli:<os user>`), recorded with the run.
    pub actor: &'a str,
    pub now: i64,
}

impl MappedImport<'_> {
    /// Imports a file. Errors when the run stops (unreadable file, wrong
    /// header or mapping, database failure); bad rows are quarantined.
    pub async fn run<R: Read + Send>(
        &self,
        reader: R,
        progress: &dyn Progress,
    ) -> anyhow::Result<MappedSummary> {
        let started = Instant::now();
        let mut rows = Rows::open(reader, self.mapping).context(NothingWritten)?;
        let key = self.start().await.context(NothingWritten)?;
        let mut summary = self.new_summary(key.run_id);
        let mut batch: Vec<(Origin, RawRow)> = Vec::with_capacity(BATCH_ROWS);
        let result: anyhow::Result<()> = async {
            while let Some(row) = rows.next_row()? {
                summary.rows_read += 1;
                let boundary = batch.len() >= BATCH_ROWS && self.can_split(&batch, &row);
                if boundary {
                    self.flush(&key, &mut batch, &mut summary).await?;
                    progress.update(0, summary.rows_read);
                }
                batch.push((Origin::File, row));
            }
            self.flush(&key, &mut batch, &mut summary).await
        }
        .await;
        self.finish(&key, &mut summary, started, &result).await?;
        progress.finish();
        result.map(|()| summary)
    }

    /// Replays the open quarantine of the mapping's source and entity.
    pub async fn replay(&self, progress: &dyn Progress) -> anyhow::Result<MappedSummary> {
        let started = Instant::now();
        let key = self.start().await.context(NothingWritten)?;
        let mut summary = self.new_summary(key.run_id);
        let mut pages = quarantine::OpenPages::new(
            self.db,
            self.vault.keyring(),
            &self.mapping.source,
            self.mapping.entity.as_str(),
            BATCH_ROWS as i64,
        );
        let result: anyhow::Result<()> = async {
            loop {
                let page = pages.next().await?;
                if page.is_empty() {
                    break;
                }
                let mut batch = Vec::with_capacity(page.len());
                for entry in page {
                    summary.rows_read += 1;
                    let row = RawRow::from_json(entry.line_no, &entry.row)?;
                    batch.push((Origin::Quarantine(entry.id), row));
                }
                self.flush(&key, &mut batch, &mut summary).await?;
                progress.update(0, summary.rows_read);
            }
            Ok(())
        }
        .await;
        self.finish(&key, &mut summary, started, &result).await?;
        progress.finish();
        result.map(|()| summary)
    }

    fn new_summary(&self, run_id: i64) -> MappedSummary {
        MappedSummary {
            run_id,
            source: self.mapping.source.clone(),
            entity: self.mapping.entity.as_str().to_owned(),
            ..MappedSummary::default()
        }
    }

    async fn start(&self) -> anyhow::Result<RunKey> {
        let keyring = self.vault.keyring();
        quarantine::start_run(
            self.db,
            &keyring,
            &RunInfo {
                source: &self.mapping.source,
                entity: self.mapping.entity.as_str(),
                format: self.mapping.format.as_str(),
                mapping_sha256: &self.mapping.sha256,
                actor: self.actor,
                now: self.now,
            },
        )
        .await
    }

    async fn finish(
        &self,
        key: &RunKey,
        summary: &mut MappedSummary,
        started: Instant,
        result: &anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let json = serde_json::to_value(&*summary)?;
        let recorded =
            quarantine::finish_run(self.db, key.run_id, result.is_ok(), &json, self.now).await;
        // The run's own failure is the one to report.
        if result.is_ok() {
            recorded?;
        }
        tracing::info!(
            run = key.run_id,
            rows = summary.rows_read,
            imported = summary.imported,
            merged = summary.merged,
            quarantined = summary.quarantined,
            "mapped import finished"
        );
        Ok(())
    }

    /// Orders are taken whole: a batch may end only between two orders.
    fn can_split(&self, batch: &[(Origin, RawRow)], next: &RawRow) -> bool {
        if self.mapping.entity != Entity::Orders {
            return true;
        }
        let Some(column) = self
            .mapping
            .field("order_id")
            .and_then(|f| f.column.as_deref())
        else {
            return true;
        };
        batch
            .last()
            .is_none_or(|(_, last)| last.get(column) != next.get(column))
    }

    async fn flush(
        &self,
        key: &RunKey,
        batch: &mut Vec<(Origin, RawRow)>,
        summary: &mut MappedSummary,
    ) -> anyhow::Result<()> {
        let rows = std::mem::take(batch);
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .db
            .pool
            .begin()
            .await
            .context("cannot start a transaction")?;
        match self.mapping.entity {
            Entity::Customers => self.customers(&mut tx, key, rows, summary).await?,
            Entity::Orders => self.orders(&mut tx, key, rows, summary).await?,
        }
        tx.commit()
            .await
            .context("cannot commit an import batch (is the database writable?)")?;
        Ok(())
    }

    /// Records a failed row: a new quarantine entry, or new reasons for a
    /// replayed one.
    async fn quarantine(
        &self,
        tx: &mut Transaction<'_, Any>,
        key: &RunKey,
        origin: Origin,
        row: &RawRow,
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
        let bytes = row.to_json();
        let existing = match origin {
            Origin::Quarantine(id) => Some(id),
            Origin::File => {
                quarantine::find_open(
                    tx,
                    &self.vault.keyring(),
                    &self.mapping.source,
                    self.mapping.entity.as_str(),
                    row.line_no,
                    &bytes,
                )
                .await?
            }
        };
        match existing {
            Some(id) => quarantine::update_reasons(tx, id, problems).await,
            None => {
                let entry = quarantine::NewEntry {
                    source: &self.mapping.source,
                    entity: self.mapping.entity.as_str(),
                    line_no: row.line_no,
                    problems,
                    row: &bytes,
                    now: self.now,
                };
                quarantine::insert(tx, key, &entry).await
            }
        }
    }

    async fn passed(
        &self,
        tx: &mut Transaction<'_, Any>,
        key: &RunKey,
        origin: Origin,
        summary: &mut MappedSummary,
    ) -> anyhow::Result<()> {
        if let Origin::Quarantine(id) = origin {
            summary.replayed += 1;
            quarantine::resolve(tx, id, key.run_id).await?;
        }
        Ok(())
    }
}

/// A value of a standard field after standardization.
enum Value {
    Text(String),
    Int(i64),
}

/// Reads and standardizes the fields of a row; problems are collected, not
/// returned at the first.
pub(crate) struct Parsed {
    values: HashMap<&'static str, Value>,
    problems: Vec<Problem>,
}

impl Parsed {
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        match self.values.get(name) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    fn int(&self, name: &str) -> Option<i64> {
        match self.values.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
}

pub(crate) fn parse_row(mapping: &Mapping, row: &RawRow) -> Parsed {
    let mut out = Parsed {
        values: HashMap::new(),
        problems: Vec::new(),
    };
    if let Some(p) = &row.problem {
        out.problems.push(p.clone());
        return out;
    }
    // Country first: phones are read in the row's country.
    let mut order: Vec<_> = mapping.fields.iter().collect();
    order.sort_by_key(|f| f.kind != FieldKind::Country);
    for field in order {
        let raw = field.column.as_deref().and_then(|c| row.get(c)).or(field
            .default
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty()));
        let Some(raw) = raw else {
            if field.required {
                out.problems
                    .push(Problem::new(ProblemCode::MissingRequired, field.name));
            }
            continue;
        };
        let bad = |code| Problem::new(code, field.name);
        let value = match field.kind {
            FieldKind::Key => super::validate_key(raw)
                .map(|k| Value::Text(k.to_owned()))
                .ok_or(bad(ProblemCode::BadFormat)),
            FieldKind::Email => standardize::email(raw)
                .map(Value::Text)
                .ok_or(bad(ProblemCode::BadFormat)),
            FieldKind::Phone => {
                let country = out.text("country").map(str::to_owned);
                standardize::phone_e164(raw, country.as_deref())
                    .map(Value::Text)
                    .ok_or(bad(ProblemCode::BadFormat))
            }
            FieldKind::Text => {
                if raw.chars().count() > 200 || raw.chars().any(char::is_control) {
                    Err(bad(ProblemCode::BadFormat))
                } else {
                    Ok(Value::Text(raw.to_owned()))
                }
            }
            FieldKind::Country => standardize::country(raw)
                .map(|c| Value::Text(c.to_owned()))
                .ok_or(bad(ProblemCode::UnknownValue)),
            FieldKind::Currency => standardize::currency(raw)
                .map(|c| Value::Text(c.to_owned()))
                .ok_or(bad(ProblemCode::UnknownValue)),
            FieldKind::Timestamp | FieldKind::Date => {
                let parsed = field
                    .time_format
                    .as_ref()
                    .and_then(|f| standardize::parse_timestamp(raw, f, mapping.utc_offset_minutes));
                match parsed {
                    // 1900-01-01 to 2200-01-01: outside is a wrong format or a typo.
                    Some(t) if !(-2_208_988_800_000_000..=7_258_118_400_000_000).contains(&t) => {
                        Err(bad(ProblemCode::OutOfRange))
                    }
                    Some(t) if field.kind == FieldKind::Date => Ok(Value::Text(
                        crate::clock::rfc3339(t).chars().take(10).collect(),
                    )),
                    Some(t) => Ok(Value::Int(t)),
                    None => Err(bad(ProblemCode::BadFormat)),
                }
            }
            FieldKind::Integer => match raw.parse::<i64>() {
                Ok(q) if q > 0 && q <= MAX_QUANTITY => Ok(Value::Int(q)),
                Ok(_) => Err(bad(ProblemCode::OutOfRange)),
                Err(_) => Err(bad(ProblemCode::BadFormat)),
            },
            FieldKind::Amount => match standardize::parse_decimal_cents(raw, mapping.decimal) {
                Some(c) if (0..=MAX_UNIT_PRICE_CENTS).contains(&c) => Ok(Value::Int(c)),
                Some(_) => Err(bad(ProblemCode::OutOfRange)),
                None => Err(bad(ProblemCode::BadFormat)),
            },
        };
        match value {
            Ok(v) => {
                out.values.insert(field.name, v);
            }
            Err(p) => out.problems.push(p),
        }
    }
    out
}

/// A customer row that passed.
struct CustomerRow {
    origin: Origin,
    line_no: i64,
    key: String,
    customer: NewCustomer,
    bidx: Vec<(MatchRule, Vec<u8>)>,
    consents: Vec<(String, bool, i64, String)>,
}

/// How a customer row was resolved.
enum Resolved {
    /// Brought by an earlier run of this source.
    Present(i64),
    Linked(i64, &'static str),
    /// Linked to the n-th new customer of this batch.
    LinkedPending(usize, &'static str),
    New(usize),
    Erased,
}

fn rule_name(r: MatchRule) -> &'static str {
    match r {
        MatchRule::Email => "email",
        MatchRule::Phone => "phone",
    }
}

impl MappedImport<'_> {
    fn customer_row(&self, origin: Origin, row: &RawRow) -> Result<CustomerRow, Vec<Problem>> {
        let mut parsed = parse_row(self.mapping, row);
        let mut problems = std::mem::take(&mut parsed.problems);
        let mut consents = Vec::new();
        for c in &self.mapping.consent {
            let Some(answer) = row.get(&c.column) else {
                continue;
            };
            let is = |list: &[String]| list.iter().any(|v| v.eq_ignore_ascii_case(answer));
            let granted = if is(&c.granted_values) {
                true
            } else if is(&c.withdrawn_values) {
                false
            } else {
                problems.push(Problem::new(ProblemCode::UnknownValue, &c.column));
                continue;
            };
            let at = match &c.at_column {
                Some(col) => match row.get(col).map(|v| {
                    standardize::parse_timestamp(
                        v,
                        &standardize::TimeFormat::Rfc3339,
                        self.mapping.utc_offset_minutes,
                    )
                }) {
                    Some(Some(t)) => Some(t),
                    Some(None) => {
                        problems.push(Problem::new(ProblemCode::BadFormat, col));
                        continue;
                    }
                    None => None,
                },
                None => None,
            };
            consents.push((
                c.purpose.clone(),
                granted,
                at.unwrap_or(0),
                c.evidence.clone(),
            ));
        }
        if !problems.is_empty() {
            problems.sort();
            problems.dedup();
            return Err(problems);
        }
        let text = |n: &str| parsed.text(n).map(str::to_owned);
        let key = format!(
            "{}{}",
            self.mapping.id_prefix,
            parsed.text("external_id").unwrap_or_default()
        );
        if key.len() > 64 {
            return Err(vec![Problem::new(ProblemCode::BadFormat, "external_id")]);
        }
        let signup_at = parsed.int("signup_at").unwrap_or(self.now);
        for c in &mut consents {
            if c.2 == 0 {
                c.2 = signup_at;
            }
        }
        let profile = Profile {
            email: text("email"),
            phone: text("phone"),
            name: text("name"),
            birth_date: text("birth_date"),
            postcode: text("postcode"),
        };
        let mut bidx = Vec::new();
        for rule in &self.mapping.match_on {
            let (field, value) = match rule {
                MatchRule::Email => (BlindField::Email, &profile.email),
                MatchRule::Phone => (BlindField::Phone, &profile.phone),
            };
            if let Some(b) = value
                .as_deref()
                .and_then(|v| self.vault.blind_index(field, v))
            {
                bidx.push((*rule, b.to_vec()));
            }
        }
        Ok(CustomerRow {
            origin,
            line_no: row.line_no,
            customer: NewCustomer {
                external_id: key.clone(),
                profile,
                city: text("city"),
                country: text("country"),
                signup_at,
            },
            key,
            bidx,
            consents,
        })
    }

    async fn customers(
        &self,
        tx: &mut Transaction<'_, Any>,
        key: &RunKey,
        rows: Vec<(Origin, RawRow)>,
        summary: &mut MappedSummary,
    ) -> anyhow::Result<()> {
        let mut good: Vec<CustomerRow> = Vec::with_capacity(rows.len());
        for (origin, row) in &rows {
            match self.customer_row(*origin, row) {
                Ok(c) => good.push(c),
                Err(problems) => {
                    self.quarantine(tx, key, *origin, row, &problems, summary)
                        .await?
                }
            }
        }
        let keys: Vec<&str> = good.iter().map(|c| c.key.as_str()).collect();
        let known = source_keys(tx, &self.mapping.source, &keys).await?;
        let by_external = customers_by_external(tx, &keys).await?;
        let mut by_bidx: HashMap<(MatchRule, Vec<u8>), (i64, bool)> = HashMap::new();
        for rule in &self.mapping.match_on {
            let values: Vec<&[u8]> = good
                .iter()
                .flat_map(|c| c.bidx.iter())
                .filter(|(r, _)| r == rule)
                .map(|(_, b)| b.as_slice())
                .collect();
            for (b, id, erased) in customers_by_bidx(tx, *rule, &values).await? {
                by_bidx.entry((*rule, b)).or_insert((id, erased));
            }
        }

        // Resolve in file order; later rows of the batch see earlier new ones.
        let mut pending: Vec<usize> = Vec::new();
        let mut pending_bidx: HashMap<(MatchRule, Vec<u8>), usize> = HashMap::new();
        let mut pending_keys: HashMap<String, usize> = HashMap::new();
        let mut resolved = Vec::with_capacity(good.len());
        for (i, c) in good.iter().enumerate() {
            let r = if let Some(&id) = known.get(&c.key) {
                Resolved::Present(id)
            } else if let Some(&(id, erased)) = by_external.get(&c.key) {
                if erased {
                    Resolved::Erased
                } else {
                    Resolved::Linked(id, "external_id")
                }
            } else if let Some(&n) = pending_keys.get(&c.key) {
                Resolved::LinkedPending(n, "external_id")
            } else {
                let mut found = None;
                for (rule, b) in &c.bidx {
                    if let Some(&(id, erased)) = by_bidx.get(&(*rule, b.clone())) {
                        found = Some(if erased {
                            Resolved::Erased
                        } else {
                            Resolved::Linked(id, rule_name(*rule))
                        });
                        break;
                    }
                    if let Some(&n) = pending_bidx.get(&(*rule, b.clone())) {
                        found = Some(Resolved::LinkedPending(n, rule_name(*rule)));
                        break;
                    }
                }
                found.unwrap_or_else(|| {
                    let n = pending.len();
                    pending.push(i);
                    pending_keys.insert(c.key.clone(), n);
                    for (rule, b) in &c.bidx {
                        pending_bidx.entry((*rule, b.clone())).or_insert(n);
                    }
                    Resolved::New(n)
                })
            };
            resolved.push(r);
        }

        let new_customers: Vec<NewCustomer> = pending
            .iter()
            .filter_map(|&i| good.get(i).map(|c| c.customer.clone()))
            .collect();
        let created = insert_customers(tx, Some(self.vault), &new_customers, self.now).await?;
        summary.customers_created += created.created;
        summary.profiles_sealed += created.sealed;
        let new_keys: Vec<&str> = new_customers
            .iter()
            .map(|c| c.external_id.as_str())
            .collect();
        let new_ids = super::store::customer_ids(tx, &new_keys).await?;
        let pending_id = |n: usize| {
            new_customers
                .get(n)
                .and_then(|c| new_ids.get(&c.external_id).copied())
        };

        let mut links: Vec<(&str, i64, &'static str)> = Vec::new();
        let mut ledger: Vec<NewConsentEvent> = Vec::new();
        for (c, r) in good.iter().zip(&resolved) {
            let target = match r {
                Resolved::Present(id) => {
                    summary.already_present += 1;
                    Some(*id)
                }
                Resolved::Linked(id, rule) => {
                    summary.merged += 1;
                    *summary.merged_by.entry((*rule).to_owned()).or_insert(0) += 1;
                    links.push((&c.key, *id, rule));
                    Some(*id)
                }
                // A new customer the store refused is on the DSR
                // suppression list (an erased person): not brought back,
                // nor anyone linked to them.
                Resolved::LinkedPending(n, rule) => match pending_id(*n) {
                    Some(id) => {
                        summary.merged += 1;
                        *summary.merged_by.entry((*rule).to_owned()).or_insert(0) += 1;
                        links.push((&c.key, id, rule));
                        Some(id)
                    }
                    None => {
                        summary.skip(MappedSkip::ErasedPerson);
                        None
                    }
                },
                Resolved::New(n) => match pending_id(*n) {
                    Some(id) => {
                        summary.imported += 1;
                        links.push((&c.key, id, "new"));
                        Some(id)
                    }
                    None => {
                        summary.skip(MappedSkip::ErasedPerson);
                        None
                    }
                },
                Resolved::Erased => {
                    summary.skip(MappedSkip::ErasedPerson);
                    None
                }
            };
            let Some(customer_id) = target else {
                self.passed(tx, key, c.origin, summary).await?;
                continue;
            };
            for (purpose, granted, at, evidence) in &c.consents {
                ledger.push(NewConsentEvent {
                    receipt_id: receipt_id(&self.mapping.source, &c.key, purpose, *granted, *at),
                    customer_id,
                    purpose: purpose.clone(),
                    granted: *granted,
                    occurred_at: *at,
                    source: "import".to_owned(),
                    evidence: Some(format!(
                        "{evidence} (source {}, line {})",
                        self.mapping.source, c.line_no
                    )),
                    evidence_hash: None,
                    actor: format!("import:{}", self.mapping.source),
                });
            }
            self.passed(tx, key, c.origin, summary).await?;
        }
        insert_links(tx, &self.mapping.source, &links, self.now).await?;
        summary.consents_recorded += consents::insert_many(tx, &ledger, self.now).await?;
        Ok(())
    }

    async fn orders(
        &self,
        tx: &mut Transaction<'_, Any>,
        key: &RunKey,
        rows: Vec<(Origin, RawRow)>,
        summary: &mut MappedSummary,
    ) -> anyhow::Result<()> {
        // Group consecutive rows of one order.
        let mut groups: Vec<Vec<(Origin, RawRow, Parsed)>> = Vec::new();
        for (origin, row) in rows {
            let parsed = parse_row(self.mapping, &row);
            let id = parsed.text("order_id").map(str::to_owned);
            let same = groups
                .last()
                .and_then(|g| g.last())
                .is_some_and(|(_, _, p)| id.is_some() && p.text("order_id") == id.as_deref());
            if same {
                if let Some(g) = groups.last_mut() {
                    g.push((origin, row, parsed));
                }
            } else {
                groups.push(vec![(origin, row, parsed)]);
            }
        }
        // Customers of all orders, then products, in one look-up each.
        let customer_keys: Vec<String> = groups
            .iter()
            .filter_map(|g| g.first())
            .filter_map(|(_, _, p)| p.text("customer_id"))
            .map(|c| format!("{}{c}", self.mapping.id_prefix))
            .collect();
        let keys: Vec<&str> = customer_keys.iter().map(String::as_str).collect();
        let mut customers = source_keys(tx, &self.mapping.source, &keys).await?;
        for (k, (id, erased)) in customers_by_external(tx, &keys).await? {
            if !erased {
                customers.entry(k).or_insert(id);
            }
        }

        let mut accepted = Vec::new();
        for group in groups {
            let first = group.first().map(|(_, _, p)| p);
            let customer_key = first
                .and_then(|p| p.text("customer_id"))
                .map(|c| format!("{}{c}", self.mapping.id_prefix));
            let customer_id = customer_key
                .as_ref()
                .and_then(|k| customers.get(k).copied());
            let head = first.map(|p| {
                (
                    p.text("customer_id").map(str::to_owned),
                    p.int("placed_at"),
                    p.text("currency").map(str::to_owned),
                )
            });
            let mut problems: Vec<Vec<Problem>> = group
                .iter()
                .map(|(_, _, p)| {
                    let mut own = p.problems.clone();
                    let this = (
                        p.text("customer_id").map(str::to_owned),
                        p.int("placed_at"),
                        p.text("currency").map(str::to_owned),
                    );
                    if own.is_empty() && head.as_ref() != Some(&this) {
                        own.push(Problem::row(ProblemCode::InconsistentOrder));
                    }
                    own
                })
                .collect();
            if problems.iter().all(Vec::is_empty) && customer_key.is_some() && customer_id.is_none()
            {
                for p in &mut problems {
                    p.push(Problem::new(ProblemCode::UnknownCustomer, "customer_id"));
                }
            }
            if problems.iter().any(|p| !p.is_empty()) {
                for ((origin, row, _), mut own) in group.iter().zip(problems) {
                    if own.is_empty() {
                        own.push(Problem::row(ProblemCode::OrderHasInvalidLines));
                    }
                    self.quarantine(tx, key, *origin, row, &own, summary)
                        .await?;
                }
                continue;
            }
            accepted.push((group, customer_id));
        }

        // Products named by accepted lines: the first line seen names and prices a SKU.
        let mut new_products: Vec<NewProduct> = Vec::new();
        let mut skus: HashSet<String> = HashSet::new();
        for (group, _) in &accepted {
            for (_, _, p) in group {
                let sku = p.text("sku").unwrap_or_default().to_owned();
                if skus.insert(sku.clone()) {
                    new_products.push(NewProduct {
                        name: p.text("product_name").unwrap_or(&sku).to_owned(),
                        category: p.text("category").unwrap_or("other").to_owned(),
                        price_cents: unit_price(p),
                        sku,
                    });
                }
            }
        }
        summary.products_created += products::insert_many(tx, &new_products, self.now).await?;
        let sku_list: Vec<&str> = skus.iter().map(String::as_str).collect();
        let product_ids = products::ids_by_sku(tx, &sku_list).await?;

        let new_orders: Vec<NewOrder> = accepted
            .iter()
            .filter_map(|(group, customer_id)| {
                let (_, _, p) = group.first()?;
                let total = group
                    .iter()
                    .fold(0i64, |t, (_, _, l)| t.saturating_add(line_total(l)));
                Some(NewOrder {
                    external_id: format!(
                        "{}{}",
                        self.mapping.id_prefix,
                        p.text("order_id").unwrap_or_default()
                    ),
                    customer_id: *customer_id,
                    kind: OrderKind::Order,
                    return_of: None,
                    placed_at: p.int("placed_at").unwrap_or(0),
                    country: p.text("country").map(str::to_owned),
                    total_cents: total,
                    source: self.mapping.source.clone().into(),
                    currency: p.text("currency").map(|c| c.to_owned().into()),
                })
            })
            .collect();
        let created = orders::insert_many(tx, &new_orders, self.now).await?;
        let mut lines = Vec::new();
        for ((group, _), order) in accepted.iter().zip(&new_orders) {
            let created_id = created.get(&order.external_id).copied();
            if created_id.is_some() {
                summary.orders_created += 1;
            }
            for (n, (origin, _, p)) in group.iter().enumerate() {
                match created_id {
                    Some(order_id) => {
                        summary.imported += 1;
                        let sku = p.text("sku").unwrap_or_default();
                        lines.push(NewOrderLine {
                            order_id,
                            line_no: i64::try_from(n).unwrap_or(i64::MAX).saturating_add(1),
                            product_id: product_ids
                                .get(sku)
                                .copied()
                                .context("a product vanished during import")?,
                            quantity: p.int("quantity").unwrap_or(0),
                            unit_price_cents: unit_price(p),
                        });
                    }
                    None => summary.already_present += 1,
                }
                self.passed(tx, key, *origin, summary).await?;
            }
        }
        summary.order_lines_created += orders::insert_lines(tx, &lines).await?;
        Ok(())
    }
}

/// A line's unit price: as given, or its total / quantity rounded half up.
fn unit_price(p: &Parsed) -> i64 {
    if let Some(u) = p.int("unit_price") {
        return u;
    }
    let q = p.int("quantity").unwrap_or(1).max(1);
    let total = p.int("line_total").unwrap_or(0);
    (total.saturating_mul(2).saturating_add(q)) / (2 * q)
}

/// A line's total: as given (exact), or quantity × unit price.
fn line_total(p: &Parsed) -> i64 {
    p.int("line_total").unwrap_or_else(|| {
        p.int("quantity")
            .unwrap_or(0)
            .saturating_mul(p.int("unit_price").unwrap_or(0))
    })
}

/// A stable receipt id for an imported consent answer, so a re-run adds
/// nothing: the source, the person's key, purpose, answer and time.
fn receipt_id(source: &str, key: &str, purpose: &str, granted: bool, at: i64) -> String {
    use ring::digest;
    let text = format!("{source}\0{key}\0{purpose}\0{granted}\0{at}");
    let d = digest::digest(&digest::SHA256, text.as_bytes());
    format!(
        "import-{}",
        hex::encode(d.as_ref().get(..16).unwrap_or_default())
    )
}

/// Keys this source linked before: key → customer id.
async fn source_keys(
    tx: &mut Transaction<'_, Any>,
    source: &str,
    keys: &[&str],
) -> anyhow::Result<HashMap<String, i64>> {
    let style = Placeholders::of(tx);
    let mut out = HashMap::new();
    for chunk in keys.chunks(1000) {
        if chunk.is_empty() {
            continue;
        }
        let list = list_placeholders(style, chunk.len() + 1);
        let (first, rest) = list.split_once(", ").unwrap_or((&list, ""));
        let sql = format!(
            "SELECT source_key, customer_id FROM customer_sources WHERE source = {first} \
             AND source_key IN ({rest})"
        );
        let mut q = sqlx::query(&sql).bind(source);
        for k in chunk {
            q = q.bind(*k);
        }
        for row in q.fetch_all(&mut **tx).await? {
            out.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    Ok(out)
}

/// Customers by external id: id and whether erased.
async fn customers_by_external(
    tx: &mut Transaction<'_, Any>,
    keys: &[&str],
) -> anyhow::Result<HashMap<String, (i64, bool)>> {
    let style = Placeholders::of(tx);
    let mut out = HashMap::new();
    for chunk in keys.chunks(1000) {
        if chunk.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT external_id, id, erased_at FROM customers WHERE external_id IN ({})",
            list_placeholders(style, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for k in chunk {
            q = q.bind(*k);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let erased: Option<i64> = row.try_get(2)?;
            out.insert(row.try_get(0)?, (row.try_get(1)?, erased.is_some()));
        }
    }
    Ok(out)
}

/// Customers by blind index, oldest first: (index, id, erased).
async fn customers_by_bidx(
    tx: &mut Transaction<'_, Any>,
    rule: MatchRule,
    values: &[&[u8]],
) -> anyhow::Result<Vec<(Vec<u8>, i64, bool)>> {
    let style = Placeholders::of(tx);
    let column = match rule {
        MatchRule::Email => "email_bidx",
        MatchRule::Phone => "phone_bidx",
    };
    let mut out = Vec::new();
    for chunk in values.chunks(1000) {
        if chunk.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT {column}, id, erased_at FROM customers WHERE {column} IN ({}) ORDER BY id",
            list_placeholders(style, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for v in chunk {
            q = q.bind(v.to_vec());
        }
        for row in q.fetch_all(&mut **tx).await? {
            let erased: Option<i64> = row.try_get(2)?;
            out.push((row.try_get(0)?, row.try_get(1)?, erased.is_some()));
        }
    }
    Ok(out)
}

async fn insert_links(
    tx: &mut Transaction<'_, Any>,
    source: &str,
    links: &[(&str, i64, &'static str)],
    now: i64,
) -> anyhow::Result<()> {
    let style = Placeholders::of(tx);
    for chunk in links.chunks(1000) {
        if chunk.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO customer_sources (source, source_key, customer_id, matched_by, created_at) \
             VALUES {} ON CONFLICT (source, source_key) DO NOTHING",
            crate::db::bulk::values_clause(style, chunk.len(), 5)
        );
        let mut q = sqlx::query(&sql);
        for (k, id, rule) in chunk {
            q = q.bind(source).bind(*k).bind(*id).bind(*rule).bind(now);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
