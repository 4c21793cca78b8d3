//! Every option, in one clap parser made of groups (one file each), so
//! `paas-operator --help` lists them by heading. Every option is also an
//! environment variable (the earlier operator's names are kept); `.env` is
//! read first if present. Values are typed at the edge (durations, enums,
//! comma lists) and checked once, here; nothing else in the crate reads the
//! environment.
//!
//! | group | file | examples |
//! |---|---|---|
//! | Server | [`server`] | `HOST`, `PORT`, `LOG_FORMAT`, `SHUTDOWN_GRACE` |
//! | Authentication | [`auth`] | `API_KEY`, `API_KEYS`, `API_KEY_FILE` |
//! | Helm | [`helm`] | `HELM_BINARY`, `HELM_TIMEOUT`, `HELM_DRIVER`, `RELEASE_READS` |
//! | Charts | [`charts`] | `ALLOWED_CHART_SOURCES`, `CONFINE_CHARTS` |
//! | Read cache | [`cache`] | `READ_CACHE`, `READ_CACHE_IDLE` |
//! | Apps | [`apps`] | `APP_ACCESS`, `N8N_READY_TIMEOUT`, `PLATFORM_NAMESPACE` |
//! | Tenants | [`tenant`] | `NAMESPACE_PREFIX`, `PSA_ENFORCE`, `NETWORK_ALLOWED_NAMESPACES` |
//! | Exposure | [`exposure`] | `EXPOSURE_BACKEND`, `CLOUDFLARE_*`, `INGRESS_CLASS`, `OPERATOR_NAMESPACE` |

pub mod apps;
pub mod auth;
pub mod cache;
pub mod charts;
pub mod exposure;
pub mod helm;
mod list;
mod secret;
pub mod server;
pub mod tenant;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use apps::{AppAccess, AppsConfig};
pub use auth::AuthConfig;
pub use cache::{CacheConfig, CacheMode};
pub use charts::ChartConfig;
pub use exposure::{ExposureBackend, ExposureConfig};
pub use helm::{HelmConfig, HelmDriver, ReleaseReads};
pub use list::{List, seconds};
pub use secret::SecretString;
pub use server::{LogFormat, ServerConfig};
pub use tenant::{PodSecurityLevel, TenantConfig};

/// paas-operator: performs Helm operations over HTTP for the PaaS platform.
#[derive(Debug, Clone, Parser)]
#[command(version, about, long_about = None)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Kubeconfig of the operator's identity (helm gets it too). Without
    /// it: ~/.kube/config, or the in-cluster ServiceAccount in a pod.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    #[command(flatten)]
    pub server: ServerConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub helm: HelmConfig,

    #[command(flatten)]
    pub charts: ChartConfig,

    #[command(flatten)]
    pub cache: CacheConfig,

    #[command(flatten)]
    pub tenant: TenantConfig,

    #[command(flatten)]
    pub apps: AppsConfig,

    #[command(flatten)]
    pub exposure: ExposureConfig,
}

/// Extra commands; with none the service serves.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the OpenAPI document and exit.
    Openapi,
    /// Report what the earlier (Python) operator left in the cluster that
    /// this one would adopt or clean up (`--dry-run`, the default), or
    /// adopt it (`--apply`, idempotent). Uses the service's settings
    /// (kubeconfig, NAMESPACE_PREFIX, exposure and Cloudflare).
    Migrate(MigrateArgs),
}

/// `paas-operator migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// Only report (the default): nothing is changed.
    #[arg(long, conflicts_with = "apply")]
    pub dry_run: bool,
    /// Adopt what the report lists, then print what changed. Running it
    /// again changes nothing; nothing of a tenant's is deleted.
    #[arg(long)]
    pub apply: bool,
    /// How the report is printed.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
    /// Only this tenant namespace (and routes into it); repeatable.
    /// Default: every tenant namespace.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
}

/// The migration report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// For people.
    Text,
    /// One JSON document.
    Json,
}

impl Config {
    /// Reads `.env` (if present), then arguments and environment.
    pub fn load() -> Self {
        let _ = dotenvy::dotenv();
        Self::parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::parse_from(["paas-operator"].iter().chain(args))
    }

    #[test]
    fn defaults_match_the_earlier_operator() {
        let config = parse(&[]);
        assert_eq!(config.server.port, 8000);
        assert_eq!(config.tenant.namespace_prefix, "paas-ws-");
        assert_eq!(config.helm.timeout.as_secs(), 300);
        assert_eq!(config.helm.driver, HelmDriver::Secret);
        // Leases: a heartbeat of 15 s, independent of HELM_TIMEOUT, and
        // helm stopped (SIGTERM, SIGKILL 5 s later) before one could lapse.
        let leases = config.helm.lease_timing();
        assert_eq!(leases.ttl.as_secs(), 15);
        assert_eq!(leases.stop_margin.as_secs(), 5);
        assert!(leases.check().is_ok());
        assert_eq!(config.helm.recovery_sweep_interval.as_secs(), 5);
        assert_eq!(config.tenant.psa_enforce, PodSecurityLevel::Baseline);
        assert!(config.command.is_none());
    }

    #[test]
    fn migrate_is_a_dry_run_unless_told_to_apply() {
        let dry = parse(&["migrate"]);
        let Some(Command::Migrate(args)) = dry.command else {
            panic!("migrate")
        };
        assert!(!args.apply);
        assert_eq!(args.output, ReportFormat::Text);
        let apply = parse(&[
            "migrate",
            "--apply",
            "--output",
            "json",
            "--namespace",
            "paas-ws-1",
        ]);
        let Some(Command::Migrate(args)) = apply.command else {
            panic!("migrate")
        };
        assert!(args.apply);
        assert_eq!(args.output, ReportFormat::Json);
        assert_eq!(args.namespaces, ["paas-ws-1"]);
        assert!(
            Config::try_parse_from(["paas-operator", "migrate", "--dry-run", "--apply"]).is_err()
        );
    }

    #[test]
    fn keys_are_merged_and_trimmed() {
        let config = parse(&["--api-key", "a", "--api-keys", "b, c,,"]);
        assert_eq!(config.auth.static_keys(), ["a", "b", "c"]);
    }

    #[test]
    fn typed_values_are_refused_at_the_edge() {
        let refused = |args: &[&str]| {
            Config::try_parse_from(["paas-operator"].iter().chain(args))
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&["--psa-enforce", "loose"]).contains("loose"));
        assert!(refused(&["--helm-driver", "memory"]).contains("memory"));
        assert!(refused(&["--helm-timeout", "5m"]).contains("seconds"));
        assert_eq!(
            parse(&["--helm-driver", "secrets"]).helm.driver,
            HelmDriver::Secret
        );
        assert_eq!(
            parse(&["--helm-driver", "configmaps"]).helm.driver,
            HelmDriver::Configmap
        );
    }

    fn reads(args: &[&str]) -> Result<ReleaseReads, String> {
        parse(args)
            .helm
            .effective_reads()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn release_reads_follow_the_driver_unless_chosen() {
        assert_eq!(reads(&[]), Ok(ReleaseReads::Storage));
        assert_eq!(
            reads(&["--helm-driver", "configmap"]),
            Ok(ReleaseReads::Storage)
        );
        assert_eq!(reads(&["--helm-driver", "sql"]), Ok(ReleaseReads::Helm));
        assert_eq!(reads(&["--release-reads", "helm"]), Ok(ReleaseReads::Helm));
        let refused = reads(&["--helm-driver", "sql", "--release-reads", "storage"]);
        assert!(refused.unwrap_err().contains("RELEASE_READS=helm"));
    }

    #[test]
    fn sql_connection_string_reaches_helm_and_nothing_else() {
        let secret = "postgres://helm:hunter2@db.example:5432/helm";
        let config = parse(&[
            "--helm-driver",
            "sql",
            "--helm-driver-sql-connection-string",
            secret,
        ]);
        assert!(!format!("{config:?}").contains("hunter2"));
        let env = config.helm.child_env(None);
        let value = |key: &str| {
            env.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(value("HELM_DRIVER"), ["sql"]);
        assert_eq!(value("HELM_DRIVER_SQL_CONNECTION_STRING"), [secret]);
    }

    #[test]
    fn help_groups_options_and_never_prints_key_values() {
        let help = <Config as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for heading in [
            "Server",
            "Authentication",
            "Helm",
            "Charts",
            "Read cache",
            "Tenants",
        ] {
            assert!(help.contains(&format!("{heading}:")), "{heading}");
        }
        assert!(help.contains("API_KEY"));
        assert!(help.contains("HELM_TIMEOUT"));
        assert!(help.contains("HELM_DRIVER_SQL_CONNECTION_STRING"));
    }
}
