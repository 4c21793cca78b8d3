//! What is wrong with a rendering, one problem per document, and the
//! sentence a refusal gives: problems and counts, never a name, namespace
//! or kind from the chart.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What is wrong with one rendered document (1-based index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Violation {
    /// A namespaced object aimed at another namespace.
    OutsideNamespace { document: usize },
    /// A cluster-scoped object of a kind that is not allowed.
    ClusterScoped { document: usize },
    /// A Helm release record, or anything labelled `owner=helm`.
    HelmRecord { document: usize },
    /// An object claiming the operator's own label.
    OperatorLabel { document: usize },
    /// A workload or token running as the tenant's helm identity.
    TenantIdentity { document: usize },
    /// A Service reaching outside the cluster network.
    ServiceExposure { document: usize },
    /// An Ingress that makes the ingress controller reach beyond the
    /// tenant (configuration snippets, another namespace's Secrets).
    IngressReach { document: usize },
    /// A pod (template) leaving the scheduler's fences: a system or
    /// unlisted priority class, `nodeName`, tolerations of taint keys not
    /// allowed, another scheduler, an unlisted runtime class.
    Scheduling { document: usize },
    /// A probe or lifecycle hook aimed at a host (the kubelet would
    /// connect there from the node).
    HostReach { document: usize },
    /// A name the operator reserves: `paas-operator.*`, or the Service
    /// `{release}-mcp` of the release's sidecar.
    ReservedName { document: usize },
    /// YAML tags or merge keys, which parsers read differently.
    Ambiguous { document: usize },
    /// A document that cannot be read, so cannot be checked.
    Unreadable { document: usize },
    /// The rendering is larger than [`MAX_RENDERING`] (or its input
    /// than [`MAX_INPUT`]).
    TooLarge,
    /// The rendering expands (YAML aliases) to more than the parse budget
    /// ([`super::parse::Budget`]).
    TooComplex,
    /// The cluster refused the tenant access to what the chart renders
    /// (seen by helm's dry run, before anything was checked here).
    RefusedByCluster,
}

impl Violation {
    /// The problem, for people (no chart text).
    fn problem(self) -> &'static str {
        match self {
            Self::OutsideNamespace { .. } => "outside the release namespace",
            Self::ClusterScoped { .. } => "cluster-scoped",
            Self::HelmRecord { .. } => "a Helm release record",
            Self::OperatorLabel { .. } => "claiming the operator's label",
            Self::TenantIdentity { .. } => "running as the tenant's helm identity",
            Self::ServiceExposure { .. } => {
                "a Service with externalIPs, ExternalName, NodePort or LoadBalancer"
            }
            Self::IngressReach { .. } => {
                "an Ingress with configuration snippets or another namespace's Secrets"
            }
            Self::Scheduling { .. } => {
                "a pod with a priority class, nodeName, tolerations, scheduler or runtime class a tenant may not use"
            }
            Self::HostReach { .. } => "a pod whose probes or lifecycle hooks name a host",
            Self::ReservedName { .. } => {
                "named like what the operator keeps (paas-operator.*, or the sidecar's Service <release>-mcp)"
            }
            Self::Ambiguous { .. } => "using YAML tags or merge keys",
            Self::Unreadable { .. } => "unreadable",
            Self::TooLarge => "too large",
            Self::TooComplex => "too complex (it expands beyond the limits)",
            Self::RefusedByCluster => "that the tenant may not touch (refused by the cluster)",
        }
    }

    /// About where an object lands (another namespace, cluster-scoped):
    /// what an uninstall of a forged record could reach.
    pub fn is_about_scope(self) -> bool {
        matches!(
            self,
            Self::OutsideNamespace { .. } | Self::ClusterScoped { .. }
        )
    }

    fn document(self) -> Option<usize> {
        match self {
            Self::OutsideNamespace { document }
            | Self::ClusterScoped { document }
            | Self::HelmRecord { document }
            | Self::OperatorLabel { document }
            | Self::TenantIdentity { document }
            | Self::ServiceExposure { document }
            | Self::IngressReach { document }
            | Self::Scheduling { document }
            | Self::HostReach { document }
            | Self::ReservedName { document }
            | Self::Ambiguous { document }
            | Self::Unreadable { document } => Some(document),
            Self::TooLarge | Self::TooComplex | Self::RefusedByCluster => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document() {
            Some(document) => write!(f, "document {document}: {}", self.problem()),
            None => write!(f, "the rendering: {}", self.problem()),
        }
    }
}

/// The sentence clients get (400 `chart_not_confined`) for `found`: the
/// problems and how many objects have each, never chart text.
pub fn refusal(namespace: &str, found: &[Violation]) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for violation in found {
        *counts.entry(violation.problem()).or_default() += 1;
    }
    let listed: Vec<String> = counts
        .iter()
        .map(|(problem, count)| {
            let objects = if *count == 1 { "object" } else { "objects" };
            format!("{count} {objects} {problem}")
        })
        .collect();
    format!(
        "The chart would create objects it may not in namespace {namespace}: {}; nothing was created",
        listed.join(", ")
    )
}
