//! Usage collection: per enclave CPU ns, CPU wait ns (`crate::cpu_wait`), memory bytes, net
//! tx/rx bytes and GPU %, sampled on a drift-free grid (absolute deadlines: a late tick is
//! skipped, never shifts the grid).
//!
//! Cost: each probe keeps its cgroup files open and re-reads them with `pread` at offset 0
//! (no open/close, no allocation); link counters of all enclaves come from one read of
//! `/proc/net/dev` per tick; the OOM counter is read every [`OOM_EVERY`] ticks.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::cgroup::{CgroupEnforcer, CgroupProbe};
use crate::cpu_wait::WaitProbe;
use crate::error::{AgentError, Result};

/// Default sampling period (DESIGN.md §4: reports every 100 ms).
pub const SAMPLE_PERIOD_DEFAULT: Duration = Duration::from_millis(100);
/// The OOM-kill counter is read on every this-many ticks (1 s at 100 ms).
pub const OOM_EVERY: u64 = 10;
/// Largest `/proc/net/dev` read (about 150 bytes a link).
const NET_DEV_BYTES_MAX: usize = 1 << 20;

/// Cumulative counters of one enclave at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Sample {
    pub cpu_ns: u64,
    /// Cumulative time the enclave's threads were runnable but not running (`crate::cpu_wait`).
    pub cpu_wait_ns: u64,
    pub memory_bytes: u64,
    pub oom_kills: u64,
    pub memory_limit_hits: u64,
    /// Bytes the enclave sent (host-side veth received).
    pub net_tx_bytes: u64,
    /// Bytes the enclave received (host-side veth sent).
    pub net_rx_bytes: u64,
    pub gpu_percent: Option<f32>,
    /// Its inter-enclave messages, cumulative (the mediator's counters).
    pub msgs: MsgTotals,
}

/// An enclave's inter-enclave messages as the mediator counts them: cumulative in a
/// [`Sample`], what changed in a [`UsageWindow`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MsgTotals {
    /// Sent and accepted, and their payload bytes.
    pub sent: u64,
    pub sent_bytes: u64,
    /// Sent and not accepted (any reason), and their payload bytes.
    pub refused: u64,
    pub refused_bytes: u64,
}

impl MsgTotals {
    /// What changed since `prev` (a counter that went back — the enclave's counters were
    /// reset — counts as nothing).
    pub fn since(&self, prev: &MsgTotals) -> MsgTotals {
        MsgTotals {
            sent: self.sent.saturating_sub(prev.sent),
            sent_bytes: self.sent_bytes.saturating_sub(prev.sent_bytes),
            refused: self.refused.saturating_sub(prev.refused),
            refused_bytes: self.refused_bytes.saturating_sub(prev.refused_bytes),
        }
    }
}

/// Open accounting files of one enclave.
#[derive(Debug)]
pub struct Probe {
    cgroup: CgroupProbe,
    wait: WaitProbe,
    host_veth: Option<String>,
}

/// Link counters of every link in the host namespace, read once per tick.
#[derive(Debug)]
pub struct NetCounters {
    file: File,
    buf: Vec<u8>,
}

impl NetCounters {
    pub fn open() -> Result<NetCounters> {
        let p = "/proc/net/dev";
        Ok(NetCounters {
            file: File::open(p).map_err(|e| AgentError::io("open", p, e))?,
            buf: Vec::with_capacity(16 << 10),
        })
    }

    /// `(rx_bytes, tx_bytes)` per link name, borrowed from one fresh read.
    pub fn read(&mut self) -> HashMap<&str, (u64, u64)> {
        let mut len = 0;
        self.buf.resize(16 << 10, 0);
        loop {
            match self.file.read_at(&mut self.buf[len..], len as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    len += n;
                    if len == self.buf.len() {
                        if len >= NET_DEV_BYTES_MAX {
                            break;
                        }
                        self.buf.resize(len * 2, 0);
                    }
                }
            }
        }
        let text = std::str::from_utf8(&self.buf[..len]).unwrap_or("");
        parse_net_dev(text)
    }
}

/// Parses `/proc/net/dev`: `name: rx_bytes rx_packets … (8 rx fields) tx_bytes …`.
pub fn parse_net_dev(text: &str) -> HashMap<&str, (u64, u64)> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let mut f = rest.split_whitespace();
            let rx = f.next()?.parse().ok()?;
            let tx = f.nth(7)?.parse().ok()?;
            Some((name.trim(), (rx, tx)))
        })
        .collect()
}

impl Probe {
    pub fn open(cg: &dyn CgroupEnforcer, group: &str, host_veth: Option<&str>) -> Result<Probe> {
        Ok(Probe {
            cgroup: cg.open_probe(group)?,
            wait: WaitProbe::new(cg.thread_list(group)),
            host_veth: host_veth.map(str::to_string),
        })
    }

    /// One sample; `links` is this tick's [`NetCounters::read`]. GPU is filled in by the
    /// caller, which owns the GPU backend.
    pub fn read(
        &mut self,
        buf: &mut Vec<u8>,
        links: &HashMap<&str, (u64, u64)>,
        with_oom: bool,
    ) -> Result<Sample> {
        let c = self.cgroup.read_with(buf, with_oom)?;
        let (rx, tx) = self
            .host_veth
            .as_deref()
            .and_then(|d| links.get(d).copied())
            .unwrap_or((0, 0));
        Ok(Sample {
            cpu_ns: c.cpu_ns,
            cpu_wait_ns: self.wait.read(c.cpu_ns),
            memory_bytes: c.memory_bytes,
            oom_kills: c.oom_kills,
            memory_limit_hits: c.memory_limit_hits,
            // The host side of the veth receives what the enclave sends.
            net_tx_bytes: rx,
            net_rx_bytes: tx,
            gpu_percent: None,
            msgs: MsgTotals::default(),
        })
    }
}

/// A ticker on the absolute grid `start + k·period`; missed ticks are skipped.
pub fn sampling_interval(period: Duration) -> Interval {
    let mut i = tokio::time::interval_at(Instant::now() + period, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Skip);
    i
}

/// Usage derived from two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    pub cpu_ns: u64,
    /// CPU used over the last window, in millicores.
    pub cpu_millicores: u64,
    /// CPU waited for (runnable, not running) over the last window, in millicores.
    pub cpu_wait_millicores: u64,
    pub memory_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_bytes: u64,
    pub gpu_percent: Option<f32>,
    pub oom_kills: u64,
    pub memory_limit_hits: u64,
}

impl Usage {
    pub fn between(prev: &Sample, now: &Sample, window: Duration) -> Usage {
        let ns = window.as_nanos().max(1) as u64;
        Usage {
            cpu_ns: now.cpu_ns,
            cpu_millicores: now.cpu_ns.saturating_sub(prev.cpu_ns).saturating_mul(1000) / ns,
            cpu_wait_millicores: now
                .cpu_wait_ns
                .saturating_sub(prev.cpu_wait_ns)
                .saturating_mul(1000)
                / ns,
            memory_bytes: now.memory_bytes,
            net_tx_bytes: now.net_tx_bytes,
            net_rx_bytes: now.net_rx_bytes,
            gpu_percent: now.gpu_percent,
            oom_kills: now.oom_kills,
            memory_limit_hits: now.memory_limit_hits,
        }
    }
}

/// One window of one enclave's usage as this host measured it: what changed between two
/// samples (memory and GPU: as of the later one), between two wall-clock times — the times
/// a usage report carries. A clock stepped back gives an empty window, never a negative one.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageWindow {
    pub enclave: String,
    pub start_unix_ns: u64,
    pub len_ns: u64,
    pub cpu_ns: u64,
    /// Runnable but not running in the window (the demand the host did not serve).
    pub cpu_wait_ns: u64,
    pub mem_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_bytes: u64,
    pub gpu_util_percent: Option<f32>,
    /// Its inter-enclave messages in the window.
    pub msgs: MsgTotals,
}

impl UsageWindow {
    /// The window from `prev` (taken at `prev_unix_ns`) to `now` (at `now_unix_ns`).
    /// Counters that went back (a counter reset) count as nothing used.
    pub fn between(
        enclave: &str,
        (prev_unix_ns, prev): (u64, &Sample),
        (now_unix_ns, now): (u64, &Sample),
    ) -> UsageWindow {
        UsageWindow {
            enclave: enclave.to_string(),
            start_unix_ns: prev_unix_ns,
            len_ns: now_unix_ns.saturating_sub(prev_unix_ns),
            cpu_ns: now.cpu_ns.saturating_sub(prev.cpu_ns),
            cpu_wait_ns: now.cpu_wait_ns.saturating_sub(prev.cpu_wait_ns),
            mem_bytes: now.memory_bytes,
            net_tx_bytes: now.net_tx_bytes.saturating_sub(prev.net_tx_bytes),
            net_rx_bytes: now.net_rx_bytes.saturating_sub(prev.net_rx_bytes),
            gpu_util_percent: now.gpu_percent,
            msgs: now.msgs.since(&prev.msgs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_deltas_between_samples() {
        let s = |cpu, tx| Sample {
            cpu_ns: cpu,
            cpu_wait_ns: cpu / 10,
            memory_bytes: cpu * 2,
            net_tx_bytes: tx,
            gpu_percent: Some(1.5),
            msgs: MsgTotals {
                sent: cpu / 10,
                sent_bytes: cpu,
                refused: tx,
                refused_bytes: tx * 2,
            },
            ..Sample::default()
        };
        let w = UsageWindow::between("a", (100, &s(100, 10)), (200, &s(150, 40)));
        assert_eq!(
            w,
            UsageWindow {
                enclave: "a".into(),
                start_unix_ns: 100,
                len_ns: 100,
                cpu_ns: 50,
                cpu_wait_ns: 5,
                mem_bytes: 300,
                net_tx_bytes: 30,
                net_rx_bytes: 0,
                gpu_util_percent: Some(1.5),
                msgs: MsgTotals {
                    sent: 5,
                    sent_bytes: 50,
                    refused: 30,
                    refused_bytes: 60,
                },
            }
        );
        // A clock stepped back, counters reset: an empty window, nothing used.
        let w = UsageWindow::between("a", (200, &s(150, 40)), (150, &s(20, 0)));
        assert_eq!(
            (w.len_ns, w.cpu_ns, w.cpu_wait_ns, w.net_tx_bytes),
            (0, 0, 0, 0)
        );
        assert_eq!(w.msgs, MsgTotals::default());
    }

    #[test]
    fn usage_rate() {
        let a = Sample::default();
        let b = Sample {
            cpu_ns: 25_000_000,
            cpu_wait_ns: 75_000_000,
            ..Sample::default()
        };
        let u = Usage::between(&a, &b, Duration::from_millis(100));
        assert_eq!((u.cpu_millicores, u.cpu_wait_millicores), (250, 750));
    }

    #[test]
    fn net_dev_format() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  1234      10    0    0    0     0          0         0     5678      10    0    0    0     0       0          0\ntb-0011aabbh: 99 1 0 0 0 0 0 0 77 1 0 0 0 0 0 0\n";
        let m = parse_net_dev(text);
        assert_eq!(m["lo"], (1234, 5678));
        assert_eq!(m["tb-0011aabbh"], (99, 77));
    }

    #[tokio::test(start_paused = true)]
    async fn grid_does_not_drift() {
        let period = Duration::from_millis(100);
        let start = Instant::now();
        let mut tick = sampling_interval(period);
        for k in 1..=5u32 {
            let t = tick.tick().await;
            assert_eq!(t - start, period * k);
            // Work that takes 30 ms does not push the next deadline.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        // A 250 ms stall skips the missed ticks and stays on the grid.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let t = tick.tick().await;
        assert_eq!((t - start).as_millis() % 100, 0);
    }
}
