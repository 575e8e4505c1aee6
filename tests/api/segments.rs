//! Segments, profiles and output privacy over real HTTP, on both backends,
//! on a small hand-made shop whose right answers are known:
//!
//! - 40 customers `C00`..`C39`; `C00`-`C19` in Germany, `C20`-`C39` in France;
//! - `C00`-`C29` consent to marketing_analytics and email_marketing;
//! - `C00`-`C14` and `C30`-`C39` bought garden (50.00) 10 days before `as_of`,
//!   `C15`-`C29` bought kitchen (10.00) 200 days before; `C00` alone viewed
//!   the product `RARE`.

use crate::both_backends;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

const DAY: i64 = 86_400_000_000;

/// The start of the test clock's day: the default `as_of`.
fn day0(app: &TestApp) -> i64 {
    let now = custodian::clock::Clock::now_micros(&app.clock);
    now - now.rem_euclid(DAY)
}

fn as_of(app: &TestApp) -> String {
    custodian::clock::rfc3339(day0(app))
}

async fn seed(app: &TestApp) {
    let d0 = day0(app);
    let mut values = Vec::new();
    for i in 0..40 {
        let country = if i < 20 { "Germany" } else { "France" };
        values.push(format!(
            "('C{i:02}', '{country}', {}, 0, 0)",
            d0 - 400 * DAY
        ));
    }
    app.exec(&format!(
        "INSERT INTO customers (external_id, country, signup_at, created_at, updated_at) VALUES {}",
        values.join(", ")
    ))
    .await;
    app.exec(
        "INSERT INTO products (sku, name, category, price_cents, created_at) VALUES \
         ('G1', 'Rake', 'garden', 5000, 0), ('K1', 'Mug', 'kitchen', 1000, 0), \
         ('RARE', 'Telescope', 'optics', 90000, 0)",
    )
    .await;
    for i in 0..40 {
        let (sku, price, days) = if !(15..30).contains(&i) {
            ("G1", 5000, 10)
        } else {
            ("K1", 1000, 200)
        };
        add_order(
            app,
            &format!("C{i:02}"),
            &format!("O{i:02}"),
            sku,
            price,
            d0 - days * DAY,
        )
        .await;
    }
    for i in 0..30 {
        for purpose in ["marketing_analytics", "email_marketing"] {
            consent(app, &format!("C{i:02}"), purpose, true, 1).await;
        }
    }
    app.exec(&format!(
        "INSERT INTO events (event_uid, customer_id, kind, product_id, channel, occurred_at, ingested_at) \
         SELECT 'ev-rare', c.id, 'view', p.id, 'web', {}, 0 FROM customers c, products p \
         WHERE c.external_id = 'C00' AND p.sku = 'RARE'",
        d0 - 3 * DAY
    ))
    .await;
}

async fn add_order(app: &TestApp, customer: &str, order: &str, sku: &str, price: i64, at: i64) {
    app.exec(&format!(
        "INSERT INTO orders (external_id, customer_id, kind, placed_at, country, total_cents, source, created_at) \
         SELECT '{order}', id, 'order', {at}, country, {price}, 'test', 0 FROM customers WHERE external_id = '{customer}'"
    ))
    .await;
    app.exec(&format!(
        "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_cents) \
         SELECT o.id, 1, p.id, 1, {price} FROM orders o, products p WHERE o.external_id = '{order}' AND p.sku = '{sku}'"
    ))
    .await;
}

async fn consent(app: &TestApp, customer: &str, purpose: &str, granted: bool, at: i64) {
    let receipt = uuid::Uuid::new_v4().simple().to_string();
    app.exec(&format!(
        "INSERT INTO consent_events (receipt_id, customer_id, purpose, granted, occurred_at, recorded_at, source, actor) \
         SELECT '{receipt}', id, '{purpose}', {}, {at}, {at}, 'test', 'test' FROM customers WHERE external_id = '{customer}'",
        i64::from(granted)
    ))
    .await;
}

async fn query(app: &TestApp, role: &str, purpose: &str, body: Value) -> reqwest::Response {
    app.as_role(Method::POST, "/v1/segments/query", role, purpose)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The CRM service reads members, so it gets exact numbers (k still applies).
async fn exact_size(app: &TestApp, definition: Value) -> Value {
    let r = query(
        app,
        "crm_service",
        "email_marketing",
        json!({"definition": definition, "as_of": as_of(app)}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["privacy"]["mechanism"], "exact");
    body["size"].clone()
}

fn germany_garden() -> Value {
    json!({"all": [
        {"country": {"in": ["Germany"]}},
        {"bought": {"category": "garden", "within_days": 90}}
    ]})
}

both_backends!(
    segment_sizes_count_consenting_customers_only,
    async |app: TestApp| {
        seed(&app).await;
        assert_eq!(
            exact_size(&app, germany_garden()).await,
            json!({"value": 15, "suppressed": false})
        );
        // France: C20-C29 consent (10 = k), C30-C39 do not.
        let france = json!({"country": {"in": ["France"]}});
        assert_eq!(exact_size(&app, france).await["value"], 10);
        // Three conditions, with a negation ("did not buy kitchen").
        let three = json!({"all": [
            {"recency": {"max_days": 30}},
            {"monetary": {"min": 40.0}},
            {"not": {"bought": {"category": "kitchen"}}}
        ]});
        assert_eq!(exact_size(&app, three).await["value"], 15);
        // Windows: 200 days ago is outside 90 days, inside 365.
        let old = json!({"bought": {"category": "kitchen", "within_days": 365}});
        assert_eq!(exact_size(&app, old).await["value"], 15);
        let old = json!({"bought": {"category": "kitchen", "within_days": 90}});
        assert_eq!(exact_size(&app, old).await, json!({"suppressed": true}));
        // Consent to another purpose, RFM cells, events.
        let c = json!({"all": [{"consent": {"purpose": "marketing_analytics"}}, {"rfm_cell": {"in": ["hibernating"]}}]});
        assert_eq!(exact_size(&app, c).await["value"], 15);
        let viewed = json!({"not": {"viewed": {"product": "RARE"}}});
        assert_eq!(exact_size(&app, viewed).await["value"], 29);
    }
);

both_backends!(
    under_k_is_suppressed_and_members_are_never_listed,
    async |app: TestApp| {
        seed(&app).await;
        // Germany and kitchen: C15-C19, five customers.
        let small =
            json!({"all": [{"country": {"in": ["Germany"]}}, {"bought": {"category": "kitchen"}}]});
        let r = query(
            &app,
            "crm_service",
            "email_marketing",
            json!({"definition": small, "members": {"limit": 100}}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["size"], json!({"suppressed": true}));
        assert!(body.get("members").is_none(), "{body}");
        // Noisy roles: suppressed too, never a value.
        let r = query(
            &app,
            "marketing_analyst",
            "marketing_analytics",
            json!({"definition": small}),
        )
        .await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["size"], json!({"suppressed": true}));
        // Distributions by data-derived labels leave small cells out entirely.
        let r = query(
        &app,
        "crm_service",
        "email_marketing",
        json!({"definition": {"bought": {"category": "kitchen"}}, "distributions": ["country", "rfm_cell"]}),
    )
    .await;
        let body: Value = r.json().await.unwrap();
        let country = &body["distributions"][0];
        assert_eq!(country["name"], "country");
        assert_eq!(
            country["cells"],
            json!([{"label": "France", "customers": {"value": 10, "suppressed": false}}])
        );
        let rfm = &body["distributions"][1]["cells"];
        assert_eq!(rfm.as_array().unwrap().len(), 12);
    }
);

both_backends!(
    members_are_purpose_pseudonyms_of_consenting_customers,
    async |app: TestApp| {
        seed(&app).await;
        let r = query(
            &app,
            "crm_service",
            "email_marketing",
            json!({"definition": germany_garden(), "as_of": as_of(&app), "members": {"limit": 10}}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let page = body["members"]["pseudonyms"].as_array().unwrap().clone();
        assert_eq!(page.len(), 10);
        let purpose = custodian::domain::PurposeId("email_marketing".into());
        let p = app.state.vault.pseudonymizer();
        assert_eq!(page[0], p.token(&purpose, "C00"));
        let text = body.to_string();
        assert!(!text.contains("\"C0") && !text.contains("\"id\""), "{text}");
        let cursor = body["members"]["next_cursor"].as_str().unwrap().to_owned();
        let r = query(
        &app,
        "crm_service",
        "email_marketing",
        json!({"definition": germany_garden(), "as_of": as_of(&app), "members": {"limit": 10, "cursor": cursor}}),
    )
    .await;
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["members"]["pseudonyms"].as_array().unwrap().len(), 5);
        assert!(body["members"].get("next_cursor").is_none());
        // The cursor is sealed to this principal, purpose and definition:
        // another caller of the same role, or another segment, cannot use it.
        let other = app
            .client
            .post(app.url("/v1/segments/query"))
            .bearer_auth(app.token("another-crm", &["crm_service"]))
            .header("x-purpose", "email_marketing")
            .json(&json!({"definition": germany_garden(), "as_of": as_of(&app), "members": {"limit": 10, "cursor": cursor}}))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 400);
        let r = query(
            &app,
            "crm_service",
            "email_marketing",
            json!({"definition": {"country": {"in": ["Germany"]}}, "as_of": as_of(&app), "members": {"limit": 10, "cursor": cursor}}),
        )
        .await;
        assert_eq!(r.status(), 400);
        // Analysts may not list members.
        let r = query(
            &app,
            "marketing_analyst",
            "marketing_analytics",
            json!({"definition": germany_garden(), "members": {}}),
        )
        .await;
        assert_eq!(r.status(), 403);
    }
);

both_backends!(
    withdrawal_takes_effect_on_the_next_query,
    async |app: TestApp| {
        seed(&app).await;
        assert_eq!(exact_size(&app, germany_garden()).await["value"], 15);
        consent(&app, "C00", "email_marketing", false, 2).await;
        assert_eq!(exact_size(&app, germany_garden()).await["value"], 14);
        // Noisy roles: the sticky answer is keyed on the data version, which a
        // withdrawal moves, so the next question is a fresh draw.
        let body = json!({"definition": germany_garden(), "as_of": as_of(&app)});
        let a: Value = query(
            &app,
            "marketing_analyst",
            "marketing_analytics",
            body.clone(),
        )
        .await
        .json()
        .await
        .unwrap();
        let b: Value = query(
            &app,
            "marketing_analyst",
            "marketing_analytics",
            body.clone(),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(b["privacy"]["mechanism"], "sticky");
        consent(&app, "C01", "marketing_analytics", false, 2).await;
        let c: Value = query(&app, "marketing_analyst", "marketing_analytics", body)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(a["privacy"]["mechanism"], "discrete_laplace");
        assert_eq!(c["privacy"]["mechanism"], "discrete_laplace");
    }
);

both_backends!(
    noise_budget_exhaustion_and_refresh,
    config: |c: &mut custodian::config::Config| {
        c.privacy.epsilon_per_query = 0.5;
        c.privacy.budget_epsilon = 1.0;
        c.privacy.budget_window_secs = 7 * 86_400;
    },
    async |app: TestApp| {
        seed(&app).await;
        // All 30 consenting customers: far above k, whatever the noise.
        let ask = |days: i64| json!({"definition": {"recency": {"max_days": days}}, "as_of": as_of(&app)});
        let a = query(&app, "marketing_analyst", "marketing_analytics", ask(300)).await;
        assert_eq!(a.status(), 200);
        let a: Value = a.json().await.unwrap();
        assert_eq!(a["privacy"]["mechanism"], "discrete_laplace");
        assert_eq!(a["privacy"]["epsilon_spent"], 0.5);
        assert_eq!(a["privacy"]["budget_remaining"], 0.5);
        let v = a["size"]["value"].as_i64().unwrap();
        let ci = a["size"]["ci95"].as_array().unwrap();
        assert_eq!(ci[0].as_i64().unwrap(), v - 6);
        assert_eq!(ci[1].as_i64().unwrap(), v + 6);
        // The same question again: the same answer, free.
        let again: Value = query(&app, "marketing_analyst", "marketing_analytics", ask(300)).await.json().await.unwrap();
        assert_eq!(again["size"], a["size"]);
        assert_eq!(again["privacy"]["mechanism"], "sticky");
        assert_eq!(again["privacy"]["epsilon_spent"], 0.0);
        // A second question spends the rest; a third is refused.
        assert_eq!(query(&app, "marketing_analyst", "marketing_analytics", ask(301)).await.status(), 200);
        let r = query(&app, "marketing_analyst", "marketing_analytics", ask(302)).await;
        assert_eq!(r.status(), 429);
        let retry: i64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry > 0 && retry <= 7 * 86_400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "privacy_budget_exhausted");
        assert_eq!(body["error"]["remaining_epsilon"], 0.0);
        assert!(body["error"]["refreshes_at"].is_string());
        // Asked questions stay free while the budget is spent.
        let again: Value = query(&app, "marketing_analyst", "marketing_analytics", ask(300)).await.json().await.unwrap();
        assert_eq!(again["size"], a["size"]);
        let b: Value = app
            .as_role(Method::GET, "/v1/privacy/budget", "marketing_analyst", "marketing_analytics")
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(b["budgets"][0]["spent_epsilon"], 1.0);
        assert_eq!(b["budgets"][0]["queries"], 2);
        // Compliance sees everyone's; the analyst may not.
        let all: Value = app
            .as_role(Method::GET, "/v1/privacy/budget?scope=all", "compliance_officer", "compliance_audit")
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(all["budgets"][0]["principal"], "marketing_analyst-user");
        let r = app
            .as_role(Method::GET, "/v1/privacy/budget?scope=all", "marketing_analyst", "marketing_analytics")
            .send().await.unwrap();
        assert_eq!(r.status(), 403);
        // Every answer's audit event carries its privacy block: the fresh
        // one its debit, the repeated ones none, the refused one nothing.
        let events = app.audit_events().await;
        let blocks: Vec<_> = events
            .iter()
            .filter(|e| e.event.action.as_str() == "segment.read")
            .map(|e| (e.event.status, e.event.privacy.clone()))
            .collect();
        let first = blocks[0].1.clone().expect("privacy block");
        assert_eq!(hex::encode(first.fingerprint), a["fingerprint"].as_str().unwrap());
        assert_eq!((first.mechanism.as_str(), first.epsilon_spent_micros, first.k), ("discrete_laplace", 500_000, 10));
        assert_eq!(first.budget_remaining_micros, 500_000);
        let repeat = blocks[1].1.clone().expect("privacy block");
        assert_eq!((repeat.epsilon_spent_micros, repeat.fingerprint), (0, first.fingerprint));
        assert!(blocks.iter().any(|(status, p)| *status == 429 && p.is_none()));
        // The next window refreshes the budget (an injected clock, no sleep).
        app.clock.advance_secs(7 * 86_400);
        let r = query(&app, "marketing_analyst", "marketing_analytics", ask(302)).await;
        assert_eq!(r.status(), 200);
    }
);

/// The value of a counter line in a Prometheus text exposition (0 when absent).
fn counter(text: &str, family: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, n)| n.parse::<f64>().ok()))
        .map(|n| n as u64)
        .sum()
}

both_backends!(
    privacy_budget_spend_is_a_metric_by_purpose,
    config: |c: &mut custodian::config::Config| {
        c.privacy.epsilon_per_query = 0.5;
        c.privacy.budget_epsilon = 1.0;
    },
    async |app: TestApp| {
        seed(&app).await;
        let family = "custodian_privacy_epsilon_spent_micro_total";
        let purpose = [("purpose", "marketing_analytics")];
        // The recorder is process-wide and other tests run beside this one:
        // compare before and after, never an absolute value.
        let before = app.get("/metrics").await.text().await.unwrap();
        let ask = json!({"definition": {"recency": {"max_days": 300}}, "as_of": as_of(&app)});
        let r = query(&app, "marketing_analyst", "marketing_analytics", ask.clone()).await;
        assert_eq!(r.status(), 200);
        let sticky = query(&app, "marketing_analyst", "marketing_analytics", ask).await;
        assert_eq!(sticky.status(), 200);
        let after = app.get("/metrics").await.text().await.unwrap();
        assert!(after.contains(&format!("# TYPE {family} counter")), "{after}");
        assert!(after.contains(&format!("# HELP {family} ")));
        assert!(
            counter(&after, family, &purpose) >= counter(&before, family, &purpose) + 500_000,
            "{after}"
        );
        let releases = "custodian_privacy_releases_total";
        for mechanism in ["discrete_laplace", "sticky"] {
            let labels = [purpose[0], ("mechanism", mechanism)];
            assert!(counter(&after, releases, &labels) > counter(&before, releases, &labels));
        }
        // Never a principal as a label: its cardinality has no bound.
        assert!(!after.lines().any(|l| l.starts_with("custodian_privacy") && l.contains("principal")));
    }
);

// The differencing attack: "X" and "X and not T" differ by the target T
// alone. An attacker spends the whole budget on fresh variants of the
// pair (sticky answers stop plain repetition) in many windows, in a world
// where T is in X and one where T is not, and guesses by the mean
// difference. Under epsilon = 1 per window the best possible accuracy is
// e/(1+e) ≈ 0.73; the measured one must stay below that (with room for
// sampling), while the same attack on exact answers is always right.
both_backends!(
    differencing_attack_learns_little,
    config: |c: &mut custodian::config::Config| {
        c.privacy.epsilon_per_query = 0.1;
        c.privacy.budget_epsilon = 1.0;
        c.privacy.budget_window_secs = 86_400;
    },
    async |app: TestApp| {
        seed(&app).await;
        let at = as_of(&app);
        let x = |i: i64| json!({"all": [{"country": {"in": ["Germany"]}}, {"bought": {"category": "garden"}},
                                        {"signup_age": {"max_days": 1000 + i}}]});
        let x_not_t = |i: i64| json!({"all": [{"country": {"in": ["Germany"]}}, {"bought": {"category": "garden"}},
                                        {"signup_age": {"max_days": 1000 + i}},
                                        {"not": {"viewed": {"product": "RARE"}}}]});
        let trials = 10;
        let mut correct = 0;
        let mut exact_correct = 0;
        let mut i = 0;
        for world_has_t in [true, false] {
            if !world_has_t {
                // T's garden order disappears: T is no longer in X.
                app.exec("DELETE FROM order_lines WHERE order_id IN (SELECT id FROM orders WHERE external_id = 'O00')").await;
                app.exec("DELETE FROM orders WHERE external_id = 'O00'").await;
            }
            for _ in 0..trials {
                let mut diffs = Vec::new();
                loop {
                    i += 1;
                    let a = query(&app, "marketing_analyst", "marketing_analytics",
                        json!({"definition": x(i), "as_of": at})).await;
                    if a.status() == 429 {
                        break;
                    }
                    let a: Value = a.json().await.unwrap();
                    let b = query(&app, "marketing_analyst", "marketing_analytics",
                        json!({"definition": x_not_t(i), "as_of": at})).await;
                    if b.status() == 429 {
                        break;
                    }
                    let b: Value = b.json().await.unwrap();
                    match (a["size"]["value"].as_i64(), b["size"]["value"].as_i64()) {
                        (Some(a), Some(b)) => diffs.push(a - b),
                        _ => diffs.push(0),
                    }
                }
                assert_eq!(diffs.len(), 5, "the budget pays for ten questions");
                let mean = diffs.iter().sum::<i64>() as f64 / diffs.len() as f64;
                if (mean > 0.5) == world_has_t {
                    correct += 1;
                }
                let ea = exact_size(&app, x(0)).await["value"].as_i64().unwrap_or(0);
                let eb = exact_size(&app, x_not_t(0)).await["value"].as_i64().unwrap_or(0);
                if (ea - eb == 1) == world_has_t {
                    exact_correct += 1;
                }
                app.clock.advance_secs(86_400);
            }
        }
        let accuracy = f64::from(correct) / f64::from(2 * trials);
        eprintln!("differencing attack accuracy {accuracy:.2} (bound 0.73), exact {exact_correct}/{}", 2 * trials);
        assert!(accuracy <= 0.85, "the attacker learned too much: {accuracy}");
        assert_eq!(exact_correct, 2 * trials, "the attack itself works on exact numbers");
    }
);

both_backends!(
    rfm_and_clusters_on_known_data,
    config: |c: &mut custodian::config::Config| {
        // Noise negligible for counts (scale 0.08 for RFM cells, 0.14 for
        // clusters): the known answers show through.
        c.privacy.epsilon_per_query = 50.0;
        c.privacy.budget_epsilon = 100.0;
    },
    async |app: TestApp| {
        seed(&app).await;
        // Exact numbers (the CRM reads members): the known averages.
        let r = app
            .as_role(Method::GET, &format!("/v1/segments/builtin/rfm?as_of={}", as_of(&app)),
                     "crm_service", "email_marketing")
            .send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["privacy"]["mechanism"], "exact");
        let cells = body["cells"].as_array().unwrap().clone();
        assert_eq!(cells.len(), 11);
        let cell = |name: &str| cells.iter().find(|c| c["label"] == name).unwrap().clone();
        // All 40 customers order once; the 25 recent buyers (garden, 50.00)
        // score r = 2, m = 2 (fm = 1): hibernating; the 15 older ones lost.
        let h = cell("hibernating");
        assert_eq!(h["customers"]["value"], 15);
        let avg = |c: &Value, n: &str| c["averages"].as_array().unwrap().iter().find(|a| a["name"] == n).unwrap()["value"].as_f64().unwrap();
        assert_eq!(avg(&h, "avg_recency_days"), 10.0);
        assert_eq!(avg(&h, "avg_monetary"), 50.0);
        let l = cell("lost");
        assert_eq!(l["customers"]["value"], 15);
        assert_eq!(avg(&l, "avg_recency_days"), 200.0);
        assert_eq!(avg(&l, "avg_frequency"), 1.0);
        assert_eq!(avg(&l, "avg_monetary"), 10.0);
        assert_eq!(cell("champions")["customers"], json!({"suppressed": true}));
        // Analysts get the same cells with noise (negligible at this epsilon).
        let body: Value = app
            .as_role(Method::GET, &format!("/v1/segments/builtin/rfm?as_of={}", as_of(&app)),
                     "marketing_analyst", "marketing_analytics")
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(body["privacy"]["mechanism"], "discrete_laplace");
        let h = body["cells"].as_array().unwrap().iter().find(|c| c["label"] == "hibernating").unwrap().clone();
        assert_eq!(h["customers"]["value"], 15);
        assert!(h["customers"]["ci95"].is_array());

        let r = app
            .as_role(Method::GET, &format!("/v1/profiles/clusters?k=2&as_of={}", as_of(&app)),
                     "marketing_analyst", "marketing_analytics")
            .send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let c = body["clusters"].as_array().unwrap();
        assert_eq!(c.len(), 2);
        let near = |v: &Value, want: i64| (v.as_i64().unwrap() - want).abs() <= 1;
        assert!(near(&c[0]["size"]["value"], 15), "{body}");
        assert_eq!(c[0]["top_categories"][0], "garden");
        assert!(c[0]["label"].as_str().unwrap().contains("buyers of garden"));
        assert!(near(&c[1]["size"]["value"], 15), "{body}");
        assert_eq!(c[1]["top_categories"][0], "kitchen");
        let text = body.to_string();
        assert!(!text.contains("\"C0"), "no customer ids in profiles");
        // Deterministic: the same data gives the same clusters (and the
        // repeated question is the stored answer).
        let again: Value = app
            .as_role(Method::GET, &format!("/v1/profiles/clusters?k=2&as_of={}", as_of(&app)),
                     "marketing_analyst", "marketing_analytics")
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(again["clusters"], body["clusters"]);
        // A segment by profile cluster.
        let size = exact_size(&app, json!({"profile_cluster": {"k": 2, "cluster": 0}})).await;
        assert_eq!(size["value"], 15);
        let r = app
            .as_role(Method::GET, "/v1/profiles/clusters?k=11", "marketing_analyst", "marketing_analytics")
            .send().await.unwrap();
        assert_eq!(r.status(), 422);
    }
);

both_backends!(hostile_and_invalid_definitions, async |app: TestApp| {
    seed(&app).await;
    let deep = format!(
        "{{\"definition\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let started = std::time::Instant::now();
    let r = app
        .as_role(
            Method::POST,
            "/v1/segments/query",
            "marketing_analyst",
            "marketing_analytics",
        )
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_input");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("$.definition[0][0]"));

    let cases = [
        (json!({"definition": {"all": []}}), "$.definition.all"),
        (
            json!({"definition": {"recency": {"max_days": 5000}}}),
            "$.definition.recency.max_days",
        ),
        (
            json!({"definition": {"all": [{"country": {"in": ["DE"]}}, {"frequency": {"min": "x'--"}}]}}),
            "$.definition.all[1].frequency.min",
        ),
        (
            json!({"definition": {"country": {"in": ["DE"], "1; DROP TABLE customers": "x"}}}),
            "$.definition.country.?",
        ),
        (json!({"definition": {"select": "*"}}), "$.definition"),
        (
            json!({"definition": {"country": {"in": ["DE"]}}, "distributions": ["email"]}),
            "$.distributions[0]",
        ),
        (
            json!({"definition": {"in_segment": {"id": "seg_00000000000000000000000000000000"}}}),
            "$",
        ),
    ];
    for (body, path) in cases {
        let r = query(
            &app,
            "marketing_analyst",
            "marketing_analytics",
            body.clone(),
        )
        .await;
        assert_eq!(r.status(), 422, "{body}");
        let e: Value = r.json().await.unwrap();
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains(path), "{msg} should name {path}");
        assert!(
            !msg.contains("DROP") && !msg.contains("x'--") && !msg.contains("5000"),
            "{msg}"
        );
    }
    // SQL-looking values match literally: nobody is called that.
    let evil = json!({"definition": {"country": {"in": ["Germany' OR '1'='1"]}}});
    let r = query(&app, "crm_service", "email_marketing", evil).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["size"], json!({"suppressed": true}));
    // Not JSON at all.
    let r = app
        .as_role(
            Method::POST,
            "/v1/segments/query",
            "marketing_analyst",
            "marketing_analytics",
        )
        .header("content-type", "application/json")
        .body("{\"definition\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // No segment rights: 403, audited; a purpose the role may not use: 403.
    let r = query(
        &app,
        "support_agent",
        "customer_support",
        json!({"definition": germany_garden()}),
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = query(
        &app,
        "marketing_analyst",
        "email_marketing",
        json!({"definition": germany_garden()}),
    )
    .await;
    assert_eq!(r.status(), 403);
    let rows = app.audit_rows().await;
    assert!(
        rows.iter().any(
            |(actor, action, decision, status, _)| actor == "support_agent-user"
                && action == "segment.read"
                && decision == "deny"
                && *status == 403
        ),
        "{rows:?}"
    );
});

both_backends!(
    query_floods_are_rate_limited,
    config: |c: &mut custodian::config::Config| {
        c.server.rate_limit_per_second = 1;
        c.server.rate_limit_burst = 3;
    },
    async |app: TestApp| {
        seed(&app).await;
        let mut limited = None;
        for _ in 0..10 {
            let r = query(&app, "crm_service", "email_marketing", json!({"definition": germany_garden()})).await;
            if r.status() == 429 {
                limited = Some(r);
                break;
            }
        }
        let r = limited.expect("a flood is rate limited");
        assert!(r.headers().contains_key("retry-after"));
        assert_eq!(error_code(r).await, "rate_limited");
    }
);

both_backends!(saved_segments_lifecycle, async |app: TestApp| {
    seed(&app).await;
    let r = app
        .as_role(
            Method::POST,
            "/v1/segments",
            "marketing_analyst",
            "marketing_analytics",
        )
        .json(&json!({"name": "German gardeners", "definition": germany_garden()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let saved: Value = r.json().await.unwrap();
    let id = saved["id"].as_str().unwrap().to_owned();
    assert_eq!(saved["created_by"], "marketing_analyst-user");
    // A segment built on the saved one.
    let r = app
        .as_role(
            Method::POST,
            "/v1/segments",
            "marketing_analyst",
            "marketing_analytics",
        )
        .json(
            &json!({"name": "Gardeners, not rare", "definition": {"all": [
            {"in_segment": {"id": id}}, {"not": {"viewed": {"product": "RARE"}}}]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let derived: Value = r.json().await.unwrap();
    let derived_id = derived["id"].as_str().unwrap().to_owned();
    let list: Value = app
        .as_role(
            Method::GET,
            "/v1/segments",
            "marketing_analyst",
            "marketing_analytics",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["segments"].as_array().unwrap().len(), 2);
    let one: Value = app
        .as_role(
            Method::GET,
            &format!("/v1/segments/{id}"),
            "marketing_analyst",
            "marketing_analytics",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["name"], "German gardeners");
    // The CRM lists members of the derived segment (14: C01-C14).
    let r = app
        .as_role(
            Method::GET,
            &format!("/v1/segments/{derived_id}/members?limit=100"),
            "crm_service",
            "email_marketing",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["size"]["value"], 14);
    assert_eq!(m["members"]["pseudonyms"].as_array().unwrap().len(), 14);
    let r = app
        .as_role(
            Method::GET,
            &format!("/v1/segments/{id}/members"),
            "marketing_analyst",
            "marketing_analytics",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Referenced segments cannot be deleted before their dependants.
    let del = |sid: String| {
        app.as_role(
            Method::DELETE,
            &format!("/v1/segments/{sid}"),
            "marketing_analyst",
            "marketing_analytics",
        )
        .send()
    };
    assert_eq!(del(id.clone()).await.unwrap().status(), 409);
    assert_eq!(del(derived_id.clone()).await.unwrap().status(), 204);
    assert_eq!(del(id.clone()).await.unwrap().status(), 204);
    let r = app
        .as_role(
            Method::GET,
            &format!("/v1/segments/{id}"),
            "marketing_analyst",
            "marketing_analytics",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .as_role(
            Method::GET,
            "/v1/segments/not-an-id",
            "marketing_analyst",
            "marketing_analytics",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
});

both_backends!(
    the_feature_table_trails_writes_by_at_most_the_staleness,
    config: |c: &mut custodian::config::Config| c.analytics.feature_staleness_ms = 60_000,
    async |app: TestApp| {
        let analytics = &app.state.analytics;
        let db = &app.state.db;
        let first = analytics.ensure_fresh(db, 0).await.unwrap();
        // A write moves the sources: within the staleness the table (and
        // the version sticky answers are keyed on) stays.
        sqlx::query(
            "INSERT INTO products (sku, name, category, price_cents, created_at) \
             VALUES ('STALE-1', 'Vase', 'home_decor', 900, 0)",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let second = analytics.ensure_fresh(db, 0).await.unwrap();
        assert_eq!(second.id, first.id);
        // Consent is never stale: a grant moves the version at once.
        assert_eq!(app.create_customer(json!({"external_id": "ST-1"})).await.status(), 201);
        let r = app
            .as_role(Method::POST, "/v1/consents/ST-1", "ingest_service", "data_ingestion")
            .json(&json!({"changes": [{"purpose": "email_marketing", "granted": true, "source": "web_form"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let third = analytics.ensure_fresh(db, 0).await.unwrap();
        assert_ne!(third.id, second.id);
        assert_eq!(third.features_version, second.features_version, "no rebuild");
        // Without staleness (as every other test runs), a write rebuilds.
        let fresh = custodian::analytics::Analytics::new(std::time::Duration::ZERO);
        let rebuilt = fresh.ensure_fresh(db, 0).await.unwrap();
        assert_ne!(rebuilt.features_version, third.features_version);
    }
);
