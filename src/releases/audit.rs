//! One audit event per mutating request: who (the API key's id), what,
//! where, the outcome and the resulting revision. Never values, keys or
//! anything a chart rendered.

use crate::auth::KeyId;
use crate::error::ApiError;

/// Outcomes that carry a resulting revision, for the audit line.
pub trait Audited {
    /// The revision the operation produced, if any.
    fn revision(&self) -> Option<u32> {
        None
    }
}

impl Audited for () {}

impl Audited for crate::tenants::Applied {}

impl Audited for crate::helm::HelmRelease {
    fn revision(&self) -> Option<u32> {
        Some(self.version)
    }
}

impl<T: Audited> Audited for (u32, T) {
    fn revision(&self) -> Option<u32> {
        self.1.revision()
    }
}

/// An attached sidecar: the release, what was added, its public endpoint.
impl Audited
    for (
        crate::helm::HelmRelease,
        crate::render::additions::Applied,
        Option<String>,
    )
{
    fn revision(&self) -> Option<u32> {
        Some(self.0.version)
    }
}

/// The n8n bootstrap's answer: its success is in the body, not the status.
impl Audited for crate::model::apps::N8nInitResponse {}

/// Logs the event (target `audit`) and hands the outcome on.
pub fn audit<T: Audited>(
    key: &KeyId,
    action: &'static str,
    namespace: &str,
    release: &str,
    outcome: Result<T, ApiError>,
) -> Result<T, ApiError> {
    match &outcome {
        Ok(done) => tracing::info!(
            target: "audit", key = %key.0, action, namespace, release,
            outcome = "success", revision = done.revision(), "audit"
        ),
        Err(error) => tracing::info!(
            target: "audit", key = %key.0, action, namespace, release,
            outcome = "failure", status = error.status().as_u16(), error_type = %error.code, "audit"
        ),
    }
    outcome
}
