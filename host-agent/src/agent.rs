//! The agent: owns the enclaves of this host and applies plans to them. It decides nothing:
//! every limit it writes comes from a plan, and without a newer plan it keeps enforcing the
//! last one (re-applied after a restart, re-written if someone changes it behind our back).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::cgroup::{self, CgroupEnforcer, CgroupVersion};
use crate::collector::{
    NetCounters, OOM_EVERY, Probe, SAMPLE_PERIOD_DEFAULT, Sample, Usage, sampling_interval,
};
use crate::error::{AgentError, Result};
use crate::gpu::{self, GpuBackend};
use crate::net::{self, NetConfig, NetIdentity, Network};
use crate::plan::{Change, EnclavePlan, LaunchSpec, Plan, RunState, changes, initial_changes};
use crate::runtime::{
    Enclave, EnclaveStatus, Identity, LaunchContext, Runtime, RuntimeKind, new_runtime,
};
use crate::store::PlanStore;
use crate::supervisor::{AuthenticatedReport, Supervisor, UnsignedDev, UsageSigner};

/// Most events kept for `status` (oldest dropped).
pub const EVENTS_MAX: usize = 256;
/// Most usage reports buffered per enclave while no controller drains them (60 s at 100 ms);
/// the oldest are dropped, and the gap shows in `seq`.
pub const REPORTS_MAX: usize = 600;

/// How the agent is set up on this host.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    /// Names our cgroup subtree (`tribune/<instance>`) and namespaces (`tb-<instance>-…`).
    pub instance: String,
    pub runtime: RuntimeKind,
    pub cgroup_root: PathBuf,
    /// Pin every enclave to these CPUs (`"0"`), e.g. to measure shares on one core.
    pub cpuset_cpus: Option<String>,
    pub sample_period: Duration,
    /// How often the written limits are read back and re-written if they drifted.
    pub reconcile_period: Duration,
    pub network: Option<NetConfig>,
    pub qemu_binary: PathBuf,
    /// Controller addresses (the stream client arrives with the attestation-loop issue).
    pub controllers: Vec<String>,
}

impl AgentConfig {
    pub fn new(data_dir: impl Into<PathBuf>, runtime: RuntimeKind) -> AgentConfig {
        AgentConfig {
            data_dir: data_dir.into(),
            instance: "agent".into(),
            runtime,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cpuset_cpus: None,
            sample_period: SAMPLE_PERIOD_DEFAULT,
            reconcile_period: Duration::from_secs(1),
            network: None,
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            controllers: Vec::new(),
        }
    }

    /// Our cgroup subtree.
    pub fn group_root(&self) -> String {
        format!("{}/{}", cgroup::PREFIX, self.instance)
    }
}

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
    pub events: Vec<AgentEvent>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ApplyReport {
    pub version: u64,
    /// Kernel/runtime writes made (0 when the plan was already applied).
    pub writes: u32,
    pub launched: Vec<String>,
    pub stopped: Vec<String>,
}

/// What the controller stream hands the agent.
#[derive(Debug)]
pub enum LinkEvent {
    Plan(Plan),
    Up,
    Down,
}

/// A request from the control socket (or a test) to the running agent.
#[derive(Debug)]
pub enum Request {
    Apply(Plan, oneshot::Sender<Result<ApplyReport, String>>),
    Status(oneshot::Sender<AgentStatus>),
    /// The buffered enclave-side usage reports (for the controller stream to batch).
    DrainReports(oneshot::Sender<Vec<AuthenticatedReport>>),
}

struct Running {
    plan: EnclavePlan,
    enclave: Box<dyn Enclave>,
    net: Option<NetIdentity>,
    probe: Probe,
    last: Option<(tokio::time::Instant, Sample)>,
    usage: Usage,
    exited: bool,
    supervisor: Supervisor,
    reports: VecDeque<AuthenticatedReport>,
}

pub struct Agent {
    cfg: AgentConfig,
    cgroups: Arc<dyn CgroupEnforcer>,
    runtime: Box<dyn Runtime>,
    net: Option<Network>,
    store: PlanStore,
    applied: Option<Plan>,
    enclaves: BTreeMap<String, Running>,
    events: VecDeque<AgentEvent>,
    gpu: Box<dyn GpuBackend>,
    link: LinkState,
    buf: Vec<u8>,
    net_counters: Option<NetCounters>,
    ticks: u64,
    signer_factory: SignerFactory,
}

/// Makes the enclave-side key holder of a new enclave (the attestation crate's MAC/checkpoint
/// signer at integration; [`UnsignedDev`] until then).
pub type SignerFactory = Box<dyn Fn(&str) -> Box<dyn UsageSigner> + Send>;

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Fails with a clear error when not root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        Ok(())
    } else {
        Err(AgentError::NotRoot { euid })
    }
}

/// Memory limits read back page-rounded: compare in pages.
fn same_memory(a: Option<u64>, b: Option<u64>) -> bool {
    a.map(|v| v / 4096) == b.map(|v| v / 4096)
}

impl Agent {
    /// Checks the host, clears leftovers of this instance, and re-applies the last plan.
    pub async fn start(cfg: AgentConfig) -> Result<Agent> {
        require_root()?;
        plan_name_ok(&cfg.instance)?;
        let cgroups: Arc<dyn CgroupEnforcer> = Arc::from(cgroup::detect(&cfg.cgroup_root)?);
        let store = PlanStore::new(&cfg.data_dir)?;
        let stored = store.load()?;
        let root = cfg.group_root();
        // After a crash: enclaves of the last plan still running are adopted (their limits never
        // left the kernel); everything else of this instance is cleared.
        let survivors: BTreeMap<String, Vec<u32>> = stored
            .iter()
            .flat_map(|p| p.enclaves.iter())
            .filter(|(_, e)| {
                e.launch
                    .as_ref()
                    .is_some_and(|l| RuntimeKind::of(l) == cfg.runtime)
            })
            .filter_map(|(n, _)| {
                let pids = cgroups.pids(&format!("{root}/{n}")).ok()?;
                (!pids.is_empty()).then(|| (n.clone(), pids))
            })
            .collect();
        let keep: Vec<&str> = survivors.keys().map(String::as_str).collect();
        crate::cleanup::cleanup_instance_except(cgroups.as_ref(), &cfg.instance, &keep)?;
        cgroups.create(&root)?;
        if let Some(cpus) = &cfg.cpuset_cpus {
            cgroups.set_cpuset(&root, cpus)?;
        }
        let net = match &cfg.network {
            Some(n) => Some(Network::setup(&cfg.instance, n.clone())?),
            None => None,
        };
        let mut agent = Agent {
            runtime: new_runtime(cfg.runtime, cfg.qemu_binary.clone()),
            link: if cfg.controllers.is_empty() {
                LinkState::Standalone
            } else {
                LinkState::Down
            },
            cfg,
            cgroups,
            net,
            store,
            applied: None,
            enclaves: BTreeMap::new(),
            events: VecDeque::new(),
            gpu: gpu::detect(),
            buf: Vec::with_capacity(4096),
            net_counters: NetCounters::open().ok(),
            ticks: 0,
            signer_factory: Box::new(|_| Box::new(UnsignedDev)),
        };
        if let Some(plan) = stored {
            for (name, pids) in survivors {
                let wanted = &plan.enclaves[&name];
                if let Err(e) = agent.adopt(&name, wanted, pids).await {
                    tracing::warn!(enclave = %name, "cannot adopt, relaunching: {e}");
                    agent.forget(&name);
                }
            }
            tracing::info!(version = plan.version, "re-applying the last applied plan");
            agent.apply(plan).await?;
        }
        Ok(agent)
    }

    /// Takes over an enclave that outlived an agent crash and writes its limits again.
    async fn adopt(&mut self, name: &str, wanted: &EnclavePlan, pids: Vec<u32>) -> Result<()> {
        let group = self.group_of(name);
        let net_id = self.net.as_ref().and_then(|n| n.adopt(name));
        let spec = wanted
            .launch
            .clone()
            .ok_or_else(|| AgentError::InvalidPlan(format!("{name}: no launch spec")))?;
        let ctx = LaunchContext {
            identity: Identity {
                name: name.to_string(),
                group: group.clone(),
                netns: net_id.as_ref().map(|n| n.netns.clone()),
            },
            spec,
            work_dir: self.cfg.data_dir.join("enclaves").join(name),
            cgroups: self.cgroups.clone(),
            env: Vec::new(),
        };
        let mut enclave = self.runtime.adopt(ctx, pids).await?;
        let probe = Probe::open(
            self.cgroups.as_ref(),
            &group,
            net_id.as_ref().map(|n| n.host_veth.as_str()),
        )?;
        let suspended = matches!(enclave.status().await, Ok(EnclaveStatus::Suspended));
        self.enclaves.insert(
            name.to_string(),
            Running {
                plan: wanted.clone(),
                enclave,
                net: net_id,
                probe,
                last: None,
                usage: Usage::default(),
                exited: false,
                supervisor: Supervisor::new(name, (self.signer_factory)(name)),
                reports: VecDeque::new(),
            },
        );
        // Re-write everything the plan says: the kernel should still hold it, but an uplink
        // re-created at start lost its classes, and a crash may have cut an apply short.
        for change in initial_changes(wanted) {
            let needed = match change {
                Change::State(RunState::Suspend) => !suspended,
                Change::Egress(_) | Change::Ingress(_) => self.enclaves[name].net.is_some(),
                _ => true,
            };
            if needed {
                self.apply_change(name, &change).await?;
            }
        }
        if wanted.state == RunState::Run && suspended {
            self.apply_change(name, &Change::State(RunState::Run))
                .await?;
        }
        tracing::info!(enclave = name, "adopted after restart");
        Ok(())
    }

    /// Drops an enclave the agent could not adopt, killing what is left of it.
    fn forget(&mut self, name: &str) {
        if let Some(r) = self.enclaves.remove(name)
            && let (Some(n), Some(id)) = (&self.net, &r.net)
        {
            let _ = n.detach(id);
        }
        let _ = self.cgroups.remove(&self.group_of(name));
    }

    /// Sets how enclaves launched from now on get their usage signer.
    pub fn set_signer_factory(&mut self, f: SignerFactory) {
        self.signer_factory = f;
    }

    /// Takes the buffered usage reports of every enclave (oldest first per enclave), for the
    /// controller stream to batch into one message.
    pub fn drain_reports(&mut self) -> Vec<AuthenticatedReport> {
        self.enclaves
            .values_mut()
            .flat_map(|r| r.reports.drain(..))
            .collect()
    }

    pub fn config(&self) -> &AgentConfig {
        &self.cfg
    }

    pub fn cgroups(&self) -> &Arc<dyn CgroupEnforcer> {
        &self.cgroups
    }

    pub fn applied(&self) -> Option<&Plan> {
        self.applied.as_ref()
    }

    /// The cgroup path of `enclave`.
    pub fn group_of(&self, enclave: &str) -> String {
        format!("{}/{enclave}", self.cfg.group_root())
    }

    /// The network identity of `enclave`, if it has one.
    pub fn net_of(&self, enclave: &str) -> Option<&NetIdentity> {
        self.enclaves.get(enclave).and_then(|r| r.net.as_ref())
    }

    fn event(&mut self, enclave: Option<&str>, kind: EventKind) {
        tracing::info!(?enclave, ?kind, "agent event");
        if self.events.len() == EVENTS_MAX {
            self.events.pop_front();
        }
        self.events.push_back(AgentEvent {
            at_unix_ms: now_ms(),
            enclave: enclave.map(str::to_string),
            kind,
        });
    }

    /// Applies `plan`, writing only what differs from the applied plan, and records it.
    pub async fn apply(&mut self, plan: Plan) -> Result<ApplyReport> {
        let version = plan.version;
        let r = self.apply_inner(plan).await;
        match &r {
            Ok(rep) => self.event(
                None,
                EventKind::PlanApplied {
                    version,
                    writes: rep.writes,
                },
            ),
            Err(e) => self.event(
                None,
                EventKind::PlanRefused {
                    version,
                    error: e.to_string(),
                },
            ),
        }
        r
    }

    async fn apply_inner(&mut self, plan: Plan) -> Result<ApplyReport> {
        plan.validate()?;
        if let Some(a) = &self.applied {
            if plan.version < a.version {
                return Err(AgentError::StalePlan {
                    offered: plan.version,
                    applied: a.version,
                });
            }
            if plan.version == a.version {
                if plan == *a {
                    return Ok(ApplyReport {
                        version: plan.version,
                        ..ApplyReport::default()
                    });
                }
                return Err(AgentError::InvalidPlan(format!(
                    "version {} was already applied with different content",
                    plan.version
                )));
            }
        }
        for (name, e) in &plan.enclaves {
            if !self.enclaves.contains_key(name) {
                match &e.launch {
                    None => {
                        return Err(AgentError::InvalidPlan(format!(
                            "enclave {name} is not running and has no launch spec"
                        )));
                    }
                    Some(spec) if RuntimeKind::of(spec) != self.cfg.runtime => {
                        return Err(AgentError::InvalidPlan(format!(
                            "enclave {name} needs the {:?} runtime; this agent runs {:?}",
                            RuntimeKind::of(spec),
                            self.cfg.runtime
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        let mut report = ApplyReport {
            version: plan.version,
            ..ApplyReport::default()
        };
        let gone: Vec<String> = self
            .enclaves
            .keys()
            .filter(|n| !plan.enclaves.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.stop_enclave(&name).await?;
            report.writes += 1;
            report.stopped.push(name);
        }
        for (name, wanted) in &plan.enclaves {
            if self.enclaves.contains_key(name) {
                let applied = self.enclaves[name].plan.clone();
                for change in changes(&applied, wanted) {
                    self.apply_change(name, &change).await?;
                    report.writes += 1;
                }
                if let Some(r) = self.enclaves.get_mut(name) {
                    r.plan = wanted.clone();
                }
            } else {
                report.writes += self.launch(name, wanted).await?;
                report.launched.push(name.clone());
            }
        }
        self.store.save(&plan)?;
        self.applied = Some(plan);
        Ok(report)
    }

    async fn launch(&mut self, name: &str, wanted: &EnclavePlan) -> Result<u32> {
        let group = self.group_of(name);
        let spec = wanted
            .launch
            .clone()
            .ok_or_else(|| AgentError::InvalidPlan(format!("{name}: no launch spec")))?;
        self.cgroups.create(&group)?;
        let mut writes = 0;
        // Limits before the first instruction runs.
        for change in initial_changes(wanted) {
            if matches!(
                change,
                Change::CpuCap(_) | Change::Weight(_) | Change::Memory { .. }
            ) {
                self.write_cgroup(&group, &change)?;
                writes += 1;
            }
        }
        let wants_net = matches!(spec, LaunchSpec::Process { network: true, .. })
            || wanted.limits.egress.is_some()
            || wanted.limits.ingress.is_some();
        let net_id = match (&self.net, wants_net) {
            (Some(n), true) => {
                let used: Vec<u16> = self
                    .enclaves
                    .values()
                    .filter_map(|r| r.net.as_ref().map(|n| n.slot))
                    .collect();
                let slot = (1..=net::SLOTS_MAX)
                    .find(|s| !used.contains(s))
                    .ok_or_else(|| AgentError::Runtime("no free network slot".into()))?;
                Some(n.attach(name, slot)?)
            }
            (None, true) => {
                return Err(AgentError::InvalidPlan(format!(
                    "enclave {name} wants networking but the agent runs without --network"
                )));
            }
            _ => None,
        };
        // Shaping before the first packet, too.
        if let (Some(n), Some(id)) = (&self.net, &net_id) {
            let shaped = n
                .set_egress(id, wanted.limits.egress)
                .and_then(|_| n.set_ingress(id, wanted.limits.ingress));
            if let Err(e) = shaped {
                let _ = n.detach(id);
                let _ = self.cgroups.remove(&group);
                return Err(e);
            }
            writes += 2;
        }
        let identity = Identity {
            name: name.to_string(),
            group: group.clone(),
            netns: net_id.as_ref().map(|n| n.netns.clone()),
        };
        let ctx = LaunchContext {
            identity,
            spec,
            work_dir: self.cfg.data_dir.join("enclaves").join(name),
            cgroups: self.cgroups.clone(),
            env: self.gpu.launch_env(wanted.limits.gpu_percent),
        };
        let enclave = match self.runtime.launch(ctx).await {
            Ok(e) => e,
            Err(e) => {
                if let (Some(n), Some(id)) = (&self.net, &net_id) {
                    let _ = n.detach(id);
                }
                let _ = self.cgroups.remove(&group);
                return Err(e);
            }
        };
        let probe = Probe::open(
            self.cgroups.as_ref(),
            &group,
            net_id.as_ref().map(|n| n.host_veth.as_str()),
        )?;
        self.enclaves.insert(
            name.to_string(),
            Running {
                plan: wanted.clone(),
                enclave,
                net: net_id,
                probe,
                last: None,
                usage: Usage::default(),
                exited: false,
                supervisor: Supervisor::new(name, (self.signer_factory)(name)),
                reports: VecDeque::new(),
            },
        );
        for change in initial_changes(wanted) {
            if matches!(change, Change::State(_) | Change::Gpu(_)) {
                self.apply_change(name, &change).await?;
                writes += 1;
            }
        }
        Ok(writes + 1)
    }

    fn write_cgroup(&self, group: &str, change: &Change) -> Result<()> {
        match change {
            Change::CpuCap(c) => self.cgroups.set_cpu_cap(group, *c),
            Change::Weight(w) => self.cgroups.set_weight(group, *w),
            Change::Memory {
                limit_bytes,
                high_bytes,
            } => self.cgroups.set_memory(group, *limit_bytes, *high_bytes),
            _ => Ok(()),
        }
    }

    async fn apply_change(&mut self, name: &str, change: &Change) -> Result<()> {
        let group = self.group_of(name);
        let r = self
            .enclaves
            .get_mut(name)
            .ok_or_else(|| AgentError::UnknownEnclave(name.into()))?;
        match change {
            Change::CpuCap(_) | Change::Weight(_) | Change::Memory { .. } => {
                self.write_cgroup(&group, change)
            }
            Change::Egress(bw) | Change::Ingress(bw) => {
                let (Some(n), Some(id)) = (&self.net, &r.net) else {
                    return Err(AgentError::InvalidPlan(format!(
                        "enclave {name} has no network to shape"
                    )));
                };
                if matches!(change, Change::Egress(_)) {
                    n.set_egress(id, *bw)
                } else {
                    n.set_ingress(id, *bw)
                }
            }
            Change::Gpu(p) => self.gpu.set_share(name, *p),
            Change::State(RunState::Suspend) => r.enclave.suspend().await,
            Change::State(RunState::Run) => r.enclave.resume().await,
        }
    }

    async fn stop_enclave(&mut self, name: &str) -> Result<()> {
        if let Some(mut r) = self.enclaves.remove(name) {
            r.enclave.stop().await?;
            if let (Some(n), Some(id)) = (&self.net, &r.net) {
                n.detach(id)?;
            }
            self.cgroups.remove(&r.enclave.identity().group)?;
        }
        Ok(())
    }

    /// Takes one sample of every enclave; reports OOM kills and exits as events.
    pub async fn sample(&mut self) {
        let now = tokio::time::Instant::now();
        let mut events = Vec::new();
        self.ticks += 1;
        let with_oom = self.ticks % OOM_EVERY == 1;
        let links = match self.net_counters.as_mut() {
            Some(n) => n.read(),
            None => Default::default(),
        };
        for (name, r) in self.enclaves.iter_mut() {
            let Ok(mut s) = r.probe.read(&mut self.buf, &links, with_oom) else {
                continue;
            };
            if !with_oom {
                s.oom_kills = r.last.map_or(0, |(_, p)| p.oom_kills);
                s.memory_limit_hits = r.last.map_or(0, |(_, p)| p.memory_limit_hits);
            }
            if let Some(pids) = r.enclave.pid().map(|p| vec![p]) {
                s.gpu_percent = self.gpu.utilization_percent(&pids);
            }
            if let Some((t0, prev)) = r.last {
                if s.oom_kills > prev.oom_kills {
                    events.push((name.clone(), EventKind::OomKill { total: s.oom_kills }));
                }
                if s.memory_limit_hits > prev.memory_limit_hits {
                    events.push((
                        name.clone(),
                        EventKind::MemoryReclaim {
                            limit_hits_total: s.memory_limit_hits,
                        },
                    ));
                }
                r.usage = Usage::between(&prev, &s, now - t0);
            } else {
                r.usage = Usage::between(&s, &s, Duration::from_nanos(1));
                if s.oom_kills > 0 {
                    events.push((name.clone(), EventKind::OomKill { total: s.oom_kills }));
                }
            }
            r.last = Some((now, s));
            if let Some(rep) = r.supervisor.report(unix_ns(), s) {
                if r.reports.len() == REPORTS_MAX {
                    r.reports.pop_front();
                }
                r.reports.push_back(rep);
            }
            if !r.exited
                && let Ok(Some(code)) = r.enclave.exit_code()
            {
                r.exited = true;
                events.push((name.clone(), EventKind::Exited { code }));
            }
        }
        for (name, kind) in events {
            self.event(Some(&name), kind);
        }
    }

    /// Reads back what the plan says and writes it again where it drifted (fail-safe: a limit
    /// removed behind our back comes back, a suspended enclave someone resumed is suspended
    /// again; the other direction is left to the next plan).
    pub async fn reconcile(&mut self) {
        let mut fixes = Vec::new();
        let mut resuspended = Vec::new();
        for (name, r) in self.enclaves.iter_mut() {
            if r.plan.state == RunState::Suspend
                && !r.exited
                && matches!(r.enclave.status().await, Ok(EnclaveStatus::Running))
                && r.enclave.suspend().await.is_ok()
            {
                resuspended.push(name.clone());
            }
        }
        for name in resuspended {
            self.event(
                Some(&name),
                EventKind::Reenforced {
                    what: "suspend".into(),
                },
            );
        }
        for (name, r) in &self.enclaves {
            let g = &r.enclave.identity().group;
            let l = &r.plan.limits;
            if self.cgroups.cpu_cap(g).ok() != Some(l.cpu_millicores) {
                fixes.push((name.clone(), Change::CpuCap(l.cpu_millicores), "cpu cap"));
            }
            if self.cgroups.weight_is(g, r.plan.weight).ok() == Some(false) {
                fixes.push((name.clone(), Change::Weight(r.plan.weight), "weight"));
            }
            if let Ok(m) = self.cgroups.memory_limit(g)
                && !same_memory(m, l.memory_bytes)
            {
                fixes.push((
                    name.clone(),
                    Change::Memory {
                        limit_bytes: l.memory_bytes,
                        high_bytes: l.memory_high_bytes,
                    },
                    "memory limit",
                ));
            }
        }
        for (name, change, what) in fixes {
            let g = self.group_of(&name);
            if self.write_cgroup(&g, &change).is_ok() {
                self.event(
                    Some(&name),
                    EventKind::Reenforced {
                        what: what.to_string(),
                    },
                );
            }
        }
    }

    pub async fn status(&mut self) -> AgentStatus {
        let mut enclaves = Vec::new();
        for (name, r) in self.enclaves.iter_mut() {
            let status = r
                .enclave
                .status()
                .await
                .unwrap_or(EnclaveStatus::Exited { code: None });
            enclaves.push(EnclaveReport {
                name: name.clone(),
                status,
                pid: r.enclave.pid(),
                identity: r.enclave.identity().clone(),
                ip: r.net.as_ref().map(|n| n.ip),
                plan: r.plan.clone(),
                usage: r.usage,
            });
        }
        AgentStatus {
            instance: self.cfg.instance.clone(),
            runtime: self.cfg.runtime,
            cgroup_version: self.cgroups.version(),
            gpu: self
                .gpu
                .absent_reason()
                .map_or_else(|| self.gpu.name().to_string(), str::to_string),
            applied_version: self.applied.as_ref().map(|p| p.version),
            controller_link: self.link,
            enclaves,
            events: self.events.iter().cloned().collect(),
        }
    }

    /// Handles a controller-link event. Down never changes what is enforced.
    pub async fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Plan(p) => {
                let _ = self.apply(p).await;
            }
            LinkEvent::Up => {
                self.link = LinkState::Up;
                self.event(None, EventKind::ControllerLinkUp);
            }
            LinkEvent::Down => {
                self.link = LinkState::Down;
                let keeping_version = self.applied.as_ref().map(|p| p.version);
                self.event(None, EventKind::ControllerLinkDown { keeping_version });
            }
        }
    }

    /// The event loop: samples on the grid, reconciles, serves requests and link events,
    /// until `shutdown` resolves; then stops every enclave and removes what it created.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut link: Option<mpsc::Receiver<LinkEvent>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        let mut sample_tick = sampling_interval(self.cfg.sample_period);
        let mut reconcile_tick = sampling_interval(self.cfg.reconcile_period);
        tokio::pin!(shutdown);
        let mut requests_open = true;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = sample_tick.tick() => self.sample().await,
                _ = reconcile_tick.tick() => self.reconcile().await,
                req = requests.recv(), if requests_open => match req {
                    Some(Request::Apply(plan, reply)) => {
                        let r = self.apply(plan).await.map_err(|e| e.to_string());
                        let _ = reply.send(r);
                    }
                    Some(Request::Status(reply)) => {
                        let s = self.status().await;
                        let _ = reply.send(s);
                    }
                    Some(Request::DrainReports(reply)) => {
                        let _ = reply.send(self.drain_reports());
                    }
                    None => requests_open = false,
                },
                ev = async {
                    match link.as_mut() {
                        Some(l) => l.recv().await,
                        None => std::future::pending().await,
                    }
                }, if link.is_some() => {
                    match ev {
                        Some(ev) => self.on_link(ev).await,
                        None => {
                            // The stream is gone: keep enforcing the last plan.
                            link = None;
                            self.on_link(LinkEvent::Down).await;
                        }
                    }
                }
            }
        }
        self.shutdown().await
    }

    /// Stops every enclave and removes our cgroups, namespaces, links and qdiscs. The applied
    /// plan stays on disk so the next start re-applies it.
    pub async fn shutdown(mut self) -> Result<()> {
        let names: Vec<String> = self.enclaves.keys().cloned().collect();
        let mut first_err = None;
        for n in names {
            if let Err(e) = self.stop_enclave(&n).await {
                first_err.get_or_insert(e);
            }
        }
        if let Some(n) = &self.net {
            let _ = n.teardown();
        }
        if let Err(e) = crate::cleanup::cleanup_instance(self.cgroups.as_ref(), &self.cfg.instance)
        {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn plan_name_ok(instance: &str) -> Result<()> {
    crate::plan::validate_name(instance).map_err(|_| {
        AgentError::InvalidPlan(format!("instance name {instance:?}: use a-z, 0-9, - and _"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_compare_in_pages() {
        assert!(same_memory(Some(10_000), Some(8192)));
        assert!(!same_memory(Some(8192), None));
        assert!(same_memory(None, None));
    }
}
