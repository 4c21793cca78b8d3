//! n8n's REST API, as the bootstrap needs it (n8n 1.x): readiness, owner
//! setup, login, API key scopes, keys. Reached over HTTP through the app's
//! Service — directly by cluster DNS, or through the Kubernetes API
//! server's service proxy ([`Transport`]) — never by exec into a pod.
//!
//! What n8n is told (the owner's password, the session cookie) and what it
//! answers (the API key) are never logged: errors carry the step, n8n's
//! status and n8n's own short message only.

mod transport;

use std::time::Duration;

use serde_json::{Value, json};

pub use transport::{Endpoint, Reply, Transport};

/// A bootstrap step, as the platform names it in `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    FindService,
    WaitReady,
    SetupOwner,
    Login,
    CreateApiKey,
    KeepKey,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FindService => "find_service",
            Self::WaitReady => "wait_ready",
            Self::SetupOwner => "setup_owner",
            Self::Login => "login",
            Self::CreateApiKey => "create_api_key",
            Self::KeepKey => "keep_key",
        }
    }
}

/// A failed step: what people see, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{}] {message}", step.as_str())]
pub struct StepError {
    pub step: Step,
    pub message: String,
}

impl StepError {
    pub fn new(step: Step, message: impl Into<String>) -> Self {
        Self {
            step,
            message: message.into(),
        }
    }

    /// From an answer n8n gave: its status and its own message (n8n's
    /// messages name the rule that failed, never the values sent).
    fn answered(step: Step, reply: &Reply) -> Self {
        let said = reply
            .json
            .get("message")
            .and_then(Value::as_str)
            .map(|m| m.chars().take(200).collect::<String>())
            .unwrap_or_else(|| "no message".into());
        Self::new(step, format!("n8n answered {}: {said}", reply.status))
    }
}

/// The label of the key the operator makes (n8n refuses a second key with
/// the same label, so an old one is deleted first).
pub const KEY_LABEL: &str = "mcp-sidecar";
/// The scopes asked for when n8n cannot list them.
const FALLBACK_SCOPES: &[&str] = &[
    "workflow:create",
    "workflow:read",
    "workflow:update",
    "workflow:delete",
    "workflow:list",
    "workflow:activate",
    "workflow:deactivate",
    "execution:read",
    "execution:list",
];

/// An API key n8n made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub raw: String,
}

/// One n8n instance's REST API.
pub struct N8n {
    transport: Transport,
}

impl N8n {
    pub fn new(transport: Transport) -> Self {
        Self { transport }
    }

    /// Waits until n8n serves its REST API (it answers 200 with a "starting
    /// up" page, then 404, before): polls `GET /rest/settings` until it is
    /// JSON with `userManagement`, within `limit`. Returns whether the owner
    /// is still to be set up.
    pub async fn wait_ready(&self, limit: Duration) -> Result<bool, StepError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut delay = Duration::from_millis(250);
        loop {
            if let Ok(reply) = self
                .transport
                .call("GET", "/rest/settings", None, None)
                .await
                && reply.status == 200
                && let Some(setup) = reply
                    .json
                    .pointer("/data/userManagement/showSetupOnFirstLoad")
                    .and_then(Value::as_bool)
            {
                return Ok(setup);
            }
            if tokio::time::Instant::now() + delay >= deadline {
                return Err(StepError::new(
                    Step::WaitReady,
                    format!("n8n did not become ready within {} s", limit.as_secs()),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Creates the owner account. An owner made meanwhile (a lost race) is
    /// fine: the login that follows checks the password.
    pub async fn setup_owner(&self, email: &str, password: &str) -> Result<(), StepError> {
        let body =
            json!({"email": email, "password": password, "firstName": "Admin", "lastName": "User"});
        let reply = self
            .call(
                Step::SetupOwner,
                "POST",
                "/rest/owner/setup",
                Some(&body),
                None,
            )
            .await?;
        let already = reply.status == 400
            && reply
                .json
                .get("message")
                .and_then(Value::as_str)
                .is_some_and(|m| m.contains("already setup"));
        if (reply.status == 200 && reply.json.pointer("/data/id").is_some()) || already {
            return Ok(());
        }
        Err(StepError::answered(Step::SetupOwner, &reply))
    }

    /// Logs in; the session cookie (`n8n-auth=…`) for the calls that follow.
    pub async fn login(&self, email: &str, password: &str) -> Result<String, StepError> {
        // `emailOrLdapLoginId` for 1.x from 1.6x on, `email` before; n8n
        // ignores the other. No `browser-id`: it would bind the session.
        let body = json!({"emailOrLdapLoginId": email, "email": email, "password": password});
        let reply = self
            .call(Step::Login, "POST", "/rest/login", Some(&body), None)
            .await?;
        if reply.status != 200 {
            return Err(StepError::answered(Step::Login, &reply));
        }
        reply
            .session
            .ok_or_else(|| StepError::new(Step::Login, "n8n gave no session cookie"))
    }

    /// Makes the operator's API key with every scope n8n offers the owner,
    /// after deleting an earlier key of the operator's label (n8n refuses a
    /// label twice; its value is lost anyway).
    pub async fn create_api_key(&self, session: &str) -> Result<ApiKey, StepError> {
        let step = Step::CreateApiKey;
        let scopes = self
            .call(step, "GET", "/rest/api-keys/scopes", None, Some(session))
            .await?;
        let scopes = match scopes.json.get("data").and_then(Value::as_array) {
            Some(list) if scopes.status == 200 && !list.is_empty() => Value::Array(list.clone()),
            _ => json!(FALLBACK_SCOPES),
        };
        for id in self.key_ids(session, Some(KEY_LABEL)).await? {
            self.delete_api_key(session, &id).await?;
        }
        let body = json!({"label": KEY_LABEL, "scopes": scopes, "expiresAt": Value::Null});
        let reply = self
            .call(step, "POST", "/rest/api-keys", Some(&body), Some(session))
            .await?;
        let key = reply.json.get("data").and_then(|data| {
            Some(ApiKey {
                id: data.get("id")?.as_str()?.to_owned(),
                raw: data.get("rawApiKey")?.as_str()?.to_owned(),
            })
        });
        match key {
            Some(key) if reply.status == 200 => Ok(key),
            _ => Err(StepError::answered(step, &reply)),
        }
    }

    /// Ids of the owner's keys, those of `label` only when given.
    pub async fn key_ids(
        &self,
        session: &str,
        label: Option<&str>,
    ) -> Result<Vec<String>, StepError> {
        let reply = self
            .call(
                Step::CreateApiKey,
                "GET",
                "/rest/api-keys",
                None,
                Some(session),
            )
            .await?;
        if reply.status != 200 {
            return Err(StepError::answered(Step::CreateApiKey, &reply));
        }
        let keys = reply
            .json
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(keys
            .iter()
            .filter(|k| label.is_none_or(|l| k.get("label").and_then(Value::as_str) == Some(l)))
            .filter_map(|k| k.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect())
    }

    /// Revokes a key.
    pub async fn delete_api_key(&self, session: &str, id: &str) -> Result<(), StepError> {
        let path = format!("/rest/api-keys/{}", urlencode(id));
        let reply = self
            .call(Step::CreateApiKey, "DELETE", &path, None, Some(session))
            .await?;
        if reply.status == 200 {
            Ok(())
        } else {
            Err(StepError::answered(Step::CreateApiKey, &reply))
        }
    }

    async fn call(
        &self,
        step: Step,
        method: &str,
        path: &str,
        body: Option<&Value>,
        session: Option<&str>,
    ) -> Result<Reply, StepError> {
        self.transport
            .call(method, path, body, session)
            .await
            .map_err(|error| StepError::new(step, format!("n8n could not be reached: {error}")))
    }
}

/// Key ids are n8n's own (letters and digits); anything else is escaped.
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_errors_name_the_step_and_n8ns_message_only() {
        let reply = Reply {
            status: 400,
            json: json!({"code": 400, "message": "Password must contain at least 1 number."}),
            session: None,
        };
        let error = StepError::answered(Step::SetupOwner, &reply);
        assert_eq!(
            error.to_string(),
            "[setup_owner] n8n answered 400: Password must contain at least 1 number."
        );
        assert_eq!(urlencode("ujmU_lj-9"), "ujmU_lj-9");
        assert_eq!(urlencode("a/../b"), "a%2F%2E%2E%2Fb");
    }
}
