//! The routes of releases, as the release service sees them: `expose` on
//! install checked and put in place, the MCP sidecar's route, a release's
//! `route`, and every route of a release (or namespace) removed when it
//! goes. Routing failures are logged, never an install's failure.

use super::discovery;
use super::error::RouteError;
use super::names::{self, ServiceName, Subdomain, cluster_service_url};
use super::service::ExposureService;
use super::store::{ReleaseRef, RouteKind};
use crate::error::ApiError;
use crate::model::{ExposeRequest, RouteInfo};
use crate::names::{ReleaseName, TenantNamespace};

/// `expose` of an install, validated before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposeSpec {
    pub(crate) subdomain: Subdomain,
    pub(crate) service_name: Option<ServiceName>,
    pub(crate) service_port: Option<u16>,
}

impl ExposeSpec {
    /// `None` when nothing is to be exposed.
    pub(crate) fn parse(
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

impl ExposureService {
    /// Before an install runs: 409 when the subdomain is another's route.
    pub(crate) async fn check_free(
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
    pub(crate) async fn expose_release(
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
    pub(crate) async fn expose_mcp(
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
    pub(crate) async fn mcp_gone(&self, namespace: &TenantNamespace, name: &ReleaseName) {
        self.remove_release_routes(namespace, name, Some(RouteKind::Mcp))
            .await;
    }

    /// The app route of a release after its install (read from the API).
    pub(crate) async fn route_after_install(
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
    pub(crate) async fn route_of(&self, namespace: &str, name: &str) -> Option<RouteInfo> {
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
    pub(crate) async fn release_gone(&self, namespace: &TenantNamespace, name: &ReleaseName) {
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
    pub(crate) async fn namespace_gone(&self, namespace: &TenantNamespace) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;
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
