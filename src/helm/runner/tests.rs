//! The runner against real processes (`/bin/sh` scripts standing in for
//! helm): caps, deadlines, groups cleared, deaths told apart, the budget.

use super::*;
use crate::helm::error::{Death, Limit};
use crate::helm::limits::Limits;

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
    let oom =
        "echo 'fatal error: runtime: out of memory' >&2; echo 'goroutine 1 [running]:' >&2; exit 2";
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
