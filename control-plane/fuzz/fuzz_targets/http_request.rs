//! The HTTP request path of a real controller (single node, mTLS configured, Raft on disk):
//! routes × methods × callers × path segments × headers × bodies. Properties, besides "no
//! panic": every refusal is an RFC 9457 problem; a caller without credentials never gets past
//! 401 on an API route; agent and controller certificates never succeed on the user API; no
//! 5xx other than 503.
//!
//! `cargo +nightly fuzz run http_request -- -max_len=4096` from `control-plane/`.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use tribune_controller::node::{Controller, ControllerConfig};
use tribune_controller::tls::PeerInfo;
use tribune_controller::validate::PolicyLanguage;
use tribune_tls::{PeerIdentity, TlsFiles, UserRole};

struct World {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
    _controller: Arc<Controller>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        // tmpfs when there is one: the fuzzer measures the request path, not the disk.
        let dir = tempfile::Builder::new()
            .prefix("tribune-fuzz-")
            .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            })
            .expect("temp dir");
        let tls = dir.path().join("tls");
        tribune_tls::ca::init(&tls, 30).expect("ca");
        let ctl = PeerIdentity::Controller { id: 1 };
        tribune_tls::ca::issue(&tls, &tls, &ctl, &Default::default()).expect("issue");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let controller = rt.block_on(async {
            let config = ControllerConfig {
                init: true,
                request_timeout_ms: 500,
                tls: Some(TlsFiles::in_dir(&tls, &ctl.file_stem())),
                ..ControllerConfig::new(
                    1,
                    "127.0.0.1:1".parse().expect("addr"),
                    dir.path().join("data"),
                )
            };
            let c = Controller::open(config, Arc::new(PolicyLanguage))
                .await
                .expect("controller");
            c.bootstrap().await.expect("bootstrap");
            for _ in 0..200 {
                if c.ready().is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            c
        });
        let router = tribune_controller::server::router(controller.clone());
        World {
            rt,
            router,
            _dir: dir,
            _controller: controller,
        }
    })
}

const ROUTES: &[&str] = &[
    "/v1/policies",
    "/v1/policies/{}",
    "/v1/enclaves",
    "/v1/enclaves/{}",
    "/v1/enclaves/{}/status",
    "/v1/hosts",
    "/v1/hosts/{}",
    "/v1/cluster",
    "/v1/cluster/members",
    "/v1/cluster/members/{}",
    "/v1/cluster/members/{}/promote",
    "/v1/log/sth",
    "/v1/log/keys",
    "/v1/log/entries?{}",
    "/v1/log/proof/inclusion?{}",
    "/v1/log/proof/consistency?{}",
    "/v1/tokens",
    "/v1/tokens/{}",
    "/healthz",
    "/readyz",
    "/{}",
];

const METHODS: &[Method] = &[Method::GET, Method::PUT, Method::POST, Method::DELETE, Method::PATCH];

fn caller(b: u8) -> Option<PeerIdentity> {
    let user = |role, tenant: Option<&str>| PeerIdentity::user(role, "fuzz", tenant).ok();
    match b % 8 {
        0 => user(UserRole::Admin, None),
        1 => user(UserRole::Operator, None),
        2 => user(UserRole::Auditor, None),
        3 => user(UserRole::Tenant, Some("acme")),
        4 => Some(PeerIdentity::Agent { host: "h1".into() }),
        5 => Some(PeerIdentity::Controller { id: 1 }),
        _ => None,
    }
}

/// Percent-encodes what a URI cannot carry, so the fuzzer reaches the router, not `http`'s
/// URI parser.
fn encode(seg: &[u8]) -> String {
    seg.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~%=&".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let w = world();
    let route = ROUTES[data[0] as usize % ROUTES.len()];
    let method = METHODS[data[1] as usize % METHODS.len()].clone();
    let who = caller(data[2]);
    let flags = data[3];
    let rest = &data[4..];
    let (seg, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let path = route.replace("{}", &encode(seg));
    let mut req = Request::builder().method(method).uri(path.as_str());
    if flags & 1 != 0 {
        req = req.header("content-type", "application/json");
    }
    if flags & 2 != 0 {
        req = req.header("if-match", format!("\"{}\"", flags >> 4));
    }
    if flags & 4 != 0 {
        req = req.header("authorization", String::from_utf8_lossy(body).into_owned());
    }
    let Ok(mut req) = req.body(Body::from(body.to_vec())) else {
        return;
    };
    req.extensions_mut().insert(ConnectInfo(PeerInfo {
        remote: SocketAddr::from(([127, 0, 0, 1], 9)),
        identity: who.clone(),
        cert_sha256: String::new(),
    }));
    let resp = w
        .rt
        .block_on(w.router.clone().oneshot(req))
        .expect("the router is infallible");
    let status = resp.status().as_u16();
    let problem = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    assert!(status < 500 || status == 503, "{status} for {path}");
    if status >= 400 {
        assert!(problem, "{status} for {path} is not a problem document");
    }
    let api = path.starts_with("/v1/");
    if api && (200..300).contains(&status) {
        let bearer = flags & 4 != 0;
        assert!(
            bearer || matches!(who, Some(PeerIdentity::User { .. })),
            "{status} for {path} as {who:?}"
        );
    }
});
