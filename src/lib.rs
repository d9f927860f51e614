//! `kubernetes-agent`: a drop-in replacement for the Platform Orchestrator's
//! `kubernetes-agent` runner. It authenticates to the Orchestrator with a self-signed
//! EdDSA JWT, keeps long polls open, and for each message creates or checks a Kubernetes
//! Job through hand-built REST calls. Synchronous (threads, no async runtime), one static
//! binary, few dependencies.
//!
//! What it deliberately does not do: run Jobs itself (upstream's `standard` mode), parse
//! kubeconfig files, watch Kubernetes objects, retry a message the Orchestrator did not
//! deliver (messages are not queued upstream; the agent keeps a poll open instead).

pub mod agent;
pub mod backoff;
pub mod base64;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub(crate) mod file;
pub mod hex;
pub(crate) mod http;
pub mod json;
pub mod kube;
pub mod name;
pub mod offline;
pub mod ops;
pub mod orchestrator;
pub(crate) mod random;
pub(crate) mod redact;
pub mod render;
#[cfg(test)]
#[path = "../tests/integration/support/scratch.rs"]
pub(crate) mod scratch;
pub(crate) mod sys;
pub(crate) mod text;
pub mod time;

pub use error::{Error, Result};
