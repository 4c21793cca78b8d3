//! End-to-end tests against the real local control plane, real Helm 3 and
//! Helm 4 and a real OCI registry (`scripts/testenv up`), in one binary:
//! one module per area, one harness. Each test makes its own random tenant
//! namespace. Without the control plane every test is skipped with a line
//! saying so, so `cargo test` alone stays fast.

mod harness;

mod attacks;
mod availability;
mod chaos;
mod cli_reads;
mod egress;
mod exposure;
mod hostile;
mod migration;
mod n8n;
mod namespaces;
mod observability;
mod read_cache;
mod releases;
mod render_limits;
mod robustness;
mod schemas;
mod sidecar;
