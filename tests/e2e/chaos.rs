//! Crash-only: what the platform sees after each kind of crash, with the
//! default timing settings (HELM_TIMEOUT 300, RELEASE_LOCK_WAIT 5,
//! LEASE_TTL 15, HELM_KILL_GRACE 5, RECOVERY_SWEEP_INTERVAL 5). Each test
//! runs the real `paas-operator` binary against the local control plane,
//! in its own namespace, crashes something in the middle of a write and
//! then asserts the platform's next calls: a retried install answers 201,
//! a retried upgrade 200, and no release reads `pending-*` for long.
//!
//! The `slowhooks` fixture chart runs `hooks` hook Jobs one after the
//! other (~3 s each) before applying, so a write stays `pending-*` long
//! enough to crash something in the middle of it.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::harness::{
    API_KEY, Major, OperatorProcess, create_tenant, delete_namespace, helm_binary, helm_pids_with,
    random_release, scratch_dir,
};

/// The settings the harness shortens for other tests, back at their defaults.
const DEFAULT_TIMING: &[(&str, &str)] = &[("HELM_TIMEOUT", "300"), ("RELEASE_LOCK_WAIT", "5")];
/// A hook image the fake kubelet never starts.
const NEVER_READY: &str = "registry.local/imagepullfail:1.0";

async fn slowhooks() -> String {
    crate::harness::fixture_chart("slowhooks").await
}

async fn admin() -> kube::Client {
    crate::harness::admin_client()
        .await
        .expect("admin kubeconfig")
}

/// The newest revision and its status, as Helm's records say (read as
/// admin, straight from the API: not through the operator).
async fn record_status(kube: &kube::Client, namespace: &str, name: &str) -> Option<(u32, String)> {
    let api: Api<Secret> = Api::namespaced(kube.clone(), namespace);
    let records = api
        .list_metadata(&ListParams::default().labels(&format!("owner=helm,name={name}")))
        .await
        .ok()?;
    records
        .items
        .iter()
        .filter_map(|record| {
            let labels = record.metadata.labels.as_ref()?;
            let version: u32 = labels.get("version")?.parse().ok()?;
            Some((version, labels.get("status")?.clone()))
        })
        .max_by_key(|(version, _)| *version)
}

/// Waits (up to `limit`) until the newest record of each release is
/// `pending-*`.
async fn wait_all_pending(kube: &kube::Client, namespace: &str, names: &[String], limit: Duration) {
    let started = Instant::now();
    loop {
        let mut pending = 0;
        for name in names {
            if let Some((_, status)) = record_status(kube, namespace, name).await
                && status.starts_with("pending")
            {
                pending += 1;
            }
        }
        if pending == names.len() {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "only {pending} of {} writes became pending",
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Status, JSON body and `Retry-After` of an answer.
type Answer = (StatusCode, Value, Option<String>);

/// A request with the API key; `Err` when no answer came (the operator
/// died). Also returns the `Retry-After` header.
async fn request(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Answer, reqwest::Error> {
    let mut request = http
        .request(method, format!("{base}{path}"))
        .header("X-API-Key", API_KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body, retry))
}

fn spawn_request(
    op: &OperatorProcess,
    method: Method,
    path: &str,
    body: Value,
) -> tokio::task::JoinHandle<Result<Answer, reqwest::Error>> {
    let (http, base, path) = (op.http.clone(), op.base.clone(), path.to_owned());
    tokio::spawn(async move { request(&http, &base, method, &path, Some(body)).await })
}

/// SIGKILLs every helm process whose command line holds all of `needles`
/// (never a dry run); returns how many.
fn kill_helm(needles: &[&str]) -> usize {
    let pids: Vec<i32> = helm_pids_with(needles)
        .into_iter()
        .filter(|pid| !cmdline(*pid).iter().any(|a| a.starts_with("--dry-run")))
        .collect();
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    pids.len()
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Every process whose parent chain reaches `root` (its children, theirs…).
fn descendants(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                    let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                    let (_, after) = stat.rsplit_once(')')?;
                    let ppid: i32 = after.split_whitespace().nth(1)?.parse().ok()?;
                    Some((pid, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The whole replica dies at once (container killed, node lost): the
/// operator process and every process below it (its helm children).
async fn kill_replica(op: &mut OperatorProcess) {
    let pid = op.pid();
    let children = descendants(pid);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    for child in children {
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
    }
    let _ = op.child.wait().await;
}

async fn lease(kube: &kube::Client, namespace: &str, name: &str) -> Option<Lease> {
    let api: Api<Lease> = Api::namespaced(kube.clone(), namespace);
    api.get_opt(&format!("paas-operator.{name}"))
        .await
        .expect("read lease")
}

/// Waits (up to `limit`) until the release's Lease is gone.
async fn wait_lease_gone(kube: &kube::Client, namespace: &str, name: &str, limit: Duration) {
    let started = Instant::now();
    while lease(kube, namespace, name).await.is_some() {
        assert!(
            started.elapsed() < limit,
            "the Lease of {name} is still there after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the release through `op` (GET, never a write) until it is not
/// `pending-*`; returns its status.
async fn wait_not_pending(op: &OperatorProcess, path: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        if let Ok((StatusCode::OK, body, _)) =
            request(&op.http, &op.base, Method::GET, path, None).await
        {
            let status = body["status"].as_str().unwrap_or_default().to_owned();
            if !status.starts_with("pending") {
                return status;
            }
        }
        assert!(
            started.elapsed() < limit,
            "{path} still pending after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_interrupted(answer: &Answer) {
    let (status, body, retry) = answer;
    assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error_type"], "helm_interrupted", "{body}");
    assert!(body["detail"].is_string(), "{body}");
    assert!(retry.is_some(), "503 without Retry-After");
}

/// helm SIGKILLed in the middle of an install: the request answers 503
/// `helm_interrupted` (retry is safe), the release reads `failed` at once
/// (not `pending-install`), and the same install retried answers 201.
async fn helm_killed_mid_install(major: Major) {
    let chart = slowhooks().await;
    let kube = admin().await;
    let op = OperatorProcess::spawn(&helm_binary(major), DEFAULT_TIMING).await;
    let ns = create_tenant(&op.http, &op.base).await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    let body = json!({"namespace": ns, "name": name, "chart": chart, "values": {"hooks": 2}});
    let install = spawn_request(&op, Method::POST, "/api/releases", body.clone());
    wait_all_pending(
        &kube,
        &ns,
        std::slice::from_ref(&name),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        kill_helm(&["install", &name]) > 0,
        "no helm install to kill"
    );
    let killed_at = Instant::now();

    let answer = install.await.expect("task").expect("answered");
    assert_interrupted(&answer);
    let answered = killed_at.elapsed();
    // What the platform reads next: failed, not stuck, nothing to wait for.
    let (status, release, _) = request(&op.http, &op.base, Method::GET, &path, None)
        .await
        .expect("get");
    assert_eq!(status, StatusCode::OK, "{release}");
    assert_eq!(release["status"], "failed", "{release}");
    let (_, status_answer, _) = request(
        &op.http,
        &op.base,
        Method::GET,
        &format!("{path}/status"),
        None,
    )
    .await
    .expect("status");
    assert_eq!(status_answer["stuck"], false, "{status_answer}");

    // The same install again: the release never reached deployed, so it
    // is removed and installed anew.
    let retry = request(
        &op.http,
        &op.base,
        Method::POST,
        "/api/releases",
        Some(body),
    )
    .await
    .expect("retry");
    let usable = killed_at.elapsed();
    assert_eq!(retry.0, StatusCode::CREATED, "{}", retry.1);
    assert_eq!(retry.1["status"], "deployed", "{}", retry.1);
    assert_eq!(retry.1["revision"], 1, "{}", retry.1);
    assert!(
        usable < Duration::from_secs(20),
        "201 only after {usable:?}"
    );
    println!(
        "chaos ({major:?}): helm killed mid-install: 503 after {:.1}s, retried install 201 {:.1}s after the kill",
        answered.as_secs_f64(),
        usable.as_secs_f64()
    );
    wait_lease_gone(&kube, &ns, &name, Duration::from_secs(10)).await;
    assert!(
        helm_pids_with(&[&name]).is_empty(),
        "a helm of {name} is still running"
    );
    delete_namespace(&ns).await;
}

/// helm SIGKILLed in the middle of an upgrade: 503 `helm_interrupted`, the
/// release reads `failed` at once, and the same upgrade retried answers 200.
async fn helm_killed_mid_upgrade(major: Major) {
    let chart = slowhooks().await;
    let kube = admin().await;
    let op = OperatorProcess::spawn(&helm_binary(major), DEFAULT_TIMING).await;
    let ns = create_tenant(&op.http, &op.base).await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    let (status, body, _) = request(
        &op.http,
        &op.base,
        Method::POST,
        "/api/releases",
        Some(json!({"namespace": ns, "name": name, "chart": chart, "values": {"hooks": 1}})),
    )
    .await
    .expect("install");
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let upgrade = json!({"chart": chart, "values": {"hooks": 2, "message": "second"}});
    let running = spawn_request(&op, Method::PATCH, &path, upgrade.clone());
    wait_all_pending(
        &kube,
        &ns,
        std::slice::from_ref(&name),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        kill_helm(&["upgrade", &name]) > 0,
        "no helm upgrade to kill"
    );
    let killed_at = Instant::now();
    assert_interrupted(&running.await.expect("task").expect("answered"));
    assert_eq!(
        record_status(&kube, &ns, &name).await,
        Some((2, "failed".to_owned()))
    );

    let (status, body, _) = request(&op.http, &op.base, Method::PATCH, &path, Some(upgrade))
        .await
        .expect("retry");
    let usable = killed_at.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "deployed", "{body}");
    assert_eq!(body["revision"], 3, "{body}");
    assert!(
        usable < Duration::from_secs(20),
        "200 only after {usable:?}"
    );
    println!(
        "chaos ({major:?}): helm killed mid-upgrade: retried upgrade 200 {:.1}s after the kill",
        usable.as_secs_f64()
    );
    delete_namespace(&ns).await;
}

crate::both_helms!(helm_killed_mid_install);
crate::both_helms!(helm_killed_mid_upgrade);

/// A replica SIGKILLed (with its helm children, as a container kill does)
/// while 8 writes run (4 installs, 4 upgrades), then started again: within
/// 30 s of the kill no release reads `pending-*` although nobody writes;
/// then the retried installs answer 201 and the retried upgrades 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_killed_with_eight_writes_in_flight_then_restarted() {
    crate::require_env!();
    let chart = slowhooks().await;
    let kube = admin().await;
    let helm = helm_binary(Major::Helm4);
    let mut a = OperatorProcess::spawn(&helm, DEFAULT_TIMING).await;
    let ns = create_tenant(&a.http, &a.base).await;
    let upgraded: Vec<String> = (0..4).map(|_| random_release()).collect();
    let installed: Vec<String> = (0..4).map(|_| random_release()).collect();
    let first: Vec<_> = upgraded
        .iter()
        .map(|name| {
            let body =
                json!({"namespace": ns, "name": name, "chart": chart, "values": {"hooks": 1}});
            spawn_request(&a, Method::POST, "/api/releases", body)
        })
        .collect();
    for task in first {
        let (status, body, _) = task.await.expect("task").expect("answered");
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    let install = |name: &String| json!({"namespace": ns, "name": name, "chart": chart, "values": {"hooks": 4}});
    let upgrade = json!({"chart": chart, "values": {"hooks": 4, "message": "upgraded"}});
    let mut in_flight = Vec::new();
    for name in &installed {
        in_flight.push(spawn_request(
            &a,
            Method::POST,
            "/api/releases",
            install(name),
        ));
    }
    for name in &upgraded {
        let path = format!("/api/releases/{ns}/{name}");
        in_flight.push(spawn_request(&a, Method::PATCH, &path, upgrade.clone()));
    }
    let all: Vec<String> = installed.iter().chain(&upgraded).cloned().collect();
    wait_all_pending(&kube, &ns, &all, Duration::from_secs(90)).await;
    kill_replica(&mut a).await;
    let killed_at = Instant::now();
    for task in in_flight {
        assert!(
            task.await.expect("task").is_err(),
            "a write was answered by a killed replica"
        );
    }

    let b = OperatorProcess::spawn(&helm, DEFAULT_TIMING).await;
    let restarted = killed_at.elapsed();
    for name in &all {
        let status = wait_not_pending(
            &b,
            &format!("/api/releases/{ns}/{name}"),
            Duration::from_secs(30).saturating_sub(killed_at.elapsed()),
        )
        .await;
        assert_eq!(status, "failed", "{name}");
    }
    let settled = killed_at.elapsed();

    let mut retries = Vec::new();
    for name in &installed {
        retries.push((
            StatusCode::CREATED,
            spawn_request(&b, Method::POST, "/api/releases", install(name)),
        ));
    }
    for name in &upgraded {
        let path = format!("/api/releases/{ns}/{name}");
        retries.push((
            StatusCode::OK,
            spawn_request(&b, Method::PATCH, &path, upgrade.clone()),
        ));
    }
    for (wanted, task) in retries {
        let (status, body, _) = task.await.expect("task").expect("answered");
        assert_eq!(status, wanted, "{body}");
        assert_eq!(body["status"], "deployed", "{body}");
    }
    println!(
        "chaos: replica killed with 8 writes in flight: restarted after {:.1}s, none pending {:.1}s after the kill (no write), retries 4 x 201 + 4 x 200 {:.1}s after the kill",
        restarted.as_secs_f64(),
        settled.as_secs_f64(),
        killed_at.elapsed().as_secs_f64()
    );
    delete_namespace(&ns).await;
}

/// A replica lost with its node: nothing tells the others it is dead, so
/// its Lease holds the release until LEASE_TTL after its last renewal (a
/// retried install meanwhile: 409 `operation_in_progress`); then the
/// sweep of the other replica recovers the release without any write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_lost_with_its_node_blocks_its_releases_for_one_lease_ttl() {
    crate::require_env!();
    let chart = slowhooks().await;
    let kube = admin().await;
    let helm = helm_binary(Major::Helm4);
    let b = OperatorProcess::spawn(&helm, DEFAULT_TIMING).await;
    let mut a = OperatorProcess::spawn(&helm, DEFAULT_TIMING).await;
    let ns = create_tenant(&a.http, &a.base).await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    let body = json!({"namespace": ns, "name": name, "chart": chart, "values": {"hooks": 3}});
    let _in_flight = spawn_request(&a, Method::POST, "/api/releases", body.clone());
    wait_all_pending(
        &kube,
        &ns,
        std::slice::from_ref(&name),
        Duration::from_secs(60),
    )
    .await;
    kill_replica(&mut a).await;
    let killed_at = Instant::now();
    // The node is gone: its holder identity names a host nobody can look at.
    let leases: Api<Lease> = Api::namespaced(kube.clone(), &ns);
    let mut held = lease(&kube, &ns, &name)
        .await
        .expect("the dead replica's Lease");
    let last_renewal = held
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.clone())
        .expect("renew time")
        .0;
    if let Some(spec) = held.spec.as_mut() {
        spec.holder_identity = Some("paas-operator-gone;proc=lost-node/1/1/1".into());
    }
    leases
        .replace(
            &format!("paas-operator.{name}"),
            &PostParams::default(),
            &held,
        )
        .await
        .expect("rewrite holder");

    let (status, answer, _) = request(
        &b.http,
        &b.base,
        Method::POST,
        "/api/releases",
        Some(body.clone()),
    )
    .await
    .expect("retry");
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error_type"], "operation_in_progress", "{answer}");

    let status = wait_not_pending(&b, &path, Duration::from_secs(30)).await;
    assert_eq!(status, "failed");
    let recovered = killed_at.elapsed();
    let after_renewal = jiff::Timestamp::now().duration_since(last_renewal);
    let (status, answer, _) = request(&b.http, &b.base, Method::POST, "/api/releases", Some(body))
        .await
        .expect("retry");
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    println!(
        "chaos: replica lost with its node: release failed (not pending) {:.1}s after the kill, {:.1}s after its last renewal; retried install 201 {:.1}s after the kill",
        recovered.as_secs_f64(),
        after_renewal.as_secs_f64(),
        killed_at.elapsed().as_secs_f64()
    );
    assert!(
        after_renewal.as_secs_f64() >= 15.0,
        "recovered while the Lease was still valid"
    );
    delete_namespace(&ns).await;
}

/// A TCP proxy between the operator (and its helm) and the API server
/// that can stop forwarding without closing anything: connections stay
/// open and new ones are accepted, but no byte goes through, as with a
/// network partition or an etcd stall.
struct PausableProxy {
    port: u16,
    paused: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PausableProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy port");
        let port = listener.local_addr().expect("address").port();
        let (paused, watching) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(pipe(inbound, upstream.clone(), watching.clone()));
            }
        });
        Self { port, paused, task }
    }

    fn pause(&self) {
        self.paused.send_replace(true);
    }

    fn resume(&self) {
        self.paused.send_replace(false);
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_unpaused(paused: &mut watch::Receiver<bool>) -> bool {
    paused.wait_for(|paused| !*paused).await.is_ok()
}

async fn pipe(inbound: tokio::net::TcpStream, upstream: String, mut paused: watch::Receiver<bool>) {
    // A connection made while paused is accepted and left hanging.
    if !wait_unpaused(&mut paused).await {
        return;
    }
    let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
        return;
    };
    let (from_client, to_client) = inbound.into_split();
    let (from_server, to_server) = outbound.into_split();
    tokio::join!(
        forward(from_client, to_server, paused.clone()),
        forward(from_server, to_client, paused),
    );
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 << 10];
    loop {
        if !wait_unpaused(&mut paused).await {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Paused while waiting for bytes: stop reading.
            _ = paused.changed() => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // Bytes read just before a pause go through only after it.
        if !wait_unpaused(&mut paused).await || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Polls `/ready` until it answers `wanted`; returns how long that took.
async fn wait_ready(op: &OperatorProcess, wanted: StatusCode, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = op
            .http
            .get(format!("{}/ready", op.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map(|r| r.status());
        if status.as_ref().is_ok_and(|s| *s == wanted) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "/ready never became {wanted}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API server stops answering (connections hang) during an install:
/// GETs answer 503 `kubernetes_unavailable` within 10 s (none hangs),
/// /ready says not ready, the install is stopped; once the API answers
/// again everything works and nothing is left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_api_server_is_503_within_seconds_and_leaves_nothing_pending() {
    crate::require_env!();
    let chart = slowhooks().await;
    let kube = admin().await;
    let admin_config =
        std::fs::read_to_string(crate::harness::env("KUBECONFIG")).expect("kubeconfig");
    let server = admin_config
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("server line")
        .to_owned();
    let proxy = PausableProxy::start(server.clone()).await;
    let dir = scratch_dir("hung");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        admin_config.replace(
            &format!("server: https://{server}"),
            &format!("server: https://127.0.0.1:{}", proxy.port),
        ),
    )
    .expect("kubeconfig");
    let kubeconfig = kubeconfig.display().to_string();
    let mut settings = DEFAULT_TIMING.to_vec();
    settings.push(("KUBECONFIG", &kubeconfig));
    let op = OperatorProcess::spawn(&helm_binary(Major::Helm4), &settings).await;
    wait_ready(&op, StatusCode::OK, Duration::from_secs(20)).await;
    let ns = create_tenant(&op.http, &op.base).await;
    let deployed = random_release();
    let deployed_path = format!("/api/releases/{ns}/{deployed}");
    let (status, body, _) = request(
        &op.http,
        &op.base,
        Method::POST,
        "/api/releases",
        Some(json!({"namespace": ns, "name": deployed, "chart": chart, "values": {"hooks": 0}})),
    )
    .await
    .expect("install");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, _) = request(&op.http, &op.base, Method::GET, &deployed_path, None)
        .await
        .expect("get");
    assert_eq!(status, StatusCode::OK);

    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    let body = json!({"namespace": ns, "name": name, "chart": chart, "values": {"hooks": 3}});
    let in_flight = spawn_request(&op, Method::POST, "/api/releases", body.clone());
    wait_all_pending(
        &kube,
        &ns,
        std::slice::from_ref(&name),
        Duration::from_secs(60),
    )
    .await;
    proxy.pause();
    let hung_at = Instant::now();

    // GETs: each answered within 10 s, and 503 within 10 s of the hang.
    let mut first_503 = None;
    let mut slowest = Duration::ZERO;
    while first_503.is_none() {
        let asked = Instant::now();
        let answer = request(&op.http, &op.base, Method::GET, &deployed_path, None)
            .await
            .expect("answered");
        slowest = slowest.max(asked.elapsed());
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "a GET took {:?}",
            asked.elapsed()
        );
        if answer.0 == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(
                answer.1["error_type"], "kubernetes_unavailable",
                "{}",
                answer.1
            );
            assert!(answer.2.is_some(), "503 without Retry-After");
            first_503 = Some(hung_at.elapsed());
        } else {
            assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            hung_at.elapsed() < Duration::from_secs(10),
            "no 503 within 10 s of the hang"
        );
    }
    for read in [
        format!("{path}/status"),
        format!("{deployed_path}/revisions"),
    ] {
        let asked = Instant::now();
        let (status, body, _) = request(&op.http, &op.base, Method::GET, &read, None)
            .await
            .expect("answered");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{read}: {body}");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{read} took {:?}",
            asked.elapsed()
        );
    }
    let not_ready = hung_at.elapsed()
        + wait_ready(
            &op,
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(10),
        )
        .await;
    // The install in flight is stopped once its Lease could not be renewed.
    let stopped = tokio::time::timeout(Duration::from_secs(30), in_flight)
        .await
        .expect("the in-flight install answered while the API hung")
        .expect("task")
        .expect("answered");
    let install_answered = hung_at.elapsed();
    assert!(stopped.0.is_server_error(), "{}", stopped.1);
    assert!(
        stopped.2.is_some(),
        "5xx without Retry-After: {}",
        stopped.1
    );

    proxy.resume();
    let resumed_at = Instant::now();
    wait_ready(&op, StatusCode::OK, Duration::from_secs(20)).await;
    // Nothing left pending, without any write.
    let status = wait_not_pending(&op, &path, Duration::from_secs(30)).await;
    assert_eq!(status, "failed");
    let repaired = resumed_at.elapsed();
    assert!(
        helm_pids_with(&["install", &name]).is_empty(),
        "the stopped helm is still running"
    );
    // Everything works again.
    let (status, answer, _) = request(
        &op.http,
        &op.base,
        Method::POST,
        "/api/releases",
        Some(body),
    )
    .await
    .expect("retry");
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer, _) = request(
        &op.http,
        &op.base,
        Method::PATCH,
        &deployed_path,
        Some(json!({"chart": chart, "values": {"hooks": 0, "message": "after"}})),
    )
    .await
    .expect("upgrade");
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["revision"], 2, "{answer}");
    println!(
        "chaos: hung API server: first GET 503 {:.1}s after the hang (slowest GET {:.1}s), /ready 503 after {:.1}s, in-flight install answered {} after {:.1}s; after it answered again: release failed (not pending) within {:.1}s",
        first_503.unwrap_or_default().as_secs_f64(),
        slowest.as_secs_f64(),
        not_ready.as_secs_f64(),
        answer_code(&stopped.1),
        install_answered.as_secs_f64(),
        repaired.as_secs_f64()
    );
    delete_namespace(&ns).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn answer_code(answer: &Value) -> String {
    answer["error_type"].as_str().unwrap_or("?").to_owned()
}

/// SIGTERM with a SHUTDOWN_GRACE shorter than the install in flight: the
/// install is stopped (503 `helm_interrupted`), its helm does not survive
/// the operator, the Lease is gone and the release reads `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_short_grace_leaves_no_helm_no_lease_nothing_pending() {
    crate::require_env!();
    let chart = slowhooks().await;
    let kube = admin().await;
    let mut settings = DEFAULT_TIMING.to_vec();
    settings.push(("SHUTDOWN_GRACE", "2"));
    let mut op = OperatorProcess::spawn(&helm_binary(Major::Helm4), &settings).await;
    let ns = create_tenant(&op.http, &op.base).await;
    let name = random_release();
    let body = json!({"namespace": ns, "name": name, "chart": chart, "values": {"hookImage": NEVER_READY}});
    let install = spawn_request(&op, Method::POST, "/api/releases", body);
    wait_all_pending(
        &kube,
        &ns,
        std::slice::from_ref(&name),
        Duration::from_secs(60),
    )
    .await;
    let helm_before = helm_pids_with(&["install", &name]);
    assert!(!helm_before.is_empty(), "no helm install running");
    kill(Pid::from_raw(op.pid()), Signal::SIGTERM).expect("SIGTERM");
    let signalled = Instant::now();

    assert_interrupted(&install.await.expect("task").expect("answered"));
    let exit = tokio::time::timeout(Duration::from_secs(20), op.child.wait())
        .await
        .expect("the operator exits within its grace and helm's kill grace")
        .expect("wait");
    let exited = signalled.elapsed();
    assert!(exit.success(), "exit {exit:?}");
    for pid in helm_before {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "helm {pid} outlived the operator"
        );
    }
    assert!(
        lease(&kube, &ns, &name).await.is_none(),
        "the Lease is left behind"
    );
    assert_eq!(
        record_status(&kube, &ns, &name).await.map(|(_, s)| s),
        Some("failed".to_owned())
    );
    println!(
        "chaos: SIGTERM with SHUTDOWN_GRACE=2 during an install: exited {:.1}s after the signal; no helm left, no Lease, release failed",
        exited.as_secs_f64()
    );
    delete_namespace(&ns).await;
}
