//! The access document and the portability archive: everything held about
//! one customer, decrypted, written section by section.
//!
//! Both formats are produced by one walk over the store ([`produce`]) into
//! a [`Sink`]: the JSON sink writes one object, the zip sink one CSV file
//! per table (and a JSON file per nested section). Every table is read in
//! pages of [`PAGE`] rows by keyset, so a customer with a million events
//! never sits in memory; the output goes to a private temporary file in
//! `data_dir/dsr-tmp`, which is encrypted into the store
//! ([`super::documents`]) and deleted at once (a file left by a crash is
//! deleted at the next start).
//!
//! Every query is keyed by the customer's internal id and nothing else,
//! so customers who share a household address, a name or an e-mail domain
//! never appear in each other's documents.
//!
//! Sections, in order (JSON key; in the archive `<name>.csv`, nested ones
//! `<name>.json`): `about`, `profile`, `orders`, `order_lines`, `events`,
//! `consents`, `consent_state`, one per registered subject hook (at least
//! `segments` and `recommendation_profile`), `requests` (their data subject
//! requests) and `accesses` (who accessed their data, when, for which
//! purpose, from the audit trail). The archive also holds `README.txt`
//! describing the layout.

use serde_json::{json, Value};
use sqlx::Row;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::documents::{self, Document, Format};
use super::requests::RequestRow;
use super::DsrError;
use crate::audit::{self, AuditFilter};
use crate::clock::rfc3339;
use crate::crypto::{FieldCipher, FieldPlace};
use crate::state::AppState;

/// Rows read per query.
pub const PAGE: i64 = 1000;

/// Format tag of the JSON document.
pub const JSON_FORMAT: &str = "custodian.access.v1";

/// Where output goes. Tables are written as a header, rows, an end.
pub trait Sink {
    /// A nested JSON section.
    fn section(&mut self, name: &str, value: &Value) -> io::Result<()>;
    /// A table of exactly one row (JSON: an object).
    fn single(&mut self, name: &str, columns: &[&str], values: &[Value]) -> io::Result<()>;
    fn begin_table(&mut self, name: &str, columns: &'static [&'static str]) -> io::Result<()>;
    fn row(&mut self, values: &[Value]) -> io::Result<()>;
    fn end_table(&mut self) -> io::Result<()>;
}

/// One JSON object, written as it goes.
pub struct JsonSink<W: Write> {
    out: W,
    columns: &'static [&'static str],
    first_row: bool,
}

impl<W: Write> JsonSink<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        write!(out, "{{\"format\":\"{JSON_FORMAT}\"")?;
        Ok(Self {
            out,
            columns: &[],
            first_row: true,
        })
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(b"}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn key(&mut self, name: &str) -> io::Result<()> {
        write!(self.out, ",{}:", Value::String(name.to_owned()))
    }

    fn object(&mut self, columns: &[&str], values: &[Value]) -> io::Result<()> {
        let map: serde_json::Map<String, Value> = columns
            .iter()
            .zip(values)
            .map(|(c, v)| ((*c).to_owned(), v.clone()))
            .collect();
        serde_json::to_writer(&mut self.out, &map).map_err(io::Error::other)
    }
}

impl<W: Write> Sink for JsonSink<W> {
    fn section(&mut self, name: &str, value: &Value) -> io::Result<()> {
        self.key(name)?;
        serde_json::to_writer(&mut self.out, value).map_err(io::Error::other)
    }

    fn single(&mut self, name: &str, columns: &[&str], values: &[Value]) -> io::Result<()> {
        self.key(name)?;
        self.object(columns, values)
    }

    fn begin_table(&mut self, name: &str, columns: &'static [&'static str]) -> io::Result<()> {
        self.key(name)?;
        self.out.write_all(b"[")?;
        self.columns = columns;
        self.first_row = true;
        Ok(())
    }

    fn row(&mut self, values: &[Value]) -> io::Result<()> {
        if !self.first_row {
            self.out.write_all(b",")?;
        }
        self.first_row = false;
        self.object(self.columns, values)
    }

    fn end_table(&mut self) -> io::Result<()> {
        self.out.write_all(b"]")
    }
}

/// The layout note shipped inside every portability archive.
pub const ARCHIVE_README: &str = "\
Custodian portability archive (format custodian.portability.v1)

Everything the shop's marketing data store holds about you, as CSV files
(UTF-8, comma-separated, first line = column names, RFC 4180 quoting).
Times are RFC 3339 (UTC); amounts are in cents. A text value that starts
with = + - @ or a tab is prefixed with ' so spreadsheets do not run it.

  about.json          the request this archive answers, and when it was made
  profile.csv         your profile (one row)
  orders.csv          your orders and returns
  order_lines.csv     the lines of those orders (order_id links to orders.csv)
  events.csv          your browsing events (views, searches, carts, clicks)
  consents.csv        every consent you gave or withdrew, with its receipt
  consent_state.csv   your current consent per purpose
  segments.json       the segments you currently fall in
  recommendation_profile.json   your recommendation profile, if any
  requests.csv        your data subject requests
  accesses.csv        who accessed your data, when, and for which purpose
";

/// One CSV file per table inside a zip.
pub struct ZipSink<W: Write + io::Seek> {
    zip: zip::ZipWriter<W>,
    line: Vec<u8>,
}

fn zip_err(e: zip::result::ZipError) -> io::Error {
    io::Error::other(e)
}

impl<W: Write + io::Seek> ZipSink<W> {
    pub fn new(out: W) -> io::Result<Self> {
        let mut sink = Self {
            zip: zip::ZipWriter::new(out),
            line: Vec::with_capacity(512),
        };
        sink.start("README.txt")?;
        sink.zip.write_all(ARCHIVE_README.as_bytes())?;
        Ok(sink)
    }

    fn start(&mut self, name: &str) -> io::Result<()> {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600);
        self.zip.start_file(name, options).map_err(zip_err)
    }

    pub fn finish(self) -> io::Result<W> {
        self.zip.finish().map_err(zip_err)
    }

    fn csv_line<'a>(&mut self, fields: impl Iterator<Item = CsvCell<'a>>) -> io::Result<()> {
        self.line.clear();
        for (i, cell) in fields.enumerate() {
            if i > 0 {
                self.line.push(b',');
            }
            let text = match cell {
                CsvCell::Header(h) => h.to_owned(),
                CsvCell::Value(v) => csv_text(v),
            };
            push_csv_field(&mut self.line, &text);
        }
        self.line.extend_from_slice(b"\r\n");
        self.zip.write_all(&self.line)
    }
}

enum CsvCell<'a> {
    Header(&'a str),
    Value(&'a Value),
}

/// A JSON value as CSV text: strings verbatim (formula-guarded), numbers
/// and booleans as JSON writes them, null empty, anything nested as JSON.
fn csv_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => {
            if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{s}")
            } else {
                s.clone()
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn push_csv_field(out: &mut Vec<u8>, text: &str) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

impl<W: Write + io::Seek> Sink for ZipSink<W> {
    fn section(&mut self, name: &str, value: &Value) -> io::Result<()> {
        self.start(&format!("{name}.json"))?;
        serde_json::to_writer_pretty(&mut self.zip, value).map_err(io::Error::other)?;
        self.zip.write_all(b"\n")
    }

    fn single(&mut self, name: &str, columns: &[&str], values: &[Value]) -> io::Result<()> {
        self.start(&format!("{name}.csv"))?;
        self.csv_line(columns.iter().map(|c| CsvCell::Header(c)))?;
        self.csv_line(values.iter().map(CsvCell::Value))
    }

    fn begin_table(&mut self, name: &str, columns: &'static [&'static str]) -> io::Result<()> {
        self.start(&format!("{name}.csv"))?;
        self.csv_line(columns.iter().map(|c| CsvCell::Header(c)))
    }

    fn row(&mut self, values: &[Value]) -> io::Result<()> {
        self.csv_line(values.iter().map(CsvCell::Value))
    }

    fn end_table(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn io_err(e: io::Error) -> DsrError {
    DsrError::Store(anyhow::anyhow!("writing the document: {e}"))
}

fn ts(v: i64) -> Value {
    Value::String(rfc3339(v))
}

/// Decrypts one profile field; a ciphertext that does not open fails the
/// whole document.
fn open_field(
    cipher: &FieldCipher,
    customer_id: i64,
    field: &str,
    ct: Option<Vec<u8>>,
) -> Result<Value, DsrError> {
    let Some(ct) = ct else {
        return Ok(Value::Null);
    };
    let plain = cipher
        .decrypt(
            FieldPlace {
                resource: "customer",
                field,
                record_id: customer_id,
            },
            &ct,
        )
        .map_err(|_| {
            tracing::error!(
                customer = customer_id,
                field,
                "ciphertext failed its integrity check"
            );
            DsrError::Integrity
        })?;
    let text = std::str::from_utf8(&plain).map_err(|_| DsrError::Integrity)?;
    Ok(Value::String(text.to_owned()))
}

const PROFILE: &[&str] = &[
    "customer_id",
    "email",
    "phone",
    "name",
    "birth_date",
    "postcode",
    "city",
    "country",
    "signup_at",
    "created_at",
];
const ORDERS: &[&str] = &[
    "order_id",
    "kind",
    "return_of",
    "placed_at",
    "country",
    "total_cents",
    "source",
];
const ORDER_LINES: &[&str] = &[
    "order_id",
    "line_no",
    "sku",
    "product",
    "category",
    "quantity",
    "unit_price_cents",
];
const EVENTS: &[&str] = &[
    "event_id",
    "kind",
    "product_sku",
    "product",
    "channel",
    "occurred_at",
];
const CONSENTS: &[&str] = &[
    "receipt_id",
    "purpose",
    "granted",
    "occurred_at",
    "recorded_at",
    "source",
    "evidence",
    "evidence_sha256",
    "recorded_by",
];
const CONSENT_STATE: &[&str] = &["purpose", "granted", "since"];
const REQUESTS: &[&str] = &["request_id", "kind", "status", "received_at", "due_at"];
const ACCESSES: &[&str] = &[
    "at",
    "accessed_by",
    "roles",
    "action",
    "purpose",
    "decision",
    "fields",
    "status",
];

/// Walks everything held about the request's customer into `sink`.
pub async fn produce<S: Sink + Send>(
    state: &AppState,
    request: &RequestRow,
    sink: &mut S,
) -> Result<(), DsrError> {
    let db = &state.db;
    let id = request.customer_id;
    let now = state.clock.now_micros();
    sink.section(
        "about",
        &json!({
            "request_id": request.uid,
            "kind": request.kind.as_str(),
            "received_at": rfc3339(request.received_at),
            "generated_at": rfc3339(now),
            "controller_note": "Generated by Custodian for the data protection officer; \
                 every section is keyed by your customer record only.",
        }),
    )
    .map_err(io_err)?;

    // Profile.
    let cipher = documents::customer_cipher(state, id).await?;
    let row = sqlx::query(
        "SELECT external_id, email_ct, phone_ct, name_ct, birth_date_ct, postcode_ct, city, \
         country, signup_at, created_at FROM customers WHERE id = $1 AND erased_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(DsrError::Erased)?;
    let profile = vec![
        Value::String(row.try_get(0)?),
        open_field(&cipher, id, "email", row.try_get(1)?)?,
        open_field(&cipher, id, "phone", row.try_get(2)?)?,
        open_field(&cipher, id, "name", row.try_get(3)?)?,
        open_field(&cipher, id, "birth_date", row.try_get(4)?)?,
        open_field(&cipher, id, "postcode", row.try_get(5)?)?,
        row.try_get::<Option<String>, _>(6)?.into(),
        row.try_get::<Option<String>, _>(7)?.into(),
        ts(row.try_get(8)?),
        ts(row.try_get(9)?),
    ];
    sink.single("profile", PROFILE, &profile).map_err(io_err)?;
    drop(profile);

    // Orders, then their lines.
    sink.begin_table("orders", ORDERS).map_err(io_err)?;
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT o.id, o.external_id, o.kind, r.external_id, o.placed_at, o.country, \
             o.total_cents, o.source FROM orders o LEFT JOIN orders r ON r.id = o.return_of \
             WHERE o.customer_id = $1 AND o.id > $2 ORDER BY o.id LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(PAGE)
        .fetch_all(&db.pool)
        .await?;
        for r in &rows {
            after = r.try_get(0)?;
            sink.row(&[
                Value::String(r.try_get(1)?),
                Value::String(r.try_get(2)?),
                r.try_get::<Option<String>, _>(3)?.into(),
                ts(r.try_get(4)?),
                r.try_get::<Option<String>, _>(5)?.into(),
                r.try_get::<i64, _>(6)?.into(),
                Value::String(r.try_get(7)?),
            ])
            .map_err(io_err)?;
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    sink.end_table().map_err(io_err)?;

    sink.begin_table("order_lines", ORDER_LINES)
        .map_err(io_err)?;
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT l.id, o.external_id, l.line_no, p.sku, p.name, p.category, l.quantity, \
             l.unit_price_cents FROM order_lines l JOIN orders o ON o.id = l.order_id \
             JOIN products p ON p.id = l.product_id \
             WHERE o.customer_id = $1 AND l.id > $2 ORDER BY l.id LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(PAGE)
        .fetch_all(&db.pool)
        .await?;
        for r in &rows {
            after = r.try_get(0)?;
            sink.row(&[
                Value::String(r.try_get(1)?),
                r.try_get::<i64, _>(2)?.into(),
                Value::String(r.try_get(3)?),
                Value::String(r.try_get(4)?),
                Value::String(r.try_get(5)?),
                r.try_get::<i64, _>(6)?.into(),
                r.try_get::<i64, _>(7)?.into(),
            ])
            .map_err(io_err)?;
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    sink.end_table().map_err(io_err)?;

    // Events, in time order: keyset paging on (occurred_at, id) follows the
    // (customer_id, occurred_at) index, so each page is a range read
    // (paging on id alone re-reads the customer's events for every page).
    sink.begin_table("events", EVENTS).map_err(io_err)?;
    let mut after = (i64::MIN, 0i64);
    loop {
        let rows = sqlx::query(
            "SELECT e.id, e.event_uid, e.kind, p.sku, p.name, e.channel, e.occurred_at \
             FROM events e LEFT JOIN products p ON p.id = e.product_id \
             WHERE e.customer_id = $1 AND (e.occurred_at, e.id) > ($2, $3) \
             ORDER BY e.occurred_at, e.id LIMIT $4",
        )
        .bind(id)
        .bind(after.0)
        .bind(after.1)
        .bind(PAGE)
        .fetch_all(&db.pool)
        .await?;
        for r in &rows {
            after = (r.try_get(6)?, r.try_get(0)?);
            sink.row(&[
                Value::String(r.try_get(1)?),
                Value::String(r.try_get(2)?),
                r.try_get::<Option<String>, _>(3)?.into(),
                r.try_get::<Option<String>, _>(4)?.into(),
                Value::String(r.try_get(5)?),
                ts(r.try_get(6)?),
            ])
            .map_err(io_err)?;
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    sink.end_table().map_err(io_err)?;

    // Consent history with receipts, then the current state.
    sink.begin_table("consents", CONSENTS).map_err(io_err)?;
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT id, receipt_id, purpose, granted, occurred_at, recorded_at, source, evidence, \
             evidence_hash, actor FROM consent_events WHERE customer_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(PAGE)
        .fetch_all(&db.pool)
        .await?;
        for r in &rows {
            after = r.try_get(0)?;
            let hash: Option<Vec<u8>> = r.try_get(8)?;
            sink.row(&[
                Value::String(r.try_get(1)?),
                Value::String(r.try_get(2)?),
                Value::Bool(r.try_get::<i64, _>(3)? == 1),
                ts(r.try_get(4)?),
                ts(r.try_get(5)?),
                Value::String(r.try_get(6)?),
                r.try_get::<Option<String>, _>(7)?.into(),
                hash.map(hex::encode).into(),
                Value::String(r.try_get(9)?),
            ])
            .map_err(io_err)?;
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    sink.end_table().map_err(io_err)?;

    sink.begin_table("consent_state", CONSENT_STATE)
        .map_err(io_err)?;
    let rows = sqlx::query(
        "SELECT purpose, granted, occurred_at FROM consent_state WHERE customer_id = $1 \
         ORDER BY purpose",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    for r in &rows {
        sink.row(&[
            Value::String(r.try_get(0)?),
            Value::Bool(r.try_get::<i64, _>(1)? == 1),
            ts(r.try_get(2)?),
        ])
        .map_err(io_err)?;
    }
    sink.end_table().map_err(io_err)?;

    // Derived structures of other subsystems.
    let hooks = state.dsr.hooks.all();
    for hook in hooks.iter() {
        let value = hook.export(db, id).await?;
        sink.section(hook.name(), &value).map_err(io_err)?;
    }
    for (name, empty) in [
        ("segments", json!([])),
        ("recommendation_profile", Value::Null),
    ] {
        if !hooks.iter().any(|h| h.name() == name) {
            sink.section(name, &empty).map_err(io_err)?;
        }
    }

    // Their data subject requests.
    sink.begin_table("requests", REQUESTS).map_err(io_err)?;
    let rows = sqlx::query(
        "SELECT request_uid, kind, status, received_at, due_at FROM dsr_requests \
         WHERE customer_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    for r in &rows {
        sink.row(&[
            Value::String(r.try_get(0)?),
            Value::String(r.try_get(1)?),
            Value::String(r.try_get(2)?),
            ts(r.try_get(3)?),
            ts(r.try_get(4)?),
        ])
        .map_err(io_err)?;
    }
    sink.end_table().map_err(io_err)?;

    // Who accessed their data: every audit event that touched them.
    sink.begin_table("accesses", ACCESSES).map_err(io_err)?;
    let filter = AuditFilter {
        customer: Some(id),
        ..AuditFilter::default()
    };
    let mut cursor: Option<String> = None;
    loop {
        let page = audit::query(db, &filter, cursor.as_deref(), audit::export::MAX_LIMIT)
            .await
            .map_err(|e| DsrError::Store(anyhow::anyhow!("reading the audit trail: {e}")))?;
        for s in &page.events {
            let e = &s.event;
            let fields: Vec<String> = e
                .fields
                .iter()
                .map(|(f, t)| format!("{f}:{}", t.as_str()))
                .collect();
            sink.row(&[
                ts(e.occurred_at),
                Value::String(e.actor.clone()),
                Value::String(e.roles.join(" ")),
                Value::String(e.action.as_str().to_owned()),
                e.purpose.clone().into(),
                Value::String(e.decision.as_str().to_owned()),
                Value::String(fields.join(" ")),
                i64::from(e.status).into(),
            ])
            .map_err(io_err)?;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    sink.end_table().map_err(io_err)?;
    Ok(())
}

/// A private temporary file, removed when dropped.
struct TempFile {
    path: PathBuf,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The directory of temporary documents.
pub fn temp_dir(state: &AppState) -> PathBuf {
    state.config.data_dir.join("dsr-tmp")
}

/// Removes temporary documents left by a crash (called at start).
pub fn clean_temp_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn create_private(dir: &Path, name: &str) -> io::Result<(TempFile, std::fs::File)> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&path)?;
    Ok((TempFile { path }, file))
}

/// Produces the document of `request` in `format` and stores it.
pub async fn generate(
    state: &AppState,
    request: &RequestRow,
    format: Format,
) -> Result<Document, DsrError> {
    let name = super::random_id("tmp_")?;
    let (temp, file) = create_private(&temp_dir(state), &name).map_err(io_err)?;
    let out = BufWriter::with_capacity(64 * 1024, file);
    match format {
        Format::Json => {
            let mut sink = JsonSink::new(out).map_err(io_err)?;
            produce(state, request, &mut sink).await?;
            sink.finish().map_err(io_err)?;
        }
        Format::Zip => {
            let mut sink = ZipSink::new(out).map_err(io_err)?;
            produce(state, request, &mut sink).await?;
            let mut out = sink.finish().map_err(io_err)?;
            out.flush().map_err(io_err)?;
        }
    }
    let doc =
        documents::store_file(state, request.id, request.customer_id, format, &temp.path).await?;
    drop(temp);
    metrics::counter!("custodian_dsr_documents_total", "format" => format.as_str()).increment(1);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_guarded() {
        let mut out = Vec::new();
        push_csv_field(&mut out, "a,\"b\"");
        assert_eq!(out, b"\"a,\"\"b\"\"\"");
        assert_eq!(csv_text(&json!("=cmd()")), "'=cmd()");
        assert_eq!(csv_text(&json!(-5)), "-5");
        assert_eq!(csv_text(&Value::Null), "");
    }

    #[test]
    fn json_sink_writes_one_valid_object() {
        let mut sink = JsonSink::new(Vec::new()).unwrap();
        sink.section("about", &json!({"x": 1})).unwrap();
        sink.single("profile", &["a", "b"], &[json!(1), Value::Null])
            .unwrap();
        sink.begin_table("t", &["k"]).unwrap();
        sink.row(&[json!("v1")]).unwrap();
        sink.row(&[json!("v2")]).unwrap();
        sink.end_table().unwrap();
        sink.begin_table("empty", &["k"]).unwrap();
        sink.end_table().unwrap();
        let bytes = sink.finish().unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["format"], JSON_FORMAT);
        assert_eq!(v["profile"], json!({"a": 1, "b": null}));
        assert_eq!(v["t"], json!([{"k": "v1"}, {"k": "v2"}]));
        assert_eq!(v["empty"], json!([]));
    }
}
