//! The pods of a release: those labelled `app.kubernetes.io/instance=<name>`
//! united with those matched by the selectors of the release's own
//! workloads (read from the release manifest, so no extra API call).
//!
//! Pods are read as compact [`PodObject`]s (identity, phase, container
//! counts; the spec and everything else skipped unallocated) and kept as
//! [`PodSummary`]s: what the status endpoint shows and matches on. The read
//! cache watches them; without it, one pod list of the namespace is the
//! only API call.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Deserialize;

use super::KubeError;
use super::compact::{core_v1_resource, count, identity};
use crate::model::PodPhase;

/// Labels as a sorted list of pairs: small to keep, quick to search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    pub fn get(&self, key: &str) -> Option<&str> {
        let found = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(&self.0[found].1)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut pairs: Vec<(Box<str>, Box<str>)> = pairs
            .into_iter()
            .map(|(k, v)| (k.as_ref().into(), v.as_ref().into()))
            .collect();
        pairs.sort();
        pairs.dedup_by(|a, b| a.0 == b.0);
        Self(pairs.into_boxed_slice())
    }
}

/// Labels to match a selector against: the compact [`Labels`], or an
/// object's own map.
pub trait LabelSource {
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelSource for Labels {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key)
    }
}

impl LabelSource for std::collections::BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A label selector as workloads declare it, compact (the read cache keeps
/// one set per revision).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "SelectorSpec")]
pub struct Selector {
    match_labels: Labels,
    match_expressions: Box<[Requirement]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: Box<str>,
    operator: Operator,
    values: Box<[Box<str>]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// Anything else matches nothing.
    Unknown,
}

impl Selector {
    /// A selector of exactly these labels.
    pub fn labels<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            match_labels: pairs.into_iter().collect(),
            match_expressions: Box::default(),
        }
    }

    pub fn matches(&self, labels: &impl LabelSource) -> bool {
        if self.match_labels.0.is_empty() && self.match_expressions.is_empty() {
            return false; // An empty selector would match everything: never use it.
        }
        self.match_labels
            .0
            .iter()
            .all(|(k, v)| labels.label(k) == Some(&**v))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }
}

impl From<&LabelSelectorRequirement> for Requirement {
    fn from(requirement: &LabelSelectorRequirement) -> Self {
        let operator = match requirement.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            _ => Operator::Unknown,
        };
        Self {
            key: requirement.key.as_str().into(),
            operator,
            values: requirement
                .values
                .iter()
                .flatten()
                .map(|v| v.as_str().into())
                .collect(),
        }
    }
}

impl Requirement {
    fn matches(&self, labels: &impl LabelSource) -> bool {
        let value = labels.label(&self.key);
        let listed = |v: &str| self.values.iter().any(|w| &**w == v);
        match self.operator {
            Operator::In => value.is_some_and(listed),
            Operator::NotIn => value.is_none_or(|v| !listed(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Unknown => false,
        }
    }
}

/// A selector as a manifest spells it.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SelectorSpec {
    #[serde(default)]
    match_labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<LabelSelectorRequirement>,
}

impl From<SelectorSpec> for Selector {
    fn from(spec: SelectorSpec) -> Self {
        Self {
            match_labels: spec.match_labels.iter().collect(),
            match_expressions: spec
                .match_expressions
                .iter()
                .map(Requirement::from)
                .collect(),
        }
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
    selector: Option<SelectorSpec>,
}

/// The kinds whose pods belong to a release; a document that names none
/// of them is not parsed at all.
const WORKLOAD_KINDS: [&str; 5] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
];

/// Selectors of the workloads a release manifest declares.
pub fn workload_selectors(manifest: &str) -> Vec<Selector> {
    let mut selectors = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&workload_documents(manifest)) {
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
                    selectors.push(selector.into());
                }
            }
            "Job" if !object.metadata.name.is_empty() => {
                selectors.push(Selector::labels([("job-name", object.metadata.name)]));
            }
            _ => {}
        }
    }
    selectors
}

/// The documents of a manifest that may be workloads, unparsed: a
/// manifest is mostly Services, ConfigMaps and the like, and parsing YAML
/// is the costly part of indexing a release. Documents are split where
/// YAML splits them (a `---` marker at the start of a line, which no
/// scalar may contain), and kept whole when they mention a workload kind
/// anywhere, so nothing a full parse would find is lost.
fn workload_documents(manifest: &str) -> String {
    let mut kept = String::new();
    let mut document_start = 0;
    let flush = |document: &str, kept: &mut String| {
        if WORKLOAD_KINDS.iter().any(|kind| document.contains(kind)) {
            if !kept.is_empty() && !document.starts_with("---") {
                kept.push_str("---\n");
            }
            kept.push_str(document);
            if !document.ends_with('\n') {
                kept.push('\n');
            }
        }
    };
    let mut offset = 0;
    for line in manifest.split_inclusive('\n') {
        if offset > 0 && is_document_marker(line) {
            flush(&manifest[document_start..offset], &mut kept);
            document_start = offset;
        }
        offset += line.len();
    }
    flush(&manifest[document_start..], &mut kept);
    kept
}

fn is_document_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\n', '\r']))
}

/// A pod as listed and watched: identity, phase and container counts only.
#[derive(Debug, Clone, Deserialize)]
pub struct PodObject {
    #[serde(deserialize_with = "identity")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<PodSpecHead>,
    #[serde(default)]
    status: Option<PodStatusHead>,
}
core_v1_resource!(PodObject, "Pod", "pods");

#[derive(Debug, Clone, Deserialize)]
struct PodSpecHead {
    #[serde(default, deserialize_with = "count")]
    containers: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatusHead {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    container_statuses: Option<Vec<ContainerHead>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerHead {
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    restart_count: i64,
}

/// One pod as the status endpoint shows it and matches it to a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    pub name: Box<str>,
    pub labels: Labels,
    pub phase: PodPhase,
    /// Containers in the spec (else in the status).
    pub containers: u32,
    pub ready: u32,
    pub restarts: u32,
    pub created: Option<jiff::Timestamp>,
}

impl PodObject {
    pub fn summary(&self) -> PodSummary {
        let status = self.status.as_ref();
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
        let containers = self.spec.as_ref().map_or(statuses.len(), |s| s.containers);
        let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let restarts: i64 = statuses.iter().map(|c| c.restart_count.max(0)).sum();
        PodSummary {
            name: self.metadata.name.as_deref().unwrap_or_default().into(),
            labels: self.metadata.labels.iter().flatten().collect(),
            phase,
            containers: small(containers),
            ready: small(statuses.iter().filter(|c| c.ready).count()),
            restarts: u32::try_from(restarts).unwrap_or(u32::MAX),
            created: self.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

/// Lists the release's pods in `namespace`.
pub async fn release_pods(
    client: &Client,
    namespace: &str,
    release: &str,
    selectors: &[Selector],
) -> Result<Vec<PodSummary>, KubeError> {
    let api: Api<PodObject> = Api::namespaced(client.clone(), namespace);
    let pods = api
        .list(&ListParams::default())
        .await
        .map_err(KubeError::api("listing pods"))?;
    Ok(pods
        .items
        .iter()
        .map(PodObject::summary)
        .filter(|pod| belongs_to(pod, release, selectors))
        .collect())
}

/// The pods among `pods` that belong to the release: labelled as its
/// instance, or selected by one of its workloads.
pub fn select_pods<'a>(
    pods: impl Iterator<Item = &'a PodSummary>,
    release: &'a str,
    selectors: &'a [Selector],
) -> impl Iterator<Item = &'a PodSummary> {
    pods.filter(move |pod| belongs_to(pod, release, selectors))
}

fn belongs_to(pod: &PodSummary, release: &str, selectors: &[Selector]) -> bool {
    pod.labels.get("app.kubernetes.io/instance") == Some(release)
        || selectors.iter().any(|s| s.matches(&pod.labels))
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
        pairs.iter().copied().collect()
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
    fn only_documents_naming_a_workload_kind_are_parsed() {
        // Services and ConfigMaps go; the workloads, whatever their place
        // and whatever the markers, stay as they were.
        let kept = workload_documents(MANIFEST);
        assert!(!kept.contains("kind: Service\n") && kept.contains("kind: Job"));
        assert_eq!(workload_selectors(&kept), workload_selectors(MANIFEST));
        // A ConfigMap whose data holds a workload is kept (a superset is
        // safe), a `---` inside a block scalar is no marker, and a first
        // document without a marker counts.
        let tricky = "kind: Deployment\nspec:\n  selector:\n    matchLabels: {a: b}\n---\nkind: ConfigMap\ndata:\n  x: |\n    ---\n    kind: Deployment\n--- # comment\nkind: Secret\n---\nkind: DaemonSet\nspec: {selector: {matchLabels: {c: d}}}";
        let kept = workload_documents(tricky);
        assert!(kept.contains("kind: ConfigMap") && !kept.contains("kind: Secret"));
        let found = workload_selectors(tricky);
        assert_eq!(
            found,
            [
                Selector::labels([("a", "b")]),
                Selector::labels([("c", "d")])
            ]
        );
        assert!(workload_documents("kind: Service\n---\nkind: ConfigMap\n").is_empty());
    }

    #[test]
    fn garbage_manifest_yields_nothing() {
        assert!(workload_selectors("{{{ not yaml Deployment").is_empty());
        let odd = "kind: Deployment\nspec: just-a-string\n---\nkind: Deployment\nspec:\n  selector:\n    matchLabels: {a: b}\n";
        assert_eq!(workload_selectors(odd).len(), 1);
        assert!(workload_selectors("").is_empty());
    }

    #[test]
    fn expressions() {
        let req = |op: &str, values: Option<Vec<&str>>| {
            Requirement::from(&LabelSelectorRequirement {
                key: "k".into(),
                operator: op.into(),
                values: values.map(|v| v.into_iter().map(String::from).collect()),
            })
        };
        let with = labels(&[("k", "a")]);
        let without = labels(&[]);
        assert!(req("In", Some(vec!["a"])).matches(&with));
        assert!(!req("In", Some(vec!["b"])).matches(&with));
        assert!(req("NotIn", Some(vec!["b"])).matches(&with));
        assert!(req("NotIn", Some(vec!["b"])).matches(&without));
        assert!(req("Exists", None).matches(&with));
        assert!(req("DoesNotExist", None).matches(&without));
        assert!(!req("Bogus", None).matches(&with));
    }

    fn pod(name: &str, pod_labels: &[(&str, &str)]) -> PodSummary {
        let labels: std::collections::BTreeMap<&str, &str> = pod_labels.iter().copied().collect();
        let object: PodObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "n", "labels": labels,
                         "creationTimestamp": "2026-11-26T00:00:00Z",
                         "annotations": {"big": "x"}, "managedFields": [{"manager": "m"}]},
            "spec": {"containers": [{"name": "a", "image": "i", "env": [{"name": "A", "value": "b"}]}, {"name": "b"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready"}], "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "image": "i", "imageID": ""},
                {"name": "b", "ready": false, "restartCount": 3, "image": "i", "imageID": ""}
            ]}
        }))
        .unwrap();
        object.summary()
    }

    #[test]
    fn pods_are_summarised_and_selected() {
        let summary = pod("p", &[]);
        assert_eq!(
            (
                summary.phase,
                summary.ready,
                summary.containers,
                summary.restarts,
                summary.created
            ),
            (
                PodPhase::Running,
                1,
                2,
                5,
                Some("2026-11-26T00:00:00Z".parse().unwrap())
            )
        );
        let pods = [
            pod("w-1", &[("app", "w")]),
            pod("a-1", &[("app.kubernetes.io/instance", "a")]),
            pod("other", &[("app", "x")]),
        ];
        let selectors = [Selector::labels([("app", "w")])];
        let names: Vec<&str> = select_pods(pods.iter(), "a", &selectors)
            .map(|p| &*p.name)
            .collect();
        assert_eq!(names, ["w-1", "a-1"]);
        assert_eq!(select_pods(pods.iter(), "b", &[]).count(), 0);
        // Status without a spec (never in practice): count the statuses.
        let bare: PodObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b"}, "status": {"containerStatuses": [{"ready": true}]}
        }))
        .unwrap();
        assert_eq!((bare.summary().ready, bare.summary().containers), (1, 1));
    }
}
