//! Tenant namespaces: the namespace (labelled as ours, with Pod Security
//! Admission labels), the RoleBinding that gives the operator (and so helm)
//! its rights inside it, the ResourceQuota, a LimitRange with default
//! requests and limits (so pods that set none still run under the quota) and
//! a NetworkPolicy that isolates it from other tenants. All applied by
//! server-side apply with one field manager: re-posting is idempotent and
//! updates the limits.

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::config::TenantConfig;
use crate::kube::KubeError;
use crate::kube::apply::{FIELD_MANAGER, apply, apply_retrying};
use crate::names::{Quantity, TenantNamespace};

/// Label marking namespaces this operator manages.
pub const MANAGED_LABEL: &str = "paas-managed";

/// The limits of a tenant namespace.
#[derive(Debug, Clone)]
pub struct TenantQuota {
    pub cpu: Quantity,
    pub memory: Quantity,
    pub storage: Quantity,
}

impl TenantQuota {
    /// The earlier operator's defaults: cpu 2, memory 4Gi, storage 20Gi.
    pub fn default_quota() -> Self {
        Self {
            cpu: Quantity::known("2"),
            memory: Quantity::known("4Gi"),
            storage: Quantity::known("20Gi"),
        }
    }
}

/// Whether applying created the namespace or updated an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
}

/// Tenant namespaces: set up, read and deleted under one policy.
#[derive(Clone)]
pub struct TenantService {
    client: Client,
    policy: TenantConfig,
}

impl TenantService {
    pub fn new(client: Client, policy: TenantConfig) -> Self {
        Self { client, policy }
    }

    /// Creates or updates a tenant namespace and everything in it.
    pub async fn apply(
        &self,
        namespace: &TenantNamespace,
        quota: &TenantQuota,
    ) -> Result<Applied, KubeError> {
        apply_tenant(&self.client, &self.policy, namespace, quota).await
    }

    /// Creates the tenant with the default quota only when the namespace
    /// does not exist yet; an existing managed namespace is left as it is.
    pub async fn ensure(&self, namespace: &TenantNamespace) -> Result<(), KubeError> {
        ensure_tenant(
            &self.client,
            &self.policy,
            namespace,
            &TenantQuota::default_quota(),
        )
        .await
    }

    /// Reads a tenant namespace; `None` when it does not exist.
    pub async fn read(
        &self,
        namespace: &TenantNamespace,
    ) -> Result<Option<TenantState>, KubeError> {
        read_tenant(&self.client, namespace).await
    }

    /// Starts deleting a tenant namespace.
    pub async fn delete(&self, namespace: &TenantNamespace) -> Result<(), KubeError> {
        delete_tenant(&self.client, namespace).await
    }
}

async fn apply_tenant(
    client: &Client,
    policy: &TenantConfig,
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
    apply(
        &namespaces,
        name,
        namespace_body(name, policy),
        "applying the namespace",
    )
    .await?;
    if let Some(binding) = role_binding_body(policy) {
        let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), name);
        apply(
            &bindings,
            TENANT_BINDING,
            binding,
            "binding the tenant role",
        )
        .await?;
    }
    let quota_name = format!("{name}-quota");
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), name);
    apply_retrying(
        &quotas,
        &quota_name,
        quota_body(&quota_name, quota),
        "applying the resource quota",
    )
    .await?;
    let defaults_name = format!("{name}-defaults");
    let limits: Api<LimitRange> = Api::namespaced(client.clone(), name);
    apply_retrying(
        &limits,
        &defaults_name,
        limit_range_body(&defaults_name, policy),
        "applying the limit range",
    )
    .await?;
    let isolation_name = format!("{name}-isolation");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), name);
    apply_retrying(
        &policies,
        &isolation_name,
        network_policy_body(&isolation_name, policy),
        "applying the network policy",
    )
    .await?;
    Ok(if existing.is_some() {
        Applied::Updated
    } else {
        Applied::Created
    })
}

async fn ensure_tenant(
    client: &Client,
    policy: &TenantConfig,
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
        None => apply_tenant(client, policy, namespace, quota)
            .await
            .map(drop),
    }
}

/// Name of the RoleBinding that gives the operator its rights in a tenant.
pub const TENANT_BINDING: &str = "paas-operator-tenant";

fn namespace_body(name: &str, policy: &TenantConfig) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": name, "labels": {
            MANAGED_LABEL: "true",
            "pod-security.kubernetes.io/enforce": policy.psa_enforce.as_str(),
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": policy.psa_warn.as_str(),
            "pod-security.kubernetes.io/audit": policy.psa_warn.as_str(),
        }},
    })
}

fn role_binding_body(policy: &TenantConfig) -> Option<Value> {
    let role = policy.tenant_cluster_role.trim();
    let (sa_namespace, sa_name) = policy.operator_service_account.split_once('/')?;
    if role.is_empty() {
        return None;
    }
    Some(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": TENANT_BINDING, "labels": { "app.kubernetes.io/managed-by": FIELD_MANAGER } },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
        "subjects": [{ "kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace }],
    }))
}

fn limit_range_body(name: &str, policy: &TenantConfig) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": { "name": name, "labels": { "app.kubernetes.io/managed-by": FIELD_MANAGER } },
        "spec": { "limits": [{
            "type": "Container",
            "default": { "cpu": policy.default_cpu_limit, "memory": policy.default_memory_limit },
            "defaultRequest": { "cpu": policy.default_cpu_request, "memory": policy.default_memory_request },
        }]},
    })
}

fn network_policy_body(name: &str, policy: &TenantConfig) -> Value {
    let allowed = policy.network_allowed_namespaces.items();
    let mut from = vec![json!({ "podSelector": {} })];
    if !allowed.is_empty() {
        from.push(json!({ "namespaceSelector": { "matchExpressions": [
            { "key": "kubernetes.io/metadata.name", "operator": "In", "values": allowed }
        ]}}));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": name, "labels": { "app.kubernetes.io/managed-by": FIELD_MANAGER } },
        "spec": { "podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{ "from": from }] },
    })
}

fn check_ours(existing: &Namespace, name: &str) -> Result<(), KubeError> {
    if existing.metadata.deletion_timestamp.is_some() {
        return Err(KubeError::Terminating(name.to_owned()));
    }
    if is_managed(existing) {
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

/// What a tenant namespace holds now.
#[derive(Debug, Clone)]
pub struct TenantState {
    /// `Active` or `Terminating`.
    pub phase: String,
    /// Quota limits and current use, by resource name.
    pub hard: std::collections::BTreeMap<String, String>,
    pub used: std::collections::BTreeMap<String, String>,
}

/// A namespace that exists but is not ours is an error.
async fn read_tenant(
    client: &Client,
    namespace: &TenantNamespace,
) -> Result<Option<TenantState>, KubeError> {
    let name = namespace.as_str();
    let Some(existing) = Api::<Namespace>::all(client.clone())
        .get_opt(name)
        .await
        .map_err(KubeError::api("reading the namespace"))?
    else {
        return Ok(None);
    };
    if !is_managed(&existing) {
        return Err(KubeError::NotManaged(name.to_owned()));
    }
    let phase = existing
        .status
        .and_then(|s| s.phase)
        .unwrap_or_else(|| "Active".into());
    let quota = Api::<ResourceQuota>::namespaced(client.clone(), name)
        .get_opt(&format!("{name}-quota"))
        .await
        .map_err(KubeError::api("reading the resource quota"))?;
    let status = quota.and_then(|q| q.status).unwrap_or_default();
    let text = |map: Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        map.unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    };
    Ok(Some(TenantState {
        phase,
        hard: text(status.hard),
        used: text(status.used),
    }))
}

/// The namespace controller finishes what this starts.
async fn delete_tenant(client: &Client, namespace: &TenantNamespace) -> Result<(), KubeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(namespace.as_str(), &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(KubeError::Api {
            action: "deleting the namespace",
            source,
        }),
    }
}

fn is_managed(namespace: &Namespace) -> bool {
    namespace
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_LABEL))
        .is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn policy() -> TenantConfig {
        crate::config::Config::parse_from(["paas-operator"]).tenant
    }

    #[test]
    fn default_quota_is_the_contracts() {
        let quota = TenantQuota::default_quota();
        assert_eq!(
            (
                quota.cpu.as_str(),
                quota.memory.as_str(),
                quota.storage.as_str()
            ),
            ("2", "4Gi", "20Gi")
        );
    }

    #[test]
    fn namespace_carries_psa_labels() {
        let body = namespace_body("paas-ws-1", &policy());
        let labels = &body["metadata"]["labels"];
        assert_eq!(labels["paas-managed"], "true");
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
        assert_eq!(labels["pod-security.kubernetes.io/warn"], "restricted");
    }

    #[test]
    fn binding_and_isolation() {
        let binding = role_binding_body(&policy()).unwrap();
        assert_eq!(binding["roleRef"]["name"], "paas-operator-tenant");
        assert_eq!(binding["subjects"][0]["namespace"], "paas-system");
        let mut none = policy();
        none.tenant_cluster_role = String::new();
        assert!(role_binding_body(&none).is_none());
        let netpol = network_policy_body("x", &policy());
        assert_eq!(
            netpol["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchExpressions"][0]["values"]
                [0],
            "kube-system"
        );
        let limits = limit_range_body("x", &policy());
        assert_eq!(limits["spec"]["limits"][0]["defaultRequest"]["cpu"], "100m");
    }

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
