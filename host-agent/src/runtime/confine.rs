//! Starting an enclave's process confined from its first instruction: between `fork` and
//! `exec` the child joins its cgroups and network namespace (which need root), gets a mount
//! namespace of its own, and gives up root — groups, uid/gid, every capability — and the
//! ability to regain it (`no_new_privs`, empty bounding set).
//!
//! Everything in the `pre_exec` closure is an async-signal-safe syscall on memory prepared
//! before the fork.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::LaunchContext;
use crate::error::{AgentError, Result};
use crate::launch::Credentials;

/// The only `PATH` an enclave inherits: it gets none of the agent's environment.
pub const ENCLAVE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Whom an enclave's process runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAs {
    /// The agent is root: the enclave runs as these credentials, with no capabilities.
    User(Credentials),
    /// The agent is not root (observe-only): the enclave runs as the agent's own,
    /// unprivileged user; `no_new_privs` still applies.
    AgentUser,
}

/// How far the child drops before `exec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrivilegeDrop {
    /// All the way: credentials, capabilities, bounding set.
    To(Credentials),
    /// Stays uid 0 with only `CAP_SETUID`/`CAP_SETGID` (effective, permitted and bounding),
    /// for a program that drops to the enclave's user itself once it has opened its devices
    /// (QEMU's `-runas`).
    ProgramDropsItself,
    /// Nothing to drop (the agent is not root).
    Nothing,
}

impl PrivilegeDrop {
    pub(crate) fn for_process(run_as: RunAs) -> PrivilegeDrop {
        match run_as {
            RunAs::User(c) => PrivilegeDrop::To(c),
            RunAs::AgentUser => PrivilegeDrop::Nothing,
        }
    }
}

/// `struct __user_cap_header_struct` (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; version 3 takes two (capabilities 0–31 and 32–63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Capabilities are numbered below this (the kernel says EINVAL past its last one).
const CAP_NUMBER_MAX: libc::c_ulong = 64;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

/// Spawns `program` with `argv` (`argv[0]` as given) so that the child is confined before
/// `exec`: no instruction of the workload runs unconfined or as root, and its later threads
/// and children inherit all of it.
pub(crate) fn spawn_confined(
    program: &Path,
    argv: &[String],
    ctx: &LaunchContext,
    quiet: bool,
    drop: PrivilegeDrop,
) -> Result<tokio::process::Child> {
    let arg0 = argv
        .first()
        .ok_or_else(|| AgentError::Runtime("empty command".into()))?;
    let root = crate::sys::is_root();
    if root && drop == PrivilegeDrop::Nothing {
        return Err(AgentError::Runtime(format!(
            "refusing to start {arg0:?} as root: the agent runs as root but was given no \
             unprivileged user for the enclave"
        )));
    }
    if !root && drop != PrivilegeDrop::Nothing {
        return Err(AgentError::Runtime(
            "the agent is not root: it cannot change the enclave's user".into(),
        ));
    }
    let procs: Vec<CString> = ctx
        .cgroups
        .procs_files(&ctx.identity.group)
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| AgentError::Runtime("cgroup path with NUL".into()))?;
    let netns: Option<OwnedFd> = match &ctx.identity.netns {
        Some(ns) => {
            let p = PathBuf::from("/run/netns").join(ns);
            Some(
                std::fs::File::open(&p)
                    .map_err(|e| AgentError::io("open netns", &p, e))?
                    .into(),
            )
        }
        None => None,
    };
    let netns_fd = netns.as_ref().map(|f| f.as_raw_fd());
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg0(arg0)
        .args(&argv[1..])
        .env_clear()
        .env("PATH", ENCLAVE_PATH)
        .envs(ctx.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .stdin(std::process::Stdio::null());
    if quiet {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
    // SAFETY: the closure only makes async-signal-safe syscalls (open, write, close, setns,
    // unshare, mount, prctl, capget/capset, setgroups, setresgid, setresuid) on memory
    // prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            for p in &procs {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" = the writing process.
                let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(fd) = netns_fd
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if drop != PrivilegeDrop::Nothing {
                drop_privileges(drop)?;
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| AgentError::Runtime(format!("spawn {}: {e}", program.display())))?;
    std::mem::drop(netns);
    Ok(child)
}

/// In the child, as root: a private mount namespace, then down to `drop`.
///
/// SAFETY (for callers): only between fork and exec; async-signal-safe syscalls only.
unsafe fn drop_privileges(drop: PrivilegeDrop) -> std::io::Result<()> {
    let fail = || Err(std::io::Error::last_os_error());
    // SAFETY: plain syscalls with valid (static or null) pointers.
    unsafe {
        // Its own mount namespace, slave to the host's: host mounts still reach it, nothing
        // it mounts or unmounts reaches the host.
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return fail();
        }
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return fail();
        }
        let keep: u64 = match drop {
            PrivilegeDrop::ProgramDropsItself => (1 << CAP_SETUID) | (1 << CAP_SETGID),
            _ => 0,
        };
        // The bounding set first: dropping from it needs CAP_SETPCAP, gone after setresuid.
        for cap in 0..CAP_NUMBER_MAX {
            if keep & (1 << cap) != 0 {
                continue;
            }
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                    break; // past the kernel's last capability
                }
                return fail();
            }
        }
        if let PrivilegeDrop::To(c) = drop {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(c.gid, c.gid, c.gid) != 0
                || libc::setresuid(c.uid, c.uid, c.uid) != 0
            {
                return fail();
            }
            if libc::getuid() == 0 || libc::geteuid() == 0 || libc::getegid() == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::EPERM));
            }
        }
        // Effective and permitted down to `keep`, inheritable and ambient empty (setresuid
        // clears the first two already, but not the inheritable set).
        let lo = keep as u32;
        let hi = (keep >> 32) as u32;
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [
            CapData {
                effective: lo,
                permitted: lo,
                inheritable: 0,
            },
            CapData {
                effective: hi,
                permitted: hi,
                inheritable: 0,
            },
        ];
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) != 0
        {
            return fail();
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
        {
            return fail();
        }
    }
    Ok(())
}
