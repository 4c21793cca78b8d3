//! The pods of a release: those labelled `app.kubernetes.io/instance=<name>`
//! united with those matched by the selectors of the release's own
//! workloads (read from the release manifest, so no extra API call). One
//! pod list of the namespace is the only API call.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Deserialize;

use super::KubeError;
use crate::model::{PodInfo, PodPhase};

type Labels = BTreeMap<String, String>;

/// A label selector as workloads declare it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default)]
    pub match_labels: Labels,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        if self.match_labels.is_empty() && self.match_expressions.is_empty() {
            return false; // An empty selector would match everything: never use it.
        }
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self
                .match_expressions
                .iter()
                .all(|e| expression_matches(e, labels))
    }
}

fn expression_matches(expression: &LabelSelectorRequirement, labels: &Labels) -> bool {
    let value = labels.get(&expression.key);
    let values = expression.values.as_deref().unwrap_or_default();
    match expression.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

#[derive(Deserialize)]
struct ManifestObject {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ManifestMeta,
    #[serde(default)]
    spec: Option<ManifestSpec>,
}

#[derive(Default, Deserialize)]
struct ManifestMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct ManifestSpec {
    #[serde(default)]
    selector: Option<Selector>,
}

/// Selectors of the workloads a release manifest declares.
pub fn workload_selectors(manifest: &str) -> Vec<Selector> {
    let mut selectors = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(manifest) {
        // After a syntax error the YAML stream cannot resume: stop there.
        let Ok(value) = serde_json::Value::deserialize(document) else {
            break;
        };
        let Ok(object) = serde_json::from_value::<ManifestObject>(value) else {
            continue;
        };
        match object.kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
                if let Some(selector) = object.spec.and_then(|s| s.selector) {
                    selectors.push(selector);
                }
            }
            "Job" if !object.metadata.name.is_empty() => {
                let labels = Labels::from([("job-name".to_owned(), object.metadata.name)]);
                selectors.push(Selector {
                    match_labels: labels,
                    match_expressions: vec![],
                });
            }
            _ => {}
        }
    }
    selectors
}

/// Lists the release's pods in `namespace`.
pub async fn release_pods(
    client: &Client,
    namespace: &str,
    release: &str,
    selectors: &[Selector],
) -> Result<Vec<PodInfo>, KubeError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = api
        .list(&ListParams::default())
        .await
        .map_err(KubeError::api("listing pods"))?;
    Ok(select_pods(
        pods.items.iter(),
        release,
        selectors,
        jiff::Timestamp::now(),
    ))
}

/// The pods among `pods` that belong to the release, sorted by name.
pub fn select_pods<'a>(
    pods: impl Iterator<Item = &'a Pod>,
    release: &str,
    selectors: &[Selector],
    now: jiff::Timestamp,
) -> Vec<PodInfo> {
    let mut infos: Vec<PodInfo> = pods
        .filter(|pod| belongs_to(pod, release, selectors))
        .map(|pod| pod_info(pod, now))
        .collect();
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    infos
}

fn belongs_to(pod: &Pod, release: &str, selectors: &[Selector]) -> bool {
    let empty = Labels::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    labels
        .get("app.kubernetes.io/instance")
        .is_some_and(|v| v == release)
        || selectors.iter().any(|s| s.matches(labels))
}

/// The contract's view of one pod.
pub fn pod_info(pod: &Pod, now: jiff::Timestamp) -> PodInfo {
    let status = pod.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") => PodPhase::Pending,
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Unknown,
    };
    let statuses = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let total = pod
        .spec
        .as_ref()
        .map_or(statuses.len(), |s| s.containers.len());
    let ready = statuses.iter().filter(|c| c.ready).count();
    let restarts = statuses
        .iter()
        .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
        .sum();
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let age = created
        .map(|t| format_age(now.duration_since(t).as_secs()))
        .unwrap_or_default();
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase,
        ready: format!("{ready}/{total}"),
        restarts,
        age,
    }
}

/// `12d`, `5h`, `3m` or `40s`: the largest whole unit, like kubectl.
pub fn format_age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"---
# Source: web/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: svc-web
spec:
  selector:
    app: web
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-web
spec:
  selector:
    matchLabels:
      app: web
      tier: front
  template: {}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: svc-db
spec:
  selector:
    matchExpressions:
      - {key: role, operator: In, values: [db]}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: svc-migrate
spec: {}
"#;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn selectors_from_manifest() {
        let selectors = workload_selectors(MANIFEST);
        assert_eq!(selectors.len(), 3);
        assert!(selectors[0].matches(&labels(&[("app", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!selectors[0].matches(&labels(&[("app", "web")])));
        assert!(selectors[1].matches(&labels(&[("role", "db")])));
        assert!(!selectors[1].matches(&labels(&[("role", "cache")])));
        assert!(selectors[2].matches(&labels(&[("job-name", "svc-migrate")])));
        assert!(!Selector::default().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn garbage_manifest_yields_nothing() {
        assert!(workload_selectors("{{{ not yaml").is_empty());
        let odd = "kind: Deployment\nspec: just-a-string\n---\nkind: Deployment\nspec:\n  selector:\n    matchLabels: {a: b}\n";
        assert_eq!(workload_selectors(odd).len(), 1);
        assert!(workload_selectors("").is_empty());
    }

    #[test]
    fn expressions() {
        let req = |op: &str, values: Option<Vec<&str>>| LabelSelectorRequirement {
            key: "k".into(),
            operator: op.into(),
            values: values.map(|v| v.into_iter().map(String::from).collect()),
        };
        let with = labels(&[("k", "a")]);
        let without = labels(&[]);
        assert!(expression_matches(&req("NotIn", Some(vec!["b"])), &with));
        assert!(expression_matches(&req("NotIn", Some(vec!["b"])), &without));
        assert!(expression_matches(&req("Exists", None), &with));
        assert!(expression_matches(&req("DoesNotExist", None), &without));
        assert!(!expression_matches(&req("Bogus", None), &with));
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(40), "40s");
        assert_eq!(format_age(3 * 60 + 5), "3m");
        assert_eq!(format_age(5 * 3600 + 59), "5h");
        assert_eq!(format_age(12 * 86_400 + 1), "12d");
        assert_eq!(format_age(-5), "0s");
    }

    #[test]
    fn pod_counts_ready_and_restarts() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-11-26T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "image": "i", "imageID": ""},
                {"name": "b", "ready": false, "restartCount": 3, "image": "i", "imageID": ""}
            ]}
        }))
        .unwrap();
        let now: jiff::Timestamp = "2026-11-26T00:03:10Z".parse().unwrap();
        let info = pod_info(&pod, now);
        assert_eq!(
            (
                info.phase,
                info.ready.as_str(),
                info.restarts,
                info.age.as_str()
            ),
            (PodPhase::Running, "1/2", 5, "3m")
        );
    }
}
