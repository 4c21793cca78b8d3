//! Crash-only recovery: a revision left `pending-*` by a helm that is gone
//! (killed, stopped at a deadline or at shutdown, or on a replica that
//! died) blocks every later operation ("another operation
//! (install/upgrade/rollback) is in progress"). Like Flux's helm-controller,
//! we mark such a revision `failed` in Helm's own record (JSON
//! `info.status` and `info.description`, and the `status` label), checked
//! against the record's `resourceVersion`, and only while it still is
//! pending. Records in storage we do not read (HELM_DRIVER=sql) are left
//! alone.
//!
//! When is a `pending-*` revision abandoned? Always decided holding the
//! release's lock and Lease (so no helm of any replica runs on it):
//!
//! | what we know | abandoned |
//! |---|---|
//! | our own helm just ended abnormally (`ReleaseService::recovering`) | at once |
//! | the Lease we took had no live holder (freed in doubt, expired, holder dead) | at once |
//! | there was no Lease (helm run by hand, an older operator) | when older than HELM_TIMEOUT + margin |
//!
//! A background sweep ([`spawn_sweep`]) takes every Lease without a live
//! holder, cluster-wide, every `RECOVERY_SWEEP_INTERVAL`, and recovers its
//! release, so a dead replica's releases are usable again within seconds
//! without waiting for a write. An install retried on a release that never
//! reached `deployed` removes it first (`ReleaseService::clear_undeployed`).

use std::future::Future;
use std::io::Write;
use std::sync::Weak;
use std::time::Duration;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use serde_json::Value;

use super::ReleaseService;
use super::locks::{Ending, LockError};
use super::store::{RecordKind, ReleaseStore, StorageError};
use crate::error::{ApiError, Code};
use crate::helm::release::{HelmRelease, RecordError, ReleaseSummary, decode_payload};
use crate::kube::lease::LeaseState;
use crate::model::ReleaseStatus;
use crate::names::{ReleaseName, TenantNamespace};
use crate::render::additions::Additions;

/// Why a pending revision was marked failed (the metric's `trigger`).
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// Our own helm ended abnormally while we held the release.
    OwnHelm,
    /// A write (or the sweep) took over a Lease left without a live holder,
    /// or found a revision pending longer than any helm of ours runs.
    Abandoned,
    /// This process stopped helm because it is shutting down.
    Shutdown,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::OwnHelm => "own_helm",
            Self::Abandoned => "abandoned",
            Self::Shutdown => "shutdown",
        }
    }
}

/// True when a write's failure may mean helm did not end on its own terms
/// (killed by a signal, stopped at our deadline, cancelled, or cut off from
/// the API), so the release may be left `pending-*`: the release is read
/// again whatever helm's exit said. The one place to name such failures
/// (a distinct "helm died" error from the runner goes here).
fn may_have_died(error: &ApiError) -> bool {
    matches!(
        error.code,
        Code::HelmFailed
            | Code::HelmTimeout
            | Code::Cancelled
            | Code::HelmInterrupted
            | Code::KubernetesUnavailable
    )
}

/// The answer after helm was interrupted mid-write: 503, retry is safe.
pub(super) fn interrupted(namespace: &TenantNamespace, name: &ReleaseName, why: &str) -> ApiError {
    ApiError::new(
        Code::HelmInterrupted,
        format!(
            "The operation on {namespace}/{name} was interrupted ({why}); the release was left failed, not pending, and retrying is safe"
        ),
    )
}

impl ReleaseService {
    /// Pending, and its helm is gone (`stuck` in the status answer): the
    /// Lease has no live holder, or, without a Lease, the revision is older
    /// than any helm run of ours. The recovery sweep repairs such a release
    /// within seconds.
    pub(super) async fn is_stuck(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        release: &ReleaseSummary,
    ) -> bool {
        if !release.status().is_pending() {
            return false;
        }
        match self
            .locks
            .lease_state(namespace.as_str(), name.as_str())
            .await
        {
            LeaseState::Held(_) => false,
            LeaseState::Unheld => true,
            LeaseState::Absent => release.is_stale_pending(self.settings.stale_after),
        }
    }

    /// With the release's lock and Lease held: is this latest revision a
    /// `pending-*` one whose helm is gone (see the module's table)?
    fn is_abandoned(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        latest: &HelmRelease,
    ) -> bool {
        latest.status().is_pending()
            && (self.locks.took_over(namespace.as_str(), name.as_str())
                || latest.is_stale_pending(self.settings.stale_after))
    }

    /// Marks an abandoned `pending-*` latest revision failed, so the next
    /// helm operation can proceed. Called with the release's lock and Lease
    /// held, and with the latest revision the caller has just read under
    /// them.
    pub(super) async fn recover_if_stuck(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        latest: &HelmRelease,
    ) -> Result<bool, ApiError> {
        if !self.is_abandoned(namespace, name, latest) {
            return Ok(false);
        }
        self.mark_pending_failed(namespace, name, latest, Trigger::Abandoned)
            .await
    }

    async fn mark_pending_failed(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        latest: &HelmRelease,
        trigger: Trigger,
    ) -> Result<bool, ApiError> {
        let Some(store) = self.reads.store() else {
            // The records live where we cannot write them (HELM_DRIVER=sql):
            // helm will answer "another operation is in progress" (409).
            tracing::warn!(%namespace, release = %name, revision = latest.version,
                "release is stuck pending, but its storage driver cannot be recovered by the operator");
            return Ok(false);
        };
        if !mark_failed(store, namespace, name, latest).await? {
            return Ok(false);
        }
        crate::metrics::release_recovered(trigger.as_str());
        tracing::warn!(%namespace, release = %name, revision = latest.version, trigger = trigger.as_str(),
            "recovered a release whose helm is gone: marked its pending revision failed");
        Ok(true)
    }

    /// Runs a write (install, upgrade, rollback) whose helm may end
    /// abnormally. When it fails in a way that may mean helm did not finish
    /// on its own terms, the release is read again (never trusting helm's
    /// exit): a `pending-*` latest revision is ours (we hold the Lease and
    /// our helm has exited) and is marked failed at once (503
    /// `helm_interrupted`: retrying is safe); a revision that helm deployed
    /// after all is the answer.
    pub(super) async fn recovering(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        write: impl Future<Output = Result<HelmRelease, ApiError>>,
    ) -> Result<HelmRelease, ApiError> {
        let started = jiff::Timestamp::now();
        let error = match write.await {
            Ok(release) => return Ok(release),
            // Records the operator cannot rewrite (HELM_DRIVER=sql): helm's
            // answer is all there is.
            Err(error) if may_have_died(&error) && self.reads.store().is_some() => error,
            Err(error) => return Err(error),
        };
        let latest = match self.latest_direct(namespace, name).await {
            Ok(Some(latest)) => latest,
            Ok(None) => return Err(error),
            Err(read) => {
                // The Lease is left in doubt (a 5xx): the next taker or the
                // recovery sweep checks the release.
                tracing::warn!(%namespace, release = %name, %read,
                    "cannot read the release after helm failed; the recovery sweep will check it");
                return Err(error);
            }
        };
        if latest.status().is_pending() {
            tracing::warn!(%namespace, release = %name, revision = latest.version, %error,
                "helm ended abnormally and left the release pending");
            if let Err(failed) = self
                .mark_pending_failed(namespace, name, &latest, Trigger::OwnHelm)
                .await
            {
                tracing::warn!(%namespace, release = %name, %failed,
                    "cannot mark the release failed; the recovery sweep will");
            }
            return Err(interrupted(namespace, name, "helm did not finish"));
        }
        let ours = latest.updated_at().is_some_and(|at| at >= started);
        if latest.status() == ReleaseStatus::Deployed && ours {
            tracing::warn!(%namespace, release = %name, revision = latest.version, %error,
                "helm ended abnormally after it had deployed the release; answering with it");
            return Ok(latest);
        }
        Err(error)
    }

    /// helm refuses an upgrade of a release that is missing, or whose latest
    /// revision is `pending-*`, before it changes anything; only then is the
    /// release read: 404 when it is missing, and a pending revision whose
    /// helm is gone is recovered and the operation tried once more. An
    /// upgrade that lost a race inside the API server (409
    /// `kubernetes_conflict`: its revision is `failed`) is tried once more
    /// too. Anything else is `refused`.
    pub(super) async fn retry_if_recovered<Retry, Fut>(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        refused: ApiError,
        retry: Retry,
    ) -> Result<HelmRelease, ApiError>
    where
        Retry: FnOnce() -> Fut,
        Fut: Future<Output = Result<HelmRelease, ApiError>>,
    {
        if refused.code == Code::KubernetesConflict {
            lost_race(namespace, name, &refused);
            return retry().await;
        }
        if !matches!(
            refused.code,
            Code::NoDeployedRelease | Code::ReleaseNotFound | Code::OperationInProgress
        ) {
            return Err(refused);
        }
        let latest = self.require_latest(namespace, name).await?;
        if refused.code == Code::OperationInProgress
            && self.recover_if_stuck(namespace, name, &latest).await?
        {
            return retry().await;
        }
        Err(refused)
    }

    /// Stops waiting for an operation's helm at shutdown: waits (at most
    /// the stop margin and a second) for every helm of this process to
    /// exit, then marks a release it left `pending-*` failed. `Ok` when the
    /// release is known not to be pending.
    pub(super) async fn repair_after_stop(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<(), ApiError> {
        let limit = self.locks.stop_margin() + Duration::from_secs(1);
        if !self.wait_helm_exited(limit).await {
            return Err(interrupted(namespace, name, "helm did not stop"));
        }
        let Some(latest) = self.latest_direct(namespace, name).await? else {
            return Ok(());
        };
        if latest.status().is_pending()
            && !self
                .mark_pending_failed(namespace, name, &latest, Trigger::Shutdown)
                .await?
        {
            return Err(interrupted(namespace, name, "the release stayed pending"));
        }
        Ok(())
    }

    /// An install of a name in use: when the release never reached
    /// `deployed` (every revision `failed` or `pending-install`: its first
    /// install failed, crashed or was interrupted), it is uninstalled as the
    /// tenant (helm deletes what its record lists, so nothing is orphaned),
    /// and `true` says the install may run again. A release that was ever
    /// deployed stays (`false`: 409 `release_exists`). Called with the
    /// release's lock and Lease held.
    pub(super) async fn clear_undeployed(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<bool, ApiError> {
        let history = self.history_direct(namespace, name).await?;
        let Some(latest) = history.last() else {
            // Gone since helm said it exists: the install may run.
            return Ok(true);
        };
        if !never_deployed(&history) {
            return Ok(false);
        }
        if latest.status().is_pending() && !self.recover_if_stuck(namespace, name, latest).await? {
            // Its helm may still run (no Lease says otherwise).
            return Ok(false);
        }
        let full = self.require_latest(namespace, name).await?;
        // As uninstall does: helm deletes what the stored manifest lists,
        // only when it stays in the namespace.
        if let Some(plan) = self.plan(namespace, name, Additions::default()).await? {
            self.checked(namespace, Some(&plan), &full.rendering())?;
        }
        self.helm.uninstall(namespace, name).await?;
        tracing::info!(%namespace, release = %name, revisions = history.len(),
            "removed a release that never reached deployed, to install it again");
        Ok(true)
    }

    /// One pass of the recovery sweep: every release Lease without a live
    /// holder is taken (without waiting), its release read and, if left
    /// `pending-*`, marked failed; then the Lease is deleted. Returns how
    /// many releases were recovered.
    pub async fn sweep_once(&self) -> Result<usize, ApiError> {
        let unheld = self.locks.unheld().await?;
        let prefix = &self.settings.namespace_prefix;
        let mut recovered = 0;
        for (namespace, release) in unheld {
            let (Ok(namespace), Ok(name)) = (
                TenantNamespace::parse(&namespace, prefix),
                ReleaseName::parse(&release),
            ) else {
                continue;
            };
            match self.recover_unheld(&namespace, &name).await {
                Ok(true) => recovered += 1,
                Ok(false) => {}
                // Its namespace is going, and everything in it.
                Err(error) if error.code == Code::NamespaceTerminating => {
                    tracing::debug!(%namespace, release = %name, "recovery sweep: the release's namespace is being deleted");
                }
                Err(error) => {
                    tracing::warn!(%namespace, release = %name, %error, "recovery sweep: cannot check the release");
                }
            }
        }
        Ok(recovered)
    }

    async fn recover_unheld(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<bool, ApiError> {
        let guard = match self
            .locks
            .acquire(namespace.as_str(), name.as_str(), Duration::ZERO)
            .await
        {
            Ok(guard) => guard,
            // Taken meanwhile (a write, another replica's sweep), or its
            // namespace is gone.
            Err(LockError::Busy | LockError::NamespaceMissing) => return Ok(false),
            Err(LockError::Kube(error)) => return Err(error.into()),
        };
        let outcome = async {
            let Some(latest) = self.latest_direct(namespace, name).await? else {
                return Ok(false);
            };
            self.recover_if_stuck(namespace, name, &latest).await
        }
        .await;
        let ending = match outcome {
            Ok(_) => Ending::Clean,
            Err(_) => Ending::Doubtful,
        };
        self.locks.finish_in_background(guard, ending);
        outcome
    }

    /// True once the service was told to stop (see [`ReleaseService::stop_operations`]).
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }
}

/// True when no revision of `history` ever reached `deployed`: every one is
/// `failed` or `pending-install` (a superseded, uninstalled or pending
/// upgrade or rollback revision means one was deployed once).
fn never_deployed(history: &[HelmRelease]) -> bool {
    !history.is_empty()
        && history.iter().all(|r| {
            matches!(
                r.status(),
                ReleaseStatus::Failed | ReleaseStatus::PendingInstall
            )
        })
}

/// Runs the recovery sweep now and every `every` (never when zero), as
/// long as the release service lives and is not stopping.
pub fn spawn_sweep(service: Weak<ReleaseService>, every: Duration) {
    if every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut told_forbidden = false;
        loop {
            let Some(releases) = service.upgrade() else {
                return;
            };
            if releases.is_stopping() {
                return;
            }
            match releases.sweep_once().await {
                Ok(0) => {}
                Ok(recovered) => tracing::info!(recovered, "recovery sweep: releases recovered"),
                Err(error) if error.code == Code::KubernetesUnavailable => {
                    tracing::debug!(%error, "recovery sweep skipped: the API is unreachable");
                }
                Err(error) if error.code == Code::OperatorForbidden => {
                    // Said once: the RBAC of an older deployment.
                    if !told_forbidden {
                        tracing::warn!(
                            "the recovery sweep may not list Leases cluster-wide (k8s/rbac.yaml grants it); releases whose replica died are recovered by their next write instead"
                        );
                        told_forbidden = true;
                    }
                }
                Err(error) => tracing::warn!(%error, "recovery sweep failed"),
            }
            drop(releases);
            tokio::time::sleep(every).await;
        }
    });
}

/// The description written into a recovered revision.
pub const RECOVERED_DESCRIPTION: &str = "Marked failed by paas-operator: the helm process that started this operation is gone (killed, stopped, or its replica died)";

/// Marks `latest` (the release's newest revision, read by the caller with
/// the release's lock and Lease held) `failed` in Helm's record; returns
/// false when its record is gone or no longer pending. The record is
/// re-read and written back checked against its `resourceVersion`.
pub async fn mark_failed(
    store: &ReleaseStore,
    namespace: &TenantNamespace,
    name: &ReleaseName,
    latest: &HelmRelease,
) -> Result<bool, StorageError> {
    let record = super::store::record_name(name.as_str(), latest.version);
    match store.kind() {
        RecordKind::Secret => {
            let api = store.secrets(namespace.as_str());
            let Some(mut secret) = api.get_opt(&record).await? else {
                return Ok(false);
            };
            let payload = secret
                .data
                .as_ref()
                .and_then(|d| d.get("release"))
                .map(|b| b.0.clone())
                .unwrap_or_default();
            let Some(updated) = rewrite_failed(&record, &payload)? else {
                return Ok(false);
            };
            secret
                .data
                .get_or_insert_with(Default::default)
                .insert("release".into(), ByteString(updated));
            set_failed_label(&mut secret.metadata);
            api.replace(&record, &PostParams::default(), &secret)
                .await?;
        }
        RecordKind::ConfigMap => {
            let api = store.config_maps(namespace.as_str());
            let Some(mut map) = api.get_opt(&record).await? else {
                return Ok(false);
            };
            let payload = map
                .data
                .as_ref()
                .and_then(|d| d.get("release"))
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default();
            let Some(updated) = rewrite_failed(&record, &payload)? else {
                return Ok(false);
            };
            map.data.get_or_insert_with(Default::default).insert(
                "release".into(),
                String::from_utf8_lossy(&updated).into_owned(),
            );
            set_failed_label(&mut map.metadata);
            api.replace(&record, &PostParams::default(), &map).await?;
        }
    }
    Ok(true)
}

fn set_failed_label(meta: &mut kube::api::ObjectMeta) {
    meta.labels
        .get_or_insert_with(Default::default)
        .insert("status".into(), "failed".into());
}

/// Rewrites an encoded release record with `info.status = failed`, keeping
/// every other field as Helm wrote it; `None` when it is not pending (any
/// more: helm finished after all).
fn rewrite_failed(record: &str, encoded: &[u8]) -> Result<Option<Vec<u8>>, RecordError> {
    let corrupt = |reason: String| RecordError::Corrupt {
        record: record.to_owned(),
        reason,
    };
    let json = decode_payload(record, encoded)?;
    let mut release: Value =
        serde_json::from_slice(&json).map_err(|e| corrupt(format!("json: {e}")))?;
    let info = release
        .get_mut("info")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| corrupt("no info object".into()))?;
    let status = info
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !ReleaseStatus::from_helm(status).is_pending() {
        return Ok(None);
    }
    info.insert("status".into(), Value::from("failed"));
    info.insert("description".into(), Value::from(RECOVERED_DESCRIPTION));
    let json = serde_json::to_vec(&release).map_err(|e| corrupt(format!("json: {e}")))?;
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(&json)
        .map_err(|e| corrupt(format!("gzip: {e}")))?;
    let compressed = gzip.finish().map_err(|e| corrupt(format!("gzip: {e}")))?;
    Ok(Some(
        base64::engine::general_purpose::STANDARD
            .encode(compressed)
            .into_bytes(),
    ))
}

/// Logs a write tried once more because it lost a race inside the API
/// server (409 `kubernetes_conflict`, such as the quota admission's).
pub(super) fn lost_race(namespace: &TenantNamespace, name: &ReleaseName, refused: &ApiError) {
    tracing::info!(%namespace, release = %name, %refused,
        "the write lost a race inside the Kubernetes API; trying it once more");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::release::decode_record;

    fn revisions(statuses: &[&str]) -> Vec<HelmRelease> {
        statuses
            .iter()
            .enumerate()
            .map(|(i, status)| {
                serde_json::from_value(serde_json::json!({
                    "name": "svc-a", "version": i + 1, "info": {"status": status}
                }))
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn only_a_release_never_deployed_is_replaced_by_an_install() {
        assert!(never_deployed(&revisions(&["failed"])));
        assert!(never_deployed(&revisions(&["pending-install"])));
        assert!(never_deployed(&revisions(&["failed", "failed"])));
        assert!(!never_deployed(&revisions(&["deployed"])));
        assert!(!never_deployed(&revisions(&["superseded", "failed"])));
        assert!(!never_deployed(&revisions(&[
            "deployed",
            "pending-upgrade"
        ])));
        assert!(!never_deployed(&revisions(&["failed", "pending-rollback"])));
        assert!(!never_deployed(&[]));
    }

    #[test]
    fn failures_that_may_hide_a_dead_helm_are_read_again() {
        let with = |code| ApiError::new(code, "x");
        for code in [
            Code::HelmFailed,
            Code::HelmTimeout,
            Code::Cancelled,
            Code::HelmInterrupted,
            Code::KubernetesUnavailable,
        ] {
            assert!(may_have_died(&with(code)), "{code}");
        }
        // helm refused before changing anything: nothing to read again.
        for code in [
            Code::ReleaseExists,
            Code::OperationInProgress,
            Code::ChartRenderFailed,
            Code::ChartNotConfined,
            Code::OperatorBusy,
        ] {
            assert!(!may_have_died(&with(code)), "{code}");
        }
        let answer = interrupted(
            &TenantNamespace::parse("paas-ws-1", "paas-ws-").unwrap(),
            &ReleaseName::parse("svc-a").unwrap(),
            "helm did not finish",
        );
        assert_eq!(answer.status().as_u16(), 503);
        assert_eq!(answer.code.retry_after(), Some(5));
        assert!(
            answer.detail.contains("retrying is safe"),
            "{}",
            answer.detail
        );
    }

    #[test]
    fn marks_a_record_failed_and_keeps_the_rest() {
        let json = br#"{"name":"svc-a","version":3,"info":{"status":"pending-upgrade","description":"Preparing upgrade","last_deployed":"2026-11-26T08:00:00Z"},"manifest":"---\nkind: ConfigMap\n","hooks":[]}"#;
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(json).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(gzip.finish().unwrap())
            .into_bytes();
        let updated = rewrite_failed("r", &encoded).unwrap().expect("pending");
        let release = decode_record("r", &updated).unwrap();
        assert_eq!(release.status(), ReleaseStatus::Failed);
        assert_eq!(release.version, 3);
        assert_eq!(release.info.description, RECOVERED_DESCRIPTION);
        assert_eq!(release.manifest, "---\nkind: ConfigMap\n");
        assert!(rewrite_failed("r", b"%%%").is_err());
        // A record helm finished after all is left as it is.
        assert!(rewrite_failed("r", &updated).unwrap().is_none());
    }
}
