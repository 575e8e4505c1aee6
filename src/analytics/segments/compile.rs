//! Compiles a validated definition to one parameterized SQL predicate over
//! `customer_features f`, portable across SQLite and PostgreSQL.
//!
//! Every value is a bound parameter (`$n`); the only text that reaches SQL
//! comes from this file (column and table names, operators). Each condition
//! compiles to a predicate that is TRUE or FALSE, never NULL, so `not` means
//! what it says ("did not buy" includes customers who never ordered).
//! All-time conditions read the feature table; windowed ones are one
//! set-based `IN (SELECT .. GROUP BY .. HAVING ..)` over an indexed range.

use std::collections::HashMap;

use super::language::DefinitionError;
use super::language::{Activity, Node, MAX_DEPTH, MAX_NODES};

pub const DAY_MICROS: i64 = 86_400_000_000;

/// A bound value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Bind {
    Int(i64),
    Text(String),
}

/// SQL text with its binds; placeholders are numbered from 1.
#[derive(Clone, Debug, Default)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    pub fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// Applies the binds to a query, in order.
    pub fn apply<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for b in &self.binds {
            q = match b {
                Bind::Int(i) => q.bind(*i),
                Bind::Text(t) => q.bind(t.as_str()),
            };
        }
        q
    }
}

/// What compiling needs besides the definition.
pub struct Context<'a> {
    /// The reference time of windows and day counts (microseconds).
    pub as_of: i64,
    /// The request's purpose, for profile clusters.
    pub purpose: &'a str,
    /// Saved segments the definition (transitively) refers to.
    pub saved: &'a HashMap<String, Node>,
}

/// Compiles `node` into `sql` as one predicate. Saved segments are inlined;
/// the combined tree obeys the same depth and node limits as one definition.
pub fn compile(node: &Node, ctx: &Context<'_>, sql: &mut Sql) -> Result<(), DefinitionError> {
    let mut nodes = 0usize;
    compile_node(node, ctx, sql, 1, &mut nodes, "$")
}

fn compile_node(
    node: &Node,
    ctx: &Context<'_>,
    sql: &mut Sql,
    depth: usize,
    nodes: &mut usize,
    path: &str,
) -> Result<(), DefinitionError> {
    // Recursion here is bounded: depth is checked before descending.
    *nodes += 1;
    if depth > MAX_DEPTH {
        return Err(DefinitionError::new(
            path,
            "depth over 16 (saved segments included)",
        ));
    }
    if *nodes > MAX_NODES {
        return Err(DefinitionError::new(
            path,
            "more than 256 nodes (saved segments included)",
        ));
    }
    let as_of = ctx.as_of;
    let ago = |days: i64| Bind::Int(as_of.saturating_sub(days.saturating_mul(DAY_MICROS)));
    match node {
        Node::All(children) | Node::Any(children) => {
            let (op, key) = if matches!(node, Node::All(_)) {
                (" AND ", "all")
            } else {
                (" OR ", "any")
            };
            sql.push("(");
            for (i, child) in children.iter().enumerate() {
                if i > 0 {
                    sql.push(op);
                }
                compile_node(
                    child,
                    ctx,
                    sql,
                    depth + 1,
                    nodes,
                    &format!("{path}.{key}[{i}]"),
                )?;
            }
            sql.push(")");
        }
        Node::Not(child) => {
            sql.push("(NOT ");
            compile_node(child, ctx, sql, depth + 1, nodes, &format!("{path}.not"))?;
            sql.push(")");
        }
        Node::Recency(d) => {
            sql.push("(f.last_order_at IS NOT NULL");
            if let Some(min) = d.min_days {
                let p = sql.bind(ago(min));
                sql.push(&format!(" AND f.last_order_at <= {p}"));
            }
            if let Some(max) = d.max_days {
                let p = sql.bind(ago(max));
                sql.push(&format!(" AND f.last_order_at >= {p}"));
            }
            sql.push(")");
        }
        Node::SignupAge(d) => {
            sql.push("(1 = 1");
            if let Some(min) = d.min_days {
                let p = sql.bind(ago(min));
                sql.push(&format!(" AND f.signup_at <= {p}"));
            }
            if let Some(max) = d.max_days {
                let p = sql.bind(ago(max));
                sql.push(&format!(" AND f.signup_at >= {p}"));
            }
            sql.push(")");
        }
        Node::Frequency(c) => match c.within_days {
            None => range(sql, "f.orders_count", c.min, c.max),
            Some(days) => windowed(
                sql,
                "SELECT customer_id FROM orders WHERE customer_id IS NOT NULL AND kind = 'order'",
                "placed_at",
                "COUNT(*)",
                ago(days),
                as_of,
                c.min,
                c.max,
            ),
        },
        Node::Monetary(a) => {
            let (min, max) = (a.min.map(cents), a.max.map(cents));
            match a.within_days {
                None => range(sql, "f.monetary_cents", min, max),
                Some(days) => windowed(
                    sql,
                    "SELECT customer_id FROM orders WHERE customer_id IS NOT NULL",
                    "placed_at",
                    "SUM(total_cents)",
                    ago(days),
                    as_of,
                    min,
                    max,
                ),
            }
        }
        Node::AverageOrderValue(a) => {
            sql.push("(f.aov_cents IS NOT NULL AND ");
            range(sql, "f.aov_cents", a.min.map(cents), a.max.map(cents));
            sql.push(")");
        }
        Node::RfmScore(s) => {
            sql.push("(f.r_score IS NOT NULL");
            for (col, r) in [
                ("f.r_score", &s.r),
                ("f.f_score", &s.f),
                ("f.m_score", &s.m),
            ] {
                if let Some(r) = r {
                    sql.push(" AND ");
                    range(sql, col, r.min, r.max);
                }
            }
            sql.push(")");
        }
        Node::RfmCell(c) => {
            sql.push("(f.rfm_cell IS NOT NULL AND f.rfm_cell IN (");
            for (i, cell) in c.cells.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                let p = sql.bind(Bind::Text(cell.as_str().to_owned()));
                sql.push(&p);
            }
            sql.push("))");
        }
        Node::Country(t) => {
            sql.push("(f.country IS NOT NULL AND f.country IN (");
            for (i, v) in t.values.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                let p = sql.bind(Bind::Text(v.clone()));
                sql.push(&p);
            }
            sql.push("))");
        }
        Node::Bought(a) => activity(
            sql,
            a,
            "SELECT o.customer_id FROM orders o JOIN order_lines l ON l.order_id = o.id \
             JOIN products p ON p.id = l.product_id \
             WHERE o.customer_id IS NOT NULL AND o.kind = 'order'",
            "o.placed_at",
            "o.customer_id",
            "COUNT(DISTINCT o.id)",
            ctx,
        ),
        Node::Viewed(a) => activity(
            sql,
            a,
            "SELECT e.customer_id FROM events e JOIN products p ON p.id = e.product_id \
             WHERE e.customer_id IS NOT NULL AND e.kind = 'view'",
            "e.occurred_at",
            "e.customer_id",
            "COUNT(*)",
            ctx,
        ),
        Node::Events(e) => {
            let kind = sql.bind(Bind::Text(e.kind.as_str().to_owned()));
            let from = sql.bind(ago(e.within_days));
            let to = sql.bind(Bind::Int(as_of));
            let min = sql.bind(Bind::Int(e.min_count.unwrap_or(1)));
            sql.push(&format!(
                "(f.customer_id IN (SELECT customer_id FROM events WHERE customer_id IS NOT NULL \
                 AND kind = {kind} AND occurred_at >= {from} AND occurred_at <= {to} \
                 GROUP BY customer_id HAVING COUNT(*) >= {min}"
            ));
            if let Some(max) = e.max_count {
                let p = sql.bind(Bind::Int(max));
                sql.push(&format!(" AND COUNT(*) <= {p}"));
            }
            sql.push("))");
        }
        Node::InSegment(r) => {
            let saved = ctx.saved.get(&r.id).ok_or_else(|| {
                DefinitionError::new(format!("{path}.in_segment.id"), "no such saved segment")
            })?;
            // The saved definition takes this node's place in the tree.
            *nodes -= 1;
            compile_node(saved, ctx, sql, depth, nodes, &format!("{path}.in_segment"))?;
        }
        Node::ProfileCluster(c) => {
            let purpose = sql.bind(Bind::Text(ctx.purpose.to_owned()));
            let k = sql.bind(Bind::Int(c.k));
            let cl = sql.bind(Bind::Int(c.cluster));
            sql.push(&format!(
                "(f.customer_id IN (SELECT customer_id FROM profile_assignments \
                 WHERE purpose = {purpose} AND k = {k} AND cluster = {cl}))"
            ));
        }
        Node::Consent(c) => {
            let p = sql.bind(Bind::Text(c.purpose.clone()));
            sql.push(&format!(
                "(f.customer_id IN (SELECT customer_id FROM consent_state \
                 WHERE purpose = {p} AND granted = 1))"
            ));
        }
    }
    Ok(())
}

/// Currency units to cents (validated to 0..=1e9 already).
fn cents(x: f64) -> i64 {
    (x * 100.0).round() as i64
}

fn range(sql: &mut Sql, col: &str, min: Option<i64>, max: Option<i64>) {
    sql.push("(1 = 1");
    if let Some(min) = min {
        let p = sql.bind(Bind::Int(min));
        sql.push(&format!(" AND {col} >= {p}"));
    }
    if let Some(max) = max {
        let p = sql.bind(Bind::Int(max));
        sql.push(&format!(" AND {col} <= {p}"));
    }
    sql.push(")");
}

/// A windowed aggregate bound: `min <= agg <= max` over the rows of the
/// window, where customers without rows count as 0 (so "at most" includes
/// them).
#[allow(clippy::too_many_arguments)]
fn windowed(
    sql: &mut Sql,
    base: &str,
    time_col: &str,
    agg: &str,
    from: Bind,
    to: i64,
    min: Option<i64>,
    max: Option<i64>,
) {
    sql.push("(1 = 1");
    if let Some(min) = min.filter(|m| *m > 0) {
        let f = sql.bind(from.clone());
        let t = sql.bind(Bind::Int(to));
        let m = sql.bind(Bind::Int(min));
        sql.push(&format!(
            " AND f.customer_id IN ({base} AND {time_col} >= {f} AND {time_col} <= {t} \
             GROUP BY customer_id HAVING {agg} >= {m})"
        ));
    }
    if let Some(max) = max {
        let f = sql.bind(from);
        let t = sql.bind(Bind::Int(to));
        let m = sql.bind(Bind::Int(max));
        sql.push(&format!(
            " AND NOT (f.customer_id IN ({base} AND {time_col} >= {f} AND {time_col} <= {t} \
             GROUP BY customer_id HAVING {agg} > {m}))"
        ));
    }
    sql.push(")");
}

fn activity(
    sql: &mut Sql,
    a: &Activity,
    base: &str,
    time_col: &str,
    group_col: &str,
    agg: &str,
    ctx: &Context<'_>,
) {
    sql.push(&format!("(f.customer_id IN ({base}"));
    if let Some(sku) = &a.product {
        let p = sql.bind(Bind::Text(sku.clone()));
        sql.push(&format!(" AND p.sku = {p}"));
    }
    if let Some(cat) = &a.category {
        let p = sql.bind(Bind::Text(cat.clone()));
        sql.push(&format!(" AND p.category = {p}"));
    }
    if let Some(days) = a.within_days {
        let f = sql.bind(Bind::Int(
            ctx.as_of.saturating_sub(days.saturating_mul(DAY_MICROS)),
        ));
        sql.push(&format!(" AND {time_col} >= {f}"));
    }
    let t = sql.bind(Bind::Int(ctx.as_of));
    let n = sql.bind(Bind::Int(a.min_count.unwrap_or(1)));
    sql.push(&format!(
        " AND {time_col} <= {t} GROUP BY {group_col} HAVING {agg} >= {n}))"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compiled(v: serde_json::Value) -> Sql {
        let node: Node = serde_json::from_value(v).unwrap();
        let saved = HashMap::new();
        let ctx = Context {
            as_of: 1_000 * DAY_MICROS,
            purpose: "marketing_analytics",
            saved: &saved,
        };
        let mut sql = Sql::default();
        compile(&node, &ctx, &mut sql).unwrap();
        sql
    }

    #[test]
    fn hostile_strings_are_bound_never_spliced() {
        let evil = "x') OR 1=1; DROP TABLE customers; --";
        let sql = compiled(json!({"any": [
            {"country": {"in": [evil]}},
            {"bought": {"category": evil}},
            {"viewed": {"product": evil}}
        ]}));
        assert!(!sql.text.contains("DROP"), "{}", sql.text);
        assert!(!sql.text.contains(evil));
        assert_eq!(
            sql.binds
                .iter()
                .filter(|b| **b == Bind::Text(evil.into()))
                .count(),
            3
        );
    }

    #[test]
    fn placeholders_match_binds() {
        let sql = compiled(json!({"all": [
            {"recency": {"max_days": 30, "min_days": 1}},
            {"frequency": {"min": 2, "max": 5, "within_days": 90}},
            {"monetary": {"min": 12.5}},
            {"rfm_score": {"r": {"min": 4}}},
            {"events": {"kind": "add_to_cart", "within_days": 7, "max_count": 9}},
            {"not": {"consent": {"purpose": "email_marketing"}}}
        ]}));
        let n = sql.binds.len();
        assert!(sql.text.contains(&format!("${n}")));
        assert!(!sql.text.contains(&format!("${}", n + 1)));
        assert!(sql.binds.contains(&Bind::Int(1250)));
        assert!(sql.binds.contains(&Bind::Int(970 * DAY_MICROS)));
    }

    #[test]
    fn saved_segments_are_inlined_within_the_limits() {
        let inner: Node = serde_json::from_value(json!({"country": {"in": ["DE"]}})).unwrap();
        let mut saved = HashMap::new();
        let id = "seg_0123456789abcdef0123456789abcdef".to_owned();
        saved.insert(id.clone(), inner);
        let ctx = Context {
            as_of: 0,
            purpose: "p",
            saved: &saved,
        };
        let node: Node =
            serde_json::from_value(json!({"not": {"in_segment": {"id": id}}})).unwrap();
        let mut sql = Sql::default();
        compile(&node, &ctx, &mut sql).unwrap();
        assert!(sql.text.contains("f.country IN ($1)"));
        let missing: Node = serde_json::from_value(
            json!({"in_segment": {"id": "seg_ffffffffffffffffffffffffffffffff"}}),
        )
        .unwrap();
        let e = compile(&missing, &ctx, &mut Sql::default()).unwrap_err();
        assert_eq!(e.path, "$.in_segment.id");
    }
}
