//! Confinement inside the one helm run (Helm 4): a `postrenderer/v1`
//! plugin whose program is this binary's hidden `confine-check` subcommand.
//!
//! ```text
//!  operator: writes <run>.rules.json (namespace, allowed kinds, cluster-scoped kinds)
//!     │  helm install … --post-renderer paas-confine
//!     │                --post-renderer-args <run>.rules.json --post-renderer-args <run>.report.json
//!     ▼
//!  helm 4 ── templates + hooks (stdin) ──> paas-operator confine-check <rules> <report>
//!         <── the documents it checked, re-serialised as JSON (stdout), exit 0
//!          or exit 1 and <report> lists the violations (helm swallows the
//!             plugin's stderr), before helm stores or creates anything
//!  operator: helm failed and <report> exists → 400 chart_not_confined
//! ```
//!
//! The plugin lives in a private directory the operator writes at start and
//! gives helm as `HELM_PLUGINS`. Helm 3 runs post-renderers as an executable
//! and without hooks, so with Helm 3 the operator runs the same checker
//! itself, as a process of its own, on the rendering of a dry run.
//!
//! The checker marks its progress beside the report: `<report>.started`
//! as it starts (helm runs it once rendering is done, so the runner's
//! render deadline ends there) and `<report>.passed` when it accepted the
//! rendering (before that, nothing has been created: a helm or checker that
//! dies earlier leaves no release behind). It lowers its own limits first
//! ([`CHECKER_LIMITS`]): it parses what a chart rendered.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::limits::Limits;
use crate::render::confine::{MAX_RENDERING, Rules, Violation};
use crate::render::parse::MAX_INPUT;

/// The hidden subcommand helm runs (`paas-operator confine-check RULES REPORT`).
pub const CHECKER_SUBCOMMAND: &str = "confine-check";
/// The plugin's name, given to helm as `--post-renderer`.
pub const PLUGIN_NAME: &str = "paas-confine";

/// What the checker may use, set on itself as it starts (below helm's, which
/// it inherits). Measured: the largest rendering it accepts (8 MiB of JSON)
/// peaks near 100 MiB; the parse budget stops expansion well before this.
pub const CHECKER_LIMITS: Limits = Limits {
    data: 192 << 20,
    cpu: 20,
    nofile: 64,
    fsize: 16 << 20,
};

/// The plugin directory of this process; removed when dropped.
#[derive(Debug)]
pub struct ConfinePlugin {
    root: PathBuf,
    checker: PathBuf,
}

/// The arguments one helm run needs for the post-renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostRenderArgs {
    pub plugin: &'static str,
    /// Passed as `--post-renderer-args`, in order.
    pub args: Vec<String>,
}

impl ConfinePlugin {
    /// Writes the plugin into a fresh private directory under `parent`
    /// (the system temp dir in production). `checker` must be an absolute
    /// path to an executable that understands [`CHECKER_SUBCOMMAND`].
    pub async fn install(parent: &Path, checker: &Path) -> std::io::Result<Self> {
        remove_stale(parent).await;
        let root = parent.join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        let plugin = Self {
            root,
            checker: checker.to_owned(),
        };
        plugin.write_files().await?;
        Ok(plugin)
    }

    /// Given to helm as `HELM_PLUGINS`.
    pub fn plugins_dir(&self) -> PathBuf {
        self.root.join("plugins")
    }

    fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    async fn write_files(&self) -> std::io::Result<()> {
        let mut builder = tokio::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        let dir = self.plugins_dir().join(PLUGIN_NAME);
        builder.create(&dir).await?;
        builder.create(self.runs_dir()).await?;
        tokio::fs::write(dir.join("plugin.yaml"), plugin_yaml()).await?;
        // The checker is linked into the plugin, so its path needs no YAML
        // quoting and escapes helm's `$VAR` expansion of the command. A hard
        // link pins the binary this process started with (one replaced on
        // disk later is not run half-way through an upgrade); across file
        // systems, a symlink.
        let link = dir.join("check");
        match tokio::fs::remove_file(&link).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        if tokio::fs::hard_link(&self.checker, &link).await.is_ok() {
            return Ok(());
        }
        tokio::fs::symlink(&self.checker, &link).await
    }

    /// Writes the rules of one helm run; the returned value holds its files
    /// (removed when it is dropped).
    pub async fn prepare(&self, rules: &Rules) -> std::io::Result<ConfineRun> {
        let id = uuid::Uuid::new_v4();
        let run = ConfineRun {
            rules: self.runs_dir().join(format!("{id}.rules.json")),
            report: self.runs_dir().join(format!("{id}.report.json")),
        };
        let json = serde_json::to_vec(rules)?;
        if let Err(error) = tokio::fs::write(&run.rules, &json).await {
            if error.kind() != std::io::ErrorKind::NotFound {
                return Err(error);
            }
            // Someone cleaned the temp dir under us: write the plugin again.
            tracing::warn!(dir = %self.root.display(), "confinement plugin directory vanished; rewriting it");
            self.write_files().await?;
            tokio::fs::write(&run.rules, &json).await?;
        }
        Ok(run)
    }
}

/// Plugin directories are `paas-operator-<pid>-<uuid>` under the parent.
const DIR_PREFIX: &str = "paas-operator-";

/// Removes the plugin directories of processes that are gone (killed
/// before their [`Drop`] ran): each holds a link to the binary it ran, which
/// would otherwise keep replaced binaries on disk.
async fn remove_stale(parent: &Path) {
    if !Path::new("/proc/self").exists() {
        return; // No way to tell a live process here.
    }
    let Ok(mut entries) = tokio::fs::read_dir(parent).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive && entry.path().join("plugins").is_dir() {
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
        }
    }
}

impl Drop for ConfinePlugin {
    fn drop(&mut self) {
        // Once, when the process ends: a few small files.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn plugin_yaml() -> String {
    format!(
        "# Written by paas-operator: checks that a release stays in its namespace.\n\
         apiVersion: v1\n\
         name: {PLUGIN_NAME}\n\
         version: 1.0.0\n\
         type: postrenderer/v1\n\
         runtime: subprocess\n\
         runtimeConfig:\n  \
           platformCommand:\n    \
             - command: ${{HELM_PLUGIN_DIR}}/check\n      \
               args: [{CHECKER_SUBCOMMAND}]\n"
    )
}

/// The files of one checked helm run.
#[derive(Debug)]
pub struct ConfineRun {
    rules: PathBuf,
    report: PathBuf,
}

/// How far the checker of one run got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckerOutcome {
    /// It never started (helm failed before, or was stopped rendering).
    NotStarted,
    /// It started but neither refused nor passed: it was killed, or died
    /// over its own limits.
    Died,
    /// It refused the rendering.
    Refused(Vec<Violation>),
    /// It passed the rendering on to helm.
    Passed,
}

/// `<report>.<what>`: the checker's progress marks.
fn mark(report: &Path, what: &str) -> PathBuf {
    let mut path = report.as_os_str().to_owned();
    path.push(".");
    path.push(what);
    PathBuf::from(path)
}

impl ConfineRun {
    pub fn post_render_args(&self) -> PostRenderArgs {
        PostRenderArgs {
            plugin: PLUGIN_NAME,
            args: vec![
                self.rules.to_string_lossy().into_owned(),
                self.report.to_string_lossy().into_owned(),
            ],
        }
    }

    /// Exists once the checker started: rendering is over.
    pub fn started_mark(&self) -> PathBuf {
        mark(&self.report, "started")
    }

    /// Exists once the checker passed the rendering to helm.
    pub fn passed_mark(&self) -> PathBuf {
        mark(&self.report, "passed")
    }

    /// The rules file and the report, as the checker takes them.
    pub fn checker_args(&self) -> Vec<String> {
        vec![
            CHECKER_SUBCOMMAND.to_owned(),
            self.rules.to_string_lossy().into_owned(),
            self.report.to_string_lossy().into_owned(),
        ]
    }

    /// How far the checker got (read after helm ended).
    pub async fn outcome(&self) -> CheckerOutcome {
        if let Some(found) = self.violations().await {
            return CheckerOutcome::Refused(found);
        }
        if tokio::fs::try_exists(self.passed_mark())
            .await
            .unwrap_or(false)
        {
            return CheckerOutcome::Passed;
        }
        if tokio::fs::try_exists(self.started_mark())
            .await
            .unwrap_or(false)
        {
            return CheckerOutcome::Died;
        }
        CheckerOutcome::NotStarted
    }

    /// What the checker refused, if it did (read after helm failed).
    pub async fn violations(&self) -> Option<Vec<Violation>> {
        let bytes = tokio::fs::read(&self.report).await.ok()?;
        match serde_json::from_slice::<Vec<Violation>>(&bytes) {
            Ok(found) if !found.is_empty() => Some(found),
            Ok(_) => None,
            Err(error) => {
                tracing::error!(%error, report = %self.report.display(), "unreadable confinement report");
                None
            }
        }
    }
}

impl Drop for ConfineRun {
    fn drop(&mut self) {
        let files = [
            self.rules.clone(),
            self.started_mark(),
            self.passed_mark(),
            self.report.clone(),
        ];
        let remove = move || {
            for file in files {
                let _ = std::fs::remove_file(file);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// The checker's decision on one rendering.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Hand helm this: the documents checked, re-serialised.
    Pass(String),
    Refuse(Vec<Violation>),
}

/// The checker's pure logic: the checked documents with the operator's
/// additions, or the refusal. What it hands on is at most
/// `MAX_RENDERING` bytes.
pub fn post_render(rules: &Rules, rendered: &str) -> Verdict {
    match rules.apply(rendered) {
        Ok(mut checked) => {
            // A sidecar whose Deployment the chart no longer renders is left
            // out rather than failing the upgrade.
            let _ = rules.additions.apply(&mut checked, &rules.release);
            let output = checked.to_yaml_stream();
            if output.len() > MAX_RENDERING {
                return Verdict::Refuse(vec![Violation::TooLarge]);
            }
            Verdict::Pass(output)
        }
        Err(found) => Verdict::Refuse(found),
    }
}

/// Exit status of the checker when it refused the rendering.
const EXIT_REFUSED: u8 = 1;
/// Exit status of the checker when it could not run (bad arguments, I/O).
const EXIT_BROKEN: u8 = 2;

/// `paas-operator confine-check RULES REPORT`, run by helm as a process of
/// its own (or by the operator, with Helm 3): rendering on stdin, the
/// checked documents on stdout (exit 0), or the violations written to
/// REPORT (exit 1). Blocking I/O: this is the whole process, with no async
/// runtime.
pub fn checker_main(args: &[OsString]) -> ExitCode {
    // Before anything a chart rendered is read.
    if let Err(error) = CHECKER_LIMITS.apply() {
        eprintln!("{CHECKER_SUBCOMMAND}: cannot set limits: {error}");
        return ExitCode::from(EXIT_BROKEN);
    }
    let [rules, report] = args else {
        eprintln!(
            "usage: paas-operator {CHECKER_SUBCOMMAND} RULES_JSON REPORT_JSON < rendered.yaml"
        );
        return ExitCode::from(EXIT_BROKEN);
    };
    match run_checker(Path::new(rules), Path::new(report)) {
        Ok(code) => code,
        Err(error) => {
            // helm does not show it; it is for whoever runs this by hand.
            eprintln!("{CHECKER_SUBCOMMAND}: {error}");
            ExitCode::from(EXIT_BROKEN)
        }
    }
}

fn run_checker(rules: &Path, report: &Path) -> std::io::Result<ExitCode> {
    std::fs::write(mark(report, "started"), b"")?;
    let rules: Rules = serde_json::from_slice(&std::fs::read(rules)?)?;
    // One byte more than accepted, so an oversized rendering is refused.
    let mut rendered = Vec::new();
    let limit = u64::try_from(MAX_INPUT + 1).unwrap_or(u64::MAX);
    std::io::stdin().take(limit).read_to_end(&mut rendered)?;
    let verdict = match String::from_utf8(rendered) {
        Ok(rendered) => post_render(&rules, &rendered),
        Err(_) => Verdict::Refuse(vec![Violation::Unreadable { document: 1 }]),
    };
    match verdict {
        Verdict::Pass(output) => {
            std::fs::write(mark(report, "passed"), b"")?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(output.as_bytes())?;
            stdout.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Refuse(found) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(report)?;
            file.write_all(&serde_json::to_vec(&found)?)?;
            Ok(ExitCode::from(EXIT_REFUSED))
        }
    }
}

/// Makes the checker's path absolute (helm runs it from its own working
/// directory) and checks it is an executable file.
pub fn resolve_checker(path: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let absolute = std::path::absolute(path)?;
    let meta = std::fs::metadata(&absolute)?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} is not an executable file", absolute.display()),
        ));
    }
    Ok(absolute)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn rules() -> Rules {
        Rules {
            confine: true,
            namespace: "paas-ws-1".into(),
            allowed_cluster_kinds: HashSet::new(),
            cluster_scoped: [(
                "rbac.authorization.k8s.io".to_owned(),
                "ClusterRole".to_owned(),
            )]
            .into_iter()
            .collect(),
            tenant_account: "paas-tenant".into(),
            release: "svc-a".into(),
            additions: Default::default(),
            scheduling: Default::default(),
        }
    }

    #[test]
    fn passes_confined_renderings_as_the_json_it_checked() {
        let rendered = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n    postrenderer.helm.sh/postrender-filename: 'c/templates/cm.yaml'\n";
        assert_eq!(
            post_render(&rules(), rendered),
            Verdict::Pass("---\n{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{\"postrenderer.helm.sh/postrender-filename\":\"c/templates/cm.yaml\"},\"name\":\"a\"}}\n".to_owned())
        );
        // helm refuses empty output: a chart that renders nothing gets a comment.
        assert_eq!(
            post_render(&rules(), " \n"),
            Verdict::Pass("# no objects\n".to_owned())
        );
    }

    #[test]
    fn refuses_hooks_and_templates_that_escape() {
        // Helm 4 sends hooks and templates together.
        let rendered = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: hook\n  namespace: kube-system\n  annotations: {helm.sh/hook: pre-install}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: wide}\n";
        assert_eq!(
            post_render(&rules(), rendered),
            Verdict::Refuse(vec![
                Violation::OutsideNamespace { document: 2 },
                Violation::ClusterScoped { document: 3 },
            ])
        );
    }

    #[test]
    fn plugin_yaml_names_the_subcommand() {
        let yaml: serde_json::Value = serde_yaml_ng::from_str(&plugin_yaml()).unwrap();
        assert_eq!(yaml["name"], PLUGIN_NAME);
        assert_eq!(yaml["type"], "postrenderer/v1");
        assert_eq!(yaml["runtime"], "subprocess");
        let command = &yaml["runtimeConfig"]["platformCommand"][0];
        assert_eq!(command["command"], "${HELM_PLUGIN_DIR}/check");
        assert_eq!(command["args"][0], CHECKER_SUBCOMMAND);
    }

    #[tokio::test]
    async fn directories_of_dead_processes_are_removed() {
        let parent = std::env::temp_dir().join(format!("confine-stale-{}", uuid::Uuid::new_v4()));
        // pid_max is at most 2^22: this pid cannot be alive.
        let dead = parent.join(format!("{DIR_PREFIX}99999999-x"));
        let live = parent.join(format!("{DIR_PREFIX}{}-y", std::process::id()));
        let other = parent.join(format!("{DIR_PREFIX}notapid-z"));
        for dir in [&dead, &live, &other] {
            std::fs::create_dir_all(dir.join("plugins")).unwrap();
        }
        let checker = parent.join("checker");
        std::fs::write(&checker, "#!/bin/sh\n").unwrap();
        let plugin = ConfinePlugin::install(&parent, &checker).await.unwrap();
        assert!(!dead.exists(), "a dead process's directory is removed");
        assert!(live.exists() && other.exists());
        let root = plugin.root.clone();
        assert!(root.exists());
        drop(plugin);
        assert!(!root.exists(), "dropped with the plugin");
        std::fs::remove_dir_all(&parent).unwrap();
    }

    #[tokio::test]
    async fn install_prepare_and_clean_up() {
        let parent = std::env::temp_dir().join(format!("confine-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&parent).unwrap();
        let checker = parent.join("checker");
        std::fs::write(&checker, "#!/bin/sh\n").unwrap();
        let plugin = ConfinePlugin::install(&parent, &checker).await.unwrap();
        let dir = plugin.plugins_dir().join(PLUGIN_NAME);
        assert!(dir.join("plugin.yaml").is_file());
        // Same file system: a hard link to the very same file.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(dir.join("check")).unwrap().ino(),
            std::fs::metadata(&checker).unwrap().ino()
        );
        let run = plugin.prepare(&rules()).await.unwrap();
        let args = run.post_render_args();
        assert_eq!(args.plugin, PLUGIN_NAME);
        let written: Rules =
            serde_json::from_slice(&std::fs::read(&args.args[0]).unwrap()).unwrap();
        assert_eq!(written, rules());
        assert!(run.violations().await.is_none());
        let found = vec![Violation::ClusterScoped { document: 1 }];
        std::fs::write(&args.args[1], serde_json::to_vec(&found).unwrap()).unwrap();
        assert_eq!(run.violations().await, Some(found));

        // The directory vanished (a temp cleaner): the next run rewrites it.
        std::fs::remove_dir_all(plugin.plugins_dir().parent().unwrap()).unwrap();
        let again = plugin.prepare(&rules()).await.unwrap();
        assert!(dir.join("plugin.yaml").is_file());
        drop(again);
        drop(run);
        let root = plugin.root.clone();
        drop(plugin);
        assert!(!root.exists());
        let _ = std::fs::remove_dir_all(&parent);
    }
}
