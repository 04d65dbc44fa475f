//! The check's I/O edge: the SHA-256 of the files an allow-list names, read from this host.
//!
//! A digest is remembered per file identity — device, inode, size, mtime and ctime — so a
//! 20 MiB kernel is hashed once, not at every launch; replacing the file (new inode) or
//! writing to it (new ctime, which no unprivileged caller can set back) hashes it again. As in
//! git's "racy clean" rule, a file changed in the last [`SETTLE_NS`] is never remembered:
//! timestamps are coarse (a clock tick), so a second write within the same tick would
//! otherwise go unseen.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use super::check::{FileDigests, FileError, FileFacts};
use super::policy::Digest;

/// Largest file hashed (a kernel, firmware or read-only image; writable disks are not
/// something to pin by digest).
pub const FILE_BYTES_MAX: u64 = 8 << 30;
/// Most digests remembered; the cache is emptied when full.
pub const CACHE_ENTRIES_MAX: usize = 1024;

/// How old a file's last change must be before its digest is remembered.
pub const SETTLE_NS: i128 = 2_000_000_000;

/// What identifies one version of a file's content on this host.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// Digests of files on this host's file system.
#[derive(Default)]
pub struct HostFiles {
    cache: Mutex<HashMap<PathBuf, (Stamp, FileFacts)>>,
}

impl HostFiles {
    pub fn new() -> HostFiles {
        HostFiles::default()
    }
}

impl FileDigests for HostFiles {
    fn digest(&self, path: &str) -> Result<FileFacts, FileError> {
        let resolved = std::fs::canonicalize(path)?;
        let mut f = std::fs::File::open(&resolved)?;
        let md = f.metadata()?;
        if !md.is_file() {
            return Err(FileError::NotAFile);
        }
        if md.len() > FILE_BYTES_MAX {
            return Err(FileError::TooLarge {
                len: md.len(),
                max: FILE_BYTES_MAX,
            });
        }
        let stamp = Stamp {
            dev: md.dev(),
            ino: md.ino(),
            len: md.len(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        };
        let writable_by_others = md.mode() & 0o022 != 0;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((s, facts)) = cache.get(&resolved)
            && *s == stamp
        {
            return Ok(FileFacts {
                writable_by_others,
                ..facts.clone()
            });
        }
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let facts = FileFacts {
            sha256: Digest(h.finalize().into()),
            resolved: resolved.clone(),
            writable_by_others,
        };
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        if now_ns - stamp.ctime_ns.max(stamp.mtime_ns) >= SETTLE_NS {
            if cache.len() >= CACHE_ENTRIES_MAX {
                cache.clear();
            }
            cache.insert(resolved, (stamp, facts.clone()));
        }
        Ok(facts)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn digests_follow_links_and_see_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prog");
        std::fs::write(&file, b"one").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let files = HostFiles::new();
        let a = files.digest(link.to_str().unwrap()).unwrap();
        assert_eq!(a.sha256, Digest::of(b"one"));
        assert_eq!(a.resolved, std::fs::canonicalize(&file).unwrap());
        assert!(!a.writable_by_others);
        // Same length, same clock tick: a new inode, or (in place) a file too fresh to cache.
        let tmp = dir.path().join("prog.new");
        std::fs::write(&tmp, b"two").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert_eq!(
            files.digest(link.to_str().unwrap()).unwrap().sha256,
            Digest::of(b"two")
        );
        std::fs::write(&file, b"333").unwrap();
        assert_eq!(
            files.digest(file.to_str().unwrap()).unwrap().sha256,
            Digest::of(b"333")
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(
            files
                .digest(file.to_str().unwrap())
                .unwrap()
                .writable_by_others
        );
        assert_eq!(
            files.digest(dir.path().to_str().unwrap()),
            Err(FileError::NotAFile)
        );
        assert!(matches!(
            files.digest("/nonexistent/x"),
            Err(FileError::Io {
                kind: std::io::ErrorKind::NotFound,
                ..
            })
        ));
    }
}
