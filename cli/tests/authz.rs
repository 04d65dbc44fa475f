//! Access control end to end (issue 11, findings 1–4): every HTTP route and every gRPC method
//! of the control API against every kind of caller — admin, operator, auditor, two tenants, an
//! agent and a controller certificate, a CA-only caller and bearer tokens — on a real mTLS
//! controller; the audit trail names the authenticated identity, never a header.

mod common;
#[path = "authz/grpc.rs"]
mod grpc;

use std::collections::BTreeMap;

use common::{Cluster, TEST_CLIENT_STEM};
use reqwest::Method;
use serde_json::{Value, json};
use tribune_proto::v1 as pb;
use tribune_proto::v1::control_service_client::ControlServiceClient;
use tribune_tls::{ClientTls, PeerIdentity, TlsFiles, UserRole};

const ACME_POLICY: &str =
    "policy \"acme-pol\" {\n  match tenant == \"acme\"\n  limit { cpu = 1 }\n}\n";
const GLOBAL_POLICY: &str = "policy \"global\" {\n  limit { cpu = 2 }\n}\n";

/// The callers of the matrix, by a short name.
const WHO: [&str; 8] = [
    "admin",
    "operator",
    "auditor",
    "tenant-acme",
    "tenant-globex",
    "agent",
    "controller",
    "none",
];

struct Callers {
    tls: BTreeMap<&'static str, ClientTls>,
}

impl Callers {
    fn new(c: &Cluster) -> Self {
        let dir = c.tls_dir.clone().expect("tls cluster");
        let ca = dir.join("ca.pem");
        let user = |role, name: &str, tenant: Option<&str>| {
            let id = PeerIdentity::user(role, name, tenant).expect("identity");
            common::issue(&dir, &id)
        };
        let files: Vec<(&'static str, TlsFiles)> = vec![
            ("admin", TlsFiles::in_dir(&dir, TEST_CLIENT_STEM)),
            ("operator", user(UserRole::Operator, "olive", None)),
            ("auditor", user(UserRole::Auditor, "audrey", None)),
            ("tenant-acme", user(UserRole::Tenant, "tess", Some("acme"))),
            (
                "tenant-globex",
                user(UserRole::Tenant, "gus", Some("globex")),
            ),
            (
                "agent",
                common::issue(&dir, &PeerIdentity::Agent { host: "h1".into() }),
            ),
            ("controller", TlsFiles::in_dir(&dir, "controller-1")),
        ];
        let mut tls: BTreeMap<&'static str, ClientTls> = files
            .into_iter()
            .map(|(k, f)| (k, ClientTls::from_files(&f).expect("client tls")))
            .collect();
        tls.insert("none", ClientTls::load(&ca, None).expect("ca-only tls"));
        Self { tls }
    }

    fn http(&self, who: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.tls[who].rustls_config(&[b"http/1.1"]).expect("tls"))
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .expect("client")
    }
}

async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = http.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.expect("request sent");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// What a caller must get from a route.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// Authorised: anything but 401/403 (writes carry a precondition that fails, so nothing
    /// changes: 409; bad ids: 400).
    Allowed,
    Forbidden,
    Unauthenticated,
    /// Authorised for the route, but the object belongs to another tenant: hidden.
    Hidden,
}

fn want(allowed: &[&str], hidden: &[&str], who: &str) -> Want {
    if who == "none" {
        Want::Unauthenticated
    } else if allowed.contains(&who) {
        Want::Allowed
    } else if hidden.contains(&who) {
        Want::Hidden
    } else {
        Want::Forbidden
    }
}

fn check(route: &str, who: &str, want: Want, status: u16, body: &Value) {
    let ok = match want {
        Want::Allowed => status != 401 && status != 403 && status < 500,
        Want::Forbidden => status == 403,
        Want::Unauthenticated => status == 401,
        Want::Hidden => status == 404,
    };
    assert!(ok, "{route} as {who}: wanted {want:?}, got {status} {body}");
    if matches!(want, Want::Forbidden | Want::Unauthenticated) {
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.contains("/problems/")),
            "{route} as {who}: not a problem document: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_and_method_against_every_role() {
    let c = Cluster::start_tls(1, &[]);
    let leader = c.wait_leader().await;
    let callers = Callers::new(&c);
    let admin = callers.http("admin");
    let url = |p: &str| c.url(leader, p);

    // Objects to act on: one policy and one enclave per tenant, one cluster-wide policy.
    for (name, src) in [("acme-pol", ACME_POLICY), ("global", GLOBAL_POLICY)] {
        let (s, b) = c.put_policy(leader, name, src, None).await;
        assert!(s == 200 || s == 201, "{s} {b}");
    }
    for (id, tenant) in [("ea", "acme"), ("eg", "globex")] {
        let (s, b) = send(
            &admin,
            Method::PUT,
            &url(&format!("/v1/enclaves/{id}")),
            Some(&json!({"id": id, "tenant": tenant, "tee": "sim"})),
            &[],
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    // An entry about acme's enclave, for the inclusion proof.
    let (_, entries) = send(
        &admin,
        Method::GET,
        &url("/v1/log/entries?end=99"),
        None,
        &[],
    )
    .await;
    let ea_index = entries["entries"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["subject"] == "ea"))
        .and_then(|e| e["index"].as_u64())
        .expect("an entry about ea");

    let all_readers = [
        "admin",
        "operator",
        "auditor",
        "tenant-acme",
        "tenant-globex",
    ];
    let staff = ["admin", "operator", "auditor"];
    let acme_pol = json!({"source": ACME_POLICY});
    let enclave_ea = json!({"id": "ea", "tenant": "acme", "tee": "sim"});
    let host_h9 = json!({"id": "h9", "address": "10.0.0.9:7500", "tee": "sim"});
    let member = json!({"id": 9, "address": "not an address"});
    let token = json!({"name": "x", "role": "auditor", "ttl_s": 60});
    let never = [("if-match", "\"999\"")];
    // Fits nowhere (no host has capacity): an allowed caller gets 409, nothing is created.
    let unplaceable = json!({"id": "nowhere", "tenant": "acme", "tee": "sim",
                             "requested": {"cpu_millicores": 1000}});
    type Route<'a> = (
        Method,
        String,
        Option<&'a Value>,
        &'a [(&'a str, &'a str)],
        Vec<&'static str>,
        Vec<&'static str>,
    );
    let routes: Vec<Route> = vec![
        (
            Method::GET,
            "/v1/policies".into(),
            None,
            &[],
            all_readers.to_vec(),
            vec![],
        ),
        (
            Method::GET,
            "/v1/policies/acme-pol".into(),
            None,
            &[],
            vec!["admin", "operator", "auditor", "tenant-acme"],
            vec!["tenant-globex"],
        ),
        (
            Method::GET,
            "/v1/policies/global".into(),
            None,
            &[],
            staff.to_vec(),
            vec!["tenant-acme", "tenant-globex"],
        ),
        (
            Method::PUT,
            "/v1/policies/acme-pol".into(),
            Some(&acme_pol),
            &never,
            vec!["admin", "operator", "tenant-acme"],
            vec![],
        ),
        (
            Method::DELETE,
            "/v1/policies/global".into(),
            None,
            &never,
            vec!["admin", "operator"],
            vec![],
        ),
        (
            // A plan changes nothing: every reader may run one, a tenant only for policies
            // limited to its own tenant (globex planning acme's policy: 403).
            Method::POST,
            "/v1/policies/plan".into(),
            Some(&acme_pol),
            &[],
            vec!["admin", "operator", "auditor", "tenant-acme"],
            vec![],
        ),
        (
            Method::GET,
            "/v1/enclaves".into(),
            None,
            &[],
            all_readers.to_vec(),
            vec![],
        ),
        (
            Method::GET,
            "/v1/enclaves/ea".into(),
            None,
            &[],
            vec!["admin", "operator", "auditor", "tenant-acme"],
            vec!["tenant-globex"],
        ),
        (
            Method::GET,
            "/v1/enclaves/ea/status".into(),
            None,
            &[],
            vec!["admin", "operator", "auditor", "tenant-acme"],
            vec!["tenant-globex"],
        ),
        (
            Method::GET,
            "/v1/enclaves/ea/receipt".into(),
            None,
            &[],
            vec!["admin", "operator", "auditor", "tenant-acme"],
            vec!["tenant-globex"],
        ),
        (
            Method::PUT,
            "/v1/enclaves/ea".into(),
            Some(&enclave_ea),
            &never,
            vec!["admin", "operator"],
            vec![],
        ),
        (
            Method::DELETE,
            "/v1/enclaves/ea".into(),
            None,
            &never,
            vec!["admin", "operator"],
            vec![],
        ),
        (
            Method::GET,
            "/v1/hosts".into(),
            None,
            &[],
            staff.to_vec(),
            vec![],
        ),
        (
            Method::PUT,
            "/v1/hosts/h9".into(),
            Some(&host_h9),
            &[],
            vec!["admin"],
            vec![],
        ),
        (
            Method::POST,
            "/v1/enclaves".into(),
            Some(&unplaceable),
            &[],
            vec!["admin", "operator"],
            vec![],
        ),
        (
            Method::POST,
            "/v1/hosts/no-such-host/cordon".into(),
            None,
            &[],
            vec!["admin"],
            vec![],
        ),
        (
            Method::POST,
            "/v1/hosts/no-such-host/uncordon".into(),
            None,
            &[],
            vec!["admin"],
            vec![],
        ),
        (
            Method::POST,
            "/v1/hosts/no-such-host/drain".into(),
            None,
            &[],
            vec!["admin"],
            vec![],
        ),
        (
            Method::GET,
            "/v1/cluster".into(),
            None,
            &[],
            staff.to_vec(),
            vec![],
        ),
        (
            Method::POST,
            "/v1/cluster/members".into(),
            Some(&member),
            &[],
            vec!["admin"],
            vec![],
        ),
        (
            Method::POST,
            "/v1/cluster/members/9/promote".into(),
            None,
            &[],
            vec!["admin"],
            vec![],
        ),
        (
            Method::DELETE,
            "/v1/cluster/members/9".into(),
            None,
            &[],
            vec!["admin"],
            vec![],
        ),
        (
            Method::GET,
            "/v1/log/sth".into(),
            None,
            &[],
            all_readers.to_vec(),
            vec![],
        ),
        (
            Method::GET,
            "/v1/log/keys".into(),
            None,
            &[],
            all_readers.to_vec(),
            vec![],
        ),
        (
            Method::GET,
            "/v1/log/entries".into(),
            None,
            &[],
            all_readers.to_vec(),
            vec![],
        ),
        (
            Method::GET,
            format!("/v1/log/proof/inclusion?index={ea_index}"),
            None,
            &[],
            vec!["admin", "operator", "auditor", "tenant-acme"],
            vec!["tenant-globex"],
        ),
        (
            Method::GET,
            "/v1/log/proof/consistency?first=1".into(),
            None,
            &[],
            all_readers.to_vec(),
            vec![],
        ),
        (
            Method::GET,
            "/v1/tokens".into(),
            None,
            &[],
            vec!["admin"],
            vec![],
        ),
        (
            Method::POST,
            "/v1/tokens".into(),
            Some(&token),
            &[],
            vec!["admin"],
            vec![],
        ),
        (
            Method::DELETE,
            "/v1/tokens/not-an-id".into(),
            None,
            &[],
            vec!["admin"],
            vec![],
        ),
        (
            Method::GET,
            "/v1/snapshot".into(),
            None,
            &[],
            vec!["admin"],
            vec![],
        ),
        // The web console's routes (api/console.rs). The usage stream never ends, so only its
        // refusals are checked here (a tenant asking for another tenant's enclave: 404).
        (
            Method::GET,
            "/v1/whoami".into(),
            None,
            &[],
            all_readers.to_vec(),
            vec![],
        ),
        (
            Method::POST,
            "/v1/policy-format".into(),
            Some(&acme_pol),
            &[],
            all_readers.to_vec(),
            vec![],
        ),
        (
            Method::GET,
            "/v1/usage/stream?enclave=ea".into(),
            None,
            &[],
            vec![],
            vec!["tenant-globex"],
        ),
    ];
    for who in WHO {
        let http = callers.http(who);
        for (method, path, body, headers, allowed, hidden) in &routes {
            // An allowed watcher's stream stays open: the console's browser test reads it.
            if path.starts_with("/v1/usage/stream")
                && ["admin", "operator", "auditor", "tenant-acme"].contains(&who)
            {
                continue;
            }
            let (status, got) = send(&http, method.clone(), &url(path), *body, headers).await;
            check(
                &format!("{method} {path}"),
                who,
                want(allowed, hidden, who),
                status,
                &got,
            );
        }
    }
    // The unauthenticated probes left nothing behind, and /healthz and /readyz need nothing.
    let none = callers.http("none");
    assert_eq!(
        send(&none, Method::GET, &url("/healthz"), None, &[])
            .await
            .0,
        200
    );
    assert_eq!(
        send(&none, Method::GET, &url("/readyz"), None, &[]).await.0,
        200
    );

    // Tenants see only their own tenant in lists.
    let (_, es) = send(
        &callers.http("tenant-acme"),
        Method::GET,
        &url("/v1/enclaves"),
        None,
        &[],
    )
    .await;
    let ids: Vec<&str> = es
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, ["ea"]);
    let (_, ps) = send(
        &callers.http("tenant-globex"),
        Method::GET,
        &url("/v1/policies"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        ps,
        json!([]),
        "globex sees no policy of acme's or the cluster's"
    );
    let (_, log) = send(
        &callers.http("tenant-globex"),
        Method::GET,
        &url("/v1/log/entries?end=999"),
        None,
        &[],
    )
    .await;
    for e in log["entries"].as_array().expect("entries") {
        assert_eq!(e["subject"], "eg", "globex saw {e}");
    }
    // A tenant may not store a policy that reaches beyond its tenant.
    let (s, b) = send(
        &callers.http("tenant-acme"),
        Method::PUT,
        &url("/v1/policies/global"),
        Some(&json!({"source": GLOBAL_POLICY})),
        &[],
    )
    .await;
    assert_eq!(s, 403, "{b}");

    grpc::grpc_matrix(&c, leader, &callers).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_authenticate_until_revoked_and_the_audit_trail_names_the_identity() {
    let c = Cluster::start_tls(1, &[]);
    let leader = c.wait_leader().await;
    let callers = Callers::new(&c);
    let admin = callers.http("admin");
    let none = callers.http("none");
    let url = |p: &str| c.url(leader, p);

    // An operator token, shown once; listed without its secret.
    let (s, t) = send(
        &admin,
        Method::POST,
        &url("/v1/tokens"),
        Some(&json!({"name": "ci", "role": "operator", "ttl_s": 3600})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let secret = t["token"].as_str().expect("secret").to_string();
    let id = t["id"].as_str().expect("id").to_string();
    let (_, list) = send(&admin, Method::GET, &url("/v1/tokens"), None, &[]).await;
    assert!(!list.to_string().contains(&secret[20..]), "{list}");
    assert!(list.to_string().contains(&id));
    let bearer = format!("Bearer {secret}");

    // With it, a caller without a certificate is the operator token: may write policies …
    let (s, p) = send(
        &none,
        Method::PUT,
        &url("/v1/policies/acme-pol"),
        Some(&json!({"source": ACME_POLICY})),
        &[("authorization", &bearer), ("x-tribune-actor", "root")],
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(
        p["created_by"],
        format!("token:{id} (ci)"),
        "never the header: {p}"
    );
    // … but not manage tokens.
    let (s, _) = send(
        &none,
        Method::GET,
        &url("/v1/tokens"),
        None,
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(s, 403);
    // A forged secret and garbage are refused.
    let forged = format!(
        "{}{}",
        &bearer[..bearer.len() - 2],
        if bearer.ends_with("00") { "11" } else { "00" }
    );
    let (s, b) = send(
        &none,
        Method::GET,
        &url("/v1/policies"),
        None,
        &[("authorization", &forged)],
    )
    .await;
    assert_eq!(s, 401, "{b}");
    let (s, _) = send(
        &none,
        Method::GET,
        &url("/v1/policies"),
        None,
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(s, 401);

    // Revoked: refused from then on, and the revocation is logged with who did it.
    let (s, _) = send(
        &admin,
        Method::DELETE,
        &url(&format!("/v1/tokens/{id}")),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = send(
        &none,
        Method::GET,
        &url("/v1/policies"),
        None,
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(s, 401, "{b}");
    assert!(
        b["detail"].as_str().is_some_and(|d| d.contains("revoked")),
        "{b}"
    );

    // With a certificate, the certificate's identity is the actor, whatever the header says.
    let operator = callers.http("operator");
    let (s, p) = send(
        &operator,
        Method::PUT,
        &url("/v1/policies/acme-pol"),
        Some(&json!({"source": ACME_POLICY})),
        &[("x-tribune-actor", "root")],
    )
    .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["updated_by"], "tribune://operator/olive");
    // Enclave and host changes are logged with their actor; the host's attestation status and
    // heartbeat are not the API's to set.
    let (s, _) = send(
        &operator,
        Method::PUT,
        &url("/v1/enclaves/ea"),
        Some(&json!({"id": "ea", "tenant": "acme", "tee": "sim"})),
        &[("x-tribune-actor", "root")],
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = send(
        &admin,
        Method::PUT,
        &url("/v1/hosts/h2"),
        Some(
            &json!({"id": "h2", "address": "a:1", "tee": "sim", "attestation_status": "verified",
            "capacity": {"cpu_millicores": 99_999_999_000u64}}),
        ),
        &[],
    )
    .await;
    assert_eq!(s, 400, "99,999,999 CPUs: {b}");
    let (s, h) = send(
        &admin,
        Method::PUT,
        &url("/v1/hosts/h2"),
        Some(
            &json!({"id": "h2", "address": "a:1", "tee": "sim", "attestation_status": "verified",
            "capacity": {"cpu_millicores": 8000}}),
        ),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["attestation_status"], "unverified", "{h}");

    let (_, log) = send(
        &admin,
        Method::GET,
        &url("/v1/log/entries?end=999"),
        None,
        &[],
    )
    .await;
    let entries = log["entries"].as_array().expect("entries").clone();
    let actor_of = |kind: &str, subject: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e["kind"] == kind && e["subject"] == subject)
            .map(|e| e["detail"]["actor"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        actor_of("policy_change", "acme-pol"),
        [
            format!("token:{id} (ci)"),
            "tribune://operator/olive".to_string()
        ]
    );
    assert_eq!(
        actor_of("enclave_change", "ea"),
        ["tribune://operator/olive"]
    );
    assert_eq!(
        actor_of("host_change", "h2"),
        [format!("tribune://admin/{}", common::TEST_CLIENT)]
    );
    let tokens = actor_of("token_change", &format!("token-{id}"));
    assert_eq!(tokens.len(), 2, "created and revoked: {tokens:?}");
    assert!(
        !log.to_string().contains("\"root\""),
        "a header made it into the log"
    );
}

/// Finding 1: no certificate, a launch spec that would run as root → 401, nothing stored.
#[tokio::test(flavor = "multi_thread")]
async fn an_unauthenticated_caller_cannot_place_an_enclave() {
    let c = Cluster::start_tls(1, &[]);
    let leader = c.wait_leader().await;
    let callers = Callers::new(&c);
    let body = json!({"id": "x", "tenant": "t", "tee": "sim",
        "placement": {"host": "h1", "epoch": 1},
        "launch": {"process": {"cmd": ["sh", "-c", "id > /tmp/pwned; sleep 999"]}}});
    for who in ["none", "agent", "controller", "auditor", "tenant-acme"] {
        let (s, b) = send(
            &callers.http(who),
            Method::PUT,
            &c.url(leader, "/v1/enclaves/x"),
            Some(&body),
            &[],
        )
        .await;
        assert!(s == 401 || s == 403, "{who}: {s} {b}");
    }
    let (s, b) = send(
        &callers.http("admin"),
        Method::GET,
        &c.url(leader, "/v1/enclaves/x"),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404, "nothing was stored: {b}");
}
