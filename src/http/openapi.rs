//! The OpenAPI document's shared parts: the error envelope schema, the
//! standard error responses every operation can give, and the runtime facts
//! (the purpose catalog) that make the document exact.
//!
//! Handlers declare what is particular to them (their success responses and
//! any 404, 409 or 422 they give for their own reasons). [`complete`] then
//! walks every operation of the assembled document and adds what follows
//! from its shape, so a route added anywhere gets the same contract without
//! repeating it:
//!
//! | the operation has          | responses added                                   |
//! |----------------------------|---------------------------------------------------|
//! | any                        | 500 `internal`, 504 `timeout`                     |
//! | `security` (a bearer token)| 401, 403, 429 with `Retry-After`, 503             |
//! | an `X-Purpose` parameter   | 400 `purpose_missing` / `purpose_unknown`         |
//! | query parameters           | 400 `invalid_query`, `invalid_request_target`     |
//! | path parameters            | 400 `invalid_request_target`, 404 `not_found`     |
//! | a request body             | 400 `malformed_json`, 413, 415, 422               |
//!
//! A response a handler already declares keeps its description; when it has
//! no body, the error envelope is attached. The `X-Purpose` parameter, and
//! every body property named `purpose`, gets the purpose ids of the running
//! catalog as its `enum` (only the consent-based ones where a schema is
//! listed in `CONSENT_PURPOSE_SCHEMAS`).
//!
//! The request-target guard (`middleware::request_target`) refuses, on
//! every route, a path or query holding a control character. A string path
//! or query parameter that states no `pattern` or `enum` of its own gets
//! [`TARGET_PATTERN`], so the document never calls valid a value the guard
//! refuses.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{
    Content, HeaderBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Response, Schema, Type,
};
use utoipa::{PartialSchema, ToSchema};

use crate::import::event_schema::EventSchema;
use crate::pipeline::purpose::PurposeCatalog;

/// One OpenAPI link: the `status` answer of operation `from` names values
/// that operation `to` takes.
pub struct Link {
    pub from: &'static str,
    pub status: &'static str,
    pub name: &'static str,
    pub to: &'static str,
    /// (target parameter, runtime expression such as `$response.body#/id`).
    pub params: &'static [(&'static str, &'static str)],
}

/// OpenAPI links between operations, so clients and stateful test tools can
/// chain them. Add one for a new route whose answer names something another
/// route takes.
pub const LINKS: &[Link] = &[
    Link {
        from: "create_customer",
        status: "201",
        name: "GetCustomer",
        to: "get_customer",
        params: &[("id", "$response.body#/external_id")],
    },
    Link {
        from: "create_customer",
        status: "201",
        name: "GetCustomerOrders",
        to: "customer_orders",
        params: &[("id", "$response.body#/external_id")],
    },
    Link {
        from: "create_customer",
        status: "201",
        name: "GetConsents",
        to: "get_consents",
        params: &[("customer_id", "$response.body#/external_id")],
    },
    Link {
        from: "create_customer",
        status: "201",
        name: "RecordConsents",
        to: "record_consents",
        params: &[("customer_id", "$response.body#/external_id")],
    },
    Link {
        from: "record_consents",
        status: "201",
        name: "GetReceipt",
        to: "get_receipt",
        params: &[("receipt_id", "$response.body#/receipts/0/receipt_id")],
    },
    Link {
        from: "record_consents",
        status: "201",
        name: "GetConsents",
        to: "get_consents",
        params: &[("customer_id", "$request.path.customer_id")],
    },
    Link {
        from: "resolve_pseudonym",
        status: "200",
        name: "GetCustomer",
        to: "get_customer",
        params: &[("id", "$response.body#/external_id")],
    },
    Link {
        from: "list_customers",
        status: "200",
        name: "NextPage",
        to: "list_customers",
        params: &[("after", "$response.body#/next_cursor")],
    },
    Link {
        from: "list_events",
        status: "200",
        name: "NextPage",
        to: "list_events",
        params: &[("cursor", "$response.body#/next_cursor")],
    },
];

/// Body schemas that take exactly one of two properties (the handler
/// refuses both and neither with 422): stated as a `oneOf` of the two
/// `required` lists, which utoipa's object schema cannot carry.
pub const EXACTLY_ONE_OF: &[(&str, [&str; 2])] = &[("OpenRequest", ["customer_id", "email"])];

/// Schemas whose `purpose` must be one that rests on consent.
const CONSENT_PURPOSE_SCHEMAS: &[&str] = &["ConsentChangeInput"];

/// Name of the error envelope schema in `components.schemas`.
pub const ERROR_SCHEMA: &str = "Error";

/// The error envelope every 4xx and 5xx answer carries.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorEnvelope {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine code such as `purpose_unknown` or `invalid_input`;
    /// each response lists the codes it can carry.
    #[schema(pattern = "^[a-z_]+$")]
    pub code: String,
    /// A human-readable explanation. It never echoes an input value.
    pub message: String,
}

/// One standard error response: status, description and the codes it carries.
struct Standard {
    status: &'static str,
    description: &'static str,
    codes: &'static [&'static str],
}

const INTERNAL: Standard = Standard {
    status: "500",
    description: "Internal error; the cause is logged, never sent",
    codes: &["internal", "integrity_failure"],
};
const TIMEOUT: Standard = Standard {
    status: "504",
    description: "The request took longer than `server.request_timeout_ms` and was cancelled",
    codes: &["timeout"],
};
const UNAUTHENTICATED: Standard = Standard {
    status: "401",
    description: "Missing or invalid bearer token (one answer for every cause)",
    codes: &["unauthenticated"],
};
const FORBIDDEN: Standard = Standard {
    status: "403",
    description: "The policy does not allow this role this action for this purpose",
    codes: &["forbidden", "consent_required"],
};
const RATE_LIMITED: Standard = Standard {
    status: "429",
    description: "Rate limited; retry after the number of seconds in `Retry-After`",
    codes: &["rate_limited"],
};
const UNAVAILABLE: Standard = Standard {
    status: "503",
    description: "The audit trail cannot record or the database is unavailable; no data left",
    codes: &["audit_unavailable", "unavailable"],
};
const PURPOSE: Standard = Standard {
    status: "400",
    description: "`X-Purpose` missing or not in the purpose catalog, or a malformed request",
    codes: &[
        "purpose_missing",
        "purpose_unknown",
        "invalid_query",
        "invalid_request_target",
        "malformed_json",
        "bad_request",
    ],
};
const QUERY: Standard = Standard {
    status: "400",
    description: "A query parameter is malformed or out of range, or the request target holds a control character",
    codes: &["invalid_query", "invalid_request_target", "bad_request"],
};
const TARGET: Standard = Standard {
    status: "400",
    description: "The path holds a control character or invalid UTF-8",
    codes: &["invalid_request_target"],
};

/// A short text value of the segment language: 1 or more characters, none
/// a control character.
const TEXT_VALUE_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]+$";

/// What the request-target guard lets through in a path or query value:
/// no control character (C0, DEL, C1).
pub const TARGET_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
const NOT_FOUND: Standard = Standard {
    status: "404",
    description: "No such resource (also: a customer who has not consented to the purpose)",
    codes: &["not_found"],
};
const MALFORMED: Standard = Standard {
    status: "400",
    description: "The body is not valid JSON",
    codes: &["malformed_json", "bad_request"],
};
const TOO_LARGE: Standard = Standard {
    status: "413",
    description: "The body is larger than `server.max_body_bytes`",
    codes: &["payload_too_large"],
};
const MEDIA_TYPE: Standard = Standard {
    status: "415",
    description: "The body is not sent as `Content-Type: application/json`",
    codes: &["unsupported_media_type"],
};
const INVALID: Standard = Standard {
    status: "422",
    description:
        "The body parsed but a value is invalid (the message names the field, never its value)",
    codes: &["invalid_input"],
};

/// Completes the assembled document: the error schema, the standard error
/// responses of every operation, and the purpose ids as `X-Purpose`'s enum.
pub fn complete(doc: &mut OpenApi, purposes: &PurposeCatalog) {
    let components = doc.components.get_or_insert_with(Default::default);
    let mut schemas = Vec::new();
    <ErrorEnvelope as ToSchema>::schemas(&mut schemas);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    components
        .schemas
        .entry(ERROR_SCHEMA.to_owned())
        .or_insert_with(<ErrorEnvelope as PartialSchema>::schema);
    let purpose_ids: Vec<String> = purposes.all().iter().map(|p| p.id.to_string()).collect();
    let consent_ids: Vec<String> = purposes
        .all()
        .iter()
        .filter(|p| p.consent_required)
        .map(|p| p.id.to_string())
        .collect();
    for (name, schema) in components.schemas.iter_mut() {
        let ids = if CONSENT_PURPOSE_SCHEMAS.contains(&name.as_str()) {
            &consent_ids
        } else {
            &purpose_ids
        };
        constrain_purpose_property(schema, ids);
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_standard_errors(operation);
            constrain_purpose(operation, &purpose_ids);
            constrain_target(operation);
        }
    }
    add_links(doc);
}

/// Adds the [`LINKS`] whose both ends exist in the document.
fn add_links(doc: &mut OpenApi) {
    let exists = |id: &str| {
        doc.paths.paths.values().any(|item| {
            [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                .into_iter()
                .flatten()
                .any(|op| op.operation_id.as_deref() == Some(id))
        })
    };
    let wanted: Vec<&Link> = LINKS
        .iter()
        .filter(|l| exists(l.from) && exists(l.to))
        .collect();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            for l in &wanted {
                if op.operation_id.as_deref() != Some(l.from) {
                    continue;
                }
                if let Some(RefOr::T(response)) = op.responses.responses.get_mut(l.status) {
                    let mut link = LinkBuilder::new().operation_id(l.to);
                    for (param, expression) in l.params {
                        link = link.parameter(*param, *expression);
                    }
                    response
                        .links
                        .insert(l.name.to_owned(), RefOr::T(link.build()));
                }
            }
        }
    }
}

fn add_standard_errors(op: &mut Operation) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_in = |place: ParameterIn| params.iter().any(|p| p.parameter_in == place);
    let has_purpose = params
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case("x-purpose"));
    let has_query = has_in(ParameterIn::Query);
    let has_path = has_in(ParameterIn::Path);
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();

    let mut wanted: Vec<&Standard> = vec![&INTERNAL, &TIMEOUT];
    if secured {
        wanted.extend([&UNAUTHENTICATED, &FORBIDDEN, &RATE_LIMITED, &UNAVAILABLE]);
    }
    if has_purpose {
        wanted.push(&PURPOSE);
    } else if has_query {
        wanted.push(&QUERY);
    } else if has_body {
        wanted.push(&MALFORMED);
    } else if has_path {
        wanted.push(&TARGET);
    }
    if has_path {
        wanted.push(&NOT_FOUND);
    }
    if has_body {
        wanted.extend([&TOO_LARGE, &MEDIA_TYPE, &INVALID]);
    }
    for standard in wanted {
        let entry = op
            .responses
            .responses
            .entry(standard.status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new(describe(standard))));
        if let RefOr::T(response) = entry {
            if response.content.is_empty() {
                response
                    .content
                    .insert("application/json".to_owned(), error_content());
            }
            if standard.status == "429" {
                response
                    .headers
                    .entry("Retry-After".to_owned())
                    .or_insert_with(retry_after);
            }
        }
    }
    // Handler-declared error responses without a body get the envelope too.
    for (status, response) in op.responses.responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(response)) = (is_error, response) {
            if response.content.is_empty() {
                response
                    .content
                    .insert("application/json".to_owned(), error_content());
            }
        }
    }
}

fn describe(standard: &Standard) -> String {
    let codes: Vec<String> = standard.codes.iter().map(|c| format!("`{c}`")).collect();
    format!("{} (codes: {})", standard.description, codes.join(", "))
}

fn error_content() -> Content {
    Content::new(Some(Ref::from_schema_name(ERROR_SCHEMA)))
}

fn retry_after() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        )
        .description(Some("Seconds to wait before retrying"))
        .build()
}

/// A body property named `purpose` (a string) takes one of the catalog's ids.
fn constrain_purpose_property(schema: &mut RefOr<Schema>, purpose_ids: &[String]) {
    let RefOr::T(Schema::Object(object)) = schema else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(property))) = object.properties.get_mut("purpose") {
        if property.enum_values.is_none() {
            property.enum_values = Some(purpose_ids.iter().map(|id| id.as_str().into()).collect());
        }
    }
}

/// A string path or query parameter without a `pattern` or `enum` of its
/// own takes what the request-target guard lets through.
fn constrain_target(op: &mut Operation) {
    let Some(params) = op.parameters.as_mut() else {
        return;
    };
    for p in params.iter_mut() {
        if !matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query) {
            continue;
        }
        if let Some(RefOr::T(Schema::Object(object))) = p.schema.as_mut() {
            let is_string = matches!(
                &object.schema_type,
                utoipa::openapi::schema::SchemaType::Type(Type::String)
            ) || matches!(
                &object.schema_type,
                utoipa::openapi::schema::SchemaType::Array(types) if types.contains(&Type::String)
            );
            if is_string && object.pattern.is_none() && object.enum_values.is_none() {
                object.pattern = Some(TARGET_PATTERN.to_owned());
            }
        }
    }
}

/// `X-Purpose` takes one of the catalog's ids.
fn constrain_purpose(op: &mut Operation, purpose_ids: &[String]) {
    let Some(params) = op.parameters.as_mut() else {
        return;
    };
    for p in params.iter_mut() {
        if p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case("x-purpose") {
            let schema = ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(purpose_ids.iter().cloned()))
                .build();
            p.schema = Some(RefOr::T(Schema::Object(schema)));
        }
    }
}

/// States the event schema in force (`policies/events.toml`) in the body
/// schema of `POST /v1/events`: one `oneOf` branch per planned kind, with
/// `product_sku` required where the kind needs it and the kind's properties
/// (types, required ones, nothing else). Kinds the plan leaves out match no
/// branch, as the handler refuses them.
pub fn plan_events(value: &mut serde_json::Value, plan: &EventSchema) {
    let Some(input) = value.pointer_mut("/components/schemas/EventInput") else {
        return;
    };
    let branches: Vec<serde_json::Value> = plan
        .kinds
        .iter()
        .map(|(kind, k)| {
            let types: serde_json::Map<String, serde_json::Value> = k
                .properties
                .iter()
                .map(|(name, t)| (name.clone(), serde_json::json!({ "type": t.name() })))
                .collect();
            let mut required = vec!["kind"];
            if k.requires_product {
                required.push("product_sku");
            }
            if !k.required.is_empty() {
                required.push("properties");
            }
            let mut fields = serde_json::Map::new();
            fields.insert("kind".to_owned(), serde_json::json!({ "const": kind }));
            fields.insert(
                "properties".to_owned(),
                serde_json::json!({
                    "type": if k.required.is_empty() {
                        serde_json::json!(["object", "null"])
                    } else {
                        serde_json::json!("object")
                    },
                    "properties": types,
                    "additionalProperties": false,
                    "required": k.required,
                }),
            );
            if k.requires_product {
                fields.insert(
                    "product_sku".to_owned(),
                    serde_json::json!({ "type": "string" }),
                );
            }
            serde_json::json!({ "properties": fields, "required": required })
        })
        .collect();
    if let Some(input) = input.as_object_mut() {
        input.insert("oneOf".to_owned(), branches.into());
    }
}

/// The document as served: JSON, with link objects' keys in the camel case
/// the specification spells (utoipa 5 serializes `Link` fields in snake
/// case, which tools then read as links without a target).
pub fn render(doc: &OpenApi) -> serde_json::Value {
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    if let Some(schemas) = value
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        // What utoipa's attributes cannot reach: the groups of the segment
        // language are never empty, and `country.in` holds short texts.
        if let Some(variants) = schemas
            .get_mut("Node")
            .and_then(|n| n.get_mut("oneOf"))
            .and_then(|v| v.as_array_mut())
        {
            for variant in variants {
                // One key per node, as serde's externally tagged enum reads it.
                if let Some(variant) = variant.as_object_mut() {
                    variant.insert("additionalProperties".to_owned(), false.into());
                }
                for group in ["all", "any"] {
                    if let Some(list) = variant
                        .pointer_mut(&format!("/properties/{group}"))
                        .and_then(|l| l.as_object_mut())
                    {
                        list.insert("minItems".to_owned(), 1.into());
                    }
                }
            }
        }
        if let Some(items) = schemas
            .get_mut("TextIn")
            .and_then(|t| t.pointer_mut("/properties/in/items"))
        {
            *items = serde_json::json!({
                "type": "string",
                "pattern": TEXT_VALUE_PATTERN,
                "maxLength": 64
            });
        }
        for (name, [a, b]) in EXACTLY_ONE_OF {
            if let Some(schema) = schemas.get_mut(*name).and_then(|s| s.as_object_mut()) {
                schema.insert(
                    "oneOf".to_owned(),
                    serde_json::json!([{ "required": [a] }, { "required": [b] }]),
                );
            }
        }
    }
    if let Some(paths) = value.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
            for op in item.values_mut().filter_map(|o| o.as_object_mut()) {
                let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut())
                else {
                    continue;
                };
                for response in responses.values_mut() {
                    let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut())
                    else {
                        continue;
                    };
                    for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                        for (snake, camel) in [
                            ("operation_id", "operationId"),
                            ("operation_ref", "operationRef"),
                            ("request_body", "requestBody"),
                        ] {
                            if let Some(v) = link.remove(snake) {
                                link.insert(camel.to_owned(), v);
                            }
                        }
                    }
                }
            }
        }
    }
    value
}
