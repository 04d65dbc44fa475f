//! The agent: owns the enclaves of this host and applies plans to them. It decides nothing:
//! every limit it writes comes from a plan, and without a newer plan it keeps enforcing the
//! last one (re-applied after a restart, re-written if someone changes it behind our back).
//!
//! - this file: configuration, the state the agent owns, start (re-apply or adopt), the event
//!   loop and shutdown; the controllers are reached only through the link's two channels
//!   (`crate::link_messages`), never by calling into `crate::link`;
//! - `apply`: plans → launches, writes, stops, and adoption after a crash;
//! - `observe`: sampling, reconcile (re-enforcing), status;
//! - `report`: what the agent says about itself (status, events, apply reports, requests);
//! - `run_state`: an enclave's run state against its plan (what reconcile re-enforces).

mod apply;
mod handoff;
mod migrate;
mod observe;
mod report;
mod run_state;

pub use crate::link_messages::{LinkEvent, RefusedLaunch};
pub use report::{
    AgentEvent, AgentStatus, ApplyReport, EnclaveReport, EventKind, LinkState, Request,
};

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::Instrument;

use crate::cgroup::{self, CgroupEnforcer};
use crate::cleanup;
use crate::collector::{
    NetCounters, Probe, SAMPLE_PERIOD_DEFAULT, Sample, Usage, sampling_interval,
};
use crate::error::{AgentError, Result};
use crate::fence::EpochFloors;
use crate::gpu::{self, GpuBackend};
use crate::launch::{Credentials, EnclaveUsers, HostFiles, LaunchPolicy};
use crate::link_messages::ToLink;
use crate::mediator::Mediator;
use crate::net::{NetConfig, NetIdentity, Network};
use crate::plan::{self, EnclavePlan, Plan};
use crate::runtime::{Enclave, Runtime, RuntimeKind, new_runtime};
use crate::store::PlanStore;
use crate::sys;

/// Most events kept for `status` (oldest dropped).
pub const EVENTS_MAX: usize = 256;

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
    /// Controller addresses (the attestation stream: `crate::link`, started by the caller).
    pub controllers: Vec<String>,
    /// Not root: launch and measure enclaves but enforce nothing (`cgroup::observe`).
    pub observe_only: bool,
    /// What this host launches (`crate::launch`). The default refuses every launch.
    pub launch_policy: LaunchPolicy,
    /// Whom enclaves run as when the agent is root (never root itself).
    pub enclave_users: EnclaveUsers,
    /// The mediator's per-sender queue bounds (`crate::mediator`).
    pub mediator_bounds: crate::mediator::fq::Bounds,
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
            observe_only: false,
            launch_policy: LaunchPolicy::Unconfigured,
            enclave_users: EnclaveUsers::default(),
            mediator_bounds: crate::mediator::fq::Bounds::default(),
        }
    }

    /// Our cgroup subtree.
    pub fn group_root(&self) -> String {
        format!("{}/{}", cgroup::PREFIX, self.instance)
    }
}

struct Running {
    plan: EnclavePlan,
    enclave: Box<dyn Enclave>,
    net: Option<NetIdentity>,
    probe: Probe,
    last: Option<Taken>,
    /// Where the usage not yet handed to the link starts (back-pressure: the link did not
    /// keep up, so the next window starts here and covers the time since; `observe.rs`).
    unsent: Option<Taken>,
    usage: Usage,
    exited: bool,
    /// Whom it runs as (`None`: the agent's own user, when the agent is not root).
    user: Option<Credentials>,
    /// A live migration it takes part in (`migrate`).
    migration: Option<Migration>,
    /// That migration's id (empty: not known, e.g. an outgoing one adopted after a restart).
    migration_id: String,
    /// The agent resumed it for its plan and has not seen it running since: reconcile tries
    /// again (`run_state`; a VM that arrived paused from a migration, issue 14).
    resume_owed: bool,
    /// Target of a live migration of a VM in a network namespace: the task that hands the
    /// stream to QEMU (`handoff`), aborted when the record goes.
    handoff: Option<handoff::Handoff>,
}

/// An enclave's part in a live migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Migration {
    /// Target: QEMU waits for (or holds, paused) the incoming state; no plan stops it until
    /// the migration ends, and it resumes only when a plan names it (under the new epoch).
    Incoming,
    /// Source: its state is being sent; it is resumed only by a rollback.
    Outgoing,
}

/// An enclave's last sample and when it was taken: on the monotonic clock (its rate in
/// `status`) and on the wall clock (the usage window the controllers get).
#[derive(Clone, Copy, Debug)]
struct Taken {
    at: tokio::time::Instant,
    at_unix_ns: u64,
    sample: Sample,
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
    /// The attestation stream's link (windows, running enclaves, applied plans).
    uplink: Option<mpsc::Sender<ToLink>>,
    /// Digests of the files the launch allow-list names.
    files: HostFiles,
    /// Enclaves of the applied plan whose launch the allow-list refused (name → why).
    refused: BTreeMap<String, String>,
    /// The agent runs as root: enclaves get their own unprivileged credentials.
    root: bool,
    /// Inter-enclave messages: a socket per enclave of the applied plan.
    mediator: Mediator,
    /// The highest placement epoch seen per enclave (`crate::fence`).
    epochs: EpochFloors,
}

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

impl Agent {
    /// Checks the host, clears leftovers of this instance, and re-applies the last plan.
    pub async fn start(cfg: AgentConfig) -> Result<Agent> {
        plan_name_ok(&cfg.instance)?;
        let is_root = sys::is_root();
        if is_root {
            cfg.enclave_users
                .validate()
                .map_err(AgentError::InvalidConfig)?;
        }
        match &cfg.launch_policy {
            LaunchPolicy::AllowAnyDev => tracing::warn!(
                "INSECURE LAUNCHES: --insecure-allow-any-launch is set, so whoever can write a \
                 plan for this host chooses the program it runs (unprivileged, but unchecked); \
                 development only — configure --launch-policy FILE instead"
            ),
            LaunchPolicy::Unconfigured => tracing::warn!(
                "no launch allow-list (--launch-policy FILE): every enclave launch will be refused"
            ),
            p @ LaunchPolicy::AllowList(_) => tracing::info!("{}", p.summary()),
        }
        if is_root {
            tracing::info!("enclaves run as {}", cfg.enclave_users);
        } else {
            tracing::info!("not root: enclaves run as the agent's own user, with no_new_privs");
        }
        let cgroups: Arc<dyn CgroupEnforcer> = if cfg.observe_only {
            if cfg.network.is_some() || cfg.runtime != RuntimeKind::Process {
                return Err(AgentError::InvalidPlan(
                    "observe-only runs process enclaves without networking".into(),
                ));
            }
            tracing::warn!(
                "OBSERVE-ONLY: this agent launches and measures enclaves but enforces no limit \
                 (not root: no cgroups, no tc, no freezer)"
            );
            Arc::new(cgroup::observe::ObserveOnly::new())
        } else {
            sys::require_root()?;
            Arc::from(cgroup::detect(&cfg.cgroup_root)?)
        };
        let store = PlanStore::new(&cfg.data_dir)?;
        let stored = store.load()?;
        let epochs = store.load_epochs()?;
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
        // VMs waiting for (or holding) a migration's state are in no plan: adopted from the
        // record of migrations in (`store::INCOMING_FILE`), paused as they were.
        let mut incoming = store.load_incoming()?;
        incoming.retain(|n, _| {
            cfg.runtime == RuntimeKind::Qemu
                && !survivors.contains_key(n)
                && cgroups
                    .pids(&format!("{root}/{n}"))
                    .is_ok_and(|p| !p.is_empty())
        });
        store.save_incoming(&incoming)?;
        let keep: Vec<&str> = survivors
            .keys()
            .chain(incoming.keys())
            .map(String::as_str)
            .collect();
        cleanup::cleanup_instance_except(cgroups.as_ref(), &cfg.instance, &keep)?;
        cgroups.create(&root)?;
        if let Some(cpus) = &cfg.cpuset_cpus {
            cgroups.set_cpuset(&root, cpus)?;
        }
        let net = match &cfg.network {
            Some(n) => Some(Network::setup(&cfg.instance, n.clone())?),
            None => None,
        };
        let mediator = Mediator::new(&cfg.data_dir.join("msg"), cfg.mediator_bounds)?;
        let mut agent = Agent {
            mediator,
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
            uplink: None,
            files: HostFiles::new(),
            refused: BTreeMap::new(),
            root: is_root,
            epochs,
        };
        for (name, m) in incoming {
            let pids = agent
                .cgroups
                .pids(&agent.group_of(&name))
                .unwrap_or_default();
            match agent
                .adopt(&name, &m.plan, pids, Some(&m.migration_id))
                .await
            {
                Ok(()) => tracing::warn!(
                    enclave = %name,
                    migration = %m.migration_id,
                    "adopted a VM migrating in: paused until its plan names it (committed) or the migration is rolled back"
                ),
                Err(e) => {
                    tracing::warn!(enclave = %name, "cannot adopt a VM migrating in, dropping it: {e}");
                    agent.forget(&name);
                    agent.store.set_incoming(&name, None)?;
                }
            }
        }
        if let Some(plan) = stored {
            for (name, pids) in survivors {
                let wanted = &plan.enclaves[&name];
                if let Err(e) = agent.adopt(&name, wanted, pids, None).await {
                    tracing::warn!(enclave = %name, "cannot adopt, relaunching: {e}");
                    agent.forget(&name);
                }
            }
            tracing::info!(version = plan.version, "re-applying the last applied plan");
            agent.apply(plan).await?;
        }
        Ok(agent)
    }

    /// Connects the agent to the attestation stream's link ([`crate::link::run`]): from now
    /// on every sample's windows, the running enclaves and plan acks go there.
    pub fn set_uplink(&mut self, tx: mpsc::Sender<ToLink>) {
        self.uplink = Some(tx);
    }

    /// Tells the link which enclaves run now (new ones get keys and evidence).
    fn announce_enclaves(&self) {
        if let Some(u) = &self.uplink {
            let list = self
                .enclaves
                .iter()
                .map(|(n, r)| (n.clone(), r.plan.launch.clone()))
                .collect();
            if u.try_send(ToLink::Enclaves(list)).is_err() {
                tracing::warn!(
                    "the controller link is not keeping up: enclave list not handed over"
                );
            }
        }
    }

    /// GPU shares this host can give (100 per device NVML sees; 0 without).
    pub fn gpu_capacity_percent(&self) -> u32 {
        self.gpu.capacity_percent()
    }

    /// The mediator of inter-enclave messages.
    pub fn mediator(&self) -> &Mediator {
        &self.mediator
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

    /// Handles a controller-link event. Down never changes what is enforced.
    pub async fn on_link(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Plan(p, span) => {
                let version = p.version;
                let r = self.apply(p).instrument(span).await;
                if let Some(u) = &self.uplink {
                    let (error, refused) = match r {
                        Ok(rep) => (None, rep.refused),
                        Err(e) => (Some(e.to_string()), Vec::new()),
                    };
                    let _ = u.try_send(ToLink::Applied {
                        version,
                        error,
                        refused,
                    });
                }
                self.announce_enclaves();
            }
            LinkEvent::Up => {
                crate::metrics::get().link_up.set(1);
                self.link = LinkState::Up;
                self.event(None, EventKind::ControllerLinkUp);
            }
            // One event per outage, should a Down repeat (the link sends one per outage).
            LinkEvent::Down if matches!(self.link, LinkState::Down) => {}
            LinkEvent::Down => {
                let m = crate::metrics::get();
                m.link_up.set(0);
                m.link_downs.inc();
                self.link = LinkState::Down;
                let keeping_version = self.applied.as_ref().map(|p| p.version);
                self.event(None, EventKind::ControllerLinkDown { keeping_version });
                if crate::test_fault::active(crate::test_fault::Fault::LiftCapsWhenCutOff) {
                    self.lift_caps_for_test();
                }
            }
            ev @ (LinkEvent::MigrateIn { .. }
            | LinkEvent::MigrateOut { .. }
            | LinkEvent::MigrationEnd { .. }) => self.on_migration(ev).await,
        }
    }

    /// The deliberate bug `lift-caps-when-cut-off` (`crate::test_fault`, test builds only):
    /// every CPU cap removed, in the cgroups and in what reconcile holds them to.
    fn lift_caps_for_test(&mut self) {
        tracing::warn!("TEST FAULT lift-caps-when-cut-off: removing every CPU cap");
        let names: Vec<String> = self.enclaves.keys().cloned().collect();
        for name in names {
            let group = self.group_of(&name);
            if let Some(r) = self.enclaves.get_mut(&name) {
                r.plan.limits.cpu_millicores = None;
            }
            let _ = self.write_cgroup(&group, &plan::Change::CpuCap(None));
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
        self.announce_enclaves();
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
        // Queued messages are reported failed to their senders before the sockets close.
        self.mediator.shutdown(Duration::from_secs(1)).await;
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
        if let Err(e) = cleanup::cleanup_instance(self.cgroups.as_ref(), &self.cfg.instance) {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn plan_name_ok(instance: &str) -> Result<()> {
    plan::validate_name(instance).map_err(|_| {
        AgentError::InvalidPlan(format!("instance name {instance:?}: use a-z, 0-9, - and _"))
    })
}
