//! A chart the operator writes itself, holding exactly the documents it
//! checked, so what helm applies is what was checked without a second
//! rendering: used to install and upgrade with Helm 3 (whose
//! post-renderers never see hooks) after a server-side dry run, and to roll
//! back to a stored revision with both majors.
//!
//! The documents go into one template with every `{{` escaped, so the
//! template engine prints them unchanged; hooks stay hooks (helm tells them
//! by their `helm.sh/hook` annotation). `Chart.yaml` carries the original
//! chart's name, version and app version, so the release reads as before.
//! The chart lives in a private directory, removed when the value is
//! dropped.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::render::documents::Checked;

/// Name, version, app version and default values of the chart a release
/// was made from. The defaults matter to a later `--reuse-values` upgrade,
/// which (in Helm 3) starts from the stored chart's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartIdentity {
    pub name: String,
    pub version: String,
    pub app_version: String,
    pub default_values: serde_json::Map<String, serde_json::Value>,
}

/// A written chart; its directory is removed on drop.
#[derive(Debug)]
pub struct WrapperChart {
    dir: PathBuf,
}

/// Directories of wrapper charts start with this, then the process id.
pub const DIR_PREFIX: &str = "paas-operator-";

impl WrapperChart {
    /// Writes the chart into a new private directory under `parent`.
    pub async fn write(
        parent: &Path,
        chart: &ChartIdentity,
        checked: &Checked,
    ) -> std::io::Result<Self> {
        let dir = parent.join(format!(
            "{DIR_PREFIX}{}-chart-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        let wrapper = Self { dir };
        let mut builder = tokio::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder.create(wrapper.dir.join("templates")).await?;
        tokio::fs::write(wrapper.dir.join("Chart.yaml"), chart_yaml(chart)).await?;
        let defaults = serde_json::Value::Object(chart.default_values.clone()).to_string();
        tokio::fs::write(wrapper.dir.join("values.yaml"), defaults).await?;
        let template = escape(&checked.to_yaml_stream());
        tokio::fs::write(wrapper.dir.join("templates").join("checked.yaml"), template).await?;
        Ok(wrapper)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for WrapperChart {
    fn drop(&mut self) {
        let dir = self.dir.clone();
        let remove = move || {
            let _ = std::fs::remove_dir_all(dir);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// `Chart.yaml` as JSON (which YAML reads as is).
fn chart_yaml(chart: &ChartIdentity) -> String {
    json!({
        "apiVersion": "v2",
        "name": chart.name,
        "version": chart.version,
        "appVersion": chart.app_version,
        "description": "The documents paas-operator checked, applied as they are",
    })
    .to_string()
}

/// Template text that prints `text` unchanged: every `{{` becomes an
/// action printing `{{`; nothing else is special to Go templates.
fn escape(text: &str) -> String {
    text.replace("{{", "{{\"{{\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_only_actions_that_print_the_braces() {
        assert_eq!(escape("a {{ .Values.x }} b"), "a {{\"{{\"}} .Values.x }} b");
        assert_eq!(escape("{{{-"), "{{\"{{\"}}{-");
        assert_eq!(escape("no braces }}"), "no braces }}");
    }

    #[tokio::test]
    async fn writes_chart_and_template_and_removes_them() {
        let parent = std::env::temp_dir();
        let chart = ChartIdentity {
            name: "web".into(),
            version: "0.1.0".into(),
            app_version: "1.0".into(),
            default_values: serde_json::json!({"replicas": 1})
                .as_object()
                .cloned()
                .unwrap(),
        };
        let checked = Checked {
            documents: vec![json!({"kind": "ConfigMap", "data": {"t": "{{ x }}"}})],
        };
        let wrapper = WrapperChart::write(&parent, &chart, &checked)
            .await
            .unwrap();
        let dir = wrapper.path().to_owned();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("Chart.yaml")).unwrap())
                .unwrap();
        assert_eq!(
            (meta["name"].as_str(), meta["version"].as_str()),
            (Some("web"), Some("0.1.0"))
        );
        let defaults = std::fs::read_to_string(dir.join("values.yaml")).unwrap();
        assert_eq!(defaults, r#"{"replicas":1}"#);
        let template = std::fs::read_to_string(dir.join("templates/checked.yaml")).unwrap();
        assert!(template.contains(r#""t":"{{"{{"}} x }}""#), "{template}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "private directory");
        drop(wrapper);
        for _ in 0..50 {
            if !dir.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(!dir.exists());
    }
}
