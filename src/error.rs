//! The one error type of the crate. Each variant says when it happens; `Display` is
//! written by hand as lowercase `what failed: why`, and never includes a secret (the
//! private key, a deployment token, a JWT, Job env values).

use std::fmt;

use crate::kube::Status;

/// Everything that can go wrong, classified once.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value (env var or flag) is missing or unusable. Start-up stops.
    Config {
        /// The variable or flag, e.g. `RUNNER_ID`.
        name: String,
        /// What is wrong with the value (never the value itself when it is secret).
        problem: String,
        /// What the operator should do.
        fix: String,
    },
    /// A document (message, JobSpec, policy file, PEM, Status body) could not be decoded.
    Decode {
        /// Which document, e.g. `create-job message` or `JOB_POLICY_FILE /etc/policy.json`.
        document: String,
        /// Why it failed.
        why: String,
    },
    /// The rendered Job breaks a local rule; it is never sent to Kubernetes.
    Refused {
        /// The rule's name, e.g. `namespace-allow-list`.
        rule: &'static str,
        /// What in the Job broke it.
        detail: String,
    },
    /// The Kubernetes API answered with an error status.
    Kube {
        /// The operation, e.g. `create Job ns/name`.
        operation: String,
        /// The parsed (or synthesised) `Status`.
        status: Status,
    },
    /// A network-level failure: connect, TLS, timeout, reset, oversized body.
    Transport {
        /// What we were talking to and doing.
        operation: String,
        /// Why it failed.
        why: String,
    },
    /// A local file could not be read or written.
    Io {
        /// The path and what we were doing with it.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn config(name: &str, problem: impl Into<String>, fix: impl Into<String>) -> Error {
        Error::Config { name: name.to_string(), problem: problem.into(), fix: fix.into() }
    }

    pub(crate) fn decode(document: impl Into<String>, why: impl Into<String>) -> Error {
        Error::Decode { document: document.into(), why: why.into() }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { what: what.into(), source }
    }

    pub(crate) fn transport(operation: impl Into<String>, why: impl fmt::Display) -> Error {
        Error::Transport { operation: operation.into(), why: why.to_string() }
    }

    /// True when retrying the same request later can succeed without anyone changing
    /// anything: transport failures and the Kubernetes codes that mean "try again".
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::Kube { status, .. } => status.is_transient(),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { name, problem, fix } => write!(f, "configuration {name}: {problem}; fix: {fix}"),
            Error::Decode { document, why } => write!(f, "could not decode {document}: {why}"),
            Error::Refused { rule, detail } => write!(f, "refused by local policy rule '{rule}': {detail}"),
            Error::Kube { operation, status } => write!(f, "{operation}: kubernetes answered {status}"),
            Error::Transport { operation, why } => write!(f, "{operation}: {why}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
