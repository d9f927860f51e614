//! The audit trail: every decision the agent takes on a create-job (created, already
//! existed, refused by which rule, an image rewritten from what to what, failed and
//! whether that was reported) is one log line of its own, so that an operator can prove
//! afterwards what was let into the cluster and why.
//!
//! A line is `audit: decision=<decision> deployment=<id> namespace=<ns> ...` in
//! `key=value` form (a value that is not a plain word is a JSON string, so no value can
//! start a field of its own or a line), logged with target [`TARGET`] at info level
//! whatever `LOG_LEVEL` says; the JSON log format marks it `"audit":true`. The Job is
//! identified by the SHA-256 of the exact JSON sent to the API server, never by its
//! content: a Job carries credentials in its env.

use std::fmt::Write as _;

use crate::error::Error;
use crate::name::Name;

/// The log target of audit lines (within the crate's own, so that `RUST_LOG` filters
/// that name the crate keep them).
pub const TARGET: &str = "kubernetes_agent::audit";
/// The fixed start of every audit line's message.
pub const PREFIX: &str = "audit:";
/// Longest value written; an image reference is far shorter.
pub const VALUE_CAP: usize = 1024;

/// What the agent did with a create-job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The Job was created.
    Created,
    /// A Job of that name existed already (another replica or an earlier delivery).
    AlreadyExisted,
    /// The Job broke a local rule or a Pod Security Standards check; nothing was sent.
    Refused,
    /// An image was rewritten by `IMAGE_MIRRORS` in the Job that was sent.
    ImageRewritten,
    /// The API server (or the way to it) failed the create.
    Failed,
}

impl Decision {
    /// The decision as the line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Created => "created",
            Decision::AlreadyExisted => "already-existed",
            Decision::Refused => "refused",
            Decision::ImageRewritten => "image-rewritten",
            Decision::Failed => "failed",
        }
    }
}

/// One audit line being built.
#[derive(Debug, Clone)]
pub struct Entry {
    line: String,
}

impl Entry {
    /// A line for `decision` on the create-job of `deployment` in `namespace`.
    pub fn new(decision: Decision, deployment: &Name, namespace: &Name) -> Entry {
        Entry::unchecked(decision, deployment.as_str(), namespace.as_str())
    }

    /// Like [`Entry::new`], for a create-job that did not decode: its `deployment` is
    /// whatever the message said (quoted when it is not a plain word), its namespace unknown.
    pub fn unchecked(decision: Decision, deployment: &str, namespace: &str) -> Entry {
        let entry = Entry { line: PREFIX.to_string() };
        entry.field("decision", decision.name()).field("deployment", deployment).field("namespace", namespace)
    }

    /// Adds `key=value`; `value` is quoted unless it is a plain word, and capped at [`VALUE_CAP`].
    pub fn field(mut self, key: &'static str, value: &str) -> Entry {
        let value: String = if value.len() > VALUE_CAP { value.chars().take(VALUE_CAP).collect::<String>() + "..." } else { value.to_string() };
        let plain = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:/@+,".contains(&b));
        let _ = if plain { write!(self.line, " {key}={value}") } else { write!(self.line, " {key}={}", crate::json::quote(&value)) };
        self
    }

    /// Adds the rule (and, for a Pod Security Standards check, the level) of a render error.
    pub fn rule_of(self, e: &Error) -> Entry {
        match e {
            Error::Refused { level: Some(level), rule, .. } => self.field("rule", rule).field("level", level.name()),
            Error::Refused { level: None, rule, .. } => self.field("rule", rule),
            Error::Kube { status, .. } => self.field("rule", &format!("kubernetes-{}", status.code)),
            Error::Transport { .. } => self.field("rule", "kubernetes-unreachable"),
            Error::Decode { .. } => self.field("rule", "unreadable-jobspec"),
            _ => self.field("rule", "other"),
        }
    }

    /// The line as logged.
    #[cfg(test)]
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Logs the line with target [`TARGET`].
    pub fn log(self) {
        log::info!(target: TARGET, "{}", self.line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::label(s).unwrap()
    }

    #[test]
    fn a_line_names_the_decision_deployment_and_namespace_after_the_prefix() {
        let line = Entry::new(Decision::Created, &name("d-1"), &name("jobs")).field("sha256", &crate::hex::sha256(b"{}")).line().to_string();
        assert_eq!(line, format!("audit: decision=created deployment=d-1 namespace=jobs sha256={}", crate::hex::sha256(b"{}")));
    }

    #[test]
    fn a_value_with_spaces_quotes_or_line_breaks_cannot_forge_a_field_or_a_line() {
        let hostile = "x decision=created\n\"audit: decision=created";
        let line = Entry::new(Decision::ImageRewritten, &name("d-1"), &name("jobs")).field("from", hostile).line().to_string();
        // The whole value is one JSON string: nothing of it reads as a field or a line of its own.
        assert_eq!(line, r#"audit: decision=image-rewritten deployment=d-1 namespace=jobs from="x decision=created\n\"audit: decision=created""#);
        assert!(!line.contains('\n'), "{line}");
        let long = "a".repeat(VALUE_CAP * 4);
        assert!(Entry::new(Decision::ImageRewritten, &name("d-1"), &name("jobs")).field("to", &long).line().len() < VALUE_CAP + 100);
        assert!(Entry::new(Decision::Failed, &name("d-1"), &name("jobs")).field("rule", "").line().ends_with(r#"rule="""#));
    }

    #[test]
    fn a_pod_security_refusal_gives_its_check_and_level() {
        let e = Error::from(crate::render::pod_security::Refusal {
            level: crate::render::pod_security::Level::Restricted,
            check: crate::render::pod_security::Check::Capabilities,
            detail: "container 'main' adds SYS_ADMIN".into(),
        });
        let line = Entry::new(Decision::Refused, &name("d-1"), &name("jobs")).rule_of(&e).line().to_string();
        assert!(line.ends_with(" rule=capabilities level=restricted"), "{line}");
        assert!(!line.contains("SYS_ADMIN"), "the line names the rule, not the Job's content: {line}");
    }
}
