//! Loopback ports for the processes a test or benchmark starts.
//!
//! A test picks a port, then gives it to a process that binds it later (a controller's
//! `--listen`, chromedriver's `--port`, an etcd peer URL): anything that takes the port in
//! between makes that process fail to start. So the ports come from blocks of [`BLOCK`] ports
//! **below the kernel's ephemeral range** (`net.ipv4.ip_local_port_range`, 32768–60999 by
//! default), from which the kernel picks the local port of every outgoing connection and of
//! every bind to port 0: no connection of any process can take one of ours. A block is this
//! process's while it holds an exclusive `flock` on `/tmp/tribune-testkit-ports/BLOCK.lock`
//! (released when the process exits, however it exits), so two processes using this module at
//! once — two test binaries, a test and the `tribune bench` or `tribune dev` it runs — never
//! hand out the same port; within a process a port is handed out once, and only when it can
//! be bound now. Where the ephemeral range leaves no room below it, or no block can be had,
//! ports come from binding port 0 (the old way, racy against outgoing connections).

use std::collections::HashSet;
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::Error;

/// Ports per block.
pub const BLOCK: u16 = 128;
/// The lowest port handed out (above the well-known and registered services most hosts run).
const FLOOR: u16 = 10_240;

#[derive(Default)]
struct Pool {
    /// Every port handed out by this process.
    given: HashSet<u16>,
    /// The next port of the block in use and the end of that block (exclusive).
    next: u16,
    end: u16,
    /// Block numbers this process holds or gave up on.
    seen: HashSet<u16>,
    /// The locks of the blocks held: open for the life of the process.
    locks: Vec<File>,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

const TRIES: usize = 1000;

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// How many whole blocks fit between [`FLOOR`] and the ephemeral range.
fn block_count() -> u16 {
    ephemeral_low().saturating_sub(FLOOR) / BLOCK
}

fn lock_dir() -> PathBuf {
    // Not $TMPDIR: every process on the host must meet in one place, whatever its environment.
    PathBuf::from("/tmp/tribune-testkit-ports")
}

/// Takes block `b` when no other process holds it.
fn try_lock(b: u16) -> Option<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::os::unix::io::AsRawFd;
    let dir = lock_dir();
    if std::fs::create_dir_all(&dir).is_ok() {
        // Shared by every user's tests on the host.
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    let path = dir.join(format!("{b}.lock"));
    // flock needs only a read descriptor: another user's lock file (their umask) serves too.
    let file = std::fs::File::open(&path)
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o666)
                .open(&path)
        })
        .ok()?;
    // SAFETY: a valid open descriptor; flock has no other preconditions.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (r == 0).then_some(file)
}

/// A start that differs between processes (and runs), so they do not all probe block 0 first.
fn seed() -> u64 {
    // The cross-process test makes its child start at a block the parent holds.
    #[cfg(test)]
    if let Some(s) = std::env::var("TRIBUNE_TESTKIT_PORTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(std::process::id()).wrapping_mul(0x9e37_79b9) ^ u64::from(nanos)
}

impl Pool {
    /// Claims a block no process holds; false when none can be had.
    fn claim(&mut self) -> bool {
        let count = block_count();
        if count == 0 {
            return false;
        }
        let start = (seed() % u64::from(count)) as u16;
        for i in 0..count {
            let b = (start + i) % count;
            if !self.seen.insert(b) {
                continue;
            }
            if let Some(lock) = try_lock(b) {
                self.locks.push(lock);
                self.next = FLOOR + b * BLOCK;
                self.end = self.next + BLOCK;
                return true;
            }
        }
        false
    }

    /// `n` consecutive ports not handed out before and free now, from a block of ours; the
    /// first of them.
    fn take(&mut self, n: u16) -> Option<u16> {
        if n == 0 || n > BLOCK {
            return None;
        }
        for _ in 0..TRIES {
            if self.end.saturating_sub(self.next) < n && !self.claim() {
                return None;
            }
            let first = self.next;
            self.next += 1;
            let ports = first..first + n;
            if ports
                .clone()
                .all(|p| !self.given.contains(&p) && bindable(p))
            {
                self.given.extend(ports);
                self.next = first + n;
                return Some(first);
            }
        }
        None
    }

    /// The old way: a port the kernel says is free now, never handed out before.
    fn ephemeral(&mut self) -> Result<u16, Error> {
        for _ in 0..TRIES {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(Error::io("binding an ephemeral loopback port"))?
                .port();
            if self.given.insert(port) {
                return Ok(port);
            }
        }
        Err(Error::NoPort { tries: TRIES })
    }
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn with_pool<T>(f: impl FnOnce(&mut Pool) -> T) -> T {
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    f(pool.get_or_insert_with(Pool::default))
}

/// A loopback port free right now, not handed out before by this process nor by another
/// process using this module, and outside the kernel's ephemeral range.
pub fn try_free_port() -> Result<u16, Error> {
    with_pool(|p| match p.take(1) {
        Some(port) => Ok(port),
        None => p.ephemeral(),
    })
}

/// [`try_free_port`] for tests: panics when no port can be had.
pub fn free_port() -> u16 {
    try_free_port().expect("a free loopback port")
}

/// `127.0.0.1:PORT` with a [`free_port`].
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The first of `count` (at most [`BLOCK`]) consecutive ports free now and handed out to no
/// one else, for a process that picks among them itself (the controllers' live-migration
/// ports: `[migration] port_base`, `port_span`). Below the ephemeral range like the others.
pub fn try_free_port_span(count: u16) -> Result<u16, Error> {
    with_pool(|p| p.take(count)).ok_or(Error::NoPort { tries: TRIES })
}

/// A base port B above 1024 such that B+1 ..= B+`count` are all free now and handed out to
/// no one else (for a command that takes a base port, like `tribune dev --port-base`).
pub fn free_port_base(count: u16) -> u16 {
    if let Some(base) = with_pool(|p| p.take(count.saturating_add(1))) {
        return base;
    }
    loop {
        let base = free_port().saturating_sub(10);
        if base > 1024 && (1..=count).all(|i| bindable(base + i)) {
            return base;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), ports.len(), "a port was handed out twice");
        for p in ports.iter().take(20) {
            TcpListener::bind(("127.0.0.1", *p)).expect("a handed-out port is free");
        }
        assert!(free_addr().starts_with("127.0.0.1:"));
    }

    #[test]
    fn ports_lie_below_the_ephemeral_range() {
        if block_count() == 0 {
            crate::say_skipped("the ephemeral port range leaves no room below it");
            return;
        }
        let low = ephemeral_low();
        for _ in 0..100 {
            let p = free_port();
            assert!((FLOOR..low).contains(&p), "{p} is not in {FLOOR}..{low}");
        }
    }

    #[test]
    fn a_port_base_has_its_ports_free() {
        let base = free_port_base(3);
        assert!(base > 1024);
        for i in 1..=3 {
            TcpListener::bind(("127.0.0.1", base + i)).expect("free");
        }
        // Never handed out again.
        let later: HashSet<u16> = (0..100).map(|_| free_port()).collect();
        assert!((base..=base + 3).all(|p| !later.contains(&p)));
    }

    #[test]
    fn a_span_is_ours_alone() {
        if block_count() == 0 {
            crate::say_skipped("the ephemeral port range leaves no room below it");
            return;
        }
        let first = try_free_port_span(BLOCK).expect("a whole block");
        for p in first..first + BLOCK {
            TcpListener::bind(("127.0.0.1", p)).expect("free");
        }
        let later: HashSet<u16> = (0..100).map(|_| free_port()).collect();
        assert!((first..first + BLOCK).all(|p| !later.contains(&p)));
        assert!(try_free_port_span(BLOCK + 1).is_err());
    }

    /// Run by [`another_process_never_gets_our_ports`] in a child process: prints the ports
    /// it was given.
    #[test]
    fn child_prints_its_ports() {
        if std::env::var_os("TRIBUNE_TESTKIT_PORTS_CHILD").is_none() {
            return;
        }
        let ports: Vec<String> = (0..150).map(|_| free_port().to_string()).collect();
        println!("ports: {}", ports.join(" "));
    }

    #[test]
    fn another_process_never_gets_our_ports() {
        let mine: HashSet<u16> = (0..150).map(|_| free_port()).collect();
        // The child starts probing at a block of ours: only the lock keeps it out.
        let ours = mine
            .iter()
            .find(|p| **p >= FLOOR)
            .map(|p| (p - FLOOR) / BLOCK);
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .env("TRIBUNE_TESTKIT_PORTS_SEED", ours.unwrap_or(0).to_string())
            .args([
                "--exact",
                "ports::tests::child_prints_its_ports",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env("TRIBUNE_TESTKIT_PORTS_CHILD", "1")
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.split_once("ports: ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("the child printed no ports:\n{text}"));
        let theirs: HashSet<u16> = line
            .split(' ')
            .map(|p| p.parse().expect("a port"))
            .collect();
        assert_eq!(theirs.len(), 150, "{line}");
        let both: Vec<&u16> = mine.intersection(&theirs).collect();
        assert!(both.is_empty(), "handed out to both processes: {both:?}");
    }
}
