//! Enclave runtimes behind one trait: `process` (a command as a simulated enclave) and `qemu`
//! (a VM controlled over QMP). The agent prepares the enclave's cgroup and network namespace;
//! a runtime starts the workload inside them and drives its lifecycle.

pub mod process;
pub mod qemu;
pub mod qmp;

use std::ffi::CString;
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::cgroup::CgroupEnforcer;
use crate::error::{AgentError, Result};
use crate::plan::LaunchSpec;

/// A boxed future, so the traits stay object-safe.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    Process,
    Qemu,
}

impl RuntimeKind {
    pub fn of(spec: &LaunchSpec) -> RuntimeKind {
        match spec {
            LaunchSpec::Process { .. } => RuntimeKind::Process,
            LaunchSpec::Qemu { .. } => RuntimeKind::Qemu,
        }
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "process" => Ok(RuntimeKind::Process),
            "qemu" => Ok(RuntimeKind::Qemu),
            _ => Err(AgentError::Parse {
                what: "runtime",
                input: s.into(),
                why: "use process or qemu".into(),
            }),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum EnclaveStatus {
    Running,
    Suspended,
    Exited { code: Option<i32> },
}

/// Where an enclave lives: its cgroup and (optionally) network namespace.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Identity {
    pub name: String,
    /// Path below the cgroup root(s), e.g. `tribune/agent/web`.
    pub group: String,
    pub netns: Option<String>,
}

/// Everything a runtime needs to start one enclave.
pub struct LaunchContext {
    pub identity: Identity,
    pub spec: LaunchSpec,
    /// Private directory for sockets and firmware (inside the agent's data dir).
    pub work_dir: PathBuf,
    pub cgroups: Arc<dyn CgroupEnforcer>,
    /// Extra environment (e.g. the MPS GPU share).
    pub env: Vec<(String, String)>,
}

/// A running enclave.
pub trait Enclave: Send {
    fn identity(&self) -> &Identity;
    fn pid(&self) -> Option<u32>;
    fn status(&mut self) -> BoxFut<'_, EnclaveStatus>;
    /// Cheap exit check for the sampling path (no QMP round trip): `Some(code)` once exited.
    fn exit_code(&mut self) -> Result<Option<Option<i32>>>;
    fn suspend(&mut self) -> BoxFut<'_, ()>;
    fn resume(&mut self) -> BoxFut<'_, ()>;
    /// Stops the workload; the agent then removes the cgroup.
    fn stop(&mut self) -> BoxFut<'_, ()>;
}

pub trait Runtime: Send + Sync {
    fn kind(&self) -> RuntimeKind;
    fn launch(&self, ctx: LaunchContext) -> BoxFut<'_, Box<dyn Enclave>>;
    /// Takes over an enclave that survived an agent crash (its cgroup still holds `pids`).
    fn adopt(&self, ctx: LaunchContext, pids: Vec<u32>) -> BoxFut<'_, Box<dyn Enclave>>;
}

/// Exit state of an enclave's main process, shared by the runtimes: a child we launched is
/// waited on; an adopted one (not our child, after an agent restart) is gone when its cgroup is
/// empty. Once seen, the exit is remembered.
pub(crate) fn poll_exit(
    child: &mut Option<tokio::process::Child>,
    exited: &mut Option<Option<i32>>,
    cgroups: &dyn CgroupEnforcer,
    group: &str,
) -> Result<Option<Option<i32>>> {
    if exited.is_some() {
        return Ok(*exited);
    }
    match child {
        Some(c) => {
            if let Some(st) = c
                .try_wait()
                .map_err(|e| AgentError::Runtime(format!("wait: {e}")))?
            {
                *exited = Some(st.code());
            }
        }
        None => {
            if group_empty(cgroups, group) {
                *exited = Some(None);
            }
        }
    }
    Ok(*exited)
}

/// Whether every process of `group` is gone (how adopted enclaves, which are not our
/// children, are seen to exit).
pub(crate) fn group_empty(cgroups: &dyn CgroupEnforcer, group: &str) -> bool {
    cgroups.pids(group).map(|p| p.is_empty()).unwrap_or(true)
}

/// SIGTERM to every process of `group`; true once the group is empty within `grace`.
pub(crate) async fn terminate_group(
    cgroups: &dyn CgroupEnforcer,
    group: &str,
    grace: std::time::Duration,
) -> bool {
    for pid in cgroups.pids(group).unwrap_or_default() {
        // SAFETY: plain syscall; a stale pid is harmless (ESRCH).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if group_empty(cgroups, group) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    group_empty(cgroups, group)
}

/// Builds a runtime.
pub fn new_runtime(kind: RuntimeKind, qemu_binary: PathBuf) -> Box<dyn Runtime> {
    match kind {
        RuntimeKind::Process => Box::new(process::ProcessRuntime),
        RuntimeKind::Qemu => Box::new(qemu::QemuRuntime {
            binary: qemu_binary,
        }),
    }
}

/// Spawns `argv` so that the child joins the cgroups and network namespace *before* `exec`:
/// no instruction of the workload ever runs unconfined, and its later threads inherit both.
pub(crate) fn spawn_confined(
    argv: &[String],
    ctx: &LaunchContext,
    quiet: bool,
) -> Result<tokio::process::Child> {
    let program = argv
        .first()
        .ok_or_else(|| AgentError::Runtime("empty command".into()))?;
    let procs: Vec<CString> = ctx
        .cgroups
        .procs_files(&ctx.identity.group)
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| AgentError::Runtime("cgroup path with NUL".into()))?;
    let netns: Option<OwnedFd> = match &ctx.identity.netns {
        Some(ns) => {
            let p = PathBuf::from("/run/netns").join(ns);
            Some(
                std::fs::File::open(&p)
                    .map_err(|e| AgentError::io("open netns", &p, e))?
                    .into(),
            )
        }
        None => None,
    };
    let netns_fd = netns.as_ref().map(|f| f.as_raw_fd());
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv[1..])
        .envs(ctx.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .stdin(std::process::Stdio::null());
    if quiet {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
    // SAFETY: the closure only makes async-signal-safe syscalls (open, write, close, setns) on
    // memory prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            for p in &procs {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" = the writing process.
                let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(fd) = netns_fd
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| AgentError::Runtime(format!("spawn {program}: {e}")))?;
    drop(netns);
    Ok(child)
}

/// SIGTERM to the process group, SIGKILL after `grace`.
pub(crate) async fn terminate(child: &mut tokio::process::Child, grace: std::time::Duration) {
    if let Some(pid) = child.id() {
        // SAFETY: plain syscall on our own child's process group.
        unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGTERM) };
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
        // SAFETY: as above.
        unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
    }
    let _ = child.kill().await;
}
