//! The read-only half of the migration: everything the earlier operator
//! left that this one would adopt or clean up, as a [`Report`], and what
//! `--apply` needs to adopt each finding ([`Plan`]).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;

use super::migration::Migration;
use super::report::{
    Action, ClusterFinding, NamespaceFinding, Report, RouteFinding, ServiceFinding, SidecarFinding,
};
use crate::error::Code;
use crate::exposure::earlier::{CnameState, UnrecordedRule};
use crate::exposure::names::Subdomain;
use crate::exposure::store::{ReleaseRef, RouteKind};
use crate::helm::HelmRelease;
use crate::names::{ReleaseName, TenantNamespace};
use crate::releases::earlier::PatchedSidecar;
use crate::releases::state;
use crate::tenants::earlier::Presence;

/// The earlier operator's name for its ClusterRole, ClusterRoleBinding and
/// ServiceAccount (its `k8s/` manifests; its chart's with release
/// `paas-operator`).
const EARLIER_NAME: &str = "paas-operator";
/// The namespace its `k8s/` manifests put everything in.
const EARLIER_NAMESPACE: &str = "default";

/// What `--apply` acts on, beside the report.
#[derive(Debug, Default)]
pub struct Plan {
    pub namespaces: Vec<TenantNamespace>,
    pub routes: Vec<(ReleaseRef, UnrecordedRule, RouteKind)>,
    pub sidecars: Vec<(TenantNamespace, ReleaseName, PatchedSidecar)>,
}

/// A tenant namespace and its releases (when this identity may read them).
struct Tenant {
    namespace: TenantNamespace,
    releases: Vec<HelmRelease>,
}

impl Migration<'_> {
    /// Looks at everything; changes nothing.
    pub async fn scan(&self, mode: &str) -> (Report, Plan) {
        let mut report = Report {
            mode: mode.to_owned(),
            ..Report::default()
        };
        let mut plan = Plan::default();
        let tenants = self.scan_namespaces(&mut report, &mut plan).await;
        for tenant in &tenants {
            self.scan_sidecars(tenant, &mut report, &mut plan).await;
        }
        self.scan_routes(&tenants, &mut report, &mut plan).await;
        self.scan_cluster(&mut report).await;
        (report, plan)
    }

    /// Tenant namespaces lacking tenant objects; the readable ones with
    /// their releases.
    async fn scan_namespaces(&self, report: &mut Report, plan: &mut Plan) -> Vec<Tenant> {
        let tenants = self.tenants;
        let namespaces = match tenants.tenant_namespaces().await {
            Ok(namespaces) => namespaces,
            Err(error) => {
                report.not_checked.push(format!(
                    "tenant namespaces: cannot list namespaces ({error})"
                ));
                return Vec::new();
            }
        };
        let mut readable = Vec::new();
        let namespaces = namespaces
            .into_iter()
            .filter(|(namespace, _)| self.includes(namespace.as_str()));
        for (namespace, existing) in namespaces {
            let lacking: Vec<_> = tenants
                .tenant_objects(&namespace, &existing)
                .await
                .into_iter()
                .filter(|o| o.presence != Presence::Present)
                .collect();
            if !lacking.is_empty() {
                report.namespaces.push(NamespaceFinding {
                    namespace: namespace.to_string(),
                    objects: lacking,
                    action: Action::Adopt,
                });
                plan.namespaces.push(namespace.clone());
            }
            match self.releases.latest_releases(&namespace).await {
                Ok(releases) => readable.push(Tenant {
                    namespace,
                    releases,
                }),
                Err(error) => report.not_checked.push(format!(
                    "releases in {namespace}: not readable by this identity ({}); --apply sets the namespace up first and checks them then",
                    error.code
                )),
            }
        }
        readable
    }

    /// Containers patched into the tenant's releases, and MCP Services
    /// outside Helm.
    async fn scan_sidecars(&self, tenant: &Tenant, report: &mut Report, plan: &mut Plan) {
        let namespace = &tenant.namespace;
        for release in &tenant.releases {
            let Ok(name) = ReleaseName::parse(&release.name) else {
                continue;
            };
            let patched = match self.releases.patched_sidecars(namespace, release).await {
                Ok(patched) => patched,
                Err(error) => {
                    report.not_checked.push(format!(
                        "sidecars of {namespace}/{name}: the live Deployments are not readable ({})",
                        error.code
                    ));
                    continue;
                }
            };
            let action = self.sidecar_action(namespace, &name, &patched).await;
            for sidecar in patched {
                if action == Action::Adopt {
                    plan.sidecars
                        .push((namespace.clone(), name.clone(), sidecar.clone()));
                }
                report.sidecars.push(SidecarFinding {
                    namespace: namespace.to_string(),
                    release: name.to_string(),
                    deployment: sidecar.deployment,
                    container: sidecar.container,
                    image: sidecar.image,
                    action: action.clone(),
                });
            }
        }
        self.scan_services(tenant, report, plan).await;
    }

    /// Whether the containers patched into one release can be adopted.
    async fn sidecar_action(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        patched: &[PatchedSidecar],
    ) -> Action {
        let [sidecar] = patched else {
            return Action::Leave(format!(
                "{} containers were added by hand; a release has one sidecar: attach the one to keep with POST /api/releases/{namespace}/{name}/sidecar",
                patched.len()
            ));
        };
        match state::load(self.client, namespace, name).await {
            Ok(kept) if kept.sidecar.is_some() => {
                return Action::Leave("the release has a sidecar of this operator already".into());
            }
            Ok(_) => {}
            Err(error) => {
                return Action::Leave(format!("its kept state is not readable ({error})"));
            }
        }
        match sidecar.sidecar_request(name) {
            Ok(_) => Action::Adopt,
            Err(error) => Action::Leave(format!(
                "not a sidecar this operator accepts: {}",
                error.detail
            )),
        }
    }

    async fn scan_services(&self, tenant: &Tenant, report: &mut Report, plan: &Plan) {
        let namespace = &tenant.namespace;
        let services = match self.releases.loose_mcp_services(namespace).await {
            Ok(services) => services,
            Err(error) => {
                report.not_checked.push(format!(
                    "MCP Services in {namespace}: not readable ({})",
                    error.code
                ));
                return;
            }
        };
        for service in services {
            let release = service.release.clone().unwrap_or_default();
            let adopted = plan
                .sidecars
                .iter()
                .any(|(ns, name, _)| ns == namespace && name.as_str() == release);
            let exists = tenant.releases.iter().any(|r| r.name == release);
            let delete = format!("kubectl -n {namespace} delete service {}", service.name);
            let action = match (adopted, exists) {
                (true, _) => Action::Adopt,
                (false, true) => Action::Leave(format!(
                    "the release has no sidecar to adopt with it; if nothing uses it: {delete}"
                )),
                (false, false) => Action::Leave(format!(
                    "release {release:?} does not exist; to delete it: {delete}"
                )),
            };
            report.services.push(ServiceFinding {
                namespace: namespace.to_string(),
                name: service.name,
                release: service.release,
                action,
            });
        }
    }

    /// Rules of the shared tunnel without a record, and CNAMEs without a rule.
    async fn scan_routes(&self, tenants: &[Tenant], report: &mut Report, plan: &mut Plan) {
        let exposure = self.exposure;
        let rules = match exposure.unrecorded_rules().await {
            Ok(Some(rules)) => rules,
            Ok(None) => {
                report.not_checked.push(
                    "routes: exposure is not the shared Cloudflare tunnel here (EXPOSURE_BACKEND=cloudflare and its CLOUDFLARE_* settings)".into(),
                );
                return;
            }
            Err(error) => {
                report.not_checked.push(format!("routes: {error}"));
                return;
            }
        };
        let into_others = |rule: &UnrecordedRule| {
            rule.target
                .as_ref()
                .is_none_or(|t| !self.includes(&t.namespace))
        };
        for rule in rules {
            if !self.only.is_empty() && into_others(&rule) {
                continue;
            }
            let finding = self.route_finding(&rule, tenants, plan).await;
            report.routes.push(finding);
        }
        if !self.only.is_empty() {
            // Not tied to a namespace: only a whole migration reports them.
            return;
        }
        match exposure.orphan_cnames().await {
            Ok(orphans) => report.orphan_cnames = orphans,
            Err(error) => report.not_checked.push(format!("DNS records: {error}")),
        }
    }

    /// Whose a rule is, by the Service it routes to, and whether to adopt it.
    async fn route_finding(
        &self,
        rule: &UnrecordedRule,
        tenants: &[Tenant],
        plan: &mut Plan,
    ) -> RouteFinding {
        let mut finding = RouteFinding {
            hostname: rule.hostname.clone(),
            service_url: rule.service_url.clone(),
            scheme: "unknown".into(),
            owner: None,
            kind: None,
            cname: rule.cname,
            action: Action::Leave(String::new()),
        };
        let Some(target) = &rule.target else {
            finding.action = Action::Leave("it routes outside the cluster".into());
            return finding;
        };
        let Some(tenant) = tenants
            .iter()
            .find(|t| t.namespace.as_str() == target.namespace)
        else {
            finding.action = Action::Leave(format!(
                "{} is not a tenant namespace this identity can read",
                target.namespace
            ));
            return finding;
        };
        let namespace = &tenant.namespace;
        let owner = self
            .releases
            .service_owner(namespace, &target.service, &tenant.releases)
            .await;
        let name = match owner {
            Ok(Some(name)) => name,
            Ok(None) => {
                finding.action = Action::Leave(format!(
                    "no release of {namespace} owns Service {}",
                    target.service
                ));
                return finding;
            }
            Err(error) if error.code == Code::OperatorForbidden => {
                finding.action = Action::Leave(format!(
                    "its Service is not readable by this identity until {namespace} is set up; --apply sets it up first, then adopts the route"
                ));
                return finding;
            }
            Err(error) => {
                finding.action =
                    Action::Leave(format!("its Service is not readable ({})", error.code));
                return finding;
            }
        };
        let kind = if target.service == format!("{name}-mcp") {
            RouteKind::Mcp
        } else {
            RouteKind::App
        };
        finding.scheme = self.scheme(namespace, &name, &rule.subdomain);
        finding.owner = Some(format!("{namespace}/{name}"));
        finding.kind = Some(if kind == RouteKind::Mcp { "mcp" } else { "app" }.into());
        finding.action = if rule.cname == CnameState::Foreign {
            Action::Leave("a DNS record at the hostname is someone else's".into())
        } else {
            let owner = ReleaseRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
            };
            plan.routes.push((owner, rule.clone(), kind));
            Action::Adopt
        };
        finding
    }

    /// `generated`, `generated-mcp` (the earlier operator's names for the
    /// release) or `platform` (a name the platform chose).
    fn scheme(&self, namespace: &TenantNamespace, name: &ReleaseName, subdomain: &str) -> String {
        let generated = Subdomain::generated(namespace, name, &self.prefix).ok();
        match generated {
            Some(g) if g.as_str() == subdomain => "generated",
            Some(g) if g.mcp().as_str() == subdomain => "generated-mcp",
            _ => "platform",
        }
        .into()
    }

    /// The earlier operator's ClusterRole, ClusterRoleBinding and
    /// ServiceAccount (report only).
    async fn scan_cluster(&self, report: &mut Report) {
        let client = self.client.clone();
        let role = Api::<ClusterRole>::all(client.clone())
            .get_opt(EARLIER_NAME)
            .await;
        let object = format!("ClusterRole {EARLIER_NAME}");
        let apply = "kubectl apply -f k8s/rbac.yaml (or helm upgrade with charts/paas-operator) gives it this operator's rules";
        match role {
            Ok(Some(role)) if has_earlier_rules(&role) => report.earlier_operator.push(ClusterFinding {
                object,
                found: "the earlier operator's rules (every verb on Secrets, Deployments and more, cluster-wide)".into(),
                command: apply.into(),
            }),
            Ok(_) => {}
            Err(error) => report.earlier_operator.push(unreadable(object, &error, "kubectl get clusterrole paas-operator -o yaml (the earlier operator's grants every verb on deployments and secrets); then", apply)),
        }
        self.scan_binding(report).await;
        self.scan_account(report).await;
    }

    async fn scan_binding(&self, report: &mut Report) {
        let client = self.client.clone();
        let binding = Api::<ClusterRoleBinding>::all(client)
            .get_opt(EARLIER_NAME)
            .await;
        let object = format!("ClusterRoleBinding {EARLIER_NAME}");
        let apply = "kubectl apply -f k8s/rbac.yaml (or helm upgrade with charts/paas-operator) binds it to this operator's ServiceAccount only";
        match binding {
            Ok(Some(binding)) => {
                let earlier: Vec<String> = binding
                    .subjects
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|s| s.kind == "ServiceAccount")
                    .map(|s| format!("{}/{}", s.namespace.unwrap_or_default(), s.name))
                    .filter(|s| *s != self.operator_account)
                    .collect();
                if !earlier.is_empty() {
                    report.earlier_operator.push(ClusterFinding {
                        object,
                        found: format!("binds ServiceAccount {}", earlier.join(", ")),
                        command: apply.into(),
                    });
                }
            }
            Ok(None) => {}
            Err(error) => report.earlier_operator.push(unreadable(object, &error, "kubectl get clusterrolebinding paas-operator -o yaml; when it binds default/paas-operator:", apply)),
        }
    }

    async fn scan_account(&self, report: &mut Report) {
        let account = format!("{EARLIER_NAMESPACE}/{EARLIER_NAME}");
        if account == self.operator_account {
            return;
        }
        let client = self.client.clone();
        let found = Api::<ServiceAccount>::namespaced(client, EARLIER_NAMESPACE)
            .get_opt(EARLIER_NAME)
            .await;
        let object = format!("ServiceAccount {account}");
        let delete = "once the platform calls this operator: kubectl -n default delete deployment,service,serviceaccount paas-operator and kubectl -n default delete secret paas-operator-secret";
        match found {
            Ok(Some(_)) => report.earlier_operator.push(ClusterFinding {
                object,
                found: "the earlier operator's identity (with its Deployment in default)".into(),
                command: delete.into(),
            }),
            Ok(None) => {}
            Err(error) => report.earlier_operator.push(unreadable(
                object,
                &error,
                "kubectl -n default get serviceaccount,deployment paas-operator; when they exist,",
                delete,
            )),
        }
    }
}

/// Rules only the earlier operator's ClusterRole has: chart kinds or every
/// verb on Secrets, cluster-wide.
fn has_earlier_rules(role: &ClusterRole) -> bool {
    role.rules.iter().flatten().any(|rule| {
        let resources = rule.resources.clone().unwrap_or_default();
        resources.iter().any(|r| r == "deployments")
            || (resources.iter().any(|r| r == "secrets")
                && rule.verbs.iter().any(|v| v == "delete"))
    })
}

fn unreadable(object: String, error: &kube::Error, check: &str, then: &str) -> ClusterFinding {
    let found = match error {
        kube::Error::Api(status) if status.code == 403 => {
            "not readable by this identity".to_owned()
        }
        other => format!("not readable ({other})"),
    };
    ClusterFinding {
        object,
        found,
        command: format!("check with {check} {then}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(rules: serde_json::Value) -> ClusterRole {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "paas-operator"}, "rules": rules}),
        )
        .expect("role")
    }

    #[test]
    fn the_earlier_operators_cluster_role_is_told_from_ours() {
        // Its k8s/ manifests: every verb on secrets and on apps' workloads.
        let all = [
            "get", "list", "watch", "create", "update", "patch", "delete",
        ];
        let earlier = role(serde_json::json!([
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": all},
            {"apiGroups": [""], "resources": ["secrets", "configmaps", "services"], "verbs": all},
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": all},
        ]));
        assert!(has_earlier_rules(&earlier));
        // Ours (k8s/rbac.yaml): namespaces, RoleBindings and bind only.
        let ours = role(serde_json::json!([
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "create", "patch", "delete"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["get", "create", "patch"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"],
             "resourceNames": ["paas-operator-tenant", "paas-tenant"]},
        ]));
        assert!(!has_earlier_rules(&ours));
    }
}
