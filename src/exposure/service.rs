//! The exposure service itself: its parts (routes, tunnels) and how they
//! are built from the configuration. The other files of `exposure/` add
//! its operations.

use std::sync::Arc;

use kube::Client;

use super::backend::{Backends, RouteBackend};
use super::backends::cloudflare::{SharedSettings, SharedTunnel};
use super::backends::ingress::{IngressRoutes, IngressSettings};
use super::cloudflare::Cloudflare;
use super::store::{RouteIndex, RouteStore};
use super::tunnels::Tunnels;
use crate::config::{ExposureBackend, ExposureConfig};
use crate::error::{ApiError, Code};

/// The routes part of the service (absent when exposure is off).
pub(super) struct Routes {
    pub(super) client: Client,
    pub(super) store: RouteStore,
    pub(super) index: RouteIndex,
    pub(super) backends: Backends,
    /// The shared tunnel when it is the configured backend: what the
    /// earlier operator left is found there.
    pub(super) earlier: Option<Arc<SharedTunnel>>,
}

pub(super) struct Inner {
    pub(super) domain: String,
    pub(super) routes: Option<Routes>,
    pub(super) tunnels: Option<Tunnels>,
}

/// Public exposure and tunnels; cheap to clone.
#[derive(Clone)]
pub struct ExposureService(pub(super) Arc<Inner>);

impl ExposureService {
    /// Exposure and tunnels off (handler tests).
    #[cfg(test)]
    pub(crate) fn disabled() -> Self {
        Self(Arc::new(Inner {
            domain: String::new(),
            routes: None,
            tunnels: None,
        }))
    }

    /// Builds the service from the configuration; `identity` must be unique
    /// per process (it holds the shared tunnel's Lease). `watches` is the
    /// client for the route records' watch (no read timeout).
    pub(crate) fn start(
        client: Client,
        watches: Client,
        config: &ExposureConfig,
        identity: &str,
    ) -> anyhow::Result<Self> {
        let kind = config.backend()?;
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
        let routes = if kind == ExposureBackend::None {
            None
        } else {
            let build = Build {
                client,
                config,
                cloudflare: cloudflare.as_ref(),
                zone,
                domain: &domain,
                identity,
            };
            Some(build.routes(kind, watches)?)
        };
        tracing::info!(
            backend = kind.as_str(),
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
    pub(crate) fn is_on(&self) -> bool {
        self.0.routes.is_some()
    }

    pub(crate) fn domain(&self) -> &str {
        &self.0.domain
    }

    /// The backend in effect.
    pub(crate) fn backend(&self) -> ExposureBackend {
        self.0
            .routes
            .as_ref()
            .map_or(ExposureBackend::None, |r| r.backends.configured().kind())
    }

    pub(super) fn routes(&self) -> Result<&Routes, ApiError> {
        self.0.routes.as_ref().ok_or_else(|| {
            ApiError::new(
                Code::ExposureDisabled,
                "Cloudflare integration is not enabled (exposure is off: EXPOSURE_BACKEND)",
            )
        })
    }

    /// Dedicated tunnels, when a Cloudflare token and account are set.
    pub(crate) fn tunnels(&self) -> Result<&Tunnels, ApiError> {
        self.0.tunnels.as_ref().ok_or_else(|| {
            ApiError::new(
                Code::TunnelsDisabled,
                "Cloudflare API token and account ID are required for tunnel management",
            )
        })
    }
}

/// What the backends are built from. The one place that knows every
/// backend: a new one is built here and added to `available`.
struct Build<'a> {
    client: Client,
    config: &'a ExposureConfig,
    cloudflare: Option<&'a Cloudflare>,
    zone: Option<String>,
    domain: &'a str,
    identity: &'a str,
}

impl Build<'_> {
    fn routes(self, kind: ExposureBackend, watches: Client) -> anyhow::Result<Routes> {
        let config = self.config;
        let store = RouteStore::new(self.client.clone(), &config.operator_namespace);
        // Whenever the Cloudflare routing settings are complete, also with
        // another backend (to take routes out of it after a switch).
        let shared = self.cloudflare.and_then(|cloudflare| {
            (!config.cloudflare_tunnel_id.is_empty() && !config.cloudflare_domain.is_empty())
                .then(|| Arc::new(self.shared_tunnel(cloudflare, &store)))
        });
        let ingress = IngressRoutes::new(
            self.client.clone(),
            IngressSettings {
                class: config.ingress_class.clone(),
                annotations: config.ingress_annotations()?,
                tls_secret: config.ingress_tls_secret.clone(),
            },
            store.clone(),
        );
        let mut available: Vec<Arc<dyn RouteBackend>> = vec![Arc::new(ingress)];
        if let Some(shared) = &shared {
            available.push(shared.clone());
        }
        let Some(configured) = available.iter().find(|b| b.kind() == kind).cloned() else {
            anyhow::bail!(
                "EXPOSURE_BACKEND={}: its settings are incomplete",
                kind.as_str()
            );
        };
        Ok(Routes {
            client: self.client,
            index: store.index(watches),
            store,
            backends: Backends::new(configured, available),
            earlier: shared.filter(|_| kind == ExposureBackend::Cloudflare),
        })
    }

    fn shared_tunnel(&self, cloudflare: &Cloudflare, store: &RouteStore) -> SharedTunnel {
        let config = self.config;
        SharedTunnel::new(
            cloudflare.clone(),
            store.clone(),
            self.client.clone(),
            SharedSettings {
                tunnel: config.cloudflare_tunnel_id.clone(),
                zone: self.zone.clone(),
                domain: self.domain.to_owned(),
                lease_namespace: config.operator_namespace.clone(),
                identity: self.identity.to_owned(),
                call_timeout: config.cloudflare_timeout,
            },
        )
    }
}
