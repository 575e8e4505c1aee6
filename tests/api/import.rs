//! The Online Retail importer and the demo shop, on both backends: exact
//! summary counts, row counts, idempotency, and the CLI's error path.

use crate::both_backends;
use crate::helpers::*;
use custodian::db::customers::ProfileSealer;
use custodian::db::Db;
use custodian::demo::{load_demo, DemoSize, DemoSummary};
use custodian::import::{
    import_online_retail, GuestPolicy, ImportOptions, ImportSummary, NoProgress, SkipReason,
    TransformReason,
};

/// A small file with one case of everything the importer must handle.
const CSV: &str = "\
InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536365,22752,SET 7 BABUSHKA NESTING BOXES,2,2010-12-01 08:26:00,-1.00,17850.0,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,17850,United Kingdom
536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,2010-12-01 08:34:00,1.69,13047.0,United Kingdom
536367,22745,POPPY'S PLAYHOUSE BEDROOM,6,not a date,2.10,13047.0,United Kingdom
536367,22748,POPPY'S PLAYHOUSE KITCHEN,6,2010-12-01 08:34:00,2.10,13047.0
536368,22960,JAM MAKING SET WITH JARS,6,2010-12-01 08:34:00,4.25,,United Kingdom
536369,21756,BATH BUILDING BLOCK WORD,0,2010-12-01 08:35:00,5.95,13047.0,United Kingdom
C536379,71053,WHITE METAL LANTERN,-2,2010-12-01 09:41:00,3.39,17850.0,United Kingdom
C536380,99999,UNKNOWN THING,-1,2010-12-01 09:45:00,1.00,13047.0,United Kingdom
536381,22961,JAM MAKING SET PRINTED,x,2010-12-01 09:50:00,1.45,12583.0,France
536381,22326,ROUND SNACK BOXES SET OF4 WOODLAND,24,2010-12-01 09:50:00,2.95,12583.0,France
";

fn opts(guests: GuestPolicy, batch_invoices: usize) -> ImportOptions {
    ImportOptions {
        guests,
        synthesize_profiles: false,
        batch_invoices,
        now: 1_780_000_000_000_000,
    }
}

async fn import(db: &Db, sealer: Option<&dyn ProfileSealer>, o: &ImportOptions) -> ImportSummary {
    import_online_retail(db, sealer, CSV.as_bytes(), o, &NoProgress)
        .await
        .unwrap()
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

async fn table_counts(db: &Db) -> Vec<i64> {
    let mut out = Vec::new();
    for t in [
        "customers",
        "products",
        "orders",
        "order_lines",
        "events",
        "consent_events",
        "data_keys",
    ] {
        out.push(count(db, &format!("SELECT COUNT(*) FROM {t}")).await);
    }
    out
}

fn assert_rows_add_up(s: &ImportSummary) {
    assert_eq!(
        s.rows_read,
        s.order_lines_created + s.lines_already_present + s.skipped_total(),
        "{s}"
    );
}

both_backends!(
    online_retail_counts_every_row_by_reason,
    async |app: TestApp| {
        let db = &app.state.db;
        // Batches of 3 invoices: the linked return is in a later batch than its order.
        let s = import(db, None, &opts(GuestPolicy::Keep, 3)).await;
        assert_eq!(s.rows_read, 13);
        assert_eq!(s.invoices_read, 8);
        assert_eq!(s.invoices_without_valid_lines, 1);
        assert_eq!(s.orders_created, 5);
        assert_eq!(s.returns_created, 2);
        assert_eq!(s.returns_linked, 1);
        assert_eq!(s.returns_unlinked, 1);
        assert_eq!(s.guest_orders_created, 1);
        assert_eq!(s.order_lines_created, 8);
        assert_eq!(s.orders_already_present, 0);
        assert_eq!(s.customers_created, 3);
        assert_eq!(s.products_created, 7);
        assert_eq!(s.profiles_sealed, 0);
        assert_eq!(s.skipped(SkipReason::NonPositivePrice), 1);
        assert_eq!(s.skipped(SkipReason::BadDate), 1);
        assert_eq!(s.skipped(SkipReason::WrongColumnCount), 1);
        assert_eq!(s.skipped(SkipReason::NonPositiveQuantity), 1);
        assert_eq!(s.skipped(SkipReason::BadNumber), 1);
        assert_eq!(s.skipped_total(), 5);
        assert_eq!(s.transformed(TransformReason::GuestKept), 1);
        assert_eq!(s.transformed(TransformReason::CancellationAsReturn), 2);
        assert_rows_add_up(&s);
        assert_eq!(table_counts(db).await, vec![3, 7, 7, 8, 0, 0, 0]);

        // The return points at the order it returns; the guest order has no customer.
        let linked: String = sqlx::query_scalar(
            "SELECT o.external_id FROM orders r JOIN orders o ON o.id = r.return_of \
         WHERE r.external_id = 'C536379' AND r.kind = 'return'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(linked, "536365");
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM orders WHERE customer_id IS NULL").await,
            1
        );
        // Totals in cents, returns negative; line_no is the row's position in its invoice.
        assert_eq!(
            count(
                db,
                "SELECT total_cents FROM orders WHERE external_id = '536365'"
            )
            .await,
            6 * 255 + 6 * 339
        );
        assert_eq!(
            count(
                db,
                "SELECT total_cents FROM orders WHERE external_id = 'C536379'"
            )
            .await,
            -2 * 339
        );
        assert_eq!(
        count(db, "SELECT l.line_no FROM order_lines l JOIN orders o ON o.id = l.order_id WHERE o.external_id = '536381'").await,
        2
    );
        assert_eq!(
            count(
                db,
                "SELECT signup_at FROM customers WHERE external_id = '17850'"
            )
            .await,
            1_291_191_960_000_000
        );
        let category: String =
            sqlx::query_scalar("SELECT category FROM products WHERE sku = '85123A'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(category, "candles_lighting");

        // Importing again adds nothing and says so.
        let again = import(db, None, &opts(GuestPolicy::Keep, 500)).await;
        assert_eq!(again.orders_created + again.returns_created, 0);
        assert_eq!(again.orders_already_present, 7);
        assert_eq!(again.lines_already_present, 8);
        assert_eq!(again.order_lines_created, 0);
        assert_eq!(again.customers_created + again.products_created, 0);
        assert_eq!(again.skipped, s.skipped);
        assert_rows_add_up(&again);
        assert_eq!(table_counts(db).await, vec![3, 7, 7, 8, 0, 0, 0]);
        let text = again.to_string();
        assert!(text.contains("already present (earlier run)"), "{text}");
        assert!(text.contains("non-positive price"), "{text}");
    }
);

both_backends!(online_retail_can_skip_guests, async |app: TestApp| {
    let db = &app.state.db;
    let s = import(db, None, &opts(GuestPolicy::Skip, 500)).await;
    assert_eq!(s.skipped(SkipReason::GuestSkipped), 1);
    assert_eq!(s.skipped_total(), 6);
    assert_eq!(s.invoices_without_valid_lines, 2);
    assert_eq!(s.orders_created, 4);
    assert_eq!(s.guest_orders_created, 0);
    assert_eq!(s.order_lines_created, 7);
    assert_eq!(s.transformed(TransformReason::GuestKept), 0);
    assert_rows_add_up(&s);
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM orders WHERE customer_id IS NULL").await,
        0
    );
});

both_backends!(
    online_retail_synthesizes_sealed_profiles,
    async |app: TestApp| {
        let db = &app.state.db;
        let mut o = opts(GuestPolicy::Keep, 500);
        o.synthesize_profiles = true;
        let s = import(db, Some(&app.state.vault), &o).await;
        assert_eq!(s.profiles_sealed, 3);
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM customers WHERE email_ct IS NOT NULL AND city IS NOT NULL"
            )
            .await,
            3
        );
        assert_eq!(count(db, "SELECT COUNT(*) FROM data_keys").await, 3);
        // Without a sealer, synthesizing is refused before anything is written.
        let err = import_online_retail(db, None, CSV.as_bytes(), &o, &NoProgress).await;
        assert!(err.is_err());
    }
);

both_backends!(
    online_retail_refuses_a_foreign_header,
    async |app: TestApp| {
        let csv = "a,b,c\n1,2,3\n";
        let err = import_online_retail(
            &app.state.db,
            None,
            csv.as_bytes(),
            &opts(GuestPolicy::Keep, 10),
            &NoProgress,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("expected header"), "{err}");
    }
);

fn without_time(mut s: DemoSummary) -> DemoSummary {
    s.elapsed_ms = 0;
    s
}

both_backends!(
    demo_shop_is_deterministic_and_idempotent,
    async |app: TestApp| {
        let db = &app.state.db;
        let first = without_time(
            load_demo(db, &app.state.vault, 7, DemoSize::SMALL)
                .await
                .unwrap(),
        );
        assert_eq!(first.customers, 120);
        assert_eq!(first.products, 30);
        assert_eq!(first.orders, 400);
        assert_eq!(first.events, 1_000);
        assert!(first.returns > 0 && first.consent_events > 0, "{first}");
        let counts = table_counts(db).await;
        assert_eq!(counts.first(), Some(&120));
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM customers WHERE email_ct IS NULL").await,
            0
        );
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM orders WHERE kind = 'return' AND return_of IS NULL"
            )
            .await,
            0
        );
        let purposes = count(db, "SELECT COUNT(DISTINCT purpose) FROM consent_events").await;
        assert_eq!(purposes, 4);

        // Loading again adds nothing.
        let second = without_time(
            load_demo(db, &app.state.vault, 7, DemoSize::SMALL)
                .await
                .unwrap(),
        );
        assert_eq!(second, DemoSummary::default());
        assert_eq!(table_counts(db).await, counts);

        // Another database, same seed: the same shop.
        let other = spawn_app(app.backend).await.unwrap();
        let other_db = &other.state.db;
        let third = without_time(
            load_demo(other_db, &other.state.vault, 7, DemoSize::SMALL)
                .await
                .unwrap(),
        );
        assert_eq!(third, first);
        assert_eq!(table_counts(other_db).await, counts);
        for sql in [
            "SELECT CAST(SUM(total_cents) AS BIGINT) FROM orders",
            "SELECT CAST(SUM(quantity * unit_price_cents) AS BIGINT) FROM order_lines",
            "SELECT CAST(SUM(granted) AS BIGINT) FROM consent_events",
            "SELECT CAST(SUM(occurred_at % 1000003) AS BIGINT) FROM events",
        ] {
            assert_eq!(count(db, sql).await, count(other_db, sql).await, "{sql}");
        }
        other.stop().await;
    }
);

#[test]
fn cli_missing_file_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["import", "online-retail", "no-such-file.csv"])
        .current_dir(dir.path())
        .env("CUSTODIAN_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: cannot open no-such-file.csv"),
        "{stderr}"
    );
}

#[test]
fn cli_imports_a_file_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("retail.csv");
    std::fs::write(&file, CSV).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["import", "online-retail", "--quiet", "--json"])
        .arg(&file)
        .env("CUSTODIAN_DATA_DIR", dir.path().join("data"))
        .env("CUSTODIAN_LOG", "warn")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["orders_created"], 5);
    assert_eq!(summary["skipped"]["non_positive_price"], 1);
}
