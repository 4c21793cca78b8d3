//! Which charts are accepted, and how their rendering is checked.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::list::{List, seconds};
use crate::names::ChartPolicy;

/// The chart sources of the platform's app templates (its
/// `cloud_app_templates.xml`): Bitnami's PostgreSQL, Redis and Odoo on
/// Docker Hub, and n8n on 8gears' registry (a Harbor), all without a
/// version (the latest).
pub const PLATFORM_CHART_SOURCES: &str =
    "oci://registry-1.docker.io/bitnamicharts,oci://8gears.container-registry.com/library/n8n";

/// Where those registries send a chart fetch besides their own hosts: Docker Hub's
/// token service and the CDNs its blob downloads are redirected to (which
/// one depends on the puller and has changed over time: Cloudflare, its
/// R2 storage, AWS CloudFront). 8gears' Harbor serves its token
/// (`/service/token`) and, as far as is known, its blobs itself.
pub const REGISTRY_FETCH_HOSTS: &str = "auth.docker.io,production.cloudflare.docker.com,production.cloudfront.docker.com,docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com";

/// Chart sources and confinement.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Charts")]
pub struct ChartConfig {
    /// Chart sources accepted, comma-separated: a chart is accepted when
    /// its scheme and host:port are an entry's and the entry's path
    /// segments begin its path (`oci://host/charts` admits
    /// `oci://host/charts/web`, not `oci://host/chartsx/web`); a classic
    /// repository is matched by its URL. `*` accepts any source. Charts
    /// are fetched from these hosts only (and CHART_FETCH_HOSTS),
    /// redirects included. Default: the sources of the platform's app
    /// templates.
    #[arg(long, env = "ALLOWED_CHART_SOURCES", default_value = PLATFORM_CHART_SOURCES)]
    pub allowed_chart_sources: List,

    /// Further hosts (`host[:port]`) chart fetches may reach, comma-separated:
    /// where allowed sources send token requests and redirect downloads
    /// (a registry's token service and blob storage). Default: Docker
    /// Hub's token service and blob CDNs.
    #[arg(long, env = "CHART_FETCH_HOSTS", default_value = REGISTRY_FETCH_HOSTS)]
    pub chart_fetch_hosts: List,

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

    /// Seconds one chart fetch may take in all (tags, manifest, index,
    /// token and download) before a 502 `chart_source_unreachable`.
    #[arg(long, env = "CHART_FETCH_TIMEOUT", default_value = "60", value_parser = seconds)]
    pub chart_fetch_timeout: Duration,

    /// MiB of fetched chart archives kept (content-addressed, least
    /// recently used evicted; archives helm is reading are never evicted).
    #[arg(long, env = "CHART_CACHE_MB", default_value_t = 256)]
    pub chart_cache_mb: u64,
}

/// The policy the settings make. Here rather than in `names`, so that
/// `names` (validation) does not import the configuration.
impl ChartPolicy {
    pub fn from_config(config: &ChartConfig) -> Self {
        Self {
            allowed_sources: config.allowed_chart_sources.items().to_vec(),
            plain_http_registries: config.plain_http_registries.items().to_vec(),
            allow_http: config.allow_http_charts,
            fetch_hosts: config.chart_fetch_hosts.items().to_vec(),
        }
    }
}
