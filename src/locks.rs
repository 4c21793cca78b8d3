//! One operation per release at a time within this process: an async lock
//! per (namespace, name), waited for a bounded time. Entries are weak, so
//! the map only holds releases that have an operation running or waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Key = (String, String);

/// Held while an operation runs on a release.
pub struct ReleaseGuard {
    _guard: OwnedMutexGuard<()>,
}

/// The per-release locks of this process.
#[derive(Clone, Default)]
pub struct ReleaseLocks {
    locks: Arc<Mutex<HashMap<Key, Weak<AsyncMutex<()>>>>>,
}

impl ReleaseLocks {
    /// Waits up to `wait` for the release's lock; `None` when another
    /// operation still holds it.
    pub async fn acquire(
        &self,
        namespace: &str,
        name: &str,
        wait: Duration,
    ) -> Option<ReleaseGuard> {
        let lock = self.entry(namespace, name);
        let guard = tokio::time::timeout(wait, lock.lock_owned()).await.ok()?;
        Some(ReleaseGuard { _guard: guard })
    }

    /// True while an operation of this process holds the release.
    pub fn is_held(&self, namespace: &str, name: &str) -> bool {
        let map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(namespace.to_owned(), name.to_owned()))
            .and_then(Weak::upgrade)
            .is_some_and(|lock| lock.try_lock().is_err())
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
                .is_none()
        );
        // Another release is independent.
        assert!(
            locks
                .acquire("ns", "b", Duration::from_millis(10))
                .await
                .is_some()
        );
        drop(first);
        assert!(!locks.is_held("ns", "a"));
        assert!(
            locks
                .acquire("ns", "a", Duration::from_millis(10))
                .await
                .is_some()
        );
    }
}
