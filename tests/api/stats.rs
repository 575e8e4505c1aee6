//! The console's aggregation endpoints on both backends: counts from the
//! trail's hourly summaries agree with the events, retention takes its
//! events out of them, consent rates follow the ledger and suppress points
//! resting on fewer than k customers, bad parameters are 400s.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::TestApp;
use custodian::audit::{self, Signer};

const OFFICER: &str = "compliance_officer";
const COMPLIANCE: &str = "compliance_audit";

async fn officer_get(app: &TestApp, path: &str) -> Value {
    let r = app
        .as_role(Method::GET, path, OFFICER, COMPLIANCE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

async fn support_read(app: &TestApp, id: &str, purpose: &str) -> u16 {
    app.as_role(
        Method::GET,
        &format!("/v1/customers/{id}"),
        "support_agent",
        purpose,
    )
    .send()
    .await
    .unwrap()
    .status()
    .as_u16()
}

fn customer(id: &str) -> Value {
    json!({"external_id": id, "email": format!("{id}@example.com"), "name": "Test Person", "country": "FR"})
}

/// Known traffic: 1 create, 3 reads, 2 policy refusals, 1 bad token.
async fn traffic(app: &TestApp) {
    assert_eq!(app.create_customer(customer("C-1")).await.status(), 201);
    for _ in 0..3 {
        assert_eq!(support_read(app, "C-1", "customer_support").await, 200);
    }
    for _ in 0..2 {
        assert_eq!(support_read(app, "C-1", "marketing_analytics").await, 403);
    }
    let r = app
        .client
        .get(app.url("/v1/customers/C-1"))
        .bearer_auth("garbage")
        .header("x-purpose", "customer_support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(app.state.audit.index_now().await);
}

both_backends!(trail_stats_count_the_events, async |app: TestApp| {
    traffic(&app).await;
    let d = officer_get(&app, "/v1/audit/stats/decisions?days=1&bucket=hour").await;
    assert_eq!(d["bucket"], "hour");
    assert_eq!(d["total_allow"], 4, "{d}");
    assert_eq!(d["total_deny"], 3, "{d}");
    let points = d["points"].as_array().unwrap();
    assert!(points.len() == 24 || points.len() == 25, "{}", points.len());
    let busy: Vec<&Value> = points.iter().filter(|p| p["allow"] != 0).collect();
    assert_eq!(busy.len(), 1);
    assert_eq!(busy[0]["deny"], 3);

    let d = officer_get(&app, "/v1/audit/stats/denials").await;
    let rows = d["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{d}");
    assert_eq!(rows[0]["actor"], "support_agent-user");
    assert_eq!(rows[0]["count"], 2);
    assert!(rows[0]["reason"].as_str().unwrap().starts_with("policy:"));
    assert_eq!(rows[1]["actor"], "anonymous");
    assert!(rows[1]["reason"].as_str().unwrap().starts_with("auth:"));
    let d = officer_get(&app, "/v1/audit/stats/denials?limit=1&actor=anonymous").await;
    assert_eq!(d["rows"].as_array().unwrap().len(), 1);
    assert_eq!(d["rows"][0]["actor"], "anonymous");

    let d = officer_get(&app, "/v1/audit/stats/purposes").await;
    let by: std::collections::HashMap<String, (i64, i64)> = d["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["purpose"].as_str().unwrap_or("").to_owned(),
                (r["allow"].as_i64().unwrap(), r["deny"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(by["customer_support"], (3, 0), "{d}");
    assert_eq!(by["data_ingestion"], (1, 0), "{d}");
    // Filters narrow the counts; a range before the traffic holds none.
    let d = officer_get(
        &app,
        "/v1/audit/stats/decisions?purpose=customer_support&bucket=hour&days=1",
    )
    .await;
    assert_eq!(
        (d["total_allow"].as_i64(), d["total_deny"].as_i64()),
        (Some(3), Some(0))
    );
    let d = officer_get(
        &app,
        "/v1/audit/stats/decisions?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(d["points"].as_array().unwrap().len(), 1);
    assert_eq!(d["total_allow"], 0);
    // Every chart read is itself audited.
    assert!(app
        .audit_rows()
        .await
        .iter()
        .any(
            |(actor, action, decision, ..)| actor == "compliance_officer-user"
                && action == "audit.read"
                && decision == "allow"
        ));
});

both_backends!(
    retention_takes_events_out_of_the_stats,
    async |app: TestApp| {
        traffic(&app).await;
        app.clock.advance_secs(10 * 86_400);
        let cutoff = app.state.clock.now_micros() - 86_400_000_000;
        for _ in 0..2 {
            assert_eq!(support_read(&app, "C-1", "customer_support").await, 200);
        }
        assert!(app.state.audit.index_now().await);
        let signer = Signer::ephemeral().unwrap();
        let report = audit::prune(&app.state.db, &signer, cutoff, app.state.clock.now_micros())
            .await
            .unwrap();
        assert_eq!(report.removed, 7);
        let d = officer_get(&app, "/v1/audit/stats/decisions?days=60").await;
        assert_eq!(d["total_allow"], 2, "{d}");
        assert_eq!(d["total_deny"], 0, "{d}");
    }
);

both_backends!(
    consent_rates_follow_the_ledger_with_k,
    async |app: TestApp| {
        for i in 0..12 {
            assert_eq!(
                app.create_customer(customer(&format!("K-{i}")))
                    .await
                    .status(),
                201
            );
        }
        let record = |id: String, granted: bool| {
            let app = &app;
            async move {
                let r = app
                .as_role(Method::POST, &format!("/v1/consents/{id}"), "ingest_service", "data_ingestion")
                .json(&json!({"changes": [{"purpose": "email_marketing", "granted": granted, "source": "web_form"}]}))
                .send()
                .await
                .unwrap();
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            }
        };
        for i in 0..11 {
            record(format!("K-{i}"), true).await;
        }
        let rates = officer_get(&app, "/v1/consents/rates?days=2").await;
        assert_eq!(rates["k"], 10);
        let email = |r: &Value| {
            r["purposes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["purpose"] == "email_marketing")
                .cloned()
                .unwrap()
        };
        let last = email(&rates)["points"]
            .as_array()
            .unwrap()
            .last()
            .cloned()
            .unwrap();
        assert_eq!(last["suppressed"], false, "{last}");
        assert_eq!(last["customers"], 12);
        assert_eq!(last["granted"], 11);
        assert!((last["rate"].as_f64().unwrap() - 11.0 / 12.0).abs() < 1e-9);
        // Purposes that need no consent are not charted.
        assert!(rates["purposes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["purpose"] != "customer_support"));
        // Two withdrawals leave 9 grants: fewer than k, so no number leaves.
        app.clock.advance_secs(1);
        for i in 0..2 {
            record(format!("K-{i}"), false).await;
        }
        let rates = officer_get(&app, "/v1/consents/rates?days=2").await;
        let last = email(&rates)["points"]
            .as_array()
            .unwrap()
            .last()
            .cloned()
            .unwrap();
        assert_eq!(last["suppressed"], true, "{last}");
        assert!(
            last.get("granted").is_none()
                && last.get("rate").is_none()
                && last.get("customers").is_none()
        );
        // The day before anyone signed up is suppressed too (no customers).
        let first = email(&rates)["points"].as_array().unwrap()[0].clone();
        assert_eq!(first["suppressed"], true);
    }
);

// Exact consent rates are for compliance roles only: a role that may read
// consents (support, for one customer at a time) is refused the totals,
// and so is a role granted the rates under a purpose that needs consent
// (where it could not read every customer's state one by one).
both_backends!(
    consent_rates_are_for_compliance_roles_only,
    async |app: TestApp| {
        for (role, purpose) in [
            ("support_agent", "customer_support"),
            ("crm_service", "email_marketing"),
            ("marketing_analyst", "marketing_analytics"),
        ] {
            let r = app
                .as_role(Method::GET, "/v1/consents/rates", role, purpose)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{role}");
        }
        // A policy that grants the rates under a consent-based purpose: the
        // route still refuses, since crm may not read everyone's consent.
        let mut csv = app
            .state
            .authorizer
            .rules()
            .iter()
            .map(|r| r.to_csv_line())
            .collect::<Vec<_>>();
        csv.push("p, crm_service, consent, rates, email_marketing".to_owned());
        let r = app
            .as_role(Method::POST, "/v1/admin/policies", "dpo", COMPLIANCE)
            .json(&json!({"csv": csv.join("\n")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let r = app
            .as_role(
                Method::GET,
                "/v1/consents/rates",
                "crm_service",
                "email_marketing",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = app
            .as_role(Method::GET, "/v1/consents/rates", OFFICER, COMPLIANCE)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let rows = app.audit_rows().await;
        assert!(rows.iter().any(|(actor, action, decision, status, _)| actor
            == "compliance_officer-user"
            && action == "consent.rates"
            && decision == "allow"
            && *status == 200));
    }
);

both_backends!(chart_parameters_are_checked, async |app: TestApp| {
    for path in [
        "/v1/audit/stats/decisions?bucket=minute",
        "/v1/audit/stats/decisions?days=0",
        "/v1/audit/stats/decisions?days=400",
        "/v1/audit/stats/decisions?days=100&bucket=hour",
        "/v1/audit/stats/decisions?days=3&from=2026-01-01T00:00:00Z",
        "/v1/audit/stats/decisions?from=yesterday",
        "/v1/audit/stats/decisions?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "/v1/audit/stats/decisions?limit=3",
        "/v1/audit/stats/decisions?nope=1",
        "/v1/audit/stats/denials?limit=0",
        "/v1/consents/rates?actor=x",
    ] {
        let r = app
            .as_role(Method::GET, path, OFFICER, COMPLIANCE)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_query", "{path}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("yesterday") && !message.contains("minute"),
            "{message}"
        );
    }
});
