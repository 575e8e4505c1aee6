use crate::both_backends;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn customer(app: &TestApp, id: &str) {
    let r = app
        .create_customer(json!({"external_id": id, "email": format!("{id}@example.com"), "name": "Pat Doe", "country": "France"}))
        .await;
    assert_eq!(r.status(), 201);
}

async fn record(
    app: &TestApp,
    role: &str,
    purpose: &str,
    id: &str,
    changes: Value,
) -> reqwest::Response {
    app.as_role(Method::POST, &format!("/v1/consents/{id}"), role, purpose)
        .json(&json!({ "changes": changes }))
        .send()
        .await
        .unwrap()
}

async fn crm_read(app: &TestApp, id: &str) -> reqwest::Response {
    app.as_role(
        Method::GET,
        &format!("/v1/customers/{id}"),
        "crm_service",
        "email_marketing",
    )
    .send()
    .await
    .unwrap()
}

async fn history_len(app: &TestApp, id: &str) -> usize {
    let r = app
        .as_role(
            Method::GET,
            &format!("/v1/consents/{id}"),
            "compliance_officer",
            "compliance_audit",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["history"].as_array().unwrap().len()
}

both_backends!(
    consent_purpose_needs_consent_and_withdrawal_is_immediate,
    async |app: TestApp| {
        customer(&app, "K1").await;
        let r = crm_read(&app, "K1").await;
        // Without consent the customer is not there for this purpose.
        assert_eq!(r.status(), 404);
        assert_eq!(error_code(r).await, "not_found");

        let r = record(&app, "ingest_service", "data_ingestion", "K1",
        json!([{"purpose": "email_marketing", "granted": true, "source": "web_form", "evidence": "newsletter text v3"}])).await;
        assert_eq!(r.status(), 201);
        let receipts: Value = r.json().await.unwrap();
        let receipt = &receipts["receipts"][0];
        assert!(receipt["customer_pseudonym"]
            .as_str()
            .unwrap()
            .starts_with("ps_"));
        let expected = hex_sha256("newsletter text v3");
        assert_eq!(receipt["evidence_sha256"], expected);

        let r = crm_read(&app, "K1").await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["email"], "K1@example.com");

        // The customer withdraws by phone; the very next request is refused.
        let r = record(
            &app,
            "support_agent",
            "customer_support",
            "K1",
            json!([{"purpose": "email_marketing", "granted": false, "source": "support_call"}]),
        )
        .await;
        assert_eq!(r.status(), 201);
        let r = crm_read(&app, "K1").await;
        // Without consent the customer is not there for this purpose.
        assert_eq!(r.status(), 404);
        assert_eq!(error_code(r).await, "not_found");

        // The grant's receipt is still in the ledger but no longer current.
        let id = receipt["receipt_id"].as_str().unwrap();
        let r = app
            .as_role(
                Method::GET,
                &format!("/v1/consents/receipts/{id}"),
                "compliance_officer",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let check: Value = r.json().await.unwrap();
        assert_eq!(check["current"], false);
        assert_eq!(check["event"]["evidence_sha256"], expected);

        let rows = app.audit_rows().await;
        assert!(
            rows.iter()
                .any(|r| r.1 == "customer.read" && r.2 == "deny" && r.4.starts_with("consent:")),
            "{rows:?}"
        );
    }
);

fn hex_sha256(s: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

both_backends!(
    contract_purposes_do_not_demand_consent,
    async |app: TestApp| {
        customer(&app, "K2").await;
        let r = app
            .as_role(
                Method::GET,
                "/v1/customers/K2",
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
);

both_backends!(
    roles_taking_withdrawals_cannot_grant,
    async |app: TestApp| {
        customer(&app, "K3").await;
        let r = record(
            &app,
            "support_agent",
            "customer_support",
            "K3",
            json!([{"purpose": "email_marketing", "granted": true, "source": "support_call"}]),
        )
        .await;
        assert_eq!(r.status(), 403);
        assert_eq!(history_len(&app, "K3").await, 0);
    }
);

both_backends!(bad_batches_are_refused_whole, async |app: TestApp| {
    customer(&app, "K4").await;
    let ok = json!({"purpose": "email_marketing", "granted": true, "source": "web_form"});
    let cases = [
        json!([ok, {"purpose": "no_such_purpose", "granted": true, "source": "web_form"}]),
        json!([ok, {"purpose": "customer_support", "granted": true, "source": "web_form"}]),
        json!([ok, {"purpose": "personalization", "granted": true, "source": "carrier_pigeon"}]),
        json!([ok, {"purpose": "personalization", "granted": true, "source": "web_form", "occurred_at": "2999-01-01T00:00:00Z"}]),
        json!([ok, {"purpose": "personalization", "granted": "yes", "source": "web_form"}]),
        json!([]),
    ];
    for (i, changes) in cases.into_iter().enumerate() {
        let r = record(&app, "ingest_service", "data_ingestion", "K4", changes).await;
        assert_eq!(r.status(), 422, "case {i}");
    }
    assert_eq!(history_len(&app, "K4").await, 0, "nothing half-recorded");
    let r = record(
        &app,
        "ingest_service",
        "data_ingestion",
        "nobody",
        json!([ok]),
    )
    .await;
    assert_eq!(r.status(), 404);
});

both_backends!(
    lists_leave_out_non_consenting_customers_and_say_how_many,
    async |app: TestApp| {
        for id in ["L1", "L2", "L3"] {
            customer(&app, id).await;
        }
        let r = record(
            &app,
            "ingest_service",
            "data_ingestion",
            "L2",
            json!([{"purpose": "email_marketing", "granted": true, "source": "web_form"}]),
        )
        .await;
        assert_eq!(r.status(), 201);
        let r = app
            .as_role(
                Method::GET,
                "/v1/customers?limit=10",
                "crm_service",
                "email_marketing",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        let customers = page["customers"].as_array().unwrap();
        assert_eq!(customers.len(), 1, "{page}");
        assert_eq!(customers[0]["email"], "L2@example.com");
        // crm_service may read the ledger for email_marketing: it sees the count.
        assert_eq!(page["left_out_without_consent"], 2);
    }
);

both_backends!(
    list_pages_are_full_of_consenting_customers_whatever_their_size,
    async |app: TestApp| {
        // Consenting customers sit between non-consenting ones: a page cut
        // before consent was applied would come back short or empty.
        for id in ["P1", "P2", "P3", "P4", "P5", "P6"] {
            customer(&app, id).await;
        }
        for id in ["P2", "P5"] {
            let grant =
                json!([{"purpose": "email_marketing", "granted": true, "source": "web_form"}]);
            let r = record(&app, "ingest_service", "data_ingestion", id, grant).await;
            assert_eq!(r.status(), 201);
        }
        let page = |after: Option<String>| {
            let app = &app;
            async move {
                let path = match after {
                    Some(c) => format!("/v1/customers?limit=1&after={c}"),
                    None => "/v1/customers?limit=1".to_owned(),
                };
                let r = app
                    .as_role(Method::GET, &path, "crm_service", "email_marketing")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()
            }
        };
        let first = page(None).await;
        assert_eq!(first["customers"].as_array().unwrap().len(), 1, "{first}");
        assert_eq!(first["customers"][0]["email"], "P2@example.com", "{first}");
        // P1 lay in the first page's range and was left out.
        assert_eq!(first["left_out_without_consent"], 1, "{first}");
        let second = page(first["next_cursor"].as_str().map(str::to_owned)).await;
        assert_eq!(
            second["customers"][0]["email"], "P5@example.com",
            "{second}"
        );
        assert_eq!(second["left_out_without_consent"], 2, "{second}");
        // The last consenting customer was on a full page: the next one is
        // empty, and counts the one non-consenting customer after it.
        let third = page(second["next_cursor"].as_str().map(str::to_owned)).await;
        assert_eq!(third["customers"].as_array().unwrap().len(), 0, "{third}");
        assert_eq!(third["left_out_without_consent"], 1, "{third}");
        assert!(third.get("next_cursor").is_none(), "{third}");
    }
);

both_backends!(
    the_ledger_has_no_route_that_alters_history,
    async |app: TestApp| {
        let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            if path.starts_with("/v1/consents") {
                for method in ["put", "patch", "delete"] {
                    assert!(item.get(method).is_none(), "{method} {path}");
                }
            }
        }
        customer(&app, "K5").await;
        let r = app
            .as_role(Method::DELETE, "/v1/consents/K5", "dpo", "compliance_audit")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }
);

both_backends!(
    purposes_are_listed_with_their_legal_basis,
    async |app: TestApp| {
        let r = app
            .client
            .get(app.url("/v1/purposes"))
            .bearer_auth(app.token("svc", &["crm_service"]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let list: Vec<Value> = r.json().await.unwrap();
        let find = |id: &str| list.iter().find(|p| p["id"] == id).cloned().unwrap();
        assert_eq!(find("email_marketing")["legal_basis"], "consent");
        assert_eq!(find("email_marketing")["consent_required"], true);
        assert_eq!(find("order_fulfilment")["legal_basis"], "contract");
        assert_eq!(
            find("fraud_prevention")["legal_basis"],
            "legitimate_interest"
        );
        let r = app.get("/v1/purposes").await;
        assert_eq!(r.status(), 401);
    }
);

both_backends!(
    state_follows_the_latest_event_not_the_latest_recorded,
    async |app: TestApp| {
        customer(&app, "K6").await;
        let r = record(&app, "ingest_service", "data_ingestion", "K6",
        json!([{"purpose": "email_marketing", "granted": false, "source": "web_form", "occurred_at": "2026-03-01T00:00:00Z"}])).await;
        assert_eq!(r.status(), 201);
        // A grant that happened earlier but arrives later does not override the withdrawal.
        let r = record(&app, "ingest_service", "data_ingestion", "K6",
        json!([{"purpose": "email_marketing", "granted": true, "source": "import", "occurred_at": "2026-01-01T00:00:00Z"}])).await;
        assert_eq!(r.status(), 201);
        assert_eq!(crm_read(&app, "K6").await.status(), 404);
    }
);

both_backends!(
    the_database_refuses_to_rewrite_a_consent_event,
    async |app: TestApp| {
        customer(&app, "K7").await;
        let r = record(
            &app,
            "ingest_service",
            "data_ingestion",
            "K7",
            json!([{"purpose": "email_marketing", "granted": false, "source": "web_form"}]),
        )
        .await;
        assert_eq!(r.status(), 201);
        let edited = sqlx::query("UPDATE consent_events SET granted = 1")
            .execute(&app.state.db.pool)
            .await;
        assert!(edited.is_err(), "append-only trigger must refuse updates");
        assert_eq!(crm_read(&app, "K7").await.status(), 404);
    }
);

both_backends!(
    consent_is_not_recorded_without_its_audit_event,
    async |app: TestApp| {
        customer(&app, "K8").await;
        app.refuse_audit_inserts().await;
        let r = record(
            &app,
            "ingest_service",
            "data_ingestion",
            "K8",
            json!([{"purpose": "email_marketing", "granted": true, "source": "web_form"}]),
        )
        .await;
        assert_eq!(r.status(), 503);
        app.allow_audit_inserts().await;
        // The event is recorded before the write commits: nothing landed.
        assert_eq!(history_len(&app, "K8").await, 0);
        assert_eq!(crm_read(&app, "K8").await.status(), 404);
    }
);

/// Customers the consent predicate admits for `purpose`, by external id.
async fn admitted(app: &TestApp, purpose: &str) -> Vec<String> {
    use custodian::pipeline::consent::ConsentPredicate;
    let purpose = app.state.purposes.parse(purpose).unwrap();
    let predicate = ConsentPredicate::for_purpose(&app.state.purposes, &purpose);
    let sql = format!(
        "SELECT c.external_id FROM customers c WHERE {} ORDER BY c.external_id",
        predicate.sql("c.id", 1)
    );
    sqlx::query_scalar(&sql)
        .bind(predicate.bind_value())
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap()
}

both_backends!(
    the_consent_predicate_admits_exactly_the_current_consenters,
    async |app: TestApp| {
        for id in ["P1", "P2", "P3"] {
            customer(&app, id).await;
        }
        let grant =
            |g: bool| json!([{"purpose": "email_marketing", "granted": g, "source": "web_form"}]);
        for id in ["P1", "P2"] {
            let r = record(&app, "ingest_service", "data_ingestion", id, grant(true)).await;
            assert_eq!(r.status(), 201);
        }
        assert_eq!(admitted(&app, "email_marketing").await, ["P1", "P2"]);
        // A withdrawal takes effect in the very next query.
        let r = record(&app, "crm_service", "email_marketing", "P2", grant(false)).await;
        assert_eq!(r.status(), 201);
        assert_eq!(admitted(&app, "email_marketing").await, ["P1"]);
        // The same answer as the set look-up the row routes use.
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM customers ORDER BY id")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
        let set = custodian::pipeline::consent::consenting(&app.state.db, "email_marketing", &ids)
            .await
            .unwrap();
        assert_eq!(set.len(), 1);
        // A purpose whose legal basis needs no consent admits everyone.
        assert_eq!(admitted(&app, "customer_support").await, ["P1", "P2", "P3"]);
    }
);
