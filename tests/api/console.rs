//! The compliance console in a real browser (headless Chromium through
//! chromedriver): sign in as a compliance officer, look at the charts,
//! filter the trail, open an event and its policy version, open one
//! customer's view, verify an intact and a tampered store, export, and
//! check that a marketing analyst sees a forbidden message and injected
//! markup stays text; act on data subject requests as a DPO (extend,
//! refuse, hold, an error shown as the gateway's code and message) while
//! an officer who may only read sees no action. Also the page's headers
//! over plain HTTP.
//!
//! Browser tests run on SQLite (the page is the same whatever the store;
//! the endpoints it calls are tested on both backends in `stats` and
//! `audit_http`). Screenshots land in `target/console-screenshots/`.

use reqwest::Method;
use serde_json::Value;

use crate::browser::Browser;
use crate::helpers::{spawn_app, Backend, TestApp};

const OFFICER: &str = "compliance_officer";
const COMPLIANCE: &str = "compliance_audit";
/// An actor name that would run script if the page ever parsed it as HTML.
const MARKUP: &str = "<img src=x onerror=\"document.title='pwned'\">";
const DAY: i64 = 86_400;

/// A demo shop, and two weeks of gateway traffic through the real pipeline
/// (the clock moves a day at a time): support reads, analyst reads (some
/// refused for consent), refused purposes, bad tokens, and an actor whose
/// name is markup. Returns the external id of a customer read every day.
async fn seeded() -> (TestApp, String) {
    // Checkpoints often, so exports carry signed anchors to verify against.
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, |c| {
        c.audit.checkpoint_every_events = 5;
    })
    .await
    .unwrap();
    custodian::demo::load_demo(
        &app.state.db,
        &app.state.vault,
        7,
        custodian::demo::DemoSize::SMALL,
    )
    .await
    .unwrap();
    let watched = "demo-c00003".to_owned();
    // A request received 20 days before the traffic starts: overdue at its end.
    let received = custodian::clock::rfc3339(
        custodian::clock::Clock::now_micros(&app.clock) - 20 * DAY * 1_000_000,
    );
    open_request(&app, &watched, "access", Some(&received)).await;
    for day in 0..14 {
        for i in 0..(3 + day % 4) {
            let id = if i == 0 {
                watched.clone()
            } else {
                format!("demo-c{:05}", (day * 7 + i) % 90 + 10)
            };
            let path = format!("/v1/customers/{id}");
            let r = app
                .as_role(Method::GET, &path, "support_agent", "customer_support")
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            app.as_role(
                Method::GET,
                &path,
                "marketing_analyst",
                "marketing_analytics",
            )
            .send()
            .await
            .unwrap();
        }
        // Refused by policy: support has no rule for marketing.
        let r = app
            .as_role(
                Method::GET,
                &format!("/v1/customers/{watched}"),
                "support_agent",
                "marketing_analytics",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        if day % 3 == 0 {
            let r = app
                .client
                .get(app.url("/v1/customers/demo-c00001"))
                .bearer_auth("not-a-token")
                .header("x-purpose", "customer_support")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        app.clock.advance_secs(DAY);
    }
    let r = app
        .client
        .get(app.url("/v1/customers/demo-c00002"))
        .bearer_auth(app.token(MARKUP, &["support_agent"]))
        .header("x-purpose", "customer_support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    open_request(&app, "demo-c00004", "erasure", None).await;
    assert!(app.state.audit.index_now().await);
    (app, watched)
}

async fn open_request(app: &TestApp, customer: &str, kind: &str, received_at: Option<&str>) {
    let r = app
        .as_role(Method::POST, "/v1/dsr", "dpo", COMPLIANCE)
        .json(&serde_json::json!({
            "customer_id": customer, "kind": kind, "requested_by": "data_subject",
            "channel": "email", "received_at": received_at,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.client.goto(&app.url("/console")).await.unwrap();
    browser.type_into("#token", token).await;
    browser.click("#signin-form button[type=submit]").await;
}

#[tokio::test]
async fn console_page_headers_are_strict() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    for path in [
        "/console",
        "/console/assets/app.js",
        "/console/assets/console.css",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
        ] {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let r = app.get("/console").await;
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains("style="));
    let r = app.get("/console/assets/nope.js").await;
    assert_eq!(r.status(), 404);
    assert_eq!(crate::helpers::error_code(r).await, "not_found");
    // The API keeps its own, stricter policy.
    let r = app.get("/healthz").await;
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
}

#[tokio::test]
async fn officer_works_through_the_console() {
    let Some(browser) = Browser::start("officer_works_through_the_console").await else {
        return;
    };
    let (app, watched) = seeded().await;
    let token = app.token("olivia", &[OFFICER]);
    sign_in(&browser, &app, &token).await;

    // Overview: charts drawn from the aggregation endpoints.
    browser.wait("#chart-decisions svg rect").await;
    browser.wait("#chart-denials svg rect").await;
    browser.wait("#chart-purposes svg rect").await;
    browser.wait("#chart-consent svg").await;
    // Everyone's privacy budget (compliance scope), from the privacy module.
    browser.wait_text("#chart-budget", "Privacy budget").await;
    let kpis = browser.wait_text("#chart-decisions .kpis", "denied").await;
    assert!(kpis.contains("allowed"), "{kpis}");
    let denials = browser
        .wait_text("#chart-denials", "support_agent-user")
        .await;
    assert!(denials.contains("policy:"), "{denials}");
    let purposes = browser
        .wait_text("#chart-purposes", "customer_support")
        .await;
    assert!(purposes.contains("marketing_analytics"), "{purposes}");
    // The token is nowhere but in the API module's memory.
    let stored = browser
        .eval(
            "return [localStorage.length, sessionStorage.length, document.cookie, \
             document.getElementById('token').value]",
        )
        .await;
    assert_eq!(stored, serde_json::json!([0, 0, "", ""]));
    browser.screenshot("overview").await;

    // Audit trail, filtered by decision and actor, newest first.
    browser.click("#tab-trail").await;
    browser.wait("#trail-table tbody tr").await;
    browser.type_into("#f-actor", "support_agent-user").await;
    browser
        .wait("#f-decision")
        .await
        .select_by_value("deny")
        .await
        .unwrap();
    browser.click("#trail-filters button[type=submit]").await;
    browser.wait_text("#trail-table", "denied").await;
    let rows = browser
        .eval(
            "return [...document.querySelectorAll('#trail-table tbody tr')]\
             .map(r => [r.cells[1].textContent, r.cells[4].textContent])",
        )
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 14, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r[0] == "support_agent-user" && r[1] == "denied"));
    // Paging: 14 rows fit one page.
    assert_eq!(
        browser
            .eval("return document.getElementById('page-older').disabled")
            .await,
        true
    );
    browser.click("#trail-table tbody tr button").await;
    let detail = browser.wait_text("#event-detail", "Policy rule").await;
    assert!(detail.contains("marketing_analytics"), "{detail}");
    assert!(detail.contains("403"), "{detail}");
    // The exact policy version that was in force.
    browser.click("#open-policy").await;
    let policy = browser
        .wait_text(
            "#policy-version",
            "p, support_agent, customer, read, customer_support",
        )
        .await;
    assert!(policy.contains("Revision 1"), "{policy}");
    browser.screenshot("trail").await;

    // Injected markup in an actor name is shown as text, never run.
    browser.type_into("#f-actor", MARKUP).await;
    browser
        .wait("#f-decision")
        .await
        .select_by_value("")
        .await
        .unwrap();
    browser.click("#trail-filters button[type=submit]").await;
    browser.wait_text("#trail-table", "onerror").await;
    let seen = browser
        .eval(
            "return [document.querySelector('#trail-table tbody td:nth-child(2)').textContent, \
             document.querySelectorAll('#trail-table img').length, document.title]",
        )
        .await;
    assert_eq!(seen[0], MARKUP);
    assert_eq!(seen[1], 0);
    assert_eq!(seen[2], "Custodian compliance console");
    browser.click("#trail-table tbody tr button").await;
    browser.wait_text("#event-detail", "onerror").await;
    assert_eq!(
        browser
            .eval("return [document.querySelectorAll('img').length, document.title]")
            .await,
        serde_json::json!([0, "Custodian compliance console"])
    );
    browser.screenshot("markup-as-text").await;

    // One customer's view: who looked, under which purpose, consent then.
    browser.click("#tab-customer").await;
    browser.type_into("#c-id", &watched).await;
    browser.click("#customer-form button[type=submit]").await;
    browser.wait("#customer-table tbody tr").await;
    let view = browser
        .eval(
            "return [...document.querySelectorAll('#customer-table tbody tr')]\
             .map(r => [r.cells[1].textContent, r.cells[3].textContent, r.cells[4].textContent, r.cells[6].textContent])",
        )
        .await;
    let view = view.as_array().unwrap();
    // 14 support reads and 14 analyst reads (allowed, or refused for
    // consent); the 14 policy refusals came before any customer was
    // looked up, so they touched nobody. The officer's own consent read
    // of this view may already be there too (the page reads both at once).
    // The DPO's own steps on the customer's request (opening it) are
    // accesses to the customer too, and are listed; they are not counted here.
    let others = view
        .iter()
        .filter(|r| {
            let actor = r[0].as_str().unwrap();
            !actor.starts_with("olivia") && !actor.starts_with("dpo")
        })
        .count();
    assert_eq!(others, 28, "{view:?}");
    assert!(view
        .iter()
        .any(|r| r[0].as_str().unwrap().starts_with("support_agent-user")
            && r[1] == "customer_support"
            && r[2] == "allowed"
            && r[3] == "not needed (contract)"));
    assert!(view.iter().any(|r| r[1] == "marketing_analytics"
        && ["granted", "withdrawn", "none recorded"].contains(&r[3].as_str().unwrap())));
    let open = browser.wait_text("#customer-requests", "access").await;
    assert!(open.contains("received"), "{open}");
    browser.screenshot("customer").await;

    // Integrity: intact, with the key fingerprint; export NDJSON and CSV.
    browser.click("#tab-integrity").await;
    let key_id = browser
        .wait_text("#key-id", &app.state.audit.public_key().key_id())
        .await;
    assert_eq!(key_id, app.state.audit.public_key().key_id());
    browser.click("#run-verify").await;
    let verdict = browser.wait_text("#verdict", "Intact").await;
    assert!(
        verdict.contains("events") && verdict.contains("checkpoints"),
        "{verdict}"
    );
    browser.click("#export-ndjson").await;
    let ndjson = browser.downloaded(".ndjson").await;
    let report = custodian::audit::verify_ndjson(
        std::io::BufReader::new(std::fs::File::open(&ndjson).unwrap()),
        &[*app.state.audit.public_key()],
        &|_| {},
    )
    .unwrap();
    // A filtered export verifies as consistent with its signed manifest,
    // and says it is partial: what the filter left out is not checked.
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(
        report.mode,
        custodian::audit::verify::VerifyMode::FilteredExport,
        "{report:?}"
    );
    // The export follows the trail's current filter: the one event of
    // the actor filtered for above.
    assert_eq!(report.events, 1, "{report:?}");
    browser.wait_text("#export-filter", "onerror").await;
    std::fs::remove_file(&ndjson).unwrap();
    // Cleared filters export the whole trail.
    browser.click("#tab-trail").await;
    browser.click("#trail-filters button[type=reset]").await;
    browser
        .wait_text("#trail-table", "support_agent-user")
        .await;
    browser.click("#tab-integrity").await;
    browser.wait_text("#export-filter", "none").await;
    browser.click("#export-ndjson").await;
    let ndjson = browser.downloaded(".ndjson").await;
    let report = custodian::audit::verify_ndjson(
        std::io::BufReader::new(std::fs::File::open(&ndjson).unwrap()),
        &[*app.state.audit.public_key()],
        &|_| {},
    )
    .unwrap();
    assert!(report.is_intact() && report.events > 100, "{report:?}");
    browser.click("#export-csv").await;
    let csv = std::fs::read_to_string(browser.downloaded(".csv").await).unwrap();
    assert!(csv.lines().count() > 100);
    browser.wait_text("#export-status", "Saved").await;
    browser.screenshot("integrity").await;

    // Requests: the queue by due date, the overdue one marked in words.
    browser.click("#tab-requests").await;
    browser.wait("#requests-table tbody tr").await;
    let queue = browser
        .eval(
            "return [...document.querySelectorAll('#requests-table tbody tr')]\
             .map(r => [r.className, r.cells[1].textContent, r.cells[2].textContent, r.cells[6].textContent])",
        )
        .await;
    // Overdue by the gateway's clock (the test's), in words, not colour only.
    assert_eq!(queue[0][0], "overdue", "{queue}");
    assert_eq!(queue[0][1], "access");
    assert_eq!(queue[0][2], watched.as_str());
    assert!(
        queue[0][3].as_str().unwrap().starts_with("overdue"),
        "{queue}"
    );
    assert_eq!(queue[1][0], "", "{queue}");
    assert_eq!(queue[1][1], "erasure");
    assert!(queue[1][3].as_str().unwrap().starts_with("due"), "{queue}");
    browser.screenshot("requests").await;

    // Signing out forgets the token.
    browser.click("#sign-out").await;
    browser.wait("#signin-form").await;
    assert_eq!(
        browser
            .eval("return document.getElementById('app').hidden")
            .await,
        true
    );
    browser.close().await;
}

#[tokio::test]
async fn console_names_the_tampered_event() {
    let Some(browser) = Browser::start("console_names_the_tampered_event").await else {
        return;
    };
    let (app, _) = seeded().await;
    app.edit_audit_block("test-instance", 5, |events| {
        let e = events.iter_mut().find(|e| e.seq == 5).unwrap();
        e.event.actor = "someone-else".into();
    })
    .await;
    let token = app.token("olivia", &[OFFICER]);
    sign_in(&browser, &app, &token).await;
    browser.wait("#chart-decisions").await;
    browser.click("#tab-integrity").await;
    browser.click("#run-verify").await;
    browser.wait_text("#verdict", "Broken").await;
    assert_eq!(browser.wait_text("#broken-seq", "5").await, "5");
    assert_eq!(
        browser.wait_text("#broken-kind", "modified").await,
        "modified"
    );
    assert_eq!(
        browser.wait_text("#broken-instance", "test").await,
        "test-instance"
    );
    browser.screenshot("integrity-tampered").await;
    browser.close().await;
}

#[tokio::test]
async fn console_tells_other_roles_they_are_not_allowed() {
    let Some(browser) = Browser::start("console_tells_other_roles_they_are_not_allowed").await
    else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    // A token the gateway refuses: back to sign-in, with a message.
    sign_in(&browser, &app, "not-a-token").await;
    browser.wait_text("#signin-error", "sign in again").await;

    let token = app.token("mallory", &["marketing_analyst"]);
    sign_in(&browser, &app, &token).await;
    let message = browser.wait_text("#forbidden", "Not allowed").await;
    assert!(message.contains("compliance_audit"), "{message}");
    assert_eq!(
        browser
            .eval(
                "return ['tabs', 'view-overview', 'view-trail']\
                 .map(id => getComputedStyle(document.getElementById(id)).display)"
            )
            .await,
        serde_json::json!(["none", "none", "none"])
    );
    browser.screenshot("forbidden").await;
    browser.close().await;
    // The refusal is in the trail like any other.
    let denied = app
        .audit_rows()
        .await
        .into_iter()
        .filter(|(actor, action, decision, status, _)| {
            actor == "mallory" && action == "audit.read" && decision == "deny" && *status == 403
        })
        .count();
    assert_eq!(denied, 1);
}

/// The page's chart calls are refused for roles without audit rights too
/// (the page cannot do what its user's role cannot).
#[tokio::test]
async fn chart_endpoints_refuse_other_roles() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    for path in [
        "/v1/audit/stats/decisions",
        "/v1/audit/stats/denials",
        "/v1/audit/stats/purposes",
        "/v1/consents/rates",
    ] {
        let r = app
            .as_role(
                Method::GET,
                path,
                "marketing_analyst",
                "marketing_analytics",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let r = app
            .as_role(Method::GET, path, OFFICER, COMPLIANCE)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let _: Value = r.json().await.unwrap();
    }
}

/// `2026-05-28T12:00:00.123Z` → `2026-05-28 12:00:00 UTC`, as the page writes it.
fn shown(rfc3339: &str) -> String {
    format!("{} UTC", rfc3339[..19].replace('T', " "))
}

async fn request_view(app: &TestApp, id: &str) -> Value {
    let r = app
        .as_role(Method::GET, &format!("/v1/dsr/{id}"), "dpo", COMPLIANCE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The text of the row of request `id` (all its cells).
async fn row_text(browser: &Browser, id: &str) -> Vec<String> {
    let cells = browser
        .eval(&format!(
            "return [...document.querySelectorAll('#requests-table tbody tr')]\
             .filter(r => r.cells[0].textContent === '{id}')\
             .flatMap(r => [...r.cells].map(c => c.textContent))"
        ))
        .await;
    serde_json::from_value(cells).unwrap()
}

async fn row_actions(browser: &Browser, id: &str) -> Vec<String> {
    let names = browser
        .eval(&format!(
            "return [...document.querySelectorAll('#requests-table button[data-request=\"{id}\"]')]\
             .map(b => b.dataset.action)"
        ))
        .await;
    serde_json::from_value(names).unwrap()
}

/// Opens the dialog of `action` on request `id`, types `reason`, confirms.
async fn take_step(browser: &Browser, id: &str, action: &str, reason: &str) {
    browser
        .click(&format!(
            "#requests-table button[data-action={action}][data-request=\"{id}\"]"
        ))
        .await;
    browser.wait("#dsr-dialog[open] #dsr-reason").await;
    // The reason field has the focus: typing goes straight into it.
    assert_eq!(
        browser.eval("return document.activeElement.id").await,
        "dsr-reason"
    );
    browser.type_into("#dsr-reason", reason).await;
    browser.click("#dsr-confirm").await;
}

#[tokio::test]
async fn dpo_acts_on_requests_and_a_reader_sees_no_action() {
    let Some(browser) = Browser::start("dpo_acts_on_requests_and_a_reader_sees_no_action").await
    else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    custodian::demo::load_demo(
        &app.state.db,
        &app.state.vault,
        7,
        custodian::demo::DemoSize::SMALL,
    )
    .await
    .unwrap();
    open_request(&app, "demo-c00003", "access", None).await;
    open_request(&app, "demo-c00004", "erasure", None).await;
    open_request(&app, "demo-c00005", "rectification", None).await;
    let r = app
        .as_role(Method::GET, "/v1/dsr", "dpo", COMPLIANCE)
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    let id_of = |customer: &str| {
        page["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["customer"] == customer)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (access, erasure, rectification) = (
        id_of("demo-c00003"),
        id_of("demo-c00004"),
        id_of("demo-c00005"),
    );

    // A compliance officer reads the queue and is offered no step.
    sign_in(&browser, &app, &app.token("olivia", &[OFFICER])).await;
    browser.click("#tab-requests").await;
    browser.wait("#requests-table tbody tr").await;
    browser
        .wait_text("#requests-read-only", "take no step")
        .await;
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#requests-table button').length")
            .await,
        0
    );
    browser.screenshot("requests-read-only").await;
    browser.click("#sign-out").await;
    browser.wait("#signin-form").await;

    // The DPO: the steps each request admits.
    sign_in(&browser, &app, &app.token("dana", &["dpo"])).await;
    browser.click("#tab-requests").await;
    browser.wait("#requests-table tbody tr button").await;
    assert!(browser
        .client
        .find(fantoccini::Locator::Css("#requests-read-only"))
        .await
        .is_err());
    assert_eq!(
        row_actions(&browser, &access).await,
        ["extend", "refuse", "export", "hold"]
    );
    assert_eq!(
        row_actions(&browser, &erasure).await,
        ["extend", "refuse", "erase", "hold"]
    );
    assert_eq!(
        row_actions(&browser, &rectification).await,
        ["extend", "refuse", "rectify", "hold"]
    );

    // Extend: the new due date is in the message and in the row.
    let before = request_view(&app, &access).await["due_at"]
        .as_str()
        .unwrap()
        .to_owned();
    browser
        .click(&format!(
            "#requests-table button[data-action=extend][data-request=\"{access}\"]"
        ))
        .await;
    browser.wait("#dsr-dialog[open] #dsr-reason").await;
    browser.screenshot("request-extend-dialog").await;
    // Escape closes the dialog without a call; focus returns to the button.
    browser
        .wait("#dsr-reason")
        .await
        .send_keys("\u{e00c}")
        .await
        .unwrap();
    assert_eq!(
        browser
            .eval(
                "return [document.getElementById('dsr-dialog').open, \
                 document.activeElement.dataset.action]"
            )
            .await,
        serde_json::json!([false, "extend"])
    );
    take_step(&browser, &access, "extend", "complex request: many systems").await;
    let message = browser.wait_text("#requests-message", "Extended").await;
    let after = request_view(&app, &access).await;
    let due = after["due_at"].as_str().unwrap();
    assert_ne!(due, before);
    assert_eq!(after["extension_reason"], "complex request: many systems");
    assert!(message.contains(&shown(due)), "{message} / {due}");
    let row = row_text(&browser, &access).await;
    assert_eq!(row[5], shown(due), "{row:?}");
    assert_eq!(
        row_actions(&browser, &access).await,
        ["refuse", "export", "hold"]
    );

    // The gateway's refusal, as its code and message: the request was
    // extended behind the page's back, so a second extension is a 409.
    let r = app
        .as_role(
            Method::POST,
            &format!("/v1/dsr/{rectification}/extend"),
            "dpo",
            COMPLIANCE,
        )
        .json(&serde_json::json!({"reason": "elsewhere"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    take_step(&browser, &rectification, "extend", "again").await;
    let error = browser.wait_text("#dsr-error-text", "conflict").await;
    assert_eq!(
        error,
        "Refused (conflict): the request was already extended once, or is closed"
    );
    browser.screenshot("request-error").await;
    // Closing the dialog refreshes the stale list: no second Extend.
    browser.click("#dsr-cancel").await;
    for _ in 0..100 {
        if !row_actions(&browser, &rectification)
            .await
            .contains(&"extend".to_owned())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        row_actions(&browser, &rectification).await,
        ["refuse", "rectify", "hold"]
    );

    // Refuse with a reason that is markup: shown as text, never run.
    take_step(&browser, &erasure, "refuse", MARKUP).await;
    browser.wait_text("#requests-message", "Refused").await;
    let row = row_text(&browser, &erasure).await;
    assert_eq!(row[3], format!("refused ({MARKUP})"), "{row:?}");
    assert!(row_actions(&browser, &erasure).await.is_empty());
    assert_eq!(
        browser
            .eval("return [document.querySelectorAll('img').length, document.title]")
            .await,
        serde_json::json!([0, "Custodian compliance console"])
    );
    assert_eq!(request_view(&app, &erasure).await["status"], "refused");

    // A legal hold on the rectification request's customer.
    take_step(&browser, &rectification, "hold", "litigation pending").await;
    browser
        .wait_text("#requests-message", "Legal hold placed")
        .await;
    let row = row_text(&browser, &rectification).await;
    assert!(row[3].contains("legal hold"), "{row:?}");
    assert_eq!(
        row_actions(&browser, &rectification).await,
        ["refuse", "rectify", "lift_hold"]
    );
    let view = request_view(&app, &rectification).await;
    assert_eq!(view["legal_hold"]["reason"], "litigation pending");
    assert_eq!(view["legal_hold"]["set_by"], "dana");
    browser.screenshot("requests-actions").await;
    browser.close().await;

    // Each step went through the gate under the DPO's name and purpose.
    let rows = app.audit_rows().await;
    let count = |action: &str, status: i64| {
        rows.iter()
            .filter(|(actor, a, _, s, _)| actor == "dana" && a == action && *s == status)
            .count()
    };
    assert_eq!(count("dsr.manage", 200), 2, "extend and refuse");
    assert_eq!(count("dsr.manage", 409), 1, "the refused second extension");
    assert_eq!(count("dsr.hold", 201), 1);
}
