//! Route ownership, recorded on our side: one ConfigMap per route in the
//! operator's namespace (`record.rs`), made with `create`, so a
//! second claimant of a hostname gets AlreadyExists and is refused. Every
//! write is checked against the resourceVersion read, and every change of
//! a record is an event of the lifecycle (`RouteStore::advance`).
//!
//! `RouteIndex` keeps the records in memory from a watch, so a release's
//! `route` is answered without an API call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::lifecycle::{self, Event};
use super::names::Subdomain;
pub use super::record::{
    NAMESPACE_LABEL, RELEASE_LABEL, ROUTE_LABEL, ReleaseRef, RouteKind, RouteRecord, RouteState,
};
use crate::kube::KubeError;
use crate::model::RouteInfo;

/// What [`RouteStore::advance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Advanced {
    /// The record as it now is.
    Now(RouteRecord),
    /// The record is gone (deleted by this event, or before it).
    Gone,
    /// The record is no longer the route expected, or the event cannot
    /// happen in its state: left to whoever changed it.
    Declined,
}

impl Advanced {
    /// The record, when the event left one.
    pub(crate) fn record(self) -> Option<RouteRecord> {
        match self {
            Self::Now(record) => Some(record),
            Self::Gone | Self::Declined => None,
        }
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

    pub(crate) async fn get(
        &self,
        subdomain: &Subdomain,
    ) -> Result<Option<RouteRecord>, KubeError> {
        let map = self
            .api
            .get_opt(&RouteRecord::record_name(subdomain))
            .await
            .map_err(KubeError::api("reading a route record"))?;
        Ok(map.as_ref().and_then(RouteRecord::from_config_map))
    }

    /// Every record (`extra` narrows the label selector, e.g. to a release).
    pub(crate) async fn list(&self, extra: Option<&str>) -> Result<Vec<RouteRecord>, KubeError> {
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
    pub(crate) async fn of_release(
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
    pub(crate) async fn of_namespace(
        &self,
        namespace: &str,
    ) -> Result<Vec<RouteRecord>, KubeError> {
        self.list(Some(&format!("{NAMESPACE_LABEL}={namespace}")))
            .await
    }

    /// Writes `record` over the version it was read at; `None` when that
    /// is no longer the current version (or the record is gone).
    pub(crate) async fn replace(
        &self,
        record: &RouteRecord,
    ) -> Result<Option<RouteRecord>, KubeError> {
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

    /// Applies `event` to the current record of `expected`'s subdomain
    /// (read again, and retried when another writer came first), through
    /// the lifecycle ([`lifecycle::advance`]): the record written, or
    /// deleted when the route is gone. [`Advanced::Declined`] when the
    /// record is no longer `expected`'s route (another owner or kind) or
    /// the event cannot happen in its state.
    pub(crate) async fn advance(
        &self,
        expected: &RouteRecord,
        event: &Event,
    ) -> Result<Advanced, KubeError> {
        for _ in 0..8 {
            let Some(current) = self.get(&expected.subdomain).await? else {
                return Ok(Advanced::Gone);
            };
            if current.owner != expected.owner || current.kind != expected.kind {
                return Ok(Advanced::Declined);
            }
            match lifecycle::advance(&current, event) {
                Err(_) => return Ok(Advanced::Declined),
                Ok(None) => {
                    if self.delete(&current).await? {
                        return Ok(Advanced::Gone);
                    }
                }
                Ok(Some(next)) if next == current => return Ok(Advanced::Now(current)),
                Ok(Some(next)) => {
                    if let Some(written) = self.replace(&next).await? {
                        return Ok(Advanced::Now(written));
                    }
                }
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
    pub(crate) async fn delete(&self, record: &RouteRecord) -> Result<bool, KubeError> {
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
    pub(crate) fn index(&self, watches: Client) -> RouteIndex {
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
pub(crate) struct RouteIndex {
    reader: Store<ConfigMap>,
    healthy: Arc<AtomicBool>,
    store: RouteStore,
}

impl RouteIndex {
    /// The release's app route, when it is in place.
    pub(crate) async fn route_of(
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
