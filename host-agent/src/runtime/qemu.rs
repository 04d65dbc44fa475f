//! The `qemu` runtime: `qemu-system-x86_64` in the enclave's cgroups (every QEMU thread, since
//! the process joins before `exec`), driven over QMP. Suspend/resume is QMP `stop`/`cont`.
//!
//! Without extra arguments the VM boots a 64 KiB firmware whose only loop increments a 64-bit
//! counter in guest RAM at [`COUNTER_ADDR`] ([`counter_firmware`]): a guest that burns CPU
//! (enough to test caps and stop/cont under TCG) and whose progress can be read over QMP
//! ([`guest_counter`]) — after a live migration the counter has gone on from where it was,
//! so the guest moved rather than restarted. Real hosts pass `-accel kvm` and the
//! SEV-SNP/TDX objects in `args` (as the host's allow-list permits).
//!
//! Every VM has two QMP monitors: `qmp.sock` for the agent's lifecycle commands and
//! `migrate.sock` for a live migration's long-running job (`super::migration`), so polling a
//! migration never holds up the agent. A migration target starts with `-incoming URI -S`.
//!
//! Privileges: QEMU starts as uid 0 holding only `CAP_SETUID`/`CAP_SETGID` (bounding set
//! included), `no_new_privs`, in its own mount namespace; it opens its devices and files, then
//! drops to the enclave's uid/gid itself (`-runas`, or `-run-with user=` where QEMU has it)
//! before the guest runs; the agent checks `/proc/PID/status` says so before it counts the VM
//! as launched. Where QEMU has seccomp, `-sandbox on` also denies it `fork`/`exec`, obsolete
//! and scheduler-changing syscalls.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::OnceCell;

use super::qmp::Qmp;
use super::{
    BoxFut, Enclave, EnclaveStatus, Identity, LaunchContext, PrivilegeDrop, RunAs, Runtime,
    RuntimeKind, spawn_confined, terminate, terminate_group,
};
use crate::cgroup::CgroupEnforcer;
use crate::error::{AgentError, Result};
use crate::launch::{CheckedLaunch, Credentials, users};
use crate::plan::{LaunchSpec, MsgPort};
use std::sync::Arc;

pub struct QemuRuntime {
    pub binary: PathBuf,
    /// What this QEMU binary supports, probed at the first launch.
    features: OnceCell<QemuFeatures>,
}

/// Options that differ between QEMU versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QemuFeatures {
    /// `-sandbox` (built with seccomp).
    pub sandbox: bool,
    /// `-run-with user=` (QEMU 9.1+, where `-runas` is deprecated).
    pub run_with_user: bool,
    /// A socket chardev's `reconnect-ms=` (QEMU 9.2+, where `reconnect=` is deprecated).
    pub chardev_reconnect_ms: bool,
}

/// The `-sandbox` setting: everything denied that QEMU does not need, except the
/// set*id calls its own privilege drop makes when it starts as root.
fn sandbox_arg(drops_itself: bool) -> String {
    format!(
        "on,obsolete=deny,elevateprivileges={},spawn=deny,resourcecontrol=deny",
        if drops_itself { "allow" } else { "deny" }
    )
}

impl QemuFeatures {
    /// The arguments that make QEMU drop to `c` before the guest runs.
    pub fn run_as_args(&self, c: Credentials) -> [String; 2] {
        if self.run_with_user {
            ["-run-with".into(), format!("user={}:{}", c.uid, c.gid)]
        } else {
            ["-runas".into(), format!("{}:{}", c.uid, c.gid)]
        }
    }
}

impl QemuRuntime {
    pub fn new(binary: PathBuf) -> QemuRuntime {
        QemuRuntime {
            binary,
            features: OnceCell::new(),
        }
    }

    /// Probes (once) which options this QEMU accepts: `qemu OPTION… -version` exits 0 only
    /// when every option before `-version` parsed.
    async fn features(&self) -> Result<QemuFeatures> {
        let accepts = |args: &'static [&'static str]| async move {
            tokio::process::Command::new(&self.binary)
                .args(args)
                .arg("-version")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await
                .map(|s| s.success())
        };
        let f = self
            .features
            .get_or_try_init(|| async {
                accepts(&[]).await.map_err(|e| AgentError::MissingTool {
                    tool: self.binary.display().to_string(),
                    package: "qemu-system-x86".into(),
                    why: e.to_string(),
                })?;
                let f = QemuFeatures {
                    sandbox: accepts(&["-sandbox", "on"]).await.unwrap_or(false),
                    run_with_user: accepts(&["-run-with", "user=65534:65534"])
                        .await
                        .unwrap_or(false),
                    chardev_reconnect_ms: accepts(&[
                        "-chardev",
                        "socket,id=probe,path=/nonexistent,reconnect-ms=1000",
                    ])
                    .await
                    .unwrap_or(false),
                };
                tracing::info!(binary = %self.binary.display(), ?f, "QEMU features");
                Ok::<_, AgentError>(f)
            })
            .await?;
        Ok(*f)
    }
}

pub struct QemuEnclave {
    identity: Identity,
    /// `None` for a VM adopted after an agent crash (not our child).
    child: Option<tokio::process::Child>,
    pid: Option<u32>,
    qmp: Qmp,
    cgroups: Arc<dyn CgroupEnforcer>,
    exited: Option<Option<i32>>,
}

/// Size QEMU requires of a PC BIOS image (a multiple of 64 KiB).
const FIRMWARE_BYTES: usize = 64 * 1024;

/// Guest-physical address of [`counter_firmware`]'s 64-bit counter (conventional RAM).
pub const COUNTER_ADDR: u64 = 0x500;

/// The lifecycle monitor's socket, inside the enclave's work directory.
pub const QMP_SOCKET: &str = "qmp.sock";
/// The migration job's monitor socket.
pub const MIGRATE_SOCKET: &str = "migrate.sock";

/// A BIOS image that counts: the reset vector (16 bytes from the end) jumps to offset 0, where
/// real-mode code increments the little-endian u64 at [`COUNTER_ADDR`] forever.
pub fn counter_firmware() -> Vec<u8> {
    #[rustfmt::skip]
    const CODE: [u8; 18] = [
        0x31, 0xC0,                   // xor ax, ax
        0x8E, 0xD8,                   // mov ds, ax
        0x66, 0xFF, 0x06, 0x00, 0x05, // l: inc dword [0x500]
        0x75, 0xF9,                   //    jnz l
        0x66, 0xFF, 0x06, 0x04, 0x05, //    inc dword [0x504]
        0xEB, 0xF2,                   //    jmp l
    ];
    let mut fw = vec![0u8; FIRMWARE_BYTES];
    fw[..CODE.len()].copy_from_slice(&CODE);
    // jmp near 0 (IP wraps within the reset segment F000, based at the image's start).
    fw[FIRMWARE_BYTES - 16..FIRMWARE_BYTES - 13].copy_from_slice(&[0xE9, 0x0D, 0x00]);
    fw
}

/// The value of [`counter_firmware`]'s counter from the monitor's `xp /2wx` output
/// (`0000000000000500: 0x0000beef 0x00000001`).
pub fn parse_counter(xp: &str) -> Option<u64> {
    let (_, words) = xp.trim().split_once(':')?;
    let mut it = words
        .split_whitespace()
        .map(|w| u32::from_str_radix(w.trim_start_matches("0x"), 16));
    let lo = it.next()?.ok()?;
    let hi = it.next()?.ok()?;
    Some(u64::from(hi) << 32 | u64::from(lo))
}

/// Reads the guest's progress counter over `qmp` (the default guest only).
pub async fn guest_counter(qmp: &mut Qmp) -> Result<u64> {
    let out = qmp
        .execute(
            "human-monitor-command",
            Some(serde_json::json!({ "command-line": format!("xp /2wx {COUNTER_ADDR:#x}") })),
        )
        .await?;
    out.as_str()
        .and_then(parse_counter)
        .ok_or_else(|| AgentError::Qmp(format!("unexpected xp output {out}")))
}

impl Runtime for QemuRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Qemu
    }

    fn launch(&self, ctx: LaunchContext, launch: CheckedLaunch) -> BoxFut<'_, Box<dyn Enclave>> {
        Box::pin(async move {
            let LaunchSpec::Qemu {
                memory_mib,
                args,
                msg_port,
            } = launch.spec()
            else {
                return Err(AgentError::Runtime(
                    "the qemu runtime cannot launch a process spec".into(),
                ));
            };
            let features = self.features().await?;
            std::fs::create_dir_all(&ctx.work_dir)
                .map_err(|e| AgentError::io("mkdir", &ctx.work_dir, e))?;
            let sock = ctx.work_dir.join(QMP_SOCKET);
            let _ = std::fs::remove_file(&sock);
            let migrate_sock = ctx.work_dir.join(MIGRATE_SOCKET);
            let _ = std::fs::remove_file(&migrate_sock);
            let mut argv: Vec<String> = vec![
                self.binary.display().to_string(),
                "-nodefaults".into(),
                "-display".into(),
                "none".into(),
                "-name".into(),
                ctx.identity.name.clone(),
                "-m".into(),
                memory_mib.to_string(),
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", sock.display()),
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", migrate_sock.display()),
            ];
            if let Some(uri) = &ctx.incoming {
                argv.extend(["-incoming".into(), uri.clone(), "-S".into()]);
            }
            let drop = match ctx.run_as {
                RunAs::User(c) => {
                    argv.extend(features.run_as_args(c));
                    PrivilegeDrop::ProgramDropsItself
                }
                RunAs::AgentUser => PrivilegeDrop::Nothing,
            };
            if features.sandbox {
                argv.extend([
                    "-sandbox".into(),
                    sandbox_arg(drop == PrivilegeDrop::ProgramDropsItself),
                ]);
            }
            // The message port (`qemu_msg`), before the spec's own arguments.
            match &ctx.msg_socket {
                Some(socket) => argv.extend(super::qemu_msg::msg_port_args(
                    *msg_port,
                    socket,
                    features.chardev_reconnect_ms,
                )),
                None if *msg_port != MsgPort::Off => tracing::warn!(
                    enclave = ctx.identity.name,
                    "no mediator socket: the guest gets no message port"
                ),
                None => {}
            }
            if args.is_empty() {
                let fw = ctx.work_dir.join("counter.bin");
                std::fs::write(&fw, counter_firmware())
                    .map_err(|e| AgentError::io("write", &fw, e))?;
                argv.extend([
                    "-machine".into(),
                    "q35,accel=tcg".into(),
                    "-bios".into(),
                    fw.display().to_string(),
                ]);
            } else {
                argv.extend(args.iter().cloned());
            }
            let mut child =
                spawn_confined(&self.binary, &argv, &ctx, true, drop).map_err(|e| match e {
                    AgentError::Runtime(m) if m.contains("No such file") => {
                        AgentError::MissingTool {
                            tool: self.binary.display().to_string(),
                            package: "qemu-system-x86".into(),
                            why: m,
                        }
                    }
                    e => e,
                })?;
            let pid = child.id();
            let qmp = match Qmp::connect(&sock, Duration::from_secs(10)).await {
                Ok(q) => q,
                Err(e) => {
                    terminate(&mut child, Duration::from_millis(100)).await;
                    return Err(e);
                }
            };
            // QMP answers from QEMU's main loop, which starts after its privilege drop: by now
            // it must run as the enclave's user.
            if let RunAs::User(want) = ctx.run_as {
                let now = pid.and_then(users::credentials_of);
                if now != Some(want) {
                    terminate(&mut child, Duration::from_millis(100)).await;
                    return Err(AgentError::Runtime(format!(
                        "QEMU did not drop to uid {} gid {} (it runs as {now:?}): stopped",
                        want.uid, want.gid
                    )));
                }
            }
            Ok(Box::new(QemuEnclave {
                identity: ctx.identity,
                child: Some(child),
                pid,
                qmp,
                cgroups: ctx.cgroups,
                exited: None,
            }) as Box<dyn Enclave>)
        })
    }

    fn adopt(&self, ctx: LaunchContext, pids: Vec<u32>) -> BoxFut<'_, Box<dyn Enclave>> {
        Box::pin(async move {
            let qmp = Qmp::connect(&ctx.work_dir.join(QMP_SOCKET), Duration::from_secs(2)).await?;
            Ok(Box::new(QemuEnclave {
                identity: ctx.identity,
                child: None,
                pid: pids.iter().min().copied(),
                qmp,
                cgroups: ctx.cgroups,
                exited: None,
            }) as Box<dyn Enclave>)
        })
    }
}

impl QemuEnclave {
    fn poll_exit(&mut self) -> Result<Option<Option<i32>>> {
        super::poll_exit(
            &mut self.child,
            &mut self.exited,
            self.cgroups.as_ref(),
            &self.identity.group,
        )
    }

    /// The QMP client, for migration and other commands the trait does not cover.
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }
}

impl Enclave for QemuEnclave {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn exit_code(&mut self) -> Result<Option<Option<i32>>> {
        self.poll_exit()
    }

    fn status(&mut self) -> BoxFut<'_, EnclaveStatus> {
        Box::pin(async move {
            if let Some(code) = self.poll_exit()? {
                return Ok(EnclaveStatus::Exited { code });
            }
            let st = self.qmp.query_status().await?;
            Ok(if st.running {
                EnclaveStatus::Running
            } else {
                EnclaveStatus::Suspended
            })
        })
    }

    fn suspend(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async move { self.qmp.stop().await })
    }

    fn resume(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async move { self.qmp.cont().await })
    }

    fn stop(&mut self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if self.poll_exit()?.is_none() {
                let _ = self.qmp.quit().await;
                match &mut self.child {
                    Some(child) => {
                        if tokio::time::timeout(Duration::from_secs(3), child.wait())
                            .await
                            .is_err()
                        {
                            terminate(child, Duration::from_millis(500)).await;
                        }
                    }
                    None => {
                        terminate_group(
                            self.cgroups.as_ref(),
                            &self.identity.group,
                            Duration::from_secs(3),
                        )
                        .await;
                    }
                }
                self.exited = Some(None);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_firmware_jumps_from_the_reset_vector_to_its_loop() {
        let fw = counter_firmware();
        assert_eq!(fw.len(), 64 * 1024);
        assert_eq!(&fw[0xFFF0..0xFFF3], &[0xE9, 0x0D, 0x00]);
        // rel16 from the next instruction (0xFFF3) wraps to offset 0.
        assert_eq!(0xFFF3u16.wrapping_add(0x000D), 0);
        assert_eq!(&fw[4..9], &[0x66, 0xFF, 0x06, 0x00, 0x05]);
    }

    #[test]
    fn counter_parses_from_xp_output() {
        assert_eq!(
            parse_counter("0000000000000500: 0x15d263e1 0x00000002\r\n"),
            Some(0x2_15d2_63e1)
        );
        assert_eq!(
            parse_counter("0000000000000500: 0x00000001 0x00000000"),
            Some(1)
        );
        assert_eq!(parse_counter("garbage"), None);
        assert_eq!(parse_counter("0000000000000500: 0x1"), None);
    }
}
