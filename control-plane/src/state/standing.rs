//! What the stored policies say of an enclave before any live fact: its standing **priority**
//! (and whether it may preempt), and how often it must be attested afresh. The scheduler
//! places and preempts on the first (`state/schedule.rs`); a live migration carries the
//! second (`live/decide.rs`), and its commit rolls back when the target's verdict is older
//! (`state/live.rs`).
//!
//! A policy's `priority N [preempt]` item decides an enclave's priority wherever a matching
//! policy an admin or an operator wrote sets one (a tenant's own policies do not count: a
//! tenant may not raise its standing over other tenants'); the spec's own `priority` and
//! `scheduling.preempt` count only where none does (docs/api.md, "Scheduling"). The policies are part of the replicated state, so every
//! replica derives the same priorities at apply: the re-check of a preemption reads them here
//! too. The compiled set is a derived cache beside the state ([`CompiledPolicies`]), compiled
//! again only when a policy changes. Pure.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tribune_migration::EnclaveSpec;
use tribune_policy::{PolicySet, StandingPriority};

use super::{Attestation, Enclave, Policy, State, enclave_spec};

/// The enclave as the policy language sees it (what `match` and `attest_knobs` read).
pub fn identity(e: &Enclave, attestation: Option<&Attestation>) -> tribune_policy::Enclave {
    tribune_policy::Enclave {
        tenant: e.tenant.clone(),
        labels: e.labels.clone(),
        tee: e.tee,
        measurement: attestation
            .map(|a| a.measurement.clone())
            .unwrap_or_default(),
        class: e.labels.get("class").cloned().unwrap_or_default(),
    }
}

/// Compiles the stored policies into a set. Policies that do not compile (they were checked
/// when stored, so only a newer language version could refuse them) are skipped and named.
pub fn compile(policies: &BTreeMap<String, Policy>) -> (PolicySet, Vec<String>) {
    let (compiled, bad) = compile_each(policies);
    (PolicySet::new(compiled), bad)
}

/// [`compile`]'s policies before they become a set (the planner adds its own to them).
pub fn compile_each(
    policies: &BTreeMap<String, Policy>,
) -> (Vec<tribune_policy::CompiledPolicy>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for p in policies.values() {
        let checked = tribune_policy::check(&format!("{}.tribune", p.name), &p.source);
        if checked.has_errors() {
            bad.push(p.name.clone());
        } else {
            out.extend(checked.policies);
        }
    }
    (out, bad)
}

/// Which stored policies a compiled set was made from: each one's name, version, last write
/// and source length (a policy deleted and made again starts at version 1).
type PolicyKey = Vec<(String, u64, i64, usize)>;

fn same_policies(key: &PolicyKey, policies: &BTreeMap<String, Policy>) -> bool {
    key.iter()
        .map(|(n, v, at, len)| (n.as_str(), *v, *at, *len))
        .eq(policies
            .values()
            .map(|p| (p.name.as_str(), p.version, p.updated_at_ms, p.source.len())))
}

/// The stored policies, compiled: a derived cache beside the state, equal whatever it holds
/// (states compare by what they store) and never serialized.
#[derive(Default)]
pub(super) struct CompiledPolicies(Mutex<Option<(PolicyKey, Arc<PolicySet>)>>);

impl Clone for CompiledPolicies {
    fn clone(&self) -> Self {
        let held = self.0.lock().map(|g| g.clone()).unwrap_or(None);
        CompiledPolicies(Mutex::new(held))
    }
}

impl PartialEq for CompiledPolicies {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CompiledPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledPolicies")
    }
}

/// A standing priority as the scheduler's integer (the language bounds it to 0–1000).
fn priority_value(p: &StandingPriority) -> i32 {
    if p.value.is_finite() {
        p.value.round().clamp(0.0, 1000.0) as i32
    } else {
        0
    }
}

/// `e`'s scheduling spec ([`enclave_spec`]) with the priority and `preempt` of the policy that
/// sets them, where one does.
pub fn spec_under(policies: &PolicySet, state: &State, e: &Enclave) -> EnclaveSpec {
    let mut spec = enclave_spec(e);
    if let Some(p) = standing_priority(policies, state, e) {
        spec.priority = priority_value(&p);
        spec.preempt = p.preempt;
    }
    spec
}

/// The standing priority the policies give `e` ([`PolicySet::priority_of`]), its identity
/// read with the measurement of its last verdict.
pub fn standing_priority(
    policies: &PolicySet,
    state: &State,
    e: &Enclave,
) -> Option<StandingPriority> {
    let attestation = state.status.get(&e.id).and_then(|s| s.attestation.as_ref());
    policies.priority_of(&identity(e, attestation))
}

/// A spec that asks for more than its policy gives: a `priority` other than the policy's (0
/// means "not asked"), or `preempt` where the policy's `priority` has none. The policy decides
/// an enclave's standing; the spec may not raise it (docs/api.md, "Scheduling").
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PriorityConflict {
    #[error(
        "priority: policy {policy:?} (line {line}) gives enclave {enclave:?} priority {policy_value}; the spec asks {asked}: leave priority out (0) or set it to {policy_value}"
    )]
    Priority {
        enclave: String,
        policy: String,
        line: u32,
        policy_value: i32,
        asked: i32,
    },
    #[error(
        "scheduling.preempt: policy {policy:?} (line {line}) gives enclave {enclave:?} `priority {policy_value}` without `preempt`: it may not displace other enclaves"
    )]
    Preempt {
        enclave: String,
        policy: String,
        line: u32,
        policy_value: i32,
    },
}

/// Whether `e`'s spec keeps within what its policy gives it ([`PriorityConflict`]). A spec
/// no policy gives a priority keeps its own.
pub fn check_priority(
    policies: &PolicySet,
    state: &State,
    e: &Enclave,
) -> Result<(), PriorityConflict> {
    let Some(p) = standing_priority(policies, state, e) else {
        return Ok(());
    };
    let value = priority_value(&p);
    if e.priority != 0 && e.priority != value {
        return Err(PriorityConflict::Priority {
            enclave: e.id.clone(),
            policy: p.policy,
            line: p.line,
            policy_value: value,
            asked: e.priority,
        });
    }
    let asks_preempt = e.scheduling.as_ref().is_some_and(|s| s.preempt);
    if asks_preempt && !p.preempt {
        return Err(PriorityConflict::Preempt {
            enclave: e.id.clone(),
            policy: p.policy,
            line: p.line,
            policy_value: value,
        });
    }
    Ok(())
}

/// Whether policy `p` was last written by a tenant: its `updated_by` is a tenant's certificate
/// URI or a tenant's token. A tenant may store policies for its own enclaves, but their
/// standing (priority, preemption) is not theirs to raise: [`State::policy_set`] leaves
/// tenants' policies out.
pub fn written_by_tenant(state: &State, p: &Policy) -> bool {
    let actor = p.updated_by.as_str();
    if let Ok(tribune_tls::PeerIdentity::User { role, .. }) =
        tribune_tls::PeerIdentity::from_uri(actor)
    {
        return role == tribune_tls::UserRole::Tenant;
    }
    // `token:ID (NAME)` (`auth::Principal`).
    actor
        .strip_prefix("token:")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|id| state.tokens.get(id))
        .is_some_and(|t| t.role == tribune_tls::UserRole::Tenant)
}

impl State {
    /// The stored policies an admin or an operator wrote, compiled (cached until a policy
    /// changes): what decides an enclave's standing. Tenants' policies are left out
    /// ([`written_by_tenant`]), and so are policies that no longer compile, as the decisions
    /// leave them out.
    pub fn policy_set(&self) -> Arc<PolicySet> {
        let operators = || -> BTreeMap<String, Policy> {
            self.policies
                .iter()
                .filter(|(_, p)| !written_by_tenant(self, p))
                .map(|(n, p)| (n.clone(), p.clone()))
                .collect()
        };
        let Ok(mut cached) = self.compiled.0.lock() else {
            return Arc::new(compile(&operators()).0);
        };
        if let Some((key, set)) = cached.as_ref()
            && same_policies(key, &self.policies)
        {
            return set.clone();
        }
        let set = Arc::new(compile(&operators()).0);
        let key = self
            .policies
            .values()
            .map(|p| (p.name.clone(), p.version, p.updated_at_ms, p.source.len()))
            .collect();
        *cached = Some((key, set.clone()));
        set
    }

    /// `e`'s scheduling spec under the stored policies ([`spec_under`]).
    pub fn spec_of(&self, e: &Enclave) -> EnclaveSpec {
        spec_under(&self.policy_set(), self, e)
    }

    /// `e`'s priority under the stored policies: the policy's where one sets it, else the
    /// spec's.
    pub fn priority_of(&self, e: &Enclave) -> i32 {
        self.spec_of(e).priority
    }

    /// How often the policies ask `e` to be attested afresh, in milliseconds
    /// ([`PolicySet::reattest_every_ms`]); `None` when none asks.
    pub fn reattest_every_ms(&self, e: &Enclave) -> Option<i64> {
        let attestation = self.status.get(&e.id).and_then(|s| s.attestation.as_ref());
        self.policy_set()
            .reattest_every_ms(&identity(e, attestation))
            .filter(|ms| ms.is_finite() && *ms > 0.0)
            .map(|ms| ms.round() as i64)
    }
}
