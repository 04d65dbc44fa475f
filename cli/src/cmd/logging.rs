//! One `tracing` subscriber for every serving process (controller, agent, dev, bench).
//!
//! What is logged: `--log-level` (or `TRIBUNE_LOG`), an [`EnvFilter`] directive list — a level
//! (`debug`) or per-module filters (`warn,tribune_controller::raft=debug`); without it,
//! `RUST_LOG`; without either, [`DEFAULT_FILTER`]. How: `--log-format text|json` (or
//! `TRIBUNE_LOG_FORMAT`); JSON is one object per line with `timestamp`, `level`, `target`,
//! `fields` and the open spans, for log shippers. Logs go to stderr; stdout stays for what a
//! verb prints.
//!
//! The HTTP access log is one event per request under the target
//! `tribune_controller::access` (see `tribune_controller::api::http`): filter it like any module
//! (`info,tribune_controller::access=off`).

use anyhow::Context;
use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// What a process logs when nothing says otherwise: Tribune's own modules at info, the
/// libraries it uses at warn.
pub const DEFAULT_FILTER: &str =
    "warn,tribune=info,tribune_controller=info,tribune_agent=info,tribune_bench=info";

/// The variable of `--log-level`.
pub const LOG_VAR: &str = "TRIBUNE_LOG";
/// The variable of `--log-format`.
pub const LOG_FORMAT_VAR: &str = "TRIBUNE_LOG_FORMAT";

#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct LogArgs {
    /// What serving modes log: a level or per-module filters, e.g.
    /// `info,tribune_controller::raft=debug` (`RUST_LOG` syntax) [default: info for Tribune,
    /// warn for libraries].
    #[arg(long, global = true, env = LOG_VAR, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log line format of serving modes: text (for people) or json (one object per line).
    #[arg(long, global = true, env = LOG_FORMAT_VAR, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl LogArgs {
    /// The filter these arguments select; a directive that does not parse is an error naming
    /// it (a typo must not silently log nothing).
    pub fn filter(&self) -> anyhow::Result<EnvFilter> {
        if let Some(spec) = &self.log_level {
            return EnvFilter::builder()
                .parse(spec)
                .with_context(|| format!("--log-level / {LOG_VAR}: {spec:?} is not a filter"));
        }
        if let Ok(spec) = std::env::var("RUST_LOG") {
            return EnvFilter::builder()
                .parse(&spec)
                .with_context(|| format!("RUST_LOG: {spec:?} is not a filter"));
        }
        Ok(EnvFilter::new(DEFAULT_FILTER))
    }

    /// The same settings as arguments, for a child process (`tribune dev` starts controllers).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(l) = &self.log_level {
            out.extend(["--log-level".to_string(), l.clone()]);
        }
        if let Some(f) = self.log_format {
            out.extend(["--log-format".to_string(), f.as_str().to_string()]);
        }
        out
    }
}

/// The settings [`init`] installed, kept for the processes this one starts.
static INSTALLED: std::sync::OnceLock<LogArgs> = std::sync::OnceLock::new();

/// Flags giving a child process (a dev cluster's controllers and agents) this process's log
/// settings; none when they came from the environment, which the child inherits.
pub fn child_args() -> Vec<String> {
    INSTALLED.get().map(LogArgs::to_args).unwrap_or_default()
}

/// Installs the process's subscriber. Called once, by `main`, for serving modes only; a second
/// call (a test) leaves the first in place.
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = args.filter()?;
    let _ = INSTALLED.set(args.clone());
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match args.log_format.unwrap_or_default() {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(false).with_current_span(true))
            .try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_module_filters_parse_and_a_bad_one_is_named() {
        let ok = LogArgs {
            log_level: Some("warn,tribune_controller::raft=debug".into()),
            log_format: None,
        };
        let f = ok.filter().expect("parses");
        assert!(
            f.to_string().contains("tribune_controller::raft=debug"),
            "{f}"
        );
        let bad = LogArgs {
            log_level: Some("tribune=loud".into()),
            log_format: None,
        };
        let e = format!("{:#}", bad.filter().expect_err("not a level"));
        assert!(
            e.contains("--log-level") && e.contains("tribune=loud"),
            "{e}"
        );
    }

    #[test]
    fn settings_pass_on_to_a_child_as_flags() {
        let a = LogArgs {
            log_level: Some("debug".into()),
            log_format: Some(LogFormat::Json),
        };
        assert_eq!(
            a.to_args(),
            ["--log-level", "debug", "--log-format", "json"]
        );
        assert!(LogArgs::default().to_args().is_empty());
    }
}
