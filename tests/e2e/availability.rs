//! End-to-end: one tenant cannot take the operator or its neighbours down
//! (issue 20), with Helm 3 and Helm 4 against the real API server:
//!
//! - tenant fences (scheduling, object counts, reserved names): each attack
//!   of the `attack-fences` fixture chart is refused twice, by the
//!   operator's own check before helm runs (400) and by the cluster when the
//!   same objects are created directly as the tenant's helm identity
//!   (admission or quota), so the fence holds whoever writes;
//! - a release whose latest record cannot be read (forged oversized) is
//!   still uninstalled by its owner, and its reads answer a clear 409;
//! - an app answering without end (2 GB and more) costs the operator a
//!   bounded read: its process stays small and the n8n bootstrap answers
//!   `success: false`.
//!
//! Route squatting is in `exposure.rs` (it needs the Cloudflare double),
//! forged kept state in `attacks.rs`.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    Major, Operator, OperatorProcess, assert_error, create_tenant, delete_namespace, fixture_chart,
    helm_binary, impersonating, oci_chart, random_release, wait_pods_ready,
};

/// A client acting as the namespace's helm identity (what a chart's
/// objects are written as, and what a pod bound to the tenant role holds).
async fn as_tenant(namespace: &str) -> kube::Client {
    impersonating(
        &format!("system:serviceaccount:{namespace}:paas-tenant"),
        &[
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_owned(),
        ],
    )
    .await
}

fn deployment(name: &str, spec: Value, replicas: u32, resources: Value) -> Deployment {
    let mut pod = json!({"containers": [{"name": "app", "image": "registry.local/app:1", "resources": resources}]});
    if let (Some(pod), Some(extra)) = (pod.as_object_mut(), spec.as_object()) {
        pod.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}
    }))
    .expect("deployment")
}

/// The error text of a refused create, or a panic when it went through.
fn refused<T: std::fmt::Debug>(what: &str, outcome: Result<T, kube::Error>) -> String {
    match outcome {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{what}: {status:?}");
            status.message
        }
        other => panic!("{what}: must be refused, got {other:?}"),
    }
}

/// Waits until the ReplicaSet of the pods labelled `selector` reports a
/// refused create (quota or LimitRange); returns those pods and the
/// refusal.
async fn pods_when_refused(op: &Operator, namespace: &str, selector: &str) -> (Vec<Pod>, String) {
    let sets = Api::<ReplicaSet>::namespaced(op.kube.clone(), namespace);
    let params = ListParams::default().labels(selector);
    let message = op
        .wait_for(
            "the ReplicaSet to report a refused pod",
            Duration::from_secs(60),
            || async {
                let list = sets.list(&params).await.ok()?;
                list.items.iter().find_map(|set| {
                    let conditions = set.status.as_ref()?.conditions.as_ref()?;
                    conditions
                        .iter()
                        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                        .and_then(|c| c.message.clone())
                })
            },
        )
        .await;
    let pods = Api::<Pod>::namespaced(op.kube.clone(), namespace)
        .list(&params)
        .await
        .expect("pods")
        .items;
    (pods, message)
}

/// The pods quota of the attacked namespace.
const PODS_LIMIT: usize = 5;

async fn tenant_fences_hold(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    // A small pods quota (set per namespace, as `POST /api/namespaces`
    // allows): what it bounds shows with few pods on the shared node.
    let namespace = crate::harness::random_namespace();
    op.forget_later(&namespace);
    let (status, body) = op
        .call(
            Method::POST,
            "/api/namespaces",
            Some(json!({"name": namespace, "pods_limit": PODS_LIMIT})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let chart = fixture_chart("attack-fences").await;
    let install = |name: &str, values: Value| {
        let body = json!({"namespace": namespace, "name": name, "chart": chart, "values": values});
        op.call(Method::POST, "/api/releases", Some(body))
    };

    // The operator's own check: 400 before anything is created.
    for attack in [
        "priority",
        "tolerations",
        "nodename",
        "hostprobe",
        "reserved",
        "squat-mcp",
    ] {
        let name = random_release();
        let started = Instant::now();
        let (status, body) = install(&name, json!({"attack": attack})).await;
        eprintln!("{major:?}: {attack} refused in {:?}", started.elapsed());
        assert_eq!(status, StatusCode::BAD_REQUEST, "{attack}: {body}");
        assert_error(&body, "chart_not_confined");
        let (status, _) = op
            .call(
                Method::GET,
                &format!("/api/releases/{namespace}/{name}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{attack}: nothing installed");
    }
    // A priority class of the tenant's own (not allowed by default) too.
    let (status, body) = install(
        &random_release(),
        json!({"attack": "priority", "priorityClassName": "high"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Many ConfigMaps: the quota stops them (the cluster refuses helm).
    let name = random_release();
    let started = Instant::now();
    let (status, body) = install(&name, json!({"attack": "configmaps", "count": 200})).await;
    eprintln!(
        "{major:?}: 200 ConfigMaps refused in {:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "rejected_by_cluster");
    let config_maps = Api::<ConfigMap>::namespaced(op.kube.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .expect("config maps")
        .items
        .len();
    assert!(config_maps <= 50, "{config_maps} ConfigMaps");

    // 106 replicas at 1m/1Mi: the LimitRange's minimums refuse every pod.
    let tiny = random_release();
    let (status, body) = install(&tiny, json!({"attack": "replicas"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The same, written directly as the tenant's helm identity: admission
    // and quota refuse what the checker refused.
    let tenant = as_tenant(&namespace).await;
    let deployments = Api::<Deployment>::namespaced(tenant.clone(), &namespace);
    let none = json!({});
    let small = json!({"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}});
    for (what, spec) in [
        (
            "system priority",
            json!({"priorityClassName": "system-node-critical"}),
        ),
        (
            "system priority",
            json!({"priorityClassName": "system-cluster-critical"}),
        ),
        (
            "every taint tolerated",
            json!({"tolerations": [{"operator": "Exists"}]}),
        ),
        ("nodeName", json!({"nodeName": "localkube-node"})),
        ("another scheduler", json!({"schedulerName": "mine"})),
    ] {
        let message = refused(
            what,
            deployments
                .create(
                    &PostParams::default(),
                    &deployment("direct", spec, 1, none.clone()),
                )
                .await,
        );
        assert!(
            message.contains("paas-tenant-scheduling"),
            "{what}: {message}"
        );
    }
    let config_maps = Api::<ConfigMap>::namespaced(tenant.clone(), &namespace);
    let mut made = 0;
    let quota_message = loop {
        let map: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("direct-{made}")}}))
                .expect("config map");
        match config_maps.create(&PostParams::default(), &map).await {
            Ok(_) => made += 1,
            Err(error) => break refused("ConfigMaps beyond the quota", Err::<(), _>(error)),
        }
        assert!(made <= 50, "more ConfigMaps than the quota allows");
    };
    assert!(quota_message.contains("exceeded quota"), "{quota_message}");
    // 106 replicas written directly: at 1m/1Mi none runs; at the minimums,
    // no more than the quota's 20 pods.
    deployments
        .create(
            &PostParams::default(),
            &deployment("tiny", json!({}), 106, json!({"requests": {"cpu": "1m", "memory": "1Mi"}, "limits": {"cpu": "1m", "memory": "1Mi"}})),
        )
        .await
        .expect("the Deployment itself is allowed");
    for selector in [
        "app=tiny".to_owned(),
        format!("app.kubernetes.io/instance={tiny}"),
    ] {
        let (pods, message) = pods_when_refused(&op, &namespace, &selector).await;
        let names: Vec<_> = pods.iter().map(|p| p.metadata.name.clone()).collect();
        assert!(pods.is_empty(), "pods at 1m/1Mi: {names:?}");
        assert!(message.contains("minimum"), "{selector}: {message}");
    }
    deployments
        .create(
            &PostParams::default(),
            &deployment("many", json!({}), 106, small),
        )
        .await
        .expect("the Deployment itself is allowed");
    let (_, message) = pods_when_refused(&op, &namespace, "app=many").await;
    assert!(message.contains("exceeded quota"), "{message}");
    let all = Api::<Pod>::namespaced(op.kube.clone(), &namespace)
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items;
    let live = all
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .count();
    assert!(live <= PODS_LIMIT, "{live} pods in the namespace");
    // No tenant pod runs with a system priority, whatever was tried.
    eprintln!("{major:?}: {live} pods for 106 replicas at the minimums (pods quota {PODS_LIMIT})");
    for pod in &all {
        let class = pod
            .spec
            .as_ref()
            .and_then(|s| s.priority_class_name.clone())
            .unwrap_or_default();
        assert!(!class.starts_with("system-"), "pod with {class}");
    }

    // The attacker's pods go now (the namespace controller may be slow to
    // delete a namespace, and the node is shared).
    let admin = Api::<Deployment>::namespaced(op.kube.clone(), &namespace);
    for deployment in ["tiny", "many"] {
        admin
            .delete(deployment, &Default::default())
            .await
            .expect("delete");
    }
    let (status, body) = op
        .call(
            Method::DELETE,
            &format!("/api/releases/{namespace}/{tiny}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Another tenant still gets its pods scheduled.
    let other = op.tenant().await;
    let name = random_release();
    let body = json!({"namespace": other, "name": name, "chart": oci_chart("web"), "version": "0.1.0",
                      "values": {"replicaCount": 1}});
    let started = Instant::now();
    let (status, body) = op.call(Method::POST, "/api/releases", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let installed = started.elapsed();
    wait_pods_ready(&op, &format!("/api/releases/{other}/{name}")).await;
    eprintln!(
        "{major:?}: another tenant's install {installed:?}, its pod Running and ready after {:?}",
        started.elapsed()
    );
}
crate::both_helms!(tenant_fences_hold);

/// Decoded size of the forged record: above the operator's decode cap
/// (16 MiB), yet only some 50 KB in etcd once gzipped.
const OVERSIZED: usize = 24 << 20;

/// A release record (the `release` payload of Helm's Secret) decoded to
/// its JSON.
fn decode_record(payload: &[u8]) -> Value {
    let gzipped = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .expect("base64");
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .read_to_end(&mut json)
        .expect("gzip");
    serde_json::from_slice(&json).expect("json")
}

fn encode_record(record: &Value) -> Vec<u8> {
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(record.to_string().as_bytes()).expect("gzip");
    let gzipped = gzip.finish().expect("gzip");
    base64::engine::general_purpose::STANDARD
        .encode(gzipped)
        .into_bytes()
}

/// A release whose latest record is too large to read (written by an
/// administrator: a chart cannot write records, and renderings are
/// capped): its reads answer 409 `release_record_unreadable` (never 500),
/// and its owner can still uninstall it.
async fn an_unreadable_release_is_still_uninstalled(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    let namespace = op.tenant().await;
    let name = random_release();
    let body = json!({"namespace": namespace, "name": name, "chart": oci_chart("web"), "version": "0.1.0"});
    let (status, body) = op.call(Method::POST, "/api/releases", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let secrets = Api::<Secret>::namespaced(op.kube.clone(), &namespace);
    let first = secrets
        .get(&format!("sh.helm.release.v1.{name}.v1"))
        .await
        .expect("record v1");
    let mut record = decode_record(&first.data.as_ref().expect("data")["release"].0);
    record["version"] = json!(2);
    record["info"]["status"] = json!("deployed");
    record["info"]["description"] = json!("Upgrade complete");
    record["info"]["notes"] = json!("x".repeat(OVERSIZED));
    let mut forged = first.clone();
    forged.metadata = kube::api::ObjectMeta {
        name: Some(format!("sh.helm.release.v1.{name}.v2")),
        labels: first.metadata.labels.clone().map(|mut labels| {
            labels.insert("version".into(), "2".into());
            labels.insert("status".into(), "deployed".into());
            labels
        }),
        ..Default::default()
    };
    forged.data = Some([("release".to_owned(), ByteString(encode_record(&record)))].into());
    secrets
        .create(&PostParams::default(), &forged)
        .await
        .expect("an administrator writes the record");

    let path = format!("/api/releases/{namespace}/{name}");
    for (method, read, body) in [
        (Method::GET, String::new(), None),
        (Method::GET, "/status".to_owned(), None),
        (Method::GET, "/revisions".to_owned(), None),
        (
            Method::POST,
            "/rollback".to_owned(),
            Some(json!({"revision": 1})),
        ),
    ] {
        let (status, answer) = op
            .call(method.clone(), &format!("{path}{read}"), body)
            .await;
        assert!(
            status == StatusCode::CONFLICT || status.is_success(),
            "{method} {read}: {status} {answer}"
        );
        if status == StatusCode::CONFLICT {
            assert_error(&answer, "release_record_unreadable");
        }
        eprintln!("{method} {path}{read} of an oversized record: {status}");
    }
    let started = Instant::now();
    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eprintln!(
        "uninstall of a release with a {OVERSIZED}-byte record: {:?}",
        started.elapsed()
    );
    let (status, body) = op.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let left = secrets
        .list(&ListParams::default().labels(&format!("owner=helm,name={name}")))
        .await
        .expect("records")
        .items;
    assert!(left.is_empty(), "{} records left", left.len());
}
crate::both_helms!(an_unreadable_release_is_still_uninstalled);

/// An n8n look-alike at `address`: ready (its settings say the owner is to
/// be set up), then answering the owner setup with a body that never ends.
/// Counts the bytes it managed to send.
async fn endless_n8n(listener: tokio::net::TcpListener, sent: Arc<AtomicU64>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let sent = sent.clone();
        tokio::spawn(async move {
            let Some(request) = read_request(&mut socket).await else {
                return;
            };
            if request.contains("/rest/settings") {
                let body = r#"{"data":{"userManagement":{"showSetupOnFirstLoad":true}}}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                return;
            }
            // 2 GB declared, and sent for as long as anyone reads.
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2000000000\r\n\r\n{\"data\":\"";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b'a'; 64 * 1024];
            while sent.load(Ordering::Relaxed) < 2_000_000_000
                && socket.write_all(&block).await.is_ok()
            {
                sent.fetch_add(block.len() as u64, Ordering::Relaxed);
            }
        });
    }
}

/// One whole request (head and declared body), as a server reads it
/// before answering; `None` when the peer went away first.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<String> {
    let mut request = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                return Some(String::from_utf8_lossy(&request).into_owned());
            }
        }
        let read = socket.read(&mut buffer).await.ok().filter(|n| *n > 0)?;
        request.extend_from_slice(&buffer[..read]);
    }
}

/// Resident memory of a process, in bytes.
fn resident_bytes(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A tenant's app answering 2 GB (and more) to the n8n bootstrap, reached
/// through the API server's service proxy: the operator's process reads at
/// most 1 MiB of it, its memory stays flat, and the answer is
/// `success: false` for that step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_app_answer_costs_a_bounded_read() {
    crate::require_env!();
    let Some(ip) = crate::n8n::own_address() else {
        eprintln!("skipped: the machine has no address but loopback");
        return;
    };
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let sent = Arc::new(AtomicU64::new(0));
    tokio::spawn(endless_n8n(listener, sent.clone()));
    let operator = OperatorProcess::spawn(
        &helm_binary(Major::Helm4),
        &[("APP_ACCESS", "api-proxy"), ("N8N_READY_TIMEOUT", "30")],
    )
    .await;
    let namespace = create_tenant(&operator.http, &operator.base).await;
    let name = random_release();
    let install = json!({"namespace": namespace, "name": name, "chart": fixture_chart("n8n").await,
                         "values": {"podIP": ip.to_string(), "port": port}});
    let (status, body) = operator
        .call(Method::POST, "/api/releases", Some(install))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let pid = operator.pid();
    let before = resident_bytes(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(resident_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let (status, answer) = operator
        .call(
            Method::POST,
            &format!("/api/releases/{namespace}/{name}/init/n8n"),
            Some(json!({"owner_password": "Owner-Pass-123"})),
        )
        .await;
    let took = started.elapsed();
    sampler.abort();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["success"], false, "{answer}");
    assert!(answer["api_key"].is_null(), "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("[setup_owner]") && error.contains("larger than"),
        "{answer}"
    );
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "endless answer: {took:?}, operator RSS {} MiB before, {} MiB at peak; the app sent {} MiB before the operator hung up",
        before >> 20,
        peak >> 20,
        sent.load(Ordering::Relaxed) >> 20
    );
    assert!(
        peak.saturating_sub(before) < 64 << 20,
        "the operator grew by {} MiB",
        peak.saturating_sub(before) >> 20
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    // The connection was cut, not drained to its end.
    assert!(sent.load(Ordering::Relaxed) < 512 << 20);
    delete_namespace(&namespace).await;
}
