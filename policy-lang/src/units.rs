//! Dimensions and units: what a literal like `250m`, `2GiB` or `30%` means, in canonical units.
//!
//! Canonical units (what every number in the compiled form and in facts is measured in):
//! cpu millicores, memory bytes, bandwidth bits per second, percent (0–100), durations
//! milliseconds, time of day minutes after midnight. Plain scalars have no unit.

use std::fmt;

/// The dimension of a numeric value. Two values can be added or compared only when their
/// dimensions are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    Scalar,
    Cpu,
    Memory,
    Bandwidth,
    Percent,
    Duration,
    TimeOfDay,
}

impl Dim {
    pub fn describe(self) -> &'static str {
        match self {
            Dim::Scalar => "a plain number",
            Dim::Cpu => "cpu (cores or millicores, e.g. 250m)",
            Dim::Memory => "memory (e.g. 512MiB)",
            Dim::Bandwidth => "bandwidth (e.g. 100Mbit)",
            Dim::Percent => "a percentage (e.g. 30%)",
            Dim::Duration => "a duration (e.g. 30s)",
            Dim::TimeOfDay => "a time of day (e.g. 09:00)",
        }
    }
    pub fn short(self) -> &'static str {
        match self {
            Dim::Scalar => "number",
            Dim::Cpu => "cpu",
            Dim::Memory => "memory",
            Dim::Bandwidth => "bandwidth",
            Dim::Percent => "percent",
            Dim::Duration => "duration",
            Dim::TimeOfDay => "time of day",
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// The resources a policy can guarantee and limit.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
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
    pub const NAMES: [&'static str; 5] = ["cpu", "memory", "egress", "ingress", "gpu"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
    pub fn from_name(s: &str) -> Option<Resource> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
    }
    pub fn dim(self) -> Dim {
        match self {
            Resource::Cpu => Dim::Cpu,
            Resource::Memory => Dim::Memory,
            Resource::Egress | Resource::Ingress => Dim::Bandwidth,
            Resource::Gpu => Dim::Percent,
        }
    }
}

/// What a unit suffix can mean. `m` is the one ambiguous suffix: millicores for cpu, minutes
/// for durations; the expected dimension decides (see [`resolve`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnitMeaning {
    /// One dimension, with the factor to the canonical unit.
    One(Dim, f64),
    /// `m`: millicores (factor 1) or minutes (factor 60 000).
    MilliOrMinute,
    /// No suffix: cores for cpu (factor 1000), a scalar otherwise.
    Bare,
}

const UNITS: &[(&str, Dim, f64)] = &[
    ("B", Dim::Memory, 1.0),
    ("KiB", Dim::Memory, 1024.0),
    ("MiB", Dim::Memory, 1024.0 * 1024.0),
    ("GiB", Dim::Memory, 1024.0 * 1024.0 * 1024.0),
    ("TiB", Dim::Memory, 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("KB", Dim::Memory, 1e3),
    ("MB", Dim::Memory, 1e6),
    ("GB", Dim::Memory, 1e9),
    ("TB", Dim::Memory, 1e12),
    ("bit", Dim::Bandwidth, 1.0),
    ("Kbit", Dim::Bandwidth, 1e3),
    ("Mbit", Dim::Bandwidth, 1e6),
    ("Gbit", Dim::Bandwidth, 1e9),
    ("Tbit", Dim::Bandwidth, 1e12),
    ("%", Dim::Percent, 1.0),
    ("ms", Dim::Duration, 1.0),
    ("s", Dim::Duration, 1000.0),
    ("h", Dim::Duration, 3_600_000.0),
    ("d", Dim::Duration, 86_400_000.0),
    ("cores", Dim::Cpu, 1000.0),
];

/// Every suffix the language knows, for "did you mean" hints.
pub fn unit_names() -> impl Iterator<Item = &'static str> {
    UNITS.iter().map(|u| u.0).chain(std::iter::once("m"))
}

pub fn unit_meaning(suffix: &str) -> Option<UnitMeaning> {
    if suffix.is_empty() {
        return Some(UnitMeaning::Bare);
    }
    if suffix == "m" {
        return Some(UnitMeaning::MilliOrMinute);
    }
    UNITS
        .iter()
        .find(|u| u.0 == suffix)
        .map(|u| UnitMeaning::One(u.1, u.2))
}

/// Resolve a literal's meaning against the dimension the context expects. Returns the
/// dimension and the value in canonical units, or `None` when the literal cannot have the
/// expected dimension (the caller reports the mismatch).
pub fn resolve(value: f64, meaning: UnitMeaning, expected: Option<Dim>) -> Option<(Dim, f64)> {
    match (meaning, expected) {
        (UnitMeaning::One(d, _), Some(e)) if d != e => None,
        (UnitMeaning::One(d, f), _) => Some((d, value * f)),
        (UnitMeaning::MilliOrMinute, Some(Dim::Duration)) => {
            Some((Dim::Duration, value * 60_000.0))
        }
        (UnitMeaning::MilliOrMinute, Some(Dim::Cpu) | None) => Some((Dim::Cpu, value)),
        (UnitMeaning::MilliOrMinute, Some(_)) => None,
        (UnitMeaning::Bare, Some(Dim::Cpu)) => Some((Dim::Cpu, value * 1000.0)),
        (UnitMeaning::Bare, Some(Dim::Scalar) | None) => Some((Dim::Scalar, value)),
        (UnitMeaning::Bare, Some(_)) => None,
    }
}

/// The dimension a literal has when nothing is expected of it (used in error messages).
pub fn natural_dim(meaning: UnitMeaning) -> Dim {
    match meaning {
        UnitMeaning::One(d, _) => d,
        UnitMeaning::MilliOrMinute => Dim::Cpu,
        UnitMeaning::Bare => Dim::Scalar,
    }
}

/// Render a canonical value back in a readable unit (for text output of decisions).
pub fn display(dim: Dim, v: f64) -> String {
    fn trim(x: f64) -> String {
        let s = format!("{x:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
    match dim {
        Dim::Scalar => trim(v),
        Dim::Cpu => format!("{}m", trim(v)),
        Dim::Memory => {
            let units = [
                ("TiB", 1u64 << 40),
                ("GiB", 1 << 30),
                ("MiB", 1 << 20),
                ("KiB", 1 << 10),
            ];
            for (n, f) in units {
                if v >= f as f64 {
                    return format!("{}{n}", trim(v / f as f64));
                }
            }
            format!("{}B", trim(v))
        }
        Dim::Bandwidth => {
            for (n, f) in [("Gbit", 1e9), ("Mbit", 1e6), ("Kbit", 1e3)] {
                if v >= f {
                    return format!("{}{n}", trim(v / f));
                }
            }
            format!("{}bit", trim(v))
        }
        Dim::Percent => format!("{}%", trim(v)),
        Dim::Duration => {
            if v >= 60_000.0 && v % 60_000.0 == 0.0 {
                format!("{}m", trim(v / 60_000.0))
            } else if v >= 1000.0 {
                format!("{}s", trim(v / 1000.0))
            } else {
                format!("{}ms", trim(v))
            }
        }
        Dim::TimeOfDay => {
            let m = v.max(0.0) as u64;
            format!("{:02}:{:02}", m / 60, m % 60)
        }
    }
}
