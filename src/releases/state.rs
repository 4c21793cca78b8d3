//! What the operator keeps about a release besides Helm's record: the
//! sidecar attached to it and the n8n bootstrap's result (its API key).
//! One Secret per release, `paas-operator.<release>` in the release's
//! namespace, removed with the release. From it come the additions applied
//! to every rendering of the release.
//!
//! **Only from the operator's own creation.** The Secret is created (never
//! applied over what is there), and afterwards replaced only while it is
//! the one the operator made: it carries the operator's labels, which
//! admission keeps every ServiceAccount of the namespace from writing
//! (`paas-tenant-protected-objects`), and no such ServiceAccount may make a
//! Secret of that name at all (`paas-tenant-reserved-names`). A Secret of
//! that name that someone else made is never adopted, changed, deleted or
//! read: writing answers 409 `kept_state_conflict`, and reading for a
//! rendering takes nothing from it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Code};
use crate::kube::KubeError;
use crate::kube::apply::FIELD_MANAGER;
use crate::names::{ReleaseName, TenantNamespace};
use crate::render::additions::{Additions, KeptValue, Sidecar};
use crate::render::confine::OPERATOR_LABEL;

/// The label naming the release a kept-state Secret belongs to.
const RELEASE_LABEL: &str = "paas-operator/release";

/// Why the kept state could not be read for a change, or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The Kubernetes API failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// A Secret of the kept state's name exists that the operator did not
    /// make: it is left alone.
    #[error("secret {secret} in {namespace} was not made by the operator")]
    Foreign { namespace: String, secret: String },
}

impl From<StateError> for ApiError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::Kube(error) => error.into(),
            StateError::Foreign { namespace, secret } => ApiError::new(
                Code::KeptStateConflict,
                format!(
                    "Secret {secret} in namespace {namespace} holds the name of what the operator keeps about the release, and the operator did not make it; remove it (as an administrator) and try again"
                ),
            ),
        }
    }
}

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

/// True when the operator made this Secret for `release`: it carries the
/// operator's labels, which no ServiceAccount of the namespace may write.
fn is_ours(secret: &Secret, release: &ReleaseName) -> bool {
    let labels = secret.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    label(OPERATOR_LABEL.0) == Some(OPERATOR_LABEL.1)
        && label(RELEASE_LABEL) == Some(release.as_str())
}

async fn read(
    client: &Client,
    namespace: &TenantNamespace,
    release: &ReleaseName,
) -> Result<Option<Secret>, KubeError> {
    secrets(client, namespace)
        .get_opt(&secret_name(release))
        .await
        .map_err(KubeError::api("reading the release's kept state"))
}

fn foreign(namespace: &TenantNamespace, release: &ReleaseName) -> StateError {
    tracing::warn!(%namespace, %release, "a Secret named like the release's kept state was not made by the operator; left alone");
    StateError::Foreign {
        namespace: namespace.to_string(),
        secret: secret_name(release),
    }
}

fn state_of(secret: Option<Secret>) -> ReleaseState {
    let data = secret.and_then(|s| s.data).unwrap_or_default();
    ReleaseState {
        sidecar: field(&data, "sidecar"),
        n8n: field(&data, "n8n"),
    }
}

/// Reads the release's state for a rendering (empty when there is none).
/// A Secret of that name the operator did not make adds nothing.
pub async fn load(
    client: &Client,
    namespace: &TenantNamespace,
    release: &ReleaseName,
) -> Result<ReleaseState, KubeError> {
    let found = read(client, namespace, release).await?;
    Ok(match found {
        Some(secret) if !is_ours(&secret, release) => {
            tracing::warn!(%namespace, %release, "a Secret named like the release's kept state was not made by the operator; ignored");
            ReleaseState::default()
        }
        found => state_of(found),
    })
}

/// Reads the release's state before changing it: a Secret of that name the
/// operator did not make is a conflict (nothing would be kept, and the key
/// it holds is never answered).
pub async fn load_for_change(
    client: &Client,
    namespace: &TenantNamespace,
    release: &ReleaseName,
) -> Result<ReleaseState, StateError> {
    match read(client, namespace, release).await? {
        Some(secret) if !is_ours(&secret, release) => Err(foreign(namespace, release)),
        found => Ok(state_of(found)),
    }
}

fn field<T: DeserializeOwned>(data: &BTreeMap<String, ByteString>, key: &str) -> Option<T> {
    serde_json::from_slice(&data.get(key)?.0).ok()
}

/// The Secret holding `state`, as the operator makes it.
fn secret_body(release: &ReleaseName, state: &ReleaseState) -> Secret {
    let mut data = BTreeMap::new();
    if let Some(sidecar) = &state.sidecar {
        data.insert(
            "sidecar".to_owned(),
            ByteString(serde_json::to_vec(sidecar).unwrap_or_default()),
        );
    }
    if let Some(n8n) = &state.n8n {
        data.insert(
            "n8n".to_owned(),
            ByteString(serde_json::to_vec(n8n).unwrap_or_default()),
        );
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(release)),
            labels: Some(BTreeMap::from([
                (OPERATOR_LABEL.0.to_owned(), OPERATOR_LABEL.1.to_owned()),
                (RELEASE_LABEL.to_owned(), release.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Writes the release's state: creates the Secret when there is none,
/// replaces it (checked against the version read) when the operator made
/// it, and refuses one someone else made. An empty state removes it.
pub async fn save(
    client: &Client,
    namespace: &TenantNamespace,
    release: &ReleaseName,
    state: &ReleaseState,
) -> Result<(), StateError> {
    if state.is_empty() {
        return remove(client, namespace, release).await;
    }
    let api = secrets(client, namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let mut body = secret_body(release, state);
    let outcome = match read(client, namespace, release).await? {
        None => api.create(&params, &body).await,
        Some(existing) if is_ours(&existing, release) => {
            // Replaced only as read: a change in between is a conflict.
            body.metadata.resource_version = existing.metadata.resource_version;
            api.replace(&secret_name(release), &params, &body).await
        }
        Some(_) => return Err(foreign(namespace, release)),
    };
    match outcome {
        Ok(_) => Ok(()),
        // Made (or changed) by someone else since it was read: never
        // overwritten; the caller sees the conflict.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            match read(client, namespace, release).await? {
                Some(secret) if !is_ours(&secret, release) => Err(foreign(namespace, release)),
                _ => Err(
                    KubeError::api("keeping the release's state")(kube::Error::Api(status)).into(),
                ),
            }
        }
        Err(source) => Err(KubeError::Api {
            action: "keeping the release's state",
            source,
        }
        .into()),
    }
}

/// Removes the release's state when the operator made it (gone already is
/// fine); a Secret of that name someone else made is left alone.
pub async fn remove(
    client: &Client,
    namespace: &TenantNamespace,
    release: &ReleaseName,
) -> Result<(), StateError> {
    let Some(existing) = read(client, namespace, release).await? else {
        return Ok(());
    };
    if !is_ours(&existing, release) {
        tracing::warn!(%namespace, %release, "a Secret named like the release's kept state was not made by the operator; not removed");
        return Ok(());
    }
    // Exactly the Secret read: not one made anew in between.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.metadata.uid.clone(),
            resource_version: existing.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match secrets(client, namespace)
        .delete(&secret_name(release), &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(KubeError::Api {
            action: "removing the release's kept state",
            source,
        }
        .into()),
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

    #[test]
    fn only_a_secret_the_operator_made_for_the_release_is_its_own() {
        let release = ReleaseName::parse("svc-a").unwrap();
        let state = ReleaseState {
            sidecar: None,
            n8n: Some(N8nKey {
                owner_email: "a@b.c".into(),
                api_key: "k".into(),
                api_key_id: "id".into(),
                secret: None,
            }),
        };
        let made = secret_body(&release, &state);
        assert_eq!(made.metadata.name.as_deref(), Some("paas-operator.svc-a"));
        assert!(is_ours(&made, &release));
        assert_eq!(state_of(Some(made.clone())), state);
        // Another release's, or one without the operator's labels (a
        // tenant's, or an administrator's), is not.
        assert!(!is_ours(&made, &ReleaseName::parse("svc-b").unwrap()));
        let mut unlabelled = made.clone();
        unlabelled.metadata.labels = None;
        assert!(!is_ours(&unlabelled, &release));
        let mut half = made;
        half.metadata
            .labels
            .as_mut()
            .expect("labels")
            .remove(RELEASE_LABEL);
        assert!(!is_ours(&half, &release));
        let refused: ApiError = StateError::Foreign {
            namespace: "paas-ws-1".into(),
            secret: "paas-operator.svc-a".into(),
        }
        .into();
        assert_eq!(refused.code, Code::KeptStateConflict);
        assert_eq!(refused.code.status(), http::StatusCode::CONFLICT);
    }
}
