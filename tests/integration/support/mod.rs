//! Shared test support: the Kubernetes and Orchestrator stand-ins on one small HTTPS
//! server, and helpers to run the real agent binary against them. Used by every
//! integration test and by the demo (tests/demo.rs); never part of the agent binary.

pub mod agent;
pub mod cluster;
pub mod kube;
pub mod orchestrator;
pub mod proxy;
pub mod registry;
pub mod scratch;
pub mod server;
