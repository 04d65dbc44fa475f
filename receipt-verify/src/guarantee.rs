//! Whether one usage window honoured the enclave's CPU guarantee — the one definition, pure.
//!
//! A window is a checkpointed span of the enclave's own sealed reports. What it *used* alone
//! cannot show a broken guarantee: an enclave under its guarantee may simply have wanted less.
//! Its demand is the other half: `cpu_wait` (usage report v2), the time its threads were
//! runnable but not running. Used less than the guarantee while `used + waited ≥ guarantee`
//! means it asked for its guarantee and did not get it — whoever held it back (a misbehaving
//! host, another tenant's hog, a scheduler Tribune does not control). Tribune's own decisions
//! are judged first: held below the guarantee by Tribune without a violation of the enclave's
//! own is a broken guarantee whatever the demand; held below for its own violation is not.

use serde::Serialize;

/// How one window stands against the guarantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Used at least its guarantee.
    AtOrAbove,
    /// Used less, and asked for less: `used + waited < guarantee`.
    WantedLess,
    /// Used less; its demand is unknown (v1 reports carry no wait), so nothing is proven
    /// either way. Counted as honoured, and said so.
    DemandUnknown,
    /// Capped under its guarantee or suspended by Tribune for a violation of its own.
    HeldForCause,
    /// NOT met: held below its guarantee by Tribune (capped under it or suspended) without a
    /// violation of its own.
    HeldBelow,
    /// NOT met: used less than its guarantee while it asked for it (`used + waited ≥
    /// guarantee`).
    Starved,
}

impl Standing {
    /// Whether the guarantee was honoured in the window.
    pub fn met(self) -> bool {
        !matches!(self, Standing::HeldBelow | Standing::Starved)
    }
}

/// What the log says of one window (all CPU in whole millicores, averages over the window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowFacts {
    pub guaranteed: u64,
    pub used: u64,
    /// `None`: the reports did not say (v1).
    pub waited: Option<u64>,
    /// Tribune capped it under its guarantee, or suspended it.
    pub held_below: bool,
    /// The step that holds it has the enclave's own violation as its cause.
    pub own_cause: bool,
}

/// The rule (module doc).
pub fn judge(f: WindowFacts) -> Standing {
    if f.held_below {
        return if f.own_cause {
            Standing::HeldForCause
        } else {
            Standing::HeldBelow
        };
    }
    if f.used >= f.guaranteed {
        return Standing::AtOrAbove;
    }
    match f.waited {
        None => Standing::DemandUnknown,
        Some(w) if f.used.saturating_add(w) >= f.guaranteed => Standing::Starved,
        Some(_) => Standing::WantedLess,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every combination of: guarantee 0 / 500; used 0, 1, 250, 499, 500, 501, 2000; waited
    /// unknown, 0, 1, 250, 251, 500, u64::MAX; held below or not; own cause or not —
    /// against an independent statement of the rule.
    #[test]
    fn the_rule_over_every_combination() {
        let mut seen = std::collections::BTreeSet::new();
        for guaranteed in [0, 500] {
            for used in [0, 1, 250, 499, 500, 501, 2000] {
                for waited in [
                    None,
                    Some(0),
                    Some(1),
                    Some(250),
                    Some(251),
                    Some(500),
                    Some(u64::MAX),
                ] {
                    for held_below in [false, true] {
                        for own_cause in [false, true] {
                            let f = WindowFacts {
                                guaranteed,
                                used,
                                waited,
                                held_below,
                                own_cause,
                            };
                            let s = judge(f);
                            seen.insert(format!("{s:?}"));
                            let asked = waited.map(|w| {
                                u128::from(used) + u128::from(w) >= u128::from(guaranteed)
                            });
                            let expected_met = if held_below {
                                own_cause
                            } else {
                                used >= guaranteed || asked != Some(true)
                            };
                            assert_eq!(s.met(), expected_met, "{f:?} → {s:?}");
                            if s == Standing::Starved {
                                assert!(
                                    used < guaranteed && asked == Some(true) && !held_below,
                                    "{f:?}"
                                );
                            }
                            if s == Standing::WantedLess {
                                assert!(used < guaranteed && asked == Some(false), "{f:?}");
                            }
                            if s == Standing::DemandUnknown {
                                assert!(used < guaranteed && waited.is_none(), "{f:?}");
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(seen.len(), 6, "every standing is reached: {seen:?}");
    }

    #[test]
    fn the_boundaries() {
        let f = |used, waited| {
            judge(WindowFacts {
                guaranteed: 500,
                used,
                waited,
                held_below: false,
                own_cause: true,
            })
        };
        // Asked for exactly the guarantee and got 1m less: not met.
        assert_eq!(f(499, Some(1)), Standing::Starved);
        // One millicore short of asking for it: it wanted less.
        assert_eq!(f(249, Some(250)), Standing::WantedLess);
        // Idle, not waiting: it wanted nothing; its guarantee stands.
        assert_eq!(f(0, Some(0)), Standing::WantedLess);
        // Starved completely.
        assert_eq!(f(0, Some(1000)), Standing::Starved);
        // Got its guarantee, waited for more: met (the guarantee is not the limit).
        assert_eq!(f(500, Some(5000)), Standing::AtOrAbove);
        // A zero guarantee is always met.
        assert_eq!(
            judge(WindowFacts {
                guaranteed: 0,
                used: 0,
                waited: Some(1000),
                held_below: false,
                own_cause: true,
            }),
            Standing::AtOrAbove
        );
    }
}
