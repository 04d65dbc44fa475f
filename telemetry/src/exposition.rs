//! A registry as Prometheus reads it, in either of its two text formats.
//!
//! `prometheus-client` writes OpenMetrics 1.0 (what Prometheus asks for first in `Accept`).
//! Older scrapers and `promtool check metrics` read the classic text format 0.0.4, which
//! differs in four points: a counter's family is named with its `_total` suffix, there are no
//! `# UNIT` lines and no `# EOF`, and no `_created` series. [`classic`] rewrites the crate's
//! output line by line under exactly those rules; the samples are the crate's, untouched.

use axum::http::HeaderMap;
use prometheus_client::registry::Registry;

/// The two text formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Classic,
}

impl Exposition {
    /// OpenMetrics when the scraper's `Accept` names it (Prometheus does), else the classic format.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let wants_om = headers
            .get_all(axum::http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        if wants_om {
            Self::OpenMetrics
        } else {
            Self::Classic
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The registry's metrics in `format`.
pub fn encode(registry: &Registry, format: Exposition) -> String {
    let mut om = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail; the crate returns fmt::Error only from the writer.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut om, registry) {
        tracing::error!(error = %e, "encoding the metrics registry");
    }
    match format {
        Exposition::OpenMetrics => om,
        Exposition::Classic => classic(&om),
    }
}

/// OpenMetrics text (as `prometheus-client` writes it) in the classic 0.0.4 format.
pub fn classic(om: &str) -> String {
    // Families typed `counter`: their HELP line comes before their TYPE line.
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    let mut counter: Option<&str> = None;
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# TYPE ")
            .map(|r| ("TYPE", r))
            .or_else(|| line.strip_prefix("# HELP ").map(|r| ("HELP", r)));
        if let Some((what, rest)) = meta {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let is_counter = counters.contains(name);
            let text = match (what, text) {
                ("TYPE", "counter" | "gauge" | "histogram" | "summary") => text,
                // info, stateset, gaugehistogram, unknown: no classic type.
                ("TYPE", _) => "untyped",
                _ => text,
            };
            if what == "TYPE" {
                counter = is_counter.then_some(name);
            }
            let suffix = if is_counter { "_total" } else { "" };
            out.push_str(&format!("# {what} {name}{suffix} {text}\n"));
            continue;
        }
        if let Some(c) = counter
            && line
                .strip_prefix(c)
                .is_some_and(|rest| rest.starts_with("_created"))
        {
            continue;
        }
        // An exemplar (` # {…} v`) has no classic form.
        let sample = line.split_once(" # ").map_or(line, |(s, _)| s);
        out.push_str(sample);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Unit;

    fn registry() -> Registry {
        let mut r = Registry::with_prefix("t");
        let c = Counter::<u64>::default();
        c.inc_by(3);
        r.register("reports_verified", "Reports verified", c);
        let g = Gauge::<i64>::default();
        g.set(7);
        r.register("term", "Raft term", g);
        let h = Histogram::new([0.001, 0.01]);
        h.observe(0.005);
        r.register_with_unit("fsync_duration", "fsync time", Unit::Seconds, h);
        r
    }

    #[test]
    fn openmetrics_is_the_crates_output() {
        let om = encode(&registry(), Exposition::OpenMetrics);
        assert!(om.contains("# TYPE t_reports_verified counter\n"), "{om}");
        assert!(om.contains("t_reports_verified_total 3\n"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

    #[test]
    fn classic_names_counters_with_total_and_drops_openmetrics_only_lines() {
        let text = encode(&registry(), Exposition::Classic);
        assert!(
            text.contains("# HELP t_reports_verified_total Reports verified.\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE t_reports_verified_total counter\n"),
            "{text}"
        );
        assert!(text.contains("t_reports_verified_total 3\n"), "{text}");
        assert!(text.contains("# TYPE t_term gauge\nt_term 7\n"), "{text}");
        assert!(
            text.contains("# TYPE t_fsync_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("t_fsync_duration_seconds_bucket{le=\"0.01\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_fsync_duration_seconds_count 1\n"),
            "{text}"
        );
        for gone in ["# EOF", "# UNIT", "_created"] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
    }

    #[test]
    fn the_accept_header_picks_the_format() {
        let mut h = HeaderMap::new();
        assert_eq!(Exposition::negotiate(&h), Exposition::Classic);
        h.insert(
            axum::http::header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
                .parse()
                .expect("header"),
        );
        assert_eq!(Exposition::negotiate(&h), Exposition::OpenMetrics);
    }
}
