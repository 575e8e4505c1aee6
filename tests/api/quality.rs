//! Data quality checks on both backends: each check kind on hand-made data
//! with known counts, the trend over runs, and `GET /v1/quality` as the
//! policy allows.

use crate::both_backends;
use crate::helpers::*;
use custodian::import::quality::{run_checks, CheckResult, QualityConfig, Verdict};
use custodian::import::{import_cdnow, ImportOptions, NoProgress};

const NOW: i64 = 1_780_000_000_000_000;

const CDNOW: &str = "\
customer_id,date,number_of_cds,dollar_value
1,1997-01-01,1,11.77
2,1997-01-12,1,12.00
";

/// A source `legacy` written straight into the store with one fault of
/// each kind the importers would refuse.
async fn seed_faults(app: &TestApp) {
    let old = 1_000_000; // written long ago: stale
    for sql in [
        format!(
            "INSERT INTO customers (external_id, country, signup_at, created_at, updated_at) \
             VALUES ('l-1', 'XX', 0, {old}, {old})"
        ),
        format!(
            "INSERT INTO customers (external_id, country, signup_at, created_at, updated_at) \
             VALUES ('l-2', 'GB', 0, {old}, {old})"
        ),
        format!(
            "INSERT INTO customers (external_id, signup_at, created_at, updated_at, erased_at) \
             VALUES ('l-3', 0, {old}, {old}, {old})"
        ),
        format!(
            "INSERT INTO products (sku, name, category, price_cents, created_at) \
             VALUES ('P', 'P', 'other', 1, {old})"
        ),
    ] {
        app.exec(&sql).await;
    }
    // One blind index shared by two customers.
    sqlx::query("UPDATE customers SET email_bidx = $1 WHERE external_id IN ('l-1', 'l-2')")
        .bind(vec![1u8; 32])
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    for (ext, customer, placed, currency) in [
        ("L1", "'l-1'", "1300000000000000", "'GBP'"),
        ("L2", "'l-2'", "100", "NULL"),
        ("L3", "'l-3'", "1300000000000000", "'ZZZ'"),
        ("L4", "NULL", "1300000000000000", "'GBP'"),
    ] {
        app.exec(&format!(
            "INSERT INTO orders (external_id, customer_id, kind, placed_at, total_cents, source, \
             currency, created_at) SELECT '{ext}', (SELECT id FROM customers WHERE external_id = \
             {customer}), 'order', {placed}, 0, 'legacy', {currency}, {old}"
        ))
        .await;
    }
    for (order, qty, price) in [("L1", 1, 100), ("L1", 0, 100), ("L2", 2, -5), ("L3", 1, 1)] {
        app.exec(&format!(
            "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents) \
             SELECT (SELECT id FROM orders WHERE external_id = '{order}'), \
             (SELECT COUNT(*) + 1 FROM order_lines l JOIN orders o ON o.id = l.order_id \
              WHERE o.external_id = '{order}'), (SELECT id FROM products WHERE sku = 'P'), \
             {qty}, {price}"
        ))
        .await;
    }
}

fn find<'a>(results: &'a [CheckResult], source: &str, check: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.source == source && r.check == check)
        .unwrap_or_else(|| panic!("no {source}/{check}"))
}

fn counts(r: &CheckResult) -> (i64, i64, Verdict) {
    (r.rows_checked, r.rows_failed, r.verdict)
}

both_backends!(
    every_check_kind_counts_what_it_finds,
    async |app: TestApp| {
        let db = &app.state.db;
        let opts = ImportOptions {
            now: NOW,
            ..ImportOptions::default()
        };
        import_cdnow(db, CDNOW.as_bytes(), &opts, &NoProgress)
            .await
            .unwrap();
        seed_faults(&app).await;
        let config = QualityConfig::default();
        let report = run_checks(db, &config, "test", NOW).await.unwrap();
        let r = &report.results;
        use Verdict::*;
        // Completeness.
        assert_eq!(
            counts(find(r, "cdnow", "customers.country_not_null")),
            (2, 2, Warn)
        );
        assert_eq!(
            counts(find(r, "legacy", "orders.customer_not_null")),
            (4, 1, Warn)
        );
        assert_eq!(
            counts(find(r, "cdnow", "orders.customer_not_null")),
            (2, 0, Pass)
        );
        // Uniqueness (through the blind index): l-1 and l-2 share one.
        assert_eq!(
            counts(find(r, "legacy", "customers.email_unique")),
            (2, 2, Fail)
        );
        // Accepted values.
        assert_eq!(
            counts(find(r, "legacy", "customers.country_accepted")),
            (2, 1, Fail)
        );
        assert_eq!(
            counts(find(r, "legacy", "orders.currency_accepted")),
            (4, 2, Fail)
        );
        assert_eq!(
            counts(find(r, "cdnow", "orders.currency_accepted")),
            (2, 0, Pass)
        );
        // Ranges.
        assert_eq!(
            counts(find(r, "legacy", "order_lines.quantity_and_price_in_range")),
            (4, 2, Fail)
        );
        assert_eq!(
            counts(find(r, "legacy", "orders.placed_at_in_range")),
            (4, 1, Fail)
        );
        // Referential integrity: an order of an erased customer.
        assert_eq!(
            counts(find(r, "legacy", "orders.customer_exists")),
            (3, 1, Fail)
        );
        assert_eq!(
            counts(find(r, "legacy", "order_lines.product_exists")),
            (4, 0, Pass)
        );
        // Freshness.
        assert_eq!(counts(find(r, "legacy", "source.fresh")), (1, 1, Warn));
        assert_eq!(counts(find(r, "cdnow", "source.fresh")), (1, 0, Pass));
        assert_eq!(
            report.failed,
            r.iter().filter(|x| x.verdict == Fail).count() as u64
        );

        // A fix shows in the trend of the next run, newest first.
        app.exec("UPDATE orders SET currency = 'GBP' WHERE external_id = 'L2'")
            .await;
        let second = run_checks(db, &config, "test", NOW).await.unwrap();
        let c = find(&second.results, "legacy", "orders.currency_accepted");
        assert_eq!(c.trend, vec![1, 2]);
        assert_eq!(second.run_id, report.run_id.map(|i| i + 1));

        // Severity is the deployment's choice.
        let mut strict = QualityConfig::default();
        strict.severity.insert(
            "source.fresh".into(),
            custodian::import::quality::Severity::Error,
        );
        let third = run_checks(db, &strict, "test", NOW).await.unwrap();
        assert_eq!(find(&third.results, "legacy", "source.fresh").verdict, Fail);
    }
);

both_backends!(
    the_report_is_served_to_the_roles_the_policy_allows,
    async |app: TestApp| {
        let db = &app.state.db;
        seed_faults(&app).await;
        run_checks(db, &QualityConfig::default(), "test", NOW)
            .await
            .unwrap();
        let ok = app
            .as_role(
                reqwest::Method::GET,
                "/v1/quality",
                "compliance_officer",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let body: serde_json::Value = ok.json().await.unwrap();
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 10);
        assert!(results.iter().all(|r| r["source"] == "legacy"));
        let text = body.to_string();
        assert!(
            !text.contains("l-1"),
            "no keys or values in the report: {text}"
        );

        let denied = app
            .as_role(
                reqwest::Method::GET,
                "/v1/quality",
                "marketing_analyst",
                "marketing_analytics",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status(), 403);
        let ingest = app
            .as_role(
                reqwest::Method::GET,
                "/v1/quality",
                "ingest_service",
                "data_ingestion",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(ingest.status(), 403, "ingest writes and reads nothing");

        let page = app
            .as_role(
                reqwest::Method::GET,
                "/v1/quality/quarantine?status=all",
                "compliance_officer",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let bad = app
            .as_role(
                reqwest::Method::GET,
                "/v1/quality/quarantine?status=nonsense",
                "compliance_officer",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 422);
        assert_eq!(error_code(bad).await, "invalid_input");
        // Out-of-range pages are refused, never clamped (the document
        // states the bounds).
        for (query, status) in [
            ("limit=0", 400),
            ("limit=501", 400),
            ("limit=500", 200),
            ("after=-1", 422),
        ] {
            let r = app
                .as_role(
                    reqwest::Method::GET,
                    &format!("/v1/quality/quarantine?{query}"),
                    "compliance_officer",
                    "compliance_audit",
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status, "{query}");
        }
    }
);
