//! Helm's release record (the JSON Helm 3 and Helm 4 store per revision and
//! print with `-o json`), and its mapping to the contract's types.
//!
//! Only the fields we use are declared; unknown fields are ignored, so both
//! majors' records decode. Chart name and version come from the chart's
//! metadata, never from splitting strings.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::{ReleaseInfo, ReleaseStatus, Revision};

/// One revision of a release as Helm records it.
#[derive(Debug, Clone, Deserialize)]
pub struct HelmRelease {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    /// The revision number (Helm calls it `version`).
    pub version: u32,
    #[serde(default)]
    pub info: HelmInfo,
    #[serde(default)]
    pub chart: HelmChart,
    /// User-supplied values of this revision.
    #[serde(default)]
    pub config: Option<Map<String, Value>>,
    #[serde(default)]
    pub manifest: String,
    /// Hook objects (rendered separately from the main manifest).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub hooks: Vec<HelmHook>,
}

/// A hook of a release; only its rendered manifest is used.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HelmHook {
    #[serde(default)]
    pub manifest: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HelmInfo {
    #[serde(default)]
    pub first_deployed: Option<String>,
    #[serde(default)]
    pub last_deployed: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HelmChart {
    #[serde(default)]
    pub metadata: ChartMetadata,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChartMetadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, rename = "appVersion")]
    pub app_version: String,
}

impl HelmRelease {
    pub fn status(&self) -> ReleaseStatus {
        ReleaseStatus::from_helm(&self.info.status)
    }

    /// When this revision was last deployed, as RFC 3339 in UTC.
    pub fn updated(&self) -> String {
        let raw = self
            .info
            .last_deployed
            .as_deref()
            .or(self.info.first_deployed.as_deref());
        raw.map(to_rfc3339).unwrap_or_default()
    }

    /// The last-deployed time as a timestamp, if it parses.
    pub fn updated_at(&self) -> Option<jiff::Timestamp> {
        let raw = self
            .info
            .last_deployed
            .as_deref()
            .or(self.info.first_deployed.as_deref())?;
        raw.parse().ok()
    }

    /// The contract's view of this revision. `with_values` adds the
    /// user-supplied values (install and upgrade responses only).
    pub fn to_info(&self, with_values: bool) -> ReleaseInfo {
        let description = Some(self.info.description.clone()).filter(|d| !d.is_empty());
        ReleaseInfo {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            revision: self.version,
            status: self.status(),
            chart: self.chart.metadata.name.clone(),
            app_version: self.chart.metadata.app_version.clone(),
            updated: self.updated(),
            description,
            values: with_values.then(|| self.config.clone().unwrap_or_default()),
            route: None,
        }
    }

    pub fn to_revision(&self) -> Revision {
        let metadata = &self.chart.metadata;
        Revision {
            revision: self.version,
            updated: self.updated(),
            status: self.status(),
            chart: format!("{}-{}", metadata.name, metadata.version),
            app_version: metadata.app_version.clone(),
            description: self.info.description.clone(),
        }
    }
}

/// Go writes a nil slice as `null`.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Normalises Go's RFC 3339 (with nanoseconds and any offset) to UTC RFC 3339.
/// Unparseable input is passed through rather than invented.
fn to_rfc3339(raw: &str) -> String {
    match raw.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.to_string(),
        Err(_) => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{
        "name": "svc-1a2b3c4d", "namespace": "paas-ws-3f9a0c1d", "version": 3,
        "info": {"first_deployed": "2026-11-01T10:00:00.123456789+02:00",
                 "last_deployed": "2026-11-02T10:00:00.5+02:00", "deleted": "",
                 "description": "Upgrade complete", "status": "deployed", "notes": "hi"},
        "chart": {"metadata": {"name": "my-web-app", "version": "1.2.3-rc.1", "appVersion": "2.0"},
                  "templates": [], "values": {"a": 1}},
        "config": {"password": "s3cret", "nested": {"n": 1}},
        "manifest": "---\n", "hooks": null, "labels": null, "apply_method": "ssa"
    }"#;

    #[test]
    fn maps_to_contract_types() {
        let release: HelmRelease = serde_json::from_str(RECORD).unwrap();
        let info = release.to_info(true);
        assert_eq!(info.revision, 3);
        assert_eq!(info.status, ReleaseStatus::Deployed);
        assert_eq!(info.chart, "my-web-app");
        assert_eq!(info.app_version, "2.0");
        assert_eq!(info.updated, "2026-11-02T08:00:00.5Z");
        assert_eq!(info.description.as_deref(), Some("Upgrade complete"));
        assert_eq!(info.values.unwrap()["password"], "s3cret");
        assert!(release.to_info(false).values.is_none());
        let revision = release.to_revision();
        assert_eq!(revision.chart, "my-web-app-1.2.3-rc.1");
    }

    #[test]
    fn sparse_records_decode() {
        let release: HelmRelease = serde_json::from_str(
            r#"{"name": "x", "version": 1, "info": {"status": "pending-install"}}"#,
        )
        .unwrap();
        let info = release.to_info(true);
        assert_eq!(info.status, ReleaseStatus::PendingInstall);
        assert_eq!(info.updated, "");
        assert_eq!(info.values, Some(Map::new()));
        assert_eq!(info.description, None);
    }
}
