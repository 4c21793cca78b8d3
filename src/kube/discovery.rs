//! Which kinds are cluster-scoped, from the API server's discovery, cached
//! for a few minutes (discovery costs one call per API group).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use kube::discovery::{Discovery, Scope};
use tokio::sync::Mutex;

use super::KubeError;
use crate::helm::confine::ScopeLookup;

const TTL: Duration = Duration::from_secs(300);

/// `(group, kind)` of every cluster-scoped resource the API serves.
#[derive(Debug, Clone, Default)]
pub struct ClusterScoped(HashSet<(String, String)>);

impl ScopeLookup for ClusterScoped {
    fn is_cluster_scoped(&self, api_version: &str, kind: &str) -> bool {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        self.0.contains(&(group.to_owned(), kind.to_owned()))
    }
}

/// A discovery result and when it was taken.
type Snapshot = (Instant, Arc<ClusterScoped>);

/// Cached discovery.
#[derive(Clone, Default)]
pub struct ScopeCache {
    cached: Arc<Mutex<Option<Snapshot>>>,
}

impl ScopeCache {
    pub async fn get(&self, client: &Client) -> Result<Arc<ClusterScoped>, KubeError> {
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
        let mut set = HashSet::new();
        for group in discovery.groups() {
            for (resource, capabilities) in group.recommended_resources() {
                if capabilities.scope == Scope::Cluster {
                    set.insert((resource.group.clone(), resource.kind.clone()));
                }
            }
        }
        let scopes = Arc::new(ClusterScoped(set));
        *slot = Some((Instant::now(), scopes.clone()));
        Ok(scopes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_group_and_kind() {
        let scopes = ClusterScoped(HashSet::from([
            (String::new(), "Namespace".to_owned()),
            (
                "rbac.authorization.k8s.io".to_owned(),
                "ClusterRole".to_owned(),
            ),
        ]));
        assert!(scopes.is_cluster_scoped("v1", "Namespace"));
        assert!(scopes.is_cluster_scoped("rbac.authorization.k8s.io/v1", "ClusterRole"));
        assert!(!scopes.is_cluster_scoped("v1", "ConfigMap"));
        assert!(!scopes.is_cluster_scoped("example.com/v1", "ClusterRole"));
    }
}
