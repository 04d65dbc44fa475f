//! The launch check: a spec from a plan against the host's allow-list. Pure, given the
//! digests of the files it names: reading and hashing them is the caller's edge
//! ([`FileDigests`]; the agent's is [`super::HostFiles`]), so every rule is tested here with a
//! table of fake files.
//!
//! The only way to get a [`CheckedLaunch`] — the one thing the runtimes launch — is [`check`].

use std::path::{Path, PathBuf};

use super::policy::{
    ANY_ARG, AllowList, Digest, FILE_PLACEHOLDER, LaunchPolicy, ProgramRule, QemuRules,
    normal_absolute,
};
use crate::plan::LaunchSpec;

/// Most arguments of a command line (process `cmd` or QEMU `args`).
pub const ARGV_ARGS_MAX: usize = 1024;
/// Most bytes of a command line, all arguments together (the kernel's limit on one argument).
pub const ARGV_BYTES_MAX: usize = 128 * 1024;

/// What the check learns about a file it was asked to trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFacts {
    pub sha256: Digest,
    /// The file that was hashed (symlinks resolved): the one to execute.
    pub resolved: PathBuf,
    /// Group or others may write it.
    pub writable_by_others: bool,
}

/// Hashes the files an allow-list names (the I/O edge of the check).
pub trait FileDigests {
    /// The facts of the file at `path` (following symlinks), or why it cannot be read.
    fn digest(&self, path: &str) -> Result<FileFacts, FileError>;
}

/// Why a file named by the allow-list could not be hashed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Resolving, opening or reading it failed.
    #[error("{message}")]
    Io {
        kind: std::io::ErrorKind,
        message: String,
    },
    #[error("not a regular file")]
    NotAFile,
    #[error("{len} bytes, more than the {max} the agent hashes")]
    TooLarge { len: u64, max: u64 },
}

impl From<std::io::Error> for FileError {
    fn from(e: std::io::Error) -> FileError {
        FileError::Io {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// A launch spec the host's allow-list lets through, with what the check resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedLaunch {
    spec: LaunchSpec,
    program: Option<PathBuf>,
}

impl CheckedLaunch {
    pub fn spec(&self) -> &LaunchSpec {
        &self.spec
    }

    /// For a process enclave: the file to execute — the one whose digest was checked
    /// (symlinks resolved; `cmd[0]` stays its `argv[0]`). `None` under
    /// [`LaunchPolicy::AllowAnyDev`], where `cmd[0]` is executed as given.
    pub fn program(&self) -> Option<&Path> {
        self.program.as_deref()
    }
}

/// Why a launch was refused, and by which allow-list.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("launch refused: {reason}{}", policy.as_ref().map(|p| format!(" (launch allow-list {})", p.display())).unwrap_or_default())]
pub struct LaunchRefused {
    pub reason: Refusal,
    /// The allow-list file that refused it; `None` when none is configured.
    pub policy: Option<PathBuf>,
}

/// The rule a spec broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "no launch allow-list is configured on this host, so every launch is refused: write one \
         (docs/agent.md) and start the agent with --launch-policy FILE (or TRIBUNE_LAUNCH_POLICY)"
    )]
    NoPolicy,
    #[error("the {runtime} runtime is not allowed (the allow-list has no [{runtime}] section)")]
    RuntimeNotAllowed { runtime: &'static str },
    #[error("empty command")]
    EmptyCommand,
    #[error("{what}: {len}, at most {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("an argument holds a NUL byte")]
    NulByte,
    #[error(
        "program {program:?}: {why}; the allow-list names files, so give the file's absolute path (e.g. /usr/bin/…)"
    )]
    RelativeProgram { program: String, why: &'static str },
    #[error("program {program:?} is not in the allow-list")]
    ProgramNotListed { program: String },
    #[error("cannot check {path:?}: {error}")]
    Unreadable { path: String, error: FileError },
    #[error(
        "{path:?} ({}) has SHA-256 {actual}, the allow-list says {expected}: the file changed since it was allowed",
        resolved.display()
    )]
    DigestMismatch {
        path: String,
        resolved: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "{path:?} is writable by group or others: it could be swapped between the check and the launch"
    )]
    WritableByOthers { path: String },
    #[error(
        "arguments {} of {program:?} match none of the argument lists allowed for it",
        shorten(args)
    )]
    ArgsNotAllowed { program: String, args: Vec<String> },
    #[error("QEMU argument {index} {arg:?} is not an allowed option")]
    QemuOptionNotAllowed { index: usize, arg: String },
    #[error("QEMU option {option} needs a value")]
    QemuMissingValue { option: String },
    #[error("QEMU option {option} {value:?}: not an allowed value")]
    QemuValueNotAllowed { option: String, value: String },
    #[error("QEMU option {option}: file {path:?} is not in the allow-list")]
    QemuFileNotListed { option: String, path: String },
}

/// The first few hundred bytes of an argument list, for messages.
fn shorten(args: &[String]) -> String {
    let s = format!("{args:?}");
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Checks `spec` against the host's `policy`; `files` hashes what the policy names.
// A refusal is rare (once per launch at most) and carries what the operator needs to act on.
#[allow(clippy::result_large_err)]
pub fn check(
    policy: &LaunchPolicy,
    spec: &LaunchSpec,
    files: &dyn FileDigests,
) -> Result<CheckedLaunch, LaunchRefused> {
    let refuse = |reason, policy: Option<&Path>| LaunchRefused {
        reason,
        policy: policy.map(Path::to_path_buf),
    };
    // Shape first: no rule ever lets an unbounded or malformed command line through.
    shape(spec).map_err(|r| refuse(r, None))?;
    let list = match policy {
        LaunchPolicy::Unconfigured => return Err(refuse(Refusal::NoPolicy, None)),
        LaunchPolicy::AllowAnyDev => {
            return Ok(CheckedLaunch {
                spec: spec.clone(),
                program: None,
            });
        }
        LaunchPolicy::AllowList(list) => list,
    };
    let program = match spec {
        LaunchSpec::Process { cmd, .. } => Some(check_process(list, cmd, files)),
        LaunchSpec::Qemu { args, .. } => {
            let Some(rules) = &list.qemu else {
                return Err(refuse(
                    Refusal::RuntimeNotAllowed { runtime: "qemu" },
                    Some(&list.source),
                ));
            };
            check_qemu(rules, args, files).map_err(|r| refuse(r, Some(&list.source)))?;
            None
        }
    }
    .transpose()
    .map_err(|r| refuse(r, Some(&list.source)))?;
    Ok(CheckedLaunch {
        spec: spec.clone(),
        program,
    })
}

/// Bounds and well-formedness, whatever the policy.
fn shape(spec: &LaunchSpec) -> Result<(), Refusal> {
    let argv = match spec {
        LaunchSpec::Process { cmd, .. } => {
            if cmd.is_empty() {
                return Err(Refusal::EmptyCommand);
            }
            cmd
        }
        LaunchSpec::Qemu { args, .. } => args,
    };
    if argv.len() > ARGV_ARGS_MAX {
        return Err(Refusal::TooLarge {
            what: "arguments",
            len: argv.len(),
            max: ARGV_ARGS_MAX,
        });
    }
    let bytes: usize = argv.iter().map(|a| a.len() + 1).sum();
    if bytes > ARGV_BYTES_MAX {
        return Err(Refusal::TooLarge {
            what: "command line bytes",
            len: bytes,
            max: ARGV_BYTES_MAX,
        });
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(Refusal::NulByte);
    }
    Ok(())
}

fn check_process(
    list: &AllowList,
    cmd: &[String],
    files: &dyn FileDigests,
) -> Result<PathBuf, Refusal> {
    let Some(rules) = &list.process else {
        return Err(Refusal::RuntimeNotAllowed { runtime: "process" });
    };
    let program = &cmd[0];
    normal_absolute(program).map_err(|why| Refusal::RelativeProgram {
        program: program.clone(),
        why,
    })?;
    let rule: &ProgramRule = rules
        .programs
        .iter()
        .find(|r| r.path == *program)
        .ok_or_else(|| Refusal::ProgramNotListed {
            program: program.clone(),
        })?;
    if let Some(lists) = &rule.args
        && !lists.iter().any(|l| args_match(l, &cmd[1..]))
    {
        return Err(Refusal::ArgsNotAllowed {
            program: program.clone(),
            args: cmd[1..].to_vec(),
        });
    }
    let facts = trusted_file(files, &rule.path, rule.sha256)?;
    Ok(facts.resolved)
}

fn args_match(allowed: &[String], args: &[String]) -> bool {
    allowed.len() == args.len()
        && allowed
            .iter()
            .zip(args)
            .all(|(want, got)| want == ANY_ARG || want == got)
}

/// The facts of a listed file, once its digest is the listed one and only its owner may
/// write it.
fn trusted_file(
    files: &dyn FileDigests,
    path: &str,
    expected: Digest,
) -> Result<FileFacts, Refusal> {
    let facts = files.digest(path).map_err(|error| Refusal::Unreadable {
        path: path.to_string(),
        error,
    })?;
    if facts.sha256 != expected {
        return Err(Refusal::DigestMismatch {
            path: path.to_string(),
            resolved: facts.resolved,
            expected,
            actual: facts.sha256,
        });
    }
    if facts.writable_by_others {
        return Err(Refusal::WritableByOthers {
            path: path.to_string(),
        });
    }
    Ok(facts)
}

/// QEMU arguments, read as QEMU reads them: an option, then its value if it takes one.
/// Anything in option position that is not a listed option — a positional disk image, a
/// `--long` spelling, an unlisted `-monitor` — is refused.
fn check_qemu(rules: &QemuRules, args: &[String], files: &dyn FileDigests) -> Result<(), Refusal> {
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let Some(rule) = rules.args.iter().find(|r| r.option == *arg) else {
            return Err(Refusal::QemuOptionNotAllowed {
                index: i,
                arg: arg.clone(),
            });
        };
        i += 1;
        let Some(values) = &rule.values else {
            continue;
        };
        let Some(value) = args.get(i) else {
            return Err(Refusal::QemuMissingValue {
                option: arg.clone(),
            });
        };
        i += 1;
        check_qemu_value(rules, arg, value, values, files)?;
    }
    Ok(())
}

fn check_qemu_value(
    rules: &QemuRules,
    option: &str,
    value: &str,
    allowed: &[String],
    files: &dyn FileDigests,
) -> Result<(), Refusal> {
    if allowed.iter().any(|v| v == value) {
        return Ok(());
    }
    let mut unlisted = None;
    for template in allowed {
        let Some((prefix, suffix)) = template.split_once(FILE_PLACEHOLDER) else {
            continue;
        };
        let Some(path) = value
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
        else {
            continue;
        };
        match rules.files.iter().find(|f| f.path == path) {
            Some(f) => {
                trusted_file(files, &f.path, f.sha256)?;
                return Ok(());
            }
            None => unlisted = Some(path.to_string()),
        }
    }
    Err(match unlisted {
        Some(path) => Refusal::QemuFileNotListed {
            option: option.to_string(),
            path,
        },
        None => Refusal::QemuValueNotAllowed {
            option: option.to_string(),
            value: value.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::launch::policy::{FileRule, ProcessRules, QemuArgRule};

    /// Fake files: path → (content digest, resolved path, writable by others).
    struct Files(BTreeMap<&'static str, FileFacts>);

    impl FileDigests for Files {
        fn digest(&self, path: &str) -> Result<FileFacts, FileError> {
            self.0.get(path).cloned().ok_or_else(not_found)
        }
    }

    fn not_found() -> FileError {
        FileError::Io {
            kind: std::io::ErrorKind::NotFound,
            message: "No such file or directory (os error 2)".into(),
        }
    }

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    fn files() -> Files {
        let f = |content: &str, resolved: &str, w: bool| FileFacts {
            sha256: d(content),
            resolved: resolved.into(),
            writable_by_others: w,
        };
        Files(BTreeMap::from([
            ("/usr/bin/sleep", f("sleep", "/usr/bin/sleep", false)),
            ("/bin/sh", f("dash", "/usr/bin/dash", false)),
            ("/usr/bin/id", f("id, replaced", "/usr/bin/id", false)),
            ("/opt/app/run", f("app", "/opt/app/run", true)),
            ("/vm/bzImage", f("kernel", "/vm/bzImage", false)),
            ("/vm/disk.img", f("disk", "/vm/disk.img", false)),
        ]))
    }

    fn program(path: &str, content: &str, args: Option<Vec<Vec<&str>>>) -> ProgramRule {
        ProgramRule {
            path: path.into(),
            sha256: d(content),
            args: args.map(|l| {
                l.into_iter()
                    .map(|a| a.into_iter().map(String::from).collect())
                    .collect()
            }),
        }
    }

    fn policy() -> LaunchPolicy {
        LaunchPolicy::AllowList(AllowList {
            source: "/etc/tribune/launch.toml".into(),
            process: Some(ProcessRules {
                programs: vec![
                    program("/usr/bin/sleep", "sleep", None),
                    program(
                        "/bin/sh",
                        "dash",
                        Some(vec![
                            vec!["-c", "while :; do :; done"],
                            vec!["-c", "sleep {any}"],
                        ]),
                    ),
                    program("/usr/bin/id", "id", None),
                    program("/opt/app/run", "app", None),
                    program("/usr/bin/absent", "x", None),
                ],
            }),
            qemu: Some(QemuRules {
                files: vec![
                    FileRule {
                        path: "/vm/bzImage".into(),
                        sha256: d("kernel"),
                    },
                    FileRule {
                        path: "/vm/disk.img".into(),
                        sha256: d("another disk"),
                    },
                ],
                args: vec![
                    QemuArgRule {
                        option: "-kernel".into(),
                        values: Some(vec![FILE_PLACEHOLDER.into()]),
                    },
                    QemuArgRule {
                        option: "-drive".into(),
                        values: Some(vec!["if=virtio,readonly=on,file={file}".into()]),
                    },
                    QemuArgRule {
                        option: "-accel".into(),
                        values: Some(vec!["kvm".into(), "tcg".into()]),
                    },
                    QemuArgRule {
                        option: "-no-reboot".into(),
                        values: None,
                    },
                ],
            }),
        })
    }

    fn process(cmd: &[&str]) -> LaunchSpec {
        LaunchSpec::Process {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            network: false,
            sim: None,
        }
    }

    fn qemu(args: &[&str]) -> LaunchSpec {
        LaunchSpec::Qemu {
            memory_mib: 64,
            args: args.iter().map(|s| s.to_string()).collect(),
            msg_port: Default::default(),
            guest: Default::default(),
            network: false,
        }
    }

    #[test]
    fn allowed_specs_pass_and_name_the_file_to_execute() {
        let cases: Vec<(LaunchSpec, Option<&str>)> = vec![
            (process(&["/usr/bin/sleep", "600"]), Some("/usr/bin/sleep")),
            (process(&["/usr/bin/sleep"]), Some("/usr/bin/sleep")),
            (
                process(&["/bin/sh", "-c", "while :; do :; done"]),
                Some("/usr/bin/dash"),
            ),
            // `{any}` is a whole argument, never part of one: here it is taken literally.
            (
                process(&["/bin/sh", "-c", "sleep {any}"]),
                Some("/usr/bin/dash"),
            ),
            (qemu(&[]), None),
            (qemu(&["-kernel", "/vm/bzImage", "-accel", "tcg"]), None),
            (qemu(&["-no-reboot", "-accel", "kvm", "-no-reboot"]), None),
        ];
        for (spec, exe) in cases {
            let c = check(&policy(), &spec, &files()).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
            assert_eq!(c.spec(), &spec);
            assert_eq!(c.program(), exe.map(Path::new), "{spec:?}");
        }
    }

    #[test]
    fn every_rule_refuses_what_it_should() {
        use Refusal::*;
        let long = "x".repeat(ARGV_BYTES_MAX);
        let many: Vec<&str> = std::iter::once("/usr/bin/sleep")
            .chain(std::iter::repeat_n("1", ARGV_ARGS_MAX))
            .collect();
        let cases: Vec<(LaunchSpec, Refusal)> = vec![
            (process(&[]), EmptyCommand),
            (
                process(&["sleep", "1"]),
                RelativeProgram {
                    program: "sleep".into(),
                    why: "not an absolute path",
                },
            ),
            (
                process(&["/usr/bin/../bin/sleep", "1"]),
                RelativeProgram {
                    program: "/usr/bin/../bin/sleep".into(),
                    why: "has an empty, '.' or '..' component",
                },
            ),
            (
                process(&["/usr/bin/python3", "-c", "import os"]),
                ProgramNotListed {
                    program: "/usr/bin/python3".into(),
                },
            ),
            (
                // The same file by another path is not the listed path.
                process(&["/usr/bin/dash", "-c", "while :; do :; done"]),
                ProgramNotListed {
                    program: "/usr/bin/dash".into(),
                },
            ),
            (
                process(&["/bin/sh", "-c", "id > /tmp/x"]),
                ArgsNotAllowed {
                    program: "/bin/sh".into(),
                    args: vec!["-c".into(), "id > /tmp/x".into()],
                },
            ),
            (
                process(&["/bin/sh", "-c", "sleep 1"]),
                ArgsNotAllowed {
                    program: "/bin/sh".into(),
                    args: vec!["-c".into(), "sleep 1".into()],
                },
            ),
            (
                process(&["/bin/sh"]),
                ArgsNotAllowed {
                    program: "/bin/sh".into(),
                    args: vec![],
                },
            ),
            (
                process(&["/usr/bin/id"]),
                DigestMismatch {
                    path: "/usr/bin/id".into(),
                    resolved: "/usr/bin/id".into(),
                    expected: d("id"),
                    actual: d("id, replaced"),
                },
            ),
            (
                process(&["/opt/app/run"]),
                WritableByOthers {
                    path: "/opt/app/run".into(),
                },
            ),
            (
                process(&["/usr/bin/absent"]),
                Unreadable {
                    path: "/usr/bin/absent".into(),
                    error: not_found(),
                },
            ),
            (process(&["/usr/bin/sleep", "a\0b"]), NulByte),
            (
                process(&["/usr/bin/sleep", &long]),
                TooLarge {
                    what: "command line bytes",
                    len: "/usr/bin/sleep".len() + 1 + long.len() + 1,
                    max: ARGV_BYTES_MAX,
                },
            ),
            (
                process(&many),
                TooLarge {
                    what: "arguments",
                    len: ARGV_ARGS_MAX + 1,
                    max: ARGV_ARGS_MAX,
                },
            ),
            (
                qemu(&["-monitor", "stdio"]),
                QemuOptionNotAllowed {
                    index: 0,
                    arg: "-monitor".into(),
                },
            ),
            (
                qemu(&["-accel", "tcg", "-runas", "0:0"]),
                QemuOptionNotAllowed {
                    index: 2,
                    arg: "-runas".into(),
                },
            ),
            (
                qemu(&["--accel", "tcg"]),
                QemuOptionNotAllowed {
                    index: 0,
                    arg: "--accel".into(),
                },
            ),
            (
                // A positional argument is a disk image to QEMU.
                qemu(&["/etc/shadow"]),
                QemuOptionNotAllowed {
                    index: 0,
                    arg: "/etc/shadow".into(),
                },
            ),
            (
                qemu(&["-netdev", "tap,id=n0,script=/tmp/evil.sh"]),
                QemuOptionNotAllowed {
                    index: 0,
                    arg: "-netdev".into(),
                },
            ),
            (
                qemu(&["-accel"]),
                QemuMissingValue {
                    option: "-accel".into(),
                },
            ),
            (
                qemu(&["-accel", "xen"]),
                QemuValueNotAllowed {
                    option: "-accel".into(),
                    value: "xen".into(),
                },
            ),
            (
                qemu(&["-kernel", "/tmp/bzImage"]),
                QemuFileNotListed {
                    option: "-kernel".into(),
                    path: "/tmp/bzImage".into(),
                },
            ),
            (
                qemu(&["-drive", "if=virtio,readonly=on,file=/vm/disk.img"]),
                DigestMismatch {
                    path: "/vm/disk.img".into(),
                    resolved: "/vm/disk.img".into(),
                    expected: d("another disk"),
                    actual: d("disk"),
                },
            ),
            (
                qemu(&["-drive", "if=virtio,readonly=off,file=/vm/bzImage"]),
                QemuValueNotAllowed {
                    option: "-drive".into(),
                    value: "if=virtio,readonly=off,file=/vm/bzImage".into(),
                },
            ),
            (
                // The listed file plus a smuggled sub-option is not the listed file.
                qemu(&[
                    "-drive",
                    "if=virtio,readonly=on,file=/vm/bzImage,readonly=off",
                ]),
                QemuFileNotListed {
                    option: "-drive".into(),
                    path: "/vm/bzImage,readonly=off".into(),
                },
            ),
        ];
        for (spec, want) in cases {
            let err = check(&policy(), &spec, &files()).unwrap_err();
            assert_eq!(err.reason, want, "{spec:?}");
            let shape_only = matches!(want, EmptyCommand | NulByte | TooLarge { .. });
            assert_eq!(
                err.policy.is_some(),
                !shape_only,
                "{spec:?}: which allow-list refused it"
            );
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn a_runtime_without_a_section_is_refused() {
        let LaunchPolicy::AllowList(mut list) = policy() else {
            unreachable!()
        };
        list.qemu = None;
        let only_process = LaunchPolicy::AllowList(list.clone());
        let err = check(&only_process, &qemu(&[]), &files()).unwrap_err();
        assert_eq!(err.reason, Refusal::RuntimeNotAllowed { runtime: "qemu" });
        assert!(
            err.to_string().contains("/etc/tribune/launch.toml"),
            "{err}"
        );
        list.qemu = policy_qemu();
        list.process = None;
        let only_qemu = LaunchPolicy::AllowList(list);
        let err = check(&only_qemu, &process(&["/usr/bin/sleep"]), &files()).unwrap_err();
        assert_eq!(
            err.reason,
            Refusal::RuntimeNotAllowed { runtime: "process" }
        );
    }

    fn policy_qemu() -> Option<QemuRules> {
        match policy() {
            LaunchPolicy::AllowList(l) => l.qemu,
            _ => None,
        }
    }

    #[test]
    fn without_a_policy_everything_is_refused_and_the_message_says_how_to_configure_one() {
        for spec in [
            process(&["/usr/bin/sleep", "1"]),
            process(&["sh", "-c", "id > FILE; sleep 999"]),
            qemu(&[]),
        ] {
            let err = check(&LaunchPolicy::Unconfigured, &spec, &files()).unwrap_err();
            assert_eq!(err.reason, Refusal::NoPolicy);
            assert!(err.to_string().contains("--launch-policy"), "{err}");
        }
        let empty = LaunchPolicy::AllowList(AllowList::default());
        let err = check(&empty, &qemu(&[]), &files()).unwrap_err();
        assert_eq!(err.reason, Refusal::RuntimeNotAllowed { runtime: "qemu" });
    }

    #[test]
    fn development_mode_checks_only_the_shape() {
        let c = check(
            &LaunchPolicy::AllowAnyDev,
            &process(&["sh", "-c", "anything"]),
            &files(),
        )
        .unwrap();
        assert_eq!(c.program(), None);
        assert_eq!(
            check(&LaunchPolicy::AllowAnyDev, &process(&[]), &files())
                .unwrap_err()
                .reason,
            Refusal::EmptyCommand
        );
    }

    #[test]
    fn the_file_is_hashed_only_once_its_rule_matched() {
        struct Counting(std::cell::Cell<u32>);
        impl FileDigests for Counting {
            fn digest(&self, _: &str) -> Result<FileFacts, FileError> {
                self.0.set(self.0.get() + 1);
                Err(FileError::NotAFile)
            }
        }
        let c = Counting(std::cell::Cell::new(0));
        let _ = check(&policy(), &process(&["/usr/bin/python3"]), &c);
        let _ = check(&policy(), &process(&["/bin/sh", "-c", "id"]), &c);
        let _ = check(&policy(), &qemu(&["-accel", "tcg"]), &c);
        assert_eq!(c.0.get(), 0);
    }
}
