//! Runs the helm binary as a child process without blocking the runtime.
//!
//! - argv only, built by [`super::command`]; the environment is cleared and
//!   only what helm needs is passed on (never our API keys), plus, with
//!   Helm 4 and confinement, `HELM_PLUGINS` for the operator's own
//!   post-renderer plugin ([`super::postrender`]);
//! - values are written to helm's stdin and never touch the disk;
//! - at most `max_parallel` helm processes run at once; a caller waits a
//!   bounded time for a slot, then gets [`HelmError::Busy`];
//! - helm gets its own `--timeout`; our deadline sits above it. On the
//!   deadline, or when the caller goes away (its future is dropped), the
//!   child gets SIGTERM (helm then marks the release failed) and SIGKILL
//!   only after a grace period, because a SIGKILLed helm leaves the release
//!   stuck in `pending-*`;
//! - stderr is logged at warn with the release it belongs to (field
//!   `release`: `target` would collide with the log line's own target in
//!   JSON) and never returned.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, oneshot};
use tracing::Instrument;

use super::error::{HelmError, classify};

/// Settings of the runner, from the configuration.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub binary: PathBuf,
    /// Passed to helm as `--timeout`.
    pub helm_timeout: Duration,
    /// Extra time above `helm_timeout` before we signal helm ourselves.
    pub deadline_margin: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Most helm processes at once.
    pub max_parallel: usize,
    /// How long a request waits for a free helm slot.
    pub queue_wait: Duration,
    /// The child's whole environment.
    pub env: Vec<(OsString, OsString)>,
}

/// One helm invocation and what it is about (for logs and errors).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub operation: &'static str,
    /// `namespace/name`, or empty for commands about no release.
    pub target: String,
    pub args: Vec<String>,
    pub stdin: Option<Vec<u8>>,
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
    slots: Arc<Semaphore>,
}

impl HelmRunner {
    pub fn new(config: RunnerConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_parallel.max(1)));
        Self {
            config: Arc::new(config),
            slots,
        }
    }

    pub fn helm_timeout(&self) -> Duration {
        self.config.helm_timeout
    }

    /// Number of helm processes running now.
    pub fn in_flight(&self) -> usize {
        self.config.max_parallel.max(1) - self.slots.available_permits()
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

    /// Runs helm to completion, or until the deadline, or until the
    /// returned future is dropped.
    pub async fn run(&self, invocation: Invocation) -> Result<HelmOutput, HelmError> {
        let permit =
            tokio::time::timeout(self.config.queue_wait, self.slots.clone().acquire_owned())
                .await
                .map_err(|_| HelmError::Busy)?
                .map_err(|_| HelmError::Busy)?;
        let started = Instant::now();
        let (done_tx, done_rx) = oneshot::channel();
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        let config = self.config.clone();
        let operation = invocation.operation;
        let target = invocation.target.clone();
        // The supervisor keeps the request's span (so helm's stderr lines
        // carry the request id) and records metrics even when the caller
        // goes away.
        let supervised = async move {
            let in_flight = crate::metrics::HelmInFlight::start();
            let outcome = supervise(&config, invocation, cancel_rx).await;
            drop(in_flight);
            crate::metrics::helm_operation(operation, outcome_label(&outcome), started.elapsed());
            drop(permit);
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

/// Owns the child from spawn to exit, whatever happens to the caller.
async fn supervise(
    config: &RunnerConfig,
    invocation: Invocation,
    mut cancelled: oneshot::Receiver<()>,
) -> Result<HelmOutput, HelmError> {
    let Invocation {
        operation,
        target,
        args,
        stdin,
    } = invocation;
    let mut child = Command::new(&config.binary)
        .args(&args)
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| HelmError::Spawn { operation, source })?;

    let stdin_task = stdin.and_then(|bytes| {
        let mut pipe = child.stdin.take()?;
        Some(tokio::spawn(async move {
            // A write error means helm exited early; its status says why.
            let _ = pipe.write_all(&bytes).await;
            let _ = pipe.shutdown().await;
        }))
    });
    let stdout = read_all(child.stdout.take(), MAX_STDOUT);
    let stderr = read_all(child.stderr.take(), MAX_STDERR);

    let deadline = config.helm_timeout + config.deadline_margin;
    let status = tokio::select! {
        status = child.wait() => status,
        _ = tokio::time::sleep(deadline) => {
            tracing::error!(operation, release = %target, deadline_s = deadline.as_secs(), "helm passed its deadline; stopping it");
            terminate(&mut child, config.kill_grace, operation, &target).await;
            return Err(HelmError::DeadlineExceeded { operation, target });
        }
        _ = &mut cancelled => {
            tracing::warn!(operation, release = %target, "caller went away; stopping helm");
            terminate(&mut child, config.kill_grace, operation, &target).await;
            return Err(HelmError::Cancelled);
        }
    }
    .map_err(|source| HelmError::Spawn { operation, source })?;

    if let Some(task) = stdin_task {
        let _ = task.await;
    }
    let stdout = stdout.await.ok();
    let stderr = stderr.await.map(|c| c.bytes).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let Some(stdout) = stdout.filter(|out| !out.truncated).map(|out| out.bytes) else {
        tracing::error!(operation, release = %target, limit = MAX_STDOUT, "helm printed more than the operator reads; its output is dropped");
        return Err(HelmError::OutputTooLarge { operation });
    };
    if status.success() {
        if !stderr.trim().is_empty() {
            // Warnings only (deprecations, Pod Security); worth seeing.
            tracing::warn!(operation, release = %target, stderr = %stderr.trim(), "helm stderr");
        }
        return Ok(HelmOutput { stdout });
    }
    tracing::warn!(operation, release = %target, exit = ?status.code(), stderr = %stderr.trim(), "helm exited with an error");
    Err(HelmError::Failed {
        operation,
        target,
        kind: classify(&stderr),
    })
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

/// SIGTERM, wait up to `grace`, then SIGKILL.
async fn terminate(child: &mut Child, grace: Duration, operation: &'static str, target: &str) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_ok() {
        return;
    }
    tracing::error!(operation, release = %target, "helm ignored SIGTERM; killing it");
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(binary: &str, path: &str) -> HelmRunner {
        HelmRunner::new(RunnerConfig {
            binary: binary.into(),
            helm_timeout: Duration::from_secs(1),
            deadline_margin: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
            max_parallel: 1,
            queue_wait: Duration::from_secs(1),
            env: vec![("PATH".into(), path.into())],
        })
    }

    fn shell(script: &str) -> Invocation {
        Invocation {
            operation: "test",
            target: String::new(),
            args: vec!["-c".into(), script.into()],
            stdin: None,
        }
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
}
