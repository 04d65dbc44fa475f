//! The agent's error type: one enum a caller can match on, with messages that say what to do.

use std::io;
use std::path::PathBuf;

/// Everything the agent library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "the host agent must run as root (effective uid {euid}): cgroups, network namespaces and tc need it"
    )]
    NotRoot { euid: u32 },
    #[error(
        "cgroup hierarchy missing: {what} (looked for {path}); mount it or run on a host with cgroup v1 or v2 controllers"
    )]
    MissingHierarchy { what: String, path: PathBuf },
    /// `--cgroup-parent delegated` cannot work here (`cgroup::delegated`).
    #[error("delegated cgroup subtree: {0}")]
    Delegation(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid {what} {input:?}: {why}")]
    Parse {
        what: &'static str,
        input: String,
        why: String,
    },
    #[error("plan version {offered} is older than the applied version {applied}: refused")]
    StalePlan { offered: u64, applied: u64 },
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
    #[error("invalid agent configuration: {0}")]
    InvalidConfig(crate::launch::UsersError),
    /// A launch spec the host's allow-list does not let through (boxed: it is large and
    /// rare, and every `Result` of the agent carries this enum).
    #[error(transparent)]
    LaunchRefused(Box<crate::launch::LaunchRefused>),
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error(
        "required tool {tool:?} not found ({why}); install it (e.g. apt-get install {package})"
    )]
    MissingTool {
        tool: String,
        package: String,
        why: String,
    },
    #[error("enclave {0:?} is not known to this agent")]
    UnknownEnclave(String),
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("runtime: {0}")]
    Runtime(String),
    #[error("control socket: {0}")]
    Control(String),
}

impl From<crate::launch::LaunchRefused> for AgentError {
    fn from(r: crate::launch::LaunchRefused) -> Self {
        AgentError::LaunchRefused(Box::new(r))
    }
}

impl AgentError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        AgentError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
