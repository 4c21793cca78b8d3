//! The migration report: what the earlier operator left, what `--apply`
//! does (or did) with each thing, and what could not be checked. One
//! serialisable value, printed as text for people or as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::exposure::earlier::{CnameState, OrphanCname};
use crate::tenants::earlier::{Presence, TenantObject};

/// What `--apply` does with one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "reason", rename_all = "snake_case")]
pub enum Action {
    /// `--apply` takes it over.
    Adopt,
    /// Nothing is done with it, for this reason (an admin's call).
    Leave(String),
}

/// A tenant namespace that lacks some of this operator's tenant objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceFinding {
    pub namespace: String,
    /// Objects missing, or not readable by this identity.
    pub objects: Vec<TenantObject>,
    #[serde(flatten)]
    pub action: Action,
}

/// A rule of the shared tunnel without a route record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteFinding {
    pub hostname: String,
    pub service_url: String,
    /// `generated` (`{release}-{ns suffix}`), `generated-mcp`
    /// (`{…}-mcp`), `platform` (any other name, e.g. `paas-cs-…`), or
    /// `unknown` when no release owns it.
    pub scheme: String,
    /// `namespace/release` whose Service the rule routes to.
    pub owner: Option<String>,
    /// `app` or `mcp`.
    pub kind: Option<String>,
    pub cname: CnameState,
    #[serde(flatten)]
    pub action: Action,
}

/// A container patched into a release's Deployment by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SidecarFinding {
    pub namespace: String,
    pub release: String,
    pub deployment: String,
    pub container: String,
    pub image: String,
    #[serde(flatten)]
    pub action: Action,
}

/// A Service labelled as an MCP sidecar's that Helm does not manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceFinding {
    pub namespace: String,
    pub name: String,
    pub release: Option<String>,
    #[serde(flatten)]
    pub action: Action,
}

/// One of the earlier operator's own cluster objects (report only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterFinding {
    /// Kind, namespace and name, e.g. `ClusterRole paas-operator`.
    pub object: String,
    /// What was found (or that it could not be read).
    pub found: String,
    /// What an admin runs about it.
    pub command: String,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `dry-run` or `apply`.
    pub mode: String,
    pub namespaces: Vec<NamespaceFinding>,
    pub routes: Vec<RouteFinding>,
    /// CNAMEs to the shared tunnel without a comment and without a rule.
    pub orphan_cnames: Vec<OrphanCname>,
    pub sidecars: Vec<SidecarFinding>,
    pub services: Vec<ServiceFinding>,
    pub earlier_operator: Vec<ClusterFinding>,
    /// What could not be checked, and why.
    pub not_checked: Vec<String>,
    /// `--apply`: what it changed, one line each.
    pub changed: Vec<String>,
    /// `--apply`: what it tried and could not do.
    pub failed: Vec<String>,
}

impl Report {
    /// True when nothing is left to adopt.
    pub fn nothing_to_adopt(&self) -> bool {
        let adopt = |action: &Action| *action == Action::Adopt;
        !self.namespaces.iter().any(|f| adopt(&f.action))
            && !self.routes.iter().any(|f| adopt(&f.action))
            && !self.sidecars.iter().any(|f| adopt(&f.action))
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let heading = if self.mode == "apply" {
            "paas-operator migrate --apply: what the earlier operator left, and what was done"
        } else {
            "paas-operator migrate (dry run): what the earlier operator left, and what --apply would do"
        };
        let _ = writeln!(out, "{heading}");
        self.namespaces_text(&mut out);
        self.routes_text(&mut out);
        self.sidecars_text(&mut out);
        self.cluster_text(&mut out);
        list(&mut out, "Not checked", &self.not_checked);
        if self.mode == "apply" {
            list(&mut out, "Changed", &self.changed);
            list(&mut out, "Failed", &self.failed);
            if self.changed.is_empty() && self.failed.is_empty() {
                let _ = writeln!(out, "\nNothing changed.");
            }
        } else if self.nothing_to_adopt() {
            let _ = writeln!(out, "\nNothing to adopt.");
        }
        out
    }

    fn namespaces_text(&self, out: &mut String) {
        section(
            out,
            "Tenant namespaces not set up by this operator",
            self.namespaces.len(),
        );
        for finding in &self.namespaces {
            let names = |presence: Presence| {
                finding
                    .objects
                    .iter()
                    .filter(|o| o.presence == presence)
                    .map(|o| o.object.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(out, "  {}", finding.namespace);
            for (what, presence) in [
                ("missing", Presence::Missing),
                ("not readable", Presence::Unreadable),
            ] {
                let listed = names(presence);
                if !listed.is_empty() {
                    let _ = writeln!(out, "    {what}: {listed}");
                }
            }
            action(
                out,
                &finding.action,
                "set up: every tenant object applied, an existing quota left as it is",
            );
        }
    }

    fn routes_text(&self, out: &mut String) {
        section(
            out,
            "Routes in the shared tunnel without a record",
            self.routes.len(),
        );
        for route in &self.routes {
            let owner = route.owner.as_deref().unwrap_or("no release");
            let kind = route.kind.as_deref().unwrap_or("-");
            let _ = writeln!(out, "  {} -> {}", route.hostname, route.service_url);
            let _ = writeln!(
                out,
                "    {kind} route of {owner} ({} name), CNAME: {}",
                route.scheme,
                cname_text(route.cname)
            );
            action(
                out,
                &route.action,
                "recorded as the release's route (the rule stays; its CNAME gets our comment, or is made)",
            );
        }
        section(
            out,
            "CNAMEs to the shared tunnel without a rule",
            self.orphan_cnames.len(),
        );
        for cname in &self.orphan_cnames {
            let _ = writeln!(out, "  {} (record {})", cname.name, cname.id);
            let _ = writeln!(
                out,
                "    -> left alone (it routes nothing); to delete it: curl -X DELETE -H \"Authorization: Bearer $CLOUDFLARE_API_TOKEN\" $CLOUDFLARE_API_BASE/zones/$CLOUDFLARE_ZONE_ID/dns_records/{}",
                cname.id
            );
        }
    }

    fn sidecars_text(&self, out: &mut String) {
        section(
            out,
            "Sidecars patched into a release's Deployment by hand",
            self.sidecars.len(),
        );
        for sidecar in &self.sidecars {
            let _ = writeln!(
                out,
                "  {}/{}: container {} ({}) in Deployment {}",
                sidecar.namespace,
                sidecar.release,
                sidecar.container,
                sidecar.image,
                sidecar.deployment
            );
            action(
                out,
                &sidecar.action,
                "kept with the release (as POST …/sidecar does): a new revision renders it and its Service",
            );
        }
        section(out, "MCP Services outside Helm", self.services.len());
        for service in &self.services {
            let release = service.release.as_deref().unwrap_or("-");
            let _ = writeln!(
                out,
                "  {}/{} (release {release})",
                service.namespace, service.name
            );
            action(
                out,
                &service.action,
                "handed to Helm with the release's sidecar",
            );
        }
    }

    fn cluster_text(&self, out: &mut String) {
        section(
            out,
            "The earlier operator's own objects (report only)",
            self.earlier_operator.len(),
        );
        for finding in &self.earlier_operator {
            let _ = writeln!(out, "  {}: {}", finding.object, finding.found);
            let _ = writeln!(out, "    -> {}", finding.command);
        }
    }
}

fn section(out: &mut String, title: &str, count: usize) {
    let _ = writeln!(out, "\n{title} ({count})");
}

fn list(out: &mut String, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    section(out, title, lines.len());
    for line in lines {
        let _ = writeln!(out, "  {line}");
    }
}

fn action(out: &mut String, action: &Action, adopt: &str) {
    let _ = match action {
        Action::Adopt => writeln!(out, "    -> --apply: {adopt}"),
        Action::Leave(reason) => writeln!(out, "    -> left alone: {reason}"),
    };
}

fn cname_text(state: CnameState) -> &'static str {
    match state {
        CnameState::NoZone => "none (no zone configured)",
        CnameState::Missing => "none",
        CnameState::Earlier => "the earlier operator's (no comment)",
        CnameState::Ours => "ours",
        CnameState::Foreign => "someone else's record",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_report_says_there_is_nothing_to_do() {
        let dry = Report {
            mode: "dry-run".into(),
            ..Report::default()
        };
        assert!(dry.to_text().contains("Nothing to adopt."));
        let applied = Report {
            mode: "apply".into(),
            ..Report::default()
        };
        assert!(applied.to_text().contains("Nothing changed."));
    }

    #[test]
    fn each_finding_says_what_apply_does_with_it() {
        let report = Report {
            mode: "dry-run".into(),
            sidecars: vec![SidecarFinding {
                namespace: "paas-ws-1".into(),
                release: "svc-a".into(),
                deployment: "svc-a-n8n".into(),
                container: "mcp-sidecar".into(),
                image: "ghcr.io/czlonkowski/n8n-mcp:latest".into(),
                action: Action::Adopt,
            }],
            services: vec![ServiceFinding {
                namespace: "paas-ws-1".into(),
                name: "svc-b-mcp".into(),
                release: Some("svc-b".into()),
                action: Action::Leave("no such release".into()),
            }],
            ..Report::default()
        };
        let text = report.to_text();
        assert!(
            text.contains("paas-ws-1/svc-a: container mcp-sidecar"),
            "{text}"
        );
        assert!(text.contains("-> --apply: kept with the release"), "{text}");
        assert!(text.contains("-> left alone: no such release"), "{text}");
        assert!(!report.nothing_to_adopt());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["sidecars"][0]["action"], "adopt");
        assert_eq!(json["services"][0]["action"], "leave");
        assert_eq!(json["services"][0]["reason"], "no such release");
    }
}
