//! The one error type of the crate. Each variant says when it happens; `Display` is
//! written by hand as lowercase `what failed: why`, and never includes a secret (the
//! private key, a deployment token, a JWT, Job env values).

use std::fmt;

use crate::kube::status::Status;

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
    /// The rendered Job breaks a local rule or a Pod Security Standards check; it is
    /// never sent to Kubernetes.
    Refused {
        /// The Pod Security Standards level whose check `rule` is; `None` for the other
        /// local rules.
        level: Option<crate::render::pod_security::Level>,
        /// The rule's (or check's) name, e.g. `namespace-allow-list` or `capabilities`.
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
    /// The Orchestrator answered a request with an error status (not a poll's: those are
    /// outcomes). Transient for 408, 429 and 5xx; any other 4xx will not change by itself.
    Orchestrator {
        /// What we asked, e.g. `reporting the failure of deployment d-1 to https://…`.
        operation: String,
        /// The HTTP status code.
        code: u16,
        /// `Retry-After` in seconds, when sent.
        retry_after: Option<u64>,
        /// The start of the reply body, control characters removed.
        detail: String,
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
            Error::Orchestrator { code, .. } => is_transient_code(*code),
            _ => false,
        }
    }
}

/// Every error is one line, whatever the values in it hold: a `REMOTE_URL` with a line
/// break, a peer's message with a carriage return or an escape sequence cannot start a
/// second line (a forged log line) nor drive the terminal.
/// The HTTP codes that mean "the same request may succeed later": 408, 429 and 5xx.
pub fn is_transient_code(code: u16) -> bool {
    matches!(code, 408 | 429 | 500..=599)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        let mut f = OneLine(f);
        match self {
            Error::Config { name, problem, fix } => write!(f, "configuration {name}: {problem}; fix: {fix}"),
            Error::Decode { document, why } => write!(f, "could not decode {document}: {why}"),
            Error::Refused { level: None, rule, detail } => write!(f, "refused by local policy rule '{rule}': {detail}"),
            Error::Refused { level: Some(level), rule, detail } => write!(f, "refused by pod security level '{level}', check '{rule}': {detail}"),
            Error::Kube { operation, status } => write!(f, "{operation}: kubernetes answered {status}"),
            Error::Transport { operation, why } => write!(f, "{operation}: {why}"),
            Error::Orchestrator { operation, code, detail, .. } => write!(f, "{operation}: the Orchestrator answered HTTP {code}: {detail}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

/// `text` on one line, each control character escaped as in [`Error`]'s `Display`: for
/// the messages that are not an [`Error`] (command-line usage errors).
pub fn one_line(text: &str) -> String {
    let mut out = String::new();
    let _ = fmt::Write::write_str(&mut OneLine(&mut out), text);
    out
}

/// A writer that passes text on with each control character escaped (`\n`, `\u{1b}`).
struct OneLine<W>(W);

impl<W: fmt::Write> fmt::Write for OneLine<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for part in s.split_inclusive(char::is_control) {
            match part.chars().next_back() {
                Some(c) if c.is_control() => {
                    self.0.write_str(&part[..part.len() - c.len_utf8()])?;
                    write!(self.0, "{}", c.escape_default())?;
                }
                _ => self.0.write_str(part)?,
            }
        }
        Ok(())
    }
}

impl From<crate::render::pod_security::Refusal> for Error {
    fn from(r: crate::render::pod_security::Refusal) -> Error {
        Error::Refused { level: Some(r.level), rule: r.check.name(), detail: r.detail }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_value_with_line_breaks_makes_a_one_line_error() {
        let e = Error::config("REMOTE_URL", "'https://a\nb\r\u{1b}[2J' is not an http(s) URL", "use a URL\n");
        assert_eq!(e.to_string(), r"configuration REMOTE_URL: 'https://a\nb\r\u{1b}[2J' is not an http(s) URL; fix: use a URL\n");
        let e = Error::decode("message\u{85}", "caf\u{e9}\tbad");
        assert_eq!(e.to_string(), r"could not decode message\u{85}: café\tbad");
    }
}
