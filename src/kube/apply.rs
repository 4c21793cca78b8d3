//! Server-side apply with the operator's one field manager: re-applying is
//! idempotent and takes over the fields we own.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::KubeError;

/// Field manager for everything the operator applies.
pub const FIELD_MANAGER: &str = "paas-operator";

/// Applies `body` as `name` (server-side apply, forced).
pub async fn apply<K>(
    api: &Api<K>,
    name: &str,
    body: Value,
    action: &'static str,
) -> Result<(), KubeError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(body))
        .await
        .map(drop)
        .map_err(KubeError::api(action))
}

/// Applies an object inside a namespace whose RoleBinding for us was just
/// created (see [`retry_forbidden`]).
pub async fn apply_retrying<K>(
    api: &Api<K>,
    name: &str,
    body: Value,
    action: &'static str,
) -> Result<(), KubeError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    retry_forbidden(|| apply(api, name, body.clone(), action)).await
}

/// Runs `call` again while it is refused with 403, for a short while: right
/// after our RoleBinding in a namespace is created, the API server's RBAC
/// cache may not know it yet.
pub async fn retry_forbidden<T, F, Fut>(mut call: F) -> Result<T, KubeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, KubeError>>,
{
    let mut delay = Duration::from_millis(50);
    loop {
        match call().await {
            Err(KubeError::Api {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 403 && delay < Duration::from_secs(2) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}
