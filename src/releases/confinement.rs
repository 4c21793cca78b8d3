//! Confinement (unless `CONFINE_CHARTS=false`): the rules a rendering must
//! keep ([`crate::render::confine`]), checked on exactly the documents helm
//! applies, before anything is created:
//!
//! - Helm 4 install and upgrade: inside the one helm run (a post-renderer);
//!   the run only needs the rules.
//! - Helm 3 install and upgrade: a server-side dry run renders the chart
//!   once, as the tenant; its manifest and hooks are checked by the checker
//!   in a process of its own (under its limits: nothing a chart rendered is
//!   parsed in the operator) and applied as they are (a chart holding
//!   exactly them).
//! - Rollback: the target revision's stored manifest and hooks are checked
//!   and applied the same way. Uninstall: the latest revision's, before
//!   helm deletes what they list. Stored revisions are parsed here, under
//!   the same budget (`crate::render::parse`).

use super::ReleaseService;
use crate::error::{ApiError, Code};
use crate::helm::HelmError;
use crate::names::{ReleaseName, TenantNamespace};
use crate::render::additions::{Additions, Applied};
use crate::render::confine::{ClusterScoped, Rules, Violation};
use crate::render::documents::Checked;

impl ReleaseService {
    /// True when installs and upgrades that need a plan are dry run,
    /// checked and applied as checked (Helm 3), rather than checked inside
    /// the one helm run (Helm 4).
    pub(super) fn checks_before_run(&self) -> bool {
        !self.helm.confines_in_run()
    }

    /// The plan of a write in `namespace` to release `name`: the rules its
    /// rendering must keep (when charts are confined) and what the operator
    /// adds to it. `None` when there is nothing to check or add.
    pub(super) async fn plan(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        additions: Additions,
    ) -> Result<Option<Rules>, ApiError> {
        let confine = self.settings.confine;
        if !confine && additions.is_empty() {
            return Ok(None);
        }
        let scopes = if confine {
            self.scopes.get(&self.client).await?.as_ref().clone()
        } else {
            Default::default()
        };
        Ok(Some(Rules {
            confine,
            namespace: namespace.as_str().to_owned(),
            allowed_cluster_kinds: self.settings.allowed_cluster_kinds.clone(),
            cluster_scoped: ClusterScoped::from(scopes),
            tenant_account: self.settings.tenant_account.clone(),
            release: name.as_str().to_owned(),
            additions,
            scheduling: self.settings.scheduling.clone(),
        }))
    }

    /// The documents of `rendering` to apply: checked against the plan's
    /// rules and with its additions (only parsed, strictly, without a plan).
    /// A refusal is a 400 naming the problems, never chart text.
    pub(super) fn checked(
        &self,
        namespace: &TenantNamespace,
        plan: Option<&Rules>,
        rendering: &str,
    ) -> Result<Checked, ApiError> {
        self.checked_with_additions(namespace, plan, rendering)
            .map(|(checked, _)| checked)
    }

    /// [`Self::checked`], and what the additions did.
    pub(super) fn checked_with_additions(
        &self,
        namespace: &TenantNamespace,
        plan: Option<&Rules>,
        rendering: &str,
    ) -> Result<(Checked, Applied), ApiError> {
        let Some(rules) = plan else {
            let checked = Rules::parse_only(rendering).map_err(|v| refused(namespace, v))?;
            return Ok((checked, Applied::default()));
        };
        let mut checked = rules.apply(rendering).map_err(|v| refused(namespace, v))?;
        let applied = rules
            .additions
            .apply(&mut checked, &rules.release)
            .map_err(|error| ApiError::new(Code::SidecarTargetMissing, error.to_string()))?;
        Ok((checked, applied))
    }
}

impl ReleaseService {
    /// Before helm deletes what a stored manifest lists: refused only when
    /// it lists objects outside the namespace (a forged record). Anything
    /// else the rules would refuse today (a revision made before a rule, a
    /// manifest this check cannot read) is logged and does not stand in
    /// the way: helm deletes as the tenant, which RBAC keeps inside its
    /// namespace, and every release installed must stay removable.
    pub(super) fn check_uninstall(
        &self,
        namespace: &TenantNamespace,
        plan: &Rules,
        rendering: &str,
    ) -> Result<(), ApiError> {
        let Err(found) = plan.apply(rendering) else {
            return Ok(());
        };
        let (scope, other): (Vec<Violation>, Vec<Violation>) =
            found.into_iter().partition(|v| v.is_about_scope());
        for violation in &other {
            tracing::info!(%namespace, %violation, "uninstalling a release whose stored documents break a rule of today");
        }
        if scope.is_empty() {
            Ok(())
        } else {
            Err(refused(namespace, scope))
        }
    }

    /// [`Self::checked_with_additions`] for a rendering no check has seen
    /// yet (a Helm 3 dry run's): checked by the checker in a process of its
    /// own, under its limits, then given the plan's additions here.
    pub(super) async fn checked_dry_run(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        plan: &Rules,
        rendering: &str,
    ) -> Result<Checked, ApiError> {
        let checker_rules = Rules {
            additions: Additions::default(),
            ..plan.clone()
        };
        let mut checked = self
            .helm
            .check_rendering(namespace, name, &checker_rules, rendering)
            .await
            .map_err(|error| match error {
                HelmError::NotConfined { violations, .. } => refused(namespace, violations),
                other => other.into(),
            })?;
        plan.additions
            .apply(&mut checked, &plan.release)
            .map_err(|error| ApiError::new(Code::SidecarTargetMissing, error.to_string()))?;
        Ok(checked)
    }
}

/// A refusal, logged by document and problem (no chart text).
fn refused(namespace: &TenantNamespace, violations: Vec<Violation>) -> ApiError {
    for violation in &violations {
        tracing::warn!(%namespace, %violation, "refused: the rendering breaks confinement");
    }
    HelmError::NotConfined {
        namespace: namespace.to_string(),
        violations,
    }
    .into()
}
