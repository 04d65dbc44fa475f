//! The one continuation rule of a usage hash chain, shared by the stream verifier (a
//! checkpoint against what this controller confirmed), the controller's replay of buffered
//! spans, and the replicated state (a digest against the confirmed point in the log).

/// Whether a span starting at `first_seq` from chain head `prev_head` continues the chain
/// confirmed up to `confirmed = (last_seq, head)`: it must start at the very next seq and
/// from that head — no gap, no duplicate, no fork.
///
/// `None`: nothing is confirmed for this key yet, so the span must be the chain's first
/// (seq 1); its `prev_head` is then the genesis head, which the checkpoint's signature and the
/// stream verifier (starting from `chain_genesis`) vouch for, not this rule.
///
/// A chain confirmed up to `u64::MAX` is never continued (there is no next seq).
pub fn continues<H: PartialEq + ?Sized>(
    confirmed: Option<(u64, &H)>,
    first_seq: u64,
    prev_head: &H,
) -> bool {
    match confirmed {
        Some((last_seq, head)) => last_seq.checked_add(1) == Some(first_seq) && head == prev_head,
        None => first_seq == 1,
    }
}

#[cfg(test)]
mod tests {
    use super::continues;

    const A: [u8; 32] = [0xaa; 32];
    const B: [u8; 32] = [0xbb; 32];

    #[test]
    fn continues_exactly_at_the_next_seq_from_the_confirmed_head() {
        assert!(continues(Some((0, &A)), 1, &A));
        assert!(continues(Some((10, &A)), 11, &A));
        assert!(continues(Some((u64::MAX - 1, &A)), u64::MAX, &A));
    }

    #[test]
    fn a_gap_a_duplicate_or_an_overlap_does_not_continue() {
        for first in [0, 1, 5, 10, 12, 100, u64::MAX] {
            assert!(!continues(Some((10, &A)), first, &A), "first_seq {first}");
        }
    }

    #[test]
    fn another_head_is_a_fork_even_at_the_right_seq() {
        assert!(!continues(Some((10, &A)), 11, &B));
        assert!(!continues(Some((0, &A)), 1, &B));
        // Hex heads (the replicated state's form) compare the same way.
        assert!(continues(Some((3, "ab")), 4, "ab"));
        assert!(!continues(Some((3, "ab")), 4, "AB"));
    }

    #[test]
    fn nothing_confirmed_means_the_chain_starts_at_seq_one_from_any_head() {
        assert!(continues(None, 1, &A));
        assert!(continues(None, 1, &B));
        for first in [0, 2, 11, u64::MAX] {
            assert!(!continues::<[u8; 32]>(None, first, &A), "first_seq {first}");
        }
    }

    #[test]
    fn the_last_seq_has_no_successor() {
        for first in [0, 1, u64::MAX] {
            assert!(
                !continues(Some((u64::MAX, &A)), first, &A),
                "first_seq {first}"
            );
        }
    }

    #[test]
    fn exhaustive_over_a_small_domain() {
        // Every (confirmed, first_seq, prev_head) over seqs 0..=4 and two heads (and none
        // confirmed) against the rule spelled out.
        let heads = [A, B];
        for last in 0..=4u64 {
            for h in &heads {
                for first in 0..=5u64 {
                    for p in &heads {
                        let want = first == last + 1 && h == p;
                        assert_eq!(
                            continues(Some((last, h)), first, p),
                            want,
                            "confirmed {last}, first {first}, same head {}",
                            h == p
                        );
                    }
                }
            }
        }
        for first in 0..=5u64 {
            for p in &heads {
                assert_eq!(continues(None, first, p), first == 1);
            }
        }
    }
}
