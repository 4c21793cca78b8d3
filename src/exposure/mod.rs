//! Public exposure of releases and dedicated tunnels: the exposure service.
//!
//! ```text
//!  releases/ (under the release's lock)           api/routes.rs, api/tunnels.rs
//!   install + expose ─► claim ─► apply ─┐           /api/routes, /reconcile, /api/tunnels
//!   uninstall, namespace deletion ─► remove         │
//!        ▼                              ▼           ▼
//!  release_routes.rs, routes.rs: claims and removals, as lifecycle events
//!  lifecycle.rs: pending ─► active ─► removing ─► gone (pure)
//!  store.rs, record.rs: one ConfigMap per route (ownership, state) in
//!    OPERATOR_NAMESPACE
//!        │ backend.rs: trait RouteBackend (EXPOSURE_BACKEND picks one)
//!        ├─ backends/cloudflare.rs: rules in the shared tunnel
//!        │    (Lease-serialised syncs of one document) + proxied CNAMEs
//!        └─ backends/ingress.rs: an Ingress per route in the release's
//!             namespace
//!  reconcile/: plan (pure) and execute: missing routes made again, gone
//!    releases' routes and orphaned DNS records removed
//!  tunnels.rs: dedicated tunnels (compensated creation)
//!  earlier.rs: what the earlier operator left in the shared tunnel
//! ```
//!
//! A route is claimed by creating its record (`create`: a second claimant
//! gets AlreadyExists and 409), then put in place, then marked `applied`.
//! It is removed by marking it `removing`, taking it out of the backend,
//! and deleting the record last, so a route is never in a backend without
//! a record saying whose it is. Routing failures never fail an install
//! (`route: null`); the record stays and reconciliation repairs it.

mod backend;
mod backends;
pub(crate) mod cloudflare;
mod discovery;
pub mod earlier;
mod error;
mod lifecycle;
pub mod names;
mod reconcile;
mod record;
mod release_routes;
mod routes;
mod service;
pub mod store;
pub(crate) mod tunnels;

pub(crate) use reconcile::{ReleaseLookup, spawn_reconciler};
pub use release_routes::ExposeSpec;
pub use service::ExposureService;
