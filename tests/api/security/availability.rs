//! API4 at the connection level (finding 4): slow-header clients are cut
//! off after the header-read timeout, connections are bounded overall and
//! per client address, and a normal request is served meanwhile.

use super::*;
use crate::both_backends;
use crate::helpers::*;
use reqwest::Method;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits until the server closes `stream` (EOF or reset); false on `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

both_backends!(
    slow_header_connections_are_closed,
    config: |c: &mut custodian::config::Config| c.server.header_read_timeout_ms = 400,
    async |app: TestApp| {
        let started = Instant::now();
        let mut slow = Vec::new();
        for _ in 0..50 {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.unwrap();
            slow.push(s);
        }
        // An idle connection that never sends a byte is cut off too, and so
        // is a kept-alive one after its first request.
        let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        let mut kept = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        // Trickle one header line per 100 ms: always "active", never done.
        let trickle = async {
            for i in 0..6 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                for s in &mut slow {
                    let _ = s.write_all(format!("x-slow-{i}: 1\r\n").as_bytes()).await;
                }
            }
        };
        let normal = async {
            let r = app.get("/healthz").await;
            assert_eq!(r.status(), 200, "a normal request is served meanwhile");
        };
        tokio::join!(trickle, normal);
        for s in &mut slow {
            assert!(closed_within(s, Duration::from_secs(3)).await, "slow connection left open");
        }
        assert!(closed_within(&mut idle, Duration::from_secs(3)).await, "idle connection left open");
        assert!(closed_within(&mut kept, Duration::from_secs(3)).await, "kept-alive connection left open");
        assert!(started.elapsed() < Duration::from_secs(5));
        let r = app.get("/healthz").await;
        assert_eq!(r.status(), 200);
    }
);

both_backends!(
    connections_are_bounded_per_client_address,
    config: |c: &mut custodian::config::Config| c.server.max_connections_per_ip = 3,
    async |app: TestApp| {
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap());
        }
        // Let the server admit them before the fourth arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = raw_exchange(&app, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n", Duration::from_secs(3)).await;
        assert_eq!(raw_status(&answer), 503, "{answer}");
        assert!(answer.contains("too_many_connections"), "{answer}");
        // Closing one frees its place.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = raw_exchange(
            &app,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(raw_status(&answer), 200, "{answer}");
    }
);

both_backends!(
    a_locked_audit_store_fails_fast_and_turns_readiness_off,
    config: |c: &mut custodian::config::Config| c.audit.write_timeout_ms = 500,
    async |app: TestApp| {
        assert_eq!(app.create_customer(json!({"external_id": "C-1"})).await.status(), 201);
        let read = || {
            app.as_role(Method::GET, "/v1/customers/C-1", "support_agent", "customer_support")
                .send()
        };
        assert_eq!(read().await.unwrap().status(), 200);
        // Someone holds the trail's table: SQLite a write transaction on the
        // audit file, PostgreSQL an ACCESS EXCLUSIVE lock.
        let mut locker = app.state.db.pool.acquire().await.unwrap();
        let lock: &[&str] = match app.backend {
            Backend::Sqlite => &["BEGIN IMMEDIATE", "UPDATE audit_blocks SET instance = instance WHERE 1 = 0"],
            Backend::Postgres => &["BEGIN", "LOCK TABLE audit_blocks IN ACCESS EXCLUSIVE MODE"],
        };
        for sql in lock {
            sqlx::query(sql).execute(&mut *locker).await.unwrap();
        }
        let started = Instant::now();
        let r = read().await.unwrap();
        let waited = started.elapsed();
        assert_error(r, 503, "audit_unavailable", &["C-1"]).await;
        assert!(waited < Duration::from_secs(4), "waited {waited:?}: bounded well under the request timeout");
        let r = app.get("/readyz").await;
        assert_eq!(r.status(), 503, "unready while the trail cannot record");
        // Released: ready again without any traffic, and requests succeed.
        sqlx::query("ROLLBACK").execute(&mut *locker).await.unwrap();
        drop(locker);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if app.get("/readyz").await.status() == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "never ready again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(read().await.unwrap().status(), 200);
    }
);

both_backends!(
    a_trickled_body_gets_the_request_timeout,
    config: |c: &mut custodian::config::Config| c.server.request_timeout_ms = 600,
    async |app: TestApp| {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(raw_status(&answer), 408, "{answer}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
);

both_backends!(
    analytics_keep_answering_under_concurrent_writes,
    config: |c: &mut custodian::config::Config| {
        // The soak's setting: a large budget spent in tiny steps, so every
        // sum carries noise of scale 10^9 and more. A 95% interval found by
        // walking the tail one step at a time spun the async workers for
        // minutes per answer and stalled every other request.
        c.privacy.budget_epsilon = 100.0;
        c.privacy.epsilon_per_query = 0.001;
    },
    async |app: TestApp| {
        custodian::demo::load_demo(&app.state.db, &app.state.vault, 11, custodian::demo::DemoSize {
            customers: 400,
            products: 40,
            orders: 1_500,
            events: 500,
        })
        .await
        .unwrap();
        let as_of = "2026-01-01T00:00:00Z";
        let started = Instant::now();
        let mut tasks = Vec::new();
        // Clusters of the same k at once (they replace the same stored
        // assignments), RFM and segment answers, and writes that move the
        // data under them.
        for i in 0..30 {
            let app_url = app.address.clone();
            let client = app.client.clone();
            let (method, path, role, purpose, body) = match i % 5 {
                0 | 1 => (Method::GET, format!("/v1/profiles/clusters?k=3&as_of={as_of}"),
                    "marketing_analyst", "marketing_analytics", None),
                2 => (Method::GET, format!("/v1/segments/builtin/rfm?as_of={as_of}"),
                    "marketing_analyst", "marketing_analytics", None),
                3 => (Method::POST, "/v1/segments/query".to_owned(), "marketing_analyst",
                    "marketing_analytics", Some(json!({
                        "definition": {"frequency": {"min": 1, "within_days": 3650}},
                        "as_of": as_of,
                        "distributions": ["country", "rfm_cell"]}))),
                _ => (Method::POST, "/v1/events".to_owned(), "ingest_service", "data_ingestion",
                    Some(json!({"events": [{"event_id": format!("avail-{i}"), "kind": "search",
                        "channel": "web", "occurred_at": "2025-12-31T12:00:00Z",
                        "properties": {"query": "teapot", "results": 3}}]}))),
            };
            let token = app.token(&format!("avail-{role}"), &[role]);
            tasks.push(tokio::spawn(async move {
                let mut request = client
                    .request(method, format!("{app_url}{path}"))
                    .bearer_auth(token)
                    .header("x-purpose", purpose);
                if let Some(body) = body {
                    request = request.json(&body);
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                (path, status, response.text().await.unwrap())
            }));
        }
        for task in tasks {
            let (path, status, body) = tokio::time::timeout(Duration::from_secs(120), task)
                .await
                .expect("an answer within two minutes")
                .unwrap();
            assert!(status.is_success(), "{path}: {status} {body}");
        }
        // Thirty answers of a small shop, debug build: seconds, not minutes.
        assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    }
);

both_backends!(
    a_request_cancelled_by_the_timeout_is_audited_and_changes_nothing,
    config: |c: &mut custodian::config::Config| c.server.request_timeout_ms = 700,
    async |app: TestApp| {
        // Someone holds the customers table, so a write waits inside its
        // transaction until the request timeout cancels it.
        let mut locker = app.state.db.pool.acquire().await.unwrap();
        let lock: &[&str] = match app.backend {
            Backend::Sqlite => &["BEGIN IMMEDIATE", "UPDATE customers SET city = city WHERE 1 = 0"],
            Backend::Postgres => &["BEGIN", "LOCK TABLE customers IN ACCESS EXCLUSIVE MODE"],
        };
        for sql in lock {
            sqlx::query(sql).execute(&mut *locker).await.unwrap();
        }
        let before = app.audit_events().await.len();
        let r = app.create_customer(json!({"external_id": "C-late"})).await;
        assert_eq!(r.status(), 504, "the timeout's answer, never a 500");
        sqlx::query("ROLLBACK").execute(&mut *locker).await.unwrap();
        drop(locker);

        // Exactly one event, saying the request was cancelled.
        let deadline = Instant::now() + Duration::from_secs(5);
        let events = loop {
            let events = app.audit_events().await;
            if events.len() > before || Instant::now() > deadline {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let new: Vec<_> = events[before..].iter().map(|e| &e.event).collect();
        assert_eq!(new.len(), 1, "{new:?}");
        assert_eq!(new[0].reason, "outcome:cancelled");
        assert_eq!(new[0].status, 504);
        assert_eq!(new[0].action, custodian::audit::Action::CustomerWrite);
        // And the write did not happen.
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers WHERE external_id = 'C-late'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
);
