//! `paas-operator migrate`: the upgrade path from the earlier (Python)
//! operator, with the service's own settings. A dry run (the default)
//! reports what that operator left that this one would adopt or clean up;
//! `--apply` adopts it and prints what it changed. A second `--apply`
//! changes nothing, and nothing of a tenant's is ever deleted.
//!
//! ```text
//!  scan (read-only) ──► report (text or JSON)
//!    │ --apply
//!    ▼
//!  namespaces set up ──► scan again (their releases are readable now)
//!    ──► routes recorded as their release's ──► patched sidecars kept with
//!    their release (a new revision each) ──► report + what changed
//! ```
//!
//! What is looked at: tenant namespaces (prefix, `paas-managed=true`)
//! without this operator's tenant objects; rules of the shared tunnel and
//! CNAMEs without a route record; containers patched into a release's
//! Deployment by hand; `{release}-mcp` Services outside Helm; the earlier
//! operator's ClusterRole, ClusterRoleBinding and ServiceAccount (report
//! only, with the command an admin runs).

mod migration;
pub mod report;
mod scan;

use crate::auth::KeyId;
use crate::config::{Config, MigrateArgs, ReportFormat};
pub use migration::{Migration, Services};
use report::Report;
use scan::Plan;

/// How long the command waits, before it exits, for the release Leases it
/// took to be given back.
const LEASE_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The services the migration works through, side by side, built from the
/// service's settings.
/// Runs the subcommand: prints the report; with `--apply`, adopts first.
pub async fn run(
    services: Services<'_>,
    config: &Config,
    args: &MigrateArgs,
) -> anyhow::Result<()> {
    let migration = Migration::new(services, config, &args.namespaces);
    let report = if args.apply {
        migration.apply().await
    } else {
        migration.scan("dry-run").await.0
    };
    // Leases are given back in the background: let them go before exiting,
    // or the next operation on those releases waits for them to expire.
    services.releases.settle(LEASE_SETTLE).await;
    match args.output {
        ReportFormat::Text => print!("{}", report.to_text()),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if !report.failed.is_empty() {
        anyhow::bail!("{} adoptions failed (listed above)", report.failed.len());
    }
    Ok(())
}

impl Migration<'_> {
    /// Adopts everything the scan says to, in order: namespaces first (the
    /// operator has no rights in the earlier operator's until then), then
    /// routes, then sidecars (their MCP route is then the adopted one).
    pub async fn apply(&self) -> Report {
        let (first, plan) = self.scan("apply").await;
        let mut changed = Vec::new();
        let mut failed = Vec::new();
        for namespace in &plan.namespaces {
            match self.tenants.adopt(namespace).await {
                Ok(()) => changed.push(format!(
                    "namespace {namespace}: tenant objects set up (its quota left as it was)"
                )),
                Err(error) => failed.push(format!("namespace {namespace}: {error}")),
            }
        }
        let (mut report, plan) = if plan.namespaces.is_empty() {
            (first, plan)
        } else {
            let (mut again, plan) = self.scan("apply").await;
            // Shown as found before they were set up.
            again.namespaces = first.namespaces;
            (again, plan)
        };
        self.adopt_routes(&plan, &mut changed, &mut failed).await;
        self.adopt_sidecars(&plan, &mut changed, &mut failed).await;
        report.changed = changed;
        report.failed = failed;
        report
    }

    async fn adopt_routes(&self, plan: &Plan, changed: &mut Vec<String>, failed: &mut Vec<String>) {
        let exposure = self.exposure;
        for (owner, rule, kind) in &plan.routes {
            let owner_text = format!("{}/{}", owner.namespace, owner.name);
            match exposure.adopt_route(owner.clone(), rule, *kind).await {
                Ok(record) => changed.push(format!(
                    "route {}: recorded as {owner_text}'s{}",
                    rule.hostname,
                    if record.dns_record_id.is_some() {
                        ", its CNAME ours"
                    } else {
                        ""
                    }
                )),
                Err(error) => failed.push(format!("route {}: {error}", rule.hostname)),
            }
        }
    }

    async fn adopt_sidecars(
        &self,
        plan: &Plan,
        changed: &mut Vec<String>,
        failed: &mut Vec<String>,
    ) {
        let key = KeyId("migrate".into());
        for (namespace, name, sidecar) in &plan.sidecars {
            match self
                .releases
                .adopt_sidecar(&key, namespace, name, sidecar)
                .await
            {
                Ok(attached) => changed.push(format!(
                    "{namespace}/{name}: sidecar {} kept with the release (revision {}){}",
                    attached.container,
                    attached.revision,
                    attached
                        .service
                        .map(|s| format!(", Service {} now Helm's", s.name))
                        .unwrap_or_default()
                )),
                Err(error) => failed.push(format!(
                    "{namespace}/{name}: sidecar {}: {}",
                    sidecar.container, error.detail
                )),
            }
        }
    }
}
