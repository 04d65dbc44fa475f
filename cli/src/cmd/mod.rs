//! One module per top-level verb.

pub mod agent;
pub mod agent_config;
pub mod api;
pub mod attest;
pub mod bench;
pub mod bench_failover;
pub mod bench_messages;
pub mod bench_migrate;
pub mod bench_schedule;
pub mod ca;
pub mod chaos;
pub mod client;
pub mod cluster;
pub mod controller;
pub mod dev;
pub mod dev_demo;
pub mod env_vars;
pub mod errors;
pub mod log;
pub mod logging;
pub mod migrate;
pub mod msg;
pub mod output;
pub mod policy;
pub mod policy_lang;
pub mod policy_plan;
pub mod receipt;
pub mod resources;
pub mod schedule;
pub mod service;
pub mod snapshot;
#[cfg(test)]
pub mod test_env;
pub mod tls_args;
pub mod token;
pub mod units;
