//! Test harness: real `tribune controller` processes on loopback, each with its own ports and
//! data dir, and a small HTTP client that retries only where retrying cannot double-apply.
//!
//! Clusters run `--insecure` unless made with [`Cluster::start_tls`]/[`Cluster::empty_tls`]:
//! those get a CA of their own under the test's temp dir, a certificate per controller and a
//! client certificate for the harness and the CLI ([`Cluster::tls_args`]).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_tribune");

/// Generous: 2 shared cores, several processes fsyncing.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// True (after saying `skipped: TEST: not root (WHY)` on stderr) when this test cannot run.
pub fn skip_unless_root(test: &str, why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return false;
    }
    // Straight to stderr: the harness captures eprintln! of passing tests.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {test}: not root ({why})");
    true
}

/// Writes a launch allow-list to `dir/launch-policy.toml` allowing `programs` (absolute paths,
/// hashed now) with any arguments; agents launch nothing without one.
pub fn write_launch_policy(dir: &std::path::Path, programs: &[&str]) -> PathBuf {
    let mut list = tribune_agent::AllowList::default();
    for p in programs {
        list.allow_program(p, None)
            .expect("hash an allowed program");
    }
    let path = dir.join("launch-policy.toml");
    list.write(&path).expect("write the launch allow-list");
    path
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

pub struct Node {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    pub args: Vec<String>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Node>,
    pub http: reqwest::Client,
    pub extra: Vec<String>,
    /// The cluster's CA directory when it runs with TLS.
    pub tls_dir: Option<PathBuf>,
}

/// Name of the harness's (admin) client certificate in a TLS cluster's CA directory.
pub const TEST_CLIENT: &str = "test";
/// File stem of that certificate.
pub const TEST_CLIENT_STEM: &str = "admin-test";

/// Creates a CA in `dir` and issues the harness's client certificate.
pub fn make_ca(dir: &std::path::Path) {
    tribune_tls::ca::init(dir, 30).expect("ca init");
    issue(
        dir,
        &tribune_tls::PeerIdentity::User {
            role: tribune_tls::UserRole::Admin,
            name: TEST_CLIENT.into(),
            tenant: None,
        },
    );
}

/// Issues a certificate for `id` from the CA in `dir` (unless it exists) and returns its files.
pub fn issue(dir: &std::path::Path, id: &tribune_tls::PeerIdentity) -> tribune_tls::TlsFiles {
    let files = tribune_tls::TlsFiles::in_dir(dir, &id.file_stem());
    if !files.cert.exists() {
        tribune_tls::ca::issue(dir, dir, id, &Default::default()).expect("issue");
    }
    files
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // A failing test keeps its controllers' data directories and logs for the post-mortem.
        if std::thread::panicking() {
            let kept = self.dir.path().to_path_buf();
            let _ = std::mem::replace(
                &mut self.dir,
                tempfile::Builder::new()
                    .prefix("tribune-test-")
                    .tempdir()
                    .unwrap_or_else(|_| tempfile::tempdir().expect("temp dir")),
            )
            .keep();
            eprintln!(
                "kept the failed test's cluster directory: {}",
                kept.display()
            );
        }
    }
}

impl Cluster {
    pub fn empty(extra: &[&str]) -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("tribune-test-")
                .tempdir()
                .expect("temp dir"),
            nodes: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("client"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls_dir: None,
        }
    }

    /// No controllers yet; those added will run with mTLS from this cluster's own CA.
    pub fn empty_tls(extra: &[&str]) -> Self {
        let mut c = Self::empty(extra);
        let dir = c.dir.path().join("tls");
        make_ca(&dir);
        let files = tribune_tls::TlsFiles::in_dir(&dir, TEST_CLIENT_STEM);
        let tls = tribune_tls::ClientTls::from_files(&files).expect("client tls");
        c.http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.rustls_config(&[b"http/1.1"]).expect("rustls config"))
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client");
        c.tls_dir = Some(dir);
        c
    }

    /// Starts `n` controllers that form one cluster (ids 1..=n).
    pub fn start(n: u64, extra: &[&str]) -> Self {
        Self::start_in(Self::empty(extra), n)
    }

    /// Starts `n` controllers with mTLS that form one cluster (ids 1..=n).
    pub fn start_tls(n: u64, extra: &[&str]) -> Self {
        Self::start_in(Self::empty_tls(extra), n)
    }

    fn start_in(mut c: Self, n: u64) -> Self {
        let addrs: Vec<(u64, String)> = (1..=n)
            .map(|i| (i, format!("127.0.0.1:{}", free_port())))
            .collect();
        for (id, addr) in &addrs {
            let mut args = vec![];
            for (pid, paddr) in &addrs {
                args.push("--peer".to_string());
                args.push(format!("{pid}={paddr}"));
            }
            c.add_node(*id, addr.clone(), args);
        }
        c
    }

    /// Starts one more controller with the given extra arguments.
    pub fn add_node(&mut self, id: u64, addr: String, args: Vec<String>) {
        let data_dir = self.dir.path().join(format!("node-{id}"));
        let log = self.dir.path().join(format!("node-{id}.log"));
        let mut n = Node {
            id,
            addr,
            data_dir,
            log,
            child: None,
            args,
        };
        self.spawn(&mut n);
        self.nodes.insert(id, n);
    }

    fn spawn(&self, n: &mut Node) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.args([
            "controller",
            "--id",
            &n.id.to_string(),
            "--listen",
            &n.addr,
            "--data-dir",
        ])
        .arg(&n.data_dir);
        match &self.tls_dir {
            Some(dir) => {
                issue(dir, &tribune_tls::PeerIdentity::Controller { id: n.id });
                cmd.arg("--tls-dir").arg(dir);
            }
            None => {
                cmd.arg("--insecure");
            }
        }
        let child = cmd
            .args(&n.args)
            .args(&self.extra)
            .env("RUST_LOG", "warn,tribune_controller=info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn controller");
        n.child = Some(child);
    }

    pub fn kill9(&mut self, id: u64) {
        let n = self.nodes.get_mut(&id).expect("node");
        if let Some(mut c) = n.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    pub fn restart(&mut self, id: u64) {
        let mut n = self.nodes.remove(&id).expect("node");
        assert!(n.child.is_none(), "node {id} is still running");
        self.spawn(&mut n);
        self.nodes.insert(id, n);
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls_dir.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("{}://{}{}", self.scheme(), self.nodes[&id].addr, path)
    }

    pub fn endpoints(&self) -> String {
        self.nodes
            .values()
            .map(|n| format!("{}://{}", self.scheme(), n.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `--ca … --cert … --key …` for CLI client verbs (empty without TLS).
    pub fn tls_args(&self) -> Vec<String> {
        let Some(dir) = &self.tls_dir else {
            return vec![];
        };
        let f = tribune_tls::TlsFiles::in_dir(dir, TEST_CLIENT_STEM);
        vec![
            "--ca".into(),
            f.ca.display().to_string(),
            "--cert".into(),
            f.cert.display().to_string(),
            "--key".into(),
            f.key.display().to_string(),
        ]
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in self.nodes.values() {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            s.push_str(&format!(
                "--- node {} ---\n{}\n",
                n.id,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        s
    }

    pub async fn get_json(&self, id: u64, path: &str) -> Option<(u16, Value)> {
        let r = self.http.get(self.url(id, path)).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.unwrap_or(Value::Null)))
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
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut req = self
                .http
                .put(self.url(id, &format!("/v1/policies/{name}")))
                .json(&json!({"source": source}));
            if let Some(v) = if_match {
                req = req.header("if-match", format!("\"{v}\""));
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
