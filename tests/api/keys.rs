//! Key management over HTTP on both backends: status without key material,
//! rotation under concurrent reads, one rotation at a time, resumption of an
//! interrupted rotation, and other instances learning the new version.

use crate::both_backends;
use crate::helpers::*;
use custodian::crypto::rotation;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn customer(i: usize) -> Value {
    json!({
        "external_id": format!("K-{i:04}"),
        "email": format!("keyholder{i}@example.org"),
        "phone": format!("+44 20 7946 {i:04}"),
        "name": format!("Keyholder Number{i}"),
        "birth_date": "1990-01-02",
        "postcode": "EC1A 1BB",
        "city": "London",
        "country": "United Kingdom"
    })
}

async fn create_many(app: &TestApp, n: usize) {
    for i in 0..n {
        assert_eq!(app.create_customer(customer(i)).await.status(), 201);
    }
}

/// Reads customer `i` as the support agent; returns (status, name).
async fn read(app: &TestApp, i: usize) -> (u16, Value) {
    let r = app
        .as_role(
            Method::GET,
            &format!("/v1/customers/K-{i:04}"),
            "support_agent",
            "customer_support",
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn key_versions(app: &TestApp) -> Vec<i64> {
    sqlx::query_scalar("SELECT kek_version FROM data_keys ORDER BY customer_id")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap()
}

/// Waits until the store says no rotation is left to do.
async fn wait_idle(app: &TestApp) -> rotation::KeyStatus {
    for _ in 0..600 {
        let s = rotation::status(
            &app.state.db,
            custodian::clock::Clock::now_micros(&app.clock),
        )
        .await
        .unwrap();
        if s.rotation.state == "idle" {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rotation did not finish within a minute");
}

/// A second gateway instance on the same store and master key.
async fn second_instance(app: &TestApp) -> TestApp {
    let url = app.config.database_url();
    let dir = app.config.data_dir.clone();
    spawn_app_with(app.backend, move |c| {
        c.database.url = url;
        c.data_dir = dir;
        c.instance_id = "test-instance-2".to_owned();
    })
    .await
    .unwrap()
}

both_backends!(
    status_is_metadata_only_and_rotation_is_dpo_only,
    async |app: TestApp| {
        create_many(&app, 3).await;
        let r = app
            .as_role(
                Method::GET,
                "/v1/admin/keys",
                "compliance_officer",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["versions"][0]["version"], 1);
        assert_eq!(body["versions"][0]["status"], "active");
        assert_eq!(body["versions"][0]["data_keys"], 3);
        assert_eq!(body["rotation"]["state"], "idle");
        assert_eq!(body["rotation"]["remaining"], 0);
        assert!(!text.contains("check"), "{text}");
        assert!(!text.contains("wrapped"), "{text}");

        for (role, purpose) in [
            ("marketing_analyst", "marketing_analytics"),
            ("support_agent", "customer_support"),
            ("compliance_officer", "customer_support"),
        ] {
            let r = app
                .as_role(Method::GET, "/v1/admin/keys", role, purpose)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{role}/{purpose}");
        }
        // Reading key metadata is not rotating: compliance_officer may not.
        let r = app
            .as_role(
                Method::POST,
                "/v1/admin/keys/rotate",
                "compliance_officer",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(key_versions(&app).await, vec![1, 1, 1]);
        let rows = app.audit_rows().await;
        let last = rows.last().unwrap();
        assert_eq!(
            (last.1.as_str(), last.2.as_str(), last.3),
            ("key.rotate", "deny", 403)
        );
    }
);

both_backends!(
    rotation_under_concurrent_reads_never_fails_a_request,
    async |app: TestApp| {
        const N: usize = 40;
        create_many(&app, N).await;
        let app = Arc::new(app);
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for r in 0..4 {
            let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
            readers.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut i = r;
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = read(&app, i % N).await;
                    if status == 200 {
                        assert_eq!(body["name"], format!("Keyholder Number{}", i % N));
                    }
                    statuses.push(status);
                    i += 7;
                }
                statuses
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = app
            .as_role(
                Method::POST,
                "/v1/admin/keys/rotate?batch_size=3",
                "dpo",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"version": 2, "resumed": false}));
        let status = wait_idle(&app).await;
        // Keep reading a little after the end too.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for reader in readers {
            let statuses = reader.await.unwrap();
            assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
            total += statuses.len();
        }
        assert!(total > 0);

        assert_eq!(key_versions(&app).await, vec![2; N]);
        let v: Vec<(u32, &str, u64)> = status
            .versions
            .iter()
            .map(|v| (v.version, v.status.as_str(), v.data_keys))
            .collect();
        assert_eq!(v, vec![(1, "retired", 0), (2, "active", N as u64)]);
        assert!(status.versions[1].rotation_finished_at.is_some());
        for i in 0..N {
            let (s, body) = read(&app, i).await;
            assert_eq!(s, 200);
            assert_eq!(body["name"], format!("Keyholder Number{i}"));
        }
        // New customers get their key under the new version.
        assert_eq!(app.create_customer(customer(N)).await.status(), 201);
        assert_eq!(key_versions(&app).await.last(), Some(&2));

        // The request and the job's end are both in the audit trail.
        let mut found = false;
        for _ in 0..50 {
            let rows = app.audit_rows().await;
            let request = rows
                .iter()
                .any(|r| r.0 == "dpo-user" && r.1 == "key.rotate" && r.2 == "allow" && r.3 == 202);
            let job = rows
                .iter()
                .any(|r| r.0 == "system:key-rotation" && r.1 == "key.rotate" && r.2 == "allow");
            if request && job {
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(found, "{:?}", app.audit_rows().await);
    }
);

both_backends!(
    one_rotation_at_a_time_and_stale_lease_is_taken_over,
    async |app: TestApp| {
        create_many(&app, 5).await;
        let now = custodian::clock::Clock::now_micros(&app.clock);
        // Another instance started a rotation and holds a live lease.
        let v = app
            .state
            .vault
            .add_version(&app.state.db, now, Some("elsewhere/job"))
            .await
            .unwrap();
        assert_eq!(v, 2);
        let rotate = || {
            app.as_role(
                Method::POST,
                "/v1/admin/keys/rotate",
                "dpo",
                "compliance_audit",
            )
            .send()
        };
        let r = rotate().await.unwrap();
        assert_eq!(r.status(), 409);
        assert_eq!(error_code(r).await, "conflict");
        let s = rotation::status(&app.state.db, now).await.unwrap();
        assert_eq!(s.rotation.state, "running");
        assert_eq!(s.rotation.remaining, 5);
        // Every customer still reads (old version still loaded).
        for i in 0..5 {
            assert_eq!(read(&app, i).await.0, 200);
        }
        // The other instance died: after the lease expires, this one takes over.
        app.clock
            .advance_secs(rotation::LEASE_MICROS / 1_000_000 + 1);
        let r = rotate().await.unwrap();
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"version": 2, "resumed": true}));
        let s = wait_idle(&app).await;
        assert_eq!(s.versions.len(), 2, "resuming adds no version");
        assert_eq!(key_versions(&app).await, vec![2; 5]);
        // Idle again: the next request starts version 3.
        let r = rotate().await.unwrap();
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["version"], 3);
        wait_idle(&app).await;
        assert_eq!(key_versions(&app).await, vec![3; 5]);
        for i in 0..5 {
            assert_eq!(read(&app, i).await.0, 200);
        }
    }
);

both_backends!(
    interrupted_rotation_resumes_on_restart_and_loses_nothing,
    async |app: TestApp| {
        const N: usize = 12;
        create_many(&app, N).await;
        let db = &app.state.db;
        let now = custodian::clock::Clock::now_micros(&app.clock);
        // A rotation that crashed after one batch: version added, 5 re-wrapped.
        assert_eq!(app.state.vault.add_version(db, now, None).await.unwrap(), 2);
        assert_eq!(app.state.vault.rewrap_batch(db, 5, now).await.unwrap(), 5);
        let s = rotation::status(db, now).await.unwrap();
        assert_eq!(s.rotation.state, "interrupted");
        assert_eq!(s.rotation.remaining, (N - 5) as u64);
        // Mixed versions read fine meanwhile.
        for i in 0..N {
            assert_eq!(read(&app, i).await.0, 200);
        }
        // "Restart": a new instance on the store resumes on its own at start.
        let other = second_instance(&app).await;
        let s = wait_idle(&other).await;
        assert_eq!(s.versions.len(), 2);
        assert!(s.versions[1].rotation_finished_at.is_some());
        assert_eq!(key_versions(&other).await, vec![2; N]);
        for i in 0..N {
            for instance in [&app, &other] {
                let (status, body) = read(instance, i).await;
                assert_eq!(status, 200);
                assert_eq!(body["name"], format!("Keyholder Number{i}"));
                assert_eq!(body["city"], "London");
            }
        }
        other.stop().await;
    }
);

both_backends!(
    other_instances_learn_a_new_version_on_read,
    async |app: TestApp| {
        create_many(&app, 2).await;
        let other = second_instance(&app).await;
        assert_eq!(other.state.vault.keyring().active_version(), 1);
        // This instance rotates (version only); a customer created now has its
        // key under version 2, which the other instance has not loaded yet.
        let now = custodian::clock::Clock::now_micros(&app.clock);
        app.state
            .vault
            .add_version(&app.state.db, now, None)
            .await
            .unwrap();
        assert_eq!(app.create_customer(customer(7)).await.status(), 201);
        let (status, body) = read(&other, 7).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["name"], "Keyholder Number7");
        assert_eq!(other.state.vault.keyring().active_version(), 2);
        // And it finishes the rotation for the first instance's old keys.
        let r = other
            .as_role(
                Method::POST,
                "/v1/admin/keys/rotate",
                "dpo",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        // The other instance's own start-up check may already be resuming
        // the rotation (409: one rotation at a time) or have finished it (then
        // this request starts the next version). Whichever happened, every
        // data key ends up under the newest version and nothing is lost.
        match r.status().as_u16() {
            202 | 409 => {}
            other => panic!("unexpected status {other}"),
        }
        wait_idle(&other).await;
        other.state.vault.refresh(&other.state.db).await.unwrap();
        let active = i64::from(other.state.vault.keyring().active_version());
        assert!(active >= 2);
        assert_eq!(key_versions(&app).await, vec![active; 3]);
        for i in [0, 1, 7] {
            let (status, _) = read(&other, i).await;
            assert_eq!(status, 200);
        }
        other.stop().await;
    }
);

both_backends!(
    a_batch_size_out_of_range_is_refused_before_anything_starts,
    async |app: TestApp| {
        for q in ["batch_size=0", "batch_size=10001"] {
            let r = app
                .as_role(
                    Method::POST,
                    &format!("/v1/admin/keys/rotate?{q}"),
                    "dpo",
                    "compliance_audit",
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{q}");
        }
        let r = app
            .as_role(Method::GET, "/v1/admin/keys", "dpo", "compliance_audit")
            .send()
            .await
            .unwrap();
        let status: Value = r.json().await.unwrap();
        assert_eq!(
            status["rotation"]["target_version"], 1,
            "no rotation started: {status}"
        );
        assert_eq!(status["versions"].as_array().unwrap().len(), 1, "{status}");
    }
);
