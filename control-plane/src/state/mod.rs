//! The replicated domain state (DESIGN.md §3) and its deterministic `apply`.
//!
//! Everything here is pure: a [`Command`] applied to a [`State`] yields an [`Outcome`] and a new
//! state, with no I/O, no clock and no randomness. Time enters only as a field the leader stamped
//! into the command before proposing it, so every replica computes the same result.

mod delete;
mod detail;
mod enclave_write;
mod enforce;
mod idempotency;
mod leaf_format;
mod live;
mod log;
mod plan_version;
mod schedule;
mod size;
mod standing;
mod types;

pub use detail::{
    ActionDetail, AttestationFailed, BorrowAction, BorrowMove, DetailError, EnclaveChangeDetail,
    EnclaveOp, HostChangeDetail, LadderAction, LendAction, LendMove, LogDetail, LogKeyDetail,
    MembershipChangeDetail, MigrationDetail, OverLimit, PolicyChangeDetail, Refusal,
    TokenChangeDetail, VerdictDetail, ViolationDetail,
};
pub use enforce::{
    Attestation, EnclaveStatus, Enforcement, Ladder, LoopOutcome, Step, UsageDigest, UsagePoint,
    VerdictCmd, settle,
};
pub use idempotency::{
    BadKey, KEY_BYTES_MAX, KEY_WINDOW_MS, KEYS_MAX, KeyRecord, Keys, check_key, fingerprint,
    recorded,
};
pub use leaf_format::LeafFormat;
pub use live::{
    LIVE_HISTORY_MAX, LiveCause, LiveMigration, LivePhase, LiveProgress, LiveRequest,
    check_enclave, check_request, check_target, host_attested_at, suspended_by_policy,
};
pub use log::{AttestationLog, LogEntry, LogEntryKind, LogKey, key_id};
pub use schedule::{
    HOST_SILENT_MS, Move, cluster_view, cluster_view_of, demand, enclave_spec, placement_freshness,
    planning_spec, restartable, wants_network,
};
pub use standing::{
    PriorityConflict, check_priority, compile, compile_each, identity, spec_under,
    standing_priority, written_by_tenant,
};
/// The TEE kinds (one type with the verifier and the policy language).
pub use tribune_attest::TeeKind;
pub use types::{
    Allocation, Enclave, EnclaveState, Host, OperatorHold, Placement, Policy, Resources,
    Revocation, Schedulable, Scheduling, Strategy, Token,
};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Optimistic-concurrency precondition for a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// Write whatever the current version is.
    Any,
    /// The object must not exist yet (`If-None-Match: *`).
    Absent,
    /// The object must currently be at this version (`If-Match: "N"`).
    Version(u64),
}

/// One replicated state change. The leader fills in `at_ms` and `actor`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    PutPolicy {
        name: String,
        source: String,
        expect: Expect,
        actor: String,
        at_ms: i64,
    },
    DeletePolicy {
        name: String,
        expect: Expect,
        actor: String,
        at_ms: i64,
    },
    /// A host record. `actor` is empty when the host's own agent stream records it, and names
    /// the API caller otherwise (then the change is logged).
    PutHost {
        host: Host,
        #[serde(default)]
        actor: String,
        at_ms: i64,
    },
    PutEnclave {
        enclave: Enclave,
        expect: Expect,
        #[serde(default)]
        actor: String,
        at_ms: i64,
    },
    /// As `PutEnclave`, but only the spec is written: an existing enclave keeps its stored
    /// `state` (so the write is never a suspend, resume or stop, whatever state the body says
    /// and whatever the loop decided since the caller read it) and, on the same host, its
    /// placement epoch (`PUT /v1/enclaves/{id}?spec_only=true`, the Terraform provider's update).
    PutEnclaveSpec {
        enclave: Enclave,
        expect: Expect,
        actor: String,
        at_ms: i64,
    },
    /// Removes an enclave record (`DELETE /v1/enclaves/{id}`). Refused while the enclave is
    /// placed on a host and not `stopped`: its agent may be running it, and a record that
    /// vanished under a running enclave would leave nothing to account it against. Stop it
    /// first (its plan then drops it and the agent stops it), then delete.
    DeleteEnclave {
        id: String,
        expect: Expect,
        actor: String,
        at_ms: i64,
    },
    /// A new bearer token (its secret's hash only). Refused if the id exists.
    CreateToken {
        token: Token,
        at_ms: i64,
    },
    RevokeToken {
        id: String,
        actor: String,
        at_ms: i64,
    },
    SetAllocation {
        allocation: Allocation,
        at_ms: i64,
    },
    /// Verdicts on evidence relayed by `host`'s agent (the attestation loop).
    Verdicts {
        host: String,
        verdicts: Vec<VerdictCmd>,
        at_ms: i64,
    },
    /// Checkpointed usage digests from `host`'s stream: each must continue its enclave's chain.
    UsageDigests {
        host: String,
        digests: Vec<UsageDigest>,
        at_ms: i64,
    },
    /// `host`'s agent's authenticated stream is alive at `at_ms`: its `last_heartbeat_ms`, the
    /// freshest trust the controllers hold for a host that runs nothing (a migration target
    /// must have some within `[migration] attest_max_age_s`). Each session writes it every
    /// `attest::session::host_seen_every`. Not logged; no plan changes.
    HostSeen {
        host: String,
        at_ms: i64,
        /// What its enclaves use, by their verified usage (the host's `measured_load`).
        #[serde(default)]
        load: Resources,
    },
    /// Enforcement decisions for enclaves on `host`.
    Enforce {
        host: String,
        changes: Vec<Enforcement>,
        at_ms: i64,
    },
    /// A new enclave placed by the scheduler (`POST /v1/enclaves`), with what had to make room
    /// for it; re-checked against the state at apply (`state/schedule.rs`).
    Place {
        enclave: Enclave,
        placement: tribune_migration::Placement,
        actor: String,
        at_ms: i64,
    },
    /// Cordon, uncordon or drain a host (an operator's).
    SetSchedulable {
        host: String,
        schedulable: Schedulable,
        actor: String,
        at_ms: i64,
    },
    /// Starts a stop-and-restart move of a process enclave to `to` (drain): the source's plan
    /// drops it at once; the target's gains it only once the source acked that
    /// (`Command::FinishMove`), under a new placement epoch.
    StartMove {
        enclave: String,
        to: String,
        /// The epoch the mover read: a move of a placement that changed since is refused.
        epoch: u64,
        /// Why (`drain`, `preempted by X`).
        cause: String,
        actor: String,
        at_ms: i64,
    },
    /// The source host's agent acked plan `version`, which no longer holds the enclaves moving
    /// off it: each completes its move (new host, epoch + 1).
    FinishMoves {
        host: String,
        version: u64,
        at_ms: i64,
    },
    /// Appends an entry to the attestation log as it is (refusals, membership changes). In
    /// JSON the detail is two fields, `kind` and `detail`, as it always was.
    AppendLog {
        subject: String,
        #[serde(flatten)]
        detail: LogDetail,
        at_ms: i64,
    },
    /// A controller's tree-head signing key (ed25519, 32 bytes hex). Idempotent; keys are never
    /// removed, so tree heads signed by a replaced key stay verifiable.
    RegisterLogKey {
        node_id: u64,
        public_key: String,
        at_ms: i64,
    },
    /// `command` under the caller's idempotency key: applied at most once per `(actor, key)`
    /// within the window; a repeat answers the first outcome (`state/idempotency.rs`).
    Keyed {
        key: String,
        actor: String,
        /// [`fingerprint`] of `command`, computed by the proposer.
        fingerprint: String,
        command: Box<Command>,
        at_ms: i64,
    },
    /// Starts a live migration of a QEMU enclave (`state/live.rs`), re-checked at apply.
    MigrateStart {
        request: LiveRequest,
        at_ms: i64,
    },
    /// The target's VM waits for the state, its fresh evidence verified (to `measurement`).
    MigrateReady {
        enclave: String,
        id: String,
        #[serde(default)]
        measurement: String,
        at_ms: i64,
    },
    /// QEMU's figures from the source.
    MigrateProgress {
        enclave: String,
        id: String,
        progress: LiveProgress,
        at_ms: i64,
    },
    /// The source completed: placement moves to the target under the next epoch.
    MigrateCommit {
        enclave: String,
        id: String,
        progress: LiveProgress,
        at_ms: i64,
    },
    /// Rolls back a migration not committed.
    MigrateAbort {
        enclave: String,
        id: String,
        reason: String,
        at_ms: i64,
    },
}

/// The result of applying one [`Command`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Policy(Policy),
    PolicyDeleted {
        name: String,
        version: u64,
    },
    Host(Host),
    Enclave(Enclave),
    EnclaveDeleted {
        id: String,
        version: u64,
    },
    Allocation(Allocation),
    Logged {
        index: u64,
    },
    LogKey(LogKey),
    /// The command is malformed; nothing was written.
    Invalid {
        reason: String,
    },
    Loop(LoopOutcome),
    /// The precondition did not hold; nothing was written.
    Conflict {
        what: String,
        current_version: Option<u64>,
    },
    NotFound {
        what: String,
    },
    /// The scheduler's placement no longer holds against the state at apply (another write
    /// took the room first); nothing was written. The reason is the filters'.
    NoRoom {
        reason: String,
    },
    /// `Command::FinishMoves`: the enclaves whose move completed.
    Moved {
        enclaves: Vec<String>,
    },
    /// A quota would be exceeded; nothing was written.
    Quota {
        reason: String,
    },
    /// The object is in use and may not be removed as it stands; nothing was written.
    InUse {
        reason: String,
    },
    Token(Token),
    /// `Command::Keyed`: the key was already used with another request; nothing was written.
    KeyReused {
        key: String,
    },
    /// A live migration, as a `Command::Migrate*` left it.
    Migration(Box<LiveMigration>),
}

/// The whole replicated state of a Tribune cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub policies: BTreeMap<String, Policy>,
    pub hosts: BTreeMap<String, Host>,
    pub enclaves: BTreeMap<String, Enclave>,
    pub allocations: BTreeMap<String, Allocation>,
    /// Per host: the version of the last enforcement plan derived from this state.
    pub plan_versions: BTreeMap<String, u64>,
    /// Per enclave: verdict, confirmed usage point, ladder step, lending.
    #[serde(default)]
    pub status: BTreeMap<String, EnclaveStatus>,
    pub log: AttestationLog,
    /// Tree-head signing keys by `key_id`.
    #[serde(default)]
    pub log_keys: BTreeMap<String, LogKey>,
    /// Bearer tokens by id.
    #[serde(default)]
    pub tokens: BTreeMap<String, Token>,
    /// Stop-and-restart moves under way, by enclave (`state/schedule.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub moves: BTreeMap<String, Move>,
    /// Idempotency keys within their window (`state/idempotency.rs`).
    #[serde(default, skip_serializing_if = "Keys::is_empty")]
    pub keys: Keys,
    /// Live migrations under way, by enclave (`state/live.rs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub live: BTreeMap<String, LiveMigration>,
    /// The last [`LIVE_HISTORY_MAX`] finished live migrations, oldest first.
    #[serde(default, skip_serializing_if = "std::collections::VecDeque::is_empty")]
    pub live_done: std::collections::VecDeque<LiveMigration>,
    /// The sum of every stored policy's source length, for the quota check of a put: kept up to
    /// date by the puts and deletes that change it, computed once when first needed (a state
    /// loaded from a snapshot). Not part of the state's form or equality.
    #[serde(skip)]
    policy_source_bytes: SourceBytes,
    /// The stored policies, compiled (`state/standing.rs`): derived, not part of the state's
    /// form or equality.
    #[serde(skip)]
    compiled: standing::CompiledPolicies,
}

/// A derived figure cached beside the state: equal whatever it holds, so states compare by what
/// they store.
#[derive(Clone, Copy, Debug, Default)]
struct SourceBytes(Option<usize>);

impl PartialEq for SourceBytes {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Policies a cluster holds at most.
pub const POLICIES_MAX: usize = 10_000;
/// Policy source a cluster holds at most, all policies together (each is at most 256 KiB).
pub const POLICY_SOURCE_TOTAL_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Enclaves one tenant may have at most.
pub const ENCLAVES_PER_TENANT_MAX: usize = 10_000;
/// Tokens (revoked ones included) a cluster holds at most.
pub const TOKENS_MAX: usize = 10_000;

fn precondition(what: &str, current: Option<u64>, expect: Expect) -> Result<(), Outcome> {
    let ok = match (expect, current) {
        (Expect::Any, _) => true,
        (Expect::Absent, None) => true,
        (Expect::Absent, Some(_)) => false,
        (Expect::Version(v), Some(c)) => v == c,
        (Expect::Version(_), None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Outcome::Conflict {
            what: what.to_string(),
            current_version: current,
        })
    }
}

impl State {
    /// Applies one command of a Raft entry written in leaf format `format`: the log entries it
    /// appends are written in that format (a Raft entry from before format 2 replays into the
    /// same format-1 leaves it wrote then).
    pub fn apply_in(&mut self, format: LeafFormat, cmd: Command) -> Outcome {
        let was = std::mem::replace(&mut self.log.writing, format);
        let out = self.apply(cmd);
        self.log.writing = was;
        out
    }

    /// Applies one command, appending log entries in the current leaf format. Deterministic: the same state and command give the same result on
    /// every replica. A failed precondition changes nothing.
    pub fn apply(&mut self, cmd: Command) -> Outcome {
        // Plans name enclaves of other hosts (messages across hosts): a command that may move,
        // stop, re-label or re-address them changes other hosts' plans too.
        let routing = matches!(
            cmd,
            Command::PutHost { .. }
                | Command::PutEnclave { .. }
                | Command::PutEnclaveSpec { .. }
                | Command::DeleteEnclave { .. }
                | Command::Place { .. }
                | Command::StartMove { .. }
                | Command::FinishMoves { .. }
        )
        .then(|| self.routing_digest());
        let out = self.apply_one(cmd);
        if let Some(before) = routing
            && before != self.routing_digest()
        {
            self.policies_changed();
        }
        out
    }

    /// The sum of every stored policy's source length (cached; see `policy_source_bytes`).
    fn policy_source_total(&mut self) -> usize {
        let sum = || {
            self.policies
                .values()
                .map(|p| p.source.len())
                .sum::<usize>()
        };
        match self.policy_source_bytes.0 {
            Some(total) => {
                debug_assert_eq!(total, sum(), "the cached policy source total is current");
                total
            }
            None => {
                let total = sum();
                self.policy_source_bytes = SourceBytes(Some(total));
                total
            }
        }
    }

    fn apply_one(&mut self, cmd: Command) -> Outcome {
        match cmd {
            Command::PutPolicy {
                name,
                source,
                expect,
                actor,
                at_ms,
            } => {
                let total = self.policy_source_total();
                let current = self.policies.get(&name);
                if let Err(conflict) = precondition(
                    &format!("policy {name:?}"),
                    current.map(|p| p.version),
                    expect,
                ) {
                    return conflict;
                }
                if current.is_none() && self.policies.len() >= POLICIES_MAX {
                    return Outcome::Quota {
                        reason: format!(
                            "the cluster holds {POLICIES_MAX} policies, the most it may; delete one first"
                        ),
                    };
                }
                // Was a sum over every policy per put: with thousands of policies, most of a
                // put's CPU on every controller (bench/README.md, 2026-12-03 write path).
                let others = total - current.map_or(0, |p| p.source.len());
                if others + source.len() > POLICY_SOURCE_TOTAL_BYTES_MAX {
                    return Outcome::Quota {
                        reason: format!(
                            "the cluster's policies would hold {} bytes of source; at most {POLICY_SOURCE_TOTAL_BYTES_MAX}",
                            others + source.len()
                        ),
                    };
                }
                let policy = match current {
                    Some(p) => Policy {
                        version: p.version + 1,
                        source,
                        updated_by: actor.clone(),
                        updated_at_ms: at_ms,
                        ..p.clone()
                    },
                    None => Policy {
                        name: name.clone(),
                        version: 1,
                        source,
                        created_by: actor.clone(),
                        updated_by: actor.clone(),
                        created_at_ms: at_ms,
                        updated_at_ms: at_ms,
                    },
                };
                self.log.append(
                    &name,
                    LogDetail::PolicyChange(PolicyChangeDetail::Put {
                        version: policy.version,
                        actor,
                        source_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                            policy.source.as_bytes(),
                        )),
                    }),
                    at_ms,
                );
                self.policy_source_bytes = SourceBytes(Some(others + policy.source.len()));
                self.policies.insert(name, policy.clone());
                self.compiled = Default::default();
                self.policies_changed();
                Outcome::Policy(policy)
            }
            Command::DeletePolicy {
                name,
                expect,
                actor,
                at_ms,
            } => {
                let Some(current) = self.policies.get(&name) else {
                    return Outcome::NotFound {
                        what: format!("policy {name:?}"),
                    };
                };
                let version = current.version;
                if let Err(conflict) =
                    precondition(&format!("policy {name:?}"), Some(version), expect)
                {
                    return conflict;
                }
                let total = self.policy_source_total();
                self.compiled = Default::default();
                if let Some(gone) = self.policies.remove(&name) {
                    self.policy_source_bytes = SourceBytes(Some(total - gone.source.len()));
                }
                self.policies_changed();
                self.log.append(
                    &name,
                    LogDetail::PolicyChange(PolicyChangeDetail::Delete { version, actor }),
                    at_ms,
                );
                Outcome::PolicyDeleted { name, version }
            }
            Command::PutHost {
                mut host,
                actor,
                at_ms,
            } => {
                host.last_heartbeat_ms = host.last_heartbeat_ms.max(at_ms);
                // Cordoning is an operator's alone (`Command::SetSchedulable`): neither the
                // agent's stream nor a host record written through the API changes it. The
                // measured load is the session's alone (`Command::HostSeen`).
                let stored = self.hosts.get(&host.id);
                host.schedulable = stored.map_or_else(Default::default, |h| h.schedulable);
                host.measured_load = stored.map_or_else(Default::default, |h| h.measured_load);
                if !actor.is_empty() {
                    self.log.append(
                        &host.id,
                        LogDetail::HostChange(HostChangeDetail::Put {
                            actor,
                            attestation_status: host.attestation_status.clone(),
                            capacity: host.capacity,
                            tee: host.tee,
                        }),
                        at_ms,
                    );
                }
                self.hosts.insert(host.id.clone(), host.clone());
                Outcome::Host(host)
            }
            Command::PutEnclave {
                enclave,
                expect,
                actor,
                at_ms,
            } => self.put_enclave(enclave, expect, actor, at_ms, false),
            Command::PutEnclaveSpec {
                enclave,
                expect,
                actor,
                at_ms,
            } => self.put_enclave(enclave, expect, actor, at_ms, true),
            Command::DeleteEnclave {
                id,
                expect,
                actor,
                at_ms,
            } => self.delete_enclave(id, expect, actor, at_ms),
            Command::CreateToken { token, at_ms } => {
                if self.tokens.contains_key(&token.id) {
                    return Outcome::Conflict {
                        what: format!("token {}", token.id),
                        current_version: None,
                    };
                }
                if self.tokens.len() >= TOKENS_MAX {
                    return Outcome::Quota {
                        reason: format!("the cluster holds {TOKENS_MAX} tokens, the most it may"),
                    };
                }
                self.log.append(
                    &format!("token-{}", token.id),
                    LogDetail::TokenChange(TokenChangeDetail::Create {
                        actor: token.created_by.clone(),
                        name: token.name.clone(),
                        role: token.role,
                        tenant: token.tenant.clone(),
                        expires_at_ms: token.expires_at_ms,
                    }),
                    at_ms,
                );
                self.tokens.insert(token.id.clone(), token.clone());
                Outcome::Token(token)
            }
            Command::RevokeToken { id, actor, at_ms } => {
                let Some(t) = self.tokens.get_mut(&id) else {
                    return Outcome::NotFound {
                        what: format!("token {id}"),
                    };
                };
                if t.revoked.is_none() {
                    t.revoked = Some(Revocation {
                        by: actor.clone(),
                        at_ms,
                    });
                    self.log.append(
                        &format!("token-{id}"),
                        LogDetail::TokenChange(TokenChangeDetail::Revoke { actor }),
                        at_ms,
                    );
                }
                Outcome::Token(t.clone())
            }
            Command::SetAllocation {
                allocation,
                at_ms: _,
            } => {
                if !self.enclaves.contains_key(&allocation.enclave) {
                    return Outcome::NotFound {
                        what: format!("enclave {:?}", allocation.enclave),
                    };
                }
                if let Some(host) = self
                    .enclaves
                    .get(&allocation.enclave)
                    .and_then(|e| e.placement.as_ref())
                    .map(|p| p.host.clone())
                {
                    self.bump_plan_version(&host);
                }
                self.allocations
                    .insert(allocation.enclave.clone(), allocation.clone());
                Outcome::Allocation(allocation)
            }
            Command::Verdicts {
                host,
                verdicts,
                at_ms,
            } => self.apply_verdicts(&host, verdicts, at_ms),
            Command::UsageDigests {
                host,
                digests,
                at_ms,
            } => self.apply_digests(&host, digests, at_ms),
            Command::HostSeen { host, at_ms, load } => match self.hosts.get_mut(&host) {
                Some(h) => {
                    // An older sighting (two sessions of one host across a reconnect) neither
                    // turns the clock back nor replaces a newer load.
                    if at_ms >= h.last_heartbeat_ms {
                        h.measured_load = load;
                    }
                    h.last_heartbeat_ms = h.last_heartbeat_ms.max(at_ms);
                    Outcome::Host(h.clone())
                }
                None => Outcome::NotFound {
                    what: format!("host {host:?}"),
                },
            },
            Command::Enforce {
                host,
                changes,
                at_ms,
            } => self.apply_enforcements(&host, changes, at_ms),
            Command::Place {
                enclave,
                placement,
                actor,
                at_ms,
            } => self.apply_place(enclave, placement, actor, at_ms),
            Command::SetSchedulable {
                host,
                schedulable,
                actor,
                at_ms,
            } => self.set_schedulable(&host, schedulable, actor, at_ms),
            Command::StartMove {
                enclave,
                to,
                epoch,
                cause,
                actor,
                at_ms,
            } => self.start_move(&enclave, &to, epoch, cause, actor, at_ms),
            Command::FinishMoves {
                host,
                version,
                at_ms,
            } => self.finish_moves(&host, version, at_ms),
            Command::AppendLog {
                subject,
                detail,
                at_ms,
            } => {
                let index = self.log.append(&subject, detail, at_ms);
                Outcome::Logged { index }
            }
            Command::RegisterLogKey {
                node_id,
                public_key,
                at_ms,
            } => {
                let bytes = match hex::decode(&public_key) {
                    Ok(b) if b.len() == 32 => b,
                    _ => {
                        return Outcome::Invalid {
                            reason: format!(
                                "log key of controller {node_id} is not 32 bytes of hex"
                            ),
                        };
                    }
                };
                let key_id = key_id(&bytes);
                let public_key = hex::encode(&bytes);
                if let Some(existing) = self.log_keys.get(&key_id) {
                    return Outcome::LogKey(existing.clone());
                }
                let log_index = self.log.append(
                    &format!("controller-{node_id}"),
                    LogDetail::LogKey(LogKeyDetail {
                        node_id,
                        key_id: key_id.clone(),
                        public_key: public_key.clone(),
                    }),
                    at_ms,
                );
                let key = LogKey {
                    key_id: key_id.clone(),
                    node_id,
                    public_key,
                    registered_at_ms: at_ms,
                    log_index,
                };
                self.log_keys.insert(key_id, key.clone());
                Outcome::LogKey(key)
            }
            Command::Keyed {
                key,
                actor,
                fingerprint,
                command,
                at_ms,
            } => self.apply_keyed(key, actor, fingerprint, *command, at_ms),
            cmd @ (Command::MigrateStart { .. }
            | Command::MigrateReady { .. }
            | Command::MigrateProgress { .. }
            | Command::MigrateCommit { .. }
            | Command::MigrateAbort { .. }) => self.apply_live(cmd),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_admin;
#[cfg(test)]
mod tests_detail;
#[cfg(test)]
pub(crate) mod tests_golden;
#[cfg(test)]
mod tests_stale;
