//! `tribune policy plan FILE [--since 1h] [--enclaves SEL]`: what FILE's policies would have
//! done to the recorded usage, as a diff against what happened (`POST /v1/policies/plan`). The
//! request and answer are the controller's own types (`api::plan`); the replay is the
//! controller's, through the live loop's decision function. This module only prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use reqwest::Method;
use tribune_controller::api::plan::{PlanRequest, PolicyPlan};
use tribune_controller::attest::replay::{Comparison, Course};
use tribune_controller::state::Step;

use super::client::{Client, ClientOpts};
use super::output::{self, Format};

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Policy source file: each policy it defines replaces the stored one of its name, or is
    /// added. Checked here first; nothing is sent if it does not check.
    pub file: PathBuf,
    /// How much recorded usage to replay: a duration (`90s`, `15m`, `1h`, `1d`) or seconds.
    /// At most 24 h (the planner's retention).
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Which enclaves: comma-separated terms, any of which selects — an enclave id,
    /// `tenant=T`, `host=H`, `label.K=V`. Default: every placed enclave you may see.
    #[arg(long, value_name = "SEL")]
    pub enclaves: Option<String>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// `90s`, `15m`, `1h`, `1d`, or plain seconds → seconds.
pub fn seconds(s: &str) -> anyhow::Result<u64> {
    let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: u64 = num
        .parse()
        .with_context(|| format!("--since {s:?}: not a duration like 90s, 15m, 1h"))?;
    let per = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--since {s:?}: unit {unit:?} is not one of s, m, h, d"),
    };
    n.checked_mul(per)
        .ok_or_else(|| anyhow!("--since {s:?}: too long"))
}

pub fn run(args: PlanArgs, format: Format) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let Some((source, _)) = super::policy::checked(&args.file, &bytes) else {
        return Ok(ExitCode::FAILURE);
    };
    let req = PlanRequest {
        source,
        since_s: Some(seconds(&args.since)?),
        enclaves: args.enclaves,
    };
    let client = Client::new(&args.opts, format)?;
    let body = serde_json::to_value(&req)?;
    let (_, _, v) = super::client::runtime()?
        .block_on(client.call(Method::POST, "/v1/policies/plan", Some(&body), &[]))
        .map_err(|e| anyhow!(e))?;
    let plan: PolicyPlan =
        serde_json::from_value(v).context("the controller's plan is not a plan this CLI reads")?;
    if !output::structured(format, &plan)? {
        print!("{}", render(&plan, format.is_wide()));
    }
    Ok(ExitCode::SUCCESS)
}

fn step(s: Step) -> &'static str {
    match s {
        Step::None => "none",
        Step::Notify => "notify",
        Step::Throttle => "throttle",
        Step::Suspend => "suspend",
        Step::Migrate => "migrate",
    }
}

/// Seconds after the period's start, as `+12s`.
fn at(plan: &PolicyPlan, ms: i64) -> String {
    format!("+{}s", (ms - plan.from_ms).max(0) / 1000)
}

fn counts(c: &Course) -> String {
    format!(
        "{} throttle(s), {} suspension(s), {} migration(s), {} release(s)",
        c.throttles, c.suspensions, c.migrations, c.releases
    )
}

/// The plan for people: one line per enclave, then what would change, enclave by enclave.
pub fn render(plan: &PolicyPlan, wide: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let names = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            output::cell(&v.join(", ")).into_owned()
        }
    };
    let _ = writeln!(
        out,
        "replayed {} s of recorded usage ({} windows, {} enclaves); replaces: {}; adds: {}",
        (plan.to_ms - plan.from_ms) / 1000,
        plan.windows,
        plan.enclaves.len(),
        names(&plan.replaced),
        names(&plan.added),
    );
    let rows: Vec<[String; 7]> = plan
        .enclaves
        .iter()
        .map(|c| {
            [
                output::cell(&c.enclave).into_owned(),
                output::cell(&c.host).into_owned(),
                c.windows.to_string(),
                format!(
                    "{} → {}",
                    c.actual.throttled_windows, c.planned.throttled_windows
                ),
                format!(
                    "{} → {}",
                    c.actual.suspended_windows, c.planned.suspended_windows
                ),
                format!(
                    "{}m → {}m",
                    c.limits_before.cpu_millicores, c.limits_after.cpu_millicores
                ),
                if c.changed { "changes" } else { "same" }.to_string(),
            ]
        })
        .collect();
    let header = [
        "ENCLAVE",
        "HOST",
        "WINDOWS",
        "THROTTLED",
        "SUSPENDED",
        "CPU LIMIT",
        "PLAN",
    ];
    let mut width = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{c:<w$}");
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "\n{}", line(&header.map(String::from)));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    for c in plan.enclaves.iter().filter(|c| c.changed) {
        render_changes(&mut out, plan, c, wide);
    }
    if plan.changed().next().is_none() {
        let _ = writeln!(out, "\nno enclave's enforcement would change");
    }
    out
}

fn render_changes(out: &mut String, plan: &PolicyPlan, c: &Comparison, wide: bool) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "\n{} (host {})\n  happened: {}\n  planned:  {}",
        output::cell(&c.enclave),
        output::cell(&c.host),
        counts(&c.actual),
        counts(&c.planned)
    );
    for d in &c.differences {
        let _ = writeln!(
            out,
            "  {}..{} (seq {}..={}, {} windows): was {}, would be {}",
            at(plan, d.from_ms),
            at(plan, d.to_ms),
            d.first_seq,
            d.last_seq,
            d.windows,
            step(d.actual),
            step(d.planned)
        );
    }
    if c.differences_omitted > 0 {
        let _ = writeln!(out, "  … {} more runs of windows", c.differences_omitted);
    }
    let lending = |x: &Course| (x.lent_cpu_millicores_max, x.borrowed_cpu_millicores_max);
    if lending(&c.actual) != lending(&c.planned) {
        let _ = writeln!(
            out,
            "  lending: lent up to {}m → {}m, borrowed up to {}m → {}m",
            c.actual.lent_cpu_millicores_max,
            c.planned.lent_cpu_millicores_max,
            c.actual.borrowed_cpu_millicores_max,
            c.planned.borrowed_cpu_millicores_max
        );
    }
    let (b, a) = (&c.limits_before, &c.limits_after);
    let limits: Vec<String> = [
        ("cpu", "m", b.cpu_millicores, a.cpu_millicores),
        ("memory", " bytes", b.memory_bytes, a.memory_bytes),
        (
            "egress",
            " bit/s",
            b.egress_bits_per_sec,
            a.egress_bits_per_sec,
        ),
        (
            "ingress",
            " bit/s",
            b.ingress_bits_per_sec,
            a.ingress_bits_per_sec,
        ),
        (
            "gpu",
            "%",
            u64::from(b.gpu_percent),
            u64::from(a.gpu_percent),
        ),
    ]
    .iter()
    .filter(|(_, _, x, y)| x != y)
    .map(|(r, unit, x, y)| {
        let shown = |v: u64| {
            if v == 0 {
                "none".to_string()
            } else {
                format!("{v}{unit}")
            }
        };
        format!("{r} {} → {}", shown(*x), shown(*y))
    })
    .collect();
    if !limits.is_empty() {
        let _ = writeln!(out, "  limits: {}", limits.join(", "));
    }
    let shown = if wide { usize::MAX } else { 5 };
    for a in c.planned.actions.iter().take(shown) {
        let window = match (a.first_seq, a.last_seq) {
            (Some(f), Some(l)) => format!(" (window seq {f}..={l})"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  would {} at {}{window}, cap {}m: {}",
            step(a.to),
            at(plan, a.at_ms),
            a.cpu_cap_millicores,
            output::cell(&a.cause)
        );
    }
    let more = c.planned.actions.len().saturating_sub(shown) as u64 + c.planned.actions_omitted;
    if more > 0 {
        let _ = writeln!(out, "  … {more} more planned actions (-o wide or -o json)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_seconds() {
        assert_eq!(seconds("90").ok(), Some(90));
        assert_eq!(seconds("90s").ok(), Some(90));
        assert_eq!(seconds("15m").ok(), Some(900));
        assert_eq!(seconds("1h").ok(), Some(3600));
        assert_eq!(seconds("1d").ok(), Some(86_400));
        assert!(seconds("1w").is_err());
        assert!(seconds("h").is_err());
        assert!(seconds("-1h").is_err());
    }

    #[test]
    fn text_escapes_what_the_server_said() {
        let plan = PolicyPlan {
            from_ms: 0,
            to_ms: 10_000,
            replaced: vec!["p\u{1b}[31m".into()],
            added: vec![],
            windows: 0,
            enclaves: vec![],
        };
        let text = render(&plan, false);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("no enclave's enforcement would change"));
    }
}
