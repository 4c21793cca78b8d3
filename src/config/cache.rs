//! The watch-fed read cache.

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::list::seconds;

/// What the read cache watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheMode {
    /// One cluster-wide watch of Helm's records (label `owner=helm`) and
    /// one of pods, listed at start: every tenant namespace is answered
    /// from memory. Needs list and watch of Secrets (or ConfigMaps) and
    /// Pods cluster-wide (ClusterRole `paas-operator-reads`).
    #[value(alias = "true")]
    Cluster,
    /// Watches per namespace, started by a first read and dropped when
    /// idle, at most `READ_CACHE_NAMESPACES` at once: needs nothing beyond
    /// the per-tenant role, but reads beyond that many namespaces call the API.
    Namespaces,
    /// No cache: every read calls the Kubernetes API.
    #[value(alias = "false")]
    Off,
}

impl CacheMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cluster => "cluster",
            Self::Namespaces => "namespaces",
            Self::Off => "off",
        }
    }
}

/// How GET release/revisions/status are answered from memory.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Read cache")]
pub struct CacheConfig {
    /// Answer GET release/revisions/status from a watch-fed in-memory
    /// index (no API call per read): `cluster` (one cluster-wide watch,
    /// every tenant), `namespaces` (per-namespace watches of the namespaces
    /// being read; least privilege) or `off` (every read calls the
    /// Kubernetes API). `true` and `false` mean `cluster` and `off`.
    #[arg(long = "read-cache", env = "READ_CACHE", value_enum, default_value_t = CacheMode::Cluster)]
    pub mode: CacheMode,

    /// Seconds `/ready` waits, after start, for the cluster-wide cache to
    /// have listed everything (a replica takes traffic once its reads are
    /// served from memory); after that it is ready anyway and reads the
    /// cache cannot answer yet go to the API.
    #[arg(long = "read-cache-ready-wait", env = "READ_CACHE_READY_WAIT", default_value = "60", value_parser = seconds)]
    pub ready_wait: Duration,

    /// `READ_CACHE=namespaces` only: most namespaces indexed at once (two
    /// watches each); reads in further namespaces go to the API.
    #[arg(
        long = "read-cache-namespaces",
        env = "READ_CACHE_NAMESPACES",
        default_value_t = 512
    )]
    pub max_namespaces: usize,

    /// `READ_CACHE=namespaces` only: seconds without a read after which a
    /// namespace leaves the read cache.
    #[arg(long = "read-cache-idle", env = "READ_CACHE_IDLE", default_value = "900", value_parser = seconds)]
    pub idle: Duration,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Only {
        #[command(flatten)]
        cache: CacheConfig,
    }

    #[test]
    fn modes_and_the_old_switch() {
        let mode = |args: &[&str]| {
            Only::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
                .map(|o| o.cache.mode)
        };
        assert_eq!(mode(&[]).unwrap(), CacheMode::Cluster);
        assert_eq!(mode(&["--read-cache", "true"]).unwrap(), CacheMode::Cluster);
        assert_eq!(mode(&["--read-cache", "false"]).unwrap(), CacheMode::Off);
        assert_eq!(
            mode(&["--read-cache", "namespaces"]).unwrap(),
            CacheMode::Namespaces
        );
        assert!(mode(&["--read-cache", "sometimes"]).is_err());
    }
}
