//! `tribune agent run`'s settings: flags, `TRIBUNE_AGENT_…` variables ([`super::env_vars`]),
//! a TOML file (`--config FILE`, like the controller's) and defaults, in that order of
//! precedence. Every flag is a key of the file, spelled as the flag with `_` for `-`
//! (`--sample-period-ms` → `sample_period_ms`); TLS files go in a `[tls]` table as in the
//! controller's file (or `tls_dir = "…"`). A key the agent does not know is refused, naming the
//! key and the file. `deploy/agent.toml` is an example with every key.
//!
//! Settings that go together, or not, are checked after the merge, whatever source each came
//! from: `--uplink` needs `--subnet`, `--enclave-uid` and `--enclave-gid` go together,
//! `--launch-policy` and `--insecure-allow-any-launch` exclude each other. TLS files given as
//! flags or variables replace the file's TLS settings as a whole; `--insecure[=BOOL]` overrides
//! its `insecure`.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Deserialize;
use tribune_agent::LaunchPolicy;
use tribune_agent::capacity::CapacityOverride;
use tribune_agent::launch::users::{UID_COUNT_DEFAULT, UID_FIRST_DEFAULT};
use tribune_agent::launch::{Credentials, EnclaveUsers};
use tribune_tls::TlsFiles;

use super::agent::{CgroupParent, DATA_DIR_DEFAULT, LaunchArgs, RunArgs, RuntimeArg};
use super::tls_args::TlsArgs;

const INSTANCE_DEFAULT: &str = "agent";
const SAMPLE_PERIOD_MS_DEFAULT: u64 = 100;
const UPLINK_RATE_DEFAULT: &str = "1Gbit";
const QEMU_BINARY_DEFAULT: &str = "qemu-system-x86_64";
const METRICS_LISTEN_DEFAULT: &str = "127.0.0.1:7480";

/// The agent's config file: every key optional, none unknown.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub data_dir: Option<PathBuf>,
    pub runtime: Option<RuntimeArg>,
    pub controllers: Option<Vec<String>>,
    pub host_id: Option<String>,
    pub observe_only: Option<bool>,
    pub instance: Option<String>,
    pub sample_period_ms: Option<u64>,
    pub cpuset: Option<String>,
    pub subnet: Option<String>,
    pub uplink: Option<String>,
    pub uplink_rate: Option<String>,
    pub qemu_binary: Option<PathBuf>,
    pub metrics_listen: Option<String>,
    pub cgroup_parent: Option<CgroupParent>,
    /// `[capacity]`: what this host can give enclaves, replacing what the agent measured key
    /// by key (`tribune_agent::capacity`).
    pub capacity: Option<CapacityOverride>,
    /// `[labels]`: this host's placement labels.
    pub labels: Option<BTreeMap<String, String>>,
    pub launch_policy: Option<PathBuf>,
    pub insecure_allow_any_launch: Option<bool>,
    pub enclave_uids: Option<String>,
    pub enclave_uid: Option<u32>,
    pub enclave_gid: Option<u32>,
    /// A `tribune ca` directory (its `ca.pem`, `agent-HOST.pem` and `.key`).
    pub tls_dir: Option<PathBuf>,
    /// Explicit files, as in the controller's file.
    pub tls: Option<TlsFiles>,
    pub insecure: Option<bool>,
    /// `[log]`: checked here with the rest of the file, read before the process's subscriber
    /// is installed (`logging::LogFile::from_config`).
    #[allow(dead_code)]
    pub log: Option<super::logging::LogFile>,
}

impl AgentFile {
    /// Reads and checks `path`; an unknown key, a wrong type or a TOML error is an error that
    /// names the file (and the key, line and column).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the agent config {}", path.display()))?;
        toml::from_str(&text).with_context(|| {
            format!(
                "{}: not a valid agent config (its keys are the flags of `tribune agent run`, see docs/agent.md)",
                path.display()
            )
        })
    }
}

/// Every setting of a running agent, resolved.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub data_dir: PathBuf,
    pub runtime: RuntimeArg,
    pub controllers: Vec<String>,
    pub host_id: Option<String>,
    pub tls: TlsArgs,
    pub observe_only: bool,
    pub instance: String,
    pub sample_period_ms: u64,
    pub cpuset: Option<String>,
    pub subnet: Option<String>,
    pub uplink: Option<String>,
    pub uplink_rate: String,
    pub qemu_binary: PathBuf,
    /// `None`: off.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `--peer-listen`: messages to and from other hosts' agents (`None`: off).
    pub peer_listen: Option<std::net::SocketAddr>,
    pub cgroup_parent: CgroupParent,
    pub launch: Launch,
    /// The file's `[capacity]` with `--capacity` items over it.
    pub capacity: CapacityOverride,
    /// The file's `[labels]` with `--labels` items over them.
    pub labels: BTreeMap<String, String>,
}

/// What the agent launches, and as whom: resolved and checked.
#[derive(Clone, Debug)]
pub struct Launch {
    pub policy_file: Option<PathBuf>,
    pub insecure_allow_any: bool,
    /// FIRST-LAST.
    pub enclave_uids: String,
    /// One uid and gid for every enclave instead.
    pub fixed: Option<Credentials>,
}

fn default_uid_range() -> String {
    format!(
        "{UID_FIRST_DEFAULT}-{}",
        UID_FIRST_DEFAULT + UID_COUNT_DEFAULT - 1
    )
}

impl RunArgs {
    /// The settings these flags (and variables), the `--config` file and the defaults give.
    pub fn resolve(&self) -> anyhow::Result<AgentSettings> {
        let file = match &self.config {
            Some(path) => AgentFile::load(path)?,
            None => AgentFile::default(),
        };
        // TLS files from flags or variables replace the file's; `--insecure[=BOOL]` overrides
        // the file's `insecure` (and, when on, drops its TLS files).
        let tls = match self.tls.insecure {
            _ if self.tls.files_given() => self.tls.clone(),
            Some(true) => self.tls.clone(),
            Some(false) => TlsArgs {
                insecure: Some(false),
                ..tls_from_file(&file, self.config.as_deref())?
            },
            None => tls_from_file(&file, self.config.as_deref())?,
        };
        let controllers = if self.controllers.is_empty() {
            file.controllers.clone().unwrap_or_default()
        } else {
            self.controllers.clone()
        };
        let s = AgentSettings {
            data_dir: self
                .data_dir
                .clone()
                .or(file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT)),
            runtime: self.runtime.or(file.runtime).unwrap_or_default(),
            controllers,
            host_id: self.host_id.clone().or(file.host_id.clone()),
            tls,
            observe_only: self.observe_only.or(file.observe_only).unwrap_or(false),
            instance: self
                .instance
                .clone()
                .or(file.instance.clone())
                .unwrap_or_else(|| INSTANCE_DEFAULT.into()),
            sample_period_ms: self
                .sample_period_ms
                .or(file.sample_period_ms)
                .unwrap_or(SAMPLE_PERIOD_MS_DEFAULT),
            cpuset: self.cpuset.clone().or(file.cpuset.clone()),
            subnet: self.subnet.clone().or(file.subnet.clone()),
            uplink: self.uplink.clone().or(file.uplink.clone()),
            uplink_rate: self
                .uplink_rate
                .clone()
                .or(file.uplink_rate.clone())
                .unwrap_or_else(|| UPLINK_RATE_DEFAULT.into()),
            qemu_binary: self
                .qemu_binary
                .clone()
                .or(file.qemu_binary.clone())
                .unwrap_or_else(|| PathBuf::from(QEMU_BINARY_DEFAULT)),
            metrics_listen: metrics_listen(
                self.metrics_listen
                    .as_deref()
                    .or(file.metrics_listen.as_deref())
                    .unwrap_or(METRICS_LISTEN_DEFAULT),
            )?,
            peer_listen: self.peer_listen,
            cgroup_parent: self
                .cgroup_parent
                .or(file.cgroup_parent)
                .unwrap_or_default(),
            launch: self.launch.resolve(Some(&file))?,
            capacity: file
                .capacity
                .clone()
                .unwrap_or_default()
                .parse_items(self.capacity.iter().map(String::as_str))?,
            labels: labels(file.labels.clone().unwrap_or_default(), &self.labels)?,
        };
        if s.uplink.is_some() && s.subnet.is_none() {
            bail!(
                "--uplink (uplink) needs --subnet (subnet): the uplink shapes the enclave subnet's egress"
            );
        }
        Ok(s)
    }
}

impl AgentSettings {
    /// The labels the agent says in its `Hello`: its own, [`tribune_proto::RUNTIME_LABEL`] set
    /// to the runtime it runs, and [`tribune_proto::NETWORK_LABEL`] `true` when it gives
    /// enclaves networking (`--subnet`) — for the scheduler and the migration planner.
    pub fn hello_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        let runtime = match self.runtime {
            RuntimeArg::Process => "process",
            RuntimeArg::Qemu => "qemu",
        };
        labels.insert(
            tribune_proto::RUNTIME_LABEL.to_string(),
            runtime.to_string(),
        );
        if self.subnet.is_some() {
            labels.insert(tribune_proto::NETWORK_LABEL.to_string(), "true".to_string());
        }
        labels
    }
}

/// `--labels KEY=VALUE` items over the file's `[labels]`.
fn labels(
    mut from_file: BTreeMap<String, String>,
    items: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            bail!("--labels {item:?}: expected KEY=VALUE");
        };
        from_file.insert(k.trim().to_string(), v.trim().to_string());
    }
    if from_file.contains_key(tribune_proto::RUNTIME_LABEL) {
        bail!(
            "labels: {:?} is the agent's own: it says the runtime the agent runs (--runtime), so no host can claim one it does not run",
            tribune_proto::RUNTIME_LABEL
        );
    }
    if from_file.contains_key(tribune_proto::NETWORK_LABEL) {
        bail!(
            "labels: {:?} is the agent's own: it says whether the agent gives enclaves networking (--subnet)",
            tribune_proto::NETWORK_LABEL
        );
    }
    Ok(from_file)
}

/// `--metrics-listen`: an address, or `off`.
fn metrics_listen(v: &str) -> anyhow::Result<Option<std::net::SocketAddr>> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    v.parse().map(Some).with_context(|| {
        format!("--metrics-listen (metrics_listen) {v:?}: expected HOST:PORT such as 127.0.0.1:7480, or off")
    })
}

/// The TLS settings of the file (none given: neither TLS nor `--insecure`, which the link
/// refuses with advice).
fn tls_from_file(file: &AgentFile, path: Option<&Path>) -> anyhow::Result<TlsArgs> {
    let shown = path.map_or_else(String::new, |p| p.display().to_string());
    match (&file.tls_dir, &file.tls, file.insecure) {
        (Some(_), Some(_), _) => {
            bail!("{shown}: tls_dir and [tls] both name TLS files: keep one")
        }
        (Some(_), _, Some(true)) | (_, Some(_), Some(true)) => {
            bail!("{shown}: insecure = true and TLS files exclude each other: keep one")
        }
        (dir, files, insecure) => Ok(TlsArgs {
            tls_dir: dir.clone(),
            ca: files.as_ref().map(|f| f.ca.clone()),
            cert: files.as_ref().map(|f| f.cert.clone()),
            key: files.as_ref().map(|f| f.key.clone()),
            insecure,
        }),
    }
}

impl LaunchArgs {
    /// These flags over `file`'s keys (none for `run-enclave`), checked.
    pub fn resolve(&self, file: Option<&AgentFile>) -> anyhow::Result<Launch> {
        let empty = AgentFile::default();
        let file = file.unwrap_or(&empty);
        let policy_file = self.launch_policy.clone().or(file.launch_policy.clone());
        let insecure_allow_any = self
            .insecure_allow_any_launch
            .or(file.insecure_allow_any_launch)
            .unwrap_or(false);
        if insecure_allow_any && let Some(p) = &policy_file {
            bail!(
                "--insecure-allow-any-launch and --launch-policy {} exclude each other (from flags, variables or the config file): keep the launch policy",
                p.display()
            );
        }
        let uid = self.enclave_uid.or(file.enclave_uid);
        let gid = self.enclave_gid.or(file.enclave_gid);
        let fixed = match (uid, gid) {
            (Some(uid), Some(gid)) => Some(Credentials { uid, gid }),
            (None, None) => None,
            (Some(_), None) => bail!("--enclave-uid needs --enclave-gid (enclave_gid)"),
            (None, Some(_)) => bail!("--enclave-gid needs --enclave-uid (enclave_uid)"),
        };
        Ok(Launch {
            policy_file,
            insecure_allow_any,
            enclave_uids: self
                .enclave_uids
                .clone()
                .or(file.enclave_uids.clone())
                .unwrap_or_else(default_uid_range),
            fixed,
        })
    }
}

impl Launch {
    /// The launch policy these settings name (the file is read and checked now).
    pub fn policy(&self) -> anyhow::Result<LaunchPolicy> {
        Ok(match (&self.policy_file, self.insecure_allow_any) {
            (Some(path), _) => LaunchPolicy::load(path)?,
            (None, true) => LaunchPolicy::AllowAnyDev,
            (None, false) => LaunchPolicy::Unconfigured,
        })
    }

    pub fn users(&self) -> anyhow::Result<EnclaveUsers> {
        let users = match self.fixed {
            Some(c) => EnclaveUsers::Fixed(c),
            None => {
                let bad = || {
                    anyhow::anyhow!(
                        "--enclave-uids {:?}: expected FIRST-LAST, e.g. {}",
                        self.enclave_uids,
                        default_uid_range()
                    )
                };
                let (a, b) = self.enclave_uids.split_once('-').ok_or_else(bad)?;
                let (first, last): (u32, u32) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if last < first {
                    return Err(bad());
                }
                EnclaveUsers::Range {
                    first,
                    count: (last - first).saturating_add(1),
                }
            }
        };
        users.validate().map_err(anyhow::Error::msg)?;
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::test_env;

    /// `tribune ARGS` parsed as `main` parses it, resolved as `agent run` resolves it.
    fn settings(args: &[&str]) -> anyhow::Result<AgentSettings> {
        let mut argv = vec!["tribune"];
        argv.extend_from_slice(args);
        let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
        let cli = crate::parse(&argv).map_err(|e| anyhow::anyhow!("{e}"))?;
        let crate::Command::Agent(a) = cli.command else {
            panic!("not an agent command")
        };
        match a.command.map(|c| *c) {
            None => a.run.resolve(),
            Some(super::super::agent::AgentCmd::Run(r)) => r.resolve(),
            Some(other) => panic!("not a run: {other:?}"),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }

    #[test]
    fn defaults_without_flags_variables_or_file() {
        let _env = test_env::vars(&[]);
        let s = settings(&["agent", "run"]).expect("resolves");
        assert_eq!(s.data_dir, PathBuf::from(DATA_DIR_DEFAULT));
        assert_eq!(s.runtime, RuntimeArg::Process);
        assert_eq!(s.instance, "agent");
        assert_eq!(s.sample_period_ms, 100);
        assert_eq!(s.uplink_rate, "1Gbit");
        assert!(!s.observe_only && !s.tls.files_given() && s.controllers.is_empty());
        assert_eq!(s.launch.enclave_uids, default_uid_range());
    }

    #[test]
    fn the_example_config_sets_every_key() {
        let _env = test_env::vars(&[]);
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent.toml");
        let s = settings(&["agent", "run", "--config", example]).expect("resolves");
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/tribune/agent"));
        assert_eq!(s.runtime, RuntimeArg::Qemu);
        assert_eq!(s.controllers.len(), 3);
        assert_eq!(s.host_id.as_deref(), Some("kvm-07"));
        assert_eq!(
            s.tls.files("agent-kvm-07").map(|f| f.cert),
            Some(PathBuf::from("/etc/tribune/tls/agent-kvm-07.pem"))
        );
        assert_eq!(s.subnet.as_deref(), Some("10.77.0"));
        assert_eq!(s.uplink.as_deref(), Some("eth0"));
        assert_eq!(
            s.launch.policy_file,
            Some(PathBuf::from("/etc/tribune/launch-policy.toml"))
        );
        assert_eq!(s.launch.enclave_uids, "300000-300999");
        assert_eq!(s.labels.get("zone").map(String::as_str), Some("eu-1a"));
        assert_eq!(s.capacity.tee.as_deref(), Some("sev-snp"));
        assert_eq!(s.capacity.tee_generation, Some(3));
    }

    /// `--capacity` and `--labels` items go over the file's `[capacity]` and `[labels]`, key by
    /// key; a bad item is an error naming it.
    #[test]
    fn capacity_and_label_items_go_over_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(
            dir.path(),
            "agent.toml",
            "[capacity]\ncpu_millicores = 4000\nmemory_bytes = 1024\n[labels]\nzone = \"a\"\nrack = \"1\"\n",
        );
        let _env = test_env::vars(&[]);
        let s = settings(&[
            "agent",
            "run",
            "--config",
            &file,
            "--capacity",
            "cpu_millicores=2000,gpu_percent=100",
            "--labels",
            "zone=b",
        ])
        .expect("resolves");
        assert_eq!(s.capacity.cpu_millicores, Some(2000));
        assert_eq!(s.capacity.memory_bytes, Some(1024));
        assert_eq!(s.capacity.gpu_percent, Some(100));
        assert_eq!(s.labels.get("zone").map(String::as_str), Some("b"));
        assert_eq!(s.labels.get("rack").map(String::as_str), Some("1"));
        let e = settings(&["agent", "run", "--capacity", "cores=2"]).expect_err("bad key");
        assert!(format!("{e:#}").contains("unknown key"), "{e:#}");
        // The runtime label is the agent's own, from the flags or the file alike.
        let e = settings(&["agent", "run", "--labels", "tribune.dev/runtime=qemu"])
            .expect_err("the agent's own label");
        assert!(format!("{e:#}").contains("is the agent's own"), "{e:#}");
        let claims = write(
            dir.path(),
            "claims.toml",
            "[labels]\n\"tribune.dev/runtime\" = \"qemu\"\n",
        );
        let e = settings(&["agent", "run", "--config", &claims]).expect_err("from the file");
        assert!(format!("{e:#}").contains("is the agent's own"), "{e:#}");
        let e = settings(&["agent", "run", "--labels", "zone"]).expect_err("bad label");
        assert!(format!("{e:#}").contains("KEY=VALUE"), "{e:#}");
        // So is the networking label: said exactly when the agent has --subnet.
        let e = settings(&[
            "agent",
            "run",
            "--labels",
            "tribune.dev/enclave-network=true",
        ])
        .expect_err("the agent's own label");
        assert!(format!("{e:#}").contains("is the agent's own"), "{e:#}");
        let plain = settings(&["agent", "run"])
            .expect("resolves")
            .hello_labels();
        assert!(!plain.contains_key(tribune_proto::NETWORK_LABEL));
        let net = settings(&["agent", "run", "--subnet", "10.77.0"])
            .expect("resolves")
            .hello_labels();
        assert_eq!(
            net.get(tribune_proto::NETWORK_LABEL).map(String::as_str),
            Some("true")
        );
    }

    /// Flag > variable > file > default, for a value, a list and an on/off setting, in both
    /// spellings of the verb (`agent run …` and `agent …`).
    #[test]
    fn flags_win_over_variables_which_win_over_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(
            dir.path(),
            "agent.toml",
            "instance = \"from-file\"\nsample_period_ms = 250\nobserve_only = true\ncontrollers = [\"f:1\"]\n",
        );
        {
            let _env = test_env::vars(&[]);
            let s = settings(&["agent", "run", "--config", &file]).expect("file");
            assert_eq!(
                (s.instance.as_str(), s.sample_period_ms),
                ("from-file", 250)
            );
            assert!(s.observe_only);
            assert_eq!(s.controllers, ["f:1"]);
            assert_eq!(s.data_dir, PathBuf::from(DATA_DIR_DEFAULT), "the default");
        }
        {
            let _env = test_env::vars(&[
                ("TRIBUNE_AGENT_INSTANCE", "from-env"),
                ("TRIBUNE_AGENT_OBSERVE_ONLY", "false"),
                ("TRIBUNE_AGENT_CONTROLLERS", "e:1,e:2"),
                ("TRIBUNE_AGENT_DATA_DIR", "/srv/env"),
            ]);
            for verb in [&["agent", "run"][..], &["agent"][..]] {
                let mut args = verb.to_vec();
                args.extend(["--config", &file]);
                let s = settings(&args).expect("env");
                assert_eq!(s.instance, "from-env", "{verb:?}");
                assert_eq!(
                    s.sample_period_ms, 250,
                    "not in the environment: the file's"
                );
                assert!(
                    !s.observe_only,
                    "a variable turns off what the file turned on"
                );
                assert_eq!(s.controllers, ["e:1", "e:2"]);
                assert_eq!(s.data_dir, PathBuf::from("/srv/env"));
                args.extend(["--instance", "from-flag", "--observe-only"]);
                let s = settings(&args).expect("flags");
                assert_eq!(s.instance, "from-flag", "{verb:?}");
                assert!(s.observe_only);
            }
        }
        {
            // The variable names the config file too.
            let _env = test_env::vars(&[("TRIBUNE_AGENT_CONFIG", file.as_str())]);
            assert_eq!(
                settings(&["agent"]).expect("env file").instance,
                "from-file"
            );
        }
    }

    #[test]
    fn an_unknown_key_is_refused_naming_the_key_and_the_file() {
        let _env = test_env::vars(&[]);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(
            dir.path(),
            "agent.toml",
            "instance = \"a\"\nsample_period = 5\n",
        );
        let e = settings(&["agent", "run", "--config", &file]).expect_err("unknown key");
        let e = format!("{e:#}");
        assert!(e.contains("sample_period") && e.contains(&file), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let bad_type = write(dir.path(), "t.toml", "sample_period_ms = \"fast\"\n");
        let e = settings(&["agent", "run", "--config", &bad_type]).expect_err("wrong type");
        assert!(format!("{e:#}").contains(&bad_type), "{e:#}");
    }

    #[test]
    fn combinations_are_checked_after_the_merge() {
        let _env = test_env::vars(&[]);
        let dir = tempfile::tempdir().expect("temp dir");
        let subnet = write(
            dir.path(),
            "s.toml",
            "subnet = \"10.77.0\"\nenclave_gid = 5000\n",
        );
        // The file's subnet and gid complete the flags' uplink and uid.
        let s = settings(&[
            "agent",
            "--config",
            &subnet,
            "--uplink",
            "eth1",
            "--enclave-uid",
            "5000",
        ])
        .expect("complete together");
        assert_eq!(s.uplink.as_deref(), Some("eth1"));
        assert_eq!(
            s.launch.fixed,
            Some(Credentials {
                uid: 5000,
                gid: 5000
            })
        );
        let e = settings(&["agent", "--uplink", "eth1"]).expect_err("no subnet");
        assert!(e.to_string().contains("--subnet"), "{e}");
        let e = settings(&["agent", "--enclave-uid", "5000"]).expect_err("no gid");
        assert!(e.to_string().contains("--enclave-gid"), "{e}");
        let policy = write(dir.path(), "p.toml", "launch_policy = \"/etc/l.toml\"\n");
        let e = settings(&["agent", "--config", &policy, "--insecure-allow-any-launch"])
            .expect_err("both");
        assert!(e.to_string().contains("exclude each other"), "{e}");
    }

    #[test]
    fn tls_flags_replace_the_files_tls_as_a_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write(
            dir.path(),
            "a.toml",
            "[tls]\nca = \"/f/ca.pem\"\ncert = \"/f/a.pem\"\nkey = \"/f/a.key\"\n",
        );
        {
            let _env = test_env::vars(&[]);
            let s = settings(&["agent", "--config", &file]).expect("file");
            assert_eq!(s.tls.ca, Some(PathBuf::from("/f/ca.pem")));
            let s = settings(&["agent", "--config", &file, "--insecure"]).expect("flag");
            assert!(s.tls.is_insecure() && s.tls.ca.is_none());
        }
        {
            let _env = test_env::vars(&[("TRIBUNE_AGENT_TLS_DIR", "/srv/ca")]);
            let s = settings(&["agent", "--config", &file]).expect("env");
            assert_eq!(s.tls.tls_dir, Some(PathBuf::from("/srv/ca")));
            assert!(s.tls.ca.is_none());
        }
        let _env = test_env::vars(&[]);
        let both = write(
            dir.path(),
            "b.toml",
            "tls_dir = \"/d\"\n[tls]\nca = \"/f/ca.pem\"\ncert = \"/f/a.pem\"\nkey = \"/f/a.key\"\n",
        );
        let e = settings(&["agent", "--config", &both]).expect_err("both");
        assert!(e.to_string().contains("keep one"), "{e}");
    }
}
