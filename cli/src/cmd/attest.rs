//! `tribune attest …`: verify evidence offline.
//!
//! Exit codes: 0 valid, 1 invalid (including evidence that does not parse), 2 usage or I/O
//! error (unreadable files, bad `--at`, unusable collateral file).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use tribune_attest::VerifyAt;
use tribune_attest::evidence::{Inputs, Verdict, VerifierConfig, Verifiers, verify_evidence};
use tribune_attest::tdx::Collateral;

use super::output;

/// Upper bound on files this verb reads.
const FILE_LEN_MAX: u64 = 8 << 20;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum AttestCmd {
    /// Verify one piece of evidence and print the verdict.
    Verify {
        /// Evidence file (SNP report, TDX quote or sim evidence; binary or hex text).
        #[arg(long)]
        evidence: PathBuf,
        /// SNP certificates: a DER/PEM file, an extended-report cert table, or a directory.
        #[arg(long)]
        certs: Option<PathBuf>,
        /// TDX collateral (dcap-qvl QuoteCollateralV3 JSON: TCB info, QE identity, CRLs).
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// Verify at this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
        /// Accept simulated (`sim`) evidence.
        #[arg(long)]
        allow_sim: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Create simulated evidence signed by the development root (for `tribune dev` and tests).
    SimEvidence {
        /// Launch measurement, 48 bytes hex.
        #[arg(long)]
        measurement: String,
        /// report_data, 64 bytes hex.
        #[arg(long)]
        report_data: String,
        /// Mark the simulated enclave as debug.
        #[arg(long)]
        debug: bool,
        /// Where to write the evidence.
        #[arg(long)]
        out: PathBuf,
    },
}

fn read_file(p: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let md = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    anyhow::ensure!(
        md.len() <= FILE_LEN_MAX,
        "{} is larger than {FILE_LEN_MAX} bytes",
        p.display()
    );
    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
}

fn fixed_hex<const N: usize>(s: &str, what: &str) -> anyhow::Result<[u8; N]> {
    let s = s.trim();
    anyhow::ensure!(
        s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "{what} is not hex"
    );
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{what} is not hex"))?;
    <[u8; N]>::try_from(v.as_slice())
        .map_err(|_| anyhow::anyhow!("{what} must be {N} bytes, got {}", v.len()))
}

pub fn run(cmd: AttestCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCmd::Verify {
            evidence,
            certs,
            collateral,
            at,
            allow_sim,
            output,
        } => verify(evidence, certs, collateral, at, allow_sim, output),
        AttestCmd::SimEvidence {
            measurement,
            report_data,
            debug,
            out,
        } => {
            let m = fixed_hex::<48>(&measurement, "--measurement")?;
            let r = fixed_hex::<64>(&report_data, "--report-data")?;
            let flags = if debug {
                tribune_attest::sim::FLAG_DEBUG
            } else {
                0
            };
            let e = tribune_attest::sim::SimEvidence::create(m, r, flags);
            std::fs::write(&out, e.encode())
                .with_context(|| format!("cannot write {}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify(
    evidence: PathBuf,
    certs: Option<PathBuf>,
    collateral: Option<PathBuf>,
    at: Option<String>,
    allow_sim: bool,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let at = match at {
        Some(s) => VerifyAt::parse_rfc3339(&s).map_err(|e| anyhow::anyhow!("--at: {e}"))?,
        None => VerifyAt::now(),
    };
    let bytes = read_file(&evidence)?;
    let certs = match &certs {
        Some(p) => {
            tribune_attest::snp::load_certs(p).map_err(|e| anyhow::anyhow!("--certs: {e}"))?
        }
        None => Vec::new(),
    };
    let collateral = match &collateral {
        Some(p) => Some(
            Collateral::from_json(&read_file(p)?)
                .map_err(|e| anyhow::anyhow!("--collateral: {e}"))?,
        ),
        None => None,
    };
    let verifiers = Verifiers::new().map_err(|e| anyhow::anyhow!("embedded roots: {e}"))?;
    let config = VerifierConfig {
        allow_sim,
        ..VerifierConfig::default()
    };
    let inputs = Inputs {
        certs: &certs,
        collateral: collateral.as_ref(),
    };
    match verify_evidence(&verifiers, &config, &bytes, &inputs, at) {
        Ok(v) => {
            print_verdict(&v, output)?;
            Ok(if v.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e) => {
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::json!({ "valid": false, "reasons": [e.to_string()] })
                ),
                Output::Table => {
                    println!("valid:        no");
                    println!("reason:       {}", output::cell(&e.to_string()));
                }
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn print_verdict(v: &Verdict, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    println!("tee:          {}", v.tee.as_str());
    println!("format:       {}", v.format);
    println!("valid:        {}", if v.valid { "yes" } else { "no" });
    for r in &v.reasons {
        println!("reason:       {}", output::cell(r));
    }
    for w in &v.warnings {
        println!("warning:      {}", output::cell(w));
    }
    for m in &v.measurements {
        println!("{:<13} {}", format!("{}:", m.name), m.hex);
    }
    println!("report_data:  {}", v.report_data);
    println!("debug:        {}", v.debug);
    if let Some(vmpl) = v.vmpl {
        println!("vmpl:         {vmpl}");
    }
    if let Some(t) = &v.tcb {
        println!("tcb:          {} ({})", t.status, output::cell(&t.detail));
        if !t.advisory_ids.is_empty() {
            println!("advisories:   {}", t.advisory_ids.join(", "));
        }
    }
    if let Some(c) = &v.chip_id {
        println!("chip_id:      {c}");
    }
    if let Some(f) = &v.fmspc {
        println!("fmspc:        {f}");
    }
    if !v.chain.is_empty() {
        println!("chain:        {}", output::cell(&v.chain.join(" <- ")));
    }
    println!("verified_at:  {}", v.verified_at);
    Ok(())
}
