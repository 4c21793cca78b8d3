//! Route ownership, recorded on our side: one ConfigMap per route in the
//! operator's namespace, named from the subdomain (`paas-route-{subdomain}`)
//! and made with `create`, so a second claimant of a hostname gets
//! AlreadyExists and is refused. Labelled with the release's namespace and
//! name, it holds the hostname, the service URL, the backend, the DNS
//! record id, and whether the route is in place (`applied`) or being
//! removed (`state`). Every write is checked against the resourceVersion
//! read.
//!
//! [`RouteIndex`] keeps the records in memory from a watch, so a release's
//! `route` is answered without an API call.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::names::Subdomain;
use crate::config::ExposureBackend;
use crate::kube::KubeError;
use crate::model::RouteInfo;
use crate::render::confine::OPERATOR_LABEL;

/// Marks a ConfigMap as a route record.
pub const ROUTE_LABEL: &str = "paas-operator/route";
/// The namespace of the release that owns a route.
pub const NAMESPACE_LABEL: &str = "paas-operator/namespace";
/// The release that owns a route.
pub const RELEASE_LABEL: &str = "paas-operator/release";
/// Prefix of every route record's name.
const RECORD_PREFIX: &str = "paas-route-";

/// The release a route belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReleaseRef {
    pub namespace: String,
    pub name: String,
}

/// What a route is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// The release's app (`expose` on install): its `route`.
    App,
    /// The release's MCP sidecar (`{subdomain}-mcp`).
    Mcp,
    /// Made through `POST /api/routes`; belongs to no release.
    Manual,
}

impl RouteKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Mcp => "mcp",
            Self::Manual => "manual",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "app" => Self::App,
            "mcp" => Self::Mcp,
            "manual" => Self::Manual,
            _ => return None,
        })
    }
}

/// Whether a route should exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteState {
    /// Claimed, but not yet known to be free of someone else's rule (the
    /// check could not be made): no sync writes its rule until it is.
    Pending,
    Active,
    /// Its rule and DNS record are being removed; the record goes last.
    Removing,
}

/// One route, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRecord {
    pub subdomain: Subdomain,
    pub hostname: String,
    pub service_url: String,
    pub path: Option<String>,
    /// `None` for a route made through `/api/routes`.
    pub owner: Option<ReleaseRef>,
    pub kind: RouteKind,
    /// The backend that put the route in place (or is to).
    pub backend: ExposureBackend,
    pub state: RouteState,
    /// True once the route is wholly in place (rule or Ingress, and DNS).
    pub applied: bool,
    pub dns_record_id: Option<String>,
    /// The resourceVersion read; writes are checked against it.
    pub version: Option<String>,
}

impl RouteRecord {
    /// The record's ConfigMap name.
    pub fn record_name(subdomain: &Subdomain) -> String {
        format!("{RECORD_PREFIX}{subdomain}")
    }

    pub fn is_owned_by(&self, namespace: &str, name: &str) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|o| o.namespace == namespace && o.name == name)
    }

    /// The release's `route`, when this is its app route and in place.
    pub fn route_info(&self) -> Option<RouteInfo> {
        (self.kind == RouteKind::App && self.state == RouteState::Active && self.applied).then(
            || RouteInfo {
                hostname: self.hostname.clone(),
                service_url: self.service_url.clone(),
                enabled: true,
            },
        )
    }

    fn to_config_map(&self, namespace: &str) -> ConfigMap {
        let mut labels = BTreeMap::from([
            (OPERATOR_LABEL.0.to_owned(), OPERATOR_LABEL.1.to_owned()),
            (ROUTE_LABEL.to_owned(), "true".to_owned()),
        ]);
        let mut data = BTreeMap::from([
            ("subdomain".to_owned(), self.subdomain.to_string()),
            ("hostname".to_owned(), self.hostname.clone()),
            ("service_url".to_owned(), self.service_url.clone()),
            ("kind".to_owned(), self.kind.as_str().to_owned()),
            ("backend".to_owned(), self.backend.as_str().to_owned()),
            (
                "state".to_owned(),
                match self.state {
                    RouteState::Pending => "pending",
                    RouteState::Active => "active",
                    RouteState::Removing => "removing",
                }
                .to_owned(),
            ),
            ("applied".to_owned(), self.applied.to_string()),
        ]);
        if let Some(owner) = &self.owner {
            labels.insert(NAMESPACE_LABEL.to_owned(), owner.namespace.clone());
            labels.insert(RELEASE_LABEL.to_owned(), owner.name.clone());
            data.insert("namespace".to_owned(), owner.namespace.clone());
            data.insert("release".to_owned(), owner.name.clone());
        }
        if let Some(path) = &self.path {
            data.insert("path".to_owned(), path.clone());
        }
        if let Some(id) = &self.dns_record_id {
            data.insert("dns_record_id".to_owned(), id.clone());
        }
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(Self::record_name(&self.subdomain)),
                namespace: Some(namespace.to_owned()),
                labels: Some(labels),
                resource_version: self.version.clone(),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    /// Reads a record back; `None` for a ConfigMap that is not one.
    pub fn from_config_map(map: &ConfigMap) -> Option<Self> {
        let data = map.data.as_ref()?;
        let get = |key: &str| data.get(key).filter(|v| !v.is_empty()).cloned();
        let backend = match data.get("backend")?.as_str() {
            "cloudflare" => ExposureBackend::Cloudflare,
            "ingress" => ExposureBackend::Ingress,
            _ => ExposureBackend::None,
        };
        let owner = match (get("namespace"), get("release")) {
            (Some(namespace), Some(name)) => Some(ReleaseRef { namespace, name }),
            _ => None,
        };
        Some(Self {
            subdomain: Subdomain::parse(data.get("subdomain")?).ok()?,
            hostname: get("hostname")?,
            service_url: get("service_url")?,
            path: get("path"),
            owner,
            kind: RouteKind::parse(data.get("kind")?)?,
            backend,
            state: match data.get("state").map(String::as_str) {
                Some("removing") => RouteState::Removing,
                Some("pending") => RouteState::Pending,
                _ => RouteState::Active,
            },
            applied: data.get("applied").is_some_and(|v| v == "true"),
            dns_record_id: get("dns_record_id"),
            version: map.metadata.resource_version.clone(),
        })
    }
}

/// The route records in the operator's namespace.
#[derive(Clone)]
pub struct RouteStore {
    api: Api<ConfigMap>,
    namespace: String,
    /// This process's writes the index has not shown yet.
    written: Written,
}

/// Record name → (resourceVersion written, or `None` for deleted; when).
type Written = Arc<Mutex<HashMap<String, (Option<String>, Instant)>>>;

/// How long the index may take to show a write of ours before reads go to
/// the API instead (typically milliseconds).
const SHOWN_WITHIN: Duration = Duration::from_millis(250);

impl RouteStore {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            written: Arc::default(),
        }
    }

    /// Remembers a write of ours, so reads wait for the index to show it.
    fn wrote(&self, name: String, version: Option<String>) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.retain(|_, (_, at)| at.elapsed() < SHOWN_WITHIN * 4);
        written.insert(name, (version, Instant::now()));
    }

    fn wrote_record(&self, record: RouteRecord) -> RouteRecord {
        self.wrote(
            RouteRecord::record_name(&record.subdomain),
            record.version.clone(),
        );
        record
    }

    /// Creates the record; `Err(existing)` when the subdomain is recorded
    /// already (by anyone).
    pub async fn create(
        &self,
        record: &RouteRecord,
    ) -> Result<Result<RouteRecord, RouteRecord>, KubeError> {
        let mut body = record.to_config_map(&self.namespace);
        body.metadata.resource_version = None;
        match self.api.create(&PostParams::default(), &body).await {
            Ok(created) => Ok(Ok(self.wrote_record(parsed(&created)?))),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                match self.get(&record.subdomain).await? {
                    Some(existing) => Ok(Err(existing)),
                    // Deleted in between: try once more.
                    None => match self.api.create(&PostParams::default(), &body).await {
                        Ok(created) => Ok(Ok(self.wrote_record(parsed(&created)?))),
                        Err(source) => Err(KubeError::Api {
                            action: "recording a route",
                            source,
                        }),
                    },
                }
            }
            Err(source) => Err(KubeError::Api {
                action: "recording a route",
                source,
            }),
        }
    }

    pub async fn get(&self, subdomain: &Subdomain) -> Result<Option<RouteRecord>, KubeError> {
        let map = self
            .api
            .get_opt(&RouteRecord::record_name(subdomain))
            .await
            .map_err(KubeError::api("reading a route record"))?;
        Ok(map.as_ref().and_then(RouteRecord::from_config_map))
    }

    /// Every record (`extra` narrows the label selector, e.g. to a release).
    pub async fn list(&self, extra: Option<&str>) -> Result<Vec<RouteRecord>, KubeError> {
        let selector = match extra {
            Some(extra) => format!("{ROUTE_LABEL}=true,{extra}"),
            None => format!("{ROUTE_LABEL}=true"),
        };
        let maps = self
            .api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(KubeError::api("listing route records"))?;
        Ok(maps
            .items
            .iter()
            .filter_map(|map| {
                let record = RouteRecord::from_config_map(map);
                if record.is_none() {
                    tracing::warn!(record = ?map.metadata.name, "skipping an unreadable route record");
                }
                record
            })
            .collect())
    }

    /// The records of one release.
    pub async fn of_release(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<RouteRecord>, KubeError> {
        self.list(Some(&format!(
            "{NAMESPACE_LABEL}={namespace},{RELEASE_LABEL}={name}"
        )))
        .await
    }

    /// The records of one namespace's releases.
    pub async fn of_namespace(&self, namespace: &str) -> Result<Vec<RouteRecord>, KubeError> {
        self.list(Some(&format!("{NAMESPACE_LABEL}={namespace}")))
            .await
    }

    /// Writes `record` over the version it was read at; `None` when that
    /// is no longer the current version (or the record is gone).
    pub async fn replace(&self, record: &RouteRecord) -> Result<Option<RouteRecord>, KubeError> {
        let body = record.to_config_map(&self.namespace);
        let name = RouteRecord::record_name(&record.subdomain);
        match self.api.replace(&name, &PostParams::default(), &body).await {
            Ok(written) => Ok(Some(self.wrote_record(parsed(&written)?))),
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(None),
            Err(source) => Err(KubeError::Api {
                action: "updating a route record",
                source,
            }),
        }
    }

    /// Changes the current record with `change` (read again and retried
    /// when another writer came first); `None` when it is gone or `change`
    /// declines it (returns false: it is not the record it expected).
    pub async fn update(
        &self,
        subdomain: &Subdomain,
        change: impl Fn(&mut RouteRecord) -> bool,
    ) -> Result<Option<RouteRecord>, KubeError> {
        for _ in 0..8 {
            let Some(mut record) = self.get(subdomain).await? else {
                return Ok(None);
            };
            let before = record.clone();
            if !change(&mut record) {
                return Ok(None);
            }
            if record == before {
                return Ok(Some(record));
            }
            if let Some(written) = self.replace(&record).await? {
                return Ok(Some(written));
            }
        }
        Err(KubeError::Api {
            action: "updating a route record",
            source: kube::Error::Api(
                kube::core::Status::failure("route record kept changing", "Conflict")
                    .with_code(409)
                    .boxed(),
            ),
        })
    }

    /// Deletes the record as it was read (not a newer claim of the same
    /// subdomain); true when it is gone.
    pub async fn delete(&self, record: &RouteRecord) -> Result<bool, KubeError> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: record.version.clone(),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        let name = RouteRecord::record_name(&record.subdomain);
        match self.api.delete(&name, &params).await {
            Ok(_) => {
                self.wrote(name, None);
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(KubeError::Api {
                action: "deleting a route record",
                source,
            }),
        }
    }

    /// A watch-fed in-memory copy of every record, watched through
    /// `watches` (a client without a read timeout: a watch is idle for
    /// minutes).
    pub fn index(&self, watches: Client) -> RouteIndex {
        let (reader, writer) = reflector::store();
        let healthy = Arc::new(AtomicBool::new(false));
        let flag = healthy.clone();
        let config = watcher::Config::default().labels(&format!("{ROUTE_LABEL}=true"));
        let api: Api<ConfigMap> = Api::namespaced(watches, &self.namespace);
        let stream = watcher(api, config).default_backoff().reflect(writer);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let ok = event.is_ok();
                if flag.swap(ok, Ordering::Relaxed) != ok && !ok {
                    if let Err(error) = &event {
                        tracing::warn!(%error, "the route records' watch failed; reading them from the API");
                    }
                }
            }
        });
        RouteIndex {
            reader,
            healthy,
            store: self.clone(),
        }
    }
}

fn parsed(map: &ConfigMap) -> Result<RouteRecord, KubeError> {
    RouteRecord::from_config_map(map).ok_or_else(|| KubeError::Api {
        action: "reading a route record",
        source: kube::Error::Api(
            kube::core::Status::failure("unreadable route record", "Invalid")
                .with_code(500)
                .boxed(),
        ),
    })
}

/// The route records, from a watch (no API call per read), or from the API
/// while the watch is not synced or has failed.
#[derive(Clone)]
pub struct RouteIndex {
    reader: Store<ConfigMap>,
    healthy: Arc<AtomicBool>,
    store: RouteStore,
}

impl RouteIndex {
    /// The release's app route, when it is in place.
    pub async fn route_of(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<RouteInfo>, KubeError> {
        let synced = self.reader.wait_until_ready().now_or_never().is_some();
        if synced && self.healthy.load(Ordering::Relaxed) && self.shows_our_writes().await {
            return Ok(self
                .reader
                .state()
                .iter()
                .filter_map(|map| RouteRecord::from_config_map(map))
                .filter(|r| r.is_owned_by(namespace, name))
                .find_map(|r| r.route_info()));
        }
        let records = self.store.of_release(namespace, name).await?;
        Ok(records.iter().find_map(RouteRecord::route_info))
    }
}

impl RouteIndex {
    /// Waits (at most [`SHOWN_WITHIN`]) until the index shows every recent
    /// write of this process: a read after our own write sees it.
    async fn shows_our_writes(&self) -> bool {
        let deadline = Instant::now() + SHOWN_WITHIN;
        loop {
            let pending = {
                let mut written = self.store.written.lock().unwrap_or_else(|e| e.into_inner());
                written.retain(|name, (version, at)| {
                    let shown = self
                        .reader
                        .get(&ObjectRef::new(name).within(&self.store.namespace))
                        .map(|map| map.metadata.resource_version.clone());
                    let met = match (version.as_ref(), shown) {
                        (None, None) => true,
                        (Some(version), Some(shown)) => shown.as_ref() == Some(version),
                        _ => false,
                    };
                    !met && at.elapsed() < SHOWN_WITHIN * 4
                });
                !written.is_empty()
            };
            if !pending {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RouteRecord {
        RouteRecord {
            subdomain: Subdomain::parse("app-1").unwrap(),
            hostname: "app-1.apps.example.com".into(),
            service_url: "http://web.paas-ws-1.svc.cluster.local:80".into(),
            path: None,
            owner: Some(ReleaseRef {
                namespace: "paas-ws-1".into(),
                name: "svc-1".into(),
            }),
            kind: RouteKind::App,
            backend: ExposureBackend::Cloudflare,
            state: RouteState::Active,
            applied: true,
            dns_record_id: Some("abc".into()),
            version: Some("7".into()),
        }
    }

    #[test]
    fn records_round_trip_through_config_maps() {
        let record = record();
        let map = record.to_config_map("paas-system");
        assert_eq!(map.metadata.name.as_deref(), Some("paas-route-app-1"));
        let labels = map.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[NAMESPACE_LABEL], "paas-ws-1");
        assert_eq!(labels[RELEASE_LABEL], "svc-1");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "paas-operator");
        assert_eq!(RouteRecord::from_config_map(&map), Some(record.clone()));
        let manual = RouteRecord {
            owner: None,
            kind: RouteKind::Manual,
            path: Some("^/api".into()),
            state: RouteState::Removing,
            ..record
        };
        let map = manual.to_config_map("paas-system");
        assert!(
            !map.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(RELEASE_LABEL)
        );
        assert_eq!(RouteRecord::from_config_map(&map), Some(manual));
        assert_eq!(RouteRecord::from_config_map(&ConfigMap::default()), None);
    }

    #[test]
    fn only_an_applied_active_app_route_is_a_releases_route() {
        let record = record();
        assert_eq!(
            record.route_info().map(|r| r.hostname),
            Some("app-1.apps.example.com".into())
        );
        assert!(record.is_owned_by("paas-ws-1", "svc-1"));
        assert!(!record.is_owned_by("paas-ws-1", "svc-2"));
        for other in [
            RouteRecord {
                applied: false,
                ..record.clone()
            },
            RouteRecord {
                kind: RouteKind::Mcp,
                ..record.clone()
            },
            RouteRecord {
                state: RouteState::Removing,
                ..record.clone()
            },
        ] {
            assert_eq!(other.route_info(), None);
        }
    }
}
