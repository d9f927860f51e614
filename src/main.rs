//! The binary: parse, report, choose the exit code. Everything else is the library.

use std::process::ExitCode;

use kubernetes_agent::cli::{self, Command};
use kubernetes_agent::ops::{check, logging};
use kubernetes_agent::{agent, commands, config};

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kubernetes-agent: {}\nrun 'kubernetes-agent --help' for usage", kubernetes_agent::error::one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let values = args.values(config::Values::from_process_env());
    match args.command {
        Command::Help => {
            print!("{}", cli::help());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("{}", commands::version());
            ExitCode::SUCCESS
        }
        Command::Standard => {
            eprintln!("kubernetes-agent: {}", commands::STANDARD_REFUSAL);
            ExitCode::from(2)
        }
        Command::Keygen { out_dir, force } => report(commands::keygen(&out_dir, force).map(|text| print!("{text}"))),
        Command::Render { input } => {
            let result = config::job_policy(&values).and_then(|policy| commands::render_input(input.as_deref(), &policy));
            report(result.map(|job| print!("{job}")))
        }
        Command::Remote | Command::Check => {
            let log_config = match config::log_config(&values) {
                Ok(c) => c,
                Err(e) => return report(Err(e)),
            };
            logging::init(&log_config);
            if args.command == Command::Check {
                let config = match config::agent_config_all(&values) {
                    Ok(c) => c,
                    Err(problems) => {
                        check::configuration_problems(&problems, &mut std::io::stdout());
                        return ExitCode::from(2);
                    }
                };
                let passed = check::run(&config, &mut std::io::stdout());
                return if passed { ExitCode::SUCCESS } else { ExitCode::from(1) };
            }
            let config = match config::agent_config(&values) {
                Ok(c) => c,
                Err(e) => return report(Err(e)),
            };
            report(agent::run(&config))
        }
    }
}

/// Prints an error on one line and picks the exit code: 2 for configuration and input, 1 otherwise.
fn report(result: kubernetes_agent::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubernetes-agent: {e}");
            match e {
                kubernetes_agent::Error::Config { .. } | kubernetes_agent::Error::Decode { .. } | kubernetes_agent::Error::Refused { .. } => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}
