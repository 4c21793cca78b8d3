//! End-to-end: the MCP sidecar and the n8n bootstrap as the platform uses
//! them, against a REAL n8n (the pinned npm package, `testenv/n8n`), with
//! Helm 3 and Helm 4. The fake kubelet runs no containers, so the release's
//! n8n pod is given this machine's own address (the test kubelet's
//! `localkube.testenv/pod-ip`), where the test runs a real n8n; its Service
//! leads there, and the operator reaches it through the API server's service
//! proxy (`APP_ACCESS=api-proxy`), so every n8n call of the bootstrap goes
//! to the real n8n.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::Api;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Major, Operator, fixture_chart, free_port, random_release, scratch_dir};

const PASSWORD: &str = "Owner-Pass-123";

/// The machine's address on its default route (the API server must reach
/// n8n at it: it does not proxy to loopback addresses).
pub(crate) fn own_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A real n8n process with its own data; stopped and removed on drop.
struct RealN8n {
    child: Option<tokio::process::Child>,
    base: String,
    dir: PathBuf,
    ip: IpAddr,
    port: u16,
}

impl RealN8n {
    fn new(ip: IpAddr) -> Self {
        let port = free_port();
        Self {
            child: None,
            base: format!("http://{ip}:{port}"),
            dir: scratch_dir("n8n"),
            ip,
            port,
        }
    }

    fn start(&mut self) {
        let script = format!("{}/testenv/n8n/run-n8n", env!("CARGO_MANIFEST_DIR"));
        let child = tokio::process::Command::new(script)
            .args([
                "--port",
                &self.port.to_string(),
                "--listen",
                &self.ip.to_string(),
                "--data-dir",
            ])
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("n8n starts");
        self.child = Some(child);
    }

    /// Logs in as the owner (as a person would) and lists the API keys.
    async fn api_keys(&self, http: &reqwest::Client) -> Vec<Value> {
        let login = http
            .post(format!("{}/rest/login", self.base))
            .json(&json!({"emailOrLdapLoginId": "admin@woowtech.io", "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        assert_eq!(login.status(), StatusCode::OK);
        let cookie = login
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("n8n-auth="))
            .and_then(|v| v.split(';').next())
            .expect("session")
            .to_owned();
        let keys: Value = http
            .get(format!("{}/rest/api-keys", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .expect("keys")
            .json()
            .await
            .expect("json");
        keys["data"].as_array().cloned().unwrap_or_default()
    }

    /// The public API accepts the key.
    async fn accepts(&self, http: &reqwest::Client, key: &str) -> bool {
        http.get(format!("{}/api/v1/workflows?limit=1", self.base))
            .header("X-N8N-API-KEY", key)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    }
}

impl Drop for RealN8n {
    fn drop(&mut self) {
        if let Some(child) = &self.child
            && let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The platform's sidecar request (its n8n template), in snake_case.
fn platform_sidecar(release: &str) -> Value {
    json!({"container": {
        "name": "mcp-sidecar", "image": "ghcr.io/czlonkowski/n8n-mcp:latest",
        "ports": [{"container_port": 3000}],
        "env": [
            {"name": "N8N_API_URL", "value": format!("http://{release}-n8n:5678")},
            {"name": "N8N_API_KEY", "value_from": {"secret_key_ref": {"name": format!("{release}-n8n-app-secret"), "key": "N8N_API_KEY"}}}
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}}
    }})
}

/// The release's revision, as GET answers it.
async fn current_revision(op: &Operator, path: &str) -> u64 {
    let (status, body) = op.call(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["revision"].as_u64().expect("revision")
}

async fn init(op: &Operator, path: &str, password: &str) -> Value {
    let (status, body) = op
        .call(
            Method::POST,
            &format!("{path}/init/n8n"),
            Some(json!({"owner_password": password})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// What the cluster holds for the release: the key in its app Secret, the
/// sidecar (once) in its Deployment, and the `-mcp` Service. Returns the
/// key's digest on the pod template (the same digest: no restart).
async fn assert_kept(op: &Operator, ns: &str, release: &str, api_key: &str) -> String {
    let secret = Api::<Secret>::namespaced(op.kube.clone(), ns)
        .get(&format!("{release}-n8n-app-secret"))
        .await
        .expect("app secret");
    let kept = secret.data.expect("data")["N8N_API_KEY"].0.clone();
    assert_eq!(
        String::from_utf8(kept).expect("utf8"),
        api_key,
        "the key is in the app Secret"
    );
    let deployment = Api::<Deployment>::namespaced(op.kube.clone(), ns)
        .get(&format!("{release}-n8n"))
        .await
        .expect("deployment");
    let template = deployment.spec.expect("spec").template;
    let names: Vec<String> = template
        .spec
        .expect("pod spec")
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["n8n", "mcp-sidecar"], "one sidecar");
    let annotations = template
        .metadata
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    let digest = annotations
        .get("paas-operator/kept-value")
        .cloned()
        .expect("pods restart to read the key");
    let service = Api::<Service>::namespaced(op.kube.clone(), ns)
        .get(&format!("{release}-mcp"))
        .await
        .expect("mcp service");
    let spec = service.spec.expect("spec");
    let port = &spec.ports.expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("mcp"), 3000));
    let selector = spec.selector.expect("selector");
    assert_eq!(
        selector.get("paas-operator/sidecar-of").map(String::as_str),
        Some(format!("{release}-n8n").as_str())
    );
    digest
}

async fn n8n_bootstrap(major: Major) {
    let Some(ip) = own_address() else {
        eprintln!("skipped: the machine has no address but loopback");
        return;
    };
    if std::env::var_os("N8N_MAIN").is_none() {
        eprintln!("skipped: n8n is not installed (scripts/testenv up installs it)");
        return;
    }
    let mut op = Operator::start(
        major,
        &["--app-access", "api-proxy", "--n8n-ready-timeout", "90"],
    )
    .await;
    let ns = op.tenant().await;
    let release = random_release();
    let chart = fixture_chart("n8n").await;
    let path = format!("/api/releases/{ns}/{release}");
    // n8n's pod is given this machine's address, where a real n8n will run
    // (not started yet), so its Service leads there.
    let mut n8n = RealN8n::new(ip);
    let values = json!({"podIP": ip.to_string(), "port": n8n.port});
    let install = json!({"namespace": ns, "name": release, "chart": chart, "values": values});
    let (status, body) = op.call(Method::POST, "/api/releases", Some(install)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The platform attaches the sidecar right after install; twice is once.
    for _ in 0..2 {
        let (status, body) = op
            .call(
                Method::POST,
                &format!("{path}/sidecar"),
                Some(platform_sidecar(&release)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["revision"], 2, "twice is one revision: {body}");
        assert_eq!(current_revision(&op, &path).await, 2);
        assert_eq!(body["mcp_service_name"], format!("{release}-mcp"));
        assert_eq!(
            body["mcp_internal_url"],
            format!("http://{release}-mcp.{ns}.svc.cluster.local:3000")
        );
    }

    // n8n is slow to start: the first call waits for it. Its password breaks
    // n8n's policy: a clear failure at owner setup, nothing kept.
    let started = Instant::now();
    let slow = {
        let (http, base) = (op.http.clone(), op.base.clone());
        let path = path.clone();
        tokio::spawn(async move {
            crate::harness::call_at(
                &http,
                &base,
                Method::POST,
                &format!("{path}/init/n8n"),
                Some(json!({"owner_password": "weak"})),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    n8n.start();
    let (status, weak) = slow.await.expect("first call");
    assert_eq!(status, StatusCode::OK, "{weak}");
    assert_eq!(weak["success"], false, "{weak}");
    assert!(
        weak["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("[setup_owner]")),
        "{weak}"
    );
    assert!(weak["api_key"].is_null());
    assert!(
        !weak.to_string().contains("weak\""),
        "the password is not echoed: {weak}"
    );
    eprintln!("n8n cold start + refused setup: {:?}", started.elapsed());

    // Two overlapping polls with the right password: one key, one result.
    let started = Instant::now();
    let (first, second) = tokio::join!(init(&op, &path, PASSWORD), init(&op, &path, PASSWORD));
    eprintln!("bootstrap of a ready n8n: {:?}", started.elapsed());
    // Both answers are what the platform takes as done: success, the key,
    // and the pods restarted to read it (the overlapping one waited for them).
    for answer in [&first, &second] {
        assert_eq!(answer["success"], true, "{answer}");
        assert_eq!(answer["secret_patched"], true, "{answer}");
        assert_eq!(answer["pod_restarted"], true, "{answer}");
    }
    let api_key = first["api_key"].as_str().expect("key").to_owned();
    assert_eq!(second["api_key"], api_key.as_str());
    assert!(
        n8n.accepts(&op.http, &api_key).await,
        "n8n's public API takes the key"
    );
    // A later poll: the kept key, no new one, no new revision; the pods
    // run with it, so `pod_restarted` is true (the platform would log a
    // warning otherwise).
    let revision = current_revision(&op, &path).await;
    let again = init(&op, &path, PASSWORD).await;
    assert_eq!(again["api_key"], api_key.as_str());
    assert_eq!(again["success"], true, "{again}");
    assert_eq!(again["secret_patched"], true, "{again}");
    assert_eq!(again["pod_restarted"], true, "{again}");
    assert_eq!(current_revision(&op, &path).await, revision);
    let keys = n8n.api_keys(&op.http).await;
    assert_eq!(keys.len(), 1, "exactly one API key: {keys:?}");
    let digest = assert_kept(&op, &ns, &release, &api_key).await;

    // Someone rolls back by hand, past the key (as an earlier failed apply
    // would leave it): the next poll applies the kept key again (a new
    // revision), and answers so; n8n is not asked for another key.
    let helm = crate::harness::helm_binary(major);
    let rolled = tokio::process::Command::new(&helm)
        .args(["rollback", &release, "2", "--namespace", &ns])
        .output()
        .await
        .expect("helm rollback");
    assert!(rolled.status.success(), "{rolled:?}");
    let before = current_revision(&op, &path).await;
    let reapplied = init(&op, &path, PASSWORD).await;
    assert_eq!(reapplied["success"], true, "{reapplied}");
    assert_eq!(reapplied["api_key"], api_key.as_str());
    assert_eq!(reapplied["secret_patched"], true, "{reapplied}");
    assert_eq!(reapplied["pod_restarted"], true, "{reapplied}");
    assert_eq!(current_revision(&op, &path).await, before + 1);
    assert_eq!(assert_kept(&op, &ns, &release, &api_key).await, digest);
    assert_eq!(n8n.api_keys(&op.http).await.len(), 1);

    // The platform's upgrade renders the placeholder key again: the kept
    // key and the sidecar stay. So does a rollback.
    let upgrade =
        json!({"chart": chart, "values": {"main": {"secret": {"N8N_API_KEY": "placeholder"}}}});
    let (status, body) = op.call(Method::PATCH, &path, Some(upgrade)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The pods restarted once for the key: the same digest, no restart now.
    assert_eq!(assert_kept(&op, &ns, &release, &api_key).await, digest);
    let (status, body) = op
        .call(
            Method::POST,
            &format!("{path}/rollback"),
            Some(json!({"revision": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(assert_kept(&op, &ns, &release, &api_key).await, digest);
    assert_eq!(n8n.api_keys(&op.http).await.len(), 1);

    // Taken off: one revision without it.
    let before = current_revision(&op, &path).await;
    let (status, body) = op
        .call(Method::DELETE, &format!("{path}/sidecar"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(current_revision(&op, &path).await, before + 1);
    let deployment = Api::<Deployment>::namespaced(op.kube.clone(), &ns)
        .get(&format!("{release}-n8n"))
        .await
        .expect("deployment");
    let names: Vec<String> = deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["n8n"]);
    assert!(
        Api::<Service>::namespaced(op.kube.clone(), &ns)
            .get_opt(&format!("{release}-mcp"))
            .await
            .expect("read")
            .is_none()
    );
    // The key stays kept without the sidecar.
    let secret = Api::<Secret>::namespaced(op.kube.clone(), &ns)
        .get(&format!("{release}-n8n-app-secret"))
        .await
        .expect("secret");
    let kept = base64::engine::general_purpose::STANDARD.encode(api_key.as_bytes());
    let data = serde_json::to_value(secret.data.expect("data")).expect("json");
    assert_eq!(data["N8N_API_KEY"], kept);

    // Uninstalled: what the operator kept goes too.
    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        Api::<Secret>::namespaced(op.kube.clone(), &ns)
            .get_opt(&format!("paas-operator.{release}"))
            .await
            .expect("read")
            .is_none()
    );
    drop(op);
}
crate::both_helms!(n8n_bootstrap);
