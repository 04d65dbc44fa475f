//! Replicated results of the attestation loop (DESIGN.md §4–§5): verdicts, confirmed usage
//! points (so a controller taking over a stream continues the hash chain without a gap or a
//! duplicate), and enforcement decisions (allocation, ladder step, lending).
//!
//! Pure like the rest of `state`: the controller that verified the evidence or the reports
//! proposes a command; every replica applies it the same way. Raw usage samples never come
//! here, only per-checkpoint digests.

use serde::{Deserialize, Serialize};
use tribune_attest::continuity::continues;

use super::{Allocation, EnclaveState, LogDetail, Outcome, State, TeeKind, VerdictDetail};

/// The last verdict on an enclave's evidence, with the keys the evidence bound.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attestation {
    pub trusted: bool,
    /// The host whose agent relayed the evidence.
    pub host: String,
    /// The TEE the evidence is from (as the agent named it until the evidence is read); `None`
    /// when the evidence was refused before its kind was known.
    pub tee: Option<TeeKind>,
    /// Hex launch measurement.
    pub measurement: String,
    pub debug: bool,
    /// Hex ed25519 key bound by the evidence: checkpoints verify under it.
    pub ed25519_pub: String,
    /// Hex X25519 key bound by the evidence.
    pub x25519_pub: String,
    /// Why it is not trusted (empty when trusted).
    pub reasons: Vec<String>,
    pub verified_at_ms: i64,
    /// Failed verifications since the last success.
    pub failures: u32,
    /// The controller that verified it.
    #[serde(default)]
    pub verified_by: u64,
    /// Trusted on a new stream by the enclave's signature over the new key exchange, under keys
    /// earlier trusted evidence bound (no evidence round trip: DESIGN.md §4.5).
    #[serde(default)]
    pub rekeyed: bool,
}

/// How far an enclave's usage stream is confirmed (by a signed checkpoint whose digest is in
/// the log): the next digest must start right after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsagePoint {
    /// Hex ed25519 key of the stream (a new key starts a new chain at seq 1).
    pub key: String,
    pub last_seq: u64,
    /// Hex hash-chain head after `last_seq`.
    pub head: String,
}

/// The violation ladder's position (DESIGN.md §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(utoipa::ToSchema)]
pub enum Step {
    #[default]
    None,
    Notify,
    Throttle,
    Suspend,
    Migrate,
}

impl Step {
    /// Its name, as in JSON, the log and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::None => "none",
            Step::Notify => "notify",
            Step::Throttle => "throttle",
            Step::Suspend => "suspend",
            Step::Migrate => "migrate",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ladder {
    pub step: Step,
    /// Since when usage has been over the limit, continuously (None: within the limit).
    pub over_since_ms: Option<i64>,
    /// Throttled and backed off (well under the cap) since; released after a while.
    #[serde(default)]
    pub under_since_ms: Option<i64>,
    /// What put the enclave on this step (`over_limit`, `attestation.failed`, …).
    pub cause: String,
    pub since_ms: i64,
}

/// Everything the loop keeps about one enclave besides its spec and allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnclaveStatus {
    pub attestation: Option<Attestation>,
    pub confirmed: Option<UsagePoint>,
    pub ladder: Ladder,
    /// CPU this enclave borrows from idle neighbours on its host (raises its cap).
    pub borrowed_cpu_millicores: u64,
    /// CPU of its guarantee lent to neighbours while it is idle.
    pub lent_cpu_millicores: u64,
    /// Suspended by an operator: sticky until an operator resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_hold: Option<super::OperatorHold>,
}

/// A verdict on evidence, as the verifying controller proposes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictCmd {
    pub enclave: String,
    pub attestation: Attestation,
}

/// The digest of one checkpointed span of an enclave's usage reports. Float-free (leaf format
/// 2); it also reads format 1's shape, whose floats it converts exactly
/// (`state/leaf_format.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UsageDigestWire")]
#[derive(utoipa::ToSchema)]
pub struct UsageDigest {
    pub enclave: String,
    /// Hex ed25519 key the checkpoint verified under.
    pub key: String,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Hex chain head before `first_seq` and after `last_seq`.
    pub prev_head: String,
    pub head: String,
    /// Hex RFC 6962 Merkle root over the span's encoded reports (leaf i = report first_seq+i):
    /// any one sample is provable against this entry.
    pub samples_root: String,
    /// Hex of the signed checkpoint (162 bytes): verifiable by anyone with the key.
    pub checkpoint: String,
    /// Summary of the span, enclave view: average CPU in whole millicores.
    pub cpu_millicores_avg: u64,
    pub mem_bytes_max: u64,
    pub net_tx_bytes: u64,
    pub net_rx_bytes: u64,
    /// Largest divergence of the enclave's view from the host's, in basis points (1/100 of a
    /// percent; 10 000 = 100 %).
    pub divergence_bp_max: u64,
    /// The CPU the enclave waited for over the span (runnable but not running: demand the
    /// host did not serve), average in whole millicores, from its own sealed reports
    /// (`cpu_wait_ns`, usage report v2). Absent when a report of the span is v1 (unknown):
    /// entries without it serialise exactly as before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_wait_millicores_avg: Option<u64>,
    /// true when the span was replayed from an agent's buffer after a controller change.
    #[serde(default)]
    pub replayed: bool,
    /// Set when the chain resumes here after seqs this controller never saw: the first of them
    /// (the last is `first_seq - 1`). Their usage is unaccounted, and the log says so; the span
    /// itself is verified by its own checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unaccounted_from: Option<u64>,
}

/// A usage digest as JSON holds it: format 2 (`divergence_bp_max`, integers) or format 1
/// (`divergence_pct_max`, floats).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageDigestWire {
    enclave: String,
    key: String,
    first_seq: u64,
    last_seq: u64,
    prev_head: String,
    head: String,
    samples_root: String,
    checkpoint: String,
    #[serde(deserialize_with = "super::leaf_format::whole::required")]
    cpu_millicores_avg: u64,
    mem_bytes_max: u64,
    net_tx_bytes: u64,
    net_rx_bytes: u64,
    #[serde(default)]
    divergence_bp_max: Option<u64>,
    #[serde(default)]
    divergence_pct_max: Option<f64>,
    #[serde(default)]
    cpu_wait_millicores_avg: Option<u64>,
    #[serde(default)]
    replayed: bool,
    #[serde(default)]
    unaccounted_from: Option<u64>,
}

impl TryFrom<UsageDigestWire> for UsageDigest {
    type Error = String;

    fn try_from(w: UsageDigestWire) -> Result<Self, String> {
        let divergence_bp_max = match (w.divergence_bp_max, w.divergence_pct_max) {
            (Some(bp), None) => bp,
            // Format 1: percent. Whole or two-decimal percents convert exactly; the leaf check
            // (`LogDetail::from_value`) refuses any other.
            (None, Some(pct)) => super::leaf_format::whole_from_f64(
                (pct * 100.0).round(),
                "usage digest divergence_pct_max × 100",
            )?,
            (Some(_), Some(_)) => {
                return Err(
                    "a usage digest has both divergence_bp_max and divergence_pct_max".into(),
                );
            }
            (None, None) => return Err("a usage digest lacks divergence_bp_max".into()),
        };
        Ok(UsageDigest {
            enclave: w.enclave,
            key: w.key,
            first_seq: w.first_seq,
            last_seq: w.last_seq,
            prev_head: w.prev_head,
            head: w.head,
            samples_root: w.samples_root,
            checkpoint: w.checkpoint,
            cpu_millicores_avg: w.cpu_millicores_avg,
            mem_bytes_max: w.mem_bytes_max,
            net_tx_bytes: w.net_tx_bytes,
            net_rx_bytes: w.net_rx_bytes,
            divergence_bp_max,
            cpu_wait_millicores_avg: w.cpu_wait_millicores_avg,
            replayed: w.replayed,
            unaccounted_from: w.unaccounted_from,
        })
    }
}

/// One enforcement decision for one enclave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enforcement {
    pub enclave: String,
    /// The placement epoch the decision was made for (fencing: a stale decision is dropped).
    pub epoch: u64,
    pub allocation: Allocation,
    pub state: EnclaveState,
    pub ladder: Ladder,
    /// The ladder the decision was made from: compare-and-set. A decision made from a ladder
    /// the replicated state has since moved past (a controller behind the log deciding from
    /// what it had applied) is refused, so it can never step an enclave back down, e.g. thaw
    /// one another controller suspended. `None` in entries written before this check (they
    /// apply unchecked, as they did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Ladder>,
    pub borrowed_cpu_millicores: u64,
    pub lent_cpu_millicores: u64,
    /// Log entries explaining the change (violations, actions, lending), in order. In JSON
    /// `[[kind, detail], …]`.
    #[serde(with = "super::detail::pairs")]
    pub log: Vec<LogDetail>,
}

/// What a batch of loop commands did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopOutcome {
    /// Log indexes written, in order.
    pub logged: Vec<u64>,
    /// Items refused (a gap, a duplicate, a stale epoch, an unknown enclave), with why.
    pub refused: Vec<String>,
}

fn placed_on<'a>(
    state: &'a State,
    enclave: &str,
    host: &str,
) -> Result<&'a super::Enclave, String> {
    let Some(e) = state.enclaves.get(enclave) else {
        return Err(format!("enclave {enclave:?} does not exist"));
    };
    match &e.placement {
        Some(p) if p.host == host => Ok(e),
        Some(p) => Err(format!(
            "enclave {enclave:?} is placed on host {:?}, not {host:?}",
            p.host
        )),
        None => Err(format!("enclave {enclave:?} is not placed on any host")),
    }
}

impl State {
    pub(super) fn apply_verdicts(
        &mut self,
        host: &str,
        verdicts: Vec<VerdictCmd>,
        at_ms: i64,
    ) -> Outcome {
        let mut out = LoopOutcome::default();
        for v in verdicts {
            if let Err(why) = placed_on(self, &v.enclave, host) {
                out.refused.push(why);
                continue;
            }
            let status = self.status.entry(v.enclave.clone()).or_default();
            let mut a = v.attestation;
            a.failures = if a.trusted {
                0
            } else {
                status.attestation.as_ref().map_or(0, |p| p.failures) + 1
            };
            // A new key starts a new usage chain; the old confirmed point no longer applies.
            if a.trusted
                && status
                    .confirmed
                    .as_ref()
                    .is_some_and(|c| c.key != a.ed25519_pub)
            {
                status.confirmed = None;
            }
            let detail = LogDetail::Verdict(VerdictDetail {
                trusted: a.trusted,
                host: host.to_string(),
                tee: a.tee,
                measurement: a.measurement.clone(),
                debug: a.debug,
                ed25519_pub: a.ed25519_pub.clone(),
                reasons: a.reasons.clone(),
                failures: a.failures,
                verified_by: a.verified_by,
                rekeyed: a.rekeyed,
            });
            status.attestation = Some(a.clone());
            let changed_state = match self.enclaves.get_mut(&v.enclave) {
                // A stopped enclave stays stopped: only an operator starts it again (a late
                // verdict must not put it back into its host's plan).
                Some(e) if e.state == EnclaveState::Stopped => false,
                Some(e) if !a.trusted && e.state != EnclaveState::Untrusted => {
                    e.state = EnclaveState::Untrusted;
                    true
                }
                Some(e)
                    if a.trusted
                        && matches!(e.state, EnclaveState::Pending | EnclaveState::Untrusted) =>
                {
                    // Trust restored does not lift an operator's suspension.
                    e.state = if status.operator_hold.is_some() {
                        EnclaveState::Suspended
                    } else {
                        EnclaveState::Running
                    };
                    true
                }
                _ => false,
            };
            if changed_state {
                self.bump_plan_version(host);
            }
            out.logged.push(self.log.append(&v.enclave, detail, at_ms));
        }
        Outcome::Loop(out)
    }

    pub(super) fn apply_digests(
        &mut self,
        host: &str,
        digests: Vec<UsageDigest>,
        at_ms: i64,
    ) -> Outcome {
        let mut out = LoopOutcome::default();
        for d in digests {
            if let Err(why) = placed_on(self, &d.enclave, host) {
                out.refused.push(why);
                continue;
            }
            let status = self.status.entry(d.enclave.clone()).or_default();
            let trusted_key = status
                .attestation
                .as_ref()
                .filter(|a| a.trusted)
                .map(|a| a.ed25519_pub.as_str());
            if trusted_key != Some(d.key.as_str()) {
                out.refused.push(format!(
                    "digest of {:?} seq {}..={}: its key is not bound to currently trusted evidence",
                    d.enclave, d.first_seq, d.last_seq
                ));
                continue;
            }
            let confirmed = status
                .confirmed
                .as_ref()
                .filter(|c| c.key == d.key)
                .map(|c| (c.last_seq, c.head.as_str()));
            if !digest_follows(confirmed, &d) {
                out.refused.push(format!(
                    "digest of {:?} seq {}..={}: the log is confirmed up to seq {} (no gap, no duplicate)",
                    d.enclave,
                    d.first_seq,
                    d.last_seq,
                    confirmed.map_or(0, |c| c.0)
                ));
                continue;
            }
            status.confirmed = Some(UsagePoint {
                key: d.key.clone(),
                last_seq: d.last_seq,
                head: d.head.clone(),
            });
            let subject = d.enclave.clone();
            out.logged
                .push(self.log.append(&subject, LogDetail::UsageDigest(d), at_ms));
        }
        Outcome::Loop(out)
    }

    pub(super) fn apply_enforcements(
        &mut self,
        host: &str,
        changes: Vec<Enforcement>,
        at_ms: i64,
    ) -> Outcome {
        let mut out = LoopOutcome::default();
        for c in changes {
            let epoch = match placed_on(self, &c.enclave, host) {
                Ok(e) => e.placement.as_ref().map_or(0, |p| p.epoch),
                Err(why) => {
                    out.refused.push(why);
                    continue;
                }
            };
            if epoch != c.epoch {
                out.refused.push(format!(
                    "decision for {:?} made for placement epoch {}, now {epoch}",
                    c.enclave, c.epoch
                ));
                continue;
            }
            if let Some(why) = stale_ladder(self.status.get(&c.enclave), &c) {
                out.refused.push(why);
                continue;
            }
            let id = c.enclave.clone();
            let Some(e) = self.enclaves.get_mut(&id) else {
                continue; // `placed_on` found it above
            };
            let status = self.status.entry(id.clone()).or_default();
            let mut slot = self.allocations.remove(&id);
            let (plan_changed, log) = settle(e, status, &mut slot, c);
            if let Some(a) = slot {
                self.allocations.insert(id.clone(), a);
            }
            if plan_changed {
                self.bump_plan_version(host);
            }
            for detail in log {
                out.logged.push(self.log.append(&id, detail, at_ms));
            }
        }
        Outcome::Loop(out)
    }
}

/// Why a decision made from another ladder than the one in force is refused (`None`: it was made
/// from this one, or it predates the check). Any difference counts, not only the step: a clock
/// (`over_since_ms`, `under_since_ms`) read before another decision moved it would restart or
/// stop the ladder's clock just as wrongly.
fn stale_ladder(status: Option<&EnclaveStatus>, c: &Enforcement) -> Option<String> {
    let from = c.from.as_ref()?;
    let default = Ladder::default();
    let now = status.map_or(&default, |s| &s.ladder);
    (from != now).then(|| {
        format!(
            "decision for {:?} made from ladder step {} (since {} ms), now {} (since {} ms): the deciding controller had not applied the latest log; it decides again once it has",
            c.enclave,
            from.step.as_str(),
            from.since_ms,
            now.step.as_str(),
            now.since_ms
        )
    })
}

/// Applies one enforcement decision to one enclave's records: the one rule by which a decision
/// changes state, used by `State::apply_enforcements` and by the policy planner's replay
/// (`attest::replay`), so a plan evolves exactly as the replicated state does. Returns whether
/// the host's plan changes, and the log entries to append.
pub fn settle(
    enclave: &mut super::Enclave,
    status: &mut EnclaveStatus,
    allocation: &mut Option<Allocation>,
    mut c: Enforcement,
) -> (bool, Vec<LogDetail>) {
    // An operator's suspension outranks every decision: only an operator lifts it.
    if status.operator_hold.is_some() {
        c.allocation.suspended = true;
        c.state = EnclaveState::Suspended;
    }
    let mut plan_changed = allocation.as_ref() != Some(&c.allocation);
    // Untrusted is only lifted by a trusted verdict, never by a usage decision.
    // A stopped one stays stopped: only an operator starts it again.
    if enclave.state != EnclaveState::Untrusted
        && enclave.state != EnclaveState::Stopped
        && enclave.state != c.state
    {
        enclave.state = c.state;
        plan_changed = true;
    }
    status.ladder = c.ladder;
    status.borrowed_cpu_millicores = c.borrowed_cpu_millicores;
    status.lent_cpu_millicores = c.lent_cpu_millicores;
    *allocation = Some(c.allocation);
    (plan_changed, c.log)
}

/// "No gap, no duplicate": a digest continues the confirmed point (`confirmed = (last_seq,
/// head)`; `None` for a new key) by the one chain rule (`tribune_attest::continuity`) — or it
/// declares, as `unaccounted_from`, exactly the seqs between the confirmed point and itself
/// (a chain the stream re-anchored at a complete signed checkpoint).
pub fn digest_follows(confirmed: Option<(u64, &str)>, d: &UsageDigest) -> bool {
    if d.last_seq < d.first_seq {
        return false;
    }
    let next = confirmed.map_or(Some(1), |(last, _)| last.checked_add(1));
    match d.unaccounted_from {
        None => continues(confirmed, d.first_seq, d.prev_head.as_str()),
        Some(from) => Some(from) == next && d.first_seq > from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(first: u64, last: u64, prev: &str, from: Option<u64>) -> UsageDigest {
        UsageDigest {
            enclave: "e".into(),
            key: "k".into(),
            first_seq: first,
            last_seq: last,
            prev_head: prev.into(),
            head: "h".into(),
            samples_root: String::new(),
            checkpoint: String::new(),
            cpu_millicores_avg: 0,
            mem_bytes_max: 0,
            net_tx_bytes: 0,
            net_rx_bytes: 0,
            divergence_bp_max: 0,
            cpu_wait_millicores_avg: None,
            replayed: false,
            unaccounted_from: from,
        }
    }

    #[test]
    fn the_digest_chain_has_no_gap_and_no_duplicate() {
        // Every combination over a small grid: only the exact successor (or a declared gap that
        // starts exactly at the successor) follows.
        for next in 1..6u64 {
            for first in 0..8u64 {
                for last in 0..8u64 {
                    for same_head in [true, false] {
                        let prev = if same_head { "p" } else { "q" };
                        let plain = digest(first, last, prev, None);
                        let want = first == next && last >= first && same_head;
                        assert_eq!(
                            digest_follows(Some((next - 1, "p")), &plain),
                            want,
                            "next {next} first {first} last {last} head {same_head}"
                        );
                        for from in 0..8u64 {
                            let gap = digest(first, last, prev, Some(from));
                            let want = from == next && first > next && last >= first;
                            assert_eq!(digest_follows(Some((next - 1, "p")), &gap), want);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_new_key_starts_at_seq_1_with_any_head() {
        assert!(digest_follows(None, &digest(1, 10, "anything", None)));
        assert!(!digest_follows(None, &digest(2, 10, "anything", None)));
        assert!(digest_follows(None, &digest(5, 10, "x", Some(1))));
    }

    #[test]
    fn an_old_digest_serialises_as_before() {
        // `unaccounted_from` is left out when unset, so existing log leaves keep their bytes.
        let v = serde_json::to_value(digest(1, 2, "p", None)).unwrap_or_default();
        assert!(v.get("unaccounted_from").is_none(), "{v}");
        let v = serde_json::to_value(digest(5, 6, "p", Some(1))).unwrap_or_default();
        assert_eq!(v["unaccounted_from"], 1);
    }
}
