use crate::both_backends;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn seed(app: &TestApp) {
    assert_eq!(
        app.create_customer(json!({"external_id": "O1", "email": "o1@example.com"}))
            .await
            .status(),
        201
    );
    let pool = &app.state.db.pool;
    sqlx::query("INSERT INTO products (sku, name, category, price_cents, created_at) VALUES ('SKU1', 'Red mug', 'kitchen', 450, 0)")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO orders (external_id, customer_id, kind, placed_at, country, total_cents, source, created_at) \
         SELECT 'INV1', id, 'order', 1000000, 'France', 900, 'test', 0 FROM customers WHERE external_id = 'O1'",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents) \
         SELECT o.id, 1, p.id, 2, 450 FROM orders o, products p WHERE o.external_id = 'INV1' AND p.sku = 'SKU1'",
    )
    .execute(pool)
    .await
    .unwrap();
}

both_backends!(support_reads_a_customers_orders, async |app: TestApp| {
    seed(&app).await;
    let r = app
        .as_role(
            Method::GET,
            "/v1/customers/O1/orders",
            "support_agent",
            "customer_support",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["orders"][0]["order_id"], "INV1");
    assert_eq!(body["orders"][0]["lines"][0]["sku"], "SKU1");
    assert_eq!(body["orders"][0]["lines"][0]["quantity"], 2);
    let r = app
        .as_role(
            Method::GET,
            "/v1/customers/O1/orders",
            "marketing_analyst",
            "marketing_analytics",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
});

fn event(id: &str, kind: &str) -> Value {
    json!({"event_id": id, "customer_id": "O1", "kind": kind, "product_sku": "SKU1", "channel": "web",
           "occurred_at": "2026-01-05T10:00:00Z"})
}

async fn ingest(app: &TestApp, role: &str, purpose: &str, events: Value) -> reqwest::Response {
    app.as_role(Method::POST, "/v1/events", role, purpose)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap()
}

async fn event_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

both_backends!(
    events_are_ingested_idempotently_and_bad_batches_refused_whole,
    async |app: TestApp| {
        seed(&app).await;
        let r = ingest(
            &app,
            "ingest_service",
            "data_ingestion",
            json!([event("e1", "view"), event("e2", "add_to_cart")]),
        )
        .await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["accepted"], 2);
        let r = ingest(
            &app,
            "ingest_service",
            "data_ingestion",
            json!([event("e1", "view"), event("e3", "click")]),
        )
        .await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            (body["accepted"].as_u64(), body["duplicates"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(event_count(&app).await, 3);

        let mut unknown_customer = event("e9", "view");
        unknown_customer["customer_id"] = json!("nobody");
        let mut future = event("e10", "view");
        future["occurred_at"] = json!("2999-01-01T00:00:00Z");
        for bad in [
            json!([event("e4", "view"), event("e5", "teleport")]),
            json!([event("e6", "view"), event("e6", "view")]),
            json!([event("e8", "view"), future]),
            json!([]),
        ] {
            let r = ingest(&app, "ingest_service", "data_ingestion", bad).await;
            assert_eq!(r.status(), 422);
        }
        // A batch naming a customer that does not exist: 404, nothing stored.
        let r = ingest(
            &app,
            "ingest_service",
            "data_ingestion",
            json!([event("e7", "view"), unknown_customer]),
        )
        .await;
        assert_eq!(r.status(), 404);
        assert_eq!(event_count(&app).await, 3, "nothing half-written");
        let r = ingest(
            &app,
            "support_agent",
            "customer_support",
            json!([event("e11", "view")]),
        )
        .await;
        assert_eq!(r.status(), 403);
    }
);
