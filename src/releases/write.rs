//! The write path: install, upgrade, roll back, uninstall, and the
//! uninstall of a whole tenant namespace. Each write makes sure the tenant
//! identity helm runs as is in place (once per namespace), holds the
//! release's lock and Lease while helm runs, leaves an expectation for the
//! read cache (read-your-writes) and one audit event.
//!
//! Install and upgrade fetch and inspect the chart (`crate::charts`) under
//! the lock, just before helm, which only ever gets the local archive.
//! They leave it to helm to refuse a name in use or a missing or pending
//! release (it checks before changing anything), and read the release only
//! then, so their happy path makes no Kubernetes call but the Lease besides
//! helm's own. With Helm 3 and confinement (dry run,
//! check, apply) they read the release before the dry run instead.

use std::future::Future;
use std::time::Instant;

use super::ReleaseService;
use super::audit::audit;
use super::cache::Expectation;
use super::commands::{ChartSpec, Install, Upgrade};
use super::locks::{Ending, LockError, ReleaseGuard};
use crate::auth::KeyId;
use crate::error::{ApiError, Code};
use crate::exposure::names::Subdomain;
use crate::helm::{ChartArgs, HelmRelease, WriteKind};
use crate::model::RouteInfo;
use crate::names::{ReleaseName, TenantNamespace};
use crate::render::additions::Additions;
use serde_json::{Map, Value};

/// What an install produced.
#[derive(Debug)]
pub struct Installed {
    pub release: HelmRelease,
    /// The release's route (read back after the install), when it asked for
    /// one and it is in place.
    pub route: Option<RouteInfo>,
}

impl ReleaseService {
    /// `helm install`, creating the tenant namespace first when asked; a
    /// release of that name that never reached `deployed` is replaced. Its
    /// route, when asked for, is made under the release's lock; routing
    /// failures leave `route` empty, never fail the install.
    pub async fn install(&self, key: &KeyId, install: Install) -> Result<Installed, ApiError> {
        let Install {
            namespace,
            name,
            chart,
            values,
            create_namespace,
            expose,
        } = &install;
        let outcome = async {
            if *create_namespace {
                self.tenants.ensure(namespace).await?;
            }
            // The release's Lease lives in its namespace, so that comes first.
            self.locked(namespace, name, async {
                // helm refuses a name in use itself (the same 409, without
                // our reading first); before a dry run, refuse it before
                // paying for that. A release that never reached `deployed`
                // (its first install failed or crashed) is removed and
                // installed again: what a retried install means.
                if self.settings.confine
                    && self.checks_before_run()
                    && self.latest_direct(namespace, name).await?.is_some()
                    && !self.clear_undeployed(namespace, name).await?
                {
                    return Err(ApiError::new(
                        Code::ReleaseExists,
                        format!("Release {namespace}/{name} already exists"),
                    ));
                }
                self.exposure
                    .check_free(namespace, name, expose.as_ref())
                    .await?;
                let install = || {
                    self.recovering(
                        namespace,
                        name,
                        self.write(namespace, name, chart, WriteKind::Install, values),
                    )
                };
                // A name in use that never deployed, or a write that lost a
                // race inside the API server (its failed revision is
                // removed first): installed once more.
                let release = match install().await {
                    Err(refused)
                        if matches!(
                            refused.code,
                            Code::ReleaseExists | Code::KubernetesConflict
                        ) && self.clear_undeployed(namespace, name).await? =>
                    {
                        if refused.code == Code::KubernetesConflict {
                            super::recovery::lost_race(namespace, name, &refused);
                        }
                        install().await?
                    }
                    outcome => outcome?,
                };
                self.exposure
                    .expose_release(namespace, name, expose.as_ref())
                    .await;
                Ok(release)
            })
            .await
        }
        .await;
        self.expect_after_write(namespace, name, &outcome);
        let release = audit(key, "install", namespace.as_str(), name.as_str(), outcome)?;
        let route = self
            .exposure
            .route_after_install(namespace, name, expose.as_ref())
            .await;
        Ok(Installed { release, route })
    }

    /// `helm upgrade`; a release whose pending revision lost its helm is
    /// recovered and the upgrade retried once.
    pub async fn upgrade(
        &self,
        key: &KeyId,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        upgrade: Upgrade,
    ) -> Result<HelmRelease, ApiError> {
        let Upgrade {
            chart,
            values,
            mode,
        } = &upgrade;
        let kind = WriteKind::Upgrade(*mode);
        let outcome = self
            .locked(namespace, name, async {
                // A dry run needs a release to upgrade, so it is read first;
                // else only when helm refuses (below).
                if self.checks_before_run() {
                    let previous = self.require_latest(namespace, name).await?;
                    self.recover_if_stuck(namespace, name, &previous).await?;
                }
                let run = || {
                    self.recovering(
                        namespace,
                        name,
                        self.write(namespace, name, chart, kind, values),
                    )
                };
                match run().await {
                    Ok(release) => Ok(release),
                    Err(refused) => self.retry_if_recovered(namespace, name, refused, run).await,
                }
            })
            .await;
        self.expect_after_write(namespace, name, &outcome);
        audit(key, "upgrade", namespace.as_str(), name.as_str(), outcome)
    }

    /// Rolls back to `revision` (`None` or 0: the previous one); returns the
    /// target revision and the release it produced.
    pub async fn rollback(
        &self,
        key: &KeyId,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        revision: Option<u32>,
    ) -> Result<(u32, HelmRelease), ApiError> {
        let wanted = revision.filter(|r| *r > 0);
        let outcome = self
            .locked(namespace, name, async {
                let history = self.history_direct(namespace, name).await?;
                let Some(latest) = history.last() else {
                    return Err(ApiError::release_not_found(namespace, name));
                };
                // Only revision numbers are used below, which recovery keeps.
                self.recover_if_stuck(namespace, name, latest).await?;
                let target = match wanted {
                    Some(revision) => revision,
                    None => latest
                        .version
                        .checked_sub(1)
                        .filter(|r| *r > 0)
                        .ok_or_else(|| {
                            ApiError::new(
                                Code::NoPreviousRevision,
                                format!("Release {namespace}/{name} has no previous revision"),
                            )
                        })?,
                };
                if !history.iter().any(|r| r.version == target) {
                    return Err(ApiError::new(
                        Code::RevisionNotFound,
                        format!("Release {namespace}/{name} has no revision {target}"),
                    ));
                }
                let release = self
                    .recovering(namespace, name, self.roll_back_to(namespace, name, target))
                    .await?;
                Ok((target, release))
            })
            .await;
        let expected = outcome.as_ref().map(|(_, release)| release);
        self.expect(namespace, name, expected);
        audit(key, "rollback", namespace.as_str(), name.as_str(), outcome)
    }

    /// `helm uninstall`; 404 when the release does not exist. Its routes go
    /// with it (also when it was gone already), and what the earlier
    /// operator made beside it: its routes (at `subdomain`, the platform's
    /// name, or its own default names) and its `{release}-mcp` Service.
    pub async fn uninstall(
        &self,
        key: &KeyId,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        subdomain: Option<&Subdomain>,
    ) -> Result<(), ApiError> {
        let outcome = self
            .locked(namespace, name, async {
                let latest = match self.require_latest(namespace, name).await {
                    Ok(latest) => Some(latest),
                    Err(error) if error.code == Code::ReleaseNotFound => {
                        // Already gone: its routes go too (then the 404).
                        self.exposure.release_gone(namespace, name).await;
                        self.earlier_gone(namespace, name, subdomain).await;
                        return Err(error);
                    }
                    Err(error) if error.code == Code::ReleaseRecordUnreadable => {
                        // Too large or corrupt for us: helm, as the tenant
                        // (RBAC keeps it inside the namespace), still
                        // removes it; its owner must be able to.
                        tracing::warn!(%namespace, release = %name, "the release's latest record cannot be read; uninstalling it without checking its documents");
                        None
                    }
                    Err(error) => return Err(error),
                };
                // helm deletes what the stored manifest lists: only when it
                // stays in the namespace.
                if let Some(latest) = &latest
                    && let Some(plan) = self.plan(namespace, name, Additions::default()).await?
                {
                    self.check_uninstall(namespace, &plan, &latest.rendering())?;
                }
                self.helm.uninstall(namespace, name).await?;
                self.exposure.release_gone(namespace, name).await;
                self.earlier_gone(namespace, name, subdomain).await;
                // What the operator kept about the release goes with it.
                super::state::remove(&self.client, namespace, name).await?;
                Ok(())
            })
            .await;
        let expectation = match &outcome {
            Ok(()) => Expectation::Gone,
            Err(_) => Expectation::Unknown,
        };
        self.cache
            .expect(namespace.as_str(), name.as_str(), expectation);
        audit(key, "uninstall", namespace.as_str(), name.as_str(), outcome)
    }

    /// What the earlier operator made beside a release that is now gone:
    /// its MCP route (with its CNAME) and its `{release}-mcp` Service, each
    /// only with evidence that it is this release's.
    async fn earlier_gone(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        subdomain: Option<&Subdomain>,
    ) {
        let prefix = &self.settings.namespace_prefix;
        self.exposure
            .remove_earlier_routes(namespace, name, prefix, subdomain)
            .await;
        self.remove_earlier_mcp_service(namespace, name).await;
    }

    /// Runs `operation` holding the release's lock (and Lease), then gives
    /// them back; the operation is a lazy future, so nothing runs before the
    /// lock is held. The answer does not wait for the Lease's deletion (one
    /// API round trip): the local lock is held until it is done, so the next
    /// operation on this release in this process still waits for it.
    pub(super) async fn locked<T>(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        operation: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.locked_waiting(namespace, name, self.settings.lock_wait, operation)
            .await
    }

    /// [`Self::locked`], waiting up to `wait` for another operation on the
    /// release to end (an overlapping n8n bootstrap waits for the first).
    pub(super) async fn locked_waiting<T>(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        wait: std::time::Duration,
        operation: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        if self.stopping.is_cancelled() {
            return Err(ApiError::new(
                Code::Cancelled,
                "The service is stopping; try again shortly",
            ));
        }
        if !self.tenants.ready(namespace).await? {
            return Err(namespace_missing(namespace));
        }
        let guard = self.lock(namespace, name, wait).await?;
        let lease_lost = guard.lost();
        // The operation runs until it ends, unless its Lease is lost or the
        // service stops: then it is dropped, which stops its helm (SIGTERM,
        // SIGKILL after HELM_KILL_GRACE).
        let stopped = tokio::select! {
            outcome = operation => Ok(outcome),
            () = lease_lost => Err(Stopped::LeaseLost),
            () = self.stopping.cancelled() => Err(Stopped::Shutdown),
        };
        let outcome = match stopped {
            Ok(outcome) => {
                self.locks.finish_in_background(guard, ending(&outcome));
                outcome
            }
            Err(Stopped::LeaseLost) => {
                tracing::error!(%namespace, release = %name,
                    "stopped the operation: its Lease could not be kept; the recovery sweep repairs the release");
                self.locks.finish_in_background(guard, Ending::LeaseLost);
                return Err(super::recovery::interrupted(
                    namespace,
                    name,
                    "this replica could not keep its hold on the release",
                ));
            }
            Err(Stopped::Shutdown) => {
                // Shutdown: helm was asked to stop; repair the release
                // under the Lease before giving it back.
                let repaired = self.repair_after_stop(namespace, name).await;
                let ending = match &repaired {
                    Ok(()) => Ending::Clean,
                    Err(_) => Ending::Doubtful,
                };
                self.locks.finish_in_background(guard, ending);
                return Err(super::recovery::interrupted(
                    namespace,
                    name,
                    "the service is stopping",
                ));
            }
        };
        if outcome
            .as_ref()
            .err()
            .is_some_and(|e| e.code == Code::RejectedByCluster)
        {
            // Perhaps the tenant identity changed under us: set it up again.
            self.tenants.forget(namespace);
        }
        outcome
    }

    /// Installs or upgrades: the chart fetched and inspected first (helm
    /// only ever gets the local archive), then checked inside the one helm
    /// run (Helm 4), or dry run, checked, and applied as checked (Helm 3).
    async fn write(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        chart: &ChartSpec,
        kind: WriteKind,
        values: &Map<String, Value>,
    ) -> Result<HelmRelease, ApiError> {
        let local = self
            .charts
            .fetch(&chart.chart, chart.version.as_ref())
            .await?;
        let chart = ChartArgs {
            archive: local.path(),
        };
        let additions = match kind {
            WriteKind::Install => Additions::default(),
            WriteKind::Upgrade(_) => self.kept_additions(namespace, name).await?,
        };
        let rules = self.plan(namespace, name, additions).await?;
        let printed = if let (Some(plan), true) = (&rules, self.checks_before_run()) {
            let dry = self
                .helm
                .dry_run(namespace, name, chart, kind, values)
                .await?;
            let checked = self
                .checked_dry_run(namespace, name, plan, &dry.rendering)
                .await?;
            self.helm
                .apply_documents(
                    namespace,
                    name,
                    kind,
                    &dry.chart,
                    &checked,
                    &dry.values,
                    None,
                )
                .await?
        } else {
            match kind {
                WriteKind::Install => {
                    self.helm
                        .install(namespace, name, chart, values, rules.as_ref())
                        .await?
                }
                WriteKind::Upgrade(mode) => {
                    self.helm
                        .upgrade(namespace, name, chart, mode, values, rules.as_ref())
                        .await?
                }
            }
        };
        self.produced(namespace, name, printed).await
    }

    /// What the operator keeps about the release (its sidecar, the n8n
    /// key), before changing it: 409 `kept_state_conflict` when a Secret of
    /// its name was made by someone else.
    pub(super) async fn kept(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<super::state::ReleaseState, ApiError> {
        Ok(super::state::load_for_change(&self.client, namespace, name).await?)
    }

    /// What the operator keeps about the release, to add to a rendering
    /// (nothing from a Secret of its name someone else made).
    pub(super) async fn kept_additions(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<Additions, ApiError> {
        Ok(super::state::load(&self.client, namespace, name)
            .await?
            .additions())
    }

    async fn lock(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        wait: std::time::Duration,
    ) -> Result<ReleaseGuard, ApiError> {
        let started = Instant::now();
        let guard = self
            .locks
            .acquire(namespace.as_str(), name.as_str(), wait)
            .await;
        let outcome = match &guard {
            Ok(_) => "acquired",
            Err(LockError::Busy) => "timed_out",
            Err(_) => "error",
        };
        crate::metrics::lock_wait(outcome, started.elapsed());
        guard.map_err(|error| match error {
            LockError::Busy => ApiError::operation_in_progress(format!("{namespace}/{name}")),
            LockError::NamespaceMissing => namespace_missing(namespace),
            LockError::Kube(error) => error.into(),
        })
    }

    /// The release a write produced: as helm printed it, else read back.
    pub(super) async fn produced(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        printed: Option<HelmRelease>,
    ) -> Result<HelmRelease, ApiError> {
        match printed {
            Some(release) => Ok(release),
            None => self.require_latest(namespace, name).await,
        }
    }

    /// Tells the read cache what a write left behind, so this replica's
    /// next reads of the release show it (read-your-writes).
    fn expect_after_write(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        outcome: &Result<HelmRelease, ApiError>,
    ) {
        self.expect(namespace, name, outcome.as_ref());
    }

    pub(super) fn expect(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        outcome: Result<&HelmRelease, &ApiError>,
    ) {
        let expectation = match outcome {
            Ok(release) => Expectation::Revision {
                revision: release.version,
                status: release.info.status.clone(),
            },
            Err(_) => Expectation::Unknown,
        };
        self.cache
            .expect(namespace.as_str(), name.as_str(), expectation);
    }
}

/// Why an operation was stopped before its end.
enum Stopped {
    /// Its Lease could not be renewed in time.
    LeaseLost,
    /// The service is shutting down and the grace is over.
    Shutdown,
}

/// How an operation that ran to its end gives its Lease back: deleted when
/// the outcome is known (success, or a refusal before or by helm), kept
/// without a holder when helm may have left the release `pending-*` (any
/// server-side failure), so the next taker or the sweep checks it.
fn ending<T>(outcome: &Result<T, ApiError>) -> Ending {
    match outcome {
        Ok(_) => Ending::Clean,
        Err(error) if error.status().is_client_error() => Ending::Clean,
        Err(_) => Ending::Doubtful,
    }
}

fn namespace_missing(namespace: &TenantNamespace) -> ApiError {
    ApiError::new(
        Code::NamespaceNotFound,
        format!(
            "Namespace {namespace} does not exist; create it first (or send create_namespace: true)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_deleted_only_when_the_outcome_is_known() {
        assert_eq!(ending::<()>(&Ok(())), Ending::Clean);
        let refused = ApiError::new(Code::ReleaseExists, "x");
        assert_eq!(ending::<()>(&Err(refused)), Ending::Clean);
        for code in [
            Code::HelmFailed,
            Code::HelmInterrupted,
            Code::KubernetesUnavailable,
        ] {
            assert_eq!(
                ending::<()>(&Err(ApiError::new(code, "x"))),
                Ending::Doubtful
            );
        }
    }
}
