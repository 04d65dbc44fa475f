//! What this host can give enclaves, as the agent reports it in its `Hello` (`docs/protocol.md`):
//! CPU, memory, network, GPU share, and the TEE. Measured from the host — the CPUs this
//! process may run on (or the `--cpuset` enclaves are pinned to), `MemTotal` capped by the
//! agent's own cgroup `memory.max`, the shaped uplink's rate, NVML's devices — and overridden
//! key by key by the agent's configuration (`[capacity]`, `--capacity KEY=VALUE`), which
//! tests use to give one machine's agents different sizes.
//!
//! The parsers are pure; [`measure`] is the only function that reads the host.

use serde::Deserialize;

/// A host's schedulable capacity and TEE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCapacity {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    pub egress_bits_per_sec: u64,
    pub ingress_bits_per_sec: u64,
    /// 100 per GPU.
    pub gpu_percent: u32,
    /// `sev-snp`, `tdx` or `sim`.
    pub tee: String,
    /// Firmware / TCB generation (0: unknown).
    pub tee_generation: u32,
}

/// Configured values that replace what was measured, key by key (`None`: keep the measure).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityOverride {
    pub cpu_millicores: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub egress_bits_per_sec: Option<u64>,
    pub ingress_bits_per_sec: Option<u64>,
    pub gpu_percent: Option<u32>,
    pub tee: Option<String>,
    pub tee_generation: Option<u32>,
}

/// A `--capacity` item that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error("--capacity {item:?}: expected KEY=VALUE")]
    NotKeyValue { item: String },
    #[error(
        "--capacity {key:?}: unknown key (cpu_millicores, memory_bytes, egress_bits_per_sec, ingress_bits_per_sec, gpu_percent, tee, tee_generation)"
    )]
    UnknownKey { key: String },
    #[error("--capacity {key}={value:?}: not a whole number")]
    NotANumber { key: String, value: String },
    #[error("--capacity tee={value:?}: expected sev-snp, tdx or sim")]
    Tee { value: String },
}

impl CapacityOverride {
    /// `KEY=VALUE` items (`--capacity cpu_millicores=2000,memory_bytes=4294967296`) over
    /// `self`.
    pub fn parse_items<'a>(
        mut self,
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, CapacityError> {
        for item in items {
            let Some((key, value)) = item.split_once('=') else {
                return Err(CapacityError::NotKeyValue { item: item.into() });
            };
            let (key, value) = (key.trim(), value.trim());
            let num = || {
                value.parse::<u64>().map_err(|_| CapacityError::NotANumber {
                    key: key.into(),
                    value: value.into(),
                })
            };
            let small = || {
                value.parse::<u32>().map_err(|_| CapacityError::NotANumber {
                    key: key.into(),
                    value: value.into(),
                })
            };
            match key {
                "cpu_millicores" => self.cpu_millicores = Some(num()?),
                "memory_bytes" => self.memory_bytes = Some(num()?),
                "egress_bits_per_sec" => self.egress_bits_per_sec = Some(num()?),
                "ingress_bits_per_sec" => self.ingress_bits_per_sec = Some(num()?),
                "gpu_percent" => self.gpu_percent = Some(small()?),
                "tee_generation" => self.tee_generation = Some(small()?),
                "tee" => {
                    if !matches!(value, "sev-snp" | "tdx" | "sim") {
                        return Err(CapacityError::Tee {
                            value: value.into(),
                        });
                    }
                    self.tee = Some(value.into());
                }
                _ => return Err(CapacityError::UnknownKey { key: key.into() }),
            }
        }
        Ok(self)
    }

    /// `measured` with every configured value in its place.
    pub fn apply(&self, measured: HostCapacity) -> HostCapacity {
        HostCapacity {
            cpu_millicores: self.cpu_millicores.unwrap_or(measured.cpu_millicores),
            memory_bytes: self.memory_bytes.unwrap_or(measured.memory_bytes),
            egress_bits_per_sec: self
                .egress_bits_per_sec
                .unwrap_or(measured.egress_bits_per_sec),
            ingress_bits_per_sec: self
                .ingress_bits_per_sec
                .unwrap_or(measured.ingress_bits_per_sec),
            gpu_percent: self.gpu_percent.unwrap_or(measured.gpu_percent),
            tee: self.tee.clone().unwrap_or(measured.tee),
            tee_generation: self.tee_generation.unwrap_or(measured.tee_generation),
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        kib.checked_mul(1024)
    })
}

/// A cgroup v2 `memory.max` (`max`: no limit).
pub fn memory_max_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// How many CPUs a cpuset list names (`0-3,6` → 5); `None` if it does not parse.
pub fn cpuset_count(list: &str) -> Option<u64> {
    let mut n = 0u64;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.trim().parse::<u64>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

/// The cgroup v2 path of this process (`0::/PATH` in `/proc/self/cgroup`).
fn own_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Measures this host: `cpuset` (enclaves pinned there) or the CPUs this process may use;
/// `MemTotal`, capped by this process's cgroup `memory.max`; `uplink_bits_per_sec` (the shaped
/// uplink, both ways; 0 without one: nothing can be guaranteed); `gpu_percent` from the GPU
/// backend. TEE `sim` (the process runtime's), generation 0: a host with SNP or TDX says so in
/// its configuration.
pub fn measure(cpuset: Option<&str>, uplink_bits_per_sec: u64, gpu_percent: u32) -> HostCapacity {
    let cpus = cpuset
        .and_then(cpuset_count)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64));
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_total_bytes(&t))
        .unwrap_or(0);
    let cap = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| own_cgroup(&t).map(str::to_string))
        .and_then(|p| {
            std::fs::read_to_string(format!("/sys/fs/cgroup{}/memory.max", p.trim_end())).ok()
        })
        .and_then(|t| memory_max_bytes(&t));
    HostCapacity {
        cpu_millicores: cpus.saturating_mul(1000),
        memory_bytes: cap.map_or(total, |c| c.min(total)),
        egress_bits_per_sec: uplink_bits_per_sec,
        ingress_bits_per_sec: uplink_bits_per_sec,
        gpu_percent,
        tee: "sim".into(),
        tee_generation: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_and_cgroup_files_parse() {
        let meminfo = "MemTotal:       16314340 kB\nMemFree:         1234 kB\n";
        assert_eq!(mem_total_bytes(meminfo), Some(16_314_340 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(memory_max_bytes("max\n"), None);
        assert_eq!(memory_max_bytes("4294967296\n"), Some(4 << 30));
        assert_eq!(cpuset_count("0-3,6"), Some(5));
        assert_eq!(cpuset_count("1"), Some(1));
        assert_eq!(cpuset_count("3-1"), None);
        assert_eq!(cpuset_count("x"), None);
        assert_eq!(cpuset_count(""), None);
        assert_eq!(own_cgroup("0::/user.slice/a\n"), Some("/user.slice/a"));
    }

    #[test]
    fn the_override_replaces_key_by_key() {
        let measured = HostCapacity {
            cpu_millicores: 8000,
            memory_bytes: 16 << 30,
            tee: "sim".into(),
            ..HostCapacity::default()
        };
        let o = CapacityOverride::default()
            .parse_items(["cpu_millicores=2000", "tee=sev-snp", "tee_generation=3"])
            .expect("parses");
        let c = o.apply(measured.clone());
        assert_eq!(c.cpu_millicores, 2000);
        assert_eq!(c.memory_bytes, 16 << 30);
        assert_eq!((c.tee.as_str(), c.tee_generation), ("sev-snp", 3));
        assert_eq!(
            CapacityOverride::default().apply(measured.clone()),
            measured
        );
        for (bad, want) in [
            ("cpu", "KEY=VALUE"),
            ("cores=2", "unknown key"),
            ("memory_bytes=4GiB", "whole number"),
            ("tee=sgx", "sev-snp, tdx or sim"),
        ] {
            let e = CapacityOverride::default()
                .parse_items([bad])
                .expect_err(bad)
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn this_host_measures_some_cpu_and_memory() {
        let c = measure(None, 0, 0);
        assert!(c.cpu_millicores >= 1000, "{c:?}");
        assert!(c.memory_bytes > 0, "{c:?}");
        assert_eq!(measure(Some("0"), 1_000_000, 0).cpu_millicores, 1000);
    }
}
