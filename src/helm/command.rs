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

/// One helm command: the words that name it, whether it takes the
/// operation's `--timeout`, and the flags it always passes, in argv order.
/// Every command line starts from one line of the table below
/// ([`start`]), adds what varies (post-renderer, values mode, revision…)
/// and ends its options with `--` before any positional ([`end`]).
struct Cmd {
    words: &'static [&'static str],
    timeout: bool,
    flags: &'static [&'static str],
}

/// A write: bounded by the operation's `--timeout`.
const fn write(words: &'static [&'static str], flags: &'static [&'static str]) -> Cmd {
    Cmd {
        words,
        timeout: true,
        flags,
    }
}

/// A read of storage: no `--timeout` (the runner's deadline bounds it).
const fn read(words: &'static [&'static str], flags: &'static [&'static str]) -> Cmd {
    Cmd {
        words,
        timeout: false,
        flags,
    }
}

// The table: one line per operation. Writes print the release as JSON
// and take values on stdin (never `--set`).
#[rustfmt::skip]
mod table {
    use super::{Cmd, read, write};
    pub(super) const INSTALL: Cmd = write(&["install"], &["--output", "json", "--values", "-", "--skip-crds"]);
    pub(super) const UPGRADE: Cmd = write(&["upgrade"], &["--output", "json", "--values", "-"]);
    pub(super) const INSTALL_LOCAL: Cmd = write(&["install"], &["--output", "json", "--values", "-"]);
    pub(super) const UPGRADE_LOCAL: Cmd = write(&["upgrade"], &["--output", "json", "--values", "-", "--reset-values"]);
    pub(super) const UNINSTALL: Cmd = write(&["uninstall"], &[]);
    pub(super) const GET_ALL: Cmd = read(&["get", "all"], &[]);
    pub(super) const GET_VALUES: Cmd = read(&["get", "values"], &["--output", "json"]);
    pub(super) const HISTORY: Cmd = read(&["history"], &["--output", "json"]);
    /// Helm 3 needs `--all` to list every status (it hides pending,
    /// superseded and uninstalled releases otherwise); Helm 4 lists them
    /// all and has no `--all`.
    pub(super) const LIST_HELM3: Cmd = read(&["list"], &["--all"]);
    pub(super) const LIST_HELM4: Cmd = read(&["list"], &[]);
}
use table::*;

/// The command's words, `--namespace`, `--timeout` when it takes one, and
/// its fixed flags.
fn start(cmd: &Cmd, namespace: &TenantNamespace, timeout: Duration) -> Vec<String> {
    let mut args: Vec<String> = cmd.words.iter().map(|w| (*w).to_owned()).collect();
    args.extend(["--namespace".into(), namespace.as_str().into()]);
    if cmd.timeout {
        let seconds = timeout.as_secs().max(1);
        args.extend(["--timeout".into(), format!("{seconds}s")]);
    }
    args.extend(cmd.flags.iter().map(|f| (*f).to_owned()));
    args
}

/// Ends the options (`--`), then the positionals (release name, chart).
fn end(mut args: Vec<String>, positionals: &[&str]) -> Vec<String> {
    args.push("--".into());
    args.extend(positionals.iter().map(|p| (*p).to_owned()));
    args
}

/// What reads pass as their timeout: [`start`] leaves it out.
const NO_TIMEOUT: Duration = Duration::ZERO;

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
    let mut args = start(&INSTALL, namespace, timeout);
    post_renderer(&mut args, post_render);
    end(args, &[name.as_str(), &chart.archive.display().to_string()])
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
    let mut args = start(&UPGRADE, namespace, timeout);
    args.push(match mode {
        ValuesMode::Reuse => "--reuse-values".into(),
        ValuesMode::Reset => "--reset-values".into(),
    });
    post_renderer(&mut args, post_render);
    end(args, &[name.as_str(), &chart.archive.display().to_string()])
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
    validate: bool,
    timeout: Duration,
) -> Vec<String> {
    let mut args = start(&INSTALL_LOCAL, namespace, timeout);
    openapi_validation(&mut args, validate);
    end(args, &[name.as_str(), &chart.display().to_string()])
}

/// `--disable-openapi-validation` unless `validate`: helm then leaves the
/// validation of each object to the API server as it creates it.
fn openapi_validation(args: &mut Vec<String>, validate: bool) {
    if !validate {
        args.push("--disable-openapi-validation".into());
    }
}

/// `helm upgrade` to a chart the operator wrote itself, with exactly the
/// values on stdin (`--reset-values`: the caller merged them already).
pub fn upgrade_local(
    namespace: &TenantNamespace,
    name: &ReleaseName,
    chart: &Path,
    description: Option<&str>,
    validate: bool,
    timeout: Duration,
) -> Vec<String> {
    let mut args = start(&UPGRADE_LOCAL, namespace, timeout);
    openapi_validation(&mut args, validate);
    if let Some(description) = description {
        args.extend(["--description".into(), description.into()]);
    }
    end(args, &[name.as_str(), &chart.display().to_string()])
}

/// `helm uninstall`.
pub fn uninstall(
    namespace: &TenantNamespace,
    name: &ReleaseName,
    timeout: Duration,
) -> Vec<String> {
    end(start(&UNINSTALL, namespace, timeout), &[name.as_str()])
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
    let mut args = start(&GET_ALL, namespace, NO_TIMEOUT);
    args.extend(["--template".into(), RELEASE_TEMPLATE.into()]);
    if let Some(revision) = revision {
        args.extend(["--revision".into(), revision.to_string()]);
    }
    end(args, &[name.as_str()])
}

/// `helm get values` of one revision: the user-supplied values as JSON
/// (`null` when there are none).
pub fn get_values(namespace: &TenantNamespace, name: &ReleaseName, revision: u32) -> Vec<String> {
    let mut args = start(&GET_VALUES, namespace, NO_TIMEOUT);
    args.extend(["--revision".into(), revision.to_string()]);
    end(args, &[name.as_str()])
}

/// `helm history` as JSON, oldest first: revision, updated, status,
/// `name-version` chart, app version and description of each revision.
pub fn history(namespace: &TenantNamespace, name: &ReleaseName) -> Vec<String> {
    let mut args = start(&HISTORY, namespace, NO_TIMEOUT);
    args.extend(["--max".into(), HISTORY_MAX.to_string()]);
    end(args, &[name.as_str()])
}

/// `helm list` of a namespace as JSON, every status included, on either
/// major (`LIST_HELM3`, `LIST_HELM4`).
pub fn list(namespace: &TenantNamespace, helm_major: u8) -> Vec<String> {
    let cmd = if helm_major < 4 {
        &LIST_HELM3
    } else {
        &LIST_HELM4
    };
    let mut args = start(cmd, namespace, NO_TIMEOUT);
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
            install_local(&ns(), &name(), dir, true, Duration::from_secs(60)).join(" "),
            "install --namespace paas-ws-3f9a0c1d --timeout 60s --output json --values - -- svc-1a2b3c4d /tmp/paas-operator-1-chart-x"
        );
        assert_eq!(
            upgrade_local(
                &ns(),
                &name(),
                dir,
                Some("Rollback to 2"),
                true,
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

    /// Every operation's exact command line, as each major runs it: Helm 4
    /// checks inside the run (post-renderer); Helm 3 dry-runs, then
    /// installs the checked documents as a local chart; both list every
    /// status. All act as the tenant.
    #[test]
    fn every_operation_argv_on_helm3_and_helm4() {
        let t = Duration::from_secs(120);
        let local = Path::new("/tmp/paas-operator-1-chart-x");
        let post_render = PostRenderArgs {
            plugin: "paas-confine",
            args: vec!["/tmp/p/r.rules.json".into()],
        };
        let user = "system:serviceaccount:paas-ws-3f9a0c1d:paas-tenant";
        let as_tenant = |mut args: Vec<String>| {
            act_as(&mut args, user);
            args.join(" ")
        };
        let (ns, name) = (ns(), name());
        let pr = "--post-renderer paas-confine --post-renderer-args /tmp/p/r.rules.json";
        let me = format!("--kube-as-user {user}");
        let head = "--namespace paas-ws-3f9a0c1d";
        let cases: Vec<(&str, Vec<String>, String)> = vec![
            (
                "helm4 install",
                install(&ns, &name, chart(), Some(&post_render), t),
                format!(
                    "install {head} --timeout 120s --output json --values - --skip-crds {pr} {me} -- svc-1a2b3c4d {ARCHIVE}"
                ),
            ),
            (
                "helm4 upgrade",
                upgrade(
                    &ns,
                    &name,
                    chart(),
                    ValuesMode::Reuse,
                    Some(&post_render),
                    t,
                ),
                format!(
                    "upgrade {head} --timeout 120s --output json --values - --reuse-values {pr} {me} -- svc-1a2b3c4d {ARCHIVE}"
                ),
            ),
            (
                "helm3 install dry run",
                dry_run(install(&ns, &name, chart(), None, t)),
                format!(
                    "install {head} --timeout 120s --output json --values - --skip-crds --dry-run=server --disable-openapi-validation {me} -- svc-1a2b3c4d {ARCHIVE}"
                ),
            ),
            (
                "helm3 upgrade dry run",
                dry_run(upgrade(&ns, &name, chart(), ValuesMode::Reset, None, t)),
                format!(
                    "upgrade {head} --timeout 120s --output json --values - --reset-values --dry-run=server --disable-openapi-validation {me} -- svc-1a2b3c4d {ARCHIVE}"
                ),
            ),
            (
                "helm3 install checked",
                install_local(&ns, &name, local, false, t),
                format!(
                    "install {head} --timeout 120s --output json --values - --disable-openapi-validation {me} -- svc-1a2b3c4d {}",
                    local.display()
                ),
            ),
            (
                "rollback and reapply (both)",
                upgrade_local(&ns, &name, local, Some("Rollback to 1"), true, t),
                format!(
                    "upgrade {head} --timeout 120s --output json --values - --reset-values --description Rollback to 1 {me} -- svc-1a2b3c4d {}",
                    local.display()
                ),
            ),
            (
                "uninstall (both)",
                super::uninstall(&ns, &name, t),
                format!("uninstall {head} --timeout 120s {me} -- svc-1a2b3c4d"),
            ),
            (
                "get all (both)",
                get_release(&ns, &name, Some(2)),
                format!(
                    "get all {head} --template {RELEASE_TEMPLATE} --revision 2 {me} -- svc-1a2b3c4d"
                ),
            ),
            (
                "get values (both)",
                get_values(&ns, &name, 2),
                format!("get values {head} --output json --revision 2 {me} -- svc-1a2b3c4d"),
            ),
            (
                "history (both)",
                history(&ns, &name),
                format!("history {head} --output json --max 10000 {me} -- svc-1a2b3c4d"),
            ),
            (
                "helm3 list",
                list(&ns, 3),
                format!("list {head} --all --max 10000 --output json {me}"),
            ),
            (
                "helm4 list",
                list(&ns, 4),
                format!("list {head} --max 10000 --output json {me}"),
            ),
        ];
        for (operation, args, expected) in cases {
            assert_eq!(as_tenant(args), expected, "{operation}");
        }
        assert_eq!(version().join(" "), "version --template {{.Version}}");
    }
}
