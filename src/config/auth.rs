//! Who may call the API.

use std::path::PathBuf;

use clap::Args;

use super::list::List;

/// The API keys callers send in `X-API-Key`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Authentication")]
pub struct AuthConfig {
    /// The API key callers send in `X-API-Key`.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Several accepted API keys, comma-separated (for rotation).
    #[arg(
        long,
        env = "API_KEYS",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub api_keys: List,

    /// A file of accepted API keys (one per line); re-read when it changes,
    /// so keys rotate without a restart.
    #[arg(long, env = "API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Serve without any API key (local experiments only). Without a key and
    /// without this flag the service refuses to start.
    #[arg(long, env = "INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
}

impl AuthConfig {
    /// Every accepted key from API_KEY and API_KEYS (not the file).
    pub fn static_keys(&self) -> Vec<String> {
        let single = self
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        single
            .map(str::to_owned)
            .into_iter()
            .chain(self.api_keys.items().iter().cloned())
            .collect()
    }
}
