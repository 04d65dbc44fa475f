//! Enclave runtimes behind one trait: `process` (a command as a simulated enclave) and `qemu`
//! (a VM controlled over QMP). The agent prepares the enclave's cgroup and network namespace;
//! a runtime starts the workload inside them — only a [`CheckedLaunch`], never a raw spec —
//! confined and unprivileged from its first instruction ([`confine`]), and drives its
//! lifecycle.

pub mod confine;
pub mod migration;
pub mod process;
pub mod qemu;
pub mod qemu_msg;
pub mod qmp;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::cgroup::CgroupEnforcer;
use crate::error::{AgentError, Result};
use crate::launch::CheckedLaunch;
use crate::plan::LaunchSpec;

pub use confine::RunAs;
pub(crate) use confine::{PrivilegeDrop, spawn_confined};

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

/// Everything a runtime needs to start (or adopt) one enclave, besides what to launch.
pub struct LaunchContext {
    pub identity: Identity,
    /// Whom it runs as.
    pub run_as: RunAs,
    /// Private directory for sockets and firmware (inside the agent's data dir).
    pub work_dir: PathBuf,
    pub cgroups: Arc<dyn CgroupEnforcer>,
    /// Extra environment (e.g. the MPS GPU share).
    pub env: Vec<(String, String)>,
    /// The target of a live migration: QEMU waits for the incoming state on this URI
    /// (`tcp:ADDR:PORT`) and stays paused after it until `cont` (`runtime::migration`).
    pub incoming: Option<String>,
    /// The enclave's mediator socket, bound by the agent, when it has one: a QEMU guest's
    /// message port connects its chardev here (`qemu_msg`; a process finds it in `env`).
    pub msg_socket: Option<PathBuf>,
    /// A VM's NIC in its network namespace (`crate::net_vm`); processes have none.
    pub nic: Option<crate::net_vm::VmNic>,
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
    /// Starts what the host's allow-list let through.
    fn launch(&self, ctx: LaunchContext, launch: CheckedLaunch) -> BoxFut<'_, Box<dyn Enclave>>;
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
        RuntimeKind::Qemu => Box::new(qemu::QemuRuntime::new(qemu_binary)),
    }
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
