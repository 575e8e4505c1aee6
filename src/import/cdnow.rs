//! The CDNOW purchase history (Fader and Hardie): `customer_id, date,
//! number_of_cds, dollar_value`, one purchase per row.
//!
//! Mapping:
//! - customer `17` → customer `external_id` `cdnow-17` (the prefix keeps the
//!   ids of this data set apart from other sources' numeric ids), no
//!   country, `signup_at` = first purchase seen;
//! - each row → one order (`source = 'cdnow'`, currency USD) with one line
//!   of the one product the data set knows, `CDNOW-CD` (category `music`):
//!   quantity = number of CDs, unit price = amount / quantity rounded to a
//!   cent, order total = the amount exactly (so `SUM(total_cents)` is the
//!   file's revenue to the cent);
//! - order `external_id` = `cdnow-<customer>-<yyyymmdd>-<n>`, `n` counting
//!   the customer's purchases on that day in file order: stable across
//!   re-runs, so a second run adds nothing;
//! - dates `1997-01-01` or `19970101`, midnight UTC.
//!
//! The file is sorted by customer; rows are written in batches of whole
//! customers, one transaction each, so memory holds one batch.

use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::time::Instant;

use super::standardize::{parse_date_ymd, parse_decimal_cents};
use super::store::{customer_ids, insert_customers};
use super::{ImportOptions, ImportSummary, Progress, SkipReason, TransformReason};
use crate::db::customers::{NewCustomer, Profile};
use crate::db::orders::{self, NewOrder, NewOrderLine, OrderKind};
use crate::db::products::{self, NewProduct};
use crate::db::Db;

/// The header the file must start with.
pub const HEADER: [&str; 4] = ["customer_id", "date", "number_of_cds", "dollar_value"];

/// `orders.source` of imported rows.
pub const SOURCE: &str = "cdnow";
/// The currency of the data set's amounts.
pub const CURRENCY: &str = "USD";
/// The one product of the data set.
pub const PRODUCT_SKU: &str = "CDNOW-CD";
/// Prefix of customer external ids.
pub const CUSTOMER_PREFIX: &str = "cdnow-";

struct Purchase {
    customer: String,
    day: String,
    placed_at: i64,
    quantity: i64,
    total_cents: i64,
}

/// Imports the CDNOW CSV from `reader`.
///
/// Errors only on an unreadable input, a wrong header, or a database
/// failure; bad rows are counted in the summary. After a database failure
/// the committed batches remain and a re-run completes the import.
pub async fn import_cdnow<R: Read + Send>(
    db: &Db,
    reader: R,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let header = csv.headers().context("cannot read the CSV header")?;
    let found: Vec<&str> = header
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}'))
        .collect();
    if found != HEADER {
        anyhow::bail!("not a CDNOW CSV: expected header {}", HEADER.join(","));
    }
    let mut summary = ImportSummary::default();
    let mut batch: Vec<Purchase> = Vec::new();
    let mut customers_in_batch = 0usize;
    let mut last_customer: Option<String> = None;
    let mut record = csv::StringRecord::new();
    loop {
        let more = match csv.read_record(&mut record) {
            Ok(more) => more,
            Err(e) if super::online_retail::is_row_error(&e) => {
                summary.rows_read += 1;
                summary.skip(SkipReason::UnreadableRow);
                continue;
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(e).with_context(|| format!("cannot read the input at line {line}"));
            }
        };
        if !more {
            break;
        }
        summary.rows_read += 1;
        let purchase = match parse_row(&record, &mut summary) {
            Ok(p) => p,
            Err(reason) => {
                summary.skip(reason);
                continue;
            }
        };
        if last_customer.as_deref() != Some(purchase.customer.as_str()) {
            if customers_in_batch >= opts.batch_invoices.max(1) {
                flush(db, &mut batch, opts, &mut summary).await?;
                customers_in_batch = 0;
                progress.update(csv.position().byte(), summary.rows_read);
            }
            customers_in_batch += 1;
            last_customer = Some(purchase.customer.clone());
        }
        batch.push(purchase);
    }
    flush(db, &mut batch, opts, &mut summary).await?;
    progress.update(csv.position().byte(), summary.rows_read);
    progress.finish();
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        rows = summary.rows_read,
        orders = summary.orders_created,
        skipped = summary.skipped_total(),
        elapsed_ms = summary.elapsed_ms,
        "cdnow import finished"
    );
    Ok(summary)
}

fn parse_row(r: &csv::StringRecord, s: &mut ImportSummary) -> Result<Purchase, SkipReason> {
    if r.len() != HEADER.len() {
        return Err(SkipReason::WrongColumnCount);
    }
    let field = |i: usize| r.get(i).unwrap_or("");
    let id = field(0);
    if id.is_empty() {
        return Err(SkipReason::MissingField);
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SkipReason::BadNumber);
    }
    let id = id.trim_start_matches('0');
    if id.is_empty() {
        return Err(SkipReason::BadNumber);
    }
    let (placed_at, day) = parse_date_ymd(field(1)).ok_or(SkipReason::BadDate)?;
    let quantity: i64 = field(2).parse().map_err(|_| SkipReason::BadNumber)?;
    let total_cents = parse_decimal_cents(field(3), '.').ok_or(SkipReason::BadNumber)?;
    if quantity <= 0 {
        return Err(SkipReason::NonPositiveQuantity);
    }
    if total_cents < 0 {
        return Err(SkipReason::NegativeAmount);
    }
    if total_cents == 0 {
        s.transform(TransformReason::ZeroAmount);
    }
    Ok(Purchase {
        customer: format!("{CUSTOMER_PREFIX}{id}"),
        day,
        placed_at,
        quantity,
        total_cents,
    })
}

/// Writes one batch of whole customers in one transaction.
async fn flush(
    db: &Db,
    batch: &mut Vec<Purchase>,
    opts: &ImportOptions,
    summary: &mut ImportSummary,
) -> anyhow::Result<()> {
    let purchases = std::mem::take(batch);
    if purchases.is_empty() {
        return Ok(());
    }
    let now = opts.now;
    let mut tx = db
        .pool
        .begin()
        .await
        .context("cannot start a transaction")?;
    let price = purchases
        .first()
        .map_or(0, |p| p.total_cents / p.quantity.max(1));
    summary.products_created += products::insert_many(
        &mut tx,
        &[NewProduct {
            sku: PRODUCT_SKU.to_owned(),
            name: "CD (CDNOW)".to_owned(),
            category: "music".to_owned(),
            price_cents: price.max(0),
        }],
        now,
    )
    .await?;
    let product_id = products::ids_by_sku(&mut tx, &[PRODUCT_SKU])
        .await?
        .get(PRODUCT_SKU)
        .copied()
        .context("the CDNOW product vanished during import")?;

    let mut new_customers = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for p in &purchases {
        if seen.insert(p.customer.as_str()) {
            new_customers.push(NewCustomer {
                external_id: p.customer.clone(),
                profile: Profile::default(),
                city: None,
                country: None,
                signup_at: p.placed_at,
            });
        }
    }
    summary.customers_created += insert_customers(&mut tx, None, &new_customers, now)
        .await?
        .created;
    let keys: Vec<&str> = seen.into_iter().collect();
    let ids = customer_ids(&mut tx, &keys).await?;

    // n counts a customer's purchases per day in file order.
    let mut per_day: HashMap<(&str, &str), u32> = HashMap::new();
    let mut new_orders = Vec::with_capacity(purchases.len());
    for p in &purchases {
        let n = per_day
            .entry((p.customer.as_str(), p.day.as_str()))
            .or_insert(0);
        *n += 1;
        new_orders.push(NewOrder {
            external_id: format!("{}-{}-{n}", p.customer, p.day),
            customer_id: ids.get(&p.customer).copied(),
            kind: OrderKind::Order,
            return_of: None,
            placed_at: p.placed_at,
            country: None,
            total_cents: p.total_cents,
            source: SOURCE.into(),
            currency: Some(CURRENCY.into()),
        });
    }
    let created = orders::insert_many(&mut tx, &new_orders, now).await?;
    let mut lines = Vec::with_capacity(created.len());
    for (p, o) in purchases.iter().zip(&new_orders) {
        let Some(&order_id) = created.get(&o.external_id) else {
            summary.orders_already_present += 1;
            summary.lines_already_present += 1;
            continue;
        };
        summary.orders_created += 1;
        lines.push(NewOrderLine {
            order_id,
            line_no: 1,
            product_id,
            quantity: p.quantity,
            unit_price_cents: unit_price(p.total_cents, p.quantity),
        });
    }
    summary.order_lines_created += orders::insert_lines(&mut tx, &lines).await?;
    tx.commit().await.context("cannot commit an import batch")?;
    Ok(())
}

/// `total / quantity`, rounded half up to a cent.
fn unit_price(total_cents: i64, quantity: i64) -> i64 {
    let q = quantity.max(1);
    (total_cents.saturating_mul(2).saturating_add(q)) / (2 * q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_prices_round_half_up() {
        assert_eq!(unit_price(7700, 5), 1540);
        assert_eq!(unit_price(1000, 3), 333);
        assert_eq!(unit_price(1001, 2), 501);
        assert_eq!(unit_price(0, 1), 0);
    }
}
