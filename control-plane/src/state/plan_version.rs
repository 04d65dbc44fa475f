//! Per-host plan versions. Invariant: **plan versions only rise** — every change to what a
//! host's agent would receive moves its version up, so an agent never sees one version with
//! two contents (it refuses a version it already applied with different content, e.g. after a
//! failover), and never sees a version go back.

use super::State;

impl State {
    /// The plan `host` would get changed: its version moves up by one.
    pub(super) fn bump_plan_version(&mut self, host: &str) {
        let version = self.plan_versions.entry(host.to_string()).or_insert(0);
        let old = *version;
        *version = old.saturating_add(1);
        debug_assert!(
            *version > old,
            "plan versions only rise: host {host:?} is at {old}"
        );
    }
}

impl State {
    /// A digest of what one host's plan says about the enclaves of the others (messages
    /// across hosts, `attest/plan.rs`): each enclave's placement and epoch, whether it is
    /// stopped or moving, what talk rules see of it (tenant, labels, TEE), and each host's
    /// address. When it changes, every host's plan may differ.
    pub(super) fn routing_digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for e in self.enclaves.values() {
            e.id.hash(&mut h);
            e.tenant.hash(&mut h);
            e.labels.hash(&mut h);
            format!("{:?}", e.tee).hash(&mut h);
            e.placement
                .as_ref()
                .map(|p| (p.host.as_str(), p.epoch))
                .hash(&mut h);
            (e.state == super::EnclaveState::Stopped).hash(&mut h);
            self.moves.contains_key(&e.id).hash(&mut h);
        }
        for host in self.hosts.values() {
            (host.id.as_str(), host.address.as_str()).hash(&mut h);
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{allocation, enclave};
    use super::super::*;

    /// Plans name the enclaves of other hosts (messages across hosts): placing one elsewhere
    /// raises this host's version too; what only the other host's plan says does not.
    #[test]
    fn an_enclave_placed_on_another_host_raises_this_hosts_version() {
        let mut s = State::default();
        let put = |s: &mut State, id: &str, host: &str, at_ms: i64| {
            s.apply(Command::PutEnclave {
                enclave: enclave(id, host, 1),
                expect: Expect::Any,
                actor: "op".into(),
                at_ms,
            });
        };
        put(&mut s, "e", "h1", 1);
        let v = |s: &State| s.plan_versions.get("h1").copied().unwrap_or(0);
        let before = v(&s);
        put(&mut s, "f", "h2", 2);
        assert!(v(&s) > before, "placing f on h2 left h1 at {before}");
        let before = v(&s);
        s.apply(Command::SetAllocation {
            allocation: allocation("f", 500),
            at_ms: 3,
        });
        assert_eq!(v(&s), before, "f's allocation is h2's business only");
    }

    #[test]
    fn every_change_to_a_hosts_plan_raises_its_version() {
        let mut s = State::default();
        let mut last = 0;
        let mut rose = |s: &State, what: &str| {
            let v = s.plan_versions.get("h1").copied().unwrap_or(0);
            assert!(v > last, "{what}: version {v} after {last}");
            last = v;
        };
        s.apply(Command::PutEnclave {
            enclave: enclave("e", "h1", 1),
            expect: Expect::Any,
            actor: "op".into(),
            at_ms: 1,
        });
        rose(&s, "an enclave placed");
        s.apply(Command::PutPolicy {
            name: "p".into(),
            source: "policy \"p\" {}".into(),
            expect: Expect::Any,
            actor: "op".into(),
            at_ms: 2,
        });
        rose(&s, "a policy stored");
        s.apply(Command::SetAllocation {
            allocation: allocation("e", 500),
            at_ms: 3,
        });
        rose(&s, "an allocation set");
        s.apply(Command::Verdicts {
            host: "h1".into(),
            verdicts: vec![VerdictCmd {
                enclave: "e".into(),
                attestation: Attestation {
                    trusted: true,
                    host: "h1".into(),
                    ..Attestation::default()
                },
            }],
            at_ms: 4,
        });
        rose(&s, "a pending enclave trusted");
        s.apply(Command::Enforce {
            host: "h1".into(),
            changes: vec![Enforcement {
                enclave: "e".into(),
                epoch: 1,
                allocation: allocation("e", 250),
                state: EnclaveState::Throttled,
                ladder: Ladder::default(),
                from: None,
                borrowed_cpu_millicores: 0,
                lent_cpu_millicores: 0,
                log: vec![],
            }],
            at_ms: 5,
        });
        rose(&s, "a decision changed the allocation");
        s.apply(Command::DeletePolicy {
            name: "p".into(),
            expect: Expect::Any,
            actor: "op".into(),
            at_ms: 6,
        });
        rose(&s, "a policy removed");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "plan versions only rise")]
    fn a_version_that_cannot_rise_is_caught() {
        let mut s = State::default();
        s.plan_versions.insert("h1".into(), u64::MAX);
        s.bump_plan_version("h1");
    }
}
