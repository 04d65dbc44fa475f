//! The Merkle tree's nodes in append-only files: one file per level (`level-NN.hashes`), node
//! `i` of a level at byte `32·i`. A node read is one positioned read (`pread`), so a proof in a
//! tree of any length costs O(log² n) reads and the process holds no per-leaf memory: what
//! stays in memory is one open file per level and the nodes appended since the last flush
//! (at most [`FLUSH_NODES`]).
//!
//! Why files and not a B-tree (redb): every level is an append-only array of fixed-size
//! records addressed by position, which a file is already; a B-tree would add a key and page
//! overhead per 32-byte hash (≈ 2–3× the bytes) and a transaction per batch for nothing.
//!
//! **Crash safety.** The nodes are derived data — a pure function of the leaves — so a lost
//! tail is repaired, never trusted: [`FileNodes::open`] drops a torn partial record, drops
//! parents whose children were lost, recomputes parents that were not written, and then checks
//! that the last node of every level is the hash of its two children (a damaged tail is
//! refused with an error naming the file, never served). Whoever owns the leaves (the
//! controller's log) compares the leaf count and last leaf with its entries and appends what
//! is missing.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::merkle::{Hash, node_hash};
use crate::merkle_store::NodeStore;

/// Nodes buffered in memory before they are written (2 MiB).
pub const FLUSH_NODES: usize = 65_536;

/// Levels a tree of up to 2^64 leaves can have.
const LEVELS_MAX: usize = 65;

/// What went wrong with the node files.
#[derive(Debug, thiserror::Error)]
pub enum FileNodesError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: node {index} of level {level} is not the hash of its two children: the node files \
         are damaged (delete the directory: it is rebuilt from the log's entries)",
        path.display()
    )]
    Damaged {
        path: PathBuf,
        level: u32,
        index: u64,
    },
    #[error("node {index} of level {level} is not stored (the level holds {count})")]
    Missing { level: u32, index: u64, count: u64 },
    #[error("level {level} is above the top of the tree ({levels} levels)")]
    Level { level: u32, levels: usize },
}

/// What [`FileNodes::open`] repaired (all zero after a clean shutdown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repair {
    /// Bytes of partial records cut from the files' ends.
    pub torn_bytes: u64,
    /// Parents dropped because their children were lost.
    pub nodes_dropped: u64,
    /// Parents recomputed because they were not written.
    pub parents_recomputed: u64,
}

struct Level {
    file: File,
    path: PathBuf,
    /// Nodes in the file.
    on_disk: u64,
    /// Nodes appended since the last flush.
    pending: Vec<Hash>,
}

impl Level {
    fn count(&self) -> u64 {
        self.on_disk + self.pending.len() as u64
    }
}

/// A [`NodeStore`] of files in one directory.
pub struct FileNodes {
    dir: PathBuf,
    levels: Vec<Level>,
    pending: usize,
}

impl std::fmt::Debug for FileNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileNodes")
            .field("dir", &self.dir)
            .field("leaves", &self.count(0))
            .field("levels", &self.levels.len())
            .finish()
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileNodesError {
    let path = path.to_path_buf();
    move |source| FileNodesError::Io { op, path, source }
}

fn level_path(dir: &Path, level: usize) -> PathBuf {
    dir.join(format!("level-{level:02}.hashes"))
}

fn open_level(dir: &Path, level: usize, torn: &mut u64) -> Result<Level, FileNodesError> {
    let path = level_path(dir, level);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("opening", &path))?;
    let len = file
        .metadata()
        .map_err(io("reading the size of", &path))?
        .len();
    let whole = len - len % 32;
    if whole != len {
        file.set_len(whole)
            .map_err(io("cutting the torn tail of", &path))?;
        *torn += len - whole;
    }
    Ok(Level {
        file,
        path,
        on_disk: whole / 32,
        pending: Vec::new(),
    })
}

impl FileNodes {
    /// Opens (creating) the node files in `dir` and repairs what a crash left (see the module
    /// docs); refuses a damaged tail.
    pub fn open(dir: &Path) -> Result<(FileNodes, Repair), FileNodesError> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let mut repair = Repair::default();
        let mut levels = Vec::new();
        while levels.len() < LEVELS_MAX && level_path(dir, levels.len()).exists() {
            levels.push(open_level(dir, levels.len(), &mut repair.torn_bytes)?);
        }
        if levels.is_empty() {
            levels.push(open_level(dir, 0, &mut repair.torn_bytes)?);
        }
        let mut nodes = FileNodes {
            dir: dir.to_path_buf(),
            levels,
            pending: 0,
        };
        nodes.repair(&mut repair)?;
        nodes.check_tails()?;
        Ok((nodes, repair))
    }

    /// The directory of the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the files hold (after a flush).
    pub fn bytes_on_disk(&self) -> u64 {
        self.levels.iter().map(|l| l.on_disk * 32).sum()
    }

    /// Level `l + 1` must hold exactly `⌊count(l)/2⌋` nodes.
    fn repair(&mut self, repair: &mut Repair) -> Result<(), FileNodesError> {
        let mut l = 0;
        while l < self.levels.len() {
            let want = self.levels[l].count() / 2;
            if l + 1 == self.levels.len() {
                if want == 0 {
                    break;
                }
                let next = open_level(&self.dir, l + 1, &mut repair.torn_bytes)?;
                self.levels.push(next);
            }
            let up = &mut self.levels[l + 1];
            if up.on_disk > want {
                up.file
                    .set_len(want * 32)
                    .map_err(io("dropping orphaned nodes from", &up.path))?;
                repair.nodes_dropped += up.on_disk - want;
                up.on_disk = want;
            }
            for i in self.levels[l + 1].count()..want {
                let parent = node_hash(&self.read(l, 2 * i)?, &self.read(l, 2 * i + 1)?);
                self.levels[l + 1].pending.push(parent);
                repair.parents_recomputed += 1;
            }
            self.flush()?;
            l += 1;
        }
        Ok(())
    }

    /// The last parent of every level is the hash of its children.
    fn check_tails(&self) -> Result<(), FileNodesError> {
        for l in 0..self.levels.len().saturating_sub(1) {
            let c = self.levels[l + 1].count();
            if c == 0 {
                continue;
            }
            let want = node_hash(&self.read(l, 2 * c - 2)?, &self.read(l, 2 * c - 1)?);
            if self.read(l + 1, c - 1)? != want {
                return Err(FileNodesError::Damaged {
                    path: self.levels[l + 1].path.clone(),
                    level: (l + 1) as u32,
                    index: c - 1,
                });
            }
        }
        Ok(())
    }

    fn read(&self, level: usize, index: u64) -> Result<Hash, FileNodesError> {
        let l = self.levels.get(level).ok_or(FileNodesError::Level {
            level: level as u32,
            levels: self.levels.len(),
        })?;
        if index >= l.on_disk {
            return l.pending.get((index - l.on_disk) as usize).copied().ok_or(
                FileNodesError::Missing {
                    level: level as u32,
                    index,
                    count: l.count(),
                },
            );
        }
        let mut h = [0u8; 32];
        l.file
            .read_exact_at(&mut h, index * 32)
            .map_err(io("reading", &l.path))?;
        Ok(h)
    }

    /// Writes the buffered nodes (lowest level first), without syncing.
    pub fn flush(&mut self) -> Result<(), FileNodesError> {
        for l in &mut self.levels {
            if l.pending.is_empty() {
                continue;
            }
            let bytes: Vec<u8> = l.pending.iter().flatten().copied().collect();
            l.file
                .write_all_at(&bytes, l.on_disk * 32)
                .map_err(io("writing", &l.path))?;
            l.on_disk += l.pending.len() as u64;
            l.pending.clear();
        }
        self.pending = 0;
        Ok(())
    }

    /// Writes the buffered nodes and syncs every file.
    pub fn sync(&mut self) -> Result<(), FileNodesError> {
        self.flush()?;
        for l in &self.levels {
            l.file.sync_data().map_err(io("syncing", &l.path))?;
        }
        Ok(())
    }
}

impl NodeStore for FileNodes {
    type Error = FileNodesError;

    fn count(&self, level: u32) -> u64 {
        self.levels.get(level as usize).map_or(0, Level::count)
    }

    fn get(&self, level: u32, index: u64) -> Result<Hash, FileNodesError> {
        self.read(level as usize, index)
    }

    fn append(&mut self, level: u32, hash: Hash) -> Result<(), FileNodesError> {
        let level = level as usize;
        if level == self.levels.len() {
            let mut torn = 0;
            let l = open_level(&self.dir, level, &mut torn)?;
            self.levels.push(l);
        }
        let levels = self.levels.len();
        let l = self.levels.get_mut(level).ok_or(FileNodesError::Level {
            level: level as u32,
            levels,
        })?;
        l.pending.push(hash);
        self.pending += 1;
        if self.pending >= FLUSH_NODES {
            self.flush()?;
        }
        Ok(())
    }
}

impl Drop for FileNodes {
    /// Writes what is buffered; an error here is repaired at the next open (the nodes are
    /// recomputed from the level below). Call [`FileNodes::sync`] to know it reached the disk.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MerkleTree, leaf_hash};
    use crate::merkle_store::StoredTree;

    fn leaf(i: u64) -> Hash {
        leaf_hash(&i.to_be_bytes())
    }

    fn filled(dir: &Path, n: u64) -> StoredTree<FileNodes> {
        let (nodes, repair) = FileNodes::open(dir).expect("open");
        assert_eq!(repair, Repair::default());
        let mut t = StoredTree::new(nodes);
        for i in t.size()..n {
            t.push_hash(leaf(i)).expect("push");
        }
        t
    }

    fn mem(n: u64) -> MerkleTree {
        let mut t = MerkleTree::new();
        for i in 0..n {
            t.push_hash(leaf(i));
        }
        t
    }

    #[test]
    fn reopened_files_give_the_same_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 3 * FLUSH_NODES as u64 / 2 + 7;
        let root = {
            let mut t = filled(dir.path(), n);
            t.store_mut().sync().expect("sync");
            t.root().expect("root")
        };
        let (nodes, repair) = FileNodes::open(dir.path()).expect("reopen");
        assert_eq!(repair, Repair::default());
        let t = StoredTree::new(nodes);
        assert_eq!(t.size(), n);
        assert_eq!(t.root().expect("root"), root);
        assert_eq!(root, mem(n).root());
        let p = t.inclusion_proof(12_345, n).expect("proof");
        assert_eq!(p, mem(n).inclusion_proof(12_345, n).expect("proof"));
    }

    /// Whatever a crash leaves — a torn record, a level cut short, a parent whose children
    /// were lost — opening repairs it into the tree of the leaves that remain.
    #[test]
    fn open_repairs_what_a_crash_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(filled(dir.path(), 1000));
        // A torn leaf record, and the parents of the lost leaves still on disk.
        let f = OpenOptions::new()
            .write(true)
            .open(level_path(dir.path(), 0))
            .expect("open");
        f.set_len(900 * 32 + 5).expect("cut");
        let (nodes, repair) = FileNodes::open(dir.path()).expect("reopen");
        assert_eq!(repair.torn_bytes, 5);
        assert!(repair.nodes_dropped > 0, "{repair:?}");
        let t = StoredTree::new(nodes);
        assert_eq!(t.size(), 900);
        assert_eq!(t.root().expect("root"), mem(900).root());
        drop(t);
        // Upper levels lost (never written): recomputed.
        for l in [1, 3] {
            let f = OpenOptions::new()
                .write(true)
                .open(level_path(dir.path(), l))
                .expect("open");
            f.set_len(0).expect("cut");
        }
        std::fs::remove_file(level_path(dir.path(), 8)).expect("rm");
        let (nodes, repair) = FileNodes::open(dir.path()).expect("reopen");
        assert!(repair.parents_recomputed >= 450 + 112, "{repair:?}");
        let mut t = StoredTree::new(nodes);
        assert_eq!(t.root().expect("root"), mem(900).root());
        for i in 900..1000 {
            t.push_hash(leaf(i)).expect("push");
        }
        assert_eq!(t.root().expect("root"), mem(1000).root());
    }

    #[test]
    fn a_damaged_tail_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(filled(dir.path(), 64));
        let f = OpenOptions::new()
            .write(true)
            .open(level_path(dir.path(), 2))
            .expect("open");
        f.write_all_at(&[0xff; 32], 15 * 32).expect("write");
        let e = FileNodes::open(dir.path()).expect_err("damaged");
        let msg = e.to_string();
        assert!(
            msg.contains("level-02.hashes") && msg.contains("node 15 of level 2"),
            "{msg}"
        );
    }

    #[test]
    fn bad_sizes_and_indexes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = filled(dir.path(), 10);
        assert_eq!(
            t.inclusion_proof(10, 10).expect_err("index").to_string(),
            "index 10 ≥ size 10"
        );
        assert_eq!(
            t.root_at(11).expect_err("size").to_string(),
            "size 11 > tree size 10"
        );
        assert_eq!(
            t.consistency_proof(7, 3).expect_err("order").to_string(),
            "old size 7 > new size 3"
        );
        assert!(t.leaf(10).is_err());
    }
}
