//! A watch-fed, in-memory index of Helm's release records and of the pods
//! of tenant namespaces, so GET release, GET revisions and GET status are
//! answered from memory, without a Kubernetes API call.
//!
//! ```text
//!   GET ─► ReadCache ──hit──────────────────────────────► answer
//!             │ miss: still listing, watch failed,
//!             │ or this replica's own write not seen yet
//!             ▼
//!          direct read (ReleaseStore, pod list) ─► answer
//!
//!   READ_CACHE=cluster (default): one index for every tenant namespace =
//!     one cluster-wide watch of Helm's `owner=helm` records (each decoded
//!     once per change into a compact summary, the payload dropped)
//!     + one cluster-wide watch of pods (kept as compact summaries)
//!   READ_CACHE=namespaces: one index per namespace being read, started by
//!     a direct read, dropped when idle, at most READ_CACHE_NAMESPACES
//! ```
//!
//! `index` is the pure state (unit-tested without a cluster), `watch` the
//! watches and the sweeper, this file the lifecycle and the lookups.
//!
//! - **No cliff**: in cluster mode the cost of a read does not depend on
//!   how many tenants exist; memory grows with what is kept (a summary per
//!   revision, a few hundred bytes, and one per pod).
//! - **Start**: the index lists once (paginated) and answers once the
//!   listing is done (a listing is a snapshot: a namespace already listed
//!   may change before it ends); `/ready` waits for it (at most
//!   `READ_CACHE_READY_WAIT`). Reads before that go to the API.
//! - **Never stale by surprise**: after a watch error the index answers
//!   nothing until it has listed again (cluster mode: it re-lists with a
//!   backoff; namespaces mode: a later read rebuilds it).
//! - **Read-your-writes**: every write through this replica leaves an
//!   expectation (the revision and status it produced, or "gone"); a read of
//!   that release waits (up to 250 ms) for the index to show it, which the
//!   watch usually delivers within milliseconds, else reads the API. Writes
//!   by other replicas or by helm itself appear when the watch delivers them.

mod index;
mod shared;
mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::Client;

pub use index::Expectation;
use index::{Part, Pending, Revisions};
use shared::{
    AFTER_FAILED_WRITE, EXPECT_WITHIN, Index, Inner, RETRY_FAILED, Scope, WAIT_FOR_OWN_WRITE,
};

use super::store::{CachedRevision, RecordKind, StorageError};
use crate::config::{CacheConfig, CacheMode};
use crate::kube::pods::{Selector, select_pods};
use crate::model::PodInfo;
use crate::releases::wire;

/// The read cache; cheap to clone. [`ReadCache::disabled`] answers nothing,
/// so every read goes to the API.
#[derive(Clone)]
pub struct ReadCache {
    inner: Option<Arc<Inner>>,
}

/// What the index can say about a release right now.
enum Lookup<T> {
    Answer(T),
    /// Read it from the API (still listing, or the watch failed).
    Direct,
    /// This replica's own write is not in the index yet.
    Wait(Arc<Index>),
}

/// Whether an expectation lets the index answer for a release.
enum Settled {
    Yes,
    NotYet,
    /// Unmet for too long: re-list the namespace (namespaces mode).
    Overdue,
}

impl ReadCache {
    /// A cache that never answers (READ_CACHE=off, or storage we do not watch).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Starts the cache on the current tokio runtime: in cluster mode its
    /// two watches start listing now. `prefix` is the tenant namespace prefix.
    pub fn start(client: Client, kind: RecordKind, settings: CacheConfig, prefix: &str) -> Self {
        let scope = match settings.mode {
            CacheMode::Off => return Self::disabled(),
            CacheMode::Cluster => Scope::Cluster(Arc::new(Index::new())),
            CacheMode::Namespaces => Scope::Namespaces(Mutex::default()),
        };
        let inner = Arc::new(Inner {
            client,
            kind,
            settings,
            prefix: prefix.to_owned(),
            scope,
            expectations: Mutex::default(),
            started: Instant::now(),
            listed: AtomicBool::new(false),
        });
        if let Scope::Cluster(index) = &inner.scope {
            index.set_tasks(watch::watch_cluster(&inner, index));
        }
        tokio::spawn(watch::sweep(Arc::downgrade(&inner)));
        Self { inner: Some(inner) }
    }

    /// True while a cluster-wide cache is still listing, for at most
    /// `READ_CACHE_READY_WAIT` after start: the replica should not take
    /// traffic yet (`/ready`).
    pub fn warming(&self) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        matches!(inner.scope, Scope::Cluster(_))
            && !inner.listed.load(Ordering::Relaxed)
            && inner.started.elapsed() < inner.settings.ready_wait
    }

    /// The newest revision of a release, when the index can answer (`None`:
    /// read it from the API). `Some(Ok(None))` means there is no such release.
    pub async fn latest(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Result<Option<Arc<CachedRevision>>, StorageError>> {
        self.with_release(namespace, name, |revisions| {
            let Some((_, newest)) = revisions.and_then(<[_]>::last) else {
                return Ok(None);
            };
            newest
                .clone()
                .map(Some)
                .map_err(|e| StorageError::from((*e).clone()))
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
                .flatten()
                .map(|(_, record)| record.clone().map_err(|e| StorageError::from((*e).clone())))
                .collect()
        })
        .await
    }

    /// The release's pods, when the index has listed the namespace's pods.
    pub fn release_pods(
        &self,
        namespace: &str,
        release: &str,
        selectors: &[Selector],
    ) -> Option<Vec<PodInfo>> {
        let index = self.index_for(namespace)?;
        let state = index.read();
        if !state.covers(Part::Pods) {
            return None;
        }
        Some(wire::pod_infos(
            select_pods(state.pods(namespace).iter(), release, selectors),
            jiff::Timestamp::now(),
        ))
    }

    /// A direct read found a release in `namespace`: start indexing it
    /// (namespaces mode; the cluster-wide index already does).
    pub fn warm(&self, namespace: &str) {
        let Some(inner) = &self.inner else {
            return;
        };
        let Scope::Namespaces(namespaces) = &inner.scope else {
            return;
        };
        let mut namespaces = namespaces.lock().unwrap_or_else(|e| e.into_inner());
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
        index.set_tasks(watch::watch_namespace(inner, namespace, &index));
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

    /// Stops indexing a namespace (it is being deleted; namespaces mode).
    pub fn forget(&self, namespace: &str) {
        let Some(inner) = &self.inner else {
            return;
        };
        let Scope::Namespaces(namespaces) = &inner.scope else {
            return;
        };
        let mut namespaces = namespaces.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = namespaces.remove(namespace) {
            index.stop();
        }
        crate::metrics::read_cache_namespaces(namespaces.len());
    }

    /// The index that holds `namespace`, if any.
    fn index_for(&self, namespace: &str) -> Option<Arc<Index>> {
        let inner = self.inner.as_ref()?;
        match &inner.scope {
            Scope::Cluster(index) => namespace
                .starts_with(&inner.prefix)
                .then(|| Arc::clone(index)),
            Scope::Namespaces(namespaces) => {
                let namespaces = namespaces.lock().unwrap_or_else(|e| e.into_inner());
                let index = namespaces.get(namespace)?.clone();
                index.touch();
                Some(index)
            }
        }
    }

    /// Runs `answer` on the release's revisions if the index can answer
    /// for it; waits up to [`WAIT_FOR_OWN_WRITE`] for this replica's own
    /// write to show.
    async fn with_release<T>(
        &self,
        namespace: &str,
        name: &str,
        answer: impl Fn(Option<&Revisions>) -> T,
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
        answer: &impl Fn(Option<&Revisions>) -> T,
    ) -> Lookup<T> {
        let Some(index) = self.index_for(namespace) else {
            return Lookup::Direct;
        };
        let state = index.read();
        if !state.covers(Part::Records) {
            return Lookup::Direct;
        }
        let revisions = state.revisions(namespace, name);
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

    fn settled(&self, namespace: &str, name: &str, revisions: Option<&Revisions>) -> Settled {
        let Some(inner) = &self.inner else {
            return Settled::NotYet;
        };
        let mut expectations = inner.expectations.lock().unwrap_or_else(|e| e.into_inner());
        if expectations.is_empty() {
            return Settled::Yes;
        }
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
        match (&inner.scope, unknown) {
            (_, true) => Settled::Yes,
            // The one watch follows every namespace: what it shows is the
            // record as stored (helm may have changed it after the write,
            // e.g. a failed --wait).
            (Scope::Cluster(_), false) => {
                tracing::warn!(
                    namespace,
                    release = name,
                    "read cache: the watch shows another state than this replica's write left"
                );
                Settled::Yes
            }
            (Scope::Namespaces(_), false) => Settled::Overdue,
        }
    }
}
