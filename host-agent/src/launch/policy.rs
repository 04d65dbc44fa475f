//! The host's launch allow-list: which runtimes, programs (absolute path + SHA-256) and QEMU
//! arguments this host starts. The host's administrator writes it as a TOML file; the
//! controllers never send it, so no API caller can widen it.
//!
//! ```toml
//! [process]                      # the process runtime is allowed; absent: refused
//! [[process.program]]
//! path = "/usr/bin/sleep"
//! sha256 = "…64 hex digits…"     # `sha256sum /usr/bin/sleep`
//! [[process.program]]
//! path = "/bin/sh"
//! sha256 = "…"
//! args = [["-c", "while :; do :; done"], ["-c", "{any}"]]  # absent: any arguments
//!
//! [qemu]                         # the qemu runtime is allowed; absent: refused
//! [[qemu.file]]                  # files a `{file}` value may name
//! path = "/var/lib/tribune/vm/bzImage"
//! sha256 = "…"
//! [[qemu.arg]]
//! option = "-kernel"
//! values = ["{file}"]
//! [[qemu.arg]]
//! option = "-no-reboot"          # no `values`: a flag that takes none
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest policy file read (it is a list of rules, not data).
pub const POLICY_BYTES_MAX: u64 = 1 << 20;
/// Most programs, QEMU files and QEMU options one allow-list may name (each).
pub const RULES_MAX: usize = 1024;
/// Most allowed argument lists per program.
pub const ARG_LISTS_MAX: usize = 256;
/// Longest path accepted (PATH_MAX).
pub const PATH_BYTES_MAX: usize = 4096;

/// In a program's allowed argument list: matches any one argument.
pub const ANY_ARG: &str = "{any}";
/// In an allowed QEMU value: one of the `[[qemu.file]]` paths (its digest is checked).
pub const FILE_PLACEHOLDER: &str = "{file}";

/// QEMU options the agent sets itself, or that would undo its confinement (privilege drop,
/// seccomp sandbox, the agent's QMP socket, the memory size from the plan): never allowed,
/// even when listed.
pub const QEMU_RESERVED_OPTIONS: &[&str] = &[
    "-runas",
    "-run-with",
    "-sandbox",
    "-chroot",
    "-daemonize",
    "-qmp",
    "-qmp-pretty",
    "-name",
    "-m",
    "-pidfile",
];

/// What this host launches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaunchPolicy {
    /// No allow-list configured: every launch is refused (fail safe).
    Unconfigured,
    /// The host's allow-list.
    AllowList(AllowList),
    /// Development only (`--insecure-allow-any-launch`): any well-formed spec is launched —
    /// still unprivileged and confined, but an API caller chooses the program.
    AllowAnyDev,
}

/// The rules of one allow-list file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowList {
    /// Where the rules came from, named in refusals.
    #[serde(skip)]
    pub source: PathBuf,
    /// Present: the process runtime is allowed, for these programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessRules>,
    /// Present: the qemu runtime is allowed, with these extra arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu: Option<QemuRules>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRules {
    #[serde(default, rename = "program")]
    pub programs: Vec<ProgramRule>,
}

/// One program a process enclave may run: `cmd[0]` must be exactly `path`, and the file
/// there must hash to `sha256` when the enclave is launched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramRule {
    pub path: String,
    pub sha256: Digest,
    /// The argument lists allowed (`cmd[1..]`, element by element; [`ANY_ARG`] matches any
    /// one argument). Absent: any arguments — then the program decides what they mean, so
    /// never list an interpreter (`sh`, `python`) without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Vec<String>>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuRules {
    #[serde(default, rename = "file", skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRule>,
    #[serde(default, rename = "arg", skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<QemuArgRule>,
}

/// A file (kernel, initrd, firmware, read-only image) a VM may be given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    pub path: String,
    pub sha256: Digest,
}

/// One QEMU option the plan's `args` may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuArgRule {
    /// `-kernel`, `-accel`, … (one leading dash).
    pub option: String,
    /// The values it may take, exactly, or with one [`FILE_PLACEHOLDER`]. Absent: the option
    /// is a flag that takes no value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// A SHA-256 digest, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(bytes).into())
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{self}")
    }
}

/// Why text is not a SHA-256 digest.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DigestError {
    #[error("sha256 {text:?}: expected 64 hex digits")]
    Length { text: String },
    #[error("sha256 {text:?}: {error}")]
    Hex {
        text: String,
        error: hex::FromHexError,
    },
}

impl std::str::FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return Err(DigestError::Length {
                text: s.to_string(),
            });
        }
        hex::decode_to_slice(s, &mut out).map_err(|error| DigestError::Hex {
            text: s.to_string(),
            error,
        })?;
        Ok(Digest(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why an allow-list file was not loaded. The agent does not start with a broken one.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading the launch allow-list {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the launch allow-list {path} is {bytes} bytes, at most {POLICY_BYTES_MAX}")]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("the launch allow-list {path} is not valid TOML for it: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("the launch allow-list {path}: {what}")]
    Invalid { path: PathBuf, what: RuleError },
}

/// The first rule of an allow-list that cannot be applied as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{count} programs, at most {RULES_MAX}")]
    TooManyPrograms { count: usize },
    #[error("program {path:?}: {why}")]
    ProgramPath { path: String, why: &'static str },
    #[error("program {path:?} is listed twice")]
    ProgramTwice { path: String },
    #[error("program {path:?}: {count} argument lists, at most {ARG_LISTS_MAX}")]
    TooManyArgLists { path: String, count: usize },
    #[error("program {path:?}: an argument holds a NUL byte")]
    ArgNulByte { path: String },
    #[error("qemu: more than {RULES_MAX} files or options")]
    TooManyQemuRules,
    #[error("qemu file {path:?}: {why}")]
    QemuFilePath { path: String, why: &'static str },
    #[error("qemu file {path:?}: a path may not hold ','")]
    QemuFileComma { path: String },
    #[error("qemu file {path:?} is listed twice")]
    QemuFileTwice { path: String },
    #[error("qemu option {option:?}: write it with one leading dash, e.g. -kernel")]
    QemuOptionForm { option: String },
    #[error(
        "qemu option {option}: the agent sets it itself (or it would undo the \
         enclave's confinement); it cannot be allowed"
    )]
    QemuOptionReserved { option: String },
    #[error("qemu option {option} is listed twice: give one entry all its values")]
    QemuOptionTwice { option: String },
    #[error("qemu option {option}: value {value:?} holds {FILE_PLACEHOLDER} more than once")]
    QemuValuePlaceholders { option: String, value: String },
    #[error("qemu option {option}: a value holds a NUL byte")]
    QemuValueNulByte { option: String },
}

impl LaunchPolicy {
    /// Reads and validates an allow-list file.
    pub fn load(path: &Path) -> Result<LaunchPolicy, PolicyError> {
        use std::io::Read;
        let read = |source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::open(path).map_err(read)?;
        let mut text = String::new();
        f.take(POLICY_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .map_err(read)?;
        if text.len() as u64 > POLICY_BYTES_MAX {
            return Err(PolicyError::TooLarge {
                path: path.to_path_buf(),
                bytes: text.len() as u64,
            });
        }
        AllowList::parse(&text, path).map(LaunchPolicy::AllowList)
    }

    /// One line for logs: what this policy lets through.
    pub fn summary(&self) -> String {
        match self {
            LaunchPolicy::Unconfigured => {
                "no launch allow-list: every launch is refused".to_string()
            }
            LaunchPolicy::AllowAnyDev => {
                "INSECURE: any launch spec is allowed (development only)".to_string()
            }
            LaunchPolicy::AllowList(a) => format!(
                "launch allow-list {}: process {}, qemu {}",
                a.source.display(),
                a.process
                    .as_ref()
                    .map_or("refused".to_string(), |p| format!(
                        "{} program(s)",
                        p.programs.len()
                    )),
                a.qemu.as_ref().map_or("refused".to_string(), |q| format!(
                    "{} file(s), {} option(s)",
                    q.files.len(),
                    q.args.len()
                )),
            ),
        }
    }
}

impl AllowList {
    /// Parses and validates allow-list text; `source` names it in errors and refusals.
    pub fn parse(text: &str, source: &Path) -> Result<AllowList, PolicyError> {
        let mut list: AllowList = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            path: source.to_path_buf(),
            message: e.to_string(),
        })?;
        list.source = source.to_path_buf();
        list.validate().map_err(|what| PolicyError::Invalid {
            path: source.to_path_buf(),
            what,
        })?;
        Ok(list)
    }

    /// The allow-list as TOML (for generated lists: `tribune dev`, tests).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an allow-list always encodes")
    }

    /// Adds a program, hashing the file at `path` now.
    pub fn allow_program(
        &mut self,
        path: &str,
        args: Option<Vec<Vec<String>>>,
    ) -> std::io::Result<&mut Self> {
        let sha256 = Digest::of(&std::fs::read(path)?);
        self.process
            .get_or_insert_with(ProcessRules::default)
            .programs
            .push(ProgramRule {
                path: path.to_string(),
                sha256,
                args,
            });
        Ok(self)
    }

    /// Writes the allow-list as TOML to `path` (for generated lists), atomically: a uniquely
    /// named temp file in the same directory, fsynced, renamed over `path`. An agent reading
    /// the file while another writer replaces it sees the old list or the new one, never an
    /// empty or torn one (which would refuse every launch, or worse, parse as a shorter list).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(self.to_toml().as_bytes())?;
        {
            use std::os::unix::fs::PermissionsExt;
            // Readable like a file written by hand (the temp file is made 0600).
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The allow-list that lets exactly `spec` through and nothing else: its program (hashed
    /// now) with exactly its arguments, or its QEMU options with exactly their values. For a
    /// person on the host launching one enclave by hand (`tribune agent run-enclave`), never
    /// for specs that come from a plan.
    pub fn exactly(spec: &crate::plan::LaunchSpec, source: &Path) -> std::io::Result<AllowList> {
        use crate::plan::LaunchSpec;
        let mut list = AllowList {
            source: source.to_path_buf(),
            ..AllowList::default()
        };
        match spec {
            LaunchSpec::Process { cmd, .. } => {
                if let Some((program, args)) = cmd.split_first() {
                    list.allow_program(program, Some(vec![args.to_vec()]))?;
                }
            }
            LaunchSpec::Qemu { args, .. } => {
                let mut rules = QemuRules::default();
                let mut i = 0;
                while i < args.len() {
                    let option = args[i].clone();
                    let value = args.get(i + 1).filter(|v| !v.starts_with('-')).cloned();
                    i += 1 + usize::from(value.is_some());
                    match rules.args.iter_mut().find(|r| r.option == option) {
                        Some(r) => r.values.get_or_insert_with(Vec::new).extend(value),
                        None => rules.args.push(QemuArgRule {
                            option,
                            values: value.map(|v| vec![v]),
                        }),
                    }
                }
                list.qemu = Some(rules);
            }
        }
        Ok(list)
    }

    /// Checks every rule can be applied as written; the message names the first that cannot.
    pub fn validate(&self) -> Result<(), RuleError> {
        if let Some(p) = &self.process {
            if p.programs.len() > RULES_MAX {
                return Err(RuleError::TooManyPrograms {
                    count: p.programs.len(),
                });
            }
            for (i, r) in p.programs.iter().enumerate() {
                normal_absolute(&r.path).map_err(|why| RuleError::ProgramPath {
                    path: r.path.clone(),
                    why,
                })?;
                if p.programs[..i].iter().any(|o| o.path == r.path) {
                    return Err(RuleError::ProgramTwice {
                        path: r.path.clone(),
                    });
                }
                let lists = r.args.as_deref().unwrap_or_default();
                if lists.len() > ARG_LISTS_MAX {
                    return Err(RuleError::TooManyArgLists {
                        path: r.path.clone(),
                        count: lists.len(),
                    });
                }
                if lists.iter().flatten().any(|a| a.contains('\0')) {
                    return Err(RuleError::ArgNulByte {
                        path: r.path.clone(),
                    });
                }
            }
        }
        if let Some(q) = &self.qemu {
            if q.files.len() > RULES_MAX || q.args.len() > RULES_MAX {
                return Err(RuleError::TooManyQemuRules);
            }
            for (i, f) in q.files.iter().enumerate() {
                normal_absolute(&f.path).map_err(|why| RuleError::QemuFilePath {
                    path: f.path.clone(),
                    why,
                })?;
                // QEMU splits option values at commas: a comma in a path would let the rest
                // of a value be read as further sub-options.
                if f.path.contains(',') {
                    return Err(RuleError::QemuFileComma {
                        path: f.path.clone(),
                    });
                }
                if q.files[..i].iter().any(|o| o.path == f.path) {
                    return Err(RuleError::QemuFileTwice {
                        path: f.path.clone(),
                    });
                }
            }
            for (i, a) in q.args.iter().enumerate() {
                let o = &a.option;
                let body = o.strip_prefix('-').unwrap_or("");
                if body.is_empty()
                    || body.starts_with('-')
                    || !body
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(RuleError::QemuOptionForm { option: o.clone() });
                }
                if QEMU_RESERVED_OPTIONS.contains(&o.as_str()) {
                    return Err(RuleError::QemuOptionReserved { option: o.clone() });
                }
                if q.args[..i].iter().any(|p| p.option == *o) {
                    return Err(RuleError::QemuOptionTwice { option: o.clone() });
                }
                for v in a.values.iter().flatten() {
                    if v.matches(FILE_PLACEHOLDER).count() > 1 {
                        return Err(RuleError::QemuValuePlaceholders {
                            option: o.clone(),
                            value: v.clone(),
                        });
                    }
                    if v.contains('\0') {
                        return Err(RuleError::QemuValueNulByte { option: o.clone() });
                    }
                }
            }
        }
        Ok(())
    }
}

/// An absolute path with no `.`/`..`/empty components: the form the allow-list and the
/// launch spec are compared in, byte for byte.
pub fn normal_absolute(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("not an absolute path");
    }
    if path.len() > PATH_BYTES_MAX || path.contains('\0') {
        return Err("too long or holds a NUL byte");
    }
    if path == "/" || path.ends_with('/') {
        return Err("names a directory");
    }
    if path[1..]
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("has an empty, '.' or '..' component");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(text: &str) -> Result<AllowList, PolicyError> {
        AllowList::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn a_full_list_parses_and_round_trips() {
        let text = format!(
            r#"
[process]
[[process.program]]
path = "/usr/bin/sleep"
sha256 = "{H}"
[[process.program]]
path = "/bin/sh"
sha256 = "{H}"
args = [["-c", "while :; do :; done"], ["-c", "{{any}}"]]

[qemu]
[[qemu.file]]
path = "/var/lib/tribune/vm/bzImage"
sha256 = "{H}"
[[qemu.arg]]
option = "-kernel"
values = ["{{file}}"]
[[qemu.arg]]
option = "-no-reboot"
"#
        );
        let a = parse(&text).unwrap();
        let p = a.process.as_ref().unwrap();
        assert_eq!(p.programs.len(), 2);
        assert_eq!(p.programs[0].sha256, Digest::of(b""));
        assert_eq!(p.programs[1].args.as_ref().unwrap()[1], ["-c", ANY_ARG]);
        let q = a.qemu.as_ref().unwrap();
        assert_eq!(q.args[1].values, None);
        let again = parse(&a.to_toml()).unwrap();
        assert_eq!(a, again);
    }

    #[test]
    fn the_example_in_deploy_parses() {
        let a = parse(include_str!("../../../deploy/launch-policy.toml")).unwrap();
        assert_eq!(a.process.unwrap().programs.len(), 2);
        assert_eq!(a.qemu.unwrap().args.len(), 6);
    }

    #[test]
    fn an_empty_file_allows_no_runtime() {
        let a = parse("").unwrap();
        assert_eq!(a.process, None);
        assert_eq!(a.qemu, None);
    }

    #[test]
    fn malformed_lists_are_refused_with_the_rule_named() {
        let prog = |path: &str, extra: &str| {
            format!("[[process.program]]\npath = {path:?}\nsha256 = \"{H}\"\n{extra}")
        };
        let arg = |option: &str, extra: &str| format!("[[qemu.arg]]\noption = {option:?}\n{extra}");
        let cases: Vec<(String, &str)> = vec![
            (prog("sleep", ""), "not an absolute path"),
            (prog("/usr/bin/../bin/sh", ""), "'..'"),
            (prog("/usr//bin/sh", ""), "empty"),
            (prog("/usr/bin/", ""), "directory"),
            (
                format!("{}{}", prog("/bin/sh", ""), prog("/bin/sh", "")),
                "listed twice",
            ),
            (
                "[[process.program]]\npath = \"/bin/sh\"\nsha256 = \"abc\"\n".into(),
                "64 hex",
            ),
            (
                "[[process.program]]\npath = \"/bin/sh\"\n".into(),
                "missing field `sha256`",
            ),
            (prog("/bin/sh", "bogus = 1"), "unknown field"),
            (
                "[qemu]\n[[qemu.file]]\npath = \"/a,b\"\nsha256 = \"0\"\n".into(),
                "64 hex",
            ),
            (
                format!("[[qemu.file]]\npath = \"/a,b\"\nsha256 = \"{H}\"\n"),
                "','",
            ),
            (arg("kernel", ""), "one leading dash"),
            (arg("--kernel", ""), "one leading dash"),
            (arg("-runas", ""), "cannot be allowed"),
            (arg("-sandbox", ""), "cannot be allowed"),
            (arg("-qmp", "values = [\"x\"]"), "cannot be allowed"),
            (
                format!("{}{}", arg("-accel", ""), arg("-accel", "")),
                "listed twice",
            ),
            (
                arg("-drive", "values = [\"file={file},backing={file}\"]"),
                "more than once",
            ),
            ("[bogus]\n".into(), "unknown field"),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err} (wanted {want:?})");
            assert!(err.contains("test.toml"), "{err}");
        }
    }

    #[test]
    fn exactly_lets_that_spec_through_and_nothing_else() {
        use crate::launch::{HostFiles, check};
        use crate::plan::LaunchSpec;
        let process = |cmd: &[&str]| LaunchSpec::Process {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            network: false,
            sim: None,
        };
        let qemu = |args: &[&str]| LaunchSpec::Qemu {
            memory_mib: 64,
            args: args.iter().map(|s| s.to_string()).collect(),
            msg_port: Default::default(),
            guest: Default::default(),
            network: false,
        };
        let files = HostFiles::new();
        let one = process(&["/bin/sh", "-c", "exit 0"]);
        let p = LaunchPolicy::AllowList(AllowList::exactly(&one, Path::new("cli")).unwrap());
        assert!(check(&p, &one, &files).is_ok());
        assert!(check(&p, &process(&["/bin/sh", "-c", "exit 1"]), &files).is_err());
        assert!(check(&p, &qemu(&[]), &files).is_err());
        let vm = qemu(&["-accel", "tcg", "-no-reboot", "-accel", "kvm"]);
        let list = AllowList::exactly(&vm, Path::new("cli")).unwrap();
        list.validate().unwrap();
        let p = LaunchPolicy::AllowList(list);
        assert!(check(&p, &vm, &files).is_ok());
        assert!(check(&p, &qemu(&["-monitor", "stdio"]), &files).is_err());
        let bad = AllowList::exactly(&qemu(&["-m", "4096"]), Path::new("cli")).unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("-m"));
    }

    #[test]
    fn normal_absolute_paths() {
        for ok in ["/bin/sh", "/usr/local/bin/x.y", "/a"] {
            assert_eq!(normal_absolute(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "sh",
            "./sh",
            "/",
            "/bin/",
            "/bin//sh",
            "/bin/./sh",
            "/a/../b",
        ] {
            assert!(normal_absolute(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loading_reports_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        let err = LaunchPolicy::load(&missing).unwrap_err().to_string();
        assert!(err.contains("none.toml"), "{err}");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; POLICY_BYTES_MAX as usize + 1]).unwrap();
        assert!(matches!(
            LaunchPolicy::load(&big),
            Err(PolicyError::TooLarge { .. })
        ));
        let ok = dir.path().join("ok.toml");
        std::fs::write(&ok, "[process]\n").unwrap();
        let LaunchPolicy::AllowList(a) = LaunchPolicy::load(&ok).unwrap() else {
            panic!("not an allow-list");
        };
        assert_eq!(a.source, ok);
        assert!(a.process.unwrap().programs.is_empty());
    }

    #[test]
    fn a_list_rewritten_while_it_is_read_is_never_seen_empty_or_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("launch-policy.toml");
        let mut list = AllowList::default();
        list.allow_program("/bin/sh", None).unwrap();
        list.write(&path).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (list, path, stop) = (list.clone(), path.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    list.write(&path).unwrap();
                }
            })
        };
        for _ in 0..2_000 {
            let LaunchPolicy::AllowList(read) = LaunchPolicy::load(&path).unwrap() else {
                panic!("not an allow-list");
            };
            assert_eq!(read.process.map(|p| p.programs.len()), Some(1));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o644);
        // No temp file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
