//! End-to-end observability: the real binary, run as a child process with
//! JSON logs at trace level, installs a chart whose values hold a secret.
//! Its logs must carry the request id on every line of the request, an audit
//! event, helm's stderr at warn with the release, and never the secret or
//! the API key; `/metrics` must count the install. `/ready` must turn 503
//! when the helm binary disappears.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use crate::harness::{Operator, env, oci_chart, random_namespace, random_release};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A free port on 127.0.0.1 (bound, then released for the child).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// The audit key id of a key: `key:` + 8 hex digits of its SHA-256.
fn key_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("key:{hex}")
}

/// The operator binary as a child process, logging JSON to a file.
struct Child {
    process: tokio::process::Child,
    log: PathBuf,
    base: String,
    namespace: String,
}

impl Child {
    async fn start(api_key: &str, namespace: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("obs-{:08x}", rand::rng().random::<u32>()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("operator.log");
        let port = free_port();
        let process = tokio::process::Command::new(env!("CARGO_BIN_EXE_paas-operator"))
            // No `.env` from the source tree.
            .current_dir(&dir)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "trace")
            .env("API_KEY", api_key)
            .env("HELM_BINARY", env("HELM4_BINARY"))
            .env("PLAIN_HTTP_REGISTRIES", env("OCI_REGISTRY"))
            .env(
                "ALLOWED_CHART_SOURCES",
                format!("oci://{}/charts", env("OCI_REGISTRY")),
            )
            .env("KUBECONFIG", env("KUBECONFIG"))
            .env("HELM_TIMEOUT", "120")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .kill_on_drop(true)
            .spawn()
            .expect("operator binary starts");
        let child = Self {
            process,
            log,
            base: format!("http://127.0.0.1:{port}"),
            namespace: namespace.to_owned(),
        };
        child.wait_until_ready().await;
        child
    }

    async fn wait_until_ready(&self) {
        let started = Instant::now();
        loop {
            if let Ok(response) = reqwest::get(format!("{}/ready", self.base)).await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "operator not ready after 60 s; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, wait for the exit, and return every log line.
    async fn stop(mut self) -> String {
        if let Some(pid) = self.process.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.process.wait()).await;
        std::fs::read_to_string(&self.log).expect("log readable")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let namespace = self.namespace.clone();
        // Best-effort cleanup on a separate thread: the test's runtime is ending.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(kube) = crate::harness::admin_client().await {
                    let api: Api<Namespace> = Api::all(kube);
                    let _ = api.delete(&namespace, &Default::default()).await;
                }
            });
        })
        .join();
    }
}

/// The request id of the span a JSON log line was written in, if any.
fn request_id_of(line: &Value) -> Option<&str> {
    line["span"]["request_id"].as_str().or_else(|| {
        line["spans"]
            .as_array()?
            .iter()
            .find_map(|span| span["request_id"].as_str())
    })
}

async fn post(
    http: &reqwest::Client,
    url: String,
    key: &str,
    request_id: &str,
    body: Value,
) -> (StatusCode, Value, String) {
    let response = http
        .post(url)
        .header("X-API-Key", key)
        .header("X-Request-Id", request_id)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    crate::harness::json_and_header(response, "x-request-id").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_is_logged_audited_and_counted_without_secrets() {
    crate::require_env!();
    let api_key = format!("obs-key-{:032x}", rand::rng().random::<u128>());
    let secret = format!("obs-secret-{:032x}", rand::rng().random::<u128>());
    let namespace = random_namespace();
    let name = random_release();
    let failing = random_release();
    let install_id = format!("obs-install-{:08x}", rand::rng().random::<u32>());
    let failing_id = format!("obs-failing-{:08x}", rand::rng().random::<u32>());
    let child = Child::start(&api_key, &namespace).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(180))
        .build()
        .expect("http client");

    let (status, body, _) = post(
        &http,
        format!("{}/api/namespaces", child.base),
        &api_key,
        "obs-namespace",
        json!({"name": namespace}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let install = json!({"namespace": namespace, "name": name, "chart": oci_chart("web"),
        "version": "0.1.0", "values": {"auth": {"password": secret}}, "create_namespace": true});
    let (status, body, echoed) = post(
        &http,
        format!("{}/api/releases", child.base),
        &api_key,
        &install_id,
        install,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["revision"], 1);
    assert_eq!(echoed, install_id);

    // helm fails (values schema): its stderr is logged at warn, with the release.
    let failing_install = json!({"namespace": namespace, "name": failing, "chart": oci_chart("web"),
        "version": "0.1.0", "values": {"replicaCount": 99, "auth": {"password": secret}}});
    let (status, body, _) = post(
        &http,
        format!("{}/api/releases", child.base),
        &api_key,
        &failing_id,
        failing_install,
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");

    // Metrics: no key needed; helm install counted with its duration; HTTP by route template.
    let response = http
        .get(format!("{}/metrics", child.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("content type")
            .starts_with("text/plain")
    );
    let metrics = response.text().await.expect("metrics text");
    for expected in [
        r#"helm_operations_total{operation="install",outcome="success"} 1"#,
        r#"helm_operation_duration_seconds_bucket{operation="install",outcome="success",le="+Inf"} 1"#,
        r#"helm_operation_duration_seconds_count{operation="install",outcome="success"} 1"#,
        r#"helm_operation_duration_seconds_sum{operation="install",outcome="success"}"#,
        r#"http_requests_total{method="POST",route="/api/releases",status="201"} 1"#,
        r#"http_requests_total{method="POST",route="/api/namespaces",status="201"} 1"#,
        r#"http_request_duration_seconds_bucket{method="POST",route="/api/releases",status="201",le="+Inf"} 1"#,
        r#"release_lock_waits_total{outcome="acquired"}"#,
        "# TYPE helm_processes_in_flight gauge",
        "helm_processes_in_flight 0",
    ] {
        assert!(
            metrics.contains(expected),
            "/metrics lacks {expected}:\n{metrics}"
        );
    }
    // Tenant names appear only on the two per-tenant helm metrics (their
    // point; bounded by HELM_METRICS_TENANTS), never on any other series.
    let named: Vec<&str> = metrics
        .lines()
        .filter(|line| line.contains(&namespace))
        .collect();
    assert!(
        named.iter().all(|line| line.starts_with("helm_tenant_")),
        "tenant names in other labels: {named:?}"
    );
    assert!(
        named
            .iter()
            .any(|line| line.starts_with("helm_tenant_milliseconds_total{")),
        "the tenant's helm time is not counted:\n{metrics}"
    );

    let logs = child.stop().await;
    assert!(
        !logs.contains(&secret),
        "a secret value reached the logs (LOG_LEVEL=trace)"
    );
    assert!(
        !logs.contains(&api_key),
        "the API key reached the logs (LOG_LEVEL=trace)"
    );

    let lines: Vec<Value> = logs
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"))
        })
        .collect();
    let of_install: Vec<&Value> = lines
        .iter()
        .filter(|line| request_id_of(line) == Some(install_id.as_str()))
        .collect();
    let has = |lines: &[&Value], check: &dyn Fn(&Value) -> bool| lines.iter().any(|l| check(l));

    // The request line: route template, status, latency.
    assert!(
        has(&of_install, &|l| l["message"] == "request"
            && l["route"] == "/api/releases"
            && l["method"] == "POST"
            && l["status"] == 201
            && l["latency_ms"].is_number()),
        "no request line with the request id"
    );
    // helm's own log line is inside the request.
    assert!(
        has(&of_install, &|l| l["message"] == "helm succeeded"
            && l["operation"] == "install"
            && l["release"] == format!("{namespace}/{name}")),
        "no helm line with the request id: {of_install:#?}"
    );
    // The audit event.
    assert!(
        has(&of_install, &|l| l["target"] == "audit"
            && l["key"] == key_id(&api_key)
            && l["action"] == "install"
            && l["namespace"] == namespace
            && l["release"] == name
            && l["outcome"] == "success"
            && l["revision"] == 1),
        "no audit event for the install: {:#?}",
        of_install
            .iter()
            .filter(|l| l["target"] == "audit")
            .collect::<Vec<_>>()
    );
    // The failed install: helm's stderr at warn, with the release and the request id.
    let of_failing: Vec<&Value> = lines
        .iter()
        .filter(|line| request_id_of(line) == Some(failing_id.as_str()))
        .collect();
    assert!(
        has(&of_failing, &|l| l["level"] == "WARN"
            && l["message"] == "helm exited with an error"
            && l["release"] == format!("{namespace}/{failing}")
            && l["stderr"].as_str().is_some_and(|s| !s.is_empty())),
        "no warn line with helm's stderr: {of_failing:#?}"
    );
    assert!(
        has(&of_failing, &|l| l["target"] == "audit"
            && l["outcome"] == "failure"
            && l["release"] == failing.as_str()),
        "no audit event for the failed install"
    );
}

/// `/ready` checks helm is still runnable; `/health` stays 200 regardless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_when_helm_disappears() {
    crate::require_env!();
    let dir = std::env::temp_dir().join(format!("obs-helm-{:08x}", rand::rng().random::<u32>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let helm = dir.join("helm");
    std::os::unix::fs::symlink(env("HELM4_BINARY"), &helm).expect("symlink");
    let op = Operator::start_with_helm(&helm.to_string_lossy(), &[]).await;
    let get = |path: &'static str| op.call_with_key(Method::GET, path, None, None);
    let ready = op
        .wait_for(
            "the operator to be ready",
            Duration::from_secs(30),
            || async {
                let (status, body) = get("/ready").await;
                (status == StatusCode::OK).then_some(body)
            },
        )
        .await;
    assert!(ready["helm_version"].is_string(), "{ready}");

    std::fs::remove_file(&helm).expect("remove helm");
    let (status, body) = get("/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error_type"], "not_ready");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains("helm"), "{detail}");
    assert!(!detail.contains("Kubernetes"), "{detail}");
    let (status, body) = get("/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    drop(op);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/health` and `/ready` are right from the first request after start:
/// the first probe of the Kubernetes API runs before the service answers.
/// (`/ready` may still wait for the read cache's first listing, and for
/// nothing else.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_right_from_the_first_request() {
    crate::require_env!();
    let op = Operator::start(crate::harness::Major::Helm4, &[]).await;
    let (status, body) = op.call(Method::GET, "/health", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "healthy", "{body}");
    let (status, body) = op.call(Method::GET, "/ready", None).await;
    if status != StatusCode::OK {
        assert_eq!(
            body["detail"], "Not ready: the read cache is still listing the cluster",
            "{body}"
        );
        op.wait_for(
            "the read cache's listing",
            Duration::from_secs(65),
            || async {
                let (status, _) = op.call(Method::GET, "/ready", None).await;
                (status == StatusCode::OK).then_some(())
            },
        )
        .await;
    }
    let (status, body) = op.call(Method::GET, "/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
