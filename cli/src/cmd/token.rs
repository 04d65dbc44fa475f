//! `tribune token create|ls|revoke`: bearer tokens for programs and people without a client
//! certificate (admins only; docs/security.md).

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::json;

use super::client::{Client, ClientOpts, Column};
use super::output::Format;
use super::units::Unit;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TokenRole {
    Admin,
    Operator,
    Auditor,
    Tenant,
}

impl TokenRole {
    fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Operator => "operator",
            TokenRole::Auditor => "auditor",
            TokenRole::Tenant => "tenant",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token; its secret is printed once and stored only as a hash.
    Create {
        /// What it is for (ci, terraform, a person's name): 1–63 of a-z 0-9 - _ .
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: TokenRole,
        /// The tenant a tenant token belongs to.
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime: a number with s, m, h or d (e.g. 90m, 24h, 30d); at most 366d.
        #[arg(long, default_value = "24h")]
        ttl: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List tokens (never their secrets).
    Ls {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Revoke a token by id; requests with it are refused from then on.
    Revoke {
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `90m` → 5400 seconds.
pub fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("--ttl {s:?}: expected a number followed by s, m, h or d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => bail!("--ttl {s:?}: the unit must be s, m, h or d"),
    };
    if secs == 0 {
        bail!("--ttl must be longer than zero");
    }
    Ok(secs)
}

const COLUMNS: &[Column] = &[
    Column::new("ID", "/id"),
    Column::new("NAME", "/name"),
    Column::new("ROLE", "/role"),
    Column::new("TENANT", "/tenant"),
    Column::new("CREATED BY", "/created_by"),
    Column::new("EXPIRES IN", "/expires_at_ms").unit(Unit::Until),
    Column::new("REVOKED BY", "/revoked/by"),
    Column::new("CREATED", "/created_at_ms")
        .unit(Unit::Age)
        .wide(),
    Column::new("REVOKED", "/revoked/at_ms")
        .unit(Unit::Age)
        .wide(),
];

pub fn run(cmd: TokenCmd, output: Format) -> anyhow::Result<ExitCode> {
    let (TokenCmd::Create { opts, .. } | TokenCmd::Ls { opts } | TokenCmd::Revoke { opts, .. }) =
        &cmd;
    let client = Client::new(opts, output)?;
    super::client::runtime()?.block_on(async move {
        match cmd {
            TokenCmd::Create {
                name,
                role,
                tenant,
                ttl,
                ..
            } => {
                let body = json!({"name": name, "role": role.as_str(), "tenant": tenant,
                    "ttl_s": parse_ttl(&ttl)?});
                let (_, _, v) = client
                    .call(Method::POST, "/v1/tokens", Some(&body), &[])
                    .await
                    .map_err(|e| anyhow!(e))?;
                if client.output.is_structured() {
                    client.print(&v, &[]);
                } else {
                    println!("created token {} ({})", v["id"].as_str().unwrap_or("?"), name);
                    println!("{}", v["token"].as_str().unwrap_or(""));
                    eprintln!(
                        "This is the only time the token is shown. Use it as TRIBUNE_TOKEN=… or `Authorization: Bearer …`."
                    );
                }
            }
            TokenCmd::Ls { .. } => {
                let v = client.get("/v1/tokens").await?;
                client.print_columns(&v, COLUMNS);
            }
            TokenCmd::Revoke { id, .. } => {
                let (_, _, v) = client
                    .call(Method::DELETE, &format!("/v1/tokens/{id}"), None, &[])
                    .await
                    .map_err(|e| anyhow!(e))?;
                client.print_columns(&v, COLUMNS);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90m").ok(), Some(5400));
        assert_eq!(parse_ttl("24h").ok(), Some(86_400));
        assert_eq!(parse_ttl("7d").ok(), Some(604_800));
        for bad in ["", "h", "0s", "5w", "-1h", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
