//! The Merkle tree over a store of its complete subtrees' roots, so that a log of any length
//! answers roots, inclusion proofs and consistency proofs with O(log² n) node reads and no
//! rehashing, from memory ([`MemNodes`]) or from files ([`crate::merkle_files::FileNodes`]).
//!
//! Node `(level, i)` is the root of the complete, aligned subtree over leaves
//! `[i·2^level, (i+1)·2^level)`; level 0 holds the leaf hashes. Every level is append-only:
//! a push appends its leaf and the parents it completes (amortised two nodes per leaf), so a
//! store holds exactly `⌊count(level)/2⌋` nodes at `level + 1` — the invariant a file store
//! repairs and checks when it opens. Every left subtree in RFC 6962's recursion is complete and
//! aligned, hence one stored node; a right one splits again, O(log n) times.

use std::convert::Infallible;

use crate::merkle::{Hash, empty_root, node_hash};

/// Where the nodes live. Levels are append-only arrays of hashes.
pub trait NodeStore {
    /// A read or write that failed (I/O); [`Infallible`] for memory.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Number of nodes stored at `level` (level 0: the leaves); 0 above the top.
    fn count(&self, level: u32) -> u64;

    /// Node `index` of `level` (`index < count(level)`).
    fn get(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;

    /// Appends a node to `level` (`level ≤` the number of levels: a new top level starts empty).
    fn append(&mut self, level: u32, hash: Hash) -> Result<(), Self::Error>;
}

/// Why a root or proof was refused: a size or index outside the tree (the caller's input), or
/// the store failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E: std::error::Error + 'static> {
    #[error("size {size} > tree size {tree_size}")]
    Size { size: u64, tree_size: u64 },
    #[error("index {index} ≥ size {size}")]
    Index { index: u64, size: u64 },
    #[error("old size {old} > new size {new}")]
    Order { old: u64, new: u64 },
    #[error("reading the tree's nodes: {0}")]
    Store(#[source] E),
}

/// Largest power of two strictly less than `n` (n ≥ 2).
pub(crate) fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// An append-only RFC 6962 tree over a [`NodeStore`].
#[derive(Debug, Clone, Default)]
pub struct StoredTree<S> {
    store: S,
}

impl<S: NodeStore> StoredTree<S> {
    /// The tree whose nodes `store` holds (checked by the store when it was opened).
    pub fn new(store: S) -> Self {
        StoredTree { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn into_store(self) -> S {
        self.store
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.store.count(0)
    }

    /// Appends a leaf hash and the parents it completes; returns the leaf's index.
    pub fn push_hash(&mut self, h: Hash) -> Result<u64, TreeError<S::Error>> {
        let index = self.size();
        self.store.append(0, h).map_err(TreeError::Store)?;
        // Each odd index closes a pair: store the parent, and so on up.
        let (mut level, mut i, mut right) = (0u32, index, h);
        while i & 1 == 1 {
            let left = self.get(level, i - 1)?;
            right = node_hash(&left, &right);
            level += 1;
            self.store.append(level, right).map_err(TreeError::Store)?;
            i >>= 1;
        }
        Ok(index)
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Result<Hash, TreeError<S::Error>> {
        let size = self.size();
        if index >= size {
            return Err(TreeError::Index { index, size });
        }
        self.get(0, index)
    }

    /// Root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, TreeError<S::Error>> {
        match self.check_size(size)? {
            0 => Ok(empty_root()),
            n => self.range_root(0, n),
        }
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Result<Hash, TreeError<S::Error>> {
        self.root_at(self.size())
    }

    /// Inclusion proof (RFC 6962 §2.1.1 audit path) of leaf `index` in the tree of `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError<S::Error>> {
        let n = self.check_size(size)?;
        if index >= n {
            return Err(TreeError::Index { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, n, &mut proof)?;
        Ok(proof)
    }

    /// Consistency proof (RFC 6962 §2.1.2) between the trees of `old_size` and `new_size`.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, TreeError<S::Error>> {
        let n = self.check_size(new_size)?;
        let m = self.check_size(old_size)?;
        if m > n {
            return Err(TreeError::Order {
                old: old_size,
                new: new_size,
            });
        }
        let mut proof = Vec::new();
        if m > 0 && m < n {
            self.subproof(m, 0, n, true, &mut proof)?;
        }
        Ok(proof)
    }

    fn get(&self, level: u32, index: u64) -> Result<Hash, TreeError<S::Error>> {
        self.store.get(level, index).map_err(TreeError::Store)
    }

    fn check_size(&self, size: u64) -> Result<u64, TreeError<S::Error>> {
        let tree_size = self.size();
        if size > tree_size {
            return Err(TreeError::Size { size, tree_size });
        }
        Ok(size)
    }

    /// MTH of leaves `[start, end)` (`start < end ≤ size`): a stored node when the range is a
    /// complete, aligned subtree, else RFC 6962's split.
    fn range_root(&self, start: u64, end: u64) -> Result<Hash, TreeError<S::Error>> {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros();
            return self.get(level, start >> level);
        }
        let k = split(n);
        Ok(node_hash(
            &self.range_root(start, start + k)?,
            &self.range_root(start + k, end)?,
        ))
    }

    /// PATH(m, D[start:end]) for the absolute leaf index `m`.
    fn path(
        &self,
        m: u64,
        start: u64,
        end: u64,
        proof: &mut Vec<Hash>,
    ) -> Result<(), TreeError<S::Error>> {
        let n = end - start;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if m < start + k {
            self.path(m, start, start + k, proof)?;
            proof.push(self.range_root(start + k, end)?);
        } else {
            self.path(m, start + k, end, proof)?;
            proof.push(self.range_root(start, start + k)?);
        }
        Ok(())
    }

    /// SUBPROOF(m, D[start:end], b), `m` counted from `start`.
    fn subproof(
        &self,
        m: u64,
        start: u64,
        end: u64,
        b: bool,
        proof: &mut Vec<Hash>,
    ) -> Result<(), TreeError<S::Error>> {
        let n = end - start;
        if m == n {
            if !b {
                proof.push(self.range_root(start, end)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, b, proof)?;
            proof.push(self.range_root(start + k, end)?);
        } else {
            self.subproof(m - k, start + k, end, false, proof)?;
            proof.push(self.range_root(start, start + k)?);
        }
        Ok(())
    }
}

/// Nodes in memory: about two hashes (64 bytes) per leaf.
#[derive(Debug, Clone, Default)]
pub struct MemNodes {
    levels: Vec<Vec<Hash>>,
}

impl MemNodes {
    /// The leaf hash at `index`, borrowed.
    pub fn leaf_ref(&self, index: u64) -> Option<&Hash> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.first()?.get(i))
    }
}

impl NodeStore for MemNodes {
    type Error = Infallible;

    fn count(&self, level: u32) -> u64 {
        self.levels
            .get(level as usize)
            .map_or(0, |l| l.len() as u64)
    }

    fn get(&self, level: u32, index: u64) -> Result<Hash, Infallible> {
        // The tree reads only below `count(level)` (its own invariant); a miss is a bug in
        // this module, not input, and reads as the zero hash (the property tests would fail).
        Ok(self
            .levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .unwrap_or([0; 32]))
    }

    fn append(&mut self, level: u32, hash: Hash) -> Result<(), Infallible> {
        let level = level as usize;
        while self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(hash);
        Ok(())
    }
}
