use super::*;
use tribune_controller::state::{LeafFormat, OverLimit, Refusal};

fn digest(first_seq: u64, last_seq: u64) -> LogDetail {
    LogDetail::UsageDigest(UsageDigest {
        enclave: "e".into(),
        key: String::new(),
        first_seq,
        last_seq,
        prev_head: String::new(),
        head: String::new(),
        samples_root: String::new(),
        checkpoint: String::new(),
        cpu_millicores_avg: 0,
        mem_bytes_max: 0,
        net_tx_bytes: 0,
        net_rx_bytes: 0,
        divergence_bp_max: 0,
        cpu_wait_millicores_avg: None,
        replayed: false,
        unaccounted_from: None,
    })
}

fn entry(index: u64, detail: LogDetail) -> LogEntry {
    LogEntry {
        index,
        at_ms: 0,
        subject: "e".into(),
        detail,
        format: LeafFormat::CURRENT,
    }
}

#[test]
fn only_usage_digests_count_and_each_counts_its_span() {
    let entries = [
        entry(0, digest(1, 10)),
        entry(1, Refusal::new("usage", "gap").into()),
        entry(2, digest(11, 11)),
        entry(
            3,
            LogDetail::Violation(ViolationDetail::OverLimit(OverLimit {
                cpu_millicores: Some(1),
                limit_cpu_millicores: Some(1),
                seq: Some(30),
                window_end_ms: Some(1),
            })),
        ),
        // A span that runs backwards covers nothing.
        entry(4, digest(20, 12)),
    ];
    assert_eq!(digested(&entries), 11);
}

#[test]
fn injections_are_spread_inside_the_run_leaving_its_edges_out() {
    let cfg = IngestConfig {
        hosts: 4,
        enclaves_per_host: 50,
        over_limit_every: 50,
        ..IngestConfig::default()
    };
    let ticks = 100;
    let inj = agents::injections(&cfg, ticks);
    assert_eq!(inj.len(), 4);
    for (&enclave, &tick) in &inj {
        assert_eq!(enclave % 50, 25);
        assert!((11..=ticks - 10).contains(&tick), "tick {tick}");
    }
    // A run too short to leave edges out still injects inside it.
    let short = agents::injections(&cfg, 5);
    assert!(short.values().all(|t| (1..=5).contains(t)));
}

#[test]
fn controller_cpu_is_the_difference_over_the_wall_time() {
    let before = CpuSeconds {
        controllers: vec![(1, 10.0), (2, 5.0)],
        own: 1.0,
    };
    let after = CpuSeconds {
        controllers: vec![(2, 9.0), (1, 12.0)],
        own: 3.0,
    };
    let c = before.controllers_since(&after, 2.0);
    let got: Vec<(u64, f64, f64)> = c.iter().map(|c| (c.id, c.cpu_seconds, c.cores)).collect();
    assert_eq!(got, vec![(1, 2.0, 1.0), (2, 4.0, 2.0)]);
    // A controller not measured at the end counts as idle.
    let c = before.controllers_since(&CpuSeconds::default(), 2.0);
    assert!(c.iter().all(|c| c.cpu_seconds == 0.0));
}
