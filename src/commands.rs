//! The small subcommands: `render`, `keygen`, `version`, `standard`. Each takes resolved
//! inputs and returns what to print, so the binary only prints and picks the exit code.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::file;
use crate::orchestrator::key::{self, RunnerKey};
use crate::orchestrator::message::{self, Message};
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
        Some(path) => (file::read_capped(path, crate::orchestrator::MESSAGE_CAP, "a message file"), path.display().to_string()),
        None => (file::read_capped_from(std::io::stdin().lock(), crate::orchestrator::MESSAGE_CAP, "a message"), "standard input".to_string()),
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
    const SHAPE: &str = r#"give a create-job message as the Orchestrator sends it: {"action":"create-job","job_id":"…","namespace":"…","configuration":{a JobSpec},"deployment_token":"…"}"#;
    let create = match message::decode(text) {
        Ok(Message::CreateJob(c)) => c,
        Ok(other) => return Err(Error::decode("message", format!("render takes a create-job message, this is {}; {SHAPE}", other.action()))),
        Err(Error::Decode { document, why }) => return Err(Error::decode(document, format!("{why}; {SHAPE}"))),
        Err(e) => return Err(e),
    };
    Ok(crate::json::pretty(&render::render(&create.job_id, &create.namespace, create.configuration, policy)?))
}

/// Writes a key pair into `dir` and returns the text to print: the kid and the one-line
/// public key for `runner_configuration.key`. Existing files (a symlink counts, even a
/// dangling one) are kept unless `force`; with `force` they are replaced, never written
/// through: see [`write_new`].
pub fn keygen(dir: &Path, force: bool) -> Result<String> {
    if !dir.is_dir() {
        return Err(Error::io(
            format!("--out-dir {} is not a directory; create it first, or give another --out-dir", dir.display()),
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    let key = RunnerKey::generate()?;
    let private = dir.join("runner_private_key.pem");
    let public = dir.join("runner_public_key.pem");
    for path in [&private, &public] {
        if std::fs::symlink_metadata(path).is_ok() && !force {
            return Err(Error::io(
                format!("{} exists; refusing to replace a key (use --force, or another --out-dir)", path.display()),
                std::io::ErrorKind::AlreadyExists.into(),
            ));
        }
    }
    write_new(&private, key.private_pem().as_bytes(), 0o600)?;
    write_new(&public, key.public_pem().as_bytes(), 0o644)?;
    Ok(format!(
        "wrote {} (mode 0600) and {}\nkid: {}\npublic key for runner_configuration.key (one line):\n{}\n",
        private.display(),
        public.display(),
        key.kid(),
        key::one_line(&key.public_pem())
    ))
}

/// Puts `bytes` at `path` as a new file of `mode`: written under a temporary name in the
/// same directory (created with O_EXCL and O_NOFOLLOW, so nothing planted there is
/// followed), synced, then renamed over `path`. A rename replaces whatever `path` is,
/// a symlink included, and never writes through it; until the rename the old file is
/// intact, so a failure loses nothing.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.{}.{:08x}.tmp", std::process::id(), crate::random::below(u64::from(u32::MAX))));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)
        .map_err(|e| Error::io(format!("creating {}", temp.display()), e))
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| Error::io(format!("writing {}", temp.display()), e)))
        .and_then(|()| std::fs::rename(&temp, path).map_err(|e| Error::io(format!("renaming {} to {}", temp.display(), path.display()), e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
        return written;
    }
    // The rename itself is durable once the directory is synced.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(format!("syncing the directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::TempDir;

    #[test]
    fn render_of_text_that_is_no_create_job_message_says_what_to_give() {
        let policy = crate::config::job_policy(&crate::config::Values::default()).unwrap();
        for text in [
            "{bad",
            r#"{"action":"create-job"}"#,
            r#"{"action":"check-job-status","job_id":"a","namespace":"n","deployment_token":"t","expires_at":"2026-01-01T00:00:00Z"}"#,
        ] {
            let e = render_message(text, &policy).unwrap_err().to_string();
            assert!(
                e.starts_with("could not decode ")
                    && e.contains(r#"; give a create-job message as the Orchestrator sends it: {"action":"create-job","job_id""#),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn keygen_into_a_missing_directory_names_the_option_and_not_a_temporary_file() {
        let scratch = TempDir::new("keygen-missing");
        let missing = scratch.path().join("no-such-dir");
        let e = keygen(&missing, false).unwrap_err().to_string();
        assert!(e.starts_with(&format!("--out-dir {} is not a directory; create it first", missing.display())), "{e}");
        assert!(!e.contains(".tmp"), "{e}");
    }

    #[test]
    fn keygen_refuses_to_overwrite_a_key() {
        let scratch = TempDir::new("keygen");
        let dir = scratch.path();
        let first = keygen(dir, false).unwrap();
        assert!(first.contains("kid: "));
        let before = std::fs::read(dir.join("runner_private_key.pem")).unwrap();
        assert!(keygen(dir, false).unwrap_err().to_string().contains("refusing to replace"));
        assert_eq!(std::fs::read(dir.join("runner_private_key.pem")).unwrap(), before);
        assert!(keygen(dir, true).is_ok());
    }

    #[test]
    fn keygen_force_replaces_symlinks_at_the_key_paths_instead_of_writing_through_them() {
        let scratch = TempDir::new("keygen-link");
        let dir = scratch.path();
        for name in ["runner_private_key.pem", "runner_public_key.pem"] {
            let victim = dir.join(format!("{name}.victim"));
            std::fs::write(&victim, "precious\n").unwrap();
            std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
        }
        keygen(dir, true).unwrap();
        for name in ["runner_private_key.pem", "runner_public_key.pem"] {
            assert_eq!(std::fs::read_to_string(dir.join(format!("{name}.victim"))).unwrap(), "precious\n", "{name} was written through its symlink");
            let meta = std::fs::symlink_metadata(dir.join(name)).unwrap();
            assert!(meta.file_type().is_file(), "{name} is now a regular file");
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("runner_private_key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().ends_with(".tmp")).collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }

    #[test]
    fn keygen_without_force_refuses_a_dangling_symlink_and_creates_nothing_through_it() {
        let scratch = TempDir::new("keygen-dangling");
        let dir = scratch.path();
        let target = dir.join("planted");
        std::os::unix::fs::symlink(&target, dir.join("runner_public_key.pem")).unwrap();
        assert!(keygen(dir, false).unwrap_err().to_string().contains("refusing to replace"));
        assert!(!target.exists(), "a file was created through the dangling symlink");
        assert!(!dir.join("runner_private_key.pem").exists());
    }
}
