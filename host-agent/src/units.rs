//! Quantities as people write them (`250m`, `256MiB`, `10Mbit`) and as the kernel wants them.
//! Pure functions: no I/O.

use crate::error::{AgentError, Result};

fn parse_err(what: &'static str, input: &str, why: &str) -> AgentError {
    AgentError::Parse {
        what,
        input: input.to_string(),
        why: why.to_string(),
    }
}

/// Splits `"12.5Mbit"` into `(12.5, "Mbit")`.
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s.split_at(end)
}

fn scaled(what: &'static str, input: &str, number: &str, scale: f64) -> Result<u64> {
    let n: f64 = number
        .parse()
        .map_err(|_| parse_err(what, input, "expected a number"))?;
    let v = (n * scale).round();
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 / 2.0 {
        return Err(parse_err(what, input, "out of range"));
    }
    Ok(v as u64)
}

/// CPU in millicores: `250m` → 250, `1` → 1000, `1.5` → 1500.
pub fn parse_cpu_millicores(input: &str) -> Result<u64> {
    let s = input.trim();
    let (num, unit) = split_number(s);
    let scale = match unit {
        "m" => 1.0,
        "" => 1000.0,
        _ => {
            return Err(parse_err(
                "cpu",
                input,
                "use millicores (250m) or cores (1.5)",
            ));
        }
    };
    let v = scaled("cpu", input, num, scale)?;
    if v == 0 {
        return Err(parse_err("cpu", input, "must be more than 0"));
    }
    Ok(v)
}

/// Bytes: `256MiB`, `1GiB`, `64KiB`, `100M` (decimal), `4096`.
pub fn parse_bytes(input: &str) -> Result<u64> {
    let s = input.trim();
    let (num, unit) = split_number(s);
    let scale = match unit {
        "" | "B" => 1.0,
        "KiB" | "Ki" => 1024.0,
        "MiB" | "Mi" => 1024.0 * 1024.0,
        "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "K" | "k" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        _ => {
            return Err(parse_err(
                "memory",
                input,
                "use B, KiB, MiB, GiB, KB, MB or GB",
            ));
        }
    };
    scaled("memory", input, num, scale)
}

/// Bits per second: `10Mbit`, `500kbit`, `1Gbit`, `800bit`.
pub fn parse_bits_per_sec(input: &str) -> Result<u64> {
    let s = input.trim();
    let (num, unit) = split_number(s);
    let scale = match unit {
        "bit" | "" => 1.0,
        "kbit" | "Kbit" => 1e3,
        "Mbit" | "mbit" => 1e6,
        "Gbit" | "gbit" => 1e9,
        _ => return Err(parse_err("bandwidth", input, "use bit, kbit, Mbit or Gbit")),
    };
    let v = scaled("bandwidth", input, num, scale)?;
    if v < 8_000 {
        return Err(parse_err("bandwidth", input, "must be at least 8kbit"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu_millicores("250m").unwrap(), 250);
        assert_eq!(parse_cpu_millicores("1").unwrap(), 1000);
        assert_eq!(parse_cpu_millicores("1.5").unwrap(), 1500);
        assert!(parse_cpu_millicores("0m").is_err());
        assert!(parse_cpu_millicores("x").is_err());
        assert!(parse_cpu_millicores("5cores").is_err());
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100M").unwrap(), 100_000_000);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("1TiBB").is_err());
    }

    #[test]
    fn bits() {
        assert_eq!(parse_bits_per_sec("10Mbit").unwrap(), 10_000_000);
        assert_eq!(parse_bits_per_sec("500kbit").unwrap(), 500_000);
        assert!(parse_bits_per_sec("1bit").is_err());
        assert!(parse_bits_per_sec("10MB").is_err());
    }
}
