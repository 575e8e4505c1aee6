//! The UCI "Online Retail" CSV (`InvoiceNo, StockCode, Description,
//! Quantity, InvoiceDate, UnitPrice, CustomerID, Country`).
//!
//! Mapping:
//! - one invoice → one order (`external_id` = InvoiceNo); invoices starting
//!   with `C` are cancellations and become `kind = 'return'` orders with the
//!   file's negative quantities and totals (so `SUM(total_cents)` is net
//!   revenue), linked through `return_of` to the same customer's most recent
//!   order, placed no later, that contains one of the returned stock codes;
//! - `line_no` = position of the line among the invoice's rows in the file
//!   (stable across re-runs; skipped rows leave gaps);
//! - CustomerID (`17850` or `17850.0`) → customer `external_id` `17850`,
//!   with the invoice's country and `signup_at` = first invoice seen;
//!   lines without one are guest lines ([`GuestPolicy`]);
//! - StockCode → product `sku`, Description → name, unit price → price; the
//!   first line seen wins; the category comes from [`category_of`];
//! - dates (`2010-12-01 08:26:00` or `12/1/2010 8:26`, month first) are read
//!   as UTC.
//!
//! The file is grouped by invoice; consecutive lines of one invoice are
//! gathered and written in batches of whole invoices, one transaction each.
//! Memory holds one batch, whatever the file size.

use anyhow::Context;
use std::collections::HashSet;
use std::io::Read;
use std::time::Instant;

use super::store::{customer_ids, insert_customers};
use super::synth::person_for_key;
use super::{GuestPolicy, ImportOptions, ImportSummary, Progress, SkipReason, TransformReason};
use crate::db::customers::{NewCustomer, Profile, ProfileSealer};
use crate::db::orders::{self, NewOrder, NewOrderLine, OrderKind};
use crate::db::products::{self, NewProduct};
use crate::db::Db;

/// The header the file must start with.
pub const HEADER: [&str; 8] = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
];

/// `orders.source` of imported rows.
pub const SOURCE: &str = "online_retail";

/// Category keywords, checked in order against the upper-cased description;
/// the first match wins, `other` otherwise. Seasonal and occasion words come
/// first (a "CHRISTMAS CANDLE" is Christmas stock), then product types.
/// Postage, fees and manual adjustments (non-merchandise stock codes) are
/// `service`.
pub const CATEGORY_KEYWORDS: &[(&str, &[&str])] = &[
    (
        "christmas",
        &[
            "CHRISTMAS",
            "XMAS",
            "ADVENT",
            "SANTA",
            "REINDEER",
            "SNOWFLAKE",
        ],
    ),
    (
        "party",
        &[
            "PARTY",
            "BIRTHDAY",
            "BUNTING",
            "BALLOON",
            "CAKE CASES",
            "NAPKINS",
        ],
    ),
    ("bags", &["BAG", "TOTE", "PURSE", "SHOPPER"]),
    (
        "candles_lighting",
        &[
            "CANDLE",
            "T-LIGHT",
            "TEALIGHT",
            "LANTERN",
            "LAMP",
            "LIGHT",
            "NIGHTLIGHT",
        ],
    ),
    (
        "kitchen",
        &[
            "MUG",
            "CUP",
            "PLATE",
            "BOWL",
            "TEA",
            "JUG",
            "BAKING",
            "LUNCH BOX",
            "BOTTLE",
            "JAR",
            "TIN",
            "SPOON",
            "APRON",
            "TRAY",
            "CAKE",
        ],
    ),
    (
        "stationery",
        &[
            "CARD", "WRAP", "PAPER", "NOTEBOOK", "PEN", "PENCIL", "STICKER", "TAPE", "ENVELOPE",
            "CALENDAR",
        ],
    ),
    (
        "toys_games",
        &[
            "TOY", "GAME", "DOLL", "PUZZLE", "JIGSAW", "SPACEBOY", "DOLLY",
        ],
    ),
    (
        "garden",
        &[
            "GARDEN",
            "PLANT",
            "FLOWER POT",
            "WATERING",
            "BIRD",
            "DOORMAT",
        ],
    ),
    (
        "jewellery_accessories",
        &[
            "NECKLACE", "BRACELET", "EARRINGS", "RING", "HAIR", "UMBRELLA", "SCARF",
        ],
    ),
    (
        "home_decor",
        &[
            "HEART",
            "FRAME",
            "CLOCK",
            "SIGN",
            "MIRROR",
            "CUSHION",
            "HOOK",
            "HANGER",
            "DECORATION",
            "ORNAMENT",
            "VASE",
            "BOX",
            "DRAWER",
            "HOLDER",
        ],
    ),
];

/// Stock codes that are not merchandise: postage, fees, manual adjustments.
const SERVICE_CODES: &[&str] = &[
    "POST",
    "DOT",
    "M",
    "m",
    "C2",
    "D",
    "S",
    "B",
    "BANK CHARGES",
    "AMAZONFEE",
    "CRUK",
    "PADS",
];

/// The category of a product, from its stock code and description.
pub fn category_of(sku: &str, description: &str) -> &'static str {
    if SERVICE_CODES.contains(&sku) {
        return "service";
    }
    let upper = description.to_ascii_uppercase();
    CATEGORY_KEYWORDS
        .iter()
        .find(|(_, words)| words.iter().any(|w| upper.contains(w)))
        .map_or("other", |(category, _)| category)
}

/// Imports the Online Retail CSV from `reader`. With
/// `opts.synthesize_profiles`, created customers get synthetic profiles
/// sealed by `sealer` (which is then required).
///
/// Errors only on an unreadable input, a wrong header, or a database
/// failure; bad rows are counted in the summary, never fatal. After a
/// database failure, the batches committed so far remain and a re-run
/// completes the import.
pub async fn import_online_retail<R: Read + Send>(
    db: &Db,
    sealer: Option<&dyn ProfileSealer>,
    reader: R,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let sealer = match (opts.synthesize_profiles, sealer) {
        (true, None) => anyhow::bail!("synthesizing profiles needs a profile sealer"),
        (true, Some(s)) => Some(s),
        (false, _) => None,
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let header = csv.headers().context("cannot read the CSV header")?;
    let found: Vec<&str> = header.iter().map(str::trim).collect();
    // Some exports start with a UTF-8 byte order mark.
    let first_ok = found
        .first()
        .is_some_and(|h| h.trim_start_matches('\u{feff}') == HEADER[0]);
    if !first_ok || found.get(1..) != HEADER.get(1..) {
        anyhow::bail!(
            "not an Online Retail CSV: expected header {}",
            HEADER.join(",")
        );
    }

    let mut summary = ImportSummary::default();
    let mut batch = Batch::default();
    let mut current: Option<Invoice> = None;
    let mut record = csv::StringRecord::new();
    loop {
        let more = match csv.read_record(&mut record) {
            Ok(more) => more,
            Err(e) if is_row_error(&e) => {
                summary.rows_read += 1;
                summary.skip(SkipReason::UnreadableRow);
                continue;
            }
            Err(e) => return Err(e).context("cannot read the input"),
        };
        if !more {
            break;
        }
        summary.rows_read += 1;
        if record.len() != HEADER.len() {
            summary.skip(SkipReason::WrongColumnCount);
            continue;
        }
        let invoice_no = record.get(0).unwrap_or("").trim();
        if invoice_no.is_empty() {
            summary.skip(SkipReason::MissingField);
            continue;
        }
        let same_invoice = matches!(&current, Some(inv) if inv.no == invoice_no);
        if !same_invoice {
            if let Some(done) = current.take() {
                batch.push(done, &mut summary);
            }
            summary.invoices_read += 1;
            let repeated = batch.seen.contains(invoice_no);
            current = Some(Invoice::new(invoice_no, repeated));
            if batch.invoices.len() >= opts.batch_invoices.max(1) {
                flush(db, sealer, &mut batch, opts, &mut summary).await?;
                progress.update(csv.position().byte(), summary.rows_read);
            }
        }
        if let Some(inv) = current.as_mut() {
            inv.add_row(&record, opts.guests, &mut summary);
        }
    }
    if let Some(done) = current.take() {
        batch.push(done, &mut summary);
    }
    flush(db, sealer, &mut batch, opts, &mut summary).await?;
    progress.update(csv.position().byte(), summary.rows_read);
    progress.finish();
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        rows = summary.rows_read,
        orders = summary.orders_created,
        returns = summary.returns_created,
        skipped = summary.skipped_total(),
        elapsed_ms = summary.elapsed_ms,
        "online retail import finished"
    );
    Ok(summary)
}

/// Errors confined to one record (the reader can continue past them).
pub(crate) fn is_row_error(e: &csv::Error) -> bool {
    matches!(
        e.kind(),
        csv::ErrorKind::Utf8 { .. } | csv::ErrorKind::UnequalLengths { .. }
    )
}

struct Line {
    line_no: i64,
    sku: String,
    description: String,
    quantity: i64,
    price_cents: i64,
}

struct Invoice {
    no: String,
    kind: OrderKind,
    /// Set when the invoice number reappeared within the batch: its rows are
    /// skipped rather than merged into an order already gathered.
    repeated: bool,
    rows: i64,
    /// From the first valid line.
    customer: Option<String>,
    country: Option<String>,
    placed_at: i64,
    lines: Vec<Line>,
}

impl Invoice {
    fn new(no: &str, repeated: bool) -> Self {
        let kind = if no.starts_with('C') {
            OrderKind::Return
        } else {
            OrderKind::Order
        };
        Self {
            no: no.to_owned(),
            kind,
            repeated,
            rows: 0,
            customer: None,
            country: None,
            placed_at: 0,
            lines: Vec::new(),
        }
    }

    /// Validates one row of this invoice; a valid one becomes a line, any
    /// other is counted under its reason.
    fn add_row(&mut self, r: &csv::StringRecord, guests: GuestPolicy, s: &mut ImportSummary) {
        self.rows += 1;
        match self.parse_row(r, guests, s) {
            Ok(line) => self.lines.push(line),
            Err(reason) => s.skip(reason),
        }
    }

    fn parse_row(
        &mut self,
        r: &csv::StringRecord,
        guests: GuestPolicy,
        s: &mut ImportSummary,
    ) -> Result<Line, SkipReason> {
        let field = |i: usize| r.get(i).unwrap_or("").trim();
        if self.repeated {
            return Err(SkipReason::InvoiceNotContiguous);
        }
        let sku = field(1);
        if sku.is_empty() {
            return Err(SkipReason::MissingField);
        }
        let quantity: i64 = field(3).parse().map_err(|_| SkipReason::BadNumber)?;
        let price = parse_price(field(5)).ok_or(SkipReason::BadNumber)?;
        let customer = parse_customer(field(6)).map_err(|()| SkipReason::BadNumber)?;
        let placed_at = parse_invoice_date(field(4)).ok_or(SkipReason::BadDate)?;
        if customer.is_none() && guests == GuestPolicy::Skip {
            return Err(SkipReason::GuestSkipped);
        }
        if price <= 0.0 {
            return Err(SkipReason::NonPositivePrice);
        }
        match self.kind {
            OrderKind::Order if quantity <= 0 => return Err(SkipReason::NonPositiveQuantity),
            OrderKind::Return if quantity >= 0 => {
                return Err(SkipReason::NonNegativeReturnQuantity)
            }
            _ => {}
        }
        if self.lines.is_empty() {
            self.customer = customer;
            let country = field(7);
            self.country = (!country.is_empty()).then(|| country.to_owned());
            self.placed_at = placed_at;
        } else if self.customer != customer {
            return Err(SkipReason::InconsistentInvoice);
        }
        let mut price_cents = (price * 100.0).round() as i64;
        if price_cents == 0 {
            price_cents = 1;
            s.transform(TransformReason::SubCentPriceRoundedUp);
        }
        let mut description = field(2).to_owned();
        if description.is_empty() {
            description = sku.to_owned();
            s.transform(TransformReason::MissingDescription);
        }
        if self.customer.is_none() {
            s.transform(TransformReason::GuestKept);
        }
        if self.kind == OrderKind::Return {
            s.transform(TransformReason::CancellationAsReturn);
        }
        Ok(Line {
            line_no: self.rows,
            sku: sku.to_owned(),
            description,
            quantity,
            price_cents,
        })
    }

    fn total_cents(&self) -> i64 {
        self.lines.iter().fold(0i64, |t, l| {
            t.saturating_add(l.quantity.saturating_mul(l.price_cents))
        })
    }
}

/// Whole invoices waiting for the next transaction.
#[derive(Default)]
struct Batch {
    invoices: Vec<Invoice>,
    seen: HashSet<String>,
}

impl Batch {
    fn push(&mut self, invoice: Invoice, summary: &mut ImportSummary) {
        if invoice.lines.is_empty() {
            summary.invoices_without_valid_lines += 1;
            return;
        }
        self.seen.insert(invoice.no.clone());
        self.invoices.push(invoice);
    }
}

/// Writes one batch in one transaction: products, customers, orders, lines,
/// then links the new returns.
async fn flush(
    db: &Db,
    sealer: Option<&dyn ProfileSealer>,
    batch: &mut Batch,
    opts: &ImportOptions,
    summary: &mut ImportSummary,
) -> anyhow::Result<()> {
    let invoices = std::mem::take(&mut batch.invoices);
    batch.seen.clear();
    if invoices.is_empty() {
        return Ok(());
    }
    let now = opts.now;
    let mut tx = db
        .pool
        .begin()
        .await
        .context("cannot start a transaction")?;

    // Products: the first line seen (in file order) names and prices a SKU.
    let mut products_new: Vec<NewProduct> = Vec::new();
    let mut sku_seen: HashSet<&str> = HashSet::new();
    for line in invoices.iter().flat_map(|i| &i.lines) {
        if sku_seen.insert(line.sku.as_str()) {
            products_new.push(NewProduct {
                sku: line.sku.clone(),
                name: line.description.clone(),
                category: category_of(&line.sku, &line.description).to_owned(),
                price_cents: line.price_cents.abs(),
            });
        }
    }
    summary.products_created += products::insert_many(&mut tx, &products_new, now).await?;
    let skus: Vec<&str> = sku_seen.into_iter().collect();
    let product_ids = products::ids_by_sku(&mut tx, &skus).await?;

    // Customers: country and signup time from their first invoice seen.
    let mut customers_new: Vec<NewCustomer> = Vec::new();
    let mut customer_seen: HashSet<&str> = HashSet::new();
    for inv in &invoices {
        let Some(external_id) = inv.customer.as_deref() else {
            continue;
        };
        if !customer_seen.insert(external_id) {
            continue;
        }
        let (profile, city) = if sealer.is_some() {
            let p = person_for_key(external_id, inv.country.as_deref().unwrap_or(""));
            (p.profile, Some(p.city))
        } else {
            (Profile::default(), None)
        };
        customers_new.push(NewCustomer {
            external_id: external_id.to_owned(),
            profile,
            city,
            country: inv.country.clone(),
            signup_at: inv.placed_at,
        });
    }
    let created = insert_customers(&mut tx, sealer, &customers_new, now).await?;
    summary.customers_created += created.created;
    summary.profiles_sealed += created.sealed;
    let external_ids: Vec<&str> = customer_seen.into_iter().collect();
    let customer_ids = customer_ids(&mut tx, &external_ids).await?;

    // Orders, then the lines of the orders this run created.
    let new_orders: Vec<NewOrder> = invoices
        .iter()
        .map(|inv| NewOrder {
            external_id: inv.no.clone(),
            customer_id: inv
                .customer
                .as_ref()
                .and_then(|c| customer_ids.get(c).copied()),
            kind: inv.kind,
            return_of: None,
            placed_at: inv.placed_at,
            country: inv.country.clone(),
            total_cents: inv.total_cents(),
            source: SOURCE.into(),
            currency: Some("GBP".into()),
        })
        .collect();
    let order_ids = orders::insert_many(&mut tx, &new_orders, now).await?;
    let mut lines: Vec<NewOrderLine> = Vec::new();
    let mut returns: Vec<(i64, i64, Vec<i64>, i64)> = Vec::new();
    for (inv, order) in invoices.iter().zip(&new_orders) {
        let Some(&order_id) = order_ids.get(&inv.no) else {
            summary.orders_already_present += 1;
            summary.lines_already_present += inv.lines.len() as u64;
            continue;
        };
        match inv.kind {
            OrderKind::Order => summary.orders_created += 1,
            OrderKind::Return => summary.returns_created += 1,
        }
        if order.customer_id.is_none() {
            summary.guest_orders_created += 1;
        }
        let mut returned = Vec::new();
        for line in &inv.lines {
            let product_id = product_ids
                .get(&line.sku)
                .copied()
                .with_context(|| format!("product {} vanished during import", line.sku))?;
            returned.push(product_id);
            lines.push(NewOrderLine {
                order_id,
                line_no: line.line_no,
                product_id,
                quantity: line.quantity,
                unit_price_cents: line.price_cents,
            });
        }
        if inv.kind == OrderKind::Return {
            match order.customer_id {
                Some(customer_id) => returns.push((order_id, customer_id, returned, inv.placed_at)),
                None => summary.returns_unlinked += 1,
            }
        }
    }
    summary.order_lines_created += orders::insert_lines(&mut tx, &lines).await?;

    // Returns last, so an original in this very batch is already visible.
    for (return_id, customer_id, products, at) in &returns {
        match orders::find_return_origin(&mut tx, *customer_id, products, *at).await? {
            Some(original) => {
                orders::set_return_of(&mut tx, *return_id, original).await?;
                summary.returns_linked += 1;
            }
            None => summary.returns_unlinked += 1,
        }
    }
    tx.commit().await.context("cannot commit an import batch")?;
    Ok(())
}

/// `2.55` → 2.55; `None` when not a finite number.
fn parse_price(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|p| p.is_finite())
}

/// `17850`, `17850.0` → `Some("17850")`; empty → `None` (guest); anything
/// else is an error.
fn parse_customer(s: &str) -> Result<Option<String>, ()> {
    if s.is_empty() {
        return Ok(None);
    }
    let digits = s.strip_suffix(".0").unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Err(());
    }
    Ok(Some(digits.to_owned()))
}

/// `2010-12-01 08:26:00`, `2010-12-01 08:26` or `12/1/2010 8:26` (month
/// first, as in the UCI original) → microseconds since the epoch, as UTC.
pub fn parse_invoice_date(s: &str) -> Option<i64> {
    let (date, clock) = s.trim().split_once(' ')?;
    let num = |p: Option<&str>| p.and_then(|v| v.trim().parse::<i32>().ok());
    let (year, month, day) = if date.contains('-') {
        let mut it = date.split('-');
        let ymd = (num(it.next())?, num(it.next())?, num(it.next())?);
        it.next().is_none().then_some(ymd)?
    } else {
        let mut it = date.split('/');
        let (m, d, y) = (num(it.next())?, num(it.next())?, num(it.next())?);
        it.next().is_none().then_some((y, m, d))?
    };
    let mut it = clock.split(':');
    let hour = num(it.next())?;
    let minute = num(it.next())?;
    let second = match it.next() {
        Some(s) => num(Some(s))?,
        None => 0,
    };
    if it.next().is_some() {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_utc()
            .unix_timestamp()
            * 1_000_000,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_both_formats() {
        let iso = parse_invoice_date("2010-12-01 08:26:00").unwrap();
        assert_eq!(parse_invoice_date("12/1/2010 8:26"), Some(iso));
        assert_eq!(parse_invoice_date("2010-12-01 08:26"), Some(iso));
        assert_eq!(iso, 1_291_191_960_000_000);
        assert_eq!(parse_invoice_date("13/1/2010 8:26"), None);
        assert_eq!(parse_invoice_date("2010-02-30 08:26:00"), None);
        assert_eq!(parse_invoice_date("yesterday"), None);
    }

    #[test]
    fn customer_ids_are_normalized() {
        assert_eq!(parse_customer("17850.0"), Ok(Some("17850".to_owned())));
        assert_eq!(parse_customer("17850"), Ok(Some("17850".to_owned())));
        assert_eq!(parse_customer(""), Ok(None));
        assert_eq!(parse_customer("abc"), Err(()));
        assert_eq!(parse_customer("17850.5"), Err(()));
    }

    #[test]
    fn categories_follow_the_keyword_table() {
        assert_eq!(
            category_of("85123A", "WHITE HANGING HEART T-LIGHT HOLDER"),
            "candles_lighting"
        );
        assert_eq!(category_of("1", "CHRISTMAS CANDLE"), "christmas");
        assert_eq!(category_of("2", "JUMBO BAG RED RETROSPOT"), "bags");
        assert_eq!(category_of("POST", "POSTAGE"), "service");
        assert_eq!(category_of("3", "SOMETHING ELSE"), "other");
    }
}
