//! The watch-fed read cache.

use std::time::Duration;

use clap::Args;

use super::seconds;

/// How GET release/revisions/status are answered from memory.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Read cache")]
pub struct CacheConfig {
    /// Answer GET release/revisions/status from a watch-fed in-memory index
    /// of the namespaces being read (no API call per read); `false`: every
    /// read goes to the Kubernetes API.
    #[arg(long = "read-cache", env = "READ_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// Most namespaces the read cache indexes at once (two watches each);
    /// reads in further namespaces go to the API.
    #[arg(
        long = "read-cache-namespaces",
        env = "READ_CACHE_NAMESPACES",
        default_value_t = 512
    )]
    pub max_namespaces: usize,

    /// Seconds without a read after which a namespace leaves the read cache.
    #[arg(long = "read-cache-idle", env = "READ_CACHE_IDLE", default_value = "900", value_parser = seconds)]
    pub idle: Duration,
}
