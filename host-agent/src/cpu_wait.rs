//! CPU wait — the demand signal: how long an enclave's threads were runnable but not running.
//!
//! The kernel counts, per thread, the time it spent on a run queue waiting for a CPU: the
//! second field of `/proc/TID/schedstat` (`run_delay`, ns; `CONFIG_SCHED_INFO`). Summed over
//! the threads of the enclave's cgroup (v1 `cpu/<group>/tasks`, v2 `cgroup.threads`) it is
//! the CPU the enclave asked for and did not get. A QEMU enclave's vCPU threads are QEMU
//! threads in that cgroup, so the same sum is the host's view of the guest's steal time.
//!
//! Threads come and go between samples, so the per-thread counters are turned into one
//! cumulative counter here ([`WaitCounter`]): each thread adds what it waited since the last
//! sample (a thread first seen adds all it has: it was born, or moved in, since then), a
//! thread that left adds nothing more. Pure parts ([`parse_run_delay_ns`], [`parse_tids`],
//! [`WaitCounter`]) are tested below; the reads are in [`WaitProbe`].

use std::collections::HashMap;
use std::path::PathBuf;

/// Most threads read per sample: a bound on the work of one tick (a QEMU enclave has a few
/// dozen; a process enclave that forks more than this is measured on the first this-many).
pub const THREADS_MAX: usize = 4096;

/// Where an enclave's threads are listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThreadList {
    /// A cgroup file with one thread id a line (v1 `tasks`, v2 `cgroup.threads`).
    CgroupFile(PathBuf),
    /// `/proc/PID/task` of the enclave's main process (no cgroup: the observe-only mode).
    ProcTasks(u32),
}

/// `run_delay` (ns, the second field) from the text of `/proc/TID/schedstat`
/// (`cpu_time run_delay timeslices`).
pub fn parse_run_delay_ns(text: &str) -> Option<u64> {
    let mut f = text.split_whitespace();
    f.next()?;
    f.next()?.parse().ok()
}

/// Thread ids, one a line (cgroup `tasks` / `cgroup.threads`); other lines are skipped; at
/// most [`THREADS_MAX`].
pub fn parse_tids(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.trim().parse().ok())
        .take(THREADS_MAX)
        .collect()
}

/// Per-thread `run_delay` counters folded into one cumulative counter of the enclave.
#[derive(Debug, Default)]
pub struct WaitCounter {
    last: HashMap<u32, u64>,
    total_ns: u64,
    primed: bool,
}

impl WaitCounter {
    /// Takes this sample's `(tid, run_delay_ns)` and returns the cumulative wait. The first
    /// sample only sets the baseline (what the threads waited before we watched is not this
    /// enclave's window). A counter lower than last time is a reused thread id: a new thread.
    pub fn advance(&mut self, now: &[(u32, u64)]) -> u64 {
        let mut next = HashMap::with_capacity(now.len());
        for &(tid, delay) in now {
            if self.primed {
                let added = match self.last.get(&tid) {
                    Some(&before) if delay >= before => delay - before,
                    _ => delay,
                };
                self.total_ns = self.total_ns.saturating_add(added);
            }
            next.insert(tid, delay);
        }
        self.last = next;
        self.primed = true;
        self.total_ns
    }

    /// The cumulative wait so far.
    pub fn total_ns(&self) -> u64 {
        self.total_ns
    }
}

/// Reads an enclave's threads and their `run_delay` each sample.
#[derive(Debug)]
pub struct WaitProbe {
    list: ThreadList,
    counter: WaitCounter,
    /// Reused between samples (pairs of this sample).
    now: Vec<(u32, u64)>,
}

impl WaitProbe {
    pub fn new(list: ThreadList) -> WaitProbe {
        WaitProbe {
            list,
            counter: WaitCounter::default(),
            now: Vec::new(),
        }
    }

    /// The enclave's cumulative CPU wait, ns. A thread list that cannot be read (the enclave
    /// is gone, or the kernel has no schedstat) leaves the counter where it was: no wait is
    /// claimed that was not measured.
    pub fn read(&mut self) -> u64 {
        let tids = match &self.list {
            ThreadList::CgroupFile(p) => match std::fs::read_to_string(p) {
                Ok(t) => parse_tids(&t),
                Err(_) => return self.counter.total_ns(),
            },
            ThreadList::ProcTasks(pid) => match std::fs::read_dir(format!("/proc/{pid}/task")) {
                Ok(d) => d
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .take(THREADS_MAX)
                    .collect(),
                Err(_) => return self.counter.total_ns(),
            },
        };
        self.now.clear();
        for tid in tids {
            // A thread that exited between the list and its read is skipped.
            if let Ok(t) = std::fs::read_to_string(format!("/proc/{tid}/schedstat"))
                && let Some(d) = parse_run_delay_ns(&t)
            {
                self.now.push((tid, d));
            }
        }
        self.counter.advance(&self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_second_field_is_the_run_delay() {
        assert_eq!(parse_run_delay_ns("123 456 7\n"), Some(456));
        assert_eq!(parse_run_delay_ns("0 78667 1"), Some(78667));
        assert_eq!(parse_run_delay_ns("123"), None);
        assert_eq!(parse_run_delay_ns(""), None);
        assert_eq!(parse_run_delay_ns("1 -5 2"), None);
    }

    #[test]
    fn thread_lists_are_one_id_a_line() {
        assert_eq!(parse_tids("12\n34\n\n  56 \nx\n"), vec![12, 34, 56]);
        assert!(parse_tids("").is_empty());
        let many: String = (0..THREADS_MAX + 10).map(|i| format!("{i}\n")).collect();
        assert_eq!(parse_tids(&many).len(), THREADS_MAX);
    }

    #[test]
    fn the_first_sample_is_a_baseline() {
        let mut c = WaitCounter::default();
        assert_eq!(c.advance(&[(1, 5_000), (2, 7_000)]), 0);
        assert_eq!(c.advance(&[(1, 6_000), (2, 7_500)]), 1_500);
    }

    #[test]
    fn threads_that_come_and_go_keep_the_counter_rising() {
        let mut c = WaitCounter::default();
        c.advance(&[(1, 100), (2, 200)]);
        // Thread 2 left (its last 200 were counted up to then: nothing more), 3 was born
        // with 50 waited: all of it is new.
        assert_eq!(c.advance(&[(1, 150), (3, 50)]), 50 + 50);
        // Thread id 1 reused by a new thread whose counter starts again.
        assert_eq!(c.advance(&[(1, 10), (3, 50)]), 100 + 10);
        // No threads (all exited): the counter stays.
        assert_eq!(c.advance(&[]), 110);
        assert_eq!(c.total_ns(), 110);
    }

    #[test]
    fn the_probe_reads_this_process_threads() {
        // Our own process: /proc/PID/task lists this test's threads, and their schedstat is
        // readable on any kernel with CONFIG_SCHED_INFO.
        if std::fs::read_to_string("/proc/self/schedstat").is_err() {
            eprintln!("skipped: this kernel has no /proc/PID/schedstat");
            return;
        }
        let mut p = WaitProbe::new(ThreadList::ProcTasks(std::process::id()));
        let a = p.read();
        let b = p.read();
        assert!(b >= a, "cumulative: {a} then {b}");
        assert!(!p.now.is_empty(), "at least this thread");
        // A list that does not exist keeps the counter where it was.
        let mut gone = WaitProbe::new(ThreadList::CgroupFile("/nonexistent/tasks".into()));
        assert_eq!(gone.read(), 0);
    }
}
