//! One run from spawn to exit, whatever happens to the caller: the
//! command line (through the launcher), stdin, capped pipes, the deadline,
//! the render deadline, the watchdog's kill, the caller going away; then
//! the group cleared and the ending told apart ([`death`]).

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::invocation::{HelmOutput, Invocation, Program, RenderWatch, RunnerConfig};
use super::watchdog::Groups;
use crate::helm::error::{Death, HelmError, Limit, classify};
use crate::helm::limits::LAUNCHER_SUBCOMMAND;
use crate::helm::procs;
use crate::helm::slots::Slot;

/// The command line of one invocation: through the launcher (limits) when
/// there is one.
pub(super) fn command(
    config: &RunnerConfig,
    invocation: &Invocation,
) -> Result<Command, HelmError> {
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
    /// Waiting for helm failed (the child is still to be killed).
    WaitFailed(std::io::Error),
}

/// Owns the child from spawn to exit, whatever happens to the caller.
pub(super) async fn supervise(
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

    let ended = wait_for_end(
        config,
        &invocation,
        &mut child,
        pgid,
        slot,
        &mut killed,
        &mut cancelled,
    )
    .await;
    if let Ended::WaitFailed(source) = ended {
        procs::signal_group(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
        drop(registration);
        procs::clear_group(pgid, CLEAR_LIMIT).await;
        return Err(HelmError::Spawn { operation, source });
    }
    let target = invocation.target.as_str();
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
    conclude(config, &invocation, ended, stdout, &stderr, cpu_used)
}

/// Waits for the run to end: helm exits, the deadline or the render
/// deadline passes, the watchdog kills it, or the caller goes away.
async fn wait_for_end(
    config: &RunnerConfig,
    invocation: &Invocation,
    child: &mut Child,
    pgid: i32,
    slot: &mut Slot,
    killed: &mut oneshot::Receiver<()>,
    cancelled: &mut oneshot::Receiver<()>,
) -> Ended {
    let operation = invocation.operation;
    let target = invocation.target.as_str();
    let deadline = config.helm_timeout + config.deadline_margin;
    tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ended::Exited(status),
            Err(source) => Ended::WaitFailed(source),
        },
        _ = tokio::time::sleep(deadline) => {
            tracing::error!(operation, release = %target, deadline_s = deadline.as_secs(), "helm passed its deadline; stopping it");
            terminate(child, pgid, config.kill_grace, operation, target).await;
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
        Ok(()) = killed => {
            // The watchdog sent SIGKILL already.
            let _ = child.wait().await;
            Ended::MemoryBudget
        }
        _ = cancelled => {
            tracing::warn!(operation, release = %target, "caller went away; stopping helm");
            terminate(child, pgid, config.kill_grace, operation, target).await;
            Ended::Cancelled
        }
    }
}

/// What the run's ending means: its output, or why it failed.
fn conclude(
    config: &RunnerConfig,
    invocation: &Invocation,
    ended: Ended,
    stdout: Option<Captured>,
    stderr: &str,
    cpu_used: Duration,
) -> Result<HelmOutput, HelmError> {
    let operation = invocation.operation;
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
        Ended::WaitFailed(source) => return Err(HelmError::Spawn { operation, source }),
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
        Program::Checker => config
            .limits
            .cpu
            .min(crate::helm::postrender::CHECKER_LIMITS.cpu),
    };
    if let Some(death) = death(&status, stderr, cpu_used, Duration::from_secs(cpu_limit)) {
        return Err(died(operation, target, death, rendering));
    }
    if stdout.is_some_and(|out| out.truncated) {
        tracing::error!(operation, release = %target, limit = MAX_STDOUT, "helm printed more than the operator reads");
    }
    Err(HelmError::Failed {
        operation,
        target,
        kind: classify(stderr),
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
pub(super) fn died(
    operation: &'static str,
    target: String,
    death: Death,
    rendering: bool,
) -> HelmError {
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
pub(super) fn death(
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
