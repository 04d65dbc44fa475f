//! `tribune_enclave`: one enclave record, as `PUT /v1/enclaves/{id}` takes it.
//!
//! - The attributes are the API's `Enclave` fields (`state::Enclave`, the one definition):
//!   `id` (changing it replaces the enclave), `tenant`, `tee`, `labels`,
//!   `expected_measurements`, `requested` (the `Resources` fields by name), `priority`, `host`
//!   (the placement's host: an input until the scheduler places enclaves) and `launch` (the
//!   launch spec as JSON, e.g. from `jsonencode`). Computed: `state` (the loop's and the
//!   operators' to set, never Terraform's), `placement_epoch`, `version`.
//! - Create sends `If-None-Match: *`: an existing enclave is never overwritten; the error says
//!   to import it. Update writes the spec only (`?spec_only=true`: the controller keeps the
//!   stored `state` and epoch, so an update is never a suspend, resume or stop, even if the
//!   loop changed the state a moment before) with `If-Match` on the version Terraform last
//!   read, so a change made outside Terraform in between is a conflict, never a lost update.
//! - Destroy deletes with `If-Match`; an enclave placed on a host and not stopped is stopped
//!   first (a `PUT` with `state = "stopped"`: its plan drops it and the agent stops it), since
//!   the API refuses to delete one an agent may be running.
//! - Read keeps the configuration's spelling of a value that means the same as the stored one
//!   (an absent map and an empty one, `jsonencode` key order), so only a real change is drift;
//!   an enclave that is gone reads as null, so Terraform plans to create it again.
//!
//! The plan and the conversions are pure, tested below; the I/O is in `read`, `apply`,
//! `import`.

use std::collections::BTreeMap;

use tribune_controller::api::bounds;
use tribune_controller::state::{Enclave, EnclaveState, Placement, Resources, TeeKind};
use tribune_controller::validate::check_name;

use crate::client::{Client, ClientError, Precondition};
use crate::proto::tfplugin6 as tf;
use crate::resources::policy::api_error;
use crate::schema::{self, Attr, Mode};
use crate::value::Value;

pub const TYPE: &str = "tribune_enclave";

/// The attributes a configuration sets, in schema order.
const CONFIGURABLE: [&str; 9] = [
    "id",
    "tenant",
    "tee",
    "labels",
    "expected_measurements",
    "requested",
    "priority",
    "host",
    "launch",
];
/// The attributes only the provider sets.
const COMPUTED: [&str; 3] = ["state", "placement_epoch", "version"];
/// The keys of `requested`: `state::Resources`' fields.
const RESOURCE_KEYS: [&str; 5] = [
    "cpu_millicores",
    "memory_bytes",
    "egress_bits_per_sec",
    "ingress_bits_per_sec",
    "gpu_percent",
];

pub fn schema() -> tf::Schema {
    schema::schema(
        0,
        "A Tribune enclave record (`PUT /v1/enclaves/{id}`). `host` places it until the scheduler does; `state` is Tribune's to set.",
        &[
            Attr::new(
                "id",
                "\"string\"",
                Mode::Required,
                "The enclave's id (changing it replaces the enclave).",
            ),
            Attr::new(
                "tenant",
                "\"string\"",
                Mode::Required,
                "The tenant it belongs to.",
            ),
            Attr::new(
                "tee",
                "\"string\"",
                Mode::Required,
                "Its TEE kind: `sev-snp`, `tdx` or `sim`.",
            ),
            Attr::new(
                "labels",
                "[\"map\",\"string\"]",
                Mode::Optional,
                "Labels, matched by policies (`labels.tier == \"batch\"`).",
            ),
            Attr::new(
                "expected_measurements",
                "[\"list\",\"string\"]",
                Mode::Optional,
                "Launch measurements its evidence must show (hex).",
            ),
            Attr::new(
                "requested",
                "[\"map\",\"number\"]",
                Mode::Optional,
                "Requested resources: cpu_millicores, memory_bytes, egress_bits_per_sec, ingress_bits_per_sec, gpu_percent (absent = 0).",
            ),
            Attr::new(
                "priority",
                "\"number\"",
                Mode::Optional,
                "Priority (higher wins under contention; default 0).",
            ),
            Attr::new(
                "host",
                "\"string\"",
                Mode::Optional,
                "The host it is placed on (an input until the scheduler places enclaves); unset = not placed.",
            ),
            Attr::new(
                "launch",
                "\"string\"",
                Mode::Optional,
                "How the host agent starts it: the launch spec as JSON (`jsonencode({process = {cmd = [...]}})`).",
            ),
            Attr::new(
                "state",
                "\"string\"",
                Mode::Computed,
                "Its state as Tribune holds it (pending, running, throttled, suspended, migrating, stopped, untrusted).",
            ),
            Attr::new(
                "placement_epoch",
                "\"number\"",
                Mode::Computed,
                "The placement's fencing epoch (grows whenever it moves).",
            ),
            Attr::new(
                "version",
                "\"number\"",
                Mode::Computed,
                "The version Tribune stores (grows by one on every write).",
            ),
        ],
    )
}

/// A configuration value that cannot become an enclave field: the attribute and why.
type Bad = (&'static str, String);

fn text(v: &Value, attr: &'static str) -> Result<Option<String>, Bad> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err((attr, format!("`{attr}` must be a string"))),
    }
}

fn whole(v: &Value, what: String) -> Result<u64, Bad> {
    v.as_i64()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or(("requested", format!("{what} must be a whole number ≥ 0")))
}

/// The enclave a configuration (or a state) describes, as the API takes it: `state` pending,
/// epoch 1 (apply puts the stored ones in on update). Every value must be known.
pub fn spec(config: &Value) -> Result<Enclave, Bad> {
    let id = text(config.get("id"), "id")?.unwrap_or_default();
    let tenant = text(config.get("tenant"), "tenant")?.unwrap_or_default();
    let tee_name = text(config.get("tee"), "tee")?.unwrap_or_default();
    let tee: TeeKind = tee_name.parse().map_err(|e| ("tee", format!("{e}")))?;
    let labels = match config.get("labels") {
        Value::Null => BTreeMap::new(),
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(("labels", format!("label {k:?} must be a string"))),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(("labels", "`labels` must be a map of strings".into())),
    };
    let expected_measurements = match config.get("expected_measurements") {
        Value::Null => vec![],
        Value::List(l) => l
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or((
                    "expected_measurements",
                    "each measurement must be a string".to_string(),
                ))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err((
                "expected_measurements",
                "`expected_measurements` must be a list of strings".into(),
            ));
        }
    };
    let mut requested = Resources::default();
    match config.get("requested") {
        Value::Null => {}
        Value::Map(m) => {
            for (k, v) in m {
                let n = whole(v, format!("requested.{k}"))?;
                match k.as_str() {
                    "cpu_millicores" => requested.cpu_millicores = n,
                    "memory_bytes" => requested.memory_bytes = n,
                    "egress_bits_per_sec" => requested.egress_bits_per_sec = n,
                    "ingress_bits_per_sec" => requested.ingress_bits_per_sec = n,
                    "gpu_percent" => {
                        requested.gpu_percent = u32::try_from(n)
                            .ok()
                            .filter(|p| *p <= 100)
                            .ok_or(("requested", "requested.gpu_percent is 0 to 100".into()))?;
                    }
                    other => {
                        return Err((
                            "requested",
                            format!(
                                "unknown resource {other:?}; the keys are {}",
                                RESOURCE_KEYS.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        _ => return Err(("requested", "`requested` must be a map of numbers".into())),
    }
    let priority = match config.get("priority") {
        Value::Null => 0,
        v => v.as_i64().and_then(|i| i32::try_from(i).ok()).ok_or((
            "priority",
            "`priority` must be a whole number that fits 32 bits".into(),
        ))?,
    };
    let placement = text(config.get("host"), "host")?.map(|host| Placement { host, epoch: 1 });
    let launch = match text(config.get("launch"), "launch")? {
        None => None,
        Some(s) => Some(serde_json::from_str::<serde_json::Value>(&s).map_err(|e| {
            (
                "launch",
                format!("`launch` is not JSON ({e}); write it with jsonencode({{…}})"),
            )
        })?),
    };
    Ok(Enclave {
        id,
        tenant,
        labels,
        tee,
        expected_measurements,
        requested,
        priority,
        placement,
        state: EnclaveState::Pending,
        launch,
        scheduling: None,
        version: 0,
    })
}

fn state_name(s: EnclaveState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The Terraform state of a stored enclave. Where `like` (the prior state, or the planned one
/// after an apply) says the same thing in another spelling — an absent map for an empty one,
/// `priority` 0 left out, the same launch JSON with other spacing — `like`'s value is kept, so
/// only a real difference shows as drift.
pub fn state(e: &Enclave, like: &Value) -> Value {
    let was = spec(like).ok();
    let keep = |attr: &str, same: bool, canonical: Value| -> Value {
        if same && !like.get(attr).has_unknown() {
            like.get(attr).clone()
        } else {
            canonical
        }
    };
    let w = was.as_ref();
    let requested = {
        let r = &e.requested;
        let m: BTreeMap<String, Value> = [
            ("cpu_millicores", r.cpu_millicores),
            ("memory_bytes", r.memory_bytes),
            ("egress_bits_per_sec", r.egress_bits_per_sec),
            ("ingress_bits_per_sec", r.ingress_bits_per_sec),
            ("gpu_percent", u64::from(r.gpu_percent)),
        ]
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(k, n)| (k.to_string(), int(n)))
        .collect();
        if m.is_empty() {
            Value::Null
        } else {
            Value::Map(m)
        }
    };
    Value::object([
        ("id", Value::string(&e.id)),
        ("tenant", Value::string(&e.tenant)),
        (
            "tee",
            keep(
                "tee",
                w.is_some_and(|w| w.tee == e.tee),
                Value::string(e.tee.as_str()),
            ),
        ),
        (
            "labels",
            keep(
                "labels",
                w.is_some_and(|w| w.labels == e.labels),
                if e.labels.is_empty() {
                    Value::Null
                } else {
                    Value::Map(
                        e.labels
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::string(v)))
                            .collect(),
                    )
                },
            ),
        ),
        (
            "expected_measurements",
            keep(
                "expected_measurements",
                w.is_some_and(|w| w.expected_measurements == e.expected_measurements),
                if e.expected_measurements.is_empty() {
                    Value::Null
                } else {
                    Value::List(e.expected_measurements.iter().map(Value::string).collect())
                },
            ),
        ),
        (
            "requested",
            keep(
                "requested",
                w.is_some_and(|w| w.requested == e.requested),
                requested,
            ),
        ),
        (
            "priority",
            keep(
                "priority",
                w.is_some_and(|w| w.priority == e.priority),
                if e.priority == 0 {
                    Value::Null
                } else {
                    Value::Int(i64::from(e.priority))
                },
            ),
        ),
        (
            "host",
            e.placement
                .as_ref()
                .map_or(Value::Null, |p| Value::string(&p.host)),
        ),
        (
            "launch",
            keep(
                "launch",
                w.is_some_and(|w| w.launch == e.launch),
                e.launch.as_ref().map_or(Value::Null, |l| {
                    Value::String(serde_json::to_string(l).unwrap_or_default())
                }),
            ),
        ),
        ("state", Value::String(state_name(e.state))),
        (
            "placement_epoch",
            e.placement.as_ref().map_or(Value::Null, |p| int(p.epoch)),
        ),
        ("version", int(e.version)),
    ])
}

/// Plan-time checks, each at its attribute: what the configuration says must convert to an
/// enclave, and (once every value is known) pass the controller's own bounds
/// (`api::bounds::enclave`), so what the plan accepts the API accepts.
pub fn validate(config: &Value) -> Vec<tf::Diagnostic> {
    for (attr, what) in [("id", "enclave"), ("tenant", "tenant"), ("host", "host")] {
        if let Some(v) = config.get(attr).as_str()
            && let Err(e) = check_name(what, v)
        {
            return vec![schema::error_at(attr, format!("Invalid {attr}"), e)];
        }
    }
    // Unknown values (known after apply) are checked at apply by the API.
    let mut known = BTreeMap::new();
    if let Value::Map(m) = config {
        for (k, v) in m {
            if !v.has_unknown() {
                known.insert(k.clone(), v.clone());
            }
        }
    }
    // Required attributes that are unknown stand in as valid placeholders for the parse.
    for (attr, placeholder) in [("id", "x"), ("tenant", "x"), ("tee", "sim")] {
        if config.get(attr).has_unknown() || config.get(attr).is_null() {
            known.insert(attr.into(), Value::string(placeholder));
        }
    }
    let e = match spec(&Value::Map(known)) {
        Ok(e) => e,
        Err((attr, why)) => {
            return vec![schema::error_at(attr, format!("Invalid {attr}"), why)];
        }
    };
    if config.has_unknown() {
        return vec![];
    }
    match bounds::enclave(&e) {
        Ok(()) => vec![],
        Err(b) => {
            let attr = match b.field.split(['.', '[']).next().unwrap_or("") {
                "placement" => "host",
                f if CONFIGURABLE.contains(&f) => CONFIGURABLE
                    .iter()
                    .find(|a| **a == f)
                    .copied()
                    .unwrap_or("id"),
                _ => "id",
            };
            vec![schema::error_at(
                attr,
                format!("Invalid {attr}"),
                b.to_string(),
            )]
        }
    }
}

/// Whether setting `attr` to `v` in `prior` describes the same enclave (another spelling of
/// the same value: `jsonencode` spacing, an explicit zero in `requested`).
fn same_value(prior: &Value, attr: &str, v: &Value) -> bool {
    let Value::Map(m) = prior else { return false };
    let mut alt = m.clone();
    alt.insert(attr.to_string(), v.clone());
    match (spec(prior), spec(&Value::Map(alt))) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// What Terraform should plan: the planned state and the attributes that force replacement.
/// A configured value that means the same as the prior one keeps the prior spelling (Terraform
/// accepts the prior value for an attribute whose configuration and prior value are both set);
/// nothing changed → the prior state exactly; a change → the configuration with the computed
/// attributes unknown (apply learns them).
pub fn plan(prior: &Value, proposed: &Value) -> (Value, Vec<&'static str>) {
    let Value::Map(p) = proposed else {
        return (Value::Null, vec![]);
    };
    let mut p = p.clone();
    if !prior.is_null() {
        for a in CONFIGURABLE {
            let (c, was) = (proposed.get(a), prior.get(a));
            if c != was
                && !c.is_null()
                && !was.is_null()
                && !c.has_unknown()
                && same_value(prior, a, c)
            {
                p.insert(a.to_string(), was.clone());
            }
        }
    }
    let proposed = Value::Map(p.clone());
    let changed = prior.is_null() || CONFIGURABLE.iter().any(|a| proposed.get(a) != prior.get(a));
    if !changed {
        return (prior.clone(), vec![]);
    }
    let mut planned = p;
    for a in COMPUTED {
        planned.insert(a.to_string(), Value::Unknown);
    }
    let replace = !prior.is_null() && proposed.get("id") != prior.get("id");
    (
        Value::Map(planned),
        if replace { vec!["id"] } else { vec![] },
    )
}

/// The state after reading the enclave: null when it is gone.
pub async fn read(client: &Client, current: &Value) -> Result<Value, tf::Diagnostic> {
    let Some(id) = current.get("id").as_str() else {
        return Ok(Value::Null);
    };
    match client.get_enclave(id).await {
        Ok(None) => Ok(Value::Null),
        Ok(Some(e)) => Ok(state(&e, current)),
        Err(e) => Err(api_error(&format!("Reading enclave {id:?}"), &e)),
    }
}

fn version_of(v: &Value) -> Option<u64> {
    v.get("version")
        .as_i64()
        .and_then(|i| u64::try_from(i).ok())
}

fn changed_outside(id: &str, want: u64, now: Option<u64>, doing: &str) -> tf::Diagnostic {
    let now = now.map_or_else(|| "another version".to_string(), |v| format!("version {v}"));
    schema::error(
        format!("Enclave {id:?} changed outside Terraform"),
        format!(
            "{doing} expected version {want}, but Tribune holds {now}: someone changed it since Terraform last read it. Nothing was written. Run `terraform plan` again to see the change, then apply."
        ),
    )
}

fn conflict_or(e: &ClientError, id: &str, want: u64, doing: &str) -> tf::Diagnostic {
    match e.problem() {
        Some(p) if p.status == 409 || p.status == 412 => {
            if p.kind.ends_with("/enclave-in-use") {
                schema::error(format!("{doing} enclave {id:?} refused"), p.detail.clone())
            } else {
                changed_outside(id, want, p.current_version, doing)
            }
        }
        _ => api_error(&format!("{doing} enclave {id:?}"), e),
    }
}

/// Creates, updates or deletes; returns the new state (null after a delete).
pub async fn apply(
    client: &Client,
    prior: &Value,
    planned: &Value,
) -> Result<Value, tf::Diagnostic> {
    if planned.is_null() {
        return destroy(client, prior).await.map(|()| Value::Null);
    }
    let mut e = spec(planned)
        .map_err(|(attr, why)| schema::error_at(attr, format!("Invalid {attr} at apply"), why))?;
    if prior.is_null() {
        return match client.put_enclave(&e, Precondition::Absent, false).await {
            Ok(stored) => Ok(state(&stored, planned)),
            Err(err) if err.status() == Some(409) || err.status() == Some(412) => {
                Err(schema::error_at(
                    "id",
                    format!("Enclave {:?} already exists in Tribune", e.id),
                    format!(
                        "Terraform creates enclaves only if absent and did not overwrite the existing one ({}). To manage it with Terraform, import it:\n  terraform import {TYPE}.<resource name> {}",
                        err.problem()
                            .map_or_else(|| err.to_string(), |p| p.detail.clone()),
                        e.id
                    ),
                ))
            }
            Err(err) => Err(api_error(&format!("Creating enclave {:?}", e.id), &err)),
        };
    }
    let want = version_of(prior).unwrap_or(0);
    let id = e.id.clone();
    // Read first, to say clearly what happened if it changed or went away. The stored state
    // and epoch go back as they are; `spec_only` makes the controller keep them regardless
    // (the loop may change the state between this read and the write, without a version).
    let fresh = match client.get_enclave(&id).await {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Err(schema::error(
                format!("Enclave {id:?} was deleted outside Terraform"),
                "It disappeared after Terraform last read it; nothing was written. Run `terraform plan` again: it will plan to create it.",
            ));
        }
        Err(err) => return Err(api_error(&format!("Reading enclave {id:?}"), &err)),
    };
    if fresh.version != want {
        return Err(changed_outside(&id, want, Some(fresh.version), "Updating"));
    }
    e.state = fresh.state;
    if let (Some(p), Some(f)) = (e.placement.as_mut(), fresh.placement.as_ref()) {
        p.epoch = f.epoch;
    }
    match client
        .put_enclave(&e, Precondition::Version(want), true)
        .await
    {
        Ok(stored) => Ok(state(&stored, planned)),
        Err(err) => Err(conflict_or(&err, &id, want, "Updating")),
    }
}

/// Deletes the enclave at the version Terraform last read; one placed and not stopped is
/// stopped first (the API refuses to delete what an agent may be running).
async fn destroy(client: &Client, prior: &Value) -> Result<(), tf::Diagnostic> {
    let (Some(id), Some(want)) = (prior.get("id").as_str(), version_of(prior)) else {
        return Ok(());
    };
    let fresh = match client.get_enclave(id).await {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(()),
        Err(err) => return Err(api_error(&format!("Reading enclave {id:?}"), &err)),
    };
    if fresh.version != want {
        return Err(changed_outside(id, want, Some(fresh.version), "Deleting"));
    }
    let mut version = want;
    if fresh.placement.is_some() && fresh.state != EnclaveState::Stopped {
        let stop = Enclave {
            state: EnclaveState::Stopped,
            ..fresh
        };
        let stopped = client
            .put_enclave(&stop, Precondition::Version(want), false)
            .await
            .map_err(|err| conflict_or(&err, id, want, "Stopping"))?;
        version = stopped.version;
    }
    client
        .delete_enclave(id, version)
        .await
        .map_err(|err| conflict_or(&err, id, version, "Deleting"))
}

/// The state of an existing enclave to import by id (Terraform reads it right after).
pub async fn import(client: &Client, id: &str) -> Result<Value, tf::Diagnostic> {
    match client.get_enclave(id).await {
        Ok(Some(e)) => Ok(state(&e, &Value::Null)),
        Ok(None) => Err(schema::error(
            format!("No enclave {id:?} to import"),
            "Check the id (`tribune enclave ls` lists them).",
        )),
        Err(err) => Err(api_error(&format!("Importing enclave {id:?}"), &err)),
    }
}

#[cfg(test)]
#[path = "enclave_tests.rs"]
mod tests;
