//! `tribune bench log`: the attestation log's Merkle tree at scale — appends N leaves straight
//! into the tree over its node store (no cluster, no Raft, no entries), and at each checkpoint
//! size measures inclusion and consistency proofs (each with the root a proof request also
//! reads, as `GET /v1/log/proof/*` computes them), the resident memory of this process, and a
//! restart: the store synced, dropped and reopened (repair checks included), ready when the
//! reopened tree's root equals the one before.
//!
//! Backends: `file` (`tribune_attest::merkle_files::FileNodes`, the nodes in per-level files,
//! read with `pread`) and `memory` (`MemNodes`, what a controller holds today: ~64 bytes per
//! leaf). Every proof is verified (outside the timer) with the verifier `tribune log` uses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use tribune_attest::merkle::{
    Hash, MemNodes, NodeStore, StoredTree, leaf_hash, verify_consistency, verify_inclusion,
};
use tribune_attest::merkle_files::FileNodes;

use crate::Summary;
use crate::memory::rss;

/// Which node store the tree uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    File,
    Memory,
}

/// A backend name that is neither `file` nor `memory`.
#[derive(Debug, thiserror::Error)]
#[error("backend {0:?}: expected file or memory")]
pub struct UnknownBackend(pub String);

impl std::str::FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, UnknownBackend> {
        match s {
            "file" => Ok(Backend::File),
            "memory" => Ok(Backend::Memory),
            _ => Err(UnknownBackend(s.to_string())),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LogArgs {
    pub entries: u64,
    /// Sizes at which to measure (each ≤ `entries`); `entries` is always measured.
    pub at: Vec<u64>,
    /// Proofs timed per kind per size.
    pub proofs: usize,
    pub backend: Backend,
    /// Where the node files go (a fresh temporary directory inside it, removed afterwards).
    pub dir: Option<PathBuf>,
    pub seed: u64,
}

/// The figures at one size.
#[derive(Debug, Clone, Serialize)]
pub struct AtSize {
    pub size: u64,
    /// Seconds spent appending up to this size (since the previous one).
    pub append_s: f64,
    pub appends_per_s: f64,
    /// Inclusion proof + root of the tree of `size`, ms.
    pub inclusion_ms: Summary,
    /// Consistency proof + both roots, ms.
    pub consistency_ms: Summary,
    /// Resident memory of this process after the proofs.
    pub rss_mib: f64,
    /// Sync, drop and reopen of the store until the root is served (file backend).
    pub restart_ms: Option<f64>,
    pub rss_after_restart_mib: Option<f64>,
    /// The same restart after the node files were evicted from the page cache (last size).
    pub cold_restart_ms: Option<f64>,
    /// The first inclusion proofs (+ root) after that eviction (up to [`COLD_PROOFS`]).
    pub cold_inclusion_ms: Option<Summary>,
    pub bytes_on_disk: Option<u64>,
}

/// Proofs timed right after the page cache was emptied of the node files.
pub const COLD_PROOFS: usize = 1000;

/// Asks the kernel to drop the cached pages of every file in `dir` (they are synced, so
/// clean: `POSIX_FADV_DONTNEED` evicts them). Only these files: the rest of the machine's
/// cache is left alone.
fn evict(dir: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = e?.path();
        let f =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: a valid open descriptor; the call only advises the kernel about its pages.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            bail!("posix_fadvise on {}: error {rc}", path.display());
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct LogFigures {
    pub backend: Backend,
    pub entries: u64,
    pub proofs: usize,
    pub sizes: Vec<AtSize>,
}

/// splitmix64: a seeded stream of indexes (no dependency on an RNG crate).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Leaf `i`: bytes shaped like a usage-digest entry's leaf (≈ 200 bytes of canonical JSON).
fn leaf(i: u64) -> Hash {
    let text = format!(
        "{{\"at_ms\":{},\"detail\":{{\"cpu_millicores_avg\":{},\"first_seq\":{},\"head\":\"{:064x}\"}},\"index\":{i},\"kind\":\"usage_digest\",\"leaf_format\":2,\"subject\":\"e-{}\"}}",
        1_767_000_000_000u64 + i,
        i % 4000,
        i * 10,
        i,
        i % 1000
    );
    leaf_hash(text.as_bytes())
}

fn rss_mib() -> anyhow::Result<f64> {
    Ok(rss(std::process::id())
        .context("reading this process's VmRSS")?
        .rss_mib)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times `proofs` inclusion and consistency proofs in the tree of `size`; verifies each.
fn time_proofs<S: NodeStore>(
    t: &StoredTree<S>,
    size: u64,
    proofs: usize,
    mix: &mut Mix,
) -> anyhow::Result<(Summary, Summary)> {
    let mut incl = Vec::with_capacity(proofs);
    let mut cons = Vec::with_capacity(proofs);
    for _ in 0..proofs {
        let index = mix.below(size);
        let start = Instant::now();
        let proof = t.inclusion_proof(index, size)?;
        let root = t.root_at(size)?;
        incl.push(start.elapsed());
        verify_inclusion(&t.leaf(index)?, index, size, &proof, &root)
            .map_err(|e| anyhow!("inclusion proof of {index} in {size}: {e}"))?;

        let old = 1 + mix.below(size);
        let start = Instant::now();
        let proof = t.consistency_proof(old, size)?;
        let (old_root, new_root) = (t.root_at(old)?, t.root_at(size)?);
        cons.push(start.elapsed());
        verify_consistency(old, size, &old_root, &new_root, &proof)
            .map_err(|e| anyhow!("consistency proof {old} → {size}: {e}"))?;
    }
    Ok((Summary::of_durations(&incl), Summary::of_durations(&cons)))
}

/// Appends until `size`, returning seconds spent.
fn append_to<S: NodeStore>(t: &mut StoredTree<S>, size: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    for i in t.size()..size {
        t.push_hash(leaf(i))?;
        if i % 1_000_000 == 999_999 {
            eprintln!("  appended {} leaves", i + 1);
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The sizes to measure at: `at` within range, then `entries`, ascending and distinct.
fn sizes(args: &LogArgs) -> Vec<u64> {
    let mut s: Vec<u64> = args
        .at
        .iter()
        .copied()
        .filter(|&a| a > 0 && a < args.entries)
        .collect();
    s.push(args.entries);
    s.sort_unstable();
    s.dedup();
    s
}

fn at_size(
    size: u64,
    append_s: f64,
    from: u64,
    proofs: (Summary, Summary),
) -> anyhow::Result<AtSize> {
    Ok(AtSize {
        size,
        append_s,
        appends_per_s: (size - from) as f64 / append_s.max(1e-9),
        inclusion_ms: proofs.0,
        consistency_ms: proofs.1,
        rss_mib: rss_mib()?,
        restart_ms: None,
        rss_after_restart_mib: None,
        cold_restart_ms: None,
        cold_inclusion_ms: None,
        bytes_on_disk: None,
    })
}

fn run_file(args: &LogArgs, dir: &Path, mix: &mut Mix) -> anyhow::Result<Vec<AtSize>> {
    let (nodes, _) = FileNodes::open(dir)?;
    let mut tree = StoredTree::new(nodes);
    let mut out = Vec::new();
    let sizes = sizes(args);
    let last = sizes.last().copied().unwrap_or(0);
    for size in sizes {
        let from = tree.size();
        let append_s = append_to(&mut tree, size)?;
        tree.store_mut().sync()?;
        let proofs = time_proofs(&tree, size, args.proofs, mix)?;
        let mut row = at_size(size, append_s, from, proofs)?;
        row.bytes_on_disk = Some(tree.store().bytes_on_disk());
        // Restart: everything synced, the store closed, then opened as a new process would.
        let root = tree.root()?;
        drop(tree);
        let start = Instant::now();
        let (nodes, repair) = FileNodes::open(dir)?;
        tree = StoredTree::new(nodes);
        let reopened = tree.root()?;
        row.restart_ms = Some(ms(start.elapsed()));
        if reopened != root || tree.size() != size {
            bail!(
                "the reopened tree differs: size {} root {}",
                tree.size(),
                hex::encode(reopened)
            );
        }
        if repair != Default::default() {
            bail!("a cleanly closed store needed repairs: {repair:?}");
        }
        row.rss_after_restart_mib = Some(rss_mib()?);
        // Cold, at the last size only (an eviction before more appends would leave the early
        // pages cold for the next size's warm figures): the files' pages evicted, as after a
        // reboot (the host's own cache under this VM's disk may still hold them).
        if size == last {
            drop(tree);
            evict(dir)?;
            let start = Instant::now();
            let (nodes, _) = FileNodes::open(dir)?;
            tree = StoredTree::new(nodes);
            let reopened = tree.root()?;
            row.cold_restart_ms = Some(ms(start.elapsed()));
            if reopened != root {
                bail!(
                    "the tree reopened cold differs: root {}",
                    hex::encode(reopened)
                );
            }
            let cold = time_proofs(&tree, size, args.proofs.min(COLD_PROOFS), mix)?;
            row.cold_inclusion_ms = Some(cold.0);
        }
        eprintln!("  measured at {size} leaves");
        out.push(row);
    }
    Ok(out)
}

fn run_memory(args: &LogArgs, mix: &mut Mix) -> anyhow::Result<Vec<AtSize>> {
    let mut tree = StoredTree::new(MemNodes::default());
    let mut out = Vec::new();
    for size in sizes(args) {
        let from = tree.size();
        let append_s = append_to(&mut tree, size)?;
        let proofs = time_proofs(&tree, size, args.proofs, mix)?;
        let row = at_size(size, append_s, from, proofs)?;
        eprintln!("  measured at {size} leaves");
        out.push(row);
    }
    Ok(out)
}

pub fn run(args: &LogArgs) -> anyhow::Result<LogFigures> {
    if args.entries == 0 {
        bail!("--entries must be at least 1");
    }
    if args.proofs == 0 {
        bail!("--proofs must be at least 1");
    }
    let mut mix = Mix(args.seed);
    let sizes = match args.backend {
        Backend::Memory => run_memory(args, &mut mix)?,
        Backend::File => {
            let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
            let dir = tempfile::Builder::new()
                .prefix("tribune-bench-log-")
                .tempdir_in(&parent)
                .with_context(|| format!("creating a directory in {}", parent.display()))?;
            eprintln!("node files in {}", dir.path().display());
            run_file(args, dir.path(), &mut mix)?
        }
    };
    Ok(LogFigures {
        backend: args.backend,
        entries: args.entries,
        proofs: args.proofs,
        sizes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_measures_every_size_and_restarts_clean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = LogArgs {
            entries: 5000,
            at: vec![1000, 7000, 0],
            proofs: 50,
            backend: Backend::File,
            dir: Some(dir.path().to_path_buf()),
            seed: 3,
        };
        let f = run(&args).expect("run");
        let sizes: Vec<u64> = f.sizes.iter().map(|s| s.size).collect();
        assert_eq!(sizes, [1000, 5000]);
        assert!(
            f.sizes
                .iter()
                .all(|s| s.restart_ms.is_some() && s.inclusion_ms.n == 50)
        );
        assert_eq!(
            f.sizes[1].bytes_on_disk,
            Some(32 * (2 * 5000 - 5000u64.count_ones() as u64))
        );
        let m = run(&LogArgs {
            backend: Backend::Memory,
            ..args
        })
        .expect("memory run");
        assert_eq!(m.sizes.len(), 2);
    }
}
