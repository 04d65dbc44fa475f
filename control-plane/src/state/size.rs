//! How big a [`Command`] is in a Raft entry, roughly and cheaply: what the write batcher bounds
//! batches by.

use super::Command;

impl Command {
    /// About how many bytes this command takes in a Raft entry: cheap (no encoding), for
    /// bounding batches. Generous for the fixed-size parts.
    pub fn approx_bytes(&self) -> usize {
        const FIXED: usize = 256;
        FIXED
            + match self {
                Command::PutPolicy { source, .. } => source.len(),
                Command::PutEnclave { enclave, .. } | Command::PutEnclaveSpec { enclave, .. } => {
                    enclave
                        .labels
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 8)
                        .sum::<usize>()
                        + enclave
                            .expected_measurements
                            .iter()
                            .map(String::len)
                            .sum::<usize>()
                        + enclave.launch.as_ref().map_or(0, |l| l.to_string().len())
                        + enclave.tenant.len()
                }
                Command::PutHost { host, .. } => {
                    host.address.len()
                        + host.enforcement.len()
                        + host
                            .labels
                            .iter()
                            .map(|(k, v)| k.len() + v.len() + 8)
                            .sum::<usize>()
                }
                Command::Place {
                    enclave, placement, ..
                } => {
                    enclave
                        .labels
                        .iter()
                        .map(|(k, v)| k.len() + v.len() + 8)
                        .sum::<usize>()
                        + enclave.launch.as_ref().map_or(0, |l| l.to_string().len())
                        + enclave.scheduling.as_ref().map_or(0, |s| {
                            s.host_selector
                                .iter()
                                .map(|(k, v)| k.len() + v.len() + 8)
                                .sum::<usize>()
                                + s.anti_affinity.iter().map(|k| k.len() + 4).sum::<usize>()
                        })
                        + placement.displaced.len() * 128
                }
                Command::SetSchedulable { .. }
                | Command::StartMove { .. }
                | Command::FinishMoves { .. }
                | Command::HostSeen { .. } => 0,
                Command::Verdicts { verdicts, .. } => verdicts.len() * 1024,
                Command::UsageDigests { digests, .. } => digests.len() * 512,
                Command::Enforce { changes, .. } => changes.len() * 1024,
                Command::AppendLog { detail, .. } => detail.approx_bytes(),
                Command::Keyed { command, key, .. } => command.approx_bytes() + key.len(),
                Command::CreateToken { .. }
                | Command::RevokeToken { .. }
                | Command::DeletePolicy { .. }
                | Command::DeleteEnclave { .. }
                | Command::SetAllocation { .. }
                | Command::RegisterLogKey { .. } => 0,
                Command::MigrateStart { .. }
                | Command::MigrateReady { .. }
                | Command::MigrateProgress { .. }
                | Command::MigrateCommit { .. }
                | Command::MigrateAbort { .. } => 256,
            }
    }
}
