//! A hand-built client for the few Kubernetes API calls the agent makes: create and get a
//! Job, list Pods by label, list Events by field, and SelfSubjectAccessReview. Request
//! building ([`request`]) is pure; sending, credentials and retries live in [`client`];
//! error bodies are parsed by [`status`]. No watch, no apply, no kubeconfig parsing.

pub mod client;
pub(crate) mod diagnose;
pub mod request;
pub(crate) mod status;

pub use client::{Client, Target};
pub use request::ApiRequest;
pub use status::{Reason, Status};
