//! The audit trail over HTTP: compliance reads with filters and cursors,
//! denials that are themselves audited, one event per read, export verified
//! offline with the served public key, verification of a tampered store,
//! and fail-closed data routes while the trail cannot record.

use custodian::audit::{self, ProblemKind, PublicKey};
use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::*;

const OFFICER: &str = "compliance_officer";
const COMPLIANCE: &str = "compliance_audit";

fn customer(id: &str) -> Value {
    json!({
        "external_id": id,
        "email": "bob.jones@example.com",
        "phone": "+44 20 7946 0000",
        "name": "Bob Jones",
        "city": "Leeds",
        "country": "United Kingdom"
    })
}

async fn support_reads(app: &TestApp, id: &str) -> reqwest::Response {
    app.as_role(
        Method::GET,
        &format!("/v1/customers/{id}"),
        "support_agent",
        "customer_support",
    )
    .send()
    .await
    .unwrap()
}

async fn officer(app: &TestApp, method: Method, path: &str) -> reqwest::Response {
    app.as_role(method, path, OFFICER, COMPLIANCE)
        .send()
        .await
        .unwrap()
}

both_backends!(
    officer_filters_and_pages_through_the_trail,
    async |app: TestApp| {
        assert_eq!(app.create_customer(customer("C-1")).await.status(), 201);
        for _ in 0..5 {
            assert_eq!(support_reads(&app, "C-1").await.status(), 200);
        }
        // Two denials by another actor.
        for _ in 0..2 {
            let r = app
                .as_role(
                    Method::GET,
                    "/v1/customers/C-1",
                    "marketing_analyst",
                    "customer_support",
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403);
        }
        let mut path =
            "/v1/audit?actor=support_agent-user&decision=allow&action=customer.read&limit=2"
                .to_owned();
        let mut seqs = Vec::new();
        let mut pages = 0;
        loop {
            let r = officer(&app, Method::GET, &path).await;
            assert_eq!(r.status(), 200);
            let page: Value = r.json().await.unwrap();
            pages += 1;
            for e in page["events"].as_array().unwrap() {
                assert_eq!(e["actor"], "support_agent-user");
                assert_eq!(e["decision"], "allow");
                assert_eq!(e["hash"].as_str().unwrap().len(), 64);
                seqs.push(e["seq"].as_i64().unwrap());
            }
            match page["next_cursor"].as_str() {
                Some(c) => {
                    path = format!(
                        "/v1/audit?actor=support_agent-user&decision=allow&action=customer.read&limit=2&cursor={c}"
                    )
                }
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seqs, vec![6, 5, 4, 3, 2], "newest first");
        // The denials (refused before any customer was looked up).
        let r = officer(
            &app,
            Method::GET,
            "/v1/audit?decision=deny&actor=marketing_analyst-user",
        )
        .await;
        let page: Value = r.json().await.unwrap();
        let events = page["events"].as_array().unwrap();
        assert_eq!(events.len(), 2, "{page}");
        assert!(events
            .iter()
            .all(|e| e["status"] == 403 && e["customers"] == json!([])));
        // By the customer's external id: its creation and the five reads.
        let r = officer(&app, Method::GET, "/v1/audit?customer=C-1&decision=allow").await;
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["events"].as_array().unwrap().len(), 6, "{page}");
        let r = officer(&app, Method::GET, "/v1/audit?customer=C-404").await;
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["events"].as_array().unwrap().len(), 0, "{page}");
        // A time window that ends before everything is empty.
        let r = officer(&app, Method::GET, "/v1/audit?to=2000-01-01T00:00:00Z").await;
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["events"].as_array().unwrap().len(), 0);
        // Bad values are 400 with a clear message (and audited).
        for (query, words) in [
            ("from=yesterday", "RFC 3339"),
            ("decision=maybe", "allow or deny"),
            ("limit=0", "limit"),
            ("status=abc", "status"),
            ("cursor=garbage", "cursor"),
            // The caller's own key is not repeated back.
            ("colour=red", "unknown field"),
            ("format=csv", "format"),
        ] {
            let r = officer(&app, Method::GET, &format!("/v1/audit?{query}")).await;
            assert_eq!(r.status(), 400, "{query}");
            let body: Value = r.json().await.unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(words), "{query}: {message}");
        }
        let rows = app.audit_rows().await;
        let last = rows.last().unwrap();
        assert_eq!(
            (last.1.as_str(), last.2.as_str(), last.3),
            ("audit.read", "deny", 400)
        );
    }
);

both_backends!(
    non_compliance_roles_are_refused_and_audited,
    async |app: TestApp| {
        for (method, path, action) in [
            (Method::GET, "/v1/audit", "audit.read"),
            (Method::GET, "/v1/audit/export", "audit.export"),
            (Method::POST, "/v1/audit/verify", "audit.verify"),
            (Method::GET, "/v1/audit/public-key", "audit.read"),
        ] {
            let r = app
                .as_role(method, path, "support_agent", "customer_support")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path}");
            let rows = app.audit_rows().await;
            let last = rows.last().unwrap();
            assert_eq!(
                (last.0.as_str(), last.1.as_str(), last.2.as_str(), last.3),
                ("support_agent-user", action, "deny", 403),
                "{path}"
            );
        }
        // Even a compliance role needs the compliance purpose.
        let r = app
            .as_role(Method::GET, "/v1/audit", OFFICER, "customer_support")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // The officer finds the support agent's denials in the trail.
        let r = officer(
            &app,
            Method::GET,
            "/v1/audit?actor=support_agent-user&status=403",
        )
        .await;
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["events"].as_array().unwrap().len(), 4, "{page}");
    }
);

both_backends!(
    every_read_of_the_trail_is_one_event,
    async |app: TestApp| {
        assert_eq!(app.create_customer(customer("C-1")).await.status(), 201);
        for path in [
            "/v1/audit",
            "/v1/audit?limit=1",
            "/v1/audit/public-key",
            "/v1/audit/export",
        ] {
            let before = app.audit_rows().await.len();
            let r = officer(&app, Method::GET, path).await;
            assert_eq!(r.status(), 200, "{path}");
            let _ = r.bytes().await.unwrap();
            let rows = app.audit_rows().await;
            assert_eq!(rows.len(), before + 1, "{path}");
            let last = rows.last().unwrap();
            assert_eq!(last.0, "compliance_officer-user");
            assert_eq!(last.2, "allow");
        }
        let before = app.audit_rows().await.len();
        let r = officer(&app, Method::POST, "/v1/audit/verify").await;
        assert_eq!(r.status(), 200);
        assert_eq!(app.audit_rows().await.len(), before + 1);
        // The read's own event shows up in the next read.
        let r = officer(&app, Method::GET, "/v1/audit?limit=1").await;
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["events"][0]["action"], "audit.verify");
    }
);

// Checkpoints every 5 events, so an export carries signatures to check.
both_backends!(
    export_verifies_offline_with_the_served_key,
    config: |c: &mut custodian::config::Config| c.audit.checkpoint_every_events = 5,
    exported_trail_verifies_offline
);

async fn exported_trail_verifies_offline(app: TestApp) {
    assert_eq!(app.create_customer(customer("C-1")).await.status(), 201);
    for _ in 0..8 {
        assert_eq!(support_reads(&app, "C-1").await.status(), 200);
    }
    let r = officer(&app, Method::GET, "/v1/audit/public-key").await;
    let key: Value = r.json().await.unwrap();
    let public = PublicKey::parse(key["pem"].as_str().unwrap()).unwrap();
    assert_eq!(public.key_id(), key["key_id"].as_str().unwrap());

    let r = officer(&app, Method::GET, "/v1/audit/export?format=ndjson").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let disposition = r.headers()["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"custodian-audit-")
            && disposition.ends_with(".ndjson\""),
        "{disposition}"
    );
    let text = r.text().await.unwrap();
    assert!(!text.contains("Bob Jones") && !text.contains("bob.jones"));
    let report = audit::verify_ndjson(text.as_bytes(), &[public], &|_| {}).unwrap();
    assert!(report.is_intact(), "{report}");
    // 1 create + 8 reads + the public-key read + the export's own event.
    assert_eq!(report.events, 11, "{report}");
    assert!(report.checkpoints >= 2, "{report}");

    // Edit one event line: verification names its seq.
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.contains("\"type\":\"event\"") && l.contains("\"seq\":4,") {
                l.replace("\"status\":200", "\"status\":404")
            } else {
                l.to_owned()
            }
        })
        .collect();
    let edited = edited.join("\n");
    assert_ne!(edited.trim(), text.trim());
    let report = audit::verify_ndjson(edited.as_bytes(), &[public], &|_| {}).unwrap();
    let p = report.problem.expect("the edit is detected");
    assert_eq!((p.kind, p.seq), (ProblemKind::Modified, 4));

    // CSV: events only, with a header row.
    let r = officer(
        &app,
        Method::GET,
        "/v1/audit/export?format=csv&actor=support_agent-user",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv");
    let csv = r.text().await.unwrap();
    assert_eq!(csv.lines().count(), 1 + 8, "{csv}");
    let r = officer(&app, Method::GET, "/v1/audit/export?format=xml").await;
    assert_eq!(r.status(), 400);
}

both_backends!(verify_names_a_tampered_seq, async |app: TestApp| {
    assert_eq!(app.create_customer(customer("C-1")).await.status(), 201);
    for _ in 0..3 {
        assert_eq!(support_reads(&app, "C-1").await.status(), 200);
    }
    let r = officer(&app, Method::POST, "/v1/audit/verify").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["intact"], true, "{body}");
    assert_eq!(body["events"], 4);
    assert!(body.get("problem").is_none());

    app.edit_audit_block("test-instance", 3, |events| {
        let e = events.iter_mut().find(|e| e.seq == 3).unwrap();
        e.event.actor = "someone-else".into();
    })
    .await;
    let r = officer(&app, Method::POST, "/v1/audit/verify").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["intact"], false, "{body}");
    assert_eq!(body["problem"]["seq"], 3, "{body}");
    assert_eq!(body["problem"]["kind"], "modified");
    assert_eq!(body["problem"]["instance"], "test-instance");
    assert_eq!(body["events"], 2);
});

both_backends!(data_routes_fail_closed_over_http, async |app: TestApp| {
    assert_eq!(app.create_customer(customer("C-1")).await.status(), 201);
    assert_eq!(support_reads(&app, "C-1").await.status(), 200);
    let before = app.audit_rows().await.len();
    app.refuse_audit_inserts().await;

    let r = support_reads(&app, "C-1").await;
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    for secret in ["Bob", "Jones", "bob.jones", "Leeds", "7946", "C-1"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "audit_unavailable");
    // Reading the trail fails closed too.
    let r = officer(&app, Method::GET, "/v1/audit").await;
    assert_eq!(r.status(), 503);
    assert_eq!(app.get("/readyz").await.status(), 503);

    app.allow_audit_inserts().await;
    let r = support_reads(&app, "C-1").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["name"], "Bob Jones");
    assert_eq!(app.get("/readyz").await.status(), 200);
    // The refused requests left no event and no gap; the chain is intact.
    assert_eq!(app.audit_rows().await.len(), before + 1);
    let r = officer(&app, Method::POST, "/v1/audit/verify").await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["intact"], true, "{body}");
});

both_backends!(baseline_route_is_absent_by_default, async |app: TestApp| {
    assert_eq!(app.create_customer(customer("C-1")).await.status(), 201);
    let r = app
        .as_role(
            Method::GET,
            "/bench/baseline/customers/C-1",
            "support_agent",
            "customer_support",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let text = r.text().await.unwrap();
    assert!(!text.contains("Bob"), "{text}");
});

// Actor, purpose, action and decision filters over hours the summaries
// have counted and hours they have not yet: the same events either way
// (the summaries only narrow which blocks are read).
both_backends!(
    filters_find_the_same_events_in_counted_and_uncounted_hours,
    async |app: TestApp| {
        assert_eq!(app.create_customer(customer("C-1")).await.status(), 201);
        let denied = |app: &TestApp| {
            app.as_role(
                Method::GET,
                "/v1/customers/C-1",
                "marketing_analyst",
                "customer_support",
            )
            .send()
        };
        // Hours 0, 2 and 4, then counted; hour 6 possibly not yet.
        for _ in 0..2 {
            assert_eq!(support_reads(&app, "C-1").await.status(), 200);
        }
        assert_eq!(denied(&app).await.unwrap().status(), 403);
        app.clock.advance_secs(7_200);
        assert_eq!(support_reads(&app, "C-1").await.status(), 200);
        app.clock.advance_secs(7_200);
        assert_eq!(denied(&app).await.unwrap().status(), 403);
        assert!(app.state.audit.index_now().await);
        app.clock.advance_secs(7_200);
        assert_eq!(support_reads(&app, "C-1").await.status(), 200);
        assert_eq!(denied(&app).await.unwrap().status(), 403);
        for (query, expected) in [
            ("actor=marketing_analyst-user&decision=deny", 3),
            ("actor=support_agent-user&action=customer.read", 4),
            (
                "actor=support_agent-user&action=customer.read&decision=deny",
                0,
            ),
            ("purpose=customer_support&decision=deny", 3),
            (
                "purpose=customer_support&decision=deny&actor=support_agent-user",
                0,
            ),
            ("actor=nobody", 0),
        ] {
            let r = officer(&app, Method::GET, &format!("/v1/audit?{query}&limit=50")).await;
            assert_eq!(r.status(), 200, "{query}");
            let page: Value = r.json().await.unwrap();
            assert_eq!(
                page["events"].as_array().unwrap().len(),
                expected,
                "{query}: {page}"
            );
        }
        // Once everything is counted, the same answers.
        assert!(app.state.audit.index_now().await);
        let r = officer(
            &app,
            Method::GET,
            "/v1/audit?actor=marketing_analyst-user&decision=deny&limit=50",
        )
        .await;
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["events"].as_array().unwrap().len(), 3, "{page}");
    }
);
