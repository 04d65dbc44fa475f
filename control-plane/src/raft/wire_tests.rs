use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{Fatal, Infallible, InstallSnapshotError, SnapshotMismatch};
use openraft::{EntryPayload, Membership, SnapshotMeta, StoredMembership};

use super::*;
use crate::raft::{Entry, Node, Request};
use crate::state::{Command, Expect};

fn id(term: u64, leader: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, leader), index)
}

fn vote(term: u64, node: u64, committed: bool) -> Vote<NodeId> {
    Vote {
        leader_id: LeaderId::new(term, node),
        committed,
    }
}

fn put(name: &str) -> Command {
    Command::PutPolicy {
        name: name.into(),
        source: format!("policy {name:?} {{}}"),
        expect: Expect::Any,
        actor: "bench".into(),
        at_ms: 1_700_000_000_000,
    }
}

fn membership() -> Membership<NodeId, Node> {
    let nodes = BTreeMap::from([
        (1, Node { addr: "a:1".into() }),
        (2, Node { addr: "b:2".into() }),
    ]);
    Membership::new(vec![BTreeSet::from([1u64, 2])], nodes)
}

fn append() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: vote(7, 1, true),
        prev_log_id: Some(id(6, 2, 41)),
        entries: vec![
            Entry {
                log_id: id(7, 1, 42),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: id(7, 1, 43),
                payload: EntryPayload::Normal(Request::new(vec![put("a"), put("b")])),
            },
            Entry {
                log_id: id(7, 1, 44),
                payload: EntryPayload::Membership(membership()),
            },
        ],
        leader_commit: Some(id(7, 1, 42)),
    }
}

fn snapshot() -> InstallSnapshotRequest<TypeConfig> {
    InstallSnapshotRequest {
        vote: vote(3, 2, true),
        meta: SnapshotMeta {
            last_log_id: Some(id(3, 2, 900)),
            last_membership: StoredMembership::new(Some(id(1, 1, 1)), membership()),
            snapshot_id: "3-900-1".into(),
        },
        offset: 1 << 20,
        data: (0..=255u8).cycle().take(4096).collect(),
        done: false,
    }
}

type AppendReply = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId, Infallible>>;
type VoteReply = Result<VoteResponse<NodeId>, RaftError<NodeId, Infallible>>;
type SnapshotReply =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

/// The same message (openraft's requests have no `PartialEq`: compared by their serde form).
fn same<T: Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).expect("json") == serde_json::to_value(b).expect("json")
}

/// Every message survives both forms unchanged, and says which form it came in.
fn both_forms<T: Wire>(v: &T) {
    for form in [Form::Binary, Form::Json] {
        let bytes = encode(v, form).expect("encodes");
        let (back, came_in) = decode::<T>(&bytes).expect("decodes");
        assert!(same(&back, v), "{form:?}");
        assert_eq!(came_in, form);
    }
}

#[test]
fn every_message_round_trips_in_both_forms() {
    both_forms(&append());
    both_forms(&AppendEntriesRequest::<TypeConfig> {
        vote: vote(1, 1, false),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    });
    both_forms(&VoteRequest::new(vote(9, 3, false), Some(id(8, 1, 77))));
    both_forms(&VoteRequest::new(vote(1, 3, false), None));
    both_forms(&snapshot());
    for r in [
        AppendEntriesResponse::Success,
        AppendEntriesResponse::PartialSuccess(Some(id(2, 1, 5))),
        AppendEntriesResponse::PartialSuccess(None),
        AppendEntriesResponse::Conflict,
        AppendEntriesResponse::HigherVote(vote(12, 2, true)),
    ] {
        both_forms::<AppendReply>(&Ok(r));
    }
    both_forms::<AppendReply>(&Err(RaftError::Fatal(Fatal::Stopped)));
    both_forms::<VoteReply>(&Ok(VoteResponse::new(
        vote(4, 2, false),
        Some(id(3, 1, 9)),
        true,
    )));
    both_forms::<VoteReply>(&Ok(VoteResponse::new(vote(4, 2, false), None, false)));
    both_forms::<SnapshotReply>(&Ok(InstallSnapshotResponse {
        vote: vote(5, 1, true),
    }));
    both_forms::<SnapshotReply>(&Err(RaftError::APIError(
        InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
            expect: openraft::SnapshotSegmentId {
                id: "a".into(),
                offset: 0,
            },
            got: openraft::SnapshotSegmentId {
                id: "a".into(),
                offset: 7,
            },
        }),
    )));
}

/// The format is a contract between controllers of different versions: these bytes are
/// format 1 and must decode the same forever. Changing a `*W` type, its field order or an enum's
/// variant order fails here.
#[test]
fn golden_bytes_of_format_1() {
    // version; vote term 9, node 3, uncommitted; last log id Some(term 8, leader 1, index 77).
    let req = VoteRequest::new(vote(9, 3, false), Some(id(8, 1, 77)));
    let golden = [0x01, 0x09, 0x03, 0x00, 0x01, 0x08, 0x01, 0x4d];
    assert_eq!(encode(&req, Form::Binary).expect("encodes"), golden);
    assert_eq!(
        decode::<VoteRequest<NodeId>>(&golden).expect("decodes").0,
        req
    );

    // version; vote (7, 1, committed); prev Some(6, 2, 41); commit None; one entry of 5 bytes:
    // the WAL's own bytes of a blank entry at (7, 1, 42) (format 1, term, leader, index, Blank).
    let req = AppendEntriesRequest::<TypeConfig> {
        vote: vote(7, 1, true),
        prev_log_id: Some(id(6, 2, 41)),
        entries: vec![Entry {
            log_id: id(7, 1, 42),
            payload: EntryPayload::Blank,
        }],
        leader_commit: None,
    };
    let golden = [
        0x01, 0x07, 0x01, 0x01, 0x01, 0x06, 0x02, 0x29, 0x00, 0x01, 0x05, 0x01, 0x07, 0x01, 0x2a,
        0x00,
    ];
    assert_eq!(encode(&req, Form::Binary).expect("encodes"), golden);
    let back = decode::<AppendEntriesRequest<TypeConfig>>(&golden).expect("decodes");
    assert!(same(&back.0, &req));

    // Replies: version, Ok (0), then the body's variant and fields.
    let cases: [(AppendReply, &[u8]); 4] = [
        (Ok(AppendEntriesResponse::Success), &[0x01, 0x00, 0x00]),
        (
            Ok(AppendEntriesResponse::PartialSuccess(Some(id(2, 1, 5)))),
            &[0x01, 0x00, 0x01, 0x01, 0x02, 0x01, 0x05],
        ),
        (Ok(AppendEntriesResponse::Conflict), &[0x01, 0x00, 0x02]),
        (
            Ok(AppendEntriesResponse::HigherVote(vote(12, 2, true))),
            &[0x01, 0x00, 0x03, 0x0c, 0x02, 0x01],
        ),
    ];
    for (reply, golden) in cases {
        assert_eq!(encode(&reply, Form::Binary).expect("encodes"), golden);
        assert_eq!(decode::<AppendReply>(golden).expect("decodes").0, reply);
    }
    let granted: VoteReply = Ok(VoteResponse::new(vote(4, 2, false), None, true));
    let golden = [0x01, 0x00, 0x04, 0x02, 0x00, 0x01, 0x00];
    assert_eq!(encode(&granted, Form::Binary).expect("encodes"), golden);
    assert_eq!(decode::<VoteReply>(&golden).expect("decodes").0, granted);

    // An error reply: version, Err (1), then openraft's error as JSON.
    let stopped: AppendReply = Err(RaftError::Fatal(Fatal::Stopped));
    let json = br#"{"Fatal":"Stopped"}"#;
    let mut golden = vec![0x01, 0x01, json.len() as u8];
    golden.extend_from_slice(json);
    assert_eq!(encode(&stopped, Form::Binary).expect("encodes"), golden);
    assert_eq!(decode::<AppendReply>(&golden).expect("decodes").0, stopped);
}

/// What a controller from before format 1 sends (serde_json of openraft's types) still reads.
#[test]
fn the_json_of_older_controllers_still_reads() {
    let req = append();
    let old = serde_json::to_vec(&req).expect("json");
    let (back, form) = decode::<AppendEntriesRequest<TypeConfig>>(&old).expect("decodes");
    assert!(same(&back, &req));
    assert_eq!(form, Form::Json);
    let old =
        br#"{"vote":{"leader_id":{"term":2,"node_id":1},"committed":false},"last_log_id":null}"#;
    let (back, form) = decode::<VoteRequest<NodeId>>(old).expect("decodes");
    assert_eq!(
        (back, form),
        (VoteRequest::new(vote(2, 1, false), None), Form::Json)
    );
}

#[test]
fn truncated_or_damaged_messages_are_clear_errors_never_panics() {
    let bytes = encode(&append(), Form::Binary).expect("encodes");
    for cut in 0..bytes.len() {
        let e = decode::<AppendEntriesRequest<TypeConfig>>(&bytes[..cut])
            .expect_err("a truncated message is refused");
        if cut == 0 {
            assert!(matches!(e, WireError::Empty), "{e}");
        }
    }
    let e = decode::<AppendEntriesRequest<TypeConfig>>(&bytes[..bytes.len() - 1])
        .expect_err("truncated");
    assert!(e.to_string().contains("does not decode"), "{e}");
    // Flipped bytes: an error or (where the flip lands in a value) another message; no panic.
    for i in 1..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xff;
        let _ = decode::<AppendEntriesRequest<TypeConfig>>(&b);
    }
    let mut long = bytes.clone();
    long.push(0);
    let e = decode::<AppendEntriesRequest<TypeConfig>>(&long).expect_err("trailing");
    assert!(matches!(e, WireError::Trailing(1)), "{e}");

    let e = decode::<VoteRequest<NodeId>>(&[0x02, 0, 0]).expect_err("format 2");
    assert_eq!(
        e.to_string(),
        "the raft message has wire format 0x02; this Tribune reads format 1 and the JSON of older controllers"
    );
    let e = decode::<VoteRequest<NodeId>>(b"{\"vote\":").expect_err("bad json");
    assert!(matches!(e, WireError::Json(_)), "{e}");

    // An entry whose stored bytes are damaged names its position.
    let good = encode(&append(), Form::Binary).expect("encodes");
    let w: AppendW = unpost(&good[1..]).expect("envelope");
    let mut broken = w.entries[1].0.to_vec();
    broken[0] = 9;
    let damaged = AppendW {
        vote: w.vote,
        prev: w.prev,
        commit: w.commit,
        entries: vec![w.entries[0], Bytes(&broken)],
    };
    let mut bytes = vec![WIRE_FORMAT];
    post(&damaged, &mut bytes).expect("encodes");
    let e = decode::<AppendEntriesRequest<TypeConfig>>(&bytes).expect_err("damaged entry");
    assert!(
        e.to_string()
            .starts_with("entry 1 of the append does not decode"),
        "{e}"
    );
}

/// A controller from before format 1 refuses a format-1 message with serde_json's error, which
/// the sender recognises (and falls back to JSON for that peer); a current controller's own
/// refusals are not mistaken for it.
#[test]
fn an_old_peers_refusal_is_recognised() {
    let bytes = encode(&append(), Form::Binary).expect("encodes");
    let old_server = |data: &[u8]| -> tonic::Status {
        let e = serde_json::from_slice::<AppendEntriesRequest<TypeConfig>>(data)
            .expect_err("an old controller cannot read format 1");
        tonic::Status::invalid_argument(format!("{MALFORMED}: {e}"))
    };
    assert!(is_old_peer_refusal(&old_server(&bytes)));
    let vote_bytes =
        encode(&VoteRequest::new(vote(1, 1, false), None), Form::Binary).expect("encodes");
    assert!(is_old_peer_refusal(&old_server(&vote_bytes)));

    let new_server = |data: &[u8]| -> tonic::Status {
        let e = decode::<AppendEntriesRequest<TypeConfig>>(data).expect_err("refused");
        tonic::Status::invalid_argument(format!("{MALFORMED}: {e}"))
    };
    assert!(!is_old_peer_refusal(&new_server(&bytes[..5])));
    assert!(!is_old_peer_refusal(&new_server(&[0x02])));
    assert!(!is_old_peer_refusal(&new_server(b"{\"vote\":")));
    assert!(!is_old_peer_refusal(&tonic::Status::unavailable("down")));
}

/// A follower stores the bytes it received for an entry: decoding keeps them, so encoding the
/// entry again (for the follower's own log) yields the very same bytes without re-encoding.
#[test]
fn a_received_entry_keeps_its_stored_bytes() {
    let req = append();
    let bytes = encode(&req, Form::Binary).expect("encodes");
    let w: AppendW = unpost(&bytes[1..]).expect("envelope");
    let (back, _) = decode::<AppendEntriesRequest<TypeConfig>>(&bytes).expect("decodes");
    for (entry, sent) in back.entries.iter().zip(&w.entries) {
        assert_eq!(codec::encode(entry).expect("encodes"), sent.0);
        if let EntryPayload::Normal(r) = &entry.payload {
            assert!(r.stored_json().is_some(), "the JSON received is kept");
        }
    }
}
