//! Certificates: the provider's own for the plugin channel (fresh and self-signed at every
//! start, as go-plugin's AutoMTLS expects), the check that Terraform's client certificate is
//! the one it announced, and the expiry check of the user's Tribune client certificate.

use std::sync::Arc;

use tribune_tls::rustls;
use tribune_tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use tribune_tls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tribune_tls::rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating the plugin certificate: {0}")]
    Generate(String),
    #[error("PLUGIN_CLIENT_CERT holds no PEM certificate")]
    NoClientCert,
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The provider's certificate for this run: DER and its PKCS#8 key.
pub struct OwnCert {
    pub der: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

/// A fresh self-signed certificate for `localhost` (the name go-plugin dials), valid for a
/// day. It is marked as a CA because go-plugin trusts it as its own root.
pub fn generate() -> Result<OwnCert, CertError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let g = |e: rcgen::Error| CertError::Generate(e.to_string());
    let key = KeyPair::generate().map_err(g)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(g)?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "HashiCorp");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::seconds(30);
    params.not_after = now + time::Duration::days(1);
    let cert = params.self_signed(&key).map_err(g)?;
    Ok(OwnCert {
        der: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

/// The DER of the first certificate in `pem`.
pub fn der_from_pem(pem: &str) -> Result<CertificateDer<'static>, CertError> {
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| CertError::NoClientCert)?;
    if p.label != "CERTIFICATE" {
        return Err(CertError::NoClientCert);
    }
    Ok(CertificateDer::from(p.contents))
}

/// Accepts exactly one client certificate — the one Terraform put in PLUGIN_CLIENT_CERT —
/// and checks the handshake signature with its key. Nothing else may call the provider.
#[derive(Debug)]
struct PinnedClient {
    der: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for PinnedClient {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "not the client certificate Terraform announced in PLUGIN_CLIENT_CERT".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            return verify_p521(message, cert, dss.signature());
        }
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            return verify_p521(message, cert, dss.signature());
        }
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut schemes = self
            .provider
            .signature_verification_algorithms
            .supported_schemes();
        schemes.push(SignatureScheme::ECDSA_NISTP521_SHA512);
        schemes
    }
}

/// Checks a handshake signature made with an ECDSA P-521 key (SHA-512): go-plugin's AutoMTLS
/// client certificate uses one, and ring (our rustls provider) verifies only P-256 and P-384.
fn verify_p521(
    message: &[u8],
    cert: &CertificateDer<'_>,
    signature: &[u8],
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    let (_, x) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    verify_p521_key(message, &x.public_key().subject_public_key.data, signature)
}

/// [`verify_p521`] with the public key given as a SEC1 point.
fn verify_p521_key(
    message: &[u8],
    sec1_point: &[u8],
    signature: &[u8],
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    use p521::ecdsa::signature::Verifier;
    use rustls::CertificateError;
    let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(sec1_point)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let sig = p521::ecdsa::Signature::from_der(signature)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
    key.verify(message, &sig)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
    Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
}

/// The plugin channel's TLS: our certificate, Terraform's pinned, ALPN h2 (gRPC).
pub fn server_config(
    own: &OwnCert,
    client: CertificateDer<'static>,
) -> Result<rustls::ServerConfig, CertError> {
    let provider = tribune_tls::provider();
    let verifier = Arc::new(PinnedClient {
        der: client,
        provider: provider.clone(),
    });
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![own.der.clone()], own.key.clone_key())
        .map_err(|e| CertError::Config(e.to_string()))?;
    c.alpn_protocols = vec![b"h2".to_vec()];
    Ok(c)
}

/// An error (saying what to do) when the certificate at `path` has expired or is not yet valid.
pub fn check_not_expired(path: &std::path::Path) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading `cert` {}: {e}", path.display()))?;
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| format!("`cert` {} is not a PEM certificate: {e}", path.display()))?;
    let x = p
        .parse_x509()
        .map_err(|e| format!("`cert` {} does not parse: {e}", path.display()))?;
    let v = x.validity();
    let now = x509_parser::time::ASN1Time::now();
    if v.not_after < now {
        return Err(format!(
            "the client certificate {} expired on {}; issue a new one (`tribune ca issue admin|operator NAME`) and point `cert`/`key` (TRIBUNE_CERT/TRIBUNE_KEY) at it",
            path.display(),
            v.not_after
        ));
    }
    if v.not_before > now {
        return Err(format!(
            "the client certificate {} is not valid before {}; check this machine's clock",
            path.display(),
            v.not_before
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_certificate_names_localhost_and_parses() {
        let own = generate().unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(own.der.as_ref()).unwrap();
        let san = x.subject_alternative_name().unwrap().unwrap();
        assert!(format!("{:?}", san.value).contains("localhost"));
        assert!(x.is_ca());
    }

    #[test]
    fn p521_handshake_signatures_verify_and_forgeries_do_not() {
        use p521::ecdsa::signature::Signer;
        let sk = p521::ecdsa::SigningKey::random(&mut p521::elliptic_curve::rand_core::OsRng);
        let point = p521::ecdsa::VerifyingKey::from(&sk).to_encoded_point(false);
        let msg = b"TLS 1.3, client CertificateVerify";
        let sig: p521::ecdsa::Signature = sk.sign(msg);
        let der = sig.to_der();
        assert!(verify_p521_key(msg, point.as_bytes(), der.as_bytes()).is_ok());
        assert!(verify_p521_key(b"another message", point.as_bytes(), der.as_bytes()).is_err());
        assert!(verify_p521_key(msg, point.as_bytes(), b"not DER").is_err());
        // A certificate whose key is not P-521 (ours are P-256) is refused, not a panic.
        let own = generate().unwrap();
        assert!(verify_p521(msg, &own.der, der.as_bytes()).is_err());
    }

    #[test]
    fn only_the_announced_client_certificate_is_accepted() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        let v = PinnedClient {
            der: a.der.clone(),
            provider: tribune_tls::provider(),
        };
        let now = UnixTime::now();
        assert!(v.verify_client_cert(&a.der, &[], now).is_ok());
        assert!(v.verify_client_cert(&b.der, &[], now).is_err());
    }
}
