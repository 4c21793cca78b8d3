//! The `cloudflare` backend: every route is a rule in one shared, remotely
//! managed tunnel's configuration, and a proxied CNAME to that tunnel.
//!
//! The configuration is one document that every replica edits, and
//! Cloudflare has no optimistic concurrency on it. So the document is made
//! a function of the route records: [`SharedTunnel::sync`] reads every
//! record and the document, and writes the document with exactly the rules
//! the records want (see [`super::document`]). Syncs are serialised across
//! replicas by a Lease in the operator's namespace
//! (`paas-operator.tunnel-<id>`), and within a replica by a mutex that also
//! coalesces: requests that queued while one sync ran are all served by the
//! next one. A write whose resulting version is not the one read plus one
//! (someone edited without the Lease) is followed by a fresh read and, if
//! our rules are missing, another write.
//!
//! ```text
//!  route record written ─► sync(): Lease ─► list records ─► GET config
//!      ─► edit (ours in place, foreign untouched, catch-all last)
//!      ─► PUT if changed ─► version = read + 1? else read again ─► Lease back
//! ```
//! DNS records are one per route and need no Lease: ours carry the comment
//! [`ROUTE_COMMENT`], so they are told from anyone else's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::Client;

use crate::config::ExposureBackend;
use crate::exposure::backend::{Claim, RouteBackend};
use crate::exposure::cloudflare::document::{self, rule_of, wants};
use crate::exposure::cloudflare::{
    CfError, Cloudflare, DnsRecord, MAX_ATTEMPTS, MAX_RETRY_AFTER, cname_body, tunnel_target,
};
use crate::exposure::error::RouteError;
use crate::exposure::store::{RouteRecord, RouteStore};
use crate::kube::lease::{Identity, LeaseTiming, ReleaseLeases};
use crate::model::exposure::RouteRule;

/// The comment on every DNS record a route of ours made.
pub(crate) const ROUTE_COMMENT: &str = "paas-operator route";
/// How many times a sync writes again when someone else wrote in between.
const MAX_WRITES: usize = 3;

struct SyncState {
    /// Requests up to this number were served by the last sync.
    covered: u64,
    last: Option<Result<(), RouteError>>,
}

/// The shared tunnel and its DNS records.
pub(crate) struct SharedTunnel {
    cloudflare: Cloudflare,
    tunnel: String,
    zone: Option<String>,
    domain: String,
    store: RouteStore,
    client: Client,
    lease_namespace: String,
    lease_name: String,
    lease_duration: Duration,
    lease_wait: Duration,
    identity: String,
    acquisitions: AtomicU64,
    requested: AtomicU64,
    state: tokio::sync::Mutex<SyncState>,
}

/// How the shared tunnel is reached and where its Lease lives.
pub(crate) struct SharedSettings {
    pub(crate) tunnel: String,
    pub(crate) zone: Option<String>,
    pub(crate) domain: String,
    pub(crate) lease_namespace: String,
    /// Unique per process.
    pub(crate) identity: String,
    /// How long one Cloudflare call may take (the Lease covers a few).
    pub(crate) call_timeout: Duration,
}

impl SharedTunnel {
    pub(crate) fn new(
        cloudflare: Cloudflare,
        store: RouteStore,
        client: Client,
        settings: SharedSettings,
    ) -> Self {
        // A sync is a few calls, each retried: the Lease outlives that (it
        // is renewed while held), and a waiter waits for as long.
        let per_call = settings.call_timeout * MAX_ATTEMPTS + MAX_RETRY_AFTER;
        Self {
            cloudflare,
            lease_name: format!("tunnel-{}", settings.tunnel),
            tunnel: settings.tunnel,
            zone: settings.zone.filter(|z| !z.is_empty()),
            domain: settings.domain,
            store,
            client,
            lease_namespace: settings.lease_namespace,
            lease_duration: Duration::from_secs(30),
            lease_wait: per_call * 2,
            identity: settings.identity,
            acquisitions: AtomicU64::new(0),
            requested: AtomicU64::new(0),
            state: tokio::sync::Mutex::new(SyncState {
                covered: 0,
                last: None,
            }),
        }
    }

    pub(crate) fn has_dns(&self) -> bool {
        self.zone.is_some()
    }

    /// Makes the document what the records want. Waits for a sync that
    /// starts after this call (which covers every record written before
    /// it); concurrent callers share one.
    pub(crate) async fn sync(&self) -> Result<(), RouteError> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut state = self.state.lock().await;
        if state.covered >= ticket
            && let Some(last) = &state.last
        {
            return last.clone();
        }
        let covers = self.requested.load(Ordering::SeqCst);
        let outcome = self.sync_under_lease().await;
        state.covered = covers;
        state.last = Some(outcome.clone());
        outcome
    }

    async fn sync_under_lease(&self) -> Result<(), RouteError> {
        // A fresh holder identity per acquisition: a Lease given back in
        // the background after a cancelled sync can then never be taken
        // for one of our later holds.
        let n = self.acquisitions.fetch_add(1, Ordering::Relaxed);
        let leases = ReleaseLeases::new(
            self.client.clone(),
            Identity::named(&format!("{}-{n}", self.identity)),
            LeaseTiming {
                ttl: self.lease_duration,
                stop_margin: Duration::from_secs(5),
            },
        );
        let lease = leases
            .acquire(&self.lease_namespace, &self.lease_name, self.lease_wait)
            .await?
            .ok_or(RouteError::Busy)?;
        let outcome = self.sync_held().await;
        lease.release().await;
        outcome
    }

    async fn sync_held(&self) -> Result<(), RouteError> {
        let records = self.store.list(None).await?;
        let wants = wants(&records);
        let mut writes = 0;
        loop {
            let current = self.cloudflare.get_config(&self.tunnel).await?;
            let edited = document::edit(current.config.as_ref(), &wants);
            if !edited.changed {
                return Ok(());
            }
            let written = self
                .cloudflare
                .put_config(&self.tunnel, &edited.document)
                .await?;
            writes += 1;
            if written == current.version + 1 || writes >= MAX_WRITES {
                return Ok(());
            }
            tracing::warn!(
                read = current.version,
                written,
                "the shared tunnel's configuration was written by someone else (without our Lease) while we edited it; reading it again"
            );
        }
    }

    /// Refuses a hostname someone else routes: a rule for it that is not
    /// ours, or a DNS record at it that is not ours (a CNAME to this tunnel
    /// without our comment, left by the earlier operator, is taken over).
    pub(crate) async fn check_foreign(&self, record: &RouteRecord) -> Result<(), RouteError> {
        let current = self.cloudflare.get_config(&self.tunnel).await?;
        if document::foreign_rule(current.config.as_ref(), &record.hostname, &rule_of(record)) {
            return Err(RouteError::HostnameTaken(record.hostname.clone()));
        }
        self.check_dns_free(&record.hostname).await
    }

    /// Refuses a hostname with a DNS record that is someone else's: neither
    /// ours nor a CNAME to this tunnel (the earlier operator's).
    pub(crate) async fn check_dns_free(&self, hostname: &str) -> Result<(), RouteError> {
        let existing = self.dns_at(hostname).await?;
        let target = tunnel_target(&self.tunnel);
        if existing.iter().any(|r| {
            !(is_route_record(r) || (r.kind == "CNAME" && r.content.eq_ignore_ascii_case(&target)))
        }) {
            return Err(RouteError::HostnameTaken(hostname.to_owned()));
        }
        Ok(())
    }

    /// The DNS records at `hostname` (none without a zone).
    pub(crate) async fn dns_at(&self, hostname: &str) -> Result<Vec<DnsRecord>, RouteError> {
        let Some(zone) = &self.zone else {
            return Ok(Vec::new());
        };
        Ok(self
            .cloudflare
            .list_dns(zone, &[("name", hostname)])
            .await?)
    }

    /// The CNAMEs to this tunnel without a comment, under our domain: the
    /// earlier operator's (it never set one).
    pub(crate) async fn uncommented_cnames(&self) -> Result<Vec<DnsRecord>, RouteError> {
        let Some(zone) = &self.zone else {
            return Ok(Vec::new());
        };
        let target = tunnel_target(&self.tunnel);
        let suffix = format!(".{}", self.domain);
        let found = self
            .cloudflare
            .list_dns(zone, &[("type", "CNAME"), ("content", target.as_str())])
            .await?;
        Ok(found
            .into_iter()
            .filter(|r| is_earlier_cname(r, &target) && r.name.ends_with(&suffix))
            .collect())
    }

    /// True when `record` is a CNAME to this tunnel without a comment.
    pub(crate) fn is_earlier_cname(&self, record: &DnsRecord) -> bool {
        is_earlier_cname(record, &tunnel_target(&self.tunnel))
    }

    /// Makes the route's CNAME exist and point at the tunnel; returns its id
    /// (`None` without a zone).
    pub(crate) async fn ensure_dns(
        &self,
        record: &RouteRecord,
    ) -> Result<Option<String>, RouteError> {
        let Some(zone) = &self.zone else {
            return Ok(None);
        };
        let existing = self
            .cloudflare
            .list_dns(zone, &[("name", record.hostname.as_str())])
            .await?;
        Ok(Some(self.converge_dns(zone, record, &existing).await?))
    }

    /// Given the records at the hostname, makes ours right.
    async fn converge_dns(
        &self,
        zone: &str,
        record: &RouteRecord,
        existing: &[DnsRecord],
    ) -> Result<String, RouteError> {
        let target = tunnel_target(&self.tunnel);
        let body = cname_body(&record.hostname, &target, ROUTE_COMMENT);
        let ours = existing.iter().find(|r| is_route_record(r));
        if let Some(ours) = ours {
            if ours.kind == "CNAME" && ours.content.eq_ignore_ascii_case(&target) && ours.proxied {
                return Ok(ours.id.clone());
            }
            return Ok(self.cloudflare.update_dns(zone, &ours.id, &body).await?.id);
        }
        // The earlier operator's CNAME to this tunnel: taken over.
        if let Some(adopted) = existing
            .iter()
            .find(|r| r.kind == "CNAME" && r.content.eq_ignore_ascii_case(&target))
        {
            return Ok(self
                .cloudflare
                .update_dns(zone, &adopted.id, &body)
                .await?
                .id);
        }
        if !existing.is_empty() {
            return Err(RouteError::HostnameTaken(record.hostname.clone()));
        }
        match self.cloudflare.create_dns(zone, &body).await {
            Ok(created) => Ok(created.id),
            // Made meanwhile (another replica's reconcile): look again.
            Err(CfError::Status { status: 400, .. }) => {
                let again = self
                    .cloudflare
                    .list_dns(zone, &[("name", record.hostname.as_str())])
                    .await?;
                match again.iter().find(|r| is_route_record(r)) {
                    Some(ours) => Ok(ours.id.clone()),
                    None => Err(RouteError::HostnameTaken(record.hostname.clone())),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes the route's CNAME(s) of ours; others at the name stay.
    pub(crate) async fn remove_dns(&self, record: &RouteRecord) -> Result<(), RouteError> {
        let Some(zone) = &self.zone else {
            return Ok(());
        };
        let existing = self
            .cloudflare
            .list_dns(zone, &[("name", record.hostname.as_str())])
            .await?;
        for ours in existing.iter().filter(|r| is_route_record(r)) {
            self.cloudflare.delete_dns(zone, &ours.id).await?;
        }
        Ok(())
    }

    /// Deletes the CNAMEs to this tunnel at `hostname` that carry no
    /// comment: the earlier operator's, for a route taken over from it.
    pub(crate) async fn remove_legacy_dns(&self, hostname: &str) -> Result<(), RouteError> {
        let Some(zone) = &self.zone else {
            return Ok(());
        };
        let target = tunnel_target(&self.tunnel);
        let existing = self
            .cloudflare
            .list_dns(zone, &[("name", hostname)])
            .await?;
        for legacy in existing.iter().filter(|r| is_earlier_cname(r, &target)) {
            self.cloudflare.delete_dns(zone, &legacy.id).await?;
        }
        Ok(())
    }

    /// Every DNS record of ours, as claims: in place when it is a proxied
    /// CNAME to this tunnel, orphanable when it points at this tunnel
    /// under our domain.
    async fn dns_claims(&self) -> Result<Vec<Claim>, RouteError> {
        let Some(zone) = &self.zone else {
            return Ok(Vec::new());
        };
        let ours = self
            .cloudflare
            .list_dns(zone, &[("comment.exact", ROUTE_COMMENT)])
            .await?;
        let target = tunnel_target(&self.tunnel);
        let suffix = format!(".{}", self.domain);
        Ok(ours
            .into_iter()
            .filter(is_route_record)
            .map(|r| {
                let to_tunnel = r.content.eq_ignore_ascii_case(&target);
                Claim {
                    in_place: r.kind == "CNAME" && to_tunnel && r.proxied,
                    orphanable: to_tunnel && r.name.ends_with(&suffix),
                    id: r.id,
                    hostname: r.name,
                }
            })
            .collect())
    }

    async fn delete_dns(&self, id: &str) -> Result<(), RouteError> {
        match &self.zone {
            Some(zone) => Ok(self.cloudflare.delete_dns(zone, id).await?),
            None => Ok(()),
        }
    }

    /// The document's rules, foreign ones and the catch-all included.
    pub(crate) async fn rules(&self) -> Result<Vec<RouteRule>, RouteError> {
        let current = self.cloudflare.get_config(&self.tunnel).await?;
        Ok(document::listed(current.config.as_ref()))
    }
}

impl RouteBackend for SharedTunnel {
    fn kind(&self) -> ExposureBackend {
        ExposureBackend::Cloudflare
    }

    /// A rule routes to any URL the input checks allowed.
    fn check_input(&self, _: &RouteRecord) -> Result<(), RouteError> {
        Ok(())
    }

    fn check_claim<'a>(&'a self, record: &'a RouteRecord) -> BoxFuture<'a, Result<(), RouteError>> {
        self.check_foreign(record).boxed()
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), RouteError>> {
        SharedTunnel::sync(self).boxed()
    }

    /// The rule is the sync's; the CNAME is made right here.
    fn apply<'a>(
        &'a self,
        record: &'a RouteRecord,
    ) -> BoxFuture<'a, Result<Option<String>, RouteError>> {
        self.ensure_dns(record).boxed()
    }

    /// The sync dropped the rule; the CNAME goes here.
    fn remove<'a>(&'a self, record: &'a RouteRecord) -> BoxFuture<'a, Result<(), RouteError>> {
        self.remove_dns(record).boxed()
    }

    fn claims(&self) -> BoxFuture<'_, Result<Vec<Claim>, RouteError>> {
        self.dns_claims().boxed()
    }

    fn drop_claim<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), RouteError>> {
        self.delete_dns(&claim.id).boxed()
    }

    fn rules(&self) -> BoxFuture<'_, Result<Vec<RouteRule>, RouteError>> {
        SharedTunnel::rules(self).boxed()
    }
}

fn is_earlier_cname(record: &DnsRecord, target: &str) -> bool {
    record.comment.as_deref().is_none_or(str::is_empty)
        && record.kind == "CNAME"
        && record.content.eq_ignore_ascii_case(target)
}

fn is_route_record(record: &DnsRecord) -> bool {
    record.comment.as_deref() == Some(ROUTE_COMMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_records_are_told_by_their_comment() {
        let dns = |comment: Option<&str>| DnsRecord {
            id: "1".into(),
            name: "a.apps.paas.test".into(),
            kind: "CNAME".into(),
            content: "t.cfargotunnel.com".into(),
            proxied: true,
            comment: comment.map(str::to_owned),
        };
        assert!(is_route_record(&dns(Some(ROUTE_COMMENT))));
        assert!(!is_route_record(&dns(None)));
        assert!(!is_route_record(&dns(Some("paas-operator tunnel"))));
    }
}
