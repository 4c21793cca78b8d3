//! Confinement: a chart may only create namespaced objects in its own
//! release namespace, and cluster-scoped objects only of allow-listed kinds
//! (none by default). Checked on helm's own rendering of the real install or
//! upgrade, hooks included, before anything is created: inside the one helm
//! run with Helm 4 (a post-renderer, [`super::postrender`]), with a separate
//! `helm template` first with Helm 3 (whose post-renderers never see hooks).
//!
//! The check fails closed: a document it cannot read is a violation, and
//! the `items` of a list are checked one by one (helm's kube client flattens
//! any object with `items` into its items before creating them).

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One rendered object that breaks confinement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Violation {
    /// A namespaced object aimed at another namespace.
    OutsideNamespace {
        kind: String,
        name: String,
        namespace: String,
    },
    /// A cluster-scoped object of a kind that is not allowed.
    ClusterScoped { kind: String, name: String },
    /// A document that cannot be read, so cannot be checked (1-based).
    Unreadable { document: usize },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutsideNamespace {
                kind,
                name,
                namespace,
            } => write!(
                f,
                "{kind} {namespace}/{name} (outside the release namespace)"
            ),
            Self::ClusterScoped { kind, name } => write!(f, "{kind} {name} (cluster-scoped)"),
            Self::Unreadable { document } => {
                write!(f, "document {document} (cannot be read, so not checked)")
            }
        }
    }
}

/// The sentence clients get (400 `chart_not_confined`) for `found`.
pub fn refusal(namespace: &str, found: &[Violation]) -> String {
    let listed: Vec<String> = found.iter().map(ToString::to_string).collect();
    format!(
        "The chart would create objects outside namespace {namespace}: {}",
        listed.join("; ")
    )
}

/// Answers whether a kind is cluster-scoped (from API discovery).
pub trait ScopeLookup {
    /// `api_version` as in a manifest (`v1`, `rbac.authorization.k8s.io/v1`).
    fn is_cluster_scoped(&self, api_version: &str, kind: &str) -> bool;
}

/// `(group, kind)` of every cluster-scoped resource the API serves (from
/// the API server's discovery).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterScoped(HashSet<(String, String)>);

impl From<HashSet<(String, String)>> for ClusterScoped {
    fn from(kinds: HashSet<(String, String)>) -> Self {
        Self(kinds)
    }
}

impl FromIterator<(String, String)> for ClusterScoped {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl ScopeLookup for ClusterScoped {
    fn is_cluster_scoped(&self, api_version: &str, kind: &str) -> bool {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        self.0.contains(&(group.to_owned(), kind.to_owned()))
    }
}

/// Everything one check needs besides the rendering. With Helm 4 the
/// operator writes it as JSON for the post-renderer (a separate process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// The release namespace.
    pub namespace: String,
    /// Cluster-scoped kinds charts may create (`ALLOWED_CLUSTER_KINDS`).
    pub allowed_cluster_kinds: HashSet<String>,
    pub cluster_scoped: ClusterScoped,
}

impl Rules {
    /// The objects of `rendered` (multi-document YAML) that break the rules.
    pub fn check(&self, rendered: &str) -> Vec<Violation> {
        violations(
            rendered,
            &self.namespace,
            &self.allowed_cluster_kinds,
            &self.cluster_scoped,
        )
    }
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
    let check = Check {
        namespace,
        allowed_cluster_kinds,
        scopes,
    };
    let mut found = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(rendered).enumerate() {
        let Ok(yaml) = serde_yaml_ng::Value::deserialize(document) else {
            // The parser cannot resume after a syntax error: nothing after
            // this document was checked either.
            found.push(Violation::Unreadable {
                document: index + 1,
            });
            break;
        };
        match as_json(yaml) {
            Some(value) => check.object(value, index + 1, &mut found),
            None => found.push(Violation::Unreadable {
                document: index + 1,
            }),
        }
    }
    found
}

/// A document as the API machinery reads it: merge keys (`<<`) applied, as
/// Kubernetes' YAML decoder does. Custom tags survive as `{"!tag": …}`
/// objects, which no longer read as names, so such objects are refused.
fn as_json(mut yaml: serde_yaml_ng::Value) -> Option<Value> {
    yaml.apply_merge().ok()?;
    serde_json::to_value(yaml).ok()
}

struct Check<'a> {
    namespace: &'a str,
    allowed_cluster_kinds: &'a HashSet<String>,
    scopes: &'a dyn ScopeLookup,
}

impl Check<'_> {
    fn object(&self, value: Value, document: usize, found: &mut Vec<Violation>) {
        // An empty document (comments only) creates nothing.
        if value.is_null() {
            return;
        }
        // Like the API machinery helm builds objects with, anything with
        // `items` is a list whose items are created one by one.
        if let Some(items) = value.get("items") {
            match items {
                Value::Array(items) => {
                    for item in items {
                        self.object(item.clone(), document, found);
                    }
                }
                Value::Null => {}
                _ => found.push(Violation::Unreadable { document }),
            }
            return;
        }
        let Ok(object) = serde_json::from_value::<ObjectHead>(value) else {
            found.push(Violation::Unreadable { document });
            return;
        };
        if object.kind.is_empty() {
            return;
        }
        if self
            .scopes
            .is_cluster_scoped(&object.api_version, &object.kind)
        {
            if !self.allowed_cluster_kinds.contains(&object.kind) {
                found.push(Violation::ClusterScoped {
                    kind: object.kind,
                    name: object.metadata.name,
                });
            }
        } else if let Some(other) = object
            .metadata
            .namespace
            .filter(|n| !n.is_empty() && n != self.namespace)
        {
            found.push(Violation::OutsideNamespace {
                kind: object.kind,
                name: object.metadata.name,
                namespace: other,
            });
        }
    }
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

    fn shown(found: &[Violation]) -> Vec<String> {
        found.iter().map(ToString::to_string).collect()
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
        assert_eq!(
            shown(&found),
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

    #[test]
    fn list_items_are_checked_one_by_one() {
        let list = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata: {name: inner, namespace: default}\n  - apiVersion: v1\n    kind: ConfigMapList\n    items:\n      - {apiVersion: v1, kind: Namespace, metadata: {name: deep}}\n";
        let found = violations(list, "paas-ws-1", &HashSet::new(), &Known);
        assert_eq!(
            shown(&found),
            [
                "ConfigMap default/inner (outside the release namespace)",
                "Namespace deep (cluster-scoped)"
            ]
        );
        // Any kind with `items` is a list to the API machinery.
        let disguised = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nitems: [{apiVersion: v1, kind: Namespace, metadata: {name: n}}]\n";
        assert_eq!(
            violations(disguised, "paas-ws-1", &HashSet::new(), &Known).len(),
            1
        );
        let not_a_list = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nitems: 3\n";
        assert_eq!(
            shown(&violations(
                not_a_list,
                "paas-ws-1",
                &HashSet::new(),
                &Known
            )),
            ["document 1 (cannot be read, so not checked)"]
        );
    }

    #[test]
    fn unreadable_documents_fail_closed() {
        // A duplicate key: which value wins is up to the parser, so refuse.
        let duplicate = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: paas-ws-1\n  namespace: default\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: after}\n";
        let found = violations(duplicate, "paas-ws-1", &HashSet::new(), &Known);
        assert_eq!(found, [Violation::Unreadable { document: 2 }]);
        // A document that is not an object.
        let scalar = "just text\n";
        assert_eq!(
            violations(scalar, "paas-ws-1", &HashSet::new(), &Known),
            [Violation::Unreadable { document: 1 }]
        );
        // Merge keys are applied, as Kubernetes does.
        let merged =
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  <<: {namespace: default}\n  name: m\n";
        assert_eq!(
            shown(&violations(merged, "paas-ws-1", &HashSet::new(), &Known)),
            ["ConfigMap default/m (outside the release namespace)"]
        );
        // A custom tag hides the value from us: refused.
        let tagged =
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\n  namespace: !x default\n";
        assert_eq!(
            violations(tagged, "paas-ws-1", &HashSet::new(), &Known),
            [Violation::Unreadable { document: 1 }]
        );
        // Comments and empty documents are fine.
        assert!(
            violations(
                "# nothing\n---\n---\n",
                "paas-ws-1",
                &HashSet::new(),
                &Known
            )
            .is_empty()
        );
    }

    #[test]
    fn cluster_scoped_lookup_by_group_and_kind() {
        let scopes: ClusterScoped = [
            (String::new(), "Namespace".to_owned()),
            (
                "rbac.authorization.k8s.io".to_owned(),
                "ClusterRole".to_owned(),
            ),
        ]
        .into_iter()
        .collect();
        assert!(scopes.is_cluster_scoped("v1", "Namespace"));
        assert!(scopes.is_cluster_scoped("rbac.authorization.k8s.io/v1", "ClusterRole"));
        assert!(!scopes.is_cluster_scoped("v1", "ConfigMap"));
        assert!(!scopes.is_cluster_scoped("example.com/v1", "ClusterRole"));
    }

    #[test]
    fn rules_round_trip_as_json_and_refusal_lists_objects() {
        let rules = Rules {
            namespace: "paas-ws-1".into(),
            allowed_cluster_kinds: ["ClusterRole".to_owned()].into(),
            cluster_scoped: [(String::new(), "Namespace".to_owned())]
                .into_iter()
                .collect(),
        };
        let json = serde_json::to_string(&rules).unwrap();
        assert_eq!(serde_json::from_str::<Rules>(&json).unwrap(), rules);
        let found = rules.check("apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n");
        assert_eq!(
            refusal("paas-ws-1", &found),
            "The chart would create objects outside namespace paas-ws-1: Namespace n (cluster-scoped)"
        );
        let report = serde_json::to_string(&found).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<Violation>>(&report).unwrap(),
            found
        );
    }
}
