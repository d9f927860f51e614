//! Log output: JSON lines by default (`time`, `level`, `msg`, `target`, and `runnerId` as
//! upstream logs it; `"audit":true` on the lines of [`crate::ops::audit`]) or plain text, on
//! standard error. `LOG_LEVEL` sets our level (audit lines are kept at any level) while
//! dependencies stay at `warn`; `RUST_LOG`, when set, replaces all that with its own filter.
//! Callers never log a secret on purpose; every line is still passed through
//! [`crate::redact::scrub`], which removes every secret the agent knows (a peer's echo
//! of a token or a Job's env value), and so is a panic's message.

use std::io::Write;

/// Log output shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Logging settings; resolved first so that later errors are logged in the right shape.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The level from `LOG_LEVEL`.
    pub level: log::LevelFilter,
    /// `RUST_LOG`, when set: overrides `level`.
    pub rust_log: Option<String>,
    /// Output shape.
    pub format: LogFormat,
    /// Added to every JSON line as `runnerId`.
    pub runner_id: Option<String>,
    /// Set when `LOG_LEVEL` was not understood: logged as a warning once logging is up.
    pub level_warning: Option<String>,
}

/// Longest message a log line carries; the rest is cut (a peer's reply can be megabytes).
pub const MAX_LINE: usize = 8 << 10;

/// Installs the global logger. Call once, before anything logs.
pub fn init(config: &LogConfig) {
    let mut builder = env_logger::Builder::new();
    match &config.rust_log {
        Some(filter) => {
            builder.parse_filters(filter);
        }
        None => {
            // Audit lines are kept whatever LOG_LEVEL says (RUST_LOG, when set, decides alone).
            builder
                .filter_level(log::LevelFilter::Warn)
                .filter_module("kubernetes_agent", config.level)
                .filter_module(crate::ops::audit::TARGET, config.level.max(log::LevelFilter::Info));
        }
    }
    let runner_id = config.runner_id.clone();
    let format = config.format;
    builder.format(move |buf, record| {
        let message = crate::redact::scrub_to(&record.args().to_string(), MAX_LINE);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let time = format!("{}.{:03}Z", crate::time::format_rfc3339(now.as_secs() as i64).trim_end_matches('Z'), now.subsec_millis());
        match format {
            LogFormat::Json => {
                let quote = crate::json::quote;
                let mut line = format!(r#"{{"time":"{time}","level":"{}","msg":{},"target":{}"#, record.level(), quote(&message), quote(record.target()));
                if let Some(id) = &runner_id {
                    line.push_str(&format!(r#","runnerId":{}"#, quote(id)));
                }
                if record.target() == crate::ops::audit::TARGET {
                    line.push_str(r#","audit":true"#);
                }
                line.push('}');
                writeln!(buf, "{line}")
            }
            // One record, one line: a line break a peer put in a value cannot forge another.
            LogFormat::Text => writeln!(buf, "{time} {:<5} {}", record.level(), message.replace('\n', "\\n").replace('\r', "\\r")),
        }
    });
    builder.target(env_logger::Target::Stderr);
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string();
        eprintln!("kubernetes-agent: internal error (please report it): {}", crate::redact::scrub(&text).replace('\n', " "));
    }));
    // A second init (tests) keeps the first logger.
    let _ = builder.try_init();
    if let Some(warning) = &config.level_warning {
        log::warn!("{warning}");
    }
}
