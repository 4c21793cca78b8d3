//! What every tenant namespace gets: its name prefix, Pod Security level,
//! network isolation, the operator's rights in it and container defaults.

use clap::{Args, ValueEnum};

use super::List;

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
