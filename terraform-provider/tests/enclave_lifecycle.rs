//! `tribune_enclave` end to end: a real Terraform drives this build's provider against a real
//! Tribune cluster — init, apply, an empty second plan, drift made outside Terraform (a
//! change shows as an update of exactly that attribute; a deletion as a re-create), a state
//! change by an operator that Terraform neither shows nor undoes, a change between plan and
//! apply (a conflict, not a lost update), import by id, create over an existing id, and
//! destroy (a placed enclave is stopped, then deleted). Changes "outside Terraform" go through
//! the HTTP API and the `tribune` CLI, as a person's would.

mod common;

use common::{Tribune, Workspace};
use serde_json::{Value, json};
use tribune_testkit::LocalCluster;

const MAIN: &str = r#"terraform {
  required_providers {
    tribune = { source = "tribune/tribune" }
  }
}

provider "tribune" {}

resource "tribune_enclave" "web" {
  id       = "web"
  tenant   = "acme"
  tee      = "sim"
  labels   = { tier = "web" }
  requested = {
    cpu_millicores = 250
    memory_bytes   = 268435456
  }
  priority = PRIORITY
  host     = "h1"
  launch   = jsonencode({ process = { cmd = ["/bin/sleep", "600"] } })
}
"#;

const IMPORTED_TF: &str = r#"resource "tribune_enclave" "imported" {
  id     = "imported"
  tenant = "beta"
  tee    = "sim"
  labels = { team = "data" }
  expected_measurements = ["ab12"]
}
"#;

const TAKEN_TF: &str = r#"resource "tribune_enclave" "taken" {
  id     = "taken"
  tenant = "gamma"
  tee    = "sim"
}
"#;

/// The API, as someone outside Terraform uses it (admin certificate).
struct Api {
    http: reqwest::Client,
    base: String,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn new(c: &LocalCluster) -> Self {
        let files = tribune_testkit::tls::client_files(c.tls_dir.as_deref().expect("TLS"));
        let tls = tribune_tls::ClientTls::from_files(&files).expect("client TLS");
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.rustls_config(&[b"http/1.1"]).expect("rustls"))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Self {
            http,
            base: c.endpoint_list()[0].clone(),
            rt,
        }
    }

    fn get(&self, id: &str) -> Option<Value> {
        self.rt.block_on(async {
            let r = self
                .http
                .get(format!("{}/v1/enclaves/{id}", self.base))
                .send()
                .await
                .expect("GET");
            match r.status().as_u16() {
                404 => None,
                200 => Some(r.json().await.expect("enclave JSON")),
                s => panic!("GET {id}: {s} {}", r.text().await.unwrap_or_default()),
            }
        })
    }

    /// Reads the enclave, lets `change` edit it, writes it back at the version read.
    fn edit(&self, id: &str, change: impl FnOnce(&mut Value)) -> Value {
        let mut e = self.get(id).expect("exists");
        let version = e["version"].as_u64().expect("version");
        change(&mut e);
        self.put(&e, &[("if-match", format!("\"{version}\""))])
    }

    fn put(&self, e: &Value, headers: &[(&str, String)]) -> Value {
        self.rt.block_on(async {
            let mut req = self
                .http
                .put(format!(
                    "{}/v1/enclaves/{}",
                    self.base,
                    e["id"].as_str().unwrap_or("")
                ))
                .json(e);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let r = req.send().await.expect("PUT");
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "PUT: {status} {body}");
            body
        })
    }
}

/// The configurable attributes whose before and after differ in `terraform show -json PLAN`.
fn changed_attributes(ws: &Workspace) -> Vec<String> {
    ws.ok(&["plan", "-no-color", "-out=drift.tfplan"]);
    let r = ws.ok(&["show", "-json", "drift.tfplan"]);
    let start = r.out.find('{').expect("JSON");
    let plan: Value = serde_json::from_str(r.out[start..].trim()).expect("plan JSON");
    let change = &plan["resource_changes"][0]["change"];
    let computed = ["state", "placement_epoch", "version"];
    let mut keys: Vec<String> = change["before"]
        .as_object()
        .expect("before")
        .keys()
        .filter(|k| !computed.contains(&k.as_str()))
        .filter(|k| change["before"][k.as_str()] != change["after"][k.as_str()])
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[test]
fn enclave_lifecycle_against_a_real_cluster() {
    let Some(terraform) = common::terraform("enclave_lifecycle_against_a_real_cluster") else {
        return;
    };
    let cluster = common::cluster();
    let tribune = Tribune::new(&cluster);
    let api = Api::new(&cluster);
    let ws = Workspace::new(terraform, common::provider_env(&cluster));
    eprintln!("terraform: {}", ws.version());
    ws.write("main.tf", &MAIN.replace("PRIORITY", "10"));

    // init, apply: the enclave exists as configured.
    ws.ok(&["init", "-no-color"]);
    let r = ws.ok(&["apply", "-no-color", "-auto-approve"]);
    assert!(r.out.contains("1 added, 0 changed, 0 destroyed"), "{r}");
    let e = api.get("web").expect("web stored");
    assert_eq!(e["version"], 1);
    assert_eq!(e["state"], "pending");
    assert_eq!(e["labels"], json!({"tier": "web"}));
    assert_eq!(e["requested"]["cpu_millicores"], 250);
    assert_eq!(e["requested"]["memory_bytes"], 268435456);
    assert_eq!(e["priority"], 10);
    assert_eq!(e["placement"], json!({"host": "h1", "epoch": 1}));
    assert_eq!(
        e["launch"],
        json!({"process": {"cmd": ["/bin/sleep", "600"]}})
    );

    // A second plan is empty.
    let r = ws.plan();
    assert_eq!(r.code, 0, "a second plan must be empty: {r}");

    // The same values spelled otherwise (launch JSON by hand, an explicit zero): no diff.
    let respelled = MAIN
        .replace("PRIORITY", "10")
        .replace(
            r#"jsonencode({ process = { cmd = ["/bin/sleep", "600"] } })"#,
            r#""{ \"process\": { \"cmd\": [ \"/bin/sleep\", \"600\" ] } }""#,
        )
        .replace(
            "memory_bytes   = 268435456",
            "memory_bytes   = 268435456\n    gpu_percent    = 0",
        );
    assert!(
        respelled.contains("gpu_percent") && !respelled.contains("jsonencode"),
        "{respelled}"
    );
    ws.write("main.tf", &respelled);
    let r = ws.plan();
    assert_eq!(
        r.code, 0,
        "another spelling of the same values must not show a diff: {r}"
    );
    ws.write("main.tf", &MAIN.replace("PRIORITY", "10"));

    // A change made outside Terraform: the plan shows an update of exactly that attribute;
    // apply puts the configuration back.
    api.edit("web", |e| e["labels"] = json!({"tier": "batch"}));
    let r = ws.plan();
    assert_eq!(r.code, 2, "drift must show as a change: {r}");
    assert!(
        r.out
            .contains("tribune_enclave.web will be updated in-place"),
        "{r}"
    );
    assert!(
        r.out.contains("Plan: 0 to add, 1 to change, 0 to destroy"),
        "{r}"
    );
    assert!(r.out.contains("\"batch\" -> \"web\""), "{r}");
    assert_eq!(changed_attributes(&ws), ["labels"]);
    let r = ws.ok(&["apply", "-no-color", "-auto-approve"]);
    assert!(r.out.contains("0 added, 1 changed, 0 destroyed"), "{r}");
    let e = api.get("web").expect("web");
    assert_eq!(e["labels"], json!({"tier": "web"}));
    assert_eq!(e["version"], 3, "create, outside change, Terraform's fix");
    assert_eq!(ws.plan().code, 0);

    // An operator suspends it: `state` is Tribune's, so no diff — and a later update by
    // Terraform keeps it suspended (it never writes an older state back as a "resume").
    tribune.ok(&["enclave", "suspend", "web"]);
    let r = ws.plan();
    assert_eq!(r.code, 0, "a state change is not Terraform's drift: {r}");
    ws.write("main.tf", &MAIN.replace("PRIORITY", "20"));
    let r = ws.ok(&["apply", "-no-color", "-auto-approve"]);
    assert!(r.out.contains("0 added, 1 changed, 0 destroyed"), "{r}");
    let e = api.get("web").expect("web");
    assert_eq!(
        (e["priority"].clone(), e["state"].clone()),
        (json!(20), json!("suspended"))
    );

    // A change outside Terraform between plan and apply: the saved plan's update carries the
    // version it read, so it fails clearly and the other change is not lost.
    ws.write("main.tf", &MAIN.replace("PRIORITY", "30"));
    ws.ok(&["plan", "-no-color", "-out=tfplan"]);
    let other = api.edit("web", |e| e["labels"] = json!({"tier": "other"}));
    let r = ws.run(&["apply", "-no-color", "tfplan"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.out.contains("Enclave \"web\" changed outside Terraform"),
        "{r}"
    );
    let v = other["version"].as_u64().expect("version");
    assert!(
        r.out.contains(&format!(
            "expected version {}, but Tribune holds version {v}",
            v - 1
        )),
        "{r}"
    );
    assert_eq!(
        api.get("web").expect("web")["labels"],
        json!({"tier": "other"}),
        "not lost"
    );
    ws.ok(&["apply", "-no-color", "-auto-approve"]);
    let e = api.get("web").expect("web");
    assert_eq!(
        (e["priority"].clone(), e["labels"].clone()),
        (json!(30), json!({"tier": "web"}))
    );

    // A deletion outside Terraform (stop, then delete) shows as a re-create.
    tribune.ok(&["enclave", "stop", "web"]);
    tribune.ok(&["enclave", "delete", "web"]);
    assert!(api.get("web").is_none());
    let r = ws.plan();
    assert_eq!(r.code, 2, "{r}");
    assert!(r.out.contains("tribune_enclave.web will be created"), "{r}");
    assert!(
        r.out.contains("Plan: 1 to add, 0 to change, 0 to destroy"),
        "{r}"
    );
    ws.ok(&["apply", "-no-color", "-auto-approve"]);
    let e = api.get("web").expect("re-created");
    assert_eq!(
        (e["version"].clone(), e["state"].clone()),
        (json!(1), json!("pending"))
    );

    // Import of an existing enclave by id: then the plan is empty.
    api.put(
        &json!({"id": "imported", "tenant": "beta", "tee": "sim",
                "labels": {"team": "data"}, "expected_measurements": ["ab12"]}),
        &[],
    );
    ws.write("imported.tf", IMPORTED_TF);
    let r = ws.ok(&[
        "import",
        "-no-color",
        "tribune_enclave.imported",
        "imported",
    ]);
    assert!(r.out.contains("Import successful"), "{r}");
    let r = ws.plan();
    assert_eq!(r.code, 0, "after import the plan must be empty: {r}");

    // Create over an existing id: a clear error, and the existing enclave is untouched.
    api.put(
        &json!({"id": "taken", "tenant": "gamma", "tee": "sim", "priority": 5}),
        &[],
    );
    ws.write("taken.tf", TAKEN_TF);
    let r = ws.run(&["apply", "-no-color", "-auto-approve"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.out
            .contains("Enclave \"taken\" already exists in Tribune"),
        "{r}"
    );
    assert!(r.out.contains("terraform import tribune_enclave."), "{r}");
    let kept = api.get("taken").expect("taken kept");
    assert_eq!(
        (kept["version"].clone(), kept["priority"].clone()),
        (json!(1), json!(5)),
        "never overwritten"
    );
    ws.remove("taken.tf");

    // Destroy removes what Terraform manages (the placed one is stopped first), and nothing
    // else.
    let r = ws.ok(&["destroy", "-no-color", "-auto-approve"]);
    assert!(r.out.contains("2 destroyed"), "{r}");
    assert!(api.get("web").is_none());
    assert!(api.get("imported").is_none());
    assert!(api.get("taken").is_some(), "not Terraform's to remove");
    // The log says the placed enclave was stopped, then deleted, by the provider's caller.
    let out = tribune.ok(&[
        "-o",
        "json",
        "log",
        "entries",
        "--end",
        "999",
        "--subject",
        "web",
        "--kind",
        "enclave_change",
    ]);
    let log: Value = serde_json::from_str(&out).expect("log JSON");
    let ops: Vec<(String, String)> = log["entries"]
        .as_array()
        .or(log.as_array())
        .expect("entries")
        .iter()
        .filter(|e| e["subject"] == "web" && e["kind"] == "enclave_change")
        .map(|e| {
            (
                e["detail"]["op"].as_str().unwrap_or("").to_string(),
                e["detail"]["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let n = ops.len();
    assert!(n >= 2, "{ops:?}");
    assert_eq!(
        ops[n - 2..],
        [
            ("put".to_string(), "stopped".to_string()),
            ("delete".to_string(), "stopped".to_string())
        ],
        "{ops:?}"
    );
}
