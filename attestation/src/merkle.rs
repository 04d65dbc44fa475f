//! Merkle log primitives after RFC 6962 §2.1 / RFC 9162 §2.1 (SHA-256):
//! leaf hash `SHA-256(0x00 ‖ leaf)`, node hash `SHA-256(0x01 ‖ left ‖ right)`, the tree root
//! (MTH), inclusion proofs (audit paths) and consistency proofs — generation and verification
//! (the verification algorithms are RFC 9162 §2.1.3.2 and §2.1.4.2) — and signed tree heads.
//!
//! Written here rather than taken from a crate: the algorithms are short, the RFC gives them
//! exactly, and the tests check the RFC 6962 reference vectors.

use std::convert::Infallible;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::error::{AttestError, Result};
pub use crate::merkle_store::{MemNodes, NodeStore, StoredTree, TreeError};

/// A 32-byte SHA-256 tree hash.
pub type Hash = [u8; 32];

/// Upper bound on proof length (a tree of 2^64 leaves needs at most 64 hashes).
pub use tribune_receipt::merkle::PROOF_LEN_MAX;

/// `SHA-256(0x00 ‖ leaf)` (the one definition: `tribune_receipt::merkle`).
pub use tribune_receipt::merkle::leaf_hash;
/// `SHA-256(0x01 ‖ left ‖ right)` (the one definition: `tribune_receipt::merkle`).
pub use tribune_receipt::merkle::node_hash;

/// The hash of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    out(ring::digest::Context::new(&ring::digest::SHA256))
}

fn out(ctx: ring::digest::Context) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(ctx.finish().as_ref());
    h
}

/// Largest power of two strictly less than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over already-hashed leaves.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// An append-only Merkle tree held in memory: [`StoredTree`] over [`MemNodes`], every
/// complete subtree's root kept as the tree grows (about two hashes per leaf), so a root, an
/// inclusion proof or a consistency proof of any size reads O(log² n) stored nodes instead of
/// hashing all leaves. The same tree over files is `StoredTree<merkle_files::FileNodes>`.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    inner: StoredTree<MemNodes>,
}

/// A memory tree's errors are the caller's sizes and indexes only (its store cannot fail).
fn proof_error(e: TreeError<Infallible>) -> AttestError {
    AttestError::Proof(e.to_string())
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a leaf (raw entry bytes); returns its index.
    pub fn push(&mut self, leaf: &[u8]) -> u64 {
        self.push_hash(leaf_hash(leaf))
    }

    /// Append an already-computed leaf hash; returns its index.
    pub fn push_hash(&mut self, h: Hash) -> u64 {
        let index = self.inner.size();
        // Memory appends cannot fail.
        let _ = self.inner.push_hash(h);
        index
    }

    /// The leaf hash at `index`, if the tree has that many leaves.
    pub fn leaf(&self, index: u64) -> Option<&Hash> {
        self.inner.store().leaf_ref(index)
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.inner.size()
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        // Over memory, the whole tree's root cannot fail.
        self.inner.root().unwrap_or_else(|_| empty_root())
    }

    /// Root of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        self.inner.root_at(size).map_err(proof_error)
    }

    /// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        self.inner.inclusion_proof(index, size).map_err(proof_error)
    }

    /// Consistency proof between the trees of sizes `old_size` and `new_size`.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        self.inner
            .consistency_proof(old_size, new_size)
            .map_err(proof_error)
    }
}

/// RFC 9162 §2.1.3.2: verify that `leaf_hash` is at `index` in the tree of `size` with `root`.
/// The verification is `tribune_receipt`'s (the standalone verifier a tenant builds): one
/// definition for the controller, `tribune log` and receipts.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<()> {
    tribune_receipt::merkle::verify_inclusion(leaf_hash, index, size, proof, root)
        .map_err(|e| AttestError::Proof(format!("inclusion: {e}")))
}

/// RFC 9162 §2.1.4.2: verify that the tree of `old_size` with `old_root` is a prefix of the
/// tree of `new_size` with `new_root` (`tribune_receipt`'s verification, as above).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<()> {
    tribune_receipt::merkle::verify_consistency(old_size, new_size, old_root, new_root, proof)
        .map_err(|e| AttestError::Proof(format!("consistency: {e}")))
}

/// A signed tree head: `(size, root, timestamp)` signed with a controller's ed25519 key over
/// `"tribune/sth/v1" ‖ size(u64 BE) ‖ timestamp_ms(u64 BE) ‖ root`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedTreeHead {
    pub size: u64,
    pub timestamp_ms: u64,
    pub root: Hash,
    pub signature: [u8; 64],
}

const STH_DOMAIN: &[u8] = b"tribune/sth/v1";
/// Encoded size of a [`SignedTreeHead`].
pub const STH_LEN: usize = 8 + 8 + 32 + 64;

impl SignedTreeHead {
    fn message(size: u64, timestamp_ms: u64, root: &Hash) -> Vec<u8> {
        let mut m = Vec::with_capacity(STH_DOMAIN.len() + 48);
        m.extend_from_slice(STH_DOMAIN);
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&timestamp_ms.to_be_bytes());
        m.extend_from_slice(root);
        m
    }

    /// Sign a tree head.
    pub fn sign(key: &SigningKey, size: u64, timestamp_ms: u64, root: Hash) -> Self {
        let sig = key.sign(&Self::message(size, timestamp_ms, &root));
        SignedTreeHead {
            size,
            timestamp_ms,
            root,
            signature: sig.to_bytes(),
        }
    }

    /// Verify the signature.
    pub fn verify(&self, key: &VerifyingKey) -> Result<()> {
        key.verify_strict(
            &Self::message(self.size, self.timestamp_ms, &self.root),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| AttestError::BadSignature("signed tree head".into()))
    }

    /// Verify both signatures and that `newer` extends `self` (the append-only invariant).
    pub fn verify_extension(
        &self,
        newer: &SignedTreeHead,
        proof: &[Hash],
        key: &VerifyingKey,
    ) -> Result<()> {
        self.verify(key)?;
        newer.verify(key)?;
        verify_consistency(self.size, newer.size, &self.root, &newer.root, proof)
    }

    /// Canonical encoding (112 bytes).
    pub fn encode(&self) -> [u8; STH_LEN] {
        let mut b = [0u8; STH_LEN];
        b[0..8].copy_from_slice(&self.size.to_be_bytes());
        b[8..16].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        b[16..48].copy_from_slice(&self.root);
        b[48..].copy_from_slice(&self.signature);
        b
    }

    /// Strict decoder.
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != STH_LEN {
            return Err(AttestError::malformed(
                "signed tree head",
                format!("{} bytes, expected {STH_LEN}", b.len()),
            ));
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[0..8]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[8..16]);
        let mut root = [0u8; 32];
        root.copy_from_slice(&b[16..48]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[48..]);
        Ok(SignedTreeHead {
            size: u64::from_be_bytes(s),
            timestamp_ms: u64::from_be_bytes(t),
            root,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 reference inputs (certificate-transparency test vectors).
    fn vector_leaves() -> Vec<Vec<u8>> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect()
    }

    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn rfc6962_reference_roots() {
        let mut t = MerkleTree::new();
        assert_eq!(
            hex::encode(t.root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for (i, l) in vector_leaves().iter().enumerate() {
            t.push(l);
            assert_eq!(hex::encode(t.root()), ROOTS[i], "size {}", i + 1);
        }
    }

    #[test]
    fn rfc6962_reference_inclusion_proof() {
        let mut t = MerkleTree::new();
        for l in vector_leaves() {
            t.push(&l);
        }
        // Leaf 0 in the tree of 8: known audit path from the CT reference tests.
        let p = t.inclusion_proof(0, 8).unwrap();
        let hexes: Vec<String> = p.iter().map(hex::encode).collect();
        assert_eq!(
            hexes,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
        let root = t.root();
        for i in 0..8 {
            let p = t.inclusion_proof(i, 8).unwrap();
            verify_inclusion(t.leaf(i).unwrap(), i, 8, &p, &root).unwrap();
        }
    }

    #[test]
    fn sth_sign_verify_extend() {
        let key = SigningKey::from_bytes(&[8; 32]);
        let mut t = MerkleTree::new();
        for i in 0..5u8 {
            t.push(&[i]);
        }
        let a = SignedTreeHead::sign(&key, 5, 1, t.root());
        for i in 5..13u8 {
            t.push(&[i]);
        }
        let b = SignedTreeHead::sign(&key, 13, 2, t.root());
        let proof = t.consistency_proof(5, 13).unwrap();
        a.verify_extension(&b, &proof, &key.verifying_key())
            .unwrap();
        assert_eq!(SignedTreeHead::decode(&b.encode()).unwrap(), b);
        let mut forged = b;
        forged.root[0] ^= 1;
        assert!(
            a.verify_extension(&forged, &proof, &key.verifying_key())
                .is_err()
        );
    }

    /// RFC 6962 §2.1.1 PATH and §2.1.2 SUBPROOF written over slices, as the RFC states them:
    /// the reference the stored-node tree must agree with.
    fn ref_path(m: usize, leaves: &[Hash], proof: &mut Vec<Hash>) {
        let n = leaves.len();
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            ref_path(m, &leaves[..k], proof);
            proof.push(root_of(&leaves[k..]));
        } else {
            ref_path(m - k, &leaves[k..], proof);
            proof.push(root_of(&leaves[..k]));
        }
    }

    fn ref_subproof(m: usize, leaves: &[Hash], b: bool, proof: &mut Vec<Hash>) {
        let n = leaves.len();
        if m == n {
            if !b {
                proof.push(root_of(leaves));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            ref_subproof(m, &leaves[..k], b, proof);
            proof.push(root_of(&leaves[k..]));
        } else {
            ref_subproof(m - k, &leaves[k..], false, proof);
            proof.push(root_of(&leaves[..k]));
        }
    }

    #[test]
    fn stored_nodes_give_the_proofs_of_the_recursive_definition() {
        let mut t = MerkleTree::new();
        let mut leaves = Vec::new();
        for i in 0..70u32 {
            t.push(&i.to_be_bytes());
            leaves.push(leaf_hash(&i.to_be_bytes()));
        }
        for size in 0..=70usize {
            let d = &leaves[..size];
            assert_eq!(t.root_at(size as u64).unwrap(), root_of(d), "size {size}");
            for index in 0..size {
                let mut want = Vec::new();
                ref_path(index, d, &mut want);
                let got = t.inclusion_proof(index as u64, size as u64).unwrap();
                assert_eq!(got, want, "index {index} size {size}");
            }
            assert!(t.inclusion_proof(size as u64, size as u64).is_err());
            for old in 0..=size {
                let mut want = Vec::new();
                if old > 0 && old < size {
                    ref_subproof(old, d, true, &mut want);
                }
                let got = t.consistency_proof(old as u64, size as u64).unwrap();
                assert_eq!(got, want, "old {old} size {size}");
            }
        }
        assert!(t.root_at(71).is_err());
    }

    /// A proof in a large tree reads O(log² n) stored nodes: a million leaves, every proof
    /// and root of every size answered without rehashing the leaves (a slice-based proof
    /// hashes ~2n nodes; this test would take minutes in debug if it did).
    #[test]
    fn proofs_in_a_large_tree_do_not_rehash_the_leaves() {
        let mut t = MerkleTree::new();
        for i in 0..1_000_000u32 {
            t.push_hash(leaf_hash(&i.to_be_bytes()));
        }
        let root = t.root();
        for (i, size) in [
            (0u64, 1_000_000u64),
            (999_999, 1_000_000),
            (123_457, 777_777),
        ] {
            let p = t.inclusion_proof(i, size).unwrap();
            let r = t.root_at(size).unwrap();
            verify_inclusion(t.leaf(i).unwrap(), i, size, &p, &r).unwrap();
        }
        for _ in 0..2_000 {
            let p = t.consistency_proof(524_289, 1_000_000).unwrap();
            verify_consistency(524_289, 1_000_000, &t.root_at(524_289).unwrap(), &root, &p)
                .unwrap();
        }
    }
}
