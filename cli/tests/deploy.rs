//! `deploy/` is checked by the tools that consume it, so an example that would not load is a
//! test failure, not an operator's surprise:
//!
//! - `systemd-analyze verify` on the systemd units (ExecStart pointed at the built binary);
//! - `kubernetes-validate --strict` (PyPI, OpenAPI schemas of Kubernetes [`K8S_VERSION`]) on
//!   every manifest;
//! - `promtool check rules` on the alert rules and `promtool check config` on the scrape
//!   config;
//! - every metric the rules name is one a controller or an agent exports, and every
//!   `TRIBUNE_…` variable the units and manifests set is one `tribune` reads.
//!
//! A missing tool prints `skipped: …` (scripts/test installs all three).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tribune");
/// The Kubernetes version whose schemas the manifests are validated against.
const K8S_VERSION: &str = "1.33.0";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no .{ext} in {}", dir.display());
    v
}

/// Runs `tool args`; `None` (after `skipped:`) when the tool is not installed.
fn run(tool: &str, args: &[&str], dir: Option<&Path>, what: &str) -> Option<String> {
    let mut cmd = Command::new(tool);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tribune_testkit::say_skipped(&format!(
                "{what}: {tool} is not installed (scripts/test installs it)"
            ));
            return None;
        }
        Err(e) => panic!("{tool}: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what}: {tool} {args:?} failed:\n{text}"
    );
    Some(text)
}

#[test]
fn systemd_units_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut units = Vec::new();
    for unit in files(&deploy().join("systemd"), "service") {
        let text = std::fs::read_to_string(&unit).expect("read unit");
        assert!(
            text.contains("ExecStart=/usr/local/bin/tribune "),
            "{}",
            unit.display()
        );
        // verify checks that ExecStart's binary exists: point it at the one just built.
        let name = unit.file_name().expect("name");
        std::fs::write(
            dir.path().join(name),
            text.replace("/usr/local/bin/tribune", BIN),
        )
        .expect("write unit");
        units.push(format!("./{}", name.to_string_lossy()));
    }
    let mut args = vec!["verify"];
    args.extend(units.iter().map(String::as_str));
    if let Some(out) = run("systemd-analyze", &args, Some(dir.path()), "systemd units") {
        assert!(
            out.trim().is_empty(),
            "systemd-analyze verify warned:\n{out}"
        );
    }
}

#[test]
fn kubernetes_manifests_validate_against_the_openapi_schemas() {
    let manifests = files(&deploy().join("kubernetes"), "yaml");
    let mut args = vec!["--strict", "-k", K8S_VERSION];
    let paths: Vec<String> = manifests.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    if let Some(out) = run("kubernetes-validate", &args, None, "Kubernetes manifests") {
        assert!(!out.contains("WARN") && !out.contains("ERROR"), "{out}");
        // Every object was checked (a file that parses to nothing would pass silently).
        assert!(out.matches(" passed for resource ").count() >= 13, "{out}");
    }
}

#[test]
fn prometheus_rules_and_scrape_config_load() {
    let dir = deploy().join("prometheus");
    if run(
        "promtool",
        &["check", "rules", "tribune-rules.yml"],
        Some(&dir),
        "alert rules",
    )
    .is_some()
    {
        run(
            "promtool",
            &["check", "config", "prometheus.yml"],
            Some(&dir),
            "scrape config",
        );
    }
}

/// Every `tribune_…` series in the alert rules is one Tribune exports (a renamed metric would
/// otherwise leave an alert that can never fire).
#[test]
fn the_rules_name_only_exported_metrics() {
    use tribune_telemetry::Exposition;
    let mut exported = BTreeSet::new();
    // A family with labels shows only once a series exists.
    let _ = tribune_controller::metrics::get()
        .api_requests
        .get_or_create(&tribune_controller::metrics::RequestLabels {
            route: "/healthz".into(),
            method: "GET",
            code: 200,
        });
    let text = tribune_controller::metrics::get().encode(Exposition::Classic)
        + &tribune_agent::metrics::get().encode(Exposition::Classic);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            exported.insert(name.to_string());
            if kind == "histogram" {
                for s in ["_bucket", "_sum", "_count"] {
                    exported.insert(format!("{name}{s}"));
                }
            }
        }
    }
    let rules =
        std::fs::read_to_string(deploy().join("prometheus/tribune-rules.yml")).expect("read rules");
    let mut named = BTreeSet::new();
    for (i, _) in rules.match_indices("tribune_") {
        let name: String = rules[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        named.insert(name);
    }
    assert!(named.len() >= 10, "{named:?}");
    let unknown: Vec<&String> = named.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the rules name {unknown:?}; exported: {exported:?}"
    );
}

/// Every `TRIBUNE_…` variable the units and manifests set is one `tribune` reads: shown in the
/// `--help` of the mode that runs there.
#[test]
fn the_units_and_manifests_set_only_variables_tribune_reads() {
    let mut known = BTreeSet::new();
    for mode in [&["controller", "--help"][..], &["agent", "run", "--help"]] {
        let out = Command::new(BIN)
            .args(mode)
            .output()
            .expect("tribune --help");
        let help = String::from_utf8_lossy(&out.stdout);
        for (i, _) in help.match_indices("[env: ") {
            let var: String = help[i + 6..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            known.insert(var);
        }
    }
    assert!(known.contains("TRIBUNE_LOG") && known.contains("TRIBUNE_AGENT_DATA_DIR"));
    let mut sources = files(&deploy().join("kubernetes"), "yaml");
    sources.extend(files(&deploy().join("systemd"), "service"));
    for f in sources {
        let text = std::fs::read_to_string(&f).expect("read");
        for (i, _) in text.match_indices("TRIBUNE_") {
            let var: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            // `TRIBUNE_AGENT_*` in prose.
            if var.ends_with('_') {
                continue;
            }
            assert!(
                known.contains(&var),
                "{} sets {var}, which tribune does not read",
                f.display()
            );
        }
    }
}
