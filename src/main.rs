//! The binary: parse, report, choose the exit code. Everything else is the library.

use std::process::ExitCode;
use std::sync::Arc;

use kubernetes_agent::cli::{self, Command};
use kubernetes_agent::{agent, commands, config, ops::check, ops::listener, ops::logging, sys::signals};

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
            report(run_agent(&config))
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT.
fn run_agent(config: &config::AgentConfig) -> kubernetes_agent::Result<()> {
    signals::block();
    let context = Arc::new(agent::Context::new(config)?);
    if let Some(addr) = config.listen {
        let bound = listener::start(addr, context.clone())?;
        log::info!("serving /healthz, /readyz and /metrics on {bound}");
    }
    let running = agent::start(context, config.polls);
    let signal = signals::wait();
    log::info!(
        "{signal} received: no new polls; waiting up to {} s for the {} open poll(s) to end and for {} in-flight message(s)",
        config.shutdown_timeout.as_secs(),
        running.context.metrics.open_polls(),
        running.context.metrics.in_flight()
    );
    let left = running.shutdown(config.shutdown_timeout);
    if left.polls > 0 {
        log::warn!(
            "exiting with {} poll(s) still held after SHUTDOWN_TIMEOUT: a message handed to them now is lost; set SHUTDOWN_TIMEOUT above the Orchestrator's hold",
            left.polls
        );
    }
    if left.messages > 0 {
        log::warn!("exiting with {} message(s) unhandled after SHUTDOWN_TIMEOUT; their deployments are re-checked by the Orchestrator", left.messages);
    }
    if left == agent::Left::default() {
        log::info!("stopped cleanly");
    }
    Ok(())
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
