//! `kubernetes-agent`: a drop-in replacement for the Platform Orchestrator's
//! `kubernetes-agent` runner. It authenticates to the Orchestrator with a self-signed
//! EdDSA JWT, keeps long polls open, and for each message creates or checks a Kubernetes
//! Job through hand-built REST calls. Synchronous (threads, no async runtime), one static
//! binary, few dependencies.
//!
//! # One message, start to end
//!
//! 1. **Received**: a poll thread of [`agent`] holds a long poll open
//!    ([`orchestrator::Remote::poll`], the JWT of [`orchestrator::jwt`] on it); a body
//!    that arrives is weighed against the memory budget and queued for a worker.
//! 2. **Decoded**: [`agent::handle::handle`] reads it with [`orchestrator::message::decode`]
//!    (through the bounded parser of [`json`]; ids and namespaces become [`name::Name`]s).
//! 3. **Rendered**: a create-job becomes a `batch/v1` Job in [`render::render_with_rewrites`]:
//!    the embedded template, the JobSpec, the local policy, identity, image mirrors, the
//!    service account, then the Pod Security Standards on the final pod.
//! 4. **Sent**: [`kube::request::create_job`] builds the call, [`kube::Client::send_until`]
//!    sends it with the pod's token and CA, retrying within a deadline. A check-job-status
//!    reads the Job and its pods instead, and `kube::diagnose` finds why one failed.
//! 5. **Reported**: a refusal or a failure is reported to the deployment by
//!    `agent::handle::report_failure` ([`orchestrator::Remote::report_failure`]); every
//!    decision is an [`ops::audit`] line.
//!
//! # Module map
//!
//! ```text
//! main.rs, cli, config     parse flags and environment once; config builds everything below
//! agent/                   the runtime (polls, workers, budget, shutdown) and handle.rs
//! orchestrator/            the Orchestrator client, its JWT, key and messages
//! render/                  Job rendering: policy merge, mirrors, Pod Security Standards
//! kube/                    the Kubernetes client, requests, Status, diagnosis
//! ops/                     logs, audit lines, the listener and metrics, `check`
//! sys/                     every unsafe call: signals, stack trimming, scheduling
//! offline/                 offline-install's library (src/bin/offline-install.rs is its CLI)
//! leaves                   backoff, base64, error, file, hex, http, image, json, name, random,
//!                          redact, text, time: used by the above, using none of them
//!                          (error names two data types, kube::status::Status and the
//!                          Pod Security level, from modules that use nothing)
//! ```
//!
//! What it deliberately does not do: run Jobs itself (upstream's `standard` mode), parse
//! kubeconfig files, watch Kubernetes objects, retry a message the Orchestrator did not
//! deliver (messages are not queued upstream; the agent keeps a poll open instead).

// The docs are for maintainers (`cargo doc --document-private-items`): links into the
// crate-private modules are meant.
#![allow(rustdoc::private_intra_doc_links)]

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
pub(crate) mod image;
pub mod json;
pub mod kube;
pub mod name;
pub mod offline;
pub mod ops;
pub mod orchestrator;
pub(crate) mod random;
#[cfg(test)]
mod readme_claims;
pub(crate) mod redact;
pub mod render;
#[cfg(test)]
#[path = "../tests/integration/support/scratch.rs"]
pub(crate) mod scratch;
pub(crate) mod sys;
pub(crate) mod text;
pub mod time;

pub use error::{Error, Result};
