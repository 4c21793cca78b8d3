//! One operation per release across replicas: a `coordination.k8s.io/v1`
//! Lease named `paas-operator.<release>` in the release's namespace is held
//! while helm runs on the release, and renewed (a heartbeat) as long as it
//! runs.
//!
//! ```text
//!   absent ──create──> held by us ──renew every TTL/3──> … ──delete──> absent
//!                          │  renewals failing until TTL − stop margin:
//!                          │  `lost` fires, the caller stops helm
//!                          └──free (holder "")──> present, unheld: the sweep checks the release
//!   held by a live replica ──> wait (bounded), then 409
//!   unheld, expired, or held by a dead process ──take over (resourceVersion-checked)──> held by us
//! ```
//!
//! - **Short TTL** (`LEASE_TTL`, 15 s): a replica that dies leaves Leases
//!   that expire within the TTL. A live replica renews every TTL/3, retries
//!   a failed renewal every second (each attempt bounded), and when it has
//!   not renewed for TTL − stop margin (the time helm needs to stop) it
//!   tells its holder (`lost`), which stops helm: nobody believes it holds a
//!   release after its Lease could have lapsed.
//! - **Who is dead** is told sooner where it can be: a holder identity names
//!   the pod (`POD_NAME`) or the process (host, pid namespace, pid, start
//!   time), so a restarted container takes its predecessor's Leases at once,
//!   and a process on this host whose pid is gone holds nothing.
//! - **A Lease left without a holder means "check this release"**: an
//!   operation that ended in doubt (helm killed, an error after helm ran,
//!   the request cancelled) frees its Lease instead of deleting it. Whoever
//!   takes it next knows the release's `pending-*` revision, if any, has
//!   lost its helm ([`HeldLease::took_over`]); the recovery sweep lists such
//!   Leases cluster-wide ([`ReleaseLeases::unheld`]).
//! - Every write is checked against the object's `resourceVersion`, so two
//!   replicas racing for the same Lease cannot both win. The common case
//!   costs one call each way: create (without reading first), delete with a
//!   precondition on our last write.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::KubeError;

mod identity;
pub use identity::Identity;

/// Prefix of every release Lease's name.
pub const LEASE_PREFIX: &str = "paas-operator.";
/// The label every release Lease carries (the sweep lists by it).
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "paas-operator");
/// How often a waiting request looks at the Lease again.
const POLL: Duration = Duration::from_millis(250);
/// The first look again comes sooner: a holder that has just answered its
/// caller deletes its Lease a round trip later.
const FIRST_POLL: Duration = Duration::from_millis(50);

/// The name of a release's Lease.
pub fn lease_name(release: &str) -> String {
    format!("{LEASE_PREFIX}{release}")
}

/// How long a Lease lasts and how it is kept.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// `leaseDurationSeconds`: how long a Lease outlives its last renewal.
    pub ttl: Duration,
    /// How long the holder needs to stop what it does under the Lease
    /// (helm's SIGTERM grace): it is told the Lease is lost this long before
    /// it could lapse.
    pub stop_margin: Duration,
}

impl LeaseTiming {
    /// A renewal every third of the TTL: two may fail before it matters.
    pub fn renew_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(500))
    }

    /// After a failed renewal, the next attempt comes this soon.
    fn retry_every(&self) -> Duration {
        (self.ttl / 15).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// Each renewal attempt is bounded (an API server that hangs must not
    /// hold the renewer past the point of giving up).
    fn attempt_limit(&self) -> Duration {
        (self.ttl / 7).clamp(Duration::from_millis(200), Duration::from_secs(2))
    }

    /// Without a renewal for this long the holder gives the release up.
    pub fn give_up_after(&self) -> Duration {
        self.ttl
            .saturating_sub(self.stop_margin + Duration::from_secs(1))
    }

    /// The timing works: at least one renewal is attempted before giving up.
    pub fn check(&self) -> Result<(), String> {
        if self.give_up_after() <= self.renew_every() {
            return Err(format!(
                "LEASE_TTL ({} s) is too short for HELM_KILL_GRACE ({} s): it must exceed 1.5 × (HELM_KILL_GRACE + 1 s), so that a Lease is renewed at least once before its holder must stop helm",
                self.ttl.as_secs(),
                self.stop_margin.as_secs()
            ));
        }
        Ok(())
    }
}

/// How release Leases are kept, from the settings: `LEASE_TTL`, and
/// helm's SIGTERM grace as the time a holder needs to stop before its Lease
/// could lapse. Independent of HELM_TIMEOUT: a Lease is renewed while helm
/// runs. (Here, not in `config`, so the settings import nothing above them.)
impl crate::config::HelmConfig {
    pub fn lease_timing(&self) -> LeaseTiming {
        LeaseTiming {
            ttl: self.lease_ttl,
            stop_margin: self.kill_grace,
        }
    }
}

/// What a release's Lease says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// No Lease: no operator operation runs, or ended in doubt, on it.
    Absent,
    /// Held by a live holder (this one is renewing it, as far as we know).
    Held(String),
    /// Present, but expired, freed, or held by a process known to be dead:
    /// whatever it guarded has lost its helm.
    Unheld,
}

/// This process's claim on release Leases.
#[derive(Clone)]
pub struct ReleaseLeases {
    client: Client,
    identity: Arc<Identity>,
    timing: LeaseTiming,
}

/// A Lease held by this process, renewed in the background until it is
/// given back ([`HeldLease::release`], [`HeldLease::free`]) or lost.
pub struct HeldLease {
    api: Api<Lease>,
    name: String,
    identity: Arc<Identity>,
    /// The Lease as we last wrote it (the renewer updates it).
    written: Written,
    renewer: JoinHandle<()>,
    lost: watch::Receiver<bool>,
    took_over: bool,
    done: bool,
}

type Written = Arc<Mutex<Lease>>;

impl ReleaseLeases {
    pub fn new(client: Client, identity: Identity, timing: LeaseTiming) -> Self {
        Self {
            client,
            identity: Arc::new(identity),
            timing,
        }
    }

    pub fn identity(&self) -> &str {
        self.identity.as_str()
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// Waits up to `wait` for the release's Lease; `Ok(None)` when a live
    /// holder keeps it.
    pub async fn acquire(
        &self,
        namespace: &str,
        release: &str,
        wait: Duration,
    ) -> Result<Option<HeldLease>, KubeError> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
        let name = lease_name(release);
        let started = tokio::time::Instant::now();
        let mut poll = FIRST_POLL;
        loop {
            if let Some((taken, took_over)) = self.try_take(&api, &name).await? {
                return Ok(Some(self.hold(api, name, taken, took_over)));
            }
            if started.elapsed() + poll > wait {
                return Ok(None);
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(POLL);
        }
    }

    fn hold(&self, api: Api<Lease>, name: String, taken: Lease, took_over: bool) -> HeldLease {
        let written = Arc::new(Mutex::new(taken));
        let (lost_tx, lost) = watch::channel(false);
        let renewer = tokio::spawn(renew(
            api.clone(),
            name.clone(),
            self.identity.clone(),
            self.timing,
            written.clone(),
            lost_tx,
        ));
        HeldLease {
            api,
            name,
            identity: self.identity.clone(),
            written,
            renewer,
            lost,
            took_over,
            done: false,
        }
    }

    /// What the release's Lease says now.
    pub async fn state(&self, namespace: &str, release: &str) -> Result<LeaseState, KubeError> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
        let lease = api
            .get_opt(&lease_name(release))
            .await
            .map_err(KubeError::api("reading a lease"))?;
        let Some(lease) = lease else {
            return Ok(LeaseState::Absent);
        };
        Ok(
            match self.live_holder(&lease, jiff::Timestamp::now()).await {
                Some(holder) => LeaseState::Held(holder),
                None => LeaseState::Unheld,
            },
        )
    }

    /// Every release Lease in the cluster without a live holder, as
    /// (namespace, release): one LIST of Leases by label, answered from the
    /// API server's cache (a few hundred bytes per operation running or
    /// left in doubt; nothing per idle release).
    pub async fn unheld(&self) -> Result<Vec<(String, String)>, KubeError> {
        let api: Api<Lease> = Api::all(self.client.clone());
        let params = ListParams::default()
            .labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1))
            .match_any();
        let leases = api
            .list(&params)
            .await
            .map_err(KubeError::api("listing release leases"))?;
        let now = jiff::Timestamp::now();
        let mut unheld = Vec::new();
        for lease in &leases.items {
            let (Some(namespace), Some(name)) = (&lease.metadata.namespace, &lease.metadata.name)
            else {
                continue;
            };
            let Some(release) = name.strip_prefix(LEASE_PREFIX) else {
                continue;
            };
            if self.live_holder(lease, now).await.is_none() {
                unheld.push((namespace.clone(), release.to_owned()));
            }
        }
        Ok(unheld)
    }

    /// The holder of a Lease that has not expired at `now` and is not known
    /// to be dead.
    async fn live_holder(&self, lease: &Lease, now: jiff::Timestamp) -> Option<String> {
        let holder = unexpired_holder(lease, now)?;
        if self.identity.knows_dead(holder).await {
            return None;
        }
        Some(holder.to_owned())
    }

    /// One attempt: create when absent, take over when unheld. Returns the
    /// Lease as written, and whether it was taken over (it existed without
    /// a live holder), when we hold it now.
    async fn try_take(
        &self,
        api: &Api<Lease>,
        name: &str,
    ) -> Result<Option<(Lease, bool)>, KubeError> {
        let now = jiff::Timestamp::now();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec(now, 0)),
        };
        match api.create(&PostParams::default(), &lease).await {
            Ok(created) => return Ok(Some((created, false))),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(source) => {
                return Err(KubeError::Api {
                    action: "creating a lease",
                    source,
                });
            }
        }
        // It exists: unheld (freed, expired, its holder dead), or held.
        let existing = api
            .get_opt(name)
            .await
            .map_err(KubeError::api("reading a lease"))?;
        let Some(mut lease) = existing else {
            // Deleted in between: the next attempt creates it.
            return Ok(None);
        };
        if self
            .live_holder(&lease, now)
            .await
            .is_some_and(|holder| holder != self.identity.as_str())
        {
            return Ok(None);
        }
        let transitions = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0);
        lease.spec = Some(self.spec(now, transitions.saturating_add(1)));
        // `lease` carries the resourceVersion we read: a replica that wrote
        // in between makes this a 409, and we look again.
        match api.replace(name, &PostParams::default(), &lease).await {
            Ok(replaced) => Ok(Some((replaced, true))),
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(None),
            Err(source) => Err(KubeError::Api {
                action: "taking over a lease",
                source,
            }),
        }
    }

    fn spec(&self, now: jiff::Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.as_str().to_owned()),
            lease_duration_seconds: Some(
                i32::try_from(self.timing.ttl.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// The holder of a Lease that has not expired at `now`.
fn unexpired_holder(lease: &Lease, now: jiff::Timestamp) -> Option<&str> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let duration = jiff::SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
    (renewed.checked_add(duration).ok()? > now).then_some(holder)
}

/// Keeps the Lease: renews every `renew_every`, retries failed renewals
/// every `retry_every`, and gives up (sets `lost`) when the last renewal is
/// `give_up_after` old, or when the Lease is no longer ours.
async fn renew(
    api: Api<Lease>,
    name: String,
    identity: Arc<Identity>,
    timing: LeaseTiming,
    written: Written,
    lost: watch::Sender<bool>,
) {
    let mut renewed_at = tokio::time::Instant::now();
    let mut next = renewed_at + timing.renew_every();
    loop {
        let give_up_at = renewed_at + timing.give_up_after();
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = tokio::time::sleep_until(give_up_at) => {
                tracing::error!(lease = %name, unrenewed_s = timing.give_up_after().as_secs(),
                    "the lease could not be renewed in time; giving the release up");
                let _ = lost.send(true);
                return;
            }
        }
        let attempt = tokio::time::timeout(
            timing.attempt_limit(),
            renew_once(&api, &name, &identity, &written),
        )
        .await;
        match attempt {
            Ok(Ok(())) => {
                renewed_at = tokio::time::Instant::now();
                next = renewed_at + timing.renew_every();
            }
            Ok(Err(Renewal::NotOurs)) => {
                tracing::error!(lease = %name, "the lease is no longer ours; giving the release up");
                let _ = lost.send(true);
                return;
            }
            Ok(Err(Renewal::Failed(error))) => {
                tracing::warn!(%error, lease = %name, "cannot renew the lease; retrying");
                next = tokio::time::Instant::now() + timing.retry_every();
            }
            Err(_) => {
                tracing::warn!(lease = %name, "renewing the lease timed out; retrying");
                next = tokio::time::Instant::now() + timing.retry_every();
            }
        }
    }
}

enum Renewal {
    NotOurs,
    Failed(kube::Error),
}

/// One renewal: replace our last write with a new renew time (one call);
/// when someone wrote in between, read it and renew only if still ours.
async fn renew_once(
    api: &Api<Lease>,
    name: &str,
    identity: &Identity,
    written: &Written,
) -> Result<(), Renewal> {
    let mut lease = written.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for _ in 0..2 {
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        match api.replace(name, &PostParams::default(), &lease).await {
            Ok(renewed) => {
                *written.lock().unwrap_or_else(|e| e.into_inner()) = renewed;
                return Ok(());
            }
            Err(kube::Error::Api(status)) if status.code == 404 => return Err(Renewal::NotOurs),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // A renewal whose answer we missed, or a takeover.
                lease = match api.get_opt(name).await {
                    Ok(Some(current)) => current,
                    Ok(None) => return Err(Renewal::NotOurs),
                    Err(error) => return Err(Renewal::Failed(error)),
                };
                if holder_of(&lease) != Some(identity.as_str()) {
                    return Err(Renewal::NotOurs);
                }
            }
            Err(error) => return Err(Renewal::Failed(error)),
        }
    }
    Err(Renewal::Failed(kube::Error::Api(
        kube::core::Status::failure("the lease kept changing", "Conflict")
            .with_code(409)
            .boxed(),
    )))
}

fn holder_of(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

fn preconditions(lease: &Lease) -> Preconditions {
    Preconditions {
        resource_version: lease.metadata.resource_version.clone(),
        uid: lease.metadata.uid.clone(),
    }
}

impl HeldLease {
    /// True when the Lease existed without a live holder when we took it:
    /// an operation before ours ended in doubt (its helm killed, its
    /// replica dead), so a `pending-*` revision it left has lost its helm.
    pub fn took_over(&self) -> bool {
        self.took_over
    }

    /// Resolves when the Lease is lost: not renewed for TTL − stop margin,
    /// or taken by another holder. Never resolves while it is kept.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            if lost.wait_for(|lost| *lost).await.is_err() {
                // The renewer ended without saying lost: it was stopped
                // because the Lease is being given back.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Gives the Lease up: one delete, preconditioned on our last write.
    /// When that no longer matches (a renewal whose answer we did not see)
    /// the Lease is read and deleted only if it is still ours.
    pub async fn release(mut self) {
        self.stop_renewing();
        let written = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let params = DeleteParams {
            preconditions: Some(preconditions(&written)),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {
                if let Some(lease) = read_if_ours(&self.api, &self.name, &self.identity).await {
                    let params = DeleteParams {
                        preconditions: Some(preconditions(&lease)),
                        ..DeleteParams::default()
                    };
                    if let Err(error) = self.api.delete(&self.name, &params).await {
                        tracing::warn!(%error, lease = %self.name, "cannot delete the lease; it will expire");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, lease = %self.name, "cannot delete the lease; it will expire");
            }
        }
    }

    /// Gives the Lease up but keeps it, without a holder: "check this
    /// release" for whoever takes it next, and for the recovery sweep.
    /// When it cannot be written, it expires, which says the same.
    pub async fn free(mut self) {
        self.stop_renewing();
        let written = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        free_lease(&self.api, &self.name, &self.identity, written).await;
    }

    /// Stops renewing without writing anything: the Lease expires (its
    /// holder lost it, or the API cannot be reached to free it).
    pub fn abandon(mut self) {
        self.stop_renewing();
    }

    fn stop_renewing(&mut self) {
        self.renewer.abort();
        self.done = true;
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.renewer.abort();
        // Dropped without being given back: free it in the background
        // rather than block the release until it expires.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (api, name, identity) =
                (self.api.clone(), self.name.clone(), self.identity.clone());
            let written = self
                .written
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            runtime.spawn(async move { free_lease(&api, &name, &identity, written).await });
        }
    }
}

/// Writes the Lease without a holder, from our last write (one call), or,
/// when someone wrote since, from a fresh read if it is still ours.
async fn free_lease(api: &Api<Lease>, name: &str, identity: &Identity, written: Lease) {
    let unheld = |mut lease: Lease| {
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = Some(String::new());
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        lease
    };
    match api
        .replace(name, &PostParams::default(), &unheld(written))
        .await
    {
        Ok(_) => return,
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => {
            tracing::warn!(%error, lease = %name, "cannot free the lease; it will expire");
            return;
        }
    }
    if let Some(lease) = read_if_ours(api, name, identity).await
        && let Err(error) = api
            .replace(name, &PostParams::default(), &unheld(lease))
            .await
    {
        tracing::warn!(%error, lease = %name, "cannot free the lease; it will expire");
    }
}

/// The Lease, if `identity` still holds it.
async fn read_if_ours(api: &Api<Lease>, name: &str, identity: &Identity) -> Option<Lease> {
    match api.get_opt(name).await {
        Ok(Some(lease)) if holder_of(&lease) == Some(identity.as_str()) => Some(lease),
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(%error, lease = %name, "cannot read the lease; it will expire");
            None
        }
    }
}

#[cfg(test)]
mod tests;
