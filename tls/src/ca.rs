//! A small certificate authority on disk: `ca.pem` + `ca.key`, and the controller, agent and
//! client certificates it issues (`ROLE-NAME.pem` + `ROLE-NAME.key`), made with rcgen.
//!
//! Keys are ECDSA P-256; key files are written with mode 0600. Nothing is ever overwritten
//! unless the caller asks for it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use time::OffsetDateTime;

use crate::{PeerIdentity, Role, TlsError};

/// File names inside a CA directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

/// Default lifetimes.
pub const CA_DAYS_DEFAULT: u32 = 3650;
pub const LEAF_DAYS_DEFAULT: u32 = 365;

/// Names every controller certificate carries besides `--san` extras, so that local clients
/// verify `127.0.0.1`/`localhost` out of the box.
pub const CONTROLLER_DEFAULT_SANS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// What [`init`] and [`issue`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Options for [`issue`].
#[derive(Clone, Debug)]
pub struct IssueOptions {
    /// Extra DNS names or IP addresses (controllers: how clients and peers reach it).
    pub sans: Vec<String>,
    pub days: u32,
    /// Replace an existing certificate and key of the same name (rotation).
    pub overwrite: bool,
}

impl Default for IssueOptions {
    fn default() -> Self {
        Self {
            sans: Vec::new(),
            days: LEAF_DAYS_DEFAULT,
            overwrite: false,
        }
    }
}

fn rcgen_err(what: &str) -> impl FnOnce(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError::Issue(format!("{what}: {e}"))
}

fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TlsError::Issue("the system random generator failed".into()))?;
    // Positive and without a leading zero byte: DER INTEGER rules.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), TlsError> {
    if days == 0 {
        return Err(TlsError::Issue(
            "the validity must be at least one day".into(),
        ));
    }
    let now = OffsetDateTime::now_utc();
    // A little slack for clocks that are slightly behind.
    params.not_before = now - Duration::from_secs(300);
    params.not_after = now + Duration::from_secs(u64::from(days) * 86_400);
    Ok(())
}

/// Creates a new CA in `dir` (created if missing): `ca.pem` and `ca.key`. Refuses to overwrite.
pub fn init(dir: &Path, days: u32) -> Result<Written, TlsError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(TlsError::Exists { path: p.clone() });
        }
    }
    std::fs::create_dir_all(dir).map_err(|error| TlsError::Write {
        path: dir.to_path_buf(),
        error,
    })?;
    let serial = random_serial()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Tribune");
    // A short unique suffix tells two CAs apart in error messages and during rotation.
    let suffix: String = serial.to_bytes()[1..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    dn.push(DnType::CommonName, format!("Tribune CA {suffix}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial);
    validity(&mut params, days)?;
    let key = KeyPair::generate().map_err(rcgen_err("generating the CA key"))?;
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_err("signing the CA certificate"))?;
    // Key first: a CA certificate without its key is useless, the reverse is retried cleanly.
    write_new(&key_path, key.serialize_pem().as_bytes(), true, false)?;
    write_new(&cert_path, cert.pem().as_bytes(), false, false)?;
    tracing::info!(cert = %cert_path.display(), "created a Tribune CA");
    Ok(Written {
        cert: cert_path,
        key: key_path,
    })
}

/// Issues a certificate for `identity`, signed by the CA in `ca_dir`, written into `out_dir`
/// as `ROLE-NAME.pem` / `ROLE-NAME.key`.
pub fn issue(
    ca_dir: &Path,
    out_dir: &Path,
    identity: &PeerIdentity,
    opts: &IssueOptions,
) -> Result<Written, TlsError> {
    let stem = identity.file_stem();
    let cert_path = out_dir.join(format!("{stem}.pem"));
    let key_path = out_dir.join(format!("{stem}.key"));
    if !opts.overwrite {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(TlsError::Exists { path: p.clone() });
            }
        }
    }
    let ca_pem = read_string(&ca_dir.join(CA_CERT))?;
    let ca_key_pem = read_string(&ca_dir.join(CA_KEY))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| TlsError::BadPem {
        path: ca_dir.join(CA_KEY),
        reason: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| TlsError::BadPem {
        path: ca_dir.join(CA_CERT),
        reason: e.to_string(),
    })?;

    let mut names: Vec<String> = Vec::new();
    if identity.role() == Role::Controller {
        names.extend(CONTROLLER_DEFAULT_SANS.iter().map(|s| s.to_string()));
    }
    for s in &opts.sans {
        if !names.contains(s) {
            names.push(s.clone());
        }
    }
    let mut params = CertificateParams::new(names).map_err(rcgen_err("a --san value"))?;
    params.subject_alt_names.push(SanType::URI(
        identity
            .uri()
            .try_into()
            .map_err(rcgen_err("the identity URI"))?,
    ));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Tribune");
    dn.push(
        DnType::CommonName,
        format!("{} {}", identity.role(), identity.name()),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match identity.role() {
        // Controllers serve, and dial each other as clients.
        Role::Controller => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    validity(&mut params, opts.days)?;
    let key = KeyPair::generate().map_err(rcgen_err("generating a key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(rcgen_err("signing the certificate"))?;
    std::fs::create_dir_all(out_dir).map_err(|error| TlsError::Write {
        path: out_dir.to_path_buf(),
        error,
    })?;
    write_new(
        &key_path,
        key.serialize_pem().as_bytes(),
        true,
        opts.overwrite,
    )?;
    write_new(&cert_path, cert.pem().as_bytes(), false, opts.overwrite)?;
    tracing::info!(identity = %identity.uri(), cert = %cert_path.display(), "issued a certificate");
    Ok(Written {
        cert: cert_path,
        key: key_path,
    })
}

fn read_string(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes a file that must not exist yet (unless `overwrite`); secrets get mode 0600.
fn write_new(path: &Path, bytes: &[u8], secret: bool, overwrite: bool) -> Result<(), TlsError> {
    let err = |error| TlsError::Write {
        path: path.to_path_buf(),
        error,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            TlsError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            err(e)
        }
    })?;
    // `mode` applies only to new files: a replaced key is made private too.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}
