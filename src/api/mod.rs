//! The HTTP layer: one file per resource, the router and the OpenAPI
//! document built from the same `routes!` lists (so they cannot drift),
//! request ids, one log line and one metrics sample per request.

pub mod bootstrap;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod namespaces;
pub mod releases;
pub mod responses;
pub mod routes;
pub mod sidecar;
pub mod state;
#[cfg(test)]
mod tests;
pub mod tunnels;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::require_api_key;
use crate::error::{ApiError, Code};
pub use state::{App, AppState};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The request id header, accepted from callers and echoed back.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(OpenApi)]
#[openapi(
    info(title = "paas-operator", description = "Helm operations over HTTP for the PaaS platform. Send `X-API-Key` on every /api path."),
    modifiers(&ApiKeyScheme),
    tags((name = "releases", description = "Helm releases in tenant namespaces"),
         (name = "namespaces", description = "Tenant namespaces"),
         (name = "routes", description = "Public exposure: routes to releases' Services (shared Cloudflare Tunnel or Ingress)"),
         (name = "tunnels", description = "Dedicated Cloudflare Tunnels for customers' devices"),
         (name = "health", description = "Liveness, readiness and Prometheus metrics (no API key)")),
)]
struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(metrics::metrics))
}

fn protected_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(releases::install_release))
        .routes(routes!(
            releases::get_release,
            releases::upgrade_release,
            releases::uninstall_release
        ))
        .routes(routes!(releases::rollback_release))
        .routes(routes!(releases::list_revisions))
        .routes(routes!(releases::release_status))
        .routes(routes!(sidecar::attach_sidecar, sidecar::detach_sidecar))
        .routes(routes!(bootstrap::init_n8n))
        .routes(routes!(routes::list_routes, routes::create_route))
        .routes(routes!(routes::delete_route))
        .routes(routes!(routes::reconcile_routes))
        .routes(routes!(tunnels::create_tunnel))
        .routes(routes!(tunnels::tunnel_status, tunnels::delete_tunnel))
        .routes(routes!(tunnels::tunnel_token))
        .routes(routes!(namespaces::create_namespace))
        .routes(routes!(
            namespaces::get_namespace,
            namespaces::delete_namespace
        ))
}

/// The OpenAPI document as pretty JSON (printed by `paas-operator openapi`).
pub fn openapi_json() -> String {
    openapi().to_pretty_json().unwrap_or_default()
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .merge(public_routes())
        .merge(protected_routes())
        .split_for_parts()
        .1;
    responses::CommonResponses.modify(&mut doc);
    doc
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let keys = state.keys.clone();
    let protected =
        protected_routes().route_layer(middleware::from_fn_with_state(keys, require_api_key));
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(public_routes())
        .merge(protected)
        .split_for_parts();
    // After the merge: the routes' operations are only in the document now.
    responses::CommonResponses.modify(&mut doc);
    let cors = cors_layer(state.config.server.cors_origins.items());
    let body_timeout = state.config.server.body_read_timeout;
    let router = router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(middleware::from_fn(move |request, next| {
            read_body(request, next, body_timeout)
        }))
        .layer(middleware::from_fn(log_request))
}

/// Most bytes of an oversized body read (and dropped) before its 413 is
/// answered, so a client that writes its whole body before reading the
/// answer (Python's urllib does) gets the 413 and not a reset connection.
const DRAIN_AT_MOST: usize = 16 << 20;

/// Reads the whole body before the handler runs, within `timeout` and at
/// most [`MAX_BODY_BYTES`]: a slow body is 408, a larger one 413 (after
/// reading what the client still sends, up to [`DRAIN_AT_MOST`]).
async fn read_body(request: Request, next: Next, timeout: std::time::Duration) -> Response {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let mut body = std::pin::pin!(body);
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut kept, mut seen) = (Vec::new(), 0usize);
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return ApiError::new(Code::BodyTimeout, "The request body did not arrive in time")
                    .into_response();
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return ApiError::new(Code::InvalidBody, "The request body could not be read")
                    .into_response();
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // Trailers.
        };
        seen = seen.saturating_add(data.len());
        if seen <= MAX_BODY_BYTES {
            kept.extend_from_slice(&data);
        } else if seen > DRAIN_AT_MOST {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        let mut response =
            ApiError::new(Code::BodyTooLarge, "The request body is larger than 1 MiB")
                .into_response();
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(kept)))
        .await
}

async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "No such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "Method not allowed on this endpoint",
    )
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                axum::http::header::CONTENT_TYPE,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static(REQUEST_ID_HEADER),
            ]),
    )
}

/// A caller's request id is kept when it is short and plain; else a new one.
fn request_id(request: &Request) -> String {
    let given = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok());
    match given {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            id.to_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// One log line per request (id, method, route template, status, latency);
/// every log line inside the request carries the id; the id is echoed back.
async fn log_request(request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(method = %method, route, status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
    });
    crate::metrics::http_request(method.as_str(), &route, status, elapsed);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response.into_response()
}
