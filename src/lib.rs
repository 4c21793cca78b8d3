//! paas-operator: performs Helm operations over HTTP for a multi-tenant PaaS.
//!
//! # Layout
//! The folders are the architecture; arrows point one way, downwards:
//! ```text
//!   main.rs ─► startup.rs (wires everything, serves, shuts down)
//!                 │          migrate/ (`paas-operator migrate`: the earlier
//!                 │          operator's leftovers, through releases/ below)
//!   HTTP ──────► api/        one file per resource: parse ─► call one service ─► answer
//!                 │          (AppState: releases, tenants, exposure side by side)
//!                 │
//!                 ▼
//!              releases/    the release service: locks and Leases, confinement,
//!                 │          recovery, read-your-writes, audit; the read path
//!                 │          (watch-fed cache ─► storage or helm CLI)
//!                 ▼
//!              tenants/     tenant namespaces: quota, limits, isolation, RBAC
//!              exposure/    public routes (route records, shared Cloudflare
//!                 │          Tunnel or Ingress, reconciliation), dedicated tunnels
//!                 │          n8n/ (n8n's REST API, for the bootstrap)
//!                 │
//!                 │          error/: the one error type, and what the
//!                 │          lower layers' errors mean to clients
//!      ┌──────────┼──────────────┐
//!      ▼          ▼              ▼
//!    charts/    helm/          kube/ (Kubernetes primitives)
//!  (fetch and   (the helm CLI,
//!   inspect,    given local     egress.rs (helm's only way out)
//!   for helm)   archives only)
//!      └──────────┼──────────────┘
//!                 ▼
//!   render/ (parse, confinement rules, additions: pure)
//!   config/ · names/ · model/ · auth.rs · metrics.rs · bounded.rs
//! ```
//! - [`config`]: every option, in clap groups; nothing else reads the environment.
//! - [`error`]: the one error type clients see, the one list of error codes,
//!   and the HTTP meaning of helm, chart, kube and validation errors.
//! - `names`: validated input types; nothing unvalidated reaches helm.
//! - [`model`]: the wire types of the contract with the platform.
//! - [`auth`]: API keys, checked in constant time.
//! - [`metrics`]: the Prometheus recorder behind `GET /metrics`.
//! - `bounded`: every outside answer read capped in size and time.
//!
//! The binary is also Helm 4's confinement post-renderer: helm runs it as
//! `paas-operator confine-check …` ([`helm::postrender`]), inside each
//! install and upgrade.

pub(crate) mod api;
pub mod auth;
pub(crate) mod bounded;
pub(crate) mod charts;
pub mod config;
pub(crate) mod egress;
pub mod error;
pub mod exposure;
pub mod helm;
pub(crate) mod kube;
pub mod metrics;
pub mod migrate;
pub mod model;
pub(crate) mod n8n;
pub(crate) mod names;
pub(crate) mod releases;
pub(crate) mod render;
pub(crate) mod startup;
pub(crate) mod tenants;

pub use startup::{build_state, run, serve};

/// A Kubernetes client that, like the operator's own, sends a request
/// again when the API server answers 429 (for tools and tests that share
/// its API server).
pub use crate::kube::throttle::client as kube_client;

/// The OpenAPI document as pretty JSON.
pub fn openapi_json() -> String {
    api::openapi_json()
}
