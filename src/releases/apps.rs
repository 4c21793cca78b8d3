//! The app features, as part of the release: the MCP sidecar and the n8n
//! bootstrap. Both are kept with the release ([`super::state`]) and added to
//! every rendering of it (`crate::render::additions`), so an upgrade, a
//! rollback or a re-created Deployment keeps them; setting them applies the
//! release's current documents again with them (a new revision).
//!
//! The n8n bootstrap talks to n8n over HTTP through its Service
//! ([`crate::n8n`]), holds the release's lock (local and Lease, waiting as
//! long as n8n may take) so overlapping calls — the platform polls every 5 s
//! — get one result and one API key, and answers a repeated call with the
//! kept key.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Map, Value, json};

use super::ReleaseService;
use super::audit::audit;
use super::kept_key;
use super::state::{self, N8nKey, ReleaseState};
use crate::auth::KeyId;
use crate::config::AppAccess;
use crate::error::{ApiError, Code};
use crate::helm::{HelmRelease, ValuesMode, WriteKind};
use crate::model::apps::{N8nInitRequest, N8nInitResponse, SidecarContainer, SidecarRequest};
use crate::n8n::{Endpoint, N8n, Step, StepError, Transport};
use crate::names::{ReleaseName, TenantNamespace, is_dns1123_label};
use crate::render::additions::{self, Applied, Sidecar, SidecarService};
use crate::render::confine::Rules;

/// How long a repeated bootstrap waits for a rollout under way to bring up
/// pods with the kept key (within the platform's 120 s, after waiting for
/// an overlapping bootstrap).
const ROLLOUT_WAIT: Duration = Duration::from_secs(20);

/// What attaching a sidecar did.
#[derive(Debug, Clone)]
pub struct Attached {
    pub deployment: String,
    pub container: String,
    pub service: Option<SidecarService>,
    pub revision: u32,
    /// `https://{generated subdomain}-mcp.{domain}/mcp` when exposure is on
    /// and its route is in place.
    pub endpoint: Option<String>,
}

impl ReleaseService {
    /// Attaches (or replaces) the release's sidecar; the same request again
    /// changes nothing.
    pub async fn attach_sidecar(
        &self,
        key: &KeyId,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        request: SidecarRequest,
    ) -> Result<Attached, ApiError> {
        let sidecar = sidecar_from(request, name)?;
        let outcome = self
            .locked(namespace, name, async {
                let mut kept = self.kept(namespace, name).await?;
                let previous = kept.clone();
                kept.sidecar = Some(sidecar.clone());
                // A release of the earlier operator: what it made for its
                // sidecar becomes the release's.
                self.hand_earlier_sidecar_to_helm(namespace, name, &sidecar)
                    .await?;
                let (release, applied) = self
                    .reapply(namespace, name, &previous, &kept, "Sidecar attached")
                    .await?;
                // Under the release's lock, so an uninstall cannot run
                // between and leave the route behind.
                let endpoint = match &sidecar.service {
                    Some(service) => {
                        self.exposure
                            .expose_mcp(
                                namespace,
                                name,
                                &self.settings.namespace_prefix,
                                &service.name,
                                service.port,
                            )
                            .await
                    }
                    None => {
                        self.exposure.mcp_gone(namespace, name).await;
                        None
                    }
                };
                Ok((release, applied, endpoint))
            })
            .await;
        let (release, applied, endpoint) = audit(
            key,
            "attach_sidecar",
            namespace.as_str(),
            name.as_str(),
            outcome,
        )?;
        Ok(Attached {
            deployment: applied.sidecar_deployment.unwrap_or_default(),
            container: sidecar.container["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            service: sidecar.service,
            revision: release.version,
            endpoint,
        })
    }

    /// Takes the sidecar off the release; 404 when it has none.
    pub async fn detach_sidecar(
        &self,
        key: &KeyId,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<u32, ApiError> {
        let outcome = self
            .locked(namespace, name, async {
                let mut kept = self.kept(namespace, name).await?;
                let previous = kept.clone();
                if kept.sidecar.take().is_none() {
                    return Err(ApiError::new(
                        Code::SidecarNotFound,
                        format!("Release {namespace}/{name} has no sidecar"),
                    ));
                }
                let (release, _) = self
                    .reapply(namespace, name, &previous, &kept, "Sidecar removed")
                    .await?;
                self.exposure.mcp_gone(namespace, name).await;
                Ok(release)
            })
            .await;
        Ok(audit(
            key,
            "detach_sidecar",
            namespace.as_str(),
            name.as_str(),
            outcome,
        )?
        .version)
    }

    /// n8n's first-run bootstrap: the owner account and an API key, kept in
    /// the release's Secret. Every step's failure is an answer
    /// (`success: false`), not an error; only what is not n8n's doing (no
    /// such release, the cluster) is an error.
    pub async fn init_n8n(
        &self,
        key: &KeyId,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        request: N8nInitRequest,
    ) -> Result<N8nInitResponse, ApiError> {
        let wait = self.settings.n8n_ready_timeout;
        let started = Instant::now();
        let outcome = self
            .locked_waiting(namespace, name, wait, async {
                self.require_latest(namespace, name).await?;
                let kept = self.kept(namespace, name).await?;
                if let Some(n8n) = kept.n8n.clone().filter(|_| !request.rotate) {
                    // Bootstrapped before (perhaps by an overlapping call):
                    // the kept key, and no new one.
                    return self.repeated(namespace, name, &kept, n8n).await;
                }
                self.bootstrap(namespace, name, &request, kept).await
            })
            .await;
        let answer = audit(key, "init_n8n", namespace.as_str(), name.as_str(), outcome)?;
        tracing::info!(%namespace, release = %name, success = answer.success,
            elapsed_ms = started.elapsed().as_millis() as u64, "n8n bootstrap");
        Ok(answer)
    }

    /// The bootstrap proper, holding the release's lock.
    async fn bootstrap(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        request: &N8nInitRequest,
        kept: ReleaseState,
    ) -> Result<N8nInitResponse, ApiError> {
        let endpoint = match self.n8n_endpoint(namespace, name).await? {
            Ok(endpoint) => endpoint,
            Err(failed) => return Ok(step_failed(&failed)),
        };
        let n8n = N8n::new(match self.settings.app_access {
            AppAccess::Direct => Transport::direct(&endpoint),
            AppAccess::ApiProxy => Transport::api_proxy(self.client.clone(), &endpoint),
        });
        let created = async {
            if n8n.wait_ready(self.settings.n8n_ready_timeout).await? {
                n8n.setup_owner(&request.owner_email, &request.owner_password)
                    .await?;
            }
            let session = n8n
                .login(&request.owner_email, &request.owner_password)
                .await?;
            if let Some(old) = kept.n8n.as_ref().filter(|_| request.rotate) {
                n8n.delete_api_key(&session, &old.api_key_id).await?;
            }
            n8n.create_api_key(&session).await
        }
        .await;
        let api_key = match created {
            Ok(api_key) => api_key,
            Err(failed) => return Ok(step_failed(&failed)),
        };
        let n8n_key = N8nKey {
            owner_email: request.owner_email.clone(),
            api_key: api_key.raw,
            api_key_id: api_key.id,
            secret: None,
        };
        self.keep_key(namespace, name, &kept, n8n_key).await
    }

    /// A bootstrap of a release that has its key already. When the latest
    /// revision carries it, the answer says whether the pods run with it
    /// (waiting a little for a rollout under way); when it does not (an
    /// earlier apply failed, or someone rolled back by hand), it is applied
    /// now, as on the first call.
    async fn repeated(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        kept: &ReleaseState,
        n8n: N8nKey,
    ) -> Result<N8nInitResponse, ApiError> {
        let latest = self.require_latest(namespace, name).await?;
        let Some(carried) = kept_key::in_revision(&latest.manifest, name.as_str(), &n8n) else {
            tracing::info!(%namespace, release = %name, "the kept n8n API key is not in the latest revision; applying it");
            return self.keep_key(namespace, name, kept, n8n).await;
        };
        let wait = ROLLOUT_WAIT.min(self.settings.n8n_ready_timeout);
        let running = self.pods_run_with(namespace, &carried, wait).await?;
        Ok(in_force(&n8n, running))
    }

    /// Waits (at most `wait`) until the pods of the key's Deployments run
    /// with it; false when they do not by then.
    async fn pods_run_with(
        &self,
        namespace: &TenantNamespace,
        carried: &kept_key::Carried,
        wait: Duration,
    ) -> Result<bool, ApiError> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), namespace.as_str());
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let listed = pods
                .list(&ListParams::default())
                .await
                .map_err(crate::kube::KubeError::api("listing the release's pods"))?;
            if kept_key::pods_run_with(&listed.items, carried) {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Keeps `n8n_key` with the release: in the release's app Secret (as
    /// its latest revision names it) by a new revision, or, when it has no
    /// such Secret, only in the operator's state (`success: false`).
    async fn keep_key(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        kept: &ReleaseState,
        mut n8n_key: N8nKey,
    ) -> Result<N8nInitResponse, ApiError> {
        let latest = self.require_latest(namespace, name).await?;
        n8n_key.secret = key_secret(&latest);
        let mut updated = kept.clone();
        updated.n8n = Some(n8n_key.clone());
        if n8n_key.secret.is_none() {
            if updated != *kept {
                state::save(&self.client, namespace, name, &updated).await?;
            }
            return Ok(not_kept(&n8n_key));
        }
        match self
            .reapply(namespace, name, kept, &updated, "n8n API key kept")
            .await
        {
            Ok((_, applied)) if applied.value_kept => Ok(done(&n8n_key, true)),
            Ok(_) => Ok(not_kept(&n8n_key)),
            Err(error) => {
                tracing::warn!(%namespace, release = %name, code = %error.code, "the n8n API key could not be kept in the release");
                Ok(not_kept(&n8n_key))
            }
        }
    }

    /// n8n's Service among the release's: one with port 5678 (n8n's), else
    /// one whose name says n8n, else the first; never the sidecar's.
    async fn n8n_endpoint(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<Result<Endpoint, StepError>, ApiError> {
        let params = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
        let services = Api::<Service>::namespaced(self.client.clone(), namespace.as_str())
            .list(&params)
            .await
            .map_err(crate::kube::KubeError::api(
                "listing the release's Services",
            ))?;
        let candidates: Vec<(String, Vec<u16>)> = services
            .items
            .iter()
            .filter_map(|service| {
                let service_name = service.metadata.name.clone()?;
                let ports = service
                    .spec
                    .as_ref()?
                    .ports
                    .as_ref()?
                    .iter()
                    .filter_map(|p| u16::try_from(p.port).ok())
                    .collect::<Vec<_>>();
                (!service_name.ends_with("-mcp") && !ports.is_empty())
                    .then_some((service_name, ports))
            })
            .collect();
        let pick = candidates
            .iter()
            .find(|(_, ports)| ports.contains(&5678))
            .or_else(|| candidates.iter().find(|(n, _)| n.contains("n8n")))
            .or_else(|| candidates.first());
        Ok(match pick {
            Some((service, ports)) => Ok(Endpoint {
                namespace: namespace.to_string(),
                service: service.clone(),
                port: if ports.contains(&5678) {
                    5678
                } else {
                    ports[0]
                },
            }),
            None => Err(StepError::new(
                Step::FindService,
                format!("release {name} has no Service to reach n8n by"),
            )),
        })
    }

    /// Applies the release's latest documents again with `updated` kept
    /// (and what `previous` kept taken out), as a new revision; nothing when
    /// they are already so. Saves `updated` first, so every later upgrade
    /// and rollback adds the same; puts `previous` back if applying fails.
    async fn reapply(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        previous: &ReleaseState,
        updated: &ReleaseState,
        description: &str,
    ) -> Result<(HelmRelease, Applied), ApiError> {
        let latest = self.require_latest(namespace, name).await?;
        let rendering = latest.rendering();
        let current = Rules::parse_only(&rendering).map_err(|_| {
            ApiError::new(
                Code::ReleaseRecordUnreadable,
                "The release's stored manifest cannot be read",
            )
        })?;
        let mut stripped = current.clone();
        if let Some(sidecar) = previous
            .sidecar
            .as_ref()
            .filter(|s| updated.sidecar.as_ref() != Some(*s))
        {
            additions::detach(&mut stripped, sidecar);
        }
        let plan = self.plan(namespace, name, updated.additions()).await?;
        let (checked, applied) =
            self.checked_with_additions(namespace, plan.as_ref(), &stripped.to_yaml_stream())?;
        if checked.same_objects(&current) {
            // Already so (helm stored the same objects, sorted by kind):
            // the same request again changes nothing.
            if previous != updated {
                state::save(&self.client, namespace, name, updated).await?;
            }
            return Ok((latest, applied));
        }
        state::save(&self.client, namespace, name, updated).await?;
        let values: Map<String, Value> = latest.config.clone().unwrap_or_default();
        let printed = self
            .helm
            .apply_documents(
                namespace,
                name,
                WriteKind::Upgrade(ValuesMode::Reset),
                &latest.chart_identity(),
                &checked,
                &values,
                Some(description),
            )
            .await;
        let printed = match printed {
            Ok(printed) => printed,
            Err(error) => {
                if let Err(restore) = state::save(&self.client, namespace, name, previous).await {
                    tracing::error!(%namespace, release = %name, error = %restore, "cannot put the release's kept state back");
                }
                return Err(error.into());
            }
        };
        let release = self.produced(namespace, name, printed).await?;
        self.cache.expect(
            namespace.as_str(),
            name.as_str(),
            super::cache::Expectation::Revision {
                revision: release.version,
                status: release.info.status.clone(),
            },
        );
        Ok((release, applied))
    }
}

/// The release's Secret to keep the key in: one of its own, named like
/// `…app-secret`, else `…-secret` (never Helm's records).
fn key_secret(release: &HelmRelease) -> Option<String> {
    let documents = Rules::parse_only(&release.manifest).ok()?;
    let secrets: Vec<String> = documents
        .documents
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("Secret"))
        .filter_map(|d| d.pointer("/metadata/name").and_then(Value::as_str))
        .filter(|n| !n.starts_with("sh.helm.release."))
        .map(str::to_owned)
        .collect();
    secrets
        .iter()
        .find(|n| n.contains("app-secret"))
        .or_else(|| secrets.iter().find(|n| n.ends_with("-secret")))
        .cloned()
}

fn done(n8n: &N8nKey, restarted: bool) -> N8nInitResponse {
    N8nInitResponse {
        success: true,
        api_key: Some(n8n.api_key.clone()),
        owner_email: Some(n8n.owner_email.clone()),
        secret_patched: true,
        pod_restarted: restarted,
        message: "n8n initialization complete".into(),
        error: None,
    }
}

/// A repeated call's answer when the latest revision carries the kept key:
/// `pod_restarted` says whether the pods run with it by now.
fn in_force(n8n: &N8nKey, running: bool) -> N8nInitResponse {
    N8nInitResponse {
        message: if running {
            "n8n already initialized; its pods run with the kept API key".into()
        } else {
            "n8n already initialized; the kept API key is in its Secret, its pods are still restarting to read it".into()
        },
        ..done(n8n, running)
    }
}

fn not_kept(n8n: &N8nKey) -> N8nInitResponse {
    N8nInitResponse {
        success: false,
        api_key: Some(n8n.api_key.clone()),
        owner_email: Some(n8n.owner_email.clone()),
        secret_patched: false,
        pod_restarted: false,
        message: "n8n API key created but K8s Secret update failed".into(),
        error: Some(format!(
            "[{}] the release has no Secret to keep the key in",
            Step::KeepKey.as_str()
        )),
    }
}

fn step_failed(failed: &StepError) -> N8nInitResponse {
    N8nInitResponse {
        success: false,
        api_key: None,
        owner_email: None,
        secret_patched: false,
        pod_restarted: false,
        message: format!(
            "n8n initialization failed at step: {}",
            failed.step.as_str()
        ),
        error: Some(failed.to_string()),
    }
}

/// Refuses a request that is not a sidecar we accept (see [`sidecar_from`]).
pub(super) fn check_sidecar(
    request: &SidecarRequest,
    release: &ReleaseName,
) -> Result<(), ApiError> {
    sidecar_from(request.clone(), release).map(drop)
}

/// The validated sidecar: names, image reference, ports, env, resources
/// and probes; the Service `{release}-mcp` for its first port.
fn sidecar_from(request: SidecarRequest, release: &ReleaseName) -> Result<Sidecar, ApiError> {
    let invalid = |why: String| ApiError::new(Code::InvalidSidecar, why);
    if let Some(deployment) = &request.deployment_name
        && !deployment.split('.').all(is_dns1123_label)
    {
        return Err(invalid("deployment_name is not a valid object name".into()));
    }
    let container = container_json(&request.container).map_err(invalid)?;
    let service = request.container.ports.first().map(|port| SidecarService {
        name: format!("{release}-mcp"),
        port: u16::try_from(port.container_port).unwrap_or_default(),
    });
    Ok(Sidecar {
        deployment: request.deployment_name,
        container,
        service,
    })
}

/// The container as Kubernetes reads it, built only from checked fields.
fn container_json(c: &SidecarContainer) -> Result<Value, String> {
    if !is_dns1123_label(&c.name) {
        return Err(format!(
            "container name {:?} is not a DNS-1123 label",
            c.name.chars().take(64).collect::<String>()
        ));
    }
    if !is_image(&c.image) {
        return Err("image is not an image reference".into());
    }
    let mut container = json!({"name": c.name, "image": c.image});
    let mut ports = Vec::new();
    for port in &c.ports {
        if !(1..=65535).contains(&port.container_port) {
            return Err(format!("port {} is not 1 to 65535", port.container_port));
        }
        let mut entry = json!({"containerPort": port.container_port});
        if let Some(name) = &port.name {
            if name.len() > 15 || !is_dns1123_label(name) {
                return Err("a port name must be a DNS-1123 label of at most 15 characters".into());
            }
            entry["name"] = json!(name);
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            return Err("a port protocol must be TCP, UDP or SCTP".into());
        }
        entry["protocol"] = json!(protocol);
        ports.push(entry);
    }
    if !ports.is_empty() {
        container["ports"] = Value::Array(ports);
    }
    let mut env = Vec::new();
    for variable in &c.env {
        if !is_env_name(&variable.name) {
            return Err("an environment variable name is not valid".into());
        }
        let entry = match (&variable.value, &variable.value_from) {
            (Some(value), None) => json!({"name": variable.name, "value": value}),
            (None, Some(source)) => {
                let (field, reference) = match (&source.secret_key_ref, &source.config_map_key_ref)
                {
                    (Some(r), None) => ("secretKeyRef", r),
                    (None, Some(r)) => ("configMapKeyRef", r),
                    _ => {
                        return Err(
                            "valueFrom needs exactly one of secretKeyRef, configMapKeyRef".into(),
                        );
                    }
                };
                if !reference.name.split('.').all(is_dns1123_label) || !is_key(&reference.key) {
                    return Err("a key reference names no valid object or key".into());
                }
                let mut r = json!({"name": reference.name, "key": reference.key});
                if let Some(optional) = reference.optional {
                    r["optional"] = json!(optional);
                }
                json!({"name": variable.name, "valueFrom": {field: r}})
            }
            (None, None) => json!({"name": variable.name, "value": ""}),
            (Some(_), Some(_)) => {
                return Err("an environment variable has both value and valueFrom".into());
            }
        };
        env.push(entry);
    }
    if !env.is_empty() {
        container["env"] = Value::Array(env);
    }
    if let Some(resources) = &c.resources {
        container["resources"] = resources_json(resources)?;
    }
    for (field, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
    ] {
        if let Some(probe) = probe {
            container[field] = probe_json(probe)?;
        }
    }
    for (field, words) in [("command", &c.command), ("args", &c.args)] {
        if words.len() > 64 || words.iter().any(|w| w.len() > 4096) {
            return Err(format!("{field} is too long"));
        }
        if !words.is_empty() {
            container[field] = json!(words);
        }
    }
    if let Some(policy) = &c.image_pull_policy {
        if !matches!(policy.as_str(), "Always" | "IfNotPresent" | "Never") {
            return Err("imagePullPolicy must be Always, IfNotPresent or Never".into());
        }
        container["imagePullPolicy"] = json!(policy);
    }
    Ok(container)
}

/// `requests` and `limits` of Kubernetes quantities, nothing else.
fn resources_json(value: &Value) -> Result<Value, String> {
    let bad = || "resources must be {requests, limits} of quantities".to_owned();
    let object = value.as_object().ok_or_else(bad)?;
    let mut out = Map::new();
    for (part, quantities) in object {
        if !matches!(part.as_str(), "requests" | "limits") {
            return Err(bad());
        }
        let quantities = quantities.as_object().ok_or_else(bad)?;
        let mut checked = Map::new();
        for (resource, quantity) in quantities {
            let text = match quantity {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(bad()),
            };
            let known = matches!(resource.as_str(), "cpu" | "memory" | "ephemeral-storage");
            if !known || crate::names::Quantity::parse("resources", &text).is_err() {
                return Err(bad());
            }
            checked.insert(resource.clone(), json!(text));
        }
        out.insert(part.clone(), Value::Object(checked));
    }
    Ok(Value::Object(out))
}

/// A probe: one of httpGet, tcpSocket, grpc, exec, and its timings.
fn probe_json(value: &Value) -> Result<Value, String> {
    let bad = |why: &str| format!("a probe {why}");
    let object = value.as_object().ok_or_else(|| bad("must be an object"))?;
    let mut out = Map::new();
    for (field, setting) in object {
        match field.as_str() {
            "initialDelaySeconds"
            | "periodSeconds"
            | "timeoutSeconds"
            | "successThreshold"
            | "failureThreshold"
            | "terminationGracePeriodSeconds" => {
                let n = setting
                    .as_u64()
                    .filter(|n| *n <= 86_400)
                    .ok_or_else(|| bad("timing must be a whole number of seconds"))?;
                out.insert(field.clone(), json!(n));
            }
            "httpGet" | "tcpSocket" | "grpc" => {
                let action = setting
                    .as_object()
                    .ok_or_else(|| bad("action must be an object"))?;
                let mut checked = Map::new();
                for (key, v) in action {
                    let ok = match key.as_str() {
                        "port" => {
                            v.as_u64().is_some_and(|p| (1..=65535).contains(&p))
                                || v.as_str()
                                    .is_some_and(|n| n.len() <= 15 && is_dns1123_label(n))
                        }
                        "path" => v.as_str().is_some_and(|p| {
                            p.starts_with('/')
                                && p.len() <= 1024
                                && !p.chars().any(char::is_control)
                        }),
                        "scheme" => matches!(v.as_str(), Some("HTTP" | "HTTPS")),
                        "service" => v.as_str().is_some_and(|s| s.len() <= 256),
                        _ => false,
                    };
                    if !ok {
                        return Err(bad(&format!("field {key:?} is not accepted")));
                    }
                    checked.insert(key.clone(), v.clone());
                }
                out.insert(field.clone(), Value::Object(checked));
            }
            "exec" => {
                let command = setting
                    .get("command")
                    .and_then(Value::as_array)
                    .filter(|c| {
                        c.len() <= 64
                            && c.iter()
                                .all(|w| w.as_str().is_some_and(|w| w.len() <= 4096))
                    })
                    .ok_or_else(|| bad("exec needs a command of strings"))?;
                out.insert(field.clone(), json!({"command": command}));
            }
            other => return Err(bad(&format!("field {other:?} is not accepted"))),
        }
    }
    Ok(Value::Object(out))
}

/// An image reference: `[registry[:port]/]path[:tag][@digest]`, plain
/// characters only.
fn is_image(image: &str) -> bool {
    !image.is_empty()
        && image.len() <= 255
        && !image.starts_with(['-', '.', '/', ':'])
        && image.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b':' | b'@' | b'_' | b'-')
        })
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.as_bytes()[0].is_ascii_digit()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(container: Value) -> SidecarRequest {
        serde_json::from_value(json!({"container": container})).expect("request")
    }

    fn release() -> ReleaseName {
        ReleaseName::parse("svc-a").expect("name")
    }

    #[test]
    fn the_platforms_sidecar_is_accepted_as_kubernetes_reads_it() {
        let sidecar = sidecar_from(
            request(json!({
                "name": "mcp-sidecar", "image": "ghcr.io/acme/n8n-mcp:1.2.3",
                "ports": [{"container_port": 3000}],
                "env": [{"name": "N8N_API_KEY", "value_from": {"secret_key_ref": {"name": "svc-a-n8n-app-secret", "key": "N8N_API_KEY"}}},
                        {"name": "N8N_URL", "value": "http://svc-a-n8n:5678"}],
                "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}},
                "readiness_probe": {"tcpSocket": {"port": 3000}, "periodSeconds": 10}
            })),
            &release(),
        )
        .expect("valid");
        assert_eq!(
            sidecar.container["ports"][0],
            json!({"containerPort": 3000, "protocol": "TCP"})
        );
        assert_eq!(
            sidecar.container["env"][0]["valueFrom"]["secretKeyRef"]["key"],
            "N8N_API_KEY"
        );
        assert_eq!(sidecar.container["readinessProbe"]["periodSeconds"], 10);
        let service = sidecar.service.expect("service");
        assert_eq!((service.name.as_str(), service.port), ("svc-a-mcp", 3000));
    }

    #[test]
    fn bad_sidecars_are_refused_before_anything_runs() {
        let cases = [
            json!({"name": "Bad_Name", "image": "i"}),
            json!({"name": "mcp", "image": "i; rm -rf /"}),
            json!({"name": "mcp", "image": "-i"}),
            json!({"name": "mcp", "image": "i", "ports": [{"containerPort": 70000}]}),
            json!({"name": "mcp", "image": "i", "env": [{"name": "1X", "value": "v"}]}),
            json!({"name": "mcp", "image": "i", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "../x", "key": "k"}}}]}),
            json!({"name": "mcp", "image": "i", "resources": {"limits": {"cpu": "lots"}}}),
            json!({"name": "mcp", "image": "i", "resources": {"claims": []}}),
            json!({"name": "mcp", "image": "i", "livenessProbe": {"httpGet": {"host": "169.254.169.254", "port": 80}}}),
            json!({"name": "mcp", "image": "i", "imagePullPolicy": "Sometimes"}),
        ];
        for case in cases {
            let error =
                sidecar_from(request(case.clone()), &release()).expect_err(&case.to_string());
            assert_eq!(error.code, Code::InvalidSidecar, "{case}");
        }
    }

    #[test]
    fn the_key_goes_into_the_releases_app_secret() {
        let release: HelmRelease = serde_json::from_value(json!({
            "name": "svc-a", "version": 1,
            "manifest": "apiVersion: v1\nkind: Secret\nmetadata: {name: svc-a-db-secret}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: svc-a-n8n-app-secret}\n"
        }))
        .expect("release");
        assert_eq!(
            key_secret(&release).as_deref(),
            Some("svc-a-n8n-app-secret")
        );
    }
}
