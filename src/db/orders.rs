//! Orders and order lines: bulk "insert if new" by external id, and the
//! look-up that links a return to the order it returns.

use sqlx::{Any, Row, Transaction};
use std::borrow::Cow;
use std::collections::HashMap;

use super::bulk::{list_placeholders, rows_per_statement, values_clause, Placeholders};

/// `kind` of an order row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderKind {
    Order,
    Return,
}

impl OrderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Return => "return",
        }
    }
}

/// An order (or return) to create unless its external id exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub external_id: String,
    /// `None` for guest (anonymous) orders.
    pub customer_id: Option<i64>,
    pub kind: OrderKind,
    pub return_of: Option<i64>,
    pub placed_at: i64,
    pub country: Option<String>,
    pub total_cents: i64,
    /// Where the row came from (`online_retail`, `demo`, `api`, or a
    /// mapped source's name).
    pub source: Cow<'static, str>,
    /// ISO 4217 code of `total_cents` and the lines' prices.
    pub currency: Option<Cow<'static, str>>,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrderLine {
    pub order_id: i64,
    pub line_no: i64,
    pub product_id: i64,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

/// Inserts the orders whose external id is new. Returns external id → id of
/// the rows created by this call only, so callers add lines to new orders
/// and leave existing ones (and their lines) untouched.
pub async fn insert_many(
    tx: &mut Transaction<'_, Any>,
    orders: &[NewOrder],
    now: i64,
) -> crate::db::DbResult<HashMap<String, i64>> {
    let style = Placeholders::of(tx);
    let mut created = HashMap::with_capacity(orders.len());
    for chunk in orders.chunks(rows_per_statement(10)) {
        let sql = format!(
            "INSERT INTO orders (external_id, customer_id, kind, return_of, placed_at, country, \
             total_cents, source, currency, created_at) VALUES {} \
             ON CONFLICT (external_id) DO NOTHING RETURNING id, external_id",
            values_clause(style, chunk.len(), 10)
        );
        let mut q = sqlx::query(&sql);
        for o in chunk {
            q = q
                .bind(&o.external_id)
                .bind(o.customer_id)
                .bind(o.kind.as_str())
                .bind(o.return_of)
                .bind(o.placed_at)
                .bind(&o.country)
                .bind(o.total_cents)
                .bind(o.source.as_ref())
                .bind(o.currency.as_deref())
                .bind(now);
        }
        for row in q.fetch_all(&mut **tx).await? {
            created.insert(row.try_get::<String, _>(1)?, row.try_get::<i64, _>(0)?);
        }
    }
    Ok(created)
}

/// Ids of the given external ids (those that exist).
pub async fn ids_by_external(
    tx: &mut Transaction<'_, Any>,
    external_ids: &[&str],
) -> crate::db::DbResult<HashMap<String, i64>> {
    super::bulk::ids_by_key(tx, super::bulk::Keyed::Orders, external_ids).await
}

/// Inserts order lines (idempotent on `(order_id, line_no)`); returns how
/// many were created.
///
/// Every column is an integer this process computed, so the rows are
/// written as SQL integer literals instead of bind parameters: a bulk
/// import writes half a million lines, and binding 2.7 million values
/// through the `Any` driver cost more than the database's own work.
/// Nothing textual is ever spliced (the type system guarantees it: only
/// `i64`s are formatted), and the statements are not cached
/// (`persistent(false)`), since each is used once.
pub async fn insert_lines(
    tx: &mut Transaction<'_, Any>,
    lines: &[NewOrderLine],
) -> crate::db::DbResult<u64> {
    use std::fmt::Write;
    if Placeholders::of(tx) == Placeholders::Numbered {
        return insert_lines_unnest(tx, lines).await;
    }
    let mut created = 0;
    for chunk in lines.chunks(2_000) {
        let mut sql = String::with_capacity(96 + chunk.len() * 40);
        sql.push_str(
            "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents) \
             VALUES ",
        );
        for (i, l) in chunk.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let (a, b, c, d, e): (i64, i64, i64, i64, i64) = (
                l.order_id,
                l.line_no,
                l.product_id,
                l.quantity,
                l.unit_price_cents,
            );
            let _ = write!(sql, "{sep}({a}, {b}, {c}, {d}, {e})");
        }
        sql.push_str(" ON CONFLICT (order_id, line_no) DO NOTHING");
        created += sqlx::query(&sql)
            .persistent(false)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    Ok(created)
}

/// PostgreSQL: five bound arrays per statement (`unnest`), one round trip
/// and one plan for tens of thousands of lines, close to what `COPY` costs
/// while staying inside the import's transaction and the `Any` driver. The
/// arrays are array literals of integers this process formatted.
async fn insert_lines_unnest(
    tx: &mut Transaction<'_, Any>,
    lines: &[NewOrderLine],
) -> crate::db::DbResult<u64> {
    use std::fmt::Write;
    let mut created = 0;
    for chunk in lines.chunks(20_000) {
        let mut cols: [String; 5] = Default::default();
        for c in &mut cols {
            c.reserve(chunk.len() * 8);
            c.push('{');
        }
        for (i, l) in chunk.iter().enumerate() {
            let values: [i64; 5] = [
                l.order_id,
                l.line_no,
                l.product_id,
                l.quantity,
                l.unit_price_cents,
            ];
            for (c, v) in cols.iter_mut().zip(values) {
                if i > 0 {
                    c.push(',');
                }
                let _ = write!(c, "{v}");
            }
        }
        for c in &mut cols {
            c.push('}');
        }
        let [a, b, c, d, e] = cols;
        created += sqlx::query(
            "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents) \
             SELECT * FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS BIGINT[]), \
             CAST($3 AS BIGINT[]), CAST($4 AS BIGINT[]), CAST($5 AS BIGINT[])) \
             ON CONFLICT (order_id, line_no) DO NOTHING",
        )
        .bind(a)
        .bind(b)
        .bind(c)
        .bind(d)
        .bind(e)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(created)
}

/// How far back [`find_return_origin`] looks: the customer's most recent
/// orders, newest first.
pub const RETURN_LOOKBACK_ORDERS: i64 = 200;

/// The order a return most plausibly returns: the same customer's most
/// recent order (`kind = 'order'`) placed no later than the return that
/// contains at least one of the returned products, among the customer's
/// [`RETURN_LOOKBACK_ORDERS`] latest orders.
///
/// Two index-driven queries and a match in memory: a single join filtering
/// on `product_id` lets PostgreSQL pick the product index and intersect
/// bitmaps per candidate order, which is slow per return.
pub async fn find_return_origin(
    tx: &mut Transaction<'_, Any>,
    customer_id: i64,
    product_ids: &[i64],
    returned_at: i64,
) -> crate::db::DbResult<Option<i64>> {
    if product_ids.is_empty() {
        return Ok(None);
    }
    let style = Placeholders::of(tx);
    let candidates: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM orders WHERE customer_id = $1 AND kind = 'order' AND placed_at <= $2 \
         ORDER BY placed_at DESC, id DESC LIMIT $3",
    )
    .bind(customer_id)
    .bind(returned_at)
    .bind(RETURN_LOOKBACK_ORDERS)
    .fetch_all(&mut **tx)
    .await?;
    if candidates.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT order_id, product_id FROM order_lines WHERE order_id IN ({})",
        list_placeholders(style, candidates.len())
    );
    let mut q = sqlx::query(&sql);
    for id in &candidates {
        q = q.bind(*id);
    }
    let mut matching = std::collections::HashSet::new();
    for row in q.fetch_all(&mut **tx).await? {
        let product: i64 = row.try_get(1)?;
        if product_ids.contains(&product) {
            matching.insert(row.try_get::<i64, _>(0)?);
        }
    }
    // Candidates are newest first: the first that matches wins.
    Ok(candidates.into_iter().find(|id| matching.contains(id)))
}

/// Links a return to its original order.
pub async fn set_return_of(
    tx: &mut Transaction<'_, Any>,
    return_id: i64,
    original_id: i64,
) -> crate::db::DbResult<()> {
    sqlx::query("UPDATE orders SET return_of = $1 WHERE id = $2 AND kind = 'return'")
        .bind(original_id)
        .bind(return_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An order as the API shows it, with its lines.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub order_id: String,
    /// `order` or `return`.
    pub kind: String,
    /// The order a return refers to, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_of: Option<String>,
    /// RFC 3339.
    pub placed_at: String,
    pub country: Option<String>,
    pub total_cents: i64,
    pub lines: Vec<OrderLineView>,
}

#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OrderLineView {
    pub sku: String,
    pub product: String,
    pub category: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

/// A customer's orders, newest first, at most `limit`, with their lines.
pub async fn for_customer(
    db: &crate::db::Db,
    customer_id: i64,
    limit: i64,
) -> crate::db::DbResult<Vec<OrderView>> {
    let rows = sqlx::query(
        "SELECT o.id, o.external_id, o.kind, r.external_id AS return_of, o.placed_at, o.country, \
         o.total_cents FROM orders o LEFT JOIN orders r ON r.id = o.return_of \
         WHERE o.customer_id = $1 ORDER BY o.placed_at DESC, o.id DESC LIMIT $2",
    )
    .bind(customer_id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut orders = Vec::with_capacity(rows.len());
    let mut index = HashMap::with_capacity(rows.len());
    for row in &rows {
        index.insert(row.try_get::<i64, _>("id")?, orders.len());
        orders.push(OrderView {
            order_id: row.try_get("external_id")?,
            kind: row.try_get("kind")?,
            return_of: row.try_get("return_of")?,
            placed_at: crate::clock::rfc3339(row.try_get("placed_at")?),
            country: row.try_get("country")?,
            total_cents: row.try_get("total_cents")?,
            lines: Vec::new(),
        });
    }
    // One query for every line of the page, not one per order.
    let lines = sqlx::query(
        "SELECT l.order_id, p.sku, p.name, p.category, l.quantity, l.unit_price_cents \
         FROM order_lines l JOIN products p ON p.id = l.product_id \
         JOIN orders o ON o.id = l.order_id \
         WHERE o.customer_id = $1 ORDER BY l.order_id, l.line_no",
    )
    .bind(customer_id)
    .fetch_all(&db.pool)
    .await?;
    for row in &lines {
        let order_id: i64 = row.try_get("order_id")?;
        if let Some(order) = index.get(&order_id).and_then(|i| orders.get_mut(*i)) {
            order.lines.push(OrderLineView {
                sku: row.try_get("sku")?,
                product: row.try_get("name")?,
                category: row.try_get("category")?,
                quantity: row.try_get("quantity")?,
                unit_price_cents: row.try_get("unit_price_cents")?,
            });
        }
    }
    Ok(orders)
}
