//! `POST /v1/events` against the declared event schema (policies/events.toml):
//! every violation reported per event, the batch refused whole, planned
//! properties stored.

use crate::both_backends;
use crate::helpers::*;
use custodian::import::event_schema::EventSchema;
use custodian::import::events::EventImport;
use reqwest::Method;
use serde_json::{json, Value};

async fn post(app: &TestApp, events: Value) -> reqwest::Response {
    app.as_role(
        Method::POST,
        "/v1/events",
        "ingest_service",
        "data_ingestion",
    )
    .json(&json!({ "events": events }))
    .send()
    .await
    .unwrap()
}

both_backends!(
    events_are_checked_against_the_tracking_plan,
    async |app: TestApp| {
        app.exec(
            "INSERT INTO products (sku, name, category, price_cents, created_at) \
         VALUES ('SKU1', 'Teapot', 'kitchen', 1250, 0)",
        )
        .await;
        let at = "2026-01-05T10:00:00Z";
        let r = post(
            &app,
            json!([
                {"event_id": "s1", "kind": "search", "channel": "web", "occurred_at": at,
                 "properties": {"query": "teapot", "results": 3}},
                {"event_id": "a1", "kind": "add_to_cart", "channel": "app", "occurred_at": at,
                 "product_sku": "SKU1", "properties": {"quantity": 2}},
            ]),
        )
        .await;
        assert_eq!(r.status(), 201);
        let stored: String =
            sqlx::query_scalar("SELECT properties FROM events WHERE event_uid = 's1'")
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        let stored: Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(stored, json!({"query": "teapot", "results": 3}));

        let r = post(
            &app,
            json!([
                {"event_id": "ok", "kind": "click", "channel": "web", "occurred_at": at},
                {"event_id": "b1", "kind": "search", "channel": "web", "occurred_at": at,
                 "properties": {"results": "many", "email": "someone@example.com"}},
                {"event_id": "b2", "kind": "add_to_cart", "channel": "web", "occurred_at": at},
            ]),
        )
        .await;
        assert_eq!(r.status(), 422);
        let body: Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("2 of 3 events do not match"),
            "{message}"
        );
        for expected in [
            "events[1].properties.query: required for search",
            "events[1].properties.results: must be integer",
            "events[1].properties.email: unplanned for search",
            "events[2].product_sku: required for add_to_cart",
        ] {
            assert!(message.contains(expected), "{expected}: {message}");
        }
        assert!(
            !message.contains("someone@example.com"),
            "never echoes values"
        );
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(n, 2, "the batch is refused whole");
    }
);

/// The `weblog` stream import of these tests, on `app`'s store.
fn weblog<'a>(app: &'a TestApp, schema: &'a EventSchema) -> EventImport<'a> {
    EventImport {
        db: &app.state.db,
        vault: &app.state.vault,
        schema,
        source: "weblog",
        actor: "test",
        now: 1_780_000_000_000_000,
    }
}

const STREAM: &str = r#"{"event_id": "w1", "kind": "view", "product_sku": "SKU1", "channel": "web", "occurred_at": "2026-01-05T10:00:00Z"}
{"event_id": "w2", "kind": "search", "channel": "web", "occurred_at": "2026-01-05T10:01:00Z", "properties": {"query": "teapot"}}

{"event_id": "w3", "kind": "teleport", "channel": "web", "occurred_at": "2026-01-05T10:02:00Z"}
{"event_id": "w4", "kind": "view", "product_sku": "NOPE", "channel": "web", "occurred_at": "2026-01-05T10:03:00Z"}
{"event_id": "w5", "kind": "search", "channel": "web", "occurred_at": "2026-01-05T10:04:00Z", "properties": {"results": "x"}}
{"event_id": "w1", "kind": "view", "product_sku": "SKU1", "channel": "web", "occurred_at": "2026-01-05T10:00:00Z"}
{"event_id": "w6", "kind": "view", "produ"#;

both_backends!(
    an_event_stream_is_taken_line_by_line,
    async |app: TestApp| {
        app.exec(
            "INSERT INTO products (sku, name, category, price_cents, created_at) \
         VALUES ('SKU1', 'Teapot', 'kitchen', 1250, 0)",
        )
        .await;
        let schema = EventSchema::load(&app.config.policy_dir).unwrap();
        let job = weblog(&app, &schema);
        let s = job
            .run(STREAM.as_bytes(), &custodian::import::NoProgress)
            .await
            .unwrap();
        assert_eq!(s.rows_read, 7, "{s}");
        assert_eq!(s.imported, 2, "{s}");
        assert_eq!(s.already_present, 1, "{s}");
        assert_eq!(s.quarantined, 4, "{s}");
        assert!(s.adds_up(), "{s}");
        assert_eq!(s.problems.get("schema_violation"), Some(&3), "{s}");
        assert_eq!(s.problems.get("unknown_product"), Some(&1), "{s}");
        assert_eq!(s.problems.get("truncated_line"), Some(&1), "{s}");
        let reasons: Vec<String> =
            sqlx::query_scalar("SELECT reasons FROM quarantine ORDER BY line_no")
                .fetch_all(&app.state.db.pool)
                .await
                .unwrap();
        assert!(reasons[0].contains("event.kind"), "{reasons:?}");
        assert!(reasons[2].contains("event.properties.query"), "{reasons:?}");

        let again = job
            .run(STREAM.as_bytes(), &custodian::import::NoProgress)
            .await
            .unwrap();
        assert_eq!(again.imported, 0);
        assert_eq!(again.already_present, 3);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quarantine")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(n, 4, "a re-run does not quarantine the same lines again");
    }
);

both_backends!(
    an_integer_property_may_be_written_as_a_whole_float,
    async |app: TestApp| {
        // JSON Schema (and so the OpenAPI document) counts 3.0 as an integer.
        let at = "2026-01-05T10:00:00Z";
        let r = post(
            &app,
            json!([{"event_id": "f1", "kind": "search", "channel": "web", "occurred_at": at,
                    "properties": {"query": "teapot", "results": 3.0}}]),
        )
        .await;
        assert_eq!(r.status(), 201);
        let r = post(
            &app,
            json!([{"event_id": "f2", "kind": "search", "channel": "web", "occurred_at": at,
                    "properties": {"query": "teapot", "results": 3.5}}]),
        )
        .await;
        assert_eq!(r.status(), 422);
    }
);

both_backends!(
    an_event_streams_quarantine_replays_once_its_cause_is_fixed,
    async |app: TestApp| {
        app.exec(
            "INSERT INTO products (sku, name, category, price_cents, created_at) \
         VALUES ('SKU1', 'Teapot', 'kitchen', 1250, 0)",
        )
        .await;
        let schema = EventSchema::load(&app.config.policy_dir).unwrap();
        let job = weblog(&app, &schema);
        let first = job
            .run(STREAM.as_bytes(), &custodian::import::NoProgress)
            .await
            .unwrap();
        assert_eq!(first.quarantined, 4, "{first}");
        let open = |status: &'static str| {
            let pool = app.state.db.pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM quarantine WHERE source = 'weblog' AND status = $1",
                )
                .bind(status)
                .fetch_one(&pool)
                .await
                .unwrap()
            }
        };

        // Nothing fixed yet: every entry fails again and stays open.
        let idle = job.replay(&custodian::import::NoProgress).await.unwrap();
        assert_eq!(
            (idle.rows_read, idle.imported, idle.quarantined),
            (4, 0, 4),
            "{idle}"
        );
        assert!(idle.adds_up(), "{idle}");
        assert_eq!(open("open").await, 4);

        // The product w4 pointed at now exists: its line goes in.
        app.exec(
            "INSERT INTO products (sku, name, category, price_cents, created_at) \
         VALUES ('NOPE', 'Late product', 'kitchen', 500, 0)",
        )
        .await;
        let fixed = job.replay(&custodian::import::NoProgress).await.unwrap();
        assert_eq!(
            (fixed.rows_read, fixed.imported, fixed.quarantined),
            (4, 1, 3),
            "{fixed}"
        );
        assert!(fixed.adds_up(), "{fixed}");
        assert_eq!(fixed.problems.get("unknown_product"), None, "{fixed}");
        assert_eq!((open("open").await, open("replayed").await), (3, 1));
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_uid = 'w4'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(stored, 1);
        // The replayed entry keeps its reasons and loses its ciphertext.
        let (reasons, ct): (String, Option<Vec<u8>>) =
            sqlx::query_as("SELECT reasons, row_ct FROM quarantine WHERE status = 'replayed'")
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        assert!(reasons.contains("unknown_product"), "{reasons}");
        assert!(ct.is_none());

        // A replay afterwards reads only what is still open.
        let again = job.replay(&custodian::import::NoProgress).await.unwrap();
        assert_eq!((again.rows_read, again.imported), (3, 0), "{again}");
    }
);
