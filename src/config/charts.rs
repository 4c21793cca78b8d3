//! Which charts are accepted, and how their rendering is checked.

use std::path::PathBuf;

use clap::Args;

use super::List;

/// Chart sources and confinement.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Charts")]
pub struct ChartConfig {
    /// Chart sources accepted, as comma-separated prefixes (e.g.
    /// `oci://registry-1.docker.io/bitnamicharts/`); empty = any oci:// or https://.
    #[arg(
        long,
        env = "ALLOWED_CHART_SOURCES",
        default_value = "",
        hide_default_value = true
    )]
    pub allowed_chart_sources: List,

    /// OCI registries (`host:port`) spoken to over plain HTTP, comma-separated.
    #[arg(
        long,
        env = "PLAIN_HTTP_REGISTRIES",
        default_value = "",
        hide_default_value = true
    )]
    pub plain_http_registries: List,

    /// Accept `http://` chart and repository URLs.
    #[arg(long, env = "ALLOW_HTTP_CHARTS")]
    pub allow_http_charts: bool,

    /// Check every install and upgrade on helm's own rendering (hooks
    /// included, before anything is created): refuse charts that render
    /// objects outside the release namespace or cluster-scoped objects not
    /// allowed below. Helm 4 checks inside its one run (a post-renderer),
    /// Helm 3 with a `helm template` first.
    #[arg(long, env = "CONFINE_CHARTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub confine_charts: bool,

    /// The program Helm 4 runs as its post-renderer to check confinement
    /// (this binary's hidden `confine-check` subcommand). Default: this binary.
    #[arg(long, env = "CONFINE_CHECKER")]
    pub confine_checker: Option<PathBuf>,

    /// Cluster-scoped kinds charts may create (e.g. `ClusterRole`), comma-separated; default none.
    #[arg(
        long,
        env = "ALLOWED_CLUSTER_KINDS",
        default_value = "",
        hide_default_value = true
    )]
    pub allowed_cluster_kinds: List,
}
