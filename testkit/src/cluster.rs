//! A local cluster of real `tribune controller` processes on loopback, each with its own port,
//! data dir and log under the cluster's [`TestDir`]. Controllers run `--insecure` unless the
//! cluster has TLS ([`Options::tls`]): then a CA of its own in `DIR/tls` issues a certificate
//! per controller and the harness's client certificate ([`crate::tls`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Error, TestDir, process, tls};

/// Where the controllers' stdout and stderr go.
#[derive(Debug, Clone)]
pub enum Logs {
    /// `DIR/node-ID.log` in the cluster's own directory (appended across restarts).
    ClusterDir,
    /// `LOGDIR/controller-ID.log` (appended across restarts).
    Dir(PathBuf),
    /// Nowhere.
    Discard,
}

/// How a cluster is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `tribune` binary.
    pub binary: PathBuf,
    /// Prefix of the cluster's temp dir.
    pub prefix: String,
    /// mTLS from a CA of the cluster's own; otherwise `--insecure`.
    pub tls: bool,
    /// Arguments every controller gets after its own.
    pub extra: Vec<String>,
    pub logs: Logs,
    /// Environment of every controller (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl Options {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            prefix: "tribune-test-".into(),
            tls: false,
            extra: vec![],
            logs: Logs::ClusterDir,
            env: vec![],
        }
    }
}

/// One controller.
pub struct Node {
    pub id: u64,
    /// `IP:PORT` (`127.0.0.1:PORT` unless started [`LocalCluster::start_on`] another address).
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// Its own arguments (`--peer …`, `--init`, …), before the cluster's extra ones.
    pub args: Vec<String>,
}

pub struct LocalCluster {
    pub opts: Options,
    pub dir: TestDir,
    pub nodes: BTreeMap<u64, Node>,
    /// The cluster's CA directory when it runs with TLS.
    pub tls_dir: Option<PathBuf>,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                process::kill9(&mut c);
            }
        }
        // `dir` (dropped after this) keeps itself when the thread is panicking.
    }
}

impl LocalCluster {
    /// No controllers yet.
    pub fn empty(opts: Options) -> Result<Self, Error> {
        let dir = TestDir::try_new(&opts.prefix)?;
        let tls_dir = if opts.tls {
            let d = dir.path().join("tls");
            tls::try_make_ca(&d)?;
            Some(d)
        } else {
            None
        };
        Ok(Self {
            opts,
            dir,
            nodes: BTreeMap::new(),
            tls_dir,
        })
    }

    /// `n` controllers (ids 1..=n) that form one cluster: each names all of them `--peer`.
    pub fn start(opts: Options, n: u64) -> Result<Self, Error> {
        Self::start_on(opts, n, std::net::Ipv4Addr::LOCALHOST)
    }

    /// [`LocalCluster::start`] with every controller listening on `ip` (an address of this
    /// host, e.g. a bridge's that agents in network namespaces reach).
    pub fn start_on(opts: Options, n: u64, ip: std::net::Ipv4Addr) -> Result<Self, Error> {
        let mut c = Self::empty(opts)?;
        let mut addrs = vec![];
        for id in 1..=n {
            addrs.push((id, format!("{ip}:{}", crate::try_free_port()?)));
        }
        let peers: Vec<String> = addrs
            .iter()
            .flat_map(|(id, addr)| ["--peer".to_string(), format!("{id}={addr}")])
            .collect();
        for (id, addr) in addrs {
            c.add_node(id, addr, peers.clone())?;
        }
        Ok(c)
    }

    /// Starts one more controller `id` on `addr` with its own arguments `args`.
    pub fn add_node(&mut self, id: u64, addr: String, args: Vec<String>) -> Result<(), Error> {
        let log = match &self.opts.logs {
            Logs::ClusterDir => self.dir.path().join(format!("node-{id}.log")),
            Logs::Dir(d) => d.join(format!("controller-{id}.log")),
            Logs::Discard => PathBuf::from("/dev/null"),
        };
        let mut n = Node {
            id,
            addr,
            data_dir: self.dir.path().join(format!("node-{id}")),
            log,
            child: None,
            args,
        };
        self.spawn(&mut n)?;
        self.nodes.insert(id, n);
        Ok(())
    }

    fn spawn(&self, n: &mut Node) -> Result<(), Error> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .map_err(Error::io(format!("opening {}", n.log.display())))?;
        let log2 = log
            .try_clone()
            .map_err(Error::io(format!("opening {}", n.log.display())))?;
        let mut cmd = Command::new(&self.opts.binary);
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
                tls::try_issue(dir, &tribune_tls::PeerIdentity::Controller { id: n.id })?;
                cmd.arg("--tls-dir").arg(dir);
            }
            None => {
                cmd.arg("--insecure");
            }
        }
        let child = cmd
            .args(&n.args)
            .args(&self.opts.extra)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .spawn()
            .map_err(Error::io(format!(
                "starting controller {} ({})",
                n.id,
                self.opts.binary.display()
            )))?;
        n.child = Some(child);
        Ok(())
    }

    fn node_mut(&mut self, id: u64) -> Result<&mut Node, Error> {
        self.nodes.get_mut(&id).ok_or(Error::NoNode(id))
    }

    /// kill -9 controller `id` and reap it (nothing if it is not running).
    pub fn kill9(&mut self, id: u64) -> Result<(), Error> {
        if let Some(mut c) = self.node_mut(id)?.child.take() {
            process::kill9(&mut c);
        }
        Ok(())
    }

    /// Stops controller `id` cleanly: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, id: u64, grace: Duration) -> Result<Option<process::Stopped>, Error> {
        Ok(self
            .node_mut(id)?
            .child
            .take()
            .map(|mut c| process::stop(&mut c, grace)))
    }

    /// Starts stopped controller `id` again, with the same arguments, data dir and log.
    pub fn restart(&mut self, id: u64) -> Result<(), Error> {
        let mut n = self.nodes.remove(&id).ok_or(Error::NoNode(id))?;
        let r = if n.child.is_some() {
            Err(Error::StillRunning(id))
        } else {
            self.spawn(&mut n)
        };
        self.nodes.insert(id, n);
        r
    }

    /// Ids of the controllers running now.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// (id, pid) of every running controller.
    pub fn pids(&self) -> Vec<(u64, u32)> {
        self.nodes
            .values()
            .filter_map(|n| n.child.as_ref().map(|c| (n.id, c.id())))
            .collect()
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls_dir.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `SCHEME://ADDR` of every controller, by id.
    pub fn endpoint_list(&self) -> Vec<String> {
        self.nodes
            .values()
            .map(|n| format!("{}://{}", self.scheme(), n.addr))
            .collect()
    }

    /// `--ca … --cert … --key …` for CLI client verbs (empty without TLS).
    pub fn tls_args(&self) -> Vec<String> {
        self.tls_dir
            .as_deref()
            .map(tls::client_args)
            .unwrap_or_default()
    }

    /// The last 40 lines of each controller's log.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in self.nodes.values() {
            s.push_str(&format!("--- node {} ---\n{}\n", n.id, tail(&n.log, 40)));
        }
        s
    }
}

/// The last `lines` lines of the file at `path` (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options whose "binary" is a script that logs its arguments and sleeps.
    fn fake(dir: &Path, tls: bool) -> Options {
        let bin = dir.join("fake-tribune");
        std::fs::write(&bin, "#!/bin/sh\necho \"$@\"\nexec sleep 30\n").expect("script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut o = Options::new(bin);
        o.tls = tls;
        o.extra = vec!["--extra".into()];
        o
    }

    #[test]
    fn nodes_get_own_ports_dirs_peers_and_stop() {
        let bin = TestDir::new("tribune-testkit-bin-");
        let mut c = LocalCluster::start(fake(bin.path(), false), 3).expect("start");
        assert_eq!(c.running(), vec![1, 2, 3]);
        let addrs: std::collections::HashSet<&str> =
            c.nodes.values().map(|n| n.addr.as_str()).collect();
        assert_eq!(addrs.len(), 3, "one port each");
        assert_eq!(c.endpoint_list().len(), 3);
        assert!(c.endpoint_list()[0].starts_with("http://127.0.0.1:"));
        assert!(c.tls_args().is_empty());
        let args = crate::wait::until(
            "node 1 to log its arguments",
            crate::DEADLINE,
            Duration::from_millis(10),
            || Some(tail(&c.nodes[&1].log, 1)).filter(|l| !l.is_empty()),
        )
        .expect("logged");
        assert!(
            args.starts_with("controller --id 1 --listen 127.0.0.1:"),
            "{args}"
        );
        assert!(
            args.contains("--insecure") && args.ends_with("--extra"),
            "{args}"
        );
        for n in c.nodes.values() {
            assert!(
                args.contains(&format!("--peer {}={}", n.id, n.addr)),
                "{args}"
            );
        }

        assert!(matches!(c.restart(2), Err(Error::StillRunning(2))));
        c.kill9(2).expect("kill -9");
        assert_eq!(c.running(), vec![1, 3]);
        c.restart(2).expect("restart");
        assert_eq!(c.running(), vec![1, 2, 3]);
        // The script does not trap SIGTERM: it exits at once.
        let stopped = c.stop(3, Duration::from_secs(20)).expect("stop");
        assert!(matches!(stopped, Some(process::Stopped::Exited(_))));
        assert_eq!(c.pids().len(), 2);
        assert!(matches!(c.kill9(9), Err(Error::NoNode(9))));
        assert!(c.logs().contains("--- node 3 ---"));
    }

    #[test]
    fn a_tls_cluster_has_its_own_ca_and_certificates() {
        let bin = TestDir::new("tribune-testkit-bin-");
        let c = LocalCluster::start(fake(bin.path(), true), 1).expect("start");
        let tls_dir = c.tls_dir.clone().expect("a CA");
        assert_eq!(c.scheme(), "https");
        assert_eq!(c.tls_args().len(), 6);
        let cert = tribune_tls::TlsFiles::in_dir(
            &tls_dir,
            &tribune_tls::PeerIdentity::Controller { id: 1 }.file_stem(),
        );
        assert!(cert.cert.exists(), "controller 1's certificate");
    }
}
