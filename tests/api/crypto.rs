//! Encryption at rest and pseudonyms, end to end on both backends: no clear
//! personal data in the store, ciphertexts bound to their row and column,
//! purpose-scoped pseudonyms and their audited resolution, and each role's
//! exact treatment of every customer field.

use crate::both_backends;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Row;

struct Person {
    id: &'static str,
    email: &'static str,
    phone: &'static str,
    name: &'static str,
    birth_date: &'static str,
    postcode: &'static str,
}

const PEOPLE: [Person; 3] = [
    Person {
        id: "P-1",
        email: "zelda.quixote@example.net",
        phone: "+33 1 42 68 53 00",
        name: "Zelda Quixote",
        birth_date: "1971-11-23",
        postcode: "75008",
    },
    Person {
        id: "P-2",
        email: "yannick.brouwer@example.net",
        phone: "+31 20 794 0000",
        name: "Yannick Brouwer",
        birth_date: "1988-02-29",
        postcode: "1012 JS",
    },
    Person {
        id: "P-3",
        email: "xiomara.velasquez@example.net",
        phone: "+34 915 550 123",
        name: "Xiomara Velasquez",
        birth_date: "2001-07-04",
        postcode: "28013",
    },
];

fn body(p: &Person) -> Value {
    json!({
        "external_id": p.id,
        "email": p.email,
        "phone": p.phone,
        "name": p.name,
        "birth_date": p.birth_date,
        "postcode": p.postcode,
        "city": "Lisbon",
        "country": "Portugal"
    })
}

async fn create_people(app: &TestApp) {
    for p in &PEOPLE {
        assert_eq!(app.create_customer(body(p)).await.status(), 201);
    }
}

/// Every personal value (and distinctive parts of it) that must never be
/// stored in clear.
fn secrets() -> Vec<String> {
    let mut out = Vec::new();
    for p in &PEOPLE {
        let local = p.email.split('@').next().unwrap();
        let digits: String = p.phone.chars().filter(char::is_ascii_digit).collect();
        let surname = p.name.split(' ').nth(1).unwrap();
        out.extend([
            p.email.to_owned(),
            local.to_owned(),
            p.phone.to_owned(),
            digits,
            p.name.to_owned(),
            surname.to_owned(),
            p.birth_date.to_owned(),
            p.postcode.to_owned(),
        ]);
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

async fn internal_id(app: &TestApp, external_id: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM customers WHERE external_id = $1")
        .bind(external_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

async fn grant(app: &TestApp, external_id: &str, purpose: &str) {
    let id = internal_id(app, external_id).await;
    sqlx::query(
        "INSERT INTO consent_events (receipt_id, customer_id, purpose, granted, occurred_at, \
         recorded_at, source, actor) VALUES ($1, $2, $3, 1, 1, 1, 'test', 'test')",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(id)
    .bind(purpose)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
}

async fn get_as(app: &TestApp, external_id: &str, role: &str, purpose: &str) -> (u16, String) {
    let r = app
        .as_role(
            Method::GET,
            &format!("/v1/customers/{external_id}"),
            role,
            purpose,
        )
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

both_backends!(
    the_store_holds_no_clear_personal_data,
    async |app: TestApp| {
        create_people(&app).await;
        // Every column of every customer row, plus data keys and the audit trail.
        let mut raw: Vec<u8> = Vec::new();
        let rows = sqlx::query(
        "SELECT external_id, email_ct, email_bidx, phone_ct, phone_bidx, name_ct, birth_date_ct, \
         postcode_ct, city, country FROM customers",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
        assert_eq!(rows.len(), 3);
        for row in &rows {
            for col in [1, 2, 3, 4, 5, 6, 7] {
                let v: Option<Vec<u8>> = row.get(col);
                let v = v.expect("sealed column present");
                assert!(v.len() >= 16, "column {col} looks too short to be sealed");
                raw.extend(v);
            }
            for col in [0, 8, 9] {
                let v: Option<String> = row.get(col);
                raw.extend(v.unwrap_or_default().into_bytes());
            }
        }
        for row in sqlx::query("SELECT wrapped_dek FROM data_keys")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap()
        {
            raw.extend(row.get::<Vec<u8>, _>(0));
        }
        for row in sqlx::query("SELECT customers, events FROM audit_blocks")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap()
        {
            raw.extend(row.get::<String, _>(0).into_bytes());
            raw.extend(row.get::<Vec<u8>, _>(1));
        }
        for s in secrets() {
            assert!(!contains(&raw, &s), "found {s:?} in the store");
        }
        // Plain by design (see SECURITY.md): city and country.
        assert!(contains(&raw, "Lisbon"));

        if app.backend == Backend::Sqlite {
            // The database files (data and audit trail) and their
            // write-ahead logs, byte for byte.
            let dir = &app.config.data_dir;
            let mut files = 0;
            for name in [
                "custodian.db",
                "custodian.db-wal",
                "custodian.audit.db",
                "custodian.audit.db-wal",
            ] {
                let path = dir.join(name);
                if let Ok(bytes) = std::fs::read(&path) {
                    files += 1;
                    for s in secrets() {
                        assert!(!contains(&bytes, &s), "found {s:?} in {name}");
                    }
                }
            }
            assert!(files >= 2, "data and audit files");
        }
    }
);

both_backends!(
    a_ciphertext_copied_to_another_customer_fails_closed,
    async |app: TestApp| {
        create_people(&app).await;
        let a = &PEOPLE[0];
        let b_id = internal_id(&app, "P-2").await;
        sqlx::query(
        "UPDATE customers SET email_ct = (SELECT email_ct FROM customers WHERE external_id = $1) \
         WHERE external_id = $2",
    )
    .bind("P-1")
    .bind("P-2")
    .execute(&app.state.db.pool)
    .await
    .unwrap();
        // The support agent sees e-mail masked, which needs the plaintext.
        let (status, text) = get_as(&app, "P-2", "support_agent", "customer_support").await;
        assert_eq!(status, 500, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "integrity_failure");
        let local = a.email.split('@').next().unwrap();
        assert!(!text.contains(local) && !text.contains("Yannick"), "{text}");
        // The list fails whole too: never a partial page.
        let r = app
            .as_role(
                Method::GET,
                "/v1/customers",
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        assert!(!r.text().await.unwrap().contains(local));
        // Audited, naming the customer whose record failed.
        let rows = app.audit_rows().await;
        let last = rows.last().unwrap();
        assert_eq!(
            (last.1.as_str(), last.2.as_str(), last.3, last.4.as_str()),
            ("customer.read", "deny", 500, "outcome:integrity_failure")
        );
        assert!(app.state.audit.index_now().await);
        let failed = app
            .audit_events()
            .await
            .into_iter()
            .rfind(|e| {
                e.event.status == 500
                    && !e.event.request_id.is_empty()
                    && e.event.resource == "/v1/customers/{id}"
            })
            .unwrap();
        assert_eq!(app.indexed_customers(&failed).await, vec![b_id]);
        // The victim of the copy is intact.
        let (status, text) = get_as(&app, "P-1", "support_agent", "customer_support").await;
        assert_eq!(status, 200, "{text}");
        // A role that does not decrypt e-mail is not affected by it.
        assert_eq!(
            get_as(&app, "P-3", "support_agent", "customer_support")
                .await
                .0,
            200
        );
    }
);

both_backends!(
    a_ciphertext_moved_to_another_column_fails_closed,
    async |app: TestApp| {
        create_people(&app).await;
        sqlx::query("UPDATE customers SET name_ct = email_ct WHERE external_id = $1")
            .bind("P-3")
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        let (status, text) = get_as(&app, "P-3", "support_agent", "customer_support").await;
        assert_eq!(status, 500, "{text}");
        assert!(text.contains("integrity_failure"), "{text}");
        assert!(!text.contains("xiomara"), "{text}");
        let rows = app.audit_rows().await;
        let last = rows.last().unwrap();
        assert_eq!(
            (last.2.as_str(), last.4.as_str()),
            ("deny", "outcome:integrity_failure")
        );
        // A wrapped key moved to another customer fails the same way.
        sqlx::query(
        "UPDATE data_keys SET wrapped_dek = (SELECT wrapped_dek FROM data_keys WHERE customer_id = $1) \
         WHERE customer_id = $2",
    )
    .bind(internal_id(&app, "P-1").await)
    .bind(internal_id(&app, "P-2").await)
    .execute(&app.state.db.pool)
    .await
    .unwrap();
        let (status, text) = get_as(&app, "P-2", "support_agent", "customer_support").await;
        assert_eq!(status, 500);
        assert!(
            text.contains("integrity_failure") && !text.contains("zelda"),
            "{text}"
        );
    }
);

both_backends!(
    pseudonyms_are_purpose_scoped_and_resolvable_by_compliance,
    async |app: TestApp| {
        create_people(&app).await;
        for p in ["P-1", "P-2"] {
            grant(&app, p, "marketing_analytics").await;
            grant(&app, p, "email_marketing").await;
        }
        let token = |text: String| -> String {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["external_id"].as_str().unwrap().to_owned()
        };
        let read = |id: &'static str, role: &'static str, purpose: &'static str| {
            let app = &app;
            async move {
                let (status, text) = get_as(app, id, role, purpose).await;
                assert_eq!(status, 200, "{role}/{purpose}: {text}");
                token(text)
            }
        };
        let a_mkt = read("P-1", "marketing_analyst", "marketing_analytics").await;
        assert!(a_mkt.starts_with("ps_") && a_mkt.len() == 25, "{a_mkt}");
        assert_eq!(
            read("P-1", "marketing_analyst", "marketing_analytics").await,
            a_mkt
        );
        let a_crm = read("P-1", "crm_service", "email_marketing").await;
        assert!(a_crm.starts_with("ps_"));
        assert_ne!(a_crm, a_mkt, "tokens must differ across purposes");
        let b_mkt = read("P-2", "marketing_analyst", "marketing_analytics").await;
        assert_ne!(b_mkt, a_mkt);
        // The same token is stable whoever asks under the purpose.
        assert_eq!(read("P-1", "crm_service", "email_marketing").await, a_crm);

        let resolve = |role: &'static str, body: Value| {
            app.as_role(
                Method::POST,
                "/v1/pseudonyms/resolve",
                role,
                "compliance_audit",
            )
            .json(&body)
            .send()
        };
        let r = resolve(
            "compliance_officer",
            json!({"token": a_mkt, "purpose": "marketing_analytics"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"external_id": "P-1", "purpose": "marketing_analytics"})
        );
        let r = resolve("dpo", json!({"token": a_crm, "purpose": "email_marketing"}))
            .await
            .unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["external_id"], "P-1");
        // A token under the wrong purpose, or altered, resolves to nobody.
        let r = resolve(
            "compliance_officer",
            json!({"token": a_mkt, "purpose": "email_marketing"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 404);
        let mut altered = a_mkt.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        let r = resolve(
            "compliance_officer",
            json!({"token": altered, "purpose": "marketing_analytics"}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 404);
        for bad in [
            json!({"token": "not-a-token", "purpose": "marketing_analytics"}),
            json!({"token": a_mkt, "purpose": "no_such_purpose"}),
            json!({"token": a_mkt}),
        ] {
            let r = resolve("compliance_officer", bad).await.unwrap();
            assert_eq!(r.status(), 422);
            assert!(!r.text().await.unwrap().contains("not-a-token"));
        }
        // Only the roles the policy names may resolve.
        for role in ["marketing_analyst", "crm_service", "support_agent"] {
            let r = resolve(
                role,
                json!({"token": a_mkt, "purpose": "marketing_analytics"}),
            )
            .await
            .unwrap();
            assert_eq!(r.status(), 403, "{role}");
        }
        // Each resolution is audited with the customer it touched.
        let a_id = internal_id(&app, "P-1").await;
        // (actor, decision, status, customer from the index), one per
        // indexed customer, or one with None: a LEFT JOIN on the index.
        let mut rows: Vec<(String, String, u16, Option<i64>)> = Vec::new();
        assert!(app.state.audit.index_now().await);
        for e in app.audit_events().await {
            if e.event.action.as_str() != "pseudonym.resolve" {
                continue;
            }
            let linked = app.indexed_customers(&e).await;
            let row = |c| {
                (
                    e.event.actor.clone(),
                    e.event.decision.as_str().to_owned(),
                    e.event.status,
                    c,
                )
            };
            if linked.is_empty() {
                rows.push(row(None));
            }
            rows.extend(linked.into_iter().map(|c| row(Some(c))));
        }
        let first = &rows[0];
        assert_eq!(first.0, "compliance_officer-user");
        assert_eq!(first.1, "allow");
        assert_eq!(first.2, 200);
        assert_eq!(first.3, Some(a_id));
        assert_eq!(rows.len(), 2 + 2 + 3 + 3);
    }
);

/// What a role sees of a field, derived from policies/policy.csv.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    Clear,
    Masked,
    Pseudonym,
    Absent,
}

both_backends!(
    each_role_sees_exactly_its_treatment,
    async |app: TestApp| {
        use Seen::*;
        create_people(&app).await;
        grant(&app, "P-1", "marketing_analytics").await;
        grant(&app, "P-1", "email_marketing").await;
        let p = &PEOPLE[0];
        const FIELDS: [&str; 9] = [
            "external_id",
            "email",
            "phone",
            "name",
            "birth_date",
            "postcode",
            "city",
            "country",
            "signup_at",
        ];
        // (role, purpose, status, treatment of each field in FIELDS order)
        let table: [(&str, &str, u16, [Seen; 9]); 7] = [
            (
                "support_agent",
                "customer_support",
                200,
                [
                    Clear, Masked, Masked, Clear, Absent, Masked, Clear, Clear, Clear,
                ],
            ),
            (
                "marketing_analyst",
                "marketing_analytics",
                200,
                [
                    Pseudonym, Absent, Absent, Absent, Absent, Absent, Absent, Clear, Absent,
                ],
            ),
            (
                "crm_service",
                "email_marketing",
                200,
                [
                    Pseudonym, Clear, Absent, Clear, Absent, Absent, Absent, Clear, Absent,
                ],
            ),
            (
                "recommendation_service",
                "personalization",
                403,
                [Absent; 9],
            ),
            ("compliance_officer", "compliance_audit", 403, [Absent; 9]),
            ("ingest_service", "data_ingestion", 403, [Absent; 9]),
            ("support_agent", "marketing_analytics", 403, [Absent; 9]),
        ];
        let clear: [&str; 9] = [
            p.id,
            p.email,
            p.phone,
            p.name,
            p.birth_date,
            p.postcode,
            "Lisbon",
            "Portugal",
            "",
        ];
        for (role, purpose, status, seen) in table {
            let (got, text) = get_as(&app, "P-1", role, purpose).await;
            assert_eq!(got, status, "{role}/{purpose}: {text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            if status != 200 {
                assert!(
                    body.get("email").is_none() && !text.contains("zelda"),
                    "{text}"
                );
                continue;
            }
            let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
            for ((field, want), value) in FIELDS.iter().zip(seen).zip(clear) {
                let v = body.get(*field);
                let ctx = format!("{role}/{purpose} {field}: {body}");
                match want {
                    Absent => assert!(v.is_none(), "{ctx}"),
                    Clear if *field == "signup_at" => {
                        assert!(v.is_some_and(Value::is_string), "{ctx}")
                    }
                    Clear => assert_eq!(v.and_then(Value::as_str), Some(value), "{ctx}"),
                    Masked => {
                        let s = v.and_then(Value::as_str).expect(&ctx);
                        assert_ne!(s, value, "{ctx}");
                        assert!(!s.is_empty(), "{ctx}");
                    }
                    Pseudonym => {
                        let s = v.and_then(Value::as_str).expect(&ctx);
                        assert!(
                            s.starts_with("ps_") || s.starts_with("pf_") || s.starts_with("pv_"),
                            "{ctx}"
                        );
                    }
                }
            }
            let expected = seen.iter().filter(|s| **s != Absent).count();
            assert_eq!(
                keys.len(),
                expected,
                "{role}/{purpose}: no extra fields: {keys:?}"
            );
        }
    }
);
