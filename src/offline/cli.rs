//! offline-install's command line, parsed with lexopt as the agent's is: each command
//! (`bundle`, `verify`, `list`, `push`) into its own typed arguments, taking only its own
//! options, each single-valued option once. [`run`] then reads the environment and
//! standard input (credentials) and does the work; `src/bin/offline-install.rs` only
//! prints and picks the exit code (2 for [`Usage`] and [`Failure::Usage`], 1 otherwise).

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;

use lexopt::prelude::*;

use super::bundle::{self, Access, RegistryAddress, Sources, Target};
use super::parts;
use super::registry::Credentials;
use super::signature::PublicKey;
use super::upload::{self, Transfer};

/// `offline-install --help`.
pub const HELP: &str = "\
offline-install: carry the agent image, the runner image, the chart and the TF module
repository across an air gap in one file, and mirror them into an internal OCI registry
and Git service. Needs nothing but this static tool, a shell and (for the module) git;
bundle, verify and push also run gzip -dc to read the agent image's SBOM out of its layer.

Usage:
  offline-install bundle --output FILE --agent-image REF --runner-image REF --chart REF
                         --module-repo URL --module-ref REF [--platform OS/ARCH]...
                         [--source-plain-http] [--source-ca-file PEM] [--source-username USER]
                         [--source-password-stdin] [--auth-file FILE] [--tool PATH]
                         [--max-part-size SIZE] [--since OLD_BUNDLE] [--jobs N]
  offline-install verify FILE [--key PUBKEY.pem] [--module-commit SHA]
  offline-install list FILE
  offline-install push FILE --registry HOST[:PORT][/PATH] --git-url URL
                         [--key PUBKEY.pem --module-commit SHA]
                         [--plain-http] [--ca-file PEM] [--username USER] [--password-stdin]
                         [--auth-file FILE] [--jobs N] [--chunk-size SIZE] [--state-dir DIR]
  offline-install --help

bundle   (connected side) fetches every artifact into FILE: images keep their digests and
         every platform unless --platform narrows them (then the index is rewritten and its
         digest changes; each platform's manifest keeps its own, and the source's index
         comes along with its signature, which verify --key checks); the chart is copied as the
         OCI artifact Helm pushed; the module is a git bundle of --module-ref. FILE also
         holds manifest.json (what is inside, with digests), SHA256SUMS and this tool.
         Each artifact's attachments in the source come along (cosign's sha256-<hex>.sig,
         .att and .sbom tags, and OCI referrers), and the agent image's SBOM
         (/opt/runner/kubernetes-agent.cdx.json, read from its own layer) is added as an
         OCI artifact attached to each platform's manifest.
         It ends by printing 'SHA256SUMS sha256: <hex>': carry that value across apart
         from FILE (a ticket, a phone call).
         --max-part-size SIZE (bytes, or K/M/G, powers of 1024; at least 64K) writes
         FILE.001, FILE.002, ... (at most 999) each at most SIZE, and the index FILE.parts
         (every part's size and sha256); it also prints 'FILE.parts sha256: <hex>', the
         anchor that covers every part. The parts joined ARE the bundle: the tool comes
         out with 'cat FILE.[0-9][0-9][0-9] | tar -x offline-install' (or '... > FILE').
         --since OLD_BUNDLE writes a differential bundle: only the blobs OLD (or OLD's own
         base) does not hold for the same repository, every manifest, and a git bundle of
         the module's commits
         since OLD's; manifest.json records the base it needs. Nothing is unpacked: with
         --jobs 1 each blob goes straight into FILE; with --jobs N (default 4, 1 to 32)
         N blobs are fetched at once, each through FILE.scratch/, which never holds more
         than the largest blob's bytes at a time. One progress line per artifact.
verify   checks FILE against itself without pushing anything: every entry is one this
         tool writes, read as every tar extracts it, with the checksum SHA256SUMS gives;
         every artifact's graph is complete; the git bundle holds exactly the module ref;
         the SBOM attached to the agent image is the file its own layer holds (found again
         in FILE). It cannot tell who made FILE: compare the 'SHA256SUMS sha256:' line it prints
         with the value bundle printed, carried apart; only a match proves FILE is that one.
         With no FILE but FILE.parts beside it, the parts are checked first: a missing,
         truncated, longer, altered, symlinked or special part is named. A differential
         bundle's missing blobs must be exactly those its base omits; it says which base
         it needs.
         --key PUBKEY.pem (cosign.pub, ECDSA P-256) proves origin, offline: every artifact
         must carry a cosign signature of its digest, made for its repository name, that
         verifies with the key, else FILE is refused, naming the artifact (the agent's
         SBOM, found in its layer, is covered with it). No image signature covers the
         TF module (code): --module-commit SHA (the full
         commit id, carried apart like the SHA256SUMS value) refuses FILE unless its module
         is that commit.
list     prints what FILE (or its parts) holds: artifacts, platforms, digests, blob counts
         and sizes, the module, the base a differential bundle needs. It checks no
         checksum (run verify), but reads FILE as strictly as verify does.
push     (air-gapped side) verifies first, then pushes images and chart under
         HOST/PATH/<name> (the chart keeps its name), skipping blobs the registry already
         has (a re-run after an interruption finishes the job), pushes the module's one
         ref (at the commit manifest.json names) to --git-url, and prints the values to use
         next. Its scratch space is under $TMPDIR (FILE may be on read-only media): the
         bare repository git pushes the module from, its pack streamed from FILE; what it
         reads again after verify is checked again (a changed blob fails its upload).
         Attachments go next to their image: under their tags, and a manifest with a
         subject by digest where the registry has the referrers API. --key checks the
         signatures as verify --key does before anything is pushed, and then needs
         --module-commit: the module is pushed only at the commit given.
         A differential bundle is pushed only onto its base: every blob it does not carry
         must be in the registry and the commit its git bundle builds on in the git
         target; else push names what is missing and pushes nothing.
         Blobs go up in chunks of --chunk-size (default 16M; 64K to 1G, K/M/G = powers of
         1024), --jobs at once (default 4, 1 to 32). Each unfinished blob's upload URL is
         kept in DIR/offline-install-uploads (--state-dir, default the current directory;
         removed when done): a rerun after an interruption, even a kill, resumes each blob
         from the offset the registry reports, re-reading (not re-sending) the bytes before
         it to check the digest. An entry for another registry or repository is ignored.
         A registry that takes no chunks gets whole blobs (said once). One progress line
         per artifact (bytes, rate, ETA): redrawn on a terminal, every 10 s otherwise; the
         first failed transfer stops the others and is the error reported.

Credentials: --username with --password-stdin, or OFFLINE_INSTALL_USERNAME /
OFFLINE_INSTALL_PASSWORD (source side: OFFLINE_INSTALL_SOURCE_USERNAME / _PASSWORD), or a
Docker-style auth file (--auth-file, else $REGISTRY_AUTH_FILE, else
$DOCKER_CONFIG/config.json or ~/.docker/config.json). They are never printed, and go
only to the registry's own origin (a token service elsewhere: over https only); a
--registry or image reference holding user:password@ is refused; sources on several
registries take their credentials from an auth file (per host), not the options.
HTTPS is the default; --plain-http only when asked. --ca-file adds a private CA.
bundle writes FILE's .partial (and .scratch/) next to it and refuses to start when one
exists (in parts: FILE, FILE.parts, FILE.parts.partial or FILE.001); it keeps FILE only
when its own verify passes (in parts: it writes FILE.parts only then).
Slow peers: a registry must start answering within 120 s and then move bodies at
64 KiB/s on average; git gives up under 1,000 bytes/s for 60 s and is stopped after
30 minutes (OFFLINE_INSTALL_GIT_TIMEOUT=SECONDS changes that); it never prompts.
There are no default sources: name each one (the seed's public locations or your own).
Each command takes only its own options. Exit codes: 0 done, 1 failed (nothing half-done
is reported as done), 2 bad usage.
";

/// What the command line asked for, each command with only its own options.
#[derive(Debug)]
pub enum Command {
    /// `--help`, or no command (then with exit code 2).
    Help { asked: bool },
    /// `bundle`.
    Bundle(BundleArgs),
    /// `verify FILE [--key PUBKEY.pem] [--module-commit SHA]`.
    Verify { file: PathBuf, key: Option<PathBuf>, module_commit: Option<String> },
    /// `list FILE`.
    List { file: PathBuf },
    /// `push FILE …`.
    Push(PushArgs),
}

/// One side's registry options (`--source-…` for bundle's sources, plain for push's target).
#[derive(Debug, Default)]
pub struct Side {
    /// `--[source-]plain-http`.
    pub plain_http: bool,
    /// `--[source-]ca-file`.
    pub ca_file: Option<PathBuf>,
    /// `--[source-]username`.
    pub username: Option<String>,
    /// `--[source-]password-stdin`.
    pub password_stdin: bool,
    /// `--auth-file`.
    pub auth_file: Option<PathBuf>,
}

/// `bundle`'s options.
#[derive(Debug, Default)]
pub struct BundleArgs {
    pub output: Option<PathBuf>,
    pub agent_image: Option<String>,
    pub runner_image: Option<String>,
    pub chart: Option<String>,
    pub module_repo: Option<String>,
    pub module_ref: Option<String>,
    pub platforms: Vec<String>,
    pub tool: Option<PathBuf>,
    pub max_part_size: Option<u64>,
    pub since: Option<PathBuf>,
    pub jobs: Option<usize>,
    pub source: Side,
}

/// `push`'s options.
#[derive(Debug)]
pub struct PushArgs {
    pub file: PathBuf,
    pub registry: Option<RegistryAddress>,
    pub git_url: Option<String>,
    pub key: Option<PathBuf>,
    pub module_commit: Option<String>,
    pub transfer: Transfer,
    pub target: Side,
}

/// A usage error: the message, shown with a pointer to `--help`; exit code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage(pub String);

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Usage {
        Usage(e.to_string())
    }
}

/// Parses the arguments (without the program name). Options may come before or after the
/// command's FILE, but every option must be one of that command's, given once.
pub fn parse(args: Vec<OsString>) -> Result<Command, Usage> {
    let mut parser = lexopt::Parser::from_args(args);
    let command = match parser.next()? {
        None => return Ok(Command::Help { asked: false }),
        Some(Short('h') | Long("help")) => return Ok(Command::Help { asked: true }),
        Some(Value(v)) => v.string()?,
        Some(other) => return Err(Usage(format!("{}: give the command (bundle, verify, list or push) first", other.unexpected()))),
    };
    match command.as_str() {
        "bundle" => parse_bundle(&mut parser).map(Command::Bundle),
        "verify" => {
            let (mut file, mut key, mut module_commit) = (None, None, None);
            while let Some(arg) = parser.next()? {
                match arg {
                    Short('h') | Long("help") => return Ok(Command::Help { asked: true }),
                    Long("key") => once(&mut key, "key", parser.value()?.into())?,
                    Long("module-commit") => once(&mut module_commit, "module-commit", commit_id(parser.value()?.string()?)?)?,
                    Value(v) => once(&mut file, "FILE", v.into())?,
                    _ => return Err(not_for(arg, "verify")),
                }
            }
            Ok(Command::Verify { file: file.ok_or_else(|| Usage("verify needs the bundle file".into()))?, key, module_commit })
        }
        "list" => {
            let mut file = None;
            while let Some(arg) = parser.next()? {
                match arg {
                    Short('h') | Long("help") => return Ok(Command::Help { asked: true }),
                    Value(v) => once(&mut file, "FILE", v.into())?,
                    _ => return Err(not_for(arg, "list")),
                }
            }
            Ok(Command::List { file: file.ok_or_else(|| Usage("list needs the bundle file".into()))? })
        }
        "push" => parse_push(&mut parser).map(Command::Push),
        other => Err(Usage(format!("unknown command '{}' (bundle, verify, list or push)", crate::text::snippet(other, 40)))),
    }
}

fn parse_bundle(parser: &mut lexopt::Parser) -> Result<BundleArgs, Usage> {
    let mut a = BundleArgs::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Err(Usage("--help goes alone: offline-install --help".into())),
            Long("output") => once(&mut a.output, "output", parser.value()?.into())?,
            Long("agent-image") => once(&mut a.agent_image, "agent-image", parser.value()?.string()?)?,
            Long("runner-image") => once(&mut a.runner_image, "runner-image", parser.value()?.string()?)?,
            Long("chart") => once(&mut a.chart, "chart", parser.value()?.string()?)?,
            Long("module-repo") => once(&mut a.module_repo, "module-repo", parser.value()?.string()?)?,
            Long("module-ref") => once(&mut a.module_ref, "module-ref", parser.value()?.string()?)?,
            Long("platform") => a.platforms.push(parser.value()?.string()?),
            Long("tool") => once(&mut a.tool, "tool", parser.value()?.into())?,
            Long("max-part-size") => once(&mut a.max_part_size, "max-part-size", parts::parse_size(&parser.value()?.string()?).map_err(Usage)?)?,
            Long("since") => once(&mut a.since, "since", parser.value()?.into())?,
            Long("jobs") => once(&mut a.jobs, "jobs", upload::parse_jobs(&parser.value()?.string()?).map_err(Usage)?)?,
            Long("source-plain-http") => a.source.plain_http = true,
            Long("source-ca-file") => once(&mut a.source.ca_file, "source-ca-file", parser.value()?.into())?,
            Long("source-username") => once(&mut a.source.username, "source-username", parser.value()?.string()?)?,
            Long("source-password-stdin") => a.source.password_stdin = true,
            Long("auth-file") => once(&mut a.source.auth_file, "auth-file", parser.value()?.into())?,
            Long("key") => return Err(Usage("--key is for verify and push (which check the signatures bundle carried)".into())),
            _ => return Err(not_for(arg, "bundle")),
        }
    }
    Ok(a)
}

fn parse_push(parser: &mut lexopt::Parser) -> Result<PushArgs, Usage> {
    let (mut file, mut registry, mut git_url, mut key, mut module_commit) = (None, None, None, None, None);
    let (mut chunk_size, mut jobs, mut state_dir) = (None, None, None::<PathBuf>);
    let mut target = Side::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Err(Usage("--help goes alone: offline-install --help".into())),
            Long("registry") => once(&mut registry, "registry", RegistryAddress::parse(&parser.value()?.string()?).map_err(Usage)?)?,
            Long("git-url") => once(&mut git_url, "git-url", parser.value()?.string()?)?,
            Long("key") => once(&mut key, "key", parser.value()?.into())?,
            Long("module-commit") => once(&mut module_commit, "module-commit", commit_id(parser.value()?.string()?)?)?,
            Long("chunk-size") => once(&mut chunk_size, "chunk-size", upload::parse_chunk_size(&parser.value()?.string()?).map_err(Usage)?)?,
            Long("jobs") => once(&mut jobs, "jobs", upload::parse_jobs(&parser.value()?.string()?).map_err(Usage)?)?,
            Long("state-dir") => once(&mut state_dir, "state-dir", parser.value()?.into())?,
            Long("plain-http") => target.plain_http = true,
            Long("ca-file") => once(&mut target.ca_file, "ca-file", parser.value()?.into())?,
            Long("username") => once(&mut target.username, "username", parser.value()?.string()?)?,
            Long("password-stdin") => target.password_stdin = true,
            Long("auth-file") => once(&mut target.auth_file, "auth-file", parser.value()?.into())?,
            Value(v) => once(&mut file, "FILE", v.into())?,
            _ => return Err(not_for(arg, "push")),
        }
    }
    let mut transfer = Transfer::default();
    transfer.chunk_size = chunk_size.unwrap_or(transfer.chunk_size);
    transfer.jobs = jobs.unwrap_or(transfer.jobs);
    if let Some(dir) = state_dir {
        if !dir.is_dir() {
            return Err(Usage(format!("--state-dir {} is not a directory: give an existing, writable directory for the upload state", dir.display())));
        }
        transfer.state_dir = dir;
    }
    Ok(PushArgs { file: file.ok_or_else(|| Usage("push needs the bundle file".into()))?, registry, git_url, key, module_commit, transfer, target })
}

/// A full git commit id (40 or 64 hex digits), as `--module-commit` takes it.
fn commit_id(text: String) -> Result<String, Usage> {
    if (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(Usage(format!("--module-commit {}: give the full commit id (40 or 64 hex digits)", crate::text::snippet(&text, 70))))
    }
}

/// Sets a single-valued option, refusing a second value (two values of one option would
/// leave the reader guessing which one counts).
fn once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), Usage> {
    if slot.is_some() {
        let what = if name == "FILE" { "more than one FILE".to_string() } else { format!("--{name} given twice") };
        return Err(Usage(what));
    }
    *slot = Some(value);
    Ok(())
}

/// An argument the command does not take.
fn not_for(arg: lexopt::Arg, command: &str) -> Usage {
    match arg {
        Long(name) => Usage(format!("{command} has no option --{}", crate::text::snippet(name, 40))),
        other => Usage(format!("{}: not an option of {command}", other.unexpected())),
    }
}

/// Runs a parsed command; returns what goes to standard output. Credentials are read from
/// standard input or the environment here, after parsing, and go no further than
/// [`Access`].
pub fn run(command: Command) -> Result<String, Failure> {
    match command {
        Command::Help { .. } => Ok(HELP.to_string()),
        Command::Bundle(a) => {
            let need = |v: Option<String>, name: &str| v.ok_or_else(|| Failure::Usage(format!("--{name} is required")));
            let output = a.output.ok_or_else(|| Failure::Usage("--output is required".into()))?;
            let tool = match a.tool {
                Some(t) => t,
                None => std::env::current_exe().map_err(|e| Failure::Usage(format!("cannot find this tool's own path: {e}; give it with --tool")))?,
            };
            let sources = Sources {
                agent_image: need(a.agent_image, "agent-image")?,
                runner_image: need(a.runner_image, "runner-image")?,
                chart: need(a.chart, "chart")?,
                module_repo: need(a.module_repo, "module-repo")?,
                module_ref: need(a.module_ref, "module-ref")?,
                platforms: a.platforms,
                tool,
                max_part_size: a.max_part_size,
                since: a.since,
                jobs: a.jobs.unwrap_or(upload::DEFAULT_JOBS),
            };
            let written = bundle::bundle(&sources, &access(a.source, "source-", "SOURCE_", "source credentials")?, &output)?;
            let parted = match &written.source.index {
                Some((index, anchor)) => format!(
                    "in {} parts\n{} sha256: {}\n  the anchor of the parts: it covers every part and SHA256SUMS; verify prints it too\n",
                    written.source.parts().len(),
                    index.display(),
                    anchor.hex()
                ),
                None => String::new(),
            };
            Ok(format!(
                "wrote {} ({} bytes; scratch space used: {} bytes, the module's clone and git bundle)\n{}\n{parted}SHA256SUMS sha256: {}\n  carry this value to the far side apart from the bundle (a ticket, a phone call): verify prints it too, and only matching values prove the bundle is this one\n",
                written.source.shown(),
                written.source.len(),
                written.temp_peak,
                written.manifest,
                written.anchor.hex()
            ))
        }
        Command::Verify { file, key, module_commit } => {
            let opened = bundle::verify(&file)?;
            if let Some(expected) = &module_commit {
                opened.check_module_commit(expected)?;
            }
            let module = match &module_commit {
                Some(c) => format!("the module is the commit given with --module-commit ({c})"),
                None => format!(
                    "the module ({} at {}) is covered by no signature: compare its commit with the one you expect, or give --module-commit",
                    opened.module.reference, opened.module.commit
                ),
            };
            // The signatures first: an unsigned bundle is refused before any layer is inflated.
            let signatures = key.as_ref().map(|key| PublicKey::read(key).and_then(|k| opened.check_signatures(&k))).transpose()?;
            let sboms = opened.check_sboms(None)?;
            let signed = match (&key, signatures) {
                (Some(key), Some(lines)) => {
                    let attachments = if sboms.iter().any(|(bound, _)| *bound) {
                        "the agent's SBOM is the file in its signed layers; other attachments are carried as found, not signed"
                    } else {
                        "the SBOM and other attachments are carried as found, not signed"
                    };
                    format!(
                        "{}\nevery artifact's signature verifies with {}: these images and the chart are the ones the key's owner signed, under these names; {module}; {attachments}\n",
                        lines.join("\n"),
                        key.display()
                    )
                }
                _ => String::new(),
            };
            let parted = match &opened.source.index {
                Some((index, anchor)) => {
                    format!("{} parts, each as {} records it\n{} sha256: {anchor}\n", opened.source.parts().len(), index.display(), index.display())
                }
                None => String::new(),
            };
            let base = opened.base.as_ref().map_or(String::new(), |b| format!("{}\n", b.describe()));
            let sboms: String = sboms.iter().map(|(_, line)| format!("{line}\n")).collect();
            Ok(format!(
                "{}: every checksum and digest matches\n{}\n{sboms}{signed}{base}{parted}SHA256SUMS sha256: {}\n  compare it with the value bundle printed, carried apart from the bundle: only then is it the bundle that was made\n",
                opened.source.shown(),
                crate::json::pretty(&opened.manifest),
                opened.sums_digest.hex()
            ))
        }
        Command::List { file } => Ok(bundle::list(&file)?),
        Command::Push(a) => {
            let registry = a.registry.ok_or_else(|| Failure::Usage("--registry is required".into()))?;
            let git_url = a.git_url.ok_or_else(|| Failure::Usage("--git-url is required".into()))?;
            let target = Target { registry, access: access(a.target, "", "", "registry credentials")?, git_url, transfer: a.transfer };
            let key = a.key.map(|k| PublicKey::read(&k)).transpose()?;
            Ok(bundle::push(&a.file, &target, key.as_ref(), a.module_commit.as_deref())?)
        }
    }
}

/// One side's access: `flag` is the option prefix (`source-` or none), `env` the
/// environment's (`SOURCE_` or none). The auth file: `--auth-file`, else
/// `$REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn access(side: Side, flag: &str, env: &str, what: &str) -> Result<Access, Failure> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let auth_file = side.auth_file.or_else(|| var("REGISTRY_AUTH_FILE").map(PathBuf::from)).or_else(|| {
        var("DOCKER_CONFIG").map(|d| PathBuf::from(d).join("config.json")).or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")))
    });
    let password = if side.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::Usage(format!("--{flag}password-stdin: reading standard input failed: {e}")))?;
        Some(s.trim_end_matches(['\n', '\r']).to_string())
    } else {
        var(&format!("OFFLINE_INSTALL_{env}PASSWORD"))
    };
    let user = side.username.or_else(|| var(&format!("OFFLINE_INSTALL_{env}USERNAME")));
    let credentials = match (user, password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        _ => return Err(Failure::Usage(format!("{what}: give both a user name and a password, or neither"))),
    };
    Ok(Access { plain_http: side.plain_http, ca_file: side.ca_file, credentials, auth_file })
}

/// How a run failed: bad usage (exit 2) or the work itself (exit 1).
#[derive(Debug)]
pub enum Failure {
    /// Bad usage found only when running (a missing option, unreadable standard input).
    Usage(String),
    /// The work failed.
    Run(crate::Error),
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Failure {
        Failure::Run(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn each_command_takes_only_its_own_options() {
        assert_eq!(parse(args(&["verify", "b.tar", "--registry", "x"])).unwrap_err(), Usage("verify has no option --registry".into()));
        assert_eq!(parse(args(&["list", "b.tar", "--key", "k.pem"])).unwrap_err(), Usage("list has no option --key".into()));
        assert_eq!(parse(args(&["bundle", "--state-dir", "."])).unwrap_err(), Usage("bundle has no option --state-dir".into()));
        assert!(parse(args(&["bundle", "--key", "k.pem"])).unwrap_err().0.contains("--key is for verify and push"));
        assert!(matches!(parse(args(&["verify", "--key", "k.pem", "b.tar"])), Ok(Command::Verify { key: Some(_), .. })));
    }

    #[test]
    fn an_option_given_twice_or_a_second_file_is_refused() {
        assert_eq!(parse(args(&["push", "b.tar", "--git-url", "a", "--git-url", "b"])).unwrap_err(), Usage("--git-url given twice".into()));
        assert_eq!(parse(args(&["verify", "a.tar", "b.tar"])).unwrap_err(), Usage("more than one FILE".into()));
        assert!(matches!(parse(args(&["bundle", "--platform", "linux/amd64", "--platform", "linux/arm64"])), Ok(Command::Bundle(a)) if a.platforms.len() == 2));
    }

    #[test]
    fn no_command_is_help_with_usage_code_and_an_unknown_one_is_named() {
        assert!(matches!(parse(args(&[])), Ok(Command::Help { asked: false })));
        assert!(matches!(parse(args(&["--help"])), Ok(Command::Help { asked: true })));
        assert!(parse(args(&["--output", "x"])).unwrap_err().0.contains("give the command"));
        assert!(parse(args(&["pull"])).unwrap_err().0.starts_with("unknown command 'pull'"));
    }

    /// Each command's options as `--help`'s Usage lines list them.
    fn usage_options() -> Vec<(&'static str, Vec<String>)> {
        let usage = HELP.split("Usage:\n").nth(1).unwrap().split("\n\n").next().unwrap();
        let mut commands: Vec<(&'static str, Vec<String>)> = Vec::new();
        for line in usage.lines() {
            if let Some(rest) = line.trim().strip_prefix("offline-install ") {
                let name = rest.split_whitespace().next().unwrap();
                let name = ["bundle", "verify", "list", "push"].into_iter().find(|c| *c == name);
                commands.push((name.unwrap_or("--help"), Vec::new()));
            }
            let options = line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).filter(|w| w.starts_with("--") && w.len() > 2);
            commands.last_mut().unwrap().1.extend(options.map(String::from));
        }
        commands
    }

    /// A value each option accepts, for running the parser on it.
    fn sample_value(option: &str) -> Option<&'static str> {
        match option {
            "--source-plain-http" | "--source-password-stdin" | "--plain-http" | "--password-stdin" | "--help" => None,
            "--jobs" => Some("2"),
            "--chunk-size" | "--max-part-size" => Some("1M"),
            "--module-commit" => Some("0123456789abcdef0123456789abcdef01234567"),
            "--registry" => Some("registry.internal:5000/humanitec"),
            "--state-dir" => Some("."),
            _ => Some("x"),
        }
    }

    #[test]
    fn every_option_the_usage_lines_list_is_taken_by_that_command_and_no_other_is() {
        let listed = usage_options();
        assert_eq!(listed.iter().map(|(c, _)| *c).collect::<Vec<_>>(), ["bundle", "verify", "list", "push", "--help"]);
        // Every option any command's parser knows: those listed, and those its source matches.
        let source = include_str!("cli.rs").split("/// A full git commit id").next().unwrap();
        let mut all: Vec<String> = listed.iter().flat_map(|(_, o)| o.clone()).collect();
        all.extend(source.split("Long(\"").skip(1).map(|s| format!("--{}", s.split('"').next().unwrap())));
        all.sort();
        all.dedup();
        for (command, options) in &listed[..4] {
            for option in &all {
                let mut argv = vec![command.to_string()];
                if *command != "bundle" {
                    argv.push("b.tar".into());
                }
                argv.push(option.clone());
                argv.extend(sample_value(option).map(String::from));
                let taken = match parse(argv.iter().map(OsString::from).collect()) {
                    Ok(Command::Help { .. }) => false,
                    Ok(_) => true,
                    Err(Usage(why)) => {
                        assert!(why.contains("has no option") || why.contains("--key is for") || why.contains("goes alone"), "{argv:?}: {why}");
                        false
                    }
                };
                let documented = options.contains(option) || option == "--help";
                assert_eq!(
                    taken,
                    documented && option != "--help",
                    "{command} {option}: the parser {} it, --help {} it",
                    if taken { "takes" } else { "refuses" },
                    if documented { "lists" } else { "does not list" }
                );
            }
        }
    }

    #[test]
    fn values_are_checked_while_parsing() {
        assert!(parse(args(&["push", "b.tar", "--jobs", "0"])).is_err());
        assert!(parse(args(&["push", "b.tar", "--chunk-size", "1K"])).is_err());
        assert!(parse(args(&["bundle", "--max-part-size", "12Q"])).is_err());
        assert!(parse(args(&["push", "b.tar", "--registry", "user:pw@host"])).unwrap_err().0.contains("user info"));
        assert!(!parse(args(&["push", "b.tar", "--registry", "user:pw@host"])).unwrap_err().0.contains("pw"));
    }
}
