//! Runs the helm binary as a child process without blocking the runtime.
//!
//! - argv only, built by `crate::helm::command`; the environment is cleared and
//!   only what helm needs is passed on (never our API keys), plus, with
//!   Helm 4 and confinement, `HELM_PLUGINS` for the operator's own
//!   post-renderer plugin (`crate::helm::postrender`);
//! - values are written to helm's stdin and never touch the disk;
//! - every run is a **process group** of its own (helm leads it; the
//!   checker helm starts joins it), started through this binary's launcher
//!   ([`crate::helm::limits`]) so its memory, CPU and files are limited before
//!   helm runs. After helm ends, for any reason, whatever is left of the
//!   group is killed and its orphans reaped ([`crate::helm::procs`]);
//! - slots are shared fairly between tenant namespaces
//!   (`crate::helm::slots`); a caller waits a bounded time for one, then gets
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
//!
//! Inside: what a run is (`invocation`), the supervisor of one run
//! (`supervise`) and the watchdog over all of them (`watchdog`).

mod invocation;
mod supervise;
#[cfg(test)]
mod tests;
mod watchdog;

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::oneshot;
use tracing::Instrument;

pub use invocation::{HelmOutput, Invocation, Program, RenderWatch, RunnerConfig};
pub use supervise::{MAX_STDERR, MAX_STDOUT};

use super::error::HelmError;
use super::procs;
use super::slots::FairSlots;
use supervise::supervise;
use watchdog::Groups;

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
