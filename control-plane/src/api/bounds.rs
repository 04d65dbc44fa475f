//! Bounds on everything an API caller controls (TigerBeetle's "put a limit on everything"):
//! names, tenants, labels, measurements, launch specs, host records. Checked on the receiving
//! controller before anything is proposed, so no request can make a Raft entry large enough to
//! stall replication; each refusal says which field and what the limit is.

use crate::state::{Enclave, Host};
use crate::validate::check_name;

/// Labels one enclave may carry.
pub const LABELS_MAX: usize = 32;
/// A label key: 1–63 characters of `a-z A-Z 0-9 . _ / -`.
pub const LABEL_KEY_BYTES_MAX: usize = 63;
/// A label value: printable, at most this long.
pub const LABEL_VALUE_BYTES_MAX: usize = 253;
/// Expected launch measurements per enclave.
pub const MEASUREMENTS_MAX: usize = 16;
/// One measurement: hex, at most this long (SHA-512 is 128).
pub const MEASUREMENT_HEX_MAX: usize = 128;
/// A launch spec, as compact JSON.
pub const LAUNCH_SPEC_BYTES_MAX: usize = 16 * 1024;
/// A whole enclave record, as compact JSON.
pub const ENCLAVE_BYTES_MAX: usize = 64 * 1024;
/// Free-text host fields (address, enforcement note).
pub const HOST_TEXT_BYTES_MAX: usize = 256;
/// The largest host capacity accepted: 65,536 cores, 1 PiB, 10 Tbit/s.
pub const HOST_CPU_MILLICORES_MAX: u64 = 65_536_000;
pub const HOST_MEMORY_BYTES_MAX: u64 = 1 << 50;
pub const HOST_BITS_PER_SEC_MAX: u64 = 10_000_000_000_000;

/// One field an API caller sent is out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct OutOfBounds {
    pub field: String,
    pub reason: String,
    /// Too large (413) rather than malformed (400).
    pub too_large: bool,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> OutOfBounds {
    OutOfBounds {
        field: field.into(),
        reason: reason.into(),
        too_large: false,
    }
}

fn large(field: impl Into<String>, reason: impl Into<String>) -> OutOfBounds {
    OutOfBounds {
        field: field.into(),
        reason: reason.into(),
        too_large: true,
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Checks an enclave record from the API: every caller-controlled field.
pub fn enclave(e: &Enclave) -> Result<(), OutOfBounds> {
    check_name("enclave", &e.id).map_err(|r| bad("id", r))?;
    check_name("tenant", &e.tenant).map_err(|r| bad("tenant", r))?;
    labels("labels", &e.labels)?;
    if let Some(sc) = &e.scheduling {
        labels("scheduling.host_selector", &sc.host_selector)?;
        if sc.anti_affinity.len() > LABELS_MAX {
            return Err(large(
                "scheduling.anti_affinity",
                format!("{} keys; at most {LABELS_MAX}", sc.anti_affinity.len()),
            ));
        }
        for k in &sc.anti_affinity {
            label_key("scheduling.anti_affinity", k)?;
        }
    }
    if e.expected_measurements.len() > MEASUREMENTS_MAX {
        return Err(large(
            "expected_measurements",
            format!(
                "{} measurements; at most {MEASUREMENTS_MAX}",
                e.expected_measurements.len()
            ),
        ));
    }
    for (i, m) in e.expected_measurements.iter().enumerate() {
        if m.is_empty()
            || m.len() > MEASUREMENT_HEX_MAX
            || !m.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(bad(
                format!("expected_measurements[{i}]"),
                format!("a measurement is 1 to {MEASUREMENT_HEX_MAX} hex digits"),
            ));
        }
    }
    if let Some(p) = &e.placement {
        check_name("host", &p.host).map_err(|r| bad("placement.host", r))?;
    }
    if let Some(l) = &e.launch {
        let n = serde_json::to_vec(l).map_or(usize::MAX, |v| v.len());
        if n > LAUNCH_SPEC_BYTES_MAX {
            return Err(large(
                "launch",
                format!("the launch spec is {n} bytes; at most {LAUNCH_SPEC_BYTES_MAX}"),
            ));
        }
    }
    let n = serde_json::to_vec(e).map_or(usize::MAX, |v| v.len());
    if n > ENCLAVE_BYTES_MAX {
        return Err(large(
            "enclave",
            format!("the enclave record is {n} bytes; at most {ENCLAVE_BYTES_MAX}"),
        ));
    }
    Ok(())
}

fn label_key(field: &str, k: &str) -> Result<(), OutOfBounds> {
    let key_ok = (1..=LABEL_KEY_BYTES_MAX).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'));
    if key_ok {
        Ok(())
    } else {
        Err(bad(
            format!("{field}.{}", k.escape_debug()),
            format!(
                "a label key is 1 to {LABEL_KEY_BYTES_MAX} characters of a-z, A-Z, 0-9, '.', '_', '/' or '-'"
            ),
        ))
    }
}

/// Checks a label map (an enclave's or a host's labels, a host selector).
pub fn labels(
    field: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), OutOfBounds> {
    if labels.len() > LABELS_MAX {
        return Err(large(
            field,
            format!("{} labels; at most {LABELS_MAX}", labels.len()),
        ));
    }
    for (k, v) in labels {
        label_key(field, k)?;
        if v.len() > LABEL_VALUE_BYTES_MAX || has_control(v) {
            return Err(bad(
                format!("{field}.{k}"),
                format!(
                    "a label value is at most {LABEL_VALUE_BYTES_MAX} bytes with no control characters"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a host record from the API.
pub fn host(h: &Host) -> Result<(), OutOfBounds> {
    check_name("host", &h.id).map_err(|r| bad("id", r))?;
    if h.address.len() > HOST_TEXT_BYTES_MAX || has_control(&h.address) {
        return Err(bad(
            "address",
            format!("at most {HOST_TEXT_BYTES_MAX} bytes with no control characters"),
        ));
    }
    labels("labels", &h.labels)?;
    let c = &h.capacity;
    for (field, v, max) in [
        (
            "capacity.cpu_millicores",
            c.cpu_millicores,
            HOST_CPU_MILLICORES_MAX,
        ),
        (
            "capacity.memory_bytes",
            c.memory_bytes,
            HOST_MEMORY_BYTES_MAX,
        ),
        (
            "capacity.egress_bits_per_sec",
            c.egress_bits_per_sec,
            HOST_BITS_PER_SEC_MAX,
        ),
        (
            "capacity.ingress_bits_per_sec",
            c.ingress_bits_per_sec,
            HOST_BITS_PER_SEC_MAX,
        ),
        ("capacity.gpu_percent", u64::from(c.gpu_percent), 100 * 64),
    ] {
        if v > max {
            return Err(bad(
                field,
                format!("{v} is more than the largest host ({max})"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ok_enclave() -> Enclave {
        serde_json::from_value(serde_json::json!({
            "id": "web", "tenant": "acme", "tee": "sim",
            "labels": {"tier": "batch"}, "expected_measurements": ["ab12"],
            "placement": {"host": "h1", "epoch": 1},
            "launch": {"process": {"cmd": ["/bin/sleep", "1"]}}
        }))
        .expect("enclave")
    }

    #[test]
    fn every_caller_controlled_field_is_bounded() {
        assert_eq!(enclave(&ok_enclave()), Ok(()));
        /// The field the refusal names, the change that breaks it, whether it is "too large".
        type Case = (&'static str, Box<dyn Fn(&mut Enclave)>, bool);
        let cases: Vec<Case> = vec![
            (
                "tenant",
                Box::new(|e| e.tenant = "a".repeat(500_000)),
                false,
            ),
            (
                "tenant",
                Box::new(|e| e.tenant = "evil\u{1b}[31m".into()),
                false,
            ),
            (
                "labels",
                Box::new(|e| {
                    e.labels = (0..40_000).map(|i| (format!("k{i}"), "v".into())).collect()
                }),
                true,
            ),
            (
                "labels.tier",
                Box::new(|e| {
                    e.labels = BTreeMap::from([("tier".into(), "x".repeat(254))]);
                }),
                false,
            ),
            (
                "labels.tier",
                Box::new(|e| {
                    e.labels = BTreeMap::from([("tier".into(), "a\nb".into())]);
                }),
                false,
            ),
            (
                "expected_measurements[0]",
                Box::new(|e| e.expected_measurements = vec!["zz".into()]),
                false,
            ),
            (
                "placement.host",
                Box::new(|e| {
                    if let Some(p) = e.placement.as_mut() {
                        p.host = "../h1".into();
                    }
                }),
                false,
            ),
            (
                "launch",
                Box::new(|e| {
                    e.launch = Some(serde_json::json!({"process": {"cmd": ["x".repeat(20_000)]}}))
                }),
                true,
            ),
        ];
        for (field, change, too_large) in cases {
            let mut e = ok_enclave();
            change(&mut e);
            let err = enclave(&e).expect_err(field);
            assert!(err.field.starts_with(field), "{field}: {err}");
            assert_eq!(err.too_large, too_large, "{field}: {err}");
        }
        let mut e = ok_enclave();
        e.labels.insert("bad key!".into(), "v".into());
        assert!(enclave(&e).is_err());
    }

    #[test]
    fn an_unknown_tee_kind_is_refused_when_the_body_is_read() {
        // `tee` is a `TeeKind`: a record with any other kind never exists to be bound-checked.
        for kind in ["sgx", "", "snp"] {
            let e = serde_json::from_value::<Enclave>(serde_json::json!({
                "id": "web", "tenant": "acme", "tee": kind
            }))
            .expect_err(kind);
            let want = format!("unknown TEE kind {kind:?}: use \"sev-snp\", \"tdx\" or \"sim\"");
            assert!(e.to_string().contains(&want), "{e}");
            let e = serde_json::from_value::<Host>(serde_json::json!({
                "id": "h1", "address": "10.0.0.1:7500", "tee": kind
            }))
            .expect_err(kind);
            assert!(e.to_string().contains(&want), "{e}");
        }
    }

    #[test]
    fn host_capacity_and_text_are_bounded() {
        let mut h: Host = serde_json::from_value(serde_json::json!({
            "id": "h1", "address": "10.0.0.1:7500", "tee": "sim",
            "capacity": {"cpu_millicores": 64000}
        }))
        .expect("host");
        assert_eq!(host(&h), Ok(()));
        h.capacity.cpu_millicores = 99_999_999_000;
        assert_eq!(
            host(&h).map_err(|e| e.field),
            Err("capacity.cpu_millicores".to_string())
        );
        h.capacity.cpu_millicores = 1000;
        h.address = "a".repeat(300);
        assert!(host(&h).is_err());
    }
}
