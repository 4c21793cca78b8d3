//! A tenant namespace with its releases: read together (its quota and the
//! releases in it), and deleted together (every release uninstalled, with
//! its routes, before the namespace goes).

use super::ReleaseService;
use crate::error::ApiError;
use crate::model::{NamespaceInfo, QuotaUsage};
use crate::names::TenantNamespace;

impl ReleaseService {
    /// The namespace's quota (limits and use) and its releases; 404 when
    /// it does not exist, 403 when it is not managed by this operator.
    pub async fn namespace(&self, namespace: &TenantNamespace) -> Result<NamespaceInfo, ApiError> {
        let tenant = self.tenants.read(namespace).await?;
        let tenant = tenant.ok_or_else(|| ApiError::namespace_not_found(namespace))?;
        let releases = self.list(namespace).await?;
        Ok(NamespaceInfo {
            name: namespace.to_string(),
            phase: tenant.phase,
            quota: QuotaUsage {
                hard: tenant.hard,
                used: tenant.used,
            },
            releases,
        })
    }

    /// Uninstalls every release of a tenant namespace, then starts deleting
    /// it; nothing happens to a namespace that is already terminating.
    pub async fn delete_namespace(&self, namespace: &TenantNamespace) -> Result<(), ApiError> {
        let outcome = async {
            let tenant = self.tenants.read(namespace).await?;
            let tenant = tenant.ok_or_else(|| ApiError::namespace_not_found(namespace))?;
            if tenant.phase == "Terminating" {
                return Ok(());
            }
            for name in self.release_names(namespace).await? {
                self.locked(namespace, &name, async {
                    Ok(self.helm.uninstall(namespace, &name).await?)
                })
                .await?;
                // Its Services go with the namespace; the route would stay.
                let prefix = &self.settings.namespace_prefix;
                self.exposure
                    .remove_earlier_routes(namespace, &name, prefix, None)
                    .await;
            }
            self.exposure.namespace_gone(namespace).await;
            Ok(self.tenants.delete(namespace).await?)
        }
        .await;
        self.cache.forget(namespace.as_str());
        outcome
    }
}
