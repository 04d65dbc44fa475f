//! Human units for table cells: ages (`3m12s`, `2h`), memory (`256Mi`), CPU (`250m`) and
//! bandwidth (`10Mbit`). Tables only: JSON and YAML keep the raw numbers, with the unit in the
//! field name (`memory_bytes`, `cpu_millicores`, `updated_at_ms`).
//!
//! What is shown reads back where Tribune reads such values (`--cpu 250m`, `--memory 256Mi`,
//! `--egress 10Mbit`): the agent's parsers take these spellings. Amounts that are not a whole
//! number of their unit show one decimal (`1.5Gi`); ages are truncated, as `kubectl` does.

/// An amount of time in milliseconds, in at most two units: `850ms`, `45s`, `3m12s`, `2h`,
/// `2h5m`, `3d4h`.
pub fn duration_ms(ms: u64) -> String {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    match ms {
        ms if ms < S => format!("{ms}ms"),
        ms if ms < M => format!("{}s", ms / S),
        ms if ms < H => two(ms / M, "m", ms % M / S, "s"),
        ms if ms < D => two(ms / H, "h", ms % H / M, "m"),
        ms => two(ms / D, "d", ms % D / H, "h"),
    }
}

/// How long ago `at_ms` (Unix milliseconds) was at `now_ms`: `3m12s`. A time in the future
/// (the clocks disagree) shows as `0s`; no time at all (0 or less: never) as `-`.
pub fn age(at_ms: i64, now_ms: i64) -> String {
    if at_ms <= 0 {
        return "-".into();
    }
    seconds(now_ms.saturating_sub(at_ms).max(0).unsigned_abs())
}

/// A duration to the second (`0s` under one): ages and times left are not more precise.
fn seconds(ms: u64) -> String {
    if ms < 1000 {
        "0s".into()
    } else {
        duration_ms(ms / 1000 * 1000)
    }
}

/// How long until `at_ms` from `now_ms` (`23h59m`), or `expired` once it has passed; `-` for
/// no time at all (0 or less).
pub fn until(at_ms: i64, now_ms: i64) -> String {
    if at_ms <= 0 {
        return "-".into();
    }
    if at_ms <= now_ms {
        return "expired".into();
    }
    seconds(at_ms.saturating_sub(now_ms).unsigned_abs())
}

/// The current time in Unix milliseconds (0 before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `n` in the largest unit of `units` (each `step` times the one before, the first being 1)
/// that it reaches: a whole number when exact, else one decimal (`1.5`), never `1024.0` of a
/// unit when the next one fits.
fn scaled(n: u64, step: u64, units: &[&str]) -> String {
    let mut unit = 0;
    let mut size = 1u64;
    while unit + 1 < units.len() && size.checked_mul(step).is_some_and(|next| n >= next) {
        size *= step;
        unit += 1;
    }
    if n.is_multiple_of(size) {
        return format!("{}{}", n / size, units[unit]);
    }
    // Tenths, rounded: 1.04Mi shows 1Mi; 1023.96Ki rounds up into the next unit.
    let tenths = (u128::from(n) * 10 + u128::from(size) / 2) / u128::from(size);
    if tenths >= u128::from(step) * 10 && unit + 1 < units.len() {
        let next = size.saturating_mul(step);
        let tenths = (u128::from(n) * 10 + u128::from(next) / 2) / u128::from(next);
        return tenths_text(tenths, units[unit + 1]);
    }
    tenths_text(tenths, units[unit])
}

fn tenths_text(tenths: u128, unit: &str) -> String {
    if tenths.is_multiple_of(10) {
        format!("{}{unit}", tenths / 10)
    } else {
        format!("{}.{}{unit}", tenths / 10, tenths % 10)
    }
}

/// Bytes in binary units, as Kubernetes writes memory: `512`, `64Ki`, `256Mi`, `1.5Gi`.
pub fn bytes(n: u64) -> String {
    scaled(n, 1024, &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
}

/// CPU in millicores: `250m`, `1500m`; whole cores bare: `1`, `4`.
pub fn cpu_millicores(m: u64) -> String {
    if m > 0 && m.is_multiple_of(1000) {
        format!("{}", m / 1000)
    } else {
        format!("{m}m")
    }
}

/// Bits per second in decimal units, as `tc` and the agent's flags write them: `800bit`,
/// `500kbit`, `10Mbit`, `1.5Gbit`.
pub fn bits_per_sec(n: u64) -> String {
    scaled(n, 1000, &["bit", "kbit", "Mbit", "Gbit", "Tbit"])
}

/// What a JSON number in a table cell measures, and so how it is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// As it is (strings, ids, counts).
    Raw,
    /// Millicores.
    Cpu,
    /// Bytes.
    Bytes,
    /// Bits per second.
    Bits,
    /// A Unix time in milliseconds, shown as its age.
    Age,
    /// A Unix time in milliseconds in the future, shown as the time left.
    Until,
}

impl Unit {
    /// `v` in this unit, or `None` when it is not a number this unit applies to (the caller
    /// shows it as it is).
    pub fn show(self, v: &serde_json::Value, now_ms: i64) -> Option<String> {
        // Averages come as floats: shown rounded.
        let u = || {
            v.as_u64().or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f.round() as u64)
            })
        };
        let i = || v.as_i64();
        Some(match self {
            Unit::Raw => return None,
            Unit::Cpu => cpu_millicores(u()?),
            Unit::Bytes => bytes(u()?),
            Unit::Bits => bits_per_sec(u()?),
            Unit::Age => age(i()?, now_ms),
            Unit::Until => until(i()?, now_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_two_units_at_most() {
        let s = 1000;
        let m = 60 * s;
        let h = 60 * m;
        let d = 24 * h;
        for (ms, shown) in [
            (0, "0ms"),
            (850, "850ms"),
            (s, "1s"),
            (45 * s + 999, "45s"),
            (m, "1m"),
            (3 * m + 12 * s, "3m12s"),
            (59 * m + 59 * s + 999, "59m59s"),
            (2 * h, "2h"),
            (2 * h + 5 * m + 30 * s, "2h5m"),
            (d, "1d"),
            (3 * d + 4 * h + 59 * m, "3d4h"),
            (400 * d, "400d"),
        ] {
            assert_eq!(duration_ms(ms), shown, "{ms} ms");
        }
    }

    #[test]
    fn ages_and_time_left() {
        let now = 1_700_000_000_000;
        assert_eq!(age(now - 192_000, now), "3m12s");
        assert_eq!(age(now - 7_200_000, now), "2h");
        assert_eq!(age(now + 5_000, now), "0s", "a clock ahead of ours");
        assert_eq!(age(now - 999, now), "0s", "to the second");
        assert_eq!(until(now + 1_500, now), "1s");
        assert_eq!(age(0, now), "-", "never");
        assert_eq!(until(now + 86_400_000, now), "1d");
        assert_eq!(until(now - 1, now), "expired");
        assert_eq!(until(now, now), "expired");
        assert_eq!(until(0, now), "-");
        assert!(now_ms() > now);
    }

    #[test]
    fn memory_in_binary_units() {
        for (n, shown) in [
            (0, "0"),
            (512, "512"),
            (1023, "1023"),
            (1024, "1Ki"),
            (1536, "1.5Ki"),
            (64 << 10, "64Ki"),
            (256 << 20, "256Mi"),
            ((3 << 30) / 2, "1.5Gi"),
            ((1 << 20) + 1, "1Mi"),
            ((1 << 20) - 1, "1Mi"),
            ((1 << 20) - 60, "1023.9Ki"),
            ((1 << 20) - 200, "1023.8Ki"),
            (1 << 40, "1Ti"),
            (u64::MAX, "16Ei"),
        ] {
            assert_eq!(bytes(n), shown, "{n} bytes");
        }
    }

    #[test]
    fn cpu_in_millicores_or_whole_cores() {
        assert_eq!(cpu_millicores(250), "250m");
        assert_eq!(cpu_millicores(1500), "1500m");
        assert_eq!(cpu_millicores(1000), "1");
        assert_eq!(cpu_millicores(4000), "4");
        assert_eq!(cpu_millicores(0), "0m");
    }

    #[test]
    fn bandwidth_in_decimal_units() {
        assert_eq!(bits_per_sec(800), "800bit");
        assert_eq!(bits_per_sec(500_000), "500kbit");
        assert_eq!(bits_per_sec(10_000_000), "10Mbit");
        assert_eq!(bits_per_sec(1_500_000_000), "1.5Gbit");
        assert_eq!(bits_per_sec(999_999_999), "1Gbit");
    }

    #[test]
    fn what_is_shown_reads_back() {
        use tribune_agent::units::{parse_bits_per_sec, parse_bytes, parse_cpu_millicores};
        for m in [250, 1000, 1500, 4000] {
            assert_eq!(parse_cpu_millicores(&cpu_millicores(m)).ok(), Some(m));
        }
        for b in [1024, 64 << 10, 256 << 20, 3 << 30] {
            assert_eq!(parse_bytes(&bytes(b)).ok(), Some(b));
        }
        for r in [500_000, 10_000_000, 1_000_000_000] {
            assert_eq!(parse_bits_per_sec(&bits_per_sec(r)).ok(), Some(r));
        }
    }

    #[test]
    fn cells_by_unit() {
        let now = 10_000;
        let v = |x: serde_json::Value| x;
        assert_eq!(Unit::Cpu.show(&v(250.into()), now).as_deref(), Some("250m"));
        assert_eq!(
            Unit::Bytes.show(&v((256u64 << 20).into()), now).as_deref(),
            Some("256Mi")
        );
        assert_eq!(Unit::Age.show(&v(4000.into()), now).as_deref(), Some("6s"));
        assert_eq!(
            Unit::Until.show(&v(12_000.into()), now).as_deref(),
            Some("2s")
        );
        assert_eq!(
            Unit::Cpu.show(&v(249.6.into()), now).as_deref(),
            Some("250m")
        );
        assert_eq!(Unit::Cpu.show(&v("x".into()), now), None, "not a number");
        assert_eq!(Unit::Cpu.show(&v((-1).into()), now), None);
        assert_eq!(Unit::Raw.show(&v(250.into()), now), None);
    }
}
