//! The seam where the policy language checks a policy before it is stored.
//!
//! The API calls the validator on the controller that receives the request, before anything is
//! proposed to Raft: a rejected policy is never written, on any replica.

use serde::{Deserialize, Serialize};

/// Largest policy source accepted, in bytes.
pub const POLICY_SOURCE_BYTES_MAX: usize = 256 * 1024;

/// One problem found in a policy, in the shape the console and Terraform provider show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyProblem {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub line: u32,
    pub column: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl PolicyProblem {
    /// An error diagnostic of the policy language, in this shape.
    pub fn error(d: tribune_policy::Diagnostic) -> PolicyProblem {
        PolicyProblem {
            severity: "error".into(),
            code: d.code,
            message: d.message,
            line: d.line,
            column: d.column,
            hint: d.hint,
        }
    }
}

/// What the API needs to know about a policy that checks: whom it can apply to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyScope {
    /// The tenants its `match` is limited to; `None`: it could match any tenant.
    pub tenants: Option<Vec<String>>,
}

impl PolicyScope {
    /// Whether the policy can apply to `tenant`'s enclaves only.
    pub fn only_tenant(&self, tenant: &str) -> bool {
        self.tenants.as_deref() == Some(&[tenant.to_string()][..])
    }
}

/// Checks a policy's source for a given name.
pub trait PolicyValidator: Send + Sync + 'static {
    /// The policy's scope if the source may be stored under `name`; otherwise every problem
    /// found, plus a rendered, human-readable form of them.
    fn validate(
        &self,
        name: &str,
        source: &str,
    ) -> Result<PolicyScope, (Vec<PolicyProblem>, String)>;
}

/// Accepts any non-empty source: used where the policy language is not wired in.
pub struct AcceptNonEmpty;

impl PolicyValidator for AcceptNonEmpty {
    fn validate(
        &self,
        _name: &str,
        source: &str,
    ) -> Result<PolicyScope, (Vec<PolicyProblem>, String)> {
        if source.trim().is_empty() {
            let p = PolicyProblem {
                severity: "error".into(),
                code: "E0000".into(),
                message: "the policy source is empty".into(),
                line: 1,
                column: 1,
                hint: Some("write at least one `policy \"name\" { … }` block".into()),
            };
            return Err((vec![p], "error: the policy source is empty".into()));
        }
        Ok(PolicyScope::default())
    }
}

/// The checker's errors in `outcome` (of `source`, checked as `file`) as problems, and the
/// rustc-style rendering of them; `None` when it has none. The one conversion of checker
/// diagnostics to API problems (storing a policy, planning one).
pub fn checker_errors(
    file: &str,
    source: &str,
    outcome: &tribune_policy::CheckOutcome,
) -> Option<(Vec<PolicyProblem>, String)> {
    if !outcome.has_errors() {
        return None;
    }
    let errors: Vec<_> = outcome
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    let rendered = tribune_policy::render_diagnostics(file, source, &errors);
    let problems = errors.into_iter().map(PolicyProblem::error).collect();
    Some((problems, rendered))
}

/// The policy language's checker: types, units, ranges, unreachable rules. The source must
/// define exactly one policy, named as it is stored.
pub struct PolicyLanguage;

impl PolicyValidator for PolicyLanguage {
    fn validate(
        &self,
        name: &str,
        source: &str,
    ) -> Result<PolicyScope, (Vec<PolicyProblem>, String)> {
        let file = format!("{name}.tribune");
        let outcome = tribune_policy::check(&file, source);
        let mut problems: Vec<PolicyProblem> = Vec::new();
        let mut rendered = String::new();
        if let Some((errors, text)) = checker_errors(&file, source, &outcome) {
            problems = errors;
            rendered = text;
        } else {
            let names: Vec<&str> = outcome.policies.iter().map(|p| p.name()).collect();
            let problem = match names.as_slice() {
                [only] if *only == name => None,
                [only] => Some(format!(
                    "the source defines policy {only:?} but is being stored as {name:?}; the names must match"
                )),
                [] => Some("the source defines no policy".to_string()),
                many => Some(format!(
                    "the source defines {} policies ({}); store each under its own name",
                    many.len(),
                    many.join(", ")
                )),
            };
            if let Some(message) = problem {
                rendered = format!("error[E0900]: {message}");
                problems.push(PolicyProblem {
                    severity: "error".into(),
                    code: "E0900".into(),
                    message,
                    line: 1,
                    column: 1,
                    hint: Some(format!("write `policy \"{name}\" {{ … }}`")),
                });
            }
        }
        if problems.is_empty() {
            Ok(PolicyScope {
                tenants: outcome
                    .policies
                    .first()
                    .and_then(|p| p.tenants())
                    .map(<[String]>::to_vec),
            })
        } else {
            Err((problems, rendered))
        }
    }
}

/// Names are used in URLs, CLI arguments and Terraform addresses: keep them plain.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok_len = (1..=63).contains(&name.len());
    let mut chars = name.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_rest = chars
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.');
    if ok_len && ok_first && ok_rest {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {name:?}: use 1 to 63 characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_language_decides_what_is_stored() {
        let v = PolicyLanguage;
        assert!(
            v.validate("acme", "policy \"acme\" { match tenant == \"acme\" }")
                .is_ok()
        );
        let (problems, rendered) = v
            .validate("acme", "policy \"acme\" { limit { cpu = 2GiB } }")
            .unwrap_err();
        assert!(
            !problems.is_empty() && problems.iter().all(|p| p.severity == "error"),
            "{problems:?}"
        );
        assert!(
            rendered.contains("acme.tribune:1:"),
            "rendered like rustc: {rendered}"
        );
        let (problems, _) = v
            .validate("other", "policy \"acme\" { match true }")
            .unwrap_err();
        assert!(
            problems[0].message.contains("names must match"),
            "{problems:?}"
        );
        let (problems, _) = v.validate("acme", "# nothing here\n").unwrap_err();
        assert!(problems[0].message.contains("no policy"), "{problems:?}");
    }

    #[test]
    fn names() {
        for ok in ["a", "acme-batch", "t1.gpu_inference", "0abc"] {
            assert!(check_name("policy", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "Acme", "a b", "a/b", &"x".repeat(64), "é"] {
            assert!(check_name("policy", bad).is_err(), "{bad}");
        }
    }
}
