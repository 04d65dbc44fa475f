//! One module per top-level verb.

pub mod agent;
pub mod agent_config;
pub mod attest;
pub mod bench;
pub mod ca;
pub mod client;
pub mod cluster;
pub mod controller;
pub mod dev;
pub mod dev_demo;
pub mod env_vars;
pub mod errors;
pub mod log;
pub mod output;
pub mod policy;
pub mod policy_lang;
pub mod receipt;
pub mod resources;
#[cfg(test)]
pub mod test_env;
pub mod tls_args;
pub mod token;
pub mod units;

/// Logs to stderr; `RUST_LOG` selects what (default: info for Tribune, warn for the rest).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,tribune=info,tribune_controller=info")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
