//! Kubernetes primitives through kube-rs (never a kubectl subprocess):
//! server-side apply ([`apply`]), Leases ([`lease`]), API discovery
//! ([`discovery`]), the pods of a release ([`pods`]), compact object types
//! for lists and watches of many objects ([`compact`]), clients that resend
//! what a throttling API server turned away ([`throttle`]), the error type
//! and a reachability probe. What to do with them is decided by the services
//! (`crate::releases`, `crate::tenants`).

pub mod apply;
pub mod compact;
pub mod discovery;
pub mod lease;
pub mod pods;
pub mod throttle;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kube::Client;

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
    /// The reachability probe has had no answer recently.
    #[error("the kubernetes API is not answering")]
    NotAnswering,
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

/// True for transport failures (connection refused, timeouts, TLS) and
/// for an API server that says it cannot serve now (429, 503, 504).
pub fn is_unreachable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => matches!(status.code, 429 | 503 | 504),
        _ => true,
    }
}

/// True when the API server refused because the namespace is being deleted
/// (403 with the cause `NamespaceTerminating`): nothing new may be made in
/// it, which says nothing about the operator's rights.
pub fn is_namespace_terminating(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 403
                && status.details.as_ref().is_some_and(|details| {
                    details
                        .causes
                        .iter()
                        .any(|cause| cause.reason == "NamespaceTerminating")
                })
        }
        _ => false,
    }
}

/// Connecting to the API server gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// A request gives up when no byte of its answer arrived for this long
/// (counted from when it was sent): well below the platform's 30 s, so a
/// hung API server is a 503 within seconds, and above any answer the API
/// server normally takes to start (a LIST of a namespace's records).
pub const READ_TIMEOUT: Duration = Duration::from_secs(6);
/// Sending a request gives up after this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(6);

/// The client configuration for requests: every call bounded in time
/// ([`CONNECT_TIMEOUT`], [`READ_TIMEOUT`], [`WRITE_TIMEOUT`]), and no
/// client-side retries of failures (kube's default retries 429/503/504
/// with backoff for minutes; the caller gets 503 with `Retry-After`
/// instead). Build the client with [`throttle::client`]: it resends a 429
/// a few times, within seconds.
pub fn for_requests(mut config: kube::Config) -> kube::Config {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.write_timeout = Some(WRITE_TIMEOUT);
    // Count the read timeout from the request, not from when the pooled
    // connection went idle.
    config.reset_reader_on_write = true;
    config.default_retry = false;
    config
}

/// The client configuration for watches (the read cache, the route
/// index): a watch is idle for minutes, so no read timeout (kube's watcher
/// has its own idle timeout and reconnects); connecting is bounded.
pub fn for_watches(mut config: kube::Config) -> kube::Config {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = None;
    config
}

/// The first probe, at start, waits at most this long.
const FIRST_PROBE: Duration = Duration::from_secs(2);
/// How often the API server is probed (`GET /version`: no etcd read).
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// The API counts as unreachable when no probe has been answered for this
/// long: a refused connection or a hang. Twice [`PROBE_TIMEOUT`], so that
/// one slow answer from a busy API server (or a probe task that waited for
/// a core) is not an outage.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(4);
/// How long one probe waits for `/version`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn probe(client: &Client, limit: Duration) -> bool {
    tokio::time::timeout(limit, client.apiserver_version())
        .await
        .is_ok_and(|r| r.is_ok())
}

/// Tracks whether the Kubernetes API answered recently, probed in the
/// background, for `/health`, `/ready` and the read endpoints. A hung API
/// server (connections open, no answers) is noticed as surely as a refused
/// connection: what counts is when a probe was last answered.
#[derive(Clone)]
pub struct ApiProbe {
    state: Arc<ProbeState>,
}

struct ProbeState {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last answer; `NEVER` before one.
    answered: AtomicU64,
    /// Set for tests: a fixed answer.
    fixed: Option<bool>,
}

const NEVER: u64 = u64::MAX;

impl ProbeState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn reachable(&self) -> bool {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        let answered = self.answered.load(Ordering::Relaxed);
        answered != NEVER
            && self.now_ms().saturating_sub(answered) < UNREACHABLE_AFTER.as_millis() as u64
    }
}

impl ApiProbe {
    /// Probes `/version` once before returning (bounded, so an unreachable
    /// cluster delays the start by at most `FIRST_PROBE`: `/health` is
    /// right from the first request), then every [`PROBE_EVERY`] in the
    /// background, each probe bounded by [`PROBE_TIMEOUT`].
    pub async fn start(client: Client) -> Self {
        let probe_state = Arc::new(ProbeState {
            epoch: Instant::now(),
            answered: AtomicU64::new(NEVER),
            fixed: None,
        });
        let this = Self { state: probe_state };
        if probe(&client, FIRST_PROBE).await {
            this.observe(true);
        }
        let state = Arc::downgrade(&this.state);
        tokio::spawn(async move {
            let mut was = None;
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let ok = probe(&client, PROBE_TIMEOUT).await;
                let Some(state) = state.upgrade() else {
                    return;
                };
                if ok {
                    state.answered.store(state.now_ms(), Ordering::Relaxed);
                }
                let now = state.reachable();
                if was.is_some_and(|was| was != now) {
                    if now {
                        tracing::info!("kubernetes API reachable");
                    } else {
                        tracing::warn!("kubernetes API unreachable (no answer to /version)");
                    }
                }
                was = Some(now);
            }
        });
        this
    }

    /// A probe with a fixed answer, for tests.
    pub fn fixed(reachable: bool) -> Self {
        Self {
            state: Arc::new(ProbeState {
                epoch: Instant::now(),
                answered: AtomicU64::new(NEVER),
                fixed: Some(reachable),
            }),
        }
    }

    /// True when the API server answered within [`UNREACHABLE_AFTER`].
    pub fn reachable(&self) -> bool {
        self.state.reachable()
    }

    /// Records the outcome of a real call, so the probe reacts at once.
    pub fn observe(&self, reachable: bool) {
        let answered = if reachable {
            self.state.now_ms()
        } else {
            NEVER
        };
        self.state.answered.store(answered, Ordering::Relaxed);
    }

    /// The answer for a read while the API is known to be unreachable:
    /// `Err` (503 `kubernetes_unavailable`) rather than an answer from
    /// memory that may be stale, or a call that would hang.
    pub fn require(&self) -> Result<(), KubeError> {
        if self.reachable() {
            return Ok(());
        }
        Err(KubeError::NotAnswering)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_not_answered_recently_is_unreachable() {
        let started_10s_ago = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .expect("uptime");
        let probe = ApiProbe {
            state: Arc::new(ProbeState {
                epoch: started_10s_ago,
                answered: AtomicU64::new(NEVER),
                fixed: None,
            }),
        };
        assert!(!probe.reachable());
        assert!(probe.require().is_err());
        probe.observe(true);
        assert!(probe.reachable());
        // Last answered 10 s ago, longer than UNREACHABLE_AFTER: a hang.
        probe.state.answered.store(0, Ordering::Relaxed);
        assert!(!probe.reachable());
        assert!(matches!(probe.require(), Err(KubeError::NotAnswering)));
        assert!(ApiProbe::fixed(true).reachable());
    }

    #[test]
    fn throttled_and_unavailable_api_answers_count_as_unreachable() {
        let status = |code| {
            kube::Error::Api(
                kube::core::Status::failure("x", "y")
                    .with_code(code)
                    .boxed(),
            )
        };
        assert!(is_unreachable(&status(503)));
        assert!(is_unreachable(&status(429)));
        assert!(!is_unreachable(&status(409)));
        assert!(!is_unreachable(&status(500)));
    }
}
