//! What a VM costs while it is moved paused (root + qemu-system-x86_64), issue 14's breach
//! phase: the ladder's `migrate` step suspends and caps the VM before the leader moves it.
//! - The target's VM, waiting for its state, reports no usage (it is not placed there until the
//!   commit's plan names it) and waits without its CPU cap (its vCPUs run nothing), which that
//!   plan writes before it resumes it.
//! - The source's VM, held paused by its plan, is sent without its CPU cap, and a rollback
//!   writes the cap again before anything may resume it.
//!
//! Under a 100m cap QEMU's own start, send and load took several times longer, and a usage
//! window sent while waiting was refused and broke the new usage chain: no decision saw the VM
//! for ~2 s after it arrived (`tribune bench migrate`, bench/README.md).
// The lock serialises tests across threads; each test owns its runtime, so holding it
// over awaits cannot deadlock.
#![allow(clippy::await_holding_lock)]

mod common;

use std::time::Duration;

use common::*;
use tokio::sync::mpsc;
use tribune_agent::collector::UsageWindow;
use tribune_agent::runtime::EnclaveStatus;
use tribune_agent::runtime::migration::MigrateOptions;
use tribune_agent::{Agent, RunState, RuntimeKind, ToLink};

fn windows_of(rx: &mut mpsc::Receiver<ToLink>, name: &str) -> Vec<UsageWindow> {
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        if let ToLink::Windows(w) = m {
            out.extend(w.into_iter().filter(|w| w.enclave == name));
        }
    }
    out
}

/// Starts sending `vm` from `src` to a port nobody listens on (the job fails: a rollback).
fn send_to(
    src: &mut Agent,
    port: u16,
) -> tokio::task::JoinHandle<
    tribune_agent::Result<tribune_agent::runtime::migration::MigrationProgress>,
> {
    src.migrate_out(
        "vm",
        &format!("tcp:127.0.0.1:{port}"),
        MigrateOptions::default(),
        None,
    )
    .unwrap()
}

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_waiting_for_its_state_reports_no_usage_and_is_capped_when_a_plan_names_it() {
    if !can_run_qemu("migrate-wait") {
        return;
    }
    let _g = lock();
    let (dst_cfg, _dst_dir) = config("mwu-dst", RuntimeKind::Qemu);
    let mut dst = Agent::start(dst_cfg).await.unwrap();
    let (up_tx, mut up_rx) = mpsc::channel(64);
    dst.set_uplink(up_tx);
    let port = tribune_testkit::free_port();
    let mut capped = qemu_vm(2);
    capped.limits.cpu_millicores = Some(100);
    dst.migrate_in("vm", &capped, &format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let (cg, g) = (dst.cgroups().clone(), dst.group_of("vm"));
    assert_eq!(cg.cpu_cap(&g).unwrap(), None, "waiting, paused: no cap");
    let tick = Duration::from_millis(100);
    let mut last_sample_ns = 0;
    for _ in 0..4 {
        tokio::time::sleep(tick).await;
        last_sample_ns = unix_ns();
        dst.sample().await;
    }
    dst.reconcile().await;
    assert_eq!(
        cg.cpu_cap(&g).unwrap(),
        None,
        "reconcile leaves it uncapped"
    );
    let waiting = windows_of(&mut up_rx, "vm");
    assert!(
        waiting.is_empty(),
        "a VM not yet placed here reported usage: {waiting:?}"
    );
    // Committed: the plan names it (its state has not come; it waits on, now placed here).
    dst.apply(plan(1, &[("vm", capped)])).await.unwrap();
    assert_eq!(cg.cpu_cap(&g).unwrap(), Some(100), "named: capped");
    dst.reconcile().await;
    assert_eq!(
        cg.cpu_cap(&g).unwrap(),
        Some(100),
        "reconcile keeps the cap"
    );
    dst.sample().await;
    let named = windows_of(&mut up_rx, "vm");
    assert_eq!(named.len(), 1, "{named:?}");
    assert!(
        named[0].start_unix_ns >= last_sample_ns,
        "the first window covers the wait (from {} ns before its last sample): {named:?}",
        last_sample_ns.saturating_sub(named[0].start_unix_ns)
    );
    shutdown_clean(dst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_source_is_sent_uncapped_and_capped_again_by_its_rollback() {
    if !can_run_qemu("migrate-paused-cap") {
        return;
    }
    let _g = lock();
    let (src_cfg, _src_dir) = config("mpc-src", RuntimeKind::Qemu);
    let mut src = Agent::start(src_cfg).await.unwrap();
    let mut running = qemu_vm(1);
    running.limits.cpu_millicores = Some(100);
    src.apply(plan(1, &[("vm", running.clone())]))
        .await
        .unwrap();
    // A running VM keeps its cap while it is sent: its vCPUs run.
    let (cg, g) = (src.cgroups().clone(), src.group_of("vm"));
    let nobody = tribune_testkit::free_port();
    let job = send_to(&mut src, nobody);
    assert_eq!(cg.cpu_cap(&g).unwrap(), Some(100), "running: capped");
    let _ = tokio::time::timeout(Duration::from_secs(60), job)
        .await
        .expect("migration ends");
    src.rollback_out("vm").await.unwrap();
    assert_eq!(cg.cpu_cap(&g).unwrap(), Some(100));

    // Suspended (the ladder's `migrate` step): sent without the cap, capped again on rollback.
    let mut held = running.clone();
    held.state = RunState::Suspend;
    src.apply(plan(2, &[("vm", held)])).await.unwrap();
    assert_eq!(
        status_of(&mut src, "vm").await,
        Some(EnclaveStatus::Suspended)
    );
    let job = send_to(&mut src, nobody);
    assert_eq!(cg.cpu_cap(&g).unwrap(), None, "paused, sent: no cap");
    src.reconcile().await;
    assert_eq!(
        cg.cpu_cap(&g).unwrap(),
        None,
        "reconcile leaves it uncapped"
    );
    let end = tokio::time::timeout(Duration::from_secs(60), job)
        .await
        .expect("migration ends")
        .unwrap();
    if let Ok(p) = &end {
        assert!(!p.succeeded(), "nobody listens: {p:?}");
    }
    src.rollback_out("vm").await.unwrap();
    assert_eq!(cg.cpu_cap(&g).unwrap(), Some(100), "rolled back: capped");
    src.reconcile().await;
    assert_eq!(cg.cpu_cap(&g).unwrap(), Some(100));
    assert_eq!(
        status_of(&mut src, "vm").await,
        Some(EnclaveStatus::Suspended)
    );
    shutdown_clean(src).await;
}
