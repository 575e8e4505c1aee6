//! Authorization over real HTTP: each shipped role's allowed and forbidden
//! paths, purpose checks, the policy API (read, refused and accepted
//! changes), and hot reload across two instances sharing one database.

use crate::both_backends;
use crate::helpers::*;
use custodian::clock::Clock;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SHIPPED: &str = include_str!("../../policies/policy.csv");

fn alice() -> Value {
    json!({
        "external_id": "C-1001",
        "email": "alice.smith@example.com",
        "phone": "+44 20 7946 0958",
        "name": "Alice Smith",
        "birth_date": "1984-05-17",
        "postcode": "SW1A 1AA",
        "city": "London",
        "country": "United Kingdom"
    })
}

async fn status_of(app: &TestApp, method: Method, path: &str, role: &str, purpose: &str) -> u16 {
    app.as_role(method, path, role, purpose)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn body_of(app: &TestApp, path: &str, role: &str, purpose: &str) -> (u16, String) {
    let r = app
        .as_role(Method::GET, path, role, purpose)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

both_backends!(shipped_roles_on_customers, async |app: TestApp| {
    assert_eq!(app.create_customer(alice()).await.status(), 201);
    let one = "/v1/customers/C-1001";
    let list = "/v1/customers";

    // support_agent: its own purpose only.
    let (status, body) = body_of(&app, one, "support_agent", "customer_support").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("alice.smith@example.com"), "{body}");
    for purpose in ["marketing_analytics", "email_marketing", "compliance_audit"] {
        assert_eq!(
            status_of(&app, Method::GET, one, "support_agent", purpose).await,
            403,
            "support_agent for {purpose}"
        );
    }

    // ingest_service: writes, never reads, for any purpose.
    for purpose in ["data_ingestion", "customer_support", "marketing_analytics"] {
        for path in [one, list] {
            assert_eq!(
                status_of(&app, Method::GET, path, "ingest_service", purpose).await,
                403,
                "ingest_service GET {path} for {purpose}"
            );
        }
    }
    // ... and only for its purpose.
    let r = app
        .as_role(Method::POST, list, "ingest_service", "customer_support")
        .json(&json!({"external_id": "C-1002"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // marketing_analyst: never the email, in any form, for any purpose.
    for purpose in [
        "marketing_analytics",
        "customer_support",
        "email_marketing",
        "compliance_audit",
    ] {
        for path in [one, list] {
            let (status, body) = body_of(&app, path, "marketing_analyst", purpose).await;
            // 404: for marketing_analytics a non-consenting customer is absent.
            assert!(
                status == 200 || status == 403 || status == 404,
                "{purpose} {path}: {status}"
            );
            assert!(!body.contains("alice"), "{purpose} {path}: {body}");
            assert!(!body.contains("example.com"), "{purpose} {path}: {body}");
            assert!(!body.contains("\"email\""), "{purpose} {path}: {body}");
        }
    }
    // Searching by email would reveal it exists: refused.
    assert_eq!(
        status_of(
            &app,
            Method::GET,
            "/v1/customers?email=alice.smith%40example.com",
            "marketing_analyst",
            "marketing_analytics"
        )
        .await,
        403
    );

    // Roles without any customer rule.
    for (role, purpose) in [
        ("recommendation_service", "personalization"),
        ("compliance_officer", "compliance_audit"),
        ("dpo", "compliance_audit"),
    ] {
        assert_eq!(
            status_of(&app, Method::GET, one, role, purpose).await,
            403,
            "{role}"
        );
    }
    // crm_service reads for email_marketing (consent then filters).
    assert_eq!(
        status_of(&app, Method::GET, list, "crm_service", "email_marketing").await,
        200
    );
    assert_eq!(
        status_of(&app, Method::GET, list, "crm_service", "customer_support").await,
        403
    );
    // A role the policy does not know gets nothing.
    assert_eq!(
        status_of(&app, Method::GET, list, "superuser", "customer_support").await,
        403
    );
});

both_backends!(
    purpose_missing_or_unknown_is_400_and_audited,
    async |app: TestApp| {
        let token = app.token("agent", &["support_agent"]);
        for (purpose, code) in [
            (None, "purpose_missing"),
            (Some(""), "purpose_missing"),
            (Some("curiosity"), "purpose_unknown"),
            (Some("Customer_Support"), "purpose_unknown"),
        ] {
            let before = app.audit_rows().await.len();
            let mut r = app.client.get(app.url("/v1/customers")).bearer_auth(&token);
            if let Some(p) = purpose {
                r = r.header("x-purpose", p);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), 400, "{purpose:?}");
            assert_eq!(error_code(r).await, code);
            let rows = app.audit_rows().await;
            assert_eq!(rows.len(), before + 1);
            let (actor, _, decision, status, reason) = rows.last().unwrap();
            assert_eq!(actor, "agent");
            assert_eq!(decision, "deny");
            assert_eq!(*status, 400);
            assert_eq!(reason, &format!("input:{code}"));
        }
    }
);

/// Sends a policy through the API as `role` (for compliance_audit).
async fn post_policy(app: &TestApp, role: &str, csv: &str) -> reqwest::Response {
    app.as_role(Method::POST, "/v1/admin/policies", role, "compliance_audit")
        .json(&json!({ "csv": csv }))
        .send()
        .await
        .unwrap()
}

async fn get_policy(app: &TestApp) -> Value {
    let r = app
        .as_role(
            Method::GET,
            "/v1/admin/policies",
            "compliance_officer",
            "compliance_audit",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

both_backends!(
    policy_can_be_read_by_compliance_only,
    async |app: TestApp| {
        let doc = get_policy(&app).await;
        assert_eq!(doc["revision"], 1);
        assert_eq!(doc["in_sync"], true);
        assert_eq!(doc["version"], app.state.authorizer.version());
        let rules: Vec<&str> = doc["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(rules.contains(&"p, dpo, policy, write, compliance_audit"));
        assert!(rules.contains(&"g, dpo, compliance_officer"));
        // Inherited: dpo reads through compliance_officer.
        assert_eq!(
            status_of(
                &app,
                Method::GET,
                "/v1/admin/policies",
                "dpo",
                "compliance_audit"
            )
            .await,
            200
        );
        for (role, purpose) in [
            ("support_agent", "customer_support"),
            ("marketing_analyst", "marketing_analytics"),
            ("compliance_officer", "customer_support"),
        ] {
            assert_eq!(
                status_of(&app, Method::GET, "/v1/admin/policies", role, purpose).await,
                403,
                "{role} {purpose}"
            );
        }
        let rows = app.audit_rows().await;
        assert!(rows.iter().any(|r| r.1 == "policy.read" && r.2 == "allow"));
    }
);

both_backends!(
    a_policy_change_the_trail_cannot_record_changes_nothing,
    config: |c: &mut custodian::config::Config| c.audit.write_timeout_ms = 500,
    async |app: TestApp| {
        let grant = format!("{SHIPPED}\np, support_agent, customer, read, marketing_analytics\n");
        let before = app.state.authorizer.version().to_owned();
        // Someone holds the trail (and only the trail: on SQLite its own
        // file, through a connection of its own), so the change's event
        // cannot be written: the change must not land either (fail closed).
        let mut locker: sqlx::AnyConnection = match app.backend {
            Backend::Sqlite => {
                let audit_file = std::fs::read_dir(app.data_dir.path())
                    .unwrap()
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.to_string_lossy().ends_with(".audit.db"))
                    .expect("the trail's SQLite file");
                sqlx::any::install_default_drivers();
                sqlx::Connection::connect(&format!("sqlite://{}", audit_file.display()))
                    .await
                    .unwrap()
            }
            Backend::Postgres => app.state.db.pool.acquire().await.unwrap().detach(),
        };
        let lock: &[&str] = match app.backend {
            Backend::Sqlite => &["BEGIN IMMEDIATE", "UPDATE audit_blocks SET instance = instance WHERE 1 = 0"],
            Backend::Postgres => &["BEGIN", "LOCK TABLE audit_blocks IN ACCESS EXCLUSIVE MODE"],
        };
        for sql in lock {
            sqlx::query(sql).execute(&mut locker).await.unwrap();
        }
        let r = post_policy(&app, "dpo", &grant).await;
        assert_eq!(r.status(), 503);
        assert_eq!(error_code(r).await, "audit_unavailable");
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
        drop(locker);
        assert_eq!(app.state.authorizer.version(), before, "applied in memory");
        let doc = get_policy(&app).await;
        assert_eq!(doc["revision"], 1, "stored without its audit event");
        assert_eq!(doc["version"], before);
        assert_eq!(
            status_of(&app, Method::GET, "/v1/customers", "support_agent", "marketing_analytics").await,
            403
        );
        // With the trail back, the same change lands with its event.
        let r = post_policy(&app, "dpo", &grant).await;
        assert_eq!(r.status(), 200);
        let rows = app.audit_rows().await;
        assert!(rows.iter().any(|r| r.1 == "policy.change" && r.2 == "allow"), "{rows:?}");
        // (PostgreSQL may skip the revision number the rolled-back attempt took.)
        assert_ne!(get_policy(&app).await["version"], before);
    }
);

both_backends!(only_the_dpo_changes_the_policy, async |app: TestApp| {
    let grant = format!("{SHIPPED}\np, support_agent, customer, read, marketing_analytics\n");
    for role in ["compliance_officer", "support_agent", "marketing_analyst"] {
        let r = post_policy(&app, role, &grant).await;
        assert_eq!(r.status(), 403, "{role}");
        assert_eq!(error_code(r).await, "forbidden");
    }
    let rows = app.audit_rows().await;
    let changes: Vec<_> = rows.iter().filter(|r| r.1 == "policy.change").collect();
    assert_eq!(changes.len(), 3, "{rows:?}");
    assert!(changes.iter().all(|r| r.2 == "deny" && r.3 == 403));
    assert_eq!(get_policy(&app).await["revision"], 1);
    assert_eq!(
        status_of(
            &app,
            Method::GET,
            "/v1/customers",
            "support_agent",
            "marketing_analytics"
        )
        .await,
        403
    );
});

both_backends!(a_bad_policy_is_refused_whole, async |app: TestApp| {
    let before = get_policy(&app).await;
    let shipped_lines = SHIPPED.lines().count();
    // Valid grants first, then one bad line: nothing of it may apply.
    let cases = [
        (
            "p, support_agent, customer, read, marketing_analytics\np, support_agent, customer\n",
            shipped_lines + 2,
        ),
        (
            "p, support_agent, customer, read, marketing_analytics\np, support_agent, customer, raed, customer_support\n",
            shipped_lines + 2,
        ),
        (
            "p, support_agent, customer, read, marketing_analytics\np, support_agent, customer, read, idle_curiosity\n",
            shipped_lines + 2,
        ),
        (
            "p, support_agent, customer, read, marketing_analytics\np, support agent, customer, read, customer_support\n",
            shipped_lines + 2,
        ),
    ];
    for (extra, line) in cases {
        let csv = format!("{SHIPPED}{extra}");
        let r = post_policy(&app, "dpo", &csv).await;
        assert_eq!(r.status(), 422, "{extra}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_input", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("line {line}")),
            "{extra}: {message}"
        );
    }
    // Not JSON of the documented shape: 422 too, nothing changes.
    let r = app
        .as_role(
            Method::POST,
            "/v1/admin/policies",
            "dpo",
            "compliance_audit",
        )
        .json(&json!({ "rules": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let after = get_policy(&app).await;
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["revision"], before["revision"]);
    assert_eq!(
        status_of(
            &app,
            Method::GET,
            "/v1/customers",
            "support_agent",
            "marketing_analytics"
        )
        .await,
        403
    );
    assert_eq!(
        status_of(
            &app,
            Method::GET,
            "/v1/customers",
            "support_agent",
            "customer_support"
        )
        .await,
        200
    );
    let rows = app.audit_rows().await;
    let refused = rows
        .iter()
        .filter(|r| r.1 == "policy.change" && r.2 == "deny" && r.3 == 422)
        .count();
    assert_eq!(refused, 5, "{rows:?}");
});

both_backends!(
    an_accepted_policy_takes_effect_at_once,
    async |app: TestApp| {
        let path = "/v1/customers";
        assert_eq!(
            status_of(
                &app,
                Method::GET,
                path,
                "support_agent",
                "marketing_analytics"
            )
            .await,
            403
        );
        // Grant support_agent reads for marketing_analytics.
        let grant = format!("{SHIPPED}\np, support_agent, customer, read, marketing_analytics\n");
        let r = post_policy(&app, "dpo", &grant).await;
        assert_eq!(r.status(), 200);
        let stored: Value = r.json().await.unwrap();
        assert_eq!(stored["revision"], 2);
        assert_eq!(stored["version"], app.state.authorizer.version());
        assert_eq!(
            status_of(
                &app,
                Method::GET,
                path,
                "support_agent",
                "marketing_analytics"
            )
            .await,
            200
        );
        // Revoke support_agent's customer reads altogether.
        let revoke: String = SHIPPED
            .lines()
            .filter(|l| !l.starts_with("p, support_agent, customer"))
            .map(|l| format!("{l}\n"))
            .collect();
        let r = post_policy(&app, "dpo", &revoke).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            status_of(&app, Method::GET, path, "support_agent", "customer_support").await,
            403
        );
        let doc = get_policy(&app).await;
        assert_eq!(doc["revision"], 3);
        assert_eq!(doc["in_sync"], true);
        let rows = app.audit_rows().await;
        let accepted: Vec<_> = rows
            .iter()
            .filter(|r| r.1 == "policy.change" && r.2 == "allow")
            .collect();
        assert_eq!(accepted.len(), 2, "{rows:?}");
        assert!(accepted.iter().all(|r| r.0 == "dpo-user" && r.3 == 200));
    }
);

both_backends!(
    a_change_on_one_instance_reaches_another,
    async |a: TestApp| {
        let url = a.config.database.url.clone();
        let data_dir = a.config.data_dir.clone();
        let b = spawn_app_with(a.backend, move |c| {
            c.database.url = url;
            c.data_dir = data_dir;
            c.instance_id = "test-instance-b".to_owned();
            c.policy.reload_poll_ms = 200;
        })
        .await
        .unwrap();
        let path = "/v1/customers";
        assert_eq!(
            status_of(
                &b,
                Method::GET,
                path,
                "support_agent",
                "marketing_analytics"
            )
            .await,
            403
        );
        let grant = format!("{SHIPPED}\np, support_agent, customer, read, marketing_analytics\n");
        let r = post_policy(&a, "dpo", &grant).await;
        assert_eq!(r.status(), 200);
        let changed = Instant::now();
        loop {
            let status = status_of(
                &b,
                Method::GET,
                path,
                "support_agent",
                "marketing_analytics",
            )
            .await;
            if status == 200 {
                break;
            }
            assert_eq!(status, 403);
            assert!(
                changed.elapsed() < Duration::from_secs(3),
                "instance B still enforces the old policy after 3 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = changed.elapsed();
        assert!(took < Duration::from_millis(1500), "reload took {took:?}");
        let doc = get_policy(&b).await;
        assert_eq!(doc["revision"], 2);
        assert_eq!(doc["in_sync"], true);
        assert_eq!(doc["version"], a.state.authorizer.version());
        b.stop().await;
    }
);

/// Runs the `custodian` binary with `config` and nothing from the
/// environment; returns (success, stdout, stderr).
async fn cli(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
        .env_clear()
        .env("CUSTODIAN_LOG", "warn")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

both_backends!(cli_policy_and_token, async |app: TestApp| {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("custodian.toml");
    let mut toml = format!(
        "data_dir = {:?}\npolicy_dir = {:?}\ninstance_id = \"cli-test\"\n",
        app.config.data_dir, app.config.policy_dir
    );
    if !app.config.database.url.is_empty() {
        toml.push_str(&format!(
            "[database]\nurl = {:?}\n",
            app.config.database.url
        ));
    }
    std::fs::write(&config, toml).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let grant_line = "p, support_agent, customer, read, marketing_analytics";

    // A bad file: refused whole, exit non-zero, nothing stored.
    let bad = file(
        "bad.csv",
        &format!("{SHIPPED}{grant_line}\np, support_agent, customer, read, nosy\n"),
    );
    let (ok, _, err) = cli(&config, &["policy", "import", "--file", &bad]).await;
    assert!(!ok, "{err}");
    assert!(err.contains("unchanged") && err.contains("line"), "{err}");
    assert_eq!(get_policy(&app).await["revision"], 1);

    // A good one: stored, and the running server follows.
    let good = file("good.csv", &format!("{SHIPPED}{grant_line}\n"));
    let (ok, out, err) = cli(&config, &["policy", "import", "--file", &good]).await;
    assert!(ok, "{err}");
    assert!(out.contains("revision 2"), "{out}");
    let start = Instant::now();
    while status_of(
        &app,
        Method::GET,
        "/v1/customers",
        "support_agent",
        "marketing_analytics",
    )
    .await
        != 200
    {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "server did not reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let check = [
        "policy",
        "check",
        "--sub",
        "support_agent",
        "--obj",
        "customer",
        "--act",
        "read",
        "--purpose",
        "marketing_analytics",
    ];
    let (ok, out, err) = cli(&config, &check).await;
    assert!(ok, "{err}");
    assert!(out.contains("ALLOW") && out.contains(grant_line), "{out}");
    let (ok, out, _) = cli(
        &config,
        &[
            "policy",
            "check",
            "--sub",
            "dpo",
            "--obj",
            "customer.email",
            "--act",
            "read_clear",
            "--purpose",
            "compliance_audit",
        ],
    )
    .await;
    assert!(ok);
    assert!(out.contains("DENY"), "{out}");
    let (ok, out, _) = cli(
        &config,
        &[
            "policy",
            "who-can",
            "--obj",
            "customer.email",
            "--act",
            "read_clear",
        ],
    )
    .await;
    assert!(ok);
    assert!(out.contains("crm_service: email_marketing"), "{out}");
    assert!(!out.contains("marketing_analyst"), "{out}");
    let (ok, out, _) = cli(&config, &["policy", "export"]).await;
    assert!(ok);
    assert!(
        out.contains(grant_line) && out.contains("revision 2"),
        "{out}"
    );

    let rows = app.audit_rows().await;
    let cli_rows: Vec<_> = rows
        .iter()
        // A system actor naming the command and the operating-system user.
        .filter(|r| {
            r.0 == format!("cli:policy@{}", custodian::cli::os_user()) && r.1 == "policy.change"
        })
        .map(|r| (r.2.as_str(), r.3))
        .collect();
    assert_eq!(cli_rows, [("deny", 422), ("allow", 200)], "{rows:?}");

    // Dev tokens from the same data directory work against the server (the
    // CLI mints on the system clock: bring the app's clock there first)...
    let behind = custodian::clock::SystemClock.now_secs() - app.clock.now_secs();
    app.clock.advance_secs(behind.max(0));
    let (ok, token, err) = cli(
        &config,
        &[
            "token",
            "--sub",
            "ops",
            "--role",
            "support_agent",
            "--ttl",
            "365d",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let r = app
        .client
        .get(app.url("/v1/customers"))
        .bearer_auth(token.trim())
        .header("x-purpose", "customer_support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // ... and with production keys only there is nothing to mint with.
    let prod = dir.path().join("prod.toml");
    std::fs::write(
        &prod,
        format!(
            "data_dir = {:?}\n[auth]\npublic_keys_file = {:?}\n",
            dir.path().join("prod-data"),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/jwt/rsa_public.pem")
        ),
    )
    .unwrap();
    let (ok, out, err) = cli(&prod, &["token", "--sub", "ops", "--role", "dpo"]).await;
    assert!(!ok);
    assert!(out.is_empty());
    assert!(err.contains("production keys only"), "{err}");
});

both_backends!(
    every_decision_names_the_policy_version_whose_rules_can_be_read_back,
    async |app: TestApp| {
        let create = app.create_customer(alice()).await;
        assert_eq!(create.status(), 201);
        let denied = status_of(
            &app,
            Method::GET,
            "/v1/customers/C-1001",
            "marketing_analyst",
            "customer_support",
        )
        .await;
        assert_eq!(denied, 403);
        let no_purpose = app
            .client
            .get(app.url("/v1/customers/C-1001"))
            .bearer_auth(app.token("s", &["support_agent"]))
            .send()
            .await
            .unwrap();
        assert_eq!(no_purpose.status(), 400);
        let version = app.state.authorizer.version();
        let events = app.audit_events().await;
        let data_events: Vec<_> = events
            .iter()
            .filter(|e| e.event.action.as_str() != "auth.failed")
            .collect();
        assert!(data_events.len() >= 3);
        for e in &data_events {
            assert_eq!(
                e.event.policy_version.map(hex::encode).as_deref(),
                Some(version.as_str()),
                "{:?}",
                e.event.action
            );
        }

        // The compliance officer opens exactly that version's rules, and
        // their hash is the version.
        let r = app
            .as_role(
                Method::GET,
                &format!("/v1/admin/policies/{version}"),
                "compliance_officer",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        let csv = body["csv"].as_str().unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, csv.as_bytes());
        assert_eq!(hex::encode(digest.as_ref()), version);
        assert!(csv.contains("p, support_agent, customer, read, customer_support"));

        // A change keeps the history: the old version still opens, by hash
        // and by revision number, and the list shows both.
        let mut new_csv = SHIPPED.to_owned();
        new_csv.push_str("\np, support_agent, product, write, customer_support\n");
        let r = app
            .as_role(
                Method::POST,
                "/v1/admin/policies",
                "dpo",
                "compliance_audit",
            )
            .json(&json!({ "csv": new_csv }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_ne!(app.state.authorizer.version(), version);
        for path in [
            format!("/v1/admin/policies/{version}"),
            "/v1/admin/policies/1".to_owned(),
        ] {
            let r = app
                .as_role(Method::GET, &path, "compliance_officer", "compliance_audit")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["version"], version.as_str());
            assert!(!body["csv"]
                .as_str()
                .unwrap()
                .contains("product, write, customer_support"));
        }
        let r = app
            .as_role(
                Method::GET,
                "/v1/admin/policies/versions",
                "compliance_officer",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["versions"].as_array().unwrap().len(), 2);
        assert_eq!(body["versions"][1]["version"], version.as_str());

        // Unknown and malformed versions: 404 and 400, and a role without
        // policy rights is refused.
        let r = app
            .as_role(
                Method::GET,
                &format!("/v1/admin/policies/{}", "0".repeat(64)),
                "dpo",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = app
            .as_role(
                Method::GET,
                "/v1/admin/policies/DROP%20TABLE",
                "dpo",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = app
            .as_role(
                Method::GET,
                &format!("/v1/admin/policies/{version}"),
                "marketing_analyst",
                "marketing_analytics",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
);
