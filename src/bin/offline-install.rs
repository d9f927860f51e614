//! `offline-install`: parse, run, print, choose the exit code; the command line is
//! `kubernetes_agent::offline::cli`, the work the rest of `kubernetes_agent::offline`.

use std::process::ExitCode;

use kubernetes_agent::offline::cli::{self, Command, Failure};

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1).collect()) {
        Ok(c) => c,
        Err(usage) => return usage_error(&usage.0),
    };
    let code = match command {
        Command::Help { asked: false } => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    };
    match cli::run(command) {
        Ok(text) => say(&text, code),
        Err(Failure::Usage(u)) => usage_error(&u),
        Err(Failure::Run(e)) => {
            eprintln!("offline-install: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage_error(what: &str) -> ExitCode {
    eprintln!("offline-install: {what}\nrun 'offline-install --help' for usage");
    ExitCode::from(2)
}

/// Writes `text` to standard output and returns `code`. A reader that went away
/// (`verify FILE | head -1`) is not an error of ours: nothing panics, the code stands;
/// any other write error fails with a message and exit code 1.
fn say(text: &str, code: ExitCode) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            eprintln!("offline-install: writing to standard output failed: {e} (is the disk full?)");
            ExitCode::from(1)
        }
    }
}
