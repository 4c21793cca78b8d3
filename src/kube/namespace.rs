//! Tenant namespaces: the namespace (labelled as ours) and its
//! ResourceQuota, applied by server-side apply with one field manager, so
//! re-posting is idempotent and updates the limits.

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::KubeError;
use crate::names::{Quantity, TenantNamespace};

/// Field manager for everything the operator applies.
pub const FIELD_MANAGER: &str = "paas-operator";
/// Label marking namespaces this operator manages.
pub const MANAGED_LABEL: &str = "paas-managed";

/// The limits of a tenant namespace.
#[derive(Debug, Clone)]
pub struct TenantQuota {
    pub cpu: Quantity,
    pub memory: Quantity,
    pub storage: Quantity,
}

/// Whether applying created the namespace or updated an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
}

/// Creates or updates a tenant namespace and its quota.
pub async fn apply_tenant(
    client: &Client,
    namespace: &TenantNamespace,
    quota: &TenantQuota,
) -> Result<Applied, KubeError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let name = namespace.as_str();
    let existing = namespaces
        .get_opt(name)
        .await
        .map_err(KubeError::api("reading the namespace"))?;
    if let Some(existing) = &existing {
        check_ours(existing, name)?;
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let body = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": name, "labels": { MANAGED_LABEL: "true" } },
    });
    namespaces
        .patch(name, &params, &Patch::Apply(body))
        .await
        .map_err(KubeError::api("applying the namespace"))?;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), name);
    let quota_name = format!("{name}-quota");
    quotas
        .patch(
            &quota_name,
            &params,
            &Patch::Apply(quota_body(&quota_name, quota)),
        )
        .await
        .map_err(KubeError::api("applying the resource quota"))?;
    Ok(if existing.is_some() {
        Applied::Updated
    } else {
        Applied::Created
    })
}

/// Creates the tenant with `quota` only when the namespace does not exist
/// yet; an existing managed namespace is left as it is.
pub async fn ensure_tenant(
    client: &Client,
    namespace: &TenantNamespace,
    quota: &TenantQuota,
) -> Result<(), KubeError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces
        .get_opt(namespace.as_str())
        .await
        .map_err(KubeError::api("reading the namespace"))?
    {
        Some(existing) => check_ours(&existing, namespace.as_str()),
        None => apply_tenant(client, namespace, quota).await.map(drop),
    }
}

fn check_ours(existing: &Namespace, name: &str) -> Result<(), KubeError> {
    if existing.metadata.deletion_timestamp.is_some() {
        return Err(KubeError::Terminating(name.to_owned()));
    }
    let labelled = existing
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_LABEL))
        .is_some_and(|v| v == "true");
    if labelled {
        Ok(())
    } else {
        Err(KubeError::NotManaged(name.to_owned()))
    }
}

fn quota_body(quota_name: &str, quota: &TenantQuota) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": { "name": quota_name, "labels": { "app.kubernetes.io/managed-by": FIELD_MANAGER } },
        "spec": { "hard": {
            "requests.cpu": quota.cpu.as_str(),
            "limits.cpu": quota.cpu.as_str(),
            "requests.memory": quota.memory.as_str(),
            "limits.memory": quota.memory.as_str(),
            "requests.storage": quota.storage.as_str(),
            "persistentvolumeclaims": "10",
        }},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_matches_the_earlier_operator() {
        let quota = TenantQuota {
            cpu: Quantity::parse("cpu_limit", "8").unwrap(),
            memory: Quantity::parse("memory_limit", "16Gi").unwrap(),
            storage: Quantity::parse("storage_limit", "100Gi").unwrap(),
        };
        let body = quota_body("paas-ws-1-quota", &quota);
        let hard = &body["spec"]["hard"];
        assert_eq!(hard["requests.cpu"], "8");
        assert_eq!(hard["limits.cpu"], "8");
        assert_eq!(hard["requests.memory"], "16Gi");
        assert_eq!(hard["limits.memory"], "16Gi");
        assert_eq!(hard["requests.storage"], "100Gi");
        assert_eq!(hard["persistentvolumeclaims"], "10");
    }
}
