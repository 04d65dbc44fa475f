//! The facts an evaluation reads: the enclave's identity, utilization, its own usage, its
//! attestation and events. Their serde form is the `--facts` JSON of `tribune policy eval`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ir::*;
use crate::units::Resource;

/// The enclave's identity, as selectors see it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Enclave {
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    pub tee: TeeKind,
    pub measurement: String,
    pub class: String,
}

/// Every facts field is optional: left out, it is empty, and the TEE kind reads as `sev-snp`
/// (as it always has; `TeeKind` itself has no default).
impl Default for Enclave {
    fn default() -> Self {
        Enclave {
            tenant: String::new(),
            labels: BTreeMap::new(),
            tee: TeeKind::SevSnp,
            measurement: String::new(),
            class: String::new(),
        }
    }
}

/// Utilization per resource, percent (0–100). A missing value is unknown (NaN).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Utilization {
    pub cpu: f64,
    pub memory: f64,
    pub egress: f64,
    pub ingress: f64,
    pub gpu: f64,
}

impl Default for Utilization {
    fn default() -> Self {
        Utilization {
            cpu: f64::NAN,
            memory: f64::NAN,
            egress: f64::NAN,
            ingress: f64::NAN,
            gpu: f64::NAN,
        }
    }
}

impl Utilization {
    pub(super) fn get(&self, r: Resource) -> f64 {
        match r {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Egress => self.egress,
            Resource::Ingress => self.ingress,
            Resource::Gpu => self.gpu,
        }
    }
}

/// One aggregate of the enclave's own usage over a window, in canonical units (cpu
/// millicores, memory bytes, bandwidth bits/s, gpu percent).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsageFact {
    pub resource: Resource,
    pub agg: Agg,
    pub window_s: u32,
    pub value: f64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AttestationFacts {
    pub status: AttestStatus,
    pub tcb: TcbStatus,
    pub tcb_version: u32,
    pub debug: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Events {
    pub reattestation_failures: u32,
    /// How far the enclave's own usage report and the host's measurement differ, percent.
    pub divergence_pct: f64,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            reattestation_failures: 0,
            divergence_pct: 0.0,
        }
    }
}

/// The enclave's inter-enclave messages in its last usage report's window (its mediator's
/// counts, sealed in the report: `docs/messages.md`), per second.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MsgFacts {
    /// Messages sent (accepted or refused) a second: `usage.msgs.rate`.
    pub rate: f64,
    /// Their payload bytes a second: `usage.msgs.bytes`.
    pub bytes: f64,
}

/// Everything the evaluator may look at. Serde form is the `--facts` JSON file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct Facts {
    pub enclave: Enclave,
    /// Minutes after midnight (UTC); JSON takes `"HH:MM"`.
    #[serde(with = "time_of_day", rename = "time")]
    pub minute_of_day: Option<u32>,
    pub host: Utilization,
    pub cluster: Utilization,
    pub usage: Vec<UsageFact>,
    pub attestation: AttestationFacts,
    pub events: Events,
    /// `usage.msgs.rate` and `usage.msgs.bytes`.
    pub msgs: MsgFacts,
    /// How long usage has been above the limit (0: not over).
    pub over_limit_ms: u64,
    /// How long each condition (`when#N`, `on#N`, `reclaim`) has been continuously true.
    pub held_ms: BTreeMap<String, u64>,
    /// Peers to decide communication with (`talk`), for `tribune policy eval`.
    pub peers: Vec<Enclave>,
}

mod time_of_day {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(m) => s.serialize_str(&format!("{:02}:{:02}", m / 60, m % 60)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        let Some(s) = s else { return Ok(None) };
        let (h, m) = s
            .split_once(':')
            .ok_or_else(|| serde::de::Error::custom("time must be \"HH:MM\""))?;
        let h: u32 = h.parse().map_err(serde::de::Error::custom)?;
        let m: u32 = m.parse().map_err(serde::de::Error::custom)?;
        if h > 23 || m > 59 {
            return Err(serde::de::Error::custom(
                "time must be between 00:00 and 23:59",
            ));
        }
        Ok(Some(h * 60 + m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_of_day_is_hh_mm_in_json() {
        let f: Facts = serde_json::from_str(r#"{"time": "09:30"}"#).expect("parse");
        assert_eq!(f.minute_of_day, Some(570));
        let v = serde_json::to_value(&f).expect("json");
        assert_eq!(v["time"], "09:30");
        for bad in [
            r#"{"time": "24:00"}"#,
            r#"{"time": "9h30"}"#,
            r#"{"time": "09:60"}"#,
        ] {
            assert!(serde_json::from_str::<Facts>(bad).is_err(), "{bad}");
        }
        let none: Facts = serde_json::from_str(r#"{"time": null}"#).expect("null");
        assert_eq!(none.minute_of_day, None);
    }

    #[test]
    fn missing_utilization_is_unknown_not_zero() {
        let u = Utilization::default();
        assert!(Resource::ALL.iter().all(|r| u.get(*r).is_nan()));
        let f: Facts = serde_json::from_str(r#"{"host": {"cpu": 40}}"#).expect("parse");
        assert_eq!(f.host.get(Resource::Cpu), 40.0);
        assert!(f.host.get(Resource::Gpu).is_nan());
    }

    #[test]
    fn unknown_fields_are_refused() {
        for bad in [
            r#"{"enclave": {"tennant": "a"}}"#,
            r#"{"attestation": {"sept_ve": true}}"#,
            r#"{"usage": [{"resource": "cpu", "agg": "avg", "window_s": 60, "value": 1, "x": 0}]}"#,
        ] {
            assert!(serde_json::from_str::<Facts>(bad).is_err(), "{bad}");
        }
        let f: Facts = serde_json::from_str(
            r#"{"enclave": {"tenant": "a", "tee": "tdx"},
                "usage": [{"resource": "cpu", "agg": "p95", "window_s": 300, "value": 750}]}"#,
        )
        .expect("parse");
        assert_eq!(
            (f.enclave.tenant.as_str(), f.enclave.tee),
            ("a", TeeKind::Tdx)
        );
        assert_eq!(f.usage[0].agg, Agg::P95);
    }
}
