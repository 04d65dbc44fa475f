//! Helpers of the console's browser tests: finding Chromium, chromedriver and axe-core; a
//! `tribune dev` of the test's own; a WebDriver session with screenshots and axe-core runs.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::{Value, json};

use super::common;

/// What the browser tests need from the machine.
pub struct Tools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
    /// axe-core's `axe.min.js`; `None`: the accessibility checks are skipped (said loudly).
    pub axe: Option<PathBuf>,
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// Default place scripts/test installs axe-core (outside the repository).
pub const AXE_DEFAULT: &str = "/var/cache/tribune/npm/node_modules/axe-core/axe.min.js";

/// The tools, or `None` after printing `skipped: TEST: …`.
pub fn tools(test: &str) -> Option<Tools> {
    let Some(chromium) = which(&["chromium", "chromium-browser", "google-chrome"]) else {
        tribune_testkit::say_skipped(&format!(
            "{test}: no chromium on PATH (apt-get install chromium chromium-driver; scripts/test does)"
        ));
        return None;
    };
    let Some(chromedriver) = which(&["chromedriver"]) else {
        tribune_testkit::say_skipped(&format!(
            "{test}: no chromedriver on PATH (apt-get install chromium-driver)"
        ));
        return None;
    };
    let axe = std::env::var_os("TRIBUNE_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(AXE_DEFAULT));
    let axe = if axe.is_file() {
        Some(axe)
    } else {
        tribune_testkit::say_skipped(&format!(
            "{test}: accessibility checks: no axe-core at {} (scripts/test installs it; or set TRIBUNE_AXE_JS)",
            axe.display()
        ));
        None
    };
    Some(Tools {
        chromium,
        chromedriver,
        axe,
    })
}

/// A `tribune dev` of this test's own (ports, data dir, CLI config), stopped on drop.
pub struct Dev {
    child: Child,
    pub base: u16,
    pub dir: tempfile::TempDir,
    config: PathBuf,
}

impl Dev {
    pub fn start() -> Dev {
        // The controllers on base+1..=3, the demo agents' metrics on base+80 and base+81.
        let base = tribune_testkit::ports::free_port_base(81);
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("client.toml");
        let (mut child, rx) = common::spawn_dev(base, dir.path(), &config);
        let mut printed = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains("Ctrl-C") => break,
                Ok(line) => printed.push(line),
                Err(e) => {
                    let _ = child.kill();
                    panic!("tribune dev did not come up: {e}\n{}", printed.join("\n"));
                }
            }
        }
        let printed = printed.join("\n");
        let console = format!("https://127.0.0.1:{}/ui/", base + 1);
        assert!(
            printed.contains(&format!("Web console: {console}")),
            "dev prints the console URL:\n{printed}"
        );
        assert!(
            printed.contains("tribune token create --name console --role admin"),
            "dev says how to log in:\n{printed}"
        );
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Dev {
            child,
            base,
            dir,
            config,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.base + 1)
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(common::BIN)
            .args(args)
            .env("TRIBUNE_CONFIG", &self.config)
            .env_remove("TRIBUNE_ENDPOINT")
            .env_remove("TRIBUNE_TOKEN")
            .output()
            .expect("run tribune")
    }

    /// `tribune token create ARGS --ttl 1h`: the secret.
    pub fn token(&self, args: &[&str]) -> String {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--ttl", "1h"]);
        let out = self.cli(&all);
        let text = common::output_text(&out);
        assert!(out.status.success(), "token create: {text}");
        text.split_whitespace()
            .find(|w| w.starts_with("tbt_"))
            .unwrap_or_else(|| panic!("no token in: {text}"))
            .to_string()
    }

    /// `tribune policy put` of `source` (someone else's change, through the CLI).
    pub fn put_policy(&self, source: &str) {
        let file = self.dir.path().join("theirs.tribune");
        std::fs::write(&file, source).expect("write policy");
        let out = self.cli(&["policy", "put", &file.display().to_string()]);
        assert!(
            out.status.success(),
            "policy put: {}",
            common::output_text(&out)
        );
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SIGINT: dev stops its controllers and agents.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` with the first line containing `from` changed to contain `to`; and that line (1-based).
pub fn with_line_replaced(text: &str, from: &str, to: &str) -> (String, usize) {
    let line = text
        .lines()
        .position(|l| l.contains(from))
        .unwrap_or_else(|| panic!("{from:?} not in:\n{text}"))
        + 1;
    (text.replacen(from, to, 1), line)
}

/// A chromedriver, a headless Chromium session on it, and where screenshots go.
pub struct Browser {
    driver: Child,
    pub c: Client,
    origin: String,
    axe: Option<String>,
    pub shots: PathBuf,
}

impl Drop for Browser {
    /// chromedriver runs in a process group of its own, with the Chromium it starts: the whole
    /// group goes, so a failed test leaves no browser behind.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    pub async fn start(tools: &Tools, start_url: &str) -> Browser {
        let port = tribune_testkit::ports::free_port();
        use std::os::unix::process::CommandExt;
        let driver = Command::new(&tools.chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        // The dev cluster's CA is its own: the browser is told to accept it for this session
        // (a person imports ca.pem instead; docs/console.md).
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": tools.chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let c = loop {
            let mut b =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            b.capabilities(caps.clone());
            match b.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver session: {e}"),
            }
        };
        let origin = start_url.split("/ui/").next().expect("url").to_string();
        c.goto(start_url).await.expect("open the console");
        let shots = PathBuf::from(
            std::env::var("CARGO_TARGET_DIR")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_string()),
        )
        .join("console-screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        let axe = tools
            .axe
            .as_ref()
            .map(|p| std::fs::read_to_string(p).expect("read axe-core"));
        Browser {
            driver,
            c,
            origin,
            axe,
            shots,
        }
    }

    pub async fn close(&self) {
        let _ = self.c.clone().close().await;
    }

    pub async fn go(&self, path: &str) {
        self.c
            .goto(&format!("{}{path}", self.origin))
            .await
            .expect("navigate");
        self.wait_until(
            &format!(
                "document.body.dataset.ready === {:?}",
                path.split('?').next().unwrap_or(path)
            ),
            Duration::from_secs(30),
        )
        .await;
    }

    pub async fn login(&self, token: &str) {
        let field = self.wait_for("#token", Duration::from_secs(20)).await;
        field.send_keys(token).await.expect("type the token");
        self.click("#login button[type=submit]").await;
        self.wait_until(
            "!document.getElementById('nav').hidden && !!document.body.dataset.ready",
            Duration::from_secs(20),
        )
        .await;
    }

    pub async fn visible_nav(&self) -> Vec<String> {
        self.eval("return [...document.querySelectorAll('#nav a')].filter(a => !a.hidden).map(a => a.textContent)")
            .await
    }

    pub async fn wait_for(&self, css: &str, within: Duration) -> Element {
        match self
            .c
            .wait()
            .at_most(within)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                self.shot("failed").await;
                let body: String = self
                    .eval("return document.getElementById('main').innerText")
                    .await;
                panic!("{css} did not appear within {within:?}: {e}\npage: {body}");
            }
        }
    }

    /// Waits until the JavaScript expression is true.
    pub async fn wait_until(&self, expr: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self
                .c
                .execute(&format!("return !!({expr})"), vec![])
                .await
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if ok {
                return;
            }
            if Instant::now() > deadline {
                self.shot("failed").await;
                let body: String = self
                    .eval("return document.getElementById('main').innerText")
                    .await;
                panic!("`{expr}` not true within {within:?}; page: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A real click; parts of the page redraw live, so a stale element is looked up again.
    pub async fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            let e = self.wait_for(css, Duration::from_secs(10)).await;
            match e.click().await {
                Ok(()) => return,
                Err(err) if tries < 10 && err.to_string().contains("stale") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("click {css}: {err}"),
            }
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css, Duration::from_secs(10))
            .await
            .text()
            .await
            .expect("text")
    }

    pub async fn text_when(&self, css: &str, within: Duration) -> String {
        self.wait_for(css, within).await.text().await.expect("text")
    }

    pub async fn eval<T: serde::de::DeserializeOwned>(&self, script: &str) -> T {
        let v = self
            .c
            .execute(script, vec![])
            .await
            .expect("execute script");
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{script}: {e}: {v}"))
    }

    pub async fn now_ms(&self) -> i64 {
        self.eval("return Date.now()").await
    }

    pub async fn set_source(&self, source: &str) {
        self.c
            .execute(
                "const a = document.getElementById('source'); a.value = arguments[0]; a.dispatchEvent(new Event('input'));",
                vec![json!(source)],
            )
            .await
            .expect("set the editor's text");
    }

    /// An API call from the page, with the logged-in token: the JSON answer.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self
            .c
            .execute_async(
                "const [m, p, b, done] = arguments;
                 fetch(p, {method: m, headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('tribune.token'), 'Content-Type': 'application/json'},
                           body: b === null ? undefined : JSON.stringify(b)})
                   .then(async r => done({status: r.status, body: await r.json().catch(() => null)}))
                   .catch(e => done({status: 0, body: String(e)}));",
                vec![json!(method), json!(path), body.unwrap_or(Value::Null)],
            )
            .await
            .expect("fetch from the page");
        let status = v["status"].as_u64().unwrap_or(0);
        assert!((200..300).contains(&status), "{method} {path}: {v}");
        v["body"].clone()
    }

    pub async fn api_status(&self, method: &str, path: &str) -> u64 {
        let v = self
            .c
            .execute_async(
                "const [m, p, done] = arguments;
                 fetch(p, {method: m, headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('tribune.token')}})
                   .then(r => done(r.status)).catch(() => done(0));",
                vec![json!(method), json!(path)],
            )
            .await
            .expect("fetch from the page");
        v.as_u64().unwrap_or(0)
    }

    /// The enclaves named by the events of `/v1/usage/stream` (every enclave the logged-in
    /// token may watch) over `ms` milliseconds, read from the page with its token.
    pub async fn streamed_enclaves(&self, ms: u64) -> Vec<String> {
        let v = self
            .c
            .execute_async(
                "const [ms, done] = arguments;
                 const seen = new Set();
                 const ctl = new AbortController();
                 setTimeout(() => ctl.abort(), ms);
                 fetch('/v1/usage/stream', {signal: ctl.signal, headers: {Authorization: 'Bearer ' + sessionStorage.getItem('tribune.token')}})
                   .then(async r => {
                     const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
                     for (;;) {
                       const {value, done: end} = await reader.read();
                       if (end) break;
                       for (const m of value.matchAll(/\"enclave\":\"([^\"]+)\"/g)) seen.add(m[1]);
                     }
                   })
                   .catch(() => {})
                   .finally(() => done([...seen].sort()));",
                vec![json!(ms)],
            )
            .await
            .expect("read the usage stream");
        serde_json::from_value(v).unwrap_or_default()
    }

    pub async fn shot(&self, name: &str) {
        if let Ok(png) = self.c.screenshot().await {
            let path = self.shots.join(format!("{name}.png"));
            if std::fs::write(&path, png).is_ok() {
                eprintln!("screenshot: {}", path.display());
            }
        }
    }

    /// axe-core on the current page: no serious or critical violation.
    pub async fn axe(&self, page: &str) {
        let Some(axe) = &self.axe else {
            eprintln!("skipped: axe-core check of {page} (not installed)");
            return;
        };
        // Injected through the driver (the page's CSP allows no inline script, rightly).
        self.c.execute(axe, vec![]).await.expect("inject axe-core");
        let v = self
            .c
            .execute_async(
                "const done = arguments[0];
                 axe.run(document, {resultTypes: ['violations']})
                   .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))
                   .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));",
                vec![],
            )
            .await
            .expect("run axe-core");
        let all = v.as_array().cloned().unwrap_or_default();
        let bad: Vec<&Value> = all
            .iter()
            .filter(|x| matches!(x["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        eprintln!(
            "axe-core on {page}: {} violation(s), {} serious or critical",
            all.len(),
            bad.len()
        );
        assert!(
            bad.is_empty(),
            "axe-core on {page}: {}",
            serde_json::to_string_pretty(&bad).unwrap_or_default()
        );
    }
}
