//! Property tests: Merkle inclusion and consistency proofs (the algebra of an append-only log).

use proptest::prelude::*;
use tribune_attest::merkle::{
    MerkleTree, leaf_hash, root_of, verify_consistency, verify_inclusion,
};

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
