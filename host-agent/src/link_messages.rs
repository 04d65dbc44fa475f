//! What the agent's loop and the controller link say to each other, over two bounded
//! channels: [`ToLink`] (agent → link: usage windows, the running enclaves, plan acks) and
//! [`LinkEvent`] (link → agent: plans, link up/down).
//!
//! Its own module so that neither side depends on the other: `agent` and `link` both use
//! these types, and this module uses only the plan and the usage window.

use serde::Serialize;

use crate::collector::UsageWindow;
use crate::plan::{EnclavePlan, LaunchSpec, Plan};
use crate::runtime::migration::{MigrateOptions, MigrationProgress};

/// What the agent's loop hands to the link.
#[derive(Debug)]
pub enum ToLink {
    /// This tick's window of every enclave, as the host measured them; the link seals each
    /// through the enclave's TEE and sends it.
    Windows(Vec<UsageWindow>),
    /// The enclaves running now, with how they were launched.
    Enclaves(Vec<(String, Option<LaunchSpec>)>),
    /// A plan was applied (or refused as a whole: `error`), with the enclaves whose launch
    /// the host's allow-list refused.
    Applied {
        version: u64,
        error: Option<String>,
        refused: Vec<RefusedLaunch>,
    },
    /// Where a live migration this host takes part in stands.
    Migration(MigrationReport),
}

/// A live migration's progress as this host sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationReport {
    pub migration_id: String,
    pub enclave: String,
    /// `source` or `target`.
    pub role: &'static str,
    pub progress: MigrationProgress,
}

/// What the link hands the agent.
#[derive(Debug)]
pub enum LinkEvent {
    /// A controller's plan, in the agent's terms, and the span its application runs in (a child
    /// of the controller's decision when that trace is sampled; `Span::none()` otherwise).
    Plan(Plan, tracing::Span),
    /// A stream to a controller is up (after every outage, once).
    Up,
    /// No controller answers (once per outage): the agent keeps enforcing its last plan.
    Down,
    /// Live migration, target: wait for the enclave's state on `listen`, paused.
    MigrateIn {
        migration_id: String,
        enclave: String,
        plan: Box<EnclavePlan>,
        listen: String,
    },
    /// Live migration, source: send the enclave's state to `uri`.
    MigrateOut {
        migration_id: String,
        enclave: String,
        uri: String,
        opts: MigrateOptions,
    },
    /// Live migration over: committed under `new_epoch`, or rolled back.
    MigrationEnd {
        migration_id: String,
        enclave: String,
        committed: bool,
        new_epoch: u64,
        reason: String,
    },
}

/// An enclave of the applied plan the host's allow-list refused to launch (in the agent's
/// status and in the plan's ack to the controllers).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RefusedLaunch {
    pub enclave: String,
    pub error: String,
}
