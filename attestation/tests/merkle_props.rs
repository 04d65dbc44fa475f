//! Property tests: Merkle inclusion and consistency proofs (the algebra of an append-only log).

use proptest::prelude::*;
use tribune_attest::merkle::{
    MerkleTree, StoredTree, leaf_hash, root_of, verify_consistency, verify_inclusion,
};
use tribune_attest::merkle_files::FileNodes;

fn tree(n: usize) -> MerkleTree {
    let mut t = MerkleTree::new();
    for i in 0..n {
        t.push(&(i as u64).to_be_bytes());
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inclusion_proofs_verify_and_bind(n in 1usize..200, seed in any::<u64>()) {
        let t = tree(n);
        let size = (seed as usize % n) + 1;
        let idx = (seed >> 17) as usize % size;
        let root = t.root_at(size as u64).unwrap();
        let proof = t.inclusion_proof(idx as u64, size as u64).unwrap();
        let leaf = leaf_hash(&(idx as u64).to_be_bytes());
        prop_assert!(verify_inclusion(&leaf, idx as u64, size as u64, &proof, &root).is_ok());
        // Wrong leaf, wrong index, altered proof: all rejected.
        let other = leaf_hash(b"not a leaf");
        prop_assert!(verify_inclusion(&other, idx as u64, size as u64, &proof, &root).is_err());
        if size > 1 {
            let wrong = (idx + 1) % size;
            prop_assert!(verify_inclusion(&leaf, wrong as u64, size as u64, &proof, &root).is_err());
        }
        if !proof.is_empty() {
            let mut bad = proof.clone();
            bad[0][0] ^= 1;
            prop_assert!(verify_inclusion(&leaf, idx as u64, size as u64, &bad, &root).is_err());
            prop_assert!(verify_inclusion(&leaf, idx as u64, size as u64, &proof[1..], &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_and_bind(n in 1usize..200, seed in any::<u64>()) {
        let t = tree(n);
        let new = (seed as usize % n) + 1;
        let old = (seed >> 20) as usize % (new + 1);
        let old_root = t.root_at(old as u64).unwrap();
        let new_root = t.root_at(new as u64).unwrap();
        let proof = t.consistency_proof(old as u64, new as u64).unwrap();
        prop_assert!(verify_consistency(old as u64, new as u64, &old_root, &new_root, &proof).is_ok());
        if old > 0 && old < new {
            let mut bad = proof.clone();
            let last = bad.len() - 1;
            bad[last][5] ^= 1;
            prop_assert!(verify_consistency(old as u64, new as u64, &old_root, &new_root, &bad).is_err());
            let mut forged = new_root;
            forged[0] ^= 1;
            prop_assert!(verify_consistency(old as u64, new as u64, &old_root, &forged, &proof).is_err());
            // A different history of the same size is not consistent.
            let mut other = MerkleTree::new();
            for i in 0..new { other.push(&((i as u64) ^ 1).to_be_bytes()); }
            prop_assert!(verify_consistency(old as u64, new as u64, &old_root, &other.root(), &proof).is_err());
        }
    }

    #[test]
    fn root_matches_recursive_definition(n in 0usize..100) {
        let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf_hash(&[i as u8])).collect();
        let mut t = MerkleTree::new();
        for i in 0..n { t.push(&[i as u8]); }
        prop_assert_eq!(t.root(), root_of(&leaves));
    }
}

/// RFC 6962 §2.1.1 PATH and §2.1.2 SUBPROOF over slices of leaf hashes, exactly as the RFC
/// states them (O(n) hashing per proof): the reference the stored-node trees must agree with.
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

fn ref_path(m: usize, leaves: &[[u8; 32]], proof: &mut Vec<[u8; 32]>) {
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

fn ref_subproof(m: usize, leaves: &[[u8; 32]], b: bool, proof: &mut Vec<[u8; 32]>) {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The tree over node files (written, flushed, reopened) and over memory give the roots and
    /// proofs of the slice-based definition for random sizes, every one verifying with the
    /// verifier; out-of-range sizes and indexes are refused by both.
    #[test]
    fn file_and_memory_trees_match_the_definition(n in 0usize..600, seed in any::<u64>()) {
        let leaves: Vec<[u8; 32]> = (0..n as u64).map(|i| leaf_hash(&(i ^ seed).to_be_bytes())).collect();
        let dir = tempfile::tempdir().unwrap();
        {
            let (nodes, _) = FileNodes::open(dir.path()).unwrap();
            let mut t = StoredTree::new(nodes);
            // Written in two sessions: reopening in the middle changes nothing.
            for h in &leaves[..n / 2] { t.push_hash(*h).unwrap(); }
        }
        let (nodes, repair) = FileNodes::open(dir.path()).unwrap();
        prop_assert_eq!(repair.parents_recomputed + repair.nodes_dropped + repair.torn_bytes, 0);
        let mut file = StoredTree::new(nodes);
        for h in &leaves[n / 2..] { file.push_hash(*h).unwrap(); }
        let mut mem = MerkleTree::new();
        for h in &leaves { mem.push_hash(*h); }
        let sizes = [n, n / 2, (seed as usize) % (n + 1), 1.min(n)];
        for size in sizes {
            let d = &leaves[..size];
            let root = root_of(d);
            prop_assert_eq!(file.root_at(size as u64).unwrap(), root);
            prop_assert_eq!(mem.root_at(size as u64).unwrap(), root);
            for index in [0, size / 3, size.saturating_sub(1), (seed as usize >> 9) % size.max(1)] {
                if index >= size { continue; }
                let mut want = Vec::new();
                ref_path(index, d, &mut want);
                let got = file.inclusion_proof(index as u64, size as u64).unwrap();
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(&mem.inclusion_proof(index as u64, size as u64).unwrap(), &want);
                prop_assert!(verify_inclusion(&leaves[index], index as u64, size as u64, &got, &root).is_ok());
            }
            for old in [0, 1.min(size), size / 2, size, (seed as usize >> 21) % (size + 1)] {
                let mut want = Vec::new();
                if old > 0 && old < size {
                    ref_subproof(old, d, true, &mut want);
                }
                let got = file.consistency_proof(old as u64, size as u64).unwrap();
                prop_assert_eq!(&got, &want);
                prop_assert_eq!(&mem.consistency_proof(old as u64, size as u64).unwrap(), &want);
                prop_assert!(verify_consistency(old as u64, size as u64, &root_of(&leaves[..old]), &root, &got).is_ok());
            }
        }
        let n = n as u64;
        prop_assert_eq!(file.inclusion_proof(n, n).unwrap_err().to_string(), format!("index {n} ≥ size {n}"));
        prop_assert_eq!(mem.inclusion_proof(n, n).unwrap_err().to_string(), format!("proof does not verify: index {n} ≥ size {n}"));
        prop_assert!(file.root_at(n + 1).is_err() && mem.root_at(n + 1).is_err());
        prop_assert!(file.consistency_proof(n + 1, n + 1).is_err());
        if n > 0 {
            prop_assert!(file.consistency_proof(n, n - 1).is_err() && mem.consistency_proof(n, n - 1).is_err());
        }
    }
}
