//! API keys: `X-API-Key` checked in constant time against every configured
//! key (API_KEY, API_KEYS, API_KEY_FILE re-read when it changes). Keys are
//! kept only as SHA-256 digests; logs name a key by a short digest prefix.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The header callers put their key in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// A key, as a digest plus a loggable id.
#[derive(Clone)]
struct KeyDigest {
    digest: [u8; 32],
    id: KeyId,
}

/// Names a key in logs and audit events: `key:` and 8 hex digits of its
/// SHA-256. Never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId(pub String);

impl KeyDigest {
    fn new(key: &str) -> Self {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let id = KeyId(format!("key:{}", hex_prefix(&digest)));
        Self { digest, id }
    }
}

fn hex_prefix(digest: &[u8; 32]) -> String {
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The accepted keys.
#[derive(Clone)]
pub struct ApiKeys {
    inner: Arc<Inner>,
}

struct Inner {
    /// Keys from API_KEY / API_KEYS.
    fixed: Vec<KeyDigest>,
    /// Keys from API_KEY_FILE, replaced when the file changes.
    from_file: RwLock<Vec<KeyDigest>>,
    file: Option<PathBuf>,
    /// No key needed at all (`--insecure-no-auth`).
    open: bool,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeys(..)")
    }
}

impl ApiKeys {
    /// Builds the key set; `open` disables authentication entirely.
    pub fn new(keys: &[String], file: Option<PathBuf>, open: bool) -> std::io::Result<Self> {
        let from_file = match &file {
            Some(path) => parse_key_file(&std::fs::read_to_string(path)?),
            None => Vec::new(),
        };
        let fixed = keys.iter().map(|k| KeyDigest::new(k)).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                fixed,
                from_file: RwLock::new(from_file),
                file,
                open,
            }),
        })
    }

    /// True when at least one key is configured.
    pub fn any(&self) -> bool {
        !self.inner.fixed.is_empty() || !self.read_file_keys().is_empty()
    }

    pub fn is_open(&self) -> bool {
        self.inner.open
    }

    fn read_file_keys(&self) -> Vec<KeyDigest> {
        self.inner
            .from_file
            .read()
            .map(|k| k.clone())
            .unwrap_or_default()
    }

    /// The id of the matching key. Every key is compared, in constant time.
    pub fn verify(&self, presented: &str) -> Option<KeyId> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let file_keys = self.read_file_keys();
        let mut found = None;
        for key in self.inner.fixed.iter().chain(file_keys.iter()) {
            if bool::from(key.digest.ct_eq(&digest)) && found.is_none() {
                found = Some(key.id.clone());
            }
        }
        found
    }

    /// Re-reads API_KEY_FILE whenever its modification time changes.
    pub fn watch_file(&self, period: Duration) {
        let Some(path) = self.inner.file.clone() else {
            return;
        };
        let keys = self.clone();
        tokio::spawn(async move {
            let mut seen: Option<SystemTime> = None;
            loop {
                if let Ok(meta) = tokio::fs::metadata(&path).await {
                    let modified = meta.modified().ok();
                    if modified != seen {
                        seen = modified;
                        keys.reload(&path).await;
                    }
                }
                tokio::time::sleep(period).await;
            }
        });
    }

    async fn reload(&self, path: &PathBuf) {
        match tokio::fs::read_to_string(path).await {
            Ok(text) => {
                let parsed = parse_key_file(&text);
                let count = parsed.len();
                if let Ok(mut slot) = self.inner.from_file.write() {
                    *slot = parsed;
                }
                tracing::info!(keys = count, "API key file loaded");
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read API key file; keeping the previous keys")
            }
        }
    }
}

/// One key per line (or comma-separated); `#` starts a comment.
fn parse_key_file(text: &str) -> Vec<KeyDigest> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(KeyDigest::new)
        .collect()
}

/// Middleware for `/api/*`: 401 unless the key matches. The key's id is put
/// into the request's extensions for audit logs.
pub async fn require_api_key(
    State(keys): State<ApiKeys>,
    mut request: Request,
    next: Next,
) -> Response {
    if keys.is_open() {
        request.extensions_mut().insert(KeyId("anonymous".into()));
        return next.run(request).await;
    }
    // More than one key header is ambiguous (a proxy may have added one):
    // refuse rather than pick one.
    let mut sent = request.headers().get_all(API_KEY_HEADER).iter();
    let presented = match (sent.next(), sent.next()) {
        (Some(value), None) => value.to_str().ok(),
        _ => None,
    };
    match presented.and_then(|key| keys.verify(key)) {
        Some(id) => {
            request.extensions_mut().insert(id);
            next.run(request).await
        }
        None => ApiError::unauthorized().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_any_configured_key() {
        let keys = ApiKeys::new(&["alpha".into(), "beta".into()], None, false).unwrap();
        assert!(keys.any());
        assert!(keys.verify("alpha").is_some());
        assert!(keys.verify("beta").is_some());
        assert!(keys.verify("gamma").is_none());
        assert!(keys.verify("").is_none());
        assert_ne!(keys.verify("alpha"), keys.verify("beta"));
        let id = keys.verify("alpha").unwrap().0;
        assert!(id.starts_with("key:") && !id.contains("alpha"));
    }

    #[test]
    fn key_file_lines_and_comments() {
        let parsed = parse_key_file("# keys\nfirst\n\n second , third # old\n");
        assert_eq!(parsed.len(), 3);
    }

    #[tokio::test]
    async fn key_file_rotation_without_restart() {
        let dir = std::env::temp_dir().join(format!("paas-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, "old-key\n").unwrap();
        let keys = ApiKeys::new(&[], Some(path.clone()), false).unwrap();
        assert!(keys.verify("old-key").is_some());
        std::fs::write(&path, "new-key\n").unwrap();
        keys.reload(&path).await;
        assert!(keys.verify("old-key").is_none());
        assert!(keys.verify("new-key").is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
