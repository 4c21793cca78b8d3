//! Kubernetes objects decoded with only the fields we use, for the lists
//! and watches that carry many of them (every release record and pod of
//! the cluster for the read cache). Fields not declared are skipped by
//! the JSON parser without being allocated (managed fields, annotations,
//! pod specs, the other keys of a Secret).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

/// The identity fields of an object's metadata: name, namespace, labels,
/// resourceVersion (which watches need), creationTimestamp.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    creation_timestamp: Option<Time>,
}

/// Deserializes `metadata` keeping only its identity fields (for
/// `#[serde(deserialize_with)]`).
pub fn identity<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let identity = Identity::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: identity.name,
        namespace: identity.namespace,
        labels: identity.labels,
        resource_version: identity.resource_version,
        creation_timestamp: identity.creation_timestamp,
        ..ObjectMeta::default()
    })
}

/// Makes a compact type (with a `metadata: ObjectMeta` field) a
/// namespaced core/v1 resource that `kube::Api` can list and watch.
macro_rules! core_v1_resource {
    ($type:ty, $kind:literal, $plural:literal) => {
        impl kube::Resource for $type {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                $kind.into()
            }

            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                "".into()
            }

            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                "v1".into()
            }

            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use core_v1_resource;

/// Counts the elements of a JSON array without keeping them (null: 0).
pub fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    struct Count;
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = usize;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }

        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut count = 0;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                count += 1;
            }
            Ok(count)
        }
    }
    deserializer.deserialize_any(Count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Deserialize)]
    struct Thing {
        #[serde(deserialize_with = "identity")]
        metadata: ObjectMeta,
        #[serde(default, deserialize_with = "count")]
        items: usize,
    }
    core_v1_resource!(Thing, "Thing", "things");

    #[test]
    fn keeps_identity_only() {
        let thing: Thing = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "namespace": "n", "labels": {"k": "v"}, "resourceVersion": "7",
                         "creationTimestamp": "2026-01-01T00:00:00Z", "annotations": {"big": "x"},
                         "managedFields": [{"manager": "m"}], "uid": "u"},
            "items": [1, {"a": [2]}, "x"], "other": {"deep": [1, 2]},
        }))
        .unwrap();
        let meta = kube::Resource::meta(&thing);
        assert_eq!(meta.name.as_deref(), Some("a"));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert!(meta.annotations.is_none() && meta.managed_fields.is_none() && meta.uid.is_none());
        assert_eq!(thing.items, 3);
        assert_eq!(
            <Thing as kube::Resource>::url_path(&(), Some("n")),
            "/api/v1/namespaces/n/things"
        );
    }
}
