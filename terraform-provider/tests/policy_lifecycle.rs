//! `tribune_policy` end to end: a real Terraform drives this build's provider against a real
//! Tribune cluster, through every step a user meets — init, apply, an empty second plan, a
//! reformatted source, drift made outside Terraform (a change, a deletion), a change made
//! between plan and apply (a conflict, not a lost update), import, a policy
//! that does not check, create over an existing name, and destroy. One scenario: each
//! Terraform run takes seconds, and the steps build on each other.

mod common;

use common::{Tribune, Workspace};

const BATCH: &str = r#"policy "batch" {
  match tenant == "acme"
  guarantee { cpu = 250m }
  limit { cpu = 1 }
}
"#;

/// The same policy in another layout: never a diff.
const BATCH_REFORMATTED: &str = "policy \"batch\"   {\n    match   tenant ==   \"acme\"\n  guarantee {\n    cpu = 250m\n  }\n  limit { cpu = 1 }\n}";

/// What someone changes outside Terraform.
const BATCH_CHANGED: &str = r#"policy "batch" {
  match tenant == "acme"
  guarantee { cpu = 250m }
  limit { cpu = 2 }
}
"#;

const MAIN: &str = r#"terraform {
  required_providers {
    tribune = { source = "tribune/tribune" }
  }
}

provider "tribune" {}

resource "tribune_policy" "batch" {
  name   = "batch"
  source = file("${path.module}/batch.tribune")
}

data "tribune_cluster" "this" {}
data "tribune_hosts" "all" {}

data "tribune_policy" "batch" {
  name       = tribune_policy.batch.name
  depends_on = [tribune_policy.batch]
}

output "leader" { value = data.tribune_cluster.this.leader }
output "members" { value = length(data.tribune_cluster.this.members) }
output "hosts" { value = length(data.tribune_hosts.all.hosts) }
output "batch_version" { value = data.tribune_policy.batch.version }
"#;

const IMPORTED_TF: &str = r#"resource "tribune_policy" "imported" {
  name   = "imported"
  source = <<-EOT
    policy "imported" {
      match tenant == "beta"
      limit { cpu = 1 }
    }
  EOT
}
"#;

const TAKEN_TF: &str = r#"resource "tribune_policy" "taken" {
  name   = "taken"
  source = <<-EOT
    policy "taken" {
      match tenant == "gamma"
      limit { cpu = 1 }
    }
  EOT
}
"#;

/// A unit error on the third line of the source (memory where CPU belongs).
const BAD_TF: &str = r#"resource "tribune_policy" "bad" {
  name = "bad"
  source = <<-EOT
    policy "bad" {
      match tenant == "delta"
      limit { cpu = 5GiB }
    }
  EOT
}
"#;

#[test]
fn policy_lifecycle_against_a_real_cluster() {
    let Some(terraform) = common::terraform("policy_lifecycle_against_a_real_cluster") else {
        return;
    };
    let cluster = common::cluster();
    let tribune = Tribune::new(&cluster);
    let ws = Workspace::new(terraform, common::provider_env(&cluster));
    eprintln!("terraform: {}", ws.version());
    ws.write("main.tf", MAIN);
    ws.write("batch.tribune", BATCH);

    // init, apply: the policy exists as written.
    ws.ok(&["init", "-no-color"]);
    let r = ws.ok(&["apply", "-no-color", "-auto-approve"]);
    assert!(r.out.contains("1 added, 0 changed, 0 destroyed"), "{r}");
    assert!(r.out.contains("members = 1"), "{r}");
    let stored = tribune.policy("batch").expect("batch stored");
    assert_eq!(stored["source"], BATCH);
    assert_eq!(stored["version"], 1);

    // A second plan is empty.
    let r = ws.plan();
    assert_eq!(r.code, 0, "a second plan must be empty: {r}");

    // A reformatted source is no diff.
    ws.write("batch.tribune", BATCH_REFORMATTED);
    let r = ws.plan();
    assert_eq!(r.code, 0, "formatting alone must not show a diff: {r}");
    ws.write("batch.tribune", BATCH);

    // A change made outside Terraform: the plan shows exactly that drift, apply fixes it.
    let changed = ws.dir.path().join("changed.tribune");
    std::fs::write(&changed, BATCH_CHANGED).expect("write");
    tribune.ok(&[
        "policy",
        "put",
        &changed.display().to_string(),
        "--name",
        "batch",
    ]);
    let r = ws.plan();
    assert_eq!(r.code, 2, "drift must show as a change: {r}");
    assert!(
        r.out
            .contains("tribune_policy.batch will be updated in-place"),
        "{r}"
    );
    assert!(
        r.out.contains("Plan: 0 to add, 1 to change, 0 to destroy"),
        "{r}"
    );
    assert!(
        r.out.contains("limit { cpu = 2 }") && r.out.contains("limit { cpu = 1 }"),
        "{r}"
    );
    let r = ws.ok(&["apply", "-no-color", "-auto-approve"]);
    assert!(r.out.contains("0 added, 1 changed, 0 destroyed"), "{r}");
    let stored = tribune.policy("batch").expect("batch stored");
    assert_eq!(stored["source"], BATCH);
    assert_eq!(
        stored["version"], 3,
        "create, outside change, Terraform's fix"
    );
    assert_eq!(ws.plan().code, 0);

    // A change outside Terraform between plan and apply: the saved plan's update carries the
    // version it read (If-Match), so it fails clearly and the other change is not lost.
    ws.write("batch.tribune", &BATCH.replace("cpu = 1 }", "cpu = 4 }"));
    ws.ok(&["plan", "-no-color", "-out=tfplan"]);
    tribune.ok(&[
        "policy",
        "put",
        &changed.display().to_string(),
        "--name",
        "batch",
    ]);
    let r = ws.run(&["apply", "-no-color", "tfplan"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.out.contains("Policy \"batch\" changed outside Terraform"),
        "{r}"
    );
    assert!(
        r.out
            .contains("expected version 3, but Tribune holds version 4"),
        "{r}"
    );
    assert_eq!(
        tribune.policy("batch").expect("kept")["source"],
        BATCH_CHANGED,
        "not lost"
    );
    ws.write("batch.tribune", BATCH);
    ws.ok(&["apply", "-no-color", "-auto-approve"]);
    assert_eq!(tribune.policy("batch").expect("batch")["source"], BATCH);

    // A deletion outside Terraform shows as a re-create.
    tribune.ok(&["policy", "rm", "batch"]);
    let r = ws.plan();
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.out.contains("tribune_policy.batch will be created"),
        "{r}"
    );
    assert!(
        r.out.contains("Plan: 1 to add, 0 to change, 0 to destroy"),
        "{r}"
    );
    ws.ok(&["apply", "-no-color", "-auto-approve"]);
    assert_eq!(
        tribune.policy("batch").expect("re-created")["source"],
        BATCH
    );

    // Import of an existing policy (stored in another layout): then the plan is empty.
    let imported = ws.dir.path().join("imported.tribune");
    std::fs::write(
        &imported,
        "policy \"imported\" {\nmatch tenant == \"beta\"\nlimit {\ncpu = 1\n}\n}\n",
    )
    .expect("write");
    tribune.ok(&["policy", "put", &imported.display().to_string()]);
    ws.write("imported.tf", IMPORTED_TF);
    let r = ws.ok(&["import", "-no-color", "tribune_policy.imported", "imported"]);
    assert!(r.out.contains("Import successful"), "{r}");
    let r = ws.plan();
    assert_eq!(r.code, 0, "after import the plan must be empty: {r}");

    // Create over an existing name: a clear error, and the existing policy is untouched.
    let taken = ws.dir.path().join("taken.tribune");
    std::fs::write(
        &taken,
        "policy \"taken\" {\n  match tenant == \"gamma\"\n  limit { cpu = 3 }\n}\n",
    )
    .expect("write");
    tribune.ok(&["policy", "put", &taken.display().to_string()]);
    ws.write("taken.tf", TAKEN_TF);
    let r = ws.run(&["apply", "-no-color", "-auto-approve"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.out.contains("Policy \"taken\" already exists in Tribune"),
        "{r}"
    );
    assert!(r.out.contains("terraform import tribune_policy."), "{r}");
    let kept = tribune.policy("taken").expect("taken kept");
    assert_eq!(kept["version"], 1, "never overwritten");
    assert!(kept["source"].as_str().unwrap_or("").contains("cpu = 3"));
    ws.remove("taken.tf");

    // A policy with a unit error: the plan fails with the checker's message, at `source`,
    // with the line inside the source.
    ws.write("bad.tf", BAD_TF);
    let r = ws.plan();
    assert_eq!(r.code, 1, "{r}");
    assert!(r.out.contains("Policy check failed"), "{r}");
    assert!(r.out.contains("at source line 3:"), "{r}");
    assert!(r.out.contains("with tribune_policy.bad"), "{r}");
    assert!(
        r.out
            .contains("on bad.tf line 3, in resource \"tribune_policy\" \"bad\""),
        "{r}"
    );
    assert!(tribune.policy("bad").is_none(), "nothing stored");
    ws.remove("bad.tf");

    // Destroy removes everything Terraform manages (and nothing else).
    let r = ws.ok(&["destroy", "-no-color", "-auto-approve"]);
    assert!(r.out.contains("2 destroyed"), "{r}");
    assert!(tribune.policy("batch").is_none());
    assert!(tribune.policy("imported").is_none());
    assert!(
        tribune.policy("taken").is_some(),
        "not Terraform's to remove"
    );
}
