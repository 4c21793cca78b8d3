//! The helm binary and how it is run.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::list::seconds;
use super::secret::SecretString;

/// How helm runs, and where its release records live.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Helm")]
pub struct HelmConfig {
    /// The helm binary (Helm 3 or Helm 4), a path or a name on PATH.
    #[arg(long = "helm-binary", env = "HELM_BINARY", default_value = "helm")]
    pub binary: PathBuf,

    /// Seconds passed to helm as `--timeout`.
    #[arg(long = "helm-timeout", env = "HELM_TIMEOUT", default_value = "300", value_parser = seconds)]
    pub timeout: Duration,

    /// Seconds above HELM_TIMEOUT before the operator stops helm itself (SIGTERM).
    #[arg(long = "helm-deadline-margin", env = "HELM_DEADLINE_MARGIN", default_value = "15", value_parser = seconds)]
    pub deadline_margin: Duration,

    /// Helm 3 only: helm validates the checked documents against the API
    /// server's OpenAPI schema before it creates anything (about 90 ms of
    /// helm CPU per write). Off: the API server validates each object as
    /// it is created (types and required fields refused, unknown fields
    /// dropped with a warning), so a document it refuses stops the write
    /// part-way (release failed) instead of before it starts.
    #[arg(long = "helm3-openapi-validation", env = "HELM3_OPENAPI_VALIDATION", default_value_t = false, action = clap::ArgAction::Set)]
    pub helm3_openapi_validation: bool,

    /// Seconds between SIGTERM and SIGKILL when helm must be stopped.
    #[arg(long = "helm-kill-grace", env = "HELM_KILL_GRACE", default_value = "5", value_parser = seconds)]
    pub kill_grace: Duration,

    /// Seconds a release Lease outlives its last renewal. It is renewed
    /// every third of this while helm runs, so a replica that dies blocks
    /// its releases for at most this long.
    #[arg(long = "lease-ttl", env = "LEASE_TTL", default_value = "15", value_parser = seconds)]
    pub lease_ttl: Duration,

    /// Seconds between two recovery sweeps: releases left `pending-*` under
    /// a Lease without a live holder are marked failed. 0 = no sweep (the
    /// next write on such a release still recovers it).
    #[arg(long = "recovery-sweep-interval", env = "RECOVERY_SWEEP_INTERVAL", default_value = "5", value_parser = seconds)]
    pub recovery_sweep_interval: Duration,

    /// The pod's name (from the downward API): a restarted container then
    /// takes over its predecessor's Leases at once instead of after LEASE_TTL.
    #[arg(long = "pod-name", env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Most helm processes running at once.
    #[arg(
        long = "max-parallel-helm",
        env = "MAX_PARALLEL_HELM",
        default_value_t = 8
    )]
    pub max_parallel: usize,

    /// Seconds a request waits for a free helm slot before a 503.
    #[arg(long = "helm-queue-wait", env = "HELM_QUEUE_WAIT", default_value = "10", value_parser = seconds)]
    pub queue_wait: Duration,

    /// Most helm runs of one tenant namespace still rendering at once; its
    /// further installs and upgrades wait while other tenants get the free
    /// slots (0: no cap but MAX_PARALLEL_HELM).
    #[arg(
        long = "helm-tenant-slots",
        env = "HELM_TENANT_SLOTS",
        default_value_t = 2
    )]
    pub tenant_slots: usize,

    /// Seconds helm may take to pull and render a chart (and, with Helm 3,
    /// the operator's check of it); a chart still rendering then is refused
    /// (400 chart_too_complex) and nothing is created.
    #[arg(long = "helm-render-timeout", env = "HELM_RENDER_TIMEOUT", default_value = "60", value_parser = seconds)]
    pub render_timeout: Duration,

    /// MiB of memory (RLIMIT_DATA) each helm process may use; our go1.26
    /// helm needs about 124 just to start.
    #[arg(
        long = "helm-memory-limit",
        env = "HELM_MEMORY_LIMIT",
        default_value_t = 256
    )]
    pub memory_limit_mib: u64,

    /// CPU seconds (RLIMIT_CPU) each helm process may use.
    #[arg(long = "helm-cpu-limit", env = "HELM_CPU_LIMIT", default_value_t = 30)]
    pub cpu_limit: u64,

    /// MiB of resident memory all helm processes may use together; over it
    /// the largest is killed (keep it well below the pod's memory limit,
    /// 1 GiB in k8s/deployment.yaml; 0: not watched).
    #[arg(
        long = "helm-memory-budget",
        env = "HELM_MEMORY_BUDGET",
        default_value_t = 640
    )]
    pub memory_budget_mib: u64,

    /// Tenant namespaces with a `namespace` label of their own on the
    /// per-tenant helm metrics; later ones are counted as `other`.
    #[arg(
        long = "helm-metrics-tenants",
        env = "HELM_METRICS_TENANTS",
        default_value_t = 50
    )]
    pub metrics_tenants: usize,

    /// Seconds a request waits for another operation on the same release before a 409.
    #[arg(long = "release-lock-wait", env = "RELEASE_LOCK_WAIT", default_value = "5", value_parser = seconds)]
    pub lock_wait: Duration,

    /// Helm's storage driver: `secret` or `configmap` (read directly from
    /// the Kubernetes API), or `sql` (read through the helm CLI).
    #[arg(long = "helm-driver", env = "HELM_DRIVER", value_enum, default_value_t = HelmDriver::Secret)]
    pub driver: HelmDriver,

    /// Connection string of Helm's SQL driver (HELM_DRIVER=sql), passed to
    /// helm only. A secret: never logged, never printed.
    #[arg(
        long = "helm-driver-sql-connection-string",
        env = "HELM_DRIVER_SQL_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub sql_connection_string: Option<SecretString>,

    /// Where release reads come from: `storage` decodes Helm's records from
    /// the Kubernetes API (no helm process; HELM_DRIVER secret or configmap),
    /// `helm` asks the helm CLI (any driver; one or two helm processes per
    /// read). Default: storage when the driver is readable, else helm.
    #[arg(long, env = "RELEASE_READS", value_enum)]
    pub release_reads: Option<ReleaseReads>,
}

/// Helm's storage driver (`HELM_DRIVER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HelmDriver {
    /// One Secret per revision (Helm's default).
    #[value(alias = "secrets")]
    Secret,
    /// One ConfigMap per revision.
    #[value(alias = "configmaps")]
    Configmap,
    /// A SQL database (read through the helm CLI).
    Sql,
}

impl HelmDriver {
    /// As helm reads it from `HELM_DRIVER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Configmap => "configmap",
            Self::Sql => "sql",
        }
    }

    /// True when the operator reads the records itself from the Kubernetes API.
    pub fn readable(self) -> bool {
        !matches!(self, Self::Sql)
    }
}

/// Where release reads come from (`RELEASE_READS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReleaseReads {
    /// Decode Helm's release records from the Kubernetes API.
    Storage,
    /// Run the helm CLI.
    Helm,
}

/// Environment variables helm may see; everything else (API keys included)
/// is withheld from the child.
const HELM_ENV_PASSTHROUGH: &[&str] = &[
    "HOME",
    "PATH",
    "TMPDIR",
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

impl HelmConfig {
    /// Where release reads come from: RELEASE_READS when set, else storage
    /// when the driver is one we read, else the helm CLI. Storage reads of a
    /// driver we cannot read are a start-up error.
    pub fn effective_reads(&self) -> anyhow::Result<ReleaseReads> {
        match (self.release_reads, self.driver.readable()) {
            (Some(ReleaseReads::Storage), false) => bail!(
                "RELEASE_READS=storage needs HELM_DRIVER secret or configmap, not {}: use RELEASE_READS=helm",
                self.driver.as_str()
            ),
            (Some(reads), _) => Ok(reads),
            (None, true) => Ok(ReleaseReads::Storage),
            (None, false) => Ok(ReleaseReads::Helm),
        }
    }

    /// The environment for helm children: the passthrough list, every
    /// `HELM_*` variable of ours but HELM_BINARY, the driver (with its SQL
    /// connection string) from this configuration, and `KUBECONFIG` when the
    /// operator has one (helm acts with the operator's credentials; which
    /// identity it acts AS is given per run).
    pub fn child_env(&self, kubeconfig: Option<&PathBuf>) -> Vec<(OsString, OsString)> {
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
        env.push(("HELM_DRIVER".into(), self.driver.as_str().into()));
        if let Some(connection) = &self.sql_connection_string {
            env.push((
                "HELM_DRIVER_SQL_CONNECTION_STRING".into(),
                connection.expose().into(),
            ));
        }
        if let Some(path) = kubeconfig {
            env.push(("KUBECONFIG".into(), path.clone().into()));
        }
        env
    }

    /// How old a `pending-*` revision must be before we call it abandoned:
    /// no helm of ours runs longer than its timeout plus our deadline margin.
    pub fn stale_after(&self) -> Duration {
        self.timeout + self.deadline_margin
    }
}
