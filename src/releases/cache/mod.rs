//! A watch-fed, in-memory index of the tenant namespaces being read, so
//! GET release, GET revisions and GET status are answered from memory,
//! without a Kubernetes API call.
//!
//! ```text
//!   GET ─► ReadCache ──hit──────────────────────────────► answer
//!             │ miss: namespace not indexed, still listing, its watch
//!             │ failed, or this replica's own write not seen yet
//!             ▼
//!          direct read (ReleaseStore, pod list) ─► answer, warm(namespace)
//!
//!   one indexed namespace = a watch of Helm's `owner=helm` records (decoded
//!   once per change, manifest and values dropped) + a watch of its pods
//! ```
//!
//! - **Lazy and bounded**: a namespace is indexed after a direct read found a
//!   release in it, at most `max_namespaces` at once, and dropped after `idle`
//!   without reads. The watches are namespaced, so the operator needs no
//!   cluster-wide read of Secrets (least-privilege RBAC stays as it is).
//! - **Never stale by surprise**: until both watches have listed everything,
//!   and after any watch error, reads go to the API (a failed index is
//!   rebuilt by the next read that finds a release, at most every
//!   [`RETRY_FAILED`]).
//! - **Read-your-writes**: every write through this replica leaves an
//!   expectation (the revision and status it produced, or "gone"); a read of
//!   that release waits (up to 250 ms) for the index to show it, which the
//!   watch usually delivers within milliseconds, else reads the API. If the
//!   index never shows it, the namespace is re-listed. Writes by
//!   other replicas or by helm itself appear when the watch delivers them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::pods::{Selector, select_pods, workload_selectors};
use crate::helm::release::HelmRelease;
use crate::helm::storage::{StorageDriver, StorageError, decode_config_map, decode_secret};
use crate::model::PodInfo;

/// A failed index is not rebuilt more often than this.
pub const RETRY_FAILED: Duration = Duration::from_secs(5);
/// How long a write's expectation may stay unmet before the namespace is
/// re-listed.
const EXPECT_WITHIN: Duration = Duration::from_secs(30);
/// After a failed write we do not know what helm stored: reads of that
/// release go to the API for this long.
const AFTER_FAILED_WRITE: Duration = Duration::from_secs(10);
/// How long a read waits for the index to show this replica's own write
/// before it reads the API instead (the watch usually delivers it within
/// milliseconds; a direct read's consistent LIST can take up to ~100 ms).
const WAIT_FOR_OWN_WRITE: Duration = Duration::from_millis(250);
/// How often idle indexes and old expectations are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Settings of the read cache, from the configuration.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Most namespaces indexed at once (each holds two watches).
    pub max_namespaces: usize,
    /// An index without reads for this long is dropped.
    pub idle: Duration,
}

/// One revision as the read endpoints need it: the record without its
/// manifest, hooks and values, plus the selectors of its workloads (parsed
/// once from the manifest, for the status endpoint).
#[derive(Debug)]
pub struct CachedRevision {
    pub release: HelmRelease,
    pub selectors: Vec<Selector>,
}

impl CachedRevision {
    pub fn new(mut release: HelmRelease) -> Self {
        let selectors = workload_selectors(&release.manifest);
        release.manifest = String::new();
        release.hooks = Vec::new();
        release.config = None;
        Self { release, selectors }
    }
}

/// A record that could not be decoded: reads of it fail the way a direct
/// read would.
#[derive(Debug, Clone)]
enum Unreadable {
    Corrupt { record: String, reason: String },
    TooLarge { record: String },
}

impl Unreadable {
    fn new(record: &str, error: StorageError) -> Self {
        match error {
            StorageError::Corrupt { record, reason } => Self::Corrupt { record, reason },
            StorageError::TooLarge { record } => Self::TooLarge { record },
            other => Self::Corrupt {
                record: record.to_owned(),
                reason: other.to_string(),
            },
        }
    }

    fn to_error(&self) -> StorageError {
        match self.clone() {
            Self::Corrupt { record, reason } => StorageError::Corrupt { record, reason },
            Self::TooLarge { record } => StorageError::TooLarge { record },
        }
    }
}

type Record = Result<Arc<CachedRevision>, Unreadable>;

/// What a write through this replica left behind, until the index shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The write produced this revision with this (Helm) status.
    Revision { revision: u32, status: String },
    /// The release was uninstalled.
    Gone,
    /// The write failed: what helm stored is unknown.
    Unknown,
}

impl Expectation {
    fn met_by(&self, revisions: Option<&BTreeMap<u32, Record>>) -> bool {
        let newest = revisions.and_then(|r| r.last_key_value());
        match (self, newest) {
            (Self::Gone, newest) => newest.is_none(),
            (Self::Revision { revision, status }, Some((newest, record))) => {
                *newest > *revision
                    || (*newest == *revision
                        && record
                            .as_ref()
                            .map_or(true, |r| r.release.info.status == *status))
            }
            (Self::Revision { .. }, None) | (Self::Unknown, _) => false,
        }
    }
}

struct Pending {
    expectation: Expectation,
    until: Instant,
}

/// One watched object, converted.
enum Item {
    Record {
        object: String,
        key: Option<(String, u32)>,
        record: Record,
    },
    Pod {
        name: String,
        pod: Box<Pod>,
    },
}

#[derive(Clone, Copy, Debug)]
enum Part {
    Records,
    Pods,
}

/// Helm's records of one namespace, by release and revision.
#[derive(Default)]
struct Records {
    by_release: HashMap<String, BTreeMap<u32, Record>>,
    by_object: HashMap<String, (String, u32)>,
}

impl Records {
    fn apply(&mut self, object: String, key: Option<(String, u32)>, record: Record) {
        self.delete(&object);
        let Some((release, revision)) = key else {
            return; // Not a record Helm labelled: Helm's own reads ignore it too.
        };
        self.by_release
            .entry(release.clone())
            .or_default()
            .insert(revision, record);
        self.by_object.insert(object, (release, revision));
    }

    fn delete(&mut self, object: &str) {
        let Some((release, revision)) = self.by_object.remove(object) else {
            return;
        };
        if let Some(revisions) = self.by_release.get_mut(&release) {
            revisions.remove(&revision);
            if revisions.is_empty() {
                self.by_release.remove(&release);
            }
        }
    }
}

#[derive(Default)]
struct IndexState {
    records: Records,
    pods: BTreeMap<String, Pod>,
    records_listed: bool,
    pods_listed: bool,
    failed: bool,
}

impl IndexState {
    fn ready(&self) -> bool {
        self.records_listed && self.pods_listed && !self.failed
    }

    fn apply(&mut self, item: Item) {
        match item {
            Item::Record {
                object,
                key,
                record,
            } => self.records.apply(object, key, record),
            Item::Pod { name, pod } => {
                self.pods.insert(name, *pod);
            }
        }
    }

    fn delete(&mut self, part: Part, object: &str) {
        match part {
            Part::Records => self.records.delete(object),
            Part::Pods => {
                self.pods.remove(object);
            }
        }
    }

    /// Replaces one part with a complete listing.
    fn replace(&mut self, part: Part, items: Vec<Item>) {
        match part {
            Part::Records => {
                self.records = Records::default();
                self.records_listed = true;
            }
            Part::Pods => {
                self.pods.clear();
                self.pods_listed = true;
            }
        }
        for item in items {
            self.apply(item);
        }
    }
}

/// The index of one namespace and the watches feeding it.
struct Index {
    state: RwLock<IndexState>,
    created: Instant,
    /// Milliseconds after `created` of the last read served.
    last_read: AtomicU64,
    failed_at: Mutex<Option<Instant>>,
    tasks: Mutex<Vec<AbortHandle>>,
    /// Woken after every change the watches apply.
    changed: Notify,
}

impl Index {
    fn new() -> Self {
        Self {
            state: RwLock::default(),
            created: Instant::now(),
            last_read: AtomicU64::new(0),
            failed_at: Mutex::new(None),
            tasks: Mutex::default(),
            changed: Notify::new(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, IndexState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self) {
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_read.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    fn fail(&self) {
        self.write().failed = true;
        *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn failed_since(&self) -> Option<Duration> {
        let at = *self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        at.map(|at| at.elapsed())
    }

    fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

struct Inner {
    client: Client,
    driver: StorageDriver,
    settings: CacheSettings,
    namespaces: Mutex<HashMap<String, Arc<Index>>>,
    expectations: Mutex<HashMap<(String, String), Pending>>,
}

/// The read cache; cheap to clone. [`ReadCache::disabled`] answers nothing,
/// so every read goes to the API.
#[derive(Clone)]
pub struct ReadCache {
    inner: Option<Arc<Inner>>,
}

/// What the index can say about a release right now.
enum Lookup<T> {
    Answer(T),
    /// Read it from the API (not indexed, still listing, or re-listing).
    Direct,
    /// This replica's own write is not in the index yet.
    Wait(Arc<Index>),
}

/// Whether an expectation lets the index answer for a release.
enum Settled {
    Yes,
    NotYet,
    /// Unmet for too long: re-list the namespace.
    Overdue,
}

impl ReadCache {
    /// A cache that never answers (READ_CACHE=false, or storage we do not watch).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Starts the cache (its sweeper runs on the current tokio runtime).
    pub fn start(client: Client, driver: StorageDriver, settings: CacheSettings) -> Self {
        let inner = Arc::new(Inner {
            client,
            driver,
            settings,
            namespaces: Mutex::default(),
            expectations: Mutex::default(),
        });
        tokio::spawn(sweep(Arc::downgrade(&inner)));
        Self { inner: Some(inner) }
    }

    /// The newest revision of a release, when the index can answer (`None`:
    /// read it from the API). `Some(Ok(None))` means there is no such release.
    pub async fn latest(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Result<Option<Arc<CachedRevision>>, StorageError>> {
        self.with_release(namespace, name, |revisions| {
            let Some((_, newest)) = revisions.and_then(|r| r.last_key_value()) else {
                return Ok(None);
            };
            newest.clone().map(Some).map_err(|e| e.to_error())
        })
        .await
    }

    /// Every revision of a release, oldest first, when the index can answer.
    pub async fn history(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Result<Vec<Arc<CachedRevision>>, StorageError>> {
        self.with_release(namespace, name, |revisions| {
            revisions
                .into_iter()
                .flat_map(|r| r.values())
                .map(|record| record.clone().map_err(|e| e.to_error()))
                .collect()
        })
        .await
    }

    /// The release's pods, when the namespace is indexed.
    pub fn release_pods(
        &self,
        namespace: &str,
        release: &str,
        selectors: &[Selector],
    ) -> Option<Vec<PodInfo>> {
        let index = self.ready_index(namespace)?;
        let state = index.read();
        if !state.ready() {
            return None;
        }
        Some(select_pods(
            state.pods.values(),
            release,
            selectors,
            jiff::Timestamp::now(),
        ))
    }

    /// Starts indexing a namespace (a direct read found a release in it).
    pub fn warm(&self, namespace: &str) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut namespaces = inner.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = namespaces.get(namespace) {
            match index.failed_since() {
                Some(since) if since >= RETRY_FAILED => index.stop(),
                _ => return,
            }
            namespaces.remove(namespace);
        }
        if namespaces.len() >= inner.settings.max_namespaces {
            return;
        }
        let index = Arc::new(Index::new());
        index.touch();
        let tasks = match inner.driver {
            StorageDriver::Secret => spawn_watch(
                Api::<Secret>::namespaced(inner.client.clone(), namespace),
                records_config(),
                &index,
                Part::Records,
                |secret| record_item(&secret, decode_secret),
            ),
            StorageDriver::ConfigMap => spawn_watch(
                Api::<ConfigMap>::namespaced(inner.client.clone(), namespace),
                records_config(),
                &index,
                Part::Records,
                |map| record_item(&map, decode_config_map),
            ),
        };
        let pods = spawn_watch(
            Api::<Pod>::namespaced(inner.client.clone(), namespace),
            watcher::Config::default(),
            &index,
            Part::Pods,
            pod_item,
        );
        *index.tasks.lock().unwrap_or_else(|e| e.into_inner()) = vec![tasks, pods];
        namespaces.insert(namespace.to_owned(), index);
        crate::metrics::read_cache_namespaces(namespaces.len());
        tracing::debug!(namespace, "read cache: indexing namespace");
    }

    /// Records what a write through this replica produced; reads of the
    /// release go to the API until the index shows it.
    pub fn expect(&self, namespace: &str, name: &str, expectation: Expectation) {
        let Some(inner) = &self.inner else {
            return;
        };
        let within = match expectation {
            Expectation::Unknown => AFTER_FAILED_WRITE,
            _ => EXPECT_WITHIN,
        };
        let pending = Pending {
            expectation,
            until: Instant::now() + within,
        };
        inner
            .expectations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_owned(), name.to_owned()), pending);
    }

    /// Stops indexing a namespace (it is being deleted).
    pub fn forget(&self, namespace: &str) {
        let Some(inner) = &self.inner else {
            return;
        };
        let mut namespaces = inner.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = namespaces.remove(namespace) {
            index.stop();
        }
        crate::metrics::read_cache_namespaces(namespaces.len());
    }

    fn ready_index(&self, namespace: &str) -> Option<Arc<Index>> {
        let inner = self.inner.as_ref()?;
        let namespaces = inner.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        let index = namespaces.get(namespace)?.clone();
        index.touch();
        Some(index)
    }

    /// Runs `answer` on the release's revisions if the index can answer
    /// for it; waits up to [`WAIT_FOR_OWN_WRITE`] for this replica's own
    /// write to show.
    async fn with_release<T>(
        &self,
        namespace: &str,
        name: &str,
        answer: impl Fn(Option<&BTreeMap<u32, Record>>) -> T,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_OWN_WRITE;
        let answered = loop {
            let index = match self.lookup(namespace, name, &answer) {
                Lookup::Answer(answered) => break Some(answered),
                Lookup::Direct => break None,
                Lookup::Wait(index) => index,
            };
            let changed = index.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            // Looked at again once registered, so no change slips between.
            match self.lookup(namespace, name, &answer) {
                Lookup::Answer(answered) => break Some(answered),
                Lookup::Direct => break None,
                Lookup::Wait(_) => {}
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break None;
            }
        };
        crate::metrics::read_cache_lookup(answered.is_some());
        answered
    }

    fn lookup<T>(
        &self,
        namespace: &str,
        name: &str,
        answer: &impl Fn(Option<&BTreeMap<u32, Record>>) -> T,
    ) -> Lookup<T> {
        let Some(index) = self.ready_index(namespace) else {
            return Lookup::Direct;
        };
        let state = index.read();
        if !state.ready() {
            return Lookup::Direct;
        }
        let revisions = state.records.by_release.get(name);
        match self.settled(namespace, name, revisions) {
            Settled::Yes => Lookup::Answer(answer(revisions)),
            Settled::NotYet => {
                drop(state);
                Lookup::Wait(index)
            }
            Settled::Overdue => {
                drop(state);
                tracing::warn!(
                    namespace,
                    release = name,
                    "read cache: a write of this replica never showed in the watch; re-listing"
                );
                self.forget(namespace);
                Lookup::Direct
            }
        }
    }

    fn settled(
        &self,
        namespace: &str,
        name: &str,
        revisions: Option<&BTreeMap<u32, Record>>,
    ) -> Settled {
        let Some(inner) = &self.inner else {
            return Settled::NotYet;
        };
        let mut expectations = inner.expectations.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        let Some(pending) = expectations.get(&key) else {
            return Settled::Yes;
        };
        if pending.expectation.met_by(revisions) {
            expectations.remove(&key);
            return Settled::Yes;
        }
        if Instant::now() < pending.until {
            return Settled::NotYet;
        }
        let unknown = pending.expectation == Expectation::Unknown;
        expectations.remove(&key);
        if unknown {
            Settled::Yes
        } else {
            Settled::Overdue
        }
    }
}

fn records_config() -> watcher::Config {
    watcher::Config::default().labels("owner=helm")
}

/// Starts one watch feeding `part` of the index; the task ends with the
/// index, or marks it failed at the first error.
fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    index: &Arc<Index>,
    part: Part,
    convert: fn(K) -> Item,
) -> AbortHandle
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let index = Arc::downgrade(index);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, config));
        let mut listing: Vec<Item> = Vec::new();
        while let Some(event) = stream.next().await {
            let Some(index) = index.upgrade() else {
                return;
            };
            match event {
                Ok(Event::Init) => {
                    listing.clear();
                    continue;
                }
                Ok(Event::InitApply(object)) => {
                    listing.push(convert(object));
                    continue;
                }
                Ok(Event::InitDone) => index.write().replace(part, std::mem::take(&mut listing)),
                Ok(Event::Apply(object)) => index.write().apply(convert(object)),
                Ok(Event::Delete(object)) => index.write().delete(part, &object.name_any()),
                Err(error) => {
                    tracing::warn!(%error, ?part, "read cache: watch failed; reads go to the API");
                    index.fail();
                    index.changed.notify_waiters();
                    return;
                }
            }
            index.changed.notify_waiters();
        }
    });
    task.abort_handle()
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, config)
}

/// A release record, keyed like Helm keys it (labels `name` and `version`).
fn record_item<K: Resource>(
    object: &K,
    decode: fn(&K) -> Result<HelmRelease, StorageError>,
) -> Item {
    let meta = object.meta();
    let name = meta.name.clone().unwrap_or_default();
    let labels = meta.labels.as_ref();
    let key = labels.and_then(|l| {
        let revision = l.get("version")?.parse().ok()?;
        Some((l.get("name")?.clone(), revision))
    });
    let record = decode(object)
        .map(|release| Arc::new(CachedRevision::new(release)))
        .map_err(|error| Unreadable::new(&name, error));
    Item::Record {
        object: name,
        key,
        record,
    }
}

/// A pod with only what the status endpoint shows (and matches on).
fn pod_item(mut pod: Pod) -> Item {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    if let Some(spec) = pod.spec.as_mut() {
        let containers = std::mem::take(&mut spec.containers);
        *spec = Default::default();
        spec.containers = containers
            .into_iter()
            .map(|c| Container {
                name: c.name,
                ..Default::default()
            })
            .collect();
    }
    if let Some(status) = pod.status.as_mut() {
        status.conditions = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
    Item::Pod {
        name: pod.name_any(),
        pod: Box::new(pod),
    }
}

/// Drops idle and long-failed indexes; ends with the cache.
async fn sweep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut namespaces = inner.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        namespaces.retain(|namespace, index| {
            let idle = index.idle_for() >= inner.settings.idle;
            let dead = index
                .failed_since()
                .is_some_and(|since| since >= RETRY_FAILED);
            if idle || dead {
                tracing::debug!(namespace, idle, "read cache: dropping namespace index");
                index.stop();
            }
            !(idle || dead)
        });
        crate::metrics::read_cache_namespaces(namespaces.len());
        drop(namespaces);
        let now = Instant::now();
        inner
            .expectations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, pending| now < pending.until + EXPECT_WITHIN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, revision: u32, status: &str) -> Item {
        let release: HelmRelease = serde_json::from_value(serde_json::json!({
            "name": name, "namespace": "ns", "version": revision,
            "info": {"status": status, "last_deployed": "2026-11-26T10:00:00Z"},
            "chart": {"metadata": {"name": "web", "version": "0.1.0", "appVersion": "1"}},
            "config": {"password": "s3cret"},
            "manifest": "kind: Deployment\nmetadata: {name: w}\nspec:\n  selector:\n    matchLabels: {app: w}\n",
        }))
        .unwrap();
        Item::Record {
            object: format!("sh.helm.release.v1.{name}.v{revision}"),
            key: Some((name.to_owned(), revision)),
            record: Ok(Arc::new(CachedRevision::new(release))),
        }
    }

    fn pod(name: &str, labels: &[(&str, &str)]) -> Item {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        pod_item(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": labels, "annotations": {"big": "x"},
                             "managedFields": [{"manager": "m"}]},
                "spec": {"containers": [{"name": "c", "image": "nginx", "env": [{"name": "A", "value": "b"}]}]},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": "c", "ready": true, "restartCount": 1, "image": "nginx", "imageID": ""}]},
            }))
            .unwrap(),
        )
    }

    fn newest(state: &IndexState, name: &str) -> Option<(u32, String)> {
        let (revision, record) = state.records.by_release.get(name)?.last_key_value()?;
        Some((*revision, record.as_ref().ok()?.release.info.status.clone()))
    }

    #[test]
    fn records_follow_applies_deletes_and_relists() {
        let mut state = IndexState::default();
        assert!(!state.ready());
        state.replace(Part::Records, vec![record("a", 1, "superseded")]);
        state.replace(Part::Pods, vec![]);
        assert!(state.ready());
        state.apply(record("a", 2, "pending-upgrade"));
        assert_eq!(newest(&state, "a"), Some((2, "pending-upgrade".into())));
        state.apply(record("a", 2, "deployed"));
        assert_eq!(newest(&state, "a"), Some((2, "deployed".into())));
        state.delete(Part::Records, "sh.helm.release.v1.a.v2");
        assert_eq!(newest(&state, "a"), Some((1, "superseded".into())));
        state.delete(Part::Records, "sh.helm.release.v1.a.v1");
        assert!(!state.records.by_release.contains_key("a"));
        // A re-list replaces everything seen before.
        state.apply(record("b", 1, "deployed"));
        state.replace(Part::Records, vec![record("c", 3, "failed")]);
        assert_eq!(newest(&state, "b"), None);
        assert_eq!(newest(&state, "c"), Some((3, "failed".into())));
        state.failed = true;
        assert!(!state.ready());
    }

    #[test]
    fn unlabelled_objects_are_ignored() {
        let mut state = IndexState::default();
        state.apply(Item::Record {
            object: "stray".into(),
            key: None,
            record: Err(Unreadable::Corrupt {
                record: "stray".into(),
                reason: "x".into(),
            }),
        });
        assert!(state.records.by_release.is_empty());
        assert!(state.records.by_object.is_empty());
    }

    #[test]
    fn cached_revisions_drop_payloads_but_keep_selectors() {
        let Item::Record { record, .. } = record("a", 1, "deployed") else {
            unreachable!()
        };
        let cached = record.unwrap();
        assert!(cached.release.manifest.is_empty());
        assert!(cached.release.config.is_none());
        assert_eq!(cached.selectors.len(), 1);
        assert_eq!(cached.release.to_info(false).chart, "web");
    }

    #[test]
    fn pods_are_trimmed_and_selected() {
        let mut state = IndexState::default();
        state.replace(
            Part::Pods,
            vec![
                pod("a-1", &[("app.kubernetes.io/instance", "a")]),
                pod("w-1", &[("app", "w")]),
                pod("other", &[("app", "x")]),
            ],
        );
        let kept = &state.pods["a-1"];
        assert!(kept.metadata.annotations.is_none() && kept.metadata.managed_fields.is_none());
        let container = &kept.spec.as_ref().unwrap().containers[0];
        assert!(container.image.is_none() && container.env.is_none());
        let Item::Record { record, .. } = record("a", 1, "deployed") else {
            unreachable!()
        };
        let selectors = &record.unwrap().selectors;
        let now = jiff::Timestamp::now();
        let names: Vec<String> = select_pods(state.pods.values(), "a", selectors, now)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["a-1", "w-1"]);
        let info = &select_pods(state.pods.values(), "a", &[], now)[0];
        assert_eq!((info.ready.as_str(), info.restarts), ("1/1", 1));
        state.delete(Part::Pods, "a-1");
        assert!(select_pods(state.pods.values(), "a", &[], now).is_empty());
    }

    #[test]
    fn expectations() {
        let mut state = IndexState::default();
        let revision = |revision, status: &str| Expectation::Revision {
            revision,
            status: status.into(),
        };
        assert!(Expectation::Gone.met_by(None));
        assert!(!revision(1, "deployed").met_by(None));
        state.apply(record("a", 1, "pending-install"));
        let revisions = state.records.by_release.get("a");
        assert!(!revision(1, "deployed").met_by(revisions));
        assert!(!Expectation::Gone.met_by(revisions));
        state.apply(record("a", 1, "deployed"));
        assert!(revision(1, "deployed").met_by(state.records.by_release.get("a")));
        state.apply(record("a", 2, "pending-upgrade"));
        // A newer revision (someone else's write) also satisfies it.
        assert!(revision(1, "deployed").met_by(state.records.by_release.get("a")));
        assert!(!Expectation::Unknown.met_by(state.records.by_release.get("a")));
    }

    #[test]
    fn unreadable_records_fail_like_direct_reads() {
        let error = Unreadable::new(
            "r",
            StorageError::Corrupt {
                record: "r".into(),
                reason: "bad gzip".into(),
            },
        );
        assert!(error.to_error().to_string().contains("bad gzip"));
        let large = Unreadable::new("r", StorageError::TooLarge { record: "r".into() });
        assert!(matches!(large.to_error(), StorageError::TooLarge { .. }));
    }
}
