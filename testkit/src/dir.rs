//! A temp dir per test (or benchmark run), removed when dropped — unless the thread is
//! panicking: a failed test keeps its data dirs and logs for the post-mortem and says where.

use std::path::{Path, PathBuf};

use crate::Error;

pub struct TestDir {
    /// `None` once kept.
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// A fresh directory under the system temp dir, named `PREFIX…`.
    pub fn try_new(prefix: &str) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(Error::io(format!("creating a temp dir {prefix}…")))?;
        Ok(Self {
            path: dir.path().to_path_buf(),
            dir: Some(dir),
        })
    }

    /// [`TestDir::try_new`] for tests.
    pub fn new(prefix: &str) -> Self {
        Self::try_new(prefix).expect("a temp dir")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on disk whatever happens; returns its path.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        self.path.clone()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() && self.dir.is_some() {
            let kept = self.keep();
            eprintln!("kept the failed test's directory: {}", kept.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_when_dropped_kept_when_panicking() {
        let d = TestDir::new("tribune-testkit-");
        let path = d.path().to_path_buf();
        assert!(path.is_dir());
        drop(d);
        assert!(!path.exists(), "removed on drop");

        let (tx, rx) = std::sync::mpsc::channel();
        let r = std::thread::spawn(move || {
            let d = TestDir::new("tribune-testkit-");
            tx.send(d.path().to_path_buf()).unwrap();
            panic!("a failing test");
        })
        .join();
        assert!(r.is_err());
        let kept = rx.recv().unwrap();
        assert!(kept.is_dir(), "kept after a panic");
        std::fs::remove_dir_all(kept).unwrap();
    }
}
