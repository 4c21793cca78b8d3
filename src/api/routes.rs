//! `/api/routes`: the routes of the shared tunnel (or of the `ingress`
//! backend), routes of no release (`crate::exposure`), and reconciliation
//! on demand, which weighs routes against live releases (so the release
//! service runs it).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::extract::{ApiJson, SubdomainPath};
use super::state::AppState;
use crate::auth::KeyId;
use crate::error::{ApiError, ErrorBody};
use crate::model::MessageResponse;
use crate::model::exposure::{CreateRouteRequest, ReconcileReport, RouteCreated, RouteList};
use crate::releases::audit::audit;

/// Every route: the shared tunnel's ingress rules in order, foreign ones
/// and the catch-all included (empty when exposure is off).
#[utoipa::path(get, path = "/api/routes", tag = "routes",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The routes", body = RouteList),
        (status = 503, description = "Cloudflare is unavailable", body = ErrorBody),
    ))]
pub async fn list_routes(State(state): State<AppState>) -> Result<Json<RouteList>, ApiError> {
    Ok(Json(state.exposure.list_routes().await?))
}

/// Route `{subdomain}.{domain}` to a service (a route of no release);
/// posting it again updates it. A DNS record that cannot be made now does
/// not fail it.
#[utoipa::path(post, path = "/api/routes", tag = "routes", request_body = CreateRouteRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Routed", body = RouteCreated),
        (status = 400, description = "Invalid subdomain or service_url, or exposure is off", body = ErrorBody),
        (status = 409, description = "The hostname is routed for a release or by someone else", body = ErrorBody),
        (status = 502, description = "Cloudflare refused", body = ErrorBody),
        (status = 503, description = "Cloudflare is unavailable", body = ErrorBody),
    ))]
pub async fn create_route(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ApiJson(request): ApiJson<CreateRouteRequest>,
) -> Result<(StatusCode, Json<RouteCreated>), ApiError> {
    let subdomain = request.subdomain.clone();
    let outcome = state.exposure.create_route(request).await;
    let created = audited(&key, "create_route", &subdomain, outcome)?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Remove the route of `{subdomain}.{domain}` (a release's too): its rule
/// and DNS record. Done also when there is none; refused (409) when someone
/// outside this operator routes the hostname.
#[utoipa::path(delete, path = "/api/routes/{subdomain}", tag = "routes",
    params(("subdomain" = String, Path, description = "The route's subdomain")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Removed (or there was none)", body = MessageResponse),
        (status = 409, description = "Routed by someone else", body = ErrorBody),
        (status = 503, description = "Cloudflare is unavailable", body = ErrorBody),
    ))]
pub async fn delete_route(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    SubdomainPath(subdomain): SubdomainPath,
) -> Result<Json<MessageResponse>, ApiError> {
    let outcome = state.exposure.delete_route(&subdomain).await;
    let hostname = audited(&key, "delete_route", subdomain.as_str(), outcome)?;
    Ok(Json(MessageResponse {
        message: format!("Route {hostname} deleted successfully"),
    }))
}

/// Reconcile now: missing routes of live releases made again (also those
/// whose Cloudflare calls failed earlier), routes of gone releases and our
/// orphaned DNS records removed. Answers what changed.
#[utoipa::path(post, path = "/api/routes/reconcile", tag = "routes",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "What changed", body = ReconcileReport),
        (status = 400, description = "Exposure is off", body = ErrorBody),
    ))]
pub async fn reconcile_routes(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
) -> Result<Json<ReconcileReport>, ApiError> {
    let outcome = state.releases.reconcile_routes().await;
    Ok(Json(audited(&key, "reconcile_routes", "", outcome)?))
}

/// One audit event for a write that belongs to no release.
pub(super) fn audited<T>(
    key: &KeyId,
    action: &'static str,
    target: &str,
    outcome: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let _ = audit(
        key,
        action,
        "",
        target,
        outcome.as_ref().map(drop).map_err(Clone::clone),
    );
    outcome
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, header};
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::super::tests::app_with;
    use crate::releases::locks::ReleaseLocks;

    /// An operator with exposure and tunnels off, whose API server does
    /// not listen: every 4xx here came before any I/O.
    async fn call(method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
        let kube_config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = kube::Client::try_from(kube_config.clone()).expect("client");
        let app = app_with(
            client,
            kube_config,
            ReleaseLocks::default(),
            crate::kube::ApiProbe::fixed(false),
            &[],
        );
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-api-key", "edge-test-key");
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = app
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("response");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn exposure_off_answers_as_the_contract_says() {
        let (status, body) = call("GET", "/api/routes", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["routes"], json!([]));
        assert_eq!(body["enabled"], false);
        let route = json!({"subdomain": "a", "service_url": "http://a:80"});
        for (method, uri, body) in [
            ("POST", "/api/routes", Some(route)),
            ("POST", "/api/routes/reconcile", None),
            ("DELETE", "/api/routes/a", None),
        ] {
            let (status, answer) = call(method, uri, body).await;
            assert_eq!(status, 400, "{method} {uri}: {answer}");
            assert_eq!(answer["error_type"], "exposure_disabled");
        }
        let tunnel = json!({"name": "n", "hostname": "h.example.com"});
        let (status, answer) = call("POST", "/api/tunnels", Some(tunnel)).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error_type"], "tunnels_disabled");
        assert_eq!(
            answer["detail"],
            "Cloudflare API token and account ID are required for tunnel management"
        );
    }

    #[tokio::test]
    async fn exposure_input_is_refused_before_any_io() {
        let cases = [
            ("DELETE", "/api/routes/a.b", None, "invalid_subdomain"),
            ("GET", "/api/tunnels/../zones", None, "not_found"),
            ("GET", "/api/tunnels/not-a-uuid", None, "invalid_path"),
            ("DELETE", "/api/tunnels/not-a-uuid", None, "invalid_path"),
            (
                "DELETE",
                "/api/releases/paas-ws-1/svc-a?subdomain=a.b",
                None,
                "invalid_subdomain",
            ),
            (
                "POST",
                "/api/releases",
                Some(
                    json!({"namespace": "paas-ws-1", "name": "svc-a", "chart": "oci://r.example/c/web",
                            "expose": {"enabled": true, "subdomain": "-x"}}),
                ),
                "invalid_subdomain",
            ),
            (
                "POST",
                "/api/releases",
                Some(
                    json!({"namespace": "paas-ws-1", "name": "svc-a", "chart": "oci://r.example/c/web",
                            "expose": {"enabled": true, "service_port": 70000}}),
                ),
                "invalid_service",
            ),
        ];
        for (method, uri, body, code) in cases {
            let (status, answer) = call(method, uri, body).await;
            assert!(
                status == 400 || status == 404,
                "{method} {uri}: {status} {answer}"
            );
            assert_eq!(answer["error_type"], code, "{method} {uri}: {answer}");
        }
    }
}
