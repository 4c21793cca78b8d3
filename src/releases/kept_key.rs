//! Whether the n8n API key the operator keeps is in force: the release's
//! latest revision carries it (in its app Secret, and as a digest on its
//! Deployments' pod templates), and the pods of those Deployments run that
//! template. A repeated bootstrap answers from this instead of asking n8n
//! for another key.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::state::{N8N_API_KEY, N8nKey};
use crate::kube::pods::Selector;
use crate::render::additions::{VALUE_DIGEST_ANNOTATION, deployments, hex_digest};
use crate::render::confine::Rules;

/// A revision that carries the key: the pod selectors of the Deployments
/// whose pods restart to read it, and the digest their pods carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Carried {
    pub selectors: Vec<Selector>,
    pub digest: String,
}

/// `Some` when `manifest` (a revision of release `release`) holds the key
/// in its Secret and the key's digest on every one of its Deployments' pod
/// templates, as the operator's additions put them there.
pub fn in_revision(manifest: &str, release: &str, key: &N8nKey) -> Option<Carried> {
    let secret = key.secret.as_deref()?;
    let mut documents = Rules::parse_only(manifest).ok()?.documents;
    let encoded = base64::engine::general_purpose::STANDARD.encode(key.api_key.as_bytes());
    let holds_key = documents.iter().any(|d| {
        d.get("kind").and_then(Value::as_str) == Some("Secret")
            && d.pointer("/metadata/name").and_then(Value::as_str) == Some(secret)
            && d.pointer(&format!("/data/{N8N_API_KEY}"))
                .and_then(Value::as_str)
                == Some(encoded.as_str())
    });
    if !holds_key {
        return None;
    }
    let digest = hex_digest(&key.api_key);
    let mut selectors = Vec::new();
    for deployment in deployments(&mut documents) {
        let instance = deployment
            .pointer("/metadata/labels/app.kubernetes.io~1instance")
            .and_then(Value::as_str);
        if instance != Some(release) {
            continue;
        }
        let annotation = deployment
            .pointer("/spec/template/metadata/annotations")
            .and_then(|a| a.get(VALUE_DIGEST_ANNOTATION))
            .and_then(Value::as_str);
        if annotation != Some(digest.as_str()) {
            return None;
        }
        let selector = deployment.pointer("/spec/selector").cloned()?;
        selectors.push(serde_json::from_value(selector).ok()?);
    }
    Some(Carried { selectors, digest })
}

/// True when the key's Deployments run with it: each has a pod, and every
/// pod of theirs (not finished) carries the digest, is Running, ready and
/// not being deleted. Old pods still there mean the rollout is not done.
pub fn pods_run_with(pods: &[Pod], carried: &Carried) -> bool {
    carried.selectors.iter().all(|selector| {
        let own: Vec<&Pod> = pods
            .iter()
            .filter(|pod| {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                selector.matches(&labels) && !finished(pod)
            })
            .collect();
        !own.is_empty() && own.iter().all(|pod| runs_with(pod, &carried.digest))
    })
}

fn finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

fn runs_with(pod: &Pod, digest: &str) -> bool {
    let annotations: BTreeMap<String, String> =
        pod.metadata.annotations.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let containers = status.container_statuses.unwrap_or_default();
    annotations.get(VALUE_DIGEST_ANNOTATION).map(String::as_str) == Some(digest)
        && pod.metadata.deletion_timestamp.is_none()
        && status.phase.as_deref() == Some("Running")
        && !containers.is_empty()
        && containers.iter().all(|c| c.ready)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key() -> N8nKey {
        N8nKey {
            owner_email: "admin@woowtech.io".into(),
            api_key: "key-1".into(),
            api_key_id: "id-1".into(),
            secret: Some("svc-a-n8n-app-secret".into()),
        }
    }

    /// A revision as the operator's additions leave it (or without them).
    fn manifest(data: &str, digest: Option<&str>) -> String {
        let annotations = digest.map_or(json!({}), |d| json!({VALUE_DIGEST_ANNOTATION: d}));
        let documents = [
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "svc-a-n8n-app-secret"},
                   "data": {"N8N_API_KEY": data}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "svc-a-n8n", "labels": {"app.kubernetes.io/instance": "svc-a"}},
                   "spec": {"selector": {"matchLabels": {"app": "n8n"}},
                            "template": {"metadata": {"labels": {"app": "n8n"}, "annotations": annotations},
                                         "spec": {"containers": [{"name": "n8n", "image": "n8n"}]}}}}),
        ];
        documents.iter().map(|d| format!("---\n{d}\n")).collect()
    }

    fn pod(digest: Option<&str>, phase: &str, ready: bool) -> Pod {
        let annotations = digest.map_or(json!({}), |d| json!({VALUE_DIGEST_ANNOTATION: d}));
        serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {"app": "n8n"}, "annotations": annotations},
            "status": {"phase": phase, "containerStatuses": [{"name": "n8n", "ready": ready,
                "restartCount": 0, "image": "n8n", "imageID": ""}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_revision_carries_the_key_only_with_the_secret_and_the_digest() {
        let digest = hex_digest("key-1");
        let encoded = base64::engine::general_purpose::STANDARD.encode("key-1");
        let carried =
            in_revision(&manifest(&encoded, Some(&digest)), "svc-a", &key()).expect("carried");
        assert_eq!(carried.digest, digest);
        assert_eq!(carried.selectors.len(), 1);
        // The placeholder in the Secret, or no digest on the pods: not in force.
        let placeholder = base64::engine::general_purpose::STANDARD.encode("placeholder");
        assert_eq!(
            in_revision(&manifest(&placeholder, Some(&digest)), "svc-a", &key()),
            None
        );
        assert_eq!(
            in_revision(&manifest(&encoded, None), "svc-a", &key()),
            None
        );
        let other = hex_digest("key-0");
        assert_eq!(
            in_revision(&manifest(&encoded, Some(&other)), "svc-a", &key()),
            None
        );
        let nowhere = N8nKey {
            secret: None,
            ..key()
        };
        assert_eq!(
            in_revision(&manifest(&encoded, Some(&digest)), "svc-a", &nowhere),
            None
        );
    }

    #[test]
    fn pods_run_with_the_key_once_the_rollout_is_done() {
        let digest = hex_digest("key-1");
        let carried = Carried {
            selectors: vec![
                serde_json::from_value(json!({"matchLabels": {"app": "n8n"}})).unwrap(),
            ],
            digest: digest.clone(),
        };
        let new = pod(Some(&digest), "Running", true);
        assert!(pods_run_with(std::slice::from_ref(&new), &carried));
        // An old pod still there, a new one not ready yet, or none at all.
        let old = pod(None, "Running", true);
        assert!(!pods_run_with(&[new.clone(), old], &carried));
        assert!(!pods_run_with(
            &[pod(Some(&digest), "Running", false)],
            &carried
        ));
        assert!(!pods_run_with(
            &[pod(Some(&digest), "Pending", false)],
            &carried
        ));
        assert!(!pods_run_with(&[], &carried));
        // A finished pod of an earlier template does not count.
        let done = pod(None, "Failed", false);
        assert!(pods_run_with(&[new, done], &carried));
    }
}
