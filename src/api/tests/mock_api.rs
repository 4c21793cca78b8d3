//! A mock Kubernetes API server (in the spirit of kube-rs controller-rs's
//! `fixtures.rs`) for the error paths the real control plane cannot easily
//! produce on demand: a Lease held by another replica, a missing or foreign
//! namespace, an API failure, a corrupt release record. It serves canned
//! answers on 127.0.0.1:0 and records every request, so a test also proves
//! what was NOT called (no helm ran: its binary does not exist).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{KEY, app_with, send};
use crate::kube::ApiProbe;
use crate::kube::lease::ReleaseLeases;
use crate::releases::locks::ReleaseLocks;

/// What the mock answers to a request (method, path, JSON body):
/// `(status, body)`.
type Answer = Box<dyn Fn(&Method, &str, &Value) -> (StatusCode, Value) + Send + Sync>;

/// A running mock API server.
struct MockApi {
    client: kube::Client,
    config: kube::Config,
    seen: Arc<Mutex<Vec<String>>>,
}

impl MockApi {
    async fn start(answer: Answer) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        let router = Router::new().fallback(move |request: Request<Body>| {
            let (log, answer) = (log.clone(), answer.clone());
            async move {
                let path = request.uri().path().to_owned();
                let method = request.method().clone();
                log.lock().expect("log").push(format!("{method} {path}"));
                let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .unwrap_or_default();
                let sent = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (status, body) = answer(&method, &path, &sent);
                (status, axum::Json(body)).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        let config = kube::Config::new(url.parse().expect("url"));
        Self {
            client: kube::Client::try_from(config.clone()).expect("client"),
            config,
            seen,
        }
    }

    /// The operator's app against this API, with Leases.
    fn app(&self) -> Router {
        self.app_with(&[])
    }

    fn app_with(&self, extra: &[&str]) -> Router {
        let leases = ReleaseLeases::new(
            self.client.clone(),
            crate::kube::lease::Identity::named("paas-operator-test"),
            crate::kube::lease::LeaseTiming {
                ttl: std::time::Duration::from_secs(15),
                stop_margin: std::time::Duration::from_secs(5),
            },
        );
        app_with(
            self.client.clone(),
            self.config.clone(),
            ReleaseLocks::with_leases(leases),
            ApiProbe::fixed(true),
            extra,
        )
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("log").clone()
    }
}

/// A Kubernetes `Status` failure.
fn status(code: u16, reason: &str) -> (StatusCode, Value) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": reason, "reason": reason, "code": code});
    (StatusCode::from_u16(code).expect("status"), body)
}

fn lease_path(path: &str) -> bool {
    path.starts_with("/apis/coordination.k8s.io/v1/namespaces/")
}

/// The answers that make namespace `paas-ws-1` a ready tenant: ours, its
/// tenant identity applied and authorized, its quota (made before the
/// quota counted objects) and LimitRange brought up to date.
fn tenant(method: &Method, path: &str) -> Option<(StatusCode, Value)> {
    let ok = |body: Value| Some((StatusCode::OK, body));
    match (method, path) {
        (&Method::GET, "/api/v1/namespaces/paas-ws-1/resourcequotas/paas-ws-1-quota") => {
            ok(json!({
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "paas-ws-1-quota"},
            "spec": {"hard": {"limits.cpu": "8", "limits.memory": "16Gi", "requests.storage": "100Gi"}}}))
        }
        (&Method::PATCH, "/api/v1/namespaces/paas-ws-1/resourcequotas/paas-ws-1-quota") => ok(
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "paas-ws-1-quota"}}),
        ),
        (&Method::PATCH, "/api/v1/namespaces/paas-ws-1/limitranges/paas-ws-1-defaults") => ok(
            json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "paas-ws-1-defaults"}}),
        ),
        (&Method::GET, "/api/v1/namespaces/paas-ws-1") => Some(namespace(
            json!({"paas-managed": "true", "pod-security.kubernetes.io/enforce": "baseline"}),
            false,
        )),
        (&Method::PATCH, "/api/v1/namespaces/paas-ws-1/serviceaccounts/paas-tenant") => ok(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "paas-tenant", "namespace": "paas-ws-1"}}),
        ),
        (
            &Method::PATCH,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/paas-ws-1/rolebindings/paas-tenant",
        ) => ok(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "paas-tenant", "namespace": "paas-ws-1"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "paas-tenant"}})),
        (&Method::POST, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews") => ok(json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {}, "status": {"allowed": true}})),
        _ => None,
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-api-key", KEY);
    let request = match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("request");
    let (status, _, body) = send(app, request).await;
    (status, body)
}

fn upgrade() -> Option<Value> {
    Some(json!({"chart": "oci://r.example/charts/web"}))
}

#[tokio::test]
async fn a_lease_held_by_another_replica_is_409_and_runs_nothing() {
    let now = jiff::Timestamp::now().to_string();
    let api = MockApi::start(Box::new(move |method, path, _| match (method, lease_path(path)) {
        _ if tenant(method, path).is_some() => tenant(method, path).expect("tenant"),
        (&Method::POST, true) => status(409, "AlreadyExists"),
        (&Method::GET, true) => (
            StatusCode::OK,
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": "paas-operator.svc-1", "namespace": "paas-ws-1", "resourceVersion": "7"},
                   "spec": {"holderIdentity": "another-replica", "leaseDurationSeconds": 300,
                            "renewTime": now, "acquireTime": now}}),
        ),
        _ => status(500, "Unexpected"),
    }))
    .await;
    let (code, body) = call(
        &api.app(),
        "PATCH",
        "/api/releases/paas-ws-1/svc-1",
        upgrade(),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error_type"], "operation_in_progress");
    // Only the tenant's set-up and the Lease were touched: no release
    // read, no record, no helm.
    let seen = api.seen();
    assert!(seen.iter().any(|r| r.contains("/leases")), "{seen:?}");
    assert!(!seen.iter().any(|r| r.contains("/secrets")), "{seen:?}");
}

#[tokio::test]
async fn a_missing_namespace_is_404_before_helm() {
    let api = MockApi::start(Box::new(|method, path, _| match (method, path) {
        (&Method::GET, "/api/v1/namespaces/paas-ws-1") => status(404, "NotFound"),
        _ => status(500, "Unexpected"),
    }))
    .await;
    let (code, body) = call(
        &api.app(),
        "PATCH",
        "/api/releases/paas-ws-1/svc-1",
        upgrade(),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error_type"], "namespace_not_found");
}

#[tokio::test]
async fn a_failing_lease_api_is_500_kubernetes_error() {
    let api = MockApi::start(Box::new(|method, path, _| {
        tenant(method, path).unwrap_or_else(|| status(500, "InternalError"))
    }))
    .await;
    let (code, body) = call(&api.app(), "DELETE", "/api/releases/paas-ws-1/svc-1", None).await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error_type"], "kubernetes_error");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| !d.contains("InternalError")),
        "{body}"
    );
}

fn namespace(labels: Value, terminating: bool) -> (StatusCode, Value) {
    let mut metadata = json!({"name": "paas-ws-1", "labels": labels});
    if terminating {
        metadata["deletionTimestamp"] = json!("2026-11-30T00:00:00Z");
    }
    (
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}),
    )
}

#[tokio::test]
async fn without_adoption_a_foreign_namespace_is_403_on_every_path() {
    let api = MockApi::start(Box::new(|method, path, _| match (method, path) {
        (&Method::GET, "/api/v1/namespaces/paas-ws-1") => namespace(json!({"team": "x"}), false),
        _ => status(500, "Unexpected"),
    }))
    .await;
    let app = api.app_with(&["--adopt-namespaces", "false"]);
    let (code, body) = call(
        &app,
        "POST",
        "/api/namespaces",
        Some(json!({"name": "paas-ws-1"})),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error_type"], "namespace_not_managed");
    for (method, uri) in [
        ("GET", "/api/namespaces/paas-ws-1"),
        ("DELETE", "/api/namespaces/paas-ws-1"),
        ("DELETE", "/api/releases/paas-ws-1/svc-1"),
    ] {
        let (code, body) = call(&app, method, uri, None).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{method} {body}");
        assert_eq!(body["error_type"], "namespace_not_managed");
    }
    // Nothing was written: only reads of the namespace.
    assert!(
        api.seen().iter().all(|r| r.starts_with("GET ")),
        "{:?}",
        api.seen()
    );
}

#[tokio::test]
async fn a_foreign_namespace_is_adopted_on_first_use() {
    let seen_quota = Arc::new(Mutex::new(None::<Value>));
    let log = seen_quota.clone();
    let api = MockApi::start(Box::new(move |method, path, sent| {
        let ours = path.ends_with("/paas-ws-1") || path.contains("/resourcequotas/");
        if let Some(answer) = tenant(method, path).filter(|_| !ours) {
            return answer;
        }
        match (method, path) {
            (&Method::GET, "/api/v1/namespaces/paas-ws-1") => namespace(json!({"team": "x"}), false),
            // The earlier operator's quota: its limits are kept.
            (&Method::GET, "/api/v1/namespaces/paas-ws-1/resourcequotas/paas-ws-1-quota") => (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "paas-ws-1-quota"},
                       "spec": {"hard": {"limits.cpu": "8", "limits.memory": "16Gi", "requests.storage": "100Gi"}}}),
            ),
            (&Method::PATCH, p) => {
                if p.ends_with("/resourcequotas/paas-ws-1-quota") {
                    *log.lock().expect("quota") = Some(sent.clone());
                }
                (StatusCode::OK, sent.clone())
            }
            _ => status(404, "NotFound"),
        }
    }))
    .await;
    let (code, body) = call(&api.app(), "DELETE", "/api/releases/paas-ws-1/svc-1", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let seen = api.seen();
    // Adopted: labelled, the identity and every tenant object applied.
    for object in [
        "/namespaces/paas-ws-1",
        "/serviceaccounts/paas-tenant",
        "/rolebindings/paas-tenant",
        "/rolebindings/paas-operator-tenant",
        "/resourcequotas/paas-ws-1-quota",
        "/limitranges/paas-ws-1-defaults",
        "/networkpolicies/paas-ws-1-isolation",
    ] {
        assert!(
            seen.iter()
                .any(|r| r.starts_with("PATCH ") && r.ends_with(object)),
            "{object}: {seen:?}"
        );
    }
    let quota = seen_quota
        .lock()
        .expect("quota")
        .clone()
        .expect("quota applied");
    assert_eq!(quota["spec"]["hard"]["limits.cpu"], "8", "{quota}");
    assert_eq!(
        quota["spec"]["hard"]["requests.storage"], "100Gi",
        "{quota}"
    );
    // The object counts it had none of come from the settings.
    assert_eq!(quota["spec"]["hard"]["pods"], "20", "{quota}");
    assert_eq!(quota["spec"]["hard"]["count/secrets"], "100", "{quota}");
}

#[tokio::test]
async fn a_kept_state_secret_the_operator_did_not_make_is_409_and_left_alone() {
    let api = MockApi::start(Box::new(|method, path, sent| {
        if let Some(answer) = tenant(method, path) {
            return answer;
        }
        match (method, path) {
            (&Method::POST, p) if lease_path(p) => {
                let mut lease = sent.clone();
                lease["metadata"]["resourceVersion"] = json!("1");
                lease["metadata"]["uid"] = json!("lease-uid");
                (StatusCode::CREATED, lease)
            }
            (&Method::DELETE, p) if lease_path(p) => status(200, "Success"),
            // The release: one genuine record (plain JSON payload).
            (&Method::GET, "/api/v1/namespaces/paas-ws-1/secrets") => (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {}, "items": [{
                    "metadata": {"name": "sh.helm.release.v1.svc-1.v1",
                                 "labels": {"owner": "helm", "name": "svc-1", "version": "1"}},
                    "type": "helm.sh/release.v1",
                    "data": {"release": "ZXlKdVlXMWxJam9pYzNaakxURWlMQ0p1WVcxbGMzQmhZMlVpT2lKd1lXRnpMWGR6TFRFaUxDSjJaWEp6YVc5dUlqb3hMQ0pwYm1adklqcDdJbk4wWVhSMWN5STZJbVJsY0d4dmVXVmtJbjBzSW1Ob1lYSjBJanA3SW0xbGRHRmtZWFJoSWpwN0ltNWhiV1VpT2lKM1pXSWlMQ0oyWlhKemFXOXVJam9pTUM0eExqQWlmWDBzSW0xaGJtbG1aWE4wSWpvaUluMD0="}}]}),
            ),
            // Made by someone else: no operator labels, a key of its own.
            (&Method::GET, "/api/v1/namespaces/paas-ws-1/secrets/paas-operator.svc-1") => (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                       "metadata": {"name": "paas-operator.svc-1", "namespace": "paas-ws-1", "resourceVersion": "3"},
                       // {"owner_email":"a@b.c","api_key":"forged","api_key_id":"x","secret":null}
                       "data": {"n8n": "eyJvd25lcl9lbWFpbCI6ImFAYi5jIiwiYXBpX2tleSI6ImZvcmdlZCIsImFwaV9rZXlfaWQiOiJ4Iiwic2VjcmV0IjpudWxsfQ=="}}),
            ),
            _ => status(500, "Unexpected"),
        }
    }))
    .await;
    let sidecar =
        json!({"container": {"name": "mcp", "image": "mcp:1", "ports": [{"containerPort": 3000}]}});
    for (uri, body) in [
        ("/api/releases/paas-ws-1/svc-1/sidecar", Some(sidecar)),
        (
            "/api/releases/paas-ws-1/svc-1/init/n8n",
            Some(json!({"owner_password": "Owner-Pass-123"})),
        ),
    ] {
        let (code, body) = call(&api.app(), "POST", uri, body).await;
        assert_eq!(code, StatusCode::CONFLICT, "{uri}: {body}");
        assert_eq!(body["error_type"], "kept_state_conflict", "{body}");
        assert!(!body.to_string().contains("forged"), "{body}");
    }
    // Read, never written, adopted or deleted.
    let secrets: Vec<String> = api
        .seen()
        .into_iter()
        .filter(|r| r.contains("/secrets/paas-operator."))
        .collect();
    assert!(!secrets.is_empty(), "the Secret was read");
    assert!(secrets.iter().all(|r| r.starts_with("GET ")), "{secrets:?}");
}

#[tokio::test]
async fn a_namespace_made_before_object_counts_gets_them_on_first_use() {
    let seen_quota = Arc::new(Mutex::new(None::<Value>));
    let log = seen_quota.clone();
    let api = MockApi::start(Box::new(move |method, path, sent| {
        if method == Method::PATCH && path.ends_with("/resourcequotas/paas-ws-1-quota") {
            *log.lock().expect("quota") = Some(sent.clone());
        }
        tenant(method, path).unwrap_or_else(|| status(404, "NotFound"))
    }))
    .await;
    let (code, body) = call(&api.app(), "DELETE", "/api/releases/paas-ws-1/svc-1", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let quota = seen_quota
        .lock()
        .expect("quota")
        .clone()
        .expect("quota applied");
    let hard = &quota["spec"]["hard"];
    assert_eq!(
        (&hard["limits.cpu"], &hard["pods"]),
        (&json!("8"), &json!("20")),
        "{quota}"
    );
    assert_eq!(hard["count/configmaps"], "50", "{quota}");
    assert!(
        api.seen()
            .iter()
            .any(|r| r == "PATCH /api/v1/namespaces/paas-ws-1/limitranges/paas-ws-1-defaults"),
        "{:?}",
        api.seen()
    );
}

#[tokio::test]
async fn a_terminating_namespace_is_409() {
    let api = MockApi::start(Box::new(|method, path, _| match (method, path) {
        (&Method::GET, "/api/v1/namespaces/paas-ws-1") => {
            namespace(json!({"paas-managed": "true"}), true)
        }
        _ => status(500, "Unexpected"),
    }))
    .await;
    let (code, body) = call(
        &api.app(),
        "POST",
        "/api/namespaces",
        Some(json!({"name": "paas-ws-1"})),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error_type"], "namespace_terminating");
}

#[tokio::test]
async fn a_corrupt_release_record_is_409_without_its_content() {
    let api = MockApi::start(Box::new(|method, path, _| match (method, path) {
        (&Method::GET, "/api/v1/namespaces/paas-ws-1/secrets") => (
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {}, "items": [{
                "metadata": {"name": "sh.helm.release.v1.svc-1.v1",
                             "labels": {"owner": "helm", "name": "svc-1", "version": "1"}},
                "type": "helm.sh/release.v1",
                // base64 of "not a record: s3cret"
                "data": {"release": "bm90IGEgcmVjb3JkOiBzM2NyZXQ="}}]}),
        ),
        _ => status(500, "Unexpected"),
    }))
    .await;
    let (code, body) = call(&api.app(), "GET", "/api/releases/paas-ws-1/svc-1", None).await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error_type"], "release_record_unreadable");
    assert!(!body.to_string().contains("s3cret"), "{body}");
}

#[tokio::test]
async fn a_release_without_records_is_404_on_every_read() {
    let api = MockApi::start(Box::new(|method, path, _| match (method, path) {
        (&Method::GET, "/api/v1/namespaces/paas-ws-1/secrets") => (
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {}, "items": []}),
        ),
        _ => status(500, "Unexpected"),
    }))
    .await;
    let app = api.app();
    for uri in ["", "/revisions", "/status"] {
        let (code, body) = call(
            &app,
            "GET",
            &format!("/api/releases/paas-ws-1/svc-1{uri}"),
            None,
        )
        .await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{uri} {body}");
        assert_eq!(body["error_type"], "release_not_found");
    }
}

/// Keeps `ServiceExt` in use for readers who add oneshot-based cases here.
#[allow(dead_code)]
async fn oneshot(app: Router, request: Request<Body>) -> Response {
    app.oneshot(request).await.expect("response")
}
