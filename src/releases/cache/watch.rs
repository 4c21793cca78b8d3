//! The plumbing of the read cache: the two watches that feed one
//! namespace's index ([`super::index`]), the conversion of what they
//! deliver, and the sweeper that drops idle indexes.

use std::sync::{Arc, Weak};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;

use super::index::{CachedRevision, Item, Part};
use super::{EXPECT_WITHIN, Index, Inner, RETRY_FAILED, SWEEP_EVERY};
use crate::releases::store::{RecordKind, RecordObject, claim, decode_genuine};

/// Starts the two watches of one namespace's index: Helm's records and the pods.
pub(super) fn watch_namespace(
    client: &Client,
    kind: RecordKind,
    namespace: &str,
    index: &Arc<Index>,
) -> Vec<AbortHandle> {
    let records = match kind {
        RecordKind::Secret => spawn_watch(
            Api::<Secret>::namespaced(client.clone(), namespace),
            records_config(),
            index,
            Part::Records,
            |secret| record_item(&secret),
        ),
        RecordKind::ConfigMap => spawn_watch(
            Api::<ConfigMap>::namespaced(client.clone(), namespace),
            records_config(),
            index,
            Part::Records,
            |map| record_item(&map),
        ),
    };
    let pods = spawn_watch(
        Api::<Pod>::namespaced(client.clone(), namespace),
        watcher::Config::default(),
        index,
        Part::Pods,
        pod_item,
    );
    vec![records, pods]
}

fn records_config() -> watcher::Config {
    watcher::Config::default().labels("owner=helm")
}

/// Starts one watch feeding `part` of the index; the task ends with the
/// index, or marks it failed at the first error.
fn spawn_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    index: &Arc<Index>,
    part: Part,
    convert: fn(K) -> Item,
) -> AbortHandle
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let index = Arc::downgrade(index);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, config));
        let mut listing: Vec<Item> = Vec::new();
        while let Some(event) = stream.next().await {
            let Some(index) = index.upgrade() else {
                return;
            };
            match event {
                Ok(Event::Init) => {
                    listing.clear();
                    continue;
                }
                Ok(Event::InitApply(object)) => {
                    listing.push(convert(object));
                    continue;
                }
                Ok(Event::InitDone) => index.write().replace(part, std::mem::take(&mut listing)),
                Ok(Event::Apply(object)) => index.write().apply(convert(object)),
                Ok(Event::Delete(object)) => index.write().delete(part, &object.name_any()),
                Err(error) => {
                    tracing::warn!(%error, ?part, "read cache: watch failed; reads go to the API");
                    index.fail();
                    index.changed.notify_waiters();
                    return;
                }
            }
            index.changed.notify_waiters();
        }
    });
    task.abort_handle()
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, config)
}

/// A release record, keyed like Helm keys it (labels `name` and `version`).
fn record_item<K: Resource + RecordObject>(object: &K) -> Item {
    let name = object.meta().name.clone().unwrap_or_default();
    // Only records Helm wrote for the release they are named for are
    // indexed; anything else is as if absent (as for direct reads).
    let (key, record) = match decode_genuine(object) {
        Some(decoded) => (
            claim(object),
            decoded.map(|release| Arc::new(CachedRevision::new(release))),
        ),
        None => (
            None,
            Err(crate::helm::release::RecordError::Corrupt {
                record: name.clone(),
                reason: "not a genuine record".into(),
            }),
        ),
    };
    Item::Record {
        object: name,
        key,
        record,
    }
}

/// A pod with only what the status endpoint shows (and matches on).
fn pod_item(mut pod: Pod) -> Item {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    if let Some(spec) = pod.spec.as_mut() {
        let containers = std::mem::take(&mut spec.containers);
        *spec = Default::default();
        spec.containers = containers
            .into_iter()
            .map(|c| Container {
                name: c.name,
                ..Default::default()
            })
            .collect();
    }
    if let Some(status) = pod.status.as_mut() {
        status.conditions = None;
        status.init_container_statuses = None;
        status.ephemeral_container_statuses = None;
    }
    Item::Pod {
        name: pod.name_any(),
        pod: Box::new(pod),
    }
}

/// Drops idle and long-failed indexes; ends with the cache.
pub(super) async fn sweep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut namespaces = inner.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        namespaces.retain(|namespace, index| {
            let idle = index.idle_for() >= inner.settings.idle;
            let dead = index
                .failed_since()
                .is_some_and(|since| since >= RETRY_FAILED);
            if idle || dead {
                tracing::debug!(namespace, idle, "read cache: dropping namespace index");
                index.stop();
            }
            !(idle || dead)
        });
        crate::metrics::read_cache_namespaces(namespaces.len());
        drop(namespaces);
        let now = Instant::now();
        inner
            .expectations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, pending| now < pending.until + EXPECT_WITHIN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::kube::pods::select_pods;
    use crate::releases::cache::index::IndexState;

    fn pod(name: &str, labels: &[(&str, &str)]) -> Item {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        pod_item(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": labels, "annotations": {"big": "x"},
                             "managedFields": [{"manager": "m"}]},
                "spec": {"containers": [{"name": "c", "image": "nginx", "env": [{"name": "A", "value": "b"}]}]},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": "c", "ready": true, "restartCount": 1, "image": "nginx", "imageID": ""}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn pods_are_trimmed_and_selected() {
        let mut state = IndexState::default();
        state.replace(
            Part::Pods,
            vec![
                pod("a-1", &[("app.kubernetes.io/instance", "a")]),
                pod("w-1", &[("app", "w")]),
                pod("other", &[("app", "x")]),
            ],
        );
        let kept = &state.pods["a-1"];
        assert!(kept.metadata.annotations.is_none() && kept.metadata.managed_fields.is_none());
        let container = &kept.spec.as_ref().unwrap().containers[0];
        assert!(container.image.is_none() && container.env.is_none());
        let selectors = &[crate::kube::pods::Selector {
            match_labels: [("app".to_owned(), "w".to_owned())].into(),
            match_expressions: vec![],
        }];
        let now = jiff::Timestamp::now();
        let names: Vec<String> = select_pods(state.pods.values(), "a", selectors, now)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["a-1", "w-1"]);
        let info = &select_pods(state.pods.values(), "a", &[], now)[0];
        assert_eq!((info.ready.as_str(), info.restarts), ("1/1", 1));
        state.delete(Part::Pods, "a-1");
        assert!(select_pods(state.pods.values(), "a", &[], now).is_empty());
    }
}
