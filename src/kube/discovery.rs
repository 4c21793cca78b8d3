//! Which kinds are cluster-scoped, from the API server's discovery, cached
//! for a few minutes (discovery costs one call per API group).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use kube::discovery::{Discovery, Scope};
use tokio::sync::Mutex;

use super::KubeError;

const TTL: Duration = Duration::from_secs(300);

/// `(group, kind)` of every cluster-scoped resource the API serves.
pub type ClusterScopedKinds = HashSet<(String, String)>;

/// A discovery result and when it was taken.
type Snapshot = (Instant, Arc<ClusterScopedKinds>);

/// Cached discovery.
#[derive(Clone, Default)]
pub struct ScopeCache {
    cached: Arc<Mutex<Option<Snapshot>>>,
}

impl ScopeCache {
    pub async fn get(&self, client: &Client) -> Result<Arc<ClusterScopedKinds>, KubeError> {
        let mut slot = self.cached.lock().await;
        if let Some((at, scopes)) = slot.as_ref()
            && at.elapsed() < TTL
        {
            return Ok(scopes.clone());
        }
        let discovery = Discovery::new(client.clone())
            .run()
            .await
            .map_err(KubeError::api("discovering API resources"))?;
        let scopes: ClusterScopedKinds = discovery
            .groups()
            .flat_map(|group| group.recommended_resources())
            .filter(|(_, capabilities)| capabilities.scope == Scope::Cluster)
            .map(|(resource, _)| (resource.group, resource.kind))
            .collect();
        let scopes = Arc::new(scopes);
        *slot = Some((Instant::now(), scopes.clone()));
        Ok(scopes)
    }
}
