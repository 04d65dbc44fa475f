//! What the agent says about itself and what it is asked: status, events, apply reports and
//! local requests. (What it says to the controller link: `crate::link_messages`.)

use serde::Serialize;
use tokio::sync::oneshot;

use crate::cgroup::CgroupVersion;
use crate::collector::Usage;
use crate::launch::Credentials;
use crate::link_messages::RefusedLaunch;
use crate::plan::{EnclavePlan, Plan};
use crate::runtime::{EnclaveStatus, Identity, RuntimeKind};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EventKind {
    PlanApplied {
        version: u64,
        writes: u32,
    },
    PlanRefused {
        version: u64,
        error: String,
    },
    /// The enclave's launch spec broke the host's allow-list: nothing was started for it
    /// (the rest of the plan was applied).
    LaunchRefused {
        version: u64,
        error: String,
    },
    OomKill {
        total: u64,
    },
    /// Usage hit the memory limit and the kernel reclaimed (reported at most once a second).
    MemoryReclaim {
        limit_hits_total: u64,
    },
    Exited {
        code: Option<i32>,
    },
    /// A limit read back differently from the plan and was written again.
    Reenforced {
        what: String,
    },
    ControllerLinkDown {
        keeping_version: Option<u64>,
    },
    ControllerLinkUp,
    /// A step of a live migration (`incoming`, `outgoing`, `migrated away`, `rolled back`, …).
    Migration {
        step: String,
        detail: String,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentEvent {
    pub at_unix_ms: u64,
    pub enclave: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, Serialize)]
pub struct EnclaveReport {
    pub name: String,
    pub status: EnclaveStatus,
    pub pid: Option<u32>,
    pub identity: Identity,
    pub ip: Option<std::net::Ipv4Addr>,
    pub plan: EnclavePlan,
    pub usage: Usage,
    /// Whom it runs as (`None`: the agent's own user, when the agent is not root).
    pub user: Option<Credentials>,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Standalone,
    Up,
    Down,
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentStatus {
    pub instance: String,
    pub runtime: RuntimeKind,
    pub cgroup_version: CgroupVersion,
    pub gpu: String,
    pub applied_version: Option<u64>,
    pub controller_link: LinkState,
    pub enclaves: Vec<EnclaveReport>,
    /// Enclaves of the applied plan that are not running because their launch was refused.
    pub refused: Vec<RefusedLaunch>,
    /// What the launch allow-list lets through (one line).
    pub launch_policy: String,
    pub events: Vec<AgentEvent>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ApplyReport {
    pub version: u64,
    /// Kernel/runtime writes made (0 when the plan was already applied).
    pub writes: u32,
    pub launched: Vec<String>,
    pub stopped: Vec<String>,
    /// New enclaves not launched: the host's allow-list refused their spec.
    pub refused: Vec<RefusedLaunch>,
}

/// A request from the control socket (or a test) to the running agent.
#[derive(Debug)]
pub enum Request {
    Apply(Plan, oneshot::Sender<Result<ApplyReport, String>>),
    Status(oneshot::Sender<AgentStatus>),
}
