//! The CDNOW importer on both backends: exact counts, cents, idempotency.

use crate::both_backends;
use crate::helpers::*;
use custodian::db::Db;
use custodian::import::{import_cdnow, ImportOptions, NoProgress, SkipReason, TransformReason};

/// Two customers, one of them buying twice on one day, and one bad row of
/// each kind.
const CSV: &str = "\
customer_id,date,number_of_cds,dollar_value
1,1997-01-01,1,11.77
2,1997-01-12,1,12.00
2,1997-01-12,5,77.00
2,19970203,3,10.00
3,1997-13-01,1,1.00
3,1997-01-05,x,1.00
3,1997-01-05,0,1.00
3,1997-01-05,1,-1.00
4,1997-01-06,1,0.00
5,1997-01-06
";

fn opts(batch: usize) -> ImportOptions {
    ImportOptions {
        batch_invoices: batch,
        now: 1_780_000_000_000_000,
        ..ImportOptions::default()
    }
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

both_backends!(cdnow_imports_every_row_once, async |app: TestApp| {
    let db = &app.state.db;
    let s = import_cdnow(db, CSV.as_bytes(), &opts(1), &NoProgress)
        .await
        .unwrap();
    assert_eq!(s.rows_read, 10);
    assert_eq!(s.orders_created, 5);
    assert_eq!(s.order_lines_created, 5);
    assert_eq!(s.customers_created, 3);
    assert_eq!(s.products_created, 1);
    assert_eq!(s.skipped(SkipReason::BadDate), 1);
    assert_eq!(s.skipped(SkipReason::BadNumber), 1);
    assert_eq!(s.skipped(SkipReason::NonPositiveQuantity), 1);
    assert_eq!(s.skipped(SkipReason::NegativeAmount), 1);
    assert_eq!(s.skipped(SkipReason::WrongColumnCount), 1);
    assert_eq!(s.transformed(TransformReason::ZeroAmount), 1);
    assert_eq!(
        s.rows_read,
        s.order_lines_created + s.lines_already_present + s.skipped_total()
    );
    // Revenue to the cent; two purchases on one day are two orders.
    assert_eq!(
        count(db, "SELECT CAST(SUM(total_cents) AS BIGINT) FROM orders").await,
        1177 + 1200 + 7700 + 1000
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM orders WHERE external_id IN \
             ('cdnow-2-19970112-1', 'cdnow-2-19970112-2', 'cdnow-2-19970203-1')"
        )
        .await,
        3
    );
    assert_eq!(
        count(
            db,
            "SELECT unit_price_cents FROM order_lines l JOIN orders o ON o.id = l.order_id \
             WHERE o.external_id = 'cdnow-2-19970112-2'"
        )
        .await,
        1540
    );
    assert_eq!(
        count(
            db,
            "SELECT signup_at FROM customers WHERE external_id = 'cdnow-2'"
        )
        .await,
        853_027_200_000_000
    );
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM orders WHERE source <> 'cdnow'").await,
        0
    );

    let again = import_cdnow(db, CSV.as_bytes(), &opts(500), &NoProgress)
        .await
        .unwrap();
    assert_eq!(again.orders_created + again.customers_created, 0);
    assert_eq!(again.orders_already_present, 5);
    assert_eq!(count(db, "SELECT COUNT(*) FROM orders").await, 5);
});

both_backends!(cdnow_refuses_a_foreign_header, async |app: TestApp| {
    let err = import_cdnow(
        &app.state.db,
        "a,b\n1,2\n".as_bytes(),
        &opts(10),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("expected header"), "{err}");
});
