//! Wire types of the app features the platform uses (see docs/contract.md):
//! the MCP sidecar attached to a release, and the n8n bootstrap. Field names
//! are the platform's; the sidecar's container takes Kubernetes' camelCase
//! and the platform's snake_case alike.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /api/releases/{namespace}/{name}/sidecar`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SidecarRequest {
    /// The Deployment to attach to; default: the release's first.
    #[serde(default, alias = "deploymentName")]
    pub deployment_name: Option<String>,
    pub container: SidecarContainer,
}

/// The container to attach. Only these fields are accepted (no security
/// context, volumes or host access): it runs under the tenant's Pod
/// Security level like every other container of the release.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SidecarContainer {
    /// A DNS-1123 label, e.g. `mcp-sidecar`.
    pub name: String,
    /// An image reference, e.g. `ghcr.io/acme/mcp-server:1.2`.
    pub image: String,
    #[serde(default)]
    pub ports: Vec<SidecarPort>,
    #[serde(default)]
    pub env: Vec<SidecarEnv>,
    /// Kubernetes resource requests and limits.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub resources: Option<Value>,
    #[serde(default, alias = "liveness_probe", rename = "livenessProbe")]
    #[schema(value_type = Option<Object>)]
    pub liveness_probe: Option<Value>,
    #[serde(default, alias = "readiness_probe", rename = "readinessProbe")]
    #[schema(value_type = Option<Object>)]
    pub readiness_probe: Option<Value>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default, alias = "image_pull_policy", rename = "imagePullPolicy")]
    pub image_pull_policy: Option<String>,
}

/// A port of the sidecar.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SidecarPort {
    #[serde(alias = "container_port", rename = "containerPort")]
    pub container_port: u32,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
}

/// An environment variable: a value, or a key of a Secret or ConfigMap of
/// the release's namespace.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SidecarEnv {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, alias = "value_from", rename = "valueFrom")]
    pub value_from: Option<SidecarEnvSource>,
}

/// Where a variable's value comes from.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SidecarEnvSource {
    #[serde(default, alias = "secret_key_ref", rename = "secretKeyRef")]
    pub secret_key_ref: Option<KeyRef>,
    #[serde(default, alias = "config_map_key_ref", rename = "configMapKeyRef")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// A key of a Secret or ConfigMap.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub optional: Option<bool>,
}

/// The sidecar as attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SidecarResponse {
    pub message: String,
    pub deployment: String,
    pub namespace: String,
    pub container_name: String,
    /// `{release}-mcp`, when the container has a port.
    pub mcp_service_name: Option<String>,
    /// `http://{release}-mcp.{namespace}.svc.cluster.local:{port}`.
    pub mcp_internal_url: Option<String>,
    /// `https://{subdomain}-mcp.{domain}/mcp`, when exposure is on.
    pub mcp_endpoint_url: Option<String>,
    /// The release's revision that carries the sidecar.
    pub revision: u32,
}

/// `POST /api/releases/{namespace}/{release}/init/n8n`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct N8nInitRequest {
    #[serde(default = "default_owner_email")]
    pub owner_email: String,
    /// n8n's rule: 8 to 64 characters, a digit and an upper-case letter.
    pub owner_password: String,
    /// Create a new API key and revoke the kept one (default: a repeated
    /// call returns the kept key).
    #[serde(default)]
    pub rotate: bool,
}

fn default_owner_email() -> String {
    "admin@woowtech.io".to_owned()
}

/// The bootstrap's answer: always 200; `success` says whether it worked.
/// A repeated call (the release has a kept key) answers from the kept key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct N8nInitResponse {
    /// The key is made (or kept from an earlier call) and in force in the
    /// release's app Secret.
    pub success: bool,
    /// The API key (on success, and when only keeping it failed); the kept
    /// one on a repeated call.
    pub api_key: Option<String>,
    pub owner_email: Option<String>,
    /// The release's latest revision has the key in its app Secret
    /// (`N8N_API_KEY`).
    pub secret_patched: bool,
    /// First call: the pods are being restarted to read the key (their
    /// template carries its digest). Repeated call: the pods run with the
    /// key (that rollout is complete).
    pub pod_restarted: bool,
    pub message: String,
    /// `[<step>] <what went wrong>` when a step failed.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_take_camel_and_snake_case() {
        for body in [
            r#"{"container": {"name": "mcp", "image": "i:1", "ports": [{"containerPort": 3000}],
                "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "livenessProbe": {"tcpSocket": {"port": 3000}}}}"#,
            r#"{"deployment_name": "d", "container": {"name": "mcp", "image": "i:1", "ports": [{"container_port": 3000}],
                "env": [{"name": "K", "value_from": {"secret_key_ref": {"name": "s", "key": "k"}}}],
                "liveness_probe": {"tcpSocket": {"port": 3000}}}}"#,
        ] {
            let request: SidecarRequest = serde_json::from_str(body).expect(body);
            assert_eq!(request.container.ports[0].container_port, 3000);
            let source = request.container.env[0]
                .value_from
                .as_ref()
                .expect("source");
            assert_eq!(source.secret_key_ref.as_ref().expect("ref").key, "k");
            assert!(request.container.liveness_probe.is_some());
        }
        let privileged = r#"{"container": {"name": "x", "image": "i", "securityContext": {"privileged": true}}}"#;
        assert!(serde_json::from_str::<SidecarRequest>(privileged).is_err());
    }

    #[test]
    fn init_defaults_to_the_platforms_owner() {
        let request: N8nInitRequest =
            serde_json::from_str(r#"{"owner_password": "Secret123"}"#).unwrap();
        assert_eq!(request.owner_email, "admin@woowtech.io");
        assert!(!request.rotate);
    }
}
