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
use tracing_subscriber::Layer;
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
/// The variable of `--otlp-endpoint`.
pub const OTLP_ENDPOINT_VAR: &str = "TRIBUNE_OTLP_ENDPOINT";
/// The variable of `--trace-sample-ratio`.
pub const TRACE_SAMPLE_RATIO_VAR: &str = "TRIBUNE_TRACE_SAMPLE_RATIO";
/// Which spans are exported when tracing is on (whatever `--log-level` says about logs): the
/// loop's spans are at info in Tribune's own crates.
const TRACE_TARGETS: &str = "tribune_controller=info,tribune_agent=info";

#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct LogArgs {
    /// What serving modes log: a level or per-module filters, e.g.
    /// `info,tribune_controller::raft=debug` (`RUST_LOG` syntax) [default: info for Tribune,
    /// warn for libraries].
    #[arg(long, global = true, env = LOG_VAR, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log line format of serving modes: text (for people) or json (one object per line).
    #[arg(long, global = true, env = LOG_FORMAT_VAR, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Export traces of serving modes over OTLP/gRPC to this collector, e.g.
    /// `http://127.0.0.1:4317` (off when not given). One usage window's journey — agent seal,
    /// controller verify, decision, Raft commit, plan push, agent apply, cgroup write — is one
    /// trace.
    #[arg(long, global = true, env = OTLP_ENDPOINT_VAR, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Fraction of usage windows (and other new traces) traced when --otlp-endpoint is given,
    /// 0 to 1; a trace continued from another process follows that process's decision
    /// [default: 0.01].
    #[arg(long, global = true, env = TRACE_SAMPLE_RATIO_VAR, value_name = "RATIO")]
    pub trace_sample_ratio: Option<f64>,
}

/// The `[log]` table of a controller's or an agent's `--config` file: the same settings as the
/// flags, which (and their variables) win over it.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
    pub otlp_endpoint: Option<String>,
    pub trace_sample_ratio: Option<f64>,
}

impl LogFile {
    /// The `[log]` table of the TOML config file at `path` (none: defaults). A config file
    /// that does not read or parse is left to the command, which reports it with its own
    /// context; a `[log]` table that is wrong is an error here, naming the file.
    pub fn from_config(path: &std::path::Path) -> anyhow::Result<Self> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(Self::default());
        };
        let Ok(mut table) = text.parse::<toml::Table>() else {
            return Ok(Self::default());
        };
        match table.remove("log") {
            None => Ok(Self::default()),
            Some(v) => v.try_into().map_err(|e| {
                anyhow::anyhow!(
                    "{}: [log]: {e} (keys: level, format, otlp_endpoint, trace_sample_ratio)",
                    path.display()
                )
            }),
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

    /// These settings over a config file's `[log]` table: what a flag or variable gave wins.
    pub fn over(mut self, file: LogFile) -> Self {
        self.log_level = self.log_level.or(file.level);
        self.log_format = self.log_format.or(file.format);
        self.otlp_endpoint = self.otlp_endpoint.or(file.otlp_endpoint);
        self.trace_sample_ratio = self.trace_sample_ratio.or(file.trace_sample_ratio);
        self
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
        if let Some(e) = &self.otlp_endpoint {
            out.extend(["--otlp-endpoint".to_string(), e.clone()]);
        }
        if let Some(r) = self.trace_sample_ratio {
            out.extend(["--trace-sample-ratio".to_string(), r.to_string()]);
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

/// Installs the process's subscriber: logs (filtered by `--log-level`) and, with
/// `--otlp-endpoint`, trace export (`tribune_telemetry::trace`; its own span filter, so a quiet
/// log level does not switch traces off). `service` names the process in traces (`instance`
/// tells two of a kind apart). Called once, by `main`, for serving modes only; a second call
/// (a test) leaves the first in place.
pub fn init(args: &LogArgs, service: &str, instance: Option<String>) -> anyhow::Result<()> {
    let filter = args.filter()?;
    let _ = INSTALLED.set(args.clone());
    let trace = tribune_telemetry::trace::TraceConfig {
        endpoint: args.otlp_endpoint.clone(),
        sample_ratio: args
            .trace_sample_ratio
            .unwrap_or(tribune_telemetry::trace::DEFAULT_SAMPLE_RATIO),
        service: service.to_string(),
        instance,
    };
    let targets: tracing_subscriber::filter::Targets =
        TRACE_TARGETS.parse().context("the trace span filter")?;
    let otel = tribune_telemetry::trace::init(&trace)?.map(|l| l.with_filter(targets));
    let registry = tracing_subscriber::registry().with(otel);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match args.log_format.unwrap_or_default() {
        LogFormat::Text => registry.with(fmt.with_filter(filter)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt.json()
                    .flatten_event(false)
                    .with_current_span(true)
                    .with_filter(filter),
            )
            .try_init(),
    };
    if let Some(e) = &args.otlp_endpoint {
        tracing::info!(endpoint = %e, sample_ratio = trace.sample_ratio, "exporting traces over OTLP");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_module_filters_parse_and_a_bad_one_is_named() {
        let ok = LogArgs {
            log_level: Some("warn,tribune_controller::raft=debug".into()),
            ..LogArgs::default()
        };
        let f = ok.filter().expect("parses");
        assert!(
            f.to_string().contains("tribune_controller::raft=debug"),
            "{f}"
        );
        let bad = LogArgs {
            log_level: Some("tribune=loud".into()),
            ..LogArgs::default()
        };
        let e = format!("{:#}", bad.filter().expect_err("not a level"));
        assert!(
            e.contains("--log-level") && e.contains("tribune=loud"),
            "{e}"
        );
    }

    #[test]
    fn a_config_files_log_table_fills_what_flags_leave_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "id = 1\n[log]\nlevel = \"debug\"\nformat = \"json\"\notlp_endpoint = \"http://c:4317\"\n",
        )
        .expect("write");
        let file = LogFile::from_config(&path).expect("reads");
        let flags = LogArgs {
            log_level: Some("warn".into()),
            ..LogArgs::default()
        };
        let a = flags.over(file);
        assert_eq!(a.log_level.as_deref(), Some("warn"), "the flag wins");
        assert_eq!(a.log_format, Some(LogFormat::Json));
        assert_eq!(a.otlp_endpoint.as_deref(), Some("http://c:4317"));
        std::fs::write(&path, "[log]\nlevl = \"debug\"\n").expect("write");
        let e = LogFile::from_config(&path).expect_err("unknown key");
        assert!(
            e.to_string().contains("[log]") && e.to_string().contains("levl"),
            "{e}"
        );
        assert_eq!(
            LogFile::from_config(&dir.path().join("absent.toml")).ok(),
            Some(LogFile::default())
        );
    }

    #[test]
    fn settings_pass_on_to_a_child_as_flags() {
        let a = LogArgs {
            log_level: Some("debug".into()),
            log_format: Some(LogFormat::Json),
            otlp_endpoint: Some("http://127.0.0.1:4317".into()),
            trace_sample_ratio: Some(0.5),
        };
        assert_eq!(
            a.to_args(),
            [
                "--log-level",
                "debug",
                "--log-format",
                "json",
                "--otlp-endpoint",
                "http://127.0.0.1:4317",
                "--trace-sample-ratio",
                "0.5"
            ]
        );
        assert!(LogArgs::default().to_args().is_empty());
    }
}
