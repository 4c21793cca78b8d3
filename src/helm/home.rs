//! helm's own directories, private to this process and writable: the
//! Kubernetes discovery cache (`KUBECACHEDIR`) and, unless the operator's
//! environment names them, `HELM_CACHE_HOME`, `HELM_CONFIG_HOME` and
//! `HELM_DATA_HOME`.
//!
//! Why: every helm process discovers the API anew, and one that cannot
//! write its discovery cache (HOME unset or read-only) discovers again for
//! each object it maps: about three times the API requests per write. An
//! empty config and data home also means no registry credentials,
//! repository list or plugins from the operator's HOME reach helm (it is
//! only given local archives anyway).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Home directories are `paas-operator-helm-<pid>-<uuid>`.
const DIR_PREFIX: &str = "paas-operator-helm-";

/// The directories; removed when dropped.
#[derive(Debug)]
pub struct HelmHome {
    root: PathBuf,
}

impl HelmHome {
    /// A fresh private directory (mode 0700) under `parent`; those of
    /// processes that are gone are removed first.
    pub fn create(parent: &Path) -> std::io::Result<Self> {
        remove_stale(parent);
        let root = parent.join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        use std::os::unix::fs::DirBuilderExt;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for dir in ["kube-cache", "cache", "config", "data"] {
            builder.create(root.join(dir))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Points helm's environment at the directories: `KUBECACHEDIR`
    /// always, the `HELM_*_HOME` variables when not already set.
    pub fn add_to(&self, env: &mut Vec<(OsString, OsString)>) {
        env.retain(|(key, _)| key != "KUBECACHEDIR");
        env.push(("KUBECACHEDIR".into(), self.root.join("kube-cache").into()));
        for (key, dir) in [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ] {
            if !env.iter().any(|(k, _)| k == key) {
                env.push((key.into(), self.root.join(dir).into()));
            }
        }
    }
}

impl Drop for HelmHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Removes the directories of processes that are gone.
fn remove_stale(parent: &Path) {
    if !Path::new("/proc/self").exists() {
        return; // No way to tell a live process here.
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_gets_private_writable_homes_unless_configured() {
        use std::os::unix::fs::PermissionsExt;
        let parent = std::env::temp_dir().join(format!("helm-home-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&parent).unwrap();
        // A directory left by a process that is gone is cleaned up.
        let stale = parent.join(format!("{DIR_PREFIX}{}-x", u32::MAX));
        std::fs::create_dir_all(&stale).unwrap();
        let home = HelmHome::create(&parent).unwrap();
        assert!(!stale.exists());
        let mode = std::fs::metadata(home.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let mut env: Vec<(OsString, OsString)> = vec![
            ("HELM_CACHE_HOME".into(), "/tmp/helm/cache".into()),
            ("KUBECACHEDIR".into(), "/elsewhere".into()),
        ];
        home.add_to(&mut env);
        let get = |key: &str| {
            env.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| PathBuf::from(v))
                .unwrap()
        };
        assert_eq!(get("KUBECACHEDIR"), home.root().join("kube-cache"));
        assert!(get("KUBECACHEDIR").is_dir());
        assert_eq!(get("HELM_CACHE_HOME"), PathBuf::from("/tmp/helm/cache"));
        assert_eq!(get("HELM_CONFIG_HOME"), home.root().join("config"));
        assert_eq!(get("HELM_DATA_HOME"), home.root().join("data"));
        assert_eq!(env.iter().filter(|(k, _)| k == "KUBECACHEDIR").count(), 1);
        let root = home.root().to_owned();
        drop(home);
        assert!(!root.exists());
        std::fs::remove_dir_all(parent).unwrap();
    }
}
