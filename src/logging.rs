//! Log output: JSON lines by default (`time`, `level`, `msg`, `target`, and `runnerId` as
//! upstream logs it) or plain text, on standard error. `LOG_LEVEL` sets our level while
//! dependencies stay at `warn`; `RUST_LOG`, when set, replaces both with its own filter.
//! Nothing here filters secrets: callers never log them in the first place.

use std::io::Write;

use crate::config::{LogConfig, LogFormat};

/// Installs the global logger. Call once, before anything logs.
pub fn init(config: &LogConfig) {
    let mut builder = env_logger::Builder::new();
    match &config.rust_log {
        Some(filter) => {
            builder.parse_filters(filter);
        }
        None => {
            builder.filter_level(log::LevelFilter::Warn).filter_module("kubernetes_agent", config.level);
        }
    }
    let runner_id = config.runner_id.clone();
    let format = config.format;
    builder.format(move |buf, record| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let time = format!("{}.{:03}Z", crate::time::format_rfc3339(now.as_secs() as i64).trim_end_matches('Z'), now.subsec_millis());
        match format {
            LogFormat::Json => {
                let quote = |s: &str| miniserde::json::to_string(&s.to_string());
                let mut line = format!(
                    r#"{{"time":"{time}","level":"{}","msg":{},"target":{}"#,
                    record.level(),
                    quote(&record.args().to_string()),
                    quote(record.target())
                );
                if let Some(id) = &runner_id {
                    line.push_str(&format!(r#","runnerId":{}"#, quote(id)));
                }
                line.push('}');
                writeln!(buf, "{line}")
            }
            LogFormat::Text => writeln!(buf, "{time} {:<5} {}", record.level(), record.args()),
        }
    });
    builder.target(env_logger::Target::Stderr);
    // A second init (tests) keeps the first logger.
    let _ = builder.try_init();
    if let Some(warning) = &config.level_warning {
        log::warn!("{warning}");
    }
}
