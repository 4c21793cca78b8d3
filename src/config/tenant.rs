//! What every tenant namespace gets: its name prefix, Pod Security level,
//! network isolation, the operator's rights in it and container defaults.

use clap::{Args, ValueEnum};

use super::list::List;

/// Tenant namespaces.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Tenants")]
pub struct TenantConfig {
    /// Tenant namespaces must start with this prefix.
    #[arg(long, env = "NAMESPACE_PREFIX", default_value = "paas-ws-")]
    pub namespace_prefix: String,

    /// Pod Security Admission level enforced in tenant namespaces.
    #[arg(long, env = "PSA_ENFORCE", value_enum, default_value_t = PodSecurityLevel::Baseline)]
    pub psa_enforce: PodSecurityLevel,

    /// Pod Security Admission level warned about and audited.
    #[arg(long, env = "PSA_WARN", value_enum, default_value_t = PodSecurityLevel::Restricted)]
    pub psa_warn: PodSecurityLevel,

    /// Namespaces whose pods may reach tenant pods (e.g. the ingress
    /// controller's), comma-separated; other tenants are denied.
    #[arg(
        long,
        env = "NETWORK_ALLOWED_NAMESPACES",
        default_value = "kube-system,ingress-nginx"
    )]
    pub network_allowed_namespaces: List,

    /// ClusterRole bound in each tenant namespace for the operator
    /// (helm's rights there). Empty = no RoleBinding.
    #[arg(
        long,
        env = "TENANT_CLUSTER_ROLE",
        default_value = "paas-operator-tenant"
    )]
    pub tenant_cluster_role: String,

    /// The ServiceAccount made in each tenant namespace that helm runs as
    /// (impersonated): every chart is rendered and applied with its rights,
    /// confined by RBAC and admission to that namespace.
    #[arg(long, env = "TENANT_SERVICE_ACCOUNT", default_value = "paas-tenant")]
    pub tenant_service_account: String,

    /// ClusterRole bound (in each tenant namespace) to the tenant's
    /// ServiceAccount: what charts may create there.
    #[arg(long, env = "TENANT_HELM_ROLE", default_value = "paas-tenant")]
    pub tenant_helm_role: String,

    /// Adopt namespaces with the tenant prefix that this operator did not
    /// label (made by the earlier operator) on first use: they get the
    /// labels, the tenant identity, isolation and defaults (an existing
    /// quota keeps its limits). `false`: such namespaces are refused (403).
    #[arg(long, env = "ADOPT_NAMESPACES", default_value_t = true, action = clap::ArgAction::Set)]
    pub adopt_namespaces: bool,

    /// Apply the built-in tenant policy (the ClusterRole charts run with
    /// and the admission policies of k8s/tenant-policy.yaml) at start when
    /// the operator's identity may (an admin kubeconfig); `false`: leave it
    /// to the deployment.
    #[arg(long, env = "MANAGE_TENANT_POLICY", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage_tenant_policy: bool,

    /// The operator's ServiceAccount as `namespace/name`, the subject of the
    /// tenant RoleBinding.
    #[arg(
        long,
        env = "OPERATOR_SERVICE_ACCOUNT",
        default_value = "paas-system/paas-operator"
    )]
    pub operator_service_account: String,

    /// Default CPU request of containers that set none (LimitRange).
    #[arg(long, env = "DEFAULT_CPU_REQUEST", default_value = "100m")]
    pub default_cpu_request: String,

    /// Default memory request of containers that set none (LimitRange).
    #[arg(long, env = "DEFAULT_MEMORY_REQUEST", default_value = "128Mi")]
    pub default_memory_request: String,

    /// Default CPU limit of containers that set none (LimitRange).
    #[arg(long, env = "DEFAULT_CPU_LIMIT", default_value = "500m")]
    pub default_cpu_limit: String,

    /// Default memory limit of containers that set none (LimitRange).
    #[arg(long, env = "DEFAULT_MEMORY_LIMIT", default_value = "512Mi")]
    pub default_memory_limit: String,

    /// Smallest CPU request (and limit) a container may have (LimitRange
    /// `min`), so that tiny pods cannot pack a node.
    #[arg(long, env = "CONTAINER_MIN_CPU", default_value = "10m")]
    pub container_min_cpu: String,

    /// Smallest memory request (and limit) a container may have
    /// (LimitRange `min`).
    #[arg(long, env = "CONTAINER_MIN_MEMORY", default_value = "16Mi")]
    pub container_min_memory: String,

    /// Pods (not finished) a tenant namespace may hold by default
    /// (ResourceQuota `pods`; `pods_limit` of POST /api/namespaces).
    #[arg(long, env = "QUOTA_PODS", default_value_t = 20, value_parser = count)]
    pub quota_pods: u32,

    /// Services a tenant namespace may hold by default (`services`;
    /// `services_limit`).
    #[arg(long, env = "QUOTA_SERVICES", default_value_t = 20, value_parser = count)]
    pub quota_services: u32,

    /// Secrets a tenant namespace may hold by default (`count/secrets`;
    /// `secrets_limit`). Helm keeps one per revision, 10 per release.
    #[arg(long, env = "QUOTA_SECRETS", default_value_t = 100, value_parser = count)]
    pub quota_secrets: u32,

    /// ConfigMaps a tenant namespace may hold by default
    /// (`count/configmaps`; `configmaps_limit`).
    #[arg(long, env = "QUOTA_CONFIGMAPS", default_value_t = 50, value_parser = count)]
    pub quota_configmaps: u32,

    /// PersistentVolumeClaims a tenant namespace may hold by default
    /// (`persistentvolumeclaims`; `pvc_limit`).
    #[arg(long, env = "QUOTA_PVCS", default_value_t = 10, value_parser = count)]
    pub quota_pvcs: u32,

    /// PriorityClasses tenant pods may name, comma-separated (none by
    /// default; `system-*` never). A cluster with a `globalDefault`
    /// PriorityClass must list it: Kubernetes puts it on every pod.
    #[arg(long, env = "ALLOWED_PRIORITY_CLASSES", default_value = "", hide_default_value = true, value_parser = policy_names)]
    pub allowed_priority_classes: List,

    /// Taint keys tenant pods may tolerate, comma-separated. The default
    /// is what Kubernetes itself adds to every pod.
    #[arg(
        long,
        env = "ALLOWED_TOLERATION_KEYS",
        default_value = "node.kubernetes.io/not-ready,node.kubernetes.io/unreachable",
        value_parser = policy_names
    )]
    pub allowed_toleration_keys: List,

    /// RuntimeClasses tenant pods may name, comma-separated (none by
    /// default).
    #[arg(long, env = "ALLOWED_RUNTIME_CLASSES", default_value = "", hide_default_value = true, value_parser = policy_names)]
    pub allowed_runtime_classes: List,
}

/// An object count of the tenant quota: 1 to 10,000.
fn count(value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| crate::names::object_count("count", n).ok())
        .ok_or_else(|| format!("{value:?} is not a whole number from 1 to 10000"))
}

/// Names that go into the tenant admission policy's expressions:
/// Kubernetes object names and taint keys (letters, digits, `.`, `-`, `_`,
/// `/`), nothing that could end a CEL string.
fn policy_names(value: &str) -> Result<List, String> {
    let list: List = value.parse().unwrap_or_default();
    let bad = list.items().iter().find(|name| {
        name.len() > 253
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'))
    });
    match bad {
        Some(bad) => Err(format!(
            "{bad:?} is not a Kubernetes name (letters, digits, '.', '-', '_', '/')"
        )),
        None => Ok(list),
    }
}

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PodSecurityLevel {
    Privileged,
    Baseline,
    Restricted,
}

impl PodSecurityLevel {
    /// The label value Pod Security Admission reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}
