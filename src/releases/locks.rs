//! One operation per release at a time: first an async lock per
//! (namespace, name) within this process, then (when configured) the
//! release's Lease in the cluster, so replicas exclude each other too. Both
//! are waited for within one bounded time. Local entries are weak, so the
//! map only holds releases that have an operation running or waiting.
//!
//! Callers answer before the Lease is given back
//! ([`ReleaseLocks::release_in_background`]): the local lock is kept until
//! the Lease is deleted, so the next operation on the release in this
//! process waits for that, and shutdown waits for it too
//! ([`ReleaseLocks::settle`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::kube::KubeError;
use crate::kube::lease::{HeldLease, ReleaseLeases};

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

/// Held while an operation runs on a release; give it back with
/// [`ReleaseGuard::release`] (when it is dropped instead, e.g. because the
/// request was cancelled, the Lease is given back in the background).
pub struct ReleaseGuard {
    _guard: OwnedMutexGuard<()>,
    lease: Option<HeldLease>,
}

impl ReleaseGuard {
    /// Releases the Lease (if any), then the local lock.
    pub async fn release(mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release().await;
        }
    }
}

/// The per-release locks of this process.
#[derive(Clone, Default)]
pub struct ReleaseLocks {
    locks: Arc<Mutex<HashMap<Key, Weak<AsyncMutex<()>>>>>,
    leases: Option<ReleaseLeases>,
    /// Guards being given back after their request was answered.
    releasing: TaskTracker,
}

impl ReleaseLocks {
    /// Local locks plus a Lease per release in the cluster.
    pub fn with_leases(leases: ReleaseLeases) -> Self {
        Self {
            leases: Some(leases),
            ..Self::default()
        }
    }

    /// Gives `guard` back without waiting: the Lease is deleted in the
    /// background, and the local lock is held until it is.
    pub fn release_in_background(&self, guard: ReleaseGuard) {
        self.releasing.spawn(guard.release().in_current_span());
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
        let guard = tokio::time::timeout(wait, lock.lock_owned())
            .await
            .map_err(|_| LockError::Busy)?;
        let Some(leases) = &self.leases else {
            return Ok(ReleaseGuard {
                _guard: guard,
                lease: None,
            });
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
        match acquired {
            Some(lease) => Ok(ReleaseGuard {
                _guard: guard,
                lease: Some(lease),
            }),
            None => Err(LockError::Busy),
        }
    }

    /// True while an operation of this process holds the release.
    pub fn is_held(&self, namespace: &str, name: &str) -> bool {
        let map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(namespace.to_owned(), name.to_owned()))
            .and_then(Weak::upgrade)
            .is_some_and(|lock| lock.try_lock().is_err())
    }

    /// True while any replica holds the release (its Lease is unexpired), or
    /// when that cannot be told.
    pub async fn is_held_anywhere(&self, namespace: &str, name: &str) -> bool {
        if self.is_held(namespace, name) {
            return true;
        }
        let Some(leases) = &self.leases else {
            return false;
        };
        match leases.holder(namespace, name).await {
            Ok(holder) => holder.is_some(),
            Err(error) => {
                tracing::warn!(%error, namespace, release = name, "cannot read release lease");
                true
            }
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
        locks.release_in_background(first);
        locks.settle(Duration::from_secs(1)).await;
        assert!(!locks.is_held("ns", "a"));
        assert!(
            locks
                .acquire("ns", "a", Duration::from_millis(10))
                .await
                .is_ok()
        );
    }
}
