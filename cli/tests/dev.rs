//! `tribune dev` starts a healthy 3-controller cluster quickly and stops it cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_base() -> u16 {
    // Three consecutive free ports above the base.
    loop {
        let base = common::free_port().saturating_sub(10);
        if base > 1024
            && (1..=3).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
}

#[test]
fn dev_starts_in_under_10s_and_cluster_status_shows_three_healthy_members() {
    let base = free_base();
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let mut dev = Command::new(common::BIN)
        .args(["dev", "--port-base", &base.to_string(), "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tribune dev");
    let stdout = dev.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let up = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("cluster is up") => break started.elapsed(),
            Ok(_) => {}
            Err(e) => {
                let _ = dev.kill();
                panic!("tribune dev did not come up: {e}");
            }
        }
    };
    eprintln!("tribune dev up in {up:?}");
    assert!(up < Duration::from_secs(10), "tribune dev took {up:?}");

    let endpoint = (1..=3)
        .map(|i| format!("http://127.0.0.1:{}", base + i))
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new(common::BIN)
        .args([
            "cluster",
            "status",
            "--output",
            "json",
            "--endpoint",
            &endpoint,
        ])
        .output()
        .expect("cluster status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let members = v["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{v}");
    assert!(
        members
            .iter()
            .all(|m| m["healthy"] == true && m["voter"] == true),
        "{v}"
    );
    assert!(v["leader"].as_u64().is_some(), "{v}");

    let table = Command::new(common::BIN)
        .args(["cluster", "status", "--endpoint", &endpoint])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("leader:") && text.matches("true").count() >= 6,
        "{text}"
    );

    // SIGTERM stops dev and every controller it started.
    unsafe {
        libc::kill(dev.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(_)) = dev.try_wait() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tribune dev did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpListener::bind(("127.0.0.1", base + i)).is_err() {
            assert!(
                Instant::now() < deadline,
                "controller on port {} still running",
                base + i
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
