//! The figures the README and `offline-install --help` state that the code enforces, held
//! to the constants: a limit changed in the code and not in the text (or the reverse) fails
//! here. Each claim is the text's own phrase, built from the constant it states; line
//! breaks are ignored.

use std::time::Duration;

fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn readme() -> String {
    words(include_str!("../README.md"))
}

/// The claims `text` lacks, one per line.
fn missing(text: &str, claims: &[String]) -> String {
    claims.iter().filter(|c| !text.contains(c.as_str())).map(|c| format!("  {c}\n")).collect()
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

fn kib(bytes: u64) -> u64 {
    bytes >> 10
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let (head, tail) = s.split_at(s.len() - 3);
    format!("{head},{tail}")
}

#[test]
fn the_readme_states_the_limits_the_code_enforces() {
    use crate::agent::{handle, HELD_BUDGET, HOLD_SAMPLES, MAX_POLL_BACKOFF, MIN_EMPTY_POLL, READY_WITHIN, WORKERS};
    use crate::file;
    use crate::ops::listener::{CONNECTION_DEADLINE, MAX_CONNECTIONS};
    use crate::orchestrator::{MESSAGE_CAP, POLL_MARGIN};
    let words = ["zero", "one", "two", "three", "four", "five", "six"];
    let claims = [
        format!("values under {} bytes are left alone", crate::redact::MIN_LEN),
        format!("at most {} MiB of text, nested at most {} deep", mib(MESSAGE_CAP), crate::json::MAX_DEPTH),
        format!("at most {} values and {} objects and arrays", thousands(crate::json::MAX_VALUES), thousands(crate::json::MAX_CONTAINERS)),
        format!("While the messages held weigh {} MiB or more the polls pause", HELD_BUDGET >> 20),
        format!("Creates still run {} at a time", words[WORKERS]),
        format!("the median of the latest {} such holds", words[HOLD_SAMPLES]),
        format!("each 204 that came after at least {} s", secs(MIN_EMPTY_POLL)),
        format!("The client timeout of a poll stays `POLL_HOLD` + {} s", secs(POLL_MARGIN)),
        format!("(capped at {} s; a `Retry-After` wins)", secs(MAX_POLL_BACKOFF)),
        format!("200 when an authenticated poll succeeded in the last {} s", secs(READY_WITHIN)),
        format!("has {} s in all, from accept to reply", secs(CONNECTION_DEADLINE)),
        format!("at most {} connections are served at once", MAX_CONNECTIONS),
        format!(
            "until its caller's deadline ({} minutes for a create, {} s for a status check's request)",
            secs(handle::CREATE_DEADLINE) / 60,
            secs(handle::CHECK_RETRY_FOR)
        ),
        format!("retried for up to {} minutes", secs(handle::CREATE_DEADLINE) / 60),
        format!("are re-read every {} s and after any 401", secs(crate::kube::client::DEFAULT_RELOAD_EVERY)),
        format!("| `PRIVATE_KEY_FILE` | {} KiB |", kib(file::PRIVATE_KEY_CAP)),
        format!("| `JOB_POLICY_FILE` | {} MiB |", mib(file::POLICY_CAP)),
        format!("and the in-cluster `ca.crt` | {} MiB each |", mib(file::CA_BUNDLE_CAP)),
        format!("{} MiB for all its files together, at most {} entries per directory", mib(file::CA_BUNDLE_CAP), file::CERT_DIR_ENTRIES_CAP),
        format!("(`KUBE_TOKEN_FILE` or in-cluster) | {} KiB |", kib(file::TOKEN_CAP)),
        format!("| `render`'s input (file or standard input) | {} MiB, the same as a message", mib(MESSAGE_CAP)),
    ];
    let missing = missing(&readme(), &claims);
    assert!(missing.is_empty(), "the README does not say (or no longer says) what the code does:\n{missing}");
}

#[test]
fn the_readme_and_offline_install_help_state_the_limits_offline_install_enforces() {
    use crate::offline::{attachment, bundle, document, graph, parts, registry, signature, tar, upload};
    let size = |b: u64| {
        if b >= 1 << 30 {
            format!("{}G", b >> 30)
        } else if b >= 1 << 20 {
            format!("{}M", b >> 20)
        } else {
            format!("{}K", b >> 10)
        }
    };
    let both = [format!("at least {}", size(parts::MIN_PART_SIZE)), format!("(at most {})", parts::MAX_PARTS)];
    let help = [
        format!("--jobs N (default {}, 1 to {})", upload::DEFAULT_JOBS, upload::MAX_JOBS),
        format!("chunks of --chunk-size (default {}; {} to {}", size(upload::DEFAULT_CHUNK_SIZE), size(upload::MIN_CHUNK_SIZE), size(upload::MAX_CHUNK_SIZE)),
        format!("is stopped after {} minutes", bundle::GIT_TIMEOUT.as_secs() / 60),
        format!("--jobs at once (default {}, 1 to {})", upload::DEFAULT_JOBS, upload::MAX_JOBS),
        format!(
            "must start answering within {} s and then move bodies at {} KiB/s on average",
            registry::DEFAULT_RESPONSE_TIMEOUT.as_secs(),
            registry::MIN_RATE >> 10
        ),
    ];
    let in_readme = [
        format!("`push` moves `--jobs` blobs at once (default {}, 1 to {}", upload::DEFAULT_JOBS, upload::MAX_JOBS),
        format!("With `--jobs N` (the default {})", upload::DEFAULT_JOBS),
        format!("per `--chunk-size` bytes, default {}, {} to {}", size(upload::DEFAULT_CHUNK_SIZE), size(upload::MIN_CHUNK_SIZE), size(upload::MAX_CHUNK_SIZE)),
        format!("is stopped (with its helpers) after {} minutes", bundle::GIT_TIMEOUT.as_secs() / 60),
        format!(
            "is given up on after {} s, and a body (either way) must move at {} KiB/s on average",
            registry::DEFAULT_RESPONSE_TIMEOUT.as_secs(),
            registry::MIN_RATE >> 10
        ),
        format!(
            "at most {} levels of nested manifests, {} manifests and {} blobs per artifact",
            graph::MAX_DEPTH,
            thousands(graph::MAX_MANIFESTS),
            thousands(graph::MAX_BLOBS)
        ),
        format!(
            "manifests up to {} MiB; `manifest.json`, `oci/index.json`, token answers and error bodies up to {} MiB",
            document::MAX_MANIFEST >> 20,
            document::MAX_SMALL >> 20
        ),
        format!("is refused when nested deeper than {} levels", document::MAX_DEPTH),
        format!("Declared sizes over {} GiB are refused", graph::MAX_BLOB_SIZE >> 30),
        format!("at most {} referrers per manifest and {} attachments per artifact", attachment::MAX_REFERRERS, thousands(attachment::MAX_ATTACHMENTS)),
        format!("(read up to {} GiB inflated, the SBOM up to {} MiB)", attachment::MAX_LAYER_READ >> 30, attachment::MAX_SBOM >> 20),
        format!("signature payloads up to {} KiB", signature::MAX_PAYLOAD >> 10),
        format!("(at most {} KiB)", signature::MAX_PAYLOAD >> 10),
        format!("Names are at most {} bytes and {} components", tar::MAX_NAME, tar::MAX_COMPONENTS),
        format!("it is read up to {} MiB", upload::MAX_STATE >> 20),
        format!("it is at most {} KiB", parts::MAX_INDEX >> 10),
    ];
    let (readme_text, help_text) = (readme(), words(crate::offline::cli::HELP));
    let lacking = [missing(&readme_text, &both), missing(&help_text, &both), missing(&help_text, &help), missing(&readme_text, &in_readme)].concat();
    assert!(lacking.is_empty(), "the README or offline-install --help does not say (or no longer says) what the code does:\n{lacking}");
}
