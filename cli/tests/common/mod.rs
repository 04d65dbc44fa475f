//! Test harness: real `tribune controller` processes on loopback (a
//! [`tribune_testkit::LocalCluster`]: each with its own ports and data dir), and a small HTTP
//! client that retries only where retrying cannot double-apply.
//!
//! Clusters run `--insecure` unless made with [`Cluster::start_tls`]/[`Cluster::empty_tls`]:
//! those get a CA of their own under the test's temp dir, a certificate per controller and a
//! client certificate for the harness and the CLI ([`Cluster::tls_args`]).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tribune_testkit::{LocalCluster, Options};

// Not every test binary uses all of these.
#[allow(unused_imports)]
pub use tribune_testkit::{
    DEADLINE, free_port,
    tls::{TEST_CLIENT, TEST_CLIENT_STEM, issue, make_ca},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_tribune");

/// `tribune dev` on the ports from `base`, its data under `dir/data` and the CLI config it writes
/// at `config`; its stdout, line by line, on the receiver (read by a thread, so it never blocks).
pub fn spawn_dev(
    base: u16,
    dir: &std::path::Path,
    config: &std::path::Path,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(BIN)
        .args(["dev", "--port-base", &base.to_string(), "--data-dir"])
        .arg(dir.join("data"))
        .env("TRIBUNE_CONFIG", config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn tribune dev");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// `port_base` and `port_span` for a controller config's `[migration]` table: live-migration
/// targets listen on ports of this test's own, not the default 7500-7999 another test or
/// `tribune dev` on this machine may be using.
pub fn migration_ports() -> String {
    let span = 64;
    let first = tribune_testkit::ports::try_free_port_span(span).expect("migration ports");
    format!("port_base = {first}\nport_span = {span}\n")
}

/// True (after saying `skipped: TEST: not root (WHY)` on stderr) when this test cannot run.
pub fn skip_unless_root(test: &str, why: &str) -> bool {
    if tribune_testkit::is_root() {
        return false;
    }
    tribune_testkit::say_skipped(&format!("{test}: not root ({why})"));
    true
}

/// Writes a launch allow-list to `dir/launch-policy.toml` allowing `programs` (absolute paths,
/// hashed now) with any arguments; agents launch nothing without one.
pub fn write_launch_policy(dir: &std::path::Path, programs: &[&str]) -> PathBuf {
    tribune_bench::write_launch_policy(dir, programs).expect("write the launch allow-list")
}

/// The controllers (through `Deref`: `nodes`, `dir`, `tls_dir`, `running()`, `logs()`, …)
/// and an HTTP client for them.
pub struct Cluster {
    pub procs: LocalCluster,
    pub http: reqwest::Client,
}

impl std::ops::Deref for Cluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.procs
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.procs
    }
}

fn options(extra: &[&str], tls: bool) -> Options {
    let mut o = Options::new(BIN);
    o.tls = tls;
    o.extra = extra.iter().map(|s| s.to_string()).collect();
    o.env = vec![(
        "RUST_LOG".into(),
        "warn,tribune_controller=info,openraft=warn".into(),
    )];
    o
}

impl Cluster {
    fn with(procs: LocalCluster) -> Self {
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(15));
        if let Some(dir) = &procs.tls_dir {
            let files = tribune_testkit::tls::client_files(dir);
            let tls = tribune_tls::ClientTls::from_files(&files).expect("client tls");
            http = http
                .use_preconfigured_tls(tls.rustls_config(&[b"http/1.1"]).expect("rustls config"));
        }
        Self {
            procs,
            http: http.build().expect("client"),
        }
    }

    pub fn empty(extra: &[&str]) -> Self {
        Self::with(LocalCluster::empty(options(extra, false)).expect("an empty cluster"))
    }

    /// No controllers yet; those added will run with mTLS from this cluster's own CA.
    pub fn empty_tls(extra: &[&str]) -> Self {
        Self::with(LocalCluster::empty(options(extra, true)).expect("an empty TLS cluster"))
    }

    /// Starts `n` controllers that form one cluster (ids 1..=n).
    pub fn start(n: u64, extra: &[&str]) -> Self {
        Self::with(LocalCluster::start(options(extra, false), n).expect("start the cluster"))
    }

    /// Starts `n` controllers with mTLS that form one cluster (ids 1..=n).
    pub fn start_tls(n: u64, extra: &[&str]) -> Self {
        Self::with(LocalCluster::start(options(extra, true), n).expect("start the TLS cluster"))
    }

    /// Starts one more controller with the given extra arguments.
    pub fn add_node(&mut self, id: u64, addr: String, args: Vec<String>) {
        self.procs
            .add_node(id, addr, args)
            .unwrap_or_else(|e| panic!("start controller {id}: {e}"));
    }

    pub fn kill9(&mut self, id: u64) {
        self.procs
            .kill9(id)
            .unwrap_or_else(|e| panic!("kill -9 controller {id}: {e}"));
    }

    pub fn restart(&mut self, id: u64) {
        self.procs
            .restart(id)
            .unwrap_or_else(|e| panic!("restart controller {id}: {e}"));
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("{}://{}{}", self.scheme(), self.nodes[&id].addr, path)
    }

    pub fn endpoints(&self) -> String {
        self.endpoint_list().join(",")
    }

    pub async fn get_json(&self, id: u64, path: &str) -> Option<(u16, Value)> {
        let r = self.http.get(self.url(id, path)).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// PUT `body` as JSON to `path` on node `id`, retrying only what applied nothing (503,
    /// connection refused) until [`DEADLINE`]; panics with the status and body otherwise.
    pub async fn put_json(&self, id: u64, path: &str, body: Value) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let r = self.http.put(self.url(id, path)).json(&body).send().await;
            match r {
                Ok(r) if r.status().is_success() => return,
                Ok(r) if r.status().as_u16() == 503 && Instant::now() < deadline => {}
                Ok(r) => panic!(
                    "PUT {path}: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ),
                Err(e) if e.is_connect() && Instant::now() < deadline => {}
                Err(e) => panic!("PUT {path}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until some running node reports a leader that every running node agrees on.
    pub async fn wait_leader(&self) -> u64 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut leaders = vec![];
            for id in self.running() {
                if let Some((200, v)) = self.get_json(id, "/v1/cluster").await {
                    leaders.push(v["leader"].as_u64());
                }
            }
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && self.running().contains(l)
            {
                return *l;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {DEADLINE:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// PUT a policy on node `id`. Retries only answers that say nothing was applied
    /// (connection refused, no leader). Returns the final status and body.
    pub async fn put_policy(
        &self,
        id: u64,
        name: &str,
        source: &str,
        if_match: Option<u64>,
    ) -> (u16, Value) {
        let headers: Vec<(&str, String)> = if_match
            .map(|v| ("if-match", format!("\"{v}\"")))
            .into_iter()
            .collect();
        self.put_policy_with(id, name, source, &headers).await
    }

    /// [`Cluster::put_policy`] with these request headers (`if-match`, `idempotency-key`, …).
    pub async fn put_policy_with(
        &self,
        id: u64,
        name: &str,
        source: &str,
        headers: &[(&str, String)],
    ) -> (u16, Value) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut req = self
                .http
                .put(self.url(id, &format!("/v1/policies/{name}")))
                .json(&json!({"source": source}));
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    let retry = status == 503
                        && body["type"]
                            .as_str()
                            .is_some_and(|t| t.ends_with("/no-leader"));
                    if !retry || Instant::now() > deadline {
                        return (status, body);
                    }
                }
                Err(e) if e.is_connect() && Instant::now() < deadline => {}
                Err(e) => return (0, json!({"error": e.to_string()})),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Linearizable GET of a policy from node `id`, retrying 503s.
    pub async fn get_policy(&self, id: u64, name: &str) -> (u16, Value) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.get_json(id, &format!("/v1/policies/{name}")).await {
                Some((503, _)) | None if Instant::now() < deadline => {}
                Some(r) => return r,
                None => return (0, Value::Null),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the log holds `n` registered tree-head keys (one per controller that ever
    /// started), as the first running node serves them.
    pub async fn wait_log_keys(&self, n: usize) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(&id) = self.running().first()
                && let Some((200, v)) = self.get_json(id, "/v1/log/keys").await
                && v.as_array().map(Vec::len) == Some(n)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not {n} log keys registered\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `tribune ARGS` against this cluster (its endpoints, its client certificate, a 60 s
    /// deadline), with no `XDG_STATE_HOME` (a verb's state file is named explicitly).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(BIN)
            .args(args)
            .args(["--endpoint", &self.endpoints(), "--timeout-secs", "60"])
            .args(self.tls_args())
            .env_remove("XDG_STATE_HOME")
            .output()
            .expect("run tribune")
    }

    /// PUT a process enclave `id` (tenant `id`, simulated TEE) placed on `host` running `cmd`.
    pub async fn put_process_enclave(&self, node: u64, id: &str, host: &str, cmd: &[&str]) {
        self.put_json(
            node,
            &format!("/v1/enclaves/{id}"),
            json!({"id": id, "tenant": id, "tee": "sim",
                   "placement": {"host": host, "epoch": 1},
                   "launch": {"process": {"cmd": cmd}}}),
        )
        .await;
    }

    /// Status of one node as it reports itself.
    pub async fn node_status(&self, id: u64) -> Option<Value> {
        let (_, v) = self.get_json(id, "/v1/cluster").await?;
        v["members"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["status"].clone())
    }

    /// Every attestation-log entry as node `id` has it (paged, local read), or `None` if it
    /// does not answer.
    pub async fn log_entries(&self, id: u64) -> Option<Vec<Value>> {
        let mut all = Vec::new();
        let mut start = 0u64;
        loop {
            let path = format!(
                "/v1/log/entries?start={start}&end={}&stale=true",
                start + 999
            );
            let (status, v) = self.get_json(id, &path).await?;
            if status != 200 {
                return None;
            }
            all.extend(v["entries"].as_array().cloned().unwrap_or_default());
            match v["next"].as_u64() {
                Some(n) if n > start => start = n,
                _ => return Some(all),
            }
        }
    }
}

/// A finished command's exit status and output, for an assertion's message.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Starts a real `tribune agent` for `host` with its own certificate from the cluster's CA
/// (mTLS, as in production), streaming to `controllers` in that order, with `extra` arguments;
/// its data dir and log are `agent-INSTANCE` under the cluster's dir. Stopped with SIGTERM
/// when dropped. It runs as instance `INSTANCE-PID` ([`AgentProcess::instance`]: its cgroups
/// and namespaces): the same test run from two checkouts at once on one host must not share
/// them, nor clean up each other's.
///
/// [`AgentProcess::instance`]: tribune_testkit::agent::AgentProcess::instance
pub fn start_agent(
    c: &Cluster,
    instance: &str,
    host: &str,
    controllers: Vec<String>,
    extra: Vec<String>,
) -> tribune_testkit::agent::AgentProcess {
    let dir = c.dir.path();
    let tls_dir = c.tls_dir.clone().expect("a TLS cluster");
    issue(
        &tls_dir,
        &tribune_tls::PeerIdentity::Agent {
            host: host.to_string(),
        },
    );
    tribune_testkit::agent::AgentProcess::start(&tribune_testkit::agent::AgentOptions {
        binary: BIN.into(),
        instance: format!("{instance}-{}", std::process::id()),
        host: host.to_string(),
        data_dir: dir.join(format!("agent-{instance}")),
        launch_policy: write_launch_policy(dir, &["/bin/sh"]),
        controllers,
        tls_dir: Some(tls_dir),
        extra,
        env: Vec::new(),
        log: dir.join(format!("agent-{instance}.log")),
        netns: None,
    })
    .expect("spawn agent")
}
