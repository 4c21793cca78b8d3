//! Reconciliation: the routes in the backend made what the records say,
//! whatever failed or happened out of band since. At start (in the
//! background), every `EXPOSURE_RECONCILE_INTERVAL`, and on
//! `POST /api/routes/reconcile`. Idempotent, and safe beside other
//! replicas and requests: every change goes through the same record
//! states and Lease-serialised syncs as the requests' own.
//!
//! 1. Records of releases that are gone are marked `removing` (a pending
//!    claim, which nothing was put in place for, is deleted at once).
//! 2. Records made with another backend than the configured one are moved:
//!    out of an Ingress at once; out of the tunnel by the sync below.
//! 3. Pending claims (their hostname could not be checked when made) are
//!    checked, then made active (or given up when someone else routes it).
//! 4. One sync of the shared tunnel's document: missing rules added, rules
//!    of removed routes dropped.
//! 5. DNS: every active route's CNAME made right; CNAMEs of ours that no
//!    record names (orphans, each checked again just before), and those of
//!    deleted dedicated tunnels, deleted.
//! 6. Ingresses applied again; removed routes' records deleted last.

use std::sync::Weak;
use std::time::Duration;

use futures::future::BoxFuture;

use super::store::{RouteRecord, RouteState};
use super::{ExposureService, RouteError, Routes};
use crate::config::ExposureBackend;
use crate::error::ApiError;
use crate::model::exposure::ReconcileReport;

/// Where reconciliation puts a record.
enum Sorted {
    /// Put in place (again).
    Apply(RouteRecord),
    /// Taken out of its backend, then deleted.
    Remove(RouteRecord),
    /// Taken out of the tunnel, then put on the configured backend.
    LeaveTunnel(RouteRecord),
    /// Done with already (a pending claim of a gone release, deleted).
    Removed,
    /// Changed meanwhile by someone else: left to them.
    Skip,
}

/// Tells whether a release exists (the release service answers).
pub trait ReleaseLookup: Send + Sync {
    /// `Some(true)`: it exists; `Some(false)`: it does not; `None`: cannot
    /// tell now (its routes are then left alone).
    fn is_live<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Option<bool>>;
}

/// Reconciles once now, then every `interval` (never when zero), for as
/// long as `lookup` (the running service) lives.
pub fn spawn_reconciler<L: ReleaseLookup + 'static>(
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
    pub async fn reconcile(&self, lookup: &dyn ReleaseLookup) -> Result<ReconcileReport, ApiError> {
        let routes = self.routes()?;
        let mut report = ReconcileReport::default();
        let mut active = Vec::new();
        let mut removing = Vec::new();
        let mut leaving_tunnel = Vec::new();
        for record in routes.store.list(None).await? {
            let hostname = record.hostname.clone();
            let sorted = if record.state == RouteState::Removing {
                Ok(Sorted::Remove(record))
            } else if self.owner_is_gone(lookup, &record).await {
                self.give_up(routes, &record).await
            } else if record.backend != routes.backend {
                self.move_away(routes, &record).await
            } else {
                Ok(Sorted::Apply(record))
            };
            match sorted {
                Ok(Sorted::Apply(record)) => active.push(record),
                Ok(Sorted::Remove(record)) => removing.push(record),
                Ok(Sorted::LeaveTunnel(record)) => leaving_tunnel.push(record),
                Ok(Sorted::Removed) => report.removed.push(hostname),
                Ok(Sorted::Skip) => {}
                Err(error) => {
                    tracing::warn!(%hostname, %error, "a route could not be reconciled");
                    report.failed.push(hostname);
                }
            }
        }
        let mut ready = Vec::with_capacity(active.len());
        for record in active {
            match self.activate(routes, &record).await {
                Ok(activated) => ready.push(activated),
                Err(error) => {
                    tracing::warn!(hostname = %record.hostname, %error, "a pending route could not be checked");
                    report.failed.push(record.hostname.clone());
                }
            }
        }
        let synced = match &routes.shared {
            Some(shared) => match shared.sync().await {
                Ok(_) => true,
                Err(error) => {
                    tracing::warn!(%error, "the shared tunnel's configuration could not be synced");
                    false
                }
            },
            None => false,
        };
        for record in leaving_tunnel {
            match self.land(routes, &record, synced).await {
                Ok(Some(landed)) => ready.push(landed),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(hostname = %record.hostname, %error, "a route could not leave the tunnel");
                    report.failed.push(record.hostname.clone());
                }
            }
        }
        let all: Vec<RouteRecord> = ready.iter().chain(&removing).cloned().collect();
        let dns = match (&routes.shared, synced) {
            (Some(shared), true) => match shared.dns_records(&all).await {
                Ok(found) => Some(found),
                Err(error) => {
                    tracing::warn!(%error, "the DNS records could not be listed");
                    None
                }
            },
            _ => None,
        };
        for record in &ready {
            let ours = dns.as_ref().map(|(ours, _)| ours.as_slice());
            match self.repair(routes, record, synced, ours).await {
                Ok(true) => report.applied.push(record.hostname.clone()),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(hostname = %record.hostname, %error, "a route could not be put in place");
                    report.failed.push(record.hostname.clone());
                }
            }
        }
        for record in &removing {
            match self.finish_removal(routes, record, synced).await {
                Ok(()) => report.removed.push(record.hostname.clone()),
                Err(error) => {
                    tracing::warn!(hostname = %record.hostname, %error, "a route could not be removed");
                    report.failed.push(record.hostname.clone());
                }
            }
        }
        if let (Some(shared), Some((_, orphans))) = (&routes.shared, &dns) {
            for orphan in orphans {
                // Made since the records were listed (a record is always
                // made before its CNAME): not an orphan.
                if self.recorded(routes, &orphan.name).await {
                    continue;
                }
                match shared.delete_dns_record(orphan).await {
                    Ok(()) => report.orphaned_dns_removed.push(orphan.name.clone()),
                    Err(error) => {
                        tracing::warn!(name = %orphan.name, %error, "an orphaned DNS record could not be deleted");
                        report.failed.push(orphan.name.clone());
                    }
                }
            }
        }
        if let Some(tunnels) = &self.0.tunnels {
            match tunnels.orphaned_dns().await {
                Ok(orphans) => {
                    for orphan in orphans {
                        match tunnels.delete_dns(&orphan.id).await {
                            Ok(()) => report.orphaned_dns_removed.push(orphan.name),
                            Err(error) => {
                                tracing::warn!(name = %orphan.name, %error, "a deleted tunnel's DNS record could not be deleted");
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "the tunnels' DNS records could not be checked")
                }
            }
        }
        Ok(report)
    }

    /// True when the route's release is known to be gone (its namespace
    /// too counts).
    async fn owner_is_gone(&self, lookup: &dyn ReleaseLookup, record: &RouteRecord) -> bool {
        let Some(owner) = &record.owner else {
            return false;
        };
        match lookup.is_live(&owner.namespace, &owner.name).await {
            Some(live) => !live,
            // E.g. the namespace (and our rights in it) is gone.
            None => self
                .namespace_exists(&owner.namespace)
                .await
                .is_ok_and(|exists| !exists),
        }
    }

    /// The route of a gone release: a pending claim is deleted now (nothing
    /// of it was put in place), another is marked `removing`.
    async fn give_up(&self, routes: &Routes, record: &RouteRecord) -> Result<Sorted, RouteError> {
        if record.state == RouteState::Pending {
            routes.store.delete(record).await?;
            return Ok(Sorted::Removed);
        }
        let marked = routes
            .store
            .update(&record.subdomain, |r| {
                if r.owner != record.owner || r.state != RouteState::Active {
                    return false;
                }
                r.state = RouteState::Removing;
                r.applied = false;
                true
            })
            .await?;
        Ok(marked.map_or(Sorted::Skip, Sorted::Remove))
    }

    /// A route made with another backend than the configured one: out of
    /// its Ingress now and onto the tunnel as a pending claim (the tunnel
    /// may route the hostname for someone else); or marked to leave the
    /// tunnel (the sync drops its rule, [`Self::land`] does the rest).
    async fn move_away(&self, routes: &Routes, record: &RouteRecord) -> Result<Sorted, RouteError> {
        let (old, new) = (record.backend, routes.backend);
        if old == ExposureBackend::Cloudflare && routes.shared.is_some() {
            let marked = routes
                .store
                .update(&record.subdomain, |r| {
                    if r.owner != record.owner || r.backend != old || r.state != RouteState::Active
                    {
                        return false;
                    }
                    r.state = RouteState::Removing;
                    r.applied = false;
                    true
                })
                .await?;
            return Ok(marked.map_or(Sorted::Skip, Sorted::LeaveTunnel));
        }
        match old {
            ExposureBackend::Ingress => routes.ingress.remove(record).await?,
            ExposureBackend::Cloudflare => {
                tracing::warn!(hostname = %record.hostname, "the route was made with Cloudflare, whose settings are gone: its rule and DNS record stay");
            }
            ExposureBackend::None => {}
        }
        let moved = routes
            .store
            .update(&record.subdomain, |r| {
                if r.owner != record.owner || r.backend != old {
                    return false;
                }
                r.backend = new;
                r.applied = false;
                if new == ExposureBackend::Cloudflare {
                    r.state = RouteState::Pending;
                }
                true
            })
            .await?;
        Ok(moved.map_or(Sorted::Skip, Sorted::Apply))
    }

    /// A route that left the tunnel (its rule dropped by the sync): its
    /// CNAME deleted, then recorded on the configured backend.
    async fn land(
        &self,
        routes: &Routes,
        record: &RouteRecord,
        synced: bool,
    ) -> Result<Option<RouteRecord>, RouteError> {
        let shared = routes.shared.as_ref().ok_or(RouteError::Off)?;
        if !synced {
            return Err(RouteError::Busy);
        }
        shared.remove_dns(record).await?;
        let backend = routes.backend;
        Ok(routes
            .store
            .update(&record.subdomain, |r| {
                if r.owner != record.owner || r.state != RouteState::Removing {
                    return false;
                }
                r.backend = backend;
                r.state = RouteState::Active;
                r.dns_record_id = None;
                true
            })
            .await?)
    }

    /// Whether a route record names `hostname` now (when unsure: yes).
    async fn recorded(&self, routes: &Routes, hostname: &str) -> bool {
        let Some(subdomain) = hostname
            .strip_suffix(&format!(".{}", self.domain()))
            .and_then(|label| super::names::Subdomain::parse(label).ok())
        else {
            return false;
        };
        match routes.store.get(&subdomain).await {
            Ok(record) => record.is_some_and(|r| r.hostname == hostname),
            Err(_) => true,
        }
    }

    /// Puts an active route in place again when it is not (or not wholly);
    /// true when it was not applied before.
    async fn repair(
        &self,
        routes: &Routes,
        record: &RouteRecord,
        synced: bool,
        dns: Option<&[super::cloudflare::DnsRecord]>,
    ) -> Result<bool, RouteError> {
        let dns_record_id = match record.backend {
            ExposureBackend::Cloudflare => {
                let shared = routes.shared.as_ref().ok_or(RouteError::Off)?;
                if !synced {
                    return Err(RouteError::Busy);
                }
                match dns {
                    Some(ours) => shared.repair_dns(record, ours).await?,
                    None if shared.has_dns() => return Err(RouteError::Busy),
                    None => None,
                }
            }
            ExposureBackend::Ingress => {
                routes.ingress.apply(record).await?;
                None
            }
            ExposureBackend::None => None,
        };
        if record.applied && record.dns_record_id == dns_record_id {
            return Ok(false);
        }
        let marked = super::mark_applied(routes, record, dns_record_id).await?;
        Ok(marked.is_some() && !record.applied)
    }

    /// Takes a route being removed out of its backend and deletes its record.
    async fn finish_removal(
        &self,
        routes: &Routes,
        record: &RouteRecord,
        synced: bool,
    ) -> Result<(), RouteError> {
        match record.backend {
            ExposureBackend::Cloudflare => {
                let shared = routes.shared.as_ref().ok_or(RouteError::Off)?;
                if !synced {
                    return Err(RouteError::Busy);
                }
                shared.remove_dns(record).await?;
            }
            ExposureBackend::Ingress => routes.ingress.remove(record).await?,
            ExposureBackend::None => {}
        }
        routes.store.delete(record).await?;
        Ok(())
    }
}
