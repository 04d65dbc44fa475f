//! Idle sockets cannot starve TLS: with a thousand TCP connections open to a controller that
//! never start a handshake, health probes over TLS — from the same address — still answer.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

/// How many idle connections the flood holds.
const IDLE_CONNECTIONS: usize = 1000;
/// Each probe must answer within this (a handshake takes milliseconds; generous for 2 shared
/// cores). Before the fix a probe waited behind the flood for the 10 s handshake timeout.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);
/// How long one idle connection may take to be established.
const CONNECT_DEADLINE: Duration = Duration::from_secs(3);

/// Raises this process's open-file limit (inherited by the controller it starts) so that the
/// flood, the controller's sockets and the probes fit.
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur >= want as libc::rlim_t {
        return;
    }
    lim.rlim_cur = (want as libc::rlim_t).min(lim.rlim_max);
    // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard one is
    // always allowed.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_starve_tls_probes() {
    raise_nofile(4 * IDLE_CONNECTIONS as u64);
    let c = Cluster::start_tls(1, &[]);
    c.wait_leader().await;
    let addr = c.nodes[&1].addr.clone();
    let url = c.url(1, "/healthz");

    // A fresh TLS connection (and so a fresh handshake) for every probe.
    let dir = c.tls_dir.clone().expect("tls cluster");
    let files = tribune_tls::TlsFiles::in_dir(&dir, common::TEST_CLIENT_STEM);
    let tls = tribune_tls::ClientTls::from_files(&files).expect("client tls");
    let probe = reqwest::Client::builder()
        .use_preconfigured_tls(tls.rustls_config(&[b"http/1.1"]).expect("rustls config"))
        .pool_max_idle_per_host(0)
        .timeout(PROBE_DEADLINE)
        .build()
        .expect("probe client");

    // The flood: TCP connected, not a byte sent, all at once. Held until the end of the test.
    // A connection the controller does not accept within the deadline is left out: the kernel's
    // accept queue is full, which is the starvation the probes below would meet.
    let connects: Vec<_> = (0..IDLE_CONNECTIONS)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                tokio::time::timeout(CONNECT_DEADLINE, tokio::net::TcpStream::connect(addr)).await
            })
        })
        .collect();
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for c in connects {
        if let Ok(Ok(Ok(s))) = c.await {
            idle.push(s);
        }
    }
    assert!(
        idle.len() > 300,
        "the flood holds more connections than there are handshake slots: {}",
        idle.len()
    );

    let mut answered = Vec::new();
    for n in 1..=6 {
        let start = Instant::now();
        let r = probe.get(&url).send().await;
        let took = start.elapsed();
        match r {
            Ok(r) if r.status().is_success() => {
                let body = r.text().await.unwrap_or_default();
                assert_eq!(body, "ok", "probe {n}");
                answered.push(took);
            }
            Ok(r) => panic!("probe {n}: {} after {took:?}", r.status()),
            Err(e) => panic!(
                "probe {n} of 6 failed after {took:?} with {} idle connections open: {e}\n{}",
                idle.len(),
                c.logs()
            ),
        }
    }
    assert_eq!(answered.len(), 6, "6 of 6 probes answered: {answered:?}");
    drop(idle);
}
