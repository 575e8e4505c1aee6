//! API5 function-level authorization on the admin surface: one policy call
//! must not be able to lock everyone out or grant for every purpose
//! (finding 11), and a change can be previewed before it is made.

use super::*;
use crate::both_backends;
use crate::helpers::*;

const SHIPPED: &str = include_str!("../../../policies/policy.csv");

async fn post(app: &TestApp, path: &str, role: &str, csv: &str) -> reqwest::Response {
    app.as_role(reqwest::Method::POST, path, role, "compliance_audit")
        .json(&json!({ "csv": csv }))
        .send()
        .await
        .unwrap()
}

async fn policy_version(app: &TestApp) -> String {
    let r = app
        .as_role(
            reqwest::Method::GET,
            "/v1/admin/policies",
            "dpo",
            "compliance_audit",
        )
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    body["version"].as_str().unwrap().to_owned()
}

both_backends!(
    a_policy_that_locks_everyone_out_is_refused,
    async |app: TestApp| {
        let version = policy_version(&app).await;
        let no_admin: String = SHIPPED
            .lines()
            .filter(|l| !l.contains(", policy, write,"))
            .collect::<Vec<_>>()
            .join("\n");
        let wildcard = format!("{SHIPPED}\np, support_agent, customer.email, read_clear, *\n");
        for (what, csv) in [
            ("empty", ""),
            ("comments only", "# nothing\n"),
            ("no policy write", no_admin.as_str()),
            ("wildcard", wildcard.as_str()),
        ] {
            for path in ["/v1/admin/policies", "/v1/admin/policies/preview"] {
                let before = audit_len(&app).await;
                let r = post(&app, path, "dpo", csv).await;
                let message = assert_error(r, 422, "invalid_input", &[]).await;
                assert!(message.starts_with("policy refused"), "{what}: {message}");
                let (_, _, decision, status, reason) = one_event(&app, before).await;
                assert_eq!(
                    (decision.as_str(), status, reason.as_str()),
                    ("deny", 422, "input:invalid_input"),
                    "{what}"
                );
                assert_eq!(
                    policy_version(&app).await,
                    version,
                    "{what}: the policy in force is unchanged"
                );
            }
        }
        // Everyone can still work, and the DPO can still change the policy.
        let r = app
            .as_role(
                reqwest::Method::GET,
                "/v1/customers",
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = post(&app, "/v1/admin/policies", "dpo", SHIPPED).await;
        assert_eq!(r.status(), 200);
    }
);

both_backends!(
    wildcards_are_accepted_only_when_enabled,
    config: |c: &mut custodian::config::Config| c.policy.allow_wildcard_purpose = true,
    async |app: TestApp| {
        let wildcard = format!("{SHIPPED}\np, support_agent, product, read, *\n");
        let r = post(&app, "/v1/admin/policies", "dpo", &wildcard).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
);

both_backends!(
    a_preview_says_who_gains_and_loses_and_changes_nothing,
    async |app: TestApp| {
        let version = policy_version(&app).await;
        let changed = format!(
            "{}\np, support_agent, customer.birth_date, read_masked, customer_support\n",
            SHIPPED
                .lines()
                .filter(
                    |l| *l != "p, support_agent, customer.postcode, read_masked, customer_support"
                )
                .collect::<Vec<_>>()
                .join("\n")
        );
        let before = audit_len(&app).await;
        let r = post(&app, "/v1/admin/policies/preview", "dpo", &changed).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let perm = |field: &str| json!({"role": "support_agent", "object": format!("customer.{field}"), "action": "read_masked", "purpose": "customer_support"});
        assert_eq!(
            body["changes"]["gained"],
            json!([perm("birth_date")]),
            "{body}"
        );
        assert_eq!(body["changes"]["lost"], json!([perm("postcode")]), "{body}");
        assert_eq!(body["current_version"], version);
        assert_ne!(body["version"], version);
        let (_, action, decision, status, _) = one_event(&app, before).await;
        assert_eq!(
            (action.as_str(), decision.as_str(), status),
            ("policy.read", "allow", 200)
        );
        assert_eq!(
            policy_version(&app).await,
            version,
            "a preview stores nothing"
        );
        // Only who may change the policy may preview changes.
        let before = audit_len(&app).await;
        let r = post(
            &app,
            "/v1/admin/policies/preview",
            "compliance_officer",
            &changed,
        )
        .await;
        assert_error(r, 403, "forbidden", &[]).await;
        one_event(&app, before).await;
    }
);

both_backends!(
    a_policy_rolls_back_to_any_earlier_version,
    async |app: TestApp| {
        let original = policy_version(&app).await;
        let grant = format!(
            "{SHIPPED}\np, support_agent, customer.birth_date, read_masked, customer_support\n"
        );
        let r = post(&app, "/v1/admin/policies", "dpo", &grant).await;
        assert_eq!(r.status(), 200);
        let changed = policy_version(&app).await;
        assert_ne!(changed, original);
        let rollback = |version: String, role: &'static str| {
            app.as_role(
                reqwest::Method::POST,
                "/v1/admin/policies/rollback",
                role,
                "compliance_audit",
            )
            .json(&json!({ "version": version }))
            .send()
        };
        // Not the DPO: 403, nothing changes.
        let before = audit_len(&app).await;
        let r = rollback(original.clone(), "compliance_officer")
            .await
            .unwrap();
        assert_error(r, 403, "forbidden", &[]).await;
        one_event(&app, before).await;
        assert_eq!(policy_version(&app).await, changed);
        // Unknown version: 404; malformed: 400.
        let r = rollback("f".repeat(64), "dpo").await.unwrap();
        assert_error(r, 404, "not_found", &[]).await;
        let r = rollback("-0".into(), "dpo").await.unwrap();
        assert_error(r, 400, "invalid_version", &[]).await;
        // By content hash, then by revision number.
        let before = audit_len(&app).await;
        let r = rollback(original.clone(), "dpo").await.unwrap();
        assert_eq!(r.status(), 200);
        let (_, action, decision, status, _) = one_event(&app, before).await;
        assert_eq!(
            (action.as_str(), decision.as_str(), status),
            ("policy.change", "allow", 200)
        );
        assert_eq!(
            policy_version(&app).await,
            original,
            "the earlier rules are in force"
        );
        let r = rollback("2".into(), "dpo").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(policy_version(&app).await, changed);
    }
);
