//! `tribune ca init|issue`: a small certificate authority for a Tribune cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use tribune_tls::ca::{self, IssueOptions};
use tribune_tls::{PeerIdentity, Role};

#[derive(Subcommand, Debug)]
pub enum CaCmd {
    /// Create a CA: DIR/ca.pem (give it to every controller, agent and user) and DIR/ca.key
    /// (keep it secret). Refuses to overwrite an existing CA.
    Init {
        /// Directory to create the CA in (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = ca::CA_DAYS_DEFAULT)]
        days: u32,
    },
    /// Issue a certificate signed by the CA in --dir: ROLE-NAME.pem and ROLE-NAME.key.
    Issue {
        /// controller (NAME is its id), agent (NAME is the host id), or a user's role: admin
        /// (everything), operator (policies, enclaves), auditor (reads everything), tenant
        /// (one tenant's own objects; needs --tenant). See docs/security.md.
        role: RoleArg,
        name: String,
        /// The tenant a `tenant` certificate belongs to.
        #[arg(long)]
        tenant: Option<String>,
        /// The CA's directory (from `tribune ca init`).
        #[arg(long)]
        dir: PathBuf,
        /// Where to write the certificate and key (default: --dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Extra DNS name or IP address the holder is reached at; repeat for each. Controller
        /// certificates always carry localhost, 127.0.0.1 and ::1.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = ca::LEAF_DAYS_DEFAULT)]
        days: u32,
        /// Replace an existing certificate and key of the same name (rotation).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Controller,
    Agent,
    Admin,
    Operator,
    Auditor,
    Tenant,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Controller => Role::Controller,
            RoleArg::Agent => Role::Agent,
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
            RoleArg::Auditor => Role::Auditor,
            RoleArg::Tenant => Role::Tenant,
        }
    }
}

pub fn run(cmd: CaCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCmd::Init { dir, days } => {
            let w = ca::init(&dir, days).context("creating the CA")?;
            println!("CA certificate  {}  (distribute it)", w.cert.display());
            println!("CA key          {}  (keep it secret)", w.key.display());
            println!(
                "Next: tribune ca issue controller 1 --dir {}",
                dir.display()
            );
        }
        CaCmd::Issue {
            role,
            name,
            tenant,
            dir,
            out,
            sans,
            days,
            force,
        } => {
            let role = Role::from(role);
            let identity = match (role.user(), tenant) {
                (Some(user), tenant) => PeerIdentity::user(user, &name, tenant.as_deref())?,
                (None, Some(_)) => anyhow::bail!("--tenant is only for tenant certificates"),
                (None, None) => PeerIdentity::new(role, &name)?,
            };
            let out = out.unwrap_or_else(|| dir.clone());
            let opts = IssueOptions {
                sans,
                days,
                overwrite: force,
            };
            let w = ca::issue(&dir, &out, &identity, &opts)
                .with_context(|| format!("issuing a certificate for {identity}"))?;
            println!("identity     {}", identity.uri());
            println!("certificate  {}", w.cert.display());
            println!("key          {}  (keep it secret)", w.key.display());
            if let PeerIdentity::Controller { id } = identity {
                println!(
                    "Use: tribune controller --id {id} --tls-dir {} …",
                    out.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
