//! Scenarios and the faults they inject, on a schedule drawn from the run's seed.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::Error;
use super::agents::Agents;
use super::net::Net;
use super::nodes::{Disks, Nodes};
use super::proxy::{Proxy, Shaping};

/// A scenario: which faults a run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// No faults: the baseline.
    None,
    /// kill -9 a controller, restart it later.
    Kill,
    /// SIGSTOP a controller, SIGCONT it later (slow, not dead).
    Pause,
    /// A controller cut off both ways from one or both peers (the one-peer case is a
    /// non-transitive partition).
    Partition,
    /// Packets from one controller to another dropped, the other direction kept.
    OneWay,
    /// The current leader cut off from every peer.
    LeaderIsolated,
    /// A minority (one of three) cut off from the majority.
    Minority,
    /// A link cut and healed every few hundred milliseconds.
    Flapping,
    /// Random packet loss (10–40 %) on every link between controllers, both ways.
    Lossy,
    /// A controller's disk (its own tmpfs) filled up; freed when the fault ends. The
    /// controller may stop (fail-stop) while its disk is full, and is restarted then.
    DiskFull,
    /// Any of the above, drawn per fault.
    Mixed,
    /// Through the userspace proxy ([`super::proxy`]): delay with jitter on every link, a
    /// stalled link, or connections reset with their in-flight requests delivered late.
    SlowNet,
    /// A controller killed, a torn record written at the end of its Raft log, restarted.
    TornWrite,
    /// One controller's wall clock jumped (forward or back) through the test hook
    /// `clock-offset`, jumped back when the fault ends. Only a `cargo test` build has the hook;
    /// any other build counts the fault as `clock-jump-unavailable` and injects nothing.
    ClockJump,
    /// A voter removed through the API (a follower, or the leader one time in three), added
    /// back as a voter when the fault ends.
    Membership,
    /// Host agents faulted ([`AgentActive`]): one cut off from every controller, or from some
    /// only, or killed with SIGKILL and restarted. Runs with agents (this one and `Mixed`)
    /// check enforcement (`super::enforce`) and the usage chains (`super::chain`).
    Agents,
}

impl Scenario {
    pub const ALL: [Scenario; 16] = [
        Scenario::None,
        Scenario::Kill,
        Scenario::Pause,
        Scenario::Partition,
        Scenario::OneWay,
        Scenario::LeaderIsolated,
        Scenario::Minority,
        Scenario::Flapping,
        Scenario::Lossy,
        Scenario::DiskFull,
        Scenario::Mixed,
        Scenario::SlowNet,
        Scenario::TornWrite,
        Scenario::ClockJump,
        Scenario::Membership,
        Scenario::Agents,
    ];

    /// The kinds `Mixed` draws from (for the controllers; its agent faults are drawn apart,
    /// from a generator of their own, so adding them left `Mixed`'s controller faults for a
    /// seed as they were).
    const SINGLE: [Scenario; 13] = [
        Scenario::Kill,
        Scenario::Pause,
        Scenario::Partition,
        Scenario::OneWay,
        Scenario::LeaderIsolated,
        Scenario::Minority,
        Scenario::Flapping,
        Scenario::Lossy,
        Scenario::DiskFull,
        Scenario::SlowNet,
        Scenario::TornWrite,
        Scenario::ClockJump,
        Scenario::Membership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::None => "none",
            Scenario::Kill => "kill",
            Scenario::Pause => "pause",
            Scenario::Partition => "partition",
            Scenario::OneWay => "one-way",
            Scenario::LeaderIsolated => "leader-isolated",
            Scenario::Minority => "minority",
            Scenario::Flapping => "flapping",
            Scenario::Lossy => "lossy",
            Scenario::DiskFull => "disk-full",
            Scenario::Mixed => "mixed",
            Scenario::SlowNet => "slow-net",
            Scenario::TornWrite => "torn-write",
            Scenario::ClockJump => "clock-jump",
            Scenario::Membership => "membership",
            Scenario::Agents => "agents",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Whether a run of this scenario has host agents.
    pub fn has_agents(self) -> bool {
        matches!(self, Scenario::Agents | Scenario::Mixed)
    }
}

/// A fault in force, to be undone when its time is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Active {
    Killed(usize),
    Paused(usize),
    Net,
    Flapping {
        a: usize,
        b: usize,
    },
    DiskFull(usize),
    /// Proxy shaping (delay, stall): healed at the end.
    Shaped,
    /// Connections between `a` and `b` reset every few hundred ms, in-flight bytes `late`.
    Resetting {
        a: usize,
        b: usize,
        late: Duration,
    },
    /// Killed, its log's tail torn; restarted when the fault ends.
    Torn(usize),
    /// Its wall clock offset by `.1` ms; set back to 0 when the fault ends.
    Clock(usize, i64),
    /// To be removed from the voters (the run does it through the API), added back at the end.
    Removed(usize),
}

/// Faults injected, by kind.
pub type Counts = BTreeMap<String, u64>;

fn count(c: &mut Counts, kind: &str) {
    *c.entry(kind.to_string()).or_default() += 1;
}

/// What faults act on.
pub struct World<'a> {
    pub nodes: &'a mut Nodes,
    pub net: &'a mut Net,
    pub disks: &'a Disks,
    pub proxy: &'a Proxy,
}

/// Injects one fault of `scenario` (for `Mixed`, of a kind drawn from `rng`); what to undo.
pub fn inject(
    scenario: Scenario,
    rng: &mut ChaCha8Rng,
    w: &mut World<'_>,
    leader: Option<usize>,
    counts: &mut Counts,
) -> Result<Option<Active>, Error> {
    let World {
        nodes,
        net,
        disks,
        proxy,
    } = w;
    let n = nodes.nodes.len();
    let pick = |rng: &mut ChaCha8Rng| rng.random_range(0..n);
    let kind = match scenario {
        Scenario::Mixed => Scenario::SINGLE[rng.random_range(0..Scenario::SINGLE.len())],
        s => s,
    };
    let active = match kind {
        Scenario::None | Scenario::Mixed | Scenario::Agents => None,
        Scenario::Kill => {
            let i = pick(rng);
            nodes.kill9(i);
            count(counts, "kill-9");
            Some(Active::Killed(i))
        }
        Scenario::Pause => {
            let i = pick(rng);
            nodes.pause(i);
            count(counts, "pause");
            Some(Active::Paused(i))
        }
        Scenario::Partition => {
            let i = pick(rng);
            let both = rng.random_bool(0.5);
            for j in (0..n).filter(|&j| j != i) {
                if both || j == (i + 1) % n {
                    net.cut(i, j)?;
                }
            }
            count(
                counts,
                if both {
                    "partition-two-way"
                } else {
                    "partition-non-transitive"
                },
            );
            Some(Active::Net)
        }
        Scenario::OneWay => {
            let from = pick(rng);
            let to = (from + rng.random_range(1..n)) % n;
            net.block(from, to)?;
            count(counts, "partition-one-way");
            Some(Active::Net)
        }
        Scenario::LeaderIsolated => {
            let i = leader.unwrap_or_else(|| pick(rng));
            for j in (0..n).filter(|&j| j != i) {
                net.cut(i, j)?;
            }
            count(counts, "leader-isolated");
            Some(Active::Net)
        }
        Scenario::Minority => {
            // A follower when the leader is known: the majority keeps its leader.
            let i = match leader {
                Some(l) => (l + rng.random_range(1..n)) % n,
                None => pick(rng),
            };
            for j in (0..n).filter(|&j| j != i) {
                net.cut(i, j)?;
            }
            count(counts, "minority-isolated");
            Some(Active::Net)
        }
        Scenario::DiskFull => {
            let i = pick(rng);
            disks.fill(i)?;
            count(counts, "disk-full");
            Some(Active::DiskFull(i))
        }
        Scenario::Lossy => {
            let pct = rng.random_range(10..=40);
            for a in 0..n {
                for b in (0..n).filter(|&b| b != a) {
                    net.lose(a, b, pct)?;
                }
            }
            count(counts, "packet-loss");
            Some(Active::Net)
        }
        Scenario::Flapping => {
            let a = pick(rng);
            let b = (a + rng.random_range(1..n)) % n;
            net.cut(a, b)?;
            count(counts, "flapping");
            Some(Active::Flapping { a, b })
        }
        Scenario::SlowNet => Some(slow_net(rng, n, proxy, counts)),
        Scenario::Membership => Some(Active::Removed(match leader {
            Some(l) if rng.random_range(0..3) == 0 => l,
            Some(l) => (l + rng.random_range(1..n)) % n,
            None => pick(rng),
        })),
        Scenario::ClockJump => {
            let i = pick(rng);
            // Seconds to hours, either way: NTP corrections to an operator's `date -s`.
            let secs: i64 = match rng.random_range(0..3) {
                0 => rng.random_range(1..30),
                1 => rng.random_range(30..3600),
                _ => rng.random_range(3600..48 * 3600),
            };
            let ms = if rng.random_bool(0.5) { secs } else { -secs } * 1000;
            if tribune_controller::test_fault::COMPILED_IN {
                nodes.set_clock_offset(i, ms)?;
                count(
                    counts,
                    if ms > 0 {
                        "clock-jump-forward"
                    } else {
                        "clock-jump-back"
                    },
                );
                count(counts, "clock-jump");
                Some(Active::Clock(i, ms))
            } else {
                count(counts, "clock-jump-unavailable");
                None
            }
        }
        Scenario::TornWrite => {
            let i = pick(rng);
            nodes.kill9(i);
            let how = super::torn::tear(&nodes.nodes[i].data_dir, rng)?;
            count(counts, &format!("torn-write-{}", how.name()));
            if how == super::torn::Tear::NoLog {
                Some(Active::Killed(i))
            } else {
                count(counts, "torn-write");
                Some(Active::Torn(i))
            }
        }
    };
    Ok(active)
}

/// One proxy fault: delay with jitter on every link, one stalled direction, or resets with
/// late delivery between two controllers.
fn slow_net(rng: &mut ChaCha8Rng, n: usize, proxy: &Proxy, counts: &mut Counts) -> Active {
    match rng.random_range(0..3) {
        0 => {
            for a in 0..n {
                for b in (0..n).filter(|&b| b != a) {
                    proxy.shape(
                        (a, b),
                        Shaping {
                            delay: Duration::from_millis(rng.random_range(10..150)),
                            jitter: Duration::from_millis(rng.random_range(0..100)),
                            stalled: false,
                        },
                    );
                }
            }
            count(counts, "proxy-delay");
            Active::Shaped
        }
        1 => {
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            proxy.shape(
                (a, b),
                Shaping {
                    stalled: true,
                    ..Default::default()
                },
            );
            count(counts, "proxy-stall");
            Active::Shaped
        }
        _ => {
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            // Delay keeps requests in flight, so a reset has something to deliver late.
            for d in [(a, b), (b, a)] {
                proxy.shape(
                    d,
                    Shaping {
                        delay: Duration::from_millis(rng.random_range(30..120)),
                        jitter: Duration::from_millis(rng.random_range(0..40)),
                        stalled: false,
                    },
                );
            }
            count(counts, "proxy-reset-late");
            Active::Resetting {
                a,
                b,
                late: Duration::from_millis(rng.random_range(100..400)),
            }
        }
    }
}

/// Undoes `active`.
pub fn undo(active: &Active, w: &mut World<'_>) -> Result<(), Error> {
    let World {
        nodes,
        net,
        disks,
        proxy,
    } = w;
    match *active {
        Active::DiskFull(i) => {
            disks.free(i);
            nodes.start(i)
        }
        Active::Killed(i) | Active::Torn(i) => nodes.start(i),
        Active::Clock(i, _) => nodes.set_clock_offset(i, 0),
        // The run adds it back through the API.
        Active::Removed(_) => Ok(()),
        Active::Shaped | Active::Resetting { .. } => {
            proxy.heal();
            Ok(())
        }
        Active::Paused(i) => {
            nodes.resume(i);
            Ok(())
        }
        Active::Net | Active::Flapping { .. } => net.heal(),
    }
}

/// One flap of a flapping link (cut if whole, whole if cut), or one reset of a resetting one.
pub fn flap(active: &Active, net: &mut Net, proxy: &Proxy) -> Result<(), Error> {
    match *active {
        Active::Flapping { a, b } => {
            if net.blocked().contains(&(a, b)) {
                net.heal()?;
            } else {
                net.cut(a, b)?;
            }
        }
        Active::Resetting { a, b, late } => {
            proxy.reset(a, b, late);
        }
        _ => {}
    }
    Ok(())
}

/// A fault of a host agent in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentActive {
    /// Cut off from every controller (`all`), or from some only.
    Cut { agent: usize, all: bool },
    /// Killed with SIGKILL; restarted when the fault ends.
    Killed(usize),
    /// A follower, `controller`, cut off from the other controllers, and `agent` from it: the
    /// agent stays with the majority, where its enclaves are throttled and suspended while
    /// the follower falls behind. When the fault ends the follower rejoins and the agent is
    /// moved onto it alone ([`rejoin_behind`]), so its stream lands on a controller still
    /// behind the log: the chaos run in which such a controller thawed a suspended enclave.
    Behind { agent: usize, controller: usize },
}

/// Injects one agent fault drawn from `rng`.
pub fn inject_agent(
    rng: &mut ChaCha8Rng,
    net: &mut Net,
    agents: &mut Agents,
    leader: Option<usize>,
    counts: &mut Counts,
) -> Result<AgentActive, Error> {
    let k = rng.random_range(0..agents.agents.len());
    let n = net.slots.len();
    Ok(match rng.random_range(0..4) {
        0 => {
            net.cut_agent(k, 0..n)?;
            count(counts, "agent-cut-off");
            AgentActive::Cut {
                agent: k,
                all: true,
            }
        }
        1 => {
            // One or two of the controllers.
            let first = rng.random_range(0..n);
            let how_many = rng.random_range(1..n);
            net.cut_agent(k, (0..how_many).map(|c| (first + c) % n))?;
            count(counts, "agent-cut-from-some");
            AgentActive::Cut {
                agent: k,
                all: false,
            }
        }
        2 => {
            agents.kill9(k);
            count(counts, "agent-kill-9");
            AgentActive::Killed(k)
        }
        _ => {
            let x = match leader {
                Some(l) => (l + rng.random_range(1..n)) % n,
                None => rng.random_range(0..n),
            };
            net.isolate(x, (0..n).filter(|&c| c != x))?;
            net.cut_agent(k, [x])?;
            count(counts, "agent-to-controller-behind");
            AgentActive::Behind {
                agent: k,
                controller: x,
            }
        }
    })
}

/// The second phase of [`AgentActive::Behind`]: the follower rejoins the other controllers and
/// the agent can reach it alone. Returns the agent moved (`None` for any other fault); the
/// caller holds this phase a while, then [`undo_agent`] heals the agent's cuts.
pub fn rejoin_behind(a: AgentActive, net: &mut Net) -> Result<Option<usize>, Error> {
    let AgentActive::Behind { agent, controller } = a else {
        return Ok(None);
    };
    let others: Vec<usize> = (0..net.slots.len()).filter(|&c| c != controller).collect();
    net.rejoin(controller, &others, agent, &others)?;
    Ok(Some(agent))
}

/// Undoes an agent fault.
pub fn undo_agent(a: AgentActive, net: &mut Net, agents: &mut Agents) -> Result<(), Error> {
    match a {
        AgentActive::Cut { .. } | AgentActive::Behind { .. } => net.heal_agents(),
        AgentActive::Killed(k) => agents.start(k),
    }
}

/// How long the cluster runs undisturbed between faults, and how long a fault lasts.
pub fn quiet(rng: &mut ChaCha8Rng) -> Duration {
    Duration::from_millis(rng.random_range(500..1500))
}

pub fn hold(rng: &mut ChaCha8Rng) -> Duration {
    Duration::from_millis(rng.random_range(1000..4000))
}

pub fn flap_every(rng: &mut ChaCha8Rng) -> Duration {
    Duration::from_millis(rng.random_range(150..500))
}
