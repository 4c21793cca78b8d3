//! Helm's release records read straight from the Kubernetes API, so reads
//! never spawn helm (the record format: [`crate::helm::release`]). Drivers
//! we do not read (sql) are read through the helm CLI instead
//! ([`crate::helm::cli_reads`]).

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, ObjectMeta};
use kube::{Api, Client};

use crate::config::HelmDriver;
use crate::error::{ApiError, Code};
use crate::helm::release::{HelmRelease, RecordError, decode_record};
use crate::kube::KubeError;

/// Which objects hold the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Secret,
    ConfigMap,
}

impl RecordKind {
    /// The objects of a driver; `None` for storage we do not read (sql).
    pub fn of(driver: HelmDriver) -> Option<Self> {
        match driver {
            HelmDriver::Secret => Some(Self::Secret),
            HelmDriver::Configmap => Some(Self::ConfigMap),
            HelmDriver::Sql => None,
        }
    }
}

/// A failure reading release records.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The Kubernetes API call failed.
    #[error("reading helm release records: {0}")]
    Kube(#[from] kube::Error),
    /// A record could not be decoded, or is too large.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Records that cannot be read are a 500 without their content.
impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Kube(source) => KubeError::Api {
                action: "reading release records",
                source,
            }
            .into(),
            StorageError::Record(_) => {
                tracing::error!(%error, "unreadable helm release record");
                ApiError::new(
                    Code::ReleaseRecordUnreadable,
                    "The release record in the cluster cannot be read (corrupt or too large)",
                )
            }
        }
    }
}

/// Read access to the release records of one driver.
#[derive(Clone)]
pub struct ReleaseStore {
    client: Client,
    kind: RecordKind,
}

impl ReleaseStore {
    pub fn new(client: Client, kind: RecordKind) -> Self {
        Self { client, kind }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// The newest revision of a release, or `None` when it has no record.
    /// One round trip: the release's records (at most its history) are
    /// listed and only the newest is decoded.
    pub async fn latest(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<HelmRelease>, StorageError> {
        let params = selector(name);
        let newest = match self.kind {
            RecordKind::Secret => {
                let list = self.secrets(namespace).list(&params).await?;
                newest(&list.items, |s| &s.metadata)
                    .map(decode_secret)
                    .transpose()?
            }
            RecordKind::ConfigMap => {
                let list = self.config_maps(namespace).list(&params).await?;
                newest(&list.items, |m| &m.metadata)
                    .map(decode_config_map)
                    .transpose()?
            }
        };
        Ok(newest)
    }

    /// One revision of a release, read by its record's name.
    pub async fn revision(
        &self,
        namespace: &str,
        name: &str,
        revision: u32,
    ) -> Result<Option<HelmRelease>, StorageError> {
        let record = record_name(name, revision);
        let found = match self.kind {
            RecordKind::Secret => self
                .secrets(namespace)
                .get_opt(&record)
                .await?
                .map(|s| decode_secret(&s)),
            RecordKind::ConfigMap => self
                .config_maps(namespace)
                .get_opt(&record)
                .await?
                .map(|m| decode_config_map(&m)),
        };
        Ok(found.transpose()?)
    }

    /// Every stored revision of a release, oldest first.
    pub async fn history(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<HelmRelease>, StorageError> {
        let params = selector(name);
        let mut releases = match self.kind {
            RecordKind::Secret => {
                let list = self.secrets(namespace).list(&params).await?;
                list.items
                    .iter()
                    .map(decode_secret)
                    .collect::<Result<Vec<_>, _>>()?
            }
            RecordKind::ConfigMap => {
                let list = self.config_maps(namespace).list(&params).await?;
                list.items
                    .iter()
                    .map(decode_config_map)
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        releases.sort_by_key(|r| r.version);
        Ok(releases)
    }

    /// Names of the releases in a namespace (one per release, any status):
    /// one listing of the records' metadata, no payloads.
    pub async fn release_names(&self, namespace: &str) -> Result<Vec<String>, StorageError> {
        let params = ListParams::default().labels("owner=helm");
        let metas: Vec<ObjectMeta> = match self.kind {
            RecordKind::Secret => self
                .secrets(namespace)
                .list_metadata(&params)
                .await?
                .items
                .into_iter()
                .map(|o| o.metadata)
                .collect(),
            RecordKind::ConfigMap => self
                .config_maps(namespace)
                .list_metadata(&params)
                .await?
                .items
                .into_iter()
                .map(|o| o.metadata)
                .collect(),
        };
        let mut names: Vec<String> = metas
            .iter()
            .filter_map(|m| m.labels.as_ref()?.get("name").cloned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    pub fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn config_maps(&self, namespace: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

/// The name Helm gives the record of one revision.
pub fn record_name(release: &str, revision: u32) -> String {
    format!("sh.helm.release.v1.{release}.v{revision}")
}

/// The records of one release, as Helm selects them.
fn selector(name: &str) -> ListParams {
    // `name` is a validated release name, so it is a valid label value.
    ListParams::default().labels(&format!("owner=helm,name={name}"))
}

/// The record with the highest `version` label.
fn newest<T>(records: &[T], meta: impl Fn(&T) -> &ObjectMeta) -> Option<&T> {
    records
        .iter()
        .filter(|r| revision_label(meta(r)).is_some())
        .max_by_key(|r| revision_label(meta(r)))
}

fn revision_label(meta: &ObjectMeta) -> Option<u32> {
    meta.labels.as_ref()?.get("version")?.parse().ok()
}

fn no_payload(record: String) -> RecordError {
    RecordError::Corrupt {
        record,
        reason: "no release field".into(),
    }
}

pub fn decode_secret(secret: &Secret) -> Result<HelmRelease, RecordError> {
    let record = secret.metadata.name.clone().unwrap_or_default();
    let payload = secret.data.as_ref().and_then(|d| d.get("release"));
    let payload = payload.ok_or_else(|| no_payload(record.clone()))?;
    decode_record(&record, &payload.0)
}

pub fn decode_config_map(map: &ConfigMap) -> Result<HelmRelease, RecordError> {
    let record = map.metadata.name.clone().unwrap_or_default();
    let payload = map.data.as_ref().and_then(|d| d.get("release"));
    let payload = payload.ok_or_else(|| no_payload(record.clone()))?;
    decode_record(&record, payload.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_is_the_highest_version_label_not_the_list_order() {
        let meta = |version: Option<&str>| ObjectMeta {
            labels: version.map(|v| [("version".to_owned(), v.to_owned())].into()),
            ..Default::default()
        };
        let records = [
            meta(Some("9")),
            meta(Some("10")),
            meta(None),
            meta(Some("2")),
        ];
        let found = newest(&records, |m| m).unwrap();
        assert_eq!(revision_label(found), Some(10));
        assert!(newest(&[meta(None)], |m| m).is_none());
    }

    #[test]
    fn drivers() {
        assert_eq!(RecordKind::of(HelmDriver::Secret), Some(RecordKind::Secret));
        assert_eq!(
            RecordKind::of(HelmDriver::Configmap),
            Some(RecordKind::ConfigMap)
        );
        assert_eq!(RecordKind::of(HelmDriver::Sql), None);
    }

    #[test]
    fn records_without_payload_are_corrupt() {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("sh.helm.release.v1.a.v1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(matches!(
            decode_secret(&secret),
            Err(RecordError::Corrupt { .. })
        ));
    }
}
