//! All configuration, in one clap `Parser`: every option is also an
//! environment variable (the earlier operator's names are kept), `.env` is
//! read first if present. Nothing else in the crate reads the environment.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};

use crate::helm::StorageDriver;

/// paas-operator: performs Helm operations over HTTP for the PaaS platform.
#[derive(Debug, Clone, Parser)]
#[command(version, about, long_about = None)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// The API key callers send in `X-API-Key`.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Several accepted API keys, comma-separated (for rotation).
    #[arg(long, env = "API_KEYS", hide_env_values = true, value_delimiter = ',')]
    pub api_keys: Vec<String>,

    /// A file of accepted API keys (one per line); re-read when it changes,
    /// so keys rotate without a restart.
    #[arg(long, env = "API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Serve without any API key (local experiments only). Without a key and
    /// without this flag the service refuses to start.
    #[arg(long, env = "INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Tenant namespaces must start with this prefix.
    #[arg(long, env = "NAMESPACE_PREFIX", default_value = "paas-ws-")]
    pub namespace_prefix: String,

    /// The helm binary (Helm 3 or Helm 4), a path or a name on PATH.
    #[arg(long, env = "HELM_BINARY", default_value = "helm")]
    pub helm_binary: PathBuf,

    /// Seconds passed to helm as `--timeout`.
    #[arg(long, env = "HELM_TIMEOUT", default_value_t = 300)]
    pub helm_timeout: u64,

    /// Seconds above HELM_TIMEOUT before the operator stops helm itself (SIGTERM).
    #[arg(long, env = "HELM_DEADLINE_MARGIN", default_value_t = 15)]
    pub helm_deadline_margin: u64,

    /// Seconds between SIGTERM and SIGKILL when helm must be stopped.
    #[arg(long, env = "HELM_KILL_GRACE", default_value_t = 20)]
    pub helm_kill_grace: u64,

    /// Most helm processes running at once.
    #[arg(long, env = "MAX_PARALLEL_HELM", default_value_t = 8)]
    pub max_parallel_helm: usize,

    /// Seconds a request waits for a free helm slot before a 503.
    #[arg(long, env = "HELM_QUEUE_WAIT", default_value_t = 10)]
    pub helm_queue_wait: u64,

    /// Seconds a request waits for another operation on the same release before a 409.
    #[arg(long, env = "RELEASE_LOCK_WAIT", default_value_t = 5)]
    pub release_lock_wait: u64,

    /// Helm's storage driver: `secret` or `configmap` (read directly from
    /// the Kubernetes API), or `sql` (read through the helm CLI).
    #[arg(long, env = "HELM_DRIVER", default_value = "secret")]
    pub helm_driver: String,

    /// Connection string of Helm's SQL driver (HELM_DRIVER=sql), passed to
    /// helm only. A secret: never logged, never printed.
    #[arg(
        long,
        env = "HELM_DRIVER_SQL_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub helm_driver_sql_connection_string: Option<SecretString>,

    /// Where release reads come from: `storage` decodes Helm's records from
    /// the Kubernetes API (no helm process; HELM_DRIVER secret or configmap),
    /// `helm` asks the helm CLI (any driver; one or two helm processes per
    /// read). Default: storage when the driver is readable, else helm.
    #[arg(long, env = "RELEASE_READS", value_enum)]
    pub release_reads: Option<ReleaseReads>,

    /// Chart sources accepted, as comma-separated prefixes (e.g.
    /// `oci://registry-1.docker.io/bitnamicharts/`); empty = any oci:// or https://.
    #[arg(long, env = "ALLOWED_CHART_SOURCES", value_delimiter = ',')]
    pub allowed_chart_sources: Vec<String>,

    /// OCI registries (`host:port`) spoken to over plain HTTP.
    #[arg(long, env = "PLAIN_HTTP_REGISTRIES", value_delimiter = ',')]
    pub plain_http_registries: Vec<String>,

    /// Accept `http://` chart and repository URLs.
    #[arg(long, env = "ALLOW_HTTP_CHARTS")]
    pub allow_http_charts: bool,

    /// Origins allowed to call from a browser, comma-separated; empty = none.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Kubeconfig of the operator's identity (also given to helm). Without
    /// it: ~/.kube/config, or the in-cluster ServiceAccount in a pod.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Log filter, e.g. `info` or `paas_operator=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

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
    #[arg(long, env = "ALLOWED_CLUSTER_KINDS", value_delimiter = ',')]
    pub allowed_cluster_kinds: Vec<String>,

    /// Answer GET release/revisions/status from a watch-fed in-memory index
    /// of the namespaces being read (no API call per read); `false`: every
    /// read goes to the Kubernetes API.
    #[arg(long, env = "READ_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub read_cache: bool,

    /// Most namespaces the read cache indexes at once (two watches each);
    /// reads in further namespaces go to the API.
    #[arg(long, env = "READ_CACHE_NAMESPACES", default_value_t = 512)]
    pub read_cache_namespaces: usize,

    /// Seconds without a read after which a namespace leaves the read cache.
    #[arg(long, env = "READ_CACHE_IDLE", default_value_t = 900)]
    pub read_cache_idle: u64,

    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value_t = 340)]
    pub shutdown_grace: u64,

    #[command(flatten)]
    pub tenant: TenantConfig,
}

/// What every tenant namespace gets besides its quota.
#[derive(Debug, Clone, clap::Args)]
pub struct TenantConfig {
    /// Pod Security Admission level enforced in tenant namespaces.
    #[arg(long, env = "PSA_ENFORCE", default_value = "baseline")]
    pub psa_enforce: String,

    /// Pod Security Admission level warned about and audited.
    #[arg(long, env = "PSA_WARN", default_value = "restricted")]
    pub psa_warn: String,

    /// Namespaces whose pods may reach tenant pods (e.g. the ingress
    /// controller's), comma-separated; other tenants are denied.
    #[arg(
        long,
        env = "NETWORK_ALLOWED_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system,ingress-nginx"
    )]
    pub network_allowed_namespaces: Vec<String>,

    /// ClusterRole bound in each tenant namespace for the operator
    /// (helm's rights there). Empty = no RoleBinding.
    #[arg(
        long,
        env = "TENANT_CLUSTER_ROLE",
        default_value = "paas-operator-tenant"
    )]
    pub tenant_cluster_role: String,

    /// The operator's ServiceAccount as `namespace/name`, the subject of the
    /// tenant RoleBinding.
    #[arg(
        long,
        env = "OPERATOR_SERVICE_ACCOUNT",
        default_value = "paas-system/paas-operator"
    )]
    pub operator_service_account: String,

    /// Default CPU request of containers that set none (LimitRange).
    #[arg(long, env = "DEFAULT_CPU_REQUEST", default_value = "100m")]
    pub default_cpu_request: String,

    /// Default memory request of containers that set none (LimitRange).
    #[arg(long, env = "DEFAULT_MEMORY_REQUEST", default_value = "128Mi")]
    pub default_memory_request: String,

    /// Default CPU limit of containers that set none (LimitRange).
    #[arg(long, env = "DEFAULT_CPU_LIMIT", default_value = "500m")]
    pub default_cpu_limit: String,

    /// Default memory limit of containers that set none (LimitRange).
    #[arg(long, env = "DEFAULT_MEMORY_LIMIT", default_value = "512Mi")]
    pub default_memory_limit: String,
}

/// Extra commands; with none the service serves.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the OpenAPI document and exit.
    Openapi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where release reads come from (`RELEASE_READS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReleaseReads {
    /// Decode Helm's release records from the Kubernetes API.
    Storage,
    /// Run the helm CLI.
    Helm,
}

/// A configured secret: its `Debug` prints nothing of it, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// The secret itself, for the one place that must hand it on.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SecretString {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(..)")
    }
}

/// Environment variables helm may see; everything else (API keys included)
/// is withheld from the child.
const HELM_ENV_PASSTHROUGH: &[&str] = &[
    "HOME",
    "PATH",
    "TMPDIR",
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
];

impl Config {
    /// Reads `.env` (if present), then arguments and environment.
    pub fn load() -> Self {
        let _ = dotenvy::dotenv();
        Self::parse()
    }

    pub fn helm_timeout(&self) -> Duration {
        Duration::from_secs(self.helm_timeout)
    }

    /// Every accepted key from API_KEY and API_KEYS (not the file).
    pub fn static_keys(&self) -> Vec<String> {
        self.api_key
            .iter()
            .chain(self.api_keys.iter())
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect()
    }

    /// Where release reads come from: RELEASE_READS when set, else storage
    /// when HELM_DRIVER is one we read, else the helm CLI. A start-up error
    /// for drivers the operator cannot work with (e.g. `memory`, which keeps
    /// releases inside one helm process) and for storage reads of a driver
    /// we cannot read.
    pub fn effective_release_reads(&self) -> anyhow::Result<ReleaseReads> {
        let driver = self.helm_driver.as_str();
        let readable = StorageDriver::from_helm_driver(driver).is_some();
        match self.release_reads {
            _ if !readable && driver != "sql" => {
                bail!("HELM_DRIVER={driver} is not supported: use secret, configmap or sql")
            }
            Some(ReleaseReads::Storage) if !readable => bail!(
                "RELEASE_READS=storage needs HELM_DRIVER secret or configmap, not {driver}: use RELEASE_READS=helm"
            ),
            Some(reads) => Ok(reads),
            None if readable => Ok(ReleaseReads::Storage),
            None => Ok(ReleaseReads::Helm),
        }
    }

    /// The environment for helm children: the passthrough list, every
    /// `HELM_*` variable but HELM_BINARY, and the driver (with its SQL
    /// connection string) from this configuration.
    pub fn helm_child_env(&self) -> Vec<(OsString, OsString)> {
        const FROM_CONFIG: &[&str] = &[
            "HELM_BINARY",
            "HELM_DRIVER",
            "HELM_DRIVER_SQL_CONNECTION_STRING",
        ];
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(key, _)| {
                let key = key.to_string_lossy();
                HELM_ENV_PASSTHROUGH.contains(&key.as_ref())
                    || (key.starts_with("HELM_") && !FROM_CONFIG.contains(&key.as_ref()))
            })
            .collect();
        env.push(("HELM_DRIVER".into(), self.helm_driver.clone().into()));
        if let Some(connection) = &self.helm_driver_sql_connection_string {
            env.push((
                "HELM_DRIVER_SQL_CONNECTION_STRING".into(),
                connection.expose().into(),
            ));
        }
        // helm must act as the same identity as the operator.
        env.retain(|(key, _)| key != "KUBECONFIG");
        if let Some(path) = &self.kubeconfig {
            env.push(("KUBECONFIG".into(), path.clone().into()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_earlier_operator() {
        let config = Config::parse_from(["paas-operator"]);
        assert_eq!(config.port, 8000);
        assert_eq!(config.namespace_prefix, "paas-ws-");
        assert_eq!(config.helm_timeout, 300);
        assert!(config.command.is_none());
    }

    #[test]
    fn keys_are_merged_and_trimmed() {
        let config =
            Config::parse_from(["paas-operator", "--api-key", "a", "--api-keys", "b, c,,"]);
        assert_eq!(config.static_keys(), ["a", "b", "c"]);
    }

    fn reads(args: &[&str]) -> Result<ReleaseReads, String> {
        let args = ["paas-operator"].iter().chain(args);
        Config::parse_from(args)
            .effective_release_reads()
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
        assert_eq!(
            reads(&["--helm-driver", "sql", "--release-reads", "helm"]),
            Ok(ReleaseReads::Helm)
        );
        let refused = reads(&["--helm-driver", "sql", "--release-reads", "storage"]);
        assert!(refused.unwrap_err().contains("RELEASE_READS=helm"));
        for driver in ["memory", "etcd"] {
            let refused = reads(&["--helm-driver", driver, "--release-reads", "helm"]);
            assert!(refused.unwrap_err().contains("not supported"), "{driver}");
        }
    }

    #[test]
    fn sql_connection_string_reaches_helm_and_nothing_else() {
        let secret = "postgres://helm:hunter2@db.example:5432/helm";
        let config = Config::parse_from([
            "paas-operator",
            "--helm-driver",
            "sql",
            "--helm-driver-sql-connection-string",
            secret,
        ]);
        assert!(!format!("{config:?}").contains("hunter2"));
        let env = config.helm_child_env();
        let value = |key: &str| {
            env.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(value("HELM_DRIVER"), ["sql"]);
        assert_eq!(value("HELM_DRIVER_SQL_CONNECTION_STRING"), [secret]);
        let help = <Config as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains("HELM_DRIVER_SQL_CONNECTION_STRING"));
    }

    #[test]
    fn help_never_prints_key_values() {
        let help = <Config as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains("API_KEY"));
        assert!(help.contains("HELM_TIMEOUT"));
    }
}
