//! Runs the helm binary as a child process without blocking the runtime.
//!
//! - argv only, built by [`super::command`]; the environment is cleared and
//!   only what helm needs is passed on (never our API keys), plus, with
//!   Helm 4 and confinement, `HELM_PLUGINS` for the operator's own
//!   post-renderer plugin ([`super::postrender`]);
//! - values are written to helm's stdin and never touch the disk;
//! - every run is a **process group** of its own (helm leads it; the
//!   checker helm starts joins it), started through this binary's launcher
//!   ([`super::limits`]) so its memory, CPU and files are limited before
//!   helm runs. After helm ends, for any reason, whatever is left of the
//!   group is killed and its orphans reaped ([`super::procs`]);
//! - slots are shared fairly between tenant namespaces
//!   ([`super::slots`]); a caller waits a bounded time for one, then gets
//!   [`HelmError::Busy`];
//! - **deadlines**: helm gets its own `--timeout`; our deadline sits above
//!   it and covers the whole run (pull, render, check, apply). On the
//!   deadline, or when the caller goes away (its future is dropped), the
//!   group gets SIGTERM (helm then marks the release failed) and SIGKILL
//!   only after a grace period, because a SIGKILLed helm leaves the release
//!   stuck in `pending-*`. Rendering has a deadline of its own
//!   ([`RenderWatch`]): helm ignores SIGTERM while it renders and its
//!   `--timeout` does not cover rendering, but nothing is created before
//!   rendering is done, so a run still rendering at the render deadline is
//!   killed at once;
//! - a **watchdog** samples the memory of every running group a few times
//!   a second and, when together they pass the budget, kills the largest;
//! - stderr is logged at warn with the release it belongs to (field
//!   `release`: `target` would collide with the log line's own target in
//!   JSON) and never returned.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, oneshot};
use tracing::Instrument;

use super::error::{Death, HelmError, Limit, classify};
use super::limits::{LAUNCHER_SUBCOMMAND, Limits};
use super::procs;
use super::slots::{FairSlots, Slot};

/// Settings of the runner, from the configuration.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub binary: PathBuf,
    /// This binary (absolute): the launcher that sets the limits, and the
    /// confinement checker. `None` (unit tests only): programs run directly,
    /// without limits.
    pub helper: Option<PathBuf>,
    /// What each helm process may use.
    pub limits: Limits,
    /// Passed to helm as `--timeout`.
    pub helm_timeout: Duration,
    /// Extra time above `helm_timeout` before we signal helm ourselves.
    pub deadline_margin: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// How long rendering may take (see [`RenderWatch`]).
    pub render_timeout: Duration,
    /// Most helm processes at once.
    pub max_parallel: usize,
    /// Most helm processes of one tenant namespace at once (0: no cap).
    pub tenant_slots: usize,
    /// How long a request waits for a free helm slot.
    pub queue_wait: Duration,
    /// Most resident memory of all helm process groups together, bytes
    /// (0: not watched).
    pub memory_budget: u64,
    /// The child's whole environment.
    pub env: Vec<(OsString, OsString)>,
}

/// The program one invocation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// The helm binary.
    Helm,
    /// This binary's confinement checker (Helm 3 checks a dry run's
    /// rendering with it).
    Checker,
}

/// When an invocation renders a chart, and so falls under the render
/// deadline; a run that dies while rendering created nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderWatch {
    /// Not a rendering (or not one we can watch): only the deadline.
    None,
    /// The whole run renders (a dry run, the checker).
    Whole,
    /// Rendering ends when `started` appears (the checker, which helm runs
    /// once the templates are rendered); nothing is created before `done`
    /// appears (the checker passed the rendering on).
    UntilMark { started: PathBuf, done: PathBuf },
}

impl RenderWatch {
    /// True while nothing can have been created yet.
    fn still_rendering(&self) -> bool {
        match self {
            Self::None => false,
            Self::Whole => true,
            Self::UntilMark { done, .. } => !done.exists(),
        }
    }
}

/// One helm invocation and what it is about (for logs and errors).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub operation: &'static str,
    /// `namespace/name`, or empty for commands about no release.
    pub target: String,
    pub args: Vec<String>,
    pub stdin: Option<Vec<u8>>,
    pub program: Program,
    pub render: RenderWatch,
    /// Renders nothing; runs with [`Limits::for_records`].
    pub records_only: bool,
}

impl Invocation {
    /// helm with `args`, not rendering anything we watch.
    pub fn helm(
        operation: &'static str,
        target: String,
        args: Vec<String>,
        stdin: Option<Vec<u8>>,
    ) -> Self {
        Self {
            operation,
            target,
            args,
            stdin,
            program: Program::Helm,
            render: RenderWatch::None,
            records_only: false,
        }
    }

    /// The tenant namespace the run is for (empty when none).
    fn tenant(&self) -> &str {
        self.target
            .split_once('/')
            .map_or("", |(namespace, _)| namespace)
    }
}

/// What a successful helm run printed on stdout.
#[derive(Debug)]
pub struct HelmOutput {
    pub stdout: Vec<u8>,
}

/// Spawns helm; cheap to clone.
#[derive(Clone)]
pub struct HelmRunner {
    config: Arc<RunnerConfig>,
    slots: Arc<FairSlots>,
    groups: Arc<Groups>,
}

impl HelmRunner {
    pub fn new(config: RunnerConfig) -> Self {
        let slots = FairSlots::new(config.max_parallel, config.tenant_slots);
        Self {
            config: Arc::new(config),
            slots,
            groups: Arc::new(Groups::default()),
        }
    }

    pub fn helm_timeout(&self) -> Duration {
        self.config.helm_timeout
    }

    /// Number of helm processes running now.
    pub fn in_flight(&self) -> usize {
        self.slots.in_use()
    }

    /// Sends `signal` to every running helm process group (at shutdown:
    /// SIGTERM lets helm mark its release failed).
    pub fn signal_all(&self, signal: Signal) {
        for pgid in self.groups.live() {
            procs::signal_group(pgid, signal);
        }
    }

    /// True when checks run in a process of their own (this binary's
    /// checker), not in the operator.
    pub fn has_helper(&self) -> bool {
        self.config.helper.is_some()
    }

    /// True when the helm binary still exists and is executable (for
    /// `/ready`): a path is checked as is, a bare name is looked up in the
    /// child's PATH, as the spawn would.
    pub async fn binary_runnable(&self) -> bool {
        let binary = &self.config.binary;
        if binary.components().count() > 1 {
            return is_executable(binary).await;
        }
        let path = self
            .config
            .env
            .iter()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        for dir in std::env::split_paths(&path) {
            if is_executable(&dir.join(binary)).await {
                return true;
            }
        }
        false
    }

    /// Runs helm to completion, or until a deadline or a limit, or until
    /// the returned future is dropped.
    pub async fn run(&self, invocation: Invocation) -> Result<HelmOutput, HelmError> {
        let tenant = invocation.tenant().to_owned();
        crate::metrics::helm_slots_waiting(self.slots.waiting() + 1);
        let renders = invocation.render != RenderWatch::None;
        let slot = self
            .slots
            .acquire(&tenant, renders, self.config.queue_wait)
            .await;
        crate::metrics::helm_slots_waiting(self.slots.waiting());
        let Ok(mut slot) = slot else {
            crate::metrics::helm_refused(&tenant, "busy");
            return Err(HelmError::Busy);
        };
        self.groups.start_watchdog(self.config.memory_budget);
        let started = Instant::now();
        let (done_tx, done_rx) = oneshot::channel();
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        let config = self.config.clone();
        let groups = self.groups.clone();
        let operation = invocation.operation;
        let target = invocation.target.clone();
        // The supervisor keeps the request's span (so helm's stderr lines
        // carry the request id) and records metrics even when the caller
        // goes away. It holds the slot until the group is gone.
        let supervised = async move {
            let in_flight = crate::metrics::HelmInFlight::start();
            let outcome = supervise(&config, &groups, invocation, &mut slot, cancel_rx).await;
            drop(in_flight);
            let elapsed = started.elapsed();
            crate::metrics::helm_operation(operation, outcome_label(&outcome), elapsed);
            crate::metrics::helm_tenant_seconds(slot.tenant(), elapsed);
            if let Err(HelmError::TooComplex { limit, .. }) = &outcome {
                crate::metrics::helm_refused(slot.tenant(), limit.label());
            }
            drop(slot);
            let _ = done_tx.send(outcome);
        };
        tokio::spawn(supervised.in_current_span());
        // Dropping `cancel_tx` (when this future is dropped) tells the
        // supervisor the caller went away.
        let outcome = done_rx.await.unwrap_or(Err(HelmError::Cancelled));
        drop(cancel_tx);
        let elapsed = started.elapsed();
        match &outcome {
            Ok(_) => tracing::info!(
                operation,
                release = %target,
                elapsed_ms = elapsed.as_millis() as u64,
                "helm succeeded"
            ),
            Err(error) => {
                tracing::warn!(operation, release = %target, elapsed_ms = elapsed.as_millis() as u64, %error, "helm failed")
            }
        }
        outcome
    }
}

/// The command line of one invocation: through the launcher (limits) when
/// there is one.
fn command(config: &RunnerConfig, invocation: &Invocation) -> Result<Command, HelmError> {
    let program = match invocation.program {
        Program::Helm => config.binary.clone(),
        Program::Checker => config.helper.clone().ok_or_else(|| HelmError::Spawn {
            operation: invocation.operation,
            source: std::io::Error::other("no checker binary"),
        })?,
    };
    let mut command = match &config.helper {
        Some(helper) => {
            let mut command = Command::new(helper);
            command
                .arg(LAUNCHER_SUBCOMMAND)
                .args(if invocation.records_only {
                    config.limits.for_records().args()
                } else {
                    config.limits.args()
                })
                .arg("--")
                .arg(program);
            command
        }
        None => Command::new(program),
    };
    command
        .args(&invocation.args)
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(if invocation.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: killed as one, and signals sent to the
        // operator's group (a terminal's Ctrl-C) do not reach it.
        .process_group(0)
        .kill_on_drop(false);
    Ok(command)
}

/// How a supervised run ended.
enum Ended {
    Exited(std::process::ExitStatus),
    Deadline,
    RenderTimeout,
    MemoryBudget,
    Cancelled,
}

/// Owns the child from spawn to exit, whatever happens to the caller.
async fn supervise(
    config: &RunnerConfig,
    groups: &Arc<Groups>,
    mut invocation: Invocation,
    slot: &mut Slot,
    mut cancelled: oneshot::Receiver<()>,
) -> Result<HelmOutput, HelmError> {
    let operation = invocation.operation;
    let mut child = command(config, &invocation)?
        .spawn()
        .map_err(|source| HelmError::Spawn { operation, source })?;
    let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        // Exited and reaped already: nothing of the group can be left.
        let _ = child.wait().await;
        return Err(HelmError::Spawn {
            operation,
            source: std::io::Error::other("helm exited at once"),
        });
    };
    let (killed_tx, mut killed) = oneshot::channel();
    let registration = groups.register(pgid, killed_tx);
    let stdin_task = invocation.stdin.take().and_then(|bytes| {
        let mut pipe = child.stdin.take()?;
        Some(tokio::spawn(async move {
            // A write error means helm exited early; its status says why.
            let _ = pipe.write_all(&bytes).await;
            let _ = pipe.shutdown().await;
        }))
    });
    let stdout = read_all(child.stdout.take(), MAX_STDOUT);
    let stderr = read_all(child.stderr.take(), MAX_STDERR);

    let target = invocation.target.as_str();
    let deadline = config.helm_timeout + config.deadline_margin;
    let ended = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ended::Exited(status),
            Err(source) => {
                procs::signal_group(pgid, Signal::SIGKILL);
                let _ = child.wait().await;
                drop(registration);
                procs::clear_group(pgid, CLEAR_LIMIT).await;
                return Err(HelmError::Spawn { operation, source });
            }
        },
        _ = tokio::time::sleep(deadline) => {
            tracing::error!(operation, release = %target, deadline_s = deadline.as_secs(), "helm passed its deadline; stopping it");
            terminate(&mut child, pgid, config.kill_grace, operation, target).await;
            Ended::Deadline
        }
        _ = render_overdue(&invocation.render, config.render_timeout, || slot.rendering_done()) => {
            // Nothing is created while rendering, and helm does not act on
            // SIGTERM then: kill it now.
            tracing::warn!(operation, release = %target, render_timeout_s = config.render_timeout.as_secs(), "rendering passed its deadline; killing helm");
            procs::signal_group(pgid, Signal::SIGKILL);
            let _ = child.wait().await;
            Ended::RenderTimeout
        }
        Ok(()) = &mut killed => {
            // The watchdog sent SIGKILL already.
            let _ = child.wait().await;
            Ended::MemoryBudget
        }
        _ = &mut cancelled => {
            tracing::warn!(operation, release = %target, "caller went away; stopping helm");
            terminate(&mut child, pgid, config.kill_grace, operation, target).await;
            Ended::Cancelled
        }
    };
    // Whatever ended it, nothing of the group outlives it (an orphaned
    // checker included).
    let cpu_used = groups.cpu_used(pgid);
    drop(registration);
    let reaped = procs::clear_group(pgid, CLEAR_LIMIT).await;
    if reaped > 0 {
        tracing::warn!(operation, release = %target, reaped, "killed and reaped what helm left behind");
    }
    if let Some(task) = stdin_task {
        task.abort();
    }
    let stdout = stdout.await.ok();
    let stderr = stderr.await.map(|c| c.bytes).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let target = invocation.target.clone();
    let rendering = invocation.render.still_rendering();
    let status = match ended {
        Ended::Exited(status) => status,
        Ended::Deadline => return Err(HelmError::DeadlineExceeded { operation, target }),
        Ended::Cancelled => return Err(HelmError::Cancelled),
        Ended::RenderTimeout => {
            return Err(HelmError::TooComplex {
                operation,
                target,
                limit: Limit::RenderTime,
            });
        }
        Ended::MemoryBudget => {
            tracing::warn!(operation, release = %target, stderr = %stderr.trim(), "helm killed over the memory budget");
            return Err(died(operation, target, Death::MemoryBudget, rendering));
        }
    };
    if status.success() {
        let Some(stdout) = stdout.filter(|out| !out.truncated).map(|out| out.bytes) else {
            tracing::error!(operation, release = %target, limit = MAX_STDOUT, "helm printed more than the operator reads; its output is dropped");
            return Err(HelmError::OutputTooLarge { operation });
        };
        if !stderr.trim().is_empty() {
            // Warnings only (deprecations, Pod Security); worth seeing.
            tracing::warn!(operation, release = %target, stderr = %stderr.trim(), "helm stderr");
        }
        return Ok(HelmOutput { stdout });
    }
    tracing::warn!(operation, release = %target, exit = ?status.code(), signal = ?status.signal(), stderr = %stderr.trim(), "helm exited with an error");
    if status.code() == Some(LAUNCHER_CANNOT_RUN) && stderr.starts_with(LAUNCHER_SUBCOMMAND) {
        return Err(HelmError::Spawn {
            operation,
            source: std::io::Error::other(stderr.trim().to_owned()),
        });
    }
    let cpu_limit = match invocation.program {
        Program::Helm => config.limits.cpu,
        Program::Checker => config.limits.cpu.min(super::postrender::CHECKER_LIMITS.cpu),
    };
    if let Some(death) = death(&status, &stderr, cpu_used, Duration::from_secs(cpu_limit)) {
        return Err(died(operation, target, death, rendering));
    }
    if stdout.is_some_and(|out| out.truncated) {
        tracing::error!(operation, release = %target, limit = MAX_STDOUT, "helm printed more than the operator reads");
    }
    Err(HelmError::Failed {
        operation,
        target,
        kind: classify(&stderr),
    })
}

/// How far below its CPU limit a process may have been seen last and
/// still count as killed by it (samples are 0.1 s apart; the kernel kills
/// at the hard limit, 2 s above the soft one we compare with).
const CPU_SAMPLE_SLACK: Duration = Duration::from_millis(1500);

/// How long clearing a dead group may take (SIGKILL is immediate).
const CLEAR_LIMIT: Duration = Duration::from_secs(2);

/// The launcher's exit status when it cannot run the program.
const LAUNCHER_CANNOT_RUN: i32 = 127;

/// An abnormal death: while rendering nothing was created (the chart went
/// over a limit); later the release may be left pending.
fn died(operation: &'static str, target: String, death: Death, rendering: bool) -> HelmError {
    if let (true, Some(limit)) = (rendering, death.limit()) {
        HelmError::TooComplex {
            operation,
            target,
            limit,
        }
    } else {
        HelmError::Died {
            operation,
            target,
            death,
        }
    }
}

/// How a process that did not exit normally died, if it did. A SIGKILL
/// is the CPU limit's when the process had used about that much CPU time
/// (`cpu_used`, last sampled; `cpu_limit`), else someone else's.
fn death(
    status: &std::process::ExitStatus,
    stderr: &str,
    cpu_used: Duration,
    cpu_limit: Duration,
) -> Option<Death> {
    if let Some(signal) = status.signal() {
        // The Rust checker aborts when an allocation fails.
        if stderr.contains("memory allocation of") {
            return Some(Death::OutOfMemory);
        }
        if signal == Signal::SIGKILL as i32 && cpu_used + CPU_SAMPLE_SLACK >= cpu_limit {
            return Some(Death::CpuLimit);
        }
        return Some(Death::Signal(signal));
    }
    // The Go runtime exits 2 on a fatal error or an unrecovered panic.
    if status.code() != Some(2) {
        return None;
    }
    let text = stderr.to_lowercase();
    let fatal = text.contains("fatal error:") || text.contains("goroutine ");
    if !fatal {
        return None;
    }
    let memory = [
        "out of memory",
        "cannot allocate memory",
        "failed to reserve",
    ];
    if memory.iter().any(|needle| text.contains(needle)) {
        Some(Death::OutOfMemory)
    } else {
        Some(Death::RuntimeCrash)
    }
}

/// Resolves when `render` is still rendering at `limit` after the start;
/// never when there is nothing to watch or rendering ended in time.
async fn render_overdue(render: &RenderWatch, limit: Duration, rendered: impl FnOnce()) {
    match render {
        RenderWatch::None => std::future::pending().await,
        RenderWatch::Whole => tokio::time::sleep(limit).await,
        RenderWatch::UntilMark { started, .. } => {
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                if tokio::fs::try_exists(started).await.unwrap_or(false) {
                    rendered();
                    return std::future::pending().await;
                }
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep(MARK_POLL).await;
            }
        }
    }
}

/// How often the checker's start mark is looked for.
const MARK_POLL: Duration = Duration::from_millis(100);

/// The running process groups, for the watchdog.
#[derive(Default)]
struct Groups {
    running: Mutex<HashMap<i32, Group>>,
    wake: Notify,
    watchdog: AtomicBool,
}

/// One running group.
struct Group {
    /// Told when the watchdog killed it; `None` once told.
    killed: Option<oneshot::Sender<()>>,
    /// The most CPU time one of its processes had used, last sampled.
    cpu_used: Duration,
}

/// A group's entry; removed when dropped.
struct Registration {
    groups: Arc<Groups>,
    pgid: i32,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.groups.lock().remove(&self.pgid);
    }
}

impl Groups {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Group>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(self: &Arc<Self>, pgid: i32, killed: oneshot::Sender<()>) -> Registration {
        let group = Group {
            killed: Some(killed),
            cpu_used: Duration::ZERO,
        };
        self.lock().insert(pgid, group);
        self.wake.notify_one();
        Registration {
            groups: self.clone(),
            pgid,
        }
    }

    /// Starts the watchdog once (budget 0: it only samples CPU time).
    fn start_watchdog(self: &Arc<Self>, budget: u64) {
        if self.watchdog.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(watchdog(Arc::downgrade(self), budget));
    }

    /// Kills group `pgid` and tells its supervisor why.
    fn kill(&self, pgid: i32) {
        if let Some(told) = self
            .lock()
            .get_mut(&pgid)
            .and_then(|group| group.killed.take())
        {
            procs::signal_group(pgid, Signal::SIGKILL);
            let _ = told.send(());
        }
    }

    /// Groups that may still be killed.
    fn live(&self) -> Vec<i32> {
        self.lock()
            .iter()
            .filter(|(_, group)| group.killed.is_some())
            .map(|(pgid, _)| *pgid)
            .collect()
    }

    /// The CPU time group `pgid` was last seen to use.
    fn cpu_used(&self, pgid: i32) -> Duration {
        self.lock()
            .get(&pgid)
            .map_or(Duration::ZERO, |group| group.cpu_used)
    }

    /// Records what each group's processes used, from one scan (per
    /// process: each has its own RLIMIT_CPU).
    fn record_cpu(&self, processes: &[procs::ProcStat]) {
        let ticks = procs::ticks_per_second();
        for (pgid, group) in self.lock().iter_mut() {
            let most = processes
                .iter()
                .filter(|p| p.pgrp == *pgid)
                .map(|p| p.cpu_ticks)
                .max()
                .unwrap_or(0);
            let seen = Duration::from_millis(most.saturating_mul(1000) / ticks);
            group.cpu_used = group.cpu_used.max(seen);
        }
    }
}

/// How often the memory of the running groups is sampled.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Samples the resident memory and CPU time of every running group; when
/// together they pass `budget` (0: never), kills the largest until they are
/// under it. Ends with the runner.
async fn watchdog(groups: Weak<Groups>, budget: u64) {
    loop {
        let Some(strong) = groups.upgrade() else {
            return;
        };
        let pgids = strong.live();
        if pgids.is_empty() {
            crate::metrics::helm_memory(0);
            // Re-checked now and then, so the task ends with the runner.
            let _ = tokio::time::timeout(Duration::from_secs(5), strong.wake.notified()).await;
            continue;
        }
        drop(strong);
        let lowest = pgids.iter().copied().min().unwrap_or(0);
        let processes = tokio::task::spawn_blocking(move || procs::scan_from(lowest))
            .await
            .unwrap_or_default();
        if let Some(strong) = groups.upgrade() {
            strong.record_cpu(&processes);
        }
        if budget == 0 {
            tokio::time::sleep(WATCH_EVERY).await;
            continue;
        }
        let mut sizes = procs::group_memory(&processes, &pgids);
        let mut total: u64 = sizes.iter().map(|(_, bytes)| bytes).sum();
        crate::metrics::helm_memory(total);
        while total > budget {
            let Some(index) = (0..sizes.len()).max_by_key(|i| sizes[*i].1) else {
                break;
            };
            let (pgid, bytes) = sizes.swap_remove(index);
            tracing::error!(
                pgid,
                group_bytes = bytes,
                total_bytes = total,
                budget_bytes = budget,
                "helm processes over the memory budget; killing the largest"
            );
            if let Some(strong) = groups.upgrade() {
                strong.kill(pgid);
            }
            total -= bytes;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// The `outcome` label of a finished run.
fn outcome_label<T>(outcome: &Result<T, HelmError>) -> &'static str {
    match outcome {
        Ok(_) => "success",
        Err(HelmError::DeadlineExceeded { .. }) => "timeout",
        Err(HelmError::Cancelled) => "cancelled",
        Err(_) => "failure",
    }
}

async fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::metadata(path)
        .await
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Most of helm's stdout kept (a release printed as JSON, manifest and
/// hooks included, is far smaller: etcd caps a release near 1 MiB
/// compressed).
pub const MAX_STDOUT: usize = 32 << 20;
/// Most of helm's stderr kept (for the log).
pub const MAX_STDERR: usize = 64 << 10;

/// What a pipe carried: at most `limit` bytes, and whether there was more
/// (read to the end all the same, so helm never blocks on a full pipe).
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

fn read_all<R>(pipe: Option<R>, limit: usize) -> tokio::task::JoinHandle<Captured>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut captured = Captured {
            bytes: Vec::new(),
            truncated: false,
        };
        let Some(mut pipe) = pipe else {
            return captured;
        };
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => return captured,
                Ok(read) => {
                    let room = limit.saturating_sub(captured.bytes.len());
                    captured.bytes.extend_from_slice(&chunk[..read.min(room)]);
                    captured.truncated |= read > room;
                }
            }
        }
    })
}

/// SIGTERM to the group, wait up to `grace` for helm, then SIGKILL to
/// the group.
async fn terminate(
    child: &mut Child,
    pgid: i32,
    grace: Duration,
    operation: &'static str,
    target: &str,
) {
    procs::signal_group(pgid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_ok() {
        return;
    }
    tracing::error!(operation, release = %target, "helm ignored SIGTERM; killing it");
    procs::signal_group(pgid, Signal::SIGKILL);
    let _ = child.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(binary: &str, path: &str) -> RunnerConfig {
        RunnerConfig {
            binary: binary.into(),
            helper: None,
            limits: Limits {
                data: 256 << 20,
                cpu: 30,
                nofile: 1024,
                fsize: 1 << 30,
            },
            helm_timeout: Duration::from_secs(1),
            deadline_margin: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
            render_timeout: Duration::from_secs(1),
            max_parallel: 1,
            tenant_slots: 0,
            queue_wait: Duration::from_secs(1),
            memory_budget: 0,
            env: vec![("PATH".into(), path.into())],
        }
    }

    fn runner(binary: &str, path: &str) -> HelmRunner {
        HelmRunner::new(config(binary, path))
    }

    fn shell(script: &str) -> Invocation {
        Invocation::helm(
            "test",
            "paas-ws-t/r".into(),
            vec!["-c".into(), script.into()],
            None,
        )
    }

    fn rendering(script: &str) -> Invocation {
        Invocation {
            render: RenderWatch::Whole,
            ..shell(script)
        }
    }

    /// Processes now in process group `pgid` (zombies included).
    fn group_members(pgid: i32) -> Vec<procs::ProcStat> {
        procs::scan()
            .into_iter()
            .filter(|p| p.pgrp == pgid)
            .collect()
    }

    #[tokio::test]
    async fn output_beyond_the_caps_is_read_but_not_kept() {
        let sh = runner("/bin/sh", "/usr/bin:/bin");
        // Enormous stdout: refused, and helm (here sh) still runs to its end.
        let over = format!("head -c {} /dev/zero", MAX_STDOUT + 1);
        assert!(matches!(
            sh.run(shell(&over)).await,
            Err(HelmError::OutputTooLarge { operation: "test" })
        ));
        // Enormous stderr: kept short for the log; the run succeeds.
        let noisy = format!("head -c {} /dev/zero >&2; printf ok", MAX_STDERR * 4);
        let output = sh.run(shell(&noisy)).await.expect("succeeds");
        assert_eq!(output.stdout, b"ok");
    }

    #[tokio::test]
    async fn runnable_binary_is_found_by_path_or_name() {
        assert!(runner("/bin/sh", "").binary_runnable().await);
        assert!(runner("sh", "/nonexistent:/bin").binary_runnable().await);
        assert!(!runner("sh", "/nonexistent").binary_runnable().await);
        assert!(!runner("/nonexistent/helm", "/bin").binary_runnable().await);
        // Exists but is not executable.
        let plain = std::env::temp_dir().join(format!("not-helm-{}", std::process::id()));
        std::fs::write(&plain, "").unwrap();
        let runnable = runner(plain.to_str().unwrap(), "").binary_runnable().await;
        std::fs::remove_file(&plain).unwrap();
        assert!(!runnable);
    }

    /// helm (here sh) leaves a grandchild that ignores SIGTERM, then hangs
    /// past the deadline: SIGTERM, the grace, SIGKILL to the whole group;
    /// neither survives, and no zombie is left.
    #[tokio::test]
    async fn at_the_deadline_the_whole_group_goes() {
        procs::become_subreaper();
        let dir = std::env::temp_dir().join(format!("runner-group-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pids = dir.join("pids");
        let script = format!(
            "(trap '' TERM; exec sleep 300) & echo $$ $! > {}; trap '' TERM; sleep 300",
            pids.display()
        );
        let started = Instant::now();
        let outcome = runner("/bin/sh", "/usr/bin:/bin").run(shell(&script)).await;
        assert!(
            matches!(outcome, Err(HelmError::DeadlineExceeded { .. })),
            "{outcome:?}"
        );
        // Deadline (1 + 1 s) and grace (1 s), no more.
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
        let text = std::fs::read_to_string(&pids).unwrap();
        let (leader, grandchild) = text.trim().split_once(' ').unwrap();
        let leader: i32 = leader.parse().unwrap();
        let grandchild: i32 = grandchild.parse().unwrap();
        assert!(
            group_members(leader).is_empty(),
            "{:?}",
            group_members(leader)
        );
        assert!(!procs::scan().iter().any(|p| p.pid == grandchild));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A helm that exits while its child (the checker) still runs: the
    /// child is killed and reaped at once.
    #[tokio::test]
    async fn nothing_outlives_a_run_that_ended() {
        procs::become_subreaper();
        let sh = runner("/bin/sh", "/usr/bin:/bin");
        let output = sh
            .run(shell(
                "(trap '' TERM; exec sleep 300) >/dev/null 2>&1 & echo $$",
            ))
            .await
            .expect("sh exits 0");
        let leader: i32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        assert!(
            group_members(leader).is_empty(),
            "{:?}",
            group_members(leader)
        );
    }

    #[tokio::test]
    async fn rendering_past_its_deadline_is_killed_and_refused() {
        let sh = runner("/bin/sh", "/usr/bin:/bin");
        let started = Instant::now();
        // SIGTERM would not stop it (as helm rendering ignores it).
        let outcome = sh.run(rendering("trap '' TERM; sleep 300")).await;
        assert!(
            matches!(
                outcome,
                Err(HelmError::TooComplex {
                    limit: Limit::RenderTime,
                    ..
                })
            ),
            "{outcome:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1900),
            "{:?}",
            started.elapsed()
        );
        // Rendering that ends in time (the checker's start mark appears)
        // runs on to the end.
        let dir = std::env::temp_dir().join(format!("runner-mark-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let started_mark = dir.join("started");
        let mut marked = shell(&format!(
            "touch {}; sleep 1.5; printf done",
            started_mark.display()
        ));
        marked.render = RenderWatch::UntilMark {
            started: started_mark,
            done: dir.join("passed"),
        };
        let output = sh
            .run(marked)
            .await
            .expect("not killed once rendering is over");
        assert_eq!(output.stdout, b"done");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn abnormal_deaths_are_told_apart() {
        let sh = runner("/bin/sh", "/usr/bin:/bin");
        let oom = "echo 'fatal error: runtime: out of memory' >&2; echo 'goroutine 1 [running]:' >&2; exit 2";
        // While rendering: the chart went over a limit, nothing was created.
        assert!(matches!(
            sh.run(rendering(oom)).await,
            Err(HelmError::TooComplex {
                limit: Limit::Memory,
                ..
            })
        ));
        // After: helm is gone, the release may be pending.
        let died = sh.run(shell(oom)).await;
        assert!(matches!(
            died,
            Err(HelmError::Died {
                death: Death::OutOfMemory,
                ..
            })
        ));
        assert!(died.unwrap_err().may_leave_pending());
        assert!(matches!(
            sh.run(shell("kill -KILL $$")).await,
            Err(HelmError::Died {
                death: Death::Signal(9),
                ..
            })
        ));
        // A SIGKILL from outside says nothing about the chart, even while
        // it renders.
        assert!(matches!(
            sh.run(rendering("kill -KILL $$")).await,
            Err(HelmError::Died {
                death: Death::Signal(9),
                ..
            })
        ));
        // An ordinary failure is not a death.
        let failed = sh.run(shell("echo 'Error: boom' >&2; exit 1")).await;
        assert!(matches!(failed, Err(HelmError::Failed { .. })));
        assert!(!failed.unwrap_err().may_leave_pending());
    }

    #[tokio::test]
    async fn a_render_killed_at_its_cpu_limit_is_refused() {
        let mut settings = config("/bin/sh", "/usr/bin:/bin");
        settings.limits.cpu = 1;
        settings.helm_timeout = Duration::from_secs(20);
        settings.render_timeout = Duration::from_secs(20);
        let sh = HelmRunner::new(settings);
        // The limit as the launcher would set it (here soft = hard).
        let outcome = sh.run(rendering("ulimit -t 1; while :; do :; done")).await;
        assert!(
            matches!(
                outcome,
                Err(HelmError::TooComplex {
                    limit: Limit::Cpu,
                    ..
                })
            ),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn the_largest_group_over_the_memory_budget_is_killed() {
        // A budget any process is over: the watchdog kills the run.
        let mut settings = config("/bin/sh", "/usr/bin:/bin");
        settings.memory_budget = 1;
        settings.helm_timeout = Duration::from_secs(20);
        let sh = HelmRunner::new(settings);
        let started = Instant::now();
        let outcome = sh.run(rendering("sleep 30")).await;
        assert!(
            matches!(
                outcome,
                Err(HelmError::TooComplex {
                    limit: Limit::MemoryBudget,
                    ..
                })
            ),
            "{outcome:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
