//! Usage-report, checkpoint, STH and sim-evidence decoders, and the checkpoint-only replay
//! path, on arbitrary bytes: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tribune_attest::usage::{CHECKPOINT_LEN, Checkpoint, MAC_REPORT_LEN, UsageReport};

fuzz_target!(|data: &[u8]| {
    let _ = UsageReport::decode(data);
    let _ = Checkpoint::decode(data);
    let _ = tribune_attest::merkle::SignedTreeHead::decode(data);
    let _ = tribune_attest::sim::SimEvidence::decode(data);
    let _ = tribune_attest::evidence::decode_input(data);
    // A checkpoint followed by reports: the failover path.
    if data.len() >= CHECKPOINT_LEN
        && let Ok(cp) = Checkpoint::decode(&data[..CHECKPOINT_LEN])
    {
        let key = tribune_attest::sim::dev_root_key().verifying_key();
        let reports: Vec<&[u8]> = data[CHECKPOINT_LEN..].chunks(MAC_REPORT_LEN).collect();
        let _ = tribune_attest::usage::verify_by_checkpoint(&cp, &key, &reports);
    }
    let key = tribune_attest::usage::MacKey::new(&tribune_attest::session::SessionKey::from_bytes(
        [7; 32],
    ));
    let _ = key.open(data);
});
