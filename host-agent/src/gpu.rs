//! GPU collection and enforcement behind one trait: NVML where the driver is present, and a
//! "no GPU" backend otherwise. A missing `libnvidia-ml.so.1` is the normal state of a CPU-only
//! host, not an error.

use crate::error::Result;

/// Per-enclave GPU accounting and share enforcement.
pub trait GpuBackend: Send {
    /// `"nvml"` or `"none"`.
    fn name(&self) -> &'static str;
    /// Why there is no GPU, when there is none.
    fn absent_reason(&self) -> Option<&str>;
    /// SM utilisation in percent summed over `pids` since the previous call; `None` with no GPU.
    fn utilization_percent(&mut self, pids: &[u32]) -> Option<f32>;
    /// Records the enclave's GPU share. With MPS this becomes
    /// `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` for its clients; without a GPU it is a no-op.
    fn set_share(&mut self, enclave: &str, percent: Option<u32>) -> Result<()>;
    /// Environment for a new enclave's process under this share (MPS clients read it).
    fn launch_env(&self, _percent: Option<u32>) -> Vec<(String, String)> {
        Vec::new()
    }
    /// What the host can give in GPU shares: 100 per device (0 without a GPU).
    fn capacity_percent(&self) -> u32 {
        0
    }
}

/// A host without a GPU.
#[derive(Debug)]
pub struct NoGpu {
    pub reason: String,
}

impl GpuBackend for NoGpu {
    fn name(&self) -> &'static str {
        "none"
    }
    fn absent_reason(&self) -> Option<&str> {
        Some(&self.reason)
    }
    fn utilization_percent(&mut self, _pids: &[u32]) -> Option<f32> {
        None
    }
    fn set_share(&mut self, _enclave: &str, _percent: Option<u32>) -> Result<()> {
        Ok(())
    }
}

/// NVML: per-process SM utilisation from `nvmlDeviceGetProcessUtilization` on every device.
pub struct NvmlGpu {
    nvml: nvml_wrapper::Nvml,
    devices: u32,
    last_seen_us: u64,
    shares: std::collections::BTreeMap<String, u32>,
}

impl NvmlGpu {
    /// MPS active-thread percentage recorded for `enclave`, for its launch environment.
    pub fn share(&self, enclave: &str) -> Option<u32> {
        self.shares.get(enclave).copied()
    }
}

impl GpuBackend for NvmlGpu {
    fn name(&self) -> &'static str {
        "nvml"
    }
    fn capacity_percent(&self) -> u32 {
        self.devices.saturating_mul(100)
    }
    fn launch_env(&self, percent: Option<u32>) -> Vec<(String, String)> {
        percent.map_or_else(Vec::new, |p| {
            vec![(
                "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE".to_string(),
                p.clamp(1, 100).to_string(),
            )]
        })
    }
    fn absent_reason(&self) -> Option<&str> {
        None
    }
    fn utilization_percent(&mut self, pids: &[u32]) -> Option<f32> {
        let mut total = 0u32;
        let mut newest = self.last_seen_us;
        for i in 0..self.devices {
            let Ok(dev) = self.nvml.device_by_index(i) else {
                continue;
            };
            let Ok(samples) = dev.process_utilization_stats(self.last_seen_us) else {
                continue;
            };
            for s in samples {
                newest = newest.max(s.timestamp);
                if pids.contains(&s.pid) {
                    total += s.sm_util;
                }
            }
        }
        self.last_seen_us = newest;
        Some(total as f32)
    }
    fn set_share(&mut self, enclave: &str, percent: Option<u32>) -> Result<()> {
        match percent {
            Some(p) => self.shares.insert(enclave.to_string(), p),
            None => self.shares.remove(enclave),
        };
        Ok(())
    }
}

/// NVML when it loads and sees at least one device, otherwise "no GPU" with the reason.
pub fn detect() -> Box<dyn GpuBackend> {
    match nvml_wrapper::Nvml::init() {
        Ok(nvml) => match nvml.device_count() {
            Ok(n) if n > 0 => Box::new(NvmlGpu {
                nvml,
                devices: n,
                last_seen_us: 0,
                shares: Default::default(),
            }),
            Ok(_) => Box::new(NoGpu {
                reason: "NVML reports no devices".into(),
            }),
            Err(e) => Box::new(NoGpu {
                reason: format!("NVML device count: {e}"),
            }),
        },
        Err(e) => Box::new(NoGpu {
            reason: format!("no GPU: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_driver_is_a_clean_no_gpu() {
        let mut g = detect();
        if g.name() == "none" {
            assert!(g.absent_reason().is_some());
            assert_eq!(g.utilization_percent(&[1]), None);
            g.set_share("x", Some(50)).unwrap();
        }
    }
}
