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
pub mod audit;
pub mod backoff;
pub mod base64;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diagnose;
pub mod error;
pub mod file;
pub mod hex;
pub mod http;
pub mod json;
pub mod jwt;
pub mod key;
pub mod kube;
pub mod listener;
pub mod logging;
pub mod merge;
pub mod message;
pub mod metrics;
pub mod mirror;
pub mod name;
pub mod offline;
pub mod pod_security;
pub mod random;
pub mod redact;
pub mod remote;
pub mod render;
pub mod signals;
pub mod stack;
pub mod time;

pub use error::{Error, Result};
