//! The sidecar request, checked at the edge: names, image reference,
//! ports, env, resources and probes, rebuilt as Kubernetes reads them from
//! checked fields only, and the Service `{release}-mcp` for its first
//! port. A refusal is 400 `invalid_sidecar` naming the field, before
//! anything reads the release.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Code};
use crate::model::apps::{SidecarContainer, SidecarEnv, SidecarPort, SidecarRequest};
use crate::names::{Quantity, ReleaseName, is_dns1123_label};
use crate::render::additions::{Sidecar, SidecarService};

/// A sidecar to attach, checked: what the release service applies.
#[derive(Debug, Clone)]
pub struct AttachSidecar {
    /// The container's name (a DNS-1123 label).
    pub container_name: String,
    /// The sidecar as it is kept with the release and added to renderings.
    pub sidecar: Sidecar,
}

/// Why a sidecar request is refused (400 `invalid_sidecar`; the text is
/// the answer's `detail`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidecarError {
    /// `deployment_name` is not an object name.
    #[error("deployment_name is not a valid object name")]
    DeploymentName,
    /// The container's name is not a DNS-1123 label (at most 64
    /// characters of it are repeated).
    #[error("container name {0:?} is not a DNS-1123 label")]
    ContainerName(String),
    /// The image is not a plain image reference.
    #[error("image is not an image reference")]
    Image,
    /// A port number out of range.
    #[error("port {0} is not 1 to 65535")]
    Port(u32),
    /// A port name that Kubernetes would refuse.
    #[error("a port name must be a DNS-1123 label of at most 15 characters")]
    PortName,
    /// A protocol Kubernetes does not know.
    #[error("a port protocol must be TCP, UDP or SCTP")]
    Protocol,
    /// An environment variable name that is not valid.
    #[error("an environment variable name is not valid")]
    EnvName,
    /// `valueFrom` with neither or both key references.
    #[error("valueFrom needs exactly one of secretKeyRef, configMapKeyRef")]
    ValueSource,
    /// A key reference to no valid object or key.
    #[error("a key reference names no valid object or key")]
    KeyRef,
    /// An environment variable with both `value` and `valueFrom`.
    #[error("an environment variable has both value and valueFrom")]
    ValueAndSource,
    /// `resources` other than requests and limits of quantities.
    #[error("resources must be {{requests, limits}} of quantities")]
    Resources,
    /// A probe field or value that is not accepted (the text says which).
    #[error("a probe {0}")]
    Probe(String),
    /// `command` or `args` with too many or too long words.
    #[error("{0} is too long")]
    TooLong(&'static str),
    /// An image pull policy Kubernetes does not know.
    #[error("imagePullPolicy must be Always, IfNotPresent or Never")]
    PullPolicy,
}

impl From<SidecarError> for ApiError {
    fn from(error: SidecarError) -> Self {
        ApiError::new(Code::InvalidSidecar, error.to_string())
    }
}

impl AttachSidecar {
    /// The checked sidecar of `release`.
    pub fn parse(request: SidecarRequest, release: &ReleaseName) -> Result<Self, SidecarError> {
        if let Some(deployment) = &request.deployment_name
            && !deployment.split('.').all(is_dns1123_label)
        {
            return Err(SidecarError::DeploymentName);
        }
        let container = container_json(&request.container)?;
        let service = request.container.ports.first().map(|port| SidecarService {
            name: format!("{release}-mcp"),
            port: u16::try_from(port.container_port).unwrap_or_default(),
        });
        Ok(Self {
            container_name: request.container.name,
            sidecar: Sidecar {
                deployment: request.deployment_name,
                container,
                service,
            },
        })
    }
}

/// The container as Kubernetes reads it, built only from checked fields.
fn container_json(c: &SidecarContainer) -> Result<Value, SidecarError> {
    if !is_dns1123_label(&c.name) {
        return Err(SidecarError::ContainerName(
            c.name.chars().take(64).collect(),
        ));
    }
    if !is_image(&c.image) {
        return Err(SidecarError::Image);
    }
    let mut container = json!({"name": c.name, "image": c.image});
    let ports = c
        .ports
        .iter()
        .map(port_json)
        .collect::<Result<Vec<_>, _>>()?;
    if !ports.is_empty() {
        container["ports"] = Value::Array(ports);
    }
    let env = c.env.iter().map(env_json).collect::<Result<Vec<_>, _>>()?;
    if !env.is_empty() {
        container["env"] = Value::Array(env);
    }
    if let Some(resources) = &c.resources {
        container["resources"] = resources_json(resources)?;
    }
    for (field, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
    ] {
        if let Some(probe) = probe {
            container[field] = probe_json(probe)?;
        }
    }
    for (field, words) in [("command", &c.command), ("args", &c.args)] {
        if words.len() > 64 || words.iter().any(|w| w.len() > 4096) {
            return Err(SidecarError::TooLong(field));
        }
        if !words.is_empty() {
            container[field] = json!(words);
        }
    }
    if let Some(policy) = &c.image_pull_policy {
        if !matches!(policy.as_str(), "Always" | "IfNotPresent" | "Never") {
            return Err(SidecarError::PullPolicy);
        }
        container["imagePullPolicy"] = json!(policy);
    }
    Ok(container)
}

/// A port: its number, name and protocol (TCP when not given).
fn port_json(port: &SidecarPort) -> Result<Value, SidecarError> {
    if !(1..=65535).contains(&port.container_port) {
        return Err(SidecarError::Port(port.container_port));
    }
    let mut entry = json!({"containerPort": port.container_port});
    if let Some(name) = &port.name {
        if name.len() > 15 || !is_dns1123_label(name) {
            return Err(SidecarError::PortName);
        }
        entry["name"] = json!(name);
    }
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
        return Err(SidecarError::Protocol);
    }
    entry["protocol"] = json!(protocol);
    Ok(entry)
}

/// An environment variable: a value, or a key of a Secret or ConfigMap.
fn env_json(variable: &SidecarEnv) -> Result<Value, SidecarError> {
    if !is_env_name(&variable.name) {
        return Err(SidecarError::EnvName);
    }
    Ok(match (&variable.value, &variable.value_from) {
        (Some(value), None) => json!({"name": variable.name, "value": value}),
        (None, Some(source)) => {
            let (field, reference) = match (&source.secret_key_ref, &source.config_map_key_ref) {
                (Some(r), None) => ("secretKeyRef", r),
                (None, Some(r)) => ("configMapKeyRef", r),
                _ => return Err(SidecarError::ValueSource),
            };
            if !reference.name.split('.').all(is_dns1123_label) || !is_key(&reference.key) {
                return Err(SidecarError::KeyRef);
            }
            let mut r = json!({"name": reference.name, "key": reference.key});
            if let Some(optional) = reference.optional {
                r["optional"] = json!(optional);
            }
            json!({"name": variable.name, "valueFrom": {field: r}})
        }
        (None, None) => json!({"name": variable.name, "value": ""}),
        (Some(_), Some(_)) => return Err(SidecarError::ValueAndSource),
    })
}

/// `requests` and `limits` of Kubernetes quantities, nothing else.
fn resources_json(value: &Value) -> Result<Value, SidecarError> {
    let object = value.as_object().ok_or(SidecarError::Resources)?;
    let mut out = Map::new();
    for (part, quantities) in object {
        if !matches!(part.as_str(), "requests" | "limits") {
            return Err(SidecarError::Resources);
        }
        let quantities = quantities.as_object().ok_or(SidecarError::Resources)?;
        let mut checked = Map::new();
        for (resource, quantity) in quantities {
            let text = match quantity {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(SidecarError::Resources),
            };
            let known = matches!(resource.as_str(), "cpu" | "memory" | "ephemeral-storage");
            if !known || Quantity::parse("resources", &text).is_err() {
                return Err(SidecarError::Resources);
            }
            checked.insert(resource.clone(), json!(text));
        }
        out.insert(part.clone(), Value::Object(checked));
    }
    Ok(Value::Object(out))
}

/// A probe: one of httpGet, tcpSocket, grpc, exec, and its timings.
fn probe_json(value: &Value) -> Result<Value, SidecarError> {
    let bad = |why: &str| SidecarError::Probe(why.to_owned());
    let object = value.as_object().ok_or_else(|| bad("must be an object"))?;
    let mut out = Map::new();
    for (field, setting) in object {
        let checked = match field.as_str() {
            "initialDelaySeconds"
            | "periodSeconds"
            | "timeoutSeconds"
            | "successThreshold"
            | "failureThreshold"
            | "terminationGracePeriodSeconds" => {
                let n = setting
                    .as_u64()
                    .filter(|n| *n <= 86_400)
                    .ok_or_else(|| bad("timing must be a whole number of seconds"))?;
                json!(n)
            }
            "httpGet" | "tcpSocket" | "grpc" => probe_action(setting)?,
            "exec" => {
                let command = setting
                    .get("command")
                    .and_then(Value::as_array)
                    .filter(|c| {
                        c.len() <= 64
                            && c.iter()
                                .all(|w| w.as_str().is_some_and(|w| w.len() <= 4096))
                    })
                    .ok_or_else(|| bad("exec needs a command of strings"))?;
                json!({"command": command})
            }
            other => return Err(bad(&format!("field {other:?} is not accepted"))),
        };
        out.insert(field.clone(), checked);
    }
    Ok(Value::Object(out))
}

/// An httpGet, tcpSocket or grpc action: port, path, scheme and service
/// only (never a host: the probe stays on the pod).
fn probe_action(setting: &Value) -> Result<Value, SidecarError> {
    let action = setting
        .as_object()
        .ok_or_else(|| SidecarError::Probe("action must be an object".into()))?;
    let mut checked = Map::new();
    for (key, v) in action {
        let ok = match key.as_str() {
            "port" => {
                v.as_u64().is_some_and(|p| (1..=65535).contains(&p))
                    || v.as_str()
                        .is_some_and(|n| n.len() <= 15 && is_dns1123_label(n))
            }
            "path" => v.as_str().is_some_and(|p| {
                p.starts_with('/') && p.len() <= 1024 && !p.chars().any(char::is_control)
            }),
            "scheme" => matches!(v.as_str(), Some("HTTP" | "HTTPS")),
            "service" => v.as_str().is_some_and(|s| s.len() <= 256),
            _ => false,
        };
        if !ok {
            return Err(SidecarError::Probe(format!(
                "field {key:?} is not accepted"
            )));
        }
        checked.insert(key.clone(), v.clone());
    }
    Ok(Value::Object(checked))
}

/// An image reference: `[registry[:port]/]path[:tag][@digest]`, plain
/// characters only.
fn is_image(image: &str) -> bool {
    !image.is_empty()
        && image.len() <= 255
        && !image.starts_with(['-', '.', '/', ':'])
        && image.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b':' | b'@' | b'_' | b'-')
        })
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.as_bytes()[0].is_ascii_digit()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(container: Value) -> SidecarRequest {
        serde_json::from_value(json!({"container": container})).expect("request")
    }

    fn release() -> ReleaseName {
        ReleaseName::parse("svc-a").expect("name")
    }

    #[test]
    fn the_platforms_sidecar_is_accepted_as_kubernetes_reads_it() {
        let attach = AttachSidecar::parse(
            request(json!({
                "name": "mcp-sidecar", "image": "ghcr.io/acme/n8n-mcp:1.2.3",
                "ports": [{"container_port": 3000}],
                "env": [{"name": "N8N_API_KEY", "value_from": {"secret_key_ref": {"name": "svc-a-n8n-app-secret", "key": "N8N_API_KEY"}}},
                        {"name": "N8N_URL", "value": "http://svc-a-n8n:5678"}],
                "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}},
                "readiness_probe": {"tcpSocket": {"port": 3000}, "periodSeconds": 10}
            })),
            &release(),
        )
        .expect("valid");
        assert_eq!(attach.container_name, "mcp-sidecar");
        let sidecar = attach.sidecar;
        assert_eq!(
            sidecar.container["ports"][0],
            json!({"containerPort": 3000, "protocol": "TCP"})
        );
        assert_eq!(
            sidecar.container["env"][0]["valueFrom"]["secretKeyRef"]["key"],
            "N8N_API_KEY"
        );
        assert_eq!(sidecar.container["readinessProbe"]["periodSeconds"], 10);
        let service = sidecar.service.expect("service");
        assert_eq!((service.name.as_str(), service.port), ("svc-a-mcp", 3000));
    }

    #[test]
    fn bad_sidecars_are_refused_before_anything_runs() {
        let cases = [
            (
                json!({"name": "Bad_Name", "image": "i"}),
                SidecarError::ContainerName("Bad_Name".into()),
            ),
            (
                json!({"name": "mcp", "image": "i; rm -rf /"}),
                SidecarError::Image,
            ),
            (json!({"name": "mcp", "image": "-i"}), SidecarError::Image),
            (
                json!({"name": "mcp", "image": "i", "ports": [{"containerPort": 70000}]}),
                SidecarError::Port(70000),
            ),
            (
                json!({"name": "mcp", "image": "i", "env": [{"name": "1X", "value": "v"}]}),
                SidecarError::EnvName,
            ),
            (
                json!({"name": "mcp", "image": "i", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "../x", "key": "k"}}}]}),
                SidecarError::KeyRef,
            ),
            (
                json!({"name": "mcp", "image": "i", "resources": {"limits": {"cpu": "lots"}}}),
                SidecarError::Resources,
            ),
            (
                json!({"name": "mcp", "image": "i", "resources": {"claims": []}}),
                SidecarError::Resources,
            ),
            (
                json!({"name": "mcp", "image": "i", "livenessProbe": {"httpGet": {"host": "169.254.169.254", "port": 80}}}),
                SidecarError::Probe("field \"host\" is not accepted".into()),
            ),
            (
                json!({"name": "mcp", "image": "i", "imagePullPolicy": "Sometimes"}),
                SidecarError::PullPolicy,
            ),
        ];
        for (case, expected) in cases {
            let error = AttachSidecar::parse(request(case.clone()), &release())
                .expect_err(&case.to_string());
            assert_eq!(error, expected, "{case}");
            assert_eq!(ApiError::from(error).code, Code::InvalidSidecar, "{case}");
        }
    }
}
