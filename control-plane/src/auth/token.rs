//! Bearer tokens: `tbt_ID_SECRET`, where ID (16 hex) names the token in the replicated state and
//! SECRET (64 hex, 256 random bits) is shown once, at creation, and stored only as its SHA-256.

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Prefix of every token, so a leaked one is recognisable (secret scanners) and never confused
/// with other credentials.
pub const PREFIX: &str = "tbt_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;
/// Longest `Authorization` value looked at; anything longer is refused unread.
pub const HEADER_BYTES_MAX: usize = 256;

/// A freshly made token: its id, the whole string to hand to the user once, and the hash kept.
pub struct NewToken {
    pub id: String,
    pub secret: String,
    pub secret_sha256: String,
}

/// Makes a token from the operating system's random source.
pub fn generate() -> NewToken {
    let mut id = [0u8; ID_HEX / 2];
    let mut secret = [0u8; SECRET_HEX / 2];
    OsRng.fill_bytes(&mut id);
    OsRng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret_hex = hex::encode(secret);
    NewToken {
        secret: format!("{PREFIX}{id}_{secret_hex}"),
        secret_sha256: hash_secret(&secret_hex),
        id,
    }
}

/// SHA-256 of the secret part, hex.
pub fn hash_secret(secret_hex: &str) -> String {
    hex::encode(Sha256::digest(secret_hex.as_bytes()))
}

/// What is wrong with a presented token (never echoes the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the Authorization header must be `Bearer tbt_…` (a token from `tribune token create`)"
    )]
    NotBearer,
    #[error(
        "the bearer token is malformed: expected tbt_ followed by 16 hex digits, `_` and 64 hex digits"
    )]
    Malformed,
    #[error("token {0} is not known to this cluster")]
    Unknown(String),
    #[error("token {0} was revoked")]
    Revoked(String),
    #[error("token {0} has expired")]
    Expired(String),
    #[error("token {0} does not match its stored secret")]
    WrongSecret(String),
}

/// Splits `Bearer tbt_ID_SECRET` into (id, secret hex), checking its shape only.
pub fn parse_bearer(header: &str) -> Result<(&str, &str), TokenError> {
    if header.len() > HEADER_BYTES_MAX {
        return Err(TokenError::Malformed);
    }
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(TokenError::NotBearer)?
        .trim();
    let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_of(id, ID_HEX) || !hex_of(secret, SECRET_HEX) {
        return Err(TokenError::Malformed);
    }
    Ok((id, secret))
}

/// Compares two hex digests without an early exit.
pub fn digests_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_hash_to_what_is_stored() {
        let t = generate();
        let header = format!("Bearer {}", t.secret);
        let (id, secret) = parse_bearer(&header).expect("parses");
        assert_eq!(id, t.id);
        assert!(digests_equal(&hash_secret(secret), &t.secret_sha256));
        assert!(!t.secret_sha256.contains(secret));
        let other = generate();
        assert_ne!(other.id, t.id);
        assert!(!digests_equal(&hash_secret(secret), &other.secret_sha256));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = generate().secret;
        assert_eq!(parse_bearer(&good), Err(TokenError::NotBearer));
        assert_eq!(parse_bearer("Basic abc"), Err(TokenError::NotBearer));
        for bad in [
            "Bearer ".to_string(),
            "Bearer tbt_".to_string(),
            "Bearer abc".to_string(),
            format!("Bearer {}", &good[..good.len() - 1]),
            format!("Bearer {}x", &good[..good.len() - 1]),
            format!("Bearer {good}{}", "0".repeat(300)),
            format!("Bearer {}", good.replacen('_', "-", 2)),
        ] {
            assert!(parse_bearer(&bad).is_err(), "{bad:?} accepted");
        }
    }
}
