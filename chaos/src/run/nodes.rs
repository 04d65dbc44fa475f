//! The run's controllers: real `tribune controller` processes, each started inside its own
//! network namespace (`ip netns exec NS tribune controller …`: `ip` enters the namespace and
//! execs, so the child's pid is the controller's) and listening on its own address.
//!
//! Every child gets `PR_SET_PDEATHSIG(SIGKILL)`: if the harness itself dies (kill -9, abort),
//! the kernel kills its controllers. [`Nodes`] kills and reaps them on drop.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::Error;
use super::net::Slot;

/// The port every controller listens on, in its own namespace.
pub const PORT: u16 = 7000;

pub struct Node {
    pub id: u64,
    pub slot: Slot,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
    /// The file the `clock-offset` test hook reads this controller's clock offset from (ms).
    pub clock_file: PathBuf,
}

impl Node {
    pub fn addr(&self) -> String {
        format!("{}:{PORT}", self.slot.ip)
    }
}

pub struct Nodes {
    pub binary: PathBuf,
    pub nodes: Vec<Node>,
    peers: Vec<String>,
    env: Vec<(String, String)>,
}

impl Nodes {
    /// Controllers 1..=n in `slots`, their data and logs under `dir`; not started yet.
    pub fn new(binary: &Path, slots: &[Slot], dir: &Path, env: Vec<(String, String)>) -> Self {
        let nodes: Vec<Node> = slots
            .iter()
            .enumerate()
            .map(|(i, s)| Node {
                id: i as u64 + 1,
                slot: s.clone(),
                data_dir: dir.join(format!("node-{}", i + 1)),
                log: dir.join(format!("node-{}.log", i + 1)),
                child: None,
                paused: false,
                clock_file: dir.join(format!("node-{}.clock-offset-ms", i + 1)),
            })
            .collect();
        let peers = nodes
            .iter()
            .flat_map(|n| ["--peer".to_string(), format!("{}={}", n.id, n.addr())])
            .collect();
        Self {
            binary: binary.to_path_buf(),
            nodes,
            peers,
            env,
        }
    }

    /// Starts controller at `idx` (nothing if it runs).
    pub fn start(&mut self, idx: usize) -> Result<(), Error> {
        let n = &self.nodes[idx];
        if n.child.is_some() {
            return Ok(());
        }
        let (out, err) = (open_log(&n.log)?, open_log(&n.log)?);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &n.slot.ns])
            .arg(&self.binary)
            // Its own address, which it also advertises to its peers.
            .args(["controller", "--id", &n.id.to_string(), "--listen"])
            .arg(n.addr())
            .arg("--data-dir")
            .arg(&n.data_dir)
            .arg("--insecure")
            // The agents of the `agents` and `mixed` runs attest with a simulated TEE.
            .arg("--allow-sim-evidence")
            .args(&self.peers)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                tribune_controller::test_fault::CLOCK_FILE_VAR,
                &n.clock_file,
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::Setup(format!("starting controller {}: {e}", n.id)))?;
        let n = &mut self.nodes[idx];
        n.child = Some(child);
        n.paused = false;
        Ok(())
    }

    /// Sets controller `idx`'s clock offset (read by the `clock-offset` test hook).
    pub fn set_clock_offset(&self, idx: usize, ms: i64) -> Result<(), Error> {
        let f = &self.nodes[idx].clock_file;
        // Written whole and renamed, so the controller never reads half a number.
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, ms.to_string())
            .and_then(|()| std::fs::rename(&tmp, f))
            .map_err(|e| Error::Setup(format!("writing {}: {e}", f.display())))
    }

    /// kill -9 and reap (also a paused one).
    pub fn kill9(&mut self, idx: usize) {
        let n = &mut self.nodes[idx];
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        n.paused = false;
    }

    fn signal(&mut self, idx: usize, sig: libc::c_int) {
        if let Some(c) = &self.nodes[idx].child {
            // SAFETY: kill(2) on our own, not yet reaped, child.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }

    /// SIGSTOP: the slow-not-dead node.
    pub fn pause(&mut self, idx: usize) {
        self.signal(idx, libc::SIGSTOP);
        self.nodes[idx].paused = self.nodes[idx].child.is_some();
    }

    /// SIGCONT.
    pub fn resume(&mut self, idx: usize) {
        self.signal(idx, libc::SIGCONT);
        self.nodes[idx].paused = false;
    }

    /// Controllers that exited by themselves since the last look: (id, how).
    pub fn reap_exited(&mut self) -> Vec<(u64, String)> {
        let mut gone = vec![];
        for n in &mut self.nodes {
            if let Some(c) = &mut n.child
                && let Ok(Some(status)) = c.try_wait()
            {
                gone.push((n.id, status.to_string()));
                n.child = None;
            }
        }
        gone
    }

    /// `http://ADDR` of every controller, by index.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.addr()))
            .collect()
    }

    /// The last `lines` lines of every controller's log.
    pub fn logs(&self, lines: usize) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            s.push_str(&format!(
                "--- controller {} ({}) ---\n{}\n",
                n.id,
                n.slot.ip,
                all[all.len().saturating_sub(lines)..].join("\n")
            ));
        }
        s
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            // A stopped process dies of SIGKILL too; SIGCONT first does no harm.
            self.resume(i);
            self.kill9(i);
        }
    }
}

/// Each controller's data dir on a small tmpfs of its own, so one disk can be filled up
/// ([`Disks::fill`]) without touching the machine's. The tmpfs are named `<tag>d<I>` (the
/// run's tag carries the harness's pid, for the stale sweep) and lazily unmounted on drop.
pub struct Disks {
    mounts: Vec<PathBuf>,
}

/// Each controller's tmpfs.
pub const DISK_SIZE: &str = "256m";

impl Disks {
    pub fn mount(tag: &str, nodes: &Nodes) -> Result<Self, Error> {
        let mut d = Disks { mounts: vec![] };
        for (i, n) in nodes.nodes.iter().enumerate() {
            std::fs::create_dir_all(&n.data_dir)
                .map_err(|e| Error::Setup(format!("creating {}: {e}", n.data_dir.display())))?;
            let dir = n.data_dir.to_string_lossy().into_owned();
            super::net::cmd(
                "mount",
                &[
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={DISK_SIZE},mode=0700"),
                    &format!("{tag}d{i}"),
                    &dir,
                ],
            )?;
            d.mounts.push(n.data_dir.clone());
        }
        Ok(d)
    }

    fn filler(&self, idx: usize) -> PathBuf {
        self.mounts[idx].join("chaos-filler")
    }

    /// Fills controller `idx`'s disk: writes zeros until the filesystem says it is full.
    pub fn fill(&self, idx: usize) -> Result<(), Error> {
        use std::io::Write;
        let path = self.filler(idx);
        let mut f = std::fs::File::create(&path)
            .map_err(|e| Error::Setup(format!("creating {}: {e}", path.display())))?;
        let chunk = vec![0u8; 1 << 20];
        loop {
            match f.write(&chunk) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(()),
                Err(e) => return Err(Error::Setup(format!("filling {}: {e}", path.display()))),
            }
        }
    }

    /// Frees what [`Disks::fill`] took.
    pub fn free(&self, idx: usize) {
        let _ = std::fs::remove_file(self.filler(idx));
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        for m in &self.mounts {
            let _ = super::net::cmd("umount", &["-l", &m.to_string_lossy()]);
        }
    }
}

/// `path` opened for appending (a child's stdout or stderr; the log outlives restarts).
pub fn open_log(path: &Path) -> Result<std::fs::File, Error> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Setup(format!("opening {}: {e}", path.display())))
}
