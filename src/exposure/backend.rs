//! The one interface every route backend implements, and the set of
//! backends the service was built with. The rest of exposure never asks
//! which backend it holds: a record names its backend
//! ([`RouteRecord::backend`]), [`Backends::of`] finds it, and the trait
//! does the rest. A new backend is one file in `backends/` implementing
//! [`RouteBackend`], a variant of `EXPOSURE_BACKEND` with its settings,
//! one line in `Build::routes` (`mod.rs`), and its RBAC (docs/design.md,
//! "Adding a backend").

use std::sync::Arc;

use futures::future::BoxFuture;

use super::error::RouteError;
use super::store::RouteRecord;
use crate::config::ExposureBackend;
use crate::model::exposure::RouteRule;

/// Something a backend holds for a route outside its record and outside
/// the rules it is synced to (Cloudflare: a DNS record of ours), listed
/// once per reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The backend's id for it (the DNS record's id).
    pub(crate) id: String,
    pub(crate) hostname: String,
    /// Exactly as a route at `hostname` wants it: nothing to repair.
    pub(crate) in_place: bool,
    /// Ours and under our domain: deleted when no record names its
    /// hostname.
    pub(crate) orphanable: bool,
}

/// One way of routing `{subdomain}.{domain}` to a Service.
///
/// A route is put in place by [`sync`](Self::sync) then
/// [`apply`](Self::apply), and taken out (its record marked `removing`
/// first) by `sync` then [`remove`](Self::remove). Requests do that per
/// route; reconciliation syncs once per pass and repairs with `apply`
/// the routes whose [`Claim`]s are not in place.
pub(crate) trait RouteBackend: Send + Sync {
    /// The backend's name, recorded on every route it makes.
    fn kind(&self) -> ExposureBackend;

    /// Refuses a route this backend cannot make, before it is claimed.
    fn check_input(&self, record: &RouteRecord) -> Result<(), RouteError>;

    /// `HostnameTaken` when someone outside this operator routes the
    /// route's hostname here; another error when that cannot be told now.
    fn check_claim<'a>(&'a self, record: &'a RouteRecord) -> BoxFuture<'a, Result<(), RouteError>>;

    /// Makes what the backend shares between routes (Cloudflare: the
    /// tunnel's one configuration document) what the records want.
    fn sync(&self) -> BoxFuture<'_, Result<(), RouteError>>;

    /// Puts one active route's own parts in place after a sync; returns
    /// the DNS record id it got, if any.
    fn apply<'a>(
        &'a self,
        record: &'a RouteRecord,
    ) -> BoxFuture<'a, Result<Option<String>, RouteError>>;

    /// Takes one route's own parts out after a sync (its record no longer
    /// wants them); what is already gone is fine.
    fn remove<'a>(&'a self, record: &'a RouteRecord) -> BoxFuture<'a, Result<(), RouteError>>;

    /// What it holds for routes beside the synced rules (see [`Claim`]).
    fn claims(&self) -> BoxFuture<'_, Result<Vec<Claim>, RouteError>>;

    /// Deletes a claim no record names any more.
    fn drop_claim<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<(), RouteError>>;

    /// The rules it routes by (`GET /api/routes`): Cloudflare's document,
    /// foreign rules and the catch-all included; the Ingress backend's
    /// active routes.
    fn rules(&self) -> BoxFuture<'_, Result<Vec<RouteRule>, RouteError>>;
}

/// The backends the service was built with: the configured one, and any
/// other whose settings are complete (to take routes out of it after a
/// switch).
#[derive(Clone)]
pub(crate) struct Backends {
    configured: Arc<dyn RouteBackend>,
    others: Vec<Arc<dyn RouteBackend>>,
}

impl Backends {
    /// `configured` first; `available` may hold it again (it is skipped).
    pub(crate) fn new(
        configured: Arc<dyn RouteBackend>,
        available: impl IntoIterator<Item = Arc<dyn RouteBackend>>,
    ) -> Self {
        let kind = configured.kind();
        let others = available.into_iter().filter(|b| b.kind() != kind).collect();
        Self { configured, others }
    }

    /// The backend new routes are made with.
    pub(crate) fn configured(&self) -> &dyn RouteBackend {
        self.configured.as_ref()
    }

    /// The backend a record was made with; `Off` when its settings are
    /// gone.
    pub(crate) fn of(&self, kind: ExposureBackend) -> Result<&dyn RouteBackend, RouteError> {
        std::iter::once(&self.configured)
            .chain(&self.others)
            .find(|b| b.kind() == kind)
            .map(AsRef::as_ref)
            .ok_or(RouteError::Off)
    }

    /// Every backend present, the configured one first.
    pub(crate) fn kinds(&self) -> Vec<ExposureBackend> {
        std::iter::once(&self.configured)
            .chain(&self.others)
            .map(|b| b.kind())
            .collect()
    }
}
