//! Confinement of an install or upgrade (unless `CONFINE_CHARTS=false`):
//! the rules a rendering must keep (its own namespace; cluster-scoped kinds
//! only when allowed), checked on helm's own rendering before anything is
//! created. With Helm 4 the helm run checks itself (a post-renderer) and
//! only needs the rules; with Helm 3 the chart is rendered first with
//! `helm template` (real values, hooks included) and refused here.

use serde_json::{Map, Value};

use super::ReleaseService;
use crate::error::ApiError;
use crate::helm::confine::{ClusterScoped, Rules};
use crate::helm::{ChartArgs, HelmError};
use crate::names::{ReleaseName, TenantNamespace};

impl ReleaseService {
    /// True when installs and upgrades are rendered with `helm template`
    /// before they run (Helm 3 with confinement), so before helm itself
    /// looks at the release.
    pub(super) fn renders_first(&self) -> bool {
        self.settings.confine && !self.helm.confines_in_run()
    }

    /// The rules for a run that checks itself, `None` when there is nothing
    /// left to check; a refusal (400, listing the objects) when a separate
    /// rendering breaks them.
    pub(super) async fn confinement(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        chart: ChartArgs<'_>,
        is_upgrade: bool,
        values: &Map<String, Value>,
    ) -> Result<Option<Rules>, ApiError> {
        if !self.settings.confine {
            return Ok(None);
        }
        let scopes = self.scopes.get(&self.client).await?;
        let rules = Rules {
            namespace: namespace.as_str().to_owned(),
            allowed_cluster_kinds: self.settings.allowed_cluster_kinds.clone(),
            cluster_scoped: ClusterScoped::from(scopes.as_ref().clone()),
        };
        if self.helm.confines_in_run() {
            return Ok(Some(rules));
        }
        let rendered = self
            .helm
            .render(namespace, name, chart, is_upgrade, values)
            .await?;
        let violations = rules.check(&rendered);
        if violations.is_empty() {
            return Ok(None);
        }
        Err(HelmError::NotConfined {
            namespace: rules.namespace,
            violations,
        }
        .into())
    }
}
