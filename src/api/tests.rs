//! Handler tests of the HTTP edge, without a cluster: authentication,
//! validation, error shape, limits, request ids, CORS and the OpenAPI
//! document. The operator here points at a helm binary that does not exist
//! and an API server that does not listen (or a mock of it, [`mock_api`]).

mod mock_api;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::app;
use super::state::{App, AppState};
use crate::auth::ApiKeys;
use crate::config::Config;
use crate::helm::{Helm, HelmRunner, HelmVersion, RunnerConfig};
use crate::kube::ApiProbe;
use crate::names::ChartPolicy;
use crate::releases::cache::ReadCache;
use crate::releases::locks::ReleaseLocks;
use crate::releases::{Parts, Reads, RecordKind, ReleaseService, ReleaseSettings, ReleaseStore};
use crate::tenants::TenantService;

const KEY: &str = "edge-test-key";

/// An operator whose helm does not exist and whose API server is `kube`.
pub(super) fn app_with(
    client: kube::Client,
    client_config: kube::Config,
    locks: ReleaseLocks,
    probe: ApiProbe,
    extra: &[&str],
) -> Router {
    let mut args = vec![
        "paas-operator",
        "--api-key",
        KEY,
        "--allowed-chart-sources",
        "*",
    ];
    args.extend_from_slice(extra);
    let config = Config::parse_from(args);
    let runner = HelmRunner::new(RunnerConfig {
        binary: "/nonexistent/helm".into(),
        helper: None,
        limits: config.helm.process_limits(),
        helm_timeout: Duration::from_secs(5),
        deadline_margin: Duration::from_secs(1),
        kill_grace: Duration::from_secs(1),
        render_timeout: Duration::from_secs(5),
        max_parallel: 1,
        tenant_slots: 0,
        queue_wait: Duration::from_secs(1),
        memory_budget: 0,
        env: vec![],
    });
    let version = HelmVersion {
        text: "v4.3.1".into(),
        major: 4,
    };
    let keys = ApiKeys::new(&config.auth.static_keys(), None, false).expect("keys");
    let charts = crate::charts::ChartStore::new(crate::charts::StoreSettings {
        policy: ChartPolicy::from_config(&config.charts),
        fetch_timeout: Duration::from_secs(5),
        cache_parent: std::env::temp_dir(),
        cache_bytes: 1 << 20,
    })
    .expect("chart store");
    let tenants = TenantService::new(
        client.clone(),
        client_config,
        config.tenant.clone(),
        Vec::new(),
    );
    let exposure = crate::exposure::ExposureService::disabled();
    let releases = ReleaseService::new(Parts {
        helm: Helm::new(runner, version, "paas-tenant"),
        charts: Arc::new(charts),
        client: client.clone(),
        reads: Reads::Storage(ReleaseStore::new(client.clone(), RecordKind::Secret)),
        cache: ReadCache::disabled(),
        locks,
        tenants: tenants.clone(),
        settings: ReleaseSettings {
            lock_wait: Duration::from_millis(600),
            stale_after: Duration::from_secs(60),
            confine: false,
            allowed_cluster_kinds: Default::default(),
            tenant_account: "paas-tenant".into(),
            app_access: crate::config::AppAccess::Direct,
            n8n_ready_timeout: Duration::from_secs(5),
            namespace_prefix: "paas-ws-".into(),
            scheduling: Default::default(),
        },
        exposure: exposure.clone(),
    });
    let state = AppState(Arc::new(App {
        chart_policy: ChartPolicy::from_config(&config.charts),
        keys,
        probe,
        releases: Arc::new(releases),
        tenants,
        exposure,
        config,
    }));
    app(state)
}

/// The API server does not listen: any request that got past validation
/// answers 5xx, so every 4xx proves nothing reached helm or the cluster.
fn offline_app(extra: &[&str]) -> Router {
    let kube_config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
    let client = kube::Client::try_from(kube_config.clone()).expect("client");
    app_with(
        client,
        kube_config,
        ReleaseLocks::default(),
        ApiProbe::fixed(false),
        extra,
    )
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

fn request(method: &str, uri: &str, body: Option<&str>) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-api-key", KEY);
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned())),
        None => builder.body(Body::empty()),
    }
    .expect("request")
}

fn assert_error_shape(body: &Value) {
    assert!(
        body["detail"].is_string(),
        "detail must be a string: {body}"
    );
    assert!(
        body["error_type"].is_string(),
        "error_type must be a string: {body}"
    );
}

#[tokio::test]
async fn health_needs_no_key_and_reports_degraded_without_cluster() {
    let app = offline_app(&[]);
    let req = Request::builder()
        .uri("/health")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["helm_version"], "v4.3.1");
    assert!(
        body["timestamp"]
            .as_str()
            .expect("timestamp")
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    let req = Request::builder()
        .uri("/ready")
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert_error_shape(&body);
}

#[tokio::test]
async fn api_paths_need_the_key() {
    let app = offline_app(&[]);
    for key in [None, Some(""), Some("wrong"), Some("edge-test-key ")] {
        let mut builder = Request::builder().uri("/api/releases/paas-ws-1/svc-1");
        if let Some(key) = key {
            builder = builder.header("x-api-key", key);
        }
        let (status, _, body) = send(&app, builder.body(Body::empty()).expect("request")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(body["detail"], "Invalid or missing API key");
        assert_eq!(body["error_type"], "unauthorized");
    }
}

#[tokio::test]
async fn docs_and_openapi_need_no_key() {
    let app = offline_app(&[]);
    let req = Request::builder()
        .uri("/openapi.json")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let req = Request::builder()
        .uri("/docs/")
        .body(Body::empty())
        .expect("request");
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str().is_some_and(|html| html.contains("swagger")),
        "{body}"
    );
}

#[tokio::test]
async fn committed_openapi_document_is_current() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"))
        .expect("openapi.json is committed");
    let current = crate::openapi_json();
    assert!(
        committed.trim() == current.trim(),
        "openapi.json is stale: run `cargo run -- openapi > openapi.json` and commit it"
    );
    let doc: Value = serde_json::from_str(&current).expect("json");
    for path in [
        "/health",
        "/ready",
        "/api/releases",
        "/api/releases/{namespace}/{name}",
        "/api/releases/{namespace}/{name}/rollback",
        "/api/releases/{namespace}/{name}/revisions",
        "/api/releases/{namespace}/{name}/status",
        "/api/namespaces",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn release_paths_are_validated_before_any_io() {
    let app = offline_app(&[]);
    let cases = [
        (
            "GET",
            "/api/releases/kube-system/svc-1",
            StatusCode::FORBIDDEN,
            "namespace_forbidden",
        ),
        (
            "DELETE",
            "/api/releases/default/svc-1",
            StatusCode::FORBIDDEN,
            "namespace_forbidden",
        ),
        (
            "GET",
            "/api/releases/paas-ws-1/Bad_Name",
            StatusCode::BAD_REQUEST,
            "invalid_release_name",
        ),
        (
            "GET",
            "/api/releases/paas-ws-1/--post-renderer",
            StatusCode::BAD_REQUEST,
            "invalid_release_name",
        ),
        (
            "GET",
            "/api/releases/PAAS-WS-1/svc-1/status",
            StatusCode::BAD_REQUEST,
            "invalid_namespace",
        ),
        (
            "GET",
            "/api/releases/paas-ws-1/..%2F..%2Fetc/revisions",
            StatusCode::BAD_REQUEST,
            "invalid_release_name",
        ),
        (
            "GET",
            "/api/nothing-here",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "PUT",
            "/api/releases/paas-ws-1/svc-1",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, uri, expected, error_type) in cases {
        let (status, _, body) = send(&app, request(method, uri, None)).await;
        assert_eq!(status, expected, "{method} {uri}: {body}");
        assert_eq!(body["error_type"], error_type, "{method} {uri}");
        assert_error_shape(&body);
    }
}

#[tokio::test]
async fn bodies_are_validated_before_any_io() {
    let app = offline_app(&[]);
    let install = |fields: Value| {
        let mut body = json!({"namespace": "paas-ws-3f9a0c1d", "name": "svc-1a2b3c4d", "chart": "oci://registry.example/charts/web"});
        for (k, v) in fields.as_object().expect("object") {
            body[k] = v.clone();
        }
        body.to_string()
    };
    let cases: Vec<(&str, &str, String, StatusCode, &str)> = vec![
        (
            "POST",
            "/api/releases",
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "POST",
            "/api/releases",
            "[]".into(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "POST",
            "/api/releases",
            json!({"namespace": 5}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "POST",
            "/api/releases",
            install(json!({"namespace": "default"})),
            StatusCode::BAD_REQUEST,
            "invalid_namespace",
        ),
        (
            "POST",
            "/api/releases",
            install(json!({"name": "-x"})),
            StatusCode::BAD_REQUEST,
            "invalid_release_name",
        ),
        (
            "POST",
            "/api/releases",
            install(json!({"chart": "--post-renderer=/bin/sh"})),
            StatusCode::BAD_REQUEST,
            "invalid_chart",
        ),
        (
            "POST",
            "/api/releases",
            install(json!({"chart": "/etc/passwd"})),
            StatusCode::BAD_REQUEST,
            "invalid_chart",
        ),
        (
            "POST",
            "/api/releases",
            install(json!({"chart": "http://example.com/x.tgz"})),
            StatusCode::BAD_REQUEST,
            "invalid_chart",
        ),
        (
            "POST",
            "/api/releases",
            install(json!({"version": "--devel"})),
            StatusCode::BAD_REQUEST,
            "invalid_version",
        ),
        (
            "POST",
            "/api/releases",
            install(json!({"values": "a=b"})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "POST",
            "/api/releases",
            install(json!({"values": [1]})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "PATCH",
            "/api/releases/paas-ws-1/svc-1",
            json!({"values": {}}).to_string(),
            StatusCode::BAD_REQUEST,
            "chart_required",
        ),
        (
            "PATCH",
            "/api/releases/paas-ws-1/svc-1",
            json!({"chart": "-f"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_chart",
        ),
        (
            "POST",
            "/api/releases/paas-ws-1/svc-1/rollback",
            json!({"revision": -1}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "POST",
            "/api/releases/paas-ws-1/svc-1/rollback",
            json!({"revision": "1"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "POST",
            "/api/namespaces",
            json!({"name": "kube-system"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_namespace",
        ),
        (
            "POST",
            "/api/namespaces",
            json!({"name": "paas-ws-x", "cpu_limit": "2 cores"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            "POST",
            "/api/namespaces",
            json!({"name": "paas-ws-x", "memory_limit": "-4Gi"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            "POST",
            "/api/namespaces",
            json!({"name": "paas-ws-x", "storage_limit": 20}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
    ];
    for (method, uri, body, expected, error_type) in cases {
        let (status, _, answer) = send(&app, request(method, uri, Some(&body))).await;
        assert_eq!(status, expected, "{method} {uri} {body}: {answer}");
        assert_eq!(answer["error_type"], error_type, "{method} {uri} {body}");
        assert_error_shape(&answer);
    }
}

#[tokio::test]
async fn oversized_and_untyped_bodies() {
    let app = offline_app(&[]);
    let big = json!({"namespace": "paas-ws-1", "name": "svc-1", "chart": "oci://r/c", "values": {"blob": "x".repeat(1_100_000)}});
    let (status, _, body) = send(
        &app,
        request("POST", "/api/releases", Some(&big.to_string())),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error_type"], "body_too_large");
    let req = Request::builder()
        .method("POST")
        .uri("/api/namespaces")
        .header("x-api-key", KEY)
        .body(Body::from(r#"{"name":"paas-ws-1"}"#))
        .expect("request");
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error_shape(&body);
    let mut deep = String::new();
    for _ in 0..200 {
        deep.push_str("{\"a\":");
    }
    deep.push('1');
    deep.push_str(&"}".repeat(200));
    let body = format!(
        r#"{{"namespace":"paas-ws-1","name":"svc-1","chart":"oci://r/c","values":{deep}}}"#
    );
    let (status, _, answer) = send(&app, request("POST", "/api/releases", Some(&body))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error_shape(&answer);
}

#[tokio::test]
async fn cluster_down_gives_503_not_an_empty_answer() {
    let app = offline_app(&[]);
    let (status, headers, body) = send(
        &app,
        request("GET", "/api/releases/paas-ws-1/svc-1/status", None),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error_type"], "kubernetes_unavailable");
    assert!(headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = offline_app(&[]);
    let mut req = request("GET", "/health", None);
    req.headers_mut()
        .insert("x-request-id", "abc-123".parse().expect("header"));
    let (_, headers, _) = send(&app, req).await;
    assert_eq!(headers["x-request-id"], "abc-123");
    let mut req = request("GET", "/health", None);
    req.headers_mut().insert(
        "x-request-id",
        "bad id\twith junk"
            .parse()
            .unwrap_or(axum::http::HeaderValue::from_static("x y")),
    );
    let (_, headers, _) = send(&app, req).await;
    let generated = headers["x-request-id"].to_str().expect("ascii");
    assert_eq!(generated.len(), 36, "a fresh uuid: {generated}");
}

#[tokio::test]
async fn cors_only_for_configured_origins() {
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/api/namespaces")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .expect("request")
    };
    let closed = offline_app(&[]);
    let (_, headers, _) = send(&closed, preflight("https://odoo.example")).await;
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let open = offline_app(&["--cors-origins", "https://odoo.example"]);
    let (_, headers, _) = send(&open, preflight("https://odoo.example")).await;
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://odoo.example"
    );
    let (_, headers, _) = send(&open, preflight("https://evil.example")).await;
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn refuses_to_start_without_any_key() {
    let config = Config::parse_from(["paas-operator", "--helm-binary", "/nonexistent/helm"]);
    let error = crate::build_state(config)
        .await
        .err()
        .expect("no key must refuse to start");
    assert!(
        error.to_string().contains("no API key configured"),
        "{error}"
    );
}
