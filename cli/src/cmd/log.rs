//! `tribune log …`: read the attestation log and check it — inclusion proofs of entries against a
//! signed tree head, and consistency of every tree head this client has seen with the newest.
//!
//! What this client has seen lives in a state file (`--state`, default
//! `$XDG_STATE_HOME/tribune/log.json` or `~/.local/state/tribune/log.json`): the cluster's signing
//! keys, pinned on first use, and every signed tree head it checked. The checks themselves are
//! `tribune_controller::api::log`'s; this module fetches, prints and keeps the state file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tribune_attest::merkle::SignedTreeHead;
use tribune_controller::api::log::{
    ConsistencyProofView, EntriesPage, InclusionProofView, LogCheckError, SthView, verifying_key,
};
use tribune_controller::state::LogKey;

use super::client::{Client, ClientOpts};
use super::output::{self, Format};

#[derive(Subcommand, Debug)]
pub enum LogCmd {
    /// Fetch the current signed tree head and check its signature.
    Sth {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// The cluster's tree-head signing keys.
    Keys {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// The current tree head as a C2SP checkpoint (c2sp.org/tlog-checkpoint) signed by the
    /// controller as a C2SP signed note: what transparency-log verifiers and witnesses read.
    /// Printed verbatim (`-o json`: `{"checkpoint": …}`).
    Checkpoint {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// The cluster's log keys as signed-note verifier keys (`<origin>+<id>+<key>`), the form a
    /// checkpoint verifier or witness is configured with.
    NoteKeys {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List log entries (at most 1000 per request).
    Entries {
        /// First entry index.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Last entry index, inclusive (default: start + 99).
        #[arg(long)]
        end: Option<u64>,
        /// Only entries of this kind (verdict, violation, action, migration, policy_change,
        /// enclave_change, usage_digest, log_key).
        #[arg(long)]
        kind: Option<String>,
        /// Only entries about this subject (a policy name, an enclave id, …).
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Prove that entry ENTRY is in the log: recompute its leaf hash from its content, fetch an
    /// inclusion proof to the current signed tree head, check the head's signature, that the
    /// head extends the largest head pinned in the state file (a consistency proof), and the
    /// inclusion proof. The head is pinned on first use. Exit 1 if anything does not verify.
    Prove {
        /// Entry index.
        entry: u64,
        /// State file with pinned keys and the tree heads seen (this head is added).
        #[arg(long)]
        state: Option<PathBuf>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Check that every tree head seen before (in the state file) is consistent with the newest:
    /// signatures under the pinned keys, consistency proofs from the cluster. Exit 1 on any
    /// failure; the state file is only updated when everything verifies.
    Verify {
        /// State file with pinned keys and the tree heads seen.
        #[arg(long)]
        state: Option<PathBuf>,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// The log does not check out, or what was asked for is not there: printed, exit 1.
#[derive(Debug)]
struct CheckFailed(String);

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckFailed {}

fn failed(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(CheckFailed(msg.into()))
}

fn check_err(context: &str, e: LogCheckError) -> anyhow::Error {
    failed(format!("{context}: {e}"))
}

/// Tree heads kept in the state file; the oldest (smallest) go first beyond this. Dropping them
/// loses nothing: each was proven consistent with a newer head before it was dropped.
const STHS_KEPT_MAX: usize = 1000;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustState {
    version: u32,
    /// Pinned on first use, by key id.
    keys: BTreeMap<String, LogKey>,
    /// Every signed tree head checked, in the order seen.
    sths: Vec<SthView>,
}

fn default_state_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".local/state"),
            None => bail!("neither XDG_STATE_HOME nor HOME is set: pass --state FILE"),
        },
    };
    Ok(base.join("tribune").join("log.json"))
}

fn load_state(path: &Path) -> anyhow::Result<TrustState> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(TrustState {
                version: 1,
                ..Default::default()
            });
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let s: TrustState = serde_json::from_str(&text).map_err(|e| {
        failed(format!(
            "state file {} is not a tribune log state ({e}); it may have been tampered with",
            path.display()
        ))
    })?;
    Ok(s)
}

fn save_state(path: &Path, s: &TrustState) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(s).context("encoding the state file")?;
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Records a head unless one of the same size and root is already there (another signature
/// over the same tree adds nothing to check).
fn remember(s: &mut TrustState, sth: &SthView) {
    if !s
        .sths
        .iter()
        .any(|x| x.tree_size == sth.tree_size && x.root_hash == sth.root_hash)
    {
        s.sths.push(sth.clone());
    }
    if s.sths.len() > STHS_KEPT_MAX {
        s.sths.sort_by_key(|x| x.tree_size);
        let excess = s.sths.len() - STHS_KEPT_MAX;
        s.sths.drain(..excess);
    }
}

/// Merges the cluster's key set into the pinned one. Every pinned key must still be there,
/// unchanged; new keys (new controllers) are pinned. Returns the ids of newly pinned keys.
fn pin_keys(s: &mut TrustState, fetched: Vec<LogKey>) -> anyhow::Result<Vec<String>> {
    let fetched: BTreeMap<String, LogKey> =
        fetched.into_iter().map(|k| (k.key_id.clone(), k)).collect();
    for k in fetched.values() {
        verifying_key(k).map_err(|e| check_err("the cluster's key set", e))?;
    }
    for (id, pinned) in &s.keys {
        match fetched.get(id) {
            None => {
                return Err(failed(format!(
                    "PINNED KEY DROPPED: key {id} of controller {} (pinned on first use) is no longer in the cluster's key set. \
                     This is not the log you checked before (or its history was rewritten); do not trust it. \
                     If the cluster was deliberately rebuilt, start over with a new --state file.",
                    pinned.node_id
                )));
            }
            Some(k) if k.public_key != pinned.public_key || k.node_id != pinned.node_id => {
                return Err(failed(format!(
                    "PINNED KEY CHANGED: key {id} was controller {}'s {} and is now controller {}'s {}",
                    pinned.node_id, pinned.public_key, k.node_id, k.public_key
                )));
            }
            Some(_) => {}
        }
    }
    let mut added = Vec::new();
    for (id, k) in fetched {
        if let std::collections::btree_map::Entry::Vacant(slot) = s.keys.entry(id) {
            added.push(slot.key().clone());
            slot.insert(k);
        }
    }
    Ok(added)
}

async fn fetch<T: DeserializeOwned>(client: &Client, path: &str) -> anyhow::Result<T> {
    let v = client.get(path).await?;
    serde_json::from_value(v).with_context(|| format!("unexpected answer from {path}"))
}

/// Checks that `newest` (just verified under the pinned keys) extends the largest head pinned
/// in `s`, and so every pinned head: each head is stored only after it was checked against the
/// largest before it, so the pinned heads are prefixes of one another. Returns the pinned head
/// it was checked against (`None` on first use, when there is none).
async fn check_against_pinned(
    client: &Client,
    path: &Path,
    s: &TrustState,
    newest: &SignedTreeHead,
) -> anyhow::Result<Option<SthView>> {
    let Some(pinned) = s.sths.iter().max_by_key(|h| h.tree_size).cloned() else {
        return Ok(None);
    };
    let old = pinned.verify(&s.keys).map_err(|e| {
        failed(format!(
            "the largest tree head pinned in {} (size {}, root {}): {e}; the state file was altered",
            path.display(),
            pinned.tree_size,
            short(&pinned.root_hash)
        ))
    })?;
    if old.size > newest.size {
        return Err(failed(format!(
            "INCONSISTENT: the cluster's current tree head (size {}) is smaller than the one pinned in {} (size {}, root {}): the log lost entries it had signed",
            newest.size,
            path.display(),
            old.size,
            short(&pinned.root_hash)
        )));
    }
    let proof: ConsistencyProofView = fetch(
        client,
        &format!(
            "/v1/log/proof/consistency?first={}&second={}",
            old.size, newest.size
        ),
    )
    .await?;
    proof.verify(&old, newest).map_err(|e| {
        failed(format!(
            "INCONSISTENT: the cluster's tree head (size {}, root {}) does not extend the head pinned in {} (size {}, root {}, signed by key {}): {e}. \
             The controller that answered serves a different log from the one you checked before: do not trust it",
            newest.size,
            hex::encode(newest.root),
            path.display(),
            old.size,
            hex::encode(old.root),
            pinned.key_id
        ))
    })?;
    Ok(Some(pinned))
}

/// The current head (checked against the cluster's keys, which are pinned on the way).
async fn current_head(
    client: &Client,
    s: &mut TrustState,
) -> anyhow::Result<(SthView, SignedTreeHead, Vec<String>)> {
    // Head first, keys second: the key list read after the head includes the key that signed it.
    let view: SthView = fetch(client, "/v1/log/sth").await?;
    let keys: Vec<LogKey> = fetch(client, "/v1/log/keys").await?;
    let added = pin_keys(s, keys)?;
    let sth = view
        .verify(&s.keys)
        .map_err(|e| check_err("the current tree head", e))?;
    Ok((view, sth, added))
}

fn short(h: &str) -> &str {
    h.get(..16).unwrap_or(h)
}

pub fn run(cmd: LogCmd, format: Format) -> anyhow::Result<ExitCode> {
    let opts = match &cmd {
        LogCmd::Sth { opts }
        | LogCmd::Keys { opts }
        | LogCmd::Checkpoint { opts }
        | LogCmd::NoteKeys { opts }
        | LogCmd::Entries { opts, .. }
        | LogCmd::Prove { opts, .. }
        | LogCmd::Verify { opts, .. } => opts.clone(),
    };
    let client = Client::new(&opts, format)?;
    let result = super::client::runtime()?.block_on(run_async(cmd, &client));
    match result {
        Err(e) if e.downcast_ref::<CheckFailed>().is_some() => {
            let _ =
                output::structured(client.output, &json!({"ok": false, "error": e.to_string()}));
            eprintln!("error: {}", output::text(&e.to_string()));
            Ok(ExitCode::from(1))
        }
        other => other,
    }
}

async fn run_async(cmd: LogCmd, client: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        LogCmd::Sth { .. } => {
            let mut scratch = TrustState::default();
            let (view, _, _) = current_head(client, &mut scratch).await?;
            if client.output.is_structured() {
                client.print(&serde_json::to_value(&view)?, &[]);
            } else {
                println!("tree size   {}", view.tree_size);
                println!("root hash   {}", output::cell(&view.root_hash));
                println!("timestamp   {} ms", view.timestamp_ms);
                println!(
                    "signed by   controller {} (key {}); signature verifies",
                    view.node_id,
                    output::cell(&view.key_id)
                );
            }
        }
        LogCmd::Keys { .. } => {
            let v = client.get("/v1/log/keys").await?;
            client.print(
                &v,
                &[
                    ("KEY ID", "/key_id"),
                    ("CONTROLLER", "/node_id"),
                    ("PUBLIC KEY", "/public_key"),
                    ("LOG INDEX", "/log_index"),
                ],
            );
        }
        LogCmd::Checkpoint { .. } => {
            let (_, _, bytes) = client
                .call_bytes(reqwest::Method::GET, "/v1/log/checkpoint", None, &[])
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            let note = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("the checkpoint is not UTF-8 text"))?;
            if client.output.is_structured() {
                client.print(&json!({ "checkpoint": note }), &[]);
            } else {
                print!("{note}");
            }
        }
        LogCmd::NoteKeys { .. } => {
            let v = client.get("/v1/log/note-keys").await?;
            client.print(
                &v,
                &[
                    ("CONTROLLER", "/node_id"),
                    ("KEY ID", "/key_id"),
                    ("VERIFIER KEY", "/verifier_key"),
                ],
            );
        }
        LogCmd::Entries {
            start,
            end,
            kind,
            subject,
            ..
        } => {
            let mut url = reqwest::Url::parse("http://tribune.invalid/v1/log/entries")?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("start", &start.to_string());
                if let Some(e) = end {
                    q.append_pair("end", &e.to_string());
                }
                if let Some(k) = &kind {
                    q.append_pair("kind", k);
                }
                if let Some(s) = &subject {
                    q.append_pair("subject", s);
                }
            }
            let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
            let v = client.get(&path).await?;
            if client.output.is_structured() {
                client.print(&v, &[]);
            } else {
                let page: EntriesPage =
                    serde_json::from_value(v).context("unexpected answer from the log")?;
                let rows: Vec<Value> = page
                    .entries
                    .iter()
                    .map(|e| {
                        json!({"index": e.entry.index, "at_ms": e.entry.at_ms,
                            "kind": e.entry.kind().as_str(), "subject": e.entry.subject,
                            "leaf": short(&e.leaf_hash), "detail": e.entry.detail_value().to_string()})
                    })
                    .collect();
                client.print(
                    &Value::Array(rows),
                    &[
                        ("INDEX", "/index"),
                        ("AT (ms)", "/at_ms"),
                        ("KIND", "/kind"),
                        ("SUBJECT", "/subject"),
                        ("LEAF HASH", "/leaf"),
                        ("DETAIL", "/detail"),
                    ],
                );
                match page.next {
                    Some(n) => println!(
                        "({} entries in the log; next page: --start {n})",
                        page.tree_size
                    ),
                    None => println!("({} entries in the log)", page.tree_size),
                }
            }
        }
        LogCmd::Prove { entry, state, .. } => {
            let path = match state {
                Some(p) => p,
                None => default_state_path()?,
            };
            let mut s = load_state(&path)?;
            let (view, sth, added) = current_head(client, &mut s).await?;
            let pinned = check_against_pinned(client, &path, &s, &sth).await?;
            if entry >= sth.size {
                return Err(failed(format!(
                    "entry {entry} is not in the log: the current tree head covers entries 0..={}",
                    sth.size.saturating_sub(1)
                )));
            }
            let page: EntriesPage = fetch(
                client,
                &format!("/v1/log/entries?start={entry}&end={entry}"),
            )
            .await?;
            let Some(e) = page.entries.into_iter().find(|e| e.entry.index == entry) else {
                return Err(failed(format!("the cluster did not return entry {entry}")));
            };
            let leaf = e.entry.leaf_hash();
            if hex::encode(leaf) != e.leaf_hash {
                return Err(failed(format!(
                    "entry {entry}: the leaf hash computed from its content ({}) differs from the cluster's ({})",
                    hex::encode(leaf),
                    e.leaf_hash
                )));
            }
            let proof: InclusionProofView = fetch(
                client,
                &format!(
                    "/v1/log/proof/inclusion?index={entry}&tree_size={}",
                    sth.size
                ),
            )
            .await?;
            if proof.leaf_index != entry {
                return Err(failed(format!(
                    "asked for a proof of entry {entry}, got one for entry {}",
                    proof.leaf_index
                )));
            }
            proof
                .verify(&leaf, &sth)
                .map_err(|err| check_err(&format!("entry {entry}"), err))?;
            remember(&mut s, &view);
            save_state(&path, &s)?;
            if client.output.is_structured() {
                client.print(
                    &json!({"ok": true, "entry": e.entry, "leaf_hash": hex::encode(leaf),
                        "tree_head": view, "audit_path": proof.audit_path,
                        "extends_pinned": pinned}),
                    &[],
                );
            } else {
                for id in added {
                    println!("pinned new signing key {id}");
                }
                println!(
                    "entry       {} {} {:?} at {} ms",
                    entry,
                    e.entry.kind().as_str(),
                    e.entry.subject,
                    e.entry.at_ms
                );
                println!(
                    "detail      {}",
                    output::cell(&e.entry.detail_value().to_string())
                );
                println!(
                    "leaf hash   {} (recomputed from the entry)",
                    hex::encode(leaf)
                );
                println!(
                    "tree head   size {}, root {}, signed by controller {} (key {}) at {} ms",
                    view.tree_size,
                    output::cell(&view.root_hash),
                    view.node_id,
                    output::cell(&view.key_id),
                    view.timestamp_ms
                );
                for (i, h) in proof.audit_path.iter().enumerate() {
                    let label = if i == 0 { "audit path" } else { "" };
                    println!("{label:<11} {h}");
                }
                match &pinned {
                    Some(p) => println!(
                        "pinned      extends the pinned head of size {} (root {}) in {}",
                        p.tree_size,
                        short(&p.root_hash),
                        path.display()
                    ),
                    None => println!(
                        "pinned      first tree head pinned in {} (trust on first use)",
                        path.display()
                    ),
                }
                println!(
                    "ok: entry {entry} is included in the tree of size {} signed by controller {}",
                    view.tree_size, view.node_id
                );
            }
        }
        LogCmd::Verify { state, .. } => {
            let path = match state {
                Some(p) => p,
                None => default_state_path()?,
            };
            let mut s = load_state(&path)?;
            verify(client, &path, &mut s).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(client: &Client, path: &Path, s: &mut TrustState) -> anyhow::Result<()> {
    let (view, newest, added) = current_head(client, s).await?;
    let mut failures = Vec::new();
    // Every head seen before: its signature under the pinned keys.
    let mut earlier: Vec<(usize, SignedTreeHead)> = Vec::new();
    for (i, old) in s.sths.iter().enumerate() {
        match old.verify(&s.keys) {
            Ok(sth) => earlier.push((i, sth)),
            Err(e) => failures.push(format!(
                "tree head #{i} in {} (size {}, root {}): {e}; the state file was altered or the cluster signed with a key it no longer lists",
                path.display(),
                old.tree_size,
                short(&old.root_hash)
            )),
        }
    }
    // Then each is consistent with the newest: one proof per distinct older size.
    let mut proofs: BTreeMap<u64, ConsistencyProofView> = BTreeMap::new();
    for (i, old) in &earlier {
        if old.size > newest.size {
            failures.push(format!(
                "tree head #{i} (size {}) is larger than the cluster's current head (size {}): the log lost entries it had signed",
                old.size, newest.size
            ));
            continue;
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = proofs.entry(old.size) {
            let p: ConsistencyProofView = fetch(
                client,
                &format!(
                    "/v1/log/proof/consistency?first={}&second={}",
                    old.size, newest.size
                ),
            )
            .await?;
            slot.insert(p);
        }
        if let Some(p) = proofs.get(&old.size)
            && let Err(e) = p.verify(old, &newest)
        {
            failures.push(format!(
                "INCONSISTENT: tree head #{i} (size {}, root {}, signed by key {}) is not a prefix of the newest (size {}, root {}): {e}",
                old.size,
                hex::encode(old.root),
                s.sths[*i].key_id,
                newest.size,
                hex::encode(newest.root)
            ));
        }
    }
    if !failures.is_empty() {
        let n = failures.len();
        return Err(failed(format!(
            "{n} check(s) failed; {} left unchanged:\n  {}",
            path.display(),
            failures.join("\n  ")
        )));
    }
    let checked = earlier.len();
    remember(s, &view);
    save_state(path, s)?;
    if client.output.is_structured() {
        client.print(
            &json!({"ok": true, "newest": view, "checked": checked,
                "keys_pinned": s.keys.len(), "keys_added": added, "state": path}),
            &[],
        );
    } else {
        for id in &added {
            println!("pinned new signing key {id}");
        }
        if checked == 0 {
            println!(
                "ok: first tree head recorded (size {}, root {}, signed by controller {}); nothing earlier to compare",
                view.tree_size,
                short(&view.root_hash),
                view.node_id
            );
        } else {
            println!(
                "ok: all {checked} earlier tree head(s) are consistent with the newest (size {}, root {}, signed by controller {}); {} key(s) pinned",
                view.tree_size,
                short(&view.root_hash),
                view.node_id,
                s.keys.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8, node_id: u64) -> LogKey {
        let public = public_key(seed);
        LogKey {
            key_id: tribune_controller::state::key_id(&public),
            node_id,
            public_key: hex::encode(public),
            registered_at_ms: 0,
            log_index: 0,
        }
    }

    fn public_key(seed: u8) -> [u8; 32] {
        tribune_controller::log_key::LogSigner::from_key(
            ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
            1,
        )
        .verifying_key()
        .to_bytes()
    }

    #[test]
    fn keys_are_pinned_on_first_use_and_may_only_grow() {
        let mut s = TrustState::default();
        let added = pin_keys(&mut s, vec![key(1, 1), key(2, 2)]).expect("first use");
        assert_eq!(added.len(), 2);
        assert_eq!(
            pin_keys(&mut s, vec![key(1, 1), key(2, 2), key(3, 3)]).expect("a new controller"),
            vec![key(3, 3).key_id]
        );
        let e = pin_keys(&mut s, vec![key(1, 1), key(3, 3)]).expect_err("dropped");
        assert!(e.to_string().contains("PINNED KEY DROPPED"), "{e}");
        let mut moved = key(2, 2);
        moved.node_id = 9;
        let e = pin_keys(&mut s, vec![key(1, 1), moved, key(3, 3)]).expect_err("changed");
        assert!(e.to_string().contains("PINNED KEY CHANGED"), "{e}");
        let mut forged = key(4, 4);
        forged.key_id = key(1, 1).key_id;
        assert!(pin_keys(&mut TrustState::default(), vec![forged]).is_err());
    }

    #[test]
    fn heads_are_remembered_once_per_tree_and_bounded() {
        let mut s = TrustState::default();
        let head = |size: u64, ts: u64| SthView {
            tree_size: size,
            timestamp_ms: ts,
            root_hash: format!("{size:064x}"),
            signature: String::new(),
            key_id: String::new(),
            node_id: 1,
            sth: String::new(),
        };
        remember(&mut s, &head(1, 1));
        remember(&mut s, &head(1, 2));
        assert_eq!(s.sths.len(), 1, "same tree, another signature");
        for size in 2..=(STHS_KEPT_MAX as u64 + 5) {
            remember(&mut s, &head(size, 0));
        }
        assert_eq!(s.sths.len(), STHS_KEPT_MAX);
        assert_eq!(s.sths[0].tree_size, 6, "the smallest go first");
    }
}
