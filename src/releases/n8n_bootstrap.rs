//! n8n's first-run bootstrap, as part of the release: the owner account
//! and an API key, kept with the release ([`super::state`]) and in its app
//! Secret by a new revision ([`super::revision`]), so an upgrade that sends
//! the platform's placeholder again keeps it.
//!
//! It talks to n8n over HTTP through its Service ([`crate::n8n`]), holds
//! the release's lock (local and Lease, waiting as long as n8n may take) so
//! overlapping calls — the platform polls every 5 s — get one result and
//! one API key, and answers a repeated call with the kept key.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

use super::ReleaseService;
use super::audit::audit;
use super::kept_key;
use super::state::{self, N8nKey, ReleaseState};
use crate::auth::KeyId;
use crate::config::AppAccess;
use crate::error::ApiError;
use crate::helm::HelmRelease;
use crate::model::apps::{N8nInitRequest, N8nInitResponse};
use crate::n8n::{Endpoint, N8n, Step, StepError, Transport};
use crate::names::{ReleaseName, TenantNamespace};
use crate::render::confine::Rules;

/// How long a repeated bootstrap waits for a rollout under way to bring up
/// pods with the kept key (within the platform's 120 s, after waiting for
/// an overlapping bootstrap).
const ROLLOUT_WAIT: Duration = Duration::from_secs(20);

/// A bootstrap request, typed: the owner to set up (or log in as) and
/// whether to replace the kept key. Nothing in it is refused at the edge:
/// n8n judges the owner (a weak password is its `[setup_owner]` step's
/// failure, `success: false`).
#[derive(Debug, Clone)]
pub struct N8nBootstrap {
    pub owner_email: String,
    pub owner_password: OwnerPassword,
    /// Make a new key and revoke the kept one.
    pub rotate: bool,
}

impl From<N8nInitRequest> for N8nBootstrap {
    fn from(request: N8nInitRequest) -> Self {
        Self {
            owner_email: request.owner_email,
            owner_password: OwnerPassword(request.owner_password),
            rotate: request.rotate,
        }
    }
}

/// The n8n owner's password: a secret, so its `Debug` prints nothing.
#[derive(Clone)]
pub struct OwnerPassword(String);

impl OwnerPassword {
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for OwnerPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerPassword(…)")
    }
}

impl ReleaseService {
    /// n8n's first-run bootstrap: the owner account and an API key, kept in
    /// the release's Secret. Every step's failure is an answer
    /// (`success: false`), not an error; only what is not n8n's doing (no
    /// such release, the cluster) is an error.
    pub async fn init_n8n(
        &self,
        key: &KeyId,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        request: N8nBootstrap,
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
        request: &N8nBootstrap,
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
                n8n.setup_owner(&request.owner_email, request.owner_password.expose())
                    .await?;
            }
            let session = n8n
                .login(&request.owner_email, request.owner_password.expose())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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

    #[test]
    fn the_owners_password_never_reaches_a_log() {
        let request: N8nInitRequest =
            serde_json::from_value(json!({"owner_password": "Secret123"})).expect("request");
        let bootstrap = N8nBootstrap::from(request);
        assert_eq!(bootstrap.owner_password.expose(), "Secret123");
        assert!(!format!("{bootstrap:?}").contains("Secret123"));
    }
}
