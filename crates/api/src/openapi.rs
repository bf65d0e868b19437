//! The OpenAPI 3.1 document of the native API, served at `/v1/openapi.json`, derived from the routes and their types.
//!
//! Every native route is registered through `utoipa_axum` together with its `#[utoipa::path]` description, so the
//! routes the server answers and the operations the document lists are one list. What every operation shares is
//! added here once: bearer authentication and the error responses with the stable codes they carry.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, Ref, RefOr};
use utoipa::OpenApi as _;

use crate::contract;

/// The error responses an operation may answer besides its success, with the codes each carries.
const ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "invalid input, naming the field: `invalid_request`, `invalid_schedule`, `unresolved_reference`, \
         `invalid_json`",
    ),
    ("401", "no key, an unknown or revoked key (`unauthorized`), or an expired user token (`token_expired`)"),
    ("403", "a key that may not do this: `forbidden`, or `insufficient_scope` for a scoped user token"),
    ("404", "no such thing for this key (`<what>_not_found`, `route_not_found`): another agent's answer the same"),
    ("405", "`method_not_allowed`"),
    ("409", "`conflict`: it exists already, or a version or dedupKey is being written by another request"),
    ("413", "`payload_too_large`: the body is over 2 MiB"),
    ("429", "`rate_limited` or `quota_exceeded`, with `Retry-After`"),
];

/// The document's shared parts; the router adds the paths and their schemas.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(contract::Error, contract::BatchView, contract::JobStatus, contract::ExecutionStatus)))]
struct Base;

/// The base document the native routes are added to.
pub(crate) fn base() -> OpenApi {
    let mut document = Base::openapi();
    document.info = InfoBuilder::new()
        .title("Sundial")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Self-hosted jobs engine for AI-agent tools: jobs with once, interval and cron schedules whose \
             JavaScript runs in a sandbox, with the user of the conversation that made them.",
        ))
        .build();
    document
}

/// Completes the document the router derived: bearer authentication on every operation, and the error responses.
pub(crate) fn finish(mut document: OpenApi) -> OpenApi {
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("an admin key, an agent key or a user token"))
                .build(),
        ),
    );
    for item in document.paths.paths.values_mut() {
        for operation in
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
        {
            complete(operation);
        }
    }
    document
}

fn complete(operation: &mut Operation) {
    operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    for (status, description) in ERRORS {
        let error = ResponseBuilder::new()
            .description(*description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build())
            .build();
        operation.responses.responses.entry((*status).to_owned()).or_insert(RefOr::T(error));
    }
}

/// The document as served: JSON, with what utoipa cannot say added — each event of the conversation's stream is an
/// SSE event whose `data` is a `Message` in JSON (`contentMediaType`, `contentSchema`).
pub(crate) fn served(document: &OpenApi) -> serde_json::Value {
    let mut value = serde_json::to_value(document).unwrap_or_default();
    let stream = value
        .pointer_mut("/paths/~1v1~1agents~1{agentId}~1users~1{userId}~1messages~1stream/get/responses/200/content/text~1event-stream");
    if let Some(media) = stream {
        media["schema"] = serde_json::json!({
            "type": "object",
            "description": "One Server-Sent Event: `event: message`, the message's `seq` as `id`, the message as JSON in `data`",
            "properties": {
                "event": {"type": "string", "enum": ["message"]},
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/Message"}
                }
            },
            "required": ["data"]
        });
    }
    value
}
