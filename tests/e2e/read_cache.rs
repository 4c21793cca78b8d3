//! End-to-end: the watch-fed read cache. One cluster-wide watch answers
//! for every tenant namespace from memory (the first read of a namespace
//! included), a write through the operator is visible to the very next
//! read (read-your-writes), changes made outside the operator (helm, or a
//! record edited by hand) arrive through the watch, a restarted operator
//! answers correctly while it lists, `READ_CACHE=namespaces` indexes a
//! namespace after its first read, and `READ_CACHE=off` reads the API
//! every time.

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::harness::{
    Major, Operator, env, helm_binary, oci_chart, random_namespace, random_release,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// How long the watch may take to show a change. Milliseconds normally; the
/// margin is for a shared API server under load (an operator that has just
/// started lists the whole cluster first).
const SETTLE: Duration = Duration::from_secs(60);

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
        "the outside install, deployed",
        // helm writes `pending-install`, then `deployed`: the watch may
        // deliver the first before the second.
        |body| body["status"] == "deployed",
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

/// Helm's payload of a record: base64(gzip(JSON)).
fn payload_json(secret: &Secret) -> Value {
    let data = secret.data.as_ref().expect("data");
    let encoded = &data.get("release").expect("release").0;
    let gzip = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    let mut json = String::new();
    flate2::read::GzDecoder::new(gzip.as_slice())
        .read_to_string(&mut json)
        .expect("gzip");
    serde_json::from_str(&json).expect("json")
}

fn encode_payload(json: &Value) -> ByteString {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(json.to_string().as_bytes()).expect("gzip");
    let encoded = base64::engine::general_purpose::STANDARD.encode(gzip.finish().expect("gzip"));
    ByteString(encoded.into_bytes())
}

/// Copies a release's record into `to`, re-keyed for that namespace, the
/// way a big cluster holds many (the namespace is created bare, labelled
/// as a tenant; the operator deletes it at the end of the test).
async fn copy_record(op: &mut Operator, record: &Secret, to: &str) {
    let namespaces: Api<Namespace> = Api::all(op.kube.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(to.to_owned()),
            labels: Some([("paas-managed".to_owned(), "true".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
    op.forget_later(to);
    let mut json = payload_json(record);
    json["namespace"] = json!(to);
    let copy = Secret {
        metadata: ObjectMeta {
            name: record.metadata.name.clone(),
            namespace: Some(to.to_owned()),
            labels: record.metadata.labels.clone(),
            ..Default::default()
        },
        type_: record.type_.clone(),
        data: Some([("release".to_owned(), encode_payload(&json))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(op.kube.clone(), to)
        .create(&PostParams::default(), &copy)
        .await
        .expect("record copied");
}

/// A release installed through the operator, and its record.
async fn installed(op: &mut Operator) -> (String, String, Secret) {
    let ns = op.tenant().await;
    let name = random_release();
    install(op, &ns, &name).await;
    let record = Api::<Secret>::namespaced(op.kube.clone(), &ns)
        .get(&format!("sh.helm.release.v1.{name}.v1"))
        .await
        .expect("the release's record");
    (ns, name, record)
}

/// The first read of a namespace is answered from memory: the one
/// cluster-wide watch already holds it, so no read lists anything per
/// namespace. Records edited, forged or deleted by hand follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_watch_answers_for_every_namespace_from_the_first_read() {
    crate::require_env!();
    let mut op = Operator::start(Major::Helm4, &[]).await;
    let (_, name, record) = installed(&mut op).await;
    let copies: Vec<String> = (0..8).map(|_| random_namespace()).collect();
    for to in &copies {
        copy_record(&mut op, &record, to).await;
    }
    // Watch events arrive in the order of the writes: once the last copy
    // shows, every earlier one has arrived too.
    let last = copies.last().expect("copies");
    from_cache(
        &op,
        &format!("/api/releases/{last}/{name}"),
        "the last copy",
        |_| true,
    )
    .await;
    for ns in &copies[..copies.len() - 1] {
        let path = format!("/api/releases/{ns}/{name}");
        let (status, body, from) = op.read(&path).await;
        assert_eq!((status, from.as_str()), (StatusCode::OK, "cache"), "{body}");
        assert_eq!(
            (body["namespace"].as_str(), body["revision"].as_u64()),
            (Some(ns.as_str()), Some(1))
        );
        let (status, body, from) = op.read(&format!("{path}/revisions")).await;
        assert_eq!((status, from.as_str()), (StatusCode::OK, "cache"), "{body}");
        assert_eq!(body["revisions"][0]["chart"], "web-0.1.0");
        let (status, body, from) = op.read(&format!("{path}/status")).await;
        assert_eq!((status, from.as_str()), (StatusCode::OK, "cache"), "{body}");
        assert_eq!(body["pods"], json!([]), "a copied record has no pods");
    }
    // A release that does not exist in a listed namespace: 404 without an API call.
    let (status, body, _) = op.read(&format!("/api/releases/{last}/svc-none")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Edited by hand: the new status and description show.
    let ns = &copies[0];
    let path = format!("/api/releases/{ns}/{name}");
    let secrets: Api<Secret> = Api::namespaced(op.kube.clone(), ns);
    let mut edited = secrets
        .get(record.metadata.name.as_deref().expect("name"))
        .await
        .expect("copy");
    let mut json = payload_json(&edited);
    json["info"]["status"] = json!("failed");
    json["info"]["description"] = json!("edited by hand");
    edited.data = Some([("release".to_owned(), encode_payload(&json))].into());
    secrets
        .replace(
            edited.metadata.name.as_deref().expect("name"),
            &PostParams::default(),
            &edited,
        )
        .await
        .expect("record replaced");
    let body = from_cache(&op, &path, "the edited record", |b| b["status"] == "failed").await;
    assert_eq!(body["description"], "edited by hand");

    // A forged record (not Helm's type) is no record: the release keeps its
    // one revision.
    let mut forged = edited.clone();
    forged.metadata = ObjectMeta {
        name: Some(format!("sh.helm.release.v1.{name}.v2")),
        labels: Some(
            [
                ("owner", "helm"),
                ("name", name.as_str()),
                ("version", "2"),
                ("status", "deployed"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        ),
        ..Default::default()
    };
    json["version"] = json!(2);
    forged.data = Some([("release".to_owned(), encode_payload(&json))].into());
    forged.type_ = Some("Opaque".into());
    secrets
        .create(&PostParams::default(), &forged)
        .await
        .expect("forged record");
    // One more copy written after it: once that shows, the watch has
    // delivered the forged record too.
    let marker = random_namespace();
    copy_record(&mut op, &record, &marker).await;
    from_cache(
        &op,
        &format!("/api/releases/{marker}/{name}"),
        "the marker copy",
        |_| true,
    )
    .await;
    let (_, body, from) = op.read(&format!("{path}/revisions")).await;
    assert_eq!(
        (from.as_str(), body["revisions"].as_array().map(Vec::len)),
        ("cache", Some(1)),
        "{body}"
    );

    // Deleted by hand: gone.
    secrets
        .delete(
            edited.metadata.name.as_deref().expect("name"),
            &Default::default(),
        )
        .await
        .expect("record deleted");
    op.wait_for("the deleted record to go", SETTLE, || async {
        let (status, _, _) = op.read(&path).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
}

/// A replica that starts while tenants exist answers every read correctly
/// while it lists (from the API), reports ready once it has listed, and
/// then answers from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_answers_correctly_while_it_lists() {
    crate::require_env!();
    let mut first = Operator::start(Major::Helm4, &[]).await;
    let (_, name, record) = installed(&mut first).await;
    let copies: Vec<String> = (0..12).map(|_| random_namespace()).collect();
    for to in &copies {
        copy_record(&mut first, &record, to).await;
    }
    let restarted = Operator::start(Major::Helm4, &[]).await;
    let started = std::time::Instant::now();
    let mut served = std::collections::BTreeMap::<String, usize>::new();
    loop {
        let reads = copies.iter().map(|ns| {
            let path = format!("/api/releases/{ns}/{name}/status");
            let restarted = &restarted;
            async move { (ns, restarted.read(&path).await) }
        });
        for (ns, (status, body, from)) in futures::future::join_all(reads).await {
            assert_eq!(status, StatusCode::OK, "{ns}: {body}");
            assert_eq!(body["release"]["namespace"].as_str(), Some(ns.as_str()));
            assert_eq!(body["release"]["revision"], 1);
            *served.entry(from).or_default() += 1;
        }
        let (status, body) = restarted.call(Method::GET, "/ready", None).await;
        if status == StatusCode::OK {
            break;
        }
        // Not ready while listing, and for no other reason.
        assert_eq!(
            body["detail"], "Not ready: the read cache is still listing the cluster",
            "{body}"
        );
        // READ_CACHE_READY_WAIT (60 s) bounds it whatever the API server's load.
        assert!(
            started.elapsed() < Duration::from_secs(65),
            "not ready after 65 s"
        );
    }
    // Listed: every namespace from memory.
    for ns in &copies {
        let (status, body, from) = restarted.read(&format!("/api/releases/{ns}/{name}")).await;
        assert_eq!((status, from.as_str()), (StatusCode::OK, "cache"), "{body}");
    }
    eprintln!("reads while starting, by source: {served:?}");
}

/// `READ_CACHE=namespaces` (least privilege): a namespace is indexed after
/// a first read found a release in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_namespace_mode_indexes_a_namespace_after_its_first_read() {
    crate::require_env!();
    let mut op = Operator::start(Major::Helm4, &["--read-cache", "namespaces"]).await;
    let ns = op.tenant().await;
    let name = random_release();
    install(&op, &ns, &name).await;
    let path = format!("/api/releases/{ns}/{name}");
    let (status, body, from) = op.read(&path).await;
    assert_eq!((status, from.as_str()), (StatusCode::OK, "api"), "{body}");
    from_cache(
        &op,
        &format!("{path}/status"),
        "the namespace indexed",
        |b| b["release"]["revision"] == 1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_cache_every_read_goes_to_the_api() {
    crate::require_env!();
    let mut op = Operator::start(Major::Helm4, &["--read-cache", "off"]).await;
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
