//! Stuck-release recovery: a revision left `pending-*` by a helm that was
//! killed (SIGKILL, node loss) blocks every later operation ("another
//! operation (install/upgrade/rollback) is in progress"). Like Flux's
//! helm-controller, we mark such a revision `failed` in Helm's own record
//! (JSON `info.status` and `info.description`, and the `status` label), once
//! it is older than any helm run of ours can last and nobody holds the
//! release. The write is checked against the record's `resourceVersion`.
//! Records in storage we do not read (HELM_DRIVER=sql) are left alone.

use std::future::Future;
use std::io::Write;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use serde_json::Value;

use super::ReleaseService;
use super::store::{RecordKind, ReleaseStore, StorageError};
use crate::error::ApiError;
use crate::helm::HelmRelease;
use crate::helm::release::{RecordError, ReleaseSummary, decode_payload};
use crate::names::{ReleaseName, TenantNamespace};

impl ReleaseService {
    /// Pending for longer than helm's timeout plus our margin, with no
    /// operation of any replica on it (no local lock, no unexpired Lease):
    /// the helm that set `pending-*` is gone.
    pub(super) async fn is_stuck(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        release: &ReleaseSummary,
    ) -> bool {
        release.is_stale_pending(self.settings.stale_after)
            && !self
                .locks
                .is_held_anywhere(namespace.as_str(), name.as_str())
                .await
    }

    /// Marks an abandoned `pending-*` latest revision failed, as Flux's
    /// helm-controller does, so the next helm operation can proceed. Called
    /// with the release's lock and Lease held, so no replica runs helm on
    /// it, and with the latest revision the caller has just read under them.
    pub(super) async fn recover_if_stuck(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        latest: &ReleaseSummary,
    ) -> Result<bool, ApiError> {
        if !latest.is_stale_pending(self.settings.stale_after) {
            return Ok(false);
        }
        let Some(store) = self.reads.store() else {
            // The records live where we cannot write them (HELM_DRIVER=sql):
            // helm will answer "another operation is in progress" (409).
            tracing::warn!(%namespace, release = %name, revision = latest.version,
                "release is stuck pending, but its storage driver cannot be recovered by the operator");
            return Ok(false);
        };
        if !mark_failed(store, namespace, name, latest).await? {
            return Ok(false);
        }
        tracing::warn!(%namespace, release = %name, revision = latest.version,
            "recovered a stuck release: marked its pending revision failed");
        Ok(true)
    }

    /// helm refuses an upgrade of a release that is missing, or whose latest
    /// revision is `pending-*`, before it changes anything; only then is the
    /// release read: 404 when it is missing, and a stale pending revision is
    /// recovered and the operation tried once more. Anything else is
    /// `refused`.
    pub(super) async fn retry_if_recovered<Retry, Fut>(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        refused: ApiError,
        retry: Retry,
    ) -> Result<HelmRelease, ApiError>
    where
        Retry: FnOnce() -> Fut,
        Fut: Future<Output = Result<HelmRelease, ApiError>>,
    {
        use crate::error::Code;
        if !matches!(
            refused.code,
            Code::NoDeployedRelease | Code::ReleaseNotFound | Code::OperationInProgress
        ) {
            return Err(refused);
        }
        let latest = self.require_latest(namespace, name).await?;
        if refused.code == Code::OperationInProgress
            && self
                .recover_if_stuck(namespace, name, &latest.summary())
                .await?
        {
            return retry().await;
        }
        Err(refused)
    }
}

/// The description written into a recovered revision.
pub const RECOVERED_DESCRIPTION: &str = "Marked failed by paas-operator: the helm process that started this operation is gone (stale pending state)";

/// Marks `latest` (the release's newest revision, read by the caller with
/// the release's lock and Lease held) `failed` in Helm's record; returns
/// false when its record is gone. The record is re-read and written back
/// checked against its `resourceVersion`.
pub async fn mark_failed(
    store: &ReleaseStore,
    namespace: &TenantNamespace,
    name: &ReleaseName,
    latest: &ReleaseSummary,
) -> Result<bool, StorageError> {
    let record = super::store::record_name(name.as_str(), latest.version);
    match store.kind() {
        RecordKind::Secret => {
            let api = store.secrets(namespace.as_str());
            let Some(mut secret) = api.get_opt(&record).await? else {
                return Ok(false);
            };
            let payload = secret
                .data
                .as_ref()
                .and_then(|d| d.get("release"))
                .map(|b| b.0.clone())
                .unwrap_or_default();
            let updated = rewrite_failed(&record, &payload)?;
            secret
                .data
                .get_or_insert_with(Default::default)
                .insert("release".into(), ByteString(updated));
            set_failed_label(&mut secret.metadata);
            api.replace(&record, &PostParams::default(), &secret)
                .await?;
        }
        RecordKind::ConfigMap => {
            let api = store.config_maps(namespace.as_str());
            let Some(mut map) = api.get_opt(&record).await? else {
                return Ok(false);
            };
            let payload = map
                .data
                .as_ref()
                .and_then(|d| d.get("release"))
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default();
            let updated = rewrite_failed(&record, &payload)?;
            map.data.get_or_insert_with(Default::default).insert(
                "release".into(),
                String::from_utf8_lossy(&updated).into_owned(),
            );
            set_failed_label(&mut map.metadata);
            api.replace(&record, &PostParams::default(), &map).await?;
        }
    }
    Ok(true)
}

fn set_failed_label(meta: &mut kube::api::ObjectMeta) {
    meta.labels
        .get_or_insert_with(Default::default)
        .insert("status".into(), "failed".into());
}

/// Rewrites an encoded release record with `info.status = failed`, keeping
/// every other field as Helm wrote it.
fn rewrite_failed(record: &str, encoded: &[u8]) -> Result<Vec<u8>, RecordError> {
    let corrupt = |reason: String| RecordError::Corrupt {
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
    use crate::helm::release::decode_record;
    use crate::model::ReleaseStatus;

    #[test]
    fn marks_a_record_failed_and_keeps_the_rest() {
        let json = br#"{"name":"svc-a","version":3,"info":{"status":"pending-upgrade","description":"Preparing upgrade","last_deployed":"2026-11-26T08:00:00Z"},"manifest":"---\nkind: ConfigMap\n","hooks":[]}"#;
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(json).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(gzip.finish().unwrap())
            .into_bytes();
        let updated = rewrite_failed("r", &encoded).unwrap();
        let release = decode_record("r", &updated).unwrap();
        assert_eq!(release.status(), ReleaseStatus::Failed);
        assert_eq!(release.version, 3);
        assert_eq!(release.info.description, RECOVERED_DESCRIPTION);
        assert_eq!(release.manifest, "---\nkind: ConfigMap\n");
        assert!(rewrite_failed("r", b"%%%").is_err());
    }
}
