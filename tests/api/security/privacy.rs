//! API3 property-level exposure and API6: what a pseudonym-only role can
//! learn from responses. Cursors are opaque and bound to purpose and
//! principal (finding 9), no internal id appears in any response.

use super::*;
use crate::both_backends;
use crate::helpers::*;
use std::collections::HashSet;

async fn internal_ids(app: &TestApp) -> HashSet<String> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM customers")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
    ids.into_iter().map(|i| i.to_string()).collect()
}

/// Every string and number in `v`, except the named count fields.
fn scalars(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k != "left_out_without_consent" {
                    scalars(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| scalars(v, out)),
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        _ => {}
    }
}

async fn grant(app: &TestApp, customer: &str, purpose: &str) {
    let r = app
        .as_role(
            reqwest::Method::POST,
            &format!("/v1/consents/{customer}"),
            "ingest_service",
            "data_ingestion",
        )
        .json(&json!({"changes": [{"purpose": purpose, "granted": true, "source": "web_form"}]}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

both_backends!(
    cursors_are_opaque_and_bound_to_purpose_and_principal,
    async |app: TestApp| {
        for i in 0..4 {
            let id = format!("P-{i}");
            assert_eq!(
                app.create_customer(json!({"external_id": id, "country": "DE"}))
                    .await
                    .status(),
                201
            );
            grant(&app, &id, "marketing_analytics").await;
        }
        let ids = internal_ids(&app).await;
        let analyst = app.token("ana", &["marketing_analyst"]);
        let page = |token: String, after: Option<String>, purpose: &'static str| {
            let mut url = "/v1/customers?limit=1".to_owned();
            if let Some(a) = after {
                url.push_str(&format!("&after={a}"));
            }
            app.client
                .get(app.url(&url))
                .bearer_auth(token)
                .header("x-purpose", purpose)
                .send()
        };
        // Page through everything one by one: nothing seen is an internal id.
        let mut after = None;
        let mut seen = 0;
        let mut first_cursor = None;
        loop {
            let r = page(analyst.clone(), after.clone(), "marketing_analytics")
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            let mut values = Vec::new();
            scalars(&body, &mut values);
            for v in &values {
                assert!(!ids.contains(v), "internal id {v} in {body}");
            }
            seen += body["customers"].as_array().unwrap().len();
            match body["next_cursor"].as_str() {
                Some(c) => {
                    assert!(c.parse::<i64>().is_err(), "cursor is a number: {c}");
                    first_cursor.get_or_insert_with(|| c.to_owned());
                    after = Some(c.to_owned());
                }
                None => break,
            }
        }
        assert_eq!(seen, 4);
        let cursor = first_cursor.unwrap();
        // Replayed by another principal, or for another purpose, or edited, or
        // a bare id: 400, audited, nothing returned.
        let other = app.token("bob", &["marketing_analyst"]);
        let support = app.token("ana", &["marketing_analyst", "support_agent"]);
        let mut edited = cursor.clone().into_bytes();
        edited[10] = if edited[10] == b'A' { b'B' } else { b'A' };
        let edited = String::from_utf8(edited).unwrap();
        let attempts = [
            (other, cursor.clone(), "marketing_analytics"),
            (support, cursor.clone(), "customer_support"),
            (analyst.clone(), edited, "marketing_analytics"),
            (analyst.clone(), "1".to_owned(), "marketing_analytics"),
        ];
        for (token, after, purpose) in attempts {
            let before = audit_len(&app).await;
            let r = page(token, Some(after), purpose).await.unwrap();
            assert_error(r, 400, "invalid_query", &["P-"]).await;
            let (_, _, decision, status, reason) = one_event(&app, before).await;
            assert_eq!(
                (decision.as_str(), status, reason.as_str()),
                ("deny", 400, "input:invalid_query")
            );
        }
    }
);

both_backends!(
    consent_status_is_no_existence_oracle,
    async |app: TestApp| {
        for id in ["K-yes", "K-no"] {
            let r = app
                .create_customer(json!({"external_id": id, "email": format!("{id}@example.org")}))
                .await;
            assert_eq!(r.status(), 201);
        }
        grant(&app, "K-yes", "email_marketing").await;
        let read = |path: String| {
            app.as_role(
                reqwest::Method::GET,
                &path,
                "crm_service",
                "email_marketing",
            )
            .send()
        };
        let r = read("/v1/customers/K-yes".into()).await.unwrap();
        assert_eq!(r.status(), 200);
        // The non-consenting customer and an unknown id answer alike. (The
        // orders route shares `Gate::require_consent`; no shipped role reads
        // orders for a consent-based purpose.)
        for (existing, unknown) in [("/v1/customers/K-no", "/v1/customers/K-nobody")] {
            let before = audit_len(&app).await;
            let a = read(existing.into()).await.unwrap();
            assert_eq!(a.status(), 404, "{existing}");
            let a = a.text().await.unwrap();
            let (_, _, decision, status, reason) = one_event(&app, before).await;
            assert_eq!(
                (decision.as_str(), status, reason.as_str()),
                ("deny", 404, "consent:missing")
            );
            let before = audit_len(&app).await;
            let b = read(unknown.into()).await.unwrap();
            assert_eq!(b.status(), 404, "{unknown}");
            assert_eq!(a, b.text().await.unwrap(), "bodies differ: an oracle");
            one_event(&app, before).await;
            assert!(!a.contains("consent"), "{a}");
        }
        // The CRM may read the consent ledger for its purpose, so its list
        // says how many were left out...
        let r = read("/v1/customers".into()).await.unwrap();
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["left_out_without_consent"], 1, "{page}");
        assert_eq!(page["customers"].as_array().unwrap().len(), 1);
        // ...a role that may not read consents gets no left-out count.
        let r = app
            .as_role(
                reqwest::Method::GET,
                "/v1/customers",
                "marketing_analyst",
                "marketing_analytics",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        assert!(page.get("left_out_without_consent").is_none(), "{page}");
        assert_eq!(page["customers"].as_array().unwrap().len(), 0);
    }
);
