//! The running process groups and the watchdog that samples them: CPU
//! time per group (to tell a CPU-limit kill), and resident memory of all
//! groups together against the budget (the largest goes first).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{Notify, oneshot};

use crate::helm::procs;

/// The running process groups, for the watchdog.
#[derive(Default)]
pub(super) struct Groups {
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
pub(super) struct Registration {
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

    pub(super) fn register(
        self: &Arc<Self>,
        pgid: i32,
        killed: oneshot::Sender<()>,
    ) -> Registration {
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
    pub(super) fn start_watchdog(self: &Arc<Self>, budget: u64) {
        if self.watchdog.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(watchdog(Arc::downgrade(self), budget));
    }

    /// Kills group `pgid` and tells its supervisor why.
    pub(super) fn kill(&self, pgid: i32) {
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
    pub(super) fn live(&self) -> Vec<i32> {
        self.lock()
            .iter()
            .filter(|(_, group)| group.killed.is_some())
            .map(|(pgid, _)| *pgid)
            .collect()
    }

    /// The CPU time group `pgid` was last seen to use.
    pub(super) fn cpu_used(&self, pgid: i32) -> Duration {
        self.lock()
            .get(&pgid)
            .map_or(Duration::ZERO, |group| group.cpu_used)
    }

    /// Records what each group's processes used, from one scan (per
    /// process: each has its own RLIMIT_CPU).
    pub(super) fn record_cpu(&self, processes: &[procs::ProcStat]) {
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
