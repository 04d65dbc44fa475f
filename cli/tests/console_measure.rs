//! Figures for bench/README.md (not a timed test: it asserts only that it could measure):
//!
//! 1. Page weight and time to interactive of the console's first load on `tribune dev`, in
//!    headless Chromium with the cache disabled (Performance API: transfer sizes, the
//!    `tribune-ready` mark the app sets when its first page has its data on screen).
//! 2. The enclave list with 100 live enclaves at 1 s updates (97 more copies of the demo's
//!    `web` enclave, real processes on h1): main-thread time of the page per second of wall
//!    time (CDP `Performance.getMetrics`: TaskDuration, ScriptDuration, LayoutDuration),
//!    frames and long frames (requestAnimationFrame gaps over 50 ms), events received.
//!
//! `cargo test -p tribune --test console_measure -- --ignored --nocapture`

#[path = "console/browser.rs"]
mod browser;
mod common;

use std::time::Duration;

use browser::{Browser, Dev};
use serde_json::{Value, json};

/// chromedriver's passthrough to the DevTools protocol.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"cmd": self.cmd, "params": self.params}).to_string()),
        )
    }
}

async fn cdp(b: &Browser, cmd: &'static str, params: Value) -> Value {
    b.c.issue_cmd(Cdp { cmd, params })
        .await
        .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
}

async fn metrics(b: &Browser) -> std::collections::BTreeMap<String, f64> {
    let v = cdp(b, "Performance.getMetrics", json!({})).await;
    v["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["name"].as_str()?.to_string(), m["value"].as_f64()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture and copy the figures to bench/README.md"]
async fn console_page_weight_time_to_interactive_and_100_live_enclaves() {
    let Some(tools) = browser::tools("console_measure") else {
        return;
    };
    let dev = Dev::start();
    let admin = dev.token(&["--name", "console", "--role", "admin"]);
    let b = Browser::start(&tools, &dev.url("/ui/")).await;
    b.login(&admin).await;

    // 1. A cold load of an enclave page (cache disabled: every byte travels).
    cdp(&b, "Network.enable", json!({})).await;
    cdp(
        &b,
        "Network.setCacheDisabled",
        json!({"cacheDisabled": true}),
    )
    .await;
    b.go("/ui/enclaves/web").await;
    b.wait_until(
        "performance.getEntriesByName('tribune-ready').length > 0",
        Duration::from_secs(30),
    )
    .await;
    let load: Value = b
        .eval(
            "const nav = performance.getEntriesByType('navigation')[0];
             const res = performance.getEntriesByType('resource');
             const isApi = r => new URL(r.name).pathname.startsWith('/v1/');
             const sum = rs => rs.reduce((n, r) => n + r.transferSize, 0);
             const body = rs => rs.reduce((n, r) => n + r.encodedBodySize, 0);
             const assets = res.filter(r => !isApi(r));
             return {
               assets: assets.length + 1,
               asset_bytes_transferred: nav.transferSize + sum(assets),
               asset_bytes_body: nav.encodedBodySize + body(assets),
               api_requests: res.filter(isApi).length,
               api_bytes_transferred: sum(res.filter(isApi)),
               dom_content_loaded_ms: nav.domContentLoadedEventEnd,
               load_ms: nav.loadEventEnd,
               ready_ms: performance.getEntriesByName('tribune-ready')[0].startTime,
             };",
        )
        .await;
    println!("FIGURE first load of /ui/enclaves/web (cache disabled): {load}");
    cdp(
        &b,
        "Network.setCacheDisabled",
        json!({"cacheDisabled": false}),
    )
    .await;

    // 2. 100 enclaves live: 97 copies of `web` (its launch spec is on the hosts' allow-list).
    let web = b.api("GET", "/v1/enclaves/web", None).await;
    for i in 1..=97 {
        let mut e = web.clone();
        e["id"] = json!(format!("web-{i:03}"));
        e["version"] = json!(0);
        b.api("PUT", &format!("/v1/enclaves/web-{i:03}"), Some(e))
            .await;
    }
    b.go("/ui/enclaves").await;
    // Wait until every row's sparkline has points (each enclave reported at least twice).
    b.wait_until(
        "[...document.querySelectorAll('#enclaves svg.spark polyline')].filter(p => (p.getAttribute('points') || '').trim().split(' ').length >= 2).length >= 100",
        Duration::from_secs(120),
    )
    .await;
    cdp(&b, "Performance.enable", json!({})).await;
    b.c.execute(
        "window.frames_ = {n: 0, long: 0, last: performance.now(), worst: 0};
         const tick = (t) => { const f = window.frames_; const d = t - f.last; f.n++; if (d > 50) f.long++; f.worst = Math.max(f.worst, d); f.last = t; requestAnimationFrame(tick); };
         requestAnimationFrame(tick);
         window.events0_ = globalThis.tribuneEvents || 0;",
        vec![],
    )
    .await
    .expect("frame counter");
    let before = metrics(&b).await;
    let seconds = 30.0;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let after = metrics(&b).await;
    let frames: Value = b
        .eval("return {frames: window.frames_.n, long_frames: window.frames_.long, worst_frame_ms: Math.round(window.frames_.worst), events: (globalThis.tribuneEvents || 0) - window.events0_, rows: document.querySelectorAll('#enclaves tr[data-enclave]').length}")
        .await;
    let d = |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    println!(
        "FIGURE 100 live enclaves on /ui/enclaves over {seconds} s: main thread busy {:.1}% (script {:.1}%, layout {:.1}%, style {:.1}%); {frames}",
        d("TaskDuration") / seconds * 100.0,
        d("ScriptDuration") / seconds * 100.0,
        d("LayoutDuration") / seconds * 100.0,
        d("RecalcStyleDuration") / seconds * 100.0,
    );
    assert!(frames["rows"].as_u64().unwrap_or(0) >= 100, "{frames}");
    assert!(
        frames["events"].as_u64().unwrap_or(0) > 0,
        "no live events in {seconds} s: {frames}"
    );
    b.shot("measure-100-enclaves").await;
    b.close().await;
}
