//! Fetched charts, content-addressed by sha256, in a private directory
//! (`<temp>/paas-operator-charts-<pid>-<uuid>`, mode 0700) that only this
//! process writes. Each archive is inspected once: its verdict is kept
//! with it, so a chart asked for again costs no download and no
//! inspection, and a refused one is refused again at once.
//!
//! - Bounded: at most `max_bytes` of archives; the least recently used
//!   ones that no helm is reading are evicted. A refused archive is not
//!   kept, only its verdict (at most [`MAX_VERDICTS`]).
//! - Single flight: [`ChartCache::flight`] makes concurrent fetches of one
//!   key (a digest or a URL) wait for the first, which then finds it here.
//! - An archive handed to helm is held ([`Held`]) until helm is done, so
//!   eviction never removes a file under a running helm.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::archive::Refusal;

/// Most verdicts of refused archives kept.
pub const MAX_VERDICTS: usize = 4096;

/// Cache directories are `paas-operator-charts-<pid>-<uuid>`.
const DIR_PREFIX: &str = "paas-operator-charts-";

/// The cache; cheap to clone.
#[derive(Clone)]
pub struct ChartCache {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    flights: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Bytes of the archives on disk.
    bytes: u64,
    /// A counter for least-recently-used order.
    clock: u64,
}

struct Entry {
    size: u64,
    verdict: Option<Refusal>,
    /// Helm runs reading the file now.
    users: usize,
    used: u64,
}

/// An archive in the cache, kept on disk while this is alive.
pub struct Held {
    inner: Arc<Inner>,
    sha256: String,
    path: PathBuf,
}

impl Held {
    /// The archive, for helm.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its sha256, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if let Some(entry) = state.entries.get_mut(&self.sha256) {
            entry.users = entry.users.saturating_sub(1);
        }
    }
}

/// What the cache knows of an archive.
pub type Known = Result<Held, Refusal>;

impl ChartCache {
    /// A fresh private directory under `parent`; directories of processes
    /// that are gone are removed first.
    pub fn open(parent: &Path, max_bytes: u64) -> std::io::Result<Self> {
        remove_stale(parent);
        let dir = parent.join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                max_bytes,
                state: Mutex::new(State::default()),
                flights: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The directory (for logs and tests).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What the cache knows of `sha256`: the archive (held), its refusal,
    /// or nothing (`None`; also when the file vanished under us).
    pub fn lookup(&self, sha256: &str) -> Option<Known> {
        let path = self.inner.path(sha256);
        let mut state = self.inner.lock();
        state.clock += 1;
        let clock = state.clock;
        let entry = state.entries.get_mut(sha256)?;
        entry.used = clock;
        if let Some(refusal) = entry.verdict {
            return Some(Err(refusal));
        }
        if !path.is_file() {
            // Someone cleaned the temp dir: fetch it again.
            let size = entry.size;
            state.entries.remove(sha256);
            state.bytes = state.bytes.saturating_sub(size);
            return None;
        }
        entry.users += 1;
        Some(Ok(self.held(sha256, path)))
    }

    /// A fresh path in the directory for a download in progress.
    pub fn partial(&self) -> Partial {
        Partial(
            self.inner
                .dir
                .join(format!("partial-{}", uuid::Uuid::new_v4())),
        )
    }

    /// Stores a downloaded, inspected archive under its `sha256`: moved
    /// into place when accepted (and held for the caller), only its
    /// refusal kept otherwise. Evicts what no longer fits.
    pub fn insert(
        &self,
        sha256: &str,
        partial: Partial,
        size: u64,
        verdict: Option<Refusal>,
    ) -> std::io::Result<Known> {
        let path = self.inner.path(sha256);
        let mut state = self.inner.lock();
        state.clock += 1;
        let used = state.clock;
        // The same content may arrive twice at once (two URLs of one
        // chart): the first stored wins, and its holders are kept.
        if let Some(entry) = state.entries.get_mut(sha256)
            && (entry.verdict.is_some() || path.is_file())
        {
            entry.used = used;
            if let Some(refusal) = entry.verdict {
                return Ok(Err(refusal));
            }
            entry.users += 1;
            return Ok(Ok(self.held(sha256, path)));
        }
        if verdict.is_none() {
            std::fs::rename(partial.path(), &path)?;
        }
        drop(partial);
        let size = if verdict.is_some() { 0 } else { size };
        let previous = state.entries.insert(
            sha256.to_owned(),
            Entry {
                size,
                verdict,
                users: usize::from(verdict.is_none()),
                used,
            },
        );
        if let Some(previous) = previous {
            state.bytes = state.bytes.saturating_sub(previous.size);
        }
        state.bytes += size;
        self.inner.evict(&mut state, sha256);
        drop(state);
        Ok(match verdict {
            Some(refusal) => Err(refusal),
            None => Ok(self.held(sha256, path)),
        })
    }

    fn held(&self, sha256: &str, path: PathBuf) -> Held {
        Held {
            inner: self.inner.clone(),
            sha256: sha256.to_owned(),
            path,
        }
    }

    /// Waits until no other fetch of `key` is under way; the fetch holds
    /// the returned guard while it downloads.
    pub async fn flight(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
            flights.retain(|_, weak| weak.strong_count() > 0);
            match flights.get(key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    flights.insert(key.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }

    /// Bytes of archives on disk now.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.tgz"))
    }

    /// Removes least recently used archives nobody reads until the rest
    /// fits, and the oldest verdicts beyond [`MAX_VERDICTS`]; `keep` (just
    /// stored) stays.
    fn evict(&self, state: &mut State, keep: &str) {
        let mut archives: Vec<(u64, String)> = state
            .entries
            .iter()
            .filter(|(key, e)| e.verdict.is_none() && e.users == 0 && key.as_str() != keep)
            .map(|(key, e)| (e.used, key.clone()))
            .collect();
        archives.sort();
        for (_, key) in archives {
            if state.bytes <= self.max_bytes {
                break;
            }
            if let Some(entry) = state.entries.remove(&key) {
                state.bytes = state.bytes.saturating_sub(entry.size);
                let _ = std::fs::remove_file(self.path(&key));
            }
        }
        let mut verdicts: Vec<(u64, String)> = state
            .entries
            .iter()
            .filter(|(_, e)| e.verdict.is_some())
            .map(|(key, e)| (e.used, key.clone()))
            .collect();
        if verdicts.len() > MAX_VERDICTS {
            verdicts.sort();
            let excess = verdicts.len() - MAX_VERDICTS;
            for (_, key) in verdicts.into_iter().take(excess) {
                state.entries.remove(&key);
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Once, when the process ends (or a test's cache goes).
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A download in progress: removed unless stored.
pub struct Partial(PathBuf);

impl Partial {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Removes the cache directories of processes that are gone.
fn remove_stale(parent: &Path) {
    if !Path::new("/proc/self").exists() {
        return; // No way to tell a live process here.
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::archive::ArchiveProblem;

    fn cache(max_bytes: u64) -> (PathBuf, ChartCache) {
        let parent = std::env::temp_dir().join(format!("charts-cache-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&parent).unwrap();
        let cache = ChartCache::open(&parent, max_bytes).unwrap();
        (parent, cache)
    }

    fn store(cache: &ChartCache, sha: &str, size: usize, verdict: Option<Refusal>) -> Known {
        let partial = cache.partial();
        std::fs::write(partial.path(), vec![b'x'; size]).unwrap();
        cache.insert(sha, partial, size as u64, verdict).unwrap()
    }

    #[test]
    fn the_directory_is_private_and_removed_with_the_cache() {
        use std::os::unix::fs::PermissionsExt;
        let (parent, cache) = cache(100);
        let mode = std::fs::metadata(cache.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let dir = cache.dir().to_owned();
        drop(cache);
        assert!(!dir.exists());
        std::fs::remove_dir_all(parent).unwrap();
    }

    #[test]
    fn archives_and_refusals_are_found_again() {
        let (parent, cache) = cache(100);
        assert!(cache.lookup("aa").is_none());
        let held = store(&cache, "aa", 10, None).unwrap();
        assert_eq!(std::fs::read(held.path()).unwrap().len(), 10);
        assert_eq!(held.sha256(), "aa");
        let again = cache.lookup("aa").unwrap().unwrap();
        assert_eq!(again.path(), held.path());
        let refusal = Refusal::Archive(ArchiveProblem::TooLarge);
        assert_eq!(store(&cache, "bb", 10, Some(refusal)).err(), Some(refusal));
        assert_eq!(cache.lookup("bb").unwrap().err(), Some(refusal));
        // A refused archive is not kept on disk.
        assert_eq!(cache.bytes(), 10);
        assert_eq!(std::fs::read_dir(cache.dir()).unwrap().count(), 1);
        // A file removed under the cache is fetched again.
        std::fs::remove_file(held.path()).unwrap();
        assert!(cache.lookup("aa").is_none());
        drop(cache);
        std::fs::remove_dir_all(parent).unwrap();
    }

    #[test]
    fn the_same_content_stored_twice_keeps_the_first_and_its_holders() {
        let (parent, cache) = cache(10);
        let first = store(&cache, "aa", 10, None).unwrap();
        let second = store(&cache, "aa", 10, None).unwrap();
        assert_eq!(first.path(), second.path());
        assert_eq!(cache.bytes(), 10);
        drop(first);
        // Still held by the second: a newcomer cannot evict it.
        drop(store(&cache, "bb", 10, None).unwrap());
        assert!(second.path().exists());
        drop(second);
        drop(cache);
        std::fs::remove_dir_all(parent).unwrap();
    }

    #[test]
    fn eviction_spares_archives_in_use() {
        let (parent, cache) = cache(25);
        let first = store(&cache, "a1", 10, None).unwrap();
        drop(store(&cache, "a2", 10, None).unwrap());
        // a1 is older but in use: a2 goes.
        let third = store(&cache, "a3", 10, None).unwrap();
        assert!(cache.lookup("a2").is_none());
        assert!(first.path().exists());
        assert_eq!(cache.bytes(), 20);
        drop(first);
        drop(third);
        // Both unused now; a4 makes room by removing the oldest (a1).
        drop(store(&cache, "a4", 10, None).unwrap());
        assert!(cache.lookup("a1").is_none());
        assert!(cache.lookup("a3").is_some());
        assert!(cache.bytes() <= 25);
        drop(cache);
        std::fs::remove_dir_all(parent).unwrap();
    }

    #[tokio::test]
    async fn one_flight_per_key() {
        use std::time::Duration;
        let (parent, cache) = cache(100);
        let first = cache.flight("k").await;
        // The same key waits while the first flight is under way; another
        // key does not.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), cache.flight("k"))
                .await
                .is_err()
        );
        assert!(
            tokio::time::timeout(Duration::from_secs(5), cache.flight("j"))
                .await
                .is_ok()
        );
        drop(first);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), cache.flight("k"))
                .await
                .is_ok()
        );
        drop(cache);
        std::fs::remove_dir_all(parent).unwrap();
    }
}
