//! Data subject rights over HTTP, on both backends: requests as records,
//! the access document's completeness against the demo shop, portability
//! archives, look-alike customers, rectification, erasure by
//! crypto-shredding (410, pseudonyms, suppression, a row restored from a
//! backup, the certificate), an erasure interrupted between steps, legal
//! holds, and refusals that change nothing.

use crate::both_backends;
use crate::helpers::*;
use custodian::crypto::BlindField;
use custodian::db::customers::{NewCustomer, Profile};
use custodian::db::orders::{NewOrder, OrderKind};
use custodian::demo::{load_demo, DemoSize};
use custodian::domain::PurposeId;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Read;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

const CA: &str = "compliance_audit";

/// A customer row as a backup holds it: external id, e-mail and name
/// ciphertexts, e-mail blind index.
type BackupRow = (String, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

impl TestApp {
    fn dpo(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.as_role(method, path, "dpo", CA)
    }

    async fn open_request(&self, customer: &str, kind: &str) -> Value {
        let r = self
            .dpo(Method::POST, "/v1/dsr")
            .json(&json!({"customer_id": customer, "kind": kind,
                          "requested_by": "data_subject", "channel": "email"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    async fn count(&self, sql: &str, id: i64) -> i64 {
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&self.state.db.pool)
            .await
            .unwrap()
    }

    async fn customer_id(&self, external: &str) -> i64 {
        custodian::db::customers::id_of(&self.state.db, external)
            .await
            .unwrap()
            .unwrap()
    }

    /// The steps recorded in the trail (subject-rights blocks of `dsr.step`).
    async fn trail_steps(&self) -> Vec<String> {
        self.audit_events()
            .await
            .into_iter()
            .filter(|e| e.event.action.as_str() == "dsr.step")
            .filter_map(|e| e.event.subject_rights.map(|b| b.step))
            .collect()
    }

    async fn download(&self, request_id: &str) -> reqwest::Response {
        self.dpo(Method::GET, &format!("/v1/dsr/{request_id}/document"))
            .send()
            .await
            .unwrap()
    }
}

/// Two customers who share a household (name, postcode, city) and an
/// e-mail domain, each with an event, a consent and an order.
async fn lookalikes(app: &TestApp) -> (i64, i64) {
    for (ext, email, phone) in [
        ("C-A1", "sam.taylor@example.org", "+44 20 7946 0001"),
        ("C-B1", "s.taylor@example.org", "+44 20 7946 0002"),
    ] {
        let r = app
            .create_customer(json!({
                "external_id": ext, "email": email, "phone": phone,
                "name": "Sam Taylor", "birth_date": "1990-02-03", "postcode": "EC1A 1BB",
                "city": "London", "country": "United Kingdom"
            }))
            .await;
        assert_eq!(r.status(), 201);
        let r = app
            .as_role(
                Method::POST,
                "/v1/events",
                "ingest_service",
                "data_ingestion",
            )
            .json(
                &json!({"events": [{"event_id": format!("ev-{ext}"), "customer_id": ext,
                "kind": "search", "properties": {"query": "lamps"}, "channel": "web", "occurred_at": "2026-01-05T10:00:00Z"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let r = app
            .as_role(
                Method::POST,
                &format!("/v1/consents/{ext}"),
                "ingest_service",
                "data_ingestion",
            )
            .json(
                &json!({"changes": [{"purpose": "email_marketing", "granted": true,
                "source": "web_form", "evidence": format!("newsletter form v3 for {ext}")}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let a = app.customer_id("C-A1").await;
    let b = app.customer_id("C-B1").await;
    let mut tx = app.state.db.pool.begin().await.unwrap();
    let orders: Vec<NewOrder> = [(a, "ORD-A1"), (b, "ORD-B1")]
        .into_iter()
        .map(|(id, ext)| NewOrder {
            external_id: ext.to_owned(),
            customer_id: Some(id),
            kind: OrderKind::Order,
            return_of: None,
            placed_at: 1_770_000_000_000_000,
            country: Some("United Kingdom".into()),
            total_cents: 1999,
            source: "api".into(),
            currency: None,
        })
        .collect();
    custodian::db::orders::insert_many(&mut tx, &orders, 1_770_000_000_000_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    (a, b)
}

fn b_markers() -> [&'static str; 5] {
    [
        "C-B1",
        "s.taylor@example.org",
        "ev-C-B1",
        "ORD-B1",
        "for C-B1",
    ]
}

both_backends!(
    access_document_holds_everything_the_demo_shop_has_on_one_customer,
    async |app: TestApp| {
        let app = &app;
        load_demo(&app.state.db, &app.state.vault, 7, DemoSize::SMALL)
            .await
            .unwrap();
        let pool = &app.state.db.pool;
        let (id, ext): (i64, String) = sqlx::query_as(
            "SELECT c.id, c.external_id FROM customers c JOIN orders o ON o.customer_id = c.id \
             GROUP BY c.id, c.external_id ORDER BY COUNT(*) DESC, c.id LIMIT 1",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        let orders = app
            .count("SELECT COUNT(*) FROM orders WHERE customer_id = $1", id)
            .await;
        let lines = app
            .count(
                "SELECT COUNT(*) FROM order_lines l JOIN orders o ON o.id = l.order_id \
                 WHERE o.customer_id = $1",
                id,
            )
            .await;
        let events = app
            .count("SELECT COUNT(*) FROM events WHERE customer_id = $1", id)
            .await;
        let consents = app
            .count(
                "SELECT COUNT(*) FROM consent_events WHERE customer_id = $1",
                id,
            )
            .await;
        let states = app
            .count(
                "SELECT COUNT(*) FROM consent_state WHERE customer_id = $1",
                id,
            )
            .await;
        assert!(orders > 0 && lines > 0);
        // Somebody reads the customer: the document must say who, and why.
        let r = app
            .as_role(
                Method::GET,
                &format!("/v1/customers/{ext}"),
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        let req = app.open_request(&ext, "access").await;
        let rid = req["id"].as_str().unwrap();
        assert!(app.state.audit.index_now().await);
        let r = app
            .dpo(Method::POST, &format!("/v1/dsr/{rid}/export"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let view: Value = r.json().await.unwrap();
        assert_eq!(view["status"], "completed");
        assert_eq!(view["document"]["format"], "json");

        let r = app.download(rid).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let sha = r.headers()["x-document-sha256"]
            .to_str()
            .unwrap()
            .to_owned();
        let bytes = r.bytes().await.unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        assert_eq!(hex::encode(digest.as_ref()), sha);
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["format"], "custodian.access.v1");
        assert_eq!(doc["profile"]["customer_id"], ext);
        let email = doc["profile"]["email"].as_str().unwrap();
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT email_bidx FROM customers WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(
            stored.unwrap(),
            app.state
                .vault
                .blind_index(BlindField::Email, email)
                .unwrap()
                .to_vec(),
            "the decrypted e-mail is the stored one"
        );
        let len = |k: &str| doc[k].as_array().unwrap().len() as i64;
        assert_eq!(len("orders"), orders);
        assert_eq!(len("order_lines"), lines);
        assert_eq!(len("events"), events);
        assert_eq!(len("consents"), consents);
        assert_eq!(len("consent_state"), states);
        assert_eq!(doc["segments"], json!([]));
        // The recommendation subsystem answers for itself: no model has
        // been built in this test, so the customer is in none.
        assert_eq!(
            doc["recommendation_profile"]["in_model"], false,
            "{}",
            doc["recommendation_profile"]
        );
        assert_eq!(len("requests"), 1);
        let accesses = doc["accesses"].as_array().unwrap();
        assert!(
            accesses
                .iter()
                .any(|a| a["accessed_by"] == "support_agent-user"
                    && a["purpose"] == "customer_support"
                    && a["action"] == "customer.read"),
            "{accesses:?}"
        );
        // Every order in the document is the customer's.
        let own: Vec<String> =
            sqlx::query_scalar("SELECT external_id FROM orders WHERE customer_id = $1")
                .bind(id)
                .fetch_all(pool)
                .await
                .unwrap();
        for o in doc["orders"].as_array().unwrap() {
            assert!(own.contains(&o["order_id"].as_str().unwrap().to_owned()));
        }

        // The download is a step of the request and an audit event.
        let r = app
            .dpo(Method::GET, &format!("/v1/dsr/{rid}"))
            .send()
            .await
            .unwrap();
        let view: Value = r.json().await.unwrap();
        let steps: Vec<&str> = view["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["opened", "document_ready", "downloaded"]);
        let rows = app.audit_rows().await;
        assert!(app.trail_steps().await.contains(&"downloaded".to_owned()));
        assert!(rows
            .iter()
            .any(|r| r.1 == "dsr.download" && r.2 == "allow" && r.0 == "dpo-user"));
    }
);

both_backends!(
    portability_archive_has_the_documented_layout_and_no_lookalike_data,
    async |app: TestApp| {
        let app = &app;
        let (a, _b) = lookalikes(app).await;
        let req = app.open_request("C-A1", "portability").await;
        let rid = req["id"].as_str().unwrap().to_owned();
        let r = app
            .dpo(Method::POST, &format!("/v1/dsr/{rid}/export"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = app.download(&rid).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/zip");
        let bytes = r.bytes().await.unwrap();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
        let mut names: Vec<String> = zip.file_names().map(str::to_owned).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "README.txt",
                "about.json",
                "accesses.csv",
                "consent_state.csv",
                "consents.csv",
                "events.csv",
                "order_lines.csv",
                "orders.csv",
                "profile.csv",
                "recommendation_profile.json",
                "requests.csv",
                "segments.json",
            ]
        );
        let mut all = String::new();
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).unwrap();
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            if f.name() == "profile.csv" {
                assert!(text.starts_with("customer_id,email,phone,name,"), "{text}");
                assert!(text.contains("sam.taylor@example.org"));
                assert!(text.contains("Sam Taylor"));
            }
            if f.name() == "events.csv" {
                assert_eq!(text.lines().count(), 2, "header and one event: {text}");
            }
            all.push_str(&text);
        }
        assert!(all.contains("ORD-A1") && all.contains("ev-C-A1"));
        for marker in b_markers() {
            assert!(!all.contains(marker), "look-alike data {marker} leaked");
        }

        // The same for the JSON document of an access request.
        let req = app.open_request("C-A1", "access").await;
        let rid2 = req["id"].as_str().unwrap();
        app.dpo(Method::POST, &format!("/v1/dsr/{rid2}/export"))
            .send()
            .await
            .unwrap();
        let text = app.download(rid2).await.text().await.unwrap();
        assert!(text.contains("ORD-A1"));
        for marker in b_markers() {
            assert!(!text.contains(marker), "look-alike data {marker} leaked");
        }

        // Stored encrypted: no plaintext in the chunks.
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT k.ciphertext FROM dsr_document_chunks k JOIN dsr_documents d \
             ON d.id = k.document_id WHERE d.customer_id = $1",
        )
        .bind(a)
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
        assert!(!chunks.is_empty());
        for c in &chunks {
            assert!(!String::from_utf8_lossy(c).contains("Sam Taylor"));
        }

        // Documents expire: after the configured time they are gone.
        app.clock
            .advance_secs(i64::from(app.config.dsr.document_ttl_hours) * 3600 + 1);
        let r = app.download(&rid).await;
        assert_eq!(r.status(), 404);
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM dsr_documents WHERE customer_id = $1",
                a
            )
            .await,
            0
        );
    }
);

/// Records what the erasure asked of a derived structure.
struct CountingHook {
    erased: AtomicI64,
}

impl custodian::dsr::hooks::SubjectHook for CountingHook {
    fn name(&self) -> &'static str {
        "segments"
    }
    fn export<'a>(
        &'a self,
        _db: &'a custodian::db::Db,
        id: i64,
    ) -> custodian::dsr::hooks::HookFuture<'a, Value> {
        Box::pin(async move { Ok(json!([{"segment": "loyal", "customer": id}])) })
    }
    fn erase<'a>(
        &'a self,
        _tx: &'a mut sqlx::Transaction<'static, sqlx::Any>,
        id: i64,
    ) -> custodian::dsr::hooks::HookFuture<'a, u64> {
        Box::pin(async move {
            self.erased.store(id, Ordering::SeqCst);
            Ok(1)
        })
    }
}

both_backends!(
    erasure_shreds_the_customer_and_leaves_a_verifiable_certificate,
    async |app: TestApp| {
        let app = &app;
        let (a, b) = lookalikes(app).await;
        let hook = Arc::new(CountingHook {
            erased: AtomicI64::new(0),
        });
        app.state.dsr.hooks.register(hook.clone());
        let pool = &app.state.db.pool;
        let token = app
            .state
            .vault
            .pseudonymizer()
            .token(&PurposeId("marketing_analytics".into()), "C-A1");
        let resolve = || async {
            app.as_role(
                Method::POST,
                "/v1/pseudonyms/resolve",
                "compliance_officer",
                CA,
            )
            .json(&json!({"token": token, "purpose": "marketing_analytics"}))
            .send()
            .await
            .unwrap()
            .status()
        };
        assert_eq!(resolve().await, 200);
        // The backup: a copy of the customer's row taken before erasure.
        let backup: BackupRow = sqlx::query_as(
            "SELECT external_id, email_ct, name_ct, email_bidx FROM customers WHERE id = $1",
        )
        .bind(a)
        .fetch_one(pool)
        .await
        .unwrap();
        let consents_before = app
            .count(
                "SELECT COUNT(*) FROM consent_events WHERE customer_id = $1",
                a,
            )
            .await;

        let req = app.open_request("C-A1", "erasure").await;
        let rid = req["id"].as_str().unwrap().to_owned();
        let r = app
            .dpo(Method::POST, &format!("/v1/dsr/{rid}/erase"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["request"]["status"], "completed");
        let cert = body["certificate"].clone();
        let tombstone = cert["statement"]["tombstone"].as_str().unwrap().to_owned();
        assert_eq!(hook.erased.load(Ordering::SeqCst), a);

        // Gone from every read path; the look-alike untouched.
        let get = |id: &'static str| async move {
            app.as_role(
                Method::GET,
                &format!("/v1/customers/{id}"),
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap()
        };
        let r = get("C-A1").await;
        assert_eq!(r.status(), 410);
        assert_eq!(error_code(r).await, "erased");
        assert_eq!(get("C-B1").await.status(), 200);
        assert_eq!(resolve().await, 404);
        let r = app
            .dpo(Method::POST, "/v1/dsr")
            .json(&json!({"customer_id": "C-A1", "kind": "access",
                          "requested_by": "data_subject", "channel": "email"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 410);

        // What is left of them.
        assert_eq!(
            app.count("SELECT COUNT(*) FROM data_keys WHERE customer_id = $1", a)
                .await,
            0
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM events WHERE customer_id = $1", a)
                .await,
            0
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM events WHERE customer_id = $1", b)
                .await,
            1
        );
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM consent_events WHERE customer_id = $1 \
                 AND evidence IS NULL AND source = 'erased'",
                a
            )
            .await,
            consents_before,
            "the fact of each consent event stays, without evidence"
        );
        let (order_customer, order_tomb): (Option<i64>, Option<String>) = sqlx::query_as(
            "SELECT customer_id, customer_tombstone FROM orders WHERE external_id = 'ORD-A1'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(order_customer, None);
        assert_eq!(order_tomb.as_deref(), Some(tombstone.as_str()));
        let row: (String, Option<Vec<u8>>, Option<String>) =
            sqlx::query_as("SELECT external_id, email_ct, city FROM customers WHERE id = $1")
                .bind(a)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(
            (row.0.as_str(), row.1, row.2),
            (tombstone.as_str(), None, None)
        );

        // The certificate: verifiable offline, no personal data.
        let text = serde_json::to_string(&cert).unwrap();
        let verified =
            custodian::dsr::certificate::verify(&text, app.state.audit.public_key()).unwrap();
        for personal in ["C-A1", "sam.taylor", "Sam Taylor", "EC1A", "+44"] {
            assert!(!text.contains(personal), "{personal} in the certificate");
        }
        assert!(verified.statement.destroyed_key_id.starts_with("dek:v1:"));
        assert_eq!(verified.statement.removed["events_deleted"], 1);
        assert_eq!(verified.statement.removed["hook:segments"], 1);
        let events = app.audit_events().await;
        let steps: Vec<&str> = verified
            .statement
            .audit_events
            .iter()
            .map(|a| a.step.as_str())
            .collect();
        assert_eq!(
            steps,
            [
                "opened",
                "erasure_started",
                "key_destroyed",
                "rows_removed",
                "derived_removed"
            ]
        );
        for r in &verified.statement.audit_events {
            let e = events
                .iter()
                .find(|e| e.instance == r.instance && e.seq == r.seq)
                .expect("the certificate names stored audit events");
            assert_eq!(e.event.action.as_str(), "dsr.step");
            let block = e.event.subject_rights.as_ref().unwrap();
            assert_eq!(
                (
                    block.request_id.as_str(),
                    block.kind.as_str(),
                    block.step.as_str()
                ),
                (rid.as_str(), "erasure", r.step.as_str())
            );
            assert_eq!(e.event.customers, vec![a]);
        }
        let mut forged = cert.clone();
        forged["statement"]["tombstone"] = json!("t_forged");
        assert!(custodian::dsr::certificate::verify(
            &forged.to_string(),
            app.state.audit.public_key()
        )
        .is_err());
        let r = app
            .as_role(
                Method::GET,
                &format!("/v1/dsr/{rid}/certificate"),
                "compliance_officer",
                CA,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap(), cert);

        // The same person does not come back silently.
        let again = |email: &str, phone: &str| json!({"external_id": "C-NEW", "email": email, "phone": phone, "name": "S T"});
        let r = app
            .create_customer(again("Sam.Taylor@Example.org", "+44 20 7946 9999"))
            .await;
        assert_eq!(r.status(), 409);
        let r = app
            .create_customer(again("other@example.net", "+44 20 7946 0001"))
            .await;
        assert_eq!(r.status(), 409);
        let totals: Value = app
            .as_role(Method::GET, "/v1/dsr/suppression", "compliance_officer", CA)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(totals, json!({"entries": 3, "refusals": 2}));
        // Their old id, without any contact detail, is refused as well.
        let r = app
            .create_customer(json!({"external_id": "C-A1", "name": "S T"}))
            .await;
        assert_eq!(r.status(), 409);
        // And a re-import of the same person (bulk path of the importers).
        let mut tx = pool.begin().await.unwrap();
        let reimport = custodian::import::store::insert_customers(
            &mut tx,
            Some(&app.state.vault),
            &[
                NewCustomer {
                    external_id: "C-A1".into(),
                    profile: Profile::default(),
                    city: None,
                    country: None,
                    signup_at: 0,
                },
                NewCustomer {
                    external_id: "C-OTHER".into(),
                    profile: Profile {
                        email: Some("SAM.TAYLOR@example.org".into()),
                        phone: None,
                        name: None,
                        birth_date: None,
                        postcode: None,
                    },
                    city: None,
                    country: None,
                    signup_at: 0,
                },
                NewCustomer {
                    external_id: "C-FRESH".into(),
                    profile: Profile::default(),
                    city: None,
                    country: None,
                    signup_at: 0,
                },
            ],
            1_780_000_000_000_000,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!((reimport.created, reimport.suppressed), (1, 2));
        let totals: Value = app
            .as_role(Method::GET, "/v1/dsr/suppression", "compliance_officer", CA)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(totals["refusals"], 5);
        let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT blind_index FROM dsr_suppressions")
            .fetch_all(pool)
            .await
            .unwrap();
        assert!(stored.contains(&backup.3.clone().unwrap()));

        // A row restored from the old backup does not decrypt.
        sqlx::query(
            "UPDATE customers SET external_id = $1, email_ct = $2, name_ct = $3, \
             erased_at = NULL WHERE id = $4",
        )
        .bind(&backup.0)
        .bind(&backup.1)
        .bind(&backup.2)
        .bind(a)
        .execute(pool)
        .await
        .unwrap();
        let r = get("C-A1").await;
        assert_eq!(r.status(), 500);
        let text = r.text().await.unwrap();
        assert!(text.contains("integrity_failure"), "{text}");
        assert!(
            !text.contains("Sam") && !text.contains("sam.taylor"),
            "{text}"
        );
    }
);

both_backends!(
    an_erasure_interrupted_between_steps_resumes_at_the_next_start,
    async |app: TestApp| {
        let (a, _) = lookalikes(&app).await;
        let req = app.open_request("C-A1", "erasure").await;
        let uid = req["id"].as_str().unwrap().to_owned();
        let row = custodian::dsr::requests::get(&app.state.db, &uid)
            .await
            .unwrap()
            .unwrap();
        use custodian::dsr::erasure::{erase, Outcome, State};
        let outcome = erase(
            &app.state,
            &custodian::dsr::trail::Actor::System("test:crash"),
            &row,
            Some(State::KeyDestroyed),
        )
        .await
        .unwrap();
        assert!(matches!(outcome, Outcome::Stopped(State::KeyDestroyed)));
        // Half-way: never visible as whole (the key is gone, the id answers
        // 410), though the events are not deleted yet.
        let r = app
            .as_role(
                Method::GET,
                "/v1/customers/C-A1",
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 410);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM events WHERE customer_id = $1", a)
                .await,
            1
        );

        let app = app.restart().await;
        let r = app
            .dpo(Method::GET, &format!("/v1/dsr/{uid}"))
            .send()
            .await
            .unwrap();
        let view: Value = r.json().await.unwrap();
        assert_eq!(view["status"], "completed", "{view}");
        let steps: Vec<(&str, &str)> = view["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["step"].as_str().unwrap(), s["actor"].as_str().unwrap()))
            .collect();
        assert_eq!(
            steps,
            [
                ("opened", "dpo-user"),
                ("erasure_started", "test:crash"),
                ("key_destroyed", "test:crash"),
                ("rows_removed", "system:dsr-resume"),
                ("derived_removed", "system:dsr-resume"),
                ("completed", "system:dsr-resume"),
            ]
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM events WHERE customer_id = $1", a)
                .await,
            0
        );
        let cert = app
            .dpo(Method::GET, &format!("/v1/dsr/{uid}/certificate"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        custodian::dsr::certificate::verify(&cert, app.state.audit.public_key()).unwrap();
        // Running it again changes nothing.
        assert_eq!(
            custodian::dsr::erasure::resume_all(&app.state)
                .await
                .unwrap(),
            0
        );
    }
);

both_backends!(
    a_legal_hold_blocks_erasure_and_the_request_stays_open,
    async |app: TestApp| {
        let app = &app;
        lookalikes(app).await;
        let hold = |role: &str| {
            app.as_role(Method::POST, "/v1/dsr/legal-holds", role, CA)
                .json(&json!({"customer_id": "C-A1", "reason": "litigation 2026-17"}))
        };
        assert_eq!(
            hold("compliance_officer").send().await.unwrap().status(),
            403
        );
        assert_eq!(hold("dpo").send().await.unwrap().status(), 201);
        assert_eq!(hold("dpo").send().await.unwrap().status(), 409);

        let req = app.open_request("C-A1", "erasure").await;
        let rid = req["id"].as_str().unwrap().to_owned();
        let erase = || async {
            app.dpo(Method::POST, &format!("/v1/dsr/{rid}/erase"))
                .send()
                .await
                .unwrap()
        };
        let r = erase().await;
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["request"]["status"], "on_hold");
        assert_eq!(body["request"]["status_reason"], "litigation 2026-17");
        assert_eq!(
            body["request"]["legal_hold"]["reason"],
            "litigation 2026-17"
        );
        assert!(body.get("certificate").is_none());
        let r = app
            .as_role(
                Method::GET,
                "/v1/customers/C-A1",
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "nothing was erased");
        let list: Value = app
            .dpo(Method::GET, "/v1/dsr?status=on_hold")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["requests"].as_array().unwrap().len(), 1);

        let r = app
            .dpo(Method::POST, "/v1/dsr/legal-holds/C-A1/lift")
            .json(&json!({"reason": "case closed"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let view: Value = app
            .dpo(Method::GET, &format!("/v1/dsr/{rid}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view["status"], "received");
        assert_eq!(erase().await.status(), 200);
        let rows = app.audit_rows().await;
        assert!(rows.iter().any(|r| r.1 == "dsr.hold" && r.2 == "allow"));
        let steps = app.trail_steps().await;
        for step in ["on_hold", "hold_lifted", "completed"] {
            assert!(steps.iter().any(|s| s == step), "{step} audited");
        }
    }
);

both_backends!(
    bad_input_and_unauthorized_roles_get_clear_4xx_and_change_nothing,
    async |app: TestApp| {
        let app = &app;
        lookalikes(app).await;
        let post = |body: Value| async move {
            app.dpo(Method::POST, "/v1/dsr")
                .json(&body)
                .send()
                .await
                .unwrap()
        };
        let base = json!({"customer_id": "C-A1", "kind": "access",
                          "requested_by": "data_subject", "channel": "email"});
        let mut unknown = base.clone();
        unknown["customer_id"] = json!("C-NOBODY");
        // An unknown customer is a missing resource (404), as on every
        // route that names one; the schema documents it.
        assert_eq!(post(unknown).await.status(), 404);
        let mut unknown_email = base.clone();
        unknown_email.as_object_mut().unwrap().remove("customer_id");
        unknown_email["email"] = json!("nobody.here@example.org");
        assert_eq!(post(unknown_email).await.status(), 404);
        let mut bad_kind = base.clone();
        bad_kind["kind"] = json!("secret-kind-value");
        let r = post(bad_kind).await;
        assert_eq!(r.status(), 422);
        assert!(!r.text().await.unwrap().contains("secret-kind-value"));
        let mut both = base.clone();
        both["email"] = json!("sam.taylor@example.org");
        assert_eq!(post(both).await.status(), 422);
        let mut extra = base.clone();
        extra["note"] = json!("x");
        assert_eq!(post(extra).await.status(), 422);
        let r = app
            .dpo(Method::POST, "/v1/dsr")
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = app
            .as_role(Method::POST, "/v1/dsr", "support_agent", "customer_support")
            .json(&base)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = app
            .as_role(Method::POST, "/v1/dsr", "compliance_officer", CA)
            .json(&base)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = app
            .dpo(Method::GET, "/v1/dsr/dsr_00000000000000000000000000000000")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // One real request; a duplicate of the same kind is a conflict.
        let first = post(base.clone()).await;
        assert_eq!(first.status(), 201);
        let rid = first.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(post(base.clone()).await.status(), 409);
        // By e-mail through the blind index (any case) it is the same customer.
        let by_email = json!({"email": "SAM.TAYLOR@example.org", "kind": "access",
                              "requested_by": "data_subject", "channel": "web_form"});
        assert_eq!(post(by_email).await.status(), 409);
        // Operations of another kind do not apply.
        for op in ["erase", "rectify"] {
            let r = app
                .dpo(Method::POST, &format!("/v1/dsr/{rid}/{op}"))
                .json(&json!({"name": "x"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 409, "{op}");
        }
        let r = app
            .as_role(
                Method::GET,
                &format!("/v1/dsr/{rid}/document"),
                "compliance_officer",
                CA,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            403,
            "the compliance officer reads requests, not documents"
        );
        let r = app
            .as_role(Method::GET, "/v1/dsr", "compliance_officer", CA)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        let pool = &app.state.db.pool;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dsr_requests")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "refusals changed nothing");
        let rows = app.audit_rows().await;
        assert!(rows.iter().any(|r| r.0 == "support_agent-user"
            && r.1 == "dsr.open"
            && r.2 == "deny"
            && r.3 == 403));
        assert!(rows
            .iter()
            .any(|r| r.1 == "dsr.open" && r.3 == 409 && r.4 == "input:conflict"));
        assert!(rows.iter().any(|r| r.1 == "dsr.open" && r.3 == 422));
    }
);

both_backends!(
    rectification_reencrypts_and_the_trail_names_fields_only,
    async |app: TestApp| {
        let app = &app;
        let (a, _) = lookalikes(app).await;
        let old_key: Vec<u8> =
            sqlx::query_scalar("SELECT wrapped_dek FROM data_keys WHERE customer_id = $1")
                .bind(a)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        let req = app.open_request("C-A1", "rectification").await;
        let rid = req["id"].as_str().unwrap();
        let r = app
            .dpo(Method::POST, &format!("/v1/dsr/{rid}/rectify"))
            .json(
                &json!({"email": "samantha.new@example.com", "name": "Samantha Taylor",
                          "city": "London"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["changed"], json!(["email", "name"]));
        assert_eq!(body["request"]["status"], "completed");
        assert_eq!(
            body["request"]["steps"][1]["detail"]["fields"],
            json!(["email", "name"])
        );

        let find = |email: &str| {
            let index = app
                .state
                .vault
                .blind_index(BlindField::Email, email)
                .unwrap();
            async move {
                custodian::db::customers::find_by_blind_index(
                    &app.state.db,
                    BlindField::Email,
                    &index,
                    10,
                )
                .await
                .unwrap()
                .len()
            }
        };
        assert_eq!(find("samantha.new@example.com").await, 1);
        assert_eq!(find("sam.taylor@example.org").await, 0);
        let new_key: Vec<u8> =
            sqlx::query_scalar("SELECT wrapped_dek FROM data_keys WHERE customer_id = $1")
                .bind(a)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        assert_ne!(old_key, new_key, "a fresh data key");
        let r = app
            .as_role(
                Method::GET,
                "/v1/customers/C-A1",
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        let customer: Value = r.json().await.unwrap();
        assert_eq!(customer["name"], "Samantha Taylor");

        let trail = serde_json::to_string(&app.audit_events().await).unwrap();
        for value in ["samantha", "Samantha", "sam.taylor", "Sam Taylor"] {
            assert!(!trail.contains(value), "{value} in the audit trail");
        }
        assert!(app.trail_steps().await.contains(&"rectified".to_owned()));
    }
);

both_backends!(
    due_dates_follow_the_deadline_and_extend_once,
    async |app: TestApp| {
        let app = &app;
        lookalikes(app).await;
        let req = app.open_request("C-A1", "access").await;
        let rid = req["id"].as_str().unwrap().to_owned();
        let received =
            custodian::clock::parse_rfc3339(req["received_at"].as_str().unwrap()).unwrap();
        let due = custodian::clock::parse_rfc3339(req["due_at"].as_str().unwrap()).unwrap();
        assert_eq!(due - received, 30 * 86_400_000_000);
        let list = |q: &'static str| async move {
            let v: Value = app
                .as_role(
                    Method::GET,
                    &format!("/v1/dsr?{q}"),
                    "compliance_officer",
                    CA,
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["requests"].as_array().unwrap().len()
        };
        assert_eq!(list("overdue=true").await, 0);
        assert_eq!(list("due_within_days=31").await, 1);
        assert_eq!(list("due_within_days=29").await, 0);
        app.clock.advance_secs(31 * 86_400);
        assert_eq!(list("overdue=true").await, 1);
        assert_eq!(list("kind=erasure").await, 0);

        let extend = || async {
            app.dpo(Method::POST, &format!("/v1/dsr/{rid}/extend"))
                .json(&json!({"reason": "complex request, Art. 12(3)"}))
                .send()
                .await
                .unwrap()
        };
        let r = extend().await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let due2 = custodian::clock::parse_rfc3339(v["due_at"].as_str().unwrap()).unwrap();
        assert_eq!(due2 - due, 60 * 86_400_000_000);
        assert_eq!(v["overdue"], false);
        assert_eq!(extend().await.status(), 409, "only once");
        assert_eq!(list("overdue=true").await, 0);
        let r = app
            .dpo(Method::POST, &format!("/v1/dsr/{rid}/refuse"))
            .json(&json!({"reason": "manifestly unfounded"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "refused");
        // Closed: a new request of the same kind may be opened.
        app.open_request("C-A1", "access").await;
    }
);

#[test]
fn the_cli_verifies_a_certificate_offline_and_refuses_a_changed_one() {
    use custodian::dsr::certificate::{sign, AuditRef, Statement, FORMAT};
    let signer = custodian::audit::Signer::ephemeral().unwrap();
    let cert = sign(
        &signer,
        Statement {
            format: FORMAT.into(),
            request_id: "dsr_0123".into(),
            tombstone: "t_4567".into(),
            destroyed_key_id: "dek:v1:89ab".into(),
            received_at: "2026-01-01T00:00:00Z".into(),
            erased_at: "2026-01-02T00:00:00Z".into(),
            issued_at: "2026-01-02T00:00:01Z".into(),
            removed: [("events_deleted".to_owned(), 3)].into_iter().collect(),
            audit_events: vec![AuditRef {
                step: "key_destroyed".into(),
                instance: "gw-1".into(),
                seq: 42,
            }],
            key_id: String::new(),
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.pem"), signer.public_key().to_pem()).unwrap();
    let text = serde_json::to_string_pretty(&cert).unwrap();
    std::fs::write(dir.path().join("cert.json"), &text).unwrap();
    std::fs::write(
        dir.path().join("forged.json"),
        text.replace("t_4567", "t_7654"),
    )
    .unwrap();
    let run = |file: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args(["dsr", "verify-certificate", file, "--public-key", "key.pem"])
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let ok = run("cert.json");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains("certificate valid"), "{stdout}");
    assert!(stdout.contains("gw-1#42 (key_destroyed)"), "{stdout}");
    let bad = run("forged.json");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NOT valid"));
}

/// Measurement, not a check: exports a customer with many events and
/// prints the time and the process's peak memory before and after.
/// `DSR_MEASURE_EVENTS=200000 cargo test --test api dsr::measure -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run by hand"]
async fn measure_export_of_a_customer_with_many_events() {
    fn peak_mb() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }
    let n: usize = std::env::var("DSR_MEASURE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let app = &app;
    lookalikes(app).await;
    let a = app.customer_id("C-A1").await;
    let mut tx = app.state.db.pool.begin().await.unwrap();
    // In chunks, so the generator itself never holds much memory.
    for start in (0..n).step_by(10_000) {
        let chunk: Vec<custodian::db::events::NewEvent> = (start..(start + 10_000).min(n))
            .map(|i| custodian::db::events::NewEvent {
                event_uid: format!("m-{i:08}"),
                customer_id: Some(a),
                kind: "view",
                product_id: None,
                channel: "web",
                occurred_at: 1_770_000_000_000_000 + i as i64,
                properties: None,
            })
            .collect();
        custodian::db::events::insert_many(&mut tx, &chunk, 1_770_000_000_000_000)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let before = peak_mb();
    for (kind, label) in [("access", "json"), ("portability", "zip")] {
        let req = app.open_request("C-A1", kind).await;
        let rid = req["id"].as_str().unwrap().to_owned();
        let t = std::time::Instant::now();
        let r = app
            .dpo(Method::POST, &format!("/v1/dsr/{rid}/export"))
            .send()
            .await
            .unwrap();
        assert!(r.status() == 201 || r.status() == 202, "{}", r.status());
        // A large export finishes in the background (202): wait for it.
        loop {
            let v: Value = app
                .dpo(Method::GET, &format!("/v1/dsr/{rid}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if v["status"] == "completed" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let export = t.elapsed();
        let t = std::time::Instant::now();
        let mut r = app.download(&rid).await;
        let mut bytes = 0usize;
        while let Some(chunk) = r.chunk().await.unwrap() {
            bytes += chunk.len();
        }
        println!(
            "{label}: {n} events, document {:.1} MB, export {:.2} s, download {:.2} s, \
             peak RSS {before:.0} MB before, {:.0} MB after",
            bytes as f64 / 1e6,
            export.as_secs_f64(),
            t.elapsed().as_secs_f64(),
            peak_mb()
        );
    }
}

/// The steps a request view lists: what its state admits, filtered by the
/// caller's policy. The DPO sees them change as the request moves; the
/// compliance officer (who may only read) sees none, and the routes still
/// refuse the officer (the list is advice, not the gate).
mod next_steps {
    use super::*;

    fn steps(view: &Value) -> Vec<String> {
        view["actions"]
            .as_array()
            .unwrap_or_else(|| panic!("no actions in {view}"))
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    }

    async fn listed(app: &TestApp, role: &str, id: &str) -> Value {
        let r = app
            .as_role(Method::GET, "/v1/dsr?limit=100", role, CA)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        page["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .cloned()
            .unwrap()
    }

    both_backends!(
        request_views_list_the_steps_the_role_may_take,
        async |app: TestApp| {
            let app = &app;
            lookalikes(app).await;
            let access = app.open_request("C-A1", "access").await;
            let erasure = app.open_request("C-B1", "erasure").await;
            let (aid, eid) = (
                access["id"].as_str().unwrap(),
                erasure["id"].as_str().unwrap(),
            );
            assert_eq!(steps(&access), ["extend", "refuse", "export", "hold"]);
            assert_eq!(
                steps(&listed(app, "dpo", eid).await),
                ["extend", "refuse", "erase", "hold"]
            );
            // The officer reads the same queue and may take no step.
            for id in [aid, eid] {
                assert!(steps(&listed(app, "compliance_officer", id).await).is_empty());
                let r = app
                    .as_role(
                        Method::GET,
                        &format!("/v1/dsr/{id}"),
                        "compliance_officer",
                        CA,
                    )
                    .send()
                    .await
                    .unwrap();
                assert!(steps(&r.json().await.unwrap()).is_empty());
            }
            let r = app
                .as_role(
                    Method::POST,
                    &format!("/v1/dsr/{aid}/extend"),
                    "compliance_officer",
                    CA,
                )
                .json(&json!({"reason": "complex"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403);

            // Extended once: no second extension offered.
            let r = app
                .dpo(Method::POST, &format!("/v1/dsr/{aid}/extend"))
                .json(&json!({"reason": "complex request"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(steps(&v), ["refuse", "export", "hold"]);
            // Under a hold, the erasure is not offered and the lift is, in the
            // list and in the single view alike.
            let r = app
                .dpo(Method::POST, "/v1/dsr/legal-holds")
                .json(&json!({"customer_id": "C-B1", "reason": "litigation"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let held = listed(app, "dpo", eid).await;
            assert_eq!(steps(&held), ["extend", "refuse", "lift_hold"]);
            assert_eq!(held["legal_hold"]["reason"], "litigation");
            let r = app
                .dpo(Method::GET, &format!("/v1/dsr/{eid}"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                steps(&r.json().await.unwrap()),
                ["extend", "refuse", "lift_hold"]
            );
            // Refused: closed, nothing more to do.
            let r = app
                .dpo(Method::POST, &format!("/v1/dsr/{aid}/refuse"))
                .json(&json!({"reason": "manifestly unfounded"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(steps(&r.json().await.unwrap()).is_empty());
            assert!(steps(&listed(app, "dpo", aid).await).is_empty());
        }
    );
}

both_backends!(
    the_request_list_refuses_what_its_schema_calls_invalid,
    async |app: TestApp| {
        // Out of range or malformed, refused (never clamped or read
        // leniently): what the OpenAPI document's bounds and patterns say.
        for (query, status) in [
            ("limit=0", 400),
            ("limit=1001", 400),
            ("limit=1000", 200),
            ("after=-5", 400),
            ("after=%2B5", 400),
            ("after=05", 400),
            ("after=5", 200),
            ("due_within_days=3651", 400),
            ("status=nonsense", 400),
        ] {
            let r = app
                .as_role(
                    Method::GET,
                    &format!("/v1/dsr?{query}"),
                    "compliance_officer",
                    CA,
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status, "{query}");
        }
    }
);

both_backends!(
    a_legal_hold_for_an_unknown_customer_is_404,
    async |app: TestApp| {
        let r = app
            .dpo(Method::POST, "/v1/dsr/legal-holds")
            .json(&json!({"customer_id": "C-NOBODY", "reason": "litigation"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = app
            .dpo(Method::POST, "/v1/dsr/legal-holds/C-NOBODY/lift")
            .json(&json!({"reason": "settled"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
);
