//! Versioned enforcement plans: what the controllers want on this host, and the pure diff that
//! turns "what is applied" plus "what is wanted" into the few writes that differ.
//!
//! A plan is the whole desired state of the host (not a delta), so applying it twice is a no-op
//! and a restarted agent only needs the last one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// Highest fair-share weight accepted (maps to the top of cpu.shares / cpu.weight).
pub const WEIGHT_MAX: u32 = 256;
/// Lowest CPU cap accepted: below 10m the CFS quota (1 ms per 100 ms period) loses accuracy.
pub const CPU_MILLICORES_MIN: u64 = 10;
/// Lowest memory limit accepted: a process cannot start below a few MiB.
pub const MEMORY_BYTES_MIN: u64 = 4 << 20;
/// Most enclaves one plan may name.
pub const ENCLAVES_MAX: usize = 4096;

/// The whole desired state of one host, versioned by the controllers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Monotonic per host; a plan older than the applied one is refused.
    pub version: u64,
    #[serde(default)]
    pub enclaves: BTreeMap<String, EnclavePlan>,
    /// Enclaves on other hosts that this host's enclaves may exchange messages with (either
    /// direction), where they live and their own talk settings toward this host's enclaves
    /// (`crate::mediator::peer`, `docs/messages.md`). Nothing here runs on this host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remote: BTreeMap<String, RemoteEnclave>,
}

/// An enclave placed on another host, as the controllers told this host about it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct RemoteEnclave {
    /// The host the controllers placed it on, and the placement's epoch.
    pub host: String,
    #[serde(default)]
    pub placement_epoch: u64,
    /// That host agent's peer address (`HOST:PORT`, its `--peer-listen`); empty: the host
    /// accepts no messages from other hosts.
    #[serde(default)]
    pub peer_addr: String,
    /// Its priority and the enclaves of *this* host its own `talk` rules allow.
    #[serde(default)]
    pub talk: Talk,
}

/// Desired state of one enclave.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EnclavePlan {
    /// How to start the enclave when it is not running yet. Ignored once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<LaunchSpec>,
    #[serde(default)]
    pub limits: Limits,
    /// Fair-share weight among the enclaves of this host (1..=256).
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub state: RunState,
    /// Inter-enclave messages: its priority and the peers its `talk` rules allow (resolved by
    /// the controllers; `crate::mediator`). Absent: it may neither send nor receive.
    #[serde(default, skip_serializing_if = "Talk::is_empty")]
    pub talk: Talk,
    /// The placement epoch the controllers placed it here under (0: none given, e.g. a local
    /// plan). An epoch older than one this agent has seen for the enclave is refused
    /// (`crate::fence`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub placement_epoch: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Default for EnclavePlan {
    fn default() -> Self {
        EnclavePlan {
            launch: None,
            limits: Limits::default(),
            weight: default_weight(),
            state: RunState::default(),
            talk: Talk::default(),
            placement_epoch: 0,
        }
    }
}

/// Most peers one enclave's talk list may name.
pub const TALK_PEERS_MAX: usize = ENCLAVES_MAX;

/// An enclave's messaging settings as the controllers resolved them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Talk {
    /// Its policy's `priority`: higher is served first in every inbox it sends to.
    #[serde(default)]
    pub priority: i64,
    /// Peer enclave → its `share` in thousandths (`share 3` is 3000): the peers its `talk`
    /// rules allow (the receiver's rules are checked separately).
    #[serde(default)]
    pub allow: BTreeMap<String, u32>,
    /// Messages a second the mediator admits from it (0: no rate limit): a throttle.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_per_s: u64,
}

impl Talk {
    pub fn is_empty(&self) -> bool {
        self.priority == 0 && self.allow.is_empty() && self.rate_per_s == 0
    }
}

fn default_weight() -> u32 {
    1
}

/// Upper bounds (and guarantees, for bandwidth). `None` means "no limit".
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Soft mark: reclaim starts here (v1 `memory.soft_limit_in_bytes`, v2 `memory.high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_high_bytes: Option<u64>,
    /// Enclave → outside, shaped on the bridge uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Bandwidth>,
    /// Outside → enclave, shaped on the host-side veth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Bandwidth>,
    /// GPU share in percent (MPS active threads / time slice), where the host has a GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_percent: Option<u32>,
}

/// An HTB class: `rate` is guaranteed, `ceil` is the most it may borrow up to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    pub guarantee_bits_per_sec: u64,
    pub limit_bits_per_sec: u64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    #[default]
    Run,
    Suspend,
}

/// How an enclave is started.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LaunchSpec {
    /// A command run as a simulated enclave.
    Process {
        cmd: Vec<String>,
        /// Give it its own network namespace joined to the host bridge.
        #[serde(default)]
        network: bool,
        /// The simulated TEE's identity (development).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sim: Option<SimOptions>,
    },
    /// A VM under qemu-system-x86_64.
    Qemu {
        #[serde(default = "default_vm_memory_mib")]
        memory_mib: u32,
        /// Extra arguments (firmware, disks, SEV-SNP/TDX objects on real hosts).
        #[serde(default)]
        args: Vec<String>,
        /// How the guest reaches its host's message mediator (`docs/messages.md`).
        #[serde(default, skip_serializing_if = "MsgPort::is_default")]
        msg_port: MsgPort,
        /// The built-in guest booted when `args` is empty (absent: the counter).
        #[serde(default, skip_serializing_if = "Guest::is_counter")]
        guest: Guest,
        /// Give the guest a NIC (virtio-net on a tap in its own network namespace, bridged to
        /// the host bridge and shaped as a process enclave's veth: `net_vm`). Only this says
        /// whether it has one (a bandwidth limit gives it a namespace, not a NIC), so a live
        /// migration's target builds the same devices as its source.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        network: bool,
    },
}

/// The device a QEMU guest's message endpoint appears as. Either way its host side is one
/// QEMU chardev connected to the enclave's mediator socket, carrying the same frames as a
/// process enclave's socket (`runtime::qemu_msg`, `docs/messages.md`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MsgPort {
    /// A virtio-serial port named `org.tribune.msg.0` (a Linux guest:
    /// `/dev/virtio-ports/org.tribune.msg.0`).
    #[default]
    VirtioSerial,
    /// The first legacy 16550 UART (COM1, I/O ports 0x3F8–0x3FF), for firmware that cannot
    /// drive virtio.
    Uart,
    /// No message endpoint in the guest.
    Off,
}

impl MsgPort {
    pub fn is_default(&self) -> bool {
        *self == MsgPort::default()
    }
}

/// A built-in test guest (`runtime/qemu.rs`): a firmware image the agent writes itself, for a
/// QEMU spec without `args`. Both keep a 64-bit progress counter at guest-physical 0x500.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Guest {
    /// Only increments the counter: one page of guest RAM is ever written.
    #[default]
    Counter,
    /// Keeps writing: one word into every 4 KiB page of `mib` MiB of guest RAM from 1 MiB up,
    /// sweep after sweep (in unreal mode), counting each write. Every page of the region is
    /// dirty again long before a migration round can send it: the guest a live migration must
    /// converge against. The VM's memory must hold the region (`1 + mib ≤ memory_mib`).
    Writer { mib: u32 },
}

impl Guest {
    pub fn is_counter(&self) -> bool {
        *self == Guest::Counter
    }
}

/// How a process enclave's simulated TEE presents itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct SimOptions {
    /// Hex launch measurement (48 bytes); default: SHA-384 of the command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// Demonstration only: after this many seconds its evidence is signed by a key no verifier
    /// trusts (as if the enclave had been tampered with), so re-attestation fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tamper_evidence_after_s: Option<u64>,
}

fn default_vm_memory_mib() -> u32 {
    64
}

/// One write the agent has to make to move an enclave from its applied to its wanted state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    CpuCap(Option<u64>),
    Weight(u32),
    Memory {
        limit_bytes: Option<u64>,
        high_bytes: Option<u64>,
    },
    Egress(Option<Bandwidth>),
    Ingress(Option<Bandwidth>),
    Gpu(Option<u32>),
    State(RunState),
}

/// The changes from `applied` to `wanted`, in a safe order: tighten before resuming, so a
/// resumed enclave never runs a moment under the old, looser limits.
pub fn changes(applied: &EnclavePlan, wanted: &EnclavePlan) -> Vec<Change> {
    let (a, w) = (&applied.limits, &wanted.limits);
    let mut out = Vec::new();
    if applied.state != wanted.state && wanted.state == RunState::Suspend {
        out.push(Change::State(RunState::Suspend));
    }
    if a.cpu_millicores != w.cpu_millicores {
        out.push(Change::CpuCap(w.cpu_millicores));
    }
    if applied.weight != wanted.weight {
        out.push(Change::Weight(wanted.weight));
    }
    if a.memory_bytes != w.memory_bytes || a.memory_high_bytes != w.memory_high_bytes {
        out.push(Change::Memory {
            limit_bytes: w.memory_bytes,
            high_bytes: w.memory_high_bytes,
        });
    }
    if a.egress != w.egress {
        out.push(Change::Egress(w.egress));
    }
    if a.ingress != w.ingress {
        out.push(Change::Ingress(w.ingress));
    }
    if a.gpu_percent != w.gpu_percent {
        out.push(Change::Gpu(w.gpu_percent));
    }
    if applied.state != wanted.state && wanted.state == RunState::Run {
        out.push(Change::State(RunState::Run));
    }
    out
}

/// Every change needed to bring a freshly created enclave to `wanted` (from an unlimited start).
pub fn initial_changes(wanted: &EnclavePlan) -> Vec<Change> {
    let unlimited = EnclavePlan {
        weight: 0,
        ..EnclavePlan::default()
    };
    changes(&unlimited, wanted)
}

/// Whether an offered plan is applied, given the plan applied last (the version gate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Newer than the applied one (or the first): apply it.
    Apply,
    /// The very plan already applied (a resend after a reconnect): nothing to write.
    AlreadyApplied,
}

/// The version gate, pure: versions only rise, and one version never has two contents. An
/// older plan is refused ([`AgentError::StalePlan`]), the same version with other content is
/// invalid (e.g. after a failover that lost a write).
pub fn admit(applied: Option<&Plan>, offered: &Plan) -> Result<Admit> {
    let Some(a) = applied else {
        return Ok(Admit::Apply);
    };
    if offered.version < a.version {
        return Err(AgentError::StalePlan {
            offered: offered.version,
            applied: a.version,
        });
    }
    if offered.version == a.version {
        if offered == a {
            return Ok(Admit::AlreadyApplied);
        }
        return Err(AgentError::InvalidPlan(format!(
            "version {} was already applied with different content",
            offered.version
        )));
    }
    Ok(Admit::Apply)
}

/// Checks a name is safe to use in cgroup paths and netns names.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(AgentError::InvalidPlan(format!(
            "enclave name {name:?}: use 1-40 characters of a-z, 0-9, '-' and '_'"
        )))
    }
}

impl Plan {
    /// Reads a plan from JSON text.
    pub fn from_json(text: &str) -> Result<Plan> {
        let plan: Plan =
            serde_json::from_str(text).map_err(|e| AgentError::InvalidPlan(e.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// Rejects what the kernel would refuse or misapply.
    pub fn validate(&self) -> Result<()> {
        if self.enclaves.len() > ENCLAVES_MAX {
            return Err(AgentError::InvalidPlan(format!(
                "{} enclaves, at most {ENCLAVES_MAX}",
                self.enclaves.len()
            )));
        }
        for (name, e) in &self.enclaves {
            validate_name(name)?;
            let bad = |why: String| Err(AgentError::InvalidPlan(format!("enclave {name}: {why}")));
            if !(1..=WEIGHT_MAX).contains(&e.weight) {
                return bad(format!("weight {} not in 1..={WEIGHT_MAX}", e.weight));
            }
            if let Some(c) = e.limits.cpu_millicores
                && c < CPU_MILLICORES_MIN
            {
                return bad(format!("cpu {c}m below {CPU_MILLICORES_MIN}m"));
            }
            for m in [e.limits.memory_bytes, e.limits.memory_high_bytes]
                .into_iter()
                .flatten()
            {
                if m < MEMORY_BYTES_MIN {
                    return bad(format!("memory {m} bytes below {MEMORY_BYTES_MIN}"));
                }
            }
            for b in [e.limits.egress, e.limits.ingress].into_iter().flatten() {
                if b.guarantee_bits_per_sec == 0 || b.guarantee_bits_per_sec > b.limit_bits_per_sec
                {
                    return bad("bandwidth guarantee must be > 0 and <= limit".into());
                }
            }
            if let Some(g) = e.limits.gpu_percent
                && g > 100
            {
                return bad(format!("gpu {g}% above 100%"));
            }
            if let Some(LaunchSpec::Process { cmd, .. }) = &e.launch
                && cmd.is_empty()
            {
                return bad("empty command".into());
            }
            if e.talk.allow.len() > TALK_PEERS_MAX {
                return bad(format!(
                    "talk names {} peers, at most {TALK_PEERS_MAX}",
                    e.talk.allow.len()
                ));
            }
            for peer in e.talk.allow.keys() {
                validate_name(peer)
                    .or_else(|_| bad(format!("talk peer {peer:?} is not an enclave name")))?;
            }
        }
        if self.remote.len() > ENCLAVES_MAX {
            return Err(AgentError::InvalidPlan(format!(
                "{} remote enclaves, at most {ENCLAVES_MAX}",
                self.remote.len()
            )));
        }
        for (name, r) in &self.remote {
            validate_name(name)?;
            let bad = |why: String| {
                Err(AgentError::InvalidPlan(format!(
                    "remote enclave {name}: {why}"
                )))
            };
            if self.enclaves.contains_key(name) {
                return bad("is also an enclave of this host".into());
            }
            if r.host.is_empty() || r.host.len() > 253 || r.host.chars().any(char::is_control) {
                return bad(format!("host {:?} is not a host name", r.host));
            }
            if r.talk.allow.len() > TALK_PEERS_MAX {
                return bad(format!(
                    "talk names {} peers, at most {TALK_PEERS_MAX}",
                    r.talk.allow.len()
                ));
            }
            for peer in r.talk.allow.keys() {
                validate_name(peer)
                    .or_else(|_| bad(format!("talk peer {peer:?} is not an enclave name")))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enclave(cpu: Option<u64>, weight: u32, state: RunState) -> EnclavePlan {
        EnclavePlan {
            launch: None,
            limits: Limits {
                cpu_millicores: cpu,
                ..Limits::default()
            },
            weight,
            state,
            talk: Talk::default(),
            placement_epoch: 0,
        }
    }

    #[test]
    fn same_plan_means_no_writes() {
        let e = enclave(Some(250), 2, RunState::Run);
        assert!(changes(&e, &e.clone()).is_empty());
    }

    #[test]
    fn only_what_changed_is_written() {
        let a = enclave(Some(250), 2, RunState::Run);
        let b = enclave(Some(500), 2, RunState::Run);
        assert_eq!(changes(&a, &b), vec![Change::CpuCap(Some(500))]);
    }

    #[test]
    fn suspend_first_resume_last() {
        let a = enclave(Some(250), 1, RunState::Run);
        let b = enclave(Some(100), 1, RunState::Suspend);
        assert_eq!(
            changes(&a, &b),
            vec![Change::State(RunState::Suspend), Change::CpuCap(Some(100))]
        );
        assert_eq!(
            changes(&b, &a),
            vec![Change::CpuCap(Some(250)), Change::State(RunState::Run)]
        );
    }

    #[test]
    fn initial_changes_set_everything_given() {
        let e = enclave(Some(250), 1, RunState::Run);
        assert_eq!(
            initial_changes(&e),
            vec![Change::CpuCap(Some(250)), Change::Weight(1)]
        );
    }

    #[test]
    fn json_round_trip_and_validation() {
        let text = r#"{"version": 3, "enclaves": {"a": {"limits": {"cpu_millicores": 250,
            "egress": {"guarantee_bits_per_sec": 10000000, "limit_bits_per_sec": 20000000}},
            "weight": 2, "launch": {"process": {"cmd": ["sleep", "1"]}}}}}"#;
        let p = Plan::from_json(text).unwrap();
        assert_eq!(p.version, 3);
        assert_eq!(p.enclaves["a"].state, RunState::Run);
        let again = Plan::from_json(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(p, again);
        assert!(Plan::from_json(r#"{"version":1,"enclaves":{"A/..":{}}}"#).is_err());
        assert!(Plan::from_json(r#"{"version":1,"enclaves":{"a":{"weight":0}}}"#).is_err());
        assert!(Plan::from_json(r#"{"version":1,"bogus":1}"#).is_err());
        assert!(
            Plan::from_json(r#"{"version":1,"enclaves":{"a":{"limits":{"cpu_millicores":1}}}}"#)
                .is_err()
        );
    }

    #[test]
    fn the_version_gate_admits_only_newer_plans() {
        let plan = |version: u64, cpu: Option<u64>| Plan {
            version,
            enclaves: [("e".to_string(), enclave(cpu, 1, RunState::Run))].into(),
            remote: Default::default(),
        };
        assert!(matches!(admit(None, &plan(1, None)), Ok(Admit::Apply)));
        let applied = plan(5, Some(100));
        assert!(matches!(
            admit(Some(&applied), &plan(6, None)),
            Ok(Admit::Apply)
        ));
        assert!(matches!(
            admit(Some(&applied), &plan(5, Some(100))),
            Ok(Admit::AlreadyApplied)
        ));
        assert!(matches!(
            admit(Some(&applied), &plan(5, None)),
            Err(AgentError::InvalidPlan(_))
        ));
        assert!(matches!(
            admit(Some(&applied), &plan(4, Some(100))),
            Err(AgentError::StalePlan {
                offered: 4,
                applied: 5
            })
        ));
    }
}
