//! `tribune receipt get|verify`: fetch an enclave's signed fairness receipt
//! (`GET /v1/enclaves/{id}/receipt`) and verify one offline. Verification is the standalone
//! `tribune_receipt` crate's — the same code a tenant builds without the rest of Tribune.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;

use super::client::{Client, ClientOpts};
use super::output::Format;

#[derive(Subcommand, Debug)]
pub enum ReceiptCmd {
    /// Fetch a signed receipt for ENCLAVE over a period and write it (canonical JSON) to a
    /// file or stdout. It holds the enclave's verdicts, policy and terms, enforcement actions
    /// with their causes, usage digests with its signed checkpoints, lending and borrowing —
    /// each log entry with an inclusion proof against a signed tree head.
    Get {
        enclave: String,
        /// Start of the period: Unix ms, or a duration ago (`90s`, `15m`, `2h`). Default: an
        /// hour before --to.
        #[arg(long)]
        from: Option<String>,
        /// End of the period: Unix ms, or a duration ago. Default: now.
        #[arg(long)]
        to: Option<String>,
        /// Write the receipt here (default: stdout). (`-o` is the output format of every verb.)
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Verify a receipt offline (no cluster): the issuer's signature under a trusted key, the
    /// tree heads' signatures, consistency and inclusion proofs, every leaf recomputed, the
    /// enclave's checkpoint signatures and usage chain — then say what it shows. Exit 1 when it
    /// does not verify, with the reason.
    Verify {
        file: PathBuf,
        /// Trusted controller keys: `GET /v1/log/keys` JSON (`tribune log keys -o json`), or
        /// hex Ed25519 public keys one per line.
        #[arg(long, value_name = "FILE")]
        trusted_keys: PathBuf,
    },
}

/// `90s`, `15m`, `2h` ago, or Unix ms.
fn instant(s: &str, now_ms: i64) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: i64 = num
        .parse()
        .with_context(|| format!("{s:?}: not Unix ms nor a duration like 90s, 15m, 2h"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{s:?}: unit {unit:?} is not one of ms, s, m, h, d"),
    };
    Ok(now_ms - n.saturating_mul(ms))
}

pub fn run(cmd: ReceiptCmd, out: Format) -> anyhow::Result<ExitCode> {
    match cmd {
        ReceiptCmd::Get {
            enclave,
            from,
            to,
            file,
            opts,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let mut q = Vec::new();
            if let Some(f) = from {
                q.push(format!("from={}", instant(&f, now)?));
            }
            if let Some(t) = to {
                q.push(format!("to={}", instant(&t, now)?));
            }
            let client = Client::new(&opts, out)?;
            let path = format!("/v1/enclaves/{enclave}/receipt?{}", q.join("&"));
            let v = super::client::runtime()?.block_on(client.get(&path))?;
            let mut bytes = tribune_receipt::canonical::to_vec(&v);
            bytes.push(b'\n');
            match file {
                Some(f) => {
                    std::fs::write(&f, &bytes)
                        .with_context(|| format!("writing {}", f.display()))?;
                    eprintln!(
                        "wrote {} ({} bytes, {} log entries)",
                        f.display(),
                        bytes.len(),
                        v["body"]["entries"].as_array().map_or(0, Vec::len)
                    );
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&bytes)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ReceiptCmd::Verify { file, trusted_keys } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let keys_text = std::fs::read_to_string(&trusted_keys)
                .with_context(|| format!("reading {}", trusted_keys.display()))?;
            let keys = tribune_receipt::receipt::parse_trusted_keys(&keys_text)
                .with_context(|| format!("{}", trusted_keys.display()))?;
            if keys.is_empty() {
                bail!("{}: no trusted keys in it", trusted_keys.display());
            }
            match tribune_receipt::verify(&bytes, &keys) {
                Ok(v) => {
                    if out.is_structured() {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&json!({"ok": true, "verdict": v}))?
                        );
                    } else {
                        println!("ok: the receipt verifies\n{}", v.words());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    if out.is_structured() {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(
                                &json!({"ok": false, "error": e.to_string()})
                            )?
                        );
                    }
                    eprintln!("REJECTED: {}: {e}", file.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_unix_ms_or_durations_ago() {
        assert_eq!(instant("1700000000000", 5).ok(), Some(1_700_000_000_000));
        assert_eq!(instant("2h", 10_000_000).ok(), Some(10_000_000 - 7_200_000));
        assert_eq!(instant("90s", 100_000).ok(), Some(10_000));
        assert!(instant("2w", 0).is_err());
        assert!(instant("soon", 0).is_err());
    }
}
