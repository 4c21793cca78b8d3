//! Reads Helm's release records straight from the Kubernetes API, so reads
//! never spawn helm.
//!
//! Helm's default driver keeps one Secret per revision, type
//! `helm.sh/release.v1`, named `sh.helm.release.v1.<name>.v<revision>`,
//! labelled `owner=helm,name=<name>,version=<revision>,status=…`; the
//! ConfigMap driver uses the same names and labels. The payload is
//! base64(gzip(JSON)) (inside the Secret's own base64). Helm 3 and Helm 4
//! write the same record format. Other drivers (sql) are read through the
//! helm CLI instead ([`super::cli_reads`]).

use std::io::Read;

use base64::Engine;
use flate2::read::GzDecoder;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, ObjectMeta};
use kube::{Api, Client};

use super::release::HelmRelease;

/// Largest encoded record accepted (etcd caps objects near 1.5 MiB).
const MAX_ENCODED: usize = 4 << 20;
/// Largest decompressed record accepted (guards against gzip bombs).
const MAX_DECODED: u64 = 64 << 20;

/// Which Helm storage driver holds the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDriver {
    Secret,
    ConfigMap,
}

impl StorageDriver {
    /// Maps `HELM_DRIVER`; `None` for drivers we cannot read (sql, memory).
    pub fn from_helm_driver(value: &str) -> Option<Self> {
        match value {
            "" | "secret" | "secrets" => Some(Self::Secret),
            "configmap" | "configmaps" => Some(Self::ConfigMap),
            _ => None,
        }
    }
}

/// A failure reading release records.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The Kubernetes API call failed.
    #[error("reading helm release records: {0}")]
    Kube(#[from] kube::Error),
    /// A record could not be decoded.
    #[error("release record {record} is corrupt: {reason}")]
    Corrupt { record: String, reason: String },
    /// A record is larger than we accept.
    #[error("release record {record} is larger than the accepted maximum")]
    TooLarge { record: String },
}

/// Read access to release records in one driver.
#[derive(Clone)]
pub struct ReleaseStore {
    client: Client,
    driver: StorageDriver,
}

impl ReleaseStore {
    pub fn new(client: Client, driver: StorageDriver) -> Self {
        Self { client, driver }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn driver(&self) -> StorageDriver {
        self.driver
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
        let newest = match self.driver {
            StorageDriver::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                let list = api.list(&params).await?;
                newest(&list.items, |s| &s.metadata)
                    .map(decode_secret)
                    .transpose()?
            }
            StorageDriver::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
                let list = api.list(&params).await?;
                newest(&list.items, |m| &m.metadata)
                    .map(decode_config_map)
                    .transpose()?
            }
        };
        Ok(newest)
    }

    /// Every stored revision of a release, oldest first.
    pub async fn history(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<HelmRelease>, StorageError> {
        let params = selector(name);
        let mut releases = match self.driver {
            StorageDriver::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                let list = api.list(&params).await?;
                list.items
                    .iter()
                    .map(decode_secret)
                    .collect::<Result<Vec<_>, _>>()?
            }
            StorageDriver::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
                let list = api.list(&params).await?;
                list.items
                    .iter()
                    .map(decode_config_map)
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        releases.sort_by_key(|r| r.version);
        Ok(releases)
    }

    /// Names of the releases in a namespace (one per release, any status).
    pub async fn release_names(&self, namespace: &str) -> Result<Vec<String>, StorageError> {
        let params = ListParams::default().labels("owner=helm");
        let metas = self.list_metadata(namespace, &params).await?;
        let mut names: Vec<String> = metas
            .iter()
            .filter_map(|m| m.labels.as_ref()?.get("name").cloned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Metadata (labels) of the records matching `params`: no payloads.
    async fn list_metadata(
        &self,
        namespace: &str,
        params: &ListParams,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        let metas = match self.driver {
            StorageDriver::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                api.list_metadata(params)
                    .await?
                    .items
                    .into_iter()
                    .map(|o| o.metadata)
                    .collect()
            }
            StorageDriver::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
                api.list_metadata(params)
                    .await?
                    .items
                    .into_iter()
                    .map(|o| o.metadata)
                    .collect()
            }
        };
        Ok(metas)
    }
}

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

pub(crate) fn decode_secret(secret: &Secret) -> Result<HelmRelease, StorageError> {
    let record = secret.metadata.name.clone().unwrap_or_default();
    let payload = secret.data.as_ref().and_then(|d| d.get("release"));
    let Some(payload) = payload else {
        return Err(StorageError::Corrupt {
            record,
            reason: "no release field".into(),
        });
    };
    decode_record(&record, &payload.0)
}

pub(crate) fn decode_config_map(map: &ConfigMap) -> Result<HelmRelease, StorageError> {
    let record = map.metadata.name.clone().unwrap_or_default();
    let payload = map.data.as_ref().and_then(|d| d.get("release"));
    let Some(payload) = payload else {
        return Err(StorageError::Corrupt {
            record,
            reason: "no release field".into(),
        });
    };
    decode_record(&record, payload.as_bytes())
}

/// Decodes Helm's payload: base64, then gzip when the magic bytes say so, then JSON.
pub fn decode_record(record: &str, encoded: &[u8]) -> Result<HelmRelease, StorageError> {
    let json = decode_payload(record, encoded)?;
    serde_json::from_slice(&json).map_err(|e| StorageError::Corrupt {
        record: record.to_owned(),
        reason: format!("json: {e}"),
    })
}

/// Helm's payload to the release JSON bytes: base64, then gzip when the
/// magic bytes say so.
pub fn decode_payload(record: &str, encoded: &[u8]) -> Result<Vec<u8>, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        record: record.to_owned(),
        reason,
    };
    if encoded.len() > MAX_ENCODED {
        return Err(StorageError::TooLarge {
            record: record.to_owned(),
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| corrupt(format!("base64: {e}")))?;
    let json = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(bytes.as_slice())
            .take(MAX_DECODED + 1)
            .read_to_end(&mut out)
            .map_err(|e| corrupt(format!("gzip: {e}")))?;
        if out.len() as u64 > MAX_DECODED {
            return Err(StorageError::TooLarge {
                record: record.to_owned(),
            });
        }
        out
    } else {
        bytes
    };
    Ok(json)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn encode(json: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
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
    fn rejects_corrupt_and_oversized_records() {
        assert!(matches!(
            decode_record("r", b"%%%"),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_record("r", &encode(b"not json")),
            Err(StorageError::Corrupt { .. })
        ));
        let huge = vec![b'A'; MAX_ENCODED + 4];
        assert!(matches!(
            decode_record("r", &huge),
            Err(StorageError::TooLarge { .. })
        ));
        // A small gzip that inflates past the limit.
        let bomb = encode(&vec![b' '; (MAX_DECODED + 10) as usize]);
        assert!(bomb.len() < MAX_ENCODED);
        assert!(matches!(
            decode_record("r", &bomb),
            Err(StorageError::TooLarge { .. })
        ));
    }

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
        assert_eq!(
            StorageDriver::from_helm_driver(""),
            Some(StorageDriver::Secret)
        );
        assert_eq!(
            StorageDriver::from_helm_driver("configmap"),
            Some(StorageDriver::ConfigMap)
        );
        assert_eq!(StorageDriver::from_helm_driver("sql"), None);
    }
}
