//! Helm failures, classified from helm's stderr so the API can answer with
//! the right status. The stderr text itself is only logged.

use crate::render::confine::Violation;

/// Why a helm command failed, as far as its stderr tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Install of a name that already has a release.
    NameInUse,
    /// Another install/upgrade/rollback holds the release (`pending-*`).
    OperationInProgress,
    /// No such release.
    ReleaseNotFound,
    /// Rollback to a revision that does not exist.
    RevisionNotFound,
    /// Upgrade of a release that has no deployed revision.
    NoDeployedRelease,
    /// The chart or the requested version does not exist at its source.
    ChartNotFound,
    /// The chart source could not be reached.
    ChartSourceUnreachable,
    /// The chart failed to render with the given values.
    RenderFailed,
    /// The values do not satisfy the chart's values.schema.json.
    ValuesInvalid,
    /// The Kubernetes API refused objects (quota, admission, RBAC).
    RejectedByCluster,
    /// The Kubernetes API could not be reached.
    ClusterUnreachable,
    /// A write lost an optimistic-concurrency race inside the API server
    /// ("the object has been modified"), typically the ResourceQuota
    /// admission when many objects are created in one namespace at once:
    /// nothing is wrong with the chart, and the same write again may pass.
    Conflict,
    /// helm's own `--timeout` ran out (waiting for hooks or resources);
    /// helm marked the release failed itself.
    TimedOut,
    /// Anything else.
    Other,
}

/// Which of the operator's limits a chart went over while it was rendered
/// (or checked): nothing was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Rendering took longer than HELM_RENDER_TIMEOUT.
    RenderTime,
    /// A process went over its memory limit (HELM_MEMORY_LIMIT, or the
    /// checker's own).
    Memory,
    /// A process went over its CPU limit (HELM_CPU_LIMIT, or the checker's).
    Cpu,
    /// The helm processes together went over HELM_MEMORY_BUDGET and this
    /// run was the largest.
    MemoryBudget,
    /// The rendering expands (YAML aliases) beyond the parse budget.
    Expansion,
    /// The rendering is larger than the operator accepts.
    Size,
    /// helm or the checker crashed on it (a Go runtime error, a signal).
    Crashed,
}

impl Limit {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::RenderTime => "render_time",
            Self::Memory => "memory",
            Self::Cpu => "cpu",
            Self::MemoryBudget => "memory_budget",
            Self::Expansion => "expansion",
            Self::Size => "size",
            Self::Crashed => "crashed",
        }
    }
}

/// How a helm process ended abnormally (not by exiting with an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// Killed by a signal it did not catch (a crash, or a SIGKILL from
    /// outside: the kernel's OOM killer, an administrator): the number.
    Signal(i32),
    /// Killed by the kernel at its CPU limit (HELM_CPU_LIMIT).
    CpuLimit,
    /// The Go runtime could not get memory (exit 2, "fatal error: runtime:
    /// out of memory"): over HELM_MEMORY_LIMIT.
    OutOfMemory,
    /// Any other Go runtime crash (a panic, "fatal error:").
    RuntimeCrash,
    /// Killed by the operator: the helm processes together went over
    /// HELM_MEMORY_BUDGET and this run was the largest.
    MemoryBudget,
}

impl Death {
    /// The limit this death means while rendering; `None` for a SIGKILL
    /// from outside, which says nothing about the chart.
    pub fn limit(self) -> Option<Limit> {
        match self {
            Self::Signal(9) => None,
            Self::CpuLimit | Self::Signal(24) => Some(Limit::Cpu), // 24: SIGXCPU
            Self::Signal(_) | Self::RuntimeCrash => Some(Limit::Crashed),
            Self::OutOfMemory => Some(Limit::Memory),
            Self::MemoryBudget => Some(Limit::MemoryBudget),
        }
    }
}

/// A failure running helm.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// helm could not be started (missing or not executable).
    #[error("cannot run helm for {operation}: {source}")]
    Spawn {
        operation: &'static str,
        source: std::io::Error,
    },
    /// helm ran past our deadline and was stopped.
    #[error("helm {operation} on {target} passed its deadline")]
    DeadlineExceeded {
        operation: &'static str,
        target: String,
    },
    /// The caller went away and helm was stopped.
    #[error("helm stopped because the request was cancelled")]
    Cancelled,
    /// No helm slot became free in time.
    #[error("too many helm operations at once")]
    Busy,
    /// helm exited non-zero.
    #[error("helm {operation} on {target} failed: {kind:?}")]
    Failed {
        operation: &'static str,
        target: String,
        kind: FailureKind,
    },
    /// helm printed more than the operator reads.
    #[error("helm {operation} printed more than the operator reads")]
    OutputTooLarge { operation: &'static str },
    /// helm succeeded but printed something we cannot read.
    #[error("cannot read helm {operation} output: {source}")]
    Output {
        operation: &'static str,
        source: serde_json::Error,
    },
    /// The chart would create objects outside its namespace (or
    /// cluster-scoped objects that are not allowed); nothing was created.
    #[error("the chart is not confined to namespace {namespace}: {} objects", violations.len())]
    NotConfined {
        namespace: String,
        violations: Vec<Violation>,
    },
    /// The files of the in-run confinement check could not be written.
    #[error("cannot prepare the confinement check: {0}")]
    ConfineSetup(std::io::Error),
    /// The chart went over one of the operator's limits while it was
    /// rendered or checked; helm was stopped before it created anything.
    #[error("helm {operation} on {target}: the chart went over a limit ({limit:?})")]
    TooComplex {
        operation: &'static str,
        target: String,
        limit: Limit,
    },
    /// helm died abnormally after rendering (killed by a signal, a Go
    /// runtime crash, our memory budget): it may have stored the release
    /// `pending-*`, or even `deployed`. Re-read the release.
    #[error("helm {operation} on {target} died abnormally ({death:?})")]
    Died {
        operation: &'static str,
        target: String,
        death: Death,
    },
}

impl HelmError {
    /// True when helm was stopped (or died) in the middle of a write, so
    /// the release may be left `pending-*` (or in any state: helm may store
    /// `deployed` even after a SIGTERM). The caller must read the release
    /// again rather than trust the error.
    pub fn may_leave_pending(&self) -> bool {
        matches!(
            self,
            Self::Died { .. } | Self::DeadlineExceeded { .. } | Self::Cancelled
        )
    }
}

/// Classifies helm's stderr (Helm 3 and Helm 4 wording, case-insensitive).
pub fn classify(stderr: &str) -> FailureKind {
    let text = stderr.to_lowercase();
    let has = |needle: &str| text.contains(needle);
    if has("kubernetes cluster unreachable") {
        FailureKind::ClusterUnreachable
    } else if has("unable to instantiate sql driver") {
        // Helm's storage (HELM_DRIVER=sql) is down: not the chart source,
        // although its wording ("connection refused") is the same.
        FailureKind::Other
    } else if has("timed out waiting for the condition") || has("context deadline exceeded") {
        FailureKind::TimedOut
    } else if has("cannot re-use a name that is still in use")
        || has("cannot reuse a name that is still in use")
    {
        FailureKind::NameInUse
    } else if has("another operation (install/upgrade/rollback) is in progress") {
        FailureKind::OperationInProgress
    } else if has(" is forbidden: ") || has("exceeded quota") || has("admission webhook") {
        // The cluster refused an object: final, so it goes before a race
        // that retrying would win (several errors may come together), and
        // before the chart source's "not found" (a refusal may quote
        // lookups that failed: RBAC's "resolution errors: [… not found]").
        FailureKind::RejectedByCluster
    } else if has("the object has been modified; please apply your changes") {
        FailureKind::Conflict
    } else if has("has no deployed releases") {
        FailureKind::NoDeployedRelease
    } else if has("release: not found") || has("release not loaded") {
        FailureKind::ReleaseNotFound
    } else if text.contains("release has no ") && text.contains(" version") {
        FailureKind::RevisionNotFound
    } else if has("values don't meet the specifications of the schema") {
        FailureKind::ValuesInvalid
    } else if has("parse error")
        || has("execution error")
        || has("error converting yaml")
        || has("template: ")
        || has("unable to build kubernetes objects from release manifest")
    {
        FailureKind::RenderFailed
    } else if has("connection refused")
        || has("no such host")
        || has("i/o timeout")
        || has("server gave http response to https client")
        || has("tls: ")
        || has("could not find protocol handler")
    {
        FailureKind::ChartSourceUnreachable
    } else if has("not found")
        || has("404")
        || has("manifest unknown")
        || has("no chart version found")
    {
        FailureKind::ChartNotFound
    } else if has("forbidden") || has("exceeded quota") || has("admission webhook") {
        FailureKind::RejectedByCluster
    } else {
        FailureKind::Other
    }
}

/// The limit a refusal means when the checker refused the rendering as too
/// large or too complex (then it checked nothing else).
pub fn too_complex(violations: &[Violation]) -> Option<Limit> {
    violations.iter().find_map(|violation| match violation {
        Violation::TooLarge => Some(Limit::Size),
        Violation::TooComplex => Some(Limit::Expansion),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_helm3_and_helm4_messages() {
        let cases = [
            (
                "Error: INSTALLATION FAILED: cannot re-use a name that is still in use",
                FailureKind::NameInUse,
            ),
            (
                "Error: INSTALLATION FAILED: release name check failed: cannot reuse a name that is still in use",
                FailureKind::NameInUse,
            ),
            (
                "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
                FailureKind::OperationInProgress,
            ),
            (
                "Error: uninstall: Release not loaded: svc-x: release: not found",
                FailureKind::ReleaseNotFound,
            ),
            ("Error: release: not found", FailureKind::ReleaseNotFound),
            (
                "Error: release has no 7 version",
                FailureKind::RevisionNotFound,
            ),
            (
                "Error: UPGRADE FAILED: \"svc-x\" has no deployed releases",
                FailureKind::NoDeployedRelease,
            ),
            (
                "Error: INSTALLATION FAILED: values don't meet the specifications of the schema(s) in the following chart(s):",
                FailureKind::ValuesInvalid,
            ),
            (
                "Error: INSTALLATION FAILED: execution error at (broken/templates/cm.yaml:4:11): must be set",
                FailureKind::RenderFailed,
            ),
            (
                "Error: INSTALLATION FAILED: parse error at (broken/templates/x.yaml:1): unexpected",
                FailureKind::RenderFailed,
            ),
            (
                "Error: INSTALLATION FAILED: Kubernetes cluster unreachable: Get \"https://127.0.0.1:6443/version\": dial tcp 127.0.0.1:6443: connect: connection refused",
                FailureKind::ClusterUnreachable,
            ),
            (
                "Error: UPGRADE FAILED: create: failed to create: Operation cannot be fulfilled on resourcequotas \"paas-ws-4e9e0adc-quota\": the object has been modified; please apply your changes to the latest version and try again",
                FailureKind::Conflict,
            ),
            (
                "Error: INSTALLATION FAILED: failed pre-install: warning: Hook pre-install x/templates/job.yaml failed: 1 error occurred:\n\t* Operation cannot be fulfilled on resourcequotas \"q\": the object has been modified; please apply your changes to the latest version and try again",
                FailureKind::Conflict,
            ),
            (
                "Error: kubernetes cluster unreachable: dial tcp",
                FailureKind::ClusterUnreachable,
            ),
            (
                "Error: INSTALLATION FAILED: failed to do request: Head \"http://127.0.0.1:5999/v2/charts/web/manifests/0.1.0\": dial tcp 127.0.0.1:5999: connect: connection refused",
                FailureKind::ChartSourceUnreachable,
            ),
            (
                "helm.go:83: unable to instantiate SQL driver: dial tcp 127.0.0.1:1: connect: connection refused",
                FailureKind::Other,
            ),
            (
                "Error: INSTALLATION FAILED: 127.0.0.1:5000/charts/nope:0.1.0: not found",
                FailureKind::ChartNotFound,
            ),
            (
                "Error: INSTALLATION FAILED: chart \"web\" version \"9.9.9\" not found in http://127.0.0.1:8879 repository",
                FailureKind::ChartNotFound,
            ),
            (
                "Error: INSTALLATION FAILED: pods \"x\" is forbidden: exceeded quota: q",
                FailureKind::RejectedByCluster,
            ),
            (
                "Error: INSTALLATION FAILED: server-side apply failed for object paas-ws-x/svc-x-paas-operator-tenant rbac.authorization.k8s.io/v1, Kind=RoleBinding: rolebindings.rbac.authorization.k8s.io \"svc-x-paas-operator-tenant\" is forbidden: user \"system:serviceaccount:paas-ws-x:paas-tenant\" (groups=[\"system:serviceaccounts\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"list\"]}; resolution errors: [clusterroles.rbac.authorization.k8s.io \"gone\" not found]",
                FailureKind::RejectedByCluster,
            ),
            (
                "Error: INSTALLATION FAILED: 2 errors occurred:\n\t* configmaps \"c-61\" is forbidden: exceeded quota: q, requested: configmaps=1, used: configmaps=50, limited: configmaps=50\n\t* Operation cannot be fulfilled on resourcequotas \"q\": the object has been modified; please apply your changes to the latest version and try again",
                FailureKind::RejectedByCluster,
            ),
            (
                "Error: INSTALLATION FAILED: 1 error occurred:\n\t* admission webhook \"fence.example\" denied the request: image \"x\" not found",
                FailureKind::RejectedByCluster,
            ),
            (
                "Error: INSTALLATION FAILED: failed pre-install: 1 error occurred:\n\t* timed out waiting for the condition",
                FailureKind::TimedOut,
            ),
            (
                "Error: UPGRADE FAILED: pre-upgrade hooks failed: resource Job/x/y not ready. status: InProgress, message: context deadline exceeded",
                FailureKind::TimedOut,
            ),
            ("Error: something else", FailureKind::Other),
        ];
        for (stderr, expected) in cases {
            assert_eq!(classify(stderr), expected, "{stderr}");
        }
    }
}
