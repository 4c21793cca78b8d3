//! One operation per release across replicas: a `coordination.k8s.io/v1`
//! Lease named `paas-operator.<release>` in the release's namespace is held
//! while helm runs on the release.
//!
//! ```text
//!   absent ──create──> held by us ──renew every duration/3──> … ──delete──> absent
//!   held by another, not expired ──> wait (bounded), then 409
//!   held by another, expired     ──replace (resourceVersion-checked)──> held by us
//! ```
//! Every write is checked against the object's `resourceVersion`, so two
//! replicas racing for the same Lease cannot both win. The duration covers a
//! whole operation (helm timeout + our margin + kill grace), so a replica that
//! dies mid-operation blocks the release for at most that long.
//!
//! The common case costs one call each way: the Lease is created without
//! reading it first (it is normally absent, since every holder deletes it),
//! and deleted with a precondition on the `uid` and `resourceVersion` of
//! our last write (so never after another replica took it over).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::{Api, Client};
use tokio::task::JoinHandle;

use super::KubeError;

/// Prefix of every release Lease's name.
pub const LEASE_PREFIX: &str = "paas-operator.";
/// How often a waiting request looks at the Lease again.
const POLL: Duration = Duration::from_millis(250);
/// The first look again comes sooner: a holder that has just answered its
/// caller deletes its Lease a round trip later.
const FIRST_POLL: Duration = Duration::from_millis(50);

/// This process's claim on release Leases.
#[derive(Clone)]
pub struct ReleaseLeases {
    client: Client,
    identity: String,
    duration: Duration,
}

/// A Lease held by this process; renewed in the background until released.
pub struct HeldLease {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// `uid` and `resourceVersion` of our last write (the renewer updates it).
    written: Written,
    renewer: JoinHandle<()>,
    released: bool,
}

/// The preconditions for deleting the Lease as we last wrote it.
type Written = Arc<Mutex<Preconditions>>;

fn preconditions(lease: &Lease) -> Preconditions {
    Preconditions {
        resource_version: lease.metadata.resource_version.clone(),
        uid: lease.metadata.uid.clone(),
    }
}

/// The name of a release's Lease.
pub fn lease_name(release: &str) -> String {
    format!("{LEASE_PREFIX}{release}")
}

impl ReleaseLeases {
    /// `identity` must be unique per process; `duration` must cover a whole
    /// operation.
    pub fn new(client: Client, identity: String, duration: Duration) -> Self {
        Self {
            client,
            identity,
            duration,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits up to `wait` for the release's Lease; `Ok(None)` when another
    /// replica still holds it.
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
            if let Some(taken) = self.try_take(&api, &name).await? {
                let written = Arc::new(Mutex::new(preconditions(&taken)));
                let renewer = tokio::spawn(renew(
                    api.clone(),
                    name.clone(),
                    self.identity.clone(),
                    self.duration,
                    written.clone(),
                ));
                return Ok(Some(HeldLease {
                    api,
                    name,
                    identity: self.identity.clone(),
                    written,
                    renewer,
                    released: false,
                }));
            }
            if started.elapsed() + poll > wait {
                return Ok(None);
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(POLL);
        }
    }

    /// Who holds the release's Lease now (unexpired), if anyone.
    pub async fn holder(
        &self,
        namespace: &str,
        release: &str,
    ) -> Result<Option<String>, KubeError> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), namespace);
        let lease = api
            .get_opt(&lease_name(release))
            .await
            .map_err(KubeError::api("reading a lease"))?;
        Ok(lease.and_then(|lease| {
            let holder = active_holder(&lease, jiff::Timestamp::now())?;
            Some(holder.to_owned())
        }))
    }

    /// One attempt: create when absent, take over when free or expired.
    /// Returns the Lease as written when we hold it now.
    async fn try_take(&self, api: &Api<Lease>, name: &str) -> Result<Option<Lease>, KubeError> {
        let now = jiff::Timestamp::now();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_owned(),
                        "paas-operator".to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec(now, 0)),
        };
        match api.create(&PostParams::default(), &lease).await {
            Ok(created) => return Ok(Some(created)),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(source) => {
                return Err(KubeError::Api {
                    action: "creating a lease",
                    source,
                });
            }
        }
        // It exists: free (released without delete), expired, or held.
        let existing = api
            .get_opt(name)
            .await
            .map_err(KubeError::api("reading a lease"))?;
        let Some(mut lease) = existing else {
            // Deleted in between: the next attempt creates it.
            return Ok(None);
        };
        if active_holder(&lease, now).is_some_and(|holder| holder != self.identity) {
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
            Ok(replaced) => Ok(Some(replaced)),
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(None),
            Err(source) => Err(KubeError::Api {
                action: "taking over a lease",
                source,
            }),
        }
    }

    fn spec(&self, now: jiff::Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// The holder of a Lease that has not expired at `now`.
fn active_holder(lease: &Lease, now: jiff::Timestamp) -> Option<&str> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let duration = jiff::SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
    (renewed.checked_add(duration).ok()? > now).then_some(holder)
}

/// Renews the Lease every third of its duration while it is ours.
async fn renew(
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    written: Written,
) {
    let period = (duration / 3).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        let lease = match api.get_opt(&name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, lease = %name, "cannot read the lease to renew it");
                continue;
            }
        };
        if lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            != Some(&identity)
        {
            tracing::error!(lease = %name, "the lease was taken by another replica");
            return;
        }
        let mut lease = lease;
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        match api.replace(&name, &PostParams::default(), &lease).await {
            Ok(renewed) => {
                *written.lock().unwrap_or_else(|e| e.into_inner()) = preconditions(&renewed);
            }
            Err(error) => tracing::warn!(%error, lease = %name, "cannot renew the lease"),
        }
    }
}

impl HeldLease {
    /// Gives the Lease up: one delete, preconditioned on our last write.
    /// When that no longer matches (a renewal whose answer we did not see,
    /// or a takeover after expiry) the Lease is read and deleted only if it
    /// is still ours.
    pub async fn release(mut self) {
        self.renewer.abort();
        self.released = true;
        let written = self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let params = DeleteParams {
            preconditions: Some(written),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {
                delete_if_ours(&self.api, &self.name, &self.identity).await;
            }
            Err(error) => {
                tracing::warn!(%error, lease = %self.name, "cannot delete the lease; it will expire");
            }
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.released {
            return;
        }
        // Dropped without `release()` (the request was cancelled): give the
        // Lease back in the background rather than block the release until
        // it expires.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (api, name, identity) =
                (self.api.clone(), self.name.clone(), self.identity.clone());
            runtime.spawn(async move { delete_if_ours(&api, &name, &identity).await });
        }
    }
}

/// Deletes the Lease if `identity` still holds it (checked with preconditions).
async fn delete_if_ours(api: &Api<Lease>, name: &str, identity: &str) {
    let lease = match api.get_opt(name).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, lease = %name, "cannot read the lease to release it; it will expire");
            return;
        }
    };
    if lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        != Some(identity)
    {
        return;
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: lease.metadata.resource_version.clone(),
            uid: lease.metadata.uid.clone(),
        }),
        ..DeleteParams::default()
    };
    if let Err(error) = api.delete(name, &params).await {
        tracing::warn!(%error, lease = %name, "cannot delete the lease; it will expire");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(seconds),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn holder_only_until_expiry() {
        let now: jiff::Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
        let held = lease(Some("a"), "2026-11-26T09:59:00Z", 120);
        assert_eq!(active_holder(&held, now), Some("a"));
        let expired = lease(Some("a"), "2026-11-26T09:57:00Z", 120);
        assert_eq!(active_holder(&expired, now), None);
        let released = lease(Some(""), "2026-11-26T09:59:59Z", 120);
        assert_eq!(active_holder(&released, now), None);
        let none = lease(None, "2026-11-26T09:59:59Z", 120);
        assert_eq!(active_holder(&none, now), None);
        assert_eq!(lease_name("svc-1a2b3c4d"), "paas-operator.svc-1a2b3c4d");
    }
}
