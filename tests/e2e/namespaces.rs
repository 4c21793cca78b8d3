//! End-to-end: tenant namespaces on the real local control plane: quota
//! (the contract's shape), LimitRange defaults that let pods without
//! resources run, Pod Security labels that refuse privileged pods, the
//! isolating NetworkPolicy, the tenant RoleBinding, and idempotent re-posts.

use std::time::Duration;

use crate::harness::{Major, Operator, random_namespace};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::PostParams;
use reqwest::{Method, StatusCode};
use serde_json::json;

fn pod(name: &str, privileged: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1",
            "securityContext": if privileged { json!({"privileged": true}) } else { json!({}) }}]}
    }))
    .expect("pod")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_namespace_is_complete_and_idempotent() {
    crate::require_env!();
    let mut op = Operator::start(Major::Helm4, &[]).await;
    let ns = random_namespace();
    op.forget_later(&ns);
    let body =
        json!({"name": ns, "cpu_limit": "8", "memory_limit": "16Gi", "storage_limit": "100Gi"});
    let (status, answer) = op.call(Method::POST, "/api/namespaces", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert!(answer["message"].is_string());

    let namespace = Api::<Namespace>::all(op.kube.clone())
        .get(&ns)
        .await
        .expect("namespace exists");
    let labels = namespace.metadata.labels.expect("labels");
    assert_eq!(labels["paas-managed"], "true");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
    assert_eq!(labels["pod-security.kubernetes.io/warn"], "restricted");

    let quota = Api::<ResourceQuota>::namespaced(op.kube.clone(), &ns)
        .get(&format!("{ns}-quota"))
        .await
        .expect("quota");
    let hard = quota.spec.expect("spec").hard.expect("hard");
    let get = |k: &str| hard[k].0.clone();
    assert_eq!(
        (get("requests.cpu"), get("limits.cpu")),
        ("8".into(), "8".into())
    );
    assert_eq!(
        (get("requests.memory"), get("limits.memory")),
        ("16Gi".into(), "16Gi".into())
    );
    assert_eq!(
        (get("requests.storage"), get("persistentvolumeclaims")),
        ("100Gi".into(), "10".into())
    );
    // Object counts: the settings' defaults.
    assert_eq!(
        (
            get("pods"),
            get("services"),
            get("count/secrets"),
            get("count/configmaps")
        ),
        ("20".into(), "20".into(), "100".into(), "50".into())
    );

    assert!(
        Api::<LimitRange>::namespaced(op.kube.clone(), &ns)
            .get(&format!("{ns}-defaults"))
            .await
            .is_ok()
    );
    assert!(
        Api::<NetworkPolicy>::namespaced(op.kube.clone(), &ns)
            .get(&format!("{ns}-isolation"))
            .await
            .is_ok()
    );
    let binding = Api::<RoleBinding>::namespaced(op.kube.clone(), &ns)
        .get("paas-operator-tenant")
        .await
        .expect("binding");
    assert_eq!(binding.role_ref.name, "paas-operator-tenant");

    // Re-posting with new limits: 200, and the quota changes.
    let (status, answer) = op
        .call(
            Method::POST,
            "/api/namespaces",
            Some(
                json!({"name": ns, "cpu_limit": "4", "pods_limit": 40, "services_limit": 5,
                        "secrets_limit": 60, "configmaps_limit": 30, "pvc_limit": 3}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let quota = Api::<ResourceQuota>::namespaced(op.kube.clone(), &ns)
        .get(&format!("{ns}-quota"))
        .await
        .expect("quota");
    let hard = quota.spec.expect("spec").hard.expect("hard");
    let get = |k: &str| hard[k].0.clone();
    assert_eq!(get("limits.cpu"), "4");
    assert_eq!(
        [
            get("pods"),
            get("services"),
            get("count/secrets"),
            get("count/configmaps"),
            get("persistentvolumeclaims")
        ],
        ["40", "5", "60", "30", "3"]
    );
    // A count out of range: 400, and the quota stays.
    for bad in [
        json!({"name": ns, "pods_limit": 0}),
        json!({"name": ns, "secrets_limit": 100_001}),
    ] {
        let (status, answer) = op.call(Method::POST, "/api/namespaces", Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        crate::harness::assert_error(&answer, "invalid_quantity");
    }
    // The LimitRange's minimums: a container below them is refused.
    let limits = Api::<LimitRange>::namespaced(op.kube.clone(), &ns)
        .get(&format!("{ns}-defaults"))
        .await
        .expect("limit range");
    let min = limits.spec.expect("spec").limits[0]
        .min
        .clone()
        .expect("min");
    assert_eq!(
        (min["cpu"].0.as_str(), min["memory"].0.as_str()),
        ("10m", "16Mi")
    );

    // A pod that sets no resources still runs under the quota (LimitRange defaults).
    let pods: Api<Pod> = Api::namespaced(op.kube.clone(), &ns);
    pods.create(&PostParams::default(), &pod("plain", false))
        .await
        .expect("pod without resources is admitted");
    op.wait_for("the plain pod Running", Duration::from_secs(60), || async {
        let pod = pods.get("plain").await.ok()?;
        (pod.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    // A container at 1m/1Mi is refused by the LimitRange's minimums.
    let tiny: Pod = serde_json::from_value(json!({
        "metadata": {"name": "tiny"},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1",
            "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}, "limits": {"cpu": "1m", "memory": "1Mi"}}}]}
    }))
    .expect("pod");
    match pods.create(&PostParams::default(), &tiny).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("minimum"), "{status:?}");
        }
        other => panic!("a 1m/1Mi pod must be refused, got {other:?}"),
    }
    // A privileged pod is refused by Pod Security Admission.
    let refused = pods
        .create(&PostParams::default(), &pod("privileged", true))
        .await;
    match refused {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("a privileged pod must be refused, got {other:?}"),
    }
}

/// A namespace with the tenant prefix that the earlier operator made (no
/// label, no RoleBindings, its own quota): refused when adoption is off,
/// adopted on first use otherwise: labelled, the tenant identity and every
/// tenant object in place, the quota's limits kept, and helm runs in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_of_the_earlier_operator_are_adopted_unless_told_not_to() {
    crate::require_env!();
    let refusing = Operator::start(Major::Helm4, &["--adopt-namespaces", "false"]).await;
    let ns = random_namespace();
    let earlier: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
    Api::<Namespace>::all(refusing.kube.clone())
        .create(&PostParams::default(), &earlier)
        .await
        .expect("created");
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": format!("{ns}-quota")},
        "spec": {"hard": {"limits.cpu": "8", "requests.cpu": "8", "limits.memory": "16Gi",
                          "requests.memory": "16Gi", "requests.storage": "100Gi"}}
    }))
    .expect("quota");
    let quotas = Api::<ResourceQuota>::namespaced(refusing.kube.clone(), &ns);
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("quota");

    let install = json!({"namespace": ns, "name": crate::harness::random_release(),
        "chart": crate::harness::oci_chart("web"), "version": "0.1.0"});
    for (method, path, body) in [
        (
            Method::POST,
            "/api/namespaces".to_owned(),
            Some(json!({"name": ns})),
        ),
        (Method::GET, format!("/api/namespaces/{ns}"), None),
        (
            Method::POST,
            "/api/releases".to_owned(),
            Some(install.clone()),
        ),
    ] {
        let (status, answer) = refusing.call(method, &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
        assert_eq!(answer["error_type"], "namespace_not_managed");
    }
    let untouched = Api::<Namespace>::all(refusing.kube.clone())
        .get(&ns)
        .await
        .expect("ns");
    assert!(
        !untouched
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("paas-managed")
    );
    drop(refusing);

    // Adoption (the default): the first install makes the namespace ours.
    let mut op = Operator::start(Major::Helm4, &[]).await;
    op.forget_later(&ns);
    let (status, answer) = op.call(Method::POST, "/api/releases", Some(install)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let adopted = Api::<Namespace>::all(op.kube.clone())
        .get(&ns)
        .await
        .expect("ns");
    let labels = adopted.metadata.labels.expect("labels");
    assert_eq!(labels["paas-managed"], "true");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
    for binding in ["paas-tenant", "paas-operator-tenant"] {
        Api::<RoleBinding>::namespaced(op.kube.clone(), &ns)
            .get(binding)
            .await
            .unwrap_or_else(|e| panic!("RoleBinding {binding}: {e}"));
    }
    let hard = quotas
        .get(&format!("{ns}-quota"))
        .await
        .expect("quota")
        .spec
        .expect("spec")
        .hard
        .expect("hard");
    assert_eq!(
        hard["limits.cpu"].0, "8",
        "the earlier quota's limits are kept"
    );
    assert_eq!(hard["requests.storage"].0, "100Gi");
    assert_eq!(hard["persistentvolumeclaims"].0, "10");
    Api::<NetworkPolicy>::namespaced(op.kube.clone(), &ns)
        .get(&format!("{ns}-isolation"))
        .await
        .expect("isolation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_read_and_delete() {
    crate::require_env!();
    let mut op = Operator::start(Major::Helm4, &[]).await;
    let ns = op.tenant().await;
    let name = crate::harness::random_release();
    let install = json!({"namespace": ns, "name": name, "chart": crate::harness::oci_chart("web"), "version": "0.1.0"});
    let (status, body) = op.call(Method::POST, "/api/releases", Some(install)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let path = format!("/api/namespaces/{ns}");
    let (status, body) = op.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phase"], "Active");
    assert_eq!(body["quota"]["hard"]["limits.cpu"], "2");
    assert_eq!(body["releases"][0]["name"], name.as_str());
    assert_eq!(body["releases"][0]["revision"], 1);

    // Outside the prefix: 403 and nothing happens.
    let (status, body) = op
        .call(Method::DELETE, "/api/namespaces/kube-system", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Delete: 202 while terminating, then 404 once gone.
    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    op.wait_for(
        "the namespace to be gone",
        Duration::from_secs(90),
        || async {
            let (status, _) = op.call(Method::GET, &path, None).await;
            (status == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// A namespace's quota set through one replica is kept when another (or
/// this one restarted) first writes to it: the API server stores counts as
/// `10k`, and reading that back as anything but 10,000 shrank the quota to
/// the defaults on the next install.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_set_through_one_replica_is_kept_by_another() {
    crate::require_env!();
    let mut first = Operator::start(Major::Helm4, &[]).await;
    let ns = random_namespace();
    first.forget_later(&ns);
    let body = json!({"name": ns, "cpu_limit": "8", "pods_limit": 10000, "services_limit": 5000});
    let (status, answer) = first
        .call(Method::POST, "/api/namespaces", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let second = Operator::start(Major::Helm4, &[]).await;
    let install = json!({"namespace": ns, "name": crate::harness::random_release(),
        "chart": crate::harness::oci_chart("web"), "version": "0.1.0"});
    let (status, answer) = second
        .call(Method::POST, "/api/releases", Some(install))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let quota = Api::<ResourceQuota>::namespaced(second.kube.clone(), &ns)
        .get(&format!("{ns}-quota"))
        .await
        .expect("quota");
    let hard = quota.spec.expect("spec").hard.expect("hard");
    assert_eq!(hard["pods"].0, "10k");
    assert_eq!(hard["services"].0, "5k");
    assert_eq!(hard["limits.cpu"].0, "8");
}
