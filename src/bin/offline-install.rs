//! `offline-install`: parse, report, choose the exit code; the work is in
//! `kubernetes_agent::offline`.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use kubernetes_agent::offline::bundle::{self, Access, Sources, Target};
use kubernetes_agent::offline::parts;
use kubernetes_agent::offline::registry::Credentials;
use kubernetes_agent::offline::signature::PublicKey;
use kubernetes_agent::offline::upload::{self, Transfer};

const HELP: &str = "\
offline-install: carry the agent image, the runner image, the chart and the TF module
repository across an air gap in one file, and mirror them into an internal OCI registry
and Git service. Needs nothing but this static tool, a shell and (for the module) git;
bundle also runs gzip -dc to read the agent image's SBOM out of its layer.

Usage:
  offline-install bundle --output FILE --agent-image REF --runner-image REF --chart REF
                         --module-repo URL --module-ref REF [--platform OS/ARCH]...
                         [--source-plain-http] [--source-ca-file PEM] [--source-username USER]
                         [--source-password-stdin] [--auth-file FILE] [--tool PATH]
                         [--max-part-size SIZE] [--since OLD_BUNDLE]
  offline-install verify FILE [--key PUBKEY.pem]
  offline-install list FILE
  offline-install push FILE --registry HOST[:PORT][/PATH] --git-url URL [--key PUBKEY.pem]
                         [--jobs N] [--chunk-size SIZE] [--state-dir DIR]
                         [--plain-http] [--ca-file PEM] [--username USER] [--password-stdin]
                         [--auth-file FILE] [--chunk-size SIZE] [--state-dir DIR] [--jobs N]

bundle   (connected side) fetches every artifact into FILE: images keep their digests and
         every platform unless --platform narrows them (then the index is rewritten and its
         digest changes; each platform's manifest keeps its own); the chart is copied as the
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
         out with 'cat FILE.0* | tar -x offline-install' (or 'cat FILE.0* > FILE').
         --since OLD_BUNDLE writes a differential bundle: only the blobs OLD (or OLD's own
         base) does not hold for the same repository, every manifest, and a git bundle of
         the module's commits
         since OLD's; manifest.json records the base it needs. Nothing is unpacked: blobs
         go straight into FILE, one at a time (so no blob is ever copied to disk); only
         the module's clone uses FILE.scratch/.
verify   checks FILE against itself without pushing anything: every entry is one this
         tool writes, read as every tar extracts it, with the checksum SHA256SUMS gives;
         every artifact's graph is complete; the git bundle holds exactly the module ref.
         It cannot tell who made FILE: compare the 'SHA256SUMS sha256:' line it prints
         with the value bundle printed, carried apart; only a match proves FILE is that one.
         With no FILE but FILE.parts beside it, the parts are checked first: a missing,
         truncated, longer, altered, symlinked or special part is named. A differential
         bundle's missing blobs must be exactly those its base omits; it says which base
         it needs.
list     prints what FILE (or its parts) holds: artifacts, platforms, digests, blob counts
         and sizes, the module, the base a differential bundle needs. It checks no
         checksum (run verify), but reads FILE as strictly as verify does.
         --key PUBKEY.pem (cosign.pub, ECDSA P-256) proves origin, offline: every artifact
         must carry a cosign signature of its digest that verifies with the key, else
         FILE is refused, naming the artifact.
push     (air-gapped side) verifies first, then pushes images and chart under
         HOST/PATH/<name> (the chart keeps its name), skipping blobs the registry already
         has (a re-run after an interruption finishes the job), pushes the module's one
         ref (at the commit manifest.json names) to --git-url, and prints the values to use
         next. Its scratch space is under $TMPDIR (FILE may be on read-only media): the
         bare repository git pushes the module from, its pack streamed from FILE; what it
         reads again after verify is checked again (a changed blob fails its upload).
         Attachments go next to their image: under their tags, and a manifest with a
         subject by digest where the registry has the referrers API. --key checks the
         signatures as verify --key does before anything is pushed.
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
Exit codes: 0 done, 1 failed (nothing half-done is reported as done), 2 bad usage.
";

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("offline-install: {e}");
            match e {
                Failure::Usage(_) => ExitCode::from(2),
                Failure::Run(_) | Failure::Output(_) => ExitCode::from(1),
            }
        }
    }
}

enum Failure {
    Usage(String),
    Run(kubernetes_agent::Error),
    Output(std::io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(u) => write!(f, "{u}\nrun 'offline-install --help' for usage"),
            Failure::Run(e) => write!(f, "{e}"),
            Failure::Output(e) => write!(f, "writing to standard output failed: {e} (is the disk full?)"),
        }
    }
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Failure {
        Failure::Usage(e.to_string())
    }
}

impl From<kubernetes_agent::Error> for Failure {
    fn from(e: kubernetes_agent::Error) -> Failure {
        Failure::Run(e)
    }
}

fn run(argv: Vec<OsString>) -> Result<ExitCode, Failure> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(argv);
    let mut command: Option<String> = None;
    let mut file: Option<PathBuf> = None;
    let mut flags: std::collections::BTreeMap<String, String> = Default::default();
    let mut platforms = Vec::new();
    let mut switches = std::collections::BTreeSet::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return say(HELP, ExitCode::SUCCESS),
            Long("platform") => platforms.push(parser.value()?.string()?),
            Long(s @ ("source-plain-http" | "plain-http" | "source-password-stdin" | "password-stdin")) => {
                switches.insert(s.to_string());
            }
            Long(name) => {
                let name = name.to_string();
                let known = [
                    "output",
                    "agent-image",
                    "runner-image",
                    "chart",
                    "module-repo",
                    "module-ref",
                    "source-ca-file",
                    "source-username",
                    "auth-file",
                    "tool",
                    "max-part-size",
                    "since",
                    "registry",
                    "git-url",
                    "ca-file",
                    "username",
                    "key",
                    "chunk-size",
                    "state-dir",
                    "jobs",
                ];
                if !known.contains(&name.as_str()) {
                    return Err(Failure::Usage(format!("unknown option --{name}")));
                }
                flags.insert(name, parser.value()?.string()?);
            }
            Value(v) if command.is_none() => command = Some(v.string()?),
            Value(v) if file.is_none() => file = Some(v.into()),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let need = |name: &str| flags.get(name).cloned().ok_or_else(|| Failure::Usage(format!("--{name} is required")));
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let auth_file = flags.get("auth-file").map(PathBuf::from).or_else(|| env("REGISTRY_AUTH_FILE").map(PathBuf::from)).or_else(|| {
        env("DOCKER_CONFIG").map(|d| PathBuf::from(d).join("config.json")).or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")))
    });
    let password_stdin = |switch: &str| -> Result<Option<String>, Failure> {
        if !switches.contains(switch) {
            return Ok(None);
        }
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::Usage(format!("--{switch}: reading standard input failed: {e}")))?;
        Ok(Some(s.trim_end_matches(['\n', '\r']).to_string()))
    };
    // One side's access: `side` is the option prefix ("source-" or ""), `env_side` the
    // environment prefix ("SOURCE_" or "").
    let access = |side: &str, env_side: &str, what: &str| -> Result<Access, Failure> {
        let user = flags.get(&format!("{side}username")).cloned().or_else(|| env(&format!("OFFLINE_INSTALL_{env_side}USERNAME")));
        let password = password_stdin(&format!("{side}password-stdin"))?.or_else(|| env(&format!("OFFLINE_INSTALL_{env_side}PASSWORD")));
        let credentials = match (user, password) {
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            (None, None) => None,
            _ => return Err(Failure::Usage(format!("{what}: give both a user name and a password, or neither"))),
        };
        Ok(Access {
            plain_http: switches.contains(&format!("{side}plain-http")),
            ca_file: flags.get(&format!("{side}ca-file")).map(PathBuf::from),
            credentials,
            auth_file: auth_file.clone(),
        })
    };
    match command.as_deref() {
        Some("bundle") => {
            if flags.contains_key("key") {
                return Err(Failure::Usage("--key is for verify and push (which check the signatures bundle carried)".into()));
            }
            let output = PathBuf::from(need("output")?);
            let sources = Sources {
                agent_image: need("agent-image")?,
                runner_image: need("runner-image")?,
                chart: need("chart")?,
                module_repo: need("module-repo")?,
                module_ref: need("module-ref")?,
                platforms,
                tool: flags
                    .get("tool")
                    .map(PathBuf::from)
                    .unwrap_or(std::env::current_exe().map_err(|e| Failure::Usage(format!("cannot find this tool's own path: {e}")))?),
                max_part_size: flags.get("max-part-size").map(|t| parts::parse_size(t)).transpose().map_err(Failure::Usage)?,
                since: flags.get("since").map(PathBuf::from),
            };
            let written = bundle::bundle(&sources, &access("source-", "SOURCE_", "source credentials")?, &output)?;
            let parted = match &written.source.index {
                Some((index, anchor)) => format!(
                    "in {} parts\n{} sha256: {}\n  the anchor of the parts: it covers every part and SHA256SUMS; verify prints it too\n",
                    written.source.parts().len(),
                    index.display(),
                    anchor.hex()
                ),
                None => String::new(),
            };
            say(
                &format!(
                    "wrote {} ({} bytes; scratch space used: {} bytes, the module's clone and git bundle)\n{}\n{parted}SHA256SUMS sha256: {}\n  carry this value to the far side apart from the bundle (a ticket, a phone call): verify prints it too, and only matching values prove the bundle is this one\n",
                    written.source.shown(),
                    written.source.len(),
                    written.temp_peak,
                    written.manifest,
                    written.anchor.hex()
                ),
                ExitCode::SUCCESS,
            )
        }
        Some("verify") => {
            let path = file.ok_or_else(|| Failure::Usage("verify needs the bundle file".into()))?;
            let opened = bundle::verify(&path)?;
            let signed = match flags.get("key") {
                Some(key) => {
                    let lines = opened.check_signatures(&PublicKey::read(&PathBuf::from(key))?)?;
                    format!("{}\nevery artifact's signature verifies with {key}: the bundle holds what the key's owner signed\n", lines.join("\n"))
                }
                None => String::new(),
            };
            let parted = match &opened.source.index {
                Some((index, anchor)) => {
                    format!("{} parts, each as {} records it\n{} sha256: {anchor}\n", opened.source.parts().len(), index.display(), index.display())
                }
                None => String::new(),
            };
            let base = opened.base.as_ref().map_or(String::new(), |b| format!("{}\n", b.describe()));
            let text = format!(
                "{}: every checksum and digest matches\n{}\n{signed}{base}{parted}SHA256SUMS sha256: {}\n  compare it with the value bundle printed, carried apart from the bundle: only then is it the bundle that was made\n",
                opened.source.shown(),
                kubernetes_agent::commands::pretty(&opened.manifest),
                opened.sums_digest.hex()
            );
            say(&text, ExitCode::SUCCESS)
        }
        Some("list") => {
            let path = file.ok_or_else(|| Failure::Usage("list needs the bundle file".into()))?;
            say(&bundle::list(&path)?, ExitCode::SUCCESS)
        }
        Some("push") => {
            let path = file.ok_or_else(|| Failure::Usage("push needs the bundle file".into()))?;
            let registry = bundle::RegistryAddress::parse(&need("registry")?).map_err(Failure::Usage)?;
            let mut transfer = Transfer::default();
            if let Some(size) = flags.get("chunk-size") {
                transfer.chunk_size = upload::parse_chunk_size(size).map_err(Failure::Usage)?;
            }
            if let Some(jobs) = flags.get("jobs") {
                transfer.jobs = upload::parse_jobs(jobs).map_err(Failure::Usage)?;
            }
            if let Some(dir) = flags.get("state-dir") {
                transfer.state_dir = PathBuf::from(dir);
                if !transfer.state_dir.is_dir() {
                    return Err(Failure::Usage(format!("--state-dir {dir} is not a directory: give an existing, writable directory for the upload state")));
                }
            }
            let target = Target { registry, access: access("", "", "registry credentials")?, git_url: need("git-url")?, transfer };
            let key = flags.get("key").map(|k| PublicKey::read(&PathBuf::from(k))).transpose()?;
            say(&bundle::push(&path, &target, key.as_ref())?, ExitCode::SUCCESS)
        }
        Some(other) => Err(Failure::Usage(format!("unknown command '{other}'"))),
        None => say(HELP, ExitCode::from(2)),
    }
}

/// Writes `text` to standard output and returns `code`. A reader that went away
/// (`verify FILE | head -1`) is not an error of ours: nothing panics, the code stands;
/// any other write error fails with a message.
fn say(text: &str, code: ExitCode) -> Result<ExitCode, Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(code),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(code),
        Err(e) => Err(Failure::Output(e)),
    }
}
