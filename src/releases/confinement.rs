//! Confinement (unless `CONFINE_CHARTS=false`): the rules a rendering must
//! keep ([`crate::helm::confine`]), checked on exactly the documents helm
//! applies, before anything is created:
//!
//! - Helm 4 install and upgrade: inside the one helm run (a post-renderer);
//!   the run only needs the rules.
//! - Helm 3 install and upgrade: a server-side dry run renders the chart
//!   once, as the tenant; its manifest and hooks are checked here and
//!   applied as they are (a chart holding exactly them).
//! - Rollback: the target revision's stored manifest and hooks are checked
//!   and applied the same way. Uninstall: the latest revision's, before
//!   helm deletes what they list.

use super::ReleaseService;
use crate::error::{ApiError, Code};
use crate::helm::HelmError;
use crate::helm::confine::{Checked, ClusterScoped, Rules, Violation};
use crate::names::TenantNamespace;

impl ReleaseService {
    /// True when installs and upgrades are checked before helm applies
    /// them (Helm 3 with confinement: dry run, check, apply), so before
    /// helm itself looks at the release.
    pub(super) fn checks_before_run(&self) -> bool {
        self.settings.confine && !self.helm.confines_in_run()
    }

    /// The rules of `namespace`, `None` when charts are not confined.
    pub(super) async fn rules(
        &self,
        namespace: &TenantNamespace,
    ) -> Result<Option<Rules>, ApiError> {
        if !self.settings.confine {
            return Ok(None);
        }
        let scopes = self.scopes.get(&self.client).await?;
        Ok(Some(Rules {
            namespace: namespace.as_str().to_owned(),
            allowed_cluster_kinds: self.settings.allowed_cluster_kinds.clone(),
            cluster_scoped: ClusterScoped::from(scopes.as_ref().clone()),
            tenant_account: self.settings.tenant_account.clone(),
        }))
    }

    /// The documents of `rendering` to apply: checked against `rules`, or
    /// only parsed (strictly) when charts are not confined. A refusal is a
    /// 400 naming the problems, never chart text.
    pub(super) fn checked(
        &self,
        namespace: &TenantNamespace,
        rules: Option<&Rules>,
        rendering: &str,
    ) -> Result<Checked, ApiError> {
        let outcome = match rules {
            Some(rules) => rules.apply(rendering),
            None => Rules::parse_only(rendering),
        };
        outcome.map_err(|violations| refused(namespace, violations))
    }
}

/// A refusal, logged by document and problem (no chart text).
fn refused(namespace: &TenantNamespace, violations: Vec<Violation>) -> ApiError {
    for violation in &violations {
        tracing::warn!(%namespace, %violation, "refused: the rendering breaks confinement");
    }
    let error: ApiError = HelmError::NotConfined {
        namespace: namespace.to_string(),
        violations,
    }
    .into();
    debug_assert_eq!(error.code, Code::ChartNotConfined);
    error
}
