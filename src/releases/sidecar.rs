//! The MCP sidecar, as part of the release: attached (or replaced) and
//! taken off. It is kept with the release ([`super::state`]) and added to
//! every rendering of it ([`crate::render::additions`]), so an upgrade, a
//! rollback or a re-created Deployment keeps it; attaching or detaching
//! applies the release's current documents again (a new revision,
//! [`super::revision`]). Its route `{subdomain}-mcp` follows it, under the
//! release's lock. The request is checked at the edge
//! ([`super::sidecar_spec`]).

use super::ReleaseService;
use super::audit::audit;
use super::sidecar_spec::AttachSidecar;
use crate::auth::KeyId;
use crate::error::{ApiError, Code};
use crate::names::{ReleaseName, TenantNamespace};
use crate::render::additions::{Sidecar, SidecarService};

/// What attaching a sidecar did.
#[derive(Debug, Clone)]
pub struct Attached {
    pub deployment: String,
    pub container: String,
    pub service: Option<SidecarService>,
    pub revision: u32,
    /// `https://{generated subdomain}-mcp.{domain}/mcp` when exposure is on
    /// and its route is in place.
    pub endpoint: Option<String>,
}

impl ReleaseService {
    /// Attaches (or replaces) the release's sidecar; the same request again
    /// changes nothing.
    pub async fn attach_sidecar(
        &self,
        key: &KeyId,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        attach: AttachSidecar,
    ) -> Result<Attached, ApiError> {
        let AttachSidecar {
            container_name,
            sidecar,
        } = attach;
        let outcome = self
            .locked(namespace, name, async {
                let mut kept = self.kept(namespace, name).await?;
                let previous = kept.clone();
                kept.sidecar = Some(sidecar.clone());
                // A release of the earlier operator: what it made for its
                // sidecar becomes the release's.
                self.hand_earlier_sidecar_to_helm(namespace, name, &sidecar)
                    .await?;
                let (release, applied) = self
                    .reapply(namespace, name, &previous, &kept, "Sidecar attached")
                    .await?;
                // Under the release's lock, so an uninstall cannot run
                // between and leave the route behind.
                let endpoint = self.mcp_route(namespace, name, &sidecar).await;
                Ok((release, applied, endpoint))
            })
            .await;
        let (release, applied, endpoint) = audit(
            key,
            "attach_sidecar",
            namespace.as_str(),
            name.as_str(),
            outcome,
        )?;
        Ok(Attached {
            deployment: applied.sidecar_deployment.unwrap_or_default(),
            container: container_name,
            service: sidecar.service,
            revision: release.version,
            endpoint,
        })
    }

    /// The sidecar's route when it has a Service (its public endpoint),
    /// else none (a route of an earlier sidecar removed).
    async fn mcp_route(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        sidecar: &Sidecar,
    ) -> Option<String> {
        match &sidecar.service {
            Some(service) => {
                self.exposure
                    .expose_mcp(
                        namespace,
                        name,
                        &self.settings.namespace_prefix,
                        &service.name,
                        service.port,
                    )
                    .await
            }
            None => {
                self.exposure.mcp_gone(namespace, name).await;
                None
            }
        }
    }

    /// Takes the sidecar off the release; 404 when it has none.
    pub async fn detach_sidecar(
        &self,
        key: &KeyId,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<u32, ApiError> {
        let outcome = self
            .locked(namespace, name, async {
                let mut kept = self.kept(namespace, name).await?;
                let previous = kept.clone();
                if kept.sidecar.take().is_none() {
                    return Err(ApiError::new(
                        Code::SidecarNotFound,
                        format!("Release {namespace}/{name} has no sidecar"),
                    ));
                }
                let (release, _) = self
                    .reapply(namespace, name, &previous, &kept, "Sidecar removed")
                    .await?;
                self.exposure.mcp_gone(namespace, name).await;
                Ok(release)
            })
            .await;
        Ok(audit(
            key,
            "detach_sidecar",
            namespace.as_str(),
            name.as_str(),
            outcome,
        )?
        .version)
    }
}
