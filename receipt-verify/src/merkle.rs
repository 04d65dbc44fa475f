//! RFC 6962 §2.1 hashes and RFC 9162 §2.1.3.2 / §2.1.4.2 proof verification (SHA-256).
//!
//! The one definition in Tribune: `tribune_attest::merkle` builds trees and proofs and verifies
//! them with these functions.

use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 tree hash.
pub type Hash = [u8; 32];

/// Upper bound on a proof's length (a tree of 2^64 leaves needs at most 64 hashes).
pub const PROOF_LEN_MAX: usize = 64;

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the first tree ({first}) is larger than the second ({second})")]
    SizesReversed { first: u64, second: u64 },
    #[error("the proof has {0} hashes; at most 64")]
    TooLong(usize),
    #[error("the proof is longer than the tree allows")]
    TooManyHashes,
    #[error("the proof is shorter than the tree needs")]
    TooFewHashes,
    #[error("a proof between equal sizes must be empty")]
    NonEmptyForEqualSizes,
    #[error("two trees of the same size with different roots")]
    EqualSizesDifferentRoots,
    #[error("a proof from the empty tree must be empty")]
    NonEmptyFromEmptyTree,
    #[error("an empty consistency proof between different non-empty sizes")]
    Empty,
    #[error("the inclusion proof leads to another root")]
    InclusionRootDiffers,
    #[error("the consistency proof does not lead to the first tree's root")]
    FirstRootDiffers,
    #[error("the consistency proof does not lead to the second tree's root")]
    SecondRootDiffers,
}

/// `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// RFC 9162 §2.1.3.2: `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is
/// `root`. The audit path runs from the leaf up to the root.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    if proof.len() > PROOF_LEN_MAX {
        return Err(ProofError::TooLong(proof.len()));
    }
    let (mut f_n, mut s_n, mut r) = (index, size - 1, *leaf_hash);
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::TooManyHashes);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::TooFewHashes);
    }
    if &r != root {
        return Err(ProofError::InclusionRootDiffers);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: the tree of `first` leaves with `first_root` is a prefix of the tree of
/// `second` leaves with `second_root`. `first = 0` and `first = second` take an empty proof
/// (the RFC's algorithm refuses an empty proof, so these come first).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesReversed { first, second });
    }
    if proof.len() > PROOF_LEN_MAX {
        return Err(ProofError::TooLong(proof.len()));
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyForEqualSizes);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::EqualSizesDifferentRoots)
        };
    }
    if first == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::NonEmptyFromEmptyTree)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::Empty);
    }
    // Step 2: a power-of-two first tree's root is the path's first node (prepended, without
    // allocating: `rest` is what follows it).
    let (start, rest) = if first.is_power_of_two() {
        (*first_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (start, start);
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::TooManyHashes);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::TooFewHashes);
    }
    if &fr != first_root {
        return Err(ProofError::FirstRootDiffers);
    }
    if &sr != second_root {
        return Err(ProofError::SecondRootDiffers);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH over leaf hashes (the RFC's definition, for the tests).
    fn root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn rfc6962_reference_root() {
        // The RFC 6962 test vector tree (certificate-transparency-go's testdata).
        let leaves: Vec<Hash> = [
            &b""[..],
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ]
        .iter()
        .map(|l| leaf_hash(l))
        .collect();
        assert_eq!(
            hex::encode(root(&leaves)),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    #[test]
    fn bad_shapes_are_refused_before_hashing() {
        let h = [0u8; 32];
        assert_eq!(
            verify_inclusion(&h, 3, 3, &[], &h),
            Err(ProofError::IndexOutOfRange { index: 3, size: 3 })
        );
        assert_eq!(
            verify_consistency(4, 3, &h, &h, &[]),
            Err(ProofError::SizesReversed {
                first: 4,
                second: 3
            })
        );
        assert_eq!(verify_consistency(0, 3, &h, &[1; 32], &[]), Ok(()));
        assert_eq!(verify_consistency(3, 3, &h, &h, &[]), Ok(()));
        assert_eq!(
            verify_consistency(3, 3, &h, &[1; 32], &[]),
            Err(ProofError::EqualSizesDifferentRoots)
        );
        assert_eq!(
            verify_consistency(2, 3, &h, &h, &[]),
            Err(ProofError::Empty)
        );
    }
}
