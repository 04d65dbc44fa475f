//! `tribune_policy`: one policy, named as its source names it.
//!
//! - `source` is compared after canonical formatting (`tribune_policy::format`): a change of
//!   layout or comments-free whitespace only never shows as a diff, and the state keeps the text
//!   as the user wrote it (the plan keeps the prior text when the two format alike).
//! - Create sends `If-None-Match: *`: an existing policy of that name is never overwritten; the
//!   error says to import it. Update and delete send `If-Match` with the version last read, so a
//!   change made outside Terraform in between is a conflict, not a lost update.
//! - A read that finds no policy returns null: Terraform plans to create it again.
//!
//! The plan and the comparison are pure functions, tested below; the I/O is in `read`,
//! `apply` and `import`.

use tribune_controller::state::Policy;
use tribune_controller::validate::{PolicyLanguage, PolicyValidator, check_name};

use crate::client::{Client, ClientError, Precondition};
use crate::proto::tfplugin6 as tf;
use crate::schema::{self, Attr, Mode};
use crate::value::Value;

pub const TYPE: &str = "tribune_policy";

pub fn schema() -> tf::Schema {
    schema::schema(
        0,
        "A Tribune policy. The policy's source must define exactly one policy named `name`.",
        &[
            Attr::new("id", "\"string\"", Mode::Computed, "The policy's name."),
            Attr::new(
                "name",
                "\"string\"",
                Mode::Required,
                "The policy's name (changing it replaces the policy).",
            ),
            Attr::new(
                "source",
                "\"string\"",
                Mode::Required,
                "The policy-language source. Compared after canonical formatting: layout alone never shows a diff.",
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

/// Whether two sources are the same policy text up to canonical formatting. A source that
/// does not parse equals only itself.
pub fn same_source(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (tribune_policy::format(a), tribune_policy::format(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn state(p: &Policy, source: String) -> Value {
    Value::object([
        ("id", Value::string(&p.name)),
        ("name", Value::string(&p.name)),
        ("source", Value::String(source)),
        (
            "version",
            Value::Int(i64::try_from(p.version).unwrap_or(i64::MAX)),
        ),
    ])
}

/// Plan-time checks: the name's form, and the policy checker's findings, each at its
/// attribute with the line and column inside `source`.
pub fn validate(config: &Value) -> Vec<tf::Diagnostic> {
    let mut out = vec![];
    let name = config.get("name").as_str();
    if let Some(n) = name
        && let Err(e) = check_name("policy", n)
    {
        out.push(schema::error_at("name", "Invalid policy name", e));
        return out;
    }
    let Some(source) = config.get("source").as_str() else {
        return out; // unknown until apply, or missing (Terraform reports that itself)
    };
    let problems = match name {
        Some(n) => PolicyLanguage.validate(n, source).err().map(|(p, _)| p),
        None => {
            // The name is not known yet: check the source alone.
            let o = tribune_policy::check("policy.tribune", source);
            o.has_errors().then(|| {
                o.diagnostics
                    .into_iter()
                    .filter(|d| d.is_error())
                    .map(tribune_controller::validate::PolicyProblem::error)
                    .collect()
            })
        }
    };
    for p in problems.unwrap_or_default() {
        let mut detail = format!(
            "The policy checker found a problem in `source` at line {}, column {} ({}): {}",
            p.line, p.column, p.code, p.message
        );
        if let Some(h) = &p.hint {
            detail.push_str(&format!("\nhelp: {h}"));
        }
        out.push(schema::error_at(
            "source",
            format!(
                "Policy check failed: {} at source line {}:{}",
                p.message, p.line, p.column
            ),
            detail,
        ));
    }
    out
}

/// What Terraform should plan: the planned state and the attributes that force replacement.
/// `prior` is null for a create; `proposed` is null for a destroy.
pub fn plan(prior: &Value, proposed: &Value) -> (Value, Vec<&'static str>) {
    if proposed.is_null() {
        return (Value::Null, vec![]);
    }
    let name = proposed.get("name").clone();
    let config_source = proposed.get("source").clone();
    let id = match &name {
        Value::String(_) => name.clone(),
        _ => Value::Unknown,
    };
    if prior.is_null() {
        let planned = Value::object([
            ("id", id),
            ("name", name),
            ("source", config_source),
            ("version", Value::Unknown),
        ]);
        return (planned, vec![]);
    }
    let replace = name != *prior.get("name");
    let source = match (config_source.as_str(), prior.get("source").as_str()) {
        (Some(c), Some(p)) if same_source(c, p) => Value::string(p),
        _ => config_source,
    };
    let unchanged = !replace && source == *prior.get("source");
    let planned = Value::object([
        ("id", if replace { id } else { prior.get("id").clone() }),
        ("name", name),
        ("source", source),
        (
            "version",
            if unchanged {
                prior.get("version").clone()
            } else {
                Value::Unknown
            },
        ),
    ]);
    (planned, if replace { vec!["name"] } else { vec![] })
}

/// The state after reading the policy: null when it is gone; the stored text when it differs
/// from the state's beyond formatting (drift), else the state's own text.
pub async fn read(client: &Client, current: &Value) -> Result<Value, tf::Diagnostic> {
    let Some(name) = current.get("name").as_str() else {
        return Ok(Value::Null);
    };
    match client.get_policy(name).await {
        Ok(None) => Ok(Value::Null),
        Ok(Some(p)) => {
            let source = match current.get("source").as_str() {
                Some(s) if same_source(s, &p.source) => s.to_string(),
                _ => p.source.clone(),
            };
            Ok(state(&p, source))
        }
        Err(e) => Err(api_error(&format!("Reading policy {name:?}"), &e)),
    }
}

/// Creates, updates or deletes; returns the new state (null after a delete).
pub async fn apply(
    client: &Client,
    prior: &Value,
    planned: &Value,
) -> Result<Value, tf::Diagnostic> {
    if planned.is_null() {
        let (Some(name), Some(version)) = (prior.get("name").as_str(), version_of(prior)) else {
            return Ok(Value::Null);
        };
        return client
            .delete_policy(name, version)
            .await
            .map(|()| Value::Null)
            .map_err(|e| conflict_or(&e, name, version, "Deleting"));
    }
    let (Some(name), Some(source)) = (planned.get("name").as_str(), planned.get("source").as_str())
    else {
        return Err(schema::error(
            "Policy name or source unknown at apply",
            "Terraform gave no known `name`/`source` to apply; this is a bug in the configuration or the provider",
        ));
    };
    let creating = prior.is_null();
    if creating {
        return match client.put_policy(name, source, Precondition::Absent).await {
            Ok(p) => Ok(state(&p, source.to_string())),
            Err(e) if e.status() == Some(409) || e.status() == Some(412) => Err(schema::error_at(
                "name",
                format!("Policy {name:?} already exists in Tribune"),
                format!(
                    "Terraform creates policies only if absent and did not overwrite the existing one ({}). To manage it with Terraform, import it:\n  terraform import {TYPE}.<resource name> {name}",
                    e.problem()
                        .map_or_else(|| e.to_string(), |p| p.detail.clone())
                ),
            )),
            Err(e) => Err(api_error(&format!("Creating policy {name:?}"), &e)),
        };
    }
    let version = version_of(prior).unwrap_or(0);
    match client
        .put_policy(name, source, Precondition::Version(version))
        .await
    {
        Ok(p) => Ok(state(&p, source.to_string())),
        Err(e) => Err(conflict_or(&e, name, version, "Updating")),
    }
}

/// The state of an existing policy to import by name (Terraform reads it right after).
pub async fn import(client: &Client, id: &str) -> Result<Value, tf::Diagnostic> {
    match client.get_policy(id).await {
        Ok(Some(p)) => Ok(state(&p, p.source.clone())),
        Ok(None) => Err(schema::error(
            format!("No policy named {id:?} to import"),
            "Check the name (`tribune policy ls` lists them).",
        )),
        Err(e) => Err(api_error(&format!("Importing policy {id:?}"), &e)),
    }
}

fn version_of(v: &Value) -> Option<u64> {
    v.get("version")
        .as_i64()
        .and_then(|i| u64::try_from(i).ok())
}

fn conflict_or(e: &ClientError, name: &str, version: u64, doing: &str) -> tf::Diagnostic {
    if e.status() == Some(409) || e.status() == Some(412) {
        let now = e
            .problem()
            .and_then(|p| p.current_version)
            .map_or_else(|| "another version".to_string(), |v| format!("version {v}"));
        schema::error(
            format!("Policy {name:?} changed outside Terraform"),
            format!(
                "{doing} expected version {version}, but Tribune holds {now}: someone changed it since Terraform last read it. Nothing was written. Run `terraform plan` again to see the change, then apply."
            ),
        )
    } else {
        api_error(&format!("{doing} policy {name:?}"), e)
    }
}

/// An API failure as a diagnostic; invalid-policy problems list the checker's findings.
pub fn api_error(what: &str, e: &ClientError) -> tf::Diagnostic {
    schema::error(format!("{what} failed"), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "policy \"p\" {\n  match tenant == \"acme\"\n  limit { cpu = 1 }\n}\n";
    const SRC_REFORMATTED: &str =
        "policy \"p\"   {\n   match tenant==\"acme\"\n  limit   {\n   cpu = 1 }\n}";
    const SRC_CHANGED: &str =
        "policy \"p\" {\n  match tenant == \"acme\"\n  limit { cpu = 2 }\n}\n";

    fn cfg(name: &str, source: &str) -> Value {
        Value::object([
            ("id", Value::Null),
            ("name", Value::string(name)),
            ("source", Value::string(source)),
            ("version", Value::Null),
        ])
    }

    fn prior(name: &str, source: &str, version: i64) -> Value {
        Value::object([
            ("id", Value::string(name)),
            ("name", Value::string(name)),
            ("source", Value::string(source)),
            ("version", Value::Int(version)),
        ])
    }

    #[test]
    fn formatting_alone_is_not_a_change() {
        assert!(same_source(SRC, SRC_REFORMATTED));
        assert!(!same_source(SRC, SRC_CHANGED));
        // A source that does not parse equals only itself.
        assert!(same_source("policy {", "policy {"));
        assert!(!same_source("policy {", "policy  {"));
        let (planned, replace) = plan(&prior("p", SRC, 3), &cfg("p", SRC_REFORMATTED));
        assert_eq!(
            planned,
            prior("p", SRC, 3),
            "the prior text and version are kept"
        );
        assert!(replace.is_empty());
    }

    #[test]
    fn a_changed_source_is_an_update_with_a_new_version() {
        let (planned, replace) = plan(&prior("p", SRC, 3), &cfg("p", SRC_CHANGED));
        assert_eq!(planned.get("source").as_str(), Some(SRC_CHANGED));
        assert_eq!(planned.get("version"), &Value::Unknown);
        assert_eq!(planned.get("id").as_str(), Some("p"));
        assert!(replace.is_empty());
    }

    #[test]
    fn a_new_name_forces_replacement_and_create_plans_unknown_version() {
        let (planned, replace) = plan(&prior("p", SRC, 3), &cfg("q", SRC));
        assert_eq!(replace, vec!["name"]);
        assert_eq!(planned.get("version"), &Value::Unknown);
        let (created, replace) = plan(&Value::Null, &cfg("p", SRC));
        assert!(replace.is_empty());
        assert_eq!(created.get("id").as_str(), Some("p"));
        assert_eq!(created.get("source").as_str(), Some(SRC));
        assert_eq!(created.get("version"), &Value::Unknown);
        assert_eq!(plan(&prior("p", SRC, 1), &Value::Null).0, Value::Null);
    }

    #[test]
    fn an_unknown_source_stays_unknown() {
        let mut c = cfg("p", SRC);
        if let Value::Map(m) = &mut c {
            m.insert("source".into(), Value::Unknown);
        }
        let (planned, _) = plan(&prior("p", SRC, 2), &c);
        assert_eq!(planned.get("source"), &Value::Unknown);
        assert_eq!(planned.get("version"), &Value::Unknown);
        assert!(validate(&c).is_empty());
    }

    #[test]
    fn checker_findings_point_at_source_with_line_and_column() {
        let bad = "policy \"p\" {\n  match tenant == \"acme\"\n  limit { cpu = 5GiB }\n}\n";
        let d = validate(&cfg("p", bad));
        assert!(!d.is_empty());
        let first = &d[0];
        assert_eq!(first.attribute, Some(schema::path("source")));
        assert!(
            first.summary.contains("source line 3:"),
            "{}",
            first.summary
        );
        // The stored name must match the source's.
        let d = validate(&cfg("q", SRC));
        assert!(d[0].summary.contains("\"p\""), "{}", d[0].summary);
        let d = validate(&cfg("Bad Name", SRC));
        assert_eq!(d[0].attribute, Some(schema::path("name")));
        assert!(validate(&cfg("p", SRC)).is_empty());
    }
}
