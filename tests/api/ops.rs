//! Operations: the HTTP contract's edges (limits, content types, rate
//! limiting), the OpenAPI document, metrics and the docs page.

use crate::both_backends;
use crate::helpers::*;
use reqwest::Method;

both_backends!(out_of_range_limits_are_400, async |app: TestApp| {
    for limit in ["0", "1001", "5000"] {
        let r = app
            .as_role(
                Method::GET,
                &format!("/v1/customers?limit={limit}"),
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "limit={limit}");
        assert_eq!(error_code(r).await, "invalid_query");
    }
    let r = app
        .as_role(
            Method::GET,
            "/v1/customers?limit=1000",
            "support_agent",
            "customer_support",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
});

both_backends!(post_without_content_type_is_415, async |app: TestApp| {
    let r = app
        .as_role(
            Method::POST,
            "/v1/customers",
            "ingest_service",
            "data_ingestion",
        )
        .body(r#"{"external_id":"C-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(error_code(r).await, "unsupported_media_type");
});

both_backends!(
    rate_limited_answers_carry_retry_after,
    config: |c: &mut custodian::config::Config| {
        c.server.rate_limit_per_second = 1;
        c.server.rate_limit_burst = 1;
    },
    async |app: TestApp| {
        let mut limited = None;
        for _ in 0..5 {
            let r = app
                .as_role(Method::GET, "/v1/customers", "support_agent", "customer_support")
                .send()
                .await
                .unwrap();
            if r.status() == 429 {
                limited = Some(r);
                break;
            }
        }
        let r = limited.expect("the second request within a second is limited");
        let retry = r.headers().get("retry-after").expect("Retry-After");
        assert!(retry.to_str().unwrap().parse::<u64>().unwrap() >= 1);
    }
);
