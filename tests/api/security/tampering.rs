//! API10 / store tampering: a ciphertext that does not open at its place is
//! one failure, `integrity_failure`, audited the same way, whichever byte
//! was changed (finding 13: the format byte used to be a 500 `internal`).

use super::*;
use crate::both_backends;
use crate::helpers::*;

async fn email_ct(app: &TestApp, external_id: &str) -> Vec<u8> {
    sqlx::query_scalar("SELECT email_ct FROM customers WHERE external_id = $1")
        .bind(external_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

async fn set_email_ct(app: &TestApp, external_id: &str, bytes: Vec<u8>) {
    sqlx::query("UPDATE customers SET email_ct = $1 WHERE external_id = $2")
        .bind(bytes)
        .bind(external_id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
}

both_backends!(
    every_ciphertext_that_does_not_open_is_an_integrity_failure,
    async |app: TestApp| {
        let r = app
            .create_customer(
                json!({"external_id": "T-1", "email": "tilda.secret@example.org", "name": "Tilda"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let original = email_ct(&app, "T-1").await;
        let last = original.len() - 1;
        // (what was changed, the edit)
        type Edit<'a> = (&'a str, Box<dyn Fn(&mut Vec<u8>)>);
        let edits: Vec<Edit> = vec![
            ("format byte", Box::new(|b: &mut Vec<u8>| b[0] ^= 0x01)),
            ("format byte zero", Box::new(|b: &mut Vec<u8>| b[0] = 0)),
            ("nonce", Box::new(|b: &mut Vec<u8>| b[3] ^= 0x80)),
            ("tag", Box::new(move |b: &mut Vec<u8>| b[last] ^= 0x01)),
            ("truncated", Box::new(|b: &mut Vec<u8>| b.truncate(5))),
            ("empty", Box::new(|b: &mut Vec<u8>| b.clear())),
        ];
        for (what, edit) in edits {
            let mut bytes = original.clone();
            edit(&mut bytes);
            set_email_ct(&app, "T-1", bytes).await;
            let before = audit_len(&app).await;
            let r = app
                .as_role(
                    reqwest::Method::GET,
                    "/v1/customers/T-1",
                    "support_agent",
                    "customer_support",
                )
                .send()
                .await
                .unwrap();
            assert_error(r, 500, "integrity_failure", &["tilda", "Tilda"]).await;
            let (_, action, decision, status, reason) = one_event(&app, before).await;
            assert_eq!(
                (action.as_str(), decision.as_str(), status, reason.as_str()),
                ("customer.read", "deny", 500, "outcome:integrity_failure"),
                "{what}"
            );
        }
        set_email_ct(&app, "T-1", original).await;
        let r = app
            .as_role(
                reqwest::Method::GET,
                "/v1/customers/T-1",
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "restored record reads again");
    }
);

async fn ndjson_export(app: &TestApp, query: &str) -> String {
    let r = app
        .as_role(
            reqwest::Method::GET,
            &format!("/v1/audit/export?format=ndjson{query}"),
            "compliance_officer",
            "compliance_audit",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

// Finding 1: an export can no longer hide a deletion behind its unsigned
// header, and an export that proves nothing is "unverified", never "intact".
both_backends!(
    an_export_cannot_hide_a_deletion,
    config: |c: &mut custodian::config::Config| c.audit.checkpoint_every_events = 5,
    async |app: TestApp| {
        use custodian::audit::{verify_ndjson, ProblemKind, VerifyMode};
        for i in 0..6 {
            assert_eq!(app.create_customer(json!({"external_id": format!("E-{i}")})).await.status(), 201);
        }
        let keys = [*app.state.audit.public_key()];
        let text = ndjson_export(&app, "").await;
        let report = verify_ndjson(text.as_bytes(), &keys, &|_| {}).unwrap();
        assert!(report.is_intact(), "{report}");
        assert_eq!(report.mode, VerifyMode::FullExport);
        assert!(report.to_string().starts_with("intact (full export, signed manifest)"), "{report}");
        // Delete one event line and relabel the header "filtered".
        let mut deleted = false;
        let forged: Vec<String> = text
            .lines()
            .filter(|l| {
                let drop = !deleted && l.contains("\"type\":\"event\"") && l.contains("\"seq\":3,");
                deleted |= drop;
                !drop
            })
            .map(|l| l.replace("\"filtered\":false", "\"filtered\":true"))
            .collect();
        assert!(deleted);
        let report = verify_ndjson(forged.join("\n").as_bytes(), &keys, &|_| {}).unwrap();
        assert!(!report.is_intact() && !report.is_consistent(), "{report}");
        // Relabelling alone is caught too.
        let relabelled = text.replace("\"filtered\":false", "\"filtered\":true");
        let report = verify_ndjson(relabelled.as_bytes(), &keys, &|_| {}).unwrap();
        assert_eq!(report.problem.map(|p| p.kind), Some(ProblemKind::Modified));
        // Without its manifest the file proves nothing: unverified.
        let stripped: Vec<&str> = text.lines().filter(|l| !l.contains("\"type\":\"manifest\"")).collect();
        let report = verify_ndjson(stripped.join("\n").as_bytes(), &keys, &|_| {}).unwrap();
        assert_eq!(report.mode, VerifyMode::Unverified);
        assert!(!report.is_intact() && report.to_string().starts_with("UNVERIFIED"), "{report}");
        // A forged manifest (edited count) does not verify.
        let edited = text.replace("\"events\":", "\"events\":1");
        let report = verify_ndjson(edited.as_bytes(), &keys, &|_| {}).unwrap();
        assert_eq!(report.problem.map(|p| p.kind), Some(ProblemKind::BadSignature));
        // A filtered export says so, and what it could not check.
        let text = ndjson_export(&app, "&action=customer.write").await;
        let report = verify_ndjson(text.as_bytes(), &keys, &|_| {}).unwrap();
        assert_eq!(report.mode, VerifyMode::FilteredExport, "{report}");
        assert!(report.to_string().contains("NOT CHECKED"), "{report}");
        assert!(!report.is_intact());
    }
);

// Finding 2: an auditor's saved head catches a rollback that the trail's
// own verification cannot (the tail deleted with its checkpoints).
both_backends!(
    a_saved_head_catches_a_rollback,
    config: |c: &mut custodian::config::Config| c.audit.checkpoint_every_events = 3,
    async |app: TestApp| {
        for i in 0..4 {
            assert_eq!(app.create_customer(json!({"external_id": format!("H-{i}")})).await.status(), 201);
        }
        let officer = |method: reqwest::Method, path: &str| {
            app.as_role(method, path, "compliance_officer", "compliance_audit")
        };
        let r = officer(reqwest::Method::GET, "/v1/audit/head").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let heads: Value = r.json().await.unwrap();
        let saved = heads["heads"].clone();
        let head_seq = saved[0]["seq"].as_i64().unwrap();
        assert!(head_seq >= 3, "{heads}");
        let check = || async {
            let before = audit_len(&app).await;
            let r = officer(reqwest::Method::POST, "/v1/audit/verify/since")
                .json(&json!({ "heads": saved }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            let (_, action, _, _, _) = one_event(&app, before).await;
            assert_eq!(action, "audit.verify");
            body
        };
        let body = check().await;
        assert_eq!(body["intact"], true, "{body}");
        // Integers as JSON Schema counts them: `3.0` is the head's seq too.
        let mut floats = saved.clone();
        floats[0]["seq"] = json!(head_seq as f64);
        floats[0]["signed_at"] = json!(saved[0]["signed_at"].as_i64().unwrap() as f64);
        assert!(floats.to_string().contains(".0"), "{floats}");
        let r = officer(reqwest::Method::POST, "/v1/audit/verify/since")
            .json(&json!({ "heads": floats }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["intact"], true, "{body}");
        // Roll the trail back: delete every block and checkpoint from the
        // saved head on (what an operator with database access could do).
        let instance = saved[0]["instance"].as_str().unwrap();
        app.exec(&format!(
            "DELETE FROM audit_blocks WHERE instance = '{instance}' AND last_seq >= {head_seq}"
        ))
        .await;
        app.exec(&format!(
            "DELETE FROM audit_checkpoints WHERE instance = '{instance}' AND seq >= {head_seq}"
        ))
        .await;
        let body = check().await;
        assert_eq!(body["intact"], false, "{body}");
        let kind = body["problem"]["kind"].as_str().unwrap();
        assert!(["truncated", "deleted", "checkpoint_mismatch"].contains(&kind), "{body}");
        assert!(body["problem"]["detail"].as_str().unwrap().contains("rolled back"), "{body}");
    }
);
