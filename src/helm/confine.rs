//! Confinement: a chart may only create namespaced objects in its own
//! release namespace, and cluster-scoped objects only of allow-listed kinds
//! (none by default). Checked on helm's own rendering of the real install or
//! upgrade (`helm template` with the real values, hooks included), before
//! anything is created.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;

/// One rendered object that breaks confinement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: String,
    pub name: String,
    /// The namespace it would land in; `None` for a cluster-scoped object.
    pub namespace: Option<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(
                f,
                "{} {}/{} (outside the release namespace)",
                self.kind, namespace, self.name
            ),
            None => write!(f, "{} {} (cluster-scoped)", self.kind, self.name),
        }
    }
}

/// Answers whether a kind is cluster-scoped (from API discovery).
pub trait ScopeLookup {
    /// `api_version` as in a manifest (`v1`, `rbac.authorization.k8s.io/v1`).
    fn is_cluster_scoped(&self, api_version: &str, kind: &str) -> bool;
}

#[derive(Deserialize)]
struct ObjectHead {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
}

#[derive(Default, Deserialize)]
struct ObjectMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// The objects of a rendered chart (multi-document YAML) that break confinement.
pub fn violations(
    rendered: &str,
    namespace: &str,
    allowed_cluster_kinds: &HashSet<String>,
    scopes: &dyn ScopeLookup,
) -> Vec<Violation> {
    let manifests = [rendered];
    let mut found = Vec::new();
    for manifest in manifests {
        for document in serde_yaml_ng::Deserializer::from_str(manifest) {
            let Ok(value) = serde_json::Value::deserialize(document) else {
                break;
            };
            let Ok(object) = serde_json::from_value::<ObjectHead>(value) else {
                continue;
            };
            if object.kind.is_empty() {
                continue;
            }
            if scopes.is_cluster_scoped(&object.api_version, &object.kind) {
                if !allowed_cluster_kinds.contains(&object.kind) {
                    found.push(Violation {
                        kind: object.kind,
                        name: object.metadata.name,
                        namespace: None,
                    });
                }
            } else if let Some(other) = object
                .metadata
                .namespace
                .filter(|n| !n.is_empty() && n != namespace)
            {
                found.push(Violation {
                    kind: object.kind,
                    name: object.metadata.name,
                    namespace: Some(other),
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Known;

    impl ScopeLookup for Known {
        fn is_cluster_scoped(&self, _api_version: &str, kind: &str) -> bool {
            matches!(
                kind,
                "ClusterRole" | "Namespace" | "CustomResourceDefinition"
            )
        }
    }

    /// `helm template` prints hooks after the main manifest, as more documents.
    fn release(manifest: &str, hook: &str) -> String {
        format!("{manifest}\n---\n# Source: hooks\n{hook}")
    }

    #[test]
    fn finds_escapes_in_manifest_and_hooks() {
        let manifest = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: same\n  namespace: paas-ws-1\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: away\n  namespace: default\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: wide\n";
        let hook = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: evil\n";
        let found = violations(
            &release(manifest, hook),
            "paas-ws-1",
            &HashSet::new(),
            &Known,
        );
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "ConfigMap default/away (outside the release namespace)",
                "ClusterRole wide (cluster-scoped)",
                "Namespace evil (cluster-scoped)"
            ]
        );
        let allowed: HashSet<String> = ["ClusterRole".to_owned(), "Namespace".to_owned()].into();
        assert_eq!(
            violations(&release(manifest, hook), "paas-ws-1", &allowed, &Known).len(),
            1
        );
    }

    #[test]
    fn confined_chart_passes() {
        let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n";
        assert!(
            violations(&release(manifest, ""), "paas-ws-1", &HashSet::new(), &Known).is_empty()
        );
    }
}
