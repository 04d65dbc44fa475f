//! `tribune attest …`: verify evidence offline.
//!
//! Exit codes: 0 valid, 1 invalid (including evidence that does not parse), 2 usage or I/O
//! error (unreadable files, bad `--at`, unusable collateral file).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use tribune_attest::VerifyAt;
use tribune_attest::evidence::{
    AttestPolicy, Inputs, Verdict, VerifierConfig, Verifiers, verify_evidence,
};
use tribune_attest::snp::TcbVersion;
use tribune_attest::tdx::Collateral;

use super::output::{self, Format};

/// Upper bound on files this verb reads.
const FILE_LEN_MAX: u64 = 8 << 20;

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
        #[command(flatten)]
        policy: PolicyArgs,
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

/// The policy knobs of `AttestPolicy` (what a policy's `attest { … }` block sets). Without
/// them: debug refused, anything else accepted.
#[derive(Args, Debug, Default)]
pub struct PolicyArgs {
    /// Accept evidence whose TEE runs in debug mode (SNP policy DEBUG, TDX TD attribute DEBUG).
    #[arg(long)]
    pub allow_debug: bool,
    /// Highest SNP VMPL accepted (0 is the most privileged).
    #[arg(long, value_name = "N")]
    pub vmpl_max: Option<u32>,
    /// Accepted launch measurement (SNP MEASUREMENT, TDX MRTD; hex); repeat for several.
    #[arg(long = "measurement", value_name = "HEX")]
    pub measurements: Vec<String>,
    /// Minimum SNP REPORTED_TCB, component-wise: `bl=3,tee=0,snp=8,ucode=0x73` (Turin: add
    /// `fmc=1`).
    #[arg(long, value_name = "TCB")]
    pub min_snp_tcb: Option<String>,
    /// Accepted TDX TCB status (e.g. UpToDate, SWHardeningNeeded); repeat for several.
    #[arg(long = "tdx-tcb-status", value_name = "STATUS")]
    pub tdx_tcb_statuses: Vec<String>,
    /// Require a TDX TCB status (collateral given and evaluated) for a valid verdict.
    #[arg(long)]
    pub require_tdx_tcb: bool,
    /// Accept a TDX TD whose SEPT_VE_DISABLE attribute is clear.
    #[arg(long)]
    pub allow_sept_ve: bool,
    /// The 64-byte report_data the evidence must carry (hex).
    #[arg(long, value_name = "HEX")]
    pub report_data: Option<String>,
}

impl PolicyArgs {
    fn policy(&self) -> anyhow::Result<AttestPolicy> {
        let measurements = self
            .measurements
            .iter()
            .map(|m| {
                hex::decode(m.trim()).with_context(|| format!("--measurement {m:?} is not hex"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(AttestPolicy {
            allow_debug: self.allow_debug,
            vmpl_max: self.vmpl_max,
            measurements,
            min_snp_tcb: self.min_snp_tcb.as_deref().map(parse_tcb).transpose()?,
            tdx_tcb_statuses: self.tdx_tcb_statuses.clone(),
            require_tdx_tcb: self.require_tdx_tcb,
            allow_sept_ve: self.allow_sept_ve,
            report_data: self
                .report_data
                .as_deref()
                .map(|r| fixed_hex::<64>(r, "--report-data"))
                .transpose()?,
        })
    }
}

/// `bl=3,tee=0,snp=8,ucode=0x73[,fmc=1]` (commas or spaces; decimal or 0x-hex).
fn parse_tcb(s: &str) -> anyhow::Result<TcbVersion> {
    let mut t = TcbVersion {
        fmc: None,
        bootloader: 0,
        tee: 0,
        snp: 0,
        microcode: 0,
    };
    let mut seen = [false; 4];
    for part in s.split([',', ' ']).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("--min-snp-tcb: {part:?} is not NAME=VALUE"))?;
        let v = match v.strip_prefix("0x") {
            Some(h) => u8::from_str_radix(h, 16),
            None => v.parse::<u8>(),
        }
        .with_context(|| format!("--min-snp-tcb: {k}={v:?} is not a number 0..=255"))?;
        match k {
            "bl" | "bootloader" => (t.bootloader, seen[0]) = (v, true),
            "tee" => (t.tee, seen[1]) = (v, true),
            "snp" => (t.snp, seen[2]) = (v, true),
            "ucode" | "microcode" => (t.microcode, seen[3]) = (v, true),
            "fmc" => t.fmc = Some(v),
            _ => anyhow::bail!("--min-snp-tcb: unknown component {k:?} (bl, tee, snp, ucode, fmc)"),
        }
    }
    anyhow::ensure!(
        seen.iter().all(|s| *s),
        "--min-snp-tcb needs bl, tee, snp and ucode (got {s:?})"
    );
    Ok(t)
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

pub fn run(cmd: AttestCmd, output: Format) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCmd::Verify {
            evidence,
            certs,
            collateral,
            at,
            allow_sim,
            policy,
        } => {
            let config = VerifierConfig {
                allow_sim,
                policy: policy.policy()?,
                ..VerifierConfig::default()
            };
            verify(evidence, certs, collateral, at, &config, output)
        }
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
    config: &VerifierConfig,
    format: Format,
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
    let inputs = Inputs {
        certs: &certs,
        collateral: collateral.as_ref(),
    };
    match verify_evidence(&verifiers, config, &bytes, &inputs, at) {
        Ok(v) => {
            print_verdict(&v, format)?;
            Ok(if v.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e) => {
            let doc = serde_json::json!({
                "valid": false,
                "signature_and_chain_valid": false,
                "reasons": [e.to_string()],
            });
            if !output::structured(format, &doc)? {
                println!("valid:        no");
                println!("reason:       {}", output::cell(&e.to_string()));
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn print_verdict(v: &Verdict, format: Format) -> anyhow::Result<()> {
    if output::structured(format, v)? {
        return Ok(());
    }
    println!("tee:          {}", v.tee.as_str());
    println!("format:       {}", v.format);
    println!("valid:        {}", if v.valid { "yes" } else { "no" });
    println!(
        "sig+chain:    {}",
        if v.signature_and_chain_valid {
            "valid"
        } else {
            "NOT valid"
        }
    );
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
