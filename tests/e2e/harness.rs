//! The one harness of the end-to-end tests: the local control plane's
//! coordinates (from `target/testenv/env`, exported by `scripts/test`), an
//! operator served in process on 127.0.0.1:0 ([`Operator`]) or as the real
//! binary ([`OperatorProcess`]) with the same settings ([`base_settings`]),
//! and a fresh random tenant namespace per test. Without the control plane
//! every test returns at once with a "skipped" line ([`require_env!`]).

use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use paas_operator::config::Config;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const API_KEY: &str = "e2e-test-key-7d1f";

/// Which helm major the operator under test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Major {
    Helm3,
    Helm4,
}

/// The variables `scripts/testenv up` writes to `target/testenv/env`.
const TESTENV: &[&str] = &[
    "KUBECONFIG",
    "HELM3_BINARY",
    "HELM4_BINARY",
    "OCI_REGISTRY",
    "CHART_REPO_URL",
];

/// True when the local control plane's coordinates are exported. When
/// they are not, says so once on the terminal (past the test harness's
/// output capture), naming what is missing.
pub fn env_is_up() -> bool {
    let missing: Vec<&str> = TESTENV
        .iter()
        .copied()
        .filter(|name| std::env::var_os(name).is_none())
        .collect();
    if !missing.is_empty() {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "e2e: skipping the end-to-end tests: {} not set, so the local control plane is not up (run `scripts/test`, or `scripts/testenv up` and `. target/testenv/env`)",
                missing.join(", ")
            );
        });
    }
    missing.is_empty()
}

/// Returns from the calling test, saying why, when the local control plane
/// is not up: `cargo test` alone then runs the unit and handler tests and
/// skips these.
#[macro_export]
macro_rules! require_env {
    () => {
        if !$crate::harness::env_is_up() {
            eprintln!("skipped: the local control plane is not up");
            return;
        }
    };
}

/// Reads a variable the test script exports (checked by [`require_env!`]).
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the local control plane with `scripts/testenv up` and run the tests with `scripts/test`")
    })
}

pub fn helm_binary(major: Major) -> String {
    match major {
        Major::Helm3 => env("HELM3_BINARY"),
        Major::Helm4 => env("HELM4_BINARY"),
    }
}

/// `oci://<registry>/charts/<chart>`.
pub fn oci_chart(chart: &str) -> String {
    format!("oci://{}/charts/{chart}", env("OCI_REGISTRY"))
}

/// Packages `tests/fixtures/charts/<chart>` and pushes it to the local
/// registry (once per test binary); returns its `oci://` reference.
pub async fn fixture_chart(chart: &str) -> String {
    static PUSHED: tokio::sync::Mutex<Vec<String>> = tokio::sync::Mutex::const_new(Vec::new());
    let mut pushed = PUSHED.lock().await;
    if !pushed.iter().any(|c| c == chart) {
        let dir = scratch_dir("chart");
        let helm = helm_binary(Major::Helm4);
        let fixture = format!(
            "{}/tests/fixtures/charts/{chart}",
            env!("CARGO_MANIFEST_DIR")
        );
        let package = tokio::process::Command::new(&helm)
            .args(["package", &fixture, "-d"])
            .arg(&dir)
            .output()
            .await
            .expect("helm package");
        assert!(package.status.success(), "{package:?}");
        let tgz = std::fs::read_dir(&dir)
            .expect("package dir")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|e| e == "tgz"))
            .expect("packaged chart");
        let push = tokio::process::Command::new(&helm)
            .arg("push")
            .arg(&tgz)
            .arg(format!("oci://{}/charts", env("OCI_REGISTRY")))
            .arg("--plain-http")
            .output()
            .await
            .expect("helm push");
        assert!(push.status.success(), "{push:?}");
        let _ = std::fs::remove_dir_all(&dir);
        pushed.push(chart.to_owned());
    }
    oci_chart(chart)
}

/// A copy of `tests/fixtures/charts/<chart>` in a scratch directory, named
/// `<chart>-<variant>` (its own OCI repository once pushed), with every
/// `(placeholder, text)` replaced in its files. Returns the chart's
/// directory (for bare helm too).
pub fn fixture_variant(chart: &str, variant: &str, replace: &[(&str, &str)]) -> std::path::PathBuf {
    fn copy(from: &std::path::Path, to: &std::path::Path, replace: &[(&str, &str)]) {
        std::fs::create_dir_all(to).expect("chart dir");
        for entry in std::fs::read_dir(from).expect("fixture dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy(&entry.path(), &target, replace);
                continue;
            }
            let mut text = std::fs::read_to_string(entry.path()).expect("fixture file");
            for (placeholder, value) in replace {
                text = text.replace(placeholder, value);
            }
            std::fs::write(target, text).expect("write fixture file");
        }
    }
    let name = format!("{chart}-{variant}");
    let dir = scratch_dir("variant").join(&name);
    let fixture = format!(
        "{}/tests/fixtures/charts/{chart}",
        env!("CARGO_MANIFEST_DIR")
    );
    copy(std::path::Path::new(&fixture), &dir, replace);
    let chart_yaml = dir.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart_yaml).expect("Chart.yaml");
    let renamed = text.replacen(&format!("name: {chart}\n"), &format!("name: {name}\n"), 1);
    assert_ne!(
        text, renamed,
        "Chart.yaml of {chart} names it on a line of its own"
    );
    std::fs::write(&chart_yaml, renamed).expect("Chart.yaml");
    dir
}

/// Packages the chart in `dir` and pushes it to the local registry;
/// returns its `oci://` reference.
pub async fn push_chart_dir(dir: &std::path::Path) -> String {
    let out = scratch_dir("package");
    let helm = helm_binary(Major::Helm4);
    let package = tokio::process::Command::new(&helm)
        .arg("package")
        .arg(dir)
        .arg("-d")
        .arg(&out)
        .output()
        .await
        .expect("helm package");
    assert!(package.status.success(), "{package:?}");
    let tgz = std::fs::read_dir(&out)
        .expect("package dir")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "tgz"))
        .expect("packaged chart");
    let push = tokio::process::Command::new(&helm)
        .arg("push")
        .arg(&tgz)
        .arg(format!("oci://{}/charts", env("OCI_REGISTRY")))
        .arg("--plain-http")
        .output()
        .await
        .expect("helm push");
    assert!(push.status.success(), "{push:?}");
    let _ = std::fs::remove_dir_all(&out);
    let name = dir.file_name().expect("chart dir name").to_string_lossy();
    oci_chart(&name)
}

/// A random tenant namespace name, `paas-ws-` + 8 hex digits.
pub fn random_namespace() -> String {
    format!("paas-ws-{:08x}", rand::rng().random::<u32>())
}

/// A random release name, `svc-` + 8 hex digits.
pub fn random_release() -> String {
    format!("svc-{:08x}", rand::rng().random::<u32>())
}

/// One setting of every operator under test: as a flag (in process) and
/// as an environment variable (the binary), from one table.
pub struct Setting {
    flag: &'static str,
    env: &'static str,
    /// `None`: a switch, set.
    value: Option<String>,
}

impl Setting {
    fn new(flag: &'static str, env: &'static str, value: Option<&str>) -> Self {
        Self {
            flag,
            env,
            value: value.map(str::to_owned),
        }
    }

    fn flag(&self) -> Vec<String> {
        match &self.value {
            Some(value) => vec![self.flag.to_owned(), value.clone()],
            None => vec![self.flag.to_owned()],
        }
    }

    fn env_value(&self) -> &str {
        self.value.as_deref().unwrap_or("true")
    }
}

/// What every operator under test runs with. With OPERATOR_KUBECONFIG (set
/// by `scripts/test`) the operator and its helm act as the ServiceAccount
/// of k8s/rbac.yaml, not as admin.
pub fn base_settings(helm: &str) -> Vec<Setting> {
    let registry = env("OCI_REGISTRY");
    let mut settings = vec![
        Setting::new("--api-key", "API_KEY", Some(API_KEY)),
        Setting::new("--helm-binary", "HELM_BINARY", Some(helm)),
        Setting::new(
            "--plain-http-registries",
            "PLAIN_HTTP_REGISTRIES",
            Some(&registry),
        ),
        Setting::new(
            "--allowed-chart-sources",
            "ALLOWED_CHART_SOURCES",
            Some(&format!(
                "oci://{registry}/charts,{}",
                env("CHART_REPO_URL")
            )),
        ),
        Setting::new("--allow-http-charts", "ALLOW_HTTP_CHARTS", None),
        Setting::new("--helm-timeout", "HELM_TIMEOUT", Some("120")),
        Setting::new("--release-lock-wait", "RELEASE_LOCK_WAIT", Some("2")),
    ];
    if let Ok(path) = std::env::var("OPERATOR_KUBECONFIG") {
        settings.push(Setting::new("--kubeconfig", "KUBECONFIG", Some(&path)));
    }
    settings
}

/// An operator served in process, with the client the platform would use.
pub struct Operator {
    pub base: String,
    pub http: reqwest::Client,
    pub kube: kube::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    namespaces: Vec<String>,
}

impl Operator {
    /// Starts an operator using the given helm major and extra arguments.
    pub async fn start(major: Major, extra: &[&str]) -> Self {
        Self::start_with_helm(&helm_binary(major), extra).await
    }

    /// Starts an operator running the given helm binary (e.g. a wrapper).
    pub async fn start_with_helm(helm: &str, extra: &[&str]) -> Self {
        Self::start_with_settings(base_settings(helm), extra).await
    }

    /// Sends a request with the API key; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with_key(method, path, body, Some(API_KEY)).await
    }

    pub async fn call_with_key(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// GETs a read endpoint; also returns where the answer came from (the
    /// `X-Served-From` header: `cache` or `api`).
    pub async fn read(&self, path: &str) -> (StatusCode, Value, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("X-API-Key", API_KEY)
            .send()
            .await
            .expect("request sent");
        json_and_header(response, "x-served-from").await
    }

    /// Creates a fresh tenant namespace through the API; deleted on drop.
    pub async fn tenant(&mut self) -> String {
        let namespace = random_namespace();
        let (status, body) = self
            .call(
                Method::POST,
                "/api/namespaces",
                Some(serde_json::json!({"name": namespace})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.namespaces.push(namespace.clone());
        namespace
    }

    /// Remembers a namespace made another way, so it is deleted on drop.
    pub fn forget_later(&mut self, namespace: &str) {
        self.namespaces.push(namespace.to_owned());
    }

    /// Polls `check` every 200 ms until it returns `Some`, or panics after `limit`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let namespaces = std::mem::take(&mut self.namespaces);
        // Best-effort cleanup on a separate thread: the test's runtime is ending.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(kube) = admin_client().await else {
                    return;
                };
                let api: Api<Namespace> = Api::all(kube);
                for namespace in namespaces {
                    let _ = api.delete(&namespace, &Default::default()).await;
                }
            });
        })
        .join();
    }
}

/// Runs an async test body once with Helm 3 and once with Helm 4.
#[macro_export]
macro_rules! both_helms {
    ($body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn helm3() {
                $crate::require_env!();
                super::$body($crate::harness::Major::Helm3).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn helm4() {
                $crate::require_env!();
                super::$body($crate::harness::Major::Helm4).await;
            }
        }
    };
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "paas-e2e-{what}-{:08x}",
        rand::rng().random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A helm wrapper script that appends every invocation but the start-up
/// `helm version` to `<dir>/helm.log`, then runs the real helm. Returns the
/// script and the log paths.
pub fn recording_helm(real: &str, dir: &std::path::Path) -> (String, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let log = dir.join("helm.log");
    let script = dir.join("helm");
    let text = format!(
        "#!/bin/sh\ncase \"$1\" in version) ;; *) printf '%s\\n' \"$*\" >> '{}' ;; esac\nexec '{}' \"$@\"\n",
        log.display(),
        real
    );
    std::fs::write(&script, text).expect("write wrapper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script.display().to_string(), log)
}

/// Lines of a recording wrapper's log (empty when helm never ran).
pub fn recorded_helm_calls(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A free TCP port on 127.0.0.1 (bound, then released).
/// Waits (30 s at most) until an operator started at `base` answers
/// `/health` with success.
pub async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let started = Instant::now();
    while !http
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "operator process did not come up on {base}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// Sends a request with the API key to any operator; returns status and JSON body.
pub async fn call_at(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http
        .request(method, format!("{base}{path}"))
        .header("X-API-Key", API_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let text = response.text().await.expect("body read");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

/// The real `paas-operator` binary as a child process (for multi-replica,
/// signal and start-up tests). Killed on drop if still running.
pub struct OperatorProcess {
    pub child: tokio::process::Child,
    pub base: String,
    pub http: reqwest::Client,
}

impl OperatorProcess {
    /// The command line, configured like [`Operator::start`] but through the
    /// environment; `env` adds or overrides variables.
    pub fn command(helm: &str, port: u16, env_vars: &[(&str, &str)]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_paas-operator"));
        for setting in base_settings(helm) {
            command.env(setting.env, setting.env_value());
        }
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "warn")
            .envs(env_vars.iter().copied())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Starts the binary and waits until `/health` answers.
    pub async fn spawn(helm: &str, env_vars: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = Self::command(helm, port, env_vars)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("operator binary starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(180))
            .build()
            .expect("http client");
        wait_healthy(&http, &base).await;
        Self { child, base, http }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call_at(&self.http, &self.base, method, path, body).await
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .expect("running child")
    }
}

/// Creates a tenant namespace through an operator process; the caller deletes it.
pub async fn create_tenant(http: &reqwest::Client, base: &str) -> String {
    let namespace = random_namespace();
    let (status, body) = call_at(
        http,
        base,
        Method::POST,
        "/api/namespaces",
        Some(serde_json::json!({"name": namespace})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    namespace
}

/// Deletes a namespace (best effort), for tests that made one without [`Operator`].
pub async fn delete_namespace(namespace: &str) {
    if let Ok(kube) = admin_client().await {
        let api: Api<Namespace> = Api::all(kube);
        let _ = api.delete(namespace, &Default::default()).await;
    }
}

/// Pids of running helm processes whose command line contains every `needle`
/// (found by scanning /proc).
pub fn helm_pids_with(needles: &[&str]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let found: Vec<(i32, i32)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let exe = std::fs::read_link(entry.path().join("exe")).ok()?;
            let is_helm = exe.file_name().is_some_and(|n| n == "helm");
            let matches = is_helm && needles.iter().all(|n| args.iter().any(|a| a == n));
            matches.then(|| Some((pid, parent_pid(pid)?))).flatten()
        })
        .collect();
    // A helm starting its post-renderer forks first: until the child has
    // exec'd, it is a second "helm" with the same command line. It is
    // the same run, so children of a listed helm are not counted.
    found
        .iter()
        .filter(|(_, parent)| !found.iter().any(|(pid, _)| pid == parent))
        .map(|(pid, _)| *pid)
        .collect()
}

/// The parent of process `pid` (from /proc/PID/stat; the command name in
/// parentheses may hold spaces, so fields are counted after its end).
fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Asserts the contract's error body: a string `detail` and this `error_type`.
pub fn assert_error(body: &Value, error_type: &str) {
    assert!(
        body["detail"].is_string(),
        "detail must be a string: {body}"
    );
    assert_eq!(body["error_type"], error_type, "{body}");
}

/// Polls a release's `/status` until every pod is Running and ready, as the
/// platform checks; returns that status body.
pub async fn wait_pods_ready(op: &Operator, release_path: &str) -> Value {
    op.wait_for(
        "pods Running and ready",
        Duration::from_secs(90),
        || async {
            let (status, body) = op
                .call(Method::GET, &format!("{release_path}/status"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let pods = body["pods"].as_array()?;
            let ready = !pods.is_empty()
                && pods.iter().all(|p| {
                    let (a, b) = p["ready"]
                        .as_str()
                        .unwrap_or("0/1")
                        .split_once('/')
                        .unwrap_or(("0", "1"));
                    p["phase"] == "Running" && a == b
                });
            ready.then_some(body)
        },
    )
    .await
}

/// A response's status, JSON body (Null when not JSON) and one header
/// (empty when absent).
pub async fn json_and_header(
    response: reqwest::Response,
    header: &str,
) -> (StatusCode, Value, String) {
    let status = response.status();
    let value = response
        .headers()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, value)
}

/// The settings of [`base_settings`], but acting as the admin kubeconfig
/// (`KUBECONFIG`) whatever `OPERATOR_KUBECONFIG` says: for tests that must
/// hold whatever identity the operator happens to run with.
pub fn admin_settings(helm: &str) -> Vec<Setting> {
    let mut settings: Vec<Setting> = base_settings(helm)
        .into_iter()
        .filter(|setting| setting.flag != "--kubeconfig")
        .collect();
    settings.push(Setting::new(
        "--kubeconfig",
        "KUBECONFIG",
        Some(&env("KUBECONFIG")),
    ));
    settings
}

impl Operator {
    /// Starts an operator (in process) that acts as the cluster admin
    /// (`--kubeconfig $KUBECONFIG`), not as the ServiceAccount of
    /// k8s/rbac.yaml.
    pub async fn start_admin(major: Major, extra: &[&str]) -> Self {
        let helm = helm_binary(major);
        Self::start_with_settings(admin_settings(&helm), extra).await
    }

    /// Starts an operator (in process) with exactly these settings (see
    /// [`base_settings`], [`admin_settings`]) and extra arguments.
    pub async fn start_with_settings(settings: Vec<Setting>, extra: &[&str]) -> Self {
        let mut args = vec!["paas-operator".to_owned()];
        // A test's own arguments replace the setting of the same flag.
        for setting in settings {
            if !extra.contains(&setting.flag) {
                args.extend(setting.flag());
            }
        }
        // The operator runs inside this test binary: Helm 4's confinement
        // post-renderer is the real operator binary.
        args.extend([
            "--confine-checker".to_owned(),
            env!("CARGO_BIN_EXE_paas-operator").to_owned(),
        ]);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let config = Config::parse_from(args);
        let state = paas_operator::build_state(config)
            .await
            .expect("operator state");
        // Tests check and arrange the cluster as admin (KUBECONFIG).
        let kube = admin_client().await.expect("admin kubeconfig");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(paas_operator::serve(
            state,
            listener,
            async {
                let _ = rx.await;
            },
            Duration::from_secs(30),
        ));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(180))
            .build()
            .expect("http client");
        Self {
            base,
            http,
            kube,
            shutdown: Some(tx),
            namespaces: Vec::new(),
        }
    }
}

/// The admin client (KUBECONFIG) the tests arrange and check the cluster
/// with. Like kubectl, it sends a request again when the API server
/// answers 429 (at its in-flight limit while other tests' charts create
/// objects): a test's own setup is not what it tests.
pub async fn admin_client() -> Result<kube::Client, kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    paas_operator::kube_client(config)
}

/// A kube client acting as `user` (and `groups`) through impersonation by
/// the admin kubeconfig: what a pod holding that identity's token could do.
pub async fn impersonating(user: &str, groups: &[String]) -> kube::Client {
    let mut config = kube::Config::infer().await.expect("admin kubeconfig");
    config.auth_info.impersonate = Some(user.to_owned());
    config.auth_info.impersonate_groups = Some(groups.to_vec());
    paas_operator::kube_client(config).expect("impersonating client")
}

impl OperatorProcess {
    /// Like [`OperatorProcess::spawn`], but the binary runs under
    /// `prlimit --nofile=LIMIT` (at most `nofile` open files, sockets
    /// included), so connection exhaustion is reachable in a test.
    pub async fn spawn_with_nofile(helm: &str, env_vars: &[(&str, &str)], nofile: u32) -> Self {
        let port = free_port();
        let mut command = tokio::process::Command::new("prlimit");
        command
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_paas-operator"));
        for setting in base_settings(helm) {
            command.env(setting.env, setting.env_value());
        }
        let child = command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "warn")
            .envs(env_vars.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("prlimit and the operator binary start");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(180))
            .build()
            .expect("http client");
        wait_healthy(&http, &base).await;
        Self { child, base, http }
    }
}
