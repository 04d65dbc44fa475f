//! The attestation streams' CPU-heavy checks (MACs and chains of usage reports, checkpoint
//! signatures) run here, on a few threads of lower scheduling priority, instead of on the
//! async runtime's threads.
//!
//! Under ingest load those checks used most of the controllers' CPU on the runtime's threads,
//! and Raft shares those threads: the leader's heartbeats and appends (and a follower's
//! reading of them) queued behind stream work, arrived late, and a leader that was busy but
//! alive was deposed (bench/README.md, issue 13). Here the runtime's threads stay free for
//! Raft, the network and the streams' bookkeeping, and when the CPU is short the kernel
//! favours them over these threads ([`NICE_DELTA`] nicer): verification slows down — and with it the
//! agents' streams, through HTTP/2 flow control (back-pressure) — instead of the heartbeats.
//!
//! Each job is awaited by the stream that sent it, so the queue holds at most one job per
//! stream.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use tokio::sync::oneshot;

/// How much nicer the pool's threads are than the thread that started them (the runtime's):
/// about a tenth of their CPU weight under contention, and nothing lost when the CPU is idle.
pub const NICE_DELTA: i32 = 10;

/// The highest nice value Linux has.
const NICE_MAX: i32 = 19;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A job that did not come back: the pool is gone or the job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the verification pool dropped a job (a check panicked or the pool stopped)")]
pub struct PoolError;

struct Pool {
    tx: Mutex<mpsc::Sender<Job>>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tribune-verify-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            rx.recv()
                        };
                        match job {
                            // A panicking job drops its reply; the thread goes on.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("starting a verification thread: {e}");
            }
        }
        Pool { tx: Mutex::new(tx) }
    })
}

/// The calling thread's nice value (Linux: the nice value is per thread; a new thread starts
/// with its creator's).
#[cfg(target_os = "linux")]
fn nice_here() -> i32 {
    // SAFETY: gettid and getpriority only read their integer arguments.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

/// Makes the calling thread [`NICE_DELTA`] nicer than it started (at most [`NICE_MAX`]).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let nice = (nice_here() + NICE_DELTA).min(NICE_MAX);
        // SAFETY: gettid and setpriority only read their integer arguments.
        let rc =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if rc != 0 {
            tracing::warn!(
                "could not lower the verification thread's priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Runs `f` on the pool and returns its result. Cancel-safe: a caller that stops waiting
/// leaves the job to finish and its result to be dropped.
pub async fn run<T, F>(f: F) -> Result<T, PoolError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = reply.send(f());
    });
    pool()
        .tx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(job)
        .map_err(|_| PoolError)?;
    rx.await.map_err(|_| PoolError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_job_runs_on_a_lower_priority_thread_and_returns() {
        // The pool's threads start from the nice value of the thread that first uses it.
        let here = nice_here();
        let (name, nice) = run(|| {
            let name = std::thread::current().name().map(str::to_string);
            (name, nice_here())
        })
        .await
        .expect("the pool answers");
        assert!(name.is_some_and(|n| n.starts_with("tribune-verify-")));
        assert_eq!(nice, (here + NICE_DELTA).min(NICE_MAX));
        assert!(
            nice > here || here == NICE_MAX,
            "not below the runtime's priority"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_pool_goes_on() {
        let r = run(|| -> u32 { panic!("a check that panics") }).await;
        assert!(r.is_err());
        for i in 0..8u32 {
            assert_eq!(run(move || i * 2).await.ok(), Some(i * 2));
        }
    }
}
