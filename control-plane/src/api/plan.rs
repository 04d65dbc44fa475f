//! `POST /v1/policies/plan` (and its gRPC twin `PlanPolicies`): what a policy change would
//! have done to the recorded usage, before it is applied (`tribune policy plan`). The request
//! and answer types are defined here once; the server, the CLI and `tribune bench plan` use them.
//!
//! Three steps: [`select`] copies, under the state lock, what the log recorded about the
//! chosen enclaves (usage digests as windows, verdicts, ladder, borrow and lend actions); the
//! planned policy set is the stored one with the request's policies replacing or adding theirs;
//! [`crate::attest::replay::replay`] runs the windows through the live loop's own decision
//! outside the lock. Nothing is written: a plan changes nothing.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tribune_policy::{CompiledPolicy, PolicySet};

use super::problem::Problem;
use super::service::{Api, now_ms};
use crate::attest::decide::{compile, compile_each};
use crate::attest::replay::{Comparison, History, Record, Recorded, Window, replay};
use crate::attest::window::WINDOW_S_MAX;
use crate::auth::{Op, Principal};
use crate::state::{ActionDetail, Enclave, LogDetail, Policy, State};
use crate::validate::POLICY_SOURCE_BYTES_MAX;

/// How far back a plan replays when the request does not say.
pub const PLAN_SINCE_S_DEFAULT: u64 = 3_600;
/// How far back a plan may replay: the planner's retention. The log keeps every usage digest
/// for as long as the log lives; the bound is on the work one request may ask for.
pub const PLAN_SINCE_S_MAX: u64 = 86_400;
/// `enclaves`: bytes and comma-separated terms, at most.
pub const PLAN_SELECTOR_BYTES_MAX: usize = 4_096;
pub const PLAN_SELECTOR_TERMS_MAX: usize = 256;
/// Usage windows one plan replays, at most (1 000 enclaves × 5½ h at one window a second).
pub const PLAN_WINDOWS_MAX: u64 = 20_000_000;

/// A plan request: policy source (one file, any number of policies), how far back, which
/// enclaves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct PlanRequest {
    /// Policy source text: each policy it defines replaces the stored policy of its name, or is
    /// added.
    pub source: String,
    /// Replay the last this many seconds (default [`PLAN_SINCE_S_DEFAULT`], at most
    /// [`PLAN_SINCE_S_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_s: Option<u64>,
    /// Which enclaves, comma-separated terms, any of which selects: an enclave id,
    /// `tenant=T`, `host=H`, `label.K=V`. Default: every placed enclave the caller may see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enclaves: Option<String>,
}

/// A plan: per enclave, what happened, what the planned set would have done, the differences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyPlan {
    /// The period replayed, Unix ms, inclusive.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Stored policies the request replaces, and policies it adds.
    pub replaced: Vec<String>,
    pub added: Vec<String>,
    /// Usage windows replayed, all enclaves together.
    pub windows: u64,
    /// One per selected enclave, in id order.
    pub enclaves: Vec<Comparison>,
}

impl PolicyPlan {
    /// The enclaves whose course would change.
    pub fn changed(&self) -> impl Iterator<Item = &Comparison> {
        self.enclaves.iter().filter(|c| c.changed)
    }
}

/// One term of an `enclaves` selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    Id(String),
    Tenant(String),
    Host(String),
    Label(String, String),
}

impl Term {
    fn matches(&self, e: &Enclave) -> bool {
        match self {
            Term::Id(id) => e.id == *id,
            Term::Tenant(t) => e.tenant == *t,
            Term::Host(h) => e.placement.as_ref().is_some_and(|p| p.host == *h),
            Term::Label(k, v) => e.labels.get(k) == Some(v),
        }
    }
}

/// Why an `enclaves` selector is refused: what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("enclaves: the selector is {0} bytes; at most {PLAN_SELECTOR_BYTES_MAX}")]
    TooLong(usize),
    #[error("enclaves: {0} terms; at most {PLAN_SELECTOR_TERMS_MAX}")]
    TooManyTerms(usize),
    #[error(
        "enclaves: term {n} ({term:?}): unknown key {key:?}; a term is an enclave id, tenant=T, host=H or label.K=V"
    )]
    UnknownKey { n: usize, term: String, key: String },
    #[error("enclaves: term {n} ({term:?}): empty or invalid value")]
    BadValue { n: usize, term: String },
}

/// Parses `enclaves`: comma-separated terms (`ID`, `tenant=T`, `host=H`, `label.K=V`).
pub fn parse_selector(s: &str) -> Result<Vec<Term>, SelectorError> {
    if s.len() > PLAN_SELECTOR_BYTES_MAX {
        return Err(SelectorError::TooLong(s.len()));
    }
    let raw: Vec<&str> = s.split(',').map(str::trim).collect();
    if raw.len() > PLAN_SELECTOR_TERMS_MAX {
        return Err(SelectorError::TooManyTerms(raw.len()));
    }
    raw.iter()
        .enumerate()
        .map(|(i, t)| {
            let valid = |v: &str| {
                !v.is_empty() && !v.chars().any(|c| c.is_control() || c == '=' || c == ',')
            };
            let term = match t.split_once('=') {
                None => Term::Id((*t).to_string()),
                Some(("tenant", v)) => Term::Tenant(v.to_string()),
                Some(("host", v)) => Term::Host(v.to_string()),
                Some((k, v)) => match k.strip_prefix("label.") {
                    Some(k) if valid(k) => Term::Label(k.to_string(), v.to_string()),
                    _ => {
                        return Err(SelectorError::UnknownKey {
                            n: i + 1,
                            term: (*t).to_string(),
                            key: k.to_string(),
                        });
                    }
                },
            };
            let value = match &term {
                Term::Id(v) | Term::Tenant(v) | Term::Host(v) | Term::Label(_, v) => v,
            };
            if !valid(value) {
                return Err(SelectorError::BadValue {
                    n: i + 1,
                    term: (*t).to_string(),
                });
            }
            Ok(term)
        })
        .collect()
}

/// The period a plan replays, `(from, to)` in Unix ms: the last `since_s` seconds (default
/// [`PLAN_SINCE_S_DEFAULT`]) before `now_ms`, within the planner's retention.
pub fn period(since_s: Option<u64>, now_ms: i64) -> Result<(i64, i64), Problem> {
    let since_s = since_s.unwrap_or(PLAN_SINCE_S_DEFAULT);
    if since_s == 0 || since_s > PLAN_SINCE_S_MAX {
        return Err(bad(format!(
            "since_s={since_s}: a plan replays between 1 s and {PLAN_SINCE_S_MAX} s ({} h) of recorded usage (the planner's retention)",
            PLAN_SINCE_S_MAX / 3600
        )));
    }
    // since_s ≤ 86 400, so the product fits.
    Ok((now_ms.saturating_sub(since_s as i64 * 1000), now_ms))
}

/// What a plan reads from the state, copied under its lock.
pub struct Selection {
    pub histories: Vec<History>,
    pub stored: BTreeMap<String, Policy>,
    /// Windows in `from..=to`, all enclaves.
    pub windows: u64,
}

fn bad(detail: String) -> Problem {
    Problem::bad_request(detail)
}

/// Chooses the enclaves (placed, visible to `tenant` when one is given, matching `terms`;
/// every term must match some enclave) and copies what the log recorded about them: usage
/// digests from the warm-up before `from` (the longest aggregate a policy may read) to `to`,
/// and every verdict and ladder, borrow and lend action up to `to` (the state at `from`).
pub fn select(
    st: &State,
    terms: Option<&[Term]>,
    tenant: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Selection, Problem> {
    let visible = |e: &&Enclave| e.placement.is_some() && tenant.is_none_or(|t| e.tenant == t);
    let chosen: Vec<&Enclave> = match terms {
        None => st.enclaves.values().filter(visible).collect(),
        Some(terms) => {
            for (i, t) in terms.iter().enumerate() {
                if !st.enclaves.values().filter(visible).any(|e| t.matches(e)) {
                    let what = match t {
                        Term::Id(id) => format!("unknown enclave {id:?}"),
                        _ => "it matches no placed enclave".to_string(),
                    };
                    return Err(bad(format!("enclaves: term {} ({t:?}): {what}", i + 1)));
                }
            }
            st.enclaves
                .values()
                .filter(visible)
                .filter(|e| terms.iter().any(|t| t.matches(e)))
                .collect()
        }
    };
    let slot: HashMap<&str, usize> = chosen
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    let mut histories: Vec<History> = chosen
        .iter()
        .map(|e| History {
            enclave: (*e).clone(),
            records: Vec::new(),
        })
        .collect();
    let warm_from = from_ms.saturating_sub(i64::from(WINDOW_S_MAX) * 1000);
    let mut windows = 0u64;
    for entry in &st.log.entries {
        if entry.at_ms > to_ms {
            continue;
        }
        let Some(&i) = slot.get(entry.subject.as_str()) else {
            continue;
        };
        let record = match &entry.detail {
            LogDetail::UsageDigest(d) if entry.at_ms >= warm_from => {
                if entry.at_ms >= from_ms {
                    windows += 1;
                    if windows > PLAN_WINDOWS_MAX {
                        return Err(Problem::too_large(format!(
                            "the plan would replay more than {PLAN_WINDOWS_MAX} usage windows; choose fewer enclaves (--enclaves) or a shorter period (--since)"
                        )));
                    }
                }
                Record::Window(Window {
                    first_seq: d.first_seq,
                    last_seq: d.last_seq,
                    cpu_millicores_avg: d.cpu_millicores_avg,
                    mem_bytes_max: d.mem_bytes_max,
                    net_tx_bytes: d.net_tx_bytes,
                    net_rx_bytes: d.net_rx_bytes,
                    divergence_bp_max: d.divergence_bp_max,
                    replayed: d.replayed,
                })
            }
            LogDetail::Verdict(v) => Record::Verdict {
                trusted: v.trusted,
                debug: v.debug,
                failures: v.failures,
                measurement: v.measurement.clone(),
            },
            LogDetail::Action(ActionDetail::Ladder(a)) => Record::Ladder {
                to: a.action,
                from: a.from,
                cause: a.cause.clone(),
                cpu_cap_millicores: a.cpu_cap_millicores,
            },
            LogDetail::Action(ActionDetail::Borrow(b)) => Record::Borrowed {
                cpu_millicores: b.borrowed_cpu_millicores,
                cpu_cap_millicores: b.cpu_cap_millicores,
            },
            LogDetail::Action(ActionDetail::Lend(l)) => Record::Lent(l.lent_cpu_millicores),
            _ => continue,
        };
        histories[i].records.push(Recorded {
            index: entry.index,
            at_ms: entry.at_ms,
            record,
        });
    }
    Ok(Selection {
        histories,
        stored: st.policies.clone(),
        windows,
    })
}

/// The request's policies, checked: a checker error is a 400 naming the line and column.
pub fn check_source(source: &str) -> Result<Vec<CompiledPolicy>, Problem> {
    if source.len() > POLICY_SOURCE_BYTES_MAX {
        return Err(Problem::too_large(format!(
            "policy source is {} bytes; the limit is {POLICY_SOURCE_BYTES_MAX} bytes",
            source.len()
        )));
    }
    let file = "plan.tribune";
    let outcome = tribune_policy::check(file, source);
    if let Some((errors, rendered)) = crate::validate::checker_errors(file, source, &outcome) {
        let mut p = Problem::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid-policy",
            format!("the planned policies do not check; nothing was planned:\n{rendered}"),
        );
        p.diagnostics = errors;
        return Err(p);
    }
    if outcome.policies.is_empty() {
        return Err(bad("the source defines no policy; nothing to plan".into()));
    }
    Ok(outcome.policies)
}

/// The stored set with `new` replacing policies of the same names or added: what the live
/// loop would compile once they were stored. Also the names replaced and added.
pub fn planned_set(
    stored: &BTreeMap<String, Policy>,
    new: Vec<CompiledPolicy>,
) -> (PolicySet, Vec<String>, Vec<String>) {
    let mut kept = stored.clone();
    let (mut replaced, mut added) = (Vec::new(), Vec::new());
    for p in &new {
        if kept.remove(p.name()).is_some() {
            replaced.push(p.name().to_string());
        } else {
            added.push(p.name().to_string());
        }
    }
    let (mut all, _) = compile_each(&kept);
    all.extend(new);
    (PolicySet::new(all), replaced, added)
}

/// The plan of a selection: the stored set and the planned one compiled, the windows
/// replayed (pure; what the API runs outside the state lock, and what `tribune bench plan`
/// times).
pub fn compute(sel: &Selection, new: Vec<CompiledPolicy>, from_ms: i64, to_ms: i64) -> PolicyPlan {
    let (stored, _) = compile(&sel.stored);
    let (planned, replaced, added) = planned_set(&sel.stored, new);
    PolicyPlan {
        from_ms,
        to_ms,
        replaced,
        added,
        windows: sel.windows,
        enclaves: replay(&stored, &planned, &sel.histories, from_ms, to_ms),
    }
}

impl Api {
    /// A policy plan. Authorised like a read of policies and the log (`Op::PlanPolicies`): it
    /// changes nothing. A tenant plans only policies limited to its own tenant, over its own
    /// enclaves.
    pub async fn plan_policies(
        &self,
        who: &Principal,
        req: PlanRequest,
    ) -> Result<PolicyPlan, Problem> {
        who.require(Op::PlanPolicies)?;
        let (from, to) = period(req.since_s, now_ms())?;
        let terms = req
            .enclaves
            .as_deref()
            .map(parse_selector)
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        let new = check_source(&req.source)?;
        if let Some(t) = &who.tenant {
            for p in &new {
                if p.tenants() != Some(&[t.clone()][..]) {
                    return Err(Problem::forbidden(format!(
                        "{} may plan only policies whose match is limited to its own tenant (`match tenant == \"{t}\" && …`); {:?} is not",
                        who.actor,
                        p.name()
                    )));
                }
            }
        }
        self.read(false).await?;
        let sel = {
            let st = self.state();
            select(&st, terms.as_deref(), who.tenant.as_deref(), from, to)?
        };
        // The replay is CPU work: off the async workers, outside the state lock.
        tokio::task::spawn_blocking(move || compute(&sel, new, from, to))
            .await
            .map_err(|e| Problem::from(crate::ControllerError::Internal(e.to_string())))
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
