//! The usage chains in the attestation log: no gap and no duplicate in any enclave's chain.
//!
//! Every `usage_digest` entry of the healed cluster's log (`GET /v1/log/entries`) is read in
//! log order, and each chain (an enclave under one report key: a new key — a relaunch, or an
//! agent's restart with new TEE keys — starts a new chain at seq 1) must run 1, 2, … with each
//! span starting right after the previous one (`first_seq = last_seq + 1`, `prev_head` = the
//! previous `head`) — or declare, as `unaccounted_from`, exactly the seqs it skips (counted,
//! not an anomaly: the log says so). Its own few lines, sharing no code with the controllers'
//! chain rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One log entry as `GET /v1/log/entries` serves it (the fields this checker reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub index: u64,
    pub kind: String,
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// A page of entries.
#[derive(Debug, Clone, Deserialize)]
pub struct Page {
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub next: Option<u64>,
}

/// A `usage_digest` entry's detail (the fields this checker reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Digest {
    pub enclave: String,
    pub key: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub prev_head: String,
    pub head: String,
    #[serde(default)]
    pub unaccounted_from: Option<u64>,
    #[serde(default)]
    pub replayed: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChainVerdict {
    /// Whether the log could be read whole.
    pub read: bool,
    pub entries: u64,
    pub digests: u64,
    /// (enclave, key) chains.
    pub chains: u64,
    /// Spans replayed from an agent's buffer after a controller change.
    pub replayed: u64,
    /// Spans that declared skipped seqs (`unaccounted_from`), and how many seqs in all.
    pub declared_gaps: u64,
    pub declared_unaccounted_seqs: u64,
    pub anomalies: Vec<String>,
}

/// Checks the digests among `entries` (in log order).
pub fn check(entries: &[Entry]) -> ChainVerdict {
    let mut v = ChainVerdict {
        read: true,
        entries: entries.len() as u64,
        ..Default::default()
    };
    // (enclave, key) → (last_seq, head)
    let mut at: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == "usage_digest") {
        let d: Digest = match serde_json::from_value(e.detail.clone()) {
            Ok(d) => d,
            Err(err) => {
                v.anomalies.push(format!(
                    "log entry {}: unreadable usage digest: {err}",
                    e.index
                ));
                continue;
            }
        };
        v.digests += 1;
        v.replayed += u64::from(d.replayed);
        let chain = (d.enclave.clone(), d.key.clone());
        let prev = at.get(&chain).cloned();
        if prev.is_none() {
            v.chains += 1;
        }
        let next = prev.as_ref().map_or(1, |(last, _)| last + 1);
        let ok = d.last_seq >= d.first_seq
            && match d.unaccounted_from {
                None => {
                    d.first_seq == next
                        && prev.as_ref().is_none_or(|(_, head)| *head == d.prev_head)
                }
                Some(from) => {
                    v.declared_gaps += 1;
                    v.declared_unaccounted_seqs += d.first_seq.saturating_sub(from);
                    from == next && d.first_seq > from
                }
            };
        if !ok {
            let what = if d.first_seq < next {
                "a duplicate"
            } else {
                "a gap"
            };
            v.anomalies.push(format!(
                "usage chain of {} (key {}…): {what} at log entry {}: span {}..={} after seq {}{}",
                d.enclave,
                d.key.get(..8).unwrap_or(&d.key),
                e.index,
                d.first_seq,
                d.last_seq,
                next - 1,
                d.unaccounted_from
                    .map(|f| format!(" (declares unaccounted from {f})"))
                    .unwrap_or_default()
            ));
        }
        // Follow the chain from where this span ends, so one fault is one finding.
        if d.last_seq + 1 >= next {
            at.insert(chain, (d.last_seq, d.head));
        }
    }
    v
}

/// Every entry of the log at `url` (stale reads: the healed cluster, any controller).
pub async fn fetch(http: &reqwest::Client, url: &str) -> Option<Vec<Entry>> {
    let mut all = Vec::new();
    let mut start = 0u64;
    loop {
        let page = format!(
            "{url}/v1/log/entries?start={start}&end={}&stale=true",
            start + 999
        );
        let r = http
            .get(&page)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        let p: Page = r.json().await.ok()?;
        all.extend(p.entries);
        match p.next {
            Some(n) if n > start => start = n,
            _ => return Some(all),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u64, key: &str, first: u64, last: u64, prev: &str, from: Option<u64>) -> Entry {
        Entry {
            index: i,
            kind: "usage_digest".into(),
            detail: serde_json::json!({
                "enclave": "g", "key": key, "first_seq": first, "last_seq": last,
                "prev_head": prev, "head": format!("h{last}"),
                "unaccounted_from": from,
            }),
        }
    }

    #[test]
    fn a_whole_chain_passes_and_a_gap_or_duplicate_is_found() {
        let ok = [
            digest(1, "k1", 1, 5, "h0", None),
            digest(2, "k1", 6, 9, "h5", None),
            // A new key starts over at 1.
            digest(3, "k2", 1, 3, "h0", None),
            // A declared gap is not an anomaly.
            digest(4, "k2", 7, 8, "h6", Some(4)),
        ];
        let v = check(&ok);
        assert!(v.anomalies.is_empty(), "{:?}", v.anomalies);
        assert_eq!((v.digests, v.chains, v.declared_gaps), (4, 2, 1));
        assert_eq!(v.declared_unaccounted_seqs, 3);

        let gap = [
            digest(1, "k1", 1, 5, "h0", None),
            digest(2, "k1", 7, 9, "h6", None),
        ];
        let v = check(&gap);
        assert_eq!(v.anomalies.len(), 1, "{:?}", v.anomalies);
        assert!(v.anomalies[0].contains("a gap"));

        let dup = [
            digest(1, "k1", 1, 5, "h0", None),
            digest(2, "k1", 4, 9, "h3", None),
        ];
        let v = check(&dup);
        assert_eq!(v.anomalies.len(), 1, "{:?}", v.anomalies);
        assert!(v.anomalies[0].contains("a duplicate"));

        // Right seqs, wrong previous head: a fork, not a continuation.
        let fork = [
            digest(1, "k1", 1, 5, "h0", None),
            digest(2, "k1", 6, 9, "hX", None),
        ];
        assert_eq!(check(&fork).anomalies.len(), 1);
    }
}
