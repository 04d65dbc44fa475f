//! Decisions for people and programs: the documented JSON form and the CLI's text.

use super::*;
use crate::units::{self, Dim, Resource};

fn origin_json(o: &Origin, names: &[&str]) -> serde_json::Value {
    let policy = names.get(o.policy as usize).copied().unwrap_or("?");
    let rule = match o.kind {
        SourceKind::Unset => return serde_json::Value::Null,
        SourceKind::Static => "static".to_string(),
        SourceKind::When => format!("when#{}", o.index),
        SourceKind::On => format!("on#{}", o.index),
        SourceKind::Reclaim => "reclaim".to_string(),
        SourceKind::Attest => "attest".to_string(),
    };
    serde_json::json!({ "policy": policy, "rule": rule, "line": o.line })
}

fn setting_json(s: &Setting, dim: Dim, names: &[&str]) -> serde_json::Value {
    match s.value {
        None => serde_json::Value::Null,
        Some(v) => {
            serde_json::json!({ "value": v, "display": units::display(dim, v), "from": origin_json(&s.origin, names) })
        }
    }
}

impl Decision {
    /// The documented JSON form (`docs/policy-language.md`, "Decision JSON"). `names` are
    /// the policy names indexed by `Origin::policy`.
    pub fn to_json(&self, names: &[&str]) -> serde_json::Value {
        let mut g = serde_json::Map::new();
        let mut l = serde_json::Map::new();
        let mut lend = serde_json::Map::new();
        for r in Resource::ALL {
            let i = r as usize;
            g.insert(
                r.name().into(),
                setting_json(&self.guarantee[i], r.dim(), names),
            );
            l.insert(
                r.name().into(),
                setting_json(&self.limit[i], r.dim(), names),
            );
            if let Some(v) = self.reclaim.lendable[i] {
                lend.insert(
                    r.name().into(),
                    serde_json::json!({ "value": v, "display": units::display(r.dim(), v) }),
                );
            }
        }
        let mut v = serde_json::json!({
            "matched": self.matched,
            "guarantee": g,
            "limit": l,
            "weight": setting_json(&self.weight, Dim::Scalar, names),
            "priority": setting_json(&self.priority, Dim::Scalar, names),
            "preempt": self.preempt,
            "action": {
                "action": self.action.action,
                "from": origin_json(&self.action.origin, names),
            },
            "attestation": {
                "ok": self.attestation.ok,
                "violation": self.attestation.violation,
                "reattest_every_ms": self.attestation.reattest_every_ms,
                "from": origin_json(&self.attestation.origin, names),
            },
            "reclaim": {
                "active": self.reclaim.active,
                "lendable": lend,
                "return_within_ms": self.reclaim.return_within_ms,
                "from": origin_json(&self.reclaim.origin, names),
            },
            "conditions_true": self.conditions_true,
        });
        if self.msgs_rate.value.is_some()
            && let Some(o) = v.as_object_mut()
        {
            o.insert(
                "msgs_rate".into(),
                setting_json(&self.msgs_rate, Dim::Scalar, names),
            );
        }
        v
    }

    /// A human-readable rendering for the CLI.
    pub fn render_text(&self, names: &[&str]) -> String {
        use std::fmt::Write;
        let from = |o: &Origin| -> String {
            let p = names.get(o.policy as usize).copied().unwrap_or("?");
            match o.kind {
                SourceKind::Unset => String::new(),
                SourceKind::Static => format!("  ({p}, line {})", o.line),
                SourceKind::When => format!("  ({p}: when#{}, line {})", o.index, o.line),
                SourceKind::On => format!("  ({p}: on#{}, line {})", o.index, o.line),
                SourceKind::Reclaim => format!("  ({p}: reclaim, line {})", o.line),
                SourceKind::Attest => format!("  ({p}: attest, line {})", o.line),
            }
        };
        let mut s = String::new();
        if !self.matched {
            s.push_str("no policy matches this enclave\n");
            return s;
        }
        for (title, arr) in [("guarantee", &self.guarantee), ("limit", &self.limit)] {
            for r in Resource::ALL {
                let st = &arr[r as usize];
                if let Some(v) = st.value {
                    let _ = writeln!(
                        s,
                        "{title:<10} {:<8} {:>10}{}",
                        r.name(),
                        units::display(r.dim(), v),
                        from(&st.origin)
                    );
                }
            }
        }
        if let Some(v) = self.weight.value {
            let _ = writeln!(
                s,
                "{:<19} {:>10}{}",
                "weight",
                units::display(Dim::Scalar, v),
                from(&self.weight.origin)
            );
        }
        if let Some(v) = self.msgs_rate.value {
            let _ = writeln!(
                s,
                "{:<19} {:>10}{}",
                "msgs.rate",
                units::display(Dim::Scalar, v),
                from(&self.msgs_rate.origin)
            );
        }
        if let Some(v) = self.priority.value {
            let pre = if self.preempt { " preempt" } else { "" };
            let _ = writeln!(
                s,
                "{:<19} {:>10}{pre}{}",
                "priority",
                units::display(Dim::Scalar, v),
                from(&self.priority.origin)
            );
        }
        let act = format!("{:?}", self.action.action).to_lowercase();
        let _ = writeln!(
            s,
            "{:<19} {:>10}{}",
            "action",
            act,
            from(&self.action.origin)
        );
        let att = match self.attestation.violation {
            None => "ok".to_string(),
            Some(v) => serde_json::to_value(v)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        };
        let _ = writeln!(
            s,
            "{:<19} {:>10}{}",
            "attestation",
            att,
            from(&self.attestation.origin)
        );
        if self.reclaim.active {
            for r in Resource::ALL {
                if let Some(v) = self.reclaim.lendable[r as usize] {
                    let _ = writeln!(
                        s,
                        "{:<10} {:<8} {:>10}{}",
                        "lendable",
                        r.name(),
                        units::display(r.dim(), v),
                        from(&self.reclaim.origin)
                    );
                }
            }
        }
        s
    }
}

impl PolicySet {
    /// The decision and the `talk` verdict for each of `facts.peers`, as documented JSON.
    pub fn report_json(&self, facts: &Facts) -> serde_json::Value {
        let names = self.names();
        let d = self.evaluate(facts);
        let mut v = d.to_json(&names);
        let ids: Vec<&str> = self
            .policies()
            .iter()
            .find(|p| p.matches(&facts.enclave))
            .map(|p| p.condition_ids())
            .unwrap_or_default();
        let true_ids: Vec<&str> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| d.conditions_true & (1u64 << (*i).min(63)) != 0)
            .map(|(_, s)| *s)
            .collect();
        let talk: Vec<serde_json::Value> = facts
            .peers
            .iter()
            .map(|peer| {
                let t = self.talk(facts, peer);
                serde_json::json!({
                    "peer": peer,
                    "allowed": t.allowed,
                    "share": t.share,
                    "from": t.policy.map(|p| serde_json::json!({
                        "policy": names.get(p as usize).copied().unwrap_or("?"),
                        "rule": if t.rule == 0 { "default-deny".to_string() } else { format!("talk#{}", t.rule) },
                    })),
                })
            })
            .collect();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("conditions_true".into(), serde_json::json!(true_ids));
            obj.insert("talk".into(), serde_json::json!(talk));
            obj.insert(
                "matched_policies".into(),
                serde_json::json!(
                    self.policies()
                        .iter()
                        .filter(|p| p.matches(&facts.enclave))
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                ),
            );
        }
        v
    }

    /// A human-readable report for the CLI.
    pub fn report_text(&self, facts: &Facts) -> String {
        use std::fmt::Write;
        let names = self.names();
        let d = self.evaluate(facts);
        let mut s = d.render_text(&names);
        for peer in &facts.peers {
            let t = self.talk(facts, peer);
            let who = if peer.tenant.is_empty() {
                "(no tenant)".to_string()
            } else {
                format!("tenant {}", peer.tenant)
            };
            let verdict = if t.allowed {
                format!("allowed, share {}", t.share)
            } else {
                "denied".to_string()
            };
            let from = match t.policy {
                Some(p) if t.rule > 0 => format!(
                    "  ({}: talk#{})",
                    names.get(p as usize).copied().unwrap_or("?"),
                    t.rule
                ),
                Some(p) => format!(
                    "  ({}: no rule matched)",
                    names.get(p as usize).copied().unwrap_or("?")
                ),
                None => "  (no talk rules)".to_string(),
            };
            let _ = writeln!(s, "talk to {who}: {verdict}{from}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::compile_all;

    const SRC: &str = r#"
policy "p" {
  match tenant == "a"
  limit { cpu = 500m }
  when host.cpu.utilization > 50% { notify now }
  talk { allow to tenant == "b" share 2 }
}
"#;

    fn facts() -> Facts {
        let mut f = Facts::default();
        f.enclave.tenant = "a".into();
        f.host.cpu = 60.0;
        f.peers = vec![
            Enclave {
                tenant: "b".into(),
                ..Enclave::default()
            },
            Enclave::default(),
        ];
        f
    }

    #[test]
    fn json_names_the_policy_rule_and_line() {
        let s = PolicySet::new(compile_all(SRC));
        let v = s.report_json(&facts());
        assert_eq!(v["matched"], true);
        assert_eq!(v["limit"]["cpu"]["display"], "500m");
        assert_eq!(
            v["limit"]["cpu"]["from"],
            serde_json::json!({ "policy": "p", "rule": "static", "line": 4 })
        );
        assert_eq!(v["limit"]["memory"], serde_json::Value::Null);
        assert_eq!(v["action"]["action"], "notify");
        assert_eq!(v["action"]["from"]["rule"], "when#1");
        assert_eq!(v["conditions_true"], serde_json::json!(["when#1"]));
        assert_eq!(v["matched_policies"], serde_json::json!(["p"]));
        assert_eq!(v["talk"][0]["allowed"], true);
        assert_eq!(v["talk"][0]["from"]["rule"], "talk#1");
        assert_eq!(v["talk"][1]["from"]["rule"], "default-deny");
    }

    #[test]
    fn conditions_true_is_a_bit_set_in_plain_decision_json() {
        let s = PolicySet::new(compile_all(SRC));
        let d = s.evaluate(&facts());
        assert_eq!(d.to_json(&s.names())["conditions_true"], 1);
    }

    #[test]
    fn text_for_the_cli() {
        let s = PolicySet::new(compile_all(SRC));
        let t = s.report_text(&facts());
        assert!(
            t.contains("limit      cpu            500m  (p, line 4)"),
            "{t}"
        );
        assert!(
            t.contains("action                  notify  (p: when#1, line 5)"),
            "{t}"
        );
        assert!(t.contains("attestation                 ok"), "{t}");
        assert!(
            t.contains("talk to tenant b: allowed, share 2  (p: talk#1)"),
            "{t}"
        );
        assert!(
            t.contains("talk to (no tenant): denied  (p: no rule matched)"),
            "{t}"
        );
        let unmatched = s.report_text(&Facts::default());
        assert!(
            unmatched.starts_with("no policy matches this enclave\n"),
            "{unmatched}"
        );
    }
}
