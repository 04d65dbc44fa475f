//! `tribune bench messages`: runs `tribune_bench::messages`, prints its tables and the issue's
//! goals (issue 15), then one JSON line.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use tribune_bench::messages::{MessagesConfig, SenderResult, messages};

use super::bench::{goal_line, result_line};
use super::output::Format;

#[derive(Args, Debug)]
pub struct MessagesArgs {
    /// Seconds per fairness scenario (the first is warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Messages/s the flood's receiver takes.
    #[arg(long, default_value_t = 10_000.0)]
    pub receiver_rate: f64,
    /// Messages/s of each well-behaved sender.
    #[arg(long, default_value_t = 500.0)]
    pub sender_rate: f64,
    /// The flooder's rate as a multiple of `--sender-rate`.
    #[arg(long, default_value_t = 100.0)]
    pub flood_factor: f64,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 5)]
    pub throughput_seconds: u64,
    /// Senders on one agent, receivers on another, each in a network namespace of its own,
    /// over the agents' mutual-TLS peer links (root).
    #[arg(long)]
    pub cross_host: bool,
}

fn print_senders(rows: &[SenderResult]) {
    println!(
        "{:<6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>13} {:>12}",
        "sender",
        "offered/s",
        "accepted/s",
        "refused/s",
        "delivered/s",
        "fair/s",
        "error",
        "configured/s",
        "send p99 ms"
    );
    for r in rows {
        println!(
            "{:<6} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>7.2}% {:>13.0} {:>12.3}",
            r.name,
            r.offered_per_s,
            r.accepted_per_s,
            r.refused_per_s,
            r.delivered_per_s,
            r.fair_share_per_s,
            r.error_pct,
            r.configured_share_per_s,
            r.send_ms.p99
        );
    }
}

pub async fn run(exe: &Path, a: MessagesArgs, format: Format) -> anyhow::Result<ExitCode> {
    let cfg = MessagesConfig {
        seconds: a.seconds,
        receiver_rate: a.receiver_rate,
        sender_rate: a.sender_rate,
        flood_factor: a.flood_factor,
        throughput_seconds: a.throughput_seconds,
        cross_host: a.cross_host,
    };
    let r = messages(exe, &cfg, |m| eprintln!("messages: {m}")).await?;
    if !format.is_structured() {
        if cfg.cross_host {
            println!(
                "cross-host: senders on agent ha, receivers on agent hb, separate network namespaces, mTLS peer links"
            );
        }
        println!(
            "flood: receiver takes {:.0}/s; s0 floods at {}× ({} as {})",
            r.flood.receiver_rate,
            cfg.flood_factor,
            if r.root { "root" } else { "not root" },
            if r.root {
                "a real agent"
            } else {
                "an observe-only agent"
            }
        );
        print_senders(&r.flood.senders);
        let d = &r.flood.delay_ms;
        println!(
            "well-behaved: Jain {:.4}, worst error {:.2}% (fair shares of what was offered), send→receive delay p50 {:.3} ms p99 {:.3} ms max {:.3} ms (n={})",
            r.flood.jain_well_behaved, r.flood.worst_error_pct, d.p50, d.p99, d.max, d.n
        );
        let s = &r.flood.send_ms;
        println!(
            "well-behaved offered at least {:.1}% of their configured rate; a send answered by the mediator in p50 {:.3} ms p99 {:.3} ms max {:.3} ms",
            r.flood.offered_min_pct, s.p50, s.p99, s.max
        );
        match &r.flood.queueing {
            Some(q) => {
                for h in &q.hops {
                    println!(
                        "well-behaved queueing in the mediator ({}): p50 {:.3} ms p99 {:.3} ms, {:.2}% within 2 ms (n={})",
                        h.agent, h.p50_ms, h.p99_ms, h.within_goal_pct, h.messages
                    );
                }
                if q.hops.len() > 1 {
                    println!(
                        "well-behaved queueing in both mediators: at least {:.2}% within 2 ms (the bound from the two histograms alone)",
                        q.within_goal_pct_at_least
                    );
                }
                if let Some(p) = &q.paired {
                    println!(
                        "well-behaved queueing in both mediators, paired per message: p50 {:.3} ms p99 {:.3} ms, {:.2}% within 2 ms (n={})",
                        p.p50_ms, p.p99_ms, p.within_goal_pct, p.messages
                    );
                }
            }
            None => println!("well-behaved queueing in the mediator: not read (see above)"),
        }
        println!(
            "weighted 1:2:4: receiver takes {:.0}/s",
            r.weighted.receiver_rate
        );
        print_senders(&r.weighted.senders);
        println!(
            "priority: receiver {:.0}/s; high {:.0}/s and low {:.0}/s while both send; low alone {:.0}/s",
            r.priority.receiver_rate,
            r.priority.high_per_s,
            r.priority.low_per_s_while_high,
            r.priority.low_per_s_alone
        );
        println!(
            "{:>8} {:>14} {:>12} {:>14} {:>12}",
            "payload", "mediator msg/s", "mediator MB/s", "relay msg/s", "relay MB/s"
        );
        for t in &r.throughput {
            println!(
                "{:>8} {:>14.0} {:>12.1} {:>14.0} {:>12.1}",
                t.payload_bytes,
                t.mediator_msgs_per_s,
                t.mediator_mb_per_s,
                t.plain_relay_msgs_per_s,
                t.plain_relay_mb_per_s
            );
        }
        println!(
            "mediator (agent process) RSS {:.1} MiB, peak {:.1} MiB",
            r.mediator_rss_mib, r.mediator_hwm_mib
        );
        if let (Some(rss), Some(hwm)) = (r.receiver_mediator_rss_mib, r.receiver_mediator_hwm_mib) {
            println!("receivers' mediator (agent hb) RSS {rss:.1} MiB, peak {hwm:.1} MiB");
        }
    }
    goal_line(
        "well-behaved senders within 5% of their fair share",
        r.flood.delay_ms.n > 0 && r.flood.worst_error_pct <= 5.0,
        &format!("worst {:.2}%", r.flood.worst_error_pct),
    );
    goal_line(
        "Jain's index over the well-behaved ≥ 0.99",
        r.flood.jain_well_behaved >= 0.99,
        &format!("{:.4}", r.flood.jain_well_behaved),
    );
    // Judged on the time in the mediators' queues (the agents' histogram), where the fair
    // queueing acts; send→receive, which adds the clients, the socket hops and (across hosts)
    // TLS and the link, is shown beside it.
    let q = r.flood.queueing.as_ref();
    goal_line(
        "well-behaved p99 queueing delay ≤ 2 ms",
        q.is_some_and(|q| q.judged_within_goal_pct() >= 99.0),
        &format!(
            "{} within 2 ms in the mediator{}; send→receive p99 {:.3} ms",
            q.map_or("not read".to_string(), |q| format!(
                "{:.2}%{}",
                q.judged_within_goal_pct(),
                match (q.hops.len() > 1, q.paired.is_some()) {
                    (true, true) => " (paired per message)",
                    (true, false) => " (at least)",
                    _ => "",
                }
            )),
            if q.is_some_and(|q| q.hops.len() > 1) {
                "s"
            } else {
                ""
            },
            r.flood.delay_ms.p99
        ),
    );
    goal_line(
        "weighted shares 1:2:4 within 3% of ideal",
        r.weighted.worst_error_pct <= 3.0,
        &format!("worst {:.2}%", r.weighted.worst_error_pct),
    );
    goal_line(
        "a higher priority class is served first while it has traffic",
        r.priority.high_per_s > 0.0
            && r.priority.low_per_s_while_high <= 0.01 * r.priority.high_per_s,
        &format!(
            "high {:.0}/s, low {:.0}/s meanwhile, low alone {:.0}/s",
            r.priority.high_per_s, r.priority.low_per_s_while_high, r.priority.low_per_s_alone
        ),
    );
    result_line(format, &json!({"scenario": "messages", "result": r}))?;
    Ok(ExitCode::SUCCESS)
}
