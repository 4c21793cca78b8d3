//! The release service: every operation on a Helm release, end to end,
//! and the work that spans services (a release's routes, a namespace with
//! its releases).
//!
//! ```text
//!  api/ handlers (AppState.releases)
//!        │ typed commands, parsed at the edge: Install, Upgrade (commands.rs),
//!        │ AttachSidecar (sidecar_spec.rs), N8nBootstrap (n8n_bootstrap.rs)
//!        ▼
//!  ReleaseService
//!   ├─ write.rs   lock + Lease (locks.rs) ─► the chart fetched and inspected
//!   │             (crate::charts) ─► confinement (confinement.rs) ─► helm
//!   │             ─► read-your-writes expectation ─► audit (audit.rs)
//!   │             a `pending-*` revision whose helm is gone is marked
//!   │             failed and the operation retried once (recovery.rs);
//!   │             a background sweep does the same without a write
//!   ├─ revision.rs  stored documents applied as a new revision: rollback,
//!   │             the sidecar (sidecar.rs), the n8n key (n8n_bootstrap.rs)
//!   ├─ read.rs    watch-fed cache (cache/) ─► else Helm's records from the
//!   │             Kubernetes API (store.rs) or the helm CLI ─► warm the cache
//!   └─ routes.rs, namespaces.rs  a release's route in its answers, route
//!                 reconciliation against live releases; a namespace read
//!                 and deleted with its releases
//! ```
//!
//! Below it: `helm/` (the helm CLI), `kube/` (Kubernetes primitives),
//! `tenants/` (tenant namespaces) and `exposure/` (a release's routes,
//! claimed after its install and removed with it, under its lock). The
//! handlers hold the tenant and exposure services too, beside this one,
//! for what concerns them alone. Nothing here knows HTTP.

pub mod audit;
pub mod cache;
pub mod commands;
mod confinement;
pub mod earlier;
mod kept_key;
pub mod locks;
pub mod n8n_bootstrap;
mod namespaces;
pub mod read;
pub mod recovery;
mod revision;
mod routes;
mod sidecar;
mod sidecar_spec;
pub mod state;
pub mod store;
pub mod wire;
mod write;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;

pub use commands::{Install, Upgrade};
pub use sidecar_spec::AttachSidecar;
pub use store::{RecordKind, ReleaseStore};

use crate::charts::ChartStore;
use crate::config::ReleaseReads;
use crate::exposure::ExposureService;
use crate::helm::Helm;
use crate::kube::discovery::ScopeCache;
use crate::tenants::TenantService;
use cache::ReadCache;
use locks::ReleaseLocks;

/// What the service is configured with.
#[derive(Debug, Clone)]
pub struct ReleaseSettings {
    /// How long an operation waits for another one on the same release.
    pub lock_wait: Duration,
    /// A `pending-*` revision older than this has lost its helm.
    pub stale_after: Duration,
    /// Check charts' renderings for confinement (`CONFINE_CHARTS`).
    pub confine: bool,
    /// Cluster-scoped kinds charts may create.
    pub allowed_cluster_kinds: HashSet<String>,
    /// The ServiceAccount helm runs as in each tenant namespace.
    pub tenant_account: String,
    /// How the operator reaches a tenant's app (the n8n bootstrap).
    pub app_access: crate::config::AppAccess,
    /// How long the n8n bootstrap waits for n8n.
    pub n8n_ready_timeout: Duration,
    /// The tenant namespace prefix (a release's generated subdomain drops it).
    pub namespace_prefix: String,
    /// What tenant pods may name (`ALLOWED_*`), checked before helm runs.
    pub scheduling: crate::render::confine::SchedulingRules,
}

/// Where reads come from when the cache cannot answer.
pub enum Reads {
    /// Helm's records, decoded from the Kubernetes API.
    Storage(ReleaseStore),
    /// The helm CLI. The store is kept when the driver is one we read, for
    /// stuck-release recovery, which rewrites a record.
    Cli { store: Option<ReleaseStore> },
}

impl Reads {
    pub fn new(reads: ReleaseReads, store: Option<ReleaseStore>) -> anyhow::Result<Self> {
        match (reads, store) {
            (ReleaseReads::Storage, Some(store)) => Ok(Self::Storage(store)),
            (ReleaseReads::Storage, None) => {
                anyhow::bail!("release reads from storage need HELM_DRIVER secret or configmap")
            }
            (ReleaseReads::Helm, store) => Ok(Self::Cli { store }),
        }
    }

    /// The record storage, when its driver is one we read.
    fn store(&self) -> Option<&ReleaseStore> {
        match self {
            Self::Storage(store) => Some(store),
            Self::Cli { store } => store.as_ref(),
        }
    }
}

/// Operations on Helm releases.
pub struct ReleaseService {
    helm: Helm,
    charts: Arc<ChartStore>,
    client: Client,
    reads: Reads,
    cache: ReadCache,
    locks: ReleaseLocks,
    scopes: ScopeCache,
    tenants: TenantService,
    settings: ReleaseSettings,
    exposure: ExposureService,
    /// Cancelled at shutdown, after the grace: operations still running
    /// stop their helm and repair their release.
    stopping: tokio_util::sync::CancellationToken,
}

/// The parts a [`ReleaseService`] is built from (see `startup.rs`).
pub struct Parts {
    pub helm: Helm,
    /// Where charts come from: fetched, inspected, local (helm pulls nothing).
    pub charts: Arc<ChartStore>,
    pub client: Client,
    pub reads: Reads,
    pub cache: ReadCache,
    pub locks: ReleaseLocks,
    pub tenants: TenantService,
    pub settings: ReleaseSettings,
    /// Public exposure of releases (routes follow installs and uninstalls).
    pub exposure: ExposureService,
}

impl ReleaseService {
    pub fn new(parts: Parts) -> Self {
        let Parts {
            helm,
            charts,
            client,
            reads,
            cache,
            locks,
            tenants,
            settings,
            exposure,
        } = parts;
        let service = Self {
            helm,
            charts,
            client,
            reads,
            cache,
            locks,
            scopes: ScopeCache::default(),
            tenants,
            settings,
            exposure,
            stopping: tokio_util::sync::CancellationToken::new(),
        };
        if service.settings.confine {
            // Discovery (a call per API group) now, not in the first write.
            let (scopes, client) = (service.scopes.clone(), service.client.clone());
            tokio::spawn(async move {
                if let Err(error) = scopes.get(&client).await {
                    tracing::warn!(%error, "API discovery failed; the first install will retry it");
                }
            });
        }
        service
    }

    /// The helm version detected at start (`v4.3.1`).
    pub fn helm_version(&self) -> &str {
        &self.helm.version().text
    }

    /// The helm binary is still there and executable (readiness).
    pub async fn helm_runnable(&self) -> bool {
        self.helm.runner().binary_runnable().await
    }

    /// True while the cluster-wide read cache is still listing after start
    /// (bounded by `READ_CACHE_READY_WAIT`).
    pub fn cache_warming(&self) -> bool {
        self.cache.warming()
    }

    /// True when reads run the helm CLI (`RELEASE_READS=helm`, or sql).
    pub fn reads_through_cli(&self) -> bool {
        matches!(self.reads, Reads::Cli { .. })
    }

    /// Waits (at most `limit`) for Leases being given back, at shutdown.
    pub async fn settle(&self, limit: Duration) {
        self.locks.settle(limit).await;
    }

    /// At shutdown, once the grace is over: every operation still running
    /// stops its helm (SIGTERM, so helm marks the release failed; SIGKILL
    /// after HELM_KILL_GRACE), marks a revision left pending failed, gives
    /// its Lease back and answers 503 `helm_interrupted`. New operations
    /// are not started.
    pub fn stop_operations(&self) {
        self.stopping.cancel();
    }

    /// At exit: kills every helm process of this service still running
    /// (none should be left once operations were stopped).
    pub fn kill_remaining_helm(&self) {
        self.helm
            .runner()
            .signal_all(nix::sys::signal::Signal::SIGKILL);
    }

    /// Waits (at most `limit`) until no helm process of this service runs,
    /// so none outlives the process.
    pub async fn wait_helm_exited(&self, limit: Duration) -> bool {
        let started = tokio::time::Instant::now();
        while self.helm.runner().in_flight() > 0 {
            if started.elapsed() > limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}
