//! Amounts of every schedulable resource, with the units in the names: what an enclave is
//! guaranteed, what a host has, what is reserved on it.

use serde::{Deserialize, Serialize};

/// A schedulable resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Cpu,
    Memory,
    Egress,
    Ingress,
    Gpu,
}

impl Resource {
    pub const ALL: [Resource; 5] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::Egress,
        Resource::Ingress,
        Resource::Gpu,
    ];

    /// `amount` of this resource in words a person reads ("2.5 cores", "512 MiB").
    pub fn describe(self, amount: u64) -> String {
        match self {
            Resource::Cpu => {
                if amount.is_multiple_of(1000) {
                    format!("{} cores", amount / 1000)
                } else {
                    format!("{} cores", amount as f64 / 1000.0)
                }
            }
            Resource::Memory => format!("{} MiB", amount >> 20),
            Resource::Egress => format!("{} Mbit/s egress", amount / 1_000_000),
            Resource::Ingress => format!("{} Mbit/s ingress", amount / 1_000_000),
            Resource::Gpu => format!("{amount}% GPU"),
        }
    }
}

/// One amount per [`Resource`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Demand {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    pub egress_bits_per_sec: u64,
    pub ingress_bits_per_sec: u64,
    pub gpu_percent: u64,
}

impl Demand {
    pub const ZERO: Demand = Demand {
        cpu_millicores: 0,
        memory_bytes: 0,
        egress_bits_per_sec: 0,
        ingress_bits_per_sec: 0,
        gpu_percent: 0,
    };

    /// `amount` of `r` and nothing else.
    pub fn one(r: Resource, amount: u64) -> Demand {
        let mut d = Demand::ZERO;
        *d.get_mut(r) = amount;
        d
    }

    pub fn get(&self, r: Resource) -> u64 {
        match r {
            Resource::Cpu => self.cpu_millicores,
            Resource::Memory => self.memory_bytes,
            Resource::Egress => self.egress_bits_per_sec,
            Resource::Ingress => self.ingress_bits_per_sec,
            Resource::Gpu => self.gpu_percent,
        }
    }

    fn get_mut(&mut self, r: Resource) -> &mut u64 {
        match r {
            Resource::Cpu => &mut self.cpu_millicores,
            Resource::Memory => &mut self.memory_bytes,
            Resource::Egress => &mut self.egress_bits_per_sec,
            Resource::Ingress => &mut self.ingress_bits_per_sec,
            Resource::Gpu => &mut self.gpu_percent,
        }
    }

    fn zip(self, other: Demand, f: impl Fn(u64, u64) -> u64) -> Demand {
        let mut out = Demand::ZERO;
        for r in Resource::ALL {
            *out.get_mut(r) = f(self.get(r), other.get(r));
        }
        out
    }

    pub fn saturating_add(self, other: Demand) -> Demand {
        self.zip(other, u64::saturating_add)
    }

    pub fn saturating_sub(self, other: Demand) -> Demand {
        self.zip(other, u64::saturating_sub)
    }

    pub fn max(self, other: Demand) -> Demand {
        self.zip(other, u64::max)
    }

    /// Each amount raised by `pct` percent (rounded up), for headroom.
    pub fn with_headroom(self, pct: u64) -> Demand {
        self.zip(Demand::ZERO, |a, _| {
            a.saturating_mul(100 + pct).div_ceil(100)
        })
    }

    /// Whether every amount of `self` fits within `room`.
    pub fn fits_in(&self, room: &Demand) -> bool {
        Resource::ALL.iter().all(|&r| self.get(r) <= room.get(r))
    }

    /// The resources where `self` does not fit within `room`.
    pub fn short_of(&self, room: &Demand) -> Vec<Resource> {
        Resource::ALL
            .iter()
            .copied()
            .filter(|&r| self.get(r) > room.get(r))
            .collect()
    }

    pub fn is_zero(&self) -> bool {
        *self == Demand::ZERO
    }
}

/// `used / capacity` of each resource the host has, in parts per million (0 where the host has
/// none of it). Integer arithmetic: scores are exact and deterministic.
pub fn shares_ppm(used: &Demand, capacity: &Demand) -> [u64; 5] {
    let mut out = [0u64; 5];
    for (i, r) in Resource::ALL.iter().enumerate() {
        out[i] = share_ppm(used.get(*r), capacity.get(*r));
    }
    out
}

/// `used / capacity` in parts per million (0 without capacity); u64 arithmetic where it
/// cannot overflow (the hot path of scoring), u128 beyond.
pub fn share_ppm(used: u64, capacity: u64) -> u64 {
    if capacity == 0 {
        return 0;
    }
    match used.checked_mul(1_000_000) {
        Some(scaled) => scaled / capacity,
        None => {
            ((u128::from(used) * 1_000_000) / u128::from(capacity)).min(u128::from(u64::MAX)) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_fits_is_per_resource() {
        let a = Demand {
            cpu_millicores: 500,
            memory_bytes: 1 << 30,
            ..Demand::ZERO
        };
        let b = Demand {
            cpu_millicores: 1000,
            memory_bytes: 512 << 20,
            ..Demand::ZERO
        };
        assert!(!a.fits_in(&b));
        assert_eq!(a.short_of(&b), vec![Resource::Memory]);
        assert_eq!(a.saturating_sub(b).cpu_millicores, 0);
        assert_eq!(a.saturating_add(b).cpu_millicores, 1500);
        assert_eq!(a.with_headroom(10).cpu_millicores, 550);
        assert_eq!(
            Demand {
                gpu_percent: 1,
                ..Demand::ZERO
            }
            .with_headroom(10)
            .gpu_percent,
            2
        );
        assert_eq!(shares_ppm(&a, &b)[0], 500_000);
        assert_eq!(shares_ppm(&a, &Demand::ZERO), [0; 5]);
        // Past u64 range when scaled: the u128 path gives the same kind of answer.
        assert_eq!(share_ppm(u64::MAX / 2, u64::MAX), 499_999);
        assert_eq!(share_ppm(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn amounts_are_described_in_their_units() {
        assert_eq!(Resource::Cpu.describe(8000), "8 cores");
        assert_eq!(Resource::Cpu.describe(250), "0.25 cores");
        assert_eq!(Resource::Memory.describe(512 << 20), "512 MiB");
        assert_eq!(Resource::Gpu.describe(50), "50% GPU");
    }
}
