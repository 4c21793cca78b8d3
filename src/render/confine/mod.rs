//! Confinement: what a chart's rendering may contain, checked on the very
//! documents helm applies. A chart may only create namespaced objects in its
//! own release namespace, cluster-scoped objects only of allow-listed kinds
//! (none by default), and never what would undo the tenant's isolation:
//! Helm release records, objects claiming the operator's own label, workloads
//! running as the tenant's helm identity, or Services that reach out of the
//! cluster network (`externalIPs`, `ExternalName`, `NodePort`,
//! `LoadBalancer`). Pods and pod templates keep to the scheduler's fences
//! (no system or unlisted priority class, `nodeName`, taint-bypassing
//! tolerations, other scheduler or runtime class, probe or hook aimed at a
//! host), and no object takes a name the operator reserves
//! (`paas-operator.*`, the release's sidecar Service `{release}-mcp`). The
//! cluster's admission policies refuse the same (`k8s/tenant-policy.yaml`):
//! this check only refuses earlier and says why.
//!
//! **What is checked is what is applied**: [`Rules::apply`] parses the
//! rendering strictly (YAML tags and merge keys are refused, since parsers
//! disagree on them; aliases are expanded), checks every object (the
//! `items` of lists one by one, as helm's kube client flattens them), and
//! returns the documents it parsed re-serialised as JSON, one per document,
//! so Helm cannot read them differently. Where it runs: inside the one helm
//! run with Helm 4 (a post-renderer, `helm::postrender`); on the release
//! a server-side dry run printed with Helm 3, which is then installed as
//! exactly these documents (`helm::wrapper`); and on the stored manifest
//! and hooks before a rollback or an uninstall.
//!
//! A refusal says what kind of problem and how many ([`refusal`]), never a
//! name, namespace or kind from the chart: those are chart-rendered text,
//! which `lookup` or `tpl` can fill with another tenant's secrets.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod violation;
pub use violation::{Violation, refusal};

use super::documents::Checked;
use super::parse::{Budget, MAX_INPUT, Refusal, is_json_lines, json_document, yaml_document};

/// Largest rendering accepted, as the JSON handed to helm (a release
/// record must stay decodable: see [`super::parse::MAX_OUTPUT`]).
pub const MAX_RENDERING: usize = super::parse::MAX_OUTPUT;

/// The label the operator puts on what it owns in a tenant namespace (and
/// which admission protects): a chart may not claim it.
pub const OPERATOR_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "paas-operator");

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
    /// Check confinement (`CONFINE_CHARTS`); when false the rendering is
    /// only parsed (and the additions applied).
    #[serde(default = "checked_by_default")]
    pub confine: bool,
    /// The release namespace.
    pub namespace: String,
    /// Cluster-scoped kinds charts may create (`ALLOWED_CLUSTER_KINDS`).
    pub allowed_cluster_kinds: HashSet<String>,
    pub cluster_scoped: ClusterScoped,
    /// The ServiceAccount helm runs as in the namespace (`paas-tenant`).
    pub tenant_account: String,
    /// The release (for what the operator adds to its rendering).
    #[serde(default)]
    pub release: String,
    /// What the operator adds to the checked documents.
    #[serde(default)]
    pub additions: super::additions::Additions,
    /// What pods may name (the scheduling admission policy's lists).
    #[serde(default)]
    pub scheduling: SchedulingRules,
}

/// What a tenant's pods may name, as the admission policy
/// `paas-tenant-scheduling` allows (`ALLOWED_*` settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulingRules {
    /// PriorityClasses (`system-*` is refused whatever this says).
    pub priority_classes: Vec<String>,
    /// Taint keys pods may tolerate.
    pub toleration_keys: Vec<String>,
    /// RuntimeClasses.
    pub runtime_classes: Vec<String>,
}

fn checked_by_default() -> bool {
    true
}

impl Rules {
    /// Checks `rendered` (multi-document YAML): the documents to apply, or
    /// every violation found.
    pub fn apply(&self, rendered: &str) -> Result<Checked, Vec<Violation>> {
        parse(rendered, |value, document, found| {
            self.object(value, document, found)
        })
    }

    /// Only parses `rendered` as strictly as [`Rules::apply`] (for
    /// operators who turned confinement off): the documents to apply.
    pub fn parse_only(rendered: &str) -> Result<Checked, Vec<Violation>> {
        parse(rendered, |_, _, _| {})
    }

    /// The violations of `rendered` (none: it may be applied).
    pub fn check(&self, rendered: &str) -> Vec<Violation> {
        self.apply(rendered).err().unwrap_or_default()
    }

    fn object(&self, value: &Value, document: usize, found: &mut Vec<Violation>) {
        // Like the API machinery helm builds objects with, anything with
        // `items` is a list whose items are created one by one.
        if let Some(items) = value.get("items") {
            match items {
                Value::Array(items) => {
                    for item in items {
                        self.object(item, document, found);
                    }
                }
                Value::Null => {}
                _ => found.push(Violation::Unreadable { document }),
            }
            return;
        }
        let Ok(object) = serde_json::from_value::<ObjectHead>(value.clone()) else {
            found.push(Violation::Unreadable { document });
            return;
        };
        if object.kind.is_empty() {
            return;
        }
        if let Some(violation) = self.scope(&object, document) {
            found.push(violation);
        }
        found.extend(self.isolation(&object, value, document));
    }

    /// Where the object lands.
    fn scope(&self, object: &ObjectHead, document: usize) -> Option<Violation> {
        if self
            .cluster_scoped
            .is_cluster_scoped(&object.api_version, &object.kind)
        {
            let allowed = self.allowed_cluster_kinds.contains(&object.kind);
            return (!allowed).then_some(Violation::ClusterScoped { document });
        }
        let namespace = object.metadata.namespace.as_deref().unwrap_or_default();
        (!namespace.is_empty() && namespace != self.namespace)
            .then_some(Violation::OutsideNamespace { document })
    }

    /// What would undo the tenant's isolation from inside its namespace.
    fn isolation(&self, object: &ObjectHead, value: &Value, document: usize) -> Vec<Violation> {
        let mut found = Vec::new();
        let labels = &object.metadata.labels;
        let core = object.api_version == "v1";
        let secret_type = value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let is_record = labels.get("owner").is_some_and(|v| v == "helm")
            || (core && object.kind == "Secret" && secret_type == "helm.sh/release.v1")
            || object.metadata.name.starts_with("sh.helm.release.");
        if is_record {
            found.push(Violation::HelmRecord { document });
        }
        if labels
            .get(OPERATOR_LABEL.0)
            .is_some_and(|v| v == OPERATOR_LABEL.1)
        {
            found.push(Violation::OperatorLabel { document });
        }
        if self.runs_as_tenant(object, value, secret_type) {
            found.push(Violation::TenantIdentity { document });
        }
        if core && object.kind == "Service" && reaches_out(value) {
            found.push(Violation::ServiceExposure { document });
        }
        if object.kind == "Ingress" && self.ingress_reaches_out(value) {
            found.push(Violation::IngressReach { document });
        }
        if pod_specs(value).any(|spec| self.scheduling.bypassed_by(spec)) {
            found.push(Violation::Scheduling { document });
        }
        if pod_specs(value).any(aims_at_a_host) {
            found.push(Violation::HostReach { document });
        }
        if self.reserved(object, value) {
            found.push(Violation::ReservedName { document });
        }
        found
    }

    /// A name the operator reserves: `paas-operator.*` of any kind (its
    /// kept state and Lease), and the Service `{release}-mcp` unless it is
    /// the one the operator adds for the release's sidecar (it is in the
    /// stored documents of a release with a sidecar).
    fn reserved(&self, object: &ObjectHead, value: &Value) -> bool {
        let name = object.metadata.name.as_str();
        if name.starts_with(RESERVED_PREFIX) {
            return true;
        }
        let sidecar_service = format!("{}-mcp", self.release);
        let is_it = !self.release.is_empty()
            && object.api_version == "v1"
            && object.kind == "Service"
            && name == sidecar_service;
        is_it && !is_operators_sidecar_service(value)
    }

    /// A pod (template) under the tenant's ServiceAccount, or a token of it.
    fn runs_as_tenant(&self, object: &ObjectHead, value: &Value, secret_type: &str) -> bool {
        if object.kind == "Secret" && secret_type == "kubernetes.io/service-account-token" {
            let account = value
                .pointer("/metadata/annotations")
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str);
            return account == Some(self.tenant_account.as_str());
        }
        pod_specs(value).any(|spec| {
            ["serviceAccountName", "serviceAccount"]
                .iter()
                .any(|field| spec.get(field).and_then(Value::as_str) == Some(&self.tenant_account))
        })
    }
}

/// Parses a rendering document by document, handing each object to
/// `check`; the documents, or every violation found. One budget
/// ([`super::parse::Budget`]) covers the whole rendering, aliases expanded.
fn parse(
    rendered: &str,
    mut check: impl FnMut(&Value, usize, &mut Vec<Violation>),
) -> Result<Checked, Vec<Violation>> {
    if rendered.len() > MAX_INPUT {
        return Err(vec![Violation::TooLarge]);
    }
    // What the checker wrote (and Helm stored) is read without YAML's
    // buffered parser; a line that is not JSON after all sends the whole
    // rendering to the YAML parser, under a fresh budget.
    let json = is_json_lines(rendered)
        .then(|| json_lines(rendered, &mut check))
        .flatten();
    let (documents, found) = match json {
        Some(parsed) => parsed,
        None => yaml_documents(rendered, &mut check),
    };
    if found.is_empty() {
        Ok(Checked { documents })
    } else {
        Err(found)
    }
}

/// The checker for one document: what it found goes to `found`.
type Check<'c> = dyn FnMut(&Value, usize, &mut Vec<Violation>) + 'c;

/// Takes one parsed document: checks and keeps it, or records why not.
/// False when the rest of the rendering is not worth reading.
fn accept(
    number: usize,
    parsed: Result<Value, Refusal>,
    check: &mut Check<'_>,
    documents: &mut Vec<Value>,
    found: &mut Vec<Violation>,
) -> bool {
    match parsed {
        Ok(Value::Null) => {} // Comments only: creates nothing.
        Ok(value) => {
            check(&value, number, found);
            documents.push(value);
        }
        Err(Refusal::TooComplex) => {
            found.clear();
            found.push(Violation::TooComplex);
            return false;
        }
        Err(Refusal::Ambiguous) => found.push(Violation::Ambiguous { document: number }),
        Err(Refusal::Unreadable) => found.push(Violation::Unreadable { document: number }),
    }
    true
}

/// One JSON document per line; `None` when a line is not JSON.
fn json_lines(rendered: &str, check: &mut Check<'_>) -> Option<(Vec<Value>, Vec<Violation>)> {
    let budget = Budget::default();
    let (mut documents, mut found) = (Vec::new(), Vec::new());
    let lines = rendered.lines().filter(|line| line.starts_with('{'));
    for (index, line) in lines.enumerate() {
        let parsed = json_document(line, &budget).transpose()?;
        if !accept(index + 1, parsed, check, &mut documents, &mut found) {
            break;
        }
    }
    Some((documents, found))
}

/// Multi-document YAML.
fn yaml_documents(rendered: &str, check: &mut Check<'_>) -> (Vec<Value>, Vec<Violation>) {
    let budget = Budget::default();
    let (mut documents, mut found) = (Vec::new(), Vec::new());
    for (index, document) in serde_yaml_ng::Deserializer::from_str(rendered).enumerate() {
        let parsed = yaml_document(document, &budget);
        // The parser cannot resume after a syntax error: nothing after
        // this document was checked either.
        let stop = parsed == Err(Refusal::Unreadable);
        if !accept(index + 1, parsed, check, &mut documents, &mut found) || stop {
            break;
        }
    }
    (documents, found)
}

impl Rules {
    /// Annotations that make the ingress controller (with its own,
    /// cluster-wide rights) act beyond the tenant.
    fn ingress_reaches_out(&self, value: &Value) -> bool {
        const SECRET_REFERENCES: &[&str] = &[
            "nginx.ingress.kubernetes.io/auth-tls-secret",
            "nginx.ingress.kubernetes.io/auth-secret",
            "nginx.ingress.kubernetes.io/proxy-ssl-secret",
        ];
        let Some(annotations) = value
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
        else {
            return false;
        };
        let own = format!("{}/", self.namespace);
        annotations.iter().any(|(key, reference)| {
            key.contains("snippet")
                || (SECRET_REFERENCES.contains(&key.as_str())
                    && reference
                        .as_str()
                        .is_some_and(|r| r.contains('/') && !r.starts_with(&own)))
        })
    }
}

/// The names the operator gives what it keeps in a tenant namespace (the
/// Secret `paas-operator.<release>`, the Lease of the same name).
pub const RESERVED_PREFIX: &str = "paas-operator.";

impl SchedulingRules {
    /// True when the pod spec leaves the scheduler's fences.
    fn bypassed_by(&self, spec: &Value) -> bool {
        let text = |field: &str| spec.get(field).and_then(Value::as_str).unwrap_or_default();
        let listed = |list: &[String], name: &str| list.iter().any(|item| item == name);
        let priority = text("priorityClassName");
        let bad_priority = !priority.is_empty()
            && (priority.starts_with("system-") || !listed(&self.priority_classes, priority));
        let scheduler = text("schedulerName");
        let bad_scheduler = !scheduler.is_empty() && scheduler != "default-scheduler";
        let runtime = text("runtimeClassName");
        let bad_runtime = !runtime.is_empty() && !listed(&self.runtime_classes, runtime);
        // An empty or missing key with `Exists` tolerates every taint.
        let bad_toleration = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .is_some_and(|tolerations| {
                tolerations.iter().any(|t| {
                    let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
                    key.is_empty() || !listed(&self.toleration_keys, key)
                })
            });
        bad_priority
            || !text("nodeName").is_empty()
            || bad_toleration
            || bad_scheduler
            || bad_runtime
    }
}

/// A probe or lifecycle hook of any container naming a `host` for its
/// `httpGet` or `tcpSocket` (Pod Security baseline refuses it only from
/// Kubernetes 1.34).
fn aims_at_a_host(spec: &Value) -> bool {
    const HANDLERS: &[&str] = &[
        "/livenessProbe",
        "/readinessProbe",
        "/startupProbe",
        "/lifecycle/postStart",
        "/lifecycle/preStop",
    ];
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|list| spec.get(list).and_then(Value::as_array))
        .flatten()
        .flat_map(|container| HANDLERS.iter().filter_map(|h| container.pointer(h)))
        .any(|handler| {
            ["httpGet", "tcpSocket"].iter().any(|action| {
                handler
                    .get(action)
                    .and_then(|a| a.get("host"))
                    .and_then(Value::as_str)
                    .is_some_and(|host| !host.is_empty())
            })
        })
}

/// The sidecar Service exactly as the operator makes it
/// ([`super::additions`]): labelled as the sidecar's, selecting the
/// sidecar's pod label only.
fn is_operators_sidecar_service(value: &Value) -> bool {
    let component = value
        .pointer("/metadata/labels/app.kubernetes.io~1component")
        .and_then(Value::as_str);
    let selector = value.pointer("/spec/selector").and_then(Value::as_object);
    component == Some("mcp-sidecar")
        && selector.is_some_and(|s| s.len() == 1 && s.contains_key(super::additions::SIDECAR_LABEL))
}

/// Every pod spec an object carries: a Pod's own, a workload's template,
/// a CronJob's job template.
fn pod_specs(value: &Value) -> impl Iterator<Item = &Value> {
    [
        "/spec",
        "/spec/template/spec",
        "/spec/jobTemplate/spec/template/spec",
    ]
    .into_iter()
    .filter_map(|path| value.pointer(path))
    .filter(|spec| spec.get("containers").is_some() || spec.get("serviceAccountName").is_some())
}

/// A Service that reaches outside the cluster network.
fn reaches_out(value: &Value) -> bool {
    let spec = value.get("spec");
    let kind = spec
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let external_ips = spec
        .and_then(|s| s.get("externalIPs"))
        .and_then(Value::as_array)
        .is_some_and(|ips| !ips.is_empty());
    external_ips || matches!(kind, "ExternalName" | "NodePort" | "LoadBalancer")
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
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests;
