//! End-to-end: the MCP sidecar is idempotent as documented. The platform's
//! exact request (its `_build_mcp_sidecar_config`: camelCase ports and
//! probes, the API key from the app Secret) sent again, in the other
//! accepted spelling, or naming the Deployment it resolves to anyway, gives
//! the same revision and runs no helm; a changed request gives exactly one
//! new revision. On an n8n-shaped chart (Deployment `{release}-n8n`, app
//! Secret `{release}-n8n-app-secret`) and on a plain chart (`web`), Helm 3
//! and Helm 4, exposure off and on (the `_with_exposure` tests share the
//! Cloudflare double's tunnel: run them under the exposure lock).

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::exposure::{DOUBLE, Double, cloudflare_args};
use crate::harness::{
    Major, Operator, fixture_chart, helm_binary, oci_chart, random_release, recorded_helm_calls,
    recording_helm, scratch_dir,
};

/// The platform's sidecar body for its n8n template, as it sends it.
fn platform_body(release: &str, auth_token: &str) -> Value {
    json!({"container": {
        "name": "mcp-sidecar",
        "image": "ghcr.io/czlonkowski/n8n-mcp:latest",
        "ports": [{"containerPort": 3000}],
        "env": [
            {"name": "MCP_MODE", "value": "http"},
            {"name": "AUTH_TOKEN", "value": auth_token},
            {"name": "N8N_API_URL", "value": "http://localhost:5678"},
            {"name": "PORT", "value": "3000"},
            {"name": "AUTH_RATE_LIMIT_MAX", "value": "500"},
            {"name": "AUTH_RATE_LIMIT_WINDOW", "value": "900000"},
            {"name": "N8N_API_KEY", "valueFrom": {"secretKeyRef": {"name": format!("{release}-n8n-app-secret"), "key": "N8N_API_KEY"}}}
        ],
        "resources": {"requests": {"memory": "128Mi", "cpu": "100m"}, "limits": {"memory": "256Mi", "cpu": "200m"}},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 3000}, "initialDelaySeconds": 15, "periodSeconds": 30},
        "readinessProbe": {"httpGet": {"path": "/health", "port": 3000}, "initialDelaySeconds": 10, "periodSeconds": 10}
    }})
}

/// The same request in the operator's other accepted spelling (snake_case).
fn snake_case(body: &Value) -> Value {
    let text = body
        .to_string()
        .replace("\"containerPort\"", "\"container_port\"")
        .replace("\"valueFrom\"", "\"value_from\"")
        .replace("\"secretKeyRef\"", "\"secret_key_ref\"")
        .replace("\"livenessProbe\"", "\"liveness_probe\"")
        .replace("\"readinessProbe\"", "\"readiness_probe\"");
    serde_json::from_str(&text).expect("json")
}

/// The chart under test: the n8n-shaped fixture or the plain `web` chart.
#[derive(Clone, Copy)]
enum Chart {
    N8n,
    Web,
}

impl Chart {
    async fn install_body(self, namespace: &str, release: &str) -> Value {
        match self {
            Self::N8n => json!({"namespace": namespace, "name": release,
                "chart": fixture_chart("n8n").await,
                "values": {"main": {"secret": {"N8N_API_KEY": "00000000-placeholder"}}}}),
            Self::Web => json!({"namespace": namespace, "name": release,
                "chart": oci_chart("web"), "version": "0.1.0"}),
        }
    }

    fn deployment(self, release: &str) -> String {
        match self {
            Self::N8n => format!("{release}-n8n"),
            Self::Web => format!("{release}-web"),
        }
    }
}

/// One release, what the tests read of it, and the helm calls made.
struct Subject {
    op: Operator,
    namespace: String,
    release: String,
    path: String,
    log: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Subject {
    async fn install(major: Major, chart: Chart, extra: &[String]) -> Self {
        let dir = scratch_dir("sidecar");
        let (wrapper, log) = recording_helm(&helm_binary(major), &dir);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut op = Operator::start_with_helm(&wrapper, &extra).await;
        let namespace = op.tenant().await;
        let release = random_release();
        let install = chart.install_body(&namespace, &release).await;
        let (status, body) = op.call(Method::POST, "/api/releases", Some(install)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let path = format!("/api/releases/{namespace}/{release}");
        Self {
            op,
            namespace,
            release,
            path,
            log,
            dir,
        }
    }

    /// POSTs the sidecar; asserts 200 and returns the answer.
    async fn attach(&self, body: Value) -> Value {
        let (status, answer) = self
            .op
            .call(Method::POST, &format!("{}/sidecar", self.path), Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer
    }

    /// The description of the latest revision in the history.
    async fn last_description(&self) -> String {
        let (_, history) = self
            .op
            .call(Method::GET, &format!("{}/revisions", self.path), None)
            .await;
        let revisions = history["revisions"].as_array().cloned().unwrap_or_default();
        let last = revisions.last().cloned().unwrap_or_default();
        last["description"].as_str().unwrap_or_default().to_owned()
    }

    /// The value of `variable` in the live Deployment's sidecar.
    async fn sidecar_variable(&self, deployment: &str, variable: &str) -> Option<String> {
        let deployment = Api::<Deployment>::namespaced(self.op.kube.clone(), &self.namespace)
            .get(deployment)
            .await
            .expect("deployment");
        let containers = deployment
            .spec
            .and_then(|s| s.template.spec)
            .map(|s| s.containers)
            .unwrap_or_default();
        let sidecar = containers.into_iter().find(|c| c.name == "mcp-sidecar")?;
        sidecar
            .env
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.name == variable)?
            .value
    }

    /// The revision in the answer, on GET, and the history's length are
    /// all `revision`; the release is deployed.
    async fn assert_revision(&self, answer: &Value, revision: u64, what: &str) {
        assert_eq!(answer["revision"], revision, "{what}: {answer}");
        let (status, got) = self.op.call(Method::GET, &self.path, None).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["revision"], revision, "{what}: GET {got}");
        assert_eq!(got["status"], "deployed", "{what}: {got}");
        let (status, history) = self
            .op
            .call(Method::GET, &format!("{}/revisions", self.path), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{history}");
        let revisions = history["revisions"].as_array().expect("revisions");
        assert_eq!(revisions.len() as u64, revision, "{what}: {history}");
    }

    fn helm_calls(&self) -> usize {
        recorded_helm_calls(&self.log).len()
    }

    /// The sidecar containers of the live Deployment (by name).
    async fn sidecar_images(&self, deployment: &str) -> Vec<String> {
        let deployment = Api::<Deployment>::namespaced(self.op.kube.clone(), &self.namespace)
            .get(deployment)
            .await
            .expect("deployment");
        deployment
            .spec
            .and_then(|s| s.template.spec)
            .map(|s| s.containers)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.name == "mcp-sidecar")
            .filter_map(|c| c.image)
            .collect()
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The whole promise on one release: the first attach is revision 2; the
/// same request again (both spellings, with and without the Deployment's
/// name) is revision 2 with no helm run; a changed request is revision 3,
/// once. Returns the subject and the answers' `mcp_endpoint_url`s.
async fn idempotent(major: Major, chart: Chart, extra: &[String]) -> (Subject, Vec<Value>) {
    let subject = Subject::install(major, chart, extra).await;
    let release = subject.release.clone();
    let deployment = chart.deployment(&release);
    let body = platform_body(&release, "3f1c9a52-7d1e-4e0b-9a55-0c6f1b2d8e11");
    let first = subject.attach(body.clone()).await;
    assert_eq!(first["deployment"], deployment.as_str());
    subject.assert_revision(&first, 2, "first attach").await;
    assert_eq!(subject.last_description().await, "Sidecar attached");
    let mut endpoints = vec![first["mcp_endpoint_url"].clone()];

    let mut named = body.clone();
    named["deployment_name"] = json!(deployment);
    let helm_before = subject.helm_calls();
    for (what, again) in [
        ("the same request", body.clone()),
        ("snake_case", snake_case(&body)),
        ("with deployment_name", named.clone()),
        ("snake_case with deployment_name", snake_case(&named)),
        ("the same request after those", body.clone()),
    ] {
        let answer = subject.attach(again).await;
        subject.assert_revision(&answer, 2, what).await;
        assert_eq!(answer["deployment"], deployment.as_str(), "{what}");
        assert_eq!(
            answer["mcp_service_name"],
            format!("{release}-mcp"),
            "{what}"
        );
        endpoints.push(answer["mcp_endpoint_url"].clone());
    }
    assert_eq!(
        subject.helm_calls(),
        helm_before,
        "no helm run for a request already in force: {:?}",
        recorded_helm_calls(&subject.log)
    );

    // A changed request (a new auth token): exactly one new revision, and
    // the same again is that one.
    let changed = platform_body(&release, "9d0e2b7a-1111-4c3b-8f00-5a5a5a5a5a5a");
    let answer = subject.attach(changed.clone()).await;
    subject
        .assert_revision(&answer, 3, "a changed request")
        .await;
    assert_eq!(
        subject
            .sidecar_variable(&deployment, "AUTH_TOKEN")
            .await
            .as_deref(),
        Some("9d0e2b7a-1111-4c3b-8f00-5a5a5a5a5a5a"),
        "the container is replaced"
    );
    let helm_after_change = subject.helm_calls();
    assert!(helm_after_change > helm_before, "the change ran helm");
    let answer = subject.attach(changed).await;
    subject
        .assert_revision(&answer, 3, "the changed request again")
        .await;
    assert_eq!(subject.helm_calls(), helm_after_change);
    endpoints.push(answer["mcp_endpoint_url"].clone());
    assert_eq!(
        subject.sidecar_images(&deployment).await,
        ["ghcr.io/czlonkowski/n8n-mcp:latest"],
        "one sidecar in the live Deployment"
    );
    (subject, endpoints)
}

/// Taking the sidecar off: one new revision ("Sidecar removed") without
/// it; a second time there is none (404).
async fn detach(subject: &Subject, deployment: &str, revision: u64) {
    let path = format!("{}/sidecar", subject.path);
    let (status, body) = subject.op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, got) = subject.op.call(Method::GET, &subject.path, None).await;
    assert_eq!(got["revision"], revision + 1, "{got}");
    assert_eq!(subject.last_description().await, "Sidecar removed");
    assert!(subject.sidecar_images(deployment).await.is_empty());
    let (status, body) = subject.op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error_type"], "sidecar_not_found");
}

async fn idempotent_on_n8n(major: Major) {
    let (subject, endpoints) = idempotent(major, Chart::N8n, &[]).await;
    assert!(endpoints.iter().all(Value::is_null), "{endpoints:?}");
    detach(&subject, &Chart::N8n.deployment(&subject.release), 3).await;
    drop(subject);
}
crate::both_helms!(idempotent_on_n8n);

async fn idempotent_on_a_plain_chart(major: Major) {
    let (subject, endpoints) = idempotent(major, Chart::Web, &[]).await;
    assert!(endpoints.iter().all(Value::is_null), "{endpoints:?}");
    drop(subject);
}
crate::both_helms!(idempotent_on_a_plain_chart);

/// With exposure on: the same, and every answer names the same public
/// endpoint, whose rule stays in place.
async fn with_exposure(major: Major, chart: Chart) {
    let _shared = DOUBLE.read().await;
    let double = Double::new();
    let args = cloudflare_args(&double);
    let (subject, endpoints) = idempotent(major, chart, &args).await;
    let suffix = subject.namespace.trim_start_matches("paas-ws-");
    let mcp = double.hostname(&format!("{}-{suffix}-mcp", subject.release));
    let expected = json!(format!("https://{mcp}/mcp"));
    assert!(endpoints.iter().all(|e| *e == expected), "{endpoints:?}");
    let rule = double.rule_for(&mcp).await.expect("the MCP route's rule");
    assert_eq!(
        rule["service"],
        format!(
            "http://{}-mcp.{}.svc.cluster.local:3000",
            subject.release, subject.namespace
        )
    );
    // Taken off: its route goes, the release stays.
    detach(&subject, &chart.deployment(&subject.release), 3).await;
    assert_eq!(double.rule_for(&mcp).await, None, "the MCP route went");
    let (status, body) = subject.op.call(Method::DELETE, &subject.path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn n8n_with_exposure(major: Major) {
    with_exposure(major, Chart::N8n).await;
}
crate::both_helms!(n8n_with_exposure);

async fn plain_chart_with_exposure(major: Major) {
    with_exposure(major, Chart::Web).await;
}
crate::both_helms!(plain_chart_with_exposure);
