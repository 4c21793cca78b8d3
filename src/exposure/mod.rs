//! Public exposure of releases and dedicated tunnels: the exposure service.
//!
//! ```text
//!  releases/ (under the release's lock)           api/routes.rs, api/tunnels.rs
//!   install + expose ─► claim ─► apply ─┐           /api/routes, /reconcile, /api/tunnels
//!   uninstall, namespace deletion ─► remove         │
//!        ▼                              ▼           ▼
//!  store.rs: one ConfigMap per route (ownership, state) in OPERATOR_NAMESPACE
//!        │ backend (EXPOSURE_BACKEND)
//!        ├─ cloudflare/shared.rs: rules in the shared tunnel (Lease-serialised
//!        │    syncs of one document) + proxied CNAMEs
//!        └─ ingress.rs: an Ingress per route in the release's namespace
//!  tunnels.rs: dedicated tunnels (compensated creation)
//!  reconcile.rs: missing routes made again, gone releases' routes and
//!    orphaned DNS records removed (at start, periodically, on demand)
//! ```
//!
//! A route is claimed by creating its record (`create`: a second claimant
//! gets AlreadyExists and 409), then put in place, then marked `applied`.
//! It is removed by marking it `removing`, taking it out of the backend,
//! and deleting the record last, so a route is never in a backend without
//! a record saying whose it is. Routing failures never fail an install
//! (`route: null`); the record stays and reconciliation repairs it.

pub mod cloudflare;
pub mod discovery;
pub mod earlier;
pub mod ingress;
pub mod names;
mod reconcile;
pub mod store;
pub mod tunnels;

use std::sync::Arc;

use kube::Client;

pub use reconcile::{ReleaseLookup, spawn_reconciler};

use crate::config::{ExposureBackend, ExposureConfig};
use crate::error::{ApiError, Code};
use crate::kube::KubeError;
use crate::model::exposure::{CreateRouteRequest, RouteCreated, RouteList, RouteRule};
use crate::model::{ExposeRequest, RouteInfo};
use crate::names::{ReleaseName, TenantNamespace};
use cloudflare::shared::{SharedSettings, SharedTunnel};
use cloudflare::{CfError, Cloudflare};
use ingress::{IngressRoutes, IngressSettings};
use names::{InputError, Origins, ServiceName, Subdomain, cluster_service_url};
use store::{ReleaseRef, RouteIndex, RouteKind, RouteRecord, RouteState, RouteStore};
use tunnels::Tunnels;

/// Why a route could not be put in place or removed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// Another release, a route of `/api/routes`, or someone outside this
    /// operator routes the hostname.
    #[error("hostname {0} is routed for someone else")]
    HostnameTaken(String),
    /// A Cloudflare call failed.
    #[error(transparent)]
    Cloudflare(#[from] CfError),
    /// Another replica held the shared tunnel's Lease too long.
    #[error("the shared tunnel's configuration stayed locked by another replica")]
    Busy,
    /// A Kubernetes call failed (already logged and converted).
    #[error("{0}")]
    Kube(ApiError),
    /// The route's input is not valid for this backend.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Exposure (or the backend a route was made with) is not configured.
    #[error("exposure is off or its settings are incomplete")]
    Off,
}

impl From<KubeError> for RouteError {
    fn from(error: KubeError) -> Self {
        Self::Kube(error.into())
    }
}

impl From<RouteError> for ApiError {
    fn from(error: RouteError) -> Self {
        match error {
            RouteError::HostnameTaken(hostname) => ApiError::new(
                Code::HostnameTaken,
                format!("Hostname {hostname} is routed for another release or by someone else"),
            ),
            RouteError::Cloudflare(error) => error.into(),
            RouteError::Busy => ApiError::new(
                Code::RoutesBusy,
                "The shared tunnel's configuration is being changed by another replica; try again shortly",
            ),
            RouteError::Kube(error) => error,
            RouteError::Input(error) => error.into(),
            RouteError::Off => ApiError::new(
                Code::ExposureDisabled,
                "Cloudflare integration is not enabled (exposure is off, or the settings of the route's backend are incomplete)",
            ),
        }
    }
}

/// `expose` of an install, validated before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposeSpec {
    pub subdomain: Subdomain,
    pub service_name: Option<ServiceName>,
    pub service_port: Option<u16>,
}

impl ExposeSpec {
    /// `None` when nothing is to be exposed.
    pub fn parse(
        request: Option<&ExposeRequest>,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        prefix: &str,
    ) -> Result<Option<Self>, ApiError> {
        let Some(request) = request.filter(|r| r.enabled) else {
            return Ok(None);
        };
        let subdomain = match request.subdomain.as_deref() {
            Some(given) => Subdomain::parse(given)?,
            None => Subdomain::generated(namespace, name, prefix)?,
        }
        .for_app()?;
        Ok(Some(Self {
            subdomain,
            service_name: request
                .service_name
                .as_deref()
                .map(ServiceName::parse)
                .transpose()?,
            service_port: request.service_port.map(names::service_port).transpose()?,
        }))
    }
}

/// The routes part of the service (absent when exposure is off).
struct Routes {
    backend: ExposureBackend,
    client: Client,
    store: RouteStore,
    index: RouteIndex,
    /// Whenever the Cloudflare routing settings are complete, also with
    /// another backend (to clean up after switching).
    shared: Option<SharedTunnel>,
    ingress: IngressRoutes,
}

struct Inner {
    domain: String,
    routes: Option<Routes>,
    tunnels: Option<Tunnels>,
}

/// Public exposure and tunnels; cheap to clone.
#[derive(Clone)]
pub struct ExposureService(Arc<Inner>);

impl ExposureService {
    /// Exposure and tunnels off (handler tests).
    pub fn disabled() -> Self {
        Self(Arc::new(Inner {
            domain: String::new(),
            routes: None,
            tunnels: None,
        }))
    }

    /// Builds the service from the configuration; `identity` must be unique
    /// per process (it holds the shared tunnel's Lease). `watches` is the
    /// client for the route records' watch (no read timeout).
    pub fn start(
        client: Client,
        watches: Client,
        config: &ExposureConfig,
        identity: &str,
    ) -> anyhow::Result<Self> {
        let backend = config.backend()?;
        let domain = config.domain().to_owned();
        let cloudflare = match config.token() {
            Some(token) if config.tunnels_enabled() => Some(Cloudflare::new(
                &config.cloudflare_api_base,
                token,
                &config.cloudflare_account_id,
                config.cloudflare_timeout,
            )?),
            _ => None,
        };
        let zone = Some(config.cloudflare_zone_id.clone()).filter(|z| !z.is_empty());
        let tunnels = cloudflare
            .clone()
            .map(|cloudflare| Tunnels::new(cloudflare, zone.clone()));
        let routes = if backend == ExposureBackend::None {
            None
        } else {
            let store = RouteStore::new(client.clone(), &config.operator_namespace);
            let shared = match &cloudflare {
                Some(cloudflare)
                    if !config.cloudflare_tunnel_id.is_empty()
                        && !config.cloudflare_domain.is_empty() =>
                {
                    Some(SharedTunnel::new(
                        cloudflare.clone(),
                        store.clone(),
                        client.clone(),
                        SharedSettings {
                            tunnel: config.cloudflare_tunnel_id.clone(),
                            zone: zone.clone(),
                            domain: domain.clone(),
                            lease_namespace: config.operator_namespace.clone(),
                            identity: identity.to_owned(),
                            call_timeout: config.cloudflare_timeout,
                        },
                    ))
                }
                _ => None,
            };
            let ingress = IngressRoutes::new(
                client.clone(),
                IngressSettings {
                    class: config.ingress_class.clone(),
                    annotations: config.ingress_annotations()?,
                    tls_secret: config.ingress_tls_secret.clone(),
                },
            );
            Some(Routes {
                backend,
                client,
                index: store.index(watches),
                store,
                shared,
                ingress,
            })
        };
        tracing::info!(
            backend = backend.as_str(),
            domain = %domain,
            tunnels = tunnels.is_some(),
            "exposure"
        );
        Ok(Self(Arc::new(Inner {
            domain,
            routes,
            tunnels,
        })))
    }

    /// True when releases can be exposed (a backend is configured).
    pub fn is_on(&self) -> bool {
        self.0.routes.is_some()
    }

    pub fn domain(&self) -> &str {
        &self.0.domain
    }

    /// The backend in effect.
    pub fn backend(&self) -> ExposureBackend {
        self.0
            .routes
            .as_ref()
            .map_or(ExposureBackend::None, |r| r.backend)
    }

    fn routes(&self) -> Result<&Routes, ApiError> {
        self.0.routes.as_ref().ok_or_else(|| {
            ApiError::new(
                Code::ExposureDisabled,
                "Cloudflare integration is not enabled (exposure is off: EXPOSURE_BACKEND)",
            )
        })
    }

    /// Dedicated tunnels, when a Cloudflare token and account are set.
    pub fn tunnels(&self) -> Result<&Tunnels, ApiError> {
        self.0.tunnels.as_ref().ok_or_else(|| {
            ApiError::new(
                Code::TunnelsDisabled,
                "Cloudflare API token and account ID are required for tunnel management",
            )
        })
    }

    /// Before an install runs: 409 when the subdomain is another's route.
    pub async fn check_free(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        expose: Option<&ExposeSpec>,
    ) -> Result<(), ApiError> {
        let (Some(routes), Some(expose)) = (&self.0.routes, expose) else {
            return Ok(());
        };
        match routes.store.get(&expose.subdomain).await? {
            Some(existing) if !existing.is_owned_by(namespace.as_str(), name.as_str()) => {
                Err(RouteError::HostnameTaken(existing.hostname).into())
            }
            _ => Ok(()),
        }
    }

    /// After a successful install: puts the release's route in place.
    /// Never fails the install: what goes wrong is logged, the route is
    /// then `null`, and reconciliation retries a recorded one.
    pub async fn expose_release(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        expose: Option<&ExposeSpec>,
    ) {
        let (Some(routes), Some(expose)) = (&self.0.routes, expose) else {
            return;
        };
        let target = discovery::find_target(
            &routes.client,
            namespace.as_str(),
            name.as_str(),
            expose.service_name.as_ref(),
            expose.service_port,
        )
        .await;
        let (service, port) = match target {
            Ok(Some(target)) => target,
            Ok(None) => {
                tracing::warn!(%namespace, release = %name, "the release has no Service to expose; route: null");
                return;
            }
            Err(error) => {
                tracing::warn!(%namespace, release = %name, %error, "the release's Services could not be read; route: null");
                return;
            }
        };
        let owner = ReleaseRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let url = cluster_service_url(&service, namespace.as_str(), port);
        if let Err(error) = self
            .expose_route(owner, expose.subdomain.clone(), RouteKind::App, url, None)
            .await
        {
            tracing::warn!(%namespace, release = %name, subdomain = %expose.subdomain, %error, "the release's route could not be put in place; route: null");
        }
    }

    /// After a sidecar with a port is attached: its route
    /// `{generated subdomain}-mcp` (the earlier operator's name, never
    /// `expose.subdomain`) to the sidecar's Service. Returns the public
    /// endpoint `https://{hostname}/mcp`, or `None` when exposure is off or
    /// the route could not be put in place (logged; the attach stands, and
    /// reconciliation retries a recorded route).
    pub async fn expose_mcp(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        prefix: &str,
        service: &str,
        port: u16,
    ) -> Option<String> {
        self.0.routes.as_ref()?;
        let subdomain = match Subdomain::generated(namespace, name, prefix) {
            Ok(subdomain) => subdomain.mcp(),
            Err(error) => {
                tracing::warn!(%namespace, release = %name, %error, "no MCP subdomain for the release");
                return None;
            }
        };
        let owner = ReleaseRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let url = cluster_service_url(service, namespace.as_str(), port);
        match self
            .expose_route(owner, subdomain.clone(), RouteKind::Mcp, url, None)
            .await
        {
            Ok(record) => Some(format!("https://{}/mcp", record.hostname)),
            Err(error) => {
                tracing::warn!(%namespace, release = %name, %subdomain, %error, "the sidecar's route could not be put in place; mcp_endpoint_url: null");
                None
            }
        }
    }

    /// After the sidecar is taken off: removes the release's MCP route.
    pub async fn mcp_gone(&self, namespace: &TenantNamespace, name: &ReleaseName) {
        self.remove_release_routes(namespace, name, Some(RouteKind::Mcp))
            .await;
    }

    /// Claims `subdomain` for `owner` (a release, or `None` for a route of
    /// `/api/routes`) and puts the route in place. The same owner may claim
    /// again (the route is updated); anyone else gets `HostnameTaken`.
    pub async fn expose_route(
        &self,
        owner: impl Into<Option<ReleaseRef>>,
        subdomain: Subdomain,
        kind: RouteKind,
        service_url: String,
        path: Option<String>,
    ) -> Result<RouteRecord, RouteError> {
        let routes = self.0.routes.as_ref().ok_or(RouteError::Off)?;
        let wanted = RouteRecord {
            hostname: subdomain.hostname(&self.0.domain),
            subdomain,
            service_url,
            path,
            owner: owner.into(),
            kind,
            backend: routes.backend,
            state: RouteState::Active,
            applied: false,
            dns_record_id: None,
            version: None,
        };
        if routes.backend == ExposureBackend::Ingress {
            let (namespace, ..) = ingress::target(&wanted)?;
            if wanted
                .owner
                .as_ref()
                .is_some_and(|o| o.namespace != namespace)
            {
                return Err(InputError::ServiceUrl(
                    wanted.service_url,
                    "not in the release's namespace",
                )
                .into());
            }
        }
        let (record, fresh) = self.claim(routes, &wanted).await?;
        match self.put_in_place(routes, &record).await {
            Ok(applied) => Ok(applied),
            Err(RouteError::HostnameTaken(hostname)) if fresh => {
                // Not ours after all (its DNS name is someone else's): give
                // the claim up, and the rule it made.
                if let Err(error) = self.remove_record(routes, &record).await {
                    tracing::warn!(%hostname, %error, "a refused route's record could not be removed; reconciliation will");
                }
                Err(RouteError::HostnameTaken(hostname))
            }
            Err(error) => Err(error),
        }
    }

    /// Records the claim: a new record (after checking that nobody outside
    /// this operator routes the hostname: once recorded, the hostname's
    /// rule is ours and syncs write it), or the owner's existing one
    /// updated. Returns the record and whether it is new.
    async fn claim(
        &self,
        routes: &Routes,
        wanted: &RouteRecord,
    ) -> Result<(RouteRecord, bool), RouteError> {
        let mut existing = routes.store.get(&wanted.subdomain).await?;
        if wanted.kind == RouteKind::Mcp
            && let Some(squatter) = existing.as_ref().filter(|r| r.kind != RouteKind::Mcp)
        {
            // An app's (or `/api/routes`') route on a release's MCP route
            // name, made before such names were reserved: the release's MCP
            // route wins, and that route goes.
            tracing::warn!(hostname = %squatter.hostname, "an app route held a release's MCP route name; removing it for the MCP route");
            self.remove_record(routes, squatter).await?;
            existing = routes.store.get(&wanted.subdomain).await?;
        }
        if existing.is_none() {
            let checked = match wanted.backend {
                ExposureBackend::Cloudflare => shared(routes)?.check_foreign(wanted).await,
                _ => Ok(()),
            };
            let state = match &checked {
                Ok(()) => RouteState::Active,
                Err(RouteError::HostnameTaken(hostname)) => {
                    return Err(RouteError::HostnameTaken(hostname.clone()));
                }
                // Cloudflare could not tell: claimed as pending, checked
                // by reconciliation.
                Err(_) => RouteState::Pending,
            };
            let claim = RouteRecord {
                state,
                ..wanted.clone()
            };
            match routes.store.create(&claim).await? {
                Ok(created) => {
                    checked?;
                    return Ok((created, true));
                }
                Err(claimed_meanwhile) => existing = Some(claimed_meanwhile),
            }
        }
        let Some(existing) = existing else {
            return Err(RouteError::HostnameTaken(wanted.hostname.clone()));
        };
        if existing.owner != wanted.owner || existing.kind != wanted.kind {
            return Err(RouteError::HostnameTaken(existing.hostname));
        }
        let updated = routes
            .store
            .update(&wanted.subdomain, |r| {
                if r.owner != wanted.owner || r.kind != wanted.kind {
                    return false;
                }
                // The backend and hostname stay the recorded ones: moving a
                // route to another backend is reconciliation's (it takes it
                // out of the old one first).
                let changed = r.service_url != wanted.service_url
                    || r.path != wanted.path
                    || r.state == RouteState::Removing;
                if changed {
                    r.service_url.clone_from(&wanted.service_url);
                    r.path.clone_from(&wanted.path);
                    // A pending claim stays pending until checked.
                    if r.state == RouteState::Removing {
                        r.state = RouteState::Active;
                    }
                    r.applied = false;
                }
                true
            })
            .await?;
        match updated {
            Some(updated) => Ok((updated, false)),
            None => Err(RouteError::HostnameTaken(wanted.hostname.clone())),
        }
    }

    /// Puts a recorded route in place through its backend and marks it
    /// applied.
    async fn put_in_place(
        &self,
        routes: &Routes,
        record: &RouteRecord,
    ) -> Result<RouteRecord, RouteError> {
        let record = &self.activate(routes, record).await?;
        let dns_record_id = match record.backend {
            ExposureBackend::Cloudflare => {
                let shared = shared(routes)?;
                shared.sync().await?;
                shared.ensure_dns(record).await?
            }
            ExposureBackend::Ingress => {
                routes.ingress.apply(record).await?;
                None
            }
            ExposureBackend::None => None,
        };
        let marked = mark_applied(routes, record, dns_record_id).await?;
        Ok(marked.unwrap_or_else(|| record.clone()))
    }

    /// Makes a pending claim active once nobody outside this operator is
    /// found routing its hostname; a refused claim's record is deleted (no
    /// rule was ever written for it).
    async fn activate(
        &self,
        routes: &Routes,
        record: &RouteRecord,
    ) -> Result<RouteRecord, RouteError> {
        if record.state != RouteState::Pending {
            return Ok(record.clone());
        }
        match shared(routes)?.check_foreign(record).await {
            Ok(()) => {}
            Err(RouteError::HostnameTaken(hostname)) => {
                routes.store.delete(record).await?;
                return Err(RouteError::HostnameTaken(hostname));
            }
            Err(error) => return Err(error),
        }
        let activated = routes
            .store
            .update(&record.subdomain, |r| {
                if r.owner != record.owner || r.state != RouteState::Pending {
                    return false;
                }
                r.state = RouteState::Active;
                true
            })
            .await?;
        activated.ok_or(RouteError::Busy)
    }

    /// Takes a route out of its backend, then deletes its record. Nothing
    /// happens when the record is no longer this one's (claimed anew).
    async fn remove_record(&self, routes: &Routes, record: &RouteRecord) -> Result<(), RouteError> {
        if let Some(pending) = self.pending_claim(routes, record).await? {
            // Nothing of a pending claim was put in place.
            routes.store.delete(&pending).await?;
            return Ok(());
        }
        let marked = routes
            .store
            .update(&record.subdomain, |r| {
                if r.owner != record.owner
                    || r.kind != record.kind
                    || r.state == RouteState::Pending
                {
                    return false;
                }
                r.state = RouteState::Removing;
                r.applied = false;
                true
            })
            .await?;
        let Some(marked) = marked else {
            return Ok(());
        };
        self.take_out(routes, &marked, marked.backend).await?;
        routes.store.delete(&marked).await?;
        Ok(())
    }

    /// The current record when it is this one's and a pending claim.
    async fn pending_claim(
        &self,
        routes: &Routes,
        record: &RouteRecord,
    ) -> Result<Option<RouteRecord>, RouteError> {
        Ok(routes
            .store
            .get(&record.subdomain)
            .await?
            .filter(|current| {
                current.owner == record.owner
                    && current.kind == record.kind
                    && current.state == RouteState::Pending
            }))
    }

    /// Takes a route out of `backend` (its rule and CNAME, or its Ingress).
    /// The record must no longer want the rule (removing, or moved).
    async fn take_out(
        &self,
        routes: &Routes,
        record: &RouteRecord,
        backend: ExposureBackend,
    ) -> Result<(), RouteError> {
        match backend {
            ExposureBackend::Cloudflare => {
                let shared = shared(routes)?;
                shared.sync().await?;
                shared.remove_dns(record).await
            }
            ExposureBackend::Ingress => routes.ingress.remove(record).await,
            ExposureBackend::None => Ok(()),
        }
    }

    /// The app route of a release after its install (read from the API).
    pub async fn route_after_install(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        expose: Option<&ExposeSpec>,
    ) -> Option<RouteInfo> {
        let (routes, expose) = (self.0.routes.as_ref()?, expose?);
        match routes.store.get(&expose.subdomain).await {
            Ok(record) => record
                .filter(|r| r.is_owned_by(namespace.as_str(), name.as_str()))
                .and_then(|r| r.route_info()),
            Err(error) => {
                tracing::warn!(%error, "the route record could not be read");
                None
            }
        }
    }

    /// The release's route, from our own records (watch-fed).
    pub async fn route_of(&self, namespace: &str, name: &str) -> Option<RouteInfo> {
        let routes = self.0.routes.as_ref()?;
        match routes.index.route_of(namespace, name).await {
            Ok(route) => route,
            Err(error) => {
                tracing::warn!(%error, "the route records could not be read; route: null");
                None
            }
        }
    }

    /// After an uninstall (or finding the release already gone): removes
    /// every route of the release (`{subdomain}-mcp` included), and never
    /// another's.
    pub async fn release_gone(&self, namespace: &TenantNamespace, name: &ReleaseName) {
        self.remove_release_routes(namespace, name, None).await;
    }

    /// Removes the release's routes (of one kind, or all); when they cannot
    /// be listed, the next reconciliation removes them.
    async fn remove_release_routes(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        only: Option<RouteKind>,
    ) {
        let Some(routes) = &self.0.routes else {
            return;
        };
        match routes
            .store
            .of_release(namespace.as_str(), name.as_str())
            .await
        {
            Ok(mut records) => {
                records.retain(|r| only.is_none_or(|kind| r.kind == kind));
                self.remove_all(routes, &records).await;
            }
            Err(error) => {
                tracing::warn!(%namespace, release = %name, %error, "the release's routes could not be listed; reconciliation will remove them");
            }
        }
    }

    /// After a tenant namespace's releases are uninstalled: removes every
    /// route of the namespace.
    pub async fn namespace_gone(&self, namespace: &TenantNamespace) {
        let Some(routes) = &self.0.routes else {
            return;
        };
        match routes.store.of_namespace(namespace.as_str()).await {
            Ok(records) => self.remove_all(routes, &records).await,
            Err(error) => {
                tracing::warn!(%namespace, %error, "the namespace's routes could not be listed; reconciliation will remove them");
            }
        }
    }

    async fn remove_all(&self, routes: &Routes, records: &[RouteRecord]) {
        for record in records {
            match self.remove_record(routes, record).await {
                Ok(()) => tracing::info!(hostname = %record.hostname, "route removed"),
                Err(error) => {
                    tracing::warn!(hostname = %record.hostname, %error, "route not removed now; reconciliation will");
                }
            }
        }
    }

    /// `GET /api/routes`: the shared tunnel's rules (foreign ones and the
    /// catch-all included), or the `ingress` backend's routes.
    pub async fn list_routes(&self) -> Result<RouteList, ApiError> {
        let Some(routes) = &self.0.routes else {
            return Ok(RouteList {
                routes: Vec::new(),
                enabled: false,
                domain: self.0.domain.clone(),
            });
        };
        let rules = match (routes.backend, &routes.shared) {
            (ExposureBackend::Cloudflare, Some(shared)) => shared.rules().await?,
            _ => routes
                .store
                .list(None)
                .await?
                .into_iter()
                .filter(|r| r.state == RouteState::Active && r.backend == routes.backend)
                .map(|r| RouteRule {
                    hostname: Some(r.hostname),
                    service: r.service_url,
                    path: r.path,
                })
                .collect(),
        };
        Ok(RouteList {
            routes: rules,
            enabled: true,
            domain: self.0.domain.clone(),
        })
    }

    /// `POST /api/routes`: a route of no release (upserted). A failing DNS
    /// record does not fail it (reconciliation makes it).
    pub async fn create_route(
        &self,
        request: CreateRouteRequest,
    ) -> Result<RouteCreated, ApiError> {
        self.routes()?;
        let subdomain = Subdomain::parse(&request.subdomain)?.for_app()?;
        let service = names::origin_url(&request.service_url, Origins::Web)?;
        let path = request.path.as_deref().map(names::rule_path).transpose()?;
        let outcome = self
            .expose_route(
                None,
                subdomain.clone(),
                RouteKind::Manual,
                service.clone(),
                path.clone(),
            )
            .await;
        match outcome {
            Ok(_) => {}
            Err(RouteError::Cloudflare(error)) if self.rule_is_in(&subdomain).await => {
                tracing::warn!(%subdomain, %error, "the route's DNS record could not be made now; reconciliation will");
            }
            Err(error) => return Err(error.into()),
        }
        Ok(RouteCreated {
            hostname: subdomain.hostname(&self.0.domain),
            service,
            path,
        })
    }

    /// True when the route's rule was written (its record wants it and the
    /// last sync put it in): only DNS is missing.
    async fn rule_is_in(&self, subdomain: &Subdomain) -> bool {
        let Some(routes) = &self.0.routes else {
            return false;
        };
        let Some(shared) = &routes.shared else {
            return false;
        };
        let hostname = subdomain.hostname(&self.0.domain);
        match shared.rules().await {
            Ok(rules) => rules
                .iter()
                .any(|r| r.hostname.as_deref() == Some(hostname.as_str())),
            Err(_) => false,
        }
    }

    /// `DELETE /api/routes/{subdomain}`: removes a route of ours (a
    /// release's too); a hostname nobody routes is fine; one someone else
    /// routes is refused (409). Returns the hostname.
    pub async fn delete_route(&self, subdomain: &Subdomain) -> Result<String, ApiError> {
        let routes = self.routes()?;
        let hostname = subdomain.hostname(&self.0.domain);
        if let Some(record) = routes.store.get(subdomain).await? {
            self.remove_record(routes, &record).await?;
            return Ok(hostname);
        }
        if let (ExposureBackend::Cloudflare, Some(shared)) = (routes.backend, &routes.shared)
            && shared
                .rules()
                .await?
                .iter()
                .any(|r| r.hostname.as_deref() == Some(hostname.as_str()))
        {
            return Err(RouteError::HostnameTaken(hostname).into());
        }
        Ok(hostname)
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
}

/// Marks a route applied with the DNS record it got, unless its record
/// changed meanwhile (another owner, removal begun, or a new target): then
/// `None`, and the next reconciliation looks at it again.
async fn mark_applied(
    routes: &Routes,
    record: &RouteRecord,
    dns_record_id: Option<String>,
) -> Result<Option<RouteRecord>, RouteError> {
    Ok(routes
        .store
        .update(&record.subdomain, |r| {
            if r.owner != record.owner
                || r.state != RouteState::Active
                || r.service_url != record.service_url
            {
                return false;
            }
            r.applied = true;
            r.dns_record_id.clone_from(&dns_record_id);
            true
        })
        .await?)
}

fn shared(routes: &Routes) -> Result<&SharedTunnel, RouteError> {
    routes.shared.as_ref().ok_or(RouteError::Off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExposeRequest;

    fn ids() -> (TenantNamespace, ReleaseName) {
        (
            TenantNamespace::parse("paas-ws-3f9a0c1d", "paas-ws-").unwrap(),
            ReleaseName::parse("svc-1a2b3c4d").unwrap(),
        )
    }

    fn parse(json: serde_json::Value) -> Result<Option<ExposeSpec>, ApiError> {
        let (namespace, name) = ids();
        let request: ExposeRequest = serde_json::from_value(json).unwrap();
        ExposeSpec::parse(Some(&request), &namespace, &name, "paas-ws-")
    }

    #[test]
    fn expose_is_validated_before_anything_runs() {
        assert_eq!(parse(serde_json::json!({"subdomain": "x"})).unwrap(), None);
        let spec = parse(serde_json::json!({"enabled": true}))
            .unwrap()
            .unwrap();
        assert_eq!(spec.subdomain.as_str(), "svc-1a2b3c4d-3f9a0c1d");
        let spec = parse(serde_json::json!({"enabled": true, "subdomain": "paas-cs-1", "service_name": "web", "service_port": 8080}))
            .unwrap()
            .unwrap();
        assert_eq!(spec.subdomain.as_str(), "paas-cs-1");
        assert_eq!(spec.service_port, Some(8080));
        for (bad, code) in [
            (
                serde_json::json!({"enabled": true, "subdomain": "a.b"}),
                Code::InvalidSubdomain,
            ),
            (
                serde_json::json!({"enabled": true, "service_name": "Web"}),
                Code::InvalidService,
            ),
            (
                serde_json::json!({"enabled": true, "service_port": 0}),
                Code::InvalidService,
            ),
        ] {
            assert_eq!(parse(bad).unwrap_err().code, code);
        }
        let (namespace, name) = ids();
        assert_eq!(
            ExposeSpec::parse(None, &namespace, &name, "paas-ws-").unwrap(),
            None
        );
    }

    #[test]
    fn route_errors_have_fixed_codes() {
        let taken: ApiError = RouteError::HostnameTaken("a.b.c".into()).into();
        assert_eq!(taken.code, Code::HostnameTaken);
        assert_eq!(taken.status(), axum::http::StatusCode::CONFLICT);
        let busy: ApiError = RouteError::Busy.into();
        assert_eq!(busy.code, Code::RoutesBusy);
    }

    #[tokio::test]
    async fn disabled_service_answers_as_the_contract_says() {
        let service = ExposureService::disabled();
        assert!(!service.is_on());
        let list = service.list_routes().await.unwrap();
        assert!(!list.enabled && list.routes.is_empty());
        assert_eq!(service.tunnels().unwrap_err().code, Code::TunnelsDisabled);
        let sub = Subdomain::parse("x").unwrap();
        assert_eq!(
            service.delete_route(&sub).await.unwrap_err().code,
            Code::ExposureDisabled
        );
        let (namespace, name) = ids();
        assert_eq!(
            service.route_of(namespace.as_str(), name.as_str()).await,
            None
        );
    }
}
