//! Stopping child processes: SIGTERM (a clean exit removes an agent's enclaves and cgroups,
//! lets a controller flush), then wait up to a grace period, then SIGKILL whatever is left.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often an exit is polled for.
const POLL: Duration = Duration::from_millis(20);

/// Sends SIGTERM to `child`. Only for a child not reaped yet (not `wait`ed for, no `try_wait`
/// that gave its status): a reaped child's pid can already be another process's (`pid_max` is
/// 32768 on small hosts, and a test run starts thousands of processes). [`terminate`] and
/// [`stop`] check that themselves.
pub fn sigterm(child: &Child) {
    // SAFETY: kill(2) has no memory preconditions; the pid is our own child's.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

/// Waits up to `limit` for `child` to exit; its status, or `None` if it still runs.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    crate::wait::until("a child's exit", limit, POLL, || match child.try_wait() {
        Ok(Some(status)) => Some(Some(status)),
        // Reaped already: there is nothing left to wait for.
        Err(_) => Some(None),
        Ok(None) => None,
    })
    .ok()
    .flatten()
}

/// How a stopped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself within the grace period (after SIGTERM).
    Exited(Option<ExitStatus>),
    /// It was still running at the deadline and was killed (SIGKILL).
    Killed,
}

/// SIGTERM to every child, then waits until `grace` has passed (one deadline for all of them)
/// before killing and reaping the rest.
pub fn terminate<'a>(
    children: impl IntoIterator<Item = &'a mut Child>,
    grace: Duration,
) -> Vec<Stopped> {
    let mut children: Vec<&mut Child> = children.into_iter().collect();
    for c in &mut children {
        // A reaped child's pid may be another process's by now (e.g. an agent a test killed
        // and waited for, then dropped): signal only one still ours. An exited, unreaped
        // child keeps its pid (a zombie) until waited for, so nothing can take it in between.
        if let Ok(None) = c.try_wait() {
            sigterm(c);
        }
    }
    let deadline = Instant::now() + grace;
    children
        .iter_mut()
        .map(|c| {
            let left = deadline.saturating_duration_since(Instant::now());
            match wait_exit(c, left) {
                Some(status) => Stopped::Exited(Some(status)),
                None => {
                    let killed = kill9(c);
                    if killed {
                        Stopped::Killed
                    } else {
                        Stopped::Exited(None)
                    }
                }
            }
        })
        .collect()
}

/// [`terminate`] for one child.
pub fn stop(child: &mut Child, grace: Duration) -> Stopped {
    terminate([child], grace)[0]
}

/// SIGKILL and reap; `false` when it had exited already.
pub fn kill9(child: &mut Child) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return false;
    }
    let killed = child.kill().is_ok();
    let _ = child.wait();
    killed
}

/// A child stopped when dropped: with SIGTERM and `grace` to exit, SIGKILL after; a zero
/// grace kills it at once.
pub struct Guard {
    pub child: Child,
    pub grace: Duration,
}

impl Guard {
    pub fn new(child: Child, grace: Duration) -> Self {
        Self { child, grace }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.grace.is_zero() {
            kill9(&mut self.child);
        } else {
            stop(&mut self.child, self.grace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sh(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .spawn()
            .expect("spawn sh")
    }

    /// A shell that ignores SIGTERM, once the trap is set (it says so on a pipe).
    fn stubborn() -> Child {
        let mut c = Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; exec sleep 30"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        use std::io::Read;
        let mut buf = [0u8; 6];
        c.stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut buf)
            .expect("ready");
        c
    }

    #[test]
    fn a_process_that_exits_on_sigterm_is_not_killed() {
        let mut c = sh("exec sleep 30");
        let started = Instant::now();
        match stop(&mut c, Duration::from_secs(20)) {
            Stopped::Exited(Some(s)) => {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(s.signal(), Some(libc::SIGTERM));
            }
            other => panic!("expected a clean exit, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_process_ignoring_sigterm_is_killed_at_the_deadline() {
        let mut c = stubborn();
        let started = Instant::now();
        assert_eq!(stop(&mut c, Duration::from_millis(300)), Stopped::Killed);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(
            matches!(c.try_wait(), Ok(Some(_)) | Err(_)),
            "reaped after the kill"
        );
    }

    #[test]
    fn a_child_already_reaped_is_left_alone() {
        // (Its pid may be another process's by now; that cannot be staged, only the path.)
        let mut c = stubborn();
        c.kill().expect("kill");
        let status = c.wait().expect("reap");
        let started = Instant::now();
        assert_eq!(
            stop(&mut c, Duration::from_secs(20)),
            Stopped::Exited(Some(status))
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn terminate_shares_one_deadline() {
        let mut a = stubborn();
        let mut b = stubborn();
        let mut ok = sh("exec sleep 30");
        let started = Instant::now();
        let r = terminate([&mut a, &mut ok, &mut b], Duration::from_millis(300));
        assert_eq!(r[0], Stopped::Killed);
        assert!(matches!(r[1], Stopped::Exited(Some(_))));
        assert_eq!(r[2], Stopped::Killed);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_guard_stops_its_child() {
        let c = stubborn();
        let pid = c.id();
        drop(Guard::new(c, Duration::from_millis(100)));
        // SAFETY: signal 0 only asks whether the pid exists.
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        assert!(!alive, "the guard's child is gone");
    }

    #[test]
    fn wait_exit_gives_up_at_its_limit() {
        let mut c = sh("exec sleep 30");
        assert!(wait_exit(&mut c, Duration::from_millis(50)).is_none());
        assert!(kill9(&mut c));
        assert!(!kill9(&mut c), "already gone");
    }
}
