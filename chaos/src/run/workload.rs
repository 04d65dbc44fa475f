//! The clients: each picks a random controller, a random policy and a random operation
//! (linearizable read, blind write, compare-and-set with `If-Match` on the version it last saw),
//! and records every operation in the history.
//!
//! Every write carries an idempotency key (docs/api.md). A write whose outcome is unknown (a
//! timeout, a dropped connection, a 503) is left open in the history and retried with its key
//! once the faults have healed ([`resolve`]): the controllers answer its first outcome, or apply
//! it then — either way inside the operation's interval, which runs from its invoke to that
//! answer. Without this, each unknown write stays in flight to the end of the history and the
//! linearizability search grows exponentially with them (70 in one CI run of `mixed`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::history::{Event, Kind, Op, Recorder, Ret};

/// How long a client waits for one answer before calling its outcome unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// The source a write of `value` to `key` stores: a valid policy carrying the value.
pub fn source(key: &str, value: u64) -> String {
    format!("policy \"{key}\" {{}} # v={value}")
}

/// The value in a source [`source`] wrote; `None` for anything else.
pub fn value_of(key: &str, src: &str) -> Option<u64> {
    let v: u64 = src.rsplit_once("# v=")?.1.parse().ok()?;
    (source(key, v) == src).then_some(v)
}

pub struct Shared {
    pub urls: Vec<String>,
    pub keys: Vec<String>,
    pub rec: Arc<Recorder>,
    pub http: reqwest::Client,
    /// The next process id (a client after an unknown outcome takes a new one).
    pub next_process: AtomicU64,
    pub stop: AtomicBool,
    /// The invokes of writes whose outcome is not known yet (no completion recorded), to be
    /// asked again with their idempotency keys.
    pub unresolved: Mutex<Vec<Event>>,
}

/// The idempotency key of a write of `value` to `key` (values are unique per run).
fn idempotency_key(key: &str, value: u64) -> String {
    format!("chaos-{key}-{value}")
}

/// One operation as the client performs it; its completion (kind, ret, error, raw).
pub async fn perform(
    s: &Shared,
    node: usize,
    key: &str,
    op: Op,
) -> (Kind, Option<Ret>, Option<String>, Option<String>) {
    let url = format!("{}/v1/policies/{key}", s.urls[node]);
    let req = match op {
        Op::Read => s.http.get(&url),
        Op::Write { value } => s
            .http
            .put(&url)
            .header("Idempotency-Key", idempotency_key(key, value))
            .json(&serde_json::json!({"source": source(key, value)})),
        Op::Cas { expect, value } => s
            .http
            .put(&url)
            .header("If-Match", format!("\"{expect}\""))
            .header("Idempotency-Key", idempotency_key(key, value))
            .json(&serde_json::json!({"source": source(key, value)})),
    };
    let resp = match req.timeout(OP_TIMEOUT).send().await {
        Ok(r) => r,
        // Nothing reached the controller: certainly not applied.
        Err(e) if e.is_connect() => return (Kind::Fail, None, Some(format!("connect: {e}")), None),
        Err(e) => return (Kind::Info, None, Some(e.to_string()), None),
    };
    let status = resp.status().as_u16();
    let body: serde_json::Value = match resp.json().await {
        Ok(b) => b,
        Err(e) => {
            return (Kind::Info, None, Some(format!("{status}: body: {e}")), None);
        }
    };
    let version = body["version"].as_u64();
    match (op, status) {
        (Op::Read, 200) => {
            let src = body["source"].as_str().unwrap_or_default();
            match (version, value_of(key, src)) {
                (Some(version), Some(v)) => (
                    Kind::Ok,
                    Some(Ret::Read {
                        version,
                        value: Some(v),
                    }),
                    None,
                    None,
                ),
                _ => (
                    Kind::Ok,
                    Some(Ret::Read {
                        version: version.unwrap_or(0),
                        value: Some(u64::MAX),
                    }),
                    None,
                    Some(src.to_string()),
                ),
            }
        }
        (Op::Read, 404) => (
            Kind::Ok,
            Some(Ret::Read {
                version: 0,
                value: None,
            }),
            None,
            None,
        ),
        (_, 200 | 201) => match version {
            Some(version) => (Kind::Ok, Some(Ret::Written { version }), None, None),
            None => (
                Kind::Info,
                None,
                Some(format!("{status} without version")),
                None,
            ),
        },
        (Op::Cas { .. }, 409 | 412) => (
            Kind::Fail,
            Some(Ret::CasFailed),
            Some(format!("{status} {}", body["type"])),
            None,
        ),
        _ => (
            Kind::Info,
            None,
            Some(format!("{status} {} {}", body["type"], body["detail"])),
            None,
        ),
    }
}

/// Records an operation around [`perform`]; the process id to go on with.
pub async fn recorded(
    s: &Shared,
    client: u64,
    process: u64,
    node: usize,
    key: &str,
    op: Op,
) -> (u64, Kind, Option<Ret>) {
    let mut e = Event {
        t_ms: 0,
        process,
        client,
        node: node as u64 + 1,
        key: key.to_string(),
        kind: Kind::Invoke,
        op,
        ret: None,
        error: None,
        raw: None,
    };
    s.rec.record(e.clone());
    let (kind, ret, error, raw) = perform(s, node, key, op).await;
    match op {
        // An unknown write stays open: `resolve` asks for its outcome later.
        Op::Write { .. } | Op::Cas { .. } if kind == Kind::Info => {
            let mut g = s.unresolved.lock().unwrap_or_else(|p| p.into_inner());
            g.push(e);
        }
        _ => {
            e.kind = kind;
            e.ret = ret;
            e.error = error;
            e.raw = raw;
            s.rec.record(e);
        }
    }
    let next = if kind == Kind::Info {
        s.next_process.fetch_add(1, Ordering::Relaxed)
    } else {
        process
    };
    (next, kind, ret)
}

/// Asks every write left open for its outcome, again with its idempotency key, on each
/// controller in turn until one answers definitely or `within` has passed; records each one's
/// completion (unknown at the deadline). Returns how many were resolved and how many stayed
/// unknown. Run once the faults have healed and no client writes any more.
pub async fn resolve(s: &Shared, within: Duration) -> (usize, usize) {
    let open = std::mem::take(&mut *s.unresolved.lock().unwrap_or_else(|p| p.into_inner()));
    let deadline = Instant::now() + within;
    let (mut resolved, mut unknown) = (0, 0);
    for mut e in open {
        let written = match e.op {
            Op::Write { value } | Op::Cas { value, .. } => idempotency_key(&e.key, value),
            Op::Read => String::new(),
        };
        let mut node = e.node.saturating_sub(1) as usize;
        let mut last = None;
        let answer = loop {
            let (kind, ret, error, raw) = perform(s, node % s.urls.len(), &e.key, e.op).await;
            // A retry that reached no controller says nothing of the first request (`perform`'s
            // only `Fail` without a return: the other, a compare-and-set's 409, carries one).
            let connect = kind == Kind::Fail && ret.is_none();
            if kind != Kind::Info && !connect {
                break Some((kind, ret, error, raw));
            }
            last = error;
            if Instant::now() >= deadline {
                break None;
            }
            node += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        match answer {
            Some((kind, ret, error, raw)) => {
                resolved += 1;
                e.kind = kind;
                e.ret = ret;
                e.error = error.map(|x| format!("resolved by {written}: {x}"));
                e.raw = raw;
            }
            None => {
                unknown += 1;
                e.kind = Kind::Info;
                e.ret = None;
                e.error = Some(format!(
                    "unresolved ({written}): {}",
                    last.unwrap_or_default()
                ));
            }
        }
        s.rec.record(e);
    }
    (resolved, unknown)
}

/// One client until `stop`.
pub async fn client(s: Arc<Shared>, client: u64, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (client.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    let mut process = s.next_process.fetch_add(1, Ordering::Relaxed);
    let mut seen: Vec<u64> = vec![0; s.keys.len()];
    let mut counter = 0u64;
    while !s.stop.load(Ordering::Relaxed) {
        let node = rng.random_range(0..s.urls.len());
        let k = rng.random_range(0..s.keys.len());
        counter += 1;
        let value = client * 1_000_000 + counter;
        let op = match rng.random_range(0..100) {
            0..50 => Op::Read,
            50..75 => Op::Write { value },
            _ => Op::Cas {
                expect: seen[k],
                value,
            },
        };
        let (next, kind, ret) = recorded(&s, client, process, node, &s.keys[k], op).await;
        process = next;
        match ret {
            Some(Ret::Read { version, .. }) | Some(Ret::Written { version }) => seen[k] = version,
            _ => {}
        }
        if kind != Kind::Ok {
            // Do not hammer a controller that is down.
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..100))).await;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_sources() {
        assert_eq!(value_of("p1", &source("p1", 42)), Some(42));
        assert_eq!(value_of("p1", &source("p2", 42)), None);
        assert_eq!(value_of("p1", "policy \"p1\" {} # v=4"), Some(4));
        assert_eq!(value_of("p1", "policy \"p1\" {} # v=4 "), None);
        assert_eq!(value_of("p1", "policy \"p1\" {} # v="), None);
    }
}
