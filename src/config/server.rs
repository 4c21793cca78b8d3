//! The HTTP listener, logging and shutdown.

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::list::{List, seconds};

/// Where and how the service listens.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// Origins allowed to call from a browser, comma-separated; empty = none.
    #[arg(
        long,
        env = "CORS_ORIGINS",
        default_value = "",
        hide_default_value = true
    )]
    pub cors_origins: List,

    /// Log filter, e.g. `info` or `paas_operator=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "340", value_parser = seconds)]
    pub shutdown_grace: Duration,

    /// Seconds a client has to send a request's headers (also how long an
    /// idle kept-alive connection stays open); slower clients are dropped.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "15", value_parser = seconds)]
    pub header_read_timeout: Duration,

    /// Seconds a client has to send a request's body.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub body_read_timeout: Duration,

    /// Most client connections open at once; further ones wait in the
    /// listen queue until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
}

impl ServerConfig {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
