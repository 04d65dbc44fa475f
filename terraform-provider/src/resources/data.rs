//! Data sources: `tribune_policy` (one policy by name), `tribune_hosts` (every host),
//! `tribune_cluster` (the controllers and who leads).

use std::collections::BTreeMap;

use tribune_controller::state::Host;

use crate::client::Client;
use crate::proto::tfplugin6 as tf;
use crate::resources::policy::api_error;
use crate::schema::{self, Attr, Mode};
use crate::value::Value;

pub const POLICY: &str = "tribune_policy";
pub const HOSTS: &str = "tribune_hosts";
pub const CLUSTER: &str = "tribune_cluster";

const HOST_TYPE: &str = r#"["list",["object",{"id":"string","address":"string","tee":"string","attestation_status":"string","enforcement":"string","last_heartbeat_ms":"number","cpu_millicores":"number","memory_bytes":"number","egress_bits_per_sec":"number","ingress_bits_per_sec":"number","gpu_percent":"number"}]]"#;
const MEMBER_TYPE: &str =
    r#"["list",["object",{"id":"number","address":"string","voter":"bool","healthy":"bool"}]]"#;

pub fn schemas() -> Vec<(&'static str, tf::Schema)> {
    vec![
        (
            POLICY,
            schema::schema(
                0,
                "One policy, by name.",
                &[
                    Attr::new("name", "\"string\"", Mode::Required, "The policy's name."),
                    Attr::new("id", "\"string\"", Mode::Computed, "The policy's name."),
                    Attr::new(
                        "source",
                        "\"string\"",
                        Mode::Computed,
                        "Its source as stored.",
                    ),
                    Attr::new("version", "\"number\"", Mode::Computed, "Its version."),
                    Attr::new(
                        "updated_by",
                        "\"string\"",
                        Mode::Computed,
                        "Who wrote it last.",
                    ),
                ],
            ),
        ),
        (
            HOSTS,
            schema::schema(
                0,
                "Every host the cluster knows.",
                &[
                    Attr::new("id", "\"string\"", Mode::Computed, "Always `hosts`."),
                    Attr::new("hosts", HOST_TYPE, Mode::Computed, "The hosts, by id."),
                ],
            ),
        ),
        (
            CLUSTER,
            schema::schema(
                0,
                "The controller group as the answering controller sees it.",
                &[
                    Attr::new("id", "\"string\"", Mode::Computed, "Always `cluster`."),
                    Attr::new(
                        "leader",
                        "\"number\"",
                        Mode::Computed,
                        "The leader's id (null when there is none).",
                    ),
                    Attr::new("term", "\"number\"", Mode::Computed, "The Raft term."),
                    Attr::new("members", MEMBER_TYPE, Mode::Computed, "The controllers."),
                ],
            ),
        ),
    ]
}

fn num(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

fn host(h: &Host) -> Value {
    let tee = serde_json::to_value(h.tee)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Value::object([
        ("id", Value::string(&h.id)),
        ("address", Value::string(&h.address)),
        ("tee", Value::String(tee)),
        ("attestation_status", Value::string(&h.attestation_status)),
        ("enforcement", Value::string(&h.enforcement)),
        ("last_heartbeat_ms", Value::Int(h.last_heartbeat_ms)),
        ("cpu_millicores", num(h.capacity.cpu_millicores)),
        ("memory_bytes", num(h.capacity.memory_bytes)),
        ("egress_bits_per_sec", num(h.capacity.egress_bits_per_sec)),
        ("ingress_bits_per_sec", num(h.capacity.ingress_bits_per_sec)),
        ("gpu_percent", num(u64::from(h.capacity.gpu_percent))),
    ])
}

pub async fn read(
    client: &Client,
    type_name: &str,
    config: &Value,
) -> Result<Value, tf::Diagnostic> {
    match type_name {
        POLICY => {
            let Some(name) = config.get("name").as_str() else {
                return Err(schema::error_at(
                    "name",
                    "The policy name is not known",
                    "Give a known `name`.",
                ));
            };
            match client.get_policy(name).await {
                Ok(Some(p)) => Ok(Value::object([
                    ("name", Value::string(&p.name)),
                    ("id", Value::string(&p.name)),
                    ("source", Value::string(&p.source)),
                    ("version", num(p.version)),
                    ("updated_by", Value::string(&p.updated_by)),
                ])),
                Ok(None) => Err(schema::error_at(
                    "name",
                    format!("No policy named {name:?}"),
                    "Check the name (`tribune policy ls` lists them).",
                )),
                Err(e) => Err(api_error(&format!("Reading policy {name:?}"), &e)),
            }
        }
        HOSTS => {
            let hosts = client
                .hosts()
                .await
                .map_err(|e| api_error("Listing hosts", &e))?;
            Ok(Value::object([
                ("id", Value::string("hosts")),
                ("hosts", Value::List(hosts.iter().map(host).collect())),
            ]))
        }
        CLUSTER => {
            let c = client
                .cluster()
                .await
                .map_err(|e| api_error("Reading the cluster", &e))?;
            let members = c
                .members
                .iter()
                .map(|m| {
                    let mut o = BTreeMap::new();
                    o.insert("id".to_string(), num(m.id));
                    o.insert("address".to_string(), Value::string(&m.address));
                    o.insert("voter".to_string(), Value::Bool(m.voter));
                    o.insert("healthy".to_string(), Value::Bool(m.healthy));
                    Value::Map(o)
                })
                .collect();
            Ok(Value::object([
                ("id", Value::string("cluster")),
                ("leader", c.leader.map_or(Value::Null, num)),
                ("term", num(c.term)),
                ("members", Value::List(members)),
            ]))
        }
        other => Err(schema::error(
            format!("Unknown data source {other:?}"),
            "This provider serves tribune_policy, tribune_hosts and tribune_cluster.",
        )),
    }
}
