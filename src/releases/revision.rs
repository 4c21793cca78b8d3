//! One way to make a new revision without rendering the chart: stored
//! documents checked as a new rendering would be, with what the operator
//! keeps about the release added, and applied as an upgrade with the
//! stored revision's chart and values. Rollback applies the target
//! revision's documents; attaching or detaching a sidecar and keeping the
//! n8n key apply the latest revision's again.

use super::ReleaseService;
use super::state::{self, ReleaseState};
use crate::error::{ApiError, Code};
use crate::helm::{HelmRelease, ValuesMode, WriteKind};
use crate::names::{ReleaseName, TenantNamespace};
use crate::render::additions::{self, Applied};
use crate::render::confine::Rules;
use crate::render::documents::Checked;

impl ReleaseService {
    /// Applies `documents` (checked) as a new revision of the release,
    /// with `source`'s chart and values: the release it produced, which the
    /// read cache is told to expect.
    async fn apply_as_new_revision(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        source: &HelmRelease,
        documents: &Checked,
        description: &str,
    ) -> Result<HelmRelease, ApiError> {
        let values = source.config.clone().unwrap_or_default();
        let printed = self
            .helm
            .apply_documents(
                namespace,
                name,
                WriteKind::Upgrade(ValuesMode::Reset),
                &source.chart_identity(),
                documents,
                &values,
                Some(description),
            )
            .await?;
        let release = self.produced(namespace, name, printed).await?;
        self.expect(namespace, name, Ok(&release));
        Ok(release)
    }

    /// Applies a stored revision's documents again, checked as a new
    /// rendering would be, with that revision's values.
    pub(super) async fn roll_back_to(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        target: u32,
    ) -> Result<HelmRelease, ApiError> {
        let revision = self.revision_direct(namespace, name, target).await?;
        let additions = self.kept_additions(namespace, name).await?;
        let rules = self.plan(namespace, name, additions).await?;
        let checked = self.checked(namespace, rules.as_ref(), &revision.rendering())?;
        let description = format!("Rollback to {target}");
        self.apply_as_new_revision(namespace, name, &revision, &checked, &description)
            .await
    }

    /// Applies the release's latest documents again with `updated` kept
    /// (and what `previous` kept taken out), as a new revision; nothing when
    /// they are already so. Saves `updated` first, so every later upgrade
    /// and rollback adds the same; puts `previous` back if applying fails.
    pub(super) async fn reapply(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        previous: &ReleaseState,
        updated: &ReleaseState,
        description: &str,
    ) -> Result<(HelmRelease, Applied), ApiError> {
        let latest = self.require_latest(namespace, name).await?;
        let rendering = latest.rendering();
        let current = Rules::parse_only(&rendering).map_err(|_| {
            ApiError::new(
                Code::ReleaseRecordUnreadable,
                "The release's stored manifest cannot be read",
            )
        })?;
        let mut stripped = current.clone();
        if let Some(sidecar) = previous
            .sidecar
            .as_ref()
            .filter(|s| updated.sidecar.as_ref() != Some(*s))
        {
            additions::detach(&mut stripped, sidecar);
        }
        let plan = self.plan(namespace, name, updated.additions()).await?;
        let (checked, applied) =
            self.checked_with_additions(namespace, plan.as_ref(), &stripped.to_yaml_stream())?;
        if checked.same_objects(&current) {
            // Already so (helm stored the same objects, sorted by kind):
            // the same request again changes nothing.
            if previous != updated {
                state::save(&self.client, namespace, name, updated).await?;
            }
            return Ok((latest, applied));
        }
        state::save(&self.client, namespace, name, updated).await?;
        let release = self
            .apply_as_new_revision(namespace, name, &latest, &checked, description)
            .await;
        if release.is_err()
            && let Err(restore) = state::save(&self.client, namespace, name, previous).await
        {
            tracing::error!(%namespace, release = %name, error = %restore, "cannot put the release's kept state back");
        }
        Ok((release?, applied))
    }
}
