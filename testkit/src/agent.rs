//! A `tribune agent run` process of the test's or benchmark's own: its instance, data dir,
//! launch allow-list and log, streaming to the given controllers; stopped with SIGTERM (it
//! stops its enclaves and removes its cgroups) when dropped, killed after 20 s.
//!
//! Its metrics listener binds a port the kernel picks (`--metrics-listen 127.0.0.1:0`) unless
//! [`AgentOptions::extra`] names one: agents of tests running at once would otherwise all try
//! the default 127.0.0.1:7480. [`AgentProcess::metrics_addr`] reads where it is served.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Error, process};

/// How an agent is started.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The `tribune` binary.
    pub binary: PathBuf,
    /// `--instance` (its cgroups, namespaces, bridge).
    pub instance: String,
    /// `--host-id`.
    pub host: String,
    pub data_dir: PathBuf,
    /// `--launch-policy`: the allow-list it launches under.
    pub launch_policy: PathBuf,
    /// `ADDR`s of the controllers it streams to, in order (none: standalone).
    pub controllers: Vec<String>,
    /// `--tls-dir` (its certificate issued there already); otherwise `--insecure`.
    pub tls_dir: Option<PathBuf>,
    /// More arguments.
    pub extra: Vec<String>,
    /// More environment (e.g. `TRIBUNE_TEST_FAULT`, for this agent only).
    pub env: Vec<(String, String)>,
    /// Its stdout and stderr (`RUST_LOG=info`).
    pub log: PathBuf,
    /// A network namespace to run it in (`/run/netns/NAME`, entered with `nsenter --net`,
    /// not `ip netns exec`, which remounts /sys and hides the cgroup mounts); `None`: this
    /// process's.
    pub netns: Option<String>,
}

pub struct AgentProcess {
    pub child: Child,
    pub log: PathBuf,
    /// `--instance`: its cgroups are `tribune/INSTANCE/…`.
    pub instance: String,
}

/// How long an agent gets to exit after SIGTERM.
const GRACE: Duration = Duration::from_secs(20);

impl AgentProcess {
    pub fn start(o: &AgentOptions) -> Result<Self, Error> {
        let file = std::fs::File::create(&o.log)
            .map_err(Error::io(format!("creating {}", o.log.display())))?;
        let file2 = file
            .try_clone()
            .map_err(Error::io(format!("opening {}", o.log.display())))?;
        let mut cmd = match &o.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(&o.binary);
                c
            }
            None => Command::new(&o.binary),
        };
        cmd.args(["agent", "run", "--instance", &o.instance])
            .args(["--host-id", &o.host])
            .arg("--data-dir")
            .arg(&o.data_dir);
        match &o.tls_dir {
            Some(d) => cmd.arg("--tls-dir").arg(d),
            None => cmd.arg("--insecure"),
        };
        if !o.extra.iter().any(|a| a.starts_with("--metrics-listen")) {
            cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        let child = cmd
            .arg("--launch-policy")
            .arg(&o.launch_policy)
            .args(&o.extra)
            // None: the agent runs standalone on its local plan.
            .args((!o.controllers.is_empty()).then_some("--controllers"))
            .args(&o.controllers)
            .env("RUST_LOG", "info")
            .envs(o.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file2)
            .stderr(file)
            .spawn()
            .map_err(Error::io(format!(
                "starting the host agent ({})",
                o.binary.display()
            )))?;
        Ok(Self {
            child,
            log: o.log.clone(),
            instance: o.instance.clone(),
        })
    }

    /// Where it serves `/metrics`, as it logged once bound; waits up to `limit`.
    pub fn metrics_addr(&self, limit: Duration) -> Result<std::net::SocketAddr, Error> {
        crate::wait::until(
            &format!("the agent to serve metrics (log {})", self.log.display()),
            limit,
            Duration::from_millis(20),
            || metrics_addr_in(&self.log_text()),
        )
    }

    /// All it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 20 lines it logged.
    pub fn log_tail(&self) -> String {
        crate::cluster::tail(&self.log, 20)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        process::stop(&mut self.child, GRACE);
    }
}

/// The address in the agent's "serving metrics at http://ADDR/metrics" line.
fn metrics_addr_in(log: &str) -> Option<std::net::SocketAddr> {
    log.lines().find_map(|l| {
        let rest = l.split_once("serving metrics at http://")?.1;
        rest.split_once("/metrics")?.0.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_metrics_address_is_read_from_the_log() {
        let log = "x\n\u{1b}[32m INFO\u{1b}[0m tribune: serving metrics at http://127.0.0.1:41234/metrics \u{1b}[3mbound\u{1b}[0m=127.0.0.1:41234\n";
        assert_eq!(
            super::metrics_addr_in(log),
            Some("127.0.0.1:41234".parse().expect("addr"))
        );
        assert_eq!(super::metrics_addr_in("metrics are not served: …"), None);
    }
}
