//! CPU wait — the demand signal: how long an enclave's threads were runnable but not running.
//!
//! The kernel counts, per thread, the time it spent on a run queue waiting for a CPU: the
//! second field of `/proc/TID/schedstat` (`run_delay`, ns; `CONFIG_SCHED_INFO`). Summed over
//! the threads of the enclave's cgroup (v1 `cpu/<group>/tasks`, v2 `cgroup.threads`) it is
//! the CPU the enclave asked for and did not get — behind other tasks, or throttled by a CPU
//! cap (CFS quota). A QEMU enclave's vCPU threads are QEMU threads in that cgroup, so the
//! same sum is the host's view of the guest's steal time.
//!
//! Threads come and go between samples, so the per-thread counters are turned into one
//! cumulative counter here ([`WaitCounter`]): each thread adds what it waited since the last
//! sample (a thread first seen adds all it has: it was born, or moved in, since then), a
//! thread that left adds nothing more. Pure parts ([`parse_run_delay_ns`],
//! [`parse_tids_into`], [`WaitCounter`]) are tested below; the reads are in [`WaitProbe`].

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
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

/// Thread ids, one a line (cgroup `tasks` / `cgroup.threads`), into `out` (cleared first);
/// other lines are skipped; at most [`THREADS_MAX`].
pub fn parse_tids_into(text: &str, out: &mut Vec<u32>) {
    out.clear();
    out.extend(
        text.lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .take(THREADS_MAX),
    );
}

/// Per-thread `run_delay` counters folded into one cumulative counter of the enclave.
/// A sample is [`observe`](Self::observe) per thread, then [`finish`](Self::finish).
#[derive(Debug, Default)]
pub struct WaitCounter {
    /// Per thread: its last `run_delay` and the sample that saw it.
    last: HashMap<u32, (u64, u64)>,
    sample: u64,
    total_ns: u64,
    primed: bool,
}

impl WaitCounter {
    /// One thread's `run_delay` in this sample. Adds what it waited since the last sample; a
    /// thread first seen adds all it has (born or moved in since); a counter lower than last
    /// time is a reused thread id, a new thread. The first sample only sets the baseline
    /// (what the threads waited before we watched is not this enclave's window).
    pub fn observe(&mut self, tid: u32, delay_ns: u64) {
        if self.primed {
            let added = match self.last.get(&tid) {
                Some(&(before, _)) if delay_ns >= before => delay_ns - before,
                _ => delay_ns,
            };
            self.total_ns = self.total_ns.saturating_add(added);
        }
        self.last.insert(tid, (delay_ns, self.sample));
    }

    /// Ends a sample: threads not observed in it are forgotten (they left and add nothing
    /// more). Returns the cumulative wait.
    pub fn finish(&mut self) -> u64 {
        let sample = self.sample;
        self.last.retain(|_, (_, seen)| *seen == sample);
        self.sample = self.sample.wrapping_add(1);
        self.primed = true;
        self.total_ns
    }

    /// A whole sample at once: `(tid, run_delay_ns)` of every thread.
    pub fn advance(&mut self, now: &[(u32, u64)]) -> u64 {
        for &(tid, d) in now {
            self.observe(tid, d);
        }
        self.finish()
    }

    /// Whether `tid` was seen in the last finished sample.
    pub fn knows(&self, tid: u32) -> bool {
        self.last.contains_key(&tid)
    }

    /// The cumulative wait so far.
    pub fn total_ns(&self) -> u64 {
        self.total_ns
    }
}

/// The thread list is re-read every this many samples (1 s at 100 ms); in between the
/// known threads are read. A thread born in between is found at the
/// next re-read and adds all it waited then (nothing is lost); a thread that exits in
/// between loses only its wait since its last read.
pub const LIST_EVERY: u64 = 10;

/// Largest thread list read (about 7 bytes a thread).
const LIST_BYTES_MAX: usize = 64 << 10;

/// Reads an enclave's threads and their `run_delay` each sample. Cost: the thread list and
/// each thread's `schedstat` stay open and are re-read with `pread` at offset 0 (no open, no
/// allocation in the steady state): one read per thread a sample, and the list every
/// [`LIST_EVERY`] samples.
#[derive(Debug)]
pub struct WaitProbe {
    list: ThreadList,
    /// The open thread list (cgroup file), once opened.
    list_file: Option<File>,
    /// Each known thread's open `schedstat`.
    stats: HashMap<u32, File>,
    counter: WaitCounter,
    /// Reused between samples.
    tids: Vec<u32>,
    buf: Vec<u8>,
    samples: u64,
    /// The enclave's CPU time at the last read.
    last_cpu_ns: Option<u64>,
}

impl WaitProbe {
    pub fn new(list: ThreadList) -> WaitProbe {
        WaitProbe {
            list,
            list_file: None,
            stats: HashMap::new(),
            counter: WaitCounter::default(),
            tids: Vec::new(),
            buf: Vec::new(),
            samples: 0,
            last_cpu_ns: None,
        }
    }

    /// The enclave's cumulative CPU wait, ns, given its cumulative CPU time now (`cpu_ns`).
    /// A thread list that cannot be read (the enclave is gone, or the kernel has no
    /// schedstat) leaves the counter where it was: no wait is claimed that was not measured.
    ///
    /// The kernel credits `run_delay` when a waiting thread gets a CPU, so it can only have
    /// changed if the enclave ran: when its CPU time has not moved since the last read, the
    /// threads are not read at all (an idle enclave costs nothing here). A thread that just
    /// got a CPU but whose time is not yet charged is read at the next sample: late by a
    /// window at most, never lost (the counter is cumulative).
    pub fn read(&mut self, cpu_ns: u64) -> u64 {
        if self.last_cpu_ns == Some(cpu_ns) {
            return self.counter.total_ns();
        }
        self.last_cpu_ns = Some(cpu_ns);
        let refresh = self.samples.is_multiple_of(LIST_EVERY);
        self.samples = self.samples.wrapping_add(1);
        if refresh && !self.read_tids() {
            return self.counter.total_ns();
        }
        for &tid in &self.tids {
            let file = match self.stats.entry(tid) {
                std::collections::hash_map::Entry::Occupied(f) => f.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    match File::open(format!("/proc/{tid}/schedstat")) {
                        Ok(f) => v.insert(f),
                        // Exited between the list and its open.
                        Err(_) => continue,
                    }
                }
            };
            let mut b = [0u8; 96];
            let n = match file.read_at(&mut b, 0) {
                Ok(n) if n > 0 => n,
                // Exited since (the open file of a dead thread reads nothing or fails).
                _ => continue,
            };
            if let Some(d) = std::str::from_utf8(&b[..n])
                .ok()
                .and_then(parse_run_delay_ns)
            {
                self.counter.observe(tid, d);
            }
        }
        let total = self.counter.finish();
        let counter = &self.counter;
        self.stats.retain(|tid, _| counter.knows(*tid));
        // Threads gone since the list was read are not tried again until the next re-read.
        self.tids.retain(|tid| counter.knows(*tid));
        total
    }

    /// How many threads the last read measured.
    pub fn threads(&self) -> usize {
        self.stats.len()
    }

    /// This sample's thread ids into `self.tids`; false when the list cannot be read.
    fn read_tids(&mut self) -> bool {
        match &self.list {
            ThreadList::CgroupFile(p) => {
                if self.list_file.is_none() {
                    match File::open(p) {
                        Ok(f) => self.list_file = Some(f),
                        Err(_) => return false,
                    }
                }
                let Some(f) = &self.list_file else {
                    return false;
                };
                let Some(len) = read_all_at(f, &mut self.buf) else {
                    self.list_file = None;
                    return false;
                };
                let text = std::str::from_utf8(&self.buf[..len]).unwrap_or("");
                parse_tids_into(text, &mut self.tids);
                true
            }
            ThreadList::ProcTasks(pid) => match std::fs::read_dir(format!("/proc/{pid}/task")) {
                Ok(d) => {
                    self.tids.clear();
                    self.tids.extend(
                        d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                            .take(THREADS_MAX),
                    );
                    true
                }
                Err(_) => false,
            },
        }
    }
}

/// The whole of `f` from offset 0 into `buf` (grown up to [`LIST_BYTES_MAX`]); its length, or
/// `None` when it cannot be read.
fn read_all_at(f: &File, buf: &mut Vec<u8>) -> Option<usize> {
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut len = 0;
    loop {
        match f.read_at(&mut buf[len..], len as u64) {
            Ok(0) => return Some(len),
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    if len >= LIST_BYTES_MAX {
                        return Some(len);
                    }
                    buf.resize(len * 2, 0);
                }
            }
            Err(_) => return None,
        }
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
        let mut v = vec![9];
        parse_tids_into("12\n34\n\n  56 \nx\n", &mut v);
        assert_eq!(v, vec![12, 34, 56]);
        parse_tids_into("", &mut v);
        assert!(v.is_empty());
        let many: String = (0..THREADS_MAX + 10).map(|i| format!("{i}\n")).collect();
        parse_tids_into(&many, &mut v);
        assert_eq!(v.len(), THREADS_MAX);
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
        assert!(
            !c.knows(1) && !c.knows(3),
            "threads that left are forgotten"
        );
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
        let a = p.read(1);
        let b = p.read(2);
        assert!(b >= a, "cumulative: {a} then {b}");
        assert!(!p.stats.is_empty(), "at least this thread");
        // The enclave did not run since: nothing is read, the counter stands.
        p.stats.clear();
        assert_eq!(p.read(2), b);
        assert!(p.stats.is_empty(), "no thread was read");
        // A cgroup-style list file naming this process's main thread.
        let dir = tempfile::tempdir().expect("temp dir");
        let list = dir.path().join("tasks");
        std::fs::write(&list, format!("{}\n", std::process::id())).expect("write");
        let mut p = WaitProbe::new(ThreadList::CgroupFile(list));
        let a = p.read(1);
        assert!(p.read(2) >= a);
        assert_eq!(p.stats.len(), 1, "one thread listed, one schedstat open");
        // A list that does not exist keeps the counter where it was.
        let mut gone = WaitProbe::new(ThreadList::CgroupFile("/nonexistent/tasks".into()));
        assert_eq!(gone.read(1), 0);
    }
}
