//! Wire types of the contract with the platform (`docs/contract.md`): the bodies
//! the operator accepts and returns. Field names here are the contract; do
//! not rename them.

pub mod exposure;

pub mod apps;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

pub use exposure::{ExposeRequest, RouteInfo};

/// Status of a Helm release, as Helm names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseStatus {
    Deployed,
    Failed,
    PendingInstall,
    PendingUpgrade,
    PendingRollback,
    Superseded,
    Uninstalled,
    Uninstalling,
    Unknown,
}

impl ReleaseStatus {
    /// Maps Helm's status string; anything unexpected is `unknown`.
    pub fn from_helm(value: &str) -> Self {
        match value {
            "deployed" => Self::Deployed,
            "failed" => Self::Failed,
            "pending-install" => Self::PendingInstall,
            "pending-upgrade" => Self::PendingUpgrade,
            "pending-rollback" => Self::PendingRollback,
            "superseded" => Self::Superseded,
            "uninstalled" => Self::Uninstalled,
            "uninstalling" => Self::Uninstalling,
            _ => Self::Unknown,
        }
    }

    pub fn is_pending(self) -> bool {
        matches!(
            self,
            Self::PendingInstall | Self::PendingUpgrade | Self::PendingRollback
        )
    }
}

/// One release, at its latest revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseInfo {
    pub name: String,
    pub namespace: String,
    /// The real revision number (1 after install).
    pub revision: u32,
    pub status: ReleaseStatus,
    /// Chart name only, from the chart's metadata (e.g. `postgresql`).
    pub chart: String,
    pub app_version: String,
    /// When the revision was last deployed, RFC 3339.
    pub updated: String,
    pub description: Option<String>,
    /// User-supplied values; only on install and upgrade responses.
    #[schema(value_type = Option<Object>)]
    pub values: Option<Map<String, Value>>,
    /// Where the release is published (`expose` on install); null when it
    /// is not, or its route is not in place.
    pub route: Option<RouteInfo>,
}

/// One entry of a release's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Revision {
    pub revision: u32,
    /// RFC 3339.
    pub updated: String,
    pub status: ReleaseStatus,
    /// `name-version` of the chart, e.g. `web-0.2.0`.
    pub chart: String,
    pub app_version: String,
    pub description: String,
}

/// The history of a release, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevisionList {
    pub revisions: Vec<Revision>,
}

/// Pod phases as Kubernetes reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// A pod of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PodInfo {
    pub name: String,
    pub phase: PodPhase,
    /// Ready containers over all containers, e.g. `1/1`.
    pub ready: String,
    /// Restarts summed over the pod's containers.
    pub restarts: u32,
    /// Age like kubectl prints it: `12d`, `5h`, `3m` or `40s`.
    pub age: String,
}

/// Release and pods, for the status endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseStatusResponse {
    pub release: ReleaseInfo,
    pub pods: Vec<PodInfo>,
    /// Set when pods could not be read (then the answer is a 503, never an
    /// empty list that would look healthy).
    pub pod_retrieval_error: Option<String>,
    /// True when the release is pending-* for longer than the helm timeout
    /// with no operation running on it: a helm process died mid-operation.
    /// The next upgrade or rollback recovers it.
    pub stuck: bool,
}

/// A one-line confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageResponse {
    pub message: String,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `healthy`, or `degraded` when the Kubernetes API is unreachable.
    pub status: String,
    /// RFC 3339.
    pub timestamp: String,
    /// The helm binary's version, e.g. `v4.3.1`.
    pub helm_version: String,
}

/// `POST /api/releases`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InstallRequest {
    pub namespace: String,
    pub name: String,
    /// `oci://…`, `https://…/chart.tgz`, or a chart name together with `repo_url`.
    pub chart: String,
    /// Semantic version or range; latest when absent.
    pub version: Option<String>,
    /// A classic chart repository (helm's `--repo`).
    pub repo_url: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub values: Option<Map<String, Value>>,
    /// Create the tenant namespace (with the default quota) when missing.
    #[serde(default)]
    pub create_namespace: bool,
    /// Publish the release at `https://{subdomain}.{domain}` once installed.
    #[serde(default)]
    pub expose: Option<ExposeRequest>,
}

/// `PATCH /api/releases/{namespace}/{name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct UpgradeRequest {
    /// Required by helm for an upgrade.
    pub chart: Option<String>,
    pub version: Option<String>,
    pub repo_url: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub values: Option<Map<String, Value>>,
    /// Reset values to the chart's defaults.
    #[serde(default)]
    pub reset_values: bool,
    /// Merge the new values over the last release's values (default).
    #[serde(default = "default_true")]
    pub reuse_values: bool,
}

/// `POST /api/releases/{namespace}/{name}/rollback`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct RollbackRequest {
    /// Target revision; 0 or null means the previous one.
    #[serde(default)]
    pub revision: Option<u32>,
}

/// `POST /api/namespaces`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NamespaceRequest {
    pub name: String,
    #[serde(default = "default_cpu")]
    pub cpu_limit: String,
    #[serde(default = "default_memory")]
    pub memory_limit: String,
    #[serde(default = "default_storage")]
    pub storage_limit: String,
    /// Pods (not finished) the namespace may hold; default `QUOTA_PODS` (20).
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default)]
    pub pods_limit: Option<i64>,
    /// Services; default `QUOTA_SERVICES` (20).
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default)]
    pub services_limit: Option<i64>,
    /// Secrets (Helm's records included, one per revision); default
    /// `QUOTA_SECRETS` (100).
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default)]
    pub secrets_limit: Option<i64>,
    /// ConfigMaps; default `QUOTA_CONFIGMAPS` (50).
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default)]
    pub configmaps_limit: Option<i64>,
    /// PersistentVolumeClaims; default `QUOTA_PVCS` (10).
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(default)]
    pub pvc_limit: Option<i64>,
}

/// Quota limits and current use of a tenant namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaUsage {
    /// Limits by resource name, e.g. `limits.cpu`: `2`.
    pub hard: std::collections::BTreeMap<String, String>,
    /// Current use by resource name.
    pub used: std::collections::BTreeMap<String, String>,
}

/// `GET /api/namespaces/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamespaceInfo {
    pub name: String,
    /// `Active` or `Terminating`.
    pub phase: String,
    pub quota: QuotaUsage,
    /// Every release in the namespace, at its latest revision.
    pub releases: Vec<ReleaseInfo>,
}

fn default_true() -> bool {
    true
}

pub fn default_cpu() -> String {
    "2".to_owned()
}

pub fn default_memory() -> String {
    "4Gi".to_owned()
}

pub fn default_storage() -> String {
    "20Gi".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for name in [
            "deployed",
            "failed",
            "pending-install",
            "pending-upgrade",
            "pending-rollback",
            "superseded",
            "uninstalled",
            "uninstalling",
            "unknown",
        ] {
            let status = ReleaseStatus::from_helm(name);
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                Value::String(name.into())
            );
        }
        assert_eq!(ReleaseStatus::from_helm("weird"), ReleaseStatus::Unknown);
        assert!(ReleaseStatus::PendingUpgrade.is_pending());
        assert!(!ReleaseStatus::Deployed.is_pending());
    }

    #[test]
    fn upgrade_defaults() {
        let req: UpgradeRequest = serde_json::from_str("{}").unwrap();
        assert!(req.reuse_values && !req.reset_values && req.chart.is_none());
    }

    #[test]
    fn unknown_fields_are_ignored_like_the_earlier_operator() {
        let req: RollbackRequest = serde_json::from_str(r#"{"revision": 1, "x": 2}"#).unwrap();
        assert_eq!(req.revision, Some(1));
    }
}
