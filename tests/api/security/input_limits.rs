//! API4 unrestricted resource consumption, at the request level: one body
//! limit for every route (finding 5), declared or chunked, whether or not
//! the route reads a body.

use super::*;
use crate::both_backends;
use crate::helpers::*;
use std::time::Duration;

const MB: usize = 1024 * 1024;

both_backends!(
    oversized_bodies_are_413_on_every_route,
    async |app: TestApp| {
        let token = app.token("svc", &["support_agent"]);
        let big = vec![b'x'; 3 * MB];
        // Routes that read no body, with a declared length.
        for path in [
            "/healthz",
            "/v1/customers",
            "/v1/customers/C-1",
            "/no-such-route",
        ] {
            let before = audit_len(&app).await;
            let r = app
                .client
                .get(app.url(path))
                .bearer_auth(&token)
                .header("x-purpose", "customer_support")
                .body(big.clone())
                .send()
                .await;
            // The server may close before the client finished sending.
            if let Ok(r) = r {
                assert_error(r, 413, "payload_too_large", &[]).await;
            }
            assert_eq!(
                audit_len(&app).await,
                before,
                "refused before authentication: {path}"
            );
        }
        // A declared 50 MB that is never sent is refused from the header alone.
        let head = format!(
            "GET /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            50 * MB
        );
        let answer = raw_exchange(&app, head.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(raw_status(&answer), 413, "{answer}");
        assert!(answer.contains("payload_too_large"));
        // Chunked, no length declared: read up to the limit, then refused.
        let mut chunked =
            b"GET /healthz HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            chunked.extend_from_slice(format!("{:x}\r\n", MB).as_bytes());
            chunked.extend(std::iter::repeat_n(b'y', MB));
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let answer = raw_exchange(&app, &chunked, Duration::from_secs(5)).await;
        assert_eq!(raw_status(&answer), 413, "{answer}");
        // A small chunked body on a body-less route is still served.
        let small = b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let answer = raw_exchange(&app, small, Duration::from_secs(5)).await;
        assert_eq!(raw_status(&answer), 200, "{answer}");
        // The JSON routes keep their 413, and nothing was created.
        let customers = customer_count(&app).await;
        let r = app
            .as_role(
                reqwest::Method::POST,
                "/v1/customers",
                "ingest_service",
                "data_ingestion",
            )
            .header("content-type", "application/json")
            .body(format!(
                "{{\"external_id\":\"C-9\",\"name\":\"{}\"}}",
                "n".repeat(2 * MB)
            ))
            .send()
            .await;
        if let Ok(r) = r {
            assert_error(r, 413, "payload_too_large", &[]).await;
        }
        assert_eq!(customer_count(&app).await, customers);
    }
);
