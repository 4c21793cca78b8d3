//! Claiming, putting in place and removing one route, for requests (an
//! install's `expose`, a sidecar, `/api/routes`). Every change of a record
//! is a lifecycle event ([`super::lifecycle`]); every backend call goes
//! through [`super::backend::RouteBackend`].

use super::error::RouteError;
use super::lifecycle::Event;
use super::names::{self, Origins, Subdomain};
use super::service::{ExposureService, Routes};
use super::store::{Advanced, ReleaseRef, RouteKind, RouteRecord, RouteState};
use crate::error::ApiError;
use crate::model::exposure::{CreateRouteRequest, RouteCreated, RouteList};

impl ExposureService {
    /// Claims `subdomain` for `owner` (a release, or `None` for a route of
    /// `/api/routes`) and puts the route in place. The same owner may claim
    /// again (the route is updated); anyone else gets `HostnameTaken`.
    pub(crate) async fn expose_route(
        &self,
        owner: impl Into<Option<ReleaseRef>>,
        subdomain: Subdomain,
        kind: RouteKind,
        service_url: String,
        path: Option<String>,
    ) -> Result<RouteRecord, RouteError> {
        let routes = self.0.routes.as_ref().ok_or(RouteError::Off)?;
        let backend = routes.backends.configured();
        let wanted = RouteRecord {
            hostname: subdomain.hostname(&self.0.domain),
            subdomain,
            service_url,
            path,
            owner: owner.into(),
            kind,
            backend: backend.kind(),
            state: RouteState::Active,
            applied: false,
            dns_record_id: None,
            version: None,
        };
        backend.check_input(&wanted)?;
        let (record, fresh) = self.claim(routes, &wanted).await?;
        match self.put_in_place(routes, &record).await {
            Ok(applied) => Ok(applied),
            Err(RouteError::HostnameTaken(hostname)) if fresh => {
                // Not ours after all (its DNS name is someone else's): give
                // the claim up, and the rule it made.
                if let Err(error) = self.remove_record(routes, &record, Event::Taken).await {
                    tracing::warn!(%hostname, %error, "a refused route's record could not be removed; reconciliation will");
                }
                Err(RouteError::HostnameTaken(hostname))
            }
            Err(error) => Err(error),
        }
    }

    /// Records the claim: a new record (after checking that nobody outside
    /// this operator routes the hostname: once recorded, the hostname's
    /// rule is ours and syncs write it), or the owner's existing one
    /// claimed again. Returns the record and whether it is new.
    async fn claim(
        &self,
        routes: &Routes,
        wanted: &RouteRecord,
    ) -> Result<(RouteRecord, bool), RouteError> {
        let mut existing = routes.store.get(&wanted.subdomain).await?;
        if wanted.kind == RouteKind::Mcp
            && let Some(squatter) = existing.as_ref().filter(|r| r.kind != RouteKind::Mcp)
        {
            // An app's (or `/api/routes`') route on a release's MCP route
            // name, made before such names were reserved: the release's MCP
            // route wins, and that route goes.
            tracing::warn!(hostname = %squatter.hostname, "an app route held a release's MCP route name; removing it for the MCP route");
            self.remove_record(routes, squatter, Event::Remove).await?;
            existing = routes.store.get(&wanted.subdomain).await?;
        }
        if existing.is_none() {
            match self.claim_new(routes, wanted).await? {
                Ok(created) => return Ok((created, true)),
                Err(claimed_meanwhile) => existing = Some(claimed_meanwhile),
            }
        }
        let Some(existing) = existing else {
            return Err(RouteError::HostnameTaken(wanted.hostname.clone()));
        };
        if existing.owner != wanted.owner || existing.kind != wanted.kind {
            return Err(RouteError::HostnameTaken(existing.hostname));
        }
        // The backend and hostname stay the recorded ones: moving a route
        // to another backend is reconciliation's (it takes it out of the
        // old one first).
        let claimed = Event::Claimed {
            service_url: wanted.service_url.clone(),
            path: wanted.path.clone(),
        };
        match routes.store.advance(&existing, &claimed).await? {
            Advanced::Now(updated) => Ok((updated, false)),
            Advanced::Gone | Advanced::Declined => {
                Err(RouteError::HostnameTaken(wanted.hostname.clone()))
            }
        }
    }

    /// Creates the record of a new claim, active when its hostname was
    /// found free, pending when that could not be told (reconciliation
    /// checks it). `Err(existing)` when someone recorded it meanwhile.
    async fn claim_new(
        &self,
        routes: &Routes,
        wanted: &RouteRecord,
    ) -> Result<Result<RouteRecord, RouteRecord>, RouteError> {
        let checked = routes.backends.configured().check_claim(wanted).await;
        let state = match &checked {
            Ok(()) => RouteState::Active,
            Err(RouteError::HostnameTaken(hostname)) => {
                return Err(RouteError::HostnameTaken(hostname.clone()));
            }
            Err(_) => RouteState::Pending,
        };
        let claim = RouteRecord {
            state,
            ..wanted.clone()
        };
        let created = routes.store.create(&claim).await?;
        if created.is_ok() {
            checked?;
        }
        Ok(created)
    }

    /// Puts a recorded route in place through its backend and marks it
    /// applied.
    pub(super) async fn put_in_place(
        &self,
        routes: &Routes,
        record: &RouteRecord,
    ) -> Result<RouteRecord, RouteError> {
        let record = &self.activate(routes, record).await?;
        let backend = routes.backends.of(record.backend)?;
        backend.sync().await?;
        let dns_record_id = backend.apply(record).await?;
        let marked = mark_applied(routes, record, dns_record_id).await?;
        Ok(marked.unwrap_or_else(|| record.clone()))
    }

    /// Makes a pending claim active once nobody outside this operator is
    /// found routing its hostname; a refused claim's record is deleted (no
    /// rule was ever written for it).
    pub(super) async fn activate(
        &self,
        routes: &Routes,
        record: &RouteRecord,
    ) -> Result<RouteRecord, RouteError> {
        if record.state != RouteState::Pending {
            return Ok(record.clone());
        }
        let backend = routes.backends.of(record.backend)?;
        match backend.check_claim(record).await {
            Ok(()) => {}
            Err(RouteError::HostnameTaken(hostname)) => {
                routes.store.advance(record, &Event::Taken).await?;
                return Err(RouteError::HostnameTaken(hostname));
            }
            Err(error) => return Err(error),
        }
        let activated = routes.store.advance(record, &Event::Checked).await?;
        activated.record().ok_or(RouteError::Busy)
    }

    /// Takes a route out of its backend, then deletes its record (`why`:
    /// `Remove`, or `Taken` for a claim refused after all). Nothing happens
    /// when the record is no longer this one's (claimed anew).
    pub(super) async fn remove_record(
        &self,
        routes: &Routes,
        record: &RouteRecord,
        why: Event,
    ) -> Result<(), RouteError> {
        // A pending claim (nothing of it put in place) is gone at once.
        let Advanced::Now(marked) = routes.store.advance(record, &why).await? else {
            return Ok(());
        };
        let backend = routes.backends.of(marked.backend)?;
        backend.sync().await?;
        backend.remove(&marked).await?;
        routes.store.advance(&marked, &Event::Removed).await?;
        Ok(())
    }

    pub(super) async fn remove_all(&self, routes: &Routes, records: &[RouteRecord]) {
        for record in records {
            match self.remove_record(routes, record, Event::Remove).await {
                Ok(()) => tracing::info!(hostname = %record.hostname, "route removed"),
                Err(error) => {
                    tracing::warn!(hostname = %record.hostname, %error, "route not removed now; reconciliation will");
                }
            }
        }
    }

    /// `GET /api/routes`: the configured backend's rules (the shared
    /// tunnel's, foreign ones and the catch-all included; or the `ingress`
    /// backend's routes).
    pub(crate) async fn list_routes(&self) -> Result<RouteList, ApiError> {
        let routes = match &self.0.routes {
            Some(routes) => routes.backends.configured().rules().await?,
            None => Vec::new(),
        };
        Ok(RouteList {
            routes,
            enabled: self.is_on(),
            domain: self.0.domain.clone(),
        })
    }

    /// `POST /api/routes`: a route of no release (upserted). A failing DNS
    /// record does not fail it (reconciliation makes it).
    pub(crate) async fn create_route(
        &self,
        request: CreateRouteRequest,
    ) -> Result<RouteCreated, ApiError> {
        self.routes()?;
        let subdomain = Subdomain::parse(&request.subdomain)?.for_app()?;
        let service = names::origin_url(&request.service_url, Origins::Web)?;
        let path = request.path.as_deref().map(names::rule_path).transpose()?;
        let outcome = self
            .expose_route(
                None,
                subdomain.clone(),
                RouteKind::Manual,
                service.clone(),
                path.clone(),
            )
            .await;
        let hostname = subdomain.hostname(&self.0.domain);
        match outcome {
            Ok(_) => {}
            Err(RouteError::Cloudflare(error)) if self.rule_is_in(&hostname).await => {
                tracing::warn!(%subdomain, %error, "the route's DNS record could not be made now; reconciliation will");
            }
            Err(error) => return Err(error.into()),
        }
        Ok(RouteCreated {
            hostname,
            service,
            path,
        })
    }

    /// True when the configured backend routes `hostname` (for a route just
    /// made: its rule was written, only DNS is missing).
    async fn rule_is_in(&self, hostname: &str) -> bool {
        let Some(routes) = &self.0.routes else {
            return false;
        };
        match routes.backends.configured().rules().await {
            Ok(rules) => rules
                .iter()
                .any(|r| r.hostname.as_deref() == Some(hostname)),
            Err(_) => false,
        }
    }

    /// `DELETE /api/routes/{subdomain}`: removes a route of ours (a
    /// release's too); a hostname nobody routes is fine; one someone else
    /// routes is refused (409). Returns the hostname.
    pub(crate) async fn delete_route(&self, subdomain: &Subdomain) -> Result<String, ApiError> {
        let routes = self.routes()?;
        let hostname = subdomain.hostname(&self.0.domain);
        if let Some(record) = routes.store.get(subdomain).await? {
            self.remove_record(routes, &record, Event::Remove).await?;
            return Ok(hostname);
        }
        // Unrecorded, yet routed: someone else's rule.
        let rules = routes.backends.configured().rules().await?;
        if rules
            .iter()
            .any(|r| r.hostname.as_deref() == Some(hostname.as_str()))
        {
            return Err(RouteError::HostnameTaken(hostname).into());
        }
        Ok(hostname)
    }
}

/// Marks a route applied with the DNS record it got, unless its record
/// changed meanwhile (another owner, removal begun, or a new target): then
/// `None`, and the next reconciliation looks at it again.
pub(super) async fn mark_applied(
    routes: &Routes,
    record: &RouteRecord,
    dns_record_id: Option<String>,
) -> Result<Option<RouteRecord>, RouteError> {
    let applied = Event::Applied {
        service_url: record.service_url.clone(),
        dns_record_id,
    };
    Ok(routes.store.advance(record, &applied).await?.record())
}
