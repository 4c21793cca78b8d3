//! The pure part of the read cache: what an index holds (per tenant
//! namespace, each release's revisions as compact summaries, and the pods)
//! and how watch events, listings and write expectations change it. No
//! I/O: the watches ([`super::watch`]) feed it, the cache ([`super`]) asks it.
//!
//! **Coverage.** An index answers for a namespace only once the listing of
//! the part it needs (records, or pods for status) is complete and its
//! watch follows. Not while it lists: a listing is a snapshot taken when it
//! started, and a release written meanwhile (say, a pending install) would
//! be missing from it until the watch catches up, so a read then would be
//! wrong, not merely late.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::helm::release::RecordError;
use crate::kube::pods::PodSummary;
use crate::releases::store::{CachedRevision, parse_record_name};

/// A revision as indexed: its summary, or why it could not be read (reads
/// of it then fail the way a direct read would).
pub type Record = Result<Arc<CachedRevision>, Arc<RecordError>>;

/// The revisions of one release, oldest first.
pub type Revisions = [(u32, Record)];

/// A release of a tenant: its name and revisions.
type Release = (Box<str>, Vec<(u32, Record)>);

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
    pub fn met_by(&self, revisions: Option<&Revisions>) -> bool {
        let newest = revisions.and_then(<[_]>::last);
        match (self, newest) {
            (Self::Gone, newest) => newest.is_none(),
            (Self::Revision { revision, status }, Some((newest, record))) => {
                *newest > *revision
                    || (*newest == *revision
                        && record
                            .as_ref()
                            .map_or(true, |r| *r.summary.status == **status))
            }
            (Self::Revision { .. }, None) | (Self::Unknown, _) => false,
        }
    }
}

pub struct Pending {
    pub expectation: Expectation,
    pub until: Instant,
}

/// The two halves of an index, each fed by its own watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Records,
    Pods,
}

/// How far a part's listing has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Listing (or not started): answers nothing yet.
    Listing,
    /// Listed, and followed by the watch.
    Complete,
    /// The watch failed; nothing is covered until it has listed again.
    Failed,
}

/// One watched object, converted (and decoded) outside the index's lock.
pub enum Item {
    /// A record object, by its name; `None`: it is no genuine record (any
    /// more), so the revision its name stands for is absent.
    Record {
        object: Box<str>,
        record: Option<Result<CachedRevision, RecordError>>,
    },
    Pod(PodSummary),
}

/// One tenant namespace: its releases (by name) and pods (by name), both
/// sorted vectors, which cost far less than maps for the few entries a
/// namespace has.
#[derive(Default)]
struct Tenant {
    releases: Vec<Release>,
    pods: Vec<PodSummary>,
}

impl Tenant {
    fn is_empty(&self) -> bool {
        self.releases.is_empty() && self.pods.is_empty()
    }

    fn revisions(&self, release: &str) -> Option<&[(u32, Record)]> {
        let at = self
            .releases
            .binary_search_by(|(name, _)| (**name).cmp(release))
            .ok()?;
        Some(&self.releases[at].1)
    }
}

/// How much an index holds (for the metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub namespaces: usize,
    pub releases: usize,
    pub revisions: usize,
    pub pods: usize,
}

pub struct IndexState {
    tenants: HashMap<Box<str>, Tenant>,
    records: Coverage,
    pods: Coverage,
    counts: Counts,
}

impl Default for IndexState {
    fn default() -> Self {
        Self {
            tenants: HashMap::new(),
            records: Coverage::Listing,
            pods: Coverage::Listing,
            counts: Counts::default(),
        }
    }
}

impl IndexState {
    pub fn coverage(&self, part: Part) -> &Coverage {
        match part {
            Part::Records => &self.records,
            Part::Pods => &self.pods,
        }
    }

    fn coverage_mut(&mut self, part: Part) -> &mut Coverage {
        match part {
            Part::Records => &mut self.records,
            Part::Pods => &mut self.pods,
        }
    }

    /// True when `part` answers: listed, and followed by its watch.
    pub fn covers(&self, part: Part) -> bool {
        *self.coverage(part) == Coverage::Complete
    }

    /// True when both parts have listed everything and follow their watches.
    pub fn complete(&self) -> bool {
        self.records == Coverage::Complete && self.pods == Coverage::Complete
    }

    pub fn counts(&self) -> Counts {
        Counts {
            namespaces: self.tenants.len(),
            ..self.counts
        }
    }

    /// A release's revisions, oldest first (`None`: no such release).
    pub fn revisions(&self, namespace: &str, release: &str) -> Option<&Revisions> {
        self.tenants.get(namespace)?.revisions(release)
    }

    /// The pods of a namespace.
    pub fn pods(&self, namespace: &str) -> &[PodSummary] {
        self.tenants
            .get(namespace)
            .map_or(&[], |tenant| tenant.pods.as_slice())
    }

    /// A (re-)listing of `part` starts: what it held is dropped.
    pub fn begin_listing(&mut self, part: Part) {
        for tenant in self.tenants.values_mut() {
            match part {
                Part::Records => tenant.releases = Vec::new(),
                Part::Pods => tenant.pods = Vec::new(),
            }
        }
        self.tenants.retain(|_, tenant| !tenant.is_empty());
        match part {
            Part::Records => {
                self.counts.releases = 0;
                self.counts.revisions = 0;
            }
            Part::Pods => self.counts.pods = 0,
        }
        *self.coverage_mut(part) = Coverage::Listing;
    }

    /// One object of a listing, in the namespace `namespace`.
    pub fn listed(&mut self, namespace: &str, item: Item) {
        self.apply(namespace, item);
    }

    /// The listing of `part` is complete.
    pub fn end_listing(&mut self, part: Part) {
        *self.coverage_mut(part) = Coverage::Complete;
    }

    /// The watch of `part` failed: it answers nothing until listed again.
    pub fn fail(&mut self, part: Part) {
        *self.coverage_mut(part) = Coverage::Failed;
    }

    /// An object was added or changed.
    pub fn apply(&mut self, namespace: &str, item: Item) {
        match item {
            Item::Record { object, record } => self.apply_record(namespace, &object, record),
            Item::Pod(pod) => self.apply_pod(namespace, pod),
        }
    }

    /// An object was deleted.
    pub fn delete(&mut self, part: Part, namespace: &str, object: &str) {
        match part {
            Part::Records => self.apply_record(namespace, object, None),
            Part::Pods => {
                let Some(tenant) = self.tenants.get_mut(namespace) else {
                    return;
                };
                if let Ok(at) = tenant.pods.binary_search_by(|p| (*p.name).cmp(object)) {
                    tenant.pods.remove(at);
                    self.counts.pods -= 1;
                }
                self.drop_if_empty(namespace);
            }
        }
    }

    fn apply_pod(&mut self, namespace: &str, pod: PodSummary) {
        let tenant = self.tenant(namespace);
        match tenant.pods.binary_search_by(|p| p.name.cmp(&pod.name)) {
            Ok(at) => tenant.pods[at] = pod,
            Err(at) => {
                tenant.pods.insert(at, pod);
                self.counts.pods += 1;
            }
        }
    }

    /// The revision slot an object's name stands for gets `record`, or is
    /// emptied. (Only an object with exactly that name can be the genuine
    /// record of a revision, so a slot has at most one source.)
    fn apply_record(
        &mut self,
        namespace: &str,
        object: &str,
        record: Option<Result<CachedRevision, RecordError>>,
    ) {
        let Some((release, revision)) = parse_record_name(object) else {
            return; // Not named as Helm names records: never a genuine one.
        };
        match record {
            Some(record) => self.insert_revision(namespace, release, revision, record),
            None => self.remove_revision(namespace, release, revision),
        }
    }

    fn insert_revision(
        &mut self,
        namespace: &str,
        release: &str,
        revision: u32,
        record: Result<CachedRevision, RecordError>,
    ) {
        let counts = &mut self.counts;
        let tenant = self.tenants.entry(namespace.into()).or_default();
        let at = match tenant
            .releases
            .binary_search_by(|(name, _)| (**name).cmp(release))
        {
            Ok(at) => at,
            Err(at) => {
                tenant.releases.insert(at, (release.into(), Vec::new()));
                counts.releases += 1;
                at
            }
        };
        let revisions = &mut tenant.releases[at].1;
        let record = match record {
            Ok(cached) => Ok(Arc::new(share_selectors(cached, revisions))),
            Err(error) => Err(Arc::new(error)),
        };
        match revisions.binary_search_by_key(&revision, |(r, _)| *r) {
            Ok(slot) => revisions[slot].1 = record,
            Err(slot) => {
                revisions.insert(slot, (revision, record));
                counts.revisions += 1;
            }
        }
    }

    fn remove_revision(&mut self, namespace: &str, release: &str, revision: u32) {
        let Some(tenant) = self.tenants.get_mut(namespace) else {
            return;
        };
        let Ok(at) = tenant
            .releases
            .binary_search_by(|(name, _)| (**name).cmp(release))
        else {
            return;
        };
        let revisions = &mut tenant.releases[at].1;
        if let Ok(slot) = revisions.binary_search_by_key(&revision, |(r, _)| *r) {
            drop(revisions.remove(slot));
            self.counts.revisions -= 1;
        }
        if revisions.is_empty() {
            tenant.releases.remove(at);
            self.counts.releases -= 1;
        }
        self.drop_if_empty(namespace);
    }

    fn tenant(&mut self, namespace: &str) -> &mut Tenant {
        self.tenants.entry(namespace.into()).or_default()
    }

    fn drop_if_empty(&mut self, namespace: &str) {
        if self.tenants.get(namespace).is_some_and(Tenant::is_empty) {
            self.tenants.remove(namespace);
        }
    }
}

/// Revisions of a release nearly always share their workloads' selectors:
/// keep one copy.
fn share_selectors(mut cached: CachedRevision, revisions: &[(u32, Record)]) -> CachedRevision {
    let same = revisions
        .iter()
        .filter_map(|(_, record)| record.as_ref().ok())
        .find(|other| other.selectors == cached.selectors);
    if let Some(other) = same {
        cached.selectors = Arc::clone(&other.selectors);
    }
    cached
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::release::HelmRelease;
    use crate::kube::pods::{PodObject, Selector};
    use crate::releases::store::record_name;

    fn selectors_of(record: &Record) -> Arc<[Selector]> {
        record
            .as_ref()
            .map_or_else(|_| Arc::from([]), |r| Arc::clone(&r.selectors))
    }

    fn cached(name: &str, revision: u32, status: &str) -> CachedRevision {
        let release: HelmRelease = serde_json::from_value(serde_json::json!({
            "name": name, "namespace": "ns", "version": revision,
            "info": {"status": status, "last_deployed": "2026-11-26T10:00:00Z"},
            "chart": {"metadata": {"name": "web", "version": "0.1.0", "appVersion": "1"}},
            "manifest": "kind: Deployment\nmetadata: {name: w}\nspec:\n  selector:\n    matchLabels: {app: w}\n",
        }))
        .unwrap();
        CachedRevision::from(&release)
    }

    fn record(name: &str, revision: u32, status: &str) -> Item {
        Item::Record {
            object: record_name(name, revision).into(),
            record: Some(Ok(cached(name, revision, status))),
        }
    }

    fn pod(name: &str) -> Item {
        let object: PodObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": "w"}},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        Item::Pod(object.summary())
    }

    fn newest(state: &IndexState, namespace: &str, name: &str) -> Option<(u32, String)> {
        let (revision, record) = state.revisions(namespace, name)?.last()?;
        Some((*revision, record.as_ref().ok()?.summary.status.to_string()))
    }

    fn listed(state: &mut IndexState, part: Part, items: Vec<(&str, Item)>) {
        state.begin_listing(part);
        for (namespace, item) in items {
            state.listed(namespace, item);
        }
        state.end_listing(part);
    }

    #[test]
    fn records_follow_applies_deletes_and_relists() {
        let mut state = IndexState::default();
        assert!(!state.covers(Part::Records));
        listed(
            &mut state,
            Part::Records,
            vec![("ns", record("a", 1, "superseded"))],
        );
        assert!(state.covers(Part::Records) && !state.complete());
        listed(&mut state, Part::Pods, vec![("ns", pod("p"))]);
        assert!(state.complete());
        state.apply("ns", record("a", 2, "pending-upgrade"));
        assert_eq!(
            newest(&state, "ns", "a"),
            Some((2, "pending-upgrade".into()))
        );
        state.apply("ns", record("a", 2, "deployed"));
        assert_eq!(newest(&state, "ns", "a"), Some((2, "deployed".into())));
        state.delete(Part::Records, "ns", &record_name("a", 2));
        assert_eq!(newest(&state, "ns", "a"), Some((1, "superseded".into())));
        // A record that is no longer genuine empties its slot.
        state.apply(
            "ns",
            Item::Record {
                object: record_name("a", 1).into(),
                record: None,
            },
        );
        assert!(state.revisions("ns", "a").is_none());
        assert_eq!(state.counts().releases, 0);
        // Objects not named as Helm names records are ignored.
        state.apply(
            "ns",
            Item::Record {
                object: "stray".into(),
                record: Some(Ok(cached("a", 3, "deployed"))),
            },
        );
        assert!(state.revisions("ns", "a").is_none());
        // A re-list replaces everything seen before, for its part only.
        state.apply("ns", record("b", 1, "deployed"));
        state.apply("other", record("c", 1, "deployed"));
        listed(
            &mut state,
            Part::Records,
            vec![("ns", record("d", 3, "failed"))],
        );
        assert_eq!(newest(&state, "ns", "b"), None);
        assert_eq!(newest(&state, "other", "c"), None);
        assert_eq!(newest(&state, "ns", "d"), Some((3, "failed".into())));
        assert_eq!(state.pods("ns").len(), 1);
        assert_eq!(
            state.counts(),
            Counts {
                namespaces: 1,
                releases: 1,
                revisions: 1,
                pods: 1
            }
        );
        state.fail(Part::Pods);
        assert!(!state.covers(Part::Pods) && state.covers(Part::Records));
    }

    #[test]
    fn a_listing_answers_nothing_until_it_is_done() {
        let mut state = IndexState::default();
        state.begin_listing(Part::Records);
        state.listed("a", record("a", 1, "deployed"));
        // A snapshot being read: a namespace already passed may have
        // changed since, so nothing is answered yet.
        assert!(!state.covers(Part::Records));
        state.end_listing(Part::Records);
        assert!(state.covers(Part::Records) && !state.covers(Part::Pods));
        // A re-list (after a watch error) answers nothing until done again.
        state.fail(Part::Records);
        assert!(!state.covers(Part::Records));
        state.begin_listing(Part::Records);
        assert!(!state.covers(Part::Records) && state.revisions("a", "a").is_none());
        state.end_listing(Part::Records);
        assert!(state.covers(Part::Records));
    }

    #[test]
    fn revisions_share_selectors_and_keep_errors() {
        let mut state = IndexState::default();
        state.apply("ns", record("a", 1, "superseded"));
        state.apply("ns", record("a", 2, "deployed"));
        state.apply(
            "ns",
            Item::Record {
                object: record_name("a", 3).into(),
                record: Some(Err(RecordError::TooLarge { record: "r".into() })),
            },
        );
        let revisions = state.revisions("ns", "a").unwrap();
        let (first, second) = (&revisions[0].1, &revisions[1].1);
        assert!(Arc::ptr_eq(&selectors_of(first), &selectors_of(second)));
        assert_eq!(selectors_of(first).len(), 1);
        assert!(revisions[2].1.is_err() && selectors_of(&revisions[2].1).is_empty());
    }

    #[test]
    fn pods_follow_their_watch() {
        let mut state = IndexState::default();
        listed(
            &mut state,
            Part::Pods,
            vec![("ns", pod("b")), ("ns", pod("a")), ("other", pod("c"))],
        );
        let names = |state: &IndexState| -> Vec<String> {
            state
                .pods("ns")
                .iter()
                .map(|p| p.name.to_string())
                .collect()
        };
        assert_eq!(names(&state), ["a", "b"]);
        state.apply("ns", pod("a"));
        state.delete(Part::Pods, "ns", "b");
        state.delete(Part::Pods, "ns", "missing");
        assert_eq!(names(&state), ["a"]);
        state.delete(Part::Pods, "ns", "a");
        assert!(state.pods("ns").is_empty());
        assert_eq!(state.counts().namespaces, 1, "only `other` is left");
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
        state.apply("ns", record("a", 1, "pending-install"));
        let revisions = state.revisions("ns", "a");
        assert!(!revision(1, "deployed").met_by(revisions));
        assert!(!Expectation::Gone.met_by(revisions));
        state.apply("ns", record("a", 1, "deployed"));
        assert!(revision(1, "deployed").met_by(state.revisions("ns", "a")));
        state.apply("ns", record("a", 2, "pending-upgrade"));
        // A newer revision (someone else's write) also satisfies it.
        assert!(revision(1, "deployed").met_by(state.revisions("ns", "a")));
        assert!(!Expectation::Unknown.met_by(state.revisions("ns", "a")));
    }
}
