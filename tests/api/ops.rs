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

both_backends!(
    metrics_are_described_histograms_with_decisions,
    async |app: TestApp| {
        // One allowed and one denied request, so both decisions are counted.
        let ok = app
            .as_role(
                Method::GET,
                "/v1/customers",
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let denied = app
            .as_role(
                Method::GET,
                "/v1/audit",
                "support_agent",
                "customer_support",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status(), 403);
        let text = app.get("/metrics").await.text().await.unwrap();
        for family in text
            .lines()
            .filter(|l| l.starts_with("# TYPE "))
            .filter_map(|l| l.split_whitespace().nth(2))
        {
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "no HELP for {family}"
            );
        }
        assert!(text.contains("# TYPE custodian_http_request_duration_seconds histogram"));
        assert!(text.contains("custodian_http_request_duration_seconds_bucket{"));
        assert!(text.contains("custodian_audit_healthy 1"), "{text}");
        assert!(text.contains("# TYPE custodian_audit_commit_seconds histogram"));
        assert!(text.contains("custodian_audit_batch_size_bucket{"));
        let line = |decision: &str| {
            text.lines().any(|l| {
                l.starts_with("custodian_http_requests_total{")
                    && l.contains("route=\"/v1/customers\"")
                    && l.contains(&format!("decision=\"{decision}\""))
            }) || text.lines().any(|l| {
                l.starts_with("custodian_http_requests_total{")
                    && l.contains("route=\"/v1/audit\"")
                    && l.contains(&format!("decision=\"{decision}\""))
                    && l.contains("reason=\"policy\"")
            })
        };
        assert!(line("allow") && line("deny"), "{text}");
        // Never a path with an id in it.
        assert!(!text.contains("route=\"/v1/customers/C-"));
    }
);

both_backends!(
    metrics_token_guards_the_scrape,
    config: |c: &mut custodian::config::Config| {
        c.server.metrics_token = Some(custodian::secret::SecretString::new("scrape-secret-1".into()));
    },
    async |app: TestApp| {
        assert_eq!(app.get("/metrics").await.status(), 401);
        let r = app
            .client
            .get(app.url("/metrics"))
            .bearer_auth("scrape-secret-2")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = app
            .client
            .get(app.url("/metrics"))
            .bearer_auth("scrape-secret-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
);

both_backends!(openapi_documents_every_error, async |app: TestApp| {
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["components"]["schemas"]["Error"].is_object());
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            let secured = op.get("security").is_some();
            let mut wanted = vec!["500", "504"];
            if secured {
                wanted.extend(["401", "403", "429", "503"]);
            }
            if op.get("requestBody").is_some() {
                wanted.extend(["400", "413", "415", "422"]);
            }
            for status in wanted {
                let r = responses
                    .get(status)
                    .unwrap_or_else(|| panic!("{method} {path}: no {status}"));
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{method} {path} {status}"
                );
            }
            if secured {
                assert!(responses["429"]["headers"]["Retry-After"].is_object());
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["name"] == "X-Purpose" {
                    let ids = p["schema"]["enum"].as_array().expect("purpose enum");
                    assert!(ids.iter().any(|i| i == "customer_support"));
                }
            }
        }
    }
    assert!(operations > 15);
    let limit = doc["paths"]["/v1/customers"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()
        .clone();
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 1000);
    let link = &doc["paths"]["/v1/customers"]["post"]["responses"]["201"]["links"]["GetCustomer"];
    assert_eq!(link["operationId"], "get_customer");
    assert_eq!(link["parameters"]["id"], "$response.body#/external_id");
    let export = &doc["paths"]["/v1/audit/export"]["get"];
    let names: Vec<&str> = export["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"format") && !names.contains(&"cursor"));
    assert!(export["responses"]["200"]["content"]["application/x-ndjson"].is_object());
    let schema = &doc["components"]["schemas"]["CreateCustomer"]["properties"];
    assert_eq!(
        schema["external_id"]["pattern"],
        custodian::http::validate::ID_PATTERN
    );
    assert_eq!(
        schema["email"]["pattern"],
        custodian::http::validate::EMAIL_PATTERN
    );
    assert_eq!(
        schema["name"]["pattern"],
        custodian::http::validate::TEXT_PATTERN
    );
    assert_eq!(
        schema["signup_at"]["pattern"],
        custodian::http::validate::PAST_TIMESTAMP_PATTERN
    );
});

both_backends!(
    openapi_states_what_the_server_enforces,
    async |app: TestApp| {
        let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
        // Every string path or query parameter says which values are valid, so
        // no generated value is one the request-target guard or a handler
        // refuses while the document calls it valid.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["in"] == "header" {
                        continue;
                    }
                    let schema = &p["schema"];
                    let is_string = schema["type"] == "string"
                        || schema["type"]
                            .as_array()
                            .is_some_and(|t| t.iter().any(|t| t == "string"));
                    if is_string {
                        assert!(
                            schema.get("pattern").is_some() || schema.get("enum").is_some(),
                            "{method} {path} {}: no pattern",
                            p["name"]
                        );
                    }
                    if p["in"] == "path" {
                        assert!(op["responses"]["400"].is_object(), "{method} {path}: 400");
                    }
                }
            }
        }
        let names = |path: &str| -> Vec<String> {
            doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        };
        // Each chart route lists only the parameters it takes.
        assert!(names("/v1/audit/stats/denials").contains(&"limit".to_owned()));
        assert!(!names("/v1/audit/stats/decisions").contains(&"limit".to_owned()));
        let rates = names("/v1/consents/rates");
        assert!(rates.contains(&"bucket".to_owned()) && !rates.contains(&"actor".to_owned()));
        let r = app
            .as_role(
                reqwest::Method::GET,
                "/v1/audit/stats/decisions?limit=3",
                "compliance_officer",
                "compliance_audit",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "another route's parameter");
        let schemas = &doc["components"]["schemas"];
        // The tracking plan in force: `view` needs a product, `search` a query.
        let branches = schemas["EventInput"]["oneOf"].as_array().unwrap();
        let branch = |kind: &str| {
            branches
                .iter()
                .find(|b| b["properties"]["kind"]["const"] == kind)
                .unwrap_or_else(|| panic!("{kind}"))
                .clone()
        };
        assert!(branch("view")["required"]
            .as_array()
            .unwrap()
            .contains(&"product_sku".into()));
        let search = branch("search");
        assert_eq!(
            search["properties"]["properties"]["required"],
            serde_json::json!(["query"])
        );
        assert_eq!(
            search["properties"]["properties"]["additionalProperties"],
            false
        );
        // Exactly one of customer_id and email opens a request.
        assert_eq!(schemas["OpenRequest"]["oneOf"].as_array().unwrap().len(), 2);
        // A segment node has one key; a group is never empty.
        for variant in schemas["Node"]["oneOf"].as_array().unwrap() {
            assert_eq!(variant["additionalProperties"], false, "{variant}");
            if let Some(all) = variant["properties"].get("all") {
                assert_eq!(all["minItems"], 1);
            }
        }
    }
);

both_backends!(
    docs_page_is_self_contained_under_a_strict_policy,
    async |app: TestApp| {
        let page = app.get("/docs").await;
        assert_eq!(page.status(), 200);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        let html = page.text().await.unwrap();
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external assets"
        );
        assert!(!html.contains("<script>"), "no inline script");
        for asset in ["/docs/docs.js", "/docs/docs.css"] {
            let r = app.get(asset).await;
            assert_eq!(r.status(), 200, "{asset}");
            let body = r.text().await.unwrap();
            assert!(
                !body.contains("https://"),
                "{asset} fetches nothing from elsewhere"
            );
        }
        // Other routes keep the API's own policy.
        let health = app.get("/healthz").await;
        assert_eq!(
            health.headers()["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
    }
);

#[test]
fn shipped_production_configuration_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/production.toml");
    let config = custodian::config::Config::load(Some(std::path::Path::new(path))).unwrap();
    assert_eq!(config.mode, custodian::config::Mode::Production);
    assert!(config.server.metrics_token_file.is_some());
    assert!(
        config.server.tls.paths().unwrap().is_some(),
        "TLS terminated here"
    );
    assert!(config
        .auth
        .jwks_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://")));
}
