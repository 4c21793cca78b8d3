//! What the earlier (Python) operator left in the shared tunnel: rules that
//! no route record names — its routes `{release}-{namespace suffix}`, its
//! MCP routes `{…}-mcp`, the platform's subdomains (`paas-cs-…`) — and
//! CNAMEs to the tunnel without a comment. It kept no record, so these are
//! found by shape and taken only with evidence of whose they are: the
//! migration adopts them as a release's routes; uninstall and namespace
//! deletion remove a release's.

use serde::Serialize;

use super::backends::cloudflare::{ROUTE_COMMENT, SharedTunnel};
use super::cloudflare::DnsRecord;
use super::error::RouteError;
use super::lifecycle::Event;
use super::names::Subdomain;
use super::service::{ExposureService, Routes};
use super::store::{ReleaseRef, RouteKind, RouteRecord, RouteState};
use crate::config::ExposureBackend;
use crate::model::exposure::RouteRule;
use crate::names::{ReleaseName, TenantNamespace};

/// A rule under our domain that no record names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnrecordedRule {
    pub(crate) subdomain: String,
    pub(crate) hostname: String,
    pub(crate) service_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    /// The Service it routes to, when it routes into the cluster.
    pub(crate) target: Option<ClusterTarget>,
    pub(crate) cname: CnameState,
}

/// `http://{service}.{namespace}.svc.cluster.local:{port}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ClusterTarget {
    pub(crate) service: String,
    pub(crate) namespace: String,
    pub(crate) port: u16,
}

/// The DNS record at a rule's hostname.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CnameState {
    /// No zone is configured: no DNS records are made.
    NoZone,
    Missing,
    /// A CNAME to the tunnel without a comment: the earlier operator's.
    Earlier,
    /// Ours already (a route of ours made it, its record since lost).
    Ours,
    /// Someone else's record: the hostname is not ours to take.
    Foreign,
}

/// A CNAME to the tunnel without a comment whose hostname has no rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrphanCname {
    pub(crate) id: String,
    pub(crate) name: String,
}

/// Reads a rule's service URL as a Service of the cluster.
pub(crate) fn cluster_target(url: &str) -> Option<ClusterTarget> {
    let rest = url.strip_prefix("http://")?;
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':')?;
    let (service, namespace) = host.strip_suffix(".svc.cluster.local")?.split_once('.')?;
    (!service.is_empty() && !namespace.is_empty() && !namespace.contains('.')).then(|| {
        ClusterTarget {
            service: service.to_owned(),
            namespace: namespace.to_owned(),
            port: port.parse().unwrap_or_default(),
        }
    })
}

impl ExposureService {
    /// The shared tunnel, when routes are made there.
    fn shared_routes(&self) -> Option<(&Routes, &SharedTunnel)> {
        let routes = self.0.routes.as_ref()?;
        Some((routes, routes.earlier.as_deref()?))
    }

    /// Every rule under our domain without a record (`None` when routes are
    /// not on the shared tunnel), with the DNS record at its hostname.
    pub(crate) async fn unrecorded_rules(&self) -> Result<Option<Vec<UnrecordedRule>>, RouteError> {
        let Some((routes, shared)) = self.shared_routes() else {
            return Ok(None);
        };
        let recorded: Vec<String> = routes
            .store
            .list(None)
            .await?
            .into_iter()
            .map(|r| r.hostname)
            .collect();
        let suffix = format!(".{}", self.0.domain);
        let mut found = Vec::new();
        for rule in shared.rules().await? {
            let Some(hostname) = rule.hostname else {
                continue;
            };
            let subdomain = hostname
                .strip_suffix(&suffix)
                .and_then(|s| Subdomain::parse(s).ok())
                .filter(|s| s.hostname(&self.0.domain) == hostname);
            let Some(subdomain) = subdomain else {
                continue;
            };
            if recorded.contains(&hostname) {
                continue;
            }
            found.push(UnrecordedRule {
                subdomain: subdomain.to_string(),
                cname: cname_state(shared, &hostname).await?,
                target: cluster_target(&rule.service),
                hostname,
                service_url: rule.service,
                path: rule.path,
            });
        }
        Ok(Some(found))
    }

    /// CNAMEs to the tunnel without a comment whose hostname no rule routes
    /// (they serve nothing; left for an admin).
    pub(crate) async fn orphan_cnames(&self) -> Result<Vec<OrphanCname>, RouteError> {
        let Some((_, shared)) = self.shared_routes() else {
            return Ok(Vec::new());
        };
        let routed: Vec<String> = shared
            .rules()
            .await?
            .into_iter()
            .filter_map(|r| r.hostname)
            .collect();
        Ok(shared
            .uncommented_cnames()
            .await?
            .into_iter()
            .filter(|r| !routed.contains(&r.name))
            .map(|r| OrphanCname {
                id: r.id,
                name: r.name,
            })
            .collect())
    }

    /// Records an unrecorded rule as `owner`'s route (the caller has the
    /// evidence) and puts it in place: the rule stays as it is, and the
    /// earlier operator's CNAME gets our comment (or a CNAME is made).
    pub(crate) async fn adopt_route(
        &self,
        owner: ReleaseRef,
        rule: &UnrecordedRule,
        kind: RouteKind,
    ) -> Result<RouteRecord, RouteError> {
        let (routes, shared) = self.shared_routes().ok_or(RouteError::Off)?;
        shared.check_dns_free(&rule.hostname).await?;
        let record = RouteRecord {
            subdomain: Subdomain::parse(&rule.subdomain)?,
            hostname: rule.hostname.clone(),
            service_url: rule.service_url.clone(),
            path: rule.path.clone(),
            owner: Some(owner),
            kind,
            backend: ExposureBackend::Cloudflare,
            state: RouteState::Active,
            applied: false,
            dns_record_id: None,
            version: None,
        };
        match routes.store.create(&record).await? {
            Ok(created) => self.put_in_place(routes, &created).await,
            Err(_) => Err(RouteError::HostnameTaken(rule.hostname.clone())),
        }
    }

    /// After a release is uninstalled (or found gone, or its namespace
    /// deleted): the routes the earlier operator made for it, which it kept
    /// no record of, are taken over and removed with their CNAME to the
    /// tunnel, each only with evidence that it is the release's:
    ///
    /// - at `subdomain` (the platform's `?subdomain=`; without it the
    ///   earlier operator's default `{release}-{namespace suffix}`) and
    ///   that `-mcp`: a rule routing into the release's namespace;
    /// - at `{release}-{namespace suffix}-mcp`, where it always put the MCP
    ///   route: a rule routing to the release's `{release}-mcp` Service.
    ///
    /// Anything recorded, or routing elsewhere, is left alone.
    pub(crate) async fn remove_earlier_routes(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        prefix: &str,
        subdomain: Option<&Subdomain>,
    ) {
        let Some((routes, shared)) = self.shared_routes() else {
            return;
        };
        let rules = match shared.rules().await {
            Ok(rules) => rules,
            Err(error) => {
                tracing::warn!(%namespace, release = %name, %error, "the earlier operator's routes could not be looked for");
                return;
            }
        };
        for (subdomain, kind, evidence) in earlier_routes(namespace, name, prefix, subdomain) {
            let outcome = self
                .take_over(
                    routes,
                    shared,
                    &rules,
                    namespace,
                    name,
                    subdomain.clone(),
                    kind,
                    |url| url.contains(&evidence),
                )
                .await;
            log_taken_over(namespace, name, &subdomain, outcome);
        }
    }

    /// Takes over and removes one unrecorded route (among `rules`) whose
    /// rule's service `routes_to` accepts; true when there was one.
    #[expect(clippy::too_many_arguments, reason = "one call per evidence rule")]
    async fn take_over(
        &self,
        routes: &Routes,
        shared: &SharedTunnel,
        rules: &[RouteRule],
        namespace: &TenantNamespace,
        name: &ReleaseName,
        subdomain: Subdomain,
        kind: RouteKind,
        routes_to: impl Fn(&str) -> bool,
    ) -> Result<bool, RouteError> {
        if routes.store.get(&subdomain).await?.is_some() {
            return Ok(false);
        }
        let hostname = subdomain.hostname(&self.0.domain);
        let Some(rule) = rules
            .iter()
            .find(|r| r.hostname.as_deref() == Some(hostname.as_str()) && routes_to(&r.service))
        else {
            return Ok(false);
        };
        let rule = rule.clone();
        let record = RouteRecord {
            subdomain,
            hostname: hostname.clone(),
            service_url: rule.service,
            path: rule.path,
            owner: Some(ReleaseRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
            }),
            kind,
            backend: ExposureBackend::Cloudflare,
            state: RouteState::Removing,
            applied: false,
            dns_record_id: None,
            version: None,
        };
        let Ok(record) = routes.store.create(&record).await? else {
            return Ok(false);
        };
        shared.sync().await?;
        shared.remove_legacy_dns(&hostname).await?;
        routes.store.advance(&record, &Event::Removed).await?;
        Ok(true)
    }
}

/// Where the earlier operator may have routed release `name`, what kind of
/// route each is, and what its rule's service must contain to be the
/// release's. The first of two candidates at one name wins.
fn earlier_routes(
    namespace: &TenantNamespace,
    name: &ReleaseName,
    prefix: &str,
    subdomain: Option<&Subdomain>,
) -> Vec<(Subdomain, RouteKind, String)> {
    let generated = Subdomain::generated(namespace, name, prefix).ok();
    let into_namespace = format!(".{namespace}.svc.cluster.local:");
    let mcp_service = format!("http://{name}-mcp.{namespace}.svc.cluster.local:");
    let mut candidates = Vec::new();
    if let Some(named) = subdomain.or(generated.as_ref()) {
        candidates.push((named.clone(), RouteKind::App, into_namespace.clone()));
        candidates.push((named.mcp(), RouteKind::Mcp, into_namespace));
    }
    if let Some(generated) = &generated {
        candidates.push((generated.mcp(), RouteKind::Mcp, mcp_service));
    }
    let mut seen = Vec::new();
    candidates.retain(|(subdomain, ..)| {
        let first = !seen.contains(subdomain);
        seen.push(subdomain.clone());
        first
    });
    candidates
}

async fn cname_state(shared: &SharedTunnel, hostname: &str) -> Result<CnameState, RouteError> {
    if !shared.has_dns() {
        return Ok(CnameState::NoZone);
    }
    let records = shared.dns_at(hostname).await?;
    let ours = |r: &&DnsRecord| r.comment.as_deref() == Some(ROUTE_COMMENT);
    Ok(if records.is_empty() {
        CnameState::Missing
    } else if records.iter().any(|r| ours(&r)) {
        CnameState::Ours
    } else if records.iter().all(|r| shared.is_earlier_cname(r)) {
        CnameState::Earlier
    } else {
        CnameState::Foreign
    })
}

fn log_taken_over(
    namespace: &TenantNamespace,
    name: &ReleaseName,
    subdomain: &Subdomain,
    outcome: Result<bool, RouteError>,
) {
    match outcome {
        Ok(true) => {
            tracing::info!(%namespace, release = %name, %subdomain, "the earlier operator's route removed")
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(%namespace, release = %name, %subdomain, %error, "the earlier operator's route could not be removed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_operators_route_names_of_a_release() {
        let namespace = TenantNamespace::parse("paas-ws-3f9a0c1d", "paas-ws-").unwrap();
        let name = ReleaseName::parse("svc-1a2b3c4d").unwrap();
        let named = |subdomain: Option<&str>| -> Vec<(String, String)> {
            let subdomain = subdomain.map(|s| Subdomain::parse(s).unwrap());
            earlier_routes(&namespace, &name, "paas-ws-", subdomain.as_ref())
                .into_iter()
                .map(|(s, _, evidence)| (s.to_string(), evidence))
                .collect()
        };
        let into = ".paas-ws-3f9a0c1d.svc.cluster.local:".to_owned();
        let mcp = "http://svc-1a2b3c4d-mcp.paas-ws-3f9a0c1d.svc.cluster.local:".to_owned();
        // The platform's subdomain: it and its -mcp, and the MCP route the
        // earlier operator really made (under its default name).
        assert_eq!(
            named(Some("paas-cs-1-2")),
            [
                ("paas-cs-1-2".to_owned(), into.clone()),
                ("paas-cs-1-2-mcp".to_owned(), into.clone()),
                ("svc-1a2b3c4d-3f9a0c1d-mcp".to_owned(), mcp),
            ]
        );
        // Without one: its default name, and that -mcp (once).
        assert_eq!(
            named(None),
            [
                ("svc-1a2b3c4d-3f9a0c1d".to_owned(), into.clone()),
                ("svc-1a2b3c4d-3f9a0c1d-mcp".to_owned(), into),
            ]
        );
    }

    #[test]
    fn a_rules_service_is_read_as_a_cluster_service() {
        assert_eq!(
            cluster_target("http://svc-1-mcp.paas-ws-3f9a0c1d.svc.cluster.local:3000"),
            Some(ClusterTarget {
                service: "svc-1-mcp".into(),
                namespace: "paas-ws-3f9a0c1d".into(),
                port: 3000
            })
        );
        for other in [
            "http://foreign.example:80",
            "https://a.b.svc.cluster.local:443",
            "http_status:404",
            "http://a.b.c.svc.cluster.local:80",
            "http://a.b.svc.cluster.local",
        ] {
            assert_eq!(cluster_target(other), None, "{other}");
        }
    }
}
