//! The read cache's state, shared by its reads (`mod.rs`) and its watches
//! (`watch.rs`): the indexes, what the cache watches, and its timings.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kube::Client;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::index::{IndexState, Pending};
use crate::config::CacheConfig;
use crate::releases::store::RecordKind;

/// A failed index is not rebuilt more often than this (namespaces mode).
pub(super) const RETRY_FAILED: Duration = Duration::from_secs(5);
/// How long a write's expectation may stay unmet before the index is
/// trusted again (cluster mode) or the namespace re-listed.
pub(super) const EXPECT_WITHIN: Duration = Duration::from_secs(30);
/// After a failed write we do not know what helm stored: reads of that
/// release go to the API for this long.
pub(super) const AFTER_FAILED_WRITE: Duration = Duration::from_secs(10);
/// How long a read waits for the index to show this replica's own write
/// before it reads the API instead (the watch usually delivers it within
/// milliseconds; a direct read's consistent LIST can take up to ~100 ms).
pub(super) const WAIT_FOR_OWN_WRITE: Duration = Duration::from_millis(250);
/// How often idle indexes and old expectations are swept, and the gauges set.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// One index and the watches feeding it.
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
    pub(super) fn new() -> Self {
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

    pub(super) fn touch(&self) {
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read.store(now, Ordering::Relaxed);
    }

    pub(super) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_read.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    /// The index is dead until rebuilt (namespaces mode).
    pub(super) fn fail(&self) {
        *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    pub(super) fn failed_since(&self) -> Option<Duration> {
        let at = *self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        at.map(|at| at.elapsed())
    }

    pub(super) fn set_tasks(&self, tasks: Vec<AbortHandle>) {
        *self.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
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

/// What the cache watches.
pub(super) enum Scope {
    /// One index for every tenant namespace.
    Cluster(Arc<Index>),
    /// One index per namespace being read.
    Namespaces(Mutex<HashMap<String, Arc<Index>>>),
}

pub(super) struct Inner {
    pub(super) client: Client,
    pub(super) kind: RecordKind,
    pub(super) settings: CacheConfig,
    /// Only namespaces with this prefix are indexed.
    pub(super) prefix: String,
    pub(super) scope: Scope,
    pub(super) expectations: Mutex<HashMap<(String, String), Pending>>,
    pub(super) started: Instant,
    /// Cluster mode: the first listing of both parts is complete.
    pub(super) listed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        match &self.scope {
            Scope::Cluster(index) => index.stop(),
            Scope::Namespaces(namespaces) => {
                for index in namespaces
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                {
                    index.stop();
                }
            }
        }
    }
}
