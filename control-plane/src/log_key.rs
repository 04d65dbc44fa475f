//! This controller's tree-head signing key (DESIGN.md §3: "controllers sign tree heads").
//!
//! Each controller keeps an ed25519 key in `<data_dir>/log-signing.key` (mode 0600), created at
//! its first start. The public half is registered in the replicated state with
//! `Command::RegisterLogKey` (idempotent, retried in the background until it is applied), so
//! every controller and every client can learn the cluster's key set from `GET /v1/log/keys`.
//! A controller signs a tree head only over a linearizable read of the log, so every head any
//! controller signs is a prefix-consistent view of the one replicated log.
//!
//! The file checks itself: it holds the seed *and* the public key derived from it,
//!
//! ```text
//! tribune log-signing-key v1
//! seed 9f…(64 hex)
//! public 3b…(64 hex)
//! ```
//!
//! so a changed character anywhere is refused rather than silently becoming another (valid, but
//! unregistered) key. A key file that is unreadable, malformed or in the old one-line format
//! stops the controller with what is wrong and what to do. Only a missing file on a controller
//! that has no data yet (its first start) creates a key; replacing one is explicit:
//! [`rotate`] (`tribune controller --rotate-log-key`) moves the old file aside.

use std::io::Write;
use std::path::{Path, PathBuf};

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
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("node_id", &self.node_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// First line of a key file.
const HEADER: &str = "tribune log-signing-key v1";

fn key_error(path: &Path, what: impl std::fmt::Display) -> ControllerError {
    ControllerError::Internal(format!("log signing key {}: {what}", path.display()))
}

/// The key file is there but cannot be used: the controller stops.
fn corrupt_key(path: &Path, what: impl std::fmt::Display) -> ControllerError {
    ControllerError::Integrity(format!(
        "LOG SIGNING KEY {} is unusable: {what}. The controller stops rather than sign tree heads with a key the cluster never registered. \
         Restore the file from a backup of the data directory, or replace the key on purpose with `tribune controller … --rotate-log-key` \
         (the old file is moved aside; heads signed with the old key still verify). See docs/operations.md, \"The log signing key\"",
        path.display()
    ))
}

/// What [`rotate`] did.
#[derive(Debug)]
pub struct Rotated {
    /// Where the old key file went (`None` when there was none).
    pub old: Option<PathBuf>,
    pub key_id: String,
}

/// Replaces `<data_dir>/log-signing.key` with a new key, moving the old file (readable or not)
/// aside to `log-signing.key.rotated-<unix seconds>`. The new key is registered when the
/// controller starts; the old one stays registered, so heads it signed still verify.
pub fn rotate(data_dir: &Path) -> Result<Rotated, ControllerError> {
    let path = data_dir.join(KEY_FILE);
    std::fs::create_dir_all(data_dir).map_err(|e| key_error(&path, e))?;
    let old = if path.exists() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut to = data_dir.join(format!("{KEY_FILE}.rotated-{secs}"));
        let mut n = 1;
        while to.exists() {
            to = data_dir.join(format!("{KEY_FILE}.rotated-{secs}-{n}"));
            n += 1;
        }
        std::fs::rename(&path, &to)
            .map_err(|e| key_error(&path, format!("moving it aside to {}: {e}", to.display())))?;
        Some(to)
    } else {
        None
    };
    let key = create_key(&path)?;
    let key_id = key_id(&key.verifying_key().to_bytes());
    tracing::warn!(
        path = %path.display(),
        old = ?old.as_ref().map(|p| p.display().to_string()),
        %key_id,
        "rotated the log signing key (--rotate-log-key): the new key is registered at start; the old one stays registered"
    );
    Ok(Rotated { old, key_id })
}

impl LogSigner {
    /// Loads `<data_dir>/log-signing.key`. Creates it (mode 0600) only when it is missing and
    /// the controller has no data yet (`<data_dir>/raft/tribune.redb` does not exist); a missing
    /// key beside existing data, or a key file that does not check, is an error.
    pub fn load_or_create(data_dir: &Path, node_id: u64) -> Result<Self, ControllerError> {
        let path = data_dir.join(KEY_FILE);
        std::fs::create_dir_all(data_dir).map_err(|e| key_error(&path, e))?;
        let key = match read_key(&path)? {
            Some(k) => k,
            None => {
                let data = crate::raft::log_store::data_file(data_dir);
                if data.exists() {
                    return Err(ControllerError::Integrity(format!(
                        "LOG SIGNING KEY {} is missing, but {} holds this controller's data: the key was lost or deleted. \
                         Restore it from a backup of the data directory, or create a new one on purpose with \
                         `tribune controller … --rotate-log-key` (clients then pin it as a new key; heads signed with the old key still verify)",
                        path.display(),
                        data.display()
                    )));
                }
                create_key(&path)?
            }
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
        }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, size: u64, timestamp_ms: u64, root: Hash) -> SignedTreeHead {
        SignedTreeHead::sign(&self.key, size, timestamp_ms, root)
    }

    /// The tree head of `size` leaves with `root` as a C2SP checkpoint (c2sp.org/tlog-checkpoint)
    /// signed as a C2SP signed note (c2sp.org/signed-note) by this controller's key, under the
    /// key name `origin`: the text any transparency-log verifier or witness reads.
    pub fn checkpoint(&self, origin: &str, size: u64, root: &Hash) -> Result<Vec<u8>, NoteError> {
        use base64::Engine as _;
        let text = format!(
            "{origin}\n{size}\n{}\n",
            base64::engine::general_purpose::STANDARD.encode(root)
        );
        let mut note = signed_note::Note::new(text.as_bytes(), &[])?;
        note.add_sigs(&[&NoteSigner {
            name: origin,
            key: &self.key,
        }])?;
        Ok(note.to_bytes())
    }

    /// This key as a signed-note verifier key under `origin` (`<origin>+<key id>+<key>`): what a
    /// verifier or witness is configured with.
    pub fn note_verifier_key(&self, origin: &str) -> String {
        note_verifier_key(origin, &self.key.verifying_key())
    }

    /// Signs a receipt's message (`tribune_receipt::receipt::signed_message`: domain-separated
    /// from tree heads by its `"tribune/receipt/v1"` prefix).
    pub fn sign_receipt(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        debug_assert!(message.starts_with(tribune_receipt::receipt::DOMAIN));
        self.key.sign(message).to_bytes()
    }
}

/// A checkpoint could not be written as a signed note (an origin that is not a valid key name).
pub type NoteError = signed_note::NoteError;

/// `key` as a signed-note verifier key under `origin`.
pub fn note_verifier_key(origin: &str, key: &VerifyingKey) -> String {
    signed_note::new_ed25519_verifier_key(origin, key)
}

/// Signs a note's text with a controller's key under the key name `name`; its key id is the
/// one c2sp.org/signed-note recommends for Ed25519 (SHA-256 of name, newline, 0x01, key).
struct NoteSigner<'a> {
    name: &'a str,
    key: &'a SigningKey,
}

impl signed_note::Signer for NoteSigner<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn key_id(&self) -> u32 {
        let mut k = vec![0x01];
        k.extend_from_slice(self.key.verifying_key().as_bytes());
        signed_note::key_id(self.name, &k)
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        use ed25519_dalek::Signer;
        Ok(self.key.sign(msg).to_bytes().to_vec())
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
    parse_key(&text).map(Some).map_err(|e| corrupt_key(path, e))
}

/// Why a key file's text is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "it is in the old one-line format, which cannot be checked (a changed character would be another valid key)"
    )]
    OldFormat,
    #[error("the first line is not `{HEADER}`")]
    NoHeader,
    #[error("expected a line `{label} <64 hex characters>`")]
    MissingLine { label: &'static str },
    #[error("the {label} line is not 64 hex characters")]
    NotHex { label: &'static str },
    #[error("unexpected lines after the public key")]
    TrailingLines,
    #[error(
        "the seed does not give the public key recorded beside it: the file was changed or damaged"
    )]
    KeyMismatch,
}

fn hex32(line: Option<&str>, label: &'static str) -> Result<[u8; 32], KeyFileError> {
    let value = line
        .and_then(|l| l.strip_prefix(label))
        .and_then(|l| l.strip_prefix(' '))
        .ok_or(KeyFileError::MissingLine { label })?;
    hex::decode(value.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(KeyFileError::NotHex { label })
}

/// The key in a key file's text, after checking the public key it records is the seed's.
fn parse_key(text: &str) -> Result<SigningKey, KeyFileError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next() {
        Some(HEADER) => {}
        Some(l) if l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Err(KeyFileError::OldFormat);
        }
        _ => return Err(KeyFileError::NoHeader),
    }
    let seed = hex32(lines.next(), "seed")?;
    let public = hex32(lines.next(), "public")?;
    if lines.next().is_some() {
        return Err(KeyFileError::TrailingLines);
    }
    let key = SigningKey::from_bytes(&seed);
    if key.verifying_key().to_bytes() != public {
        return Err(KeyFileError::KeyMismatch);
    }
    Ok(key)
}

/// The text of a key file for `key`.
fn key_text(key: &SigningKey) -> String {
    format!(
        "{HEADER}\nseed {}\npublic {}\n",
        hex::encode(key.to_bytes()),
        hex::encode(key.verifying_key().to_bytes())
    )
}

/// The seed in a key file's text (for tests and tools that sign with a controller's key).
pub fn seed_from_file_text(text: &str) -> Result<[u8; 32], KeyFileError> {
    parse_key(text).map(|k| k.to_bytes())
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
    let text = key_text(&key);
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
    fn a_key_file_that_does_not_check_stops_the_controller_and_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = LogSigner::load_or_create(dir.path(), 1).expect("create");
        let path = dir.path().join(KEY_FILE);
        let good = std::fs::read_to_string(&path).expect("read");
        assert!(good.starts_with(HEADER), "{good}");
        // Every single-character change of a hex digit is refused.
        let lines: Vec<&str> = good.lines().collect();
        for (line, prefix) in [(1usize, "seed "), (2, "public ")] {
            for i in 0..64 {
                let mut l: Vec<u8> = lines[line].as_bytes().to_vec();
                let at = prefix.len() + i;
                l[at] = if l[at] == b'0' { b'1' } else { b'0' };
                let mut all: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
                all[line] = String::from_utf8(l).expect("utf8");
                let text = all.join("\n");
                std::fs::write(&path, &text).expect("write");
                let e = LogSigner::load_or_create(dir.path(), 1).expect_err("refused");
                assert!(matches!(e, ControllerError::Integrity(_)), "{e}");
                assert!(e.to_string().contains("--rotate-log-key"), "{e}");
                assert_eq!(
                    std::fs::read_to_string(&path).expect("read"),
                    text,
                    "not replaced"
                );
            }
        }
        for (text, says) in [
            ("zz", "first line"),
            (
                &format!("{}\n", "ab".repeat(32)) as &str,
                "old one-line format",
            ),
            (&format!("{HEADER}\nseed 00\n"), "seed line"),
            (&format!("{HEADER}\nseed {}\n", "00".repeat(32)), "public"),
        ] {
            std::fs::write(&path, text).expect("write");
            let e = LogSigner::load_or_create(dir.path(), 1).expect_err("corrupt");
            assert!(e.to_string().contains(says), "{says}: {e}");
        }
        // Rotation is explicit, keeps the old file, and gives a new key.
        std::fs::write(&path, "zz").expect("write");
        let r = rotate(dir.path()).expect("rotate");
        let old = r.old.expect("moved aside");
        assert_eq!(std::fs::read_to_string(&old).expect("old"), "zz");
        let b = LogSigner::load_or_create(dir.path(), 1).expect("the new key loads");
        assert_eq!(b.key_id, r.key_id);
        assert_ne!(b.key_id, a.key_id);
        assert_eq!(seed_from_file_text(&good).map(|s| s.len()), Ok(32));
    }

    #[test]
    fn a_missing_key_is_created_only_at_first_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = crate::raft::log_store::data_file(dir.path());
        std::fs::create_dir_all(data.parent().expect("raft dir")).expect("mkdir");
        std::fs::write(&data, b"").expect("data file");
        let e = LogSigner::load_or_create(dir.path(), 1).expect_err("data without a key");
        assert!(e.to_string().contains("is missing"), "{e}");
        assert!(!dir.path().join(KEY_FILE).exists(), "nothing created");
        rotate(dir.path()).expect("explicit");
        LogSigner::load_or_create(dir.path(), 1).expect("loads");
    }

    /// Go's `golang.org/x/mod/sumdb/note` example: signing its text with its private key through
    /// our signer gives exactly Go's signature line (key id and signature bytes agree).
    #[test]
    fn a_note_signed_here_is_byte_for_byte_the_go_reference() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let skey = b64
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .expect("base64");
        assert_eq!(skey[0], 0x01, "an Ed25519 key");
        let seed: [u8; 32] = skey[1..].try_into().expect("32 bytes");
        let key = SigningKey::from_bytes(&seed);
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let mut note = signed_note::Note::new(text.as_bytes(), &[]).expect("note");
        note.add_sigs(&[&NoteSigner {
            name: "PeterNeumann",
            key: &key,
        }])
        .expect("signs");
        let want = format!(
            "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
        assert_eq!(String::from_utf8(note.to_bytes()).expect("utf-8"), want);
        assert_eq!(
            note_verifier_key("PeterNeumann", &key.verifying_key()),
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
    }

    /// A checkpoint parses as a C2SP checkpoint (an independent parser: `tlog_tiles`), its
    /// signature verifies with the published verifier key, and over exactly the checkpoint's
    /// text (checked with ed25519 directly); another key, origin or size does not verify.
    #[test]
    fn a_checkpoint_is_a_c2sp_checkpoint_signed_as_a_note() {
        use base64::Engine as _;
        let signer = LogSigner::from_key(SigningKey::from_bytes(&[7; 32]), 1);
        let root = [0xabu8; 32];
        let origin = "tribune.example/cluster-a";
        let bytes = signer.checkpoint(origin, 4242, &root).expect("checkpoint");
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        let (body, sigs) = text
            .split_once("\n\n")
            .expect("a blank line before the signatures");
        let cp = tlog_tiles::Checkpoint::from_bytes(format!("{body}\n").as_bytes())
            .expect("a C2SP checkpoint");
        assert_eq!((cp.origin(), cp.size(), cp.hash().0), (origin, 4242, root));

        // The signature line: em dash, key name, base64(key id ‖ signature), over the body.
        let line = sigs.strip_suffix('\n').expect("ends with a newline");
        let rest = line
            .strip_prefix(&format!("\u{2014} {origin} "))
            .expect("signed under the origin");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .expect("base64");
        assert_eq!(raw.len(), 4 + 64);
        let sig = ed25519_dalek::Signature::from_slice(&raw[4..]).expect("signature");
        signer
            .verifying_key()
            .verify_strict(format!("{body}\n").as_bytes(), &sig)
            .expect("the signature covers the checkpoint text");

        let verify = |vkey: &str, note: &[u8]| -> bool {
            let v = signed_note::StandardVerifier::new(vkey).expect("verifier key");
            let list = signed_note::VerifierList::new(vec![Box::new(v)]);
            signed_note::Note::from_bytes(note)
                .and_then(|n| n.verify(&list))
                .is_ok_and(|(ok, _)| ok.len() == 1)
        };
        assert!(verify(&signer.note_verifier_key(origin), &bytes));
        let other = LogSigner::from_key(SigningKey::from_bytes(&[8; 32]), 2);
        assert!(!verify(&other.note_verifier_key(origin), &bytes));
        assert!(!verify(&signer.note_verifier_key("another/origin"), &bytes));
        let forged = text.replace("\n4242\n", "\n4243\n");
        assert!(!verify(
            &signer.note_verifier_key(origin),
            forged.as_bytes()
        ));
    }
}
