//! Leaf formats: how an entry's detail is written into its Merkle leaf.
//!
//! - **Format 1** (entries without a `leaf_format` field, written before format 2 existed):
//!   three quantities are JSON floats as `serde_json` writes them (`1030.0`, `1.5`):
//!   `usage_digest.cpu_millicores_avg`, `usage_digest.divergence_pct_max` (percent) and the
//!   `over_limit` violation's `cpu_millicores`. A verifier in a language whose JSON numbers do
//!   not keep "float-ness" (JavaScript, Go's `interface{}`) cannot recompute such a leaf.
//! - **Format 2** (`"leaf_format":2` in the entry and in its leaf): float-free. Every number is
//!   an integer with its unit in its name: `cpu_millicores_avg` in whole millicores,
//!   `divergence_bp_max` in basis points (1/100 of a percent), `cpu_millicores` in whole
//!   millicores. Any language's JSON reproduces these leaves.
//!
//! In memory a detail is always the integer form; an old entry keeps its format and is written
//! back exactly as it was, so tree heads signed over old logs stay valid. The format of a new
//! entry is the Raft entry's (`crate::raft::Request::leaf_format`): replaying an old Raft entry
//! writes the same format-1 leaves it wrote before. Format-1 values were always whole
//! millicores and whole or two-decimal percents, so the conversion is exact; a detail whose
//! value would not convert back to the same JSON is refused (`LogDetail::from_value`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{OverLimit, UsageDigest};

/// How an entry's leaf is written (module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeafFormat {
    /// The original form: three quantities as JSON floats.
    V1,
    /// Float-free; the entry and its leaf carry `"leaf_format":2`.
    #[default]
    V2,
}

impl LeafFormat {
    /// The format new entries are written in.
    pub const CURRENT: LeafFormat = LeafFormat::V2;

    pub fn number(self) -> u64 {
        match self {
            LeafFormat::V1 => 1,
            LeafFormat::V2 => 2,
        }
    }

    pub fn from_number(n: u64) -> Option<Self> {
        match n {
            1 => Some(LeafFormat::V1),
            2 => Some(LeafFormat::V2),
            _ => None,
        }
    }
}

impl Serialize for LeafFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.number())
    }
}

impl<'de> Deserialize<'de> for LeafFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        LeafFormat::from_number(n).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "leaf_format {n} is unknown to this controller (it knows 1 and 2)"
            ))
        })
    }
}

/// A quantity that format 1 wrote as a float: accepted as an integer or as a float with no
/// fractional part (what format 1 held), refused otherwise.
pub(super) fn whole_from_f64(x: f64, what: &str) -> Result<u64, String> {
    // 2^53: beyond it an f64 no longer holds every integer.
    const EXACT_MAX: f64 = 9_007_199_254_740_992.0;
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= EXACT_MAX {
        Ok(x as u64)
    } else {
        Err(format!("{what} is {x}: not a whole, non-negative number"))
    }
}

/// A non-negative whole number, written as an integer or as format 1's float.
pub(super) mod whole {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Int(u64),
        Float(f64),
    }

    fn of(n: Num) -> Result<u64, String> {
        match n {
            Num::Int(i) => Ok(i),
            Num::Float(f) => super::whole_from_f64(f, "a whole-number quantity"),
        }
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<Num>::deserialize(d)?
            .map(of)
            .transpose()
            .map_err(serde::de::Error::custom)
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        of(Num::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Format 1's `usage_digest` detail.
#[derive(Serialize)]
pub(super) struct UsageDigestV1<'a> {
    enclave: &'a str,
    key: &'a str,
    first_seq: u64,
    last_seq: u64,
    prev_head: &'a str,
    head: &'a str,
    samples_root: &'a str,
    checkpoint: &'a str,
    cpu_millicores_avg: f64,
    mem_bytes_max: u64,
    net_tx_bytes: u64,
    net_rx_bytes: u64,
    divergence_pct_max: f64,
    // Never in a format-1 entry (the field is younger than format 2); kept so that no detail
    // loses a field in either format.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_wait_millicores_avg: Option<u64>,
    replayed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    unaccounted_from: Option<u64>,
}

impl<'a> From<&'a UsageDigest> for UsageDigestV1<'a> {
    fn from(d: &'a UsageDigest) -> Self {
        UsageDigestV1 {
            enclave: &d.enclave,
            key: &d.key,
            first_seq: d.first_seq,
            last_seq: d.last_seq,
            prev_head: &d.prev_head,
            head: &d.head,
            samples_root: &d.samples_root,
            checkpoint: &d.checkpoint,
            cpu_millicores_avg: d.cpu_millicores_avg as f64,
            mem_bytes_max: d.mem_bytes_max,
            net_tx_bytes: d.net_tx_bytes,
            net_rx_bytes: d.net_rx_bytes,
            divergence_pct_max: d.divergence_bp_max as f64 / 100.0,
            cpu_wait_millicores_avg: d.cpu_wait_millicores_avg,
            replayed: d.replayed,
            unaccounted_from: d.unaccounted_from,
        }
    }
}

/// Format 1's `over_limit` violation detail.
#[derive(Serialize)]
pub(super) struct OverLimitV1 {
    event: &'static str,
    cpu_millicores: Option<f64>,
    limit_cpu_millicores: Option<u64>,
    seq: Option<u64>,
    window_end_ms: Option<u64>,
}

impl From<&OverLimit> for OverLimitV1 {
    fn from(o: &OverLimit) -> Self {
        OverLimitV1 {
            event: "over_limit",
            cpu_millicores: o.cpu_millicores.map(|c| c as f64),
            limit_cpu_millicores: o.limit_cpu_millicores,
            seq: o.seq,
            window_end_ms: o.window_end_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_only() {
        assert_eq!(whole_from_f64(1030.0, "x"), Ok(1030));
        assert_eq!(whole_from_f64(0.0, "x"), Ok(0));
        for bad in [1.5, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert!(whole_from_f64(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_format_is_a_number_and_unknown_ones_are_refused() {
        assert_eq!(
            serde_json::to_string(&LeafFormat::V2).ok(),
            Some("2".into())
        );
        assert_eq!(
            serde_json::from_str::<LeafFormat>("1").ok(),
            Some(LeafFormat::V1)
        );
        let e = serde_json::from_str::<LeafFormat>("3").expect_err("unknown");
        assert!(e.to_string().contains("leaf_format 3"), "{e}");
    }

    /// The demand signal is an optional integer: a digest without it has exactly the shape it
    /// had before the field existed (so old leaves keep their bytes), one with it round-trips
    /// through the leaf check in both formats.
    #[test]
    fn the_wait_is_optional_and_an_integer() {
        use super::super::{LogDetail, LogEntryKind};
        let d = UsageDigest {
            enclave: "e1".into(),
            key: "11".repeat(32),
            first_seq: 1,
            last_seq: 10,
            prev_head: "22".repeat(32),
            head: "33".repeat(32),
            samples_root: "44".repeat(32),
            checkpoint: "55".repeat(162),
            cpu_millicores_avg: 4,
            mem_bytes_max: 1,
            net_tx_bytes: 0,
            net_rx_bytes: 0,
            divergence_bp_max: 0,
            cpu_wait_millicores_avg: None,
            replayed: false,
            unaccounted_from: None,
        };
        for format in [LeafFormat::V1, LeafFormat::V2] {
            let without = LogDetail::UsageDigest(d.clone()).to_value_as(format);
            assert!(
                without.get("cpu_wait_millicores_avg").is_none(),
                "{without}"
            );
            let with = LogDetail::UsageDigest(UsageDigest {
                cpu_wait_millicores_avg: Some(996),
                ..d.clone()
            });
            let v = with.to_value_as(format);
            assert_eq!(v["cpu_wait_millicores_avg"], serde_json::json!(996), "{v}");
            let back = LogDetail::from_value_as(LogEntryKind::UsageDigest, format, v)
                .expect("the leaf check accepts it");
            assert_eq!(back, with);
        }
    }
}
