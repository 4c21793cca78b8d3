//! Hostile input against a real operator and cluster: argument injection in
//! every field, path traversal, local paths, oversized and deeply nested
//! bodies, wrong types, invalid quantities, unicode and control characters,
//! header abuse. Each request must get a 4xx in the contract's error shape,
//! run no helm (the operator runs a wrapper that records every invocation)
//! and change nothing in the cluster (secrets, quota and namespaces compared
//! before and after).

use std::collections::BTreeMap;

use crate::harness::{
    API_KEY, Major, Operator, helm_binary, oci_chart, random_namespace, recorded_helm_calls,
    recording_helm, scratch_dir,
};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Secret};
use kube::Api;
use kube::api::ListParams;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One hostile request.
struct Case {
    label: &'static str,
    method: Method,
    path: String,
    body: Body,
    headers: Vec<(&'static str, HeaderValue)>,
    /// Send the valid API key (else only the headers given).
    with_key: bool,
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

fn case(label: &'static str, method: Method, path: impl Into<String>, body: Body) -> Case {
    Case {
        label,
        method,
        path: path.into(),
        body,
        headers: Vec::new(),
        with_key: true,
    }
}

/// Snapshot of what the hostile requests could have touched.
async fn cluster_snapshot(kube: &kube::Client, tenant: &str) -> BTreeMap<String, String> {
    let mut snapshot = BTreeMap::new();
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), tenant);
    for secret in secrets
        .list_metadata(&ListParams::default())
        .await
        .expect("secrets")
    {
        snapshot.insert(
            format!("secret/{}", secret.metadata.name.unwrap_or_default()),
            secret.metadata.resource_version.unwrap_or_default(),
        );
    }
    let quotas: Api<ResourceQuota> = Api::namespaced(kube.clone(), tenant);
    for quota in quotas
        .list_metadata(&ListParams::default())
        .await
        .expect("quotas")
    {
        snapshot.insert(
            format!("quota/{}", quota.metadata.name.unwrap_or_default()),
            quota.metadata.resource_version.unwrap_or_default(),
        );
    }
    let namespaces: Api<Namespace> = Api::all(kube.clone());
    let ns = namespaces.get(tenant).await.expect("tenant namespace");
    snapshot.insert(
        format!("namespace/{tenant}"),
        ns.metadata.resource_version.unwrap_or_default(),
    );
    snapshot
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx_run_no_helm_and_change_nothing() {
    crate::require_env!();
    let dir = scratch_dir("hostile");
    let (wrapper, log) = recording_helm(&helm_binary(Major::Helm4), &dir);
    let mut op = Operator::start_with_helm(&wrapper, &[]).await;
    let ns = op.tenant().await;
    let name = "svc-hostile1";
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(json!({"namespace": ns, "name": name, "chart": oci_chart("web"), "version": "0.1.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let calls_before = recorded_helm_calls(&log);
    assert!(!calls_before.is_empty(), "the setup install ran no helm");
    let before = cluster_snapshot(&op.kube, &ns).await;
    let fresh_ns = random_namespace();

    let release = format!("/api/releases/{ns}/{name}");
    let install = |fields: Value| {
        let mut body = json!({"namespace": ns, "name": "svc-new1", "chart": oci_chart("web"), "version": "0.1.0"});
        for (k, v) in fields.as_object().expect("object") {
            body[k] = v.clone();
        }
        Body::Json(body)
    };
    let upgrade = |fields: Value| {
        let mut body = json!({"chart": oci_chart("web"), "version": "0.2.0"});
        for (k, v) in fields.as_object().expect("object") {
            body[k] = v.clone();
        }
        Body::Json(body)
    };
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!({ "a": deep });
    }
    let mut cases = vec![
        // Argument injection in the release name.
        case("name --post-renderer", Method::POST, "/api/releases", install(json!({"name": "--post-renderer"}))),
        case("name -n", Method::POST, "/api/releases", install(json!({"name": "-n"}))),
        case("name --kubeconfig=", Method::POST, "/api/releases", install(json!({"name": "--kubeconfig=/etc/kubernetes/admin.conf"}))),
        case("name --set", Method::POST, "/api/releases", install(json!({"name": "--set=a=b"}))),
        case("name shell", Method::POST, "/api/releases", install(json!({"name": "svc;rm -rf /"}))),
        case("name traversal", Method::POST, "/api/releases", install(json!({"name": "../../etc"}))),
        case("name too long", Method::POST, "/api/releases", install(json!({"name": "a".repeat(60)}))),
        case("name uppercase", Method::POST, "/api/releases", install(json!({"name": "Svc-UPPER"}))),
        case("name NUL", Method::POST, "/api/releases", install(json!({"name": "svc\u{0}x"}))),
        case("name newline", Method::POST, "/api/releases", install(json!({"name": "svc\nx"}))),
        case("name unicode", Method::POST, "/api/releases", install(json!({"name": "svc-é"}))),
        case("name RTL override", Method::POST, "/api/releases", install(json!({"name": "svc-\u{202e}x"}))),
        case("name empty", Method::POST, "/api/releases", install(json!({"name": ""}))),
        // The namespace.
        case("namespace flag", Method::POST, "/api/releases", install(json!({"namespace": "--namespace=kube-system"}))),
        case("namespace system", Method::POST, "/api/releases", install(json!({"namespace": "kube-system"}))),
        case("namespace traversal", Method::POST, "/api/releases", install(json!({"namespace": "paas-ws-../kube-system"}))),
        case("namespace too long", Method::POST, "/api/releases", install(json!({"namespace": format!("paas-ws-{}", "a".repeat(60))}))),
        case("namespace prefix only", Method::POST, "/api/releases", install(json!({"namespace": "paas-ws-"}))),
        // The chart.
        case("chart --post-renderer", Method::POST, "/api/releases", install(json!({"chart": "--post-renderer=/bin/sh"}))),
        case("chart --set", Method::POST, "/api/releases", install(json!({"chart": "--set=image.repository=evil"}))),
        case("chart -f", Method::POST, "/api/releases", install(json!({"chart": "-f"}))),
        case("chart absolute path", Method::POST, "/api/releases", install(json!({"chart": "/etc/passwd"}))),
        case("chart file://", Method::POST, "/api/releases", install(json!({"chart": "file:///etc/passwd"}))),
        case("chart relative path", Method::POST, "/api/releases", install(json!({"chart": "./web"}))),
        case("chart parent path", Method::POST, "/api/releases", install(json!({"chart": "../../charts/web"}))),
        case("chart oci traversal", Method::POST, "/api/releases", install(json!({"chart": format!("{}/../../etc", oci_chart("web"))}))),
        case("chart oci encoded traversal", Method::POST, "/api/releases", install(json!({"chart": format!("{}/%2e%2e/x", oci_chart("web"))}))),
        case("chart with space and flag", Method::POST, "/api/releases", install(json!({"chart": format!("{} --post-renderer /bin/sh", oci_chart("web"))}))),
        case("chart oci host flag", Method::POST, "/api/releases", install(json!({"chart": "oci://-x/charts/web"}))),
        case("chart empty", Method::POST, "/api/releases", install(json!({"chart": ""}))),
        // The repository URL and the version.
        case("repo_url flag", Method::POST, "/api/releases", install(json!({"chart": "web", "repo_url": "--kubeconfig=/x"}))),
        case("repo_url file://", Method::POST, "/api/releases", install(json!({"chart": "web", "repo_url": "file:///etc"}))),
        case("repo_url short flag", Method::POST, "/api/releases", install(json!({"chart": "web", "repo_url": "-r"}))),
        case("version --devel", Method::POST, "/api/releases", install(json!({"version": "--devel"}))),
        case("version --set", Method::POST, "/api/releases", install(json!({"version": "--set=x=y"}))),
        case("version with flag", Method::POST, "/api/releases", install(json!({"version": "0.1.0 --post-renderer /bin/sh"}))),
        case("version traversal", Method::POST, "/api/releases", install(json!({"version": "../0.1.0"}))),
        // Types and sizes.
        case("values string", Method::POST, "/api/releases", install(json!({"values": "--set a=b"}))),
        case("values array", Method::POST, "/api/releases", install(json!({"values": ["-f", "/etc/passwd"]}))),
        case("values nested 100 deep", Method::POST, "/api/releases", install(json!({"values": deep}))),
        case("create_namespace string", Method::POST, "/api/releases", install(json!({"create_namespace": "yes"}))),
        case("name number", Method::POST, "/api/releases", install(json!({"name": 12}))),
        case("chart null", Method::POST, "/api/releases", install(json!({"chart": null}))),
        case("body array", Method::POST, "/api/releases", Body::Raw("application/json", b"[]".to_vec())),
        case("body malformed", Method::POST, "/api/releases", Body::Raw("application/json", b"{\"name\": ".to_vec())),
        case("body duplicate keys", Method::POST, "/api/releases", Body::Raw("application/json", format!(r#"{{"namespace":"{ns}","name":"svc-ok1","name":"--post-renderer","chart":"{}"}}"#, oci_chart("web")).into_bytes())),
        case("body over 1 MiB", Method::POST, "/api/releases", install(json!({"values": {"blob": "x".repeat(1_100_000)}}))),
        case("content type text", Method::POST, "/api/releases", Body::Raw("text/plain", install_text(&ns))),
        case("content type form", Method::POST, "/api/releases", Body::Raw("application/x-www-form-urlencoded", b"name=svc-x&chart=-f".to_vec())),
        // Upgrade.
        case("upgrade chart flag", Method::PATCH, release.clone(), upgrade(json!({"chart": "--post-renderer=/bin/sh"}))),
        case("upgrade chart file", Method::PATCH, release.clone(), upgrade(json!({"chart": "file:///etc/passwd"}))),
        case("upgrade version flag", Method::PATCH, release.clone(), upgrade(json!({"version": "--devel"}))),
        case("upgrade repo_url flag", Method::PATCH, release.clone(), upgrade(json!({"chart": "web", "repo_url": "--kubeconfig=/x"}))),
        case("upgrade values type", Method::PATCH, release.clone(), upgrade(json!({"values": "a=b,c=d"}))),
        case("upgrade reuse_values type", Method::PATCH, release.clone(), upgrade(json!({"reuse_values": "true"}))),
        case("upgrade no chart", Method::PATCH, release.clone(), Body::Json(json!({"values": {"replicaCount": 3}}))),
        // Rollback.
        case("rollback negative", Method::POST, format!("{release}/rollback"), Body::Json(json!({"revision": -1}))),
        case("rollback string", Method::POST, format!("{release}/rollback"), Body::Json(json!({"revision": "1; rm -rf /"}))),
        case("rollback too big", Method::POST, format!("{release}/rollback"), Body::Json(json!({"revision": 4_294_967_296u64}))),
        case("rollback float", Method::POST, format!("{release}/rollback"), Body::Json(json!({"revision": 1.5}))),
        case("rollback absent revision", Method::POST, format!("{release}/rollback"), Body::Json(json!({"revision": 99}))),
        // Paths.
        case("path traversal name", Method::DELETE, format!("/api/releases/{ns}/..%2F..%2Fkube-system"), Body::None),
        case("path dot-dot name", Method::DELETE, format!("/api/releases/{ns}/%2e%2e"), Body::None),
        case("path flag name", Method::DELETE, format!("/api/releases/{ns}/--no-hooks"), Body::None),
        case("path NUL name", Method::DELETE, format!("/api/releases/{ns}/{name}%00"), Body::None),
        case("path encoded slash namespace", Method::DELETE, format!("/api/releases/{ns}%2F..%2Fkube-system/{name}"), Body::None),
        case("path system namespace", Method::DELETE, format!("/api/releases/kube-system/{name}"), Body::None),
        case("path flag rollback", Method::POST, format!("/api/releases/{ns}/-h/rollback"), Body::Json(json!({}))),
        case("path unicode namespace", Method::GET, format!("/api/releases/paas-ws-%C3%A9/{name}/status"), Body::None),
        // Namespaces and quantities.
        case("tenant name flag", Method::POST, "/api/namespaces", Body::Json(json!({"name": "--kubeconfig=/x"}))),
        case("tenant name traversal", Method::POST, "/api/namespaces", Body::Json(json!({"name": "paas-ws-../x"}))),
        case("tenant name system", Method::POST, "/api/namespaces", Body::Json(json!({"name": "kube-system"}))),
        case("tenant name unicode", Method::POST, "/api/namespaces", Body::Json(json!({"name": "paas-ws-ünï"}))),
        case("quantity shell", Method::POST, "/api/namespaces", Body::Json(json!({"name": fresh_ns, "cpu_limit": "2; rm -rf /"}))),
        case("quantity negative", Method::POST, "/api/namespaces", Body::Json(json!({"name": fresh_ns, "memory_limit": "-4Gi"}))),
        case("quantity exponent overflow", Method::POST, "/api/namespaces", Body::Json(json!({"name": fresh_ns, "storage_limit": "1e999999"}))),
        case("quantity NaN", Method::POST, "/api/namespaces", Body::Json(json!({"name": fresh_ns, "cpu_limit": "NaN"}))),
        case("quantity empty", Method::POST, "/api/namespaces", Body::Json(json!({"name": fresh_ns, "cpu_limit": ""}))),
        case("quantity number", Method::POST, "/api/namespaces", Body::Json(json!({"name": fresh_ns, "cpu_limit": 4}))),
        case("quantity newline", Method::POST, "/api/namespaces", Body::Json(json!({"name": fresh_ns, "memory_limit": "4Gi\nlimits.cpu: 1000"}))),
    ];
    // Header abuse.
    let mut huge_key = case(
        "huge X-API-Key",
        Method::DELETE,
        release.clone(),
        Body::None,
    );
    huge_key.with_key = false;
    huge_key.headers.push((
        "x-api-key",
        HeaderValue::from_str(&"k".repeat(64 * 1024)).expect("header"),
    ));
    cases.push(huge_key);
    for (label, keys) in [
        ("two keys, valid first", [API_KEY, "wrong"]),
        ("two keys, valid second", ["wrong", API_KEY]),
    ] {
        let mut two = case(label, Method::DELETE, release.clone(), Body::None);
        two.with_key = false;
        for key in keys {
            two.headers
                .push(("x-api-key", HeaderValue::from_static(key)));
        }
        cases.push(two);
    }
    let mut bad_bytes_key = case(
        "non-ASCII X-API-Key",
        Method::DELETE,
        release.clone(),
        Body::None,
    );
    bad_bytes_key.with_key = false;
    bad_bytes_key.headers.push((
        "x-api-key",
        HeaderValue::from_bytes(b"e2e\xff\xfekey").expect("header"),
    ));
    cases.push(bad_bytes_key);
    for (label, id) in [
        (
            "encoded CRLF in X-Request-Id",
            HeaderValue::from_static("abc%0d%0aSet-Cookie:%20x=1"),
        ),
        (
            "obs-text in X-Request-Id",
            HeaderValue::from_bytes(b"abc\xffdef").expect("header"),
        ),
        (
            "huge X-Request-Id",
            HeaderValue::from_str(&"r".repeat(8192)).expect("header"),
        ),
    ] {
        let mut abuse = case(
            label,
            Method::DELETE,
            format!("/api/releases/{ns}/--purge"),
            Body::None,
        );
        abuse.headers.push(("x-request-id", id));
        cases.push(abuse);
    }
    assert!(cases.len() >= 40, "{} cases", cases.len());

    let mut failures = Vec::new();
    for case in &cases {
        let mut request = op
            .http
            .request(case.method.clone(), format!("{}{}", op.base, case.path));
        if case.with_key {
            request = request.header("x-api-key", API_KEY);
        }
        for (header, value) in &case.headers {
            request = request.header(*header, value.clone());
        }
        request = match &case.body {
            Body::None => request,
            Body::Json(value) => request.json(value),
            Body::Raw(content_type, bytes) => request
                .header(CONTENT_TYPE, *content_type)
                .body(bytes.clone()),
        };
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-request-id")
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let shaped = body["detail"].is_string() && body["error_type"].is_string();
        let clean_id = request_id.len() <= 64
            && request_id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        println!(
            "{:<34} {} {}",
            case.label,
            status.as_u16(),
            body["error_type"].as_str().unwrap_or("-")
        );
        if !status.is_client_error() || !shaped || !clean_id {
            failures.push(format!("{}: {status} {text:.200}", case.label));
        }
    }
    assert!(
        failures.is_empty(),
        "hostile requests not refused cleanly:\n{}",
        failures.join("\n")
    );

    let calls_after = recorded_helm_calls(&log);
    assert_eq!(
        calls_after,
        calls_before,
        "hostile requests ran helm: {:?}",
        &calls_after[calls_before.len().min(calls_after.len())..]
    );
    let after = cluster_snapshot(&op.kube, &ns).await;
    assert_eq!(
        before, after,
        "hostile requests changed the tenant namespace"
    );
    let namespaces: Api<Namespace> = Api::all(op.kube.clone());
    assert!(
        namespaces.get_opt(&fresh_ns).await.expect("get").is_none(),
        "a namespace was created by a request with an invalid quantity"
    );
    let (status, body) = op.call(Method::GET, &release, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 1, "{body}");
    assert_eq!(body["status"], "deployed", "{body}");
    println!(
        "{} hostile requests, all refused with 4xx, no helm run, nothing changed",
        cases.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn install_text(namespace: &str) -> Vec<u8> {
    json!({"namespace": namespace, "name": "svc-text1", "chart": oci_chart("web")})
        .to_string()
        .into_bytes()
}
