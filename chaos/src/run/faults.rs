//! Scenarios and the faults they inject, on a schedule drawn from the run's seed.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::Error;
use super::net::Net;
use super::nodes::{Disks, Nodes};

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
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
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
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// A fault in force, to be undone when its time is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Active {
    Killed(usize),
    Paused(usize),
    Net,
    Flapping { a: usize, b: usize },
    DiskFull(usize),
}

/// Faults injected, by kind.
pub type Counts = BTreeMap<String, u64>;

fn count(c: &mut Counts, kind: &str) {
    *c.entry(kind.to_string()).or_default() += 1;
}

/// Injects one fault of `scenario` (for `Mixed`, of a kind drawn from `rng`); what to undo.
pub fn inject(
    scenario: Scenario,
    rng: &mut ChaCha8Rng,
    nodes: &mut Nodes,
    net: &mut Net,
    disks: &Disks,
    leader: Option<usize>,
    counts: &mut Counts,
) -> Result<Option<Active>, Error> {
    let n = nodes.nodes.len();
    let pick = |rng: &mut ChaCha8Rng| rng.random_range(0..n);
    let kind = match scenario {
        Scenario::Mixed => Scenario::ALL[rng.random_range(1..Scenario::ALL.len() - 1)],
        s => s,
    };
    let active = match kind {
        Scenario::None | Scenario::Mixed => None,
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
    };
    Ok(active)
}

/// Undoes `active`.
pub fn undo(active: &Active, nodes: &mut Nodes, net: &mut Net, disks: &Disks) -> Result<(), Error> {
    match *active {
        Active::DiskFull(i) => {
            disks.free(i);
            nodes.start(i)
        }
        Active::Killed(i) => nodes.start(i),
        Active::Paused(i) => {
            nodes.resume(i);
            Ok(())
        }
        Active::Net | Active::Flapping { .. } => net.heal(),
    }
}

/// One flap of a flapping link: cut if whole, whole if cut.
pub fn flap(active: &Active, net: &mut Net) -> Result<(), Error> {
    if let Active::Flapping { a, b } = *active {
        if net.blocked().contains(&(a, b)) {
            net.heal()?;
        } else {
            net.cut(a, b)?;
        }
    }
    Ok(())
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
