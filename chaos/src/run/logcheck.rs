//! The attestation log checker: every signed tree head any controller served during the run
//! must verify under a registered key, and be consistent with the final head (and so with
//! every later one): same size, same root; smaller size, a consistency proof from the final
//! cluster that `tribune-receipt` (the standalone verifier, which shares no code with the
//! controller's log) accepts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tribune_receipt::merkle::{Hash, verify_consistency};

/// A signed tree head as `GET /v1/log/sth` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sth {
    pub tree_size: u64,
    pub timestamp_ms: u64,
    pub root_hash: String,
    pub signature: String,
    pub key_id: String,
    pub node_id: u64,
}

#[derive(Default)]
pub struct Heads(Mutex<Vec<Sth>>);

impl Heads {
    pub fn push(&self, h: Sth) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(h);
    }

    pub fn all(&self) -> Vec<Sth> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn hash(hex_str: &str) -> Option<Hash> {
    hex::decode(hex_str).ok()?.try_into().ok()
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogVerdict {
    pub heads: u64,
    pub proofs_checked: u64,
    pub anomalies: Vec<String>,
}

/// Checks `heads` against `last` (a head of the healed cluster) with proofs fetched from `url`,
/// and signatures against the keys at `url`.
pub async fn check(http: &reqwest::Client, url: &str, heads: &[Sth], last: &Sth) -> LogVerdict {
    let mut v = LogVerdict {
        heads: heads.len() as u64,
        ..Default::default()
    };
    let keys: BTreeMap<String, [u8; 32]> = match get(http, &format!("{url}/v1/log/keys")).await {
        Some(serde_json::Value::Array(ks)) => ks
            .iter()
            .filter_map(|k| {
                let id = k["key_id"].as_str()?.to_string();
                let pk: [u8; 32] = hex::decode(k["public_key"].as_str()?)
                    .ok()?
                    .try_into()
                    .ok()?;
                Some((id, pk))
            })
            .collect(),
        _ => {
            v.anomalies.push("could not read the log keys".into());
            return v;
        }
    };
    let Some(last_root) = hash(&last.root_hash) else {
        v.anomalies
            .push(format!("final head has a bad root: {last:?}"));
        return v;
    };
    let mut by_size: BTreeMap<u64, &Sth> = BTreeMap::new();
    for h in heads.iter().chain(std::iter::once(last)) {
        let signed = (|| {
            let pk = ed25519_dalek::VerifyingKey::from_bytes(keys.get(&h.key_id)?).ok()?;
            let sig: [u8; 64] = hex::decode(&h.signature).ok()?.try_into().ok()?;
            Some(tribune_receipt::sth::verify(
                &pk,
                h.tree_size,
                h.timestamp_ms,
                &hash(&h.root_hash)?,
                &sig,
            ))
        })();
        if signed != Some(true) {
            v.anomalies.push(format!(
                "head of size {} from controller {} does not verify under key {}",
                h.tree_size, h.node_id, h.key_id
            ));
        }
        if h.tree_size > last.tree_size {
            v.anomalies.push(format!(
                "head of size {} from controller {} is larger than the final log ({})",
                h.tree_size, h.node_id, last.tree_size
            ));
            continue;
        }
        match by_size.get(&h.tree_size) {
            Some(other) if other.root_hash != h.root_hash => v.anomalies.push(format!(
                "two roots for size {}: {} (controller {}) and {} (controller {})",
                h.tree_size, other.root_hash, other.node_id, h.root_hash, h.node_id
            )),
            Some(_) => {}
            None => {
                by_size.insert(h.tree_size, h);
            }
        }
    }
    for (size, h) in by_size.range(..last.tree_size) {
        let Some(root) = hash(&h.root_hash) else {
            v.anomalies.push(format!("bad root in {h:?}"));
            continue;
        };
        let proof_url = format!(
            "{url}/v1/log/proof/consistency?first={size}&second={}",
            last.tree_size
        );
        let proof: Option<Vec<Hash>> = get(http, &proof_url).await.and_then(|p| {
            p["proof"]
                .as_array()?
                .iter()
                .map(|x| hash(x.as_str()?))
                .collect()
        });
        match proof {
            Some(p) => {
                v.proofs_checked += 1;
                if let Err(e) = verify_consistency(*size, last.tree_size, &root, &last_root, &p) {
                    v.anomalies.push(format!(
                        "head of size {size} (controller {}) is not consistent with the final head of size {}: {e}",
                        h.node_id, last.tree_size
                    ));
                }
            }
            None => v.anomalies.push(format!(
                "no consistency proof for {size} → {}",
                last.tree_size
            )),
        }
    }
    v
}

/// A 200's JSON body.
pub async fn get(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let r = http
        .get(url)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}
