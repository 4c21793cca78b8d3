//! The route backends, one file each, each implementing
//! [`super::backend::RouteBackend`].

pub mod cloudflare;
pub mod ingress;
