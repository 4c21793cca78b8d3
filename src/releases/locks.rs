//! One operation per release at a time: first an async lock per
//! (namespace, name) within this process, then (when configured) the
//! release's Lease in the cluster, so replicas exclude each other too. Both
//! are waited for within one bounded time. Local entries are weak, so the
//! map only holds releases that have an operation running or waiting.
//!
//! Callers answer before the Lease is given back
//! ([`ReleaseLocks::finish_in_background`]): the local lock is kept until
//! the Lease is written, so the next operation on the release in this
//! process waits for that, and shutdown waits for it too
//! ([`ReleaseLocks::settle`]). An operation that ended cleanly deletes its
//! Lease; one that ended in doubt frees it (no holder), so whoever takes
//! it next, or the recovery sweep, checks the release first. Waiting for
//! that bookkeeping (one API call, slow when the API server is throttling)
//! does not count against the next operation's wait: the release is free,
//! only this process's note of it is not written yet.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::kube::KubeError;
use crate::kube::lease::{HeldLease, LeaseState, ReleaseLeases};

type Key = (String, String);

/// Why a release could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another operation (here or in another replica) still holds it.
    #[error("another operation holds the release")]
    Busy,
    /// The release's namespace does not exist (so neither can its Lease).
    #[error("the namespace does not exist")]
    NamespaceMissing,
    /// The Lease could not be read or written.
    #[error(transparent)]
    Kube(KubeError),
}

/// How an operation under the lock ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// helm ran to its end (or never ran) and the outcome is known: the
    /// Lease is deleted.
    Clean,
    /// The release may be left `pending-*` (helm stopped or killed, an
    /// error after it ran): the Lease is kept without a holder, so the next
    /// taker or the recovery sweep checks the release.
    Doubtful,
    /// The Lease could not be renewed: it is left to expire (nothing is
    /// written), and the local lock is kept until helm has been stopped.
    LeaseLost,
}

/// Held while an operation runs on a release; give it back with
/// [`ReleaseLocks::finish_in_background`] (when it is dropped instead,
/// because the request was cancelled, helm is being stopped: the Lease is
/// kept renewed and the local lock held for the stop margin, then the
/// Lease is freed).
pub struct ReleaseGuard {
    guard: Option<OwnedMutexGuard<()>>,
    lease: Option<HeldLease>,
    key: Key,
    abandoned: Arc<Mutex<HashSet<Key>>>,
    finishing: Arc<Mutex<HashSet<Key>>>,
    releasing: TaskTracker,
    stop_margin: Duration,
}

impl ReleaseGuard {
    /// Resolves when the release's Lease is lost (never without a Lease).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let lost = self.lease.as_ref().map(HeldLease::lost);
        async move {
            match lost {
                Some(lost) => lost.await,
                None => std::future::pending().await,
            }
        }
    }

    /// Gives the Lease back as `ending` says, then the local lock.
    async fn finish(mut self, ending: Ending) {
        let lease = self.lease.take();
        let guard = self.guard.take();
        self.forget_abandoned();
        match (lease, ending) {
            (Some(lease), Ending::Clean) => lease.release().await,
            (Some(lease), Ending::Doubtful) => lease.free().await,
            (lease, Ending::LeaseLost) => {
                if let Some(lease) = lease {
                    lease.abandon();
                }
                // helm is being stopped (SIGTERM, then SIGKILL within the
                // margin): no other operation of this process starts on the
                // release before that.
                tokio::time::sleep(self.stop_margin).await;
            }
            (None, _) => {}
        }
        self.finishing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        drop(guard);
    }

    fn forget_abandoned(&self) {
        self.abandoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        let (Some(guard), lease) = (self.guard.take(), self.lease.take()) else {
            return;
        };
        self.forget_abandoned();
        // The operation was dropped mid-way (its request went away): its
        // helm, if any, is being stopped. Keep the release (the Lease stays
        // renewed) until it surely is, then free the Lease for a check.
        let margin = self.stop_margin;
        if tokio::runtime::Handle::try_current().is_ok() {
            self.releasing.spawn(
                async move {
                    tokio::time::sleep(margin).await;
                    if let Some(lease) = lease {
                        lease.free().await;
                    }
                    drop(guard);
                }
                .in_current_span(),
            );
        }
    }
}

/// The per-release locks of this process.
#[derive(Clone, Default)]
pub struct ReleaseLocks {
    locks: Arc<Mutex<HashMap<Key, Weak<AsyncMutex<()>>>>>,
    leases: Option<ReleaseLeases>,
    /// Releases whose Lease was taken over from an operation that ended in
    /// doubt, while their lock is held (see [`ReleaseLocks::took_over`]).
    abandoned: Arc<Mutex<HashSet<Key>>>,
    /// Releases whose operation has ended and whose Lease is being given
    /// back (see [`FINISH_WAIT`]).
    finishing: Arc<Mutex<HashSet<Key>>>,
    /// Guards being given back after their request was answered.
    releasing: TaskTracker,
}

/// How long an operation may wait, beyond its own wait, for the operation
/// before it to give its Lease back: one or two API calls, each bounded by
/// the request timeouts and the 429 resends.
pub const FINISH_WAIT: Duration = Duration::from_secs(15);

impl ReleaseLocks {
    /// Local locks plus a Lease per release in the cluster.
    pub fn with_leases(leases: ReleaseLeases) -> Self {
        Self {
            leases: Some(leases),
            ..Self::default()
        }
    }

    /// How long helm is given to stop before a Lease it ran under could
    /// lapse (zero without Leases).
    pub fn stop_margin(&self) -> Duration {
        self.leases
            .as_ref()
            .map_or(Duration::ZERO, |l| l.timing().stop_margin)
    }

    /// Gives `guard` back without waiting (in the background); the local
    /// lock is held until the Lease is written.
    pub fn finish_in_background(&self, guard: ReleaseGuard, ending: Ending) {
        if ending != Ending::LeaseLost {
            // Its helm has ended: what is left is bookkeeping. (A lost
            // Lease keeps the lock while helm is being stopped.)
            self.finishing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(guard.key.clone());
        }
        self.releasing.spawn(guard.finish(ending).in_current_span());
    }

    /// Waits (at most `limit`) for the guards being given back, so that a
    /// stopping process leaves no Lease behind to block other replicas.
    pub async fn settle(&self, limit: Duration) {
        self.releasing.close();
        if tokio::time::timeout(limit, self.releasing.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pending = self.releasing.len(),
                "release leases not given back before exit; they will expire"
            );
        }
        self.releasing.reopen();
    }

    /// Waits up to `wait` for the release's lock (and Lease).
    pub async fn acquire(
        &self,
        namespace: &str,
        name: &str,
        wait: Duration,
    ) -> Result<ReleaseGuard, LockError> {
        let started = tokio::time::Instant::now();
        let lock = self.entry(namespace, name);
        let key = (namespace.to_owned(), name.to_owned());
        let guard = match tokio::time::timeout(wait, lock.clone().lock_owned()).await {
            Ok(guard) => guard,
            Err(_) if self.is_finishing(&key) => {
                tokio::time::timeout(FINISH_WAIT, lock.lock_owned())
                    .await
                    .map_err(|_| LockError::Busy)?
            }
            Err(_) => return Err(LockError::Busy),
        };
        // The guard exists only once everything is held: a failed attempt
        // gives the local lock back at once.
        let held = |lease: Option<HeldLease>| ReleaseGuard {
            guard: Some(guard),
            lease,
            key: key.clone(),
            abandoned: self.abandoned.clone(),
            finishing: self.finishing.clone(),
            releasing: self.releasing.clone(),
            stop_margin: self.stop_margin(),
        };
        let Some(leases) = &self.leases else {
            return Ok(held(None));
        };
        let left = wait.saturating_sub(started.elapsed());
        let acquired =
            leases
                .acquire(namespace, name, left)
                .await
                .map_err(|error| match &error {
                    KubeError::Api {
                        source: kube::Error::Api(status),
                        ..
                    } if status.code == 404 => LockError::NamespaceMissing,
                    _ => LockError::Kube(error),
                })?;
        let Some(lease) = acquired else {
            return Err(LockError::Busy);
        };
        if lease.took_over() {
            self.abandoned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone());
        }
        Ok(held(Some(lease)))
    }

    /// True while this process holds the release, and the Lease it holds
    /// was left without a live holder by an operation before (which ended in
    /// doubt, or whose replica died): a `pending-*` revision found now has
    /// lost its helm.
    pub fn took_over(&self, namespace: &str, name: &str) -> bool {
        self.is_held(namespace, name)
            && self
                .abandoned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&(namespace.to_owned(), name.to_owned()))
    }

    /// True while the operation holding the release has ended and gives
    /// its Lease back.
    fn is_finishing(&self, key: &Key) -> bool {
        self.finishing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    /// True while an operation of this process holds the release.
    pub fn is_held(&self, namespace: &str, name: &str) -> bool {
        let map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(namespace.to_owned(), name.to_owned()))
            .and_then(Weak::upgrade)
            .is_some_and(|lock| lock.try_lock().is_err())
    }

    /// What guards the release now: held here or by a live replica, an
    /// unheld Lease (an operation ended in doubt or its replica died), or
    /// nothing. A Lease that cannot be read counts as held.
    pub async fn lease_state(&self, namespace: &str, name: &str) -> LeaseState {
        if self.is_held(namespace, name) {
            return LeaseState::Held(String::new());
        }
        let Some(leases) = &self.leases else {
            return LeaseState::Absent;
        };
        match leases.state(namespace, name).await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%error, namespace, release = name, "cannot read release lease");
                LeaseState::Held(String::new())
            }
        }
    }

    /// Every release (namespace, name) whose Lease has no live holder,
    /// cluster-wide; empty without Leases.
    pub async fn unheld(&self) -> Result<Vec<(String, String)>, KubeError> {
        match &self.leases {
            Some(leases) => leases.unheld().await,
            None => Ok(Vec::new()),
        }
    }

    fn entry(&self, namespace: &str, name: &str) -> Arc<AsyncMutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, weak| weak.strong_count() > 0);
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(lock) = map.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(AsyncMutex::new(()));
        map.insert(key, Arc::downgrade(&lock));
        lock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operation before gives its Lease back for longer than the next
    /// one's wait: the next one still gets the release (the wait counts
    /// operations, not bookkeeping); one still running makes it Busy.
    #[tokio::test]
    async fn giving_a_lease_back_does_not_count_against_the_next_wait() {
        let locks = ReleaseLocks::default();
        let wait = Duration::from_millis(50);
        let bookkeeping = Duration::from_millis(300);
        let key = ("ns".to_owned(), "a".to_owned());

        let first = locks.acquire("ns", "a", wait).await.unwrap();
        locks.finishing.lock().unwrap().insert(key.clone());
        let finishing = locks.finishing.clone();
        let (k, started) = (key.clone(), tokio::time::Instant::now());
        tokio::spawn(async move {
            tokio::time::sleep(bookkeeping).await;
            finishing.lock().unwrap().remove(&k);
            drop(first);
        });
        let second = locks.acquire("ns", "a", wait).await;
        assert!(second.is_ok(), "waited for the bookkeeping");
        assert!(started.elapsed() >= bookkeeping);
        drop(second);

        let running = locks.acquire("ns", "a", wait).await.unwrap();
        assert!(matches!(
            locks.acquire("ns", "a", wait).await,
            Err(LockError::Busy)
        ));
        drop(running);
    }

    #[tokio::test]
    async fn second_operation_waits_then_gives_up() {
        let locks = ReleaseLocks::default();
        let first = locks
            .acquire("ns", "a", Duration::from_millis(10))
            .await
            .unwrap();
        assert!(locks.is_held("ns", "a"));
        assert!(
            locks
                .acquire("ns", "a", Duration::from_millis(20))
                .await
                .is_err()
        );
        // Another release is independent.
        assert!(
            locks
                .acquire("ns", "b", Duration::from_millis(10))
                .await
                .is_ok()
        );
        locks.finish_in_background(first, Ending::Clean);
        locks.settle(Duration::from_secs(1)).await;
        assert!(!locks.is_held("ns", "a"));
        assert!(
            locks
                .acquire("ns", "a", Duration::from_millis(10))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_failed_attempt_keeps_nothing() {
        let locks = ReleaseLocks::default();
        let first = locks
            .acquire("ns", "a", Duration::from_millis(10))
            .await
            .unwrap();
        assert!(matches!(
            locks.acquire("ns", "a", Duration::ZERO).await,
            Err(LockError::Busy)
        ));
        locks.finish_in_background(first, Ending::Doubtful);
        locks.settle(Duration::from_secs(1)).await;
        // Free at once: neither attempt left a hold behind.
        assert!(locks.acquire("ns", "a", Duration::ZERO).await.is_ok());
    }

    #[tokio::test]
    async fn a_dropped_guard_gives_the_lock_back_after_the_stop_margin() {
        let locks = ReleaseLocks::default();
        let guard = locks
            .acquire("ns", "a", Duration::from_millis(10))
            .await
            .unwrap();
        drop(guard);
        locks.settle(Duration::from_secs(1)).await;
        assert!(!locks.is_held("ns", "a"));
        assert!(!locks.took_over("ns", "a"));
        assert_eq!(locks.lease_state("ns", "a").await, LeaseState::Absent);
    }
}
