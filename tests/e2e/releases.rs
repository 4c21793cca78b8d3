//! End-to-end: every release endpoint of docs/contract.md against the real local
//! control plane, with Helm 3 and with Helm 4, charts from the OCI registry
//! and from the classic repository.

use std::time::Duration;

use crate::harness::{
    Major, Operator, assert_error, env, fixture_chart, helm_binary, oci_chart, random_release,
    recorded_helm_calls, recording_helm, scratch_dir, wait_pods_ready,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Api;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn assert_rfc3339(value: &Value) {
    let text = value.as_str().expect("a string time");
    assert!(
        text.parse::<jiff::Timestamp>().is_ok(),
        "not RFC 3339: {text}"
    );
}

async fn lifecycle(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");

    // Install: 201, the real revision, chart name from metadata, values echoed.
    let install = json!({"namespace": ns, "name": name, "chart": oci_chart("web"), "version": "0.1.0",
        "values": {"replicaCount": 2, "auth": {"password": "pa,ss=word"}}, "create_namespace": true});
    let (status, body) = op
        .call(Method::POST, "/api/releases", Some(install.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["revision"], 1);
    assert_eq!(body["status"], "deployed");
    assert_eq!(body["chart"], "web");
    assert_eq!(body["name"], name.as_str());
    assert_eq!(body["namespace"], ns.as_str());
    assert_eq!(body["values"]["auth"]["password"], "pa,ss=word");
    assert_eq!(body["route"], Value::Null);
    assert_rfc3339(&body["updated"]);
    let first_app_version = body["app_version"]
        .as_str()
        .expect("app_version")
        .to_owned();

    // The same name again: 409.
    let (status, body) = op.call(Method::POST, "/api/releases", Some(install)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "release_exists");

    // Get: no values, same revision.
    let (status, body) = op.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["revision"].as_u64(), body["status"].as_str()),
        (Some(1), Some("deployed"))
    );
    assert_eq!(body["values"], Value::Null);

    // Status: both replicas come up Running and ready.
    let status_body = wait_pods_ready(&op, &path).await;
    assert_eq!(status_body["pods"].as_array().map(Vec::len), Some(2));
    assert_eq!(status_body["pod_retrieval_error"], Value::Null);
    assert_eq!(status_body["release"]["revision"], 1);

    // Upgrade to the second chart version; values merged over the old ones.
    let upgrade =
        json!({"chart": oci_chart("web"), "version": "0.2.0", "values": {"replicaCount": 1}});
    let (status, body) = op.call(Method::PATCH, &path, Some(upgrade)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 2);
    assert_eq!(body["status"], "deployed");
    assert_ne!(body["app_version"], first_app_version.as_str());
    assert_eq!(body["values"]["replicaCount"], 1);
    assert_eq!(
        body["values"]["auth"]["password"], "pa,ss=word",
        "reuse_values keeps earlier values"
    );

    // Revisions: oldest first, name-version charts, RFC 3339 times.
    let (status, body) = op
        .call(Method::GET, &format!("{path}/revisions"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let revisions = body["revisions"].as_array().expect("revisions");
    assert_eq!(revisions.len(), 2);
    assert_eq!(
        (
            revisions[0]["revision"].as_u64(),
            revisions[0]["status"].as_str()
        ),
        (Some(1), Some("superseded"))
    );
    assert_eq!(
        (
            revisions[1]["revision"].as_u64(),
            revisions[1]["status"].as_str()
        ),
        (Some(2), Some("deployed"))
    );
    assert_eq!(revisions[0]["chart"], "web-0.1.0");
    assert_eq!(revisions[1]["chart"], "web-0.2.0");
    for revision in revisions {
        assert_rfc3339(&revision["updated"]);
        assert!(revision["description"].is_string());
    }

    // Roll back to revision 1: a new revision 3 with the old chart.
    let (status, body) = op
        .call(
            Method::POST,
            &format!("{path}/rollback"),
            Some(json!({"revision": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("revision 1")),
        "{body}"
    );
    let (_, body) = op.call(Method::GET, &path, None).await;
    assert_eq!(body["revision"], 3);
    assert_eq!(body["app_version"], first_app_version.as_str());

    // Roll back with null: the previous revision (2), giving revision 4.
    let (status, body) = op
        .call(
            Method::POST,
            &format!("{path}/rollback"),
            Some(json!({"revision": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = op.call(Method::GET, &path, None).await;
    assert_eq!(body["revision"], 4);
    assert_ne!(body["app_version"], first_app_version.as_str());

    // Rolling back to a revision that never existed: 404.
    let (status, body) = op
        .call(
            Method::POST,
            &format!("{path}/rollback"),
            Some(json!({"revision": 42})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, "revision_not_found");

    // Uninstall, then everything answers 404.
    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["message"].is_string());
    assert_missing_everywhere(&op, &path).await;
}
crate::both_helms!(lifecycle);

/// Every release endpoint answers 404 (with the contract's body) for a missing release.
async fn assert_missing_everywhere(op: &Operator, path: &str) {
    let calls = [
        (Method::GET, path.to_owned(), None),
        (
            Method::PATCH,
            path.to_owned(),
            Some(json!({"chart": oci_chart("web")})),
        ),
        (Method::DELETE, path.to_owned(), None),
        (
            Method::POST,
            format!("{path}/rollback"),
            Some(json!({"revision": 0})),
        ),
        (Method::GET, format!("{path}/revisions"), None),
        (Method::GET, format!("{path}/status"), None),
    ];
    for (method, url, body) in calls {
        let (status, answer) = op.call(method.clone(), &url, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {url}: {answer}");
        assert_error(&answer, "release_not_found");
    }
}

async fn missing_release(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    assert_missing_everywhere(&op, &format!("/api/releases/{ns}/{}", random_release())).await;
}
crate::both_helms!(missing_release);

async fn classic_repository(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    let name = random_release();
    let install = json!({"namespace": ns, "name": name, "chart": "web", "repo_url": env("CHART_REPO_URL"), "version": "0.2.0"});
    let (status, body) = op.call(Method::POST, "/api/releases", Some(install)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["chart"].as_str(), body["revision"].as_u64()),
        (Some("web"), Some(1))
    );
    // Upgrade within the repository to a range: the newest 0.x.
    let path = format!("/api/releases/{ns}/{name}");
    let upgrade = json!({"chart": "web", "repo_url": env("CHART_REPO_URL"), "version": "^0.1", "reset_values": true});
    let (status, body) = op.call(Method::PATCH, &path, Some(upgrade)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 2);
    let (_, body) = op
        .call(Method::GET, &format!("{path}/revisions"), None)
        .await;
    assert_eq!(body["revisions"][1]["chart"], "web-0.1.0");
}
crate::both_helms!(classic_repository);

async fn chart_errors(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    let install = |chart: String, version: Option<&str>| json!({"namespace": ns, "name": random_release(), "chart": chart, "version": version});
    // A chart that fails to render: 400, and no release is left behind.
    let body = install(oci_chart("broken"), None);
    let name = body["name"].as_str().expect("name").to_owned();
    let (status, answer) = op.call(Method::POST, "/api/releases", Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error(&answer, "chart_render_failed");
    let detail = answer["detail"].as_str().unwrap_or_default();
    assert!(
        !detail.contains("Error:") && !detail.contains('/'),
        "helm's stderr must not leak: {detail}"
    );
    let (status, _) = op
        .call(Method::GET, &format!("/api/releases/{ns}/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A chart or version that does not exist: 400 chart_not_found.
    let (status, answer) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(install(oci_chart("no-such-chart"), None)),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error(&answer, "chart_not_found");
    let (status, answer) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(install(oci_chart("web"), Some("9.9.9"))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error(&answer, "chart_not_found");

    // Values rejected by the chart's values.schema.json: 400.
    let mut bad_values = install(oci_chart("web"), Some("0.1.0"));
    bad_values["values"] = json!({"replicaCount": "many"});
    let (status, answer) = op
        .call(Method::POST, "/api/releases", Some(bad_values))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error(&answer, "invalid_values");
}
crate::both_helms!(chart_errors);

async fn pending_release_is_found(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    // The `hooks` chart runs a pre-install Job, so the release stays
    // pending-install for a while; GET must report it, not 404.
    let install = json!({"namespace": ns, "name": name, "chart": oci_chart("hooks")});
    let op = std::sync::Arc::new(op);
    let installer = {
        let op = op.clone();
        tokio::spawn(async move { op.call(Method::POST, "/api/releases", Some(install)).await })
    };
    let seen = op
        .wait_for("the pending release", Duration::from_secs(60), || async {
            let (status, body) = op.call(Method::GET, &path, None).await;
            (status == StatusCode::OK)
                .then(|| body["status"].as_str().unwrap_or_default().to_owned())
        })
        .await;
    assert_eq!(seen, "pending-install");
    let (status, body) = installer.await.expect("install task");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = op.call(Method::GET, &path, None).await;
    assert_eq!(body["status"], "deployed");
}
crate::both_helms!(pending_release_is_found);

/// Asserts a 400 `chart_not_confined` whose detail names each problem
/// (Helm 3's dry run, which runs as the tenant, may already be refused by
/// the cluster) and none of the chart's own text (`hidden`: object names,
/// namespaces).
fn assert_not_confined(status: StatusCode, body: &Value, problems: &[&str], hidden: &[&str]) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(body, "chart_not_confined");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.ends_with("nothing was created"), "{detail}");
    let refused_by_cluster = detail.contains("refused by the cluster");
    for problem in problems {
        assert!(
            detail.contains(problem) || refused_by_cluster,
            "{problem} missing in: {detail}"
        );
    }
    for text in hidden {
        assert!(
            !detail.contains(text),
            "chart text {text} echoed in: {detail}"
        );
    }
}

async fn config_map_exists(op: &Operator, namespace: &str, name: &str) -> bool {
    Api::<ConfigMap>::namespaced(op.kube.clone(), namespace)
        .get_opt(name)
        .await
        .expect("read config map")
        .is_some()
}

/// A chart with a ConfigMap forced into `default` and a ClusterRole: refused
/// before anything is created, and no release record is left.
async fn escaping_chart_is_refused_and_creates_nothing(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    let name = random_release();
    let install = json!({"namespace": ns, "name": name, "chart": oci_chart("escape"),
        "values": {"targetNamespace": "default"}});
    let (status, body) = op.call(Method::POST, "/api/releases", Some(install)).await;
    assert_not_confined(
        status,
        &body,
        &["outside the release namespace", "cluster-scoped"],
        &[&format!("{name}-escaped"), "default"],
    );
    let role = Api::<ClusterRole>::all(op.kube.clone())
        .get_opt(&format!("{name}-escape"))
        .await
        .expect("read");
    assert!(role.is_none(), "no ClusterRole may be created");
    assert!(
        !config_map_exists(&op, "default", &format!("{name}-escaped")).await,
        "no ConfigMap may land in default"
    );
    let (status, _) = op
        .call(Method::GET, &format!("/api/releases/{ns}/{name}"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no release record may be left"
    );
}
crate::both_helms!(escaping_chart_is_refused_and_creates_nothing);

/// Hooks are checked too (Helm 4: inside the run; Helm 3: on the dry run),
/// and so are the items of a `kind: List`, on install and on upgrade. A
/// refused upgrade leaves the release at its revision.
async fn escaping_hooks_and_list_items_are_refused(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    let chart = fixture_chart("escapehook").await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    let hook = format!("{name}-hook");
    let listed = format!("{name}-listed");
    let outside = "outside the release namespace";

    let install =
        |values: Value| json!({"namespace": ns, "name": name, "chart": chart, "values": values});
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(install(json!({"hookNamespace": "default"}))),
        )
        .await;
    assert_not_confined(status, &body, &[outside], &[&hook, "default"]);
    let (status, _) = op.call(Method::GET, &path, None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no release record may be left"
    );

    let (status, body) = op
        .call(Method::POST, "/api/releases", Some(install(json!({}))))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    for values in [
        json!({"hookNamespace": "default"}),
        json!({"listNamespace": "default"}),
    ] {
        let upgrade = json!({"chart": chart, "values": values});
        let (status, body) = op.call(Method::PATCH, &path, Some(upgrade)).await;
        let expected = if values.get("hookNamespace").is_some() {
            &hook
        } else {
            &listed
        };
        assert_not_confined(status, &body, &[outside], &[expected, "default"]);
    }
    let (status, body) = op
        .call(Method::GET, &format!("{path}/revisions"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["revisions"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    assert_eq!(body["revisions"][0]["status"], "deployed", "{body}");
    for object in [format!("{name}-hook"), format!("{name}-listed")] {
        assert!(
            !config_map_exists(&op, "default", &object).await,
            "{object} landed in default"
        );
    }
}
crate::both_helms!(escaping_hooks_and_list_items_are_refused);

/// Which helm processes one install runs: Helm 4 checks confinement inside
/// its single run (a post-renderer), Helm 3 runs a server-side dry run
/// first, and with `CONFINE_CHARTS=false` neither happens. Every run acts
/// as the tenant.
async fn helm_runs_per_install(major: Major) {
    for confine in ["true", "false"] {
        let dir = scratch_dir("runs");
        let (wrapper, log) = recording_helm(&helm_binary(major), &dir);
        let mut op = Operator::start_with_helm(&wrapper, &["--confine-charts", confine]).await;
        let ns = op.tenant().await;
        let install = json!({"namespace": ns, "name": random_release(), "chart": oci_chart("web"), "version": "0.1.0"});
        let (status, body) = op.call(Method::POST, "/api/releases", Some(install)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let calls = recorded_helm_calls(&log);
        let commands: Vec<&str> = calls
            .iter()
            .map(|c| c.split(' ').next().unwrap_or_default())
            .collect();
        let post_rendered = calls
            .iter()
            .any(|c| c.contains("--post-renderer paas-confine"));
        match (major, confine) {
            (Major::Helm4, "true") => {
                assert_eq!(commands, ["install"], "{calls:?}");
                assert!(post_rendered, "{calls:?}");
            }
            // A server-side dry run (rendered once, as the tenant), then
            // the install of exactly the documents checked.
            (Major::Helm3, "true") => {
                assert_eq!(commands, ["install", "install"], "{calls:?}");
                assert!(calls[0].contains("--dry-run=server"), "{calls:?}");
                assert!(
                    !calls[1].contains("oci://"),
                    "the second install pulls nothing: {calls:?}"
                );
            }
            _ => assert_eq!(commands, ["install"], "{calls:?}"),
        }
        if major == Major::Helm3 || confine == "false" {
            assert!(!post_rendered, "{calls:?}");
        }
        let tenant = format!("--kube-as-user system:serviceaccount:{ns}:paas-tenant");
        assert!(calls.iter().all(|c| c.contains(&tenant)), "{calls:?}");
        drop(op);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
crate::both_helms!(helm_runs_per_install);
