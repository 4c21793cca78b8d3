//! Helm's release record (the JSON Helm 3 and Helm 4 store per revision and
//! print with `-o json`), and its mapping to the contract's types.
//!
//! Only the fields we use are declared; unknown fields are ignored, so both
//! majors' records decode. Chart name and version come from the chart's
//! metadata, never from splitting strings.
//!
//! Storage (Helm's default driver): one Secret per revision, type
//! `helm.sh/release.v1`, named `sh.helm.release.v1.<name>.v<revision>`,
//! labelled `owner=helm,name=<name>,version=<revision>,status=…`; the
//! ConfigMap driver uses the same names and labels. The payload is
//! base64(gzip(JSON)) (inside the Secret's own base64); [`decode_record`]
//! reads it. Helm 3 and Helm 4 write the same format.

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use flate2::read::GzDecoder;
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
    /// The chart's default values (`values.yaml`).
    #[serde(default)]
    pub values: Option<Map<String, Value>>,
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

impl HelmRelease {
    /// The manifest and every hook as one multi-document rendering: all
    /// that applying this revision creates.
    pub fn rendering(&self) -> String {
        let mut rendering = self.manifest.clone();
        for hook in &self.hooks {
            rendering.push_str("\n---\n");
            rendering.push_str(&hook.manifest);
        }
        rendering
    }

    /// The chart this revision was made from.
    pub fn chart_identity(&self) -> crate::helm::wrapper::ChartIdentity {
        let metadata = &self.chart.metadata;
        crate::helm::wrapper::ChartIdentity {
            name: metadata.name.clone(),
            version: metadata.version.clone(),
            app_version: metadata.app_version.clone(),
            default_values: self.chart.values.clone().unwrap_or_default(),
        }
    }

    /// `pending-*` and last touched longer than `limit` ago: the helm that
    /// set it is gone.
    pub fn is_stale_pending(&self, limit: Duration) -> bool {
        let limit = i64::try_from(limit.as_secs()).unwrap_or(i64::MAX);
        self.status().is_pending()
            && self
                .updated_at()
                .is_some_and(|at| jiff::Timestamp::now().duration_since(at).as_secs() > limit)
    }
}

/// Largest encoded record accepted (etcd caps objects near 1.5 MiB).
const MAX_ENCODED: usize = 4 << 20;
/// Largest decompressed record accepted (guards against gzip bombs; etcd
/// keeps a record under ~1.5 MiB compressed, and a rendered manifest
/// compresses about tenfold).
const MAX_DECODED: u64 = 16 << 20;

/// A release record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record could not be decoded.
    #[error("release record {record} is corrupt: {reason}")]
    Corrupt { record: String, reason: String },
    /// The record is larger than we accept.
    #[error("release record {record} is larger than the accepted maximum")]
    TooLarge { record: String },
}

/// Decodes Helm's payload: base64, then gzip when the magic bytes say so, then JSON.
pub fn decode_record(record: &str, encoded: &[u8]) -> Result<HelmRelease, RecordError> {
    let json = decode_payload(record, encoded)?;
    serde_json::from_slice(&json).map_err(|e| RecordError::Corrupt {
        record: record.to_owned(),
        reason: format!("json: {e}"),
    })
}

/// Decodes only what a history lists (revision, status, times, chart):
/// the manifest, hooks and values are skipped, not kept.
pub fn decode_summary(record: &str, encoded: &[u8]) -> Result<HelmRelease, RecordError> {
    #[derive(Deserialize)]
    struct Summary {
        name: String,
        #[serde(default)]
        namespace: String,
        version: u32,
        #[serde(default)]
        info: HelmInfo,
        #[serde(default)]
        chart: SummaryChart,
    }
    #[derive(Default, Deserialize)]
    struct SummaryChart {
        #[serde(default)]
        metadata: ChartMetadata,
    }
    let json = decode_payload(record, encoded)?;
    let summary: Summary = serde_json::from_slice(&json).map_err(|e| RecordError::Corrupt {
        record: record.to_owned(),
        reason: format!("json: {e}"),
    })?;
    Ok(HelmRelease {
        name: summary.name,
        namespace: summary.namespace,
        version: summary.version,
        info: summary.info,
        chart: HelmChart {
            metadata: summary.chart.metadata,
            values: None,
        },
        config: None,
        manifest: String::new(),
        hooks: Vec::new(),
    })
}

/// Helm's payload to the release JSON bytes: base64, then gzip when the
/// magic bytes say so.
pub fn decode_payload(record: &str, encoded: &[u8]) -> Result<Vec<u8>, RecordError> {
    let corrupt = |reason: String| RecordError::Corrupt {
        record: record.to_owned(),
        reason,
    };
    if encoded.len() > MAX_ENCODED {
        return Err(RecordError::TooLarge {
            record: record.to_owned(),
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| corrupt(format!("base64: {e}")))?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    GzDecoder::new(bytes.as_slice())
        .take(MAX_DECODED + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("gzip: {e}")))?;
    if out.len() as u64 > MAX_DECODED {
        return Err(RecordError::TooLarge {
            record: record.to_owned(),
        });
    }
    Ok(out)
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

    fn encode(json: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).unwrap();
        base64::engine::general_purpose::STANDARD
            .encode(gz.finish().unwrap())
            .into_bytes()
    }

    #[test]
    fn decodes_gzipped_and_plain_records() {
        let json = br#"{"name":"a","version":2,"info":{"status":"superseded"}}"#;
        assert_eq!(decode_record("r", &encode(json)).unwrap().version, 2);
        let plain = base64::engine::general_purpose::STANDARD
            .encode(json)
            .into_bytes();
        assert_eq!(decode_record("r", &plain).unwrap().name, "a");
    }

    #[test]
    fn summaries_skip_manifest_hooks_and_values() {
        let json = serde_json::json!({"name": "a", "version": 3, "info": {"status": "superseded"},
            "chart": {"metadata": {"name": "web", "version": "0.1.0"}, "values": {"big": "x"}},
            "config": {"password": "s3cret"}, "manifest": "kind: ConfigMap", "hooks": [{"manifest": "x"}]});
        let summary = decode_summary("r", &encode(json.to_string().as_bytes())).unwrap();
        assert_eq!(
            (summary.version, summary.chart.metadata.name.as_str()),
            (3, "web")
        );
        assert!(
            summary.manifest.is_empty() && summary.hooks.is_empty() && summary.config.is_none()
        );
        assert_eq!(summary.to_revision().status, ReleaseStatus::Superseded);
    }

    #[test]
    fn rejects_corrupt_and_oversized_records() {
        assert!(matches!(
            decode_record("r", b"%%%"),
            Err(RecordError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_record("r", &encode(b"not json")),
            Err(RecordError::Corrupt { .. })
        ));
        let huge = vec![b'A'; MAX_ENCODED + 4];
        assert!(matches!(
            decode_record("r", &huge),
            Err(RecordError::TooLarge { .. })
        ));
        // A small gzip that inflates past the limit.
        let bomb = encode(&vec![b' '; (MAX_DECODED + 10) as usize]);
        assert!(bomb.len() < MAX_ENCODED);
        assert!(matches!(
            decode_record("r", &bomb),
            Err(RecordError::TooLarge { .. })
        ));
    }

    #[test]
    fn only_old_pending_revisions_are_stale() {
        let record = |status: &str, at: &str| -> HelmRelease {
            serde_json::from_value(serde_json::json!({
                "name": "a", "version": 2, "info": {"status": status, "last_deployed": at}
            }))
            .unwrap()
        };
        let old = "2020-01-01T00:00:00Z";
        let now = jiff::Timestamp::now().to_string();
        let limit = Duration::from_secs(60);
        assert!(record("pending-upgrade", old).is_stale_pending(limit));
        assert!(record("pending-rollback", old).is_stale_pending(limit));
        assert!(!record("pending-upgrade", &now).is_stale_pending(limit));
        assert!(!record("deployed", old).is_stale_pending(limit));
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
