//! Attacks on tenant isolation (issue 13: "tenant isolation enforced by
//! Kubernetes"). A tenant chooses the chart and the values; every test here
//! plays such a tenant (the *attacker*) against another tenant (the
//! *victim*), both made through the API, the victim holding a Secret with a
//! known password, a ConfigMap and a Service.
//!
//! Each attack runs with Helm 3 and Helm 4, and with the operator acting as
//! the ServiceAccount of k8s/rbac.yaml (`OPERATOR_KUBECONFIG`, as deployed)
//! and as the cluster admin (a developer's kubeconfig): isolation must not
//! depend on which credentials the operator happens to hold.
//!
//! What every attack test checks at its end ([`Scene::finish`]), whatever
//! the answers were:
//! - the victim's namespace (labels, annotations) and every object in it are
//!   as they were before the attack (uid, labels, data, spec);
//! - nothing named after the attack (every release and object name it uses
//!   carries the test's random marker) exists outside the attacker's
//!   namespace, cluster-scoped objects and namespaces included;
//! - the attacker's own namespace still has its labels, quota, LimitRange,
//!   NetworkPolicy and the platform's RoleBindings as the operator made them;
//! - the victim's password (raw or base64) appears in no answer of the
//!   operator and in no object of the attacker's namespace (Helm's release
//!   records decoded, events included);
//! - every answer was a success or a 4xx with `{detail, error_type}`, as
//!   each step says; never a 5xx.
//!
//! Failures are collected and reported together, so one run shows every
//! way an attack got through.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Major, Operator, OperatorProcess, env, fixture_chart, helm_binary};

/// Whose credentials the operator under test (and so its helm) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The ServiceAccount of k8s/rbac.yaml (`OPERATOR_KUBECONFIG`).
    ServiceAccount,
    /// The cluster admin (`KUBECONFIG`).
    Admin,
}

/// Runs an attack `async fn name(major, identity)` four times: Helm 3 and
/// Helm 4 ([`crate::both_helms!`]), as the operator's ServiceAccount and as
/// admin. Test names: `attacks::<name>::as_operator_sa::helm3` etc.
macro_rules! attack {
    ($body:ident) => {
        mod $body {
            use super::Identity;
            use crate::harness::Major;
            async fn as_operator_sa(major: Major) {
                super::$body(major, Identity::ServiceAccount).await;
            }
            crate::both_helms!(as_operator_sa);
            async fn as_admin(major: Major) {
                super::$body(major, Identity::Admin).await;
            }
            crate::both_helms!(as_admin);
        }
    };
}

/// The source of the fixture charts: every operator under test allows it
/// (unless the test sets its own allow-list), so an attack is refused for
/// what it does, never because its chart comes from an unknown source.
fn local_charts() -> String {
    format!("oci://{}/charts", env("OCI_REGISTRY"))
}

async fn start(major: Major, identity: Identity, extra: &[&str]) -> Operator {
    let local = local_charts();
    let mut args: Vec<&str> = extra.to_vec();
    if !args.contains(&"--allowed-chart-sources") {
        args.extend(["--allowed-chart-sources", local.as_str()]);
    }
    match identity {
        Identity::ServiceAccount => {
            assert!(
                std::env::var_os("OPERATOR_KUBECONFIG").is_some(),
                "OPERATOR_KUBECONFIG is not set, so this operator would act as admin: run \
                 `. scripts/lib/operator-identity.sh; operator_identity \"$PWD\"` first (scripts/test does)"
            );
            Operator::start(major, &args).await
        }
        Identity::Admin => Operator::start_admin(major, &args).await,
    }
}

/// Error codes that say the operator never looked at what the chart does:
/// a refusal with one of them proves nothing about an attack.
const UNRELATED_REFUSALS: &[&str] = &[
    "chart_source_not_allowed",
    "chart_not_found",
    "invalid_chart",
    "invalid_repo_url",
    "invalid_body",
    "malformed_json",
    "invalid_namespace",
    "invalid_release_name",
    "unauthorized",
    "namespace_forbidden",
    "namespace_not_managed",
    "namespace_not_found",
    "release_exists",
    "operation_in_progress",
];

fn random_hex() -> String {
    format!("{:08x}", rand::rng().random::<u32>())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `ApiResource` of a built-in kind.
fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The namespaced kinds an attack could create or change (and that the
/// snapshots and scans cover).
fn namespaced_kinds() -> Vec<ApiResource> {
    vec![
        resource("", "v1", "ConfigMap", "configmaps"),
        resource("", "v1", "Secret", "secrets"),
        resource("", "v1", "Service", "services"),
        resource("", "v1", "ServiceAccount", "serviceaccounts"),
        resource("", "v1", "Pod", "pods"),
        resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        resource("", "v1", "ResourceQuota", "resourcequotas"),
        resource("", "v1", "LimitRange", "limitranges"),
        resource("apps", "v1", "Deployment", "deployments"),
        resource("apps", "v1", "StatefulSet", "statefulsets"),
        resource("batch", "v1", "Job", "jobs"),
        resource(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
        ),
        resource("networking.k8s.io", "v1", "Ingress", "ingresses"),
        resource("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        resource(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
        ),
        resource("coordination.k8s.io", "v1", "Lease", "leases"),
    ]
}

/// Cluster-scoped kinds an attack could create.
fn cluster_kinds() -> Vec<ApiResource> {
    vec![
        resource("", "v1", "Namespace", "namespaces"),
        resource("", "v1", "PersistentVolume", "persistentvolumes"),
        resource(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
        ),
        resource(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
        ),
    ]
}

/// An object as a user would compare it: everything but what the cluster
/// bumps by itself (resourceVersion, managedFields, status).
fn canonical(object: &DynamicObject) -> String {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
    }
    value.to_string()
}

async fn list_dynamic(
    kube: &kube::Client,
    ar: &ApiResource,
    namespace: Option<&str>,
) -> Vec<DynamicObject> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(kube.clone(), ns, ar),
        None => Api::all_with(kube.clone(), ar),
    };
    api.list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing {}: {e}", ar.plural))
        .items
}

/// The victim as a user would check it: its namespace and every object in it.
async fn namespace_snapshot(kube: &kube::Client, namespace: &str) -> BTreeMap<String, String> {
    let mut snapshot = BTreeMap::new();
    let namespaces = resource("", "v1", "Namespace", "namespaces");
    let api: Api<DynamicObject> = Api::all_with(kube.clone(), &namespaces);
    let entry = match api.get_opt(namespace).await.expect("read namespace") {
        Some(ns) => canonical(&ns),
        None => "<gone>".to_owned(),
    };
    snapshot.insert(format!("Namespace {namespace}"), entry);
    for ar in namespaced_kinds() {
        for object in list_dynamic(kube, &ar, Some(namespace)).await {
            let name = object.metadata.name.clone().unwrap_or_default();
            snapshot.insert(
                format!("{} {namespace}/{name}", ar.kind),
                canonical(&object),
            );
        }
    }
    snapshot
}

/// What the platform set up in a tenant namespace and a chart must not undo:
/// the namespace's labels, the quota, LimitRange, NetworkPolicy, the
/// platform's RoleBindings and helm's ServiceAccount.
async fn protected_snapshot(kube: &kube::Client, namespace: &str) -> BTreeMap<String, String> {
    let protected = [
        format!("ResourceQuota {namespace}/{namespace}-quota"),
        format!("LimitRange {namespace}/{namespace}-defaults"),
        format!("NetworkPolicy {namespace}/{namespace}-isolation"),
        format!("RoleBinding {namespace}/paas-operator-tenant"),
        format!("RoleBinding {namespace}/paas-tenant"),
        format!("ServiceAccount {namespace}/paas-tenant"),
        format!("Namespace {namespace}"),
    ];
    let mut all = namespace_snapshot(kube, namespace).await;
    let mut snapshot = BTreeMap::new();
    for key in protected {
        let value = all.remove(&key).unwrap_or_else(|| "<absent>".to_owned());
        snapshot.insert(key, value);
    }
    snapshot
}

/// Lines describing how `after` differs from `before`.
fn differences(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, old) in before {
        match after.get(key) {
            None => lines.push(format!("{key} was deleted")),
            Some(new) if new != old => {
                lines.push(format!("{key} changed: {:.300} -> {:.300}", old, new))
            }
            Some(_) => {}
        }
    }
    for (key, new) in after {
        if !before.contains_key(key) {
            lines.push(format!("{key} was created: {new:.300}"));
        }
    }
    lines
}

/// A 4xx in the contract's shape.
fn is_clean_refusal(status: StatusCode, body: &Value) -> bool {
    status.is_client_error() && body["detail"].is_string() && body["error_type"].is_string()
}

/// A Helm release record as Helm stores it: base64 of gzip of the JSON.
fn forged_payload(release: &str, namespace: &str, revision: u32, manifest: &str) -> String {
    let now = jiff::Timestamp::now().to_string();
    let record = json!({
        "name": release,
        "namespace": namespace,
        "version": revision,
        "info": {"first_deployed": now, "last_deployed": now, "deleted": "",
                 "description": "Upgrade complete", "status": "deployed"},
        "chart": {"metadata": {"name": "attack-record", "version": "0.1.0", "apiVersion": "v2",
                               "appVersion": "1.0.0", "type": "application"},
                  "lock": null, "templates": [], "values": {}, "schema": null, "files": []},
        "config": {},
        "manifest": manifest,
        "hooks": [],
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(record.to_string().as_bytes()).expect("gzip");
    b64(&gz.finish().expect("gzip"))
}

/// Decodes a Helm release payload (base64 of gzip of JSON, or of JSON).
fn decode_payload(payload: &[u8]) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(payload.trim_ascii())
        .ok()?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(64 << 20)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    } else {
        String::from_utf8(raw).ok()
    }
}

/// One attack: an operator, an attacker tenant and a victim tenant, what the
/// operator answered, and what went wrong.
struct Scene {
    op: Operator,
    label: String,
    attacker: String,
    victim: String,
    /// The victim's secret value; lowercase hex so it is also a valid name.
    password: String,
    /// In every release and object name this attack uses.
    marker: String,
    /// The victim as last checked (each change is reported once, where it happened).
    victim_seen: Mutex<BTreeMap<String, String>>,
    protected_before: BTreeMap<String, String>,
    answers: Mutex<Vec<String>>,
    findings: Mutex<Vec<String>>,
    releases: Mutex<Vec<String>>,
}

const VICTIM_SECRET: &str = "victim-secret";
const VICTIM_CONFIG: &str = "victim-config";
const VICTIM_SERVICE: &str = "victim-svc";

impl Scene {
    async fn new(major: Major, identity: Identity) -> Self {
        Self::with_operator(major, identity, start(major, identity, &[]).await).await
    }

    async fn with_operator(major: Major, identity: Identity, mut op: Operator) -> Self {
        let attacker = op.tenant().await;
        let victim = op.tenant().await;
        let password = format!("victimpw{:016x}", rand::rng().random::<u64>());
        let marker = random_hex();
        let kube = op.kube.clone();
        let post = PostParams::default();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": VICTIM_SECRET},
            "type": "Opaque",
            "data": {"password": b64(password.as_bytes())},
        }))
        .expect("secret");
        Api::<Secret>::namespaced(kube.clone(), &victim)
            .create(&post, &secret)
            .await
            .expect("victim secret");
        let config: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": VICTIM_CONFIG},
            "data": {"app": "victim"},
        }))
        .expect("config map");
        Api::<ConfigMap>::namespaced(kube.clone(), &victim)
            .create(&post, &config)
            .await
            .expect("victim config map");
        // No selector: no controller adds Endpoints later, so the snapshot stays still.
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": VICTIM_SERVICE},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
        }))
        .expect("service");
        Api::<Service>::namespaced(kube.clone(), &victim)
            .create(&post, &service)
            .await
            .expect("victim service");
        // The controllers' own objects (default ServiceAccount, root CA)
        // arrive asynchronously: wait for them before the snapshots.
        for namespace in [&attacker, &victim] {
            op.wait_for(
                "the default ServiceAccount and kube-root-ca.crt",
                Duration::from_secs(30),
                || async {
                    let sa = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
                        kube.clone(),
                        namespace,
                    )
                    .get_opt("default")
                    .await
                    .ok()
                    .flatten();
                    let ca = Api::<ConfigMap>::namespaced(kube.clone(), namespace)
                        .get_opt("kube-root-ca.crt")
                        .await
                        .ok()
                        .flatten();
                    (sa.is_some() && ca.is_some()).then_some(())
                },
            )
            .await;
        }
        // The operator under test must install an innocent chart, or every
        // refusal below would prove nothing.
        let canary = format!("svc-{marker}-0");
        let (status, body) = op
            .call(
                Method::POST,
                "/api/releases",
                Some(json!({"namespace": attacker, "name": canary,
                            "chart": fixture_chart("attack-tpl").await,
                            "values": {"extra": "{{ .Release.Name }} is innocent"}})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "the operator under test cannot install an innocent chart, so no attack can be judged: {body}"
        );
        let victim_before = namespace_snapshot(&kube, &victim).await;
        let protected_before = protected_snapshot(&kube, &attacker).await;
        let who = match identity {
            Identity::ServiceAccount => "operator-sa",
            Identity::Admin => "admin",
        };
        let helm = match major {
            Major::Helm3 => "helm3",
            Major::Helm4 => "helm4",
        };
        Self {
            op,
            label: format!("{helm}/{who}"),
            attacker,
            victim,
            password,
            marker,
            victim_seen: Mutex::new(victim_before),
            protected_before,
            answers: Mutex::new(Vec::new()),
            findings: Mutex::new(Vec::new()),
            releases: Mutex::new(vec![canary]),
        }
    }

    fn kube(&self) -> kube::Client {
        self.op.kube.clone()
    }

    /// A release name of this attack (carries the marker).
    fn release(&self, n: usize) -> String {
        format!("svc-{}-{n}", self.marker)
    }

    fn release_path(&self, name: &str) -> String {
        format!("/api/releases/{}/{name}", self.attacker)
    }

    fn finding(&self, text: String) {
        self.findings.lock().expect("findings").push(text);
    }

    /// Calls the operator and keeps the answer for the password scan.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, answer) = self.op.call(method.clone(), path, body).await;
        let line = format!("{method} {path} -> {status} {answer}");
        println!("[{}] {line:.400}", self.label);
        self.answers.lock().expect("answers").push(line);
        (status, answer)
    }

    /// Installs `chart` with `values` as release `name` in the attacker's namespace.
    async fn install(&self, chart: &str, name: &str, values: Value) -> (StatusCode, Value) {
        self.releases
            .lock()
            .expect("releases")
            .push(name.to_owned());
        let body =
            json!({"namespace": self.attacker, "name": name, "chart": chart, "values": values});
        self.call(Method::POST, "/api/releases", Some(body)).await
    }

    /// The step must be refused: a 4xx with `{detail, error_type}`, for
    /// what the chart does (not, say, for its source).
    fn expect_refused(&self, step: &str, status: StatusCode, body: &Value) -> bool {
        let refused = is_clean_refusal(status, body);
        if !refused {
            self.finding(format!(
                "{step}: expected a 4xx refusal with {{detail, error_type}}, got {status} {body:.400}"
            ));
        }
        self.not_unrelated(step, status, body);
        refused
    }

    /// The step may succeed (if harmless, which the final checks prove) or
    /// be refused cleanly; never a 5xx or a 4xx out of shape.
    fn expect_success_or_refusal(&self, step: &str, status: StatusCode, body: &Value) {
        if !(status.is_success() || is_clean_refusal(status, body)) {
            self.finding(format!(
                "{step}: expected success or a 4xx with {{detail, error_type}}, got {status} {body:.400}"
            ));
        }
        self.not_unrelated(step, status, body);
    }

    /// An install refused before its chart was looked at tested nothing.
    fn not_unrelated(&self, step: &str, status: StatusCode, body: &Value) {
        let code = body["error_type"].as_str().unwrap_or_default();
        if status.is_client_error() && UNRELATED_REFUSALS.contains(&code) {
            self.finding(format!(
                "{step}: refused as {code}, before the chart was looked at, so the attack was not tested: {body:.300}"
            ));
        }
    }

    /// Compares the victim with how it was last seen; `stage` says when.
    async fn check_victim(&self, stage: &str) {
        let after = namespace_snapshot(&self.kube(), &self.victim).await;
        let mut seen = self.victim_seen.lock().expect("victim");
        for line in differences(&seen, &after) {
            self.finding(format!("victim changed {stage}: {line}"));
        }
        *seen = after;
    }

    async fn config_map_exists(&self, namespace: &str, name: &str) -> bool {
        Api::<ConfigMap>::namespaced(self.kube(), namespace)
            .get_opt(name)
            .await
            .expect("read config map")
            .is_some()
    }

    /// Every name in the cluster that carries the marker, outside the attacker's namespace.
    async fn marked_outside(&self) -> Vec<String> {
        let kube = self.kube();
        let mut found = Vec::new();
        for ar in cluster_kinds() {
            for object in list_dynamic(&kube, &ar, None).await {
                let name = object.metadata.name.clone().unwrap_or_default();
                if name.contains(&self.marker) && name != self.attacker {
                    found.push(format!("{} {name}", ar.kind));
                }
            }
        }
        for ar in namespaced_kinds() {
            for object in list_dynamic(&kube, &ar, None).await {
                let name = object.metadata.name.clone().unwrap_or_default();
                let namespace = object.metadata.namespace.clone().unwrap_or_default();
                if name.contains(&self.marker) && namespace != self.attacker {
                    found.push(format!("{} {namespace}/{name}", ar.kind));
                }
            }
        }
        found
    }

    /// Where the password (raw or base64) appears in the attacker's namespace.
    async fn password_in_attacker_namespace(&self) -> Vec<String> {
        let kube = self.kube();
        let needles = [self.password.clone(), b64(self.password.as_bytes())];
        let contains = |text: &str| needles.iter().any(|n| text.contains(n.as_str()));
        let mut found = Vec::new();
        let mut kinds = namespaced_kinds();
        kinds.push(resource("", "v1", "Event", "events"));
        kinds.push(resource("", "v1", "Endpoints", "endpoints"));
        kinds.push(resource(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
        ));
        for ar in kinds {
            for object in list_dynamic(&kube, &ar, Some(&self.attacker)).await {
                let name = object.metadata.name.clone().unwrap_or_default();
                if contains(&serde_json::to_string(&object).unwrap_or_default()) {
                    found.push(format!("{} {}/{name}", ar.kind, self.attacker));
                }
            }
        }
        // Secret values decoded, and Helm's release records (gzip inside) too.
        let secrets = Api::<Secret>::namespaced(kube.clone(), &self.attacker)
            .list(&ListParams::default())
            .await
            .expect("secrets");
        for secret in secrets.items {
            let name = secret.metadata.name.clone().unwrap_or_default();
            for (key, value) in secret.data.unwrap_or_default() {
                let text = String::from_utf8_lossy(&value.0).into_owned();
                let record = decode_payload(&value.0).unwrap_or_default();
                if contains(&text) || contains(&record) {
                    found.push(format!(
                        "Secret {}/{name} key {key} (decoded)",
                        self.attacker
                    ));
                }
            }
        }
        found
    }

    /// The final checks (see the module doc); panics listing every finding.
    async fn finish(self) {
        // What the platform would read afterwards is an answer too.
        let releases = self.releases.lock().expect("releases").clone();
        for name in releases {
            let path = self.release_path(&name);
            for suffix in ["", "/revisions", "/status"] {
                let (status, body) = self
                    .call(Method::GET, &format!("{path}{suffix}"), None)
                    .await;
                if status.is_server_error() {
                    self.finding(format!("GET {path}{suffix}: {status} {body:.300}"));
                }
            }
        }
        self.check_victim("at the end").await;
        for object in self.marked_outside().await {
            self.finding(format!(
                "created outside the attacker's namespace {}: {object}",
                self.attacker
            ));
        }
        let protected_after = protected_snapshot(&self.kube(), &self.attacker).await;
        for line in differences(&self.protected_before, &protected_after) {
            self.finding(format!("attacker's platform objects changed: {line}"));
        }
        for place in self.password_in_attacker_namespace().await {
            self.finding(format!("victim password found in {place}"));
        }
        let needles = [self.password.clone(), b64(self.password.as_bytes())];
        for answer in self.answers.lock().expect("answers").iter() {
            if needles.iter().any(|n| answer.contains(n.as_str())) {
                self.finding(format!("victim password in an answer: {answer:.400}"));
            }
        }
        // Namespaces an attack made are deleted with the tenants.
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.kube());
        let made: Vec<String> = namespaces
            .list_metadata(&ListParams::default())
            .await
            .expect("namespaces")
            .items
            .into_iter()
            .filter_map(|ns| ns.metadata.name)
            .filter(|name| name.contains(&self.marker))
            .collect();
        let Scene {
            mut op,
            label,
            findings,
            ..
        } = self;
        for namespace in made {
            op.forget_later(&namespace);
        }
        let findings = findings.into_inner().expect("findings");
        assert!(
            findings.is_empty(),
            "[{label}] {} finding(s):\n  - {}",
            findings.len(),
            findings.join("\n  - ")
        );
    }
}

// ---------------------------------------------------------------------------
// 1. Forged release records
// ---------------------------------------------------------------------------

/// A revision whose manifest puts a ConfigMap into the victim's namespace,
/// relabels the victim's namespace `privileged` and rewrites the victim's
/// ConfigMap (so an uninstall of it would delete all three).
fn forged_manifest(scene: &Scene) -> String {
    let victim = &scene.victim;
    let marker = &scene.marker;
    format!(
        "---\n# Source: attack-record/templates/planted.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: planted-{marker}\n  namespace: {victim}\ndata:\n  planted: \"yes\"\n\
         ---\n# Source: attack-record/templates/namespace.yaml\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {victim}\n  labels:\n    pod-security.kubernetes.io/enforce: privileged\n\
         ---\n# Source: attack-record/templates/config.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {VICTIM_CONFIG}\n  namespace: {victim}\ndata:\n  app: hijacked\n"
    )
}

/// Rollback to the forged revision, then uninstall: both must leave the
/// victim alone (a clean refusal, or a harmless success).
async fn rollback_and_uninstall(scene: &Scene, name: &str) {
    let path = scene.release_path(name);
    let (status, body) = scene
        .call(
            Method::POST,
            &format!("{path}/rollback"),
            Some(json!({"revision": 2})),
        )
        .await;
    scene.expect_success_or_refusal("rollback to the forged revision 2", status, &body);
    scene
        .check_victim("by the rollback to the forged revision")
        .await;
    let (status, body) = scene.call(Method::DELETE, &path, None).await;
    scene.expect_success_or_refusal("uninstall after the forged revision", status, &body);
    scene
        .check_victim("by the uninstall after the forged revision")
        .await;
}

/// A chart renders a Secret that is a Helm release record of its own
/// release (revision 2, "deployed"), whose manifest reaches into the victim.
/// Expected: the install is refused (400: charts may not create Helm's
/// records); rollback and uninstall then find nothing to act on (404) or
/// leave the victim alone.
async fn forged_release_record_in_a_chart(major: Major, identity: Identity) {
    let scene = Scene::new(major, identity).await;
    let chart = fixture_chart("attack-record").await;
    let name = scene.release(1);
    let payload = forged_payload(&name, &scene.attacker, 2, &forged_manifest(&scene));
    let (status, body) = scene
        .install(
            &chart,
            &name,
            json!({"record": {"revision": 2, "payload": payload}}),
        )
        .await;
    scene.expect_refused(
        "install of a chart rendering a helm release record",
        status,
        &body,
    );
    rollback_and_uninstall(&scene, &name).await;
    scene.finish().await;
}
attack!(forged_release_record_in_a_chart);

/// The same record written beside a real release by someone else in the
/// namespace (here the admin, as a pod of a chart with Secret rights could
/// before issue 13): helm's history then ends in the forged revision.
/// Expected: rollback to it is refused (a 4xx: the revision is checked like
/// an install, or not trusted) or runs as the tenant and cannot reach the
/// victim; uninstall never deletes the victim's objects (refused, or
/// removing only the tenant's own).
async fn forged_release_record_written_beside_helm(major: Major, identity: Identity) {
    let scene = Scene::new(major, identity).await;
    let chart = fixture_chart("attack-record").await;
    let name = scene.release(1);
    let (status, body) = scene.install(&chart, &name, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "the innocent install: {body}");
    let payload = forged_payload(&name, &scene.attacker, 2, &forged_manifest(&scene));
    let record: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("sh.helm.release.v1.{name}.v2"),
                     "labels": {"owner": "helm", "name": name, "version": "2", "status": "deployed"}},
        "type": "helm.sh/release.v1",
        "data": {"release": b64(payload.as_bytes())},
    }))
    .expect("record");
    Api::<Secret>::namespaced(scene.kube(), &scene.attacker)
        .create(&PostParams::default(), &record)
        .await
        .expect("forged record written as admin");
    rollback_and_uninstall(&scene, &name).await;
    scene.finish().await;
}
attack!(forged_release_record_written_beside_helm);

// ---------------------------------------------------------------------------
// 2. YAML read differently by the checker and by Helm/Kubernetes
// ---------------------------------------------------------------------------

/// Documents a YAML reader might read differently from Helm and Kubernetes
/// (which use go-yaml v2 through sigs.k8s.io/yaml): `(label, document,
/// ConfigMap name it would create in the attacker's namespace if applied as
/// checked)`.
fn yaml_variants(scene: &Scene) -> Vec<(&'static str, String, Option<String>)> {
    let own = &scene.attacker;
    let victim = &scene.victim;
    let m = &scene.marker;
    let new_ns = format!("paas-ws-{m}");
    let cm = |n: &str| format!("yaml-{m}-{n}");
    vec![
        (
            "merge key after an explicit namespace",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, namespace: {own}, <<: {{namespace: {victim}}}}}\ndata: {{x: \"1\"}}",
                cm("m1")
            ),
            Some(cm("m1")),
        ),
        (
            "nested merge keys",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, namespace: {own}, <<: {{<<: {{namespace: {victim}}}}}}}\ndata: {{x: \"1\"}}",
                cm("m2")
            ),
            Some(cm("m2")),
        ),
        (
            "merge key with a list of maps",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n  namespace: {own}\n  <<: [{{namespace: {victim}}}, {{labels: {{a: b}}}}]\ndata: {{x: \"1\"}}",
                cm("m3")
            ),
            Some(cm("m3")),
        ),
        (
            "kind through a merge key: a privileged paas-ws namespace",
            format!(
                "apiVersion: v1\nkind: ConfigMap\n<<: {{kind: Namespace}}\nmetadata:\n  name: {new_ns}\n  labels: {{paas-managed: \"true\", pod-security.kubernetes.io/enforce: privileged}}"
            ),
            Some(new_ns.clone()),
        ),
        (
            "kind through a merge key: relabel the attacker's own namespace",
            format!(
                "apiVersion: v1\nkind: ConfigMap\n<<: {{kind: Namespace}}\nmetadata:\n  name: {own}\n  labels: {{pod-security.kubernetes.io/enforce: privileged}}"
            ),
            None,
        ),
        (
            "anchor and alias",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n  annotations: {{target: &t {victim}}}\n  namespace: *t\ndata: {{x: \"1\"}}",
                cm("m5")
            ),
            Some(cm("m5")),
        ),
        (
            "merge of an alias after an explicit namespace",
            format!(
                "apiVersion: v1\nkind: ConfigMap\ndefaults: &d {{namespace: {victim}}}\nmetadata: {{name: {}, namespace: {own}, <<: *d}}\ndata: {{x: \"1\"}}",
                cm("m6")
            ),
            Some(cm("m6")),
        ),
        (
            "!!str tag on the namespace",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, namespace: !!str {victim}}}\ndata: {{x: \"1\"}}",
                cm("m7")
            ),
            Some(cm("m7")),
        ),
        (
            "custom tag on the namespace",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, namespace: !foo {victim}}}\ndata: {{x: \"1\"}}",
                cm("m8")
            ),
            Some(cm("m8")),
        ),
        (
            "custom tag on the kind",
            format!("apiVersion: v1\nkind: !foo Namespace\nmetadata: {{name: {new_ns}x}}"),
            None,
        ),
        (
            "duplicate namespace keys",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n  namespace: {own}\n  namespace: {victim}\ndata: {{x: \"1\"}}",
                cm("m10")
            ),
            Some(cm("m10")),
        ),
        (
            "duplicate keys in a JSON document",
            format!(
                "{{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {{\"name\": \"{}\", \"namespace\": \"{own}\", \"namespace\": \"{victim}\"}}}}",
                cm("m11")
            ),
            Some(cm("m11")),
        ),
        (
            "quoted merge key",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, namespace: {own}, \"<<\": {{namespace: {victim}}}}}\ndata: {{x: \"1\"}}",
                cm("m12")
            ),
            Some(cm("m12")),
        ),
        (
            "explicitly tagged !!merge key",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {}, namespace: {own}, !!merge <<: {{namespace: {victim}}}}}\ndata: {{x: \"1\"}}",
                cm("m13")
            ),
            Some(cm("m13")),
        ),
        (
            "items of a list through a merge key",
            format!(
                "apiVersion: v1\nkind: ConfigMap\n<<: {{kind: List, items: [{{apiVersion: v1, kind: ConfigMap, metadata: {{name: {}, namespace: {victim}}}}}]}}\nmetadata: {{name: {}}}",
                cm("m14"),
                cm("m14l")
            ),
            None,
        ),
    ]
}

/// Each document is installed as its own release. Expected for each: 400
/// before anything is created, or 201 with the object exactly where the
/// checker saw it (the attacker's namespace); never an object elsewhere.
async fn yaml_merge_keys_tags_and_duplicates(major: Major, identity: Identity) {
    let scene = Scene::new(major, identity).await;
    let chart = fixture_chart("attack-yaml").await;
    let variants = yaml_variants(&scene);
    let scene_ref = &scene;
    let chart_ref = &chart;
    futures::stream::iter(variants.into_iter().enumerate())
        .map(|(n, (label, document, own_object))| async move {
            let name = scene_ref.release(n + 1);
            let (status, body) = scene_ref
                .install(chart_ref, &name, json!({"documents": [document]}))
                .await;
            let step = format!("YAML {label:?}");
            scene_ref.expect_success_or_refusal(&step, status, &body);
            if is_clean_refusal(status, &body) {
                if let Some(object) = &own_object
                    && scene_ref.config_map_exists(&scene_ref.attacker, object).await
                {
                    scene_ref.finding(format!("{step}: refused, but {object} was created"));
                }
            } else if status == StatusCode::CREATED
                && let Some(object) = &own_object
                && !object.starts_with("paas-ws-")
                && !scene_ref.config_map_exists(&scene_ref.attacker, object).await
            {
                scene_ref.finding(format!(
                    "{step}: installed, but ConfigMap {object} is not in the attacker's namespace (applied other than checked)"
                ));
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    scene.finish().await;
}
attack!(yaml_merge_keys_tags_and_duplicates);

// ---------------------------------------------------------------------------
// 3. lookup with the operator's rights
// ---------------------------------------------------------------------------

/// `lookup` of the victim's Secrets: copied into a ConfigMap of the
/// attacker's own namespace; used as object NAMES in the victim's namespace
/// (so a refusal that lists objects would echo them); and through `tpl` of a
/// value in an innocent chart. Expected: helm runs as the tenant, so the
/// lookup is forbidden (a clean 400) or empty; the password is nowhere.
async fn lookup_reads_other_tenants_secrets(major: Major, identity: Identity) {
    let scene = Scene::new(major, identity).await;
    let lookup = fixture_chart("attack-lookup").await;
    let tpl = fixture_chart("attack-tpl").await;
    let victim = scene.victim.clone();

    let name = scene.release(1);
    let (status, body) = scene
        .install(&lookup, &name, json!({"victim": victim, "loot": true}))
        .await;
    scene.expect_success_or_refusal("lookup copied into the attacker's ConfigMap", status, &body);

    let name = scene.release(2);
    let (status, body) = scene
        .install(&lookup, &name, json!({"victim": victim, "nameIn": victim}))
        .await;
    scene.expect_refused(
        "lookup values used as object names in the victim's namespace",
        status,
        &body,
    );

    let name = scene.release(3);
    let extra = format!(
        "{{{{ dig \"data\" \"password\" \"\" (lookup \"v1\" \"Secret\" \"{victim}\" \"{VICTIM_SECRET}\") | b64dec }}}}"
    );
    let (status, body) = scene.install(&tpl, &name, json!({"extra": extra})).await;
    scene.expect_success_or_refusal("lookup in a value passed to tpl", status, &body);
    scene.finish().await;
}
attack!(lookup_reads_other_tenants_secrets);

// ---------------------------------------------------------------------------
// 4. Render once
// ---------------------------------------------------------------------------

/// A chart that escapes only on some renderings. Deterministic: it escapes
/// when a ConfigMap `flip` exists in its own namespace (made by an earlier
/// release of the same tenant), which a rendering that asks the cluster
/// nothing never sees. Then a coin-toss chart installed six times (each
/// rendering tosses anew). Expected: the check sees the rendering that is
/// applied, so each install is refused (400) or lands entirely in the
/// attacker's namespace.
async fn chart_rendered_once(major: Major, identity: Identity) {
    let scene = Scene::new(major, identity).await;
    let chart = fixture_chart("attack-flip").await;
    let flip = format!("flip-{}", scene.marker);
    let (status, body) = scene
        .install(&chart, &scene.release(1), json!({"makeFlip": flip}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "the innocent install: {body}");
    assert!(scene.config_map_exists(&scene.attacker, &flip).await);

    let name = scene.release(2);
    let (status, body) = scene
        .install(
            &chart,
            &name,
            json!({"flipName": flip, "victim": scene.victim}),
        )
        .await;
    scene.expect_refused(
        "chart escaping when a ConfigMap exists (lookup)",
        status,
        &body,
    );
    if scene
        .config_map_exists(&scene.victim, &format!("{name}-flipper"))
        .await
    {
        scene.finding(
            "lookup-dependent rendering: the ConfigMap landed in the victim's namespace".into(),
        );
    }

    let scene_ref = &scene;
    let chart_ref = &chart;
    futures::stream::iter(3..9)
        .map(|n| async move {
            let name = scene_ref.release(n);
            let (status, body) = scene_ref
                .install(chart_ref, &name, json!({"random": true, "victim": scene_ref.victim}))
                .await;
            scene_ref.expect_success_or_refusal("coin-toss chart", status, &body);
            if scene_ref
                .config_map_exists(&scene_ref.victim, &format!("{name}-flipper"))
                .await
            {
                scene_ref.finding(format!(
                    "coin-toss rendering {name}: answered {status}, and the ConfigMap landed in the victim's namespace"
                ));
            }
        })
        .buffer_unordered(3)
        .collect::<Vec<()>>()
        .await;
    scene.finish().await;
}
attack!(chart_rendered_once);

// ---------------------------------------------------------------------------
// 5. Inside its own namespace a chart undoes the tenant's limits
// ---------------------------------------------------------------------------

/// Waits until the ReplicaSet of `deployment` either made a Pod running as
/// `service_account` (a finding) or reports that it could not create its
/// Pod (`ReplicaFailure`: denied).
async fn no_pod_runs_as(scene: &Scene, deployment: &str, service_account: &str, what: &str) {
    let kube = scene.kube();
    let ns = scene.attacker.clone();
    let prefix = format!("{deployment}-");
    let started = Instant::now();
    let limit = Duration::from_secs(60);
    let outcome = scene
        .op
        .wait_for(
            "a Pod running as the ServiceAccount, or the ReplicaSet's failure",
            limit + Duration::from_secs(5),
            || async {
                let pods = Api::<Pod>::namespaced(kube.clone(), &ns)
                    .list(&ListParams::default())
                    .await
                    .ok()?;
                let running_as = pods.items.iter().find(|pod| {
                    pod.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(&prefix))
                        && pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.service_account_name.as_deref())
                            == Some(service_account)
                });
                if let Some(pod) = running_as {
                    return Some(Err(format!(
                        "Pod {} runs as ServiceAccount {service_account} (helm's identity)",
                        pod.metadata.name.clone().unwrap_or_default()
                    )));
                }
                let sets = Api::<ReplicaSet>::namespaced(kube.clone(), &ns)
                    .list(&ListParams::default())
                    .await
                    .ok()?;
                let failed = sets.items.iter().any(|set| {
                    set.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(&prefix))
                        && set
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter()
                                    .any(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                            })
                });
                if failed {
                    return Some(Ok(()));
                }
                (started.elapsed() > limit).then(|| {
                    Err(format!(
                        "after {limit:?} neither a Pod nor a ReplicaFailure for {deployment}"
                    ))
                })
            },
        )
        .await;
    match outcome {
        Err(problem) => scene.finding(format!("{what}: {problem}")),
        Ok(()) => println!(
            "[{}] {what}: no Pod may run as {service_account} (ReplicaFailure)",
            scene.label
        ),
    }
}

/// Runs one action as the chart's ServiceAccount; it must be refused by the
/// API server.
async fn must_be_denied<T: std::fmt::Debug>(
    scene: &Scene,
    who: &str,
    action: &str,
    outcome: Result<T, kube::Error>,
) {
    match outcome {
        Err(kube::Error::Api(status)) if matches!(status.code, 400 | 403 | 422) => {
            println!(
                "[{}] denied as {who}: {action} ({} {})",
                scene.label, status.code, status.reason
            );
        }
        Err(other) => scene.finding(format!("{action} as {who}: not a refusal: {other}")),
        Ok(_) => scene.finding(format!("{action} as {who}: ALLOWED")),
    }
}

/// A chart binds a ClusterRole of the platform (`paas-tenant`, the role
/// helm itself runs with after issue 13, and `paas-operator-tenant`, the
/// operator's) to its own ServiceAccount; the test then acts as that
/// ServiceAccount (what a pod of the chart could do with its token) and
/// tries to undo the tenant's limits. Expected: every action is denied by
/// the API server (RBAC or the admission policies of k8s/tenant-policy.yaml),
/// the install itself being allowed or cleanly refused.
async fn chart_service_account_cannot_undo_tenant_limits(major: Major, identity: Identity) {
    let scene = Scene::new(major, identity).await;
    let chart = fixture_chart("attack-binding").await;
    let ns = scene.attacker.clone();
    let cluster_roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(scene.kube());
    let mut tried = 0;
    for (n, role) in ["paas-tenant", "paas-operator-tenant"]
        .into_iter()
        .enumerate()
    {
        if cluster_roles
            .get_opt(role)
            .await
            .expect("read cluster role")
            .is_none()
        {
            println!(
                "[{}] ClusterRole {role} does not exist: not tried",
                scene.label
            );
            continue;
        }
        tried += 1;
        let sa = format!("worker-{}-{n}", scene.marker);
        let name = scene.release(n + 1);
        let (status, body) = scene
            .install(
                &chart,
                &name,
                json!({"serviceAccount": sa, "clusterRole": role}),
            )
            .await;
        scene.expect_success_or_refusal(
            &format!("chart binding {role} to its ServiceAccount"),
            status,
            &body,
        );
        let who = format!("system:serviceaccount:{ns}:{sa} (bound to {role})");
        let client = crate::harness::impersonating(
            &format!("system:serviceaccount:{ns}:{sa}"),
            &[
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".to_owned(),
            ],
        )
        .await;
        let dynamic = |kind: &str, plural: &str, group: &str| {
            let ar = resource(group, "v1", kind, plural);
            Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ar)
        };
        let patch = PatchParams::default();

        let quota = dynamic("ResourceQuota", "resourcequotas", "");
        let outcome = quota
            .patch(
                &format!("{ns}-quota"),
                &patch,
                &Patch::Merge(
                    json!({"spec": {"hard": {"limits.cpu": "1000", "requests.cpu": "1000"}}}),
                ),
            )
            .await;
        must_be_denied(&scene, &who, "patch the ResourceQuota", outcome).await;

        let limits = dynamic("LimitRange", "limitranges", "");
        let outcome = limits
            .patch(
                &format!("{ns}-defaults"),
                &patch,
                &Patch::Merge(json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "64", "memory": "64Gi"}}]}})),
            )
            .await;
        must_be_denied(&scene, &who, "patch the LimitRange", outcome).await;

        let policies = dynamic("NetworkPolicy", "networkpolicies", "networking.k8s.io");
        let outcome = policies
            .delete(&format!("{ns}-isolation"), &DeleteParams::default())
            .await;
        must_be_denied(
            &scene,
            &who,
            "delete the NetworkPolicy",
            outcome.map(|_| ()),
        )
        .await;

        let bindings = dynamic("RoleBinding", "rolebindings", "rbac.authorization.k8s.io");
        for binding in ["paas-tenant", "paas-operator-tenant"] {
            let exists =
                Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(scene.kube(), &ns)
                    .get_opt(binding)
                    .await
                    .expect("read role binding")
                    .is_some();
            if !exists {
                continue;
            }
            let outcome = bindings
                .patch(
                    binding,
                    &patch,
                    &Patch::Merge(json!({"metadata": {"labels": {"attacked": "yes"}}})),
                )
                .await;
            must_be_denied(
                &scene,
                &who,
                &format!("patch RoleBinding {binding}"),
                outcome,
            )
            .await;
            let outcome = bindings.delete(binding, &DeleteParams::default()).await;
            must_be_denied(
                &scene,
                &who,
                &format!("delete RoleBinding {binding}"),
                outcome.map(|_| ()),
            )
            .await;
        }

        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let record: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("sh.helm.release.v1.{name}.v9"),
                         "labels": {"owner": "helm", "name": name, "version": "9", "status": "deployed"}},
            "type": "helm.sh/release.v1",
            "data": {"release": b64(b"forged")},
        }))
        .expect("record");
        let outcome = secrets.create(&PostParams::default(), &record).await;
        must_be_denied(&scene, &who, "create a helm release record", outcome).await;
        if status == StatusCode::CREATED {
            let outcome = secrets
                .delete(
                    &format!("sh.helm.release.v1.{name}.v1"),
                    &DeleteParams::default(),
                )
                .await;
            must_be_denied(
                &scene,
                &who,
                "delete its own release's helm record",
                outcome.map(|_| ()),
            )
            .await;
        }

        let token: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("token-{}-{n}", scene.marker),
                         "annotations": {"kubernetes.io/service-account.name": "paas-tenant"}},
            "type": "kubernetes.io/service-account-token",
        }))
        .expect("token secret");
        let outcome = secrets.create(&PostParams::default(), &token).await;
        must_be_denied(
            &scene,
            &who,
            "create a token Secret for paas-tenant",
            outcome,
        )
        .await;

        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("as-helm-{}-{n}", scene.marker)},
            "spec": {"serviceAccountName": "paas-tenant",
                     "containers": [{"name": "c", "image": "registry.local/web:1.0.0"}]},
        }))
        .expect("pod");
        let outcome = Api::<Pod>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &pod)
            .await;
        must_be_denied(&scene, &who, "create a Pod running as paas-tenant", outcome).await;

        // The same through a controller: a Deployment whose pods run as paas-tenant.
        let deployment = format!("as-helm-{}-{n}", scene.marker);
        let body: Deployment = serde_json::from_value(json!({
            "metadata": {"name": deployment},
            "spec": {"replicas": 1,
                     "selector": {"matchLabels": {"app": deployment}},
                     "template": {"metadata": {"labels": {"app": deployment}},
                                  "spec": {"serviceAccountName": "paas-tenant",
                                           "containers": [{"name": "c", "image": "registry.local/web:1.0.0"}]}}},
        }))
        .expect("deployment");
        let created = Api::<Deployment>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &body)
            .await;
        match created {
            Ok(_) => {
                no_pod_runs_as(
                    &scene,
                    &deployment,
                    "paas-tenant",
                    &format!("a Deployment created as {who}"),
                )
                .await;
            }
            Err(kube::Error::Api(status)) if matches!(status.code, 400 | 403 | 422) => {
                println!(
                    "[{}] denied as {who}: create a Deployment running as paas-tenant ({})",
                    scene.label, status.code
                );
            }
            Err(other) => scene.finding(format!(
                "create a Deployment running as paas-tenant as {who}: not a refusal: {other}"
            )),
        }
    }

    // A chart whose own Deployment runs as helm's identity paas-tenant.
    let name = scene.release(9);
    let (status, body) = scene
        .install(
            &chart,
            &name,
            json!({"serviceAccount": format!("worker-{}-w", scene.marker),
                   "workloadServiceAccount": "paas-tenant"}),
        )
        .await;
    scene.expect_success_or_refusal(
        "chart with a Deployment running as paas-tenant",
        status,
        &body,
    );
    if status.is_success() {
        no_pod_runs_as(
            &scene,
            &format!("{name}-runs-as"),
            "paas-tenant",
            "the chart's Deployment",
        )
        .await;
    }
    assert!(
        tried > 0,
        "neither ClusterRole paas-tenant nor paas-operator-tenant exists"
    );
    scene.finish().await;
}
attack!(chart_service_account_cannot_undo_tenant_limits);

/// Services that reach outside the tenant: `externalIPs` (traffic for any
/// address), an `ExternalName` to the victim's Service behind an Ingress
/// (the ingress controller, allowed by the victim's NetworkPolicy, proxies
/// into the victim), NodePort and LoadBalancer (exposure outside the
/// platform's routes), and hand-made Endpoints/EndpointSlices (a Service
/// pointing at any address). Expected: each install refused (4xx), and no
/// such object exists.
async fn chart_services_cannot_reach_out(major: Major, identity: Identity) {
    let scene = Scene::new(major, identity).await;
    let chart = fixture_chart("attack-network").await;
    let victim_ip = Api::<Service>::namespaced(scene.kube(), &scene.victim)
        .get(VICTIM_SERVICE)
        .await
        .expect("victim service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("victim cluster IP");
    let external_name = format!("{VICTIM_SERVICE}.{}.svc.cluster.local", scene.victim);
    let host = format!("{}.apps.example", scene.marker);
    let variants = vec![
        (
            "Service with externalIPs",
            json!({"service": {"type": "ClusterIP", "selector": true, "externalIPs": ["203.0.113.10"]}}),
        ),
        (
            "ExternalName Service to the victim behind an Ingress",
            json!({"service": {"type": "ExternalName", "externalName": external_name}, "ingress": {"host": host}}),
        ),
        (
            "NodePort Service",
            json!({"service": {"type": "NodePort", "selector": true}}),
        ),
        (
            "LoadBalancer Service",
            json!({"service": {"type": "LoadBalancer", "selector": true}}),
        ),
        (
            "hand-made Endpoints/EndpointSlice at the victim's address",
            json!({"service": {"type": "ClusterIP"}, "endpoints": victim_ip, "ingress": {"host": host}}),
        ),
    ];
    let victim_ip_ref = &victim_ip;
    let scene_ref = &scene;
    let chart_ref = &chart;
    futures::stream::iter(variants.into_iter().enumerate())
        .map(|(n, (label, values))| async move {
            let name = scene_ref.release(n + 1);
            let (status, body) = scene_ref.install(chart_ref, &name, values).await;
            scene_ref.expect_refused(label, status, &body);
            let service = Api::<Service>::namespaced(scene_ref.kube(), &scene_ref.attacker)
                .get_opt(&format!("{name}-svc"))
                .await
                .expect("read service");
            if let Some(service) = service {
                let spec = service.spec.unwrap_or_default();
                let risky = spec.external_ips.is_some_and(|ips| !ips.is_empty())
                    || matches!(
                        spec.type_.as_deref(),
                        Some("ExternalName" | "NodePort" | "LoadBalancer")
                    );
                if risky {
                    scene_ref.finding(format!("{label}: Service {name}-svc exists"));
                }
            }
            let endpoints = resource("", "v1", "Endpoints", "endpoints");
            let manual = Api::<DynamicObject>::namespaced_with(
                scene_ref.kube(),
                &scene_ref.attacker,
                &endpoints,
            )
            .get_opt(&format!("{name}-svc"))
            .await
            .expect("read endpoints");
            if manual.is_some_and(|e| {
                serde_json::to_string(&e)
                    .unwrap_or_default()
                    .contains(victim_ip_ref.as_str())
            }) {
                scene_ref.finding(format!("{label}: Endpoints {name}-svc point at the victim"));
            }
        })
        .buffer_unordered(3)
        .collect::<Vec<()>>()
        .await;
    scene.finish().await;
}
attack!(chart_services_cannot_reach_out);

/// (Not in the issue; found on the way.) Ingress annotations that make a
/// shared ingress controller act across tenants: a configuration snippet
/// (arbitrary nginx configuration, CVE-2021-25742 / IngressNightmare) and
/// `auth-tls-secret` naming the VICTIM's Secret (ingress-nginx reads
/// `<namespace>/<name>` with its own cluster-wide rights). Expected:
/// refused (4xx), no such Ingress.
async fn ingress_annotations_cannot_reach_other_tenants(major: Major, identity: Identity) {
    let scene = Scene::new(major, identity).await;
    let chart = fixture_chart("attack-network").await;
    let host = format!("{}.apps.example", scene.marker);
    let variants = vec![
        (
            "Ingress with a configuration snippet",
            json!({"nginx.ingress.kubernetes.io/server-snippet": "location /x { return 200 ok; }",
                "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers \"X: y\";"}),
        ),
        (
            "Ingress naming the victim's Secret in auth-tls-secret",
            json!({"nginx.ingress.kubernetes.io/auth-tls-secret": format!("{}/{VICTIM_SECRET}", scene.victim)}),
        ),
    ];
    for (n, (label, annotations)) in variants.into_iter().enumerate() {
        let name = scene.release(n + 1);
        let values = json!({"service": {"type": "ClusterIP", "selector": true},
                            "ingress": {"host": host, "annotations": annotations}});
        let (status, body) = scene.install(&chart, &name, values).await;
        scene.expect_refused(label, status, &body);
        let ingresses = resource("networking.k8s.io", "v1", "Ingress", "ingresses");
        let ingress =
            Api::<DynamicObject>::namespaced_with(scene.kube(), &scene.attacker, &ingresses)
                .get_opt(&format!("{name}-ing"))
                .await
                .expect("read ingress");
        if ingress.is_some() {
            scene.finding(format!("{label}: Ingress {name}-ing exists"));
        }
    }
    scene.finish().await;
}
attack!(ingress_annotations_cannot_reach_other_tenants);

// ---------------------------------------------------------------------------
// 6. Resource exhaustion of the HTTP server (no helm involved)
// ---------------------------------------------------------------------------

/// The longest a connection may stay open without sending a whole request head.
const HEADER_DEADLINE: Duration = Duration::from_secs(60);

/// The header read timeout the operators under test are given
/// (`HEADER_READ_TIMEOUT`), and the slack allowed on top of it.
const HEADER_TIMEOUT: (&str, &str) = ("HEADER_READ_TIMEOUT", "5");
const HEADER_TIMEOUT_SLACK: Duration = Duration::from_secs(3);

fn configured_header_timeout() -> Duration {
    Duration::from_secs(HEADER_TIMEOUT.1.parse().expect("seconds"))
}

/// Waits until the server closes the connection (EOF or error); `None` after `limit`.
async fn closed_within<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    limit: Duration,
) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Slowloris: a connection that sends an unfinished request head and then
/// nothing, and one that drips a byte of header every second, must both be
/// dropped by the server within 60 s at most, and within the configured
/// header read timeout (`HEADER_READ_TIMEOUT=5` here) plus 3 s. Run against
/// the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_dropped() {
    crate::require_env!();
    use tokio::io::AsyncWriteExt;
    let op = OperatorProcess::spawn(&helm_binary(Major::Helm4), &[HEADER_TIMEOUT]).await;
    let address = op.base.trim_start_matches("http://").to_owned();

    let silent = async {
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        stream
            .write_all(
                b"POST /api/releases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
            )
            .await
            .expect("send a partial head");
        closed_within(&mut stream, HEADER_DEADLINE).await
    };
    let drip = async {
        let stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        writer
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("send a partial head");
        let started = Instant::now();
        let closed = async {
            closed_within(&mut reader, HEADER_DEADLINE)
                .await
                .map(|_| started.elapsed())
        };
        let dripping = async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                // A failed write means the server closed the connection.
                if writer.write_all(b"a").await.is_err() {
                    return started.elapsed();
                }
            }
        };
        tokio::select! {
            closed = closed => closed,
            at = dripping => Some(at),
        }
    };
    let (silent, drip) = tokio::join!(silent, drip);
    println!("unfinished head closed after {silent:?}; dripping head closed after {drip:?}");
    let mut findings = Vec::new();
    let bound = configured_header_timeout() + HEADER_TIMEOUT_SLACK;
    for (what, closed) in [
        ("an unfinished request head", silent),
        ("a request head dripping one byte a second", drip),
    ] {
        match closed {
            None => findings.push(format!(
                "a connection with {what} was still open after {HEADER_DEADLINE:?}"
            )),
            Some(after) if after > bound => findings.push(format!(
                "a connection with {what} was dropped only after {after:?}, more than the header timeout {:?} + {HEADER_TIMEOUT_SLACK:?}",
                configured_header_timeout()
            )),
            Some(_) => {}
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// Writes a whole `POST /api/releases` with a `size`-byte body on a
/// blocking socket, then reads the answer (as Python's urllib does).
fn urllib_like_post(address: &str, size: usize) -> Result<String, String> {
    let mut stream = std::net::TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut body = b"{\"namespace\": \"paas-ws-00000000\", \"name\": \"svc-big\", \"chart\": \"oci://x/y\", \"values\": {\"pad\": \"".to_vec();
    body.resize(size, b'a');
    body.extend_from_slice(b"\"}}");
    let head = format!(
        "POST /api/releases HTTP/1.1\r\nHost: {address}\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        crate::harness::API_KEY,
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("writing the head: {e}"))?;
    stream
        .write_all(&body)
        .map_err(|e| format!("writing the body: {e} ({:?})", e.kind()))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| {
        format!(
            "reading the answer: {e} ({:?}) after {} bytes",
            e.kind(),
            answer.len()
        )
    })?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// A client like Python's urllib writes the whole request, body over the
/// 1 MiB limit, with a blocking socket before it reads. It must be able to
/// write it all and then read `413 body_too_large`, not get a broken pipe
/// or a reset. 2 MiB as in the issue, and 8 MiB: on loopback the kernel's
/// socket buffers absorb 2 MiB whatever the server does (the operator
/// before issue 13 passed at 2 MiB and broke the pipe at 8 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_written_before_reading_gets_413() {
    crate::require_env!();
    let op = OperatorProcess::spawn(&helm_binary(Major::Helm4), &[]).await;
    let address = op.base.trim_start_matches("http://").to_owned();
    let mut findings = Vec::new();
    for size in [2 << 20, 8 << 20] {
        let to = address.clone();
        let outcome = tokio::task::spawn_blocking(move || urllib_like_post(&to, size))
            .await
            .expect("blocking client");
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => {
                findings.push(format!("{} MiB: {error}", size >> 20));
                continue;
            }
        };
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let json: Value = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
        if !(head.starts_with("HTTP/1.1 413")
            && json["error_type"] == "body_too_large"
            && json["detail"].is_string())
        {
            findings.push(format!(
                "{} MiB: expected 413 body_too_large, got {head:.200} {body:.200}",
                size >> 20
            ));
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// Idle connections (opened, nothing sent) past the server's capacity, here
/// more than the operator's open-file limit (run under `prlimit --nofile=256`):
/// the extra ones may be refused or queued, but a normal client must still
/// be served, within 60 s at most and within the configured header read
/// timeout (`HEADER_READ_TIMEOUT=5`, after which idle connections go) + 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_starve_a_normal_client() {
    crate::require_env!();
    const NOFILE: u32 = 256;
    let op = OperatorProcess::spawn_with_nofile(
        &helm_binary(Major::Helm4),
        &[("LOG_LEVEL", "error"), HEADER_TIMEOUT],
        NOFILE,
    )
    .await;
    let address = op.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..(NOFILE + 64) {
        match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(&address),
        )
        .await
        {
            Ok(Ok(stream)) => idle.push(stream),
            _ => break,
        }
    }
    println!("{} idle connections open", idle.len());
    let client = reqwest::Client::builder()
        .timeout(HEADER_DEADLINE)
        .build()
        .expect("client");
    let started = Instant::now();
    let outcome = client.get(format!("{}/health", op.base)).send().await;
    let waited = started.elapsed();
    println!(
        "a normal client waited {waited:?}: {:?}",
        outcome.as_ref().map(|r| r.status())
    );
    drop(idle);
    match outcome {
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::OK);
            let bound = configured_header_timeout() + HEADER_TIMEOUT_SLACK;
            assert!(
                waited <= bound,
                "a normal client was served only after {waited:?}, more than the header timeout {:?} + {HEADER_TIMEOUT_SLACK:?}",
                configured_header_timeout()
            );
        }
        Err(error) => panic!(
            "with {} idle connections open a normal GET /health got no answer within {HEADER_DEADLINE:?}: {error}",
            NOFILE + 64
        ),
    }
}

// ---------------------------------------------------------------------------
// 7. Chart-source allowlist
// ---------------------------------------------------------------------------

/// A TCP listener that counts connections (proof of network I/O).
struct Listener {
    port: u16,
    connections: std::sync::Arc<AtomicUsize>,
}

/// Listens on the first free port among `candidates`.
async fn counting_listener(candidates: impl Iterator<Item = u16>) -> Option<Listener> {
    for port in candidates {
        if let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            let connections = std::sync::Arc::new(AtomicUsize::new(0));
            let counter = connections.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    drop(stream);
                }
            });
            return Some(Listener { port, connections });
        }
    }
    None
}

/// With `--allowed-chart-sources oci://<registry>/charts`, a repository that
/// merely starts with the same characters (`…/chartsx/evil`) is refused 400
/// `chart_source_not_allowed`, and the allowed one still installs. With an
/// allow-list entry written as a bare host (`oci://127.0.0.1:5000`), a
/// different port that starts with the same digits (`:5000N`) is refused
/// 400 before any network I/O (a listener on that port sees no connection;
/// no 502 that would tell whether the port is open).
async fn chart_source_allowlist(major: Major, identity: Identity) {
    let registry = env("OCI_REGISTRY");
    let mut findings = Vec::new();
    let allowed = format!("oci://{registry}/charts");
    let mut op = start(major, identity, &["--allowed-chart-sources", &allowed]).await;
    let ns = op.tenant().await;
    let install = |chart: String| json!({"namespace": ns, "name": format!("svc-{}", random_hex()), "chart": chart, "version": "0.1.0"});
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(install(format!("{allowed}/web"))),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the allowed source must still install: {body}"
    );
    for (chart, must_name_the_allowlist) in [
        (format!("oci://{registry}/chartsx/evil"), true),
        (format!("oci://{registry}/charts-evil/web"), true),
        // Refused for its form or for its source, either is right.
        (format!("oci://{registry}/charts/../chartsx/evil"), false),
    ] {
        let (status, body) = op
            .call(Method::POST, "/api/releases", Some(install(chart.clone())))
            .await;
        let refused = status == StatusCode::BAD_REQUEST
            && is_clean_refusal(status, &body)
            && (!must_name_the_allowlist || body["error_type"] == "chart_source_not_allowed");
        if !refused {
            findings.push(format!(
                "{chart} (allowed: {allowed}): expected 400 chart_source_not_allowed, got {status} {body}"
            ));
        }
    }
    drop(op);

    // A bare-host entry, and a port that merely starts with the same digits.
    let (host, port) = registry.rsplit_once(':').expect("registry host:port");
    let candidates: Vec<u16> = (0..10)
        .filter_map(|d| format!("{port}{d}").parse::<u16>().ok())
        .collect();
    let listener = if candidates.is_empty() {
        println!(
            "the registry's port {port} has no valid {port}N: the bare-host case is not tried"
        );
        None
    } else {
        let listener = counting_listener(candidates.iter().copied()).await;
        assert!(
            listener.is_some(),
            "none of the ports {candidates:?} is free"
        );
        listener
    };
    match listener {
        None => {}
        Some(listener) => {
            let bare = format!("oci://{host}:{port}");
            let mut op = start(major, identity, &["--allowed-chart-sources", &bare]).await;
            let ns = op.tenant().await;
            let tricks = [
                // A port that merely starts with the allowed one's digits.
                (format!("oci://{host}:{}/charts/web", listener.port), true),
                // The allowed host as user info in front of another host.
                (
                    format!("oci://{host}:{port}@{host}:{}/charts/web", listener.port),
                    false,
                ),
            ];
            for (chart, must_name_the_allowlist) in tricks {
                let body = json!({"namespace": ns, "name": format!("svc-{}", random_hex()), "chart": chart, "version": "0.1.0"});
                let (status, answer) = op.call(Method::POST, "/api/releases", Some(body)).await;
                let refused = status == StatusCode::BAD_REQUEST
                    && is_clean_refusal(status, &answer)
                    && (!must_name_the_allowlist
                        || answer["error_type"] == "chart_source_not_allowed");
                if !refused {
                    let wanted = if must_name_the_allowlist {
                        "400 chart_source_not_allowed"
                    } else {
                        "a 400 refusal"
                    };
                    findings.push(format!(
                        "{chart} (allowed: {bare}): expected {wanted}, got {status} {answer}"
                    ));
                }
            }
            let connections = listener.connections.load(Ordering::SeqCst);
            if connections > 0 {
                findings.push(format!(
                    "{connections} connection(s) reached 127.0.0.1:{} although it is not an allowed source",
                    listener.port
                ));
            }
        }
    }
    assert!(
        findings.is_empty(),
        "{} finding(s):\n  - {}",
        findings.len(),
        findings.join("\n  - ")
    );
}
attack!(chart_source_allowlist);

/// The tenant (a chart's own objects, written as the namespace's helm
/// identity, or a pod whose ServiceAccount the chart bound to the tenant
/// role) forges the operator's kept state `paas-operator.<release>`: a sidecar
/// the operator would add to every rendering, an n8n key it would answer.
/// Admission refuses the name to every ServiceAccount of the namespace,
/// labelled or not, and a chart may not render it. One made anyway (here by
/// an administrator, without the operator's label) is never adopted: an
/// upgrade adds nothing from it, attaching a sidecar and the n8n bootstrap
/// answer 409 `kept_state_conflict` and leave it as it was, and its key is
/// never answered.
async fn forged_kept_state(major: Major, identity: Identity) {
    let mut op = start(major, identity, &[]).await;
    let namespace = op.tenant().await;
    let name = format!("svc-{}", &random_hex()[..8]);
    let chart = format!("{}/web", local_charts());
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(json!({"namespace": namespace, "name": name, "chart": chart, "version": "0.1.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let tenant_pod = crate::harness::impersonating(
        &format!("system:serviceaccount:{namespace}:paas-tenant"),
        &[
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_owned(),
        ],
    )
    .await;
    let secrets = Api::<Secret>::namespaced(tenant_pod, &namespace);
    let forged_sidecar = json!({"deployment": format!("{name}-web"), "container": {
        "name": "implant", "image": "registry.local/implant:1",
        "securityContext": {"privileged": true}}});
    let forged_key = json!({"owner_email": "a@b.c", "api_key": "forged-key-7c1", "api_key_id": "x", "secret": null});
    let forged = |labelled: bool| -> Secret {
        let mut metadata = json!({"name": format!("paas-operator.{name}")});
        if labelled {
            metadata["labels"] = json!({"app.kubernetes.io/managed-by": "paas-operator"});
        }
        serde_json::from_value(json!({
            "metadata": metadata,
            "type": "Opaque",
            "data": {"sidecar": b64(forged_sidecar.to_string().as_bytes()),
                     "n8n": b64(forged_key.to_string().as_bytes())},
        }))
        .expect("secret")
    };
    // Labelled, two policies refuse it (whichever the API server asks
    // first answers); unlabelled, the reserved name alone does.
    for (labelled, policies) in [
        (
            true,
            &[
                "paas-tenant-protected-objects",
                "paas-tenant-reserved-names",
            ][..],
        ),
        (false, &["paas-tenant-reserved-names"][..]),
    ] {
        let refused = secrets
            .create(&PostParams::default(), &forged(labelled))
            .await
            .expect_err("admission refuses a tenant's Secret of the operator's name")
            .to_string();
        assert!(policies.iter().any(|p| refused.contains(p)), "{refused}");
    }
    // A chart may not render it either.
    let reserved = fixture_chart("attack-fences").await;
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(
                json!({"namespace": namespace, "name": format!("{name}-b"), "chart": reserved,
                        "values": {"attack": "reserved", "target": name}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error_type"], "chart_not_confined", "{body}");

    // Made anyway, by someone who may (an administrator), unlabelled.
    let admin_secrets = Api::<Secret>::namespaced(op.kube.clone(), &namespace);
    let made = admin_secrets
        .create(&PostParams::default(), &forged(false))
        .await
        .expect("an administrator may");
    let path = format!("/api/releases/{namespace}/{name}");
    let (status, body) = op
        .call(
            Method::PATCH,
            &path,
            Some(json!({"chart": chart, "version": "0.2.0"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deployment = Api::<Deployment>::namespaced(op.kube.clone(), &namespace)
        .get(&format!("{name}-web"))
        .await
        .expect("deployment");
    let containers: Vec<String> = deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    assert_eq!(containers, ["web"], "the forged sidecar was not added");
    let sidecar = json!({"container": {"name": "mcp", "image": "registry.local/mcp:1", "ports": [{"container_port": 3000}]}});
    for (method, what, body) in [
        (Method::POST, "sidecar", Some(sidecar)),
        (Method::DELETE, "sidecar", None),
        (
            Method::POST,
            "init/n8n",
            Some(json!({"owner_password": "Owner-Pass-123"})),
        ),
    ] {
        let (status, answer) = op
            .call(method.clone(), &format!("{path}/{what}"), body)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {what}: {answer}");
        assert_eq!(answer["error_type"], "kept_state_conflict", "{answer}");
        assert!(!answer.to_string().contains("forged-key"), "{answer}");
    }
    let after = admin_secrets
        .get(&format!("paas-operator.{name}"))
        .await
        .expect("still there");
    assert_eq!(
        after.metadata.resource_version, made.metadata.resource_version,
        "untouched"
    );
    assert_eq!(after.metadata.labels, None, "not adopted");
    // Uninstall leaves it alone too (it is not the operator's to delete).
    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = admin_secrets
        .get(&format!("paas-operator.{name}"))
        .await
        .expect("still there after the uninstall");
    assert_eq!(
        after.metadata.resource_version,
        made.metadata.resource_version
    );
}
attack!(forged_kept_state);
