//! The small subcommands: `render`, `keygen`, `version`, `standard`. Each takes resolved
//! inputs and returns what to print, so the binary only prints and picks the exit code.

use std::io::Write;
use std::path::Path;

use miniserde::json::{self, Value};

use crate::error::{Error, Result};
use crate::file;
use crate::key::{self, RunnerKey};
use crate::message::{self, Message};
use crate::render::{self, JobPolicy};

/// The version line.
pub fn version() -> String {
    format!("kubernetes-agent {}", env!("CARGO_PKG_VERSION"))
}

/// Why `standard` is refused.
pub const STANDARD_REFUSAL: &str = "'standard' is the job-side mode of the upstream runner image and is not part of this agent. \
This image only runs the agent ('remote'). Jobs keep using the Orchestrator's runner image: leave the \
runner's job image (pod_template container 'main') pointing at it, or at its mirror (IMAGE_MIRRORS).";

/// Reads a create-job message from `input` (a file, or standard input when `None`) and
/// renders its Job.
pub fn render_input(input: Option<&Path>, policy: &JobPolicy) -> Result<String> {
    let (bytes, source) = match input {
        Some(path) => (file::read_capped(path, file::RENDER_INPUT_CAP, "a message file"), path.display().to_string()),
        None => (file::read_capped_from(std::io::stdin().lock(), file::RENDER_INPUT_CAP, "a message"), "standard input".to_string()),
    };
    let bytes = bytes.map_err(|e| match e.kind() {
        std::io::ErrorKind::FileTooLarge => Error::decode(format!("message from {source}"), e.to_string()),
        _ => Error::io(format!("reading the message from {source}"), e),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| Error::decode(format!("message from {source}"), "it is not UTF-8 text"))?;
    render_message(&text, policy)
}

/// Renders the Job for one create-job message text, as pretty JSON.
pub fn render_message(text: &str, policy: &JobPolicy) -> Result<String> {
    let create = match message::decode(text)? {
        Message::CreateJob(c) => c,
        other => return Err(Error::decode("message", format!("render takes a create-job message, this is {}", other.action()))),
    };
    Ok(pretty(&render::render(&create.job_id, &create.namespace, create.configuration, policy)?))
}

/// Writes a key pair into `dir` and returns the text to print: the kid and the one-line
/// public key for `runner_configuration.key`. Existing files are kept unless `force`.
pub fn keygen(dir: &Path, force: bool) -> Result<String> {
    let key = RunnerKey::generate()?;
    let private = dir.join("runner_private_key.pem");
    let public = dir.join("runner_public_key.pem");
    for path in [&private, &public] {
        if path.exists() && !force {
            return Err(Error::io(
                format!("{} exists; refusing to replace a key (use --force, or another --out-dir)", path.display()),
                std::io::ErrorKind::AlreadyExists.into(),
            ));
        }
    }
    write_private(&private, key.private_pem().as_bytes())?;
    std::fs::write(&public, key.public_pem()).map_err(|e| Error::io(format!("writing {}", public.display()), e))?;
    Ok(format!(
        "wrote {} (mode 0600) and {}\nkid: {}\npublic key for runner_configuration.key (one line):\n{}\n",
        private.display(),
        public.display(),
        key.kid(),
        key::one_line(&key.public_pem())
    ))
}

fn write_private(path: &Path, pem: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(pem).and_then(|()| file.sync_all()).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Pretty-prints a JSON value with two-space indentation (miniserde only writes compact).
pub fn pretty(value: &Value) -> String {
    let mut out = String::new();
    write_pretty(value, 0, &mut out);
    out.push('\n');
    out
}

fn write_pretty(value: &Value, depth: usize, out: &mut String) {
    let pad = |d: usize| "  ".repeat(d);
    match value {
        Value::Object(o) if !o.is_empty() => {
            out.push_str("{\n");
            for (i, (k, v)) in o.iter().enumerate() {
                out.push_str(&format!("{}{}: ", pad(depth + 1), json::to_string(k)));
                write_pretty(v, depth + 1, out);
                out.push_str(if i + 1 < o.len() { ",\n" } else { "\n" });
            }
            out.push_str(&format!("{}}}", pad(depth)));
        }
        Value::Array(a) if !a.is_empty() => {
            out.push_str("[\n");
            for (i, v) in a.iter().enumerate() {
                out.push_str(&pad(depth + 1));
                write_pretty(v, depth + 1, out);
                out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            out.push_str(&format!("{}]", pad(depth)));
        }
        other => out.push_str(&json::to_string(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_output_parses_back_to_the_same_value() {
        let text = r#"{"a":[1,{"b":"c\n"},[]],"d":{},"e":null,"f":-1.5}"#;
        let v: Value = json::from_str(text).unwrap();
        let again: Value = json::from_str(&pretty(&v)).unwrap();
        assert_eq!(json::to_string(&again), json::to_string(&v));
        assert!(pretty(&v).contains("\n  \"a\": [\n    1,"));
    }

    #[test]
    fn keygen_refuses_to_overwrite_a_key() {
        let dir = std::env::temp_dir().join(format!("ka-keygen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = keygen(&dir, false).unwrap();
        assert!(first.contains("kid: "));
        let before = std::fs::read(dir.join("runner_private_key.pem")).unwrap();
        assert!(keygen(&dir, false).unwrap_err().to_string().contains("refusing to replace"));
        assert_eq!(std::fs::read(dir.join("runner_private_key.pem")).unwrap(), before);
        assert!(keygen(&dir, true).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
