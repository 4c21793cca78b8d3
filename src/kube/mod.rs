//! Kubernetes primitives through kube-rs (never a kubectl subprocess):
//! server-side apply ([`apply`]), Leases ([`lease`]), API discovery
//! ([`discovery`]), the pods of a release ([`pods`]), compact object types
//! for lists and watches of many objects ([`compact`]), the error type and a
//! reachability probe. What to do with them is decided by the services
//! (`crate::releases`, `crate::tenants`).

pub mod apply;
pub mod compact;
pub mod discovery;
pub mod lease;
pub mod pods;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::Client;

use crate::error::{ApiError, Code};

/// A failure talking to the Kubernetes API.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The API answered with an error status.
    #[error("kubernetes API refused {action}: {source}")]
    Api {
        action: &'static str,
        source: kube::Error,
    },
    /// The namespace exists but was not created by this operator.
    #[error("namespace {0} exists and is not managed by this operator")]
    NotManaged(String),
    /// The namespace is being deleted.
    #[error("namespace {0} is terminating")]
    Terminating(String),
    /// The built-in tenant policy cannot be read (a build defect).
    #[error("the built-in tenant policy cannot be read")]
    PolicyUnreadable,
    /// The tenant identity helm runs as is not authorized (the tenant
    /// ClusterRole is missing?).
    #[error("the tenant identity of namespace {0} is not authorized")]
    IdentityNotReady(String),
}

impl KubeError {
    pub fn api(action: &'static str) -> impl FnOnce(kube::Error) -> Self {
        move |source| Self::Api { action, source }
    }

    /// True when the API could not be reached at all (as opposed to refusing).
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Api { source, .. } => is_unreachable(source),
            _ => false,
        }
    }
}

/// API failures reach clients as a fixed sentence naming the action;
/// the API server's own message is logged.
impl From<KubeError> for ApiError {
    fn from(error: KubeError) -> Self {
        if let KubeError::Api { source, .. } = &error {
            crate::metrics::kube_api_error(source);
        }
        match &error {
            KubeError::NotManaged(name) => ApiError::new(
                Code::NamespaceNotManaged,
                format!("Namespace {name} exists and is not managed by this operator"),
            ),
            KubeError::PolicyUnreadable => ApiError::new(
                Code::TenantIdentityUnavailable,
                "The operator's built-in tenant policy cannot be read",
            ),
            KubeError::IdentityNotReady(name) => ApiError::new(
                Code::TenantIdentityUnavailable,
                format!(
                    "The tenant identity of namespace {name} is not usable; the operator's cluster policy may be missing"
                ),
            ),
            KubeError::Terminating(name) => ApiError::new(
                Code::NamespaceTerminating,
                format!("Namespace {name} is being deleted; try again when it is gone"),
            ),
            KubeError::Api { action, source } if crate::kube::is_unreachable(source) => {
                tracing::error!(%error, "kubernetes API unreachable");
                ApiError::new(
                    Code::KubernetesUnavailable,
                    format!("The Kubernetes API is unreachable ({action}); try again shortly"),
                )
            }
            KubeError::Api { action, source } => {
                tracing::error!(%error, "kubernetes API error");
                let status = match source {
                    kube::Error::Api(status) => status.code,
                    _ => 500,
                };
                match status {
                    409 => ApiError::new(
                        Code::KubernetesConflict,
                        format!("Conflict while {action}; try again"),
                    ),
                    403 => ApiError::new(
                        Code::OperatorForbidden,
                        format!("The operator is not allowed {action}"),
                    ),
                    _ => ApiError::new(
                        Code::KubernetesError,
                        format!("The Kubernetes API failed {action}"),
                    ),
                }
            }
        }
    }
}

/// True for transport failures: connection refused, timeouts, TLS.
pub fn is_unreachable(error: &kube::Error) -> bool {
    !matches!(error, kube::Error::Api(_))
}

/// The longest the start waits for the first probe.
const FIRST_PROBE: Duration = Duration::from_secs(2);

async fn probe(client: &Client, limit: Duration) -> bool {
    tokio::time::timeout(limit, client.apiserver_version())
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Tracks whether the Kubernetes API answered recently, probed in the
/// background, for `/health` and `/ready`.
#[derive(Clone)]
pub struct ApiProbe {
    reachable: Arc<AtomicBool>,
}

impl ApiProbe {
    /// Probes `/version` once before returning (bounded, so an unreachable
    /// cluster delays the start by at most `FIRST_PROBE`: `/health` is
    /// right from the first request), then every `period` in the background.
    pub async fn start(client: Client, period: Duration) -> Self {
        let reachable = Arc::new(AtomicBool::new(probe(&client, FIRST_PROBE).await));
        let flag = reachable.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let ok = probe(&client, Duration::from_secs(5)).await;
                if flag.swap(ok, Ordering::Relaxed) != ok {
                    if ok {
                        tracing::info!("kubernetes API reachable");
                    } else {
                        tracing::warn!("kubernetes API unreachable");
                    }
                }
            }
        });
        Self { reachable }
    }

    /// A probe with a fixed answer, for tests.
    pub fn fixed(reachable: bool) -> Self {
        Self {
            reachable: Arc::new(AtomicBool::new(reachable)),
        }
    }

    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Records the outcome of a real call, so the probe reacts at once.
    pub fn observe(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }
}
