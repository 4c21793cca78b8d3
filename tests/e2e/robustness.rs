//! Never lose or wedge a release: two replicas on one release, stuck-release
//! recovery, graceful shutdown, deadlines, bounded parallelism and faults.
//! Each test runs the real `paas-operator` binary as child processes against
//! the local control plane, with small timeouts set through the environment.
//!
//! The `slowhook` fixture chart (tests/fixtures/charts/slowhook, pushed to
//! the local registry here) waits for a hook Job on install, upgrade and
//! rollback: ~3 s with a normal image, forever with an `imagepullfail` one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{
    Major, OperatorProcess, call_at, create_tenant, delete_namespace, helm_binary, helm_pids_with,
    oci_chart, random_release, recorded_helm_calls, recording_helm, scratch_dir,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NEVER_READY: &str = "registry.local/imagepullfail:1.0";

/// The `slowhook` fixture chart, pushed to the local registry.
async fn slowhook_chart() -> String {
    crate::harness::fixture_chart("slowhook").await
}

fn helm4() -> String {
    helm_binary(Major::Helm4)
}

/// The statuses of every revision, oldest first.
async fn revision_statuses(op: &OperatorProcess, path: &str) -> Vec<(u64, String)> {
    let (status, body) = op
        .call(Method::GET, &format!("{path}/revisions"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r| {
            (
                r["revision"].as_u64().expect("revision"),
                r["status"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

fn assert_never_pending(revisions: &[(u64, String)]) {
    assert!(
        revisions.iter().all(|(_, s)| !s.starts_with("pending")),
        "a revision is left pending: {revisions:?}"
    );
}

/// 1. Two operator processes, 20 concurrent upgrades of one release split
///    between them: each ends 200 or 409, newest revision = 200s + 1, the release
///    ends deployed, and helm never ran on the release twice at once (every
///    helm upgrade that started succeeded).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_run_helm_on_one_release_at_once() {
    crate::require_env!();
    let dir = scratch_dir("replicas");
    let (wrapper, log) = recording_helm(&helm4(), &dir);
    let a = OperatorProcess::spawn(&wrapper, &[("RELEASE_LOCK_WAIT", "3")]).await;
    let b = OperatorProcess::spawn(&wrapper, &[("RELEASE_LOCK_WAIT", "3")]).await;
    let ns = create_tenant(&a.http, &a.base).await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    let (status, body) = a
        .call(
            Method::POST,
            "/api/releases",
            Some(json!({"namespace": ns, "name": name, "chart": oci_chart("web"), "version": "0.1.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let requests = 20;
    let mut tasks = Vec::new();
    for i in 0..requests {
        let (http, base) = if i % 2 == 0 {
            (a.http.clone(), a.base.clone())
        } else {
            (b.http.clone(), b.base.clone())
        };
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"chart": oci_chart("web"), "version": "0.2.0", "values": {"replicaCount": i % 3 + 1}});
            call_at(&http, &base, Method::PATCH, &path, Some(body)).await
        }));
    }
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        *counts.entry(status.as_u16()).or_default() += 1;
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status} {body}"
        );
        if status == StatusCode::CONFLICT {
            assert_eq!(body["error_type"], "operation_in_progress", "{body}");
        }
    }
    let oks = counts.get(&200).copied().unwrap_or(0);
    let conflicts = counts.get(&409).copied().unwrap_or(0);
    let revisions = revision_statuses(&a, &path).await;
    let upgrades_run = recorded_helm_calls(&log)
        .iter()
        .filter(|l| l.starts_with("upgrade") && !l.contains("--dry-run"))
        .count();
    println!(
        "replicas: {requests} requests, {oks} x 200, {conflicts} x 409, {} revisions, {upgrades_run} helm upgrades run",
        revisions.len()
    );
    assert!(oks >= 1, "no upgrade succeeded: {counts:?}");
    // The newest revision number, not the count: helm keeps at most 10
    // revisions (`--history-max`), and 10 upgrades may well win here.
    let newest = revisions.last().map(|(revision, _)| *revision);
    assert_eq!(newest, Some(oks as u64 + 1), "{revisions:?}");
    assert_eq!(
        upgrades_run, oks,
        "a helm upgrade ran while another held the release"
    );
    assert_never_pending(&revisions);
    let (_, latest) = a.call(Method::GET, &path, None).await;
    assert_eq!(latest["status"], "deployed", "{latest}");
    delete_namespace(&ns).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// 5. A release left `pending-upgrade` by a helm no operator ran (by hand,
///    then SIGKILLed): no Lease says its helm is gone, so it is `stuck` only
///    once older than HELM_TIMEOUT + margin (and nobody holds it), and the
///    next upgrade recovers it without kubectl. (A helm of the operator's
///    own that dies is recovered at once: tests/e2e/chaos.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_left_pending_by_hand_is_recovered_once_stale() {
    crate::require_env!();
    stuck_release_recovery(Major::Helm4).await;
}

/// 5, with Helm 3 (whose records are rewritten the same way), recovered by
/// a rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm3_release_left_pending_by_hand_is_recovered_by_a_rollback_once_stale() {
    crate::require_env!();
    stuck_release_recovery(Major::Helm3).await;
}

async fn stuck_release_recovery(major: Major) {
    let chart = slowhook_chart().await;
    let op = OperatorProcess::spawn(
        &helm_binary(major),
        &[("HELM_TIMEOUT", "6"), ("HELM_DEADLINE_MARGIN", "2")],
    )
    .await;
    let ns = create_tenant(&op.http, &op.base).await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(json!({"namespace": ns, "name": name, "chart": chart})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // An upgrade by hand whose hook never finishes; kill it with SIGKILL.
    let mut by_hand = tokio::process::Command::new(helm_binary(major))
        .args(["upgrade", "--namespace", &ns, &name, &chart, "--plain-http"])
        .args(["--set", &format!("hookImage={NEVER_READY}")])
        .env("KUBECONFIG", crate::harness::env("KUBECONFIG"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("helm by hand");
    op.wait_for_status(&path, "pending-upgrade").await;
    by_hand.start_kill().expect("SIGKILL");
    let _ = by_hand.wait().await;
    let killed_at = Instant::now();
    let leases: Api<Lease> =
        Api::namespaced(crate::harness::admin_client().await.expect("kube"), &ns);
    let lease_name = format!("paas-operator.{name}");
    assert!(
        leases.get_opt(&lease_name).await.expect("get").is_none(),
        "no operator ran this upgrade, so no Lease"
    );
    let (_, stuck) = op.call(Method::GET, &format!("{path}/status"), None).await;
    assert_eq!(stuck["release"]["status"], "pending-upgrade", "{stuck}");
    assert_eq!(stuck["stuck"], false, "not stale yet: {stuck}");

    // Older than 6 s + 2 s: reported stuck.
    let started = Instant::now();
    loop {
        let (status, body) = op.call(Method::GET, &format!("{path}/status"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["stuck"] == true {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never reported stuck: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reported_after = killed_at.elapsed();

    // The next upgrade (Helm 4) or rollback (Helm 3) recovers it and proceeds.
    let recovery = Instant::now();
    if major == Major::Helm4 {
        let (status, body) = op
            .call(
                Method::PATCH,
                &path,
                Some(json!({"chart": chart, "values": {"message": "recovered"}})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "deployed", "{body}");
        assert_eq!(body["revision"], 3, "{body}");
    } else {
        let (status, body) = op
            .call(Method::POST, &format!("{path}/rollback"), Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, latest) = op.call(Method::GET, &path, None).await;
        assert_eq!(latest["status"], "deployed", "{latest}");
        assert_eq!(latest["revision"], 3, "{latest}");
    }
    let revisions = revision_statuses(&op, &path).await;
    println!(
        "stuck ({major:?}): reported after {:.1}s, recovered by the next {} in {:.1}s; revisions {revisions:?}",
        reported_after.as_secs_f64(),
        if major == Major::Helm4 {
            "upgrade"
        } else {
            "rollback"
        },
        recovery.elapsed().as_secs_f64()
    );
    assert_eq!(revisions[1], (2, "failed".to_owned()), "{revisions:?}");
    assert_never_pending(&revisions);
    delete_namespace(&ns).await;
}

/// 4. SIGTERM during an install: the request still completes (201), the
///    process exits 0, and the release is not left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_inflight_install_finish_then_exits_zero() {
    crate::require_env!();
    let chart = slowhook_chart().await;
    let mut op = OperatorProcess::spawn(&helm4(), &[("SHUTDOWN_GRACE", "60")]).await;
    let ns = create_tenant(&op.http, &op.base).await;
    let name = random_release();
    let install = {
        let (http, base, ns, name) = (op.http.clone(), op.base.clone(), ns.clone(), name.clone());
        tokio::spawn(async move {
            let body = json!({"namespace": ns, "name": name, "chart": chart});
            call_at(&http, &base, Method::POST, "/api/releases", Some(body)).await
        })
    };
    let started = Instant::now();
    while helm_pids_with(&["install", &name]).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "helm install never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(Pid::from_raw(op.pid()), Signal::SIGTERM).expect("SIGTERM");
    let (status, body) = install.await.expect("task");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "deployed", "{body}");
    let exit = tokio::time::timeout(Duration::from_secs(30), op.child.wait())
        .await
        .expect("process exits after the in-flight request")
        .expect("wait");
    assert!(exit.success(), "exit status {exit:?}");
    println!(
        "shutdown: install finished {:.1}s after helm started; exit {exit:?}",
        started.elapsed().as_secs_f64()
    );
    delete_namespace(&ns).await;
}

/// 3. An operation that outlives helm's timeout ends 504 `helm_timeout`, and
///    the release is `failed`, not pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_past_its_timeout_is_504_and_leaves_the_release_failed() {
    crate::require_env!();
    let chart = slowhook_chart().await;
    let op = OperatorProcess::spawn(
        &helm4(),
        &[("HELM_TIMEOUT", "4"), ("HELM_DEADLINE_MARGIN", "3")],
    )
    .await;
    let ns = create_tenant(&op.http, &op.base).await;
    let name = random_release();
    let started = Instant::now();
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(json!({"namespace": ns, "name": name, "chart": chart, "values": {"hookImage": NEVER_READY}})),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error_type"], "helm_timeout", "{body}");
    assert!(took < Duration::from_secs(4 + 3 + 5), "took {took:?}");
    let revisions = revision_statuses(&op, &format!("/api/releases/{ns}/{name}")).await;
    println!(
        "deadline: 504 after {:.1}s; revisions {revisions:?}",
        took.as_secs_f64()
    );
    assert_eq!(revisions.last().map(|r| r.1.as_str()), Some("failed"));
    delete_namespace(&ns).await;
}

/// 3 (runner). A helm that ignores its own timeout is stopped at our
/// deadline with SIGTERM (and the request gets 504).
#[tokio::test]
async fn runner_stops_a_helm_past_the_deadline() {
    crate::require_env!();
    use paas_operator::helm::{HelmError, HelmRunner, Invocation, RunnerConfig};
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch_dir("deadline");
    let script = dir.join("helm");
    let marker = dir.join("terminated");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntrap 'echo term > {}; exit 1' TERM\nsleep 30 &\nwait $!\n",
            marker.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let runner = HelmRunner::new(RunnerConfig {
        binary: script,
        // Through the real launcher, as in production.
        helper: Some(env!("CARGO_BIN_EXE_paas-operator").into()),
        limits: paas_operator::helm::limits::Limits {
            data: 256 << 20,
            cpu: 30,
            nofile: 1024,
            fsize: 1 << 30,
        },
        helm_timeout: Duration::from_secs(1),
        deadline_margin: Duration::from_secs(1),
        kill_grace: Duration::from_secs(5),
        render_timeout: Duration::from_secs(60),
        max_parallel: 1,
        tenant_slots: 0,
        queue_wait: Duration::from_secs(1),
        memory_budget: 0,
        env: vec![],
    });
    let started = Instant::now();
    let outcome = runner
        .run(Invocation::helm(
            "upgrade",
            "paas-ws-1/svc-1".into(),
            vec!["upgrade".into()],
            None,
        ))
        .await;
    assert!(
        matches!(outcome, Err(HelmError::DeadlineExceeded { .. })),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(marker.exists(), "helm got no SIGTERM");
    let error = paas_operator::error::ApiError::from(outcome.expect_err("deadline"));
    assert_eq!(error.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error.code.as_str(), "helm_timeout");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Most helm processes of `namespace` seen running at once while `work` runs.
async fn max_parallel_helm<T>(
    namespace: &str,
    work: impl std::future::Future<Output = T>,
) -> (T, usize) {
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let namespace = namespace.to_owned();
    let watcher = tokio::spawn(async move {
        let mut most = 0;
        loop {
            most = most.max(helm_pids_with(&["--namespace", &namespace]).len());
            tokio::select! {
                _ = &mut stop_rx => return most,
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
            }
        }
    });
    let result = work.await;
    let _ = stop_tx.send(());
    (result, watcher.await.expect("watcher"))
}

async fn concurrent_installs(
    op: &OperatorProcess,
    ns: &str,
    chart: &str,
    count: usize,
) -> Vec<(StatusCode, Value, Option<String>)> {
    let mut tasks = Vec::new();
    for _ in 0..count {
        let body = json!({"namespace": ns, "name": random_release(), "chart": chart});
        let request = op
            .http
            .post(format!("{}/api/releases", op.base))
            .header("X-API-Key", crate::harness::API_KEY)
            .json(&body);
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.expect("sent");
            let status = response.status();
            let retry = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body, retry)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    results
}

/// 2. MAX_PARALLEL_HELM bounds helm processes: with 1 slot and a short
///    queue wait, excess installs get 503 + Retry-After; with more slots,
///    installs of different releases run at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn helm_parallelism_is_bounded_and_different_releases_run_in_parallel() {
    crate::require_env!();
    let chart = slowhook_chart().await;
    let narrow = OperatorProcess::spawn(
        &helm4(),
        &[("MAX_PARALLEL_HELM", "1"), ("HELM_QUEUE_WAIT", "1")],
    )
    .await;
    let ns = create_tenant(&narrow.http, &narrow.base).await;
    let (results, most) =
        max_parallel_helm(&ns, concurrent_installs(&narrow, &ns, &chart, 3)).await;
    let busy: Vec<_> = results
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    println!(
        "parallelism 1: statuses {:?}, most helm at once {most}",
        results.iter().map(|r| r.0.as_u16()).collect::<Vec<_>>()
    );
    assert!(!busy.is_empty(), "no 503 with one helm slot: {results:?}");
    for (_, body, retry) in &busy {
        assert_eq!(body["error_type"], "operator_busy", "{body}");
        assert!(retry.is_some(), "503 without Retry-After");
    }
    assert!(
        results
            .iter()
            .all(|(s, _, _)| *s == StatusCode::CREATED || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{results:?}"
    );
    assert_eq!(most, 1, "more than one helm ran with MAX_PARALLEL_HELM=1");

    let wide = OperatorProcess::spawn(
        &helm4(),
        &[("MAX_PARALLEL_HELM", "4"), ("HELM_QUEUE_WAIT", "1")],
    )
    .await;
    let ns2 = create_tenant(&wide.http, &wide.base).await;
    let (results, most) =
        max_parallel_helm(&ns2, concurrent_installs(&wide, &ns2, &chart, 2)).await;
    println!(
        "parallelism 4: statuses {:?}, most helm at once {most}",
        results.iter().map(|r| r.0.as_u16()).collect::<Vec<_>>()
    );
    assert!(
        results.iter().all(|(s, _, _)| *s == StatusCode::CREATED),
        "{results:?}"
    );
    assert!(most >= 2, "installs of different releases did not overlap");
    delete_namespace(&ns).await;
    delete_namespace(&ns2).await;
}

/// 6. A helm binary that is missing or not executable: one-line start-up error.
#[tokio::test]
async fn missing_or_unexecutable_helm_is_a_one_line_startup_error() {
    crate::require_env!();
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch_dir("nohelm");
    let not_executable = dir.join("helm");
    std::fs::write(&not_executable, "#!/bin/sh\n").expect("file");
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    for helm in [
        "/nonexistent/helm".to_owned(),
        not_executable.display().to_string(),
    ] {
        let output =
            OperatorProcess::command(&helm, crate::harness::free_port(), &[("LOG_LEVEL", "off")])
                .output()
                .await
                .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{helm}: started anyway");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{helm}: {stderr}");
        assert!(lines[0].contains("helm binary"), "{helm}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// 6. Control plane unreachable: requests fail fast with 503
///    `kubernetes_unavailable`, /ready is 503.
#[tokio::test]
async fn unreachable_control_plane_fails_fast_with_503() {
    crate::require_env!();
    let dir = scratch_dir("nokube");
    let kubeconfig = dir.join("kubeconfig");
    let port = crate::harness::free_port();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: x}}\n"
        ),
    )
    .expect("kubeconfig");
    let kubeconfig = kubeconfig.display().to_string();
    let op = OperatorProcess::spawn(&helm4(), &[("KUBECONFIG", &kubeconfig)]).await;
    let ready = op
        .http
        .get(format!("{}/ready", op.base))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let cases = [
        (
            Method::GET,
            "/api/releases/paas-ws-00000001/svc-1/status".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/api/namespaces".to_owned(),
            Some(json!({"name": "paas-ws-00000001"})),
        ),
        (
            Method::POST,
            "/api/releases".to_owned(),
            Some(
                json!({"namespace": "paas-ws-00000001", "name": "svc-1", "chart": oci_chart("web"), "create_namespace": true}),
            ),
        ),
        (
            Method::PATCH,
            "/api/releases/paas-ws-00000001/svc-1".to_owned(),
            Some(json!({"chart": oci_chart("web")})),
        ),
    ];
    for (method, path, body) in cases {
        let started = Instant::now();
        let (status, answer) = op.call(method.clone(), &path, body).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {answer}"
        );
        assert_eq!(answer["error_type"], "kubernetes_unavailable", "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{method} {path} took {:?}",
            started.elapsed()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// 6. Chart registry unreachable: 502 `chart_source_unreachable`, quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_chart_registry_is_502_not_a_hang() {
    crate::require_env!();
    let closed = format!("127.0.0.1:{}", crate::harness::free_port());
    let registries = format!("{},{closed}", crate::harness::env("OCI_REGISTRY"));
    let sources = format!("oci://{closed}/charts");
    let op = OperatorProcess::spawn(
        &helm4(),
        &[
            ("PLAIN_HTTP_REGISTRIES", &registries),
            ("ALLOWED_CHART_SOURCES", &sources),
        ],
    )
    .await;
    let ns = create_tenant(&op.http, &op.base).await;
    let started = Instant::now();
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(json!({"namespace": ns, "name": random_release(), "chart": format!("oci://{closed}/charts/web")})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error_type"], "chart_source_unreachable", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    delete_namespace(&ns).await;
}

trait WaitForStatus {
    async fn wait_for_status(&self, path: &str, wanted: &str);
}

impl WaitForStatus for OperatorProcess {
    async fn wait_for_status(&self, path: &str, wanted: &str) {
        let started = Instant::now();
        loop {
            let (status, body) = self.call(Method::GET, path, None).await;
            if status == StatusCode::OK && body["status"] == wanted {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "release never became {wanted}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A TCP proxy in front of the API server, so a test can take "the control
/// plane" away and bring it back without touching the shared cluster.
struct ApiProxy {
    port: u16,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiProxy {
    async fn start(port: u16, upstream: String) -> Self {
        let mut proxy = Self {
            port,
            upstream,
            task: None,
        };
        proxy.resume().await;
        proxy
    }

    /// (Re)opens the port; every connection is piped to the API server.
    async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("proxy port");
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) cuts every connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Closes the port and cuts open connections: the API server is gone.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Polls `/ready` until it answers `wanted`.
async fn wait_ready(op: &OperatorProcess, wanted: StatusCode, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = op
            .http
            .get(format!("{}/ready", op.base))
            .send()
            .await
            .expect("ready")
            .status();
        if status == wanted {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "/ready never became {wanted}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 6. The control plane goes away mid-run: requests fail fast with 503,
///    /ready reports it, and the service recovers by itself when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_outage_is_503_and_recovers_without_restart() {
    crate::require_env!();
    let admin = std::fs::read_to_string(crate::harness::env("KUBECONFIG")).expect("kubeconfig");
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("server line")
        .to_owned();
    let port = crate::harness::free_port();
    let mut proxy = ApiProxy::start(port, server.clone()).await;
    let dir = scratch_dir("outage");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        admin.replace(
            &format!("server: https://{server}"),
            &format!("server: https://127.0.0.1:{port}"),
        ),
    )
    .expect("kubeconfig");
    let kubeconfig = kubeconfig.display().to_string();
    let op = OperatorProcess::spawn(&helm4(), &[("KUBECONFIG", &kubeconfig)]).await;
    wait_ready(&op, StatusCode::OK, Duration::from_secs(20)).await;
    let ns = create_tenant(&op.http, &op.base).await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(json!({"namespace": ns, "name": name, "chart": oci_chart("web"), "version": "0.1.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    proxy.stop().await;
    // A read the read cache can answer from memory is answered until the
    // probe notices the outage (no answer for 2 s, probed every 0.5 s), or
    // the cache's watch notices the cut: then 503 as well.
    let started = Instant::now();
    while op.call(Method::GET, &path, None).await.0 == StatusCode::OK
        && started.elapsed() < Duration::from_secs(4)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (method, body) in [
        (Method::GET, None),
        (
            Method::PATCH,
            Some(json!({"chart": oci_chart("web"), "version": "0.2.0"})),
        ),
    ] {
        let started = Instant::now();
        let (status, answer) = op.call(method.clone(), &path, body).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method}: {answer}"
        );
        assert_eq!(answer["error_type"], "kubernetes_unavailable", "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{method} took {:?}",
            started.elapsed()
        );
    }
    let (status, _) = op.call(Method::GET, &format!("{path}/status"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    wait_ready(
        &op,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(15),
    )
    .await;

    proxy.resume().await;
    let back = wait_ready(&op, StatusCode::OK, Duration::from_secs(30)).await;
    let (status, body) = op
        .call(
            Method::PATCH,
            &path,
            Some(json!({"chart": oci_chart("web"), "version": "0.2.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 2, "{body}");
    println!(
        "outage: 503 while down; ready again {:.1}s after the API returned",
        back.as_secs_f64()
    );
    proxy.stop().await;
    delete_namespace(&ns).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// 1 (Lease semantics). A Lease held by another replica blocks the release
/// (409 after RELEASE_LOCK_WAIT); once it has expired it is taken over, and
/// given back (deleted) right after the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_lease_blocks_until_it_expires() {
    crate::require_env!();
    let op = OperatorProcess::spawn(&helm4(), &[("RELEASE_LOCK_WAIT", "1")]).await;
    let ns = create_tenant(&op.http, &op.base).await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(json!({"namespace": ns, "name": name, "chart": oci_chart("web"), "version": "0.1.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let leases: Api<Lease> =
        Api::namespaced(crate::harness::admin_client().await.expect("kube"), &ns);
    let lease_name = format!("paas-operator.{name}");
    wait_lease_given_back(&leases, &lease_name).await;
    let now = jiff::Timestamp::now();
    let foreign = Lease {
        metadata: ObjectMeta {
            name: Some(lease_name.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("paas-operator-other-replica".into()),
            lease_duration_seconds: Some(300),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    };
    leases
        .create(&PostParams::default(), &foreign)
        .await
        .expect("foreign lease");
    let upgrade = json!({"chart": oci_chart("web"), "version": "0.2.0"});
    let (status, body) = op.call(Method::PATCH, &path, Some(upgrade.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error_type"], "operation_in_progress", "{body}");

    // The other replica died 10 minutes ago: its Lease has expired.
    let mut expired = leases.get(&lease_name).await.expect("lease");
    let long_ago = now
        .checked_sub(jiff::SignedDuration::from_secs(600))
        .expect("time");
    if let Some(spec) = expired.spec.as_mut() {
        spec.renew_time = Some(MicroTime(long_ago));
    }
    leases
        .replace(&lease_name, &PostParams::default(), &expired)
        .await
        .expect("expire lease");
    let (status, body) = op.call(Method::PATCH, &path, Some(upgrade)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 2, "{body}");
    wait_lease_given_back(&leases, &lease_name).await;
    delete_namespace(&ns).await;
}

/// The Lease is deleted right after the answer (in the background).
async fn wait_lease_given_back(leases: &Api<Lease>, lease_name: &str) {
    let started = Instant::now();
    while leases.get_opt(lease_name).await.expect("get").is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the Lease was not given back after the operation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
