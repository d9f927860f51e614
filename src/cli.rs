//! Command-line parsing with lexopt: `kubernetes-agent [OPTIONS] <COMMAND> [ARGS]`,
//! compatible with upstream's `runner [--remote-connect=URL] remote`. Options may come
//! before or after the command. Parsing does no IO; [`crate::config`] resolves values.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::{Values, SETTINGS};

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the agent: long-poll the Orchestrator and act on messages.
    Remote,
    /// Preflight: configuration, key, reachability, Kubernetes permissions.
    Check,
    /// Print the Job a create-job message would become.
    Render {
        /// Message file; `None` or `-` reads standard input.
        input: Option<PathBuf>,
    },
    /// Write a new key pair.
    Keygen {
        /// Directory for the two PEM files.
        out_dir: PathBuf,
        /// Replace existing files.
        force: bool,
    },
    /// Print the version.
    Version,
    /// Print the help.
    Help,
    /// Upstream's job-side mode, which this image does not provide.
    Standard,
}

/// Parsed arguments.
#[derive(Debug, Clone)]
pub struct Args {
    /// The command.
    pub command: Command,
    /// Flag values, layered over the environment by the caller.
    pub flags: Vec<(&'static str, String)>,
}

impl Args {
    /// The flags laid over `values` (usually the process environment).
    pub fn values(&self, mut values: Values) -> Values {
        for (env, v) in &self.flags {
            values.set_flag(env, v.clone());
        }
        values
    }
}

/// Parses `argv` (without the program name).
pub fn parse<I: IntoIterator<Item = OsString>>(argv: I) -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(argv);
    let mut command: Option<String> = None;
    let mut positional: Vec<PathBuf> = Vec::new();
    let mut flags = Vec::new();
    let mut out_dir = PathBuf::from(".");
    let mut force = false;
    let mut help = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => help = true,
            Short('V') | Long("version") => command = Some("version".into()),
            Long("out-dir") => out_dir = parser.value()?.into(),
            Long("force") => force = true,
            Long(name) => {
                let name = name.to_string();
                let Some(setting) = SETTINGS.iter().find(|s| !s.flag.is_empty() && s.flag == name) else {
                    return Err(lexopt::Error::UnexpectedOption(format!("--{name}")));
                };
                let value = parser.value()?.into_string().map_err(|_| lexopt::Error::Custom(format!("--{name}: value is not UTF-8").into()))?;
                flags.push((setting.env, value));
            }
            Value(v) if command.is_none() => command = Some(v.into_string().map_err(|_| lexopt::Error::Custom("the command is not UTF-8".into()))?),
            Value(v) => positional.push(v.into()),
            _ => return Err(arg.unexpected()),
        }
    }
    let command = match (help, command.as_deref()) {
        (true, _) | (false, None) => Command::Help,
        (false, Some("remote")) => Command::Remote,
        (false, Some("check")) => Command::Check,
        (false, Some("render")) => Command::Render { input: positional.pop().filter(|p| p.as_os_str() != "-") },
        (false, Some("keygen")) => Command::Keygen { out_dir, force },
        (false, Some("version")) => Command::Version,
        (false, Some("help")) => Command::Help,
        (false, Some("standard")) => Command::Standard,
        (false, Some(other)) => return Err(lexopt::Error::Custom(format!("unknown command '{other}'; run with --help for the list").into())),
    };
    if positional.len() > usize::from(matches!(command, Command::Render { .. })) {
        return Err(lexopt::Error::Custom(format!("unexpected argument '{}'", positional[0].display()).into()));
    }
    Ok(Args { command, flags })
}

const HELP_HEAD: &str = "\
kubernetes-agent: a runner agent for the Platform Orchestrator that turns its messages
into Kubernetes Jobs. A drop-in replacement for the upstream kubernetes-agent runner.

Usage: kubernetes-agent [OPTIONS] <COMMAND>

Commands:
  remote          run the agent: keep long polls open on REMOTE_URL and create or check
                  a Kubernetes Job for each message (what the chart runs)
  check           preflight: configuration, key and kid, reachability of REMOTE_URL,
                  Kubernetes authentication and permissions; prints pass/fail with fixes
  render [FILE]   print the Job a create-job message (FILE, or - / stdin) would become;
                  nothing is sent anywhere
  keygen          write runner_private_key.pem and runner_public_key.pem
                  (--out-dir DIR, default .; --force to replace) and print the kid
  version         print the version
  standard        not provided: upstream's job-side mode; Jobs keep using the
                  Orchestrator's runner image

Options (each also read from the environment variable shown; a flag wins):
";

/// The `--help` text, generated from the settings table so it cannot drift from it.
pub fn help() -> String {
    let mut out = String::from(HELP_HEAD);
    for s in SETTINGS {
        let flag = if s.flag.is_empty() { "(env only)".to_string() } else { format!("--{} <VALUE>", s.flag) };
        let default = if s.default.is_empty() { String::new() } else { format!(" [default: {}]", s.default) };
        out.push_str(&format!("  {flag:<32} {}\n      {}{default}\n", s.env, s.help));
    }
    out.push_str("  -h, --help                       print this help\n  -V, --version                    print the version\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, lexopt::Error> {
        parse(list.iter().map(OsString::from))
    }

    #[test]
    fn upstream_argv_is_accepted() {
        let a = args(&["--remote-connect=https://orchestrator.internal", "remote"]).unwrap();
        assert_eq!(a.command, Command::Remote);
        assert_eq!(a.flags, vec![("REMOTE_URL", "https://orchestrator.internal".to_string())]);
        assert_eq!(args(&["remote"]).unwrap().command, Command::Remote);
    }

    #[test]
    fn options_after_the_command_and_render_input() {
        let a = args(&["render", "--job-namespaces", "a,b", "msg.json"]).unwrap();
        assert_eq!(a.command, Command::Render { input: Some("msg.json".into()) });
        assert_eq!(a.flags, vec![("JOB_NAMESPACES", "a,b".to_string())]);
        assert_eq!(args(&["render", "-"]).unwrap().command, Command::Render { input: None });
    }

    #[test]
    fn unknown_commands_options_and_extra_arguments_are_errors() {
        assert!(args(&["serve"]).unwrap_err().to_string().contains("unknown command 'serve'"));
        assert!(args(&["remote", "--bogus", "x"]).is_err());
        assert!(args(&["remote", "extra"]).unwrap_err().to_string().contains("unexpected argument"));
        assert!(args(&["remote", "--private-key", "x"]).is_err(), "the key's text has no flag");
    }

    #[test]
    fn help_lists_every_setting() {
        let text = help();
        for s in SETTINGS {
            assert!(text.contains(s.env), "{}", s.env);
        }
        assert_eq!(args(&[]).unwrap().command, Command::Help);
        assert_eq!(args(&["remote", "--help"]).unwrap().command, Command::Help);
    }
}
