//! A plan's launch spec (JSON, as it arrives from the controllers) through the agent's
//! allow-list check: parsing and checking must never panic, and whatever passes must be
//! something the allow-list names.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tribune_agent::LaunchSpec;
use tribune_agent::launch::{
    AllowList, Digest, FileDigests, FileError, FileFacts, LaunchPolicy, check,
};

const POLICY: &str = r#"
[process]
[[process.program]]
path = "/usr/bin/sleep"
sha256 = "SLEEP"
[[process.program]]
path = "/bin/sh"
sha256 = "SH"
args = [["-c", "while :; do :; done"], ["-c", "{any}"], ["{any}", "-x"]]
[[process.program]]
path = "/opt/changed"
sha256 = "SH"

[qemu]
[[qemu.file]]
path = "/vm/bzImage"
sha256 = "KERNEL"
[[qemu.file]]
path = "/vm/changed.img"
sha256 = "KERNEL"
[[qemu.arg]]
option = "-kernel"
values = ["{file}"]
[[qemu.arg]]
option = "-drive"
values = ["if=virtio,readonly=on,file={file}", "if=none"]
[[qemu.arg]]
option = "-accel"
values = ["kvm", "tcg"]
[[qemu.arg]]
option = "-no-reboot"
"#;

/// The digest a fake file's content has: its path, unless its name says "changed".
fn content(path: &str) -> Digest {
    let name = match path {
        "/usr/bin/sleep" => "SLEEP",
        "/bin/sh" => "SH",
        "/vm/bzImage" => "KERNEL",
        other => other,
    };
    Digest::of(name.as_bytes())
}

struct Files;

impl FileDigests for Files {
    fn digest(&self, path: &str) -> Result<FileFacts, FileError> {
        Ok(FileFacts {
            sha256: content(path),
            resolved: PathBuf::from(format!("/resolved{path}")),
            writable_by_others: false,
        })
    }
}

fn policy() -> &'static LaunchPolicy {
    static P: OnceLock<LaunchPolicy> = OnceLock::new();
    P.get_or_init(|| {
        let text = POLICY
            .replace(
                "\"SLEEP\"",
                &format!("{:?}", content("/usr/bin/sleep").to_string()),
            )
            .replace("\"SH\"", &format!("{:?}", content("/bin/sh").to_string()))
            .replace(
                "\"KERNEL\"",
                &format!("{:?}", content("/vm/bzImage").to_string()),
            );
        LaunchPolicy::AllowList(AllowList::parse(&text, Path::new("fuzz.toml")).unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<LaunchSpec>(data) else {
        return;
    };
    for p in [&LaunchPolicy::Unconfigured, &LaunchPolicy::AllowAnyDev] {
        let _ = check(p, &spec, &Files).map_err(|e| e.to_string());
    }
    assert!(check(&LaunchPolicy::Unconfigured, &spec, &Files).is_err());
    match check(policy(), &spec, &Files) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(c) => match c.spec() {
            LaunchSpec::Process { cmd, .. } => {
                assert!(
                    ["/usr/bin/sleep", "/bin/sh"].contains(&cmd[0].as_str()),
                    "{cmd:?}"
                );
                assert_eq!(
                    c.program(),
                    Some(Path::new(&format!("/resolved{}", cmd[0])))
                );
                if cmd[0] == "/bin/sh" {
                    assert_eq!(cmd.len(), 3, "{cmd:?}");
                }
            }
            LaunchSpec::Qemu { args, .. } => {
                for forbidden in ["-runas", "-monitor", "-qmp", "-sandbox", "/vm/changed.img"] {
                    assert!(
                        !args.iter().any(|a| a.contains(forbidden)),
                        "{forbidden} let through: {args:?}"
                    );
                }
            }
        },
    }
});
