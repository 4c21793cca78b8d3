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
//! `index` is the pure state (unit-tested without a cluster), `watch`
//! the watches and the sweeper, this file the lifecycle and the lookups.
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

mod index;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kube::Client;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

pub use index::{CachedRevision, Expectation};
use index::{IndexState, Pending, Record};

use super::store::{RecordKind, StorageError};
use crate::config::CacheConfig;
use crate::kube::pods::{Selector, select_pods};
use crate::model::PodInfo;

/// A failed index is not rebuilt more often than this.
pub const RETRY_FAILED: Duration = Duration::from_secs(5);
/// How long a write's expectation may stay unmet before the namespace is
/// re-listed.
pub(super) const EXPECT_WITHIN: Duration = Duration::from_secs(30);
/// After a failed write we do not know what helm stored: reads of that
/// release go to the API for this long.
const AFTER_FAILED_WRITE: Duration = Duration::from_secs(10);
/// How long a read waits for the index to show this replica's own write
/// before it reads the API instead (the watch usually delivers it within
/// milliseconds; a direct read's consistent LIST can take up to ~100 ms).
const WAIT_FOR_OWN_WRITE: Duration = Duration::from_millis(250);
/// How often idle indexes and old expectations are swept.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The index of one namespace and the watches feeding it.
pub(super) struct Index {
    state: RwLock<IndexState>,
    created: Instant,
    /// Milliseconds after `created` of the last read served.
    last_read: AtomicU64,
    failed_at: Mutex<Option<Instant>>,
    tasks: Mutex<Vec<AbortHandle>>,
    /// Woken after every change the watches apply.
    pub(super) changed: Notify,
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

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, IndexState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write(&self) -> std::sync::RwLockWriteGuard<'_, IndexState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self) {
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read.store(now, Ordering::Relaxed);
    }

    pub(super) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_read.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    pub(super) fn fail(&self) {
        self.write().failed = true;
        *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    pub(super) fn failed_since(&self) -> Option<Duration> {
        let at = *self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        at.map(|at| at.elapsed())
    }

    pub(super) fn stop(&self) {
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

pub(super) struct Inner {
    client: Client,
    kind: RecordKind,
    pub(super) settings: CacheConfig,
    pub(super) namespaces: Mutex<HashMap<String, Arc<Index>>>,
    pub(super) expectations: Mutex<HashMap<(String, String), Pending>>,
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
    pub fn start(client: Client, kind: RecordKind, settings: CacheConfig) -> Self {
        let inner = Arc::new(Inner {
            client,
            kind,
            settings,
            namespaces: Mutex::default(),
            expectations: Mutex::default(),
        });
        tokio::spawn(watch::sweep(Arc::downgrade(&inner)));
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
            newest.clone().map(Some).map_err(StorageError::from)
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
                .map(|record| record.clone().map_err(StorageError::from))
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
        let tasks = watch::watch_namespace(&inner.client, inner.kind, namespace, &index);
        *index.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
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
