//! Tenant namespaces: the namespace (labelled as ours, with Pod Security
//! Admission labels); the tenant's own identity — a ServiceAccount that helm
//! runs as (impersonated) and its RoleBinding to what charts may create; the
//! RoleBinding that gives the operator its rights in the namespace; the
//! ResourceQuota, a LimitRange with default requests and limits (so pods
//! that set none still run under the quota) and a NetworkPolicy that
//! isolates it from other tenants. The quota also counts pods, Services,
//! Secrets, ConfigMaps and PVCs, and the LimitRange sets minimums, so one
//! tenant cannot take the nodes' pod slots or fill etcd. All applied by server-side apply with one
//! field manager ([`objects`] builds them): re-posting is idempotent and
//! updates the limits. Everything carries the operator's label, which
//! admission keeps out of the tenant's reach.
//!
//! Before any helm run in a namespace, [`TenantService::ready`] makes sure
//! the tenant identity is in place and the quota and LimitRange carry
//! today's fences (once per namespace and process; a namespace's own limits
//! are kept), and
//! adopts a namespace with the tenant prefix that the earlier operator made
//! without our label (`ADOPT_NAMESPACES`).

pub mod earlier;
pub mod objects;
pub mod policy;
mod quota;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::config::TenantConfig;
use crate::kube::KubeError;
use crate::kube::apply::{apply, apply_retrying, retry_forbidden};
use crate::names::{Quantity, TenantNamespace};
pub use objects::MANAGED_LABEL;
use objects::{
    OPERATOR_BINDING, limit_range_body, namespace_body, network_policy_body, quota_body,
    role_binding_body, tenant_account_body, tenant_binding_body,
};
pub use quota::{ObjectCounts, TenantQuota};

/// The Pod Security label this operator sets on every tenant namespace
/// (the earlier operator set only [`MANAGED_LABEL`]).
pub const PSA_ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// How long a new tenant identity may take to be usable (the API server's
/// RBAC cache learns a new RoleBinding through a watch: milliseconds).
const IDENTITY_READY_WITHIN: Duration = Duration::from_secs(10);

/// Whether applying created the namespace or updated an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
}

/// What a tenant namespace holds now.
#[derive(Debug, Clone)]
pub struct TenantState {
    /// `Active` or `Terminating`.
    pub phase: String,
    /// Quota limits and current use, by resource name.
    pub hard: BTreeMap<String, String>,
    pub used: BTreeMap<String, String>,
}

/// Tenant namespaces: set up, adopted, read and deleted under one policy.
#[derive(Clone)]
pub struct TenantService {
    client: Client,
    /// The operator's own client configuration, to ask as the tenant.
    client_config: kube::Config,
    policy: TenantConfig,
    /// Namespaces whose pods may reach tenant pods.
    admitted: Vec<String>,
    /// Namespaces whose tenant identity this process has put in place.
    ready: Arc<Mutex<HashSet<String>>>,
}

impl TenantService {
    /// `admitted`: the namespaces whose pods may reach tenant pods.
    pub fn new(
        client: Client,
        client_config: kube::Config,
        policy: TenantConfig,
        admitted: Vec<String>,
    ) -> Self {
        Self {
            client,
            client_config,
            policy,
            admitted,
            ready: Arc::default(),
        }
    }

    /// The object counts a namespace gets when its request names none.
    pub fn default_counts(&self) -> ObjectCounts {
        ObjectCounts::from_policy(&self.policy)
    }

    /// The user helm acts as in `namespace`.
    pub fn helm_user(&self, namespace: &TenantNamespace) -> String {
        format!(
            "system:serviceaccount:{namespace}:{}",
            self.policy.tenant_service_account
        )
    }

    /// Creates or updates a tenant namespace and everything in it. A
    /// namespace with the prefix that is not ours is adopted when adoption
    /// is on, else refused.
    pub async fn apply(
        &self,
        namespace: &TenantNamespace,
        quota: &TenantQuota,
    ) -> Result<Applied, KubeError> {
        let existing = self.get(namespace).await?;
        if let Some(existing) = &existing {
            self.check_usable(existing, namespace)?;
        }
        self.apply_all(namespace, Some(quota)).await?;
        Ok(if existing.is_some() {
            Applied::Updated
        } else {
            Applied::Created
        })
    }

    /// Creates the tenant with the default quota when the namespace does not
    /// exist yet; an existing one is made ready as by [`Self::ready`].
    pub async fn ensure(&self, namespace: &TenantNamespace) -> Result<(), KubeError> {
        if self.is_ready(namespace) {
            return Ok(());
        }
        match self.get(namespace).await? {
            Some(existing) => self.make_ready(namespace, &existing).await,
            None => {
                let quota = TenantQuota::default_quota(self.default_counts());
                self.apply_all(namespace, Some(&quota)).await
            }
        }
    }

    /// Makes sure helm can run as the tenant in `namespace`: the namespace
    /// exists and is ours (or is adopted), and its tenant identity is in
    /// place and usable. Costs API calls once per namespace and process.
    /// `Ok(false)` when the namespace does not exist.
    pub async fn ready(&self, namespace: &TenantNamespace) -> Result<bool, KubeError> {
        if self.is_ready(namespace) {
            return Ok(true);
        }
        let Some(existing) = self.get(namespace).await? else {
            return Ok(false);
        };
        self.make_ready(namespace, &existing).await?;
        Ok(true)
    }

    /// Forgets that `namespace` was ready (it is being deleted, or helm was
    /// refused there): the next operation checks again.
    pub fn forget(&self, namespace: &TenantNamespace) {
        self.lock_ready().remove(namespace.as_str());
    }

    /// Reads a tenant namespace; `None` when it does not exist. A namespace
    /// that is not ours is adopted first (or refused).
    pub async fn read(
        &self,
        namespace: &TenantNamespace,
    ) -> Result<Option<TenantState>, KubeError> {
        let name = namespace.as_str();
        let Some(existing) = self.get(namespace).await? else {
            return Ok(None);
        };
        if !is_managed(&existing) {
            self.make_ready(namespace, &existing).await?;
        }
        let phase = existing
            .status
            .and_then(|s| s.phase)
            .unwrap_or_else(|| "Active".into());
        let quota = Api::<ResourceQuota>::namespaced(self.client.clone(), name)
            .get_opt(&format!("{name}-quota"))
            .await
            .map_err(KubeError::api("reading the resource quota"))?;
        let status = quota.and_then(|q| q.status).unwrap_or_default();
        Ok(Some(TenantState {
            phase,
            hard: quantities(status.hard),
            used: quantities(status.used),
        }))
    }

    /// Starts deleting a tenant namespace (the namespace controller
    /// finishes it).
    pub async fn delete(&self, namespace: &TenantNamespace) -> Result<(), KubeError> {
        self.forget(namespace);
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.delete(namespace.as_str(), &Default::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(KubeError::Api {
                action: "deleting the namespace",
                source,
            }),
        }
    }

    fn is_ready(&self, namespace: &TenantNamespace) -> bool {
        self.lock_ready().contains(namespace.as_str())
    }

    fn lock_ready(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn get(&self, namespace: &TenantNamespace) -> Result<Option<Namespace>, KubeError> {
        Api::<Namespace>::all(self.client.clone())
            .get_opt(namespace.as_str())
            .await
            .map_err(KubeError::api("reading the namespace"))
    }

    /// Terminating namespaces are refused; namespaces not labelled as ours
    /// only when adoption is off.
    fn check_usable(
        &self,
        existing: &Namespace,
        namespace: &TenantNamespace,
    ) -> Result<(), KubeError> {
        if existing.metadata.deletion_timestamp.is_some() {
            return Err(KubeError::Terminating(namespace.to_string()));
        }
        if is_managed(existing) || self.policy.adopt_namespaces {
            return Ok(());
        }
        Err(KubeError::NotManaged(namespace.to_string()))
    }

    /// Puts the tenant identity in place in an existing namespace; adopts it
    /// (everything, keeping an existing quota's limits) when it is not ours.
    async fn make_ready(
        &self,
        namespace: &TenantNamespace,
        existing: &Namespace,
    ) -> Result<(), KubeError> {
        self.check_usable(existing, namespace)?;
        if is_managed(existing) && is_set_up(existing) {
            self.apply_identity(namespace).await?;
            // A namespace made before the quota counted objects or the
            // LimitRange had minimums gets them now: its limits are kept,
            // what it lacks comes from the settings.
            let quota = self.existing_quota(namespace).await?;
            self.apply_limits(namespace, Some(&quota)).await?;
        } else {
            // Unlabelled, or labelled only `paas-managed` (the earlier
            // operator's): the operator has no rights in it yet.
            tracing::warn!(%namespace, "adopting a tenant namespace this operator did not set up");
            self.apply_operator_binding(namespace).await?;
            let quota = self.existing_quota(namespace).await?;
            self.apply_all(namespace, Some(&quota)).await?;
        }
        self.wait_identity_usable(namespace).await?;
        self.lock_ready().insert(namespace.to_string());
        Ok(())
    }

    /// Everything a tenant namespace holds (the quota only when given).
    async fn apply_all(
        &self,
        namespace: &TenantNamespace,
        quota: Option<&TenantQuota>,
    ) -> Result<(), KubeError> {
        let name = namespace.as_str();
        let policy = &self.policy;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        apply(
            &namespaces,
            name,
            namespace_body(name, policy),
            "applying the namespace",
        )
        .await?;
        if let Some(binding) = role_binding_body(policy) {
            let bindings: Api<RoleBinding> = Api::namespaced(self.client.clone(), name);
            apply(
                &bindings,
                OPERATOR_BINDING,
                binding,
                "binding the operator's role",
            )
            .await?;
        }
        self.apply_identity(namespace).await?;
        self.apply_limits(namespace, quota).await?;
        let isolation_name = format!("{name}-isolation");
        let policies: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), name);
        apply_retrying(
            &policies,
            &isolation_name,
            network_policy_body(&isolation_name, &self.admitted),
            "applying the network policy",
        )
        .await?;
        self.wait_identity_usable(namespace).await?;
        self.lock_ready().insert(name.to_owned());
        Ok(())
    }

    /// The ResourceQuota (when given) and the LimitRange.
    async fn apply_limits(
        &self,
        namespace: &TenantNamespace,
        quota: Option<&TenantQuota>,
    ) -> Result<(), KubeError> {
        let name = namespace.as_str();
        if let Some(quota) = quota {
            let quota_name = format!("{name}-quota");
            let quotas: Api<ResourceQuota> = Api::namespaced(self.client.clone(), name);
            apply_retrying(
                &quotas,
                &quota_name,
                quota_body(&quota_name, quota),
                "applying the resource quota",
            )
            .await?;
        }
        let defaults_name = format!("{name}-defaults");
        let limits: Api<LimitRange> = Api::namespaced(self.client.clone(), name);
        apply_retrying(
            &limits,
            &defaults_name,
            limit_range_body(&defaults_name, &self.policy),
            "applying the limit range",
        )
        .await
    }

    /// The operator's own rights in the namespace.
    async fn apply_operator_binding(&self, namespace: &TenantNamespace) -> Result<(), KubeError> {
        let Some(binding) = role_binding_body(&self.policy) else {
            return Ok(());
        };
        let bindings: Api<RoleBinding> = Api::namespaced(self.client.clone(), namespace.as_str());
        apply(
            &bindings,
            OPERATOR_BINDING,
            binding,
            "binding the operator's role",
        )
        .await
    }

    /// The tenant's ServiceAccount and its RoleBinding.
    async fn apply_identity(&self, namespace: &TenantNamespace) -> Result<(), KubeError> {
        let name = namespace.as_str();
        let policy = &self.policy;
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), name);
        apply_retrying(
            &accounts,
            &policy.tenant_service_account,
            tenant_account_body(policy),
            "creating the tenant's ServiceAccount",
        )
        .await?;
        let bindings: Api<RoleBinding> = Api::namespaced(self.client.clone(), name);
        apply_retrying(
            &bindings,
            &policy.tenant_service_account,
            tenant_binding_body(name, policy),
            "binding the tenant role",
        )
        .await
    }

    /// Waits until the API server authorizes the tenant identity (its RBAC
    /// cache learns new RoleBindings through a watch), so the first helm
    /// run is not refused: asks, as the tenant (impersonated, as helm will
    /// be), whether it may create Secrets there. Needs no permission beyond
    /// the impersonation helm needs anyway.
    async fn wait_identity_usable(&self, namespace: &TenantNamespace) -> Result<(), KubeError> {
        let api: Api<SelfSubjectAccessReview> = Api::all(self.as_tenant(namespace)?);
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_string()),
                    verb: Some("create".into()),
                    resource: Some("secrets".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + IDENTITY_READY_WITHIN;
        let mut delay = Duration::from_millis(20);
        loop {
            // Forbidden: the operator may not impersonate the tenant yet (its
            // own RoleBinding is new too); ask again.
            let allowed = match api.create(&PostParams::default(), &review).await {
                Ok(answer) => answer.status.is_some_and(|s| s.allowed),
                Err(kube::Error::Api(status)) if status.code == 403 => false,
                Err(source) => {
                    return Err(KubeError::Api {
                        action: "checking the tenant identity",
                        source,
                    });
                }
            };
            if allowed {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(%namespace, "the tenant identity is not authorized; is the tenant ClusterRole installed?");
                return Err(KubeError::IdentityNotReady(namespace.to_string()));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// An adopted namespace's quota keeps the limits it had; the contract's
    /// defaults (and the settings' object counts) when it had none.
    async fn existing_quota(&self, namespace: &TenantNamespace) -> Result<TenantQuota, KubeError> {
        let name = namespace.as_str();
        let quotas = Api::<ResourceQuota>::namespaced(self.client.clone(), name);
        let quota_name = format!("{name}-quota");
        let existing = retry_forbidden(|| async {
            quotas
                .get_opt(&quota_name)
                .await
                .map_err(KubeError::api("reading the resource quota"))
        })
        .await?;
        let hard = existing
            .and_then(|q| q.spec)
            .and_then(|s| s.hard)
            .unwrap_or_default();
        let kept = |key: &str, field: &'static str, default: Quantity| {
            hard.get(key)
                .and_then(|q| Quantity::parse(field, &q.0).ok())
                .unwrap_or(default)
        };
        let defaults = TenantQuota::default_quota(self.default_counts());
        let count = |key: &str, default: u32| {
            hard.get(key)
                .and_then(|q| whole_quantity(&q.0))
                .and_then(|n| crate::names::object_count("count", n).ok())
                .unwrap_or(default)
        };
        let counts = defaults.counts;
        Ok(TenantQuota {
            cpu: kept("limits.cpu", "cpu_limit", defaults.cpu),
            memory: kept("limits.memory", "memory_limit", defaults.memory),
            storage: kept("requests.storage", "storage_limit", defaults.storage),
            counts: ObjectCounts {
                pods: count("pods", counts.pods),
                services: count("services", counts.services),
                secrets: count("count/secrets", counts.secrets),
                configmaps: count("count/configmaps", counts.configmaps),
                pvcs: count("persistentvolumeclaims", counts.pvcs),
            },
        })
    }
}

/// A count as the API server writes it back: a whole number, normalised
/// with a suffix when it can be (10000 is stored as `10k`), or with an
/// exponent. `None` for anything that is not a whole number.
fn whole_quantity(text: &str) -> Option<i64> {
    const SUFFIXES: [(&str, i64); 10] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
    ];
    let text = text.trim();
    if let Some((number, unit)) = SUFFIXES
        .iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n, *unit)))
    {
        return number.parse::<i64>().ok()?.checked_mul(unit);
    }
    if let Some((mantissa, exponent)) = text.split_once(['e', 'E']) {
        let exponent = u32::try_from(exponent.parse::<i64>().ok()?).ok()?;
        return mantissa
            .parse::<i64>()
            .ok()?
            .checked_mul(10_i64.checked_pow(exponent)?);
    }
    text.parse().ok()
}

fn quantities(
    map: Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, String> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// Labelled by this operator (with Pod Security labels), not only with
/// the earlier operator's `paas-managed`.
fn is_set_up(namespace: &Namespace) -> bool {
    namespace
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(PSA_ENFORCE_LABEL))
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
    use super::whole_quantity;

    /// The API server stores `services: 10000` as `10k`: an adopted or
    /// re-checked quota must read it back as 10000, not fall back to the
    /// default (which would shrink the tenant's quota on its next install).
    #[test]
    fn counts_read_back_as_the_api_server_writes_them() {
        for (text, count) in [
            ("20", Some(20)),
            ("10k", Some(10_000)),
            ("1M", Some(1_000_000)),
            ("2Ki", Some(2_048)),
            ("1e4", Some(10_000)),
            (" 7 ", Some(7)),
            ("1500m", None),
            ("x", None),
            ("9999999P", None),
        ] {
            assert_eq!(whole_quantity(text), count, "{text}");
        }
    }
}
