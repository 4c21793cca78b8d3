//! What the operator adds to a release's rendering, every time the release
//! is applied (install, upgrade, rollback): a sidecar container attached to
//! one Deployment with a Service selecting only that Deployment's pods, and
//! a value kept in one of the release's own Secrets (the n8n API key). Kept
//! with the release this way, they survive upgrades, rollbacks and the
//! re-creation of the Deployment, and a repeated request changes nothing.
//!
//! Applied after the rendering was checked ([`super::confine`]), to the
//! checked documents: inside the helm run by the post-renderer (Helm 4), or
//! before the documents are applied as they are (Helm 3, rollbacks).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::documents::Checked;

/// The label that ties the sidecar's Service to that one Deployment's pods.
pub const SIDECAR_LABEL: &str = "paas-operator/sidecar-of";
/// Pod-template annotation holding a digest of the kept Secret value: when
/// the value changes, the pods restart once to read it.
pub const VALUE_DIGEST_ANNOTATION: &str = "paas-operator/kept-value";

/// Everything added to one release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Additions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<Sidecar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_value: Option<KeptValue>,
}

/// A container added to a Deployment of the release (validated before it
/// gets here: see `releases::sidecar`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    /// The Deployment; `None`: the release's first Deployment.
    pub deployment: Option<String>,
    /// The container, as Kubernetes reads it.
    pub container: Value,
    /// The Service `{release}-mcp` for its first port, when it has one.
    pub service: Option<SidecarService>,
}

/// The Service that reaches the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidecarService {
    pub name: String,
    pub port: u16,
}

/// One key of one of the release's Secrets, set to a value the operator
/// keeps (e.g. `N8N_API_KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptValue {
    pub secret: String,
    pub key: String,
    pub value: String,
}

/// What applying additions did, for the caller's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The Deployment the sidecar went into.
    pub sidecar_deployment: Option<String>,
    /// The kept value landed in its Secret.
    pub value_kept: bool,
}

/// Why additions could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdditionError {
    /// The release has no such Deployment.
    #[error("the release has no Deployment {0}")]
    NoDeployment(String),
}

impl Additions {
    pub fn is_empty(&self) -> bool {
        self.sidecar.is_none() && self.kept_value.is_none()
    }

    /// Adds these to `checked` (the documents of release `release`).
    pub fn apply(&self, checked: &mut Checked, release: &str) -> Result<Applied, AdditionError> {
        let mut applied = Applied::default();
        if let Some(sidecar) = &self.sidecar {
            applied.sidecar_deployment = Some(attach(checked, release, sidecar)?);
        }
        if let Some(kept) = &self.kept_value {
            applied.value_kept = keep_value(checked, release, kept);
        }
        Ok(applied)
    }
}

impl Sidecar {
    /// The Deployment of `checked` (release `release`'s documents) this
    /// sidecar goes into, and the Service it is reached by, as rendered.
    pub fn rendered(&self, checked: &Checked, release: &str) -> Option<(String, Option<Value>)> {
        let mut copy = checked.clone();
        let deployment = attach(&mut copy, release, self).ok()?;
        let service = self
            .service
            .as_ref()
            .map(|service| sidecar_service(release, &deployment, service));
        Some((deployment, service))
    }
}

/// Takes a sidecar out of documents that carry it (a revision applied while
/// it was attached): its container, its pod label and its Service.
pub fn detach(checked: &mut Checked, sidecar: &Sidecar) {
    let own = sidecar.container.get("name").cloned();
    for deployment in deployments(&mut checked.documents) {
        let carried = deployment
            .pointer("/spec/template/metadata/labels")
            .and_then(|labels| labels.get(SIDECAR_LABEL))
            .is_some();
        if !carried {
            continue;
        }
        if let Some(Value::Array(containers)) =
            deployment.pointer_mut("/spec/template/spec/containers")
        {
            containers.retain(|c| c.get("name") != own.as_ref());
        }
        if let Some(Value::Object(labels)) =
            deployment.pointer_mut("/spec/template/metadata/labels")
        {
            labels.remove(SIDECAR_LABEL);
        }
    }
    if let Some(service) = &sidecar.service {
        checked.documents.retain(|d| {
            !(d.get("kind").and_then(Value::as_str) == Some("Service")
                && name_of(d) == service.name)
        });
    }
}

/// The Deployments among the documents (list items included).
pub fn deployments(documents: &mut [Value]) -> Vec<&mut Value> {
    let mut found = Vec::new();
    for document in documents {
        if document.get("items").is_some_and(Value::is_array) {
            if let Some(Value::Array(items)) = document.get_mut("items") {
                found.extend(items.iter_mut().filter(|item| is_deployment(item)));
            }
        } else if is_deployment(document) {
            found.push(document);
        }
    }
    found
}

fn is_deployment(value: &Value) -> bool {
    value.get("kind").and_then(Value::as_str) == Some("Deployment")
        && value.get("apiVersion").and_then(Value::as_str) == Some("apps/v1")
}

fn name_of(value: &Value) -> &str {
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Puts the sidecar into its Deployment (replacing a container of the same
/// name, so a repeated request leaves one), labels that Deployment's pods,
/// and adds the Service. Returns the Deployment's name.
fn attach(
    checked: &mut Checked,
    release: &str,
    sidecar: &Sidecar,
) -> Result<String, AdditionError> {
    let mut deployments = deployments(&mut checked.documents);
    let wanted = sidecar.deployment.as_deref();
    let target = match wanted {
        Some(name) => deployments.into_iter().find(|d| name_of(d) == name),
        None => {
            let instance = |d: &Value| {
                d.pointer("/metadata/labels/app.kubernetes.io~1instance")
                    .and_then(Value::as_str)
                    == Some(release)
            };
            let first = deployments.iter().position(|d| instance(d)).unwrap_or(0);
            (!deployments.is_empty()).then(|| deployments.swap_remove(first))
        }
    };
    let Some(deployment) = target else {
        return Err(AdditionError::NoDeployment(
            wanted.unwrap_or("of its own").to_owned(),
        ));
    };
    let name = name_of(deployment).to_owned();
    object_at(deployment, &["spec", "template", "metadata", "labels"])
        .insert(SIDECAR_LABEL.into(), Value::String(name.clone()));
    let spec = object_at(deployment, &["spec", "template", "spec"]);
    let containers = spec
        .entry("containers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(containers) = containers {
        let own = sidecar.container.get("name");
        containers.retain(|c| c.get("name") != own);
        containers.push(sidecar.container.clone());
    }
    if let Some(service) = &sidecar.service {
        checked.documents.retain(|d| {
            !(d.get("kind").and_then(Value::as_str) == Some("Service")
                && name_of(d) == service.name)
        });
        checked
            .documents
            .push(sidecar_service(release, &name, service));
    }
    Ok(name)
}

/// ClusterIP, port name `mcp`, selecting only the sidecar's Deployment.
fn sidecar_service(release: &str, deployment: &str, service: &SidecarService) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service.name,
            "labels": {
                "app.kubernetes.io/instance": release,
                "app.kubernetes.io/component": "mcp-sidecar",
            },
        },
        "spec": {
            "type": "ClusterIP",
            "selector": { SIDECAR_LABEL: deployment },
            "ports": [{ "name": "mcp", "port": service.port, "targetPort": service.port, "protocol": "TCP" }],
        },
    })
}

/// Sets the key in the Secret (as `data`, base64), and a digest of the
/// value on the release's Deployments' pod templates, so their pods restart
/// once when it changes. False when the release has no such Secret.
fn keep_value(checked: &mut Checked, release: &str, kept: &KeptValue) -> bool {
    use base64::Engine;
    let mut found = false;
    for document in &mut checked.documents {
        let is_secret = document.get("kind").and_then(Value::as_str) == Some("Secret")
            && document.get("apiVersion").and_then(Value::as_str) == Some("v1");
        if !is_secret || name_of(document) != kept.secret {
            continue;
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(kept.value.as_bytes());
        if let Some(Value::Object(string_data)) = document.get_mut("stringData") {
            string_data.remove(&kept.key);
        }
        object_at(document, &["data"]).insert(kept.key.clone(), Value::String(encoded));
        found = true;
    }
    if !found {
        return false;
    }
    let digest = hex_digest(&kept.value);
    for deployment in deployments(&mut checked.documents) {
        let instance = deployment
            .pointer("/metadata/labels/app.kubernetes.io~1instance")
            .and_then(Value::as_str)
            == Some(release);
        if instance {
            let annotations =
                object_at(deployment, &["spec", "template", "metadata", "annotations"]);
            annotations.insert(
                VALUE_DIGEST_ANNOTATION.into(),
                Value::String(digest.clone()),
            );
        }
    }
    true
}

/// The first 16 hex digits of the value's SHA-256 (not the value).
pub fn hex_digest(value: &str) -> String {
    Sha256::digest(value.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The object at `path` under `value`, made (as an empty object) where
/// missing or not an object.
fn object_at<'a>(value: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut here = value;
    for key in path {
        if !here.is_object() {
            *here = Value::Object(Map::new());
        }
        let Value::Object(map) = here else {
            unreachable!("made an object above")
        };
        here = map.entry(*key).or_insert_with(|| Value::Object(Map::new()));
    }
    if !here.is_object() {
        *here = Value::Object(Map::new());
    }
    match here {
        Value::Object(map) => map,
        _ => unreachable!("made an object above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Checked {
        Checked {
            documents: vec![
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "n8n-worker", "labels": {"app.kubernetes.io/instance": "other"}},
                       "spec": {"template": {"spec": {"containers": [{"name": "w", "image": "w"}]}}}}),
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "svc-a-n8n", "labels": {"app.kubernetes.io/instance": "svc-a"}},
                       "spec": {"selector": {"matchLabels": {"app": "n8n"}},
                                "template": {"metadata": {"labels": {"app": "n8n"}},
                                             "spec": {"containers": [{"name": "n8n", "image": "n8n"}]}}}}),
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "svc-a-n8n-app-secret"},
                       "stringData": {"N8N_API_KEY": "placeholder", "OTHER": "x"}}),
            ],
        }
    }

    fn sidecar() -> Sidecar {
        Sidecar {
            deployment: None,
            container: json!({"name": "mcp-sidecar", "image": "mcp:1", "ports": [{"containerPort": 3000}]}),
            service: Some(SidecarService {
                name: "svc-a-mcp".into(),
                port: 3000,
            }),
        }
    }

    fn containers(checked: &Checked, deployment: &str) -> Vec<String> {
        let d = checked
            .documents
            .iter()
            .find(|d| name_of(d) == deployment)
            .unwrap();
        d.pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_sidecar_goes_into_the_releases_deployment_once() {
        let additions = Additions {
            sidecar: Some(sidecar()),
            kept_value: None,
        };
        let mut checked = release();
        let applied = additions.apply(&mut checked, "svc-a").unwrap();
        assert_eq!(applied.sidecar_deployment.as_deref(), Some("svc-a-n8n"));
        // Applied again (the next upgrade): still one sidecar.
        additions.apply(&mut checked, "svc-a").unwrap();
        assert_eq!(containers(&checked, "svc-a-n8n"), ["n8n", "mcp-sidecar"]);
        assert_eq!(containers(&checked, "n8n-worker"), ["w"]);
        let services: Vec<&Value> = checked
            .documents
            .iter()
            .filter(|d| d["kind"] == "Service")
            .collect();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0]["spec"]["selector"][SIDECAR_LABEL], "svc-a-n8n");
        assert_eq!(services[0]["spec"]["ports"][0]["name"], "mcp");
        assert_eq!(services[0]["spec"]["ports"][0]["port"], 3000);
        let deployment = checked
            .documents
            .iter()
            .find(|d| name_of(d) == "svc-a-n8n")
            .unwrap();
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"][SIDECAR_LABEL],
            "svc-a-n8n"
        );
        // The pod selector is the chart's: untouched.
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"],
            json!({"app": "n8n"})
        );
    }

    #[test]
    fn a_sidecar_comes_out_as_it_went_in() {
        let additions = Additions {
            sidecar: Some(sidecar()),
            kept_value: None,
        };
        let mut checked = release();
        let before = checked.clone();
        additions.apply(&mut checked, "svc-a").unwrap();
        assert_ne!(checked, before);
        detach(&mut checked, &sidecar());
        assert_eq!(checked, before);
    }

    #[test]
    fn a_named_deployment_must_exist() {
        let mut named = sidecar();
        named.deployment = Some("n8n-worker".into());
        let additions = Additions {
            sidecar: Some(named.clone()),
            kept_value: None,
        };
        let mut checked = release();
        additions.apply(&mut checked, "svc-a").unwrap();
        assert_eq!(containers(&checked, "n8n-worker"), ["w", "mcp-sidecar"]);
        named.deployment = Some("absent".into());
        let missing = Additions {
            sidecar: Some(named),
            kept_value: None,
        };
        assert_eq!(
            missing.apply(&mut release(), "svc-a"),
            Err(AdditionError::NoDeployment("absent".into()))
        );
    }

    #[test]
    fn a_kept_value_lands_in_its_secret_and_restarts_the_pods_once() {
        let kept = KeptValue {
            secret: "svc-a-n8n-app-secret".into(),
            key: "N8N_API_KEY".into(),
            value: "key-1".into(),
        };
        let additions = Additions {
            sidecar: None,
            kept_value: Some(kept.clone()),
        };
        let mut checked = release();
        assert!(additions.apply(&mut checked, "svc-a").unwrap().value_kept);
        let secret = checked
            .documents
            .iter()
            .find(|d| d["kind"] == "Secret")
            .unwrap();
        assert_eq!(secret["data"]["N8N_API_KEY"], "a2V5LTE=");
        assert!(secret["stringData"].get("N8N_API_KEY").is_none());
        assert_eq!(secret["stringData"]["OTHER"], "x");
        let deployment = checked
            .documents
            .iter()
            .find(|d| name_of(d) == "svc-a-n8n")
            .unwrap();
        let digest = deployment["spec"]["template"]["metadata"]["annotations"]
            [VALUE_DIGEST_ANNOTATION]
            .clone();
        assert_eq!(digest.as_str().map(str::len), Some(16));
        assert!(!digest.as_str().unwrap().contains("key-1"));
        // Another value, another digest; the same value, the same digest.
        let mut again = release();
        additions.apply(&mut again, "svc-a").unwrap();
        let same = again
            .documents
            .iter()
            .find(|d| name_of(d) == "svc-a-n8n")
            .unwrap();
        assert_eq!(
            same["spec"]["template"]["metadata"]["annotations"][VALUE_DIGEST_ANNOTATION],
            digest
        );
        let absent = Additions {
            sidecar: None,
            kept_value: Some(KeptValue {
                secret: "nope".into(),
                ..kept
            }),
        };
        assert!(!absent.apply(&mut release(), "svc-a").unwrap().value_kept);
    }
}
