//! Where releases meet their routes (`crate::exposure`): a release's route
//! in its answers, reconciliation of the routes against the releases that
//! exist, and how the exposure service learns whether a release is live.
//! Creating and removing a release's routes happens inside its writes
//! (`write.rs`, `sidecar.rs`), under the release's lock.

use futures::FutureExt;
use futures::future::BoxFuture;

use super::ReleaseService;
use crate::error::{ApiError, Code};
use crate::exposure::ReleaseLookup;
use crate::model::exposure::ReconcileReport;
use crate::model::{ReleaseInfo, ReleaseStatus};
use crate::names::{ReleaseName, TenantNamespace};

impl ReleaseService {
    /// A release's answer with its `route`, from the route records.
    pub async fn with_route(&self, mut info: ReleaseInfo) -> ReleaseInfo {
        info.route = self.exposure.route_of(&info.namespace, &info.name).await;
        info
    }

    /// Reconciles the routes now: missing routes of live releases made
    /// again, routes of gone releases and orphaned DNS records removed.
    pub async fn reconcile_routes(&self) -> Result<ReconcileReport, ApiError> {
        self.exposure.reconcile(self).await
    }
}

/// The exposure service asks whether a release exists (from the read
/// cache, else Helm's records) before it removes a route as orphaned.
impl ReleaseLookup for ReleaseService {
    fn is_live<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Option<bool>> {
        async move {
            let namespace =
                TenantNamespace::parse(namespace, &self.settings.namespace_prefix).ok()?;
            let name = ReleaseName::parse(name).ok()?;
            match self.latest(&namespace, &name).await {
                Ok((_, latest)) => Some(latest.summary.status() != ReleaseStatus::Uninstalled),
                Err(error) if error.code == Code::ReleaseNotFound => Some(false),
                Err(_) => None,
            }
        }
        .boxed()
    }
}
