//! Sliding usage windows per enclave: one bucket per second, enough of them for the longest
//! window any policy reads (`usage.R.agg(W)`), capped at [`WINDOW_S_MAX`].
//!
//! `avg` is exact, `max` is the highest single report (so a burst counts from the report that
//! shows it), `p95` is the 95th percentile of one-second averages.

use std::collections::VecDeque;

use tribune_policy::{Agg, Resource, UsageFact};

/// Longest window kept (10 min): bounds memory per enclave to 600 buckets.
pub const WINDOW_S_MAX: u32 = 600;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Bucket {
    second: u64,
    /// Sums over the reports of this second, canonical units (cpu millicores, memory bytes,
    /// bits/s), and how many reports.
    sum: [f64; 5],
    /// The highest single report of this second, per resource.
    max: [f64; 5],
    n: u32,
}

impl Bucket {
    fn avg(&self, r: Resource) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum[r as usize] / f64::from(self.n)
        }
    }
}

/// One window's usage in canonical units.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub cpu_millicores: f64,
    pub memory_bytes: f64,
    pub egress_bits_per_sec: f64,
    pub ingress_bits_per_sec: f64,
    pub gpu_percent: f64,
}

impl Rates {
    fn as_array(&self) -> [f64; 5] {
        [
            self.cpu_millicores,
            self.memory_bytes,
            self.egress_bits_per_sec,
            self.ingress_bits_per_sec,
            self.gpu_percent,
        ]
    }
}

#[derive(Clone, Debug, Default)]
pub struct Windows {
    buckets: VecDeque<Bucket>,
    keep_s: u32,
    /// (window end ms, cpu millicores) of the last reports, for "the last second".
    recent: VecDeque<(u64, f64)>,
}

impl Windows {
    pub fn new(keep_s: u32) -> Windows {
        Windows {
            buckets: VecDeque::new(),
            keep_s: keep_s.clamp(1, WINDOW_S_MAX),
            recent: VecDeque::new(),
        }
    }

    pub fn set_keep(&mut self, keep_s: u32) {
        self.keep_s = keep_s.clamp(1, WINDOW_S_MAX);
    }

    /// Adds one report's rates for the window ending at `end_ms`.
    pub fn push(&mut self, end_ms: u64, rates: &Rates) {
        if self.recent.len() >= 64 {
            self.recent.pop_front();
        }
        self.recent.push_back((end_ms, rates.cpu_millicores));
        let second = end_ms / 1000;
        let values = rates.as_array();
        match self.buckets.back_mut() {
            Some(b) if b.second == second => {
                for ((s, m), v) in b.sum.iter_mut().zip(b.max.iter_mut()).zip(values) {
                    *s += v;
                    *m = m.max(v);
                }
                b.n += 1;
            }
            Some(b) if b.second > second => {} // out of order: the verifier forbids it anyway
            _ => self.buckets.push_back(Bucket {
                second,
                sum: values,
                max: values,
                n: 1,
            }),
        }
        let oldest = second.saturating_sub(u64::from(self.keep_s));
        while self.buckets.front().is_some_and(|b| b.second <= oldest) {
            self.buckets.pop_front();
        }
    }

    /// The newest whole second reported (Unix seconds) and the mean of its reports' rates:
    /// the 1 s resolution the console's live charts draw (`console::feed`).
    pub fn last_second(&self) -> Option<(u64, Rates)> {
        let b = self.buckets.back()?;
        let avg = |r: Resource| b.avg(r);
        Some((
            b.second,
            Rates {
                cpu_millicores: avg(Resource::Cpu),
                memory_bytes: avg(Resource::Memory),
                egress_bits_per_sec: avg(Resource::Egress),
                ingress_bits_per_sec: avg(Resource::Ingress),
                gpu_percent: avg(Resource::Gpu),
            },
        ))
    }

    /// CPU averaged over the reports of the last `ms` milliseconds (at least the last one).
    pub fn recent_cpu(&self, ms: u64) -> f64 {
        let Some(last) = self.recent.back() else {
            return f64::NAN;
        };
        let from = last.0.saturating_sub(ms);
        let v: Vec<f64> = self
            .recent
            .iter()
            .filter(|(t, _)| *t > from)
            .map(|(_, c)| *c)
            .collect();
        if v.is_empty() {
            last.1
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }

    /// The aggregate over the last `window_s` seconds (NaN when nothing was reported).
    pub fn aggregate(&self, r: Resource, agg: Agg, window_s: u32) -> f64 {
        let Some(last) = self.buckets.back() else {
            return f64::NAN;
        };
        let from = last.second.saturating_sub(u64::from(window_s.max(1)) - 1);
        let recent = || self.buckets.iter().rev().take_while(|b| b.second >= from);
        if agg == Agg::Max {
            // The highest single report: a burst counts from the report that shows it.
            return recent().map(|b| b.max[r as usize]).fold(f64::NAN, f64::max);
        }
        let mut vals: Vec<f64> = recent().map(|b| b.avg(r)).collect();
        if vals.is_empty() {
            return f64::NAN;
        }
        match agg {
            Agg::Avg => vals.iter().sum::<f64>() / vals.len() as f64,
            Agg::Max => f64::NAN, // answered above
            Agg::P95 => {
                vals.sort_by(f64::total_cmp);
                let rank = ((vals.len() as f64) * 0.95).ceil() as usize;
                vals[rank.clamp(1, vals.len()) - 1]
            }
        }
    }

    /// The facts a policy set asks for.
    pub fn facts(&self, wanted: &[(Resource, Agg, u32)]) -> Vec<UsageFact> {
        wanted
            .iter()
            .map(|&(resource, agg, window_s)| UsageFact {
                resource,
                agg,
                window_s,
                value: self.aggregate(resource, agg, window_s),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(m: f64) -> Rates {
        Rates {
            cpu_millicores: m,
            ..Rates::default()
        }
    }

    #[test]
    fn aggregates_over_per_second_buckets() {
        let mut w = Windows::new(10);
        // 3 seconds: 100m, 300m, then one report of 1000m and one of 0m (avg 500m).
        w.push(1_000, &cpu(100.0));
        w.push(2_000, &cpu(300.0));
        w.push(3_000, &cpu(1000.0));
        w.push(3_500, &cpu(0.0));
        assert_eq!(w.aggregate(Resource::Cpu, Agg::Avg, 3), 300.0);
        assert_eq!(w.aggregate(Resource::Cpu, Agg::Max, 3), 1000.0);
        assert_eq!(w.aggregate(Resource::Cpu, Agg::Max, 1), 1000.0);
        assert_eq!(w.aggregate(Resource::Cpu, Agg::Max, 2), 1000.0);
        assert_eq!(w.aggregate(Resource::Cpu, Agg::P95, 3), 500.0);
        assert_eq!(w.aggregate(Resource::Cpu, Agg::Avg, 2), 400.0);
        assert!(w.aggregate(Resource::Memory, Agg::Avg, 1) == 0.0);
    }

    #[test]
    fn keeps_only_what_is_needed_and_nan_when_empty() {
        let mut w = Windows::new(2);
        assert!(w.aggregate(Resource::Cpu, Agg::Avg, 1).is_nan());
        for s in 0..100u64 {
            w.push(s * 1000, &cpu(s as f64));
        }
        assert!(w.buckets.len() <= 2);
        assert_eq!(w.aggregate(Resource::Cpu, Agg::Avg, 60), 98.5);
    }
}
