//! The log's canonical form is a contract: every entry below is written through the same path
//! as in service (`State::apply`; the details the attestation loop, the stream, the TLS layer
//! and the membership API build are built here with the same types), and its leaf bytes must
//! be exactly the bytes the code wrote before the details were typed — captured from that code
//! and pinned here — so tree heads signed over existing logs stay valid.

use super::*;

/// Leaf bytes of [`scenario`]'s entries in leaf format 1, in order, as the untyped
/// (`serde_json::json!`) code produced them.
pub(super) const GOLDEN: [&str; 30] = [
    r#"{"at_ms":1000,"detail":{"actor":"tribune://admin/alice","op":"put","source_sha256":"7b8ee867a3c9aaa0a063a4f9b824cf5debf9a6ffe753d8790398f77ed0891988","version":1},"index":0,"kind":"policy_change","subject":"web"}"#,
    r#"{"at_ms":1001,"detail":{"actor":"tribune://operator/bob","attestation_status":"unverified","capacity":{"cpu_millicores":4000,"egress_bits_per_sec":1000000000,"gpu_percent":50,"ingress_bits_per_sec":0,"memory_bytes":8589934592},"op":"put","tee":"sev-snp"},"index":1,"kind":"host_change","subject":"h1"}"#,
    r#"{"at_ms":1002,"detail":{"actor":"tribune://operator/bob","host":"h1","op":"put","state":"pending","tenant":"acme","version":1},"index":2,"kind":"enclave_change","subject":"e1"}"#,
    r#"{"at_ms":1003,"detail":{"actor":"tribune://operator/bob","host":null,"op":"put","state":"pending","tenant":"acme","version":1},"index":3,"kind":"enclave_change","subject":"e2"}"#,
    r#"{"at_ms":1004,"detail":{"actor":"tribune://admin/root","expires_at_ms":100,"name":"ci","op":"create","role":"tenant","tenant":"acme"},"index":4,"kind":"token_change","subject":"token-00112233aabbccdd"}"#,
    r#"{"at_ms":1005,"detail":{"actor":"tribune://admin/root","expires_at_ms":0,"name":"ops","op":"create","role":"operator","tenant":null},"index":5,"kind":"token_change","subject":"token-ffeeddccbbaa0011"}"#,
    r#"{"at_ms":1006,"detail":{"actor":"tribune://admin/root","op":"revoke"},"index":6,"kind":"token_change","subject":"token-00112233aabbccdd"}"#,
    r#"{"at_ms":1007,"detail":{"key_id":"02d449a31fbb267c","node_id":2,"public_key":"1111111111111111111111111111111111111111111111111111111111111111"},"index":7,"kind":"log_key","subject":"controller-2"}"#,
    r#"{"at_ms":1008,"detail":{"debug":false,"ed25519_pub":"2222222222222222222222222222222222222222222222222222222222222222","failures":0,"host":"h1","measurement":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","reasons":[],"rekeyed":true,"tee":"sev-snp","trusted":true,"verified_by":3},"index":8,"kind":"verdict","subject":"e1"}"#,
    r#"{"at_ms":1009,"detail":{"checkpoint":"777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777","cpu_millicores_avg":250.0,"divergence_pct_max":1.5,"enclave":"e1","first_seq":1,"head":"5555555555555555555555555555555555555555555555555555555555555555","key":"2222222222222222222222222222222222222222222222222222222222222222","last_seq":10,"mem_bytes_max":67108864,"net_rx_bytes":0,"net_tx_bytes":1234,"prev_head":"4444444444444444444444444444444444444444444444444444444444444444","replayed":false,"samples_root":"6666666666666666666666666666666666666666666666666666666666666666"},"index":9,"kind":"usage_digest","subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"cpu_millicores":2000.0,"event":"over_limit","limit_cpu_millicores":500,"seq":12,"window_end_ms":1700000000123},"index":10,"kind":"violation","subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"cpu_millicores":null,"event":"over_limit","limit_cpu_millicores":null,"seq":null,"window_end_ms":null},"index":11,"kind":"violation","subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"event":"attestation.failed","violation":"measurement_not_allowed"},"index":12,"kind":"violation","subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"event":"attestation.failed","violation":null},"index":13,"kind":"violation","subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"throttle","cause":"over_limit","cpu_cap_millicores":500,"from":"none","over_limit_ms":1500,"suspended":false},"index":14,"kind":"action","subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"none","cause":"","cpu_cap_millicores":0,"from":"suspend","over_limit_ms":null,"suspended":true},"index":15,"kind":"action","subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"borrow","borrowed_cpu_millicores":300,"cpu_cap_millicores":800,"was":0},"index":16,"kind":"action","subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"return","borrowed_cpu_millicores":0,"cpu_cap_millicores":500,"was":300},"index":17,"kind":"action","subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"lend","lent_cpu_millicores":200,"was":0},"index":18,"kind":"action","subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"reclaim","lent_cpu_millicores":0,"was":200},"index":19,"kind":"action","subject":"e1"}"#,
    r#"{"at_ms":1011,"detail":{"debug":false,"ed25519_pub":"2222222222222222222222222222222222222222222222222222222222222222","failures":1,"host":"h1","measurement":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","reasons":["measurement not expected","debug \"on\""],"rekeyed":false,"tee":"sim","trusted":false,"verified_by":3},"index":20,"kind":"verdict","subject":"e1"}"#,
    r#"{"at_ms":1012,"detail":{"actor":"tribune://operator/bob","host":"h1","op":"suspend","state":"suspended","tenant":"acme","version":2},"index":21,"kind":"enclave_change","subject":"e1"}"#,
    r#"{"at_ms":1013,"detail":{"actor":"tribune://operator/bob","host":"h1","op":"resume","state":"running","tenant":"acme","version":3},"index":22,"kind":"enclave_change","subject":"e1"}"#,
    r#"{"at_ms":1014,"detail":{"event":"refused","what":"attestation stream","why":"gap: seq 641 after 194"},"index":23,"kind":"violation","subject":"h9"}"#,
    r#"{"at_ms":1015,"detail":{"event":"refused","host":"h1","what":"usage","why":"gap: seq 641 after 194"},"index":24,"kind":"violation","subject":"e1"}"#,
    r#"{"at_ms":1016,"detail":{"controller":1,"event":"refused","remote":"10.0.0.9:5555","what":"tls handshake","why":"no certificate"},"index":25,"kind":"violation","subject":"10.0.0.9"}"#,
    r#"{"at_ms":1017,"detail":{"actor":"tribune://admin/root","address":"10.0.0.4:7400","id":4,"op":"add","voter":false},"index":26,"kind":"membership_change","subject":"controller-4"}"#,
    r#"{"at_ms":1018,"detail":{"actor":"tribune://admin/root","id":4,"op":"promote"},"index":27,"kind":"membership_change","subject":"controller-4"}"#,
    r#"{"at_ms":1019,"detail":{"actor":"tribune://admin/root","id":4,"op":"remove"},"index":28,"kind":"membership_change","subject":"controller-4"}"#,
    r#"{"at_ms":1020,"detail":{"actor":"tribune://admin/alice","op":"delete","version":1},"index":29,"kind":"policy_change","subject":"web"}"#,
];

/// [`GOLDEN`] in leaf format 2: float-free, `"leaf_format":2` in every leaf.
const GOLDEN_V2: [&str; 30] = [
    r#"{"at_ms":1000,"detail":{"actor":"tribune://admin/alice","op":"put","source_sha256":"7b8ee867a3c9aaa0a063a4f9b824cf5debf9a6ffe753d8790398f77ed0891988","version":1},"index":0,"kind":"policy_change","leaf_format":2,"subject":"web"}"#,
    r#"{"at_ms":1001,"detail":{"actor":"tribune://operator/bob","attestation_status":"unverified","capacity":{"cpu_millicores":4000,"egress_bits_per_sec":1000000000,"gpu_percent":50,"ingress_bits_per_sec":0,"memory_bytes":8589934592},"op":"put","tee":"sev-snp"},"index":1,"kind":"host_change","leaf_format":2,"subject":"h1"}"#,
    r#"{"at_ms":1002,"detail":{"actor":"tribune://operator/bob","host":"h1","op":"put","state":"pending","tenant":"acme","version":1},"index":2,"kind":"enclave_change","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1003,"detail":{"actor":"tribune://operator/bob","host":null,"op":"put","state":"pending","tenant":"acme","version":1},"index":3,"kind":"enclave_change","leaf_format":2,"subject":"e2"}"#,
    r#"{"at_ms":1004,"detail":{"actor":"tribune://admin/root","expires_at_ms":100,"name":"ci","op":"create","role":"tenant","tenant":"acme"},"index":4,"kind":"token_change","leaf_format":2,"subject":"token-00112233aabbccdd"}"#,
    r#"{"at_ms":1005,"detail":{"actor":"tribune://admin/root","expires_at_ms":0,"name":"ops","op":"create","role":"operator","tenant":null},"index":5,"kind":"token_change","leaf_format":2,"subject":"token-ffeeddccbbaa0011"}"#,
    r#"{"at_ms":1006,"detail":{"actor":"tribune://admin/root","op":"revoke"},"index":6,"kind":"token_change","leaf_format":2,"subject":"token-00112233aabbccdd"}"#,
    r#"{"at_ms":1007,"detail":{"key_id":"02d449a31fbb267c","node_id":2,"public_key":"1111111111111111111111111111111111111111111111111111111111111111"},"index":7,"kind":"log_key","leaf_format":2,"subject":"controller-2"}"#,
    r#"{"at_ms":1008,"detail":{"debug":false,"ed25519_pub":"2222222222222222222222222222222222222222222222222222222222222222","failures":0,"host":"h1","measurement":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","reasons":[],"rekeyed":true,"tee":"sev-snp","trusted":true,"verified_by":3},"index":8,"kind":"verdict","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1009,"detail":{"checkpoint":"777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777777","cpu_millicores_avg":250,"divergence_bp_max":150,"enclave":"e1","first_seq":1,"head":"5555555555555555555555555555555555555555555555555555555555555555","key":"2222222222222222222222222222222222222222222222222222222222222222","last_seq":10,"mem_bytes_max":67108864,"net_rx_bytes":0,"net_tx_bytes":1234,"prev_head":"4444444444444444444444444444444444444444444444444444444444444444","replayed":false,"samples_root":"6666666666666666666666666666666666666666666666666666666666666666"},"index":9,"kind":"usage_digest","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"cpu_millicores":2000,"event":"over_limit","limit_cpu_millicores":500,"seq":12,"window_end_ms":1700000000123},"index":10,"kind":"violation","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"cpu_millicores":null,"event":"over_limit","limit_cpu_millicores":null,"seq":null,"window_end_ms":null},"index":11,"kind":"violation","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"event":"attestation.failed","violation":"measurement_not_allowed"},"index":12,"kind":"violation","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"event":"attestation.failed","violation":null},"index":13,"kind":"violation","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"throttle","cause":"over_limit","cpu_cap_millicores":500,"from":"none","over_limit_ms":1500,"suspended":false},"index":14,"kind":"action","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"none","cause":"","cpu_cap_millicores":0,"from":"suspend","over_limit_ms":null,"suspended":true},"index":15,"kind":"action","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"borrow","borrowed_cpu_millicores":300,"cpu_cap_millicores":800,"was":0},"index":16,"kind":"action","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"return","borrowed_cpu_millicores":0,"cpu_cap_millicores":500,"was":300},"index":17,"kind":"action","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"lend","lent_cpu_millicores":200,"was":0},"index":18,"kind":"action","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1010,"detail":{"action":"reclaim","lent_cpu_millicores":0,"was":200},"index":19,"kind":"action","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1011,"detail":{"debug":false,"ed25519_pub":"2222222222222222222222222222222222222222222222222222222222222222","failures":1,"host":"h1","measurement":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","reasons":["measurement not expected","debug \"on\""],"rekeyed":false,"tee":"sim","trusted":false,"verified_by":3},"index":20,"kind":"verdict","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1012,"detail":{"actor":"tribune://operator/bob","host":"h1","op":"suspend","state":"suspended","tenant":"acme","version":2},"index":21,"kind":"enclave_change","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1013,"detail":{"actor":"tribune://operator/bob","host":"h1","op":"resume","state":"running","tenant":"acme","version":3},"index":22,"kind":"enclave_change","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1014,"detail":{"event":"refused","what":"attestation stream","why":"gap: seq 641 after 194"},"index":23,"kind":"violation","leaf_format":2,"subject":"h9"}"#,
    r#"{"at_ms":1015,"detail":{"event":"refused","host":"h1","what":"usage","why":"gap: seq 641 after 194"},"index":24,"kind":"violation","leaf_format":2,"subject":"e1"}"#,
    r#"{"at_ms":1016,"detail":{"controller":1,"event":"refused","remote":"10.0.0.9:5555","what":"tls handshake","why":"no certificate"},"index":25,"kind":"violation","leaf_format":2,"subject":"10.0.0.9"}"#,
    r#"{"at_ms":1017,"detail":{"actor":"tribune://admin/root","address":"10.0.0.4:7400","id":4,"op":"add","voter":false},"index":26,"kind":"membership_change","leaf_format":2,"subject":"controller-4"}"#,
    r#"{"at_ms":1018,"detail":{"actor":"tribune://admin/root","id":4,"op":"promote"},"index":27,"kind":"membership_change","leaf_format":2,"subject":"controller-4"}"#,
    r#"{"at_ms":1019,"detail":{"actor":"tribune://admin/root","id":4,"op":"remove"},"index":28,"kind":"membership_change","leaf_format":2,"subject":"controller-4"}"#,
    r#"{"at_ms":1020,"detail":{"actor":"tribune://admin/alice","op":"delete","version":1},"index":29,"kind":"policy_change","leaf_format":2,"subject":"web"}"#,
];

/// Merkle root over [`GOLDEN_V2`].
const GOLDEN_V2_ROOT: &str = "d697b44eff1f17c4ad41029e017fefc905ecd478b216a4d4a54cb127669d2565";

/// Merkle root over [`GOLDEN`].
const GOLDEN_ROOT: &str = "6c88e98b6fe7dacf817c642bd781f82b517085ae2ffc4db01a9111c7a4a77fb4";

const OPERATOR: &str = "tribune://operator/bob";
const ADMIN: &str = "tribune://admin/root";

/// One entry of every kind and shape (all but `migration`, which nothing writes yet), written
/// in leaf format `format`.
pub(crate) fn scenario(format: LeafFormat) -> State {
    let mut s = State::default();
    s.apply_in(
        format,
        Command::PutPolicy {
            name: "web".into(),
            source: "policy \"web\" { match tenant == \"acme\" }\n".into(),
            expect: Expect::Any,
            actor: "tribune://admin/alice".into(),
            at_ms: 1000,
        },
    );
    s.apply_in(
        format,
        Command::PutHost {
            host: Host {
                id: "h1".into(),
                address: "10.0.0.1:7500".into(),
                capacity: Resources {
                    cpu_millicores: 4000,
                    memory_bytes: 8 << 30,
                    egress_bits_per_sec: 1_000_000_000,
                    ingress_bits_per_sec: 0,
                    gpu_percent: 50,
                },
                tee: TeeKind::SevSnp,
                attestation_status: "unverified".into(),
                last_heartbeat_ms: 0,
                agent_cert_fingerprint: String::new(),
                enforcement: String::new(),
                tee_generation: 0,
                labels: Default::default(),
                schedulable: Default::default(),
                measured_load: Default::default(),
            },
            actor: OPERATOR.into(),
            at_ms: 1001,
        },
    );
    let mut e1 = super::tests::enclave("e1", "h1", 1);
    e1.tee = TeeKind::SevSnp;
    s.apply_in(
        format,
        Command::PutEnclave {
            enclave: e1.clone(),
            expect: Expect::Absent,
            actor: OPERATOR.into(),
            at_ms: 1002,
        },
    );
    let mut e2 = super::tests::enclave("e2", "h1", 1);
    e2.placement = None;
    s.apply_in(
        format,
        Command::PutEnclave {
            enclave: e2,
            expect: Expect::Absent,
            actor: OPERATOR.into(),
            at_ms: 1003,
        },
    );
    for (id, name, role, tenant, secret, created, expires, at_ms) in [
        (
            "00112233aabbccdd",
            "ci",
            tribune_tls::UserRole::Tenant,
            Some("acme"),
            "ab",
            1,
            100,
            1004,
        ),
        (
            "ffeeddccbbaa0011",
            "ops",
            tribune_tls::UserRole::Operator,
            None,
            "cd",
            2,
            0,
            1005,
        ),
    ] {
        s.apply_in(
            format,
            Command::CreateToken {
                token: Token {
                    id: id.into(),
                    name: name.into(),
                    role,
                    tenant: tenant.map(str::to_string),
                    secret_sha256: secret.repeat(32),
                    created_by: ADMIN.into(),
                    created_at_ms: created,
                    expires_at_ms: expires,
                    revoked: None,
                },
                at_ms,
            },
        );
    }
    s.apply_in(
        format,
        Command::RevokeToken {
            id: "00112233aabbccdd".into(),
            actor: ADMIN.into(),
            at_ms: 1006,
        },
    );
    s.apply_in(
        format,
        Command::RegisterLogKey {
            node_id: 2,
            public_key: "11".repeat(32),
            at_ms: 1007,
        },
    );
    let key = "22".repeat(32);
    let trusted = Attestation {
        trusted: true,
        host: "h1".into(),
        tee: Some(TeeKind::SevSnp),
        measurement: "aa".repeat(48),
        debug: false,
        ed25519_pub: key.clone(),
        x25519_pub: "33".repeat(32),
        reasons: vec![],
        verified_at_ms: 1008,
        failures: 0,
        verified_by: 3,
        rekeyed: true,
    };
    s.apply_in(
        format,
        Command::Verdicts {
            host: "h1".into(),
            verdicts: vec![VerdictCmd {
                enclave: "e1".into(),
                attestation: trusted.clone(),
            }],
            at_ms: 1008,
        },
    );
    s.apply_in(
        format,
        Command::UsageDigests {
            host: "h1".into(),
            digests: vec![UsageDigest {
                enclave: "e1".into(),
                key,
                first_seq: 1,
                last_seq: 10,
                prev_head: "44".repeat(32),
                head: "55".repeat(32),
                samples_root: "66".repeat(32),
                checkpoint: "77".repeat(162),
                cpu_millicores_avg: 250,
                mem_bytes_max: 64 << 20,
                net_tx_bytes: 1234,
                net_rx_bytes: 0,
                divergence_bp_max: 150,
                cpu_wait_millicores_avg: None,
                replayed: false,
                unaccounted_from: None,
            }],
            at_ms: 1009,
        },
    );
    s.apply_in(
        format,
        Command::Enforce {
            host: "h1".into(),
            changes: vec![Enforcement {
                enclave: "e1".into(),
                epoch: 1,
                allocation: Allocation {
                    enclave: "e1".into(),
                    limits: Resources {
                        cpu_millicores: 500,
                        ..Resources::default()
                    },
                    guaranteed: Resources::default(),
                    weight: 1,
                    suspended: false,
                    msgs_rate_per_s: None,
                },
                state: EnclaveState::Throttled,
                ladder: Ladder::default(),
                from: None,
                borrowed_cpu_millicores: 0,
                lent_cpu_millicores: 0,
                log: decision_details(),
            }],
            at_ms: 1010,
        },
    );
    let mut refused = trusted;
    refused.trusted = false;
    refused.reasons = vec!["measurement not expected".into(), "debug \"on\"".into()];
    refused.rekeyed = false;
    refused.tee = Some(TeeKind::Sim);
    s.apply_in(
        format,
        Command::Verdicts {
            host: "h1".into(),
            verdicts: vec![VerdictCmd {
                enclave: "e1".into(),
                attestation: refused,
            }],
            at_ms: 1011,
        },
    );
    for (state, at_ms) in [
        (EnclaveState::Suspended, 1012),
        (EnclaveState::Running, 1013),
    ] {
        let mut e = e1.clone();
        e.state = state;
        s.apply_in(
            format,
            Command::PutEnclave {
                enclave: e,
                expect: Expect::Any,
                actor: OPERATOR.into(),
                at_ms,
            },
        );
    }
    for (i, (subject, detail)) in appended_details().into_iter().enumerate() {
        s.apply_in(
            format,
            Command::AppendLog {
                subject: subject.into(),
                detail,
                at_ms: 1014 + i as i64,
            },
        );
    }
    s.apply_in(
        format,
        Command::DeletePolicy {
            name: "web".into(),
            expect: Expect::Any,
            actor: "tribune://admin/alice".into(),
            at_ms: 1020,
        },
    );
    s
}

/// The details a decision (`attest::decide`) logs, one of every shape.
fn decision_details() -> Vec<LogDetail> {
    let ladder = |action, from, cause: &str, cap, suspended, over| {
        LogDetail::Action(ActionDetail::Ladder(LadderAction {
            action,
            from,
            cause: cause.into(),
            cpu_cap_millicores: cap,
            suspended,
            over_limit_ms: over,
        }))
    };
    let borrow = |action, borrowed, was, cap| {
        LogDetail::Action(ActionDetail::Borrow(BorrowAction {
            action,
            borrowed_cpu_millicores: borrowed,
            was,
            cpu_cap_millicores: cap,
        }))
    };
    let lend = |action, lent, was| {
        LogDetail::Action(ActionDetail::Lend(LendAction {
            action,
            lent_cpu_millicores: lent,
            was,
        }))
    };
    vec![
        LogDetail::Violation(ViolationDetail::OverLimit(OverLimit {
            cpu_millicores: Some(2000),
            limit_cpu_millicores: Some(500),
            seq: Some(12),
            window_end_ms: Some(1_700_000_000_123),
        })),
        LogDetail::Violation(ViolationDetail::OverLimit(OverLimit {
            cpu_millicores: None,
            limit_cpu_millicores: None,
            seq: None,
            window_end_ms: None,
        })),
        LogDetail::Violation(ViolationDetail::AttestationFailed(AttestationFailed {
            violation: Some(tribune_policy::AttestViolation::MeasurementNotAllowed),
        })),
        LogDetail::Violation(ViolationDetail::AttestationFailed(AttestationFailed {
            violation: None,
        })),
        ladder(
            Step::Throttle,
            Step::None,
            "over_limit",
            500,
            false,
            Some(1500),
        ),
        ladder(Step::None, Step::Suspend, "", 0, true, None),
        borrow(BorrowMove::Borrow, 300, 0, 800),
        borrow(BorrowMove::Return, 0, 300, 500),
        lend(LendMove::Lend, 200, 0),
        lend(LendMove::Reclaim, 0, 200),
    ]
}

/// What the stream, the TLS layer and the membership API append, one of every shape.
fn appended_details() -> Vec<(&'static str, LogDetail)> {
    let why = "gap: seq 641 after 194";
    vec![
        ("h9", Refusal::new("attestation stream", why).into()),
        (
            "e1",
            Refusal {
                host: Some("h1".into()),
                ..Refusal::new("usage", why)
            }
            .into(),
        ),
        (
            "10.0.0.9",
            Refusal {
                remote: Some("10.0.0.9:5555".into()),
                controller: Some(1),
                ..Refusal::new("tls handshake", "no certificate")
            }
            .into(),
        ),
        (
            "controller-4",
            LogDetail::MembershipChange(MembershipChangeDetail::Add {
                id: 4,
                address: "10.0.0.4:7400".into(),
                voter: false,
                actor: ADMIN.into(),
            }),
        ),
        (
            "controller-4",
            LogDetail::MembershipChange(MembershipChangeDetail::Promote {
                id: 4,
                actor: ADMIN.into(),
            }),
        ),
        (
            "controller-4",
            LogDetail::MembershipChange(MembershipChangeDetail::Remove {
                id: 4,
                actor: ADMIN.into(),
            }),
        ),
    ]
}

/// Each format with its golden leaves and root.
fn formats() -> [(LeafFormat, &'static [&'static str; 30], &'static str); 2] {
    [
        (LeafFormat::V1, &GOLDEN, GOLDEN_ROOT),
        (LeafFormat::V2, &GOLDEN_V2, GOLDEN_V2_ROOT),
    ]
}

#[test]
fn every_kind_writes_the_leaf_bytes_it_always_wrote() {
    for (format, golden, root) in formats() {
        let s = scenario(format);
        assert_eq!(s.log.entries.len(), golden.len());
        for (e, want) in s.log.entries.iter().zip(golden) {
            assert_eq!(
                String::from_utf8(e.leaf_bytes()).expect("utf-8"),
                *want,
                "{format:?} entry {} ({})",
                e.index,
                e.kind().as_str()
            );
        }
        assert_eq!(hex::encode(s.log.tree().root()), root, "{format:?}");
        // Every kind but `migration` (nothing writes it yet) is covered.
        let kinds: std::collections::BTreeSet<&str> =
            s.log.entries.iter().map(|e| e.kind().as_str()).collect();
        let all: std::collections::BTreeSet<&str> = LogEntryKind::ALL
            .into_iter()
            .filter(|k| *k != LogEntryKind::Migration)
            .map(LogEntryKind::as_str)
            .collect();
        assert_eq!(kinds, all);
    }
}

/// Every number in a JSON value, as written.
fn numbers(v: &serde_json::Value, out: &mut Vec<serde_json::Number>) {
    match v {
        serde_json::Value::Number(n) => out.push(n.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|c| numbers(c, out)),
        serde_json::Value::Object(m) => m.values().for_each(|c| numbers(c, out)),
        _ => {}
    }
}

#[test]
fn format_2_leaves_hold_no_floats_and_format_1_leaves_hold_the_same_quantities() {
    let (v1, v2) = (scenario(LeafFormat::V1), scenario(LeafFormat::V2));
    let mut floats_in_v1 = 0;
    for (old, new) in v1.log.entries.iter().zip(&v2.log.entries) {
        // The same entry, in memory: only the leaf differs.
        assert_eq!(old.detail, new.detail);
        let leaf: serde_json::Value = serde_json::from_slice(&new.leaf_bytes()).expect("json");
        let mut ns = Vec::new();
        numbers(&leaf, &mut ns);
        assert!(
            ns.iter().all(|n| n.is_u64() || n.is_i64()),
            "entry {}: {leaf}",
            new.index
        );
        assert_eq!(leaf["leaf_format"], 2);
        let leaf: serde_json::Value = serde_json::from_slice(&old.leaf_bytes()).expect("json");
        let mut ns = Vec::new();
        numbers(&leaf, &mut ns);
        floats_in_v1 += ns.iter().filter(|n| n.is_f64()).count();
        assert!(leaf.get("leaf_format").is_none());
    }
    // usage_digest (2) and the over_limit violation with a value (1).
    assert_eq!(floats_in_v1, 3);
}

#[test]
fn a_log_of_every_kind_reads_back_from_the_json_it_was_stored_as() {
    for (format, golden, root) in formats() {
        // A snapshot (the state's JSON) and the API's entries: the same entries, the same
        // leaves.
        let s = scenario(format);
        let json = serde_json::to_string(&s).expect("json");
        let back: State = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.log, s.log);
        assert_eq!(hex::encode(back.log.tree().root()), root);
        // Each entry's JSON is its leaf's object (the leaf only sorts the keys).
        for (e, want) in s.log.entries.iter().zip(golden) {
            let as_json = serde_json::to_value(e).expect("json");
            let golden: serde_json::Value = serde_json::from_str(want).expect("golden is JSON");
            assert_eq!(as_json, golden, "{format:?} entry {}", e.index);
            let keys: Vec<&String> = as_json.as_object().expect("object").keys().collect();
            let want_keys = if format == LeafFormat::V1 { 5 } else { 6 };
            assert_eq!(keys.len(), want_keys, "entry {}: {keys:?}", e.index);
        }
        // The golden bytes themselves parse into the same entries.
        for (e, want) in s.log.entries.iter().zip(golden) {
            let parsed: LogEntry = serde_json::from_str(want).expect("golden parses");
            assert_eq!(&parsed, e);
        }
    }
}

#[test]
fn an_old_format_entry_loads_next_to_new_ones_and_keeps_its_leaf() {
    // A data directory from before format 2: its log is format 1; new entries are format 2.
    let mut s = scenario(LeafFormat::V1);
    let old_root = s.log.tree().root();
    let json = serde_json::to_string(&s).expect("json");
    s = serde_json::from_str(&json).expect("an old snapshot loads");
    assert_eq!(s.log.tree().root(), old_root);
    s.apply(Command::AppendLog {
        subject: "e1".into(),
        detail: decision_details().remove(0),
        at_ms: 2000,
    });
    let last = s.log.entries.last().expect("appended");
    assert_eq!(last.format, LeafFormat::V2);
    assert!(
        String::from_utf8(last.leaf_bytes())
            .expect("utf-8")
            .contains(r#""cpu_millicores":2000,"#)
    );
    let back: State =
        serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("mixed log loads");
    assert_eq!(back.log, s.log);
    assert_eq!(back.log.verify(), Ok(()));
    // A format-1 entry that claims `"leaf_format": 1` would be another leaf: refused.
    let mut e: serde_json::Value = serde_json::from_str(GOLDEN[0]).expect("json");
    e["leaf_format"] = 1.into();
    let err = serde_json::from_value::<LogEntry>(e).expect_err("explicit format 1");
    assert!(err.to_string().contains("leaf_format"), "{err}");
}

#[test]
fn a_raft_entry_from_before_format_2_replays_into_format_1_leaves() {
    // The same commands as JSON in a Raft entry: the bare array (old) and the stamped form.
    let cmd = Command::AppendLog {
        subject: "e1".into(),
        detail: decision_details().remove(0),
        at_ms: 1010,
    };
    let old = format!("[{}]", serde_json::to_string(&cmd).expect("json"));
    let old = old.replace(r#""cpu_millicores":2000,"#, r#""cpu_millicores":2000.0,"#);
    let req: crate::raft::Request = serde_json::from_str(&old).expect("old raft entry");
    assert_eq!(req.leaf_format, LeafFormat::V1);
    let mut s = State::default();
    for c in req.commands {
        s.apply_in(req.leaf_format, c);
    }
    assert_eq!(
        String::from_utf8(s.log.entries[0].leaf_bytes()).expect("utf-8"),
        GOLDEN[10].replace(r#""index":10"#, r#""index":0"#)
    );
    let new = serde_json::to_string(&crate::raft::Request::new(vec![cmd])).expect("json");
    assert!(new.starts_with(r#"{"leaf_format":2,"commands":["#), "{new}");
    let req: crate::raft::Request = serde_json::from_str(&new).expect("new raft entry");
    assert_eq!(req.leaf_format, LeafFormat::V2);
    let e = serde_json::from_str::<crate::raft::Request>(r#"{"leaf_format":9,"commands":[]}"#)
        .expect_err("unknown format");
    assert!(e.to_string().contains("leaf_format 9"), "{e}");
}

/// Prints [`GOLDEN_V2`] and its root as the code writes them now (to review and paste):
/// `cargo test -p tribune-controller --lib -- --ignored print_golden_v2 --nocapture`.
#[test]
#[ignore]
fn print_golden_v2() {
    let s = scenario(LeafFormat::V2);
    for e in &s.log.entries {
        println!(
            "    r#\"{}\"#,",
            String::from_utf8(e.leaf_bytes()).expect("utf-8")
        );
    }
    println!("{}", hex::encode(s.log.tree().root()));
}

/// `scripts/conformance/testdata/golden-leaves.json`: every golden entry of both formats as the
/// API serves it, with its leaf hash — what the Python verifier recomputes
/// (`cli/tests/log_conformance.rs`). Regenerate with `UPDATE_GOLDEN=1`.
#[test]
fn the_conformance_fixture_is_the_golden_log() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/conformance/testdata/golden-leaves.json"
    );
    let mut all = Vec::new();
    for (format, _, _) in formats() {
        for e in scenario(format).log.entries {
            let mut v = serde_json::to_value(&e).expect("json");
            v["leaf_hash"] = hex::encode(e.leaf_hash()).into();
            all.push(v);
        }
    }
    let mut want = serde_json::to_string_pretty(&all).expect("json");
    want.push('\n');
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &want).expect("write the fixture");
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "{path} differs from the golden log; regenerate with UPDATE_GOLDEN=1"
    );
}
