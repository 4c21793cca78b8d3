//! The limits of a tenant namespace: its quota of CPU, memory and storage,
//! and how many objects of each kind it may hold.

use crate::config::TenantConfig;
use crate::names::Quantity;

/// The limits of a tenant namespace.
#[derive(Debug, Clone)]
pub struct TenantQuota {
    pub cpu: Quantity,
    pub memory: Quantity,
    pub storage: Quantity,
    pub counts: ObjectCounts,
}

impl TenantQuota {
    /// The earlier operator's defaults (cpu 2, memory 4Gi, storage 20Gi)
    /// and these object counts.
    pub fn default_quota(counts: ObjectCounts) -> Self {
        Self {
            cpu: Quantity::known("2"),
            memory: Quantity::known("4Gi"),
            storage: Quantity::known("20Gi"),
            counts,
        }
    }
}

/// How many objects of each kind a tenant namespace may hold: what bounds
/// a tenant's share of the nodes' pod slots and of etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectCounts {
    pub pods: u32,
    pub services: u32,
    pub secrets: u32,
    pub configmaps: u32,
    pub pvcs: u32,
}

impl ObjectCounts {
    /// The defaults of the settings (`QUOTA_PODS`, …).
    pub fn from_policy(policy: &TenantConfig) -> Self {
        Self {
            pods: policy.quota_pods,
            services: policy.quota_services,
            secrets: policy.quota_secrets,
            configmaps: policy.quota_configmaps,
            pvcs: policy.quota_pvcs,
        }
    }
}
