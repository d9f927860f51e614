//! `offline-install`: parse, report, choose the exit code; the work is in
//! `kubernetes_agent::offline`.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use kubernetes_agent::offline::bundle::{self, Access, Sources, Target};
use kubernetes_agent::offline::registry::Credentials;
use kubernetes_agent::offline::upload::{self, Transfer};

const HELP: &str = "\
offline-install: carry the agent image, the runner image, the chart and the TF module
repository across an air gap in one file, and mirror them into an internal OCI registry
and Git service. Needs nothing but this static tool, a shell and (for the module) git.

Usage:
  offline-install bundle --output FILE --agent-image REF --runner-image REF --chart REF
                         --module-repo URL --module-ref REF [--platform OS/ARCH]...
                         [--source-plain-http] [--source-ca-file PEM] [--source-username USER]
                         [--source-password-stdin] [--auth-file FILE] [--tool PATH] [--jobs N]
  offline-install verify FILE
  offline-install push FILE --registry HOST[:PORT][/PATH] --git-url URL
                         [--plain-http] [--ca-file PEM] [--username USER] [--password-stdin]
                         [--auth-file FILE] [--chunk-size SIZE] [--state-dir DIR] [--jobs N]

bundle   (connected side) fetches every artifact into FILE: images keep their digests and
         every platform unless --platform narrows them (then the index is rewritten and its
         digest changes; each platform's manifest keeps its own); the chart is copied as the
         OCI artifact Helm pushed; the module is a git bundle of --module-ref. FILE also
         holds manifest.json (what is inside, with digests), SHA256SUMS and this tool.
         It ends by printing 'SHA256SUMS sha256: <hex>': carry that value across apart
         from FILE (a ticket, a phone call). Blobs are fetched --jobs at once (default 4,
         1 to 32), each through FILE's .scratch/ (so up to N blobs sit there at a time).
verify   checks FILE against itself without pushing anything: every entry is one this
         tool writes, read as every tar extracts it, with the checksum SHA256SUMS gives;
         every artifact's graph is complete; the git bundle holds exactly the module ref.
         It cannot tell who made FILE: compare the 'SHA256SUMS sha256:' line it prints
         with the value bundle printed, carried apart; only a match proves FILE is that one.
push     (air-gapped side) verifies first, then pushes images and chart under
         HOST/PATH/<name> (the chart keeps its name), skipping blobs the registry already
         has (a re-run after an interruption finishes the job), pushes the module's one
         ref (at the commit manifest.json names) to --git-url, and prints the values to use
         next. Its scratch space is under $TMPDIR (FILE may be on read-only media); what it
         reads again after verify is checked again (a changed blob fails its upload).
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
exists; it keeps FILE only when its own verify passes.
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
                    "registry",
                    "git-url",
                    "ca-file",
                    "username",
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
                jobs: flags.get("jobs").map_or(Ok(upload::DEFAULT_JOBS), |j| upload::parse_jobs(j)).map_err(Failure::Usage)?,
            };
            let (manifest, anchor) = bundle::bundle(&sources, &access("source-", "SOURCE_", "source credentials")?, &output)?;
            let size = std::fs::metadata(&output).map_or(0, |m| m.len());
            say(
                &format!(
                    "wrote {} ({size} bytes)\n{manifest}\nSHA256SUMS sha256: {}\n  carry this value to the far side apart from the bundle (a ticket, a phone call): verify prints it too, and only matching values prove the bundle is this one\n",
                    output.display(),
                    anchor.hex()
                ),
                ExitCode::SUCCESS,
            )
        }
        Some("verify") => {
            let path = file.ok_or_else(|| Failure::Usage("verify needs the bundle file".into()))?;
            let opened = bundle::verify(&path)?;
            let text = format!(
                "{}: every checksum and digest matches\n{}\nSHA256SUMS sha256: {}\n  compare it with the value bundle printed, carried apart from the bundle: only then is it the bundle that was made\n",
                path.display(),
                kubernetes_agent::commands::pretty(&opened.manifest),
                opened.sums_digest.hex()
            );
            say(&text, ExitCode::SUCCESS)
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
            say(&bundle::push(&path, &target)?, ExitCode::SUCCESS)
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
