//! Error responses every `/api` operation can give, added to the OpenAPI
//! document in one place rather than repeated on each handler: 401 (the key
//! middleware), 400 (validating extractors), 413/415 (the JSON extractor, on
//! operations with a body), 403 (namespace outside the prefix, on paths with
//! one), 503 (Kubernetes unreachable, helm slots busy) and 500; and 502/504
//! on the operations that run helm. A handler's own entry for a status wins.

use utoipa::Modify;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};

/// The [`Modify`] that adds the shared error responses.
pub struct CommonResponses;

fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build(),
    )
}

fn add(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| error(description));
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/") {
                continue;
            }
            let has_namespace = path.contains("{namespace}") || path.contains("{name}");
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
                (&mut item.put, true),
            ];
            for (operation, mutating) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                add(operation, "400", "Invalid input");
                add(operation, "401", "Invalid or missing API key");
                if has_namespace {
                    add(operation, "403", "Namespace outside the tenant prefix");
                }
                if operation.request_body.is_some() {
                    add(operation, "413", "The body is larger than 1 MiB");
                    add(operation, "415", "The body is not sent as JSON");
                }
                add(operation, "500", "Internal failure");
                add(
                    operation,
                    "503",
                    "The Kubernetes API is unreachable or every helm slot is busy (see Retry-After)",
                );
                if mutating && path.starts_with("/api/releases") {
                    add(operation, "502", "The chart source could not be reached");
                    add(operation, "504", "helm did not finish within its timeout");
                }
            }
        }
    }
}
