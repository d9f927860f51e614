//! The two messages the Orchestrator sends over the long poll (PROTOCOL §4), decoded
//! strictly, once, at the boundary: the text through the bounded JSON parser
//! ([`crate::json::parse`]: depth, value and container counts), every required field
//! present and of the right type, `job_id` and `namespace` valid Kubernetes names for
//! both actions (as [`Name`]s, the only type the request builder takes), or an error
//! naming the field. The deployment token is wrapped in [`Secret`] so no `Debug` or log
//! prints it. The JobSpec (`configuration`) is kept as a JSON tree; only the renderer
//! looks inside.

use std::fmt;

use miniserde::json::{Object, Value};

use crate::error::{Error, Result};
use crate::name::{self, Name};

/// A value that must never be printed: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `create-job`: create a Job named `job_id` in `namespace` from `configuration`.
#[derive(Debug, Clone)]
pub struct CreateJob {
    /// The Job name; in practice the deployment id.
    pub job_id: Name,
    /// Namespace the Job is created in.
    pub namespace: Name,
    /// The JobSpec, as sent (it carries credentials in env: never log it).
    pub configuration: Value,
    /// Token for reporting a failure on this deployment.
    pub deployment_token: Secret,
}

/// `check-job-status`: see whether the Job of a deployment is stuck.
#[derive(Debug, Clone)]
pub struct CheckJobStatus {
    /// The Job name; in practice the deployment id.
    pub job_id: Name,
    /// Namespace of the Job.
    pub namespace: Name,
    /// Token for reporting a failure on this deployment.
    pub deployment_token: Secret,
    /// Seconds since the epoch after which a Job with no running pod counts as stuck.
    pub expires_at: i64,
}

/// One decoded message.
#[derive(Debug, Clone)]
pub enum Message {
    /// `action = create-job`.
    CreateJob(CreateJob),
    /// `action = check-job-status`.
    CheckJobStatus(CheckJobStatus),
}

impl Message {
    /// The `action` string.
    pub fn action(&self) -> &'static str {
        match self {
            Message::CreateJob(_) => "create-job",
            Message::CheckJobStatus(_) => "check-job-status",
        }
    }
}

/// Decodes one message body. Errors name the field, never a value that may be secret.
pub fn decode(body: &str) -> Result<Message> {
    let doc = "Orchestrator message";
    let Value::Object(mut o) = crate::json::parse(body, doc)? else {
        return Err(Error::decode(doc, "not a JSON object"));
    };
    let action = string(&o, "action", doc)?;
    match action.as_str() {
        "create-job" => {
            let doc = "create-job message";
            let job_id = name(&o, "job_id", doc)?;
            let namespace = name(&o, "namespace", doc)?;
            let deployment_token = Secret(string(&o, "deployment_token", doc)?);
            // Moved out, not cloned: the JobSpec is the bulk of the message.
            let configuration = match o.remove("configuration") {
                Some(v @ Value::Object(_)) => v,
                Some(_) => return Err(Error::decode(doc, "field 'configuration' is not a JSON object (it must be a Kubernetes JobSpec)")),
                None => return Err(Error::decode(doc, "required field 'configuration' is missing")),
            };
            Ok(Message::CreateJob(CreateJob { job_id, namespace, configuration, deployment_token }))
        }
        "check-job-status" => {
            let doc = "check-job-status message";
            let expires = string(&o, "expires_at", doc)?;
            let expires_at = crate::time::parse_rfc3339(&expires).ok_or_else(|| Error::decode(doc, "field 'expires_at' is not an RFC 3339 time"))?;
            Ok(Message::CheckJobStatus(CheckJobStatus {
                job_id: name(&o, "job_id", doc)?,
                namespace: name(&o, "namespace", doc)?,
                deployment_token: Secret(string(&o, "deployment_token", doc)?),
                expires_at,
            }))
        }
        other => {
            let shown = crate::text::snippet(other, 40);
            Err(Error::decode(doc, format!("unknown action '{shown}'")))
        }
    }
}

/// The `job_id` and `deployment_token` of a `create-job` message that did not decode, so
/// that its deployment can still be told why it failed (it would otherwise wait for the
/// Orchestrator's timeout). Read flat from the top level ([`crate::json::top_level_strings`]),
/// so a message refused for its depth or size is still attributed. `None` for anything
/// else. The id is used only percent-encoded, in the Orchestrator's results URL.
pub fn salvage_report_target(body: &str) -> Option<(String, Secret)> {
    let fields = crate::json::top_level_strings(body, &["action", "job_id", "deployment_token"])?;
    match <[Option<String>; 3]>::try_from(fields).ok()? {
        [Some(action), Some(id), Some(token)] if action == "create-job" && is_deployment_id(&id) && !token.is_empty() => Some((id, Secret(token))),
        _ => None,
    }
}

/// True for what may name a deployment in the Orchestrator's results URL: 1–253 bytes of
/// ASCII letters, digits, `-` and `_` (deployment ids are UUIDs). No `.`, so no `..`; no
/// `/`, `%`, `?`, `#`, space or control character, so nothing can steer the URL or a log line.
pub fn is_deployment_id(s: &str) -> bool {
    (1..=253).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn string(o: &Object, field: &str, doc: &str) -> Result<String> {
    match o.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(Error::decode(doc, format!("field '{field}' is empty"))),
        Some(_) => Err(Error::decode(doc, format!("field '{field}' is not a string"))),
        None => Err(Error::decode(doc, format!("required field '{field}' is missing"))),
    }
}

/// A field that must be a Kubernetes name (it goes into request paths and selectors).
fn name(o: &Object, field: &str, doc: &str) -> Result<Name> {
    let s = string(o, field, doc)?;
    Name::label(&s).ok_or_else(|| Error::decode(doc, format!("field '{field}' {}", name::label_problem(&s))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_job_decodes_and_hides_its_token() {
        let m = decode(r#"{"action":"create-job","job_id":"d-1","namespace":"ns","configuration":{"template":{}},"deployment_token":"tok-secret"}"#).unwrap();
        assert_eq!(m.action(), "create-job");
        assert!(matches!(&m, Message::CreateJob(c) if c.job_id == *"d-1" && c.namespace == *"ns"));
        assert!(!format!("{m:?}").contains("tok-secret"));
    }

    #[test]
    fn check_job_status_needs_an_rfc3339_expiry() {
        let ok = decode(r#"{"action":"check-job-status","job_id":"d","namespace":"n","deployment_token":"t","expires_at":"2026-11-27T15:37:06Z"}"#).unwrap();
        assert!(matches!(ok, Message::CheckJobStatus(CheckJobStatus { expires_at: 1_795_793_826, .. })));
        let bad = decode(r#"{"action":"check-job-status","job_id":"d","namespace":"n","deployment_token":"t","expires_at":"soon"}"#).unwrap_err().to_string();
        assert!(bad.contains("expires_at"), "{bad}");
    }

    #[test]
    fn a_jobspec_that_is_not_an_object_is_refused_by_field() {
        let e = decode(r#"{"action":"create-job","job_id":"d","namespace":"n","configuration":"[1]","deployment_token":"t"}"#).unwrap_err().to_string();
        assert!(e.contains("'configuration' is not a JSON object"), "{e}");
        let e = decode(r#"{"action":"create-job","job_id":"d","namespace":"n","configuration":[],"deployment_token":"t"}"#).unwrap_err().to_string();
        assert!(e.contains("configuration"), "{e}");
    }

    #[test]
    fn missing_fields_unknown_actions_and_garbage_are_named() {
        let e = decode(r#"{"action":"create-job","namespace":"n","configuration":{},"deployment_token":"t"}"#).unwrap_err().to_string();
        assert!(e.contains("'job_id' is missing"), "{e}");
        let e = decode(r#"{"action":"delete-everything"}"#).unwrap_err().to_string();
        assert!(e.contains("unknown action 'delete-everything'"), "{e}");
        assert!(decode("not json").unwrap_err().to_string().contains("not valid JSON"));
        assert!(decode("[]").unwrap_err().to_string().contains("not a JSON object"));
    }

    #[test]
    fn check_job_status_names_that_would_steer_the_request_path_are_refused_at_decode() {
        for (field, value) in [
            ("job_id", "x/../../../../../api/v1/namespaces/kube-system/secrets/admin-token"),
            ("job_id", "x?watch=true&timeoutSeconds=3600"),
            ("namespace", "kube-system/secrets"),
            ("namespace", ".."),
            ("job_id", "UPPER"),
        ] {
            let mut fields =
                [("action", "check-job-status"), ("job_id", "d"), ("namespace", "n"), ("deployment_token", "t"), ("expires_at", "2026-11-27T15:37:06Z")];
            fields.iter_mut().find(|(k, _)| *k == field).unwrap().1 = value;
            let body =
                format!("{{{}}}", fields.iter().map(|(k, v)| format!("{}:{}", crate::json::quote(k), crate::json::quote(v))).collect::<Vec<_>>().join(","));
            let e = decode(&body).unwrap_err().to_string();
            assert!(e.starts_with(&format!("could not decode check-job-status message: field '{field}' '")), "{value}: {e}");
        }
    }

    #[test]
    fn create_job_names_are_refused_at_decode_too() {
        let e = decode(r#"{"action":"create-job","job_id":"a/b","namespace":"n","configuration":{},"deployment_token":"t"}"#).unwrap_err().to_string();
        assert!(e.contains("field 'job_id' 'a/b' is not a DNS-1123 label"), "{e}");
        let e = decode(&format!(r#"{{"action":"create-job","job_id":"{}","namespace":"n","configuration":{{}},"deployment_token":"t"}}"#, "a".repeat(64)))
            .unwrap_err();
        assert!(e.to_string().contains("at most 63"), "{e}");
    }

    #[test]
    fn deep_nesting_in_a_jobspec_is_refused_with_a_clear_error_and_its_deployment_still_found() {
        let deep = format!("{}{}", "[".repeat(6_000), "]".repeat(6_000));
        let body = format!(r#"{{"action":"create-job","job_id":"d-1","namespace":"n","deployment_token":"t","configuration":{{"x":{deep}}}}}"#);
        let e = decode(&body).unwrap_err().to_string();
        assert_eq!(e, "could not decode Orchestrator message: it nests deeper than 64 levels");
        let (id, token) = salvage_report_target(&body).unwrap();
        assert_eq!((id.as_str(), token.expose()), ("d-1", "t"));
    }

    #[test]
    fn a_broken_message_still_yields_its_report_target() {
        let (id, token) = salvage_report_target(r#"{"action":"create-job","job_id":"d-9","deployment_token":"t","configuration":7}"#).unwrap();
        assert_eq!((id.as_str(), token.expose()), ("d-9", "t"));
        assert!(salvage_report_target(r#"{"job_id":"d-9"}"#).is_none());
        for steering in ["..", "x\nERROR forged", "a/b", &" ".repeat(300_000), "a%2Fb"] {
            let body = format!(r#"{{"action":"create-job","job_id":{},"deployment_token":"t","configuration":7}}"#, crate::json::quote(steering));
            assert!(salvage_report_target(&body).is_none(), "{steering:?}");
        }
        assert!(salvage_report_target(r#"{"action":"check-job-status","job_id":"d-9","deployment_token":"t"}"#).is_none());
    }
}
