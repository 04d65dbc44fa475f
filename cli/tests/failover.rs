//! Elections with a pre-vote round (control-plane/src/node/election.rs), on real controllers in
//! network namespaces (the chaos harness's network: root, `ip` and `nft`, skipped loudly
//! otherwise), at the product defaults:
//!
//! - a follower cut off from both others for many election timeouts keeps its term (it never
//!   wins a pre-vote), and let back it follows the same leader at the same term: it does not
//!   depose a healthy leader;
//! - a killed leader is replaced by one of the survivors, at a higher term, and writes go on.
//!
//! Speed is measured by `tribune bench failover`, not here. The check is shown to catch the
//! old behaviour: with the test-only fault `no-pre-vote` (openraft's own election timer,
//! control-plane/src/test_fault.rs) the cut-off follower's term moves and the check says so.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tribune_chaos::run::net::{self, Net};
use tribune_chaos::run::nodes::{self, Nodes};
use tribune_chaos::run::proxy::Proxy;

const BIN: &str = env!("CARGO_BIN_EXE_tribune");
const DEADLINE: Duration = Duration::from_secs(60);
/// The tests run one at a time: six controllers on two cores at once could starve a leader
/// into a real election, which the check would rightly report.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// How long the follower stays cut off, as it sees it: 20 default election timeouts.
const CUT_OFF_MS: u64 = 3000;

async fn view(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http.get(format!("{url}/v1/cluster")).send().await.ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// (leader, term) once every one of `urls` answers, names the same leader at the same term, and
/// that leader says it leads.
async fn agreed(http: &reqwest::Client, urls: &[String]) -> Option<(u64, u64)> {
    let mut seen = vec![];
    for u in urls {
        let v = view(http, u).await?;
        seen.push((v["leader"].as_u64()?, v["term"].as_u64()?, v));
    }
    let (leader, term, _) = seen.first()?;
    let all_same = seen.iter().all(|(l, t, _)| l == leader && t == term);
    let leads = seen.iter().any(|(_, _, v)| {
        v["responder"].as_u64() == Some(*leader)
            && v["members"].as_array().is_some_and(|ms| {
                ms.iter()
                    .any(|m| m["id"] == *leader && m["status"]["state"] == "leader")
            })
    });
    (all_same && leads).then_some((*leader, *term))
}

/// A write through `url`, retried while nothing can have been applied (503, refused).
async fn put(http: &reqwest::Client, url: &str, name: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = http
            .put(format!("{url}/v1/policies/{name}"))
            .json(&json!({"source": format!("policy \"{name}\" {{}}")}))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => return,
            Ok(r) if r.status().as_u16() == 503 => {}
            Ok(r) => panic!(
                "PUT {name} via {url}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(e) if e.is_connect() || e.is_timeout() => {}
            Err(e) => panic!("PUT {name} via {url}: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "PUT {name} via {url}: no success"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A 3-controller cluster in namespaces and the leader it agreed on.
struct Run {
    _dir: tempfile::TempDir,
    net: Net,
    /// Every controller link goes through the harness's proxy (`chaos/README.md`); it adds
    /// no fault here, only the path the namespaces' `dnat` rules send links along.
    _proxy: Proxy,
    nodes: Nodes,
    urls: Vec<String>,
    http: reqwest::Client,
    leader: u64,
    term: u64,
}

/// Starts the cluster (`None`, said loudly, where namespaces cannot be made).
async fn start(env: Vec<(String, String)>) -> Option<Run> {
    if let Err(e) = net::can_run() {
        tribune_testkit::say_skipped(&e.to_string());
        return None;
    }
    net::sweep_stale();
    let dir = tempfile::tempdir().expect("temp dir");
    let net = Net::create(3, nodes::PORT).expect("the test network");
    let proxy = Proxy::start(&net.proxy_links(), 0)
        .await
        .expect("the links' proxy");
    let mut nodes = Nodes::new(Path::new(BIN), &net.slots, dir.path(), env);
    for i in 0..3 {
        nodes.start(i).expect("start a controller");
    }
    let urls = nodes.urls();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client");
    let deadline = Instant::now() + DEADLINE;
    let (leader, term) = loop {
        if let Some(a) = agreed(&http, &urls).await {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader\n{}",
            nodes.logs(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Some(Run {
        _dir: dir,
        net,
        _proxy: proxy,
        nodes,
        urls,
        http,
        leader,
        term,
    })
}

/// Cuts a follower off from both others until it has heard from no leader for
/// [`CUT_OFF_MS`], lets it back, and waits until the cluster settles. `Err` says how the
/// healthy leader was disturbed: the cut-off follower's term moved, or a term moved after it
/// came back.
async fn cut_off_and_back(r: &mut Run) -> Result<(), String> {
    let (http, urls, leader, term) = (&r.http, &r.urls, r.leader, r.term);
    let l = usize::try_from(leader - 1).expect("an index");
    put(http, &urls[l], "before-the-cut").await;

    // Cut one follower off from both others (its HTTP port stays reachable from here).
    let f = (l + 1) % 3;
    let follower = u64::try_from(f + 1).expect("an id");
    for other in (0..3).filter(|&o| o != f) {
        r.net.cut(f, other).expect("cut");
    }
    // Until it has heard from no leader for 20 election timeouts, its term must not move; the
    // others keep their leader and take writes meanwhile.
    let deadline = Instant::now() + DEADLINE;
    let mut writes = 0;
    loop {
        put(http, &urls[l], &format!("during-the-cut-{writes}")).await;
        writes += 1;
        if let Some(v) = view(http, &urls[f]).await {
            if v["term"].as_u64() != Some(term) {
                return Err(format!(
                    "the cut-off follower's term moved from {term}: it stood for election without a pre-vote\n{v}"
                ));
            }
            let me = v["members"]
                .as_array()
                .and_then(|ms| ms.iter().find(|m| m["id"] == follower).cloned())
                .unwrap_or(Value::Null);
            if me["status"]["leader_silence_ms"]
                .as_u64()
                .is_some_and(|s| s >= CUT_OFF_MS)
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the follower never reported {CUT_OFF_MS} ms of silence\n{}",
            r.nodes.logs(30)
        );
    }

    // Back: it follows the same leader at the same term; no election happens.
    r.net.heal().expect("heal");
    let deadline = Instant::now() + DEADLINE;
    loop {
        for u in urls {
            if let Some(v) = view(http, u).await
                && v["term"].as_u64() > Some(term)
            {
                return Err(format!(
                    "a term moved from {term} after the follower came back (the leader was deposed)\n{v}"
                ));
            }
        }
        if agreed(http, urls).await == Some((leader, term)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not settle on leader {leader} at term {term}\n{}",
            r.nodes.logs(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    put(http, &urls[f], "after-the-rejoin").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_rejoins_without_deposing_the_leader_and_a_killed_leader_is_replaced() {
    let _one_at_a_time = SERIAL.lock().await;
    let Some(mut r) = start(vec![("RUST_LOG".into(), "info".into())]).await else {
        return;
    };
    if let Err(e) = cut_off_and_back(&mut r).await {
        panic!("{e}\n{}", r.nodes.logs(30));
    }
    assert_eq!(agreed(&r.http, &r.urls).await, Some((r.leader, r.term)));

    // kill -9 the leader: a survivor leads at a higher term, and writes go on.
    let l = usize::try_from(r.leader - 1).expect("an index");
    r.nodes.kill9(l);
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != l)
        .map(|i| r.urls[i].clone())
        .collect();
    let deadline = Instant::now() + DEADLINE;
    let (next, next_term) = loop {
        if let Some((n, t)) = agreed(&r.http, &survivors).await
            && n != r.leader
        {
            break (n, t);
        }
        assert!(
            Instant::now() < deadline,
            "no new leader after the kill\n{}",
            r.nodes.logs(30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(next_term > r.term, "new leader {next} at term {next_term}");
    for (i, u) in survivors.iter().enumerate() {
        put(&r.http, u, &format!("after-the-kill-{i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pre_vote_the_check_sees_the_leader_disturbed() {
    let _one_at_a_time = SERIAL.lock().await;
    let fault = tribune_controller::test_fault::Fault::NoPreVote;
    let env = vec![
        ("RUST_LOG".into(), "info".into()),
        (
            tribune_controller::test_fault::VAR.into(),
            fault.name().into(),
        ),
    ];
    let Some(mut r) = start(env).await else {
        return;
    };
    match cut_off_and_back(&mut r).await {
        Err(e) => eprintln!("caught, as it must be: {e}"),
        Ok(()) => panic!(
            "with openraft's own timer the cut-off follower went unnoticed: the check is blind\n{}",
            r.nodes.logs(30)
        ),
    }
}
