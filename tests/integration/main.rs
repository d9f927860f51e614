//! The integration tests, one crate (as ripgrep keeps them), so the stand-ins in
//! [`support`] compile once and rustc sees any of them no test uses. Each module runs the
//! real agent binary, or the library's Kubernetes client, against the stand-ins:
//!
//! - `agent`: the agent end to end (polls, Jobs, reports, logs, the listener, proxies);
//! - `cli`: the commands and flags (`keygen`, `render`, `check`, `--help`);
//! - `faults`: a failing Orchestrator or API server (5xx, slow, dropped, truncated);
//! - `hostile`: hostile messages, JobSpecs and replies;
//! - `jwt`: the agent's JWT as the Orchestrator stand-in verifies it;
//! - `kube_client`: the hand-built Kubernetes client (retries, token reloads, caps);
//! - `offline`: offline-install against the stand-in registry (bundle, verify, push);
//! - `status`: status checks: failed and blocked Jobs reported with their cause;
//! - `real_cluster`: the same against a real control plane (ignored unless
//!   `tests/real-cluster` runs them).
//!
//! Outside this crate: `tests/demo.rs` (the README's main job, no harness) and
//! `tests/weight.rs` (its own counting allocator would count every other test too).

mod agent;
mod cli;
mod faults;
mod hostile;
mod jwt;
mod kube_client;
mod offline;
mod real_cluster;
mod status;
mod support;
