//! Helm's release records read straight from the Kubernetes API, so reads
//! never spawn helm (the record format: `crate::helm::release`). Drivers
//! we do not read (sql) are read through the helm CLI instead
//! (`crate::helm::cli_reads`).

use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, ObjectMeta};
use kube::{Api, Client};
use serde::Deserialize;

use crate::config::HelmDriver;
use crate::error::{ApiError, Code};
use crate::helm::release::{
    HelmRelease, RecordError, ReleaseSummary, decode_loadable_summary, decode_record,
    decode_summary,
};
use crate::kube::KubeError;
use crate::kube::compact::{core_v1_resource, identity};
use crate::kube::pods::{Selector, workload_selectors};

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

/// Records that cannot be read are a 409 without their content: the
/// release is in a state that cannot be read, not the operator broken.
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
                    "The release record in the cluster cannot be read (corrupt or too large); the release can still be uninstalled",
                )
            }
        }
    }
}

/// One revision as the read endpoints need it: its summary, plus the
/// selectors of its workloads (found once in the manifest, which is not
/// kept), for the status endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRevision {
    pub summary: ReleaseSummary,
    pub selectors: Arc<[Selector]>,
}

/// A whole revision (from helm's CLI, or decoded whole), as the read
/// endpoints need it.
impl From<&HelmRelease> for CachedRevision {
    fn from(release: &HelmRelease) -> Self {
        Self {
            summary: release.summary(),
            selectors: workload_selectors(&release.manifest).into(),
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

    /// The newest revision of a release, whole (for writes), or `None`
    /// when it has no record. One round trip: the release's records (at
    /// most its history) are listed and only the newest genuine one is
    /// decoded.
    pub async fn latest(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<HelmRelease>, StorageError> {
        let name = name.to_owned();
        Ok(match self.kind {
            RecordKind::Secret => {
                let records = self.records::<RecordSecret>(namespace, &name).await?;
                off_runtime(records, move |r| newest_of(r, &name, decode_genuine)).await?
            }
            RecordKind::ConfigMap => {
                let records = self.records::<RecordConfigMap>(namespace, &name).await?;
                off_runtime(records, move |r| newest_of(r, &name, decode_genuine)).await?
            }
        })
    }

    /// The newest revision of a release as the read endpoints show it.
    pub async fn latest_summary(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<CachedRevision>, StorageError> {
        let name = name.to_owned();
        Ok(match self.kind {
            RecordKind::Secret => {
                let records = self.records::<RecordSecret>(namespace, &name).await?;
                off_runtime(records, move |r| newest_of(r, &name, decode_cached)).await?
            }
            RecordKind::ConfigMap => {
                let records = self.records::<RecordConfigMap>(namespace, &name).await?;
                off_runtime(records, move |r| newest_of(r, &name, decode_cached)).await?
            }
        })
    }

    /// One revision of a release, whole, read by its record's name.
    pub async fn revision(
        &self,
        namespace: &str,
        name: &str,
        revision: u32,
    ) -> Result<Option<HelmRelease>, StorageError> {
        let record = record_name(name, revision);
        let found = match self.kind {
            RecordKind::Secret => {
                let found = Api::<RecordSecret>::namespaced(self.client.clone(), namespace)
                    .get_opt(&record)
                    .await?;
                off_runtime(Vec::from_iter(found), |r| {
                    r.first().and_then(decode_genuine)
                })
                .await
            }
            RecordKind::ConfigMap => {
                let found = Api::<RecordConfigMap>::namespaced(self.client.clone(), namespace)
                    .get_opt(&record)
                    .await?;
                off_runtime(Vec::from_iter(found), |r| {
                    r.first().and_then(decode_genuine)
                })
                .await
            }
        };
        Ok(found.transpose()?)
    }

    /// Every stored revision of a release, oldest first, as summaries.
    pub async fn history(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<ReleaseSummary>, StorageError> {
        self.history_within(namespace, name, Inflate::Summary).await
    }

    /// [`Self::history`] for writes: every record must be one helm could
    /// load whole (a larger one is an error, 409, before helm runs).
    pub async fn loadable_history(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<ReleaseSummary>, StorageError> {
        self.history_within(namespace, name, Inflate::Whole).await
    }

    async fn history_within(
        &self,
        namespace: &str,
        name: &str,
        inflate: Inflate,
    ) -> Result<Vec<ReleaseSummary>, StorageError> {
        let name = name.to_owned();
        Ok(match self.kind {
            RecordKind::Secret => {
                let records = self.records::<RecordSecret>(namespace, &name).await?;
                off_runtime(records, move |r| history_of(r, &name, inflate)).await?
            }
            RecordKind::ConfigMap => {
                let records = self.records::<RecordConfigMap>(namespace, &name).await?;
                off_runtime(records, move |r| history_of(r, &name, inflate)).await?
            }
        })
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

    /// The records of one release, as Helm selects them (a consistent LIST).
    async fn records<K>(&self, namespace: &str, name: &str) -> Result<Vec<K>, kube::Error>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.list(&selector(name)).await?.items)
    }

    /// Whole Secrets (for the one writer of records: stuck-release recovery).
    pub fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Whole ConfigMaps (as [`Self::secrets`]).
    pub fn config_maps(&self, namespace: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

/// The name Helm gives the record of one revision.
pub fn record_name(release: &str, revision: u32) -> String {
    format!("sh.helm.release.v1.{release}.v{revision}")
}

/// The release and revision a record's object name stands for
/// (`sh.helm.release.v1.<release>.v<revision>`; release names may hold dots).
pub fn parse_record_name(object: &str) -> Option<(&str, u32)> {
    let rest = object.strip_prefix("sh.helm.release.v1.")?;
    let (release, revision) = rest.rsplit_once(".v")?;
    let number: u32 = revision.parse().ok()?;
    // Exactly as Helm prints it (no sign, no leading zeros).
    (!release.is_empty() && number.to_string() == revision).then_some((release, number))
}

/// The records of one release, as Helm selects them.
fn selector(name: &str) -> ListParams {
    // `name` is a validated release name, so it is a valid label value.
    ListParams::default().labels(&format!("owner=helm,name={name}"))
}

/// The label selector of every record Helm writes.
pub const RECORD_LABELS: &str = "owner=helm";

/// The type of the Secrets Helm stores its records in.
pub const RECORD_TYPE: &str = "helm.sh/release.v1";

/// A record Secret as read: identity, type and the `release` key only
/// (any other key is skipped unallocated).
#[derive(Debug, Clone, Deserialize)]
pub struct RecordSecret {
    #[serde(deserialize_with = "identity")]
    pub metadata: ObjectMeta,
    #[serde(rename = "type", default)]
    type_: Option<String>,
    #[serde(default)]
    data: Option<SecretPayload>,
}
core_v1_resource!(RecordSecret, "Secret", "secrets");

#[derive(Debug, Clone, Deserialize)]
struct SecretPayload {
    #[serde(default)]
    release: Option<ByteString>,
}

/// A record ConfigMap as read (HELM_DRIVER=configmap).
#[derive(Debug, Clone, Deserialize)]
pub struct RecordConfigMap {
    #[serde(deserialize_with = "identity")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    data: Option<MapPayload>,
}
core_v1_resource!(RecordConfigMap, "ConfigMap", "configmaps");

#[derive(Debug, Clone, Deserialize)]
struct MapPayload {
    #[serde(default)]
    release: Option<String>,
}

/// An object that may hold a release record: a Secret or a ConfigMap.
pub trait RecordObject {
    fn metadata(&self) -> &ObjectMeta;
    /// True when its type is one Helm gives records (Secrets only).
    fn has_record_type(&self) -> bool;
    /// The encoded payload, when there is one.
    fn payload(&self) -> Option<&[u8]>;
}

impl RecordObject for RecordSecret {
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn has_record_type(&self) -> bool {
        self.type_.as_deref() == Some(RECORD_TYPE)
    }

    fn payload(&self) -> Option<&[u8]> {
        Some(self.data.as_ref()?.release.as_ref()?.0.as_slice())
    }
}

impl RecordObject for RecordConfigMap {
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn has_record_type(&self) -> bool {
        true
    }

    fn payload(&self) -> Option<&[u8]> {
        Some(self.data.as_ref()?.release.as_deref()?.as_bytes())
    }
}

/// The release and revision a record claims, when it is shaped as Helm
/// writes records: labelled `owner=helm`, `name`, `version`, named
/// `sh.helm.release.v1.<name>.v<version>`, of Helm's type. Anything else
/// in the namespace, whatever its labels, is no record.
pub fn claim(object: &impl RecordObject) -> Option<(String, u32)> {
    let meta = object.metadata();
    let labels = meta.labels.as_ref()?;
    if labels.get("owner").map(String::as_str) != Some("helm") || !object.has_record_type() {
        return None;
    }
    let release = labels.get("name")?;
    let revision: u32 = labels.get("version")?.parse().ok()?;
    (meta.name.as_deref() == Some(record_name(release, revision).as_str()))
        .then(|| (release.clone(), revision))
}

/// Decodes a record Helm wrote, whole: `None` when the object is no
/// genuine record (see [`claim`]) or its payload names another release or
/// revision than it claims; an error when it cannot be read.
pub fn decode_genuine(object: &impl RecordObject) -> Option<Result<HelmRelease, RecordError>> {
    genuine(object, decode_record, |r| (r.name.as_str(), r.version))
}

/// [`decode_genuine`], keeping only what the read endpoints show.
pub fn decode_cached(object: &impl RecordObject) -> Option<Result<CachedRevision, RecordError>> {
    let decode = |record: &str, payload: &[u8]| {
        decode_summary(record, payload, workload_selectors).map(|(summary, selectors)| {
            CachedRevision {
                summary,
                selectors: selectors.into(),
            }
        })
    };
    genuine(object, decode, |r| (&*r.summary.name, r.summary.version))
}

fn genuine<T>(
    object: &impl RecordObject,
    decode: impl FnOnce(&str, &[u8]) -> Result<T, RecordError>,
    names: impl Fn(&T) -> (&str, u32),
) -> Option<Result<T, RecordError>> {
    let (release, revision) = claim(object)?;
    let record = object.metadata().name.clone().unwrap_or_default();
    let Some(payload) = object.payload() else {
        return Some(Err(RecordError::Corrupt {
            record,
            reason: "no release field".into(),
        }));
    };
    match decode(&record, payload) {
        Ok(decoded) if names(&decoded) == (release.as_str(), revision) => Some(Ok(decoded)),
        Ok(_) => {
            tracing::warn!(
                record,
                "ignored: a release record whose content is not the release it is named for"
            );
            None
        }
        Err(error) => Some(Err(error)),
    }
}

/// Encoded payloads up to this size (together) are decoded in place. It
/// is the encoded size that is known, and gzip inflates up to ~1,000×: 4 KiB
/// stays within a few MiB of work; nearly every real record is larger.
pub const DECODE_IN_PLACE: usize = 4 << 10;

/// Runs `decode` on a release's records without holding up the async
/// runtime: in place when their payloads are small (most are), else on the
/// blocking pool. A record may inflate to hundreds of MiB; gunzip and JSON
/// then take seconds, and a runtime thread held that long delays Lease
/// renewals (a Lease lost mid-uninstall, seen under load) and every other
/// request queued on it.
pub async fn off_runtime<K, T>(
    objects: Vec<K>,
    decode: impl FnOnce(&[K]) -> T + Send + 'static,
) -> T
where
    K: RecordObject + Send + 'static,
    T: Send + 'static,
{
    let encoded: usize = objects
        .iter()
        .filter_map(RecordObject::payload)
        .map(<[u8]>::len)
        .sum();
    if encoded <= DECODE_IN_PLACE {
        return decode(&objects);
    }
    on_blocking_pool(move || decode(&objects)).await
}

/// Runs `work` on the blocking pool and waits for it; a panic in `work` is
/// the caller's, as if it had run in place.
pub async fn on_blocking_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// The newest genuine record of `release` among `objects`, decoded by `decode`.
fn newest_of<K: RecordObject, T>(
    objects: &[K],
    release: &str,
    decode: impl Fn(&K) -> Option<Result<T, RecordError>>,
) -> Result<Option<T>, RecordError> {
    let mut genuine: Vec<(u32, &K)> = objects
        .iter()
        .filter_map(|object| {
            let (name, revision) = claim(object)?;
            (name == release).then_some((revision, object))
        })
        .collect();
    genuine.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
    for (_, object) in genuine {
        if let Some(decoded) = decode(object) {
            return decoded.map(Some);
        }
    }
    Ok(None)
}

/// How much a history read may inflate per record.
#[derive(Clone, Copy)]
enum Inflate {
    /// A summary's CPU bound (reads).
    Summary,
    /// What helm could load whole (writes).
    Whole,
}

/// Every genuine record of `release` among `objects`, oldest first, as
/// summaries (no manifest, hooks or values are kept).
fn history_of<K: RecordObject>(
    objects: &[K],
    release: &str,
    inflate: Inflate,
) -> Result<Vec<ReleaseSummary>, RecordError> {
    let summary = |record: &str, payload: &[u8]| match inflate {
        Inflate::Summary => decode_summary(record, payload, |_| ()).map(|(summary, ())| summary),
        Inflate::Whole => decode_loadable_summary(record, payload),
    };
    let mut history = objects
        .iter()
        .filter(|object| claim(*object).is_some_and(|(name, _)| name == release))
        .filter_map(|object| genuine(object, summary, |s| (&*s.name, s.version)))
        .collect::<Result<Vec<_>, _>>()?;
    history.sort_by_key(|r| r.version);
    Ok(history)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use base64::Engine;
    use k8s_openapi::ByteString;

    use super::*;

    fn payload(name: &str, version: u32) -> Vec<u8> {
        let json =
            serde_json::json!({"name": name, "version": version, "info": {"status": "deployed"}});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.to_string().as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD
            .encode(gz.finish().unwrap())
            .into_bytes()
    }

    /// A record Secret as the API server sends it (with another key and
    /// managed fields the compact type skips), read as a [`RecordSecret`].
    fn secret(object: &str, labels: (&str, u32), kind: &str, content: (&str, u32)) -> RecordSecret {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(object.into()),
                labels: Some(
                    [
                        ("owner".to_owned(), "helm".to_owned()),
                        ("name".to_owned(), labels.0.to_owned()),
                        ("version".to_owned(), labels.1.to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            type_: Some(kind.into()),
            data: Some(
                [
                    (
                        "release".to_owned(),
                        ByteString(payload(content.0, content.1)),
                    ),
                    ("other".to_owned(), ByteString(b"x".to_vec())),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let mut json = serde_json::to_value(secret).unwrap();
        json["metadata"]["managedFields"] = serde_json::json!([{"manager": "helm"}]);
        serde_json::from_value(json).unwrap()
    }

    fn genuine(name: &str, version: u32) -> RecordSecret {
        secret(
            &record_name(name, version),
            (name, version),
            RECORD_TYPE,
            (name, version),
        )
    }

    /// Small records are decoded where the caller runs; one whose encoded
    /// payload passes [`DECODE_IN_PLACE`] on another (blocking-pool) thread,
    /// to the same result.
    #[tokio::test]
    async fn large_records_are_decoded_off_the_runtime_thread() {
        let caller = std::thread::current().id();
        let on_thread = |records: Vec<RecordSecret>| async move {
            off_runtime(records, |r| {
                let decoded = newest_of(r, "a", decode_genuine).unwrap().unwrap();
                (
                    std::thread::current().id(),
                    decoded.version,
                    decoded.info.description,
                )
            })
            .await
        };
        let (thread, version, _) = on_thread(vec![genuine("a", 1)]).await;
        assert_eq!((thread, version), (caller, 1));

        // A description that does not compress away: ~12 KiB encoded.
        let notes: String = (0..4000u32)
            .map(|i| format!("{:x}", i.wrapping_mul(2_654_435_761)))
            .collect();
        let json = serde_json::json!({"name": "a", "version": 2,
            "info": {"status": "deployed", "description": notes}});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.to_string().as_bytes()).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        assert!(encoded.len() > DECODE_IN_PLACE, "{}", encoded.len());
        let mut large = genuine("a", 2);
        large.data = Some(SecretPayload {
            release: Some(ByteString(encoded.into_bytes())),
        });
        let (thread, version, decoded_notes) = on_thread(vec![genuine("a", 1), large]).await;
        assert_ne!(thread, caller);
        assert_eq!((version, decoded_notes), (2, notes));
    }

    #[test]
    fn newest_is_the_highest_genuine_revision_not_the_list_order() {
        let records = [genuine("a", 9), genuine("a", 10), genuine("a", 2)];
        assert_eq!(
            newest_of(&records, "a", decode_genuine)
                .unwrap()
                .unwrap()
                .version,
            10
        );
        assert!(newest_of(&records, "b", decode_cached).unwrap().is_none());
        let history: Vec<u32> = history_of(&records, "a", Inflate::Summary)
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(history, [2, 9, 10]);
    }

    #[test]
    fn only_records_helm_wrote_for_that_release_are_read() {
        let forged = [
            // Wrong type: an Opaque Secret with Helm's labels and name.
            secret(&record_name("a", 5), ("a", 5), "Opaque", ("a", 5)),
            // Named for another revision than its labels say.
            secret(&record_name("a", 4), ("a", 6), RECORD_TYPE, ("a", 6)),
            // Content of another release.
            secret(&record_name("a", 7), ("a", 7), RECORD_TYPE, ("victim", 7)),
            // Content of another revision.
            secret(&record_name("a", 8), ("a", 8), RECORD_TYPE, ("a", 1)),
        ];
        let mut records = forged.to_vec();
        records.push(genuine("a", 3));
        assert_eq!(
            newest_of(&records, "a", decode_genuine)
                .unwrap()
                .unwrap()
                .version,
            3
        );
        let history: Vec<u32> = history_of(&records, "a", Inflate::Summary)
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(history, [3]);
        for object in &forged {
            assert!(decode_genuine(object).is_none());
            assert!(decode_cached(object).is_none());
        }
    }

    #[test]
    fn cached_revisions_keep_selectors_not_payloads() {
        let json = serde_json::json!({"name": "a", "version": 2, "info": {"status": "deployed"},
            "chart": {"metadata": {"name": "web", "version": "0.1.0"}},
            "config": {"password": "s3cret"},
            "manifest": "kind: Deployment\nmetadata: {name: w}\nspec:\n  selector:\n    matchLabels: {app: w}\n"});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.to_string().as_bytes()).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let mut record = genuine("a", 2);
        record.data = Some(SecretPayload {
            release: Some(ByteString(encoded.into_bytes())),
        });
        let cached = decode_cached(&record).unwrap().unwrap();
        assert_eq!(&*cached.selectors, [Selector::labels([("app", "w")])]);
        assert_eq!(&*cached.summary.chart, "web");
        assert_eq!(
            cached.summary,
            decode_genuine(&record).unwrap().unwrap().summary()
        );
    }

    #[test]
    fn record_names() {
        assert_eq!(parse_record_name("sh.helm.release.v1.a.v1"), Some(("a", 1)));
        assert_eq!(
            parse_record_name("sh.helm.release.v1.a.v2.v10"),
            Some(("a.v2", 10))
        );
        for name in [
            "sh.helm.release.v1.a.v01",
            "sh.helm.release.v1..v1",
            "sh.helm.release.v1.a",
            "x.a.v1",
            "sh.helm.release.v1.a.v+1",
        ] {
            assert_eq!(parse_record_name(name), None, "{name}");
        }
        assert_eq!(
            parse_record_name(&record_name("web.x", 7)),
            Some(("web.x", 7))
        );
    }

    #[test]
    fn unreadable_genuine_records_are_errors() {
        let mut broken = genuine("a", 1);
        broken.data = Some(SecretPayload {
            release: Some(ByteString(b"%%%".to_vec())),
        });
        assert!(matches!(
            decode_genuine(&broken),
            Some(Err(RecordError::Corrupt { .. }))
        ));
        broken.data = None;
        assert!(matches!(
            decode_genuine(&broken),
            Some(Err(RecordError::Corrupt { .. }))
        ));
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
}
