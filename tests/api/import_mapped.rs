//! Mapped imports on both backends: standardization, cross-source
//! duplicates through the blind index, consent into the ledger, quarantine
//! (encrypted, with reasons) and replay, bad input, and the report adding up.

use crate::both_backends;
use crate::helpers::*;
use custodian::db::Db;
use custodian::import::mapped::{MappedImport, MappedSummary};
use custodian::import::mapping::Mapping;
use custodian::import::quarantine;
use custodian::import::NoProgress;

const CRM_MAPPING: &str = r#"
source = "crm"
entity = "customers"
format = "csv"
delimiter = ";"
id_prefix = "crm-"
[fields]
external_id = "Kundennr"
email = "E-Mail"
phone = "Telefon"
name = "Name"
country = { column = "Land", default = "DE" }
signup_at = { column = "Angelegt", format = "[day].[month].[year]" }
[[consent]]
purpose = "email_marketing"
column = "Newsletter"
evidence = "CRM signup form v2"
"#;

/// Standardization cases, one duplicate inside the file, and one bad row of
/// each kind.
const CRM_CSV: &str = "\
Kundennr;E-Mail;Telefon;Name;Land;Angelegt;Newsletter
1; Ada@Example.COM ;030 12345678;Ada L;Deutschland;01.02.2020;ja
2;bob@example.com;;Bob;United Kingdom;02.02.2020;no
3;carol@example.com;+44 20 7946 0958;Carol;;03.02.2020;
4;not-an-email;;Dan;FR;04.02.2020;yes
5;eve@example.com;;Eve;Atlantis;05.02.2020;yes
;frank@example.com;;Frank;DE;06.02.2020;yes
7;grace@example.com;;Grace;DE;31.02.2020;yes
8;heidi@example.com;;Heidi;DE;08.02.2020;maybe
9;ADA@example.com;;Ada again;DE;09.02.2020;
";

const SHOP_MAPPING: &str = r#"
source = "shop"
entity = "customers"
format = "ndjson"
id_prefix = "shop-"
[fields]
external_id = "id"
email = "email"
phone = "phone"
country = "country"
signup_at = "created"
"#;

/// Bob by e-mail (other case), Carol by phone (national form), a new
/// person, and a truncated last line.
const SHOP_NDJSON: &str = r#"{"id": 100, "email": "BOB@example.com ", "country": "gb", "created": "2021-01-01T10:00:00+01:00"}
{"id": 101, "email": "carol.new@example.com", "phone": "020 7946 0958", "country": "GB", "created": "2021-01-02T00:00:00Z"}
{"id": 102, "email": "ivan@example.com", "country": "Poland", "created": "2021-01-03T00:00:00Z"}
not json at all
{"id": 103, "email": "judy@example.com", "tags": ["a"], "created": "2021-01-03T00:00:00Z"}
{"id": 104, "email": "kim@exa"#;

const ORDERS_MAPPING: &str = r#"
source = "crm"
entity = "orders"
format = "csv"
decimal = ","
id_prefix = "crm-"
[fields]
order_id = "Auftrag"
customer_id = "Kunde"
placed_at = { column = "Datum", format = "[year]-[month]-[day] [hour]:[minute]" }
currency = { column = "Waehrung", default = "EUR" }
sku = "Artikel"
product_name = "Bezeichnung"
quantity = "Menge"
unit_price = "Preis"
"#;

const ORDERS_CSV: &str = "\
Auftrag,Kunde,Datum,Waehrung,Artikel,Bezeichnung,Menge,Preis
A1,1,2020-03-01 10:00,,SKU-1,Teapot,2,\"12,50\"
A1,1,2020-03-01 10:00,,SKU-2,Cup,4,\"3,00\"
A2,2,2020-03-02 11:00,USD,SKU-1,Teapot,1,\"12,50\"
A3,77,2020-03-03 12:00,,SKU-3,Saucer,1,\"2,00\"
A4,3,2020-03-04 13:00,,SKU-1,Teapot,1,\"12,50\"
A4,3,2020-03-04 13:00,,SKU-2,Cup,-1,\"3,00\"
A5,,2020-03-05 14:00,XXX,SKU-2,Cup,1,\"3,00\"
";

async fn run(app: &TestApp, mapping: &str, data: &str) -> MappedSummary {
    try_run(app, mapping, data).await.unwrap()
}

async fn try_run(app: &TestApp, mapping: &str, data: &str) -> anyhow::Result<MappedSummary> {
    let mapping = Mapping::parse(mapping).unwrap();
    MappedImport {
        db: &app.state.db,
        vault: &app.state.vault,
        mapping: &mapping,
        actor: "test",
        now: 1_780_000_000_000_000,
    }
    .run(data.as_bytes(), &NoProgress)
    .await
}

async fn replay(app: &TestApp, mapping: &str) -> MappedSummary {
    let mapping = Mapping::parse(mapping).unwrap();
    MappedImport {
        db: &app.state.db,
        vault: &app.state.vault,
        mapping: &mapping,
        actor: "test",
        now: 1_780_000_000_000_000,
    }
    .replay(&NoProgress)
    .await
    .unwrap()
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

async fn text(db: &Db, sql: &str) -> String {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

/// Reasons of the open quarantine entry at `line` of `source`.
async fn reasons(db: &Db, source: &str, entity: &str, line: i64) -> Vec<String> {
    let entries = quarantine::list(db, Some(source), Some("open"), 0, 100)
        .await
        .unwrap();
    let entry = entries
        .iter()
        .find(|e| e.entity == entity && e.line_no == line)
        .unwrap_or_else(|| panic!("no open entry at line {line}: {entries:?}"));
    entry
        .reasons
        .iter()
        .map(|p| match &p.field {
            Some(f) => format!("{}:{f}", p.code.as_str()),
            None => p.code.as_str().to_owned(),
        })
        .collect()
}

both_backends!(
    mapped_customers_are_standardized_and_bad_rows_quarantined,
    async |app: TestApp| {
        let db = &app.state.db;
        let s = run(&app, CRM_MAPPING, CRM_CSV).await;
        assert_eq!(s.rows_read, 9, "{s}");
        assert_eq!(s.imported, 3, "{s}");
        // Row 9 is Ada again (same e-mail, other case): linked, not created.
        assert_eq!(s.merged, 1, "{s}");
        assert_eq!(s.merged_by.get("email"), Some(&1));
        assert_eq!(s.quarantined, 5, "{s}");
        assert!(s.adds_up(), "{s}");
        assert_eq!(count(db, "SELECT COUNT(*) FROM customers").await, 3);

        // Standardized: country codes, E.164 phone (read in the row's country),
        // folded e-mail (checked through the blind index, as the store does).
        assert_eq!(
            text(
                db,
                "SELECT country FROM customers WHERE external_id = 'crm-1'"
            )
            .await,
            "DE"
        );
        assert_eq!(
            text(
                db,
                "SELECT country FROM customers WHERE external_id = 'crm-2'"
            )
            .await,
            "GB"
        );
        assert_eq!(
            text(
                db,
                "SELECT country FROM customers WHERE external_id = 'crm-3'"
            )
            .await,
            "DE",
            "the mapping's default"
        );
        let ada = app
            .state
            .vault
            .blind_index(custodian::crypto::BlindField::Email, "ada@example.com")
            .unwrap()
            .to_vec();
        let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers WHERE email_bidx = $1")
            .bind(ada)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(found, 1);
        let phone = app
            .state
            .vault
            .blind_index(custodian::crypto::BlindField::Phone, "+493012345678")
            .unwrap()
            .to_vec();
        let found: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM customers WHERE external_id = 'crm-1' AND phone_bidx = $1",
        )
        .bind(phone)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(found, 1);
        assert_eq!(
            count(
                db,
                "SELECT signup_at FROM customers WHERE external_id = 'crm-1'"
            )
            .await,
            1_580_515_200_000_000
        );

        // Consent from the column: Ada granted, Bob withdrew, Carol said nothing.
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM consent_events WHERE source = 'import' \
                 AND purpose = 'email_marketing'"
            )
            .await,
            2
        );
        assert_eq!(
            count(
                db,
                "SELECT granted FROM consent_events c JOIN customers k ON k.id = c.customer_id \
                 WHERE k.external_id = 'crm-1'"
            )
            .await,
            1
        );
        let evidence = text(
            db,
            "SELECT evidence FROM consent_events ORDER BY id LIMIT 1",
        )
        .await;
        assert!(evidence.contains("CRM signup form v2"), "{evidence}");

        // Each failed row is quarantined with its reasons, never its values.
        assert_eq!(
            reasons(db, "crm", "customers", 5).await,
            ["bad_format:email"]
        );
        assert_eq!(
            reasons(db, "crm", "customers", 6).await,
            ["unknown_value:country"]
        );
        assert_eq!(
            reasons(db, "crm", "customers", 7).await,
            ["missing_required:external_id"]
        );
        assert_eq!(
            reasons(db, "crm", "customers", 8).await,
            ["bad_format:signup_at"]
        );
        assert_eq!(
            reasons(db, "crm", "customers", 9).await,
            ["unknown_value:Newsletter"]
        );
        assert_eq!(s.problems.get("bad_format"), Some(&2));
        let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT row_ct FROM quarantine")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(stored.len(), 5);
        for ct in &stored {
            let as_text = String::from_utf8_lossy(ct);
            for clear in ["not-an-email", "eve@example.com", "Atlantis", "heidi"] {
                assert!(
                    !as_text.contains(clear),
                    "quarantine stores {clear} in clear"
                );
            }
        }
        let reasons_text: Vec<String> = sqlx::query_scalar("SELECT reasons FROM quarantine")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert!(
            reasons_text.iter().all(|r| !r.contains("example.com")),
            "{reasons_text:?}"
        );

        // A second run brings nothing new and says so.
        let again = run(&app, CRM_MAPPING, CRM_CSV).await;
        assert_eq!(again.imported + again.merged, 0, "{again}");
        assert_eq!(again.already_present, 4, "{again}");
        assert_eq!(again.quarantined, 5);
        assert!(again.adds_up());
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM quarantine").await,
            5,
            "the same failed rows are not quarantined twice"
        );
        assert_eq!(count(db, "SELECT COUNT(*) FROM customers").await, 3);
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM consent_events").await,
            2,
            "consent receipts are stable across runs"
        );
    }
);

both_backends!(
    the_same_person_from_two_sources_is_one_customer,
    async |app: TestApp| {
        let db = &app.state.db;
        run(&app, CRM_MAPPING, CRM_CSV).await;
        let s = run(&app, SHOP_MAPPING, SHOP_NDJSON).await;
        assert_eq!(s.rows_read, 6, "{s}");
        assert_eq!(s.merged, 2, "{s}");
        assert_eq!(s.merged_by.get("email"), Some(&1), "{s}");
        assert_eq!(s.merged_by.get("phone"), Some(&1), "{s}");
        assert_eq!(s.imported, 1, "{s}");
        assert_eq!(s.quarantined, 3, "{s}");
        assert!(s.adds_up(), "{s}");
        assert_eq!(reasons(db, "shop", "customers", 4).await, ["bad_json"]);
        assert_eq!(
            reasons(db, "shop", "customers", 5).await,
            ["nested_value:tags"]
        );
        assert_eq!(
            reasons(db, "shop", "customers", 6).await,
            ["truncated_line"]
        );

        // Bob of the shop is Bob of the CRM: one customer, two source keys.
        assert_eq!(count(db, "SELECT COUNT(*) FROM customers").await, 4);
        assert_eq!(
            text(
                db,
                "SELECT k.external_id FROM customer_sources s JOIN customers k \
                 ON k.id = s.customer_id WHERE s.source = 'shop' AND s.source_key = 'shop-100'"
            )
            .await,
            "crm-2"
        );
        assert_eq!(
            text(
                db,
                "SELECT matched_by FROM customer_sources WHERE source_key = 'shop-101'"
            )
            .await,
            "phone"
        );
        assert_eq!(
            text(
                db,
                "SELECT k.external_id FROM customer_sources s JOIN customers k \
                 ON k.id = s.customer_id WHERE s.source_key = 'shop-101'"
            )
            .await,
            "crm-3"
        );
    }
);

both_backends!(
    orders_are_taken_whole_and_replayed_after_a_fix,
    async |app: TestApp| {
        let db = &app.state.db;
        run(&app, CRM_MAPPING, CRM_CSV).await;
        let s = run(&app, ORDERS_MAPPING, ORDERS_CSV).await;
        assert_eq!(s.rows_read, 7, "{s}");
        assert_eq!(s.imported, 3, "{s}");
        assert_eq!(s.orders_created, 2, "{s}");
        assert_eq!(s.quarantined, 4, "{s}");
        assert!(s.adds_up(), "{s}");
        assert_eq!(
            count(
                db,
                "SELECT total_cents FROM orders WHERE external_id = 'crm-A1'"
            )
            .await,
            2 * 1250 + 4 * 300
        );
        assert_eq!(
            text(
                db,
                "SELECT currency FROM orders WHERE external_id = 'crm-A1'"
            )
            .await,
            "EUR"
        );
        assert_eq!(
            text(
                db,
                "SELECT currency FROM orders WHERE external_id = 'crm-A2'"
            )
            .await,
            "USD"
        );
        assert_eq!(count(db, "SELECT COUNT(*) FROM order_lines").await, 3);
        assert_eq!(
            reasons(db, "crm", "orders", 5).await,
            ["unknown_customer:customer_id"]
        );
        assert_eq!(
            reasons(db, "crm", "orders", 6).await,
            ["order_has_invalid_lines"]
        );
        assert_eq!(
            reasons(db, "crm", "orders", 7).await,
            ["out_of_range:quantity"]
        );
        assert_eq!(
            reasons(db, "crm", "orders", 8).await,
            ["unknown_value:currency"]
        );

        // Customer 77 arrives; the replay brings their order, the rest stays.
        run(
            &app,
            CRM_MAPPING,
            "Kundennr;E-Mail;Telefon;Name;Land;Angelegt;Newsletter\n77;zoe@example.com;;Zoe;DE;01.03.2020;\n",
        )
        .await;
        let r = replay(&app, ORDERS_MAPPING).await;
        assert_eq!(r.rows_read, 4, "{r}");
        assert_eq!(r.replayed, 1, "{r}");
        assert_eq!(r.imported, 1, "{r}");
        assert_eq!(r.quarantined, 3, "{r}");
        assert!(r.adds_up(), "{r}");
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id \
                 WHERE o.external_id = 'crm-A3' AND c.external_id = 'crm-77'"
            )
            .await,
            1
        );
        // The replayed entry is resolved and its ciphertext gone.
        assert_eq!(
            count(
                db,
                "SELECT COUNT(*) FROM quarantine WHERE status = 'replayed' AND row_ct IS NULL"
            )
            .await,
            1
        );
        // Replaying again changes nothing.
        let r2 = replay(&app, ORDERS_MAPPING).await;
        assert_eq!(r2.replayed, 0);
        assert_eq!(r2.quarantined, 3);
        assert_eq!(count(db, "SELECT COUNT(*) FROM orders").await, 3);
    }
);

both_backends!(bad_input_stops_with_one_clear_line, async |app: TestApp| {
    let db = &app.state.db;
    // A mapping naming a column the file does not have: refused before any write.
    let err = try_run(&app, CRM_MAPPING, "Kundennr;E-Mail\n1;a@example.com\n")
        .await
        .unwrap_err();
    assert!(err
        .downcast_ref::<custodian::import::mapped::NothingWritten>()
        .is_some());
    let err = format!("{err:#}");
    assert!(err.starts_with("nothing was written: line 1:"), "{err}");
    assert!(err.contains("\"Telefon\""), "{err}");
    // UTF-16 is not read as garbage.
    let utf16 = "\u{feff}Kundennr"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect::<Vec<u8>>();
    let mapping = Mapping::parse(CRM_MAPPING).unwrap();
    let err = MappedImport {
        db,
        vault: &app.state.vault,
        mapping: &mapping,
        actor: "test",
        now: 0,
    }
    .run(utf16.as_slice(), &NoProgress)
    .await
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("UTF-16"), "{err}");
    assert_eq!(count(db, "SELECT COUNT(*) FROM import_runs").await, 0);
    assert_eq!(count(db, "SELECT COUNT(*) FROM customers").await, 0);

    // Invalid UTF-8 inside one row: that row is quarantined, the rest imported.
    let mut bytes = b"Kundennr;E-Mail;Telefon;Name;Land;Angelegt;Newsletter\n".to_vec();
    bytes.extend_from_slice(b"1;a@example.com;;A\xff\xfe;DE;01.01.2020;\n");
    bytes.extend_from_slice(b"2;b@example.com;;B;DE;01.01.2020;\n");
    let mapping = Mapping::parse(CRM_MAPPING).unwrap();
    let s = MappedImport {
        db,
        vault: &app.state.vault,
        mapping: &mapping,
        actor: "test",
        now: 0,
    }
    .run(bytes.as_slice(), &NoProgress)
    .await
    .unwrap();
    assert_eq!((s.imported, s.quarantined), (1, 1), "{s}");
    assert_eq!(
        reasons(db, "crm", "customers", 2).await,
        ["invalid_utf8:Name"]
    );
    assert_eq!(
        text(
            db,
            "SELECT status FROM import_runs ORDER BY id DESC LIMIT 1"
        )
        .await,
        "completed"
    );
});

fn cli(app: &TestApp, args: &[&std::ffi::OsStr], db_url: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_custodian"));
    cmd.args(args)
        .env("CUSTODIAN_DATA_DIR", &app.config.data_dir)
        .env("CUSTODIAN_LOG", "error")
        .env("USER", "alice")
        .env_remove("DATABASE_URL");
    if let Some(url) = db_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_mapped_import_is_audited_and_bad_input_is_one_line() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("crm.toml");
    std::fs::write(&mapping, CRM_MAPPING).unwrap();
    let csv = dir.path().join("crm.csv");
    std::fs::write(&csv, CRM_CSV).unwrap();
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let base = [
        os("import"),
        os("mapped"),
        os("--quiet"),
        os("--mapping"),
        mapping.as_os_str(),
    ];

    let mut args = base.to_vec();
    args.extend([os("--json"), csv.as_os_str()]);
    let out = cli(&app, &args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["imported"], 3);
    assert_eq!(summary["quarantined"], 5);
    // One audit event for the run, with the OS user as actor.
    let events = app.audit_events().await;
    let run: Vec<_> = events
        .iter()
        .filter(|e| e.event.action.as_str() == "import")
        .collect();
    assert_eq!(run.len(), 1);
    assert_eq!(run[0].event.actor, "cli:alice");
    assert!(
        run[0].event.reason.contains("3 imported"),
        "{}",
        run[0].event.reason
    );
    assert_eq!(run[0].event.resource, "import/crm");

    // A mapping naming a column the file lacks: one line, non-zero, nothing written.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "Kundennr;E-Mail\n1;a@example.com\n").unwrap();
    let mut args = base.to_vec();
    args.push(bad.as_os_str());
    let out = cli(&app, &args, None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("line 1: the mapping's fields.phone"),
        "{stderr}"
    );
    let customers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(customers, 3);

    // A read-only destination: one line, non-zero, nothing written.
    let ro = format!(
        "sqlite://{}?mode=ro",
        app.config.data_dir.join("custodian.db").display()
    );
    let mut args = base.to_vec();
    args.push(csv.as_os_str());
    let out = cli(&app, &args, Some(&ro));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("readonly") || stderr.contains("read-only"),
        "{stderr}"
    );
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM import_runs")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 1);
    app.stop().await;
}
