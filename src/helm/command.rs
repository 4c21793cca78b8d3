//! Every helm command line the operator runs is built here, as a vector of
//! arguments (never a shell string). Options always come first and `--` ends
//! them, so no positional value can ever be read as a flag; values go through
//! stdin (`--values -`), never `--set`. Every command about a release runs
//! as the tenant ([`act_as`]: `--kube-as-user`), never as the operator.

use std::path::Path;
use std::time::Duration;

use super::postrender::PostRenderArgs;
use crate::names::{ReleaseName, TenantNamespace};

/// The chart of an install or upgrade: always a local archive the
/// operator fetched and inspected (`crate::charts`), never a URL, so helm
/// has nothing to pull (no `--version`, `--repo` or `--plain-http`).
#[derive(Debug, Clone, Copy)]
pub struct ChartArgs<'a> {
    pub archive: &'a Path,
}

/// How an upgrade treats the values of the previous revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValuesMode {
    /// Merge the new values over the previous revision's (`--reuse-values`).
    Reuse,
    /// Start from the chart's defaults (`--reset-values`).
    Reset,
}

fn timeout_arg(timeout: Duration) -> String {
    format!("{}s", timeout.as_secs().max(1))
}

fn release_target(args: &mut Vec<String>, namespace: &TenantNamespace, timeout: Duration) {
    args.extend(["--namespace".into(), namespace.as_str().into()]);
    args.extend(["--timeout".into(), timeout_arg(timeout)]);
}

/// Ends the options (`--`), then the release name and the archive.
fn chart_tail(args: &mut Vec<String>, name: &ReleaseName, chart: ChartArgs<'_>) {
    args.extend([
        "--".into(),
        name.as_str().into(),
        chart.archive.display().to_string(),
    ]);
}

/// Helm 4's `--post-renderer PLUGIN --post-renderer-args A …` (the
/// confinement check inside the run).
fn post_renderer(args: &mut Vec<String>, post_render: Option<&PostRenderArgs>) {
    let Some(post_render) = post_render else {
        return;
    };
    args.extend(["--post-renderer".into(), post_render.plugin.into()]);
    for arg in &post_render.args {
        args.extend(["--post-renderer-args".into(), arg.clone()]);
    }
}

/// Makes helm act as `user` (the tenant's ServiceAccount) for every
/// Kubernetes call, `lookup` in templates included: the option goes before
/// the `--` that ends the options (or last, for commands without one).
pub fn act_as(args: &mut Vec<String>, user: &str) {
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.splice(at..at, ["--kube-as-user".to_owned(), user.to_owned()]);
}

/// `helm install`, values on stdin, JSON release on stdout. CRDs of the
/// chart's `crds/` directory are cluster-scoped: never installed.
pub fn install(
    namespace: &TenantNamespace,
    name: &ReleaseName,
    chart: ChartArgs<'_>,
    post_render: Option<&PostRenderArgs>,
    timeout: Duration,
) -> Vec<String> {
    let mut args = vec!["install".to_owned()];
    release_target(&mut args, namespace, timeout);
    args.extend([
        "--output".into(),
        "json".into(),
        "--values".into(),
        "-".into(),
        "--skip-crds".into(),
    ]);
    post_renderer(&mut args, post_render);
    chart_tail(&mut args, name, chart);
    args
}

/// `helm upgrade`, values on stdin, JSON release on stdout.
pub fn upgrade(
    namespace: &TenantNamespace,
    name: &ReleaseName,
    chart: ChartArgs<'_>,
    mode: ValuesMode,
    post_render: Option<&PostRenderArgs>,
    timeout: Duration,
) -> Vec<String> {
    let mut args = vec!["upgrade".to_owned()];
    release_target(&mut args, namespace, timeout);
    args.extend([
        "--output".into(),
        "json".into(),
        "--values".into(),
        "-".into(),
    ]);
    args.push(match mode {
        ValuesMode::Reuse => "--reuse-values".into(),
        ValuesMode::Reset => "--reset-values".into(),
    });
    post_renderer(&mut args, post_render);
    chart_tail(&mut args, name, chart);
    args
}

/// The same install or upgrade as a server-side dry run (Helm 3): the
/// release helm would make, rendered once with `lookup` as the tenant and
/// printed as JSON (manifest, hooks, values, chart metadata); nothing is
/// stored or created. Without OpenAPI validation: the install of the
/// checked documents that follows validates exactly these documents
/// before it creates anything, and validating them twice was half of the
/// dry run's CPU (fetching and parsing the API server's schema).
pub fn dry_run(mut args: Vec<String>) -> Vec<String> {
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.splice(
        at..at,
        [
            "--dry-run=server".to_owned(),
            "--disable-openapi-validation".to_owned(),
        ],
    );
    args
}

/// `helm install` of a chart the operator wrote itself ([`super::wrapper`]:
/// checked documents, nothing to render), values on stdin.
pub fn install_local(
    namespace: &TenantNamespace,
    name: &ReleaseName,
    chart: &Path,
    timeout: Duration,
) -> Vec<String> {
    let mut args = vec!["install".to_owned()];
    release_target(&mut args, namespace, timeout);
    args.extend([
        "--output".into(),
        "json".into(),
        "--values".into(),
        "-".into(),
    ]);
    args.extend([
        "--".into(),
        name.as_str().into(),
        chart.display().to_string(),
    ]);
    args
}

/// `helm upgrade` to a chart the operator wrote itself, with exactly the
/// values on stdin (`--reset-values`: the caller merged them already).
pub fn upgrade_local(
    namespace: &TenantNamespace,
    name: &ReleaseName,
    chart: &Path,
    description: Option<&str>,
    timeout: Duration,
) -> Vec<String> {
    let mut args = vec!["upgrade".to_owned()];
    release_target(&mut args, namespace, timeout);
    args.extend([
        "--output".into(),
        "json".into(),
        "--values".into(),
        "-".into(),
        "--reset-values".into(),
    ]);
    if let Some(description) = description {
        args.extend(["--description".into(), description.into()]);
    }
    args.extend([
        "--".into(),
        name.as_str().into(),
        chart.display().to_string(),
    ]);
    args
}

/// `helm uninstall`.
pub fn uninstall(
    namespace: &TenantNamespace,
    name: &ReleaseName,
    timeout: Duration,
) -> Vec<String> {
    let mut args = vec!["uninstall".to_owned()];
    release_target(&mut args, namespace, timeout);
    args.extend(["--".into(), name.as_str().into()]);
    args
}

/// What `helm get all --template` prints for a release: one `key value` line
/// per field, strings Go-quoted (`%q`, so no value spans lines), times in
/// RFC 3339 with nanoseconds, one `hook` line per hook. The fields are those
/// of Helm's release record, which is the same Go type in Helm 3 and Helm 4.
/// User values are not reachable from a template as JSON; they come from
/// `helm get values` ([`get_values`]).
pub const RELEASE_TEMPLATE: &str = concat!(
    "name {{printf \"%q\" .Release.Name}}\n",
    "namespace {{printf \"%q\" .Release.Namespace}}\n",
    "version {{.Release.Version}}\n",
    "status {{printf \"%q\" .Release.Info.Status}}\n",
    "description {{printf \"%q\" .Release.Info.Description}}\n",
    "first_deployed {{.Release.Info.FirstDeployed.Format \"2006-01-02T15:04:05.999999999Z07:00\"}}\n",
    "last_deployed {{.Release.Info.LastDeployed.Format \"2006-01-02T15:04:05.999999999Z07:00\"}}\n",
    "chart {{printf \"%q\" .Release.Chart.Metadata.Name}}\n",
    "chart_version {{printf \"%q\" .Release.Chart.Metadata.Version}}\n",
    "app_version {{printf \"%q\" .Release.Chart.Metadata.AppVersion}}\n",
    "manifest {{printf \"%q\" .Release.Manifest}}\n",
    "{{range .Release.Hooks}}hook {{printf \"%q\" .Manifest}}\n{{end}}",
);

/// Most revisions `helm history` prints (it keeps the newest). Far above
/// any `--history-max`, so the whole stored history, as storage reads give.
pub const HISTORY_MAX: u32 = 10_000;

/// Most releases `helm list` prints for a namespace view.
pub const LIST_MAX: u32 = 10_000;

/// `helm get all` of the newest revision (any status), printed with
/// [`RELEASE_TEMPLATE`]. Reads storage only, unlike Helm 4's `helm status`,
/// which also fetches every object of the release from the cluster (and
/// neither major's `status` prints the chart's metadata).
pub fn get_release(
    namespace: &TenantNamespace,
    name: &ReleaseName,
    revision: Option<u32>,
) -> Vec<String> {
    let mut args = vec![
        "get".into(),
        "all".into(),
        "--namespace".into(),
        namespace.as_str().into(),
        "--template".into(),
        RELEASE_TEMPLATE.into(),
    ];
    if let Some(revision) = revision {
        args.extend(["--revision".into(), revision.to_string()]);
    }
    args.extend(["--".into(), name.as_str().into()]);
    args
}

/// `helm get values` of one revision: the user-supplied values as JSON
/// (`null` when there are none).
pub fn get_values(namespace: &TenantNamespace, name: &ReleaseName, revision: u32) -> Vec<String> {
    vec![
        "get".into(),
        "values".into(),
        "--namespace".into(),
        namespace.as_str().into(),
        "--output".into(),
        "json".into(),
        "--revision".into(),
        revision.to_string(),
        "--".into(),
        name.as_str().into(),
    ]
}

/// `helm history` as JSON, oldest first: revision, updated, status,
/// `name-version` chart, app version and description of each revision.
pub fn history(namespace: &TenantNamespace, name: &ReleaseName) -> Vec<String> {
    vec![
        "history".into(),
        "--namespace".into(),
        namespace.as_str().into(),
        "--output".into(),
        "json".into(),
        "--max".into(),
        HISTORY_MAX.to_string(),
        "--".into(),
        name.as_str().into(),
    ]
}

/// `helm list` of a namespace as JSON, every status included: Helm 3 needs
/// `--all` for that (it hides pending, superseded and uninstalled releases
/// otherwise); Helm 4 lists every status by default and has no `--all`.
pub fn list(namespace: &TenantNamespace, helm_major: u8) -> Vec<String> {
    let mut args = vec![
        "list".to_owned(),
        "--namespace".into(),
        namespace.as_str().into(),
    ];
    if helm_major < 4 {
        args.push("--all".into());
    }
    args.extend([
        "--max".into(),
        LIST_MAX.to_string(),
        "--output".into(),
        "json".into(),
    ]);
    args
}

/// `helm version`, printing only the version (`v3.22.0`).
pub fn version() -> Vec<String> {
    vec!["version".into(), "--template".into(), "{{.Version}}".into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> TenantNamespace {
        TenantNamespace::parse("paas-ws-3f9a0c1d", "paas-ws-").unwrap()
    }

    fn name() -> ReleaseName {
        ReleaseName::parse("svc-1a2b3c4d").unwrap()
    }

    const ARCHIVE: &str = "/tmp/paas-operator-charts-1-x/0bc5.tgz";

    fn chart() -> ChartArgs<'static> {
        ChartArgs {
            archive: Path::new(ARCHIVE),
        }
    }

    #[test]
    fn install_ends_options_before_positionals() {
        let args = install(&ns(), &name(), chart(), None, Duration::from_secs(300));
        assert_eq!(
            args.join(" "),
            format!(
                "install --namespace paas-ws-3f9a0c1d --timeout 300s --output json --values - --skip-crds -- svc-1a2b3c4d {ARCHIVE}"
            )
        );
        assert!(!args.iter().any(|a| a.starts_with("--set")));
        // Nothing to pull: no chart source options at all.
        for pulling in ["--version", "--repo", "--plain-http"] {
            assert!(!args.iter().any(|a| a == pulling), "{pulling}");
        }
    }

    #[test]
    fn upgrade_of_a_local_archive() {
        let args = upgrade(
            &ns(),
            &name(),
            chart(),
            ValuesMode::Reset,
            None,
            Duration::from_secs(60),
        );
        assert_eq!(
            args.join(" "),
            format!(
                "upgrade --namespace paas-ws-3f9a0c1d --timeout 60s --output json --values - --reset-values -- svc-1a2b3c4d {ARCHIVE}"
            )
        );
    }

    #[test]
    fn post_renderer_options_come_before_the_end_of_options() {
        let post_render = PostRenderArgs {
            plugin: "paas-confine",
            args: vec!["/tmp/p/r.rules.json".into(), "/tmp/p/r.report.json".into()],
        };
        let args = upgrade(
            &ns(),
            &name(),
            chart(),
            ValuesMode::Reuse,
            Some(&post_render),
            Duration::from_secs(60),
        );
        assert_eq!(
            args.join(" "),
            format!(
                "upgrade --namespace paas-ws-3f9a0c1d --timeout 60s --output json --values - --reuse-values --post-renderer paas-confine --post-renderer-args /tmp/p/r.rules.json --post-renderer-args /tmp/p/r.report.json -- svc-1a2b3c4d {ARCHIVE}"
            )
        );
    }

    #[test]
    fn tenant_identity_and_dry_run_go_before_the_end_of_options() {
        let mut args = dry_run(install(
            &ns(),
            &name(),
            chart(),
            None,
            Duration::from_secs(60),
        ));
        act_as(
            &mut args,
            "system:serviceaccount:paas-ws-3f9a0c1d:paas-tenant",
        );
        assert_eq!(
            args.join(" "),
            format!(
                "install --namespace paas-ws-3f9a0c1d --timeout 60s --output json --values - --skip-crds --dry-run=server --disable-openapi-validation --kube-as-user system:serviceaccount:paas-ws-3f9a0c1d:paas-tenant -- svc-1a2b3c4d {ARCHIVE}"
            )
        );
        let mut list = list(&ns(), 4);
        act_as(&mut list, "u");
        assert_eq!(list[list.len() - 2..].join(" "), "--kube-as-user u");
    }

    #[test]
    fn local_charts_are_installed_with_exactly_the_given_values() {
        let dir = Path::new("/tmp/paas-operator-1-chart-x");
        assert_eq!(
            install_local(&ns(), &name(), dir, Duration::from_secs(60)).join(" "),
            "install --namespace paas-ws-3f9a0c1d --timeout 60s --output json --values - -- svc-1a2b3c4d /tmp/paas-operator-1-chart-x"
        );
        assert_eq!(
            upgrade_local(
                &ns(),
                &name(),
                dir,
                Some("Rollback to 2"),
                Duration::from_secs(60)
            )
            .join(" "),
            "upgrade --namespace paas-ws-3f9a0c1d --timeout 60s --output json --values - --reset-values --description Rollback to 2 -- svc-1a2b3c4d /tmp/paas-operator-1-chart-x"
        );
    }

    #[test]
    fn reads_end_options_before_the_release_name() {
        let get = get_release(&ns(), &name(), None);
        assert_eq!(get[..4].join(" "), "get all --namespace paas-ws-3f9a0c1d");
        assert_eq!(get[4], "--template");
        assert_eq!(get[6..].join(" "), "-- svc-1a2b3c4d");
        assert_eq!(
            get_values(&ns(), &name(), 7).join(" "),
            "get values --namespace paas-ws-3f9a0c1d --output json --revision 7 -- svc-1a2b3c4d"
        );
        assert_eq!(
            history(&ns(), &name()).join(" "),
            "history --namespace paas-ws-3f9a0c1d --output json --max 10000 -- svc-1a2b3c4d"
        );
    }

    #[test]
    fn list_includes_every_status_on_both_majors() {
        assert_eq!(
            list(&ns(), 3).join(" "),
            "list --namespace paas-ws-3f9a0c1d --all --max 10000 --output json"
        );
        assert_eq!(
            list(&ns(), 4).join(" "),
            "list --namespace paas-ws-3f9a0c1d --max 10000 --output json"
        );
    }

    #[test]
    fn uninstall() {
        let t = Duration::from_secs(300);
        assert_eq!(
            super::uninstall(&ns(), &name(), t).join(" "),
            "uninstall --namespace paas-ws-3f9a0c1d --timeout 300s -- svc-1a2b3c4d"
        );
    }
}
