//! Carries out a reconciliation plan through the backends, in an order
//! that keeps a route out of a backend's shared state before its parts go
//! (and in before they are made):
//!
//! 1. record events first: routes of gone releases and routes leaving
//!    their backend are marked `removing`;
//! 2. each other backend with routes to take out is synced once, and those
//!    routes taken out (leaving ones land on the configured backend as
//!    pending claims);
//! 3. pending claims are checked;
//! 4. the configured backend is synced once; its routes are repaired, its
//!    removed routes taken out, and its claims no record names deleted.

use super::plan::{self, Action, Repair};
use crate::config::ExposureBackend;
use crate::exposure::backend::{Claim, RouteBackend};
use crate::exposure::error::RouteError;
use crate::exposure::lifecycle::Event;
use crate::exposure::routes::mark_applied;
use crate::exposure::service::{ExposureService, Routes};
use crate::exposure::store::{Advanced, RouteRecord, RouteState};
use crate::model::exposure::ReconcileReport;

/// One reconciliation pass under way.
pub(super) struct Pass<'a> {
    pub(crate) service: &'a ExposureService,
    pub(crate) routes: &'a Routes,
    pub(crate) report: ReconcileReport,
    /// Routes being taken out of their backend (their record goes last).
    finishing: Vec<RouteRecord>,
    /// Routes taken out of their old backend, then moved.
    leaving: Vec<RouteRecord>,
    /// Pending claims to check.
    checking: Vec<RouteRecord>,
    /// Active routes of the configured backend.
    ready: Vec<RouteRecord>,
}

impl<'a> Pass<'a> {
    pub(super) fn new(service: &'a ExposureService, routes: &'a Routes) -> Self {
        Self {
            service,
            routes,
            report: ReconcileReport::default(),
            finishing: Vec::new(),
            leaving: Vec::new(),
            checking: Vec::new(),
            ready: Vec::new(),
        }
    }

    fn failed(&mut self, hostname: &str, error: &RouteError, what: &str) {
        tracing::warn!(%hostname, %error, "{what}");
        self.report.failed.push(hostname);
    }

    /// Everything the plan says, given the configured backend's claims
    /// (`None`: not listed) and every record read.
    pub(super) async fn execute(
        &mut self,
        actions: Vec<Action>,
        claims: Option<Vec<Claim>>,
        records: &[RouteRecord],
    ) {
        for action in actions {
            self.sort(action).await;
        }
        let configured = self.routes.backends.configured().kind();
        for kind in self.routes.backends.kinds() {
            if kind != configured {
                self.take_out_of(kind).await;
            }
        }
        for record in std::mem::take(&mut self.checking) {
            match self.service.activate(self.routes, &record).await {
                Ok(activated) => self.ready.push(activated),
                Err(error) => self.failed(
                    &record.hostname,
                    &error,
                    "a pending route could not be checked",
                ),
            }
        }
        if !self.on_configured(claims.as_deref()).await {
            return;
        }
        if let Some(claims) = &claims {
            self.delete_orphans(&plan::orphans(claims, records)).await;
        }
    }

    /// Step 1: the record events of one action.
    async fn sort(&mut self, action: Action) {
        match action {
            Action::Finish(record) => self.finishing.push(record),
            Action::Check(record) => self.checking.push(record),
            Action::Repair(record) => self.ready.push(record),
            Action::Retire(record) => {
                if let Some(marked) = self.mark_removing(&record).await {
                    self.finishing.push(marked);
                }
            }
            // Nothing of a pending claim was put in place.
            Action::Move { record, .. } if record.state == RouteState::Pending => {
                self.land(&record).await;
            }
            Action::Move { record, take_out } => {
                let Some(marked) = self.mark_removing(&record).await else {
                    return;
                };
                if take_out {
                    self.leaving.push(marked);
                } else {
                    tracing::warn!(hostname = %record.hostname, backend = record.backend.as_str(), "the route was made with a backend whose settings are gone: what it put in place stays");
                    self.land(&marked).await;
                }
            }
        }
    }

    /// Marks a route `removing` (a pending claim's record is deleted).
    async fn mark_removing(&mut self, record: &RouteRecord) -> Option<RouteRecord> {
        match self.routes.store.advance(record, &Event::Remove).await {
            Ok(Advanced::Now(marked)) => Some(marked),
            Ok(Advanced::Gone) => {
                self.report.removed.push(&record.hostname);
                None
            }
            Ok(Advanced::Declined) => None,
            Err(error) => {
                self.failed(
                    &record.hostname,
                    &error.into(),
                    "a route could not be reconciled",
                );
                None
            }
        }
    }

    /// Records a route out of its old backend as a pending claim on the
    /// configured one.
    async fn land(&mut self, record: &RouteRecord) {
        let to = self.routes.backends.configured().kind();
        match self
            .routes
            .store
            .advance(record, &Event::Moved { to })
            .await
        {
            Ok(Advanced::Now(moved)) => self.checking.push(moved),
            Ok(Advanced::Gone | Advanced::Declined) => {}
            Err(error) => self.failed(
                &record.hostname,
                &error.into(),
                "a route could not leave its backend",
            ),
        }
    }

    /// Step 2: syncs another backend once and takes out its routes that
    /// are removed or leaving it.
    async fn take_out_of(&mut self, kind: ExposureBackend) {
        let (finishing, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.finishing)
            .into_iter()
            .partition(|r| r.backend == kind);
        self.finishing = others;
        let (leaving, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leaving)
            .into_iter()
            .partition(|r| r.backend == kind);
        self.leaving = others;
        if finishing.is_empty() && leaving.is_empty() {
            return;
        }
        let routes = self.routes;
        let Ok(backend) = routes.backends.of(kind) else {
            return;
        };
        let synced = self.sync(backend).await;
        for record in &finishing {
            self.finish(backend, record, synced).await;
        }
        for record in &leaving {
            let out = match synced {
                true => backend.remove(record).await,
                false => Err(RouteError::Busy),
            };
            match out {
                Ok(()) => self.land(record).await,
                Err(error) => self.failed(
                    &record.hostname,
                    &error,
                    "a route could not leave its backend",
                ),
            }
        }
    }

    async fn sync(&self, backend: &dyn RouteBackend) -> bool {
        match backend.sync().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(backend = backend.kind().as_str(), %error, "the backend could not be synced");
                false
            }
        }
    }

    /// Takes a route being removed out of its backend and deletes its
    /// record.
    async fn finish(&mut self, backend: &dyn RouteBackend, record: &RouteRecord, synced: bool) {
        let out = match synced {
            true => backend.remove(record).await,
            false => Err(RouteError::Busy),
        };
        let done = match out {
            Ok(()) => self.routes.store.advance(record, &Event::Removed).await,
            Err(error) => {
                return self.failed(&record.hostname, &error, "a route could not be removed");
            }
        };
        match done {
            Ok(_) => self.report.removed.push(&record.hostname),
            Err(error) => self.failed(
                &record.hostname,
                &error.into(),
                "a route could not be removed",
            ),
        }
    }

    /// Step 4: the configured backend synced once, its routes repaired and
    /// its removed routes taken out; false when it could not be synced.
    async fn on_configured(&mut self, claims: Option<&[Claim]>) -> bool {
        let routes = self.routes;
        let backend = routes.backends.configured();
        let synced = self.sync(backend).await;
        for record in std::mem::take(&mut self.ready) {
            let repaired = match synced {
                true => self.repair(backend, &record, claims).await,
                false => Err(RouteError::Busy),
            };
            match repaired {
                Ok(true) => self.report.applied.push(&record.hostname),
                Ok(false) => {}
                Err(error) => self.failed(
                    &record.hostname,
                    &error,
                    "a route could not be put in place",
                ),
            }
        }
        for record in std::mem::take(&mut self.finishing) {
            match routes.backends.of(record.backend) {
                Ok(backend) => self.finish(backend, &record, synced).await,
                Err(error) => self.failed(&record.hostname, &error, "a route could not be removed"),
            }
        }
        synced
    }

    /// Puts an active route in place again when it is not (or not
    /// wholly); true when it was not applied before.
    async fn repair(
        &self,
        backend: &dyn RouteBackend,
        record: &RouteRecord,
        claims: Option<&[Claim]>,
    ) -> Result<bool, RouteError> {
        let dns_record_id = match plan::repair(record, claims) {
            Repair::Done => return Ok(false),
            Repair::Record(id) => Some(id),
            Repair::Apply => backend.apply(record).await?,
            Repair::Unknown => return Err(RouteError::Busy),
        };
        if record.applied && record.dns_record_id == dns_record_id {
            return Ok(false);
        }
        let marked = mark_applied(self.routes, record, dns_record_id).await?;
        Ok(marked.is_some() && !record.applied)
    }

    /// Deletes the configured backend's claims no record names, each
    /// checked again just before.
    async fn delete_orphans(&mut self, orphans: &[Claim]) {
        let routes = self.routes;
        let backend = routes.backends.configured();
        for orphan in orphans {
            // Made since the records were listed (a record is always made
            // before its claims): not an orphan.
            if self.service.recorded(self.routes, &orphan.hostname).await {
                continue;
            }
            match backend.drop_claim(orphan).await {
                Ok(()) => self.report.orphaned_dns_removed.push(&orphan.hostname),
                Err(error) => self.failed(
                    &orphan.hostname,
                    &error,
                    "an orphaned DNS record could not be deleted",
                ),
            }
        }
    }
}
