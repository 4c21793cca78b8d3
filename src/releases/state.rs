//! What the operator keeps about a release besides Helm's record: the
//! sidecar attached to it and the n8n bootstrap's result (its API key).
//! One Secret per release, `paas-operator.<release>` in the release's
//! namespace, written by the operator only (it carries the operator's
//! label, which admission keeps the tenant off), removed with the release.
//! From it come the additions applied to every rendering of the release.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::helm::additions::{Additions, KeptValue, Sidecar};
use crate::helm::confine::OPERATOR_LABEL;
use crate::kube::KubeError;
use crate::kube::apply::FIELD_MANAGER;
use crate::names::{ReleaseName, TenantNamespace};

/// The key the n8n API key is kept under in the release's Secret.
pub const N8N_API_KEY: &str = "N8N_API_KEY";

/// The n8n bootstrap's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct N8nKey {
    pub owner_email: String,
    pub api_key: String,
    /// n8n's id of the key (to revoke it when rotating).
    pub api_key_id: String,
    /// The release's Secret the key is kept in (`None`: it has none).
    pub secret: Option<String>,
}

/// What the operator keeps about one release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseState {
    pub sidecar: Option<Sidecar>,
    pub n8n: Option<N8nKey>,
}

impl ReleaseState {
    /// What to add to every rendering of the release.
    pub fn additions(&self) -> Additions {
        Additions {
            sidecar: self.sidecar.clone(),
            kept_value: self.n8n.as_ref().and_then(|n8n| {
                Some(KeptValue {
                    secret: n8n.secret.clone()?,
                    key: N8N_API_KEY.to_owned(),
                    value: n8n.api_key.clone(),
                })
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sidecar.is_none() && self.n8n.is_none()
    }
}

fn secret_name(release: &ReleaseName) -> String {
    format!("paas-operator.{release}")
}

fn secrets(client: &Client, namespace: &TenantNamespace) -> Api<Secret> {
    Api::namespaced(client.clone(), namespace.as_str())
}

/// Reads the release's state (empty when there is none).
pub async fn load(
    client: &Client,
    namespace: &TenantNamespace,
    release: &ReleaseName,
) -> Result<ReleaseState, KubeError> {
    let found = secrets(client, namespace)
        .get_opt(&secret_name(release))
        .await
        .map_err(KubeError::api("reading the release's kept state"))?;
    // Only a Secret carrying the operator's label is the operator's: a
    // tenant may not write one with it (admission), so one without it was
    // made by someone else and is not trusted.
    let ours = |secret: &Secret| {
        secret
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(OPERATOR_LABEL.0))
            .is_some_and(|value| value == OPERATOR_LABEL.1)
    };
    let data = match found {
        Some(secret) if ours(&secret) => secret.data.unwrap_or_default(),
        Some(_) => {
            tracing::warn!(%namespace, %release, "a Secret named like the release's kept state was not written by the operator; ignored");
            BTreeMap::new()
        }
        None => BTreeMap::new(),
    };
    Ok(ReleaseState {
        sidecar: field(&data, "sidecar"),
        n8n: field(&data, "n8n"),
    })
}

fn field<T: DeserializeOwned>(data: &BTreeMap<String, ByteString>, key: &str) -> Option<T> {
    serde_json::from_slice(&data.get(key)?.0).ok()
}

/// Writes the release's state (server-side apply); an empty state removes it.
pub async fn save(
    client: &Client,
    namespace: &TenantNamespace,
    release: &ReleaseName,
    state: &ReleaseState,
) -> Result<(), KubeError> {
    if state.is_empty() {
        return remove(client, namespace, release).await;
    }
    let mut data = BTreeMap::new();
    if let Some(sidecar) = &state.sidecar {
        data.insert("sidecar", serde_json::to_vec(sidecar).unwrap_or_default());
    }
    if let Some(n8n) = &state.n8n {
        data.insert("n8n", serde_json::to_vec(n8n).unwrap_or_default());
    }
    let data: BTreeMap<&str, ByteString> =
        data.into_iter().map(|(k, v)| (k, ByteString(v))).collect();
    let body = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(release),
            "labels": { OPERATOR_LABEL.0: OPERATOR_LABEL.1, "paas-operator/release": release.as_str() },
        },
        "type": "Opaque",
        "data": data,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    secrets(client, namespace)
        .patch(&secret_name(release), &params, &Patch::Apply(body))
        .await
        .map(drop)
        .map_err(KubeError::api("keeping the release's state"))
}

/// Removes the release's state (gone already is fine).
pub async fn remove(
    client: &Client,
    namespace: &TenantNamespace,
    release: &ReleaseName,
) -> Result<(), KubeError> {
    match secrets(client, namespace)
        .delete(&secret_name(release), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(KubeError::Api {
            action: "removing the release's kept state",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additions_come_from_the_kept_state() {
        let mut state = ReleaseState::default();
        assert!(state.is_empty() && state.additions().is_empty());
        state.n8n = Some(N8nKey {
            owner_email: "a@b.c".into(),
            api_key: "k".into(),
            api_key_id: "id".into(),
            secret: Some("svc-a-n8n-app-secret".into()),
        });
        let kept = state.additions().kept_value.expect("kept");
        assert_eq!(
            (kept.secret.as_str(), kept.key.as_str(), kept.value.as_str()),
            ("svc-a-n8n-app-secret", "N8N_API_KEY", "k")
        );
        state.n8n.as_mut().expect("n8n").secret = None;
        assert!(state.additions().kept_value.is_none());
    }
}
