//! Reconciliation: the routes in the backend made what the records say,
//! whatever failed or happened out of band since. At start (in the
//! background), every `EXPOSURE_RECONCILE_INTERVAL`, and on
//! `POST /api/routes/reconcile`. Idempotent, and safe beside other
//! replicas and requests: every change goes through the same record
//! states and Lease-serialised syncs as the requests' own.
//!
//! A pass reads (the records, which releases are gone, the configured
//! backend's claims), decides with the pure [`plan`], and carries the plan
//! out with [`execute`]:
//!
//! - records of releases that are gone are removed (a pending claim,
//!   which nothing was put in place for, is deleted at once);
//! - records made with another backend than the configured one are taken
//!   out of it and moved, as pending claims, to the configured one;
//! - pending claims (their hostname could not be checked when made) are
//!   checked, then made active (or given up when someone else routes it);
//! - each backend is synced once (the shared tunnel's document: missing
//!   rules added, rules of removed routes dropped);
//! - every active route is put in place again where it is not (its CNAME
//!   made right, its Ingress applied); claims of ours that no record names
//!   (orphaned CNAMEs, each checked again just before), and the CNAMEs of
//!   deleted dedicated tunnels, are deleted; removed routes' records go
//!   last.

mod execute;
mod plan;

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use futures::future::BoxFuture;

use super::names::Subdomain;
use super::service::{ExposureService, Routes};
use super::store::{ReleaseRef, RouteRecord, RouteState};
use crate::error::ApiError;
use crate::kube::KubeError;
use crate::model::exposure::ReconcileReport;
use execute::Pass;
use plan::Facts;

/// Tells whether a release exists (the release service answers).
pub(crate) trait ReleaseLookup: Send + Sync {
    /// `Some(true)`: it exists; `Some(false)`: it does not; `None`: cannot
    /// tell now (its routes are then left alone).
    fn is_live<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Option<bool>>;
}

/// Reconciles once now, then every `interval` (never when zero), for as
/// long as `lookup` (the running service) lives.
pub(crate) fn spawn_reconciler<L: ReleaseLookup + 'static>(
    exposure: ExposureService,
    lookup: Weak<L>,
    interval: Duration,
) {
    if !exposure.is_on() {
        return;
    }
    tokio::spawn(async move {
        let mut first = true;
        loop {
            if !first {
                if interval.is_zero() {
                    return;
                }
                tokio::time::sleep(interval).await;
            }
            first = false;
            let Some(lookup) = lookup.upgrade() else {
                return;
            };
            match exposure.reconcile(lookup.as_ref()).await {
                Ok(report) if report.is_empty() => {
                    tracing::debug!("routes reconciled: nothing to change")
                }
                Ok(report) => tracing::info!(
                    applied = ?report.applied.hostnames,
                    removed = ?report.removed.hostnames,
                    orphaned_dns_removed = ?report.orphaned_dns_removed.hostnames,
                    failed = ?report.failed.hostnames,
                    "routes reconciled"
                ),
                Err(error) => tracing::warn!(%error, "routes could not be reconciled"),
            }
        }
    });
}

impl ExposureService {
    /// Reconciles every route once; reports what changed.
    pub(crate) async fn reconcile(
        &self,
        lookup: &dyn ReleaseLookup,
    ) -> Result<ReconcileReport, ApiError> {
        let routes = self.routes()?;
        let records = routes.store.list(None).await?;
        let gone = self.gone_owners(lookup, &records).await;
        let claims = match routes.backends.configured().claims().await {
            Ok(claims) => Some(claims),
            Err(error) => {
                tracing::warn!(%error, "the backend's DNS records could not be listed");
                None
            }
        };
        let available = routes.backends.kinds();
        let facts = Facts {
            configured: routes.backends.configured().kind(),
            available: &available,
            gone: &gone,
        };
        let actions = plan::plan(&records, facts);
        let mut pass = Pass::new(self, routes);
        pass.execute(actions, claims, &records).await;
        let mut report = pass.report;
        self.tunnels_orphaned_dns(&mut report).await;
        Ok(report)
    }

    /// The owners of records (not being removed already) whose release is
    /// known to be gone, its namespace too counting.
    async fn gone_owners(
        &self,
        lookup: &dyn ReleaseLookup,
        records: &[RouteRecord],
    ) -> BTreeSet<ReleaseRef> {
        let owners: BTreeSet<&ReleaseRef> = records
            .iter()
            .filter(|r| r.state != RouteState::Removing)
            .filter_map(|r| r.owner.as_ref())
            .collect();
        let mut gone = BTreeSet::new();
        for owner in owners {
            let is_gone = match lookup.is_live(&owner.namespace, &owner.name).await {
                Some(live) => !live,
                // E.g. the namespace (and our rights in it) is gone.
                None => self
                    .namespace_exists(&owner.namespace)
                    .await
                    .is_ok_and(|exists| !exists),
            };
            if is_gone {
                gone.insert(owner.clone());
            }
        }
        gone
    }

    /// Whether a namespace still exists (and is not terminating).
    async fn namespace_exists(&self, namespace: &str) -> Result<bool, KubeError> {
        let Some(routes) = &self.0.routes else {
            return Ok(true);
        };
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(routes.client.clone());
        let found = api
            .get_opt(namespace)
            .await
            .map_err(KubeError::api("reading a namespace"))?;
        Ok(found.is_some_and(|n| n.metadata.deletion_timestamp.is_none()))
    }

    /// Whether a route record names `hostname` now (when unsure: yes).
    async fn recorded(&self, routes: &Routes, hostname: &str) -> bool {
        let Some(subdomain) = hostname
            .strip_suffix(&format!(".{}", self.domain()))
            .and_then(|label| Subdomain::parse(label).ok())
        else {
            return false;
        };
        match routes.store.get(&subdomain).await {
            Ok(record) => record.is_some_and(|r| r.hostname == hostname),
            Err(_) => true,
        }
    }

    /// The CNAMEs of deleted dedicated tunnels, deleted.
    async fn tunnels_orphaned_dns(&self, report: &mut ReconcileReport) {
        let Some(tunnels) = &self.0.tunnels else {
            return;
        };
        let orphans = match tunnels.orphaned_dns().await {
            Ok(orphans) => orphans,
            Err(error) => {
                tracing::warn!(%error, "the tunnels' DNS records could not be checked");
                return;
            }
        };
        for orphan in orphans {
            match tunnels.delete_dns(&orphan.id).await {
                Ok(()) => report.orphaned_dns_removed.push(orphan.name),
                Err(error) => {
                    tracing::warn!(name = %orphan.name, %error, "a deleted tunnel's DNS record could not be deleted");
                }
            }
        }
    }
}
