//! paas-operator: performs Helm operations over HTTP for a multi-tenant PaaS.
//!
//! # Layout
//! ```text
//!   HTTP ──> api/ (one file per resource; validating extractors; auth.rs)
//!              │                    │
//!              ▼                    ▼
//!            helm/                kube/
//!   (runner: spawns helm,     (tenant namespaces,
//!    storage: reads release    pods of a release,
//!    records, no helm;         cache: watch-fed index
//!    cli_reads: the same       answering reads with
//!    through helm, for sql)    no API call)
//!              │                    │
//!              └──────> Kubernetes API <──────┘
//! ```
//! - [`config`]: every option (flags and environment), in one clap parser.
//! - [`error`]: the one error type clients see, and how layer errors map to it.
//! - [`names`]: validated input types; nothing unvalidated reaches helm.
//! - [`model`]: the wire types of the contract with the platform.
//! - [`locks`]: one operation per release at a time, across replicas too
//!   (a Lease per release, [`kube::lease`]).
//! - [`metrics`]: the Prometheus recorder behind `GET /metrics`.
//!
//! The binary is also Helm 4's confinement post-renderer: helm runs it as
//! `paas-operator confine-check …` ([`helm::postrender`]), inside each
//! install and upgrade.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod helm;
pub mod kube;
pub mod locks;
pub mod metrics;
pub mod model;
pub mod names;

use std::ffi::OsString;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::api::{App, AppState};
use crate::auth::ApiKeys;
use crate::config::{Command, Config, LogFormat, ReleaseReads};
use crate::helm::postrender::{ConfinePlugin, resolve_checker};
use crate::helm::{
    Helm, HelmError, HelmRunner, HelmVersion, ReleaseStore, RunnerConfig, StorageDriver,
};
use crate::kube::ApiProbe;
use crate::kube::cache::{CacheSettings, ReadCache};
use crate::kube::discovery::ScopeCache;
use crate::kube::lease::ReleaseLeases;
use crate::locks::ReleaseLocks;
use crate::names::ChartPolicy;

/// The binary's entry point: logging, then serve (or print the OpenAPI document).
pub async fn run(config: Config) -> anyhow::Result<()> {
    if let Some(Command::Openapi) = config.command {
        println!("{}", openapi_json());
        return Ok(());
    }
    init_logging(&config);
    let address = format!("{}:{}", config.host, config.port);
    let grace = Duration::from_secs(config.shutdown_grace);
    let state = build_state(config).await?;
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    tracing::info!(%address, helm = %state.helm.version().text, "paas-operator listening");
    serve(state, listener, shutdown_signal(), grace).await
}

/// The OpenAPI document as pretty JSON.
pub fn openapi_json() -> String {
    api::openapi().to_pretty_json().unwrap_or_default()
}

/// Builds everything the handlers need; fails fast with one clear line
/// when helm cannot run, no key is configured, or there is no kubeconfig.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let keys = ApiKeys::new(
        &config.static_keys(),
        config.api_key_file.clone(),
        config.insecure_no_auth,
    )
    .context("cannot read API_KEY_FILE")?;
    if !keys.any() && !config.insecure_no_auth {
        bail!(
            "no API key configured: set API_KEY, API_KEYS or API_KEY_FILE (or pass --insecure-no-auth for local experiments)"
        );
    }
    for level in [&config.tenant.psa_enforce, &config.tenant.psa_warn] {
        if !matches!(level.as_str(), "privileged" | "baseline" | "restricted") {
            bail!("Pod Security level {level:?} is not privileged, baseline or restricted");
        }
    }
    keys.watch_file(Duration::from_secs(2));
    // Before the first helm run, so `helm version` is counted too.
    metrics::handle();
    let reads = config.effective_release_reads()?;
    let mut runner_config = RunnerConfig {
        binary: config.helm_binary.clone(),
        helm_timeout: config.helm_timeout(),
        deadline_margin: Duration::from_secs(config.helm_deadline_margin),
        kill_grace: Duration::from_secs(config.helm_kill_grace),
        max_parallel: config.max_parallel_helm,
        queue_wait: Duration::from_secs(config.helm_queue_wait),
        env: config.helm_child_env(),
    };
    // Helm's SQL driver connects to its database when any helm command
    // starts, `helm version` included. The version must not depend on it: the
    // service starts while the database is down (as while the cluster is).
    let version_runner = HelmRunner::new(RunnerConfig {
        env: without_storage_driver(&runner_config.env),
        ..runner_config.clone()
    });
    let version = Helm::detect_version(&version_runner)
        .await
        .map_err(|error| match error {
            HelmError::Spawn { source, .. } => {
                anyhow::anyhow!(
                    "helm binary {:?} cannot be run: {source}",
                    config.helm_binary
                )
            }
            other => anyhow::anyhow!(
                "helm binary {:?} is not Helm 3 or 4: {other}",
                config.helm_binary
            ),
        })?;
    let confine_plugin = confine_plugin(&config, &version).await?;
    if let Some(plugin) = &confine_plugin {
        runner_config.env.retain(|(key, _)| key != "HELM_PLUGINS");
        runner_config
            .env
            .push(("HELM_PLUGINS".into(), plugin.plugins_dir().into()));
    }
    let runner = HelmRunner::new(runner_config);
    let client = kube_client(&config).await?;
    let probe = ApiProbe::start(client.clone(), Duration::from_secs(5)).await;
    let chart_policy = ChartPolicy {
        allowed_sources: config
            .allowed_chart_sources
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        plain_http_registries: config
            .plain_http_registries
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        allow_http: config.allow_http_charts,
    };
    // A Lease outlives the longest operation: the slot wait, helm's own
    // timeout, our margin and the SIGTERM grace.
    let lease_duration = config.helm_timeout()
        + Duration::from_secs(
            config.helm_deadline_margin + config.helm_kill_grace + config.helm_queue_wait,
        );
    let leases = ReleaseLeases::new(
        client.clone(),
        format!("paas-operator-{}", uuid::Uuid::new_v4()),
        lease_duration,
    );
    let driver = StorageDriver::from_helm_driver(&config.helm_driver);
    let store = driver.map(|driver| ReleaseStore::new(client.clone(), driver));
    let mut helm = match (reads, store) {
        (ReleaseReads::Storage, Some(store)) => Helm::new(runner, store, version),
        (ReleaseReads::Helm, store) => Helm::with_cli_reads(runner, store, version),
        // `effective_release_reads` refuses this already.
        (ReleaseReads::Storage, None) => bail!(
            "HELM_DRIVER={} cannot be read from storage",
            config.helm_driver
        ),
    };
    tracing::info!(driver = %config.helm_driver, reads = ?reads, "release reads");
    if let Some(plugin) = confine_plugin {
        helm = helm.with_confine_plugin(plugin);
    }
    let scopes = ScopeCache::default();
    if config.confine_charts {
        // Discovery (a call per API group) now, not in the first write.
        let (scopes, client) = (scopes.clone(), client.clone());
        tokio::spawn(async move {
            if let Err(error) = scopes.get(&client).await {
                tracing::warn!(%error, "API discovery failed; the first install will retry it");
            }
        });
    }
    // The cache watches the records it decodes: only when reads come from storage.
    let cache = match (reads, driver) {
        (ReleaseReads::Storage, Some(driver)) if config.read_cache => ReadCache::start(
            client.clone(),
            driver,
            CacheSettings {
                max_namespaces: config.read_cache_namespaces,
                idle: Duration::from_secs(config.read_cache_idle),
            },
        ),
        _ => ReadCache::disabled(),
    };
    Ok(AppState(Arc::new(App {
        config,
        helm,
        client,
        keys,
        probe,
        locks: ReleaseLocks::with_leases(leases),
        cache,
        scopes,
        chart_policy,
    })))
}

/// A helm environment without the storage driver settings (helm then
/// uses its default driver, which connects to nothing when it starts).
fn without_storage_driver(env: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    env.iter()
        .filter(|(key, _)| key != "HELM_DRIVER" && key != "HELM_DRIVER_SQL_CONNECTION_STRING")
        .cloned()
        .collect()
}

/// With Helm 4 and `CONFINE_CHARTS`, the post-renderer plugin that checks
/// confinement inside each install/upgrade, in a private directory under
/// the temp dir (Helm 3 renders with `helm template` first instead).
async fn confine_plugin(
    config: &Config,
    version: &HelmVersion,
) -> anyhow::Result<Option<ConfinePlugin>> {
    if !config.confine_charts || version.major < 4 {
        return Ok(None);
    }
    let checker = match &config.confine_checker {
        Some(path) => path.clone(),
        None => {
            std::env::current_exe().context("cannot tell this binary's path for CONFINE_CHECKER")?
        }
    };
    let checker = resolve_checker(&checker)
        .with_context(|| format!("CONFINE_CHECKER {} cannot be run", checker.display()))?;
    let plugin = ConfinePlugin::install(&std::env::temp_dir(), &checker)
        .await
        .context("cannot write the confinement post-renderer plugin")?;
    Ok(Some(plugin))
}

/// The Kubernetes client: from `--kubeconfig`/KUBECONFIG when given, else
/// ~/.kube/config or the in-cluster ServiceAccount.
async fn kube_client(config: &Config) -> anyhow::Result<::kube::Client> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let file = ::kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            ::kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .with_context(|| format!("kubeconfig {} is not usable", path.display()))?
        }
        None => ::kube::Config::infer().await.context(
            "no Kubernetes configuration found (KUBECONFIG, ~/.kube/config or in-cluster)",
        )?,
    };
    ::kube::Client::try_from(kube_config).context("cannot build the Kubernetes client")
}

/// Serves until `shutdown` resolves, then lets in-flight requests (and the
/// helm processes they wait for) finish for up to `grace`.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let locks = state.locks.clone();
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        let _ = stopping_tx.send(());
    };
    let server = axum::serve(listener, api::app(state)).with_graceful_shutdown(signal);
    let server = tokio::spawn(async move { server.await });
    tokio::pin!(server);
    tokio::select! {
        finished = &mut server => return finished.context("server task failed")?.context("server failed"),
        _ = stopping_rx => {}
    }
    let outcome = match tokio::time::timeout(grace, &mut server).await {
        Ok(finished) => finished
            .context("server task failed")
            .and_then(|served| served.context("server failed")),
        Err(_) => {
            tracing::warn!(
                grace_s = grace.as_secs(),
                "in-flight requests did not finish within the grace period"
            );
            Ok(())
        }
    };
    // Answered operations give their Lease back in the background.
    locks.settle(LEASE_SETTLE).await;
    outcome
}

/// How long a stopping process waits for answered operations to give their
/// Leases back (one API call each).
const LEASE_SETTLE: Duration = Duration::from_secs(5);

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
