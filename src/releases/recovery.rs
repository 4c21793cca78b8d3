//! Stuck-release recovery: a revision left `pending-*` by a helm that was
//! killed (SIGKILL, node loss) blocks every later operation ("another
//! operation (install/upgrade/rollback) is in progress"). Like Flux's
//! helm-controller, we mark such a revision `failed` in Helm's own record
//! (JSON `info.status` and `info.description`, and the `status` label), once
//! it is older than any helm run of ours can last and nobody holds the
//! release. The write is checked against the record's `resourceVersion`.
//! Records in storage we do not read (HELM_DRIVER=sql) are left alone.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;

use super::storage::{StorageDriver, StorageError, decode_payload};
use super::{Helm, HelmError, HelmRelease};
use crate::names::{ReleaseName, TenantNamespace};

/// The description written into a recovered revision.
pub const RECOVERED_DESCRIPTION: &str = "Marked failed by paas-operator: the helm process that started this operation is gone (stale pending state)";

impl HelmRelease {
    /// `pending-*` and last touched longer than `limit` ago.
    pub fn is_stale_pending(&self, limit: Duration) -> bool {
        let limit = i64::try_from(limit.as_secs()).unwrap_or(i64::MAX);
        self.status().is_pending()
            && self
                .updated_at()
                .is_some_and(|at| jiff::Timestamp::now().duration_since(at).as_secs() > limit)
    }
}

impl Helm {
    /// Marks `latest` (the release's newest revision, read by the caller
    /// with the release's lock and Lease held) `failed` when it is a stale
    /// `pending-*` (see [`HelmRelease::is_stale_pending`]); returns that
    /// revision. The record is re-read and written back checked against its
    /// `resourceVersion`.
    pub async fn recover_stale_pending(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        latest: &HelmRelease,
        limit: Duration,
    ) -> Result<Option<u32>, HelmError> {
        if !latest.is_stale_pending(limit) {
            return Ok(None);
        }
        let Some(store) = self.store() else {
            // The records live where we cannot write them (HELM_DRIVER=sql):
            // helm will answer "another operation is in progress" (409).
            tracing::warn!(%namespace, release = %name, revision = latest.version,
                "release is stuck pending, but its storage driver cannot be recovered by the operator");
            return Ok(None);
        };
        let record = format!("sh.helm.release.v1.{}.v{}", name.as_str(), latest.version);
        let client = store.client().clone();
        match store.driver() {
            StorageDriver::Secret => {
                let api: Api<Secret> = Api::namespaced(client, namespace.as_str());
                let Some(mut secret) = api.get_opt(&record).await.map_err(StorageError::Kube)?
                else {
                    return Ok(None);
                };
                let payload = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get("release"))
                    .map(|b| b.0.clone())
                    .unwrap_or_default();
                let updated = mark_failed(&record, &payload)?;
                secret
                    .data
                    .get_or_insert_with(Default::default)
                    .insert("release".into(), ByteString(updated));
                set_failed_label(&mut secret.metadata);
                api.replace(&record, &PostParams::default(), &secret)
                    .await
                    .map_err(StorageError::Kube)?;
            }
            StorageDriver::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(client, namespace.as_str());
                let Some(mut map) = api.get_opt(&record).await.map_err(StorageError::Kube)? else {
                    return Ok(None);
                };
                let payload = map
                    .data
                    .as_ref()
                    .and_then(|d| d.get("release"))
                    .map(|s| s.as_bytes().to_vec())
                    .unwrap_or_default();
                let updated = mark_failed(&record, &payload)?;
                map.data.get_or_insert_with(Default::default).insert(
                    "release".into(),
                    String::from_utf8_lossy(&updated).into_owned(),
                );
                set_failed_label(&mut map.metadata);
                api.replace(&record, &PostParams::default(), &map)
                    .await
                    .map_err(StorageError::Kube)?;
            }
        }
        Ok(Some(latest.version))
    }
}

fn set_failed_label(meta: &mut kube::api::ObjectMeta) {
    meta.labels
        .get_or_insert_with(Default::default)
        .insert("status".into(), "failed".into());
}

/// Rewrites an encoded release record with `info.status = failed`, keeping
/// every other field as Helm wrote it.
fn mark_failed(record: &str, encoded: &[u8]) -> Result<Vec<u8>, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        record: record.to_owned(),
        reason,
    };
    let json = decode_payload(record, encoded)?;
    let mut release: Value =
        serde_json::from_slice(&json).map_err(|e| corrupt(format!("json: {e}")))?;
    let info = release
        .get_mut("info")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| corrupt("no info object".into()))?;
    info.insert("status".into(), Value::from("failed"));
    info.insert("description".into(), Value::from(RECOVERED_DESCRIPTION));
    let json = serde_json::to_vec(&release).map_err(|e| corrupt(format!("json: {e}")))?;
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(&json)
        .map_err(|e| corrupt(format!("gzip: {e}")))?;
    let compressed = gzip.finish().map_err(|e| corrupt(format!("gzip: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD
        .encode(compressed)
        .into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::storage::decode_record;
    use crate::model::ReleaseStatus;

    #[test]
    fn marks_a_record_failed_and_keeps_the_rest() {
        let json = br#"{"name":"svc-a","version":3,"info":{"status":"pending-upgrade","description":"Preparing upgrade","last_deployed":"2026-11-26T08:00:00Z"},"manifest":"---\nkind: ConfigMap\n","hooks":[]}"#;
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(json).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(gzip.finish().unwrap())
            .into_bytes();
        let updated = mark_failed("r", &encoded).unwrap();
        let release = decode_record("r", &updated).unwrap();
        assert_eq!(release.status(), ReleaseStatus::Failed);
        assert_eq!(release.version, 3);
        assert_eq!(release.info.description, RECOVERED_DESCRIPTION);
        assert_eq!(release.manifest, "---\nkind: ConfigMap\n");
        assert!(mark_failed("r", b"%%%").is_err());
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
}
