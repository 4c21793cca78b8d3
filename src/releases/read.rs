//! The read path: the watch-fed cache when it can answer, else Helm's
//! records from the Kubernetes API (or the helm CLI for storage we do not
//! read), which then starts indexing the namespace. Never a helm process
//! with storage reads.

use std::sync::Arc;

use super::store::CachedRevision;
use super::{Reads, ReleaseService, wire};
use crate::error::{ApiError, Code};
use crate::helm::HelmRelease;
use crate::helm::release::ReleaseSummary;
use crate::kube::pods::release_pods;
use crate::model::{PodInfo, ReleaseInfo, Revision};
use crate::names::{ReleaseName, TenantNamespace};

/// Where a read was answered from: the watch-fed index, or a Kubernetes
/// API call (or the helm CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedFrom {
    Cache,
    Api,
}

impl ServedFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Api => "api",
        }
    }
}

/// A release and its pods.
#[derive(Debug)]
pub struct StatusRead {
    pub release: Arc<CachedRevision>,
    pub pods: Vec<PodInfo>,
    /// Pending longer than any helm of ours runs, with no operation on it.
    pub stuck: bool,
}

impl ReleaseService {
    /// The newest revision of a release, whatever its status.
    pub async fn latest(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<(ServedFrom, Arc<CachedRevision>), ApiError> {
        let (from, latest) = match self.cache.latest(namespace.as_str(), name.as_str()).await {
            Some(cached) => (ServedFrom::Cache, cached?),
            None => {
                let latest = self.latest_summary_direct(namespace, name).await?;
                if latest.is_some() {
                    self.cache.warm(namespace.as_str());
                }
                (ServedFrom::Api, latest.map(Arc::new))
            }
        };
        let latest = latest.ok_or_else(|| ApiError::release_not_found(namespace, name))?;
        Ok((from, latest))
    }

    /// The revisions of a release, oldest first.
    pub async fn revisions(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<(ServedFrom, Vec<Revision>), ApiError> {
        let (from, revisions) = match self.cache.history(namespace.as_str(), name.as_str()).await {
            Some(cached) => {
                let history = cached?;
                let revisions = history.iter().map(|r| wire::revision(&r.summary)).collect();
                (ServedFrom::Cache, revisions)
            }
            None => {
                let history = self.history_summaries(namespace, name).await?;
                if !history.is_empty() {
                    self.cache.warm(namespace.as_str());
                }
                let revisions: Vec<_> = history.iter().map(wire::revision).collect();
                (ServedFrom::Api, revisions)
            }
        };
        if revisions.is_empty() {
            return Err(ApiError::release_not_found(namespace, name));
        }
        Ok((from, revisions))
    }

    /// The release and its pods. When pods cannot be read the answer is an
    /// error (503), never an empty list that would look healthy.
    pub async fn status(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<(ServedFrom, StatusRead), ApiError> {
        let (from, release) = self.latest(namespace, name).await?;
        let stuck = self.is_stuck(namespace, name, &release.summary).await;
        let cached = match from {
            ServedFrom::Cache => {
                self.cache
                    .release_pods(namespace.as_str(), name.as_str(), &release.selectors)
            }
            ServedFrom::Api => None,
        };
        let (from, pods) = match cached {
            Some(pods) => (ServedFrom::Cache, pods),
            None => {
                let listed =
                    release_pods(&self.client, namespace.as_str(), name.as_str(), &release.selectors)
                        .await
                        .map_err(|error| {
                            tracing::error!(%error, release = %name, %namespace, "cannot read pods");
                            ApiError::new(
                                Code::PodsUnavailable,
                                format!(
                                    "The pods of release {namespace}/{name} could not be read; its health is unknown"
                                ),
                            )
                        })?;
                (
                    ServedFrom::Api,
                    wire::pod_infos(listed.iter(), jiff::Timestamp::now()),
                )
            }
        };
        Ok((
            from,
            StatusRead {
                release,
                pods,
                stuck,
            },
        ))
    }

    /// Every release of a namespace at its latest revision.
    pub async fn list(&self, namespace: &TenantNamespace) -> Result<Vec<ReleaseInfo>, ApiError> {
        let mut releases = Vec::new();
        for name in self.release_names(namespace).await? {
            match self.latest(namespace, &name).await {
                Ok((_, release)) => releases.push(wire::release_info(&release.summary)),
                // Uninstalled between the listing and the read.
                Err(error) if error.code == Code::ReleaseNotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(releases)
    }

    /// The newest revision as the read endpoints show it, read from storage
    /// (or the CLI), not the cache.
    async fn latest_summary_direct(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<Option<CachedRevision>, ApiError> {
        Ok(match &self.reads {
            Reads::Storage(store) => {
                store
                    .latest_summary(namespace.as_str(), name.as_str())
                    .await?
            }
            Reads::Cli { .. } => self
                .helm
                .latest_from_cli(namespace, name)
                .await?
                .as_ref()
                .map(CachedRevision::from),
        })
    }

    /// The newest revision, read from storage (or the CLI), not the cache.
    pub(super) async fn latest_direct(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<Option<HelmRelease>, ApiError> {
        Ok(match &self.reads {
            Reads::Storage(store) => store.latest(namespace.as_str(), name.as_str()).await?,
            Reads::Cli { .. } => self.helm.latest_from_cli(namespace, name).await?,
        })
    }

    /// One stored revision, manifest and hooks included; 404 when there is
    /// no such revision.
    pub(super) async fn revision_direct(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        revision: u32,
    ) -> Result<HelmRelease, ApiError> {
        let found = match &self.reads {
            Reads::Storage(store) => {
                store
                    .revision(namespace.as_str(), name.as_str(), revision)
                    .await?
            }
            Reads::Cli { .. } => {
                self.helm
                    .revision_from_cli(namespace, name, Some(revision))
                    .await?
            }
        };
        found.filter(|r| r.version == revision).ok_or_else(|| {
            ApiError::new(
                Code::RevisionNotFound,
                format!("Release {namespace}/{name} has no revision {revision}"),
            )
        })
    }

    /// Every stored revision, oldest first, from storage (or the CLI), for
    /// writes: without manifests, hooks or values (revision numbers,
    /// statuses and times are what they use).
    pub(super) async fn history_direct(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<Vec<HelmRelease>, ApiError> {
        Ok(match &self.reads {
            Reads::Storage(store) => store
                .loadable_history(namespace.as_str(), name.as_str())
                .await?
                .into_iter()
                .map(HelmRelease::from)
                .collect(),
            Reads::Cli { .. } => self.helm.history_from_cli(namespace, name).await?,
        })
    }

    /// Every stored revision, oldest first, as the revisions endpoint shows
    /// them, from storage (or the CLI).
    async fn history_summaries(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<Vec<ReleaseSummary>, ApiError> {
        Ok(match &self.reads {
            Reads::Storage(store) => store.history(namespace.as_str(), name.as_str()).await?,
            Reads::Cli { .. } => self
                .helm
                .history_from_cli(namespace, name)
                .await?
                .iter()
                .map(HelmRelease::summary)
                .collect(),
        })
    }

    /// The releases of a namespace (any status); names Helm would not
    /// accept are skipped.
    pub(super) async fn release_names(
        &self,
        namespace: &TenantNamespace,
    ) -> Result<Vec<ReleaseName>, ApiError> {
        let names = match &self.reads {
            Reads::Storage(store) => store.release_names(namespace.as_str()).await?,
            Reads::Cli { .. } => self.helm.release_names_from_cli(namespace).await?,
        };
        Ok(names
            .iter()
            .filter_map(|name| ReleaseName::parse(name).ok())
            .collect())
    }

    /// The newest revision; 404 when there is none.
    pub(super) async fn require_latest(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<HelmRelease, ApiError> {
        self.latest_direct(namespace, name)
            .await?
            .ok_or_else(|| ApiError::release_not_found(namespace, name))
    }
}
