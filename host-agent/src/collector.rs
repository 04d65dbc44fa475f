//! Usage collection: per enclave CPU ns, memory bytes, net tx/rx bytes and GPU %, sampled on
//! a drift-free grid (absolute deadlines: a late tick is skipped, never shifts the grid).
//!
//! Cost: each probe keeps its files open and re-reads them with `pread` at offset 0, so one
//! sample of one enclave is 5 syscalls and no allocation.

use std::fs::File;
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::cgroup::{CgroupEnforcer, CgroupProbe};
use crate::error::{AgentError, Result};
use crate::net::stat_path;

/// Default sampling period (DESIGN.md §4: reports every 100 ms).
pub const SAMPLE_PERIOD_DEFAULT: Duration = Duration::from_millis(100);

/// Cumulative counters of one enclave at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Sample {
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    pub oom_kills: u64,
    /// Bytes the enclave sent (host-side veth received).
    pub net_tx_bytes: u64,
    /// Bytes the enclave received (host-side veth sent).
    pub net_rx_bytes: u64,
    pub gpu_percent: Option<f32>,
}

/// Open accounting files of one enclave.
#[derive(Debug)]
pub struct Probe {
    cgroup: CgroupProbe,
    net_rx: Option<File>,
    net_tx: Option<File>,
}

impl Probe {
    pub fn open(cg: &dyn CgroupEnforcer, group: &str, host_veth: Option<&str>) -> Result<Probe> {
        let open = |counter: &str| -> Result<Option<File>> {
            match host_veth {
                Some(dev) => {
                    let p = stat_path(dev, counter);
                    File::open(&p)
                        .map(Some)
                        .map_err(|e| AgentError::io("open", p, e))
                }
                None => Ok(None),
            }
        };
        Ok(Probe {
            cgroup: cg.open_probe(group)?,
            net_rx: open("rx_bytes")?,
            net_tx: open("tx_bytes")?,
        })
    }

    /// One sample (GPU is filled in by the caller, which owns the GPU backend).
    pub fn read(&self, buf: &mut Vec<u8>) -> Result<Sample> {
        let c = self.cgroup.read(buf)?;
        let counter = |f: &Option<File>, buf: &mut Vec<u8>| -> u64 {
            f.as_ref().map_or(0, |f| read_u64(f, buf))
        };
        Ok(Sample {
            cpu_ns: c.cpu_ns,
            memory_bytes: c.memory_bytes,
            oom_kills: c.oom_kills,
            // The host side of the veth receives what the enclave sends.
            net_tx_bytes: counter(&self.net_rx, buf),
            net_rx_bytes: counter(&self.net_tx, buf),
            gpu_percent: None,
        })
    }
}

fn read_u64(f: &File, buf: &mut Vec<u8>) -> u64 {
    use std::os::unix::fs::FileExt;
    buf.resize(64, 0);
    match f.read_at(buf, 0) {
        Ok(n) => std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
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
    pub memory_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_bytes: u64,
    pub gpu_percent: Option<f32>,
    pub oom_kills: u64,
}

impl Usage {
    pub fn between(prev: &Sample, now: &Sample, window: Duration) -> Usage {
        let ns = window.as_nanos().max(1) as u64;
        Usage {
            cpu_ns: now.cpu_ns,
            cpu_millicores: now.cpu_ns.saturating_sub(prev.cpu_ns).saturating_mul(1000) / ns,
            memory_bytes: now.memory_bytes,
            net_tx_bytes: now.net_tx_bytes,
            net_rx_bytes: now.net_rx_bytes,
            gpu_percent: now.gpu_percent,
            oom_kills: now.oom_kills,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_rate() {
        let a = Sample {
            cpu_ns: 0,
            ..Sample::default()
        };
        let b = Sample {
            cpu_ns: 25_000_000,
            ..Sample::default()
        };
        assert_eq!(
            Usage::between(&a, &b, Duration::from_millis(100)).cpu_millicores,
            250
        );
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
