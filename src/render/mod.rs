//! The rendered documents of a release, apart from the helm CLI that
//! produces them: the bounded strict parse of a rendering ([`parse`]), the
//! confinement rules checked on it ([`confine`]), the checked documents
//! they yield ([`documents`]) and what the operator adds to them
//! ([`additions`]). Pure: no process, no network, no Kubernetes API.
//!
//! Imports point one way: `helm` (its post-renderer and the Helm 3 wrapper
//! chart) uses this module; nothing here imports `helm`.

pub mod additions;
pub mod confine;
pub mod documents;
pub mod parse;
