//! The pure part of the read cache: what one namespace's index holds
//! (Helm's records by release and revision, the pods) and how watch events
//! and write expectations change it. No I/O: the watches ([`super::watch`])
//! feed it, the cache ([`super`]) asks it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;

use crate::helm::release::{HelmRelease, RecordError};
use crate::kube::pods::{Selector, workload_selectors};

/// One revision as the read endpoints need it: the record without its
/// manifest, hooks and values, plus the selectors of its workloads (parsed
/// once from the manifest, for the status endpoint).
#[derive(Debug)]
pub struct CachedRevision {
    pub release: HelmRelease,
    pub selectors: Vec<Selector>,
}

impl CachedRevision {
    pub fn new(mut release: HelmRelease) -> Self {
        let selectors = workload_selectors(&release.manifest);
        release.manifest = String::new();
        release.hooks = Vec::new();
        release.config = None;
        Self { release, selectors }
    }
}

/// A revision as indexed: decoded, or why it could not be (reads of it
/// then fail the way a direct read would).
pub type Record = Result<Arc<CachedRevision>, RecordError>;

/// What a write through this replica left behind, until the index shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The write produced this revision with this (Helm) status.
    Revision { revision: u32, status: String },
    /// The release was uninstalled.
    Gone,
    /// The write failed: what helm stored is unknown.
    Unknown,
}

impl Expectation {
    pub fn met_by(&self, revisions: Option<&BTreeMap<u32, Record>>) -> bool {
        let newest = revisions.and_then(|r| r.last_key_value());
        match (self, newest) {
            (Self::Gone, newest) => newest.is_none(),
            (Self::Revision { revision, status }, Some((newest, record))) => {
                *newest > *revision
                    || (*newest == *revision
                        && record
                            .as_ref()
                            .map_or(true, |r| r.release.info.status == *status))
            }
            (Self::Revision { .. }, None) | (Self::Unknown, _) => false,
        }
    }
}

pub struct Pending {
    pub expectation: Expectation,
    pub until: Instant,
}

/// One watched object, converted.
pub enum Item {
    Record {
        object: String,
        key: Option<(String, u32)>,
        record: Record,
    },
    Pod {
        name: String,
        pod: Box<Pod>,
    },
}

#[derive(Clone, Copy, Debug)]
pub enum Part {
    Records,
    Pods,
}

/// Helm's records of one namespace, by release and revision.
#[derive(Default)]
pub struct Records {
    pub by_release: HashMap<String, BTreeMap<u32, Record>>,
    pub by_object: HashMap<String, (String, u32)>,
}

impl Records {
    fn apply(&mut self, object: String, key: Option<(String, u32)>, record: Record) {
        self.delete(&object);
        let Some((release, revision)) = key else {
            return; // Not a record Helm labelled: Helm's own reads ignore it too.
        };
        self.by_release
            .entry(release.clone())
            .or_default()
            .insert(revision, record);
        self.by_object.insert(object, (release, revision));
    }

    fn delete(&mut self, object: &str) {
        let Some((release, revision)) = self.by_object.remove(object) else {
            return;
        };
        if let Some(revisions) = self.by_release.get_mut(&release) {
            revisions.remove(&revision);
            if revisions.is_empty() {
                self.by_release.remove(&release);
            }
        }
    }
}

#[derive(Default)]
pub struct IndexState {
    pub records: Records,
    pub pods: BTreeMap<String, Pod>,
    pub records_listed: bool,
    pub pods_listed: bool,
    pub failed: bool,
}

impl IndexState {
    pub fn ready(&self) -> bool {
        self.records_listed && self.pods_listed && !self.failed
    }

    pub fn apply(&mut self, item: Item) {
        match item {
            Item::Record {
                object,
                key,
                record,
            } => self.records.apply(object, key, record),
            Item::Pod { name, pod } => {
                self.pods.insert(name, *pod);
            }
        }
    }

    pub fn delete(&mut self, part: Part, object: &str) {
        match part {
            Part::Records => self.records.delete(object),
            Part::Pods => {
                self.pods.remove(object);
            }
        }
    }

    /// Replaces one part with a complete listing.
    pub fn replace(&mut self, part: Part, items: Vec<Item>) {
        match part {
            Part::Records => {
                self.records = Records::default();
                self.records_listed = true;
            }
            Part::Pods => {
                self.pods.clear();
                self.pods_listed = true;
            }
        }
        for item in items {
            self.apply(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, revision: u32, status: &str) -> Item {
        let release: HelmRelease = serde_json::from_value(serde_json::json!({
            "name": name, "namespace": "ns", "version": revision,
            "info": {"status": status, "last_deployed": "2026-11-26T10:00:00Z"},
            "chart": {"metadata": {"name": "web", "version": "0.1.0", "appVersion": "1"}},
            "config": {"password": "s3cret"},
            "manifest": "kind: Deployment\nmetadata: {name: w}\nspec:\n  selector:\n    matchLabels: {app: w}\n",
        }))
        .unwrap();
        Item::Record {
            object: format!("sh.helm.release.v1.{name}.v{revision}"),
            key: Some((name.to_owned(), revision)),
            record: Ok(Arc::new(CachedRevision::new(release))),
        }
    }

    fn newest(state: &IndexState, name: &str) -> Option<(u32, String)> {
        let (revision, record) = state.records.by_release.get(name)?.last_key_value()?;
        Some((*revision, record.as_ref().ok()?.release.info.status.clone()))
    }

    #[test]
    fn records_follow_applies_deletes_and_relists() {
        let mut state = IndexState::default();
        assert!(!state.ready());
        state.replace(Part::Records, vec![record("a", 1, "superseded")]);
        state.replace(Part::Pods, vec![]);
        assert!(state.ready());
        state.apply(record("a", 2, "pending-upgrade"));
        assert_eq!(newest(&state, "a"), Some((2, "pending-upgrade".into())));
        state.apply(record("a", 2, "deployed"));
        assert_eq!(newest(&state, "a"), Some((2, "deployed".into())));
        state.delete(Part::Records, "sh.helm.release.v1.a.v2");
        assert_eq!(newest(&state, "a"), Some((1, "superseded".into())));
        state.delete(Part::Records, "sh.helm.release.v1.a.v1");
        assert!(!state.records.by_release.contains_key("a"));
        // A re-list replaces everything seen before.
        state.apply(record("b", 1, "deployed"));
        state.replace(Part::Records, vec![record("c", 3, "failed")]);
        assert_eq!(newest(&state, "b"), None);
        assert_eq!(newest(&state, "c"), Some((3, "failed".into())));
        state.failed = true;
        assert!(!state.ready());
    }

    #[test]
    fn unlabelled_objects_are_ignored() {
        let mut state = IndexState::default();
        state.apply(Item::Record {
            object: "stray".into(),
            key: None,
            record: Err(RecordError::Corrupt {
                record: "stray".into(),
                reason: "x".into(),
            }),
        });
        assert!(state.records.by_release.is_empty());
        assert!(state.records.by_object.is_empty());
    }

    #[test]
    fn cached_revisions_drop_payloads_but_keep_selectors() {
        let Item::Record { record, .. } = record("a", 1, "deployed") else {
            unreachable!()
        };
        let cached = record.unwrap();
        assert!(cached.release.manifest.is_empty());
        assert!(cached.release.config.is_none());
        assert_eq!(cached.selectors.len(), 1);
        assert_eq!(cached.release.to_info(false).chart, "web");
    }

    #[test]
    fn expectations() {
        let mut state = IndexState::default();
        let revision = |revision, status: &str| Expectation::Revision {
            revision,
            status: status.into(),
        };
        assert!(Expectation::Gone.met_by(None));
        assert!(!revision(1, "deployed").met_by(None));
        state.apply(record("a", 1, "pending-install"));
        let revisions = state.records.by_release.get("a");
        assert!(!revision(1, "deployed").met_by(revisions));
        assert!(!Expectation::Gone.met_by(revisions));
        state.apply(record("a", 1, "deployed"));
        assert!(revision(1, "deployed").met_by(state.records.by_release.get("a")));
        state.apply(record("a", 2, "pending-upgrade"));
        // A newer revision (someone else's write) also satisfies it.
        assert!(revision(1, "deployed").met_by(state.records.by_release.get("a")));
        assert!(!Expectation::Unknown.met_by(state.records.by_release.get("a")));
    }
}
