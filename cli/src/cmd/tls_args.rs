//! The TLS flags shared by the processes of a cluster (`tribune controller`, `tribune agent`):
//! a `tribune ca` directory, or explicit files, or an explicit `--insecure`.

use std::path::PathBuf;

use clap::Args;
use clap::builder::BoolishValueParser;
use tribune_tls::TlsFiles;

#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// mTLS from a `tribune ca` directory: DIR/ca.pem and this process's certificate and key
    /// (DIR/controller-ID.pem/.key, DIR/agent-HOST.pem/.key).
    #[arg(long, conflicts_with_all = ["ca", "cert", "key"])]
    pub tls_dir: Option<PathBuf>,
    /// mTLS: CA certificate(s) to trust (PEM); with --cert and --key.
    #[arg(long, requires_all = ["cert", "key"])]
    pub ca: Option<PathBuf>,
    /// mTLS: this process's certificate (PEM), issued with `tribune ca issue`.
    #[arg(long, requires_all = ["ca", "key"])]
    pub cert: Option<PathBuf>,
    /// mTLS: this process's private key (PEM).
    #[arg(long, requires_all = ["ca", "cert"])]
    pub key: Option<PathBuf>,
    /// Run without TLS: plain text, no peer authentication (the other side must run
    /// `--insecure` too). For tests and benchmarks on one machine only.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        conflicts_with_all = ["tls_dir", "ca", "cert", "key"]
    )]
    pub insecure: Option<bool>,
}

impl TlsArgs {
    /// Whether TLS files were given (`--tls-dir`, or `--ca`/`--cert`/`--key`, or their
    /// variables): then they replace a config file's TLS settings.
    pub fn files_given(&self) -> bool {
        self.tls_dir.is_some() || self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// `--insecure` (or `--insecure=true`).
    pub fn is_insecure(&self) -> bool {
        self.insecure == Some(true)
    }

    /// The files for the identity whose files are named `stem` in a `--tls-dir` (e.g.
    /// `controller-1`, `agent-kvm-07`); `None` when no TLS flag was given.
    pub fn files(&self, stem: &str) -> Option<TlsFiles> {
        match (&self.tls_dir, &self.ca, &self.cert, &self.key) {
            (Some(dir), ..) => Some(TlsFiles::in_dir(dir, stem)),
            (None, Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }
}
