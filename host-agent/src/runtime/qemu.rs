//! The `qemu` runtime: `qemu-system-x86_64` in the enclave's cgroups (every QEMU thread, since
//! the process joins before `exec`), driven over QMP. Suspend/resume is QMP `stop`/`cont`.
//!
//! Without extra arguments the VM boots a 64 KiB firmware whose only loop increments a 64-bit
//! counter in guest RAM at [`COUNTER_ADDR`] ([`counter_firmware`]): a guest that burns CPU
//! (enough to test caps and stop/cont under TCG) and whose progress can be read over QMP
//! ([`guest_counter`]) — after a live migration the counter has gone on from where it was,
//! so the guest moved rather than restarted. A spec may ask for the writer guest instead
//! ([`writer_firmware`], `"guest": {"writer": {"mib": N}}`): the same counter, plus a write
//! to every page of N MiB of RAM, over and over — what a live migration must converge
//! against. Real hosts pass `-accel kvm` and the
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
use crate::plan::{Guest, LaunchSpec, MsgPort};
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
    /// Arrived by live migration with a NIC: the first resume that sees it running announces
    /// its MAC from here (QMP `announce-self`). QEMU's own announcement after the state is
    /// in goes nowhere while the VM waits paused for the commit (a stopped VM sends nothing).
    announce_owed: bool,
}

/// Size QEMU requires of a PC BIOS image (a multiple of 64 KiB).
const FIRMWARE_BYTES: usize = 64 * 1024;
/// How long a resume waits for an incoming migration's state to be loaded (`resume`).
const INCOMING_SETTLE: Duration = Duration::from_millis(500);
/// How often it asks meanwhile.
const INCOMING_POLL: Duration = Duration::from_millis(10);
/// How many more `cont`s a resume makes to a VM seen `paused` right after one.
const CONT_AGAIN_MAX: u32 = 3;

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

/// Where [`writer_firmware`] starts writing: 1 MiB, above the real-mode area and the ROMs.
pub const WRITER_BASE: u64 = 0x10_0000;

/// A BIOS image that counts and keeps writing across `mib` MiB of guest RAM from
/// [`WRITER_BASE`] up. From the reset vector it enters protected mode only to load DS with a
/// flat 4 GiB data descriptor and returns to real mode ("unreal mode": DS keeps the 4 GiB
/// limit, so 32-bit addresses reach past 1 MiB on KVM as on TCG). Then, forever: for each
/// 4 KiB page of the region, increment the u64 counter at [`COUNTER_ADDR`] and store its low
/// word at the start of the page. Every page of the region is rewritten (with a new value)
/// many times a second, so a live migration finds it dirty on every round.
pub fn writer_firmware(mib: u32) -> Vec<u8> {
    let end = u32::try_from(WRITER_BASE + (u64::from(mib) << 20)).unwrap_or(u32::MAX);
    let start = WRITER_BASE as u32;
    let mut code: Vec<u8> = Vec::with_capacity(0x46);
    #[rustfmt::skip]
    code.extend_from_slice(&[
        0xFA,                                     // 00 cli
        0x66, 0x2E, 0x0F, 0x01, 0x16, 0x00, 0x01, // 01 lgdt cs:[0x100] (32-bit base)
        0x0F, 0x20, 0xC0,                         // 08 mov eax, cr0
        0x0C, 0x01,                               // 0B or al, 1          (PE on)
        0x0F, 0x22, 0xC0,                         // 0D mov cr0, eax
        0xBB, 0x08, 0x00,                         // 10 mov bx, 8         (the flat data selector)
        0x8E, 0xDB,                               // 13 mov ds, bx        (base 0, limit 4 GiB)
        0x24, 0xFE,                               // 15 and al, 0xFE      (PE off: unreal mode)
        0x0F, 0x22, 0xC0,                         // 17 mov cr0, eax
        0x66, 0xBF,                               // 1A top: mov edi, start
    ]);
    code.extend_from_slice(&start.to_le_bytes());
    #[rustfmt::skip]
    code.extend_from_slice(&[
        0x66, 0xFF, 0x06, 0x00, 0x05,             // 20 page: inc dword [0x500]
        0x75, 0x05,                               // 25 jnz write
        0x66, 0xFF, 0x06, 0x04, 0x05,             // 27 inc dword [0x504]
        0x66, 0xA1, 0x00, 0x05,                   // 2C write: mov eax, [0x500]
        0x67, 0x66, 0x89, 0x07,                   // 30 mov [edi], eax    (32-bit address)
        0x66, 0x81, 0xC7, 0x00, 0x10, 0x00, 0x00, // 34 add edi, 4096
        0x66, 0x81, 0xFF,                         // 3B cmp edi, end
    ]);
    code.extend_from_slice(&end.to_le_bytes());
    #[rustfmt::skip]
    code.extend_from_slice(&[
        0x72, 0xDC,                               // 42 jb page   (0x44 - 0x24 = 0x20)
        0xEB, 0xD4,                               // 44 jmp top   (0x46 - 0x2C = 0x1A)
    ]);
    let mut fw = vec![0u8; FIRMWARE_BYTES];
    fw[..code.len()].copy_from_slice(&code);
    // The GDTR image at 0x100 (limit 15; base: the GDT at 0x110, by its 4 GiB - 64 KiB
    // address, where the image is mapped), and the GDT: a null descriptor, then flat data
    // (base 0, limit 0xFFFFF × 4 KiB, present, writable, already accessed: loading it writes
    // nothing to the ROM).
    fw[0x100..0x106].copy_from_slice(&[0x0F, 0x00, 0x10, 0x01, 0xFF, 0xFF]);
    fw[0x118..0x120].copy_from_slice(&[0xFF, 0xFF, 0x00, 0x00, 0x00, 0x93, 0xCF, 0x00]);
    fw[FIRMWARE_BYTES - 16..FIRMWARE_BYTES - 13].copy_from_slice(&[0xE9, 0x0D, 0x00]);
    fw
}

/// The firmware image and its file name for a built-in `guest` in a VM of `memory_mib`.
pub fn guest_firmware(guest: Guest, memory_mib: u32) -> Result<(&'static str, Vec<u8>)> {
    match guest {
        Guest::Counter => Ok(("counter.bin", counter_firmware())),
        Guest::Writer { mib } => {
            // The region must be RAM: from 1 MiB up, inside the VM's memory.
            if mib == 0 || u64::from(mib) + 1 > u64::from(memory_mib) {
                return Err(AgentError::Runtime(format!(
                    "the writer guest's region of {mib} MiB does not fit a VM of {memory_mib} MiB \
                     (it starts at 1 MiB; 1 ≤ mib ≤ memory_mib - 1)"
                )));
            }
            Ok(("writer.bin", writer_firmware(mib)))
        }
    }
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
                guest,
                ..
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
            // The NIC on its tap (`net_vm`), opened while QEMU is still uid 0.
            if let Some(nic) = &ctx.nic {
                argv.extend(nic.qemu_args());
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
                let (name, image) = guest_firmware(*guest, *memory_mib)?;
                let fw = ctx.work_dir.join(name);
                std::fs::write(&fw, image).map_err(|e| AgentError::io("write", &fw, e))?;
                argv.extend([
                    "-machine".into(),
                    "q35,accel=tcg".into(),
                    "-bios".into(),
                    fw.display().to_string(),
                ]);
            } else if !guest.is_counter() {
                return Err(AgentError::Runtime(
                    "a built-in guest is booted only by a QEMU spec without args".into(),
                ));
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
                announce_owed: ctx.incoming.is_some() && ctx.nic.is_some(),
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
                announce_owed: ctx.incoming.is_some() && ctx.nic.is_some(),
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
        Box::pin(async move {
            self.qmp.cont().await?;
            // A `cont` while QEMU still loads an incoming migration (`inmigrate`) only means
            // "start once loaded", and QEMU drops it when the source was paused (the source's
            // run state travels with its state): the VM ends `paused`. The controllers commit
            // once the source's QEMU says `completed`, and the target's may still be loading
            // then; so wait for it a little and `cont` again once it is in. `paused` right
            // after a `cont` is that too (the state got in between the two): `cont` again.
            // Past that, the agent's reconcile resumes it (`agent/run_state.rs`: owed).
            let started = tokio::time::Instant::now();
            let (mut waited, mut again) = (false, 0);
            let status = loop {
                let status = self.qmp.query_status().await?.status;
                match status.as_str() {
                    "inmigrate" if started.elapsed() < INCOMING_SETTLE => {
                        waited = true;
                        tokio::time::sleep(INCOMING_POLL).await;
                    }
                    "paused" if again < CONT_AGAIN_MAX => {
                        again += 1;
                        self.qmp.cont().await?;
                    }
                    _ => break status,
                }
            };
            if self.announce_owed && status == "running" {
                self.announce_owed = false;
                // QEMU's defaults after a migration: five RARPs per NIC, 50 then 100 ms apart.
                let a = serde_json::json!({"initial": 50, "max": 550, "rounds": 5, "step": 100});
                if let Err(e) = self.qmp.execute("announce-self", Some(a)).await {
                    tracing::warn!(enclave = %self.identity.name, "announce-self: {e}");
                }
            }
            if waited || again > 0 {
                tracing::info!(
                    enclave = %self.identity.name,
                    waited_ms = started.elapsed().as_millis() as u64,
                    cont_again = again,
                    status,
                    "resume met its incoming state still loading: cont again once in (else reconcile does)"
                );
            }
            Ok(())
        })
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
    fn writer_firmware_enters_unreal_mode_and_sweeps_its_region() {
        let fw = writer_firmware(16);
        assert_eq!(fw.len(), 64 * 1024);
        assert_eq!(&fw[0xFFF0..0xFFF3], &[0xE9, 0x0D, 0x00]);
        // lgdt reads the GDTR at 0x100, whose base is the GDT at 0x110 by its high alias.
        assert_eq!(&fw[1..8], &[0x66, 0x2E, 0x0F, 0x01, 0x16, 0x00, 0x01]);
        assert_eq!(&fw[0x100..0x106], &[0x0F, 0x00, 0x10, 0x01, 0xFF, 0xFF]);
        assert_eq!(&fw[0x110..0x118], &[0; 8]);
        // Selector 8: flat 4 GiB data, accessed bit preset.
        assert_eq!(&fw[0x118..0x120], &[0xFF, 0xFF, 0, 0, 0, 0x93, 0xCF, 0]);
        assert_eq!(&fw[0x10..0x15], &[0xBB, 0x08, 0x00, 0x8E, 0xDB]);
        // The region: 1 MiB up to 17 MiB.
        assert_eq!(&fw[0x1A..0x20], &[0x66, 0xBF, 0x00, 0x00, 0x10, 0x00]);
        assert_eq!(&fw[0x3B..0x42], &[0x66, 0x81, 0xFF, 0x00, 0x00, 0x10, 0x01]);
        // The loop's branches land on the page loop (0x20) and the sweep's start (0x1A).
        assert_eq!(fw[0x42], 0x72);
        assert_eq!(
            0x44u16.wrapping_add(i8::from_le_bytes([fw[0x43]]) as u16),
            0x20
        );
        assert_eq!(fw[0x44], 0xEB);
        assert_eq!(
            0x46u16.wrapping_add(i8::from_le_bytes([fw[0x45]]) as u16),
            0x1A
        );
        assert_eq!(0x27u16 + u16::from(fw[0x26]), 0x2C);
        // The counter is the default guest's, at the same address.
        assert_eq!(&fw[0x20..0x25], &[0x66, 0xFF, 0x06, 0x00, 0x05]);
        assert!(fw[0x46..0x100].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_writer_region_must_fit_the_vm() {
        assert!(guest_firmware(Guest::Writer { mib: 16 }, 32).is_ok());
        assert!(guest_firmware(Guest::Writer { mib: 31 }, 32).is_ok());
        assert!(guest_firmware(Guest::Writer { mib: 32 }, 32).is_err());
        assert!(guest_firmware(Guest::Writer { mib: 0 }, 32).is_err());
        assert_eq!(
            guest_firmware(Guest::Counter, 32).unwrap().1,
            counter_firmware()
        );
    }

    #[test]
    fn old_qemu_specs_load_as_the_counter_and_writers_round_trip() {
        let old: LaunchSpec = serde_json::from_str(r#"{"qemu": {"memory_mib": 32}}"#).unwrap();
        assert_eq!(
            old,
            LaunchSpec::Qemu {
                memory_mib: 32,
                args: vec![],
                guest: Guest::Counter,
                msg_port: MsgPort::default(),
                network: false,
            }
        );
        // The default is not written: older agents read what newer controllers send.
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"qemu":{"memory_mib":32,"args":[]}}"#
        );
        let w: LaunchSpec = serde_json::from_str(
            r#"{"qemu": {"memory_mib": 128, "guest": {"writer": {"mib": 64}}}}"#,
        )
        .unwrap();
        assert!(matches!(
            w,
            LaunchSpec::Qemu {
                guest: Guest::Writer { mib: 64 },
                ..
            }
        ));
        let back: LaunchSpec = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(back, w);
        assert!(serde_json::from_str::<LaunchSpec>(r#"{"qemu": {"guest": "nope"}}"#).is_err());
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
