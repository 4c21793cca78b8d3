//! What every handler shares: the configuration, the API keys, the probe
//! of the Kubernetes API, and the services side by side. A handler calls
//! the one service its resource needs; work that spans services (a
//! release's routes on install and uninstall, reconciling routes against
//! live releases, a namespace with its releases) is a method of the
//! release service, which holds the others below it.
//!
//! ```text
//!   handlers ─► AppState ─┬─ releases  (crate::releases::ReleaseService)
//!                         ├─ tenants   (crate::tenants::TenantService)
//!                         └─ exposure  (crate::exposure::ExposureService)
//! ```

use std::ops::Deref;
use std::sync::Arc;

use crate::auth::ApiKeys;
use crate::config::Config;
use crate::exposure::ExposureService;
use crate::kube::ApiProbe;
use crate::names::ChartPolicy;
use crate::releases::ReleaseService;
use crate::tenants::TenantService;

/// Everything handlers share.
pub struct App {
    pub config: Config,
    pub keys: ApiKeys,
    pub probe: ApiProbe,
    /// What chart references are accepted (from the configuration).
    pub chart_policy: ChartPolicy,
    /// Helm releases, and the work that spans services. In an `Arc` so
    /// background tasks (route reconciliation, the recovery sweep) hold it
    /// weakly and end with the service.
    pub releases: Arc<ReleaseService>,
    /// Tenant namespaces.
    pub tenants: TenantService,
    /// Public routes and dedicated tunnels.
    pub exposure: ExposureService,
}

impl App {
    /// Tenant namespaces must start with this.
    pub fn namespace_prefix(&self) -> &str {
        &self.config.tenant.namespace_prefix
    }
}

/// Cheap-to-clone handle on [`App`].
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}
