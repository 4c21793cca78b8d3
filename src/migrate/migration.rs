//! The migration's view of the cluster: the services it works through and
//! which tenant namespaces it looks at.

use crate::config::Config;
use crate::exposure::ExposureService;
use crate::releases::ReleaseService;
use crate::tenants::TenantService;

#[derive(Clone, Copy)]
pub struct Services<'a> {
    pub releases: &'a ReleaseService,
    pub tenants: &'a TenantService,
    pub exposure: &'a ExposureService,
    /// The operator's Kubernetes client (the earlier operator's cluster
    /// objects, the kept state of releases).
    pub client: &'a kube::Client,
}

/// The migration's view of the cluster.
pub struct Migration<'a> {
    pub(super) releases: &'a ReleaseService,
    pub(super) tenants: &'a TenantService,
    pub(super) exposure: &'a ExposureService,
    pub(super) client: &'a kube::Client,
    pub(super) prefix: String,
    /// `namespace/name` of this operator's ServiceAccount.
    pub(super) operator_account: String,
    /// Only these tenant namespaces (empty: all).
    pub(super) only: Vec<String>,
}

impl<'a> Migration<'a> {
    /// `only`: the tenant namespaces to look at (empty: all).
    pub fn new(services: Services<'a>, config: &Config, only: &[String]) -> Self {
        Self {
            releases: services.releases,
            tenants: services.tenants,
            exposure: services.exposure,
            client: services.client,
            prefix: config.tenant.namespace_prefix.clone(),
            operator_account: config.tenant.operator_service_account.clone(),
            only: only.to_vec(),
        }
    }

    /// Whether `namespace` is one to look at.
    pub(super) fn includes(&self, namespace: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == namespace)
    }
}
