//! Start-up: turns the configuration into the running service (helm
//! detected, Kubernetes client, services wired), serves until a signal,
//! and shuts down gracefully. Fails fast with one clear line when helm
//! cannot run, no key is configured, or there is no kubeconfig.

use std::ffi::OsString;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::{App, AppState};
use crate::auth::ApiKeys;
use crate::charts::{ChartStore, StoreSettings};
use crate::config::{Command, Config, LogFormat};
use crate::egress::{AllowedHosts, EgressGuard};
use crate::exposure::{ExposureService, spawn_reconciler};
use crate::helm::home::HelmHome;
use crate::helm::postrender::{ConfinePlugin, resolve_checker};
use crate::helm::{Helm, HelmError, HelmRunner, RunnerConfig};
use crate::kube::ApiProbe;
use crate::kube::lease::{Identity, ReleaseLeases};
use crate::names::ChartPolicy;
use crate::releases::cache::ReadCache;
use crate::releases::locks::ReleaseLocks;
use crate::releases::recovery::spawn_sweep;
use crate::releases::{Parts, Reads, RecordKind, ReleaseService, ReleaseSettings, ReleaseStore};
use crate::render::confine::SchedulingRules;
use crate::tenants::TenantService;
use crate::tenants::policy::{PolicyState, ensure_cluster_policy};

/// The binary's entry point: logging, then serve (or print the OpenAPI
/// document, or migrate).
pub async fn run(config: Config) -> anyhow::Result<()> {
    match &config.command {
        Some(Command::Openapi) => {
            println!("{}", crate::api::openapi_json());
            return Ok(());
        }
        Some(Command::Migrate(args)) => {
            init_logging(&config);
            let services = build_services(&config, Role::Command)
                .await
                .context("cannot reach the cluster with the service's settings")?;
            let peers = crate::migrate::Services {
                releases: &services.releases,
                tenants: &services.tenants,
                exposure: &services.exposure,
                client: &services.client,
            };
            return crate::migrate::run(peers, &config, args).await;
        }
        None => {}
    }
    init_logging(&config);
    let address = config.server.address();
    let grace = config.server.shutdown_grace;
    let state = build_state(config).await?;
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    tracing::info!(%address, helm = %state.releases.helm_version(), "paas-operator listening");
    serve(state, listener, shutdown_signal(), grace).await
}

/// Builds everything the handlers need.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let keys = api_keys(&config)?;
    // Before the first helm run, so `helm version` is counted too.
    crate::metrics::handle();
    let Services {
        releases,
        tenants,
        exposure,
        client,
    } = build_services(&config, Role::Serve).await?;
    let probe = ApiProbe::start(client).await;
    let releases = Arc::new(releases);
    // Routes reconciled now (in the background) and periodically.
    spawn_reconciler(
        exposure.clone(),
        Arc::downgrade(&releases),
        config.exposure.exposure_reconcile_interval,
    );
    // Releases left pending by a helm that is gone (a replica that died, an
    // operation that ended in doubt) are recovered without waiting for a write.
    spawn_sweep(
        Arc::downgrade(&releases),
        config.helm.recovery_sweep_interval,
    );
    Ok(AppState(Arc::new(App {
        chart_policy: ChartPolicy::from_config(&config.charts),
        keys,
        probe,
        releases,
        tenants,
        exposure,
        config,
    })))
}

/// What the release service is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP service: the tenant policy applied, reads cached.
    Serve,
    /// A one-off command (`migrate`): nothing started beside it.
    Command,
}

/// The services, built once and shared: the release service holds its own
/// handles on the tenant and exposure services, which it orchestrates.
pub struct Services {
    pub releases: ReleaseService,
    pub tenants: TenantService,
    pub exposure: ExposureService,
    /// The operator's Kubernetes client (for requests).
    pub client: ::kube::Client,
}

/// The services (helm detected, Kubernetes clients, tenants and exposure
/// wired into the release service).
pub async fn build_services(config: &Config, role: Role) -> anyhow::Result<Services> {
    let reads = config.helm.effective_reads()?;
    let lease_timing = config.helm.lease_timing();
    lease_timing.check().map_err(anyhow::Error::msg)?;
    let KubeClients {
        requests: client,
        watches,
        config: client_config,
    } = kube_clients(config).await?;
    let helm = helm(config, &client_config).await?;
    if role == Role::Serve && config.tenant.manage_tenant_policy {
        tenant_policy(&client, &config.tenant).await;
    }
    let identity = Identity::of_this_process(config.helm.pod_name.as_deref());
    tracing::info!(
        identity = identity.as_str(),
        lease_ttl_s = lease_timing.ttl.as_secs(),
        "release leases"
    );
    let leases = ReleaseLeases::new(client.clone(), identity, lease_timing);
    let kind = RecordKind::of(config.helm.driver);
    let store = kind.map(|kind| ReleaseStore::new(client.clone(), kind));
    let reads = Reads::new(reads, store)?;
    tracing::info!(
        driver = config.helm.driver.as_str(),
        storage_reads = matches!(reads, Reads::Storage(_)),
        "release reads"
    );
    // The cache watches the records it decodes: only when reads come from
    // storage, and only for the service.
    let cache = match (&reads, kind) {
        (Reads::Storage(_), Some(kind)) if role == Role::Serve => ReadCache::start(
            watches.clone(),
            kind,
            config.cache.clone(),
            &config.tenant.namespace_prefix,
        ),
        _ => ReadCache::disabled(),
    };
    let exposure = ExposureService::start(
        client.clone(),
        watches,
        &config.exposure,
        &format!("paas-operator-{}", uuid::Uuid::new_v4()),
    )?;
    // With exposure on, tenant NetworkPolicies admit the tunnel connector.
    let tenant_policy = config
        .exposure
        .tenant_policy(&config.tenant, exposure.backend());
    let admitted = admitted_namespaces(config, &tenant_policy);
    let tenants = TenantService::new(client.clone(), client_config, tenant_policy, admitted);
    let charts = chart_store(config)?;
    let releases = ReleaseService::new(Parts {
        helm,
        charts,
        client: client.clone(),
        reads,
        cache,
        locks: ReleaseLocks::with_leases(leases),
        tenants: tenants.clone(),
        settings: release_settings(config),
        exposure: exposure.clone(),
    });
    Ok(Services {
        releases,
        tenants,
        exposure,
        client,
    })
}

/// What the release service is configured with.
fn release_settings(config: &Config) -> ReleaseSettings {
    ReleaseSettings {
        lock_wait: config.helm.lock_wait,
        stale_after: config.helm.stale_after(),
        confine: config.charts.confine_charts,
        allowed_cluster_kinds: config
            .charts
            .allowed_cluster_kinds
            .items()
            .iter()
            .cloned()
            .collect(),
        tenant_account: config.tenant.tenant_service_account.clone(),
        app_access: config.apps.app_access,
        n8n_ready_timeout: config.apps.n8n_ready_timeout,
        namespace_prefix: config.tenant.namespace_prefix.clone(),
        scheduling: SchedulingRules {
            priority_classes: config.tenant.allowed_priority_classes.items().to_vec(),
            toleration_keys: config.tenant.allowed_toleration_keys.items().to_vec(),
            runtime_classes: config.tenant.allowed_runtime_classes.items().to_vec(),
        },
    }
}

/// The accepted API keys; refuses to start without one unless told to.
fn api_keys(config: &Config) -> anyhow::Result<ApiKeys> {
    let auth = &config.auth;
    let keys = ApiKeys::new(
        &auth.static_keys(),
        auth.api_key_file.clone(),
        auth.insecure_no_auth,
    )
    .context("cannot read API_KEY_FILE")?;
    if !keys.any() && !auth.insecure_no_auth {
        bail!(
            "no API key configured: set API_KEY, API_KEYS or API_KEY_FILE (or pass --insecure-no-auth for local experiments)"
        );
    }
    keys.watch_file(Duration::from_secs(2));
    Ok(keys)
}

/// The helm client: its version detected, and with Helm 4 and confinement
/// the post-renderer plugin that checks inside each run.
async fn helm(config: &Config, kube_config: &::kube::Config) -> anyhow::Result<Helm> {
    let settings = &config.helm;
    // Orphaned helm children (a checker whose helm was killed) come to us,
    // as they would to PID 1 in the container, and are reaped by the runner.
    crate::helm::procs::become_subreaper();
    crate::metrics::set_tenant_label_cap(settings.metrics_tenants);
    let helper = helper_binary(config)?;
    let mut runner_config = RunnerConfig {
        binary: settings.binary.clone(),
        helper: Some(helper.clone()),
        limits: settings.process_limits(),
        helm_timeout: settings.timeout,
        deadline_margin: settings.deadline_margin,
        kill_grace: settings.kill_grace,
        render_timeout: settings.render_timeout,
        max_parallel: settings.max_parallel,
        tenant_slots: settings.tenant_slots,
        queue_wait: settings.queue_wait,
        memory_budget: settings.memory_budget_mib.saturating_mul(1 << 20),
        env: settings.child_env(config.kubeconfig.as_ref()),
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
                anyhow::anyhow!("helm binary {:?} cannot be run: {source}", settings.binary)
            }
            other => anyhow::anyhow!(
                "helm binary {:?} is not Helm 3 or 4: {other}",
                settings.binary
            ),
        })?;
    let plugin = confine_plugin(&helper).await?;
    if let (Some(plugin), true) = (&plugin, version.major >= 4) {
        runner_config.env.retain(|(key, _)| key != "HELM_PLUGINS");
        runner_config
            .env
            .push(("HELM_PLUGINS".into(), plugin.plugins_dir().into()));
    }
    let egress = egress_guard(kube_config).await?;
    let direct = direct_hosts(kube_config);
    let proxied = egress.child_env(&direct);
    runner_config.env.retain(|(key, _)| {
        !proxied
            .iter()
            .any(|(proxy_key, _)| key == proxy_key.as_str())
    });
    runner_config
        .env
        .extend(proxied.into_iter().map(|(k, v)| (k.into(), v.into())));
    let home = HelmHome::create(&std::env::temp_dir())
        .context("cannot create helm's private cache and config directories")?;
    home.add_to(&mut runner_config.env);
    let mut helm = Helm::new(
        HelmRunner::new(runner_config),
        version,
        &config.tenant.tenant_service_account,
    )
    .with_egress_guard(Some(egress))
    .with_home(home)
    .with_helm3_openapi_validation(settings.helm3_openapi_validation);
    if let Some(plugin) = plugin {
        helm = helm.with_confine_plugin(plugin);
    }
    Ok(helm)
}

/// The namespaces whose pods may reach tenant pods: those configured, the
/// platform's (it calls the MCP sidecars), and the operator's own when it
/// reaches apps directly (the n8n bootstrap).
fn admitted_namespaces(config: &Config, tenant: &crate::config::TenantConfig) -> Vec<String> {
    let mut admitted = tenant.network_allowed_namespaces.items().to_vec();
    if !config.apps.platform_namespace.is_empty() {
        admitted.push(config.apps.platform_namespace.clone());
    }
    if config.apps.app_access == crate::config::AppAccess::Direct
        && let Some((namespace, _)) = config.tenant.operator_service_account.split_once('/')
    {
        admitted.push(namespace.to_owned());
    }
    admitted.sort();
    admitted.dedup();
    admitted
}

/// Applies the built-in tenant policy when this identity may; a cluster
/// that cannot be reached now gets it at the next start.
async fn tenant_policy(client: &::kube::Client, settings: &crate::config::TenantConfig) {
    match ensure_cluster_policy(client, settings).await {
        Ok(PolicyState::Applied(count)) => {
            tracing::info!(
                objects = count,
                "tenant policy applied (ClusterRole paas-tenant, admission policies)"
            );
        }
        Ok(PolicyState::NotOurs) => {
            tracing::info!("tenant policy left to the deployment (k8s/tenant-policy.yaml)");
        }
        Err(error) => tracing::warn!(%error, "tenant policy not applied"),
    }
}

/// The fetcher and cache of charts: the operator downloads and inspects
/// every chart itself, from the allowed sources' hosts and
/// CHART_FETCH_HOSTS only (any host with `ALLOWED_CHART_SOURCES=*`).
fn chart_store(config: &Config) -> anyhow::Result<Arc<ChartStore>> {
    let policy = ChartPolicy::from_config(&config.charts);
    if policy.allowed_sources.is_empty() {
        bail!("ALLOWED_CHART_SOURCES is empty: name the chart sources to accept (or * for any)");
    }
    let hosts = policy.fetch_hosts();
    match &hosts {
        AllowedHosts::Any => tracing::warn!(
            "ALLOWED_CHART_SOURCES=*: charts are fetched from any host, loopback and private networks included (for development)"
        ),
        AllowedHosts::Only(hosts) => {
            tracing::info!(?hosts, "charts are fetched from these hosts only")
        }
    }
    let store = ChartStore::new(StoreSettings {
        policy,
        fetch_timeout: config.charts.chart_fetch_timeout,
        cache_parent: std::env::temp_dir(),
        cache_bytes: config.charts.chart_cache_mb.saturating_mul(1 << 20),
    })
    .context("cannot set up the chart cache")?;
    tracing::info!(dir = %store.cache().dir().display(), "chart cache");
    Ok(Arc::new(store))
}

/// helm's proxy: it admits no host at all. helm is only given local
/// archives and needs nothing but the Kubernetes API (left direct), so
/// anything else it tries (a schema reference the inspection missed, say)
/// is refused and counted. Go never proxies loopback, which the inspection
/// covers instead.
async fn egress_guard(kube_config: &::kube::Config) -> anyhow::Result<EgressGuard> {
    let guard = EgressGuard::start(AllowedHosts::none())
        .await
        .context("cannot start helm's egress guard")?;
    tracing::info!(proxy = %guard.proxy_url(), direct = ?direct_hosts(kube_config), "helm reaches nothing but the Kubernetes API");
    Ok(guard)
}

/// Where helm connects directly: the Kubernetes API.
fn direct_hosts(kube_config: &::kube::Config) -> Vec<String> {
    let mut hosts: Vec<String> = kube_config
        .cluster_url
        .host()
        .map(str::to_owned)
        .into_iter()
        .collect();
    if let Ok(host) = std::env::var("KUBERNETES_SERVICE_HOST") {
        hosts.push(host);
    }
    hosts
}

/// A helm environment without the storage driver settings (helm then
/// uses its default driver, which connects to nothing when it starts).
fn without_storage_driver(env: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    env.iter()
        .filter(|(key, _)| key != "HELM_DRIVER" && key != "HELM_DRIVER_SQL_CONNECTION_STRING")
        .cloned()
        .collect()
}

/// This binary, absolute (`CONFINE_CHECKER` when the operator runs inside
/// another executable, as in the end-to-end tests): helm is started through
/// its launcher (limits), and its checker checks renderings.
fn helper_binary(config: &Config) -> anyhow::Result<std::path::PathBuf> {
    let checker = match &config.charts.confine_checker {
        Some(path) => path.clone(),
        None => {
            std::env::current_exe().context("cannot tell this binary's path for CONFINE_CHECKER")?
        }
    };
    resolve_checker(&checker)
        .with_context(|| format!("CONFINE_CHECKER {} cannot be run", checker.display()))
}

/// The checker's files, in a private directory under the temp dir: with
/// Helm 4 also the post-renderer plugin that checks confinement (and adds
/// the operator's additions) inside each install/upgrade; with Helm 3 the
/// operator runs the checker itself on a dry run's rendering.
async fn confine_plugin(checker: &std::path::Path) -> anyhow::Result<Option<ConfinePlugin>> {
    let plugin = ConfinePlugin::install(&std::env::temp_dir(), checker)
        .await
        .context("cannot write the confinement post-renderer plugin")?;
    Ok(Some(plugin))
}

/// The Kubernetes clients, from one configuration.
pub struct KubeClients {
    /// For requests: every call bounded (`crate::kube::for_requests`), a
    /// 429 resent a few times (`crate::kube::throttle`).
    pub requests: ::kube::Client,
    /// For watches (the read cache, the route index): no read timeout
    /// (`crate::kube::for_watches`).
    pub watches: ::kube::Client,
    /// The configuration both came from (helm gets the same kubeconfig).
    pub config: ::kube::Config,
}

/// The Kubernetes clients: from `--kubeconfig`/KUBECONFIG when given, else
/// ~/.kube/config or the in-cluster ServiceAccount.
pub async fn kube_clients(config: &Config) -> anyhow::Result<KubeClients> {
    let kube_config = kube_config(config).await?;
    let requests = crate::kube::throttle::client(crate::kube::for_requests(kube_config.clone()))
        .context("cannot build the Kubernetes client")?;
    let watches = ::kube::Client::try_from(crate::kube::for_watches(kube_config.clone()))
        .context("cannot build the Kubernetes client for watches")?;
    Ok(KubeClients {
        requests,
        watches,
        config: kube_config,
    })
}

async fn kube_config(config: &Config) -> anyhow::Result<::kube::Config> {
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
    Ok(kube_config)
}

/// Serves until `shutdown` resolves, then lets in-flight requests (and the
/// helm processes they wait for) finish for up to `grace`.
///
/// Every connection is bounded: a client must send a request's headers
/// within `HEADER_READ_TIMEOUT` (also the idle time of a kept-alive
/// connection) and its body within `BODY_READ_TIMEOUT` (see the API's body
/// limit), and at most `MAX_CONNECTIONS` are served at once; the rest wait
/// in the listen queue.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let limits = state.config.server.clone();
    let app = crate::api::app(state.clone());
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.context("connection slots closed")?,
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: let the others go on.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A dropped client or a header timeout ends the connection.
            let _ = connection.await;
            drop(permit);
        });
    }
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    drop(listener);
    let drained = graceful.shutdown();
    let mut drained = std::pin::pin!(drained);
    if tokio::time::timeout(grace, &mut drained).await.is_err() {
        // Past the grace: every helm still running is asked to stop
        // (SIGTERM lets it mark its release failed; SIGKILL after
        // HELM_KILL_GRACE), its release is repaired if left pending, its
        // Lease given back, and its request answered 503 helm_interrupted.
        tracing::warn!(
            grace_s = grace.as_secs(),
            "in-flight requests did not finish within the grace period; stopping their helm"
        );
        state.releases.stop_operations();
        let stop = state.config.helm.kill_grace + STOP_REPAIR;
        if tokio::time::timeout(stop, &mut drained).await.is_err() {
            tracing::warn!("requests still open after their helm was stopped; closing them");
        }
    }
    // Answered operations give their Lease back in the background.
    state.releases.settle(LEASE_SETTLE).await;
    // No helm child outlives the process: each was stopped and reaped
    // above; a run that held no release (none should be left) is killed
    // here, and the last reaping waited for.
    state.releases.kill_remaining_helm();
    if !state.releases.wait_helm_exited(HELM_REAPED).await {
        tracing::error!("a helm process is still running at exit");
    }
    Ok(())
}

// After SHUTDOWN_GRACE the process exits within HELM_KILL_GRACE +
// STOP_REPAIR + LEASE_SETTLE + HELM_REAPED (5 + 9 s by default), inside
// the pod's terminationGracePeriodSeconds (docs/deploy.md).

/// After helm was stopped at shutdown: time to read and repair its release
/// and answer (beyond HELM_KILL_GRACE).
const STOP_REPAIR: Duration = Duration::from_secs(5);
/// How long a stopping process waits for answered operations to give their
/// Leases back (one API call each).
const LEASE_SETTLE: Duration = Duration::from_secs(3);
/// How long the last helm child may take to be reaped.
const HELM_REAPED: Duration = Duration::from_secs(1);

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
    let filter = tracing_subscriber::EnvFilter::try_new(&config.server.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match config.server.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
