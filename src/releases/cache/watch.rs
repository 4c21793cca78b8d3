//! The plumbing of the read cache: the two watches that feed an index
//! ([`super::index`]), cluster-wide or for one namespace, the conversion
//! (and decoding) of what they deliver, and the sweeper.
//!
//! Objects are read as compact types (identity and the one payload used;
//! everything else skipped by the parser) and each record is decoded once
//! per change, outside the index's lock, into a summary without its
//! manifest, hooks or values.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;

use super::index::{Item, Part};
use super::shared::{EXPECT_WITHIN, Index, Inner, RETRY_FAILED, SWEEP_EVERY, Scope};
use crate::kube::pods::PodObject;
use crate::releases::store::{
    DECODE_IN_PLACE, RECORD_LABELS, RECORD_TYPE, RecordConfigMap, RecordKind, RecordObject,
    RecordSecret, decode_cached, on_blocking_pool,
};

/// Records per page of a listing: a record may be up to ~1 MiB, and a
/// whole page is held while it is read.
const RECORD_PAGE: u32 = 100;
/// Pods per page (a compact pod is a few hundred bytes once read).
const POD_PAGE: u32 = 500;
/// Objects converted between two yields to the scheduler while listing
/// (decoding thousands of records must not hold a runtime thread).
const YIELD_EVERY: usize = 32;
/// Backoff between two attempts of a failed cluster-wide watch.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What a watch does after an error.
#[derive(Clone, Copy)]
enum OnError {
    /// List again after a backoff (the cluster-wide index is never dropped).
    Relist,
    /// Mark the index failed and stop (a later read rebuilds it).
    Stop,
}

/// Starts the cluster-wide watches: Helm's records and the pods of every
/// namespace (objects outside tenant namespaces are skipped).
pub(super) fn watch_cluster(inner: &Arc<Inner>, index: &Arc<Index>) -> Vec<AbortHandle> {
    let client = inner.client.clone();
    let prefix: Arc<str> = inner.prefix.as_str().into();
    let records = match inner.kind {
        RecordKind::Secret => spawn_watch(
            Api::<RecordSecret>::all(client.clone()),
            records_config(inner.kind),
            inner,
            index,
            Part::Records,
            record_item::<RecordSecret>(Arc::clone(&prefix)),
            OnError::Relist,
        ),
        RecordKind::ConfigMap => spawn_watch(
            Api::<RecordConfigMap>::all(client.clone()),
            records_config(inner.kind),
            inner,
            index,
            Part::Records,
            record_item::<RecordConfigMap>(Arc::clone(&prefix)),
            OnError::Relist,
        ),
    };
    let pods = spawn_watch(
        Api::<PodObject>::all(client),
        watcher::Config::default().page_size(POD_PAGE),
        inner,
        index,
        Part::Pods,
        pod_item(prefix),
        OnError::Relist,
    );
    vec![records, pods]
}

/// Starts the two watches of one namespace's index (namespaces mode).
pub(super) fn watch_namespace(
    inner: &Arc<Inner>,
    namespace: &str,
    index: &Arc<Index>,
) -> Vec<AbortHandle> {
    let client = inner.client.clone();
    let prefix: Arc<str> = inner.prefix.as_str().into();
    let records = match inner.kind {
        RecordKind::Secret => spawn_watch(
            Api::<RecordSecret>::namespaced(client.clone(), namespace),
            records_config(inner.kind),
            inner,
            index,
            Part::Records,
            record_item::<RecordSecret>(Arc::clone(&prefix)),
            OnError::Stop,
        ),
        RecordKind::ConfigMap => spawn_watch(
            Api::<RecordConfigMap>::namespaced(client.clone(), namespace),
            records_config(inner.kind),
            inner,
            index,
            Part::Records,
            record_item::<RecordConfigMap>(Arc::clone(&prefix)),
            OnError::Stop,
        ),
    };
    let pods = spawn_watch(
        Api::<PodObject>::namespaced(client, namespace),
        watcher::Config::default().page_size(POD_PAGE),
        inner,
        index,
        Part::Pods,
        pod_item(prefix),
        OnError::Stop,
    );
    vec![records, pods]
}

/// Helm's records, selected as Helm selects them (and, for Secrets, by
/// Helm's type, which the server filters too).
fn records_config(kind: RecordKind) -> watcher::Config {
    let config = watcher::Config::default()
        .labels(RECORD_LABELS)
        .page_size(RECORD_PAGE);
    match kind {
        RecordKind::Secret => config.fields(&format!("type={RECORD_TYPE}")),
        RecordKind::ConfigMap => config,
    }
}

/// A watched object, converted: its namespace and, when that is a tenant
/// namespace, what the index keeps of it.
type ConvertFn<K> = dyn Fn(&K) -> (String, Option<Item>) + Send + Sync;

/// `heavy` objects are converted on the blocking pool (a record may
/// inflate to hundreds of MiB; see `store::off_runtime`).
pub(super) struct Convert<K> {
    run: Arc<ConvertFn<K>>,
    heavy: fn(&K) -> bool,
}

impl<K: Send + 'static> Convert<K> {
    async fn apply(&self, object: K) -> (String, Option<Item>) {
        if !(self.heavy)(&object) {
            return (self.run)(&object);
        }
        let run = Arc::clone(&self.run);
        on_blocking_pool(move || run(&object)).await
    }
}

/// Starts one watch feeding `part` of `index`. The task ends with the
/// index (or the cache).
fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    inner: &Arc<Inner>,
    index: &Arc<Index>,
    part: Part,
    convert: Convert<K>,
    on_error: OnError,
) -> AbortHandle
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let (weak_index, weak_inner) = (Arc::downgrade(index), Arc::downgrade(inner));
    let task = tokio::spawn(async move {
        let mut backoff = BACKOFF_MIN;
        loop {
            let started = Instant::now();
            let outcome = follow(&api, &config, &weak_index, &weak_inner, part, &convert).await;
            let Some(index) = weak_index.upgrade() else {
                return;
            };
            if let Err(error) = outcome {
                tracing::warn!(%error, ?part, "read cache: watch failed; reads go to the API until it has listed again");
            }
            index.write().fail(part);
            index.changed.notify_waiters();
            if let OnError::Stop = on_error {
                index.fail();
                return;
            }
            drop(index);
            // A watch that ran a good while before failing starts over quickly.
            if started.elapsed() > BACKOFF_MAX {
                backoff = BACKOFF_MIN;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
    task.abort_handle()
}

/// Lists and then follows one watch into the index until it fails (or the
/// index is gone: `Ok`).
async fn follow<K>(
    api: &Api<K>,
    config: &watcher::Config,
    index: &Weak<Index>,
    inner: &Weak<Inner>,
    part: Part,
    convert: &Convert<K>,
) -> Result<(), watcher::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = std::pin::pin!(watcher::watcher(api.clone(), config.clone()));
    let mut listing_since = Instant::now();
    let mut converted = 0usize;
    while let Some(event) = stream.next().await {
        let Some(index) = index.upgrade() else {
            return Ok(());
        };
        match event? {
            Event::Init => {
                listing_since = Instant::now();
                index.write().begin_listing(part);
            }
            Event::InitApply(object) => {
                if let (namespace, Some(item)) = convert.apply(object).await {
                    index.write().listed(&namespace, item);
                }
                converted += 1;
                if converted % YIELD_EVERY == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Event::InitDone => {
                let complete = {
                    let mut state = index.write();
                    state.end_listing(part);
                    state.complete()
                };
                let counts = index.read().counts();
                crate::metrics::read_cache_namespaces(counts.namespaces);
                crate::metrics::read_cache_contents(counts.releases, counts.revisions, counts.pods);
                tracing::info!(
                    ?part,
                    seconds = listing_since.elapsed().as_secs_f64(),
                    namespaces = counts.namespaces,
                    releases = counts.releases,
                    revisions = counts.revisions,
                    pods = counts.pods,
                    "read cache: listed"
                );
                if complete && let Some(inner) = inner.upgrade() {
                    inner.listed.store(true, Ordering::Relaxed);
                }
            }
            Event::Apply(object) => {
                let (namespace, item) = convert.apply(object).await;
                if let Some(item) = item {
                    index.write().apply(&namespace, item);
                }
            }
            Event::Delete(object) => {
                let namespace = object.namespace().unwrap_or_default();
                index.write().delete(part, &namespace, &object.name_any());
            }
        }
        index.changed.notify_waiters();
    }
    Ok(())
}

/// A release record, decoded if it is a genuine one in a tenant namespace.
fn record_item<K: Resource + RecordObject + 'static>(prefix: Arc<str>) -> Convert<K> {
    let heavy = |object: &K| object.payload().is_some_and(|p| p.len() > DECODE_IN_PLACE);
    let run = Arc::new(move |object: &K| {
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        if !namespace.starts_with(&*prefix) {
            return (namespace, None);
        }
        // Only records Helm wrote for the release they are named for are
        // indexed; anything else is as if absent (as for direct reads).
        let record = decode_cached(object);
        let item = Item::Record {
            object: object.meta().name.as_deref().unwrap_or_default().into(),
            record,
        };
        (namespace, Some(item))
    });
    Convert { run, heavy }
}

/// A pod of a tenant namespace, as the status endpoint shows it.
fn pod_item(prefix: Arc<str>) -> Convert<PodObject> {
    let run = Arc::new(move |pod: &PodObject| {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let item = namespace
            .starts_with(&*prefix)
            .then(|| Item::Pod(pod.summary()));
        (namespace, item)
    });
    Convert {
        run,
        heavy: |_| false,
    }
}

/// Drops idle and long-failed indexes (namespaces mode), forgets old
/// expectations and sets the gauges; ends with the cache.
pub(super) async fn sweep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match &inner.scope {
            Scope::Cluster(index) => {
                let counts = index.read().counts();
                crate::metrics::read_cache_namespaces(counts.namespaces);
                crate::metrics::read_cache_contents(counts.releases, counts.revisions, counts.pods);
            }
            Scope::Namespaces(namespaces) => {
                let mut namespaces = namespaces.lock().unwrap_or_else(|e| e.into_inner());
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
            }
        }
        let now = Instant::now();
        inner
            .expectations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, pending| now < pending.until + EXPECT_WITHIN);
    }
}
