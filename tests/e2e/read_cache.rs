//! End-to-end: the watch-fed read cache. Reads are answered from memory
//! once a namespace is indexed, a write through the operator is visible to
//! the very next read (read-your-writes), changes made outside the operator
//! arrive through the watch, and `READ_CACHE=false` reads the API every time.

use std::time::Duration;

use crate::harness::{Major, Operator, env, helm_binary, oci_chart, random_release};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const SETTLE: Duration = Duration::from_secs(20);

async fn install(op: &Operator, ns: &str, name: &str) {
    let install = json!({"namespace": ns, "name": name, "chart": oci_chart("web"),
        "version": "0.1.0", "values": {"replicaCount": 1}});
    let (status, body) = op.call(Method::POST, "/api/releases", Some(install)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["revision"], 1);
}

/// Waits until `path` is answered from the cache and `check` accepts the body.
async fn from_cache(
    op: &Operator,
    path: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    op.wait_for(what, SETTLE, || async {
        let (status, body, from) = op.read(path).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{status} {body}"
        );
        (from == "cache" && status == StatusCode::OK && check(&body)).then_some(body)
    })
    .await
}

/// Runs helm directly (as the cluster admin), the way another tool would.
async fn helm_outside(major: Major, args: &[&str]) {
    let output = tokio::process::Command::new(helm_binary(major))
        .args(args)
        .env("KUBECONFIG", env("KUBECONFIG"))
        .output()
        .await
        .expect("helm runs");
    assert!(
        output.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn reads_follow_writes(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    install(&op, &ns, &name).await;

    // The first read goes to the API and starts indexing the namespace;
    // later reads are answered from memory.
    let body = from_cache(&op, &path, "reads answered from the cache", |_| true).await;
    assert_eq!(
        (body["revision"].as_u64(), body["status"].as_str()),
        (Some(1), Some("deployed"))
    );

    // Read-your-writes: the read right after each upgrade shows its revision,
    // on all three read endpoints.
    for (revision, version) in [(2, "0.2.0"), (3, "0.1.0"), (4, "0.2.0")] {
        let upgrade = json!({"chart": oci_chart("web"), "version": version});
        let (status, body) = op.call(Method::PATCH, &path, Some(upgrade)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["revision"], revision);
        let (status, body, _) = op.read(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (body["revision"].as_u64(), body["status"].as_str()),
            (Some(revision), Some("deployed"))
        );
        let (_, body, _) = op.read(&format!("{path}/revisions")).await;
        let revisions = body["revisions"].as_array().expect("revisions");
        assert_eq!(revisions.len() as u64, revision, "{body}");
        assert_eq!(
            revisions.last().map(|r| r["revision"].clone()),
            Some(json!(revision))
        );
        assert_eq!(revisions[revisions.len() - 2]["status"], "superseded");
        let (_, body, _) = op.read(&format!("{path}/status")).await;
        assert_eq!(body["release"]["revision"], revision, "{body}");
    }
    // Once the watch has delivered the writes, the cache answers again.
    let body = from_cache(&op, &path, "the cache to show revision 4", |b| {
        b["revision"] == 4
    })
    .await;
    assert_eq!(body["chart"], "web");
    let history = from_cache(
        &op,
        &format!("{path}/revisions"),
        "cached revisions",
        |_| true,
    )
    .await;
    assert_eq!(history["revisions"].as_array().map(Vec::len), Some(4));

    // A change made outside the operator arrives through the watch.
    let chart = oci_chart("web");
    helm_outside(
        major,
        &[
            "upgrade",
            &name,
            &chart,
            "--version",
            "0.1.0",
            "-n",
            &ns,
            "--reuse-values",
            "--plain-http",
        ],
    )
    .await;
    let body = from_cache(&op, &path, "the outside upgrade in the cache", |b| {
        b["revision"] == 5 && b["status"] == "deployed"
    })
    .await;
    assert_eq!(body["chart"], "web");

    // Status from the cache: the release's pod, as the watch of pods sees it.
    let status = from_cache(
        &op,
        &format!("{path}/status"),
        "a ready pod in the cached status",
        |b| {
            let pods = b["pods"].as_array().map(Vec::as_slice).unwrap_or_default();
            b["release"]["revision"] == 5
                && pods.len() == 1
                && pods[0]["phase"] == "Running"
                && pods[0]["ready"] == "1/1"
        },
    )
    .await;
    assert!(
        status["pods"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&name),
        "{status}"
    );
    assert_eq!(status["stuck"], false);

    // Rollback and uninstall are visible at once too.
    let (status, body) = op
        .call(
            Method::POST,
            &format!("{path}/rollback"),
            Some(json!({"revision": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body, _) = op.read(&path).await;
    assert_eq!(body["revision"], 6, "{body}");
    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for suffix in ["", "/revisions", "/status"] {
        let (status, body, _) = op.read(&format!("{path}{suffix}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{suffix}: {body}");
        assert_eq!(body["error_type"], "release_not_found");
    }
}
crate::both_helms!(reads_follow_writes);

/// A release installed by another replica (here: helm itself) in an
/// indexed namespace is found without a restart, and one uninstalled
/// outside the operator disappears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_installs_and_uninstalls_arrive_through_the_watch() {
    crate::require_env!();
    let mut op = Operator::start(Major::Helm4, &[]).await;
    let ns = op.tenant().await;
    let first = random_release();
    install(&op, &ns, &first).await;
    from_cache(
        &op,
        &format!("/api/releases/{ns}/{first}"),
        "the namespace indexed",
        |_| true,
    )
    .await;

    let second = random_release();
    let chart = oci_chart("web");
    helm_outside(
        Major::Helm4,
        &[
            "install",
            &second,
            &chart,
            "--version",
            "0.2.0",
            "-n",
            &ns,
            "--plain-http",
        ],
    )
    .await;
    let body = from_cache(
        &op,
        &format!("/api/releases/{ns}/{second}"),
        "the outside install",
        |_| true,
    )
    .await;
    assert_eq!(
        (body["revision"].as_u64(), body["status"].as_str()),
        (Some(1), Some("deployed"))
    );

    // Gone: the index drops it (a stale index would keep answering 200).
    helm_outside(Major::Helm4, &["uninstall", &second, "-n", &ns]).await;
    op.wait_for("the outside uninstall", SETTLE, || async {
        let (status, _, _) = op.read(&format!("/api/releases/{ns}/{second}")).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    let (_, _, from) = op.read(&format!("/api/releases/{ns}/{first}")).await;
    assert_eq!(from, "cache", "the namespace is still indexed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_cache_every_read_goes_to_the_api() {
    crate::require_env!();
    let mut op = Operator::start(Major::Helm4, &["--read-cache", "false"]).await;
    let ns = op.tenant().await;
    let name = random_release();
    install(&op, &ns, &name).await;
    let path = format!("/api/releases/{ns}/{name}");
    for suffix in ["", "/revisions", "/status", "", "/revisions", "/status"] {
        let (status, body, from) = op.read(&format!("{path}{suffix}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(from, "api", "{suffix}");
    }
}
