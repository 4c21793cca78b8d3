//! Process groups from the kernel's side: what `/proc` says about the
//! processes of a group (their memory, whether they are zombies of ours),
//! killing a whole group, and reaping exactly the orphans of a dead group.
//!
//! Each helm run is a process group of its own (helm is its leader; the
//! checker helm starts joins it). When helm dies first, the checker is
//! orphaned: it is re-parented to PID 1, which the operator is in its
//! container, or to the operator when it is a child subreaper
//! ([`become_subreaper`]). Either way its zombie would be ours to reap, and
//! tokio reaps only the children it spawned. So after every run the group
//! is killed and its members that are our zombies are reaped one by one
//! (`waitpid(pid)`, never `waitpid(-1)`, which would steal tokio's).

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// One process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    /// `R`, `S`, `Z` (zombie), …
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// Resident memory, bytes.
    pub rss: u64,
    /// CPU time used (user + system), in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses: fields are counted after its last `)`.
pub fn parse_stat(line: &str, page_size: u64) -> Option<ProcStat> {
    let (head, tail) = line.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    let fields: Vec<&str> = tail.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) … rss(24), counted from 3.
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        rss: fields.get(21)?.parse::<u64>().ok()? * page_size,
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
    })
}

/// Clock ticks per second (for `cpu_ticks`).
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|ticks| u64::try_from(ticks).ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

/// Bytes per page (for `rss`).
pub fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|size| u64::try_from(size).ok())
        .unwrap_or(4096)
}

/// Every process `/proc` lists now (those that vanish while it is read are
/// left out).
pub fn scan() -> Vec<ProcStat> {
    scan_from(0)
}

/// The processes whose pid is at least `lowest` (all of them when pids
/// wrapped around since: the last pid handed out is below `lowest`). The
/// members of a group get pids after its leader's, so reading only those
/// keeps a scan cheap on a host with many other processes.
pub fn scan_from(lowest: i32) -> Vec<ProcStat> {
    let page = page_size();
    let lowest = if last_pid().is_some_and(|last| last < lowest) {
        0
    } else {
        lowest
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            if pid < lowest {
                return None;
            }
            let line = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            parse_stat(&line, page)
        })
        .collect()
}

/// The last pid the kernel handed out (`/proc/loadavg`, fifth field).
fn last_pid() -> Option<i32> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().nth(4)?.parse().ok()
}

/// True while group `pgid` has a member (a zombie counts).
fn group_exists(pgid: i32) -> bool {
    !matches!(
        killpg(Pid::from_raw(pgid), None::<Signal>),
        Err(Errno::ESRCH)
    )
}

/// Sends `signal` to every process of group `pgid`; a group that is gone
/// already is no error.
pub fn signal_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => tracing::warn!(pgid, %error, ?signal, "cannot signal a helm process group"),
    }
}

/// Kills what is left of group `pgid` (its leader already reaped) and
/// reaps those of its members that were re-parented to us; waits until
/// none is left, at most `limit`. Returns how many it reaped.
pub async fn clear_group(pgid: i32, limit: Duration) -> usize {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let started = Instant::now();
    let mut reaped = 0;
    loop {
        // The common case: helm reaped its checker itself, nothing is left.
        if !group_exists(pgid) {
            return reaped;
        }
        signal_group(pgid, Signal::SIGKILL);
        let members: Vec<ProcStat> = tokio::task::spawn_blocking(move || scan_from(pgid))
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|process| process.pgrp == pgid)
            .collect();
        for zombie in members.iter().filter(|p| p.state == 'Z' && p.ppid == me) {
            // This very pid, and only once it is a zombie: nothing of
            // tokio's is taken.
            if waitpid(Pid::from_raw(zombie.pid), Some(WaitPidFlag::WNOHANG)).is_ok() {
                reaped += 1;
            }
        }
        let left = members
            .iter()
            .filter(|p| !(p.state == 'Z' && p.ppid == me))
            .count();
        if left == 0 {
            return reaped;
        }
        if started.elapsed() > limit {
            tracing::error!(
                pgid,
                left,
                "helm process group still has members after SIGKILL"
            );
            return reaped;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Makes this process the reaper of its orphaned descendants (as PID 1 is
/// in a container), so an orphaned checker is ours to kill and reap rather
/// than someone else's.
pub fn become_subreaper() {
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(%error, "cannot become a child subreaper; orphaned helm children go to init");
    }
}

/// Resident memory of each listed group: `(pgid, bytes)`, from one scan.
pub fn group_memory(processes: &[ProcStat], pgids: &[i32]) -> Vec<(i32, u64)> {
    pgids
        .iter()
        .map(|pgid| {
            let bytes = processes
                .iter()
                .filter(|p| p.pgrp == *pgid)
                .map(|p| p.rss)
                .sum();
            (*pgid, bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names() {
        let line = "4242 (a) b (c)) S 1 4240 4240 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 1000 123456 789 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line, 4096),
            Some(ProcStat {
                pid: 4242,
                state: 'S',
                ppid: 1,
                pgrp: 4240,
                rss: 789 * 4096,
                cpu_ticks: 11,
            })
        );
        assert_eq!(parse_stat("garbage", 4096), None);
        let me = scan()
            .into_iter()
            .find(|p| p.pid == i32::try_from(std::process::id()).unwrap())
            .expect("this process");
        assert!(me.rss > 0);
    }

    #[tokio::test]
    async fn a_group_is_killed_and_its_orphans_reaped() {
        become_subreaper();
        // A shell that leaves a grandchild which ignores SIGTERM, then exits:
        // the grandchild is orphaned into our care.
        let child = tokio::process::Command::new("/bin/sh")
            .args(["-c", "(trap '' TERM; sleep 300) >/dev/null 2>&1 & echo $!"])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let pgid = i32::try_from(child.id().expect("pid")).unwrap();
        let output = child.wait_with_output().await.expect("sh ends");
        let orphan: i32 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        let found = scan()
            .into_iter()
            .find(|p| p.pid == orphan)
            .expect("orphan alive");
        assert_eq!(
            (found.pgrp, found.ppid),
            (pgid, i32::try_from(std::process::id()).unwrap())
        );
        signal_group(pgid, Signal::SIGTERM);
        let reaped = clear_group(pgid, Duration::from_secs(5)).await;
        assert!(reaped >= 1, "{reaped}");
        assert!(
            !scan().iter().any(|p| p.pgrp == pgid),
            "nothing of the group is left, not even a zombie"
        );
    }
}
