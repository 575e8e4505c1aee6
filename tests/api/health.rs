use crate::both_backends;
use crate::helpers::*;

both_backends!(healthz_and_readyz_answer, async |app: TestApp| {
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let r = app.get("/readyz").await;
    assert_eq!(
        r.status(),
        200,
        "ready after migrations on {:?}",
        app.backend
    );
    app.stop().await;
});

both_backends!(
    readyz_turns_unready_when_database_is_gone,
    async |app: TestApp| {
        app.state.db.pool.close().await;
        let r = app.get("/readyz").await;
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], "unready");
    }
);

both_backends!(
    unknown_route_is_json_404_with_request_id,
    async |app: TestApp| {
        let r = app.get("/v1/nope").await;
        assert_eq!(r.status(), 404);
        assert!(r.headers().contains_key("x-request-id"));
        assert_eq!(error_code(r).await, "not_found");
    }
);

both_backends!(
    request_id_is_kept_when_sane_and_replaced_when_not,
    async |app: TestApp| {
        let r = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", "abc-123")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-request-id"], "abc-123");
        let r = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", "evil\"id with spaces")
            .send()
            .await
            .unwrap();
        assert_ne!(r.headers()["x-request-id"], "evil\"id with spaces");
    }
);

both_backends!(wrong_method_is_json_405, async |app: TestApp| {
    let r = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "method_not_allowed");
});

both_backends!(openapi_documents_every_route, async |app: TestApp| {
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in ["/healthz", "/readyz", "/metrics"] {
        assert!(paths.contains_key(p), "{p} missing from OpenAPI");
    }
});

both_backends!(metrics_count_requests, async |app: TestApp| {
    app.get("/healthz").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("custodian_http_requests_total"), "{text}");
});
