//! Who may message whom on this host: **pure**, over the talk table the plan carries.
//!
//! The controllers resolve each enclave's `talk` rules against the other enclaves of the host
//! (the agent knows nothing about policy) and send, per enclave, its priority and the peers it
//! may talk to with their shares ([`crate::plan::Talk`]). A message from `S` to `R` is admitted
//! only if `S`'s rules allow `R` **and** `R`'s rules allow `S`; anything else — unknown sender,
//! unknown receiver, either side silent — is refused (deny by default), with a reason the sender
//! can read.

use std::collections::BTreeMap;

use super::fq;
use crate::plan::Plan;

/// One enclave's messaging settings, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Party {
    /// Priority class in every inbox it sends to (0 first; from its policy's `priority`).
    pub class: u8,
    /// Peers its rules allow, with the fair-queueing weight it gets when sending to each.
    pub allow: BTreeMap<String, u32>,
}

/// Every enclave of this host that may take part in messaging.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TalkTable {
    parties: BTreeMap<String, Party>,
    /// Messages a second admitted from each rate-limited enclave (a throttle; absent: none).
    rates: BTreeMap<String, u64>,
    /// The parties placed on other hosts, and where (absent: on this host).
    routes: BTreeMap<String, Route>,
}

/// Where a party on another host lives, as the controllers placed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub epoch: u64,
    /// Its host agent's peer address (`HOST:PORT`; empty: none known).
    pub peer_addr: String,
}

/// An admitted message's place in the receiver's inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admit {
    pub class: u8,
    pub weight: u32,
}

/// Why a message was refused. The sender reads [`Refusal::code`] and the `Display` text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("sender {0:?} is not an enclave of this host's plan")]
    UnknownSender(String),
    #[error("no enclave {0:?} on this host")]
    UnknownReceiver(String),
    #[error("your talk rules do not allow messages to {to:?}")]
    SenderRules { to: String },
    #[error("{to:?}'s talk rules do not allow messages from you ({from:?})")]
    ReceiverRules { from: String, to: String },
}

impl Refusal {
    /// A stable code for the wire and for log keys (never the text).
    pub fn code(&self) -> RefusalCode {
        match self {
            Refusal::UnknownSender(_) => RefusalCode::UnknownSender,
            Refusal::UnknownReceiver(_) => RefusalCode::UnknownReceiver,
            Refusal::SenderRules { .. } => RefusalCode::SenderRules,
            Refusal::ReceiverRules { .. } => RefusalCode::ReceiverRules,
        }
    }
}

pub use tribune_msg::wire::RefusalCode;

impl TalkTable {
    /// The table of a plan: each enclave's priority ranked into a class among the plan's
    /// enclaves, its allowed peers with their weights.
    /// Parties on other hosts (`plan.remote`) are in the table with their own rules toward
    /// this host's enclaves, and their [`Route`].
    pub fn from_plan(plan: &Plan) -> TalkTable {
        let talks: Vec<(&String, &crate::plan::Talk)> = plan
            .enclaves
            .iter()
            .map(|(n, e)| (n, &e.talk))
            .chain(
                plan.remote
                    .iter()
                    .filter(|(n, _)| !plan.enclaves.contains_key(*n))
                    .map(|(n, r)| (n, &r.talk)),
            )
            .collect();
        let priorities: Vec<i64> = talks.iter().map(|(_, t)| t.priority).collect();
        let classes = fq::classes(&priorities);
        let parties = talks
            .into_iter()
            .zip(classes)
            .map(|((name, talk), class)| {
                let allow = talk
                    .allow
                    .iter()
                    .map(|(peer, share)| (peer.clone(), weight_of_share(*share)))
                    .collect();
                (name.clone(), Party { class, allow })
            })
            .collect();
        let rates = plan
            .enclaves
            .iter()
            .filter(|(_, e)| e.talk.rate_per_s > 0)
            .map(|(n, e)| (n.clone(), e.talk.rate_per_s))
            .collect();
        let routes = plan
            .remote
            .iter()
            .filter(|(n, _)| !plan.enclaves.contains_key(*n))
            .map(|(n, r)| {
                (
                    n.clone(),
                    Route {
                        host: r.host.clone(),
                        epoch: r.placement_epoch,
                        peer_addr: r.peer_addr.clone(),
                    },
                )
            })
            .collect();
        TalkTable {
            parties,
            rates,
            routes,
        }
    }

    /// The same table with `name` placed on another host (tests, benchmarks).
    pub fn with_route(mut self, name: &str, route: Route) -> TalkTable {
        self.routes.insert(name.to_string(), route);
        self
    }

    /// Where `name` lives when it is on another host.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.get(name)
    }

    /// The parties on other hosts, with their routes.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &Route)> {
        self.routes.iter().map(|(n, r)| (n.as_str(), r))
    }

    /// Whether `name` is an enclave of this host.
    pub fn is_local(&self, name: &str) -> bool {
        self.parties.contains_key(name) && !self.routes.contains_key(name)
    }

    /// Whether a message from `from`, relayed by the agent of `host`, may enter this host:
    /// `from` must be placed on `host` (so one host cannot speak for another's enclaves) and
    /// `to` on this host. The talk rules are checked after, by [`TalkTable::admit`].
    pub fn check_relay(
        &self,
        host: &str,
        from: &str,
        to: &str,
    ) -> Result<(), (RefusalCode, String)> {
        match self.routes.get(from) {
            Some(r) if r.host == host => {}
            Some(r) => {
                return Err((
                    RefusalCode::WrongHost,
                    format!(
                        "host {host:?} may not send as {from:?}: the controllers placed {from:?} on {:?} (epoch {})",
                        r.host, r.epoch
                    ),
                ));
            }
            None if self.parties.contains_key(from) => {
                return Err((
                    RefusalCode::WrongHost,
                    format!(
                        "host {host:?} may not send as {from:?}: {from:?} is an enclave of this host"
                    ),
                ));
            }
            None => {
                return Err((
                    RefusalCode::WrongHost,
                    format!(
                        "host {host:?} may not send as {from:?}: this host knows no placement of {from:?} on {host:?} that may talk to its enclaves"
                    ),
                ));
            }
        }
        if !self.is_local(to) {
            return Err((
                RefusalCode::UnknownReceiver,
                format!("no enclave {to:?} on this host"),
            ));
        }
        Ok(())
    }

    /// A table from parties directly (tests, benchmarks).
    pub fn from_parties(parties: BTreeMap<String, Party>) -> TalkTable {
        TalkTable {
            parties,
            rates: BTreeMap::new(),
            routes: BTreeMap::new(),
        }
    }

    /// The same table with `name` held to `per_s` messages a second (0: not rate-limited).
    pub fn with_rate(mut self, name: &str, per_s: u64) -> TalkTable {
        if per_s == 0 {
            self.rates.remove(name);
        } else {
            self.rates.insert(name.to_string(), per_s);
        }
        self
    }

    /// The messages a second admitted from `name`, if it is rate-limited.
    pub fn rate_of(&self, name: &str) -> Option<u64> {
        self.rates.get(name).copied()
    }

    /// Whether `name` is an enclave of the table.
    pub fn contains(&self, name: &str) -> bool {
        self.parties.contains_key(name)
    }

    /// The enclaves, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parties.keys().map(String::as_str)
    }

    /// Whether `from` may send to `to`, and where its message goes in `to`'s inbox.
    pub fn admit(&self, from: &str, to: &str) -> Result<Admit, Refusal> {
        let sender = self
            .parties
            .get(from)
            .ok_or_else(|| Refusal::UnknownSender(from.to_string()))?;
        let receiver = self
            .parties
            .get(to)
            .ok_or_else(|| Refusal::UnknownReceiver(to.to_string()))?;
        let weight = *sender
            .allow
            .get(to)
            .ok_or_else(|| Refusal::SenderRules { to: to.to_string() })?;
        if !receiver.allow.contains_key(from) {
            return Err(Refusal::ReceiverRules {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        Ok(Admit {
            class: sender.class,
            weight,
        })
    }
}

/// A `talk … share N` (1..=1000 in the language; the plan carries it in thousandths) as a
/// whole DRR weight: rounded to the nearest whole share, at least 1, at most
/// [`fq::WEIGHT_MAX`].
pub fn weight_of_share(share_milli: u32) -> u32 {
    let whole = (u64::from(share_milli) + 500) / 1000;
    u32::try_from(whole)
        .unwrap_or(fq::WEIGHT_MAX)
        .clamp(1, fq::WEIGHT_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{EnclavePlan, Talk};

    fn party(class: u8, allow: &[(&str, u32)]) -> Party {
        Party {
            class,
            allow: allow.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
        }
    }

    fn table() -> TalkTable {
        TalkTable::from_parties(
            [
                ("a", party(0, &[("b", 3), ("c", 1)])),
                ("b", party(1, &[("a", 2)])),
                ("c", party(2, &[])),
                ("d", party(0, &[("a", 1)])),
            ]
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .collect(),
        )
    }

    /// Every pair over the table, and strangers on either side: admitted exactly when both
    /// sides allow, with the sender's class and weight; otherwise the first reason that holds.
    #[test]
    fn both_sides_must_allow_and_everything_else_is_refused() {
        let t = table();
        let names = ["a", "b", "c", "d", "x"];
        for from in names {
            for to in names {
                let got = t.admit(from, to);
                let want = match (t.parties.get(from), t.parties.get(to)) {
                    (None, _) => Err(RefusalCode::UnknownSender),
                    (_, None) => Err(RefusalCode::UnknownReceiver),
                    (Some(s), Some(r)) => match (s.allow.get(to), r.allow.contains_key(from)) {
                        (None, _) => Err(RefusalCode::SenderRules),
                        (Some(_), false) => Err(RefusalCode::ReceiverRules),
                        (Some(w), true) => Ok((s.class, *w)),
                    },
                };
                assert_eq!(
                    got.as_ref()
                        .map(|a| (a.class, a.weight))
                        .map_err(Refusal::code),
                    want,
                    "{from} → {to}"
                );
            }
        }
        assert_eq!(
            t.admit("a", "b"),
            Ok(Admit {
                class: 0,
                weight: 3
            })
        );
        assert_eq!(
            t.admit("b", "a"),
            Ok(Admit {
                class: 1,
                weight: 2
            })
        );
    }

    #[test]
    fn refusals_say_who_refused() {
        let t = table();
        assert_eq!(
            t.admit("a", "c").unwrap_err().to_string(),
            "\"c\"'s talk rules do not allow messages from you (\"a\")"
        );
        assert_eq!(
            t.admit("c", "a").unwrap_err().to_string(),
            "your talk rules do not allow messages to \"a\""
        );
        assert_eq!(
            t.admit("a", "nobody").unwrap_err().to_string(),
            "no enclave \"nobody\" on this host"
        );
    }

    #[test]
    fn an_empty_table_refuses_everything() {
        let t = TalkTable::default();
        assert_eq!(
            t.admit("a", "a").unwrap_err().code(),
            RefusalCode::UnknownSender
        );
    }

    #[test]
    fn shares_become_whole_weights() {
        assert_eq!(weight_of_share(0), 1);
        assert_eq!(weight_of_share(1000), 1);
        assert_eq!(weight_of_share(1499), 1);
        assert_eq!(weight_of_share(1500), 2);
        assert_eq!(weight_of_share(4000), 4);
        assert_eq!(weight_of_share(1_000_000), 1000);
        assert_eq!(weight_of_share(u32::MAX), fq::WEIGHT_MAX);
    }

    #[test]
    fn a_plan_becomes_a_table_with_priorities_ranked() {
        let mut plan = Plan::default();
        let e = |priority: i64, allow: &[(&str, u32)]| EnclavePlan {
            talk: Talk {
                priority,
                allow: allow.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
                rate_per_s: 0,
            },
            ..EnclavePlan::default()
        };
        plan.enclaves.insert("hi".into(), e(50, &[("lo", 2000)]));
        plan.enclaves.insert("lo".into(), e(10, &[("hi", 1000)]));
        let t = TalkTable::from_plan(&plan);
        assert_eq!(
            t.admit("hi", "lo"),
            Ok(Admit {
                class: 0,
                weight: 2
            })
        );
        assert_eq!(
            t.admit("lo", "hi"),
            Ok(Admit {
                class: 1,
                weight: 1
            })
        );
    }
}
