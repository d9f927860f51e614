//! The README's figures that the code enforces, held to the constants: a limit changed in
//! the code and not in the README (or the reverse) fails here. Each claim is the README's
//! own phrase, built from the constant it states; the README's line breaks are ignored.

use std::time::Duration;

fn readme() -> String {
    include_str!("../README.md").split_whitespace().collect::<Vec<_>>().join(" ")
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
    let readme = readme();
    let missing: Vec<&String> = claims.iter().filter(|c| !readme.contains(c.as_str())).collect();
    assert!(
        missing.is_empty(),
        "the README does not say (or no longer says) what the code does:\n{}",
        missing.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n")
    );
}
