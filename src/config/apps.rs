//! The app features the platform uses: the MCP sidecar and the n8n
//! bootstrap, and how the operator reaches a tenant's app over HTTP.

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::list::seconds;

/// How the operator reaches an app's HTTP API in a tenant namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AppAccess {
    /// By the Service's cluster DNS name (the operator runs in the
    /// cluster; the tenant's NetworkPolicy admits its namespace).
    Direct,
    /// Through the Kubernetes API server's service proxy (works from
    /// outside the cluster; needs `services/proxy` in tenant namespaces).
    ApiProxy,
}

/// Sidecars and app bootstrap.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Apps")]
pub struct AppsConfig {
    /// How the operator reaches a tenant's app (the n8n bootstrap).
    #[arg(long, env = "APP_ACCESS", value_enum, default_value_t = AppAccess::Direct)]
    pub app_access: AppAccess,

    /// Seconds the n8n bootstrap waits for n8n to answer (below the
    /// platform's 120 s client timeout).
    #[arg(long, env = "N8N_READY_TIMEOUT", default_value = "80", value_parser = seconds)]
    pub n8n_ready_timeout: Duration,

    /// The platform's namespace, admitted by each tenant's NetworkPolicy
    /// (it calls the MCP sidecars' Services); empty: none.
    #[arg(
        long,
        env = "PLATFORM_NAMESPACE",
        default_value = "",
        hide_default_value = true
    )]
    pub platform_namespace: String,
}
