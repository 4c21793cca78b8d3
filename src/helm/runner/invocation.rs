//! What one run is: the runner's settings, the program, what it renders
//! and what it printed.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::helm::limits::Limits;

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
    pub(super) fn still_rendering(&self) -> bool {
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
    /// Renders nothing; runs with [`Limits::for_records`](super::super::limits::Limits::for_records).
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
    pub(super) fn tenant(&self) -> &str {
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
