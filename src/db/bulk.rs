//! Multi-row `INSERT … VALUES (…), (…)` helpers. One statement per chunk is
//! an order of magnitude faster than one per row (fewer round trips, one
//! plan), especially on PostgreSQL; chunks stay under both engines' bind
//! limits (SQLite 32,766 variables, PostgreSQL 65,535).
//!
//! On SQLite the placeholders are anonymous `?`: sqlx resolves every
//! numbered `$N` through `sqlite3_bind_parameter_name`, a linear scan, so a
//! statement with thousands of `$N` binds costs quadratic time (measured: 74%
//! of an import's CPU). PostgreSQL gets the usual `$N`.

use sqlx::AnyConnection;

/// How a backend spells positional placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholders {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` (SQLite).
    Anonymous,
}

impl Placeholders {
    /// The style of the backend behind `conn`.
    pub fn of(conn: &AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Self::Anonymous
        } else {
            Self::Numbered
        }
    }

    fn push(self, sql: &mut String, n: usize) {
        match self {
            Self::Numbered => {
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            Self::Anonymous => sql.push('?'),
        }
    }
}

/// Most bind variables one statement may carry, with headroom under SQLite's
/// limit (the lower of the two).
const MAX_BINDS: usize = 30_000;
/// Rows per statement cap: beyond this, bigger statements stop paying off
/// and only cost parse time and memory.
const MAX_ROWS: usize = 1_000;

/// How many rows of `cols` columns one statement may insert.
pub fn rows_per_statement(cols: usize) -> usize {
    (MAX_BINDS / cols.max(1)).clamp(1, MAX_ROWS)
}

/// `($1, $2), ($3, $4), …` for `rows` rows of `cols` placeholders.
pub fn values_clause(style: Placeholders, rows: usize, cols: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 6);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            style.push(&mut sql, n);
        }
        sql.push(')');
    }
    sql
}

/// `$1, $2, …, $n` (for `IN (…)` lists).
pub fn list_placeholders(style: Placeholders, n: usize) -> String {
    let mut sql = String::with_capacity(n * 6);
    for i in 1..=n {
        if i > 1 {
            sql.push_str(", ");
        }
        style.push(&mut sql, i);
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_clause_numbers_placeholders_row_major() {
        assert_eq!(
            values_clause(Placeholders::Numbered, 2, 2),
            "($1, $2), ($3, $4)"
        );
        assert_eq!(values_clause(Placeholders::Anonymous, 1, 2), "(?, ?)");
        assert_eq!(list_placeholders(Placeholders::Numbered, 3), "$1, $2, $3");
        assert_eq!(rows_per_statement(9), 1_000);
        assert_eq!(rows_per_statement(60), 500);
    }
}
