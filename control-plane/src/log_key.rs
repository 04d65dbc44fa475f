//! This controller's tree-head signing key (DESIGN.md §3: "controllers sign tree heads").
//!
//! Each controller keeps an ed25519 key in `<data_dir>/log-signing.key` (64 hex characters, file
//! mode 0600), created at its first start. The public half is registered in the replicated state
//! with `Command::RegisterLogKey` (idempotent, retried in the background until it is applied), so
//! every controller and every client can learn the cluster's key set from `GET /v1/log/keys`.
//! A controller signs a tree head only over a linearizable read of the log, so every head any
//! controller signs is a prefix-consistent view of the one replicated log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ed25519_dalek::{SigningKey, VerifyingKey};
use tribune_attest::merkle::{Hash, SignedTreeHead};

use crate::error::ControllerError;
use crate::state::key_id;

/// File name of the signing key inside the data directory.
pub const KEY_FILE: &str = "log-signing.key";

pub struct LogSigner {
    key: SigningKey,
    pub node_id: u64,
    pub key_id: String,
    /// Hex of the 32-byte public key.
    pub public_key: String,
    /// Root of the tree at the last size a head was signed for: a head over an unchanged log
    /// costs one signature, not a pass over every leaf.
    root_cache: Mutex<Option<(u64, Hash)>>,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("node_id", &self.node_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn key_error(path: &Path, what: impl std::fmt::Display) -> ControllerError {
    ControllerError::Internal(format!("log signing key {}: {what}", path.display()))
}

impl LogSigner {
    /// Loads `<data_dir>/log-signing.key`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(data_dir: &Path, node_id: u64) -> Result<Self, ControllerError> {
        let path = data_dir.join(KEY_FILE);
        std::fs::create_dir_all(data_dir).map_err(|e| key_error(&path, e))?;
        let key = match read_key(&path)? {
            Some(k) => k,
            None => create_key(&path)?,
        };
        Ok(Self::from_key(key, node_id))
    }

    pub fn from_key(key: SigningKey, node_id: u64) -> Self {
        let public = key.verifying_key().to_bytes();
        Self {
            key_id: key_id(&public),
            public_key: hex::encode(public),
            key,
            node_id,
            root_cache: Mutex::new(None),
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, size: u64, timestamp_ms: u64, root: Hash) -> SignedTreeHead {
        SignedTreeHead::sign(&self.key, size, timestamp_ms, root)
    }

    pub fn cached_root(&self, size: u64) -> Option<Hash> {
        let c = self.root_cache.lock().unwrap_or_else(|p| p.into_inner());
        c.filter(|(s, _)| *s == size).map(|(_, r)| r)
    }

    pub fn cache_root(&self, size: u64, root: Hash) {
        let mut c = self.root_cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_none_or(|(s, _)| s <= size) {
            *c = Some((size, root));
        }
    }
}

fn read_key(path: &PathBuf) -> Result<Option<SigningKey>, ControllerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(key_error(path, e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", m.permissions().mode() & 0o777),
                "the log signing key is readable by others; chmod 600 it"
            );
        }
    }
    let bytes = hex::decode(text.trim())
        .map_err(|_| key_error(path, "not hex (expected 64 hex characters)"))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| key_error(path, format!("{} bytes, expected 32", b.len())))?;
    Ok(Some(SigningKey::from_bytes(&seed)))
}

fn create_key(path: &PathBuf) -> Result<SigningKey, ControllerError> {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = match opts.open(path) {
        Ok(f) => f,
        // Created by a concurrent start since we looked: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return read_key(path)?.ok_or_else(|| key_error(path, "vanished"));
        }
        Err(e) => return Err(key_error(path, e)),
    };
    let text = format!("{}\n", hex::encode(key.to_bytes()));
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| key_error(path, e))?;
    tracing::info!(path = %path.display(), "created the log signing key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_with_mode_600_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = LogSigner::load_or_create(dir.path(), 1).expect("create");
        let b = LogSigner::load_or_create(dir.path(), 1).expect("reload");
        assert_eq!(a.public_key, b.public_key);
        assert_eq!(a.key_id, key_id(&a.verifying_key().to_bytes()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sth = a.sign(3, 7, [1; 32]);
        sth.verify(&b.verifying_key()).expect("verifies");
    }

    #[test]
    fn a_corrupt_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(KEY_FILE), "zz").expect("write");
        let e = LogSigner::load_or_create(dir.path(), 1).expect_err("corrupt");
        assert!(e.to_string().contains("not hex"), "{e}");
    }
}
