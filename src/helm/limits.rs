//! Resource limits of every process the operator starts (helm, and through
//! it the confinement checker), set before the program runs.
//!
//! `unsafe` is forbidden here, so there is no `pre_exec` hook: the runner
//! starts this very binary with the hidden subcommand
//! `paas-operator limited-exec --data BYTES --cpu SECONDS --nofile N
//! --fsize BYTES -- PROGRAM ARGS…` ([`launcher_main`]), which sets its own
//! rlimits (inherited across `exec`) and then replaces itself with the
//! program. One more `exec` per helm run, a millisecond.
//!
//! - `RLIMIT_DATA` bounds memory. It counts private writable mappings, so
//!   it works for Go (whose address-space reservations are `PROT_NONE`);
//!   `RLIMIT_AS` does not (Go reserves gigabytes of address space at
//!   start). A Go helm over it dies with exit 2 "fatal error: runtime: out
//!   of memory"; our go1.26 helm needs about 124 MiB just to start.
//! - `RLIMIT_CPU` bounds CPU seconds: the kernel sends SIGXCPU at the soft
//!   limit (Go ignores it) and SIGKILL at the hard one, a few seconds later.
//! - `RLIMIT_NOFILE`, `RLIMIT_FSIZE` (helm writes only its caches) and
//!   `RLIMIT_CORE` = 0 (a crashing helm dumps no core holding values).
//!
//! `RLIMIT_NPROC` is left alone: it counts every process of the user (the
//! operator's own threads too), and a chart cannot make helm start
//! processes anyway (the only plugin is ours).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The hidden subcommand that sets limits and runs a program.
pub const LAUNCHER_SUBCOMMAND: &str = "limited-exec";

/// Open files of one helm process: its connections to the API server and
/// the registry, its caches; far more than it needs.
pub const HELM_NOFILE: u64 = 1024;

/// Largest file one helm process may write (its caches: a pulled chart,
/// a classic repository's index, discovery documents).
pub const HELM_FSIZE: u64 = 256 << 20;

/// Seconds between the CPU soft limit (SIGXCPU) and the hard one (SIGKILL).
const CPU_HARD_EXTRA: u64 = 2;

/// What one process may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of data (heap and other private writable memory).
    pub data: u64,
    /// CPU seconds.
    pub cpu: u64,
    /// Open files, sockets included.
    pub nofile: u64,
    /// Bytes of any one file written.
    pub fsize: u64,
}

impl Limits {
    /// The launcher's arguments for these limits (before `--`).
    /// The limits of a run that renders nothing (uninstall): its memory
    /// grows only with the release's records, which helm wrote itself
    /// under the rendering caps. Twice the data limit, so that a release
    /// whose records take more to decode than a rendering may (notes,
    /// values, a record written by hand) can always be removed.
    pub fn for_records(self) -> Self {
        Self {
            data: self.data.saturating_mul(2),
            ..self
        }
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--data".into(),
            self.data.to_string(),
            "--cpu".into(),
            self.cpu.to_string(),
            "--nofile".into(),
            self.nofile.to_string(),
            "--fsize".into(),
            self.fsize.to_string(),
        ]
    }

    /// Reads [`Limits::args`] followed by `--` and the command; returns the
    /// limits and the command (program first).
    pub fn parse(args: &[OsString]) -> Result<(Self, &[OsString]), String> {
        let mut limits = Self {
            data: 0,
            cpu: 0,
            nofile: 0,
            fsize: 0,
        };
        let mut rest = args;
        loop {
            let Some((flag, tail)) = rest.split_first() else {
                return Err("missing `--` and the program".into());
            };
            if flag == "--" {
                if tail.is_empty() {
                    return Err("no program after `--`".into());
                }
                break;
            }
            let Some((value, tail)) = tail.split_first() else {
                return Err(format!("{} needs a value", flag.to_string_lossy()));
            };
            let value: u64 = value
                .to_str()
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{} needs a positive number", flag.to_string_lossy()))?;
            match flag.to_str() {
                Some("--data") => limits.data = value,
                Some("--cpu") => limits.cpu = value,
                Some("--nofile") => limits.nofile = value,
                Some("--fsize") => limits.fsize = value,
                _ => return Err(format!("unknown option {}", flag.to_string_lossy())),
            }
            rest = tail;
        }
        if limits.data == 0 || limits.cpu == 0 || limits.nofile == 0 || limits.fsize == 0 {
            return Err("--data, --cpu, --nofile and --fsize are all needed".into());
        }
        Ok((limits, &rest[1..]))
    }

    /// Sets these limits on this process (and so on what it runs next).
    pub fn apply(&self) -> nix::Result<()> {
        lower(Resource::RLIMIT_DATA, self.data, self.data)?;
        lower(
            Resource::RLIMIT_CPU,
            self.cpu,
            self.cpu.saturating_add(CPU_HARD_EXTRA),
        )?;
        lower(Resource::RLIMIT_NOFILE, self.nofile, self.nofile)?;
        lower(Resource::RLIMIT_FSIZE, self.fsize, self.fsize)?;
        lower(Resource::RLIMIT_CORE, 0, 0)
    }
}

/// Sets a limit, never above what is already in force (an unprivileged
/// process cannot raise its hard limit, and need not).
fn lower(resource: Resource, soft: u64, hard: u64) -> nix::Result<()> {
    let (_, current_hard) = getrlimit(resource)?;
    let hard = hard.min(current_hard);
    setrlimit(resource, soft.min(hard), hard)
}

/// Exit status when the launcher itself fails (as a shell would for a
/// command that cannot run).
const EXIT_CANNOT_RUN: u8 = 127;

/// `paas-operator limited-exec … -- PROGRAM ARGS…`: sets the limits, then
/// becomes PROGRAM (same pid, same process group, same environment). Runs
/// without configuration or async runtime; returns only on failure.
pub fn launcher_main(args: &[OsString]) -> ExitCode {
    let (limits, command) = match Limits::parse(args) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!(
                "usage: paas-operator {LAUNCHER_SUBCOMMAND} --data BYTES --cpu SECONDS --nofile N --fsize BYTES -- PROGRAM [ARGS…]: {error}"
            );
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    if let Err(error) = limits.apply() {
        eprintln!("{LAUNCHER_SUBCOMMAND}: cannot set limits: {error}");
        return ExitCode::from(EXIT_CANNOT_RUN);
    }
    let error = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    eprintln!(
        "{LAUNCHER_SUBCOMMAND}: cannot run {}: {error}",
        command[0].to_string_lossy()
    );
    ExitCode::from(EXIT_CANNOT_RUN)
}

/// What each helm process may use, from the settings (HELM_MEMORY_LIMIT,
/// HELM_CPU_LIMIT). Here, not in `config`, so the settings import nothing
/// above them.
impl crate::config::HelmConfig {
    pub fn process_limits(&self) -> Limits {
        Limits {
            data: self.memory_limit_mib.saturating_mul(1 << 20),
            cpu: self.cpu_limit.max(1),
            nofile: HELM_NOFILE,
            fsize: HELM_FSIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    const LIMITS: Limits = Limits {
        data: 300 << 20,
        cpu: 7,
        nofile: 99,
        fsize: 1 << 20,
    };

    #[test]
    fn arguments_round_trip() {
        let mut args = os(&[]);
        args.extend(LIMITS.args().into_iter().map(OsString::from));
        args.extend(os(&["--", "/bin/sh", "-c", "x"]));
        let (limits, command) = Limits::parse(&args).expect("parses");
        assert_eq!(limits, LIMITS);
        assert_eq!(command, os(&["/bin/sh", "-c", "x"]).as_slice());
        for bad in [
            os(&["--data", "1", "--", "x"]),
            os(&[
                "--data", "0", "--cpu", "1", "--nofile", "1", "--fsize", "1", "--", "x",
            ]),
            os(&[
                "--data", "1", "--cpu", "1", "--nofile", "1", "--fsize", "1", "--",
            ]),
            os(&[
                "--data", "1", "--cpu", "1", "--nofile", "1", "--fsize", "1", "x",
            ]),
            os(&["--dta", "1", "--", "x"]),
            os(&["--data"]),
        ] {
            assert!(Limits::parse(&bad).is_err(), "{bad:?}");
        }
    }

    /// Runs this test binary again as the launcher would be run: the child
    /// test below calls [`launcher_main`], which sets the limits and becomes
    /// `sh` printing its own /proc/self/limits.
    #[test]
    fn the_launched_program_runs_under_the_limits() {
        let mut command = std::process::Command::new(std::env::current_exe().expect("test binary"));
        command
            .args([
                "--exact",
                "helm::limits::tests::launcher_child",
                "--nocapture",
            ])
            .env("LAUNCHER_TEST_CHILD", "1");
        let output = command.output().expect("runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let limit = |name: &str| -> Vec<String> {
            let line = text
                .lines()
                .find(|line| line.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {text}"));
            line[name.len()..]
                .split_whitespace()
                .take(2)
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            limit("Max data size"),
            [(300u64 << 20).to_string(), (300u64 << 20).to_string()]
        );
        assert_eq!(limit("Max cpu time"), ["7", "9"]);
        assert_eq!(limit("Max open files"), ["99", "99"]);
        assert_eq!(
            limit("Max file size"),
            [(1u64 << 20).to_string(), (1u64 << 20).to_string()]
        );
        assert_eq!(limit("Max core file size"), ["0", "0"]);
    }

    #[test]
    fn launcher_child() {
        if std::env::var_os("LAUNCHER_TEST_CHILD").is_none() {
            return; // Only as the child of the test above.
        }
        let mut args = os(&[]);
        args.extend(LIMITS.args().into_iter().map(OsString::from));
        args.extend(os(&["--", "/bin/sh", "-c", "cat /proc/self/limits"]));
        // Returns only when the exec failed.
        let _ = launcher_main(&args);
        panic!("the launcher did not exec");
    }
}
