//! CPU time of a process from `/proc/PID/stat` (Linux).

/// User + system CPU seconds of `pid` so far; `None` when it is gone or not Linux.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    tribune_agent::cgroup::observe::parse_proc_stat_cpu_ns(&stat).map(|ns| ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_cpu_time_is_read_and_grows() {
        let before = super::cpu_seconds(std::process::id()).expect("own stat");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let after = super::cpu_seconds(std::process::id()).expect("own stat");
        assert!(after >= before);
        assert!(super::cpu_seconds(u32::MAX).is_none());
    }
}
