//! The route backends, one file each, each implementing
//! [`super::backend::RouteBackend`].

pub(crate) mod cloudflare;
pub(crate) mod ingress;
