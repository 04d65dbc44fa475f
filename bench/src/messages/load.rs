//! The load of the `messages` scenarios: paced and saturating senders, a paced receiver, an
//! unpaced pair, and the plain Unix-socket relay it is compared with.
//!
//! Every payload starts with the sender's tag (one byte) and its send time (nanoseconds since
//! a process-wide epoch, eight bytes), so the receiver attributes and times each message.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixStream;
use tribune_msg::{Client, SendError};

/// Payload of the fairness scenarios.
const PAYLOAD_BYTES: usize = 64;
/// Concurrent send tasks of a saturating sender.
const SATURATE_TASKS: usize = 8;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn payload(tag: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(9)];
    p[0] = tag;
    let ns = epoch().elapsed().as_nanos() as u64;
    p[1..9].copy_from_slice(&ns.to_be_bytes());
    p
}

/// One sender's attempts in the counted window.
#[derive(Debug, Default)]
pub struct Flow {
    pub attempted: u64,
    pub accepted: u64,
    pub refused: u64,
    /// How long each counted send took to be answered (accepted or refused) by the mediator,
    /// ms: a sender that offers less than its rate because its sends wait long is held back by
    /// the mediator; one whose sends are answered quickly fell behind on its own (its CPU).
    pub send_ms: Vec<f64>,
}

#[derive(Default)]
struct Counts {
    attempted: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    send_ms: std::sync::Mutex<Vec<f64>>,
}

impl Counts {
    /// The counts, and the send times taken out (read once, when the senders are done).
    fn flow(&self) -> Flow {
        Flow {
            attempted: self.attempted.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            send_ms: self
                .send_ms
                .lock()
                .map(|mut v| std::mem::take(&mut *v))
                .unwrap_or_default(),
        }
    }
}

/// Sends once and counts it if inside the window. Returns whether it was back-pressure.
async fn send_counted(
    c: &Client,
    to: &str,
    tag: u8,
    counts: &Counts,
    counting: bool,
) -> anyhow::Result<bool> {
    let sent = std::time::Instant::now();
    let r = c.send(to, &payload(tag, PAYLOAD_BYTES)).await;
    if counting {
        counts.attempted.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut v) = counts.send_ms.lock() {
            v.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
    }
    match r {
        Ok(_) => {
            if counting {
                counts.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false)
        }
        Err(e) if e.is_queue_full() => {
            if counting {
                counts.refused.fetch_add(1, Ordering::Relaxed);
            }
            Ok(true)
        }
        Err(e @ SendError::Refused { .. }) => anyhow::bail!("{}: {e}", c.name()),
        Err(e) => Err(e.into()),
    }
}

/// Each `(client, tag, rate)` sends to `to` at `rate` messages/s until `run` has passed
/// (spread over tasks of at most 1000/s each, on a 1 ms timer), counting after `warmup`.
pub async fn paced_senders(
    senders: Vec<(Client, u8, f64)>,
    to: &str,
    warmup: Duration,
    run: Duration,
) -> anyhow::Result<Vec<Flow>> {
    let start = tokio::time::Instant::now();
    let mut all = Vec::new();
    let mut tasks = Vec::new();
    for (client, tag, rate) in senders {
        let counts = Arc::new(Counts::default());
        all.push(counts.clone());
        let n = (rate / 1000.0).ceil().max(1.0) as usize;
        let period = Duration::from_secs_f64(n as f64 / rate);
        for k in 0..n {
            let (client, counts, to) = (client.clone(), counts.clone(), to.to_string());
            tasks.push(tokio::spawn(async move {
                let mut next = start + period.mul_f64(k as f64 / n as f64);
                loop {
                    tokio::time::sleep_until(next).await;
                    let now = tokio::time::Instant::now();
                    if now >= start + run {
                        return anyhow::Ok(());
                    }
                    let counting = now >= start + warmup;
                    send_counted(&client, &to, tag, &counts, counting).await?;
                    next += period;
                    // Behind by more than a period: skip, do not burst.
                    if tokio::time::Instant::now() > next + period {
                        next = tokio::time::Instant::now();
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await??;
    }
    Ok(all.iter().map(|c| c.flow()).collect())
}

/// Each `(client, tag)` keeps its queue to `to` full until `run` has passed.
pub async fn saturate(
    senders: Vec<(Client, u8)>,
    to: &str,
    warmup: Duration,
    run: Duration,
) -> anyhow::Result<Vec<Flow>> {
    let start = Instant::now();
    let mut all = Vec::new();
    let mut tasks = Vec::new();
    for (client, tag) in senders {
        let counts = Arc::new(Counts::default());
        all.push(counts.clone());
        for _ in 0..SATURATE_TASKS {
            let (client, counts, to) = (client.clone(), counts.clone(), to.to_string());
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < run {
                    let counting = start.elapsed() >= warmup;
                    if send_counted(&client, &to, tag, &counts, counting).await? {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                anyhow::Ok(())
            }));
        }
    }
    for t in tasks {
        t.await??;
    }
    Ok(all.iter().map(|c| c.flow()).collect())
}

/// What a paced receiver saw.
pub struct Received {
    pub start: Instant,
    /// Per tag, delivered in the counted window.
    pub delivered: Vec<u64>,
    /// (tag, send → receive ms) in the counted window.
    pub delay_ms: Vec<(u8, f64)>,
    /// (tag, when) of everything received.
    pub arrivals: Vec<(u8, Instant)>,
}

/// Connects as `enclave` with a receive window of `window` and takes what earlier scenarios
/// left queued for it, until nothing comes for 100 ms.
pub async fn drained(client: Client, window: u32) -> anyhow::Result<Client> {
    client.set_receive_window(window);
    while let Ok(r) = tokio::time::timeout(Duration::from_millis(100), client.recv()).await {
        r?;
    }
    Ok(client)
}

/// [`paced_receiver`] on a thread of its own (a current-thread runtime), so its pacing can
/// sleep 50 µs at a time instead of the async timer's millisecond, which would itself add a
/// millisecond of queueing to every message.
pub fn spawn_paced_receiver(
    client: Client,
    rate: f64,
    warmup: Duration,
    run: Duration,
) -> tokio::sync::oneshot::Receiver<anyhow::Result<Received>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(paced_receiver(client, rate, warmup, run)));
        let _ = tx.send(r);
    });
    rx
}

/// Takes at most `rate` messages/s, for `run`; counts after `warmup`. Blocks its thread while
/// ahead of the rate: run it through [`spawn_paced_receiver`].
async fn paced_receiver(
    client: Client,
    rate: f64,
    warmup: Duration,
    run: Duration,
) -> anyhow::Result<Received> {
    let start = Instant::now();
    let mut got = Received {
        start,
        delivered: vec![0; 256],
        delay_ms: Vec::new(),
        arrivals: Vec::new(),
    };
    let mut taken = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= run {
            return Ok(got);
        }
        if taken as f64 >= rate * elapsed.as_secs_f64() {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let Ok(r) = tokio::time::timeout(run - elapsed, client.recv()).await else {
            return Ok(got);
        };
        let (_, p) = r?;
        taken += 1;
        let now = Instant::now();
        let tag = p[0];
        got.arrivals.push((tag, now));
        if now.duration_since(start) >= warmup {
            let mut ns = [0u8; 8];
            ns.copy_from_slice(&p[1..9]);
            let sent = epoch() + Duration::from_nanos(u64::from_be_bytes(ns));
            got.delivered[usize::from(tag)] += 1;
            got.delay_ms.push((
                tag,
                now.saturating_duration_since(sent).as_secs_f64() * 1000.0,
            ));
        }
    }
}

/// `from` sends `payload`-byte messages to `to` as fast as the mediator takes them, `to`
/// receives as fast as it can; messages delivered in `run`.
pub async fn unpaced(
    from: Client,
    to_client: Client,
    to: &str,
    payload: usize,
    run: Duration,
) -> anyhow::Result<(u64, Duration)> {
    to_client.set_receive_window(tribune_msg::client::RECEIVE_WINDOW_MAX);
    let start = Instant::now();
    let tasks_n = if payload <= 1024 { 32 } else { 4 };
    let mut tasks = Vec::new();
    for _ in 0..tasks_n {
        let (c, to) = (from.clone(), to.to_string());
        let body = vec![7u8; payload];
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < run {
                match c.send(&to, &body).await {
                    Ok(_) => {}
                    Err(e) if e.is_queue_full() => tokio::task::yield_now().await,
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
            Ok(())
        }));
    }
    let mut n = 0u64;
    while start.elapsed() < run {
        match tokio::time::timeout(run.saturating_sub(start.elapsed()), to_client.recv()).await {
            Ok(r) => {
                r?;
                n += 1;
            }
            Err(_) => break,
        }
    }
    let took = start.elapsed();
    for t in tasks {
        t.await??;
    }
    Ok((n, took))
}

/// The floor: `payload`-byte length-prefixed frames written into one socket pair, copied by a
/// relay task into a second, read and counted at the end, for `run`.
pub async fn relay_throughput(payload: usize, run: Duration) -> anyhow::Result<u64> {
    let (a_in, a_out) = UnixStream::pair()?;
    let (b_in, b_out) = UnixStream::pair()?;
    let relay = tokio::spawn(async move {
        let (mut r, _) = a_out.into_split();
        let (_, mut w) = b_in.into_split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(256 << 10, a_in);
        let mut frame = (payload as u32).to_be_bytes().to_vec();
        frame.extend(std::iter::repeat_n(7u8, payload));
        while start.elapsed() < run {
            if w.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = w.flush().await;
    });
    let mut r = BufReader::with_capacity(256 << 10, b_out);
    let mut buf = vec![0u8; payload];
    let mut n = 0u64;
    while start.elapsed() < run {
        let mut len = [0u8; 4];
        if r.read_exact(&mut len).await.is_err() || r.read_exact(&mut buf).await.is_err() {
            break;
        }
        n += 1;
    }
    drop(r);
    writer.abort();
    relay.abort();
    Ok(n)
}
