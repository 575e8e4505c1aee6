//! API8/API10: hostile values in every part of a request. NUL bytes,
//! invalid UTF-8 and control characters in paths and queries are refused
//! before any query (finding 7); `-0` is not read as 0; error messages name
//! the path and the expected type, never the value (finding 8).

use super::*;
use crate::both_backends;
use crate::helpers::*;

const SECRET: &str = "zelda.private@example.org";

both_backends!(
    nul_and_invalid_utf8_never_reach_sql,
    async |app: TestApp| {
        let r = app
            .create_customer(json!({"external_id": "C-1", "country": "\u{fffd}land"}))
            .await;
        assert_eq!(r.status(), 201);
        let customers = customer_count(&app).await;
        let targets = [
            "/v1/customers?country=%00",
            "/v1/customers?country=%FF",
            "/v1/customers?country=%FFland",
            "/v1/customers?country=a%0Ab",
            "/v1/customers/%00",
            "/v1/customers/C%FF",
            "/v1/consents/%00",
            "/v1/consents/receipts/%00",
            "/v1/customers/a%00b/orders",
            "/v1/audit?actor=%00",
            "/v1/customers?%00=1",
        ];
        for target in targets {
            let before = audit_len(&app).await;
            let r = app
                .as_role(
                    reqwest::Method::GET,
                    target,
                    "support_agent",
                    "customer_support",
                )
                .send()
                .await
                .unwrap();
            let message =
                assert_error(r, 400, "invalid_request_target", &["\u{fffd}", "C-1"]).await;
            assert!(
                !message.contains("UTF8") && !message.contains("0x00"),
                "{message}"
            );
            assert_eq!(
                audit_len(&app).await,
                before,
                "{target}: refused before any stage"
            );
        }
        assert_eq!(customer_count(&app).await, customers);
        // The stored U+FFFD value is still found by its real spelling.
        let r = app
            .as_role(
                reqwest::Method::GET,
                "/v1/customers?country=%EF%BF%BDland",
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
);

both_backends!(negative_zero_is_not_zero, async |app: TestApp| {
    for target in [
        "/v1/audit?customer_id=-0",
        "/v1/audit?customer_id=+0",
        "/v1/audit?customer_id=00",
    ] {
        let before = audit_len(&app).await;
        let r = app
            .as_role(
                reqwest::Method::GET,
                target,
                "compliance_officer",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_error(r, 400, "invalid_query", &[]).await;
        let (_, _, decision, status, reason) = one_event(&app, before).await;
        assert_eq!((decision.as_str(), status), ("deny", 400), "{target}");
        assert_eq!(reason, "input:invalid_query");
    }
    for target in ["/v1/customers?limit=-0", "/v1/customers?after=-0"] {
        let before = audit_len(&app).await;
        let r = app
            .as_role(
                reqwest::Method::GET,
                target,
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_error(r, 400, "invalid_query", &[]).await;
        one_event(&app, before).await;
    }
});

both_backends!(error_messages_never_echo_the_value, async |app: TestApp| {
    let r = app.create_customer(json!({"external_id": "C-1"})).await;
    assert_eq!(r.status(), 201);
    let post = |body: String| {
        app.as_role(
            reqwest::Method::POST,
            "/v1/consents/C-1",
            "support_agent",
            "customer_support",
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
    };
    let bodies = [
        format!(
            r#"{{"changes":[{{"purpose":"email_marketing","granted":"{SECRET}","source":"web_form"}}]}}"#
        ),
        format!(
            r#"{{"changes":[{{"purpose":"email_marketing","granted":false,"source":"web_form","{SECRET}":1}}]}}"#
        ),
        format!(r#"{{"changes":{{"{SECRET}":true}}}}"#),
        format!(
            r#"{{"changes":[{{"purpose":["{SECRET}"],"granted":false,"source":"web_form"}}]}}"#
        ),
    ];
    for body in bodies {
        let before = audit_len(&app).await;
        let r = post(body.clone()).await.unwrap();
        let message = assert_error(r, 422, "invalid_input", &[SECRET, "zelda"]).await;
        assert!(
            message.starts_with("invalid body: changes"),
            "{body}: {message}"
        );
        let (_, _, decision, status, _) = one_event(&app, before).await;
        assert_eq!((decision.as_str(), status), ("deny", 422));
    }
    // Malformed JSON of every kind: 400, nothing echoed, nothing changed.
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let huge_number = format!(
        r#"{{"changes":[{{"purpose":"email_marketing","granted":false,"source":"web_form","occurred_at":{}}}]}}"#,
        "9".repeat(400)
    );
    let invalid_utf8 = {
        let mut b = br#"{"changes":[{"purpose":""#.to_vec();
        b.extend_from_slice(&[0xff, 0xfe]);
        b.extend_from_slice(br#"","granted":false,"source":"web_form"}]}"#);
        b
    };
    for body in [b"{\"changes\":".to_vec(), invalid_utf8] {
        let before = audit_len(&app).await;
        let r = app
            .as_role(
                reqwest::Method::POST,
                "/v1/consents/C-1",
                "support_agent",
                "customer_support",
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(r, 400, "malformed_json", &[]).await;
        one_event(&app, before).await;
    }
    // Deep nesting is refused at the first level the schema does not allow.
    let before = audit_len(&app).await;
    let r = post(deep).await.unwrap();
    assert_error(r, 422, "invalid_input", &["[["]).await;
    one_event(&app, before).await;
    let before = audit_len(&app).await;
    // A number too large for any type is a syntax error to serde_json.
    let r = post(huge_number).await.unwrap();
    assert_error(r, 400, "malformed_json", &["99999"]).await;
    one_event(&app, before).await;
    // Duplicate keys are refused, not resolved silently to one of them.
    let before = audit_len(&app).await;
    let r = post(r#"{"changes":[{"purpose":"email_marketing","granted":true,"granted":false,"source":"web_form"}]}"#.to_owned()).await.unwrap();
    let message = assert_error(r, 422, "invalid_input", &[]).await;
    assert!(message.contains("duplicate field `granted`"), "{message}");
    one_event(&app, before).await;
    // Query strings name the parameter, not the value.
    let before = audit_len(&app).await;
    let r = app
        .as_role(
            reqwest::Method::GET,
            &format!("/v1/customers?limit={}", SECRET.replace('@', "%40")),
            "support_agent",
            "customer_support",
        )
        .send()
        .await
        .unwrap();
    let message = assert_error(r, 400, "invalid_query", &["zelda"]).await;
    assert!(message.contains("limit"), "{message}");
    one_event(&app, before).await;
    // No consent was recorded by any of it.
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM consent_events")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
});
