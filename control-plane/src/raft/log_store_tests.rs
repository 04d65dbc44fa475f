//! Tests of the log store: the redb side, migration of an old log, and the WAL under it.

use super::*;
use openraft::{CommittedLeaderId, EntryPayload};

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Blank,
    }
}

/// Writes a data file straight through redb: `rows` as they should be stored.
fn write_file(dir: &Path, rows: &[(u64, Vec<u8>)], vote: Option<Vec<u8>>) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let file = dir.join(DATA_FILE);
    let db = Database::create(&file).expect("create");
    let tx = db.begin_write().expect("tx");
    {
        let mut logs = tx.open_table(LOGS).expect("logs");
        for (k, v) in rows {
            logs.insert(*k, v.as_slice()).expect("insert");
        }
        let mut meta = tx.open_table(META).expect("meta");
        if let Some(v) = vote {
            meta.insert("vote", v.as_slice()).expect("vote");
        }
        tx.open_table(SNAPSHOT).expect("snapshot");
    }
    tx.commit().expect("commit");
    file
}

fn sealed(index: u64) -> Vec<u8> {
    let e = serde_json::to_vec(&entry(index)).expect("json");
    record::seal(&log_context(index), &e)
}

fn open_err(dir: &Path) -> String {
    match LogStore::open_dir(dir) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => {
            assert!(e.is_corruption(), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn intact_records_load_and_every_damaged_one_is_named() {
    let root = tempfile::tempdir().expect("tempdir");
    let vote = serde_json::to_vec(&Vote::new(3, 2)).expect("json");
    let good: Vec<(u64, Vec<u8>)> = (1..=3).map(|i| (i, sealed(i))).collect();

    let ok = root.path().join("ok");
    write_file(&ok, &good, Some(record::seal(&meta_context("vote"), &vote)));
    let store = LogStore::open_dir(&ok).expect("opens");
    {
        let c = store.cache.lock().expect("cache");
        assert_eq!(c.entries.len(), 3);
        assert_eq!(c.vote, Some(Vote::new(3, 2)));
    }
    drop(store);

    // A flipped byte in entry 2's payload.
    let mut rows = good.clone();
    let last = rows[1].1.len() - 2;
    rows[1].1[last] ^= 0x04;
    let d = root.path().join("flip");
    let file = write_file(&d, &rows, None);
    let e = open_err(&d);
    assert!(
        e.contains(&file.display().to_string())
            && e.contains("table raft_log, log index 2")
            && e.contains("checksum mismatch"),
        "{e}"
    );

    // An intact record under another key.
    let mut rows = good.clone();
    rows[1].1 = sealed(5);
    let d = root.path().join("moved");
    write_file(&d, &rows, None);
    assert!(open_err(&d).contains("log index 2"));

    // The old format (bare JSON), in the log and in the metadata.
    let mut rows = good.clone();
    rows[2].1 = serde_json::to_vec(&entry(3)).expect("json");
    let d = root.path().join("old");
    write_file(&d, &rows, None);
    assert!(open_err(&d).contains("older Tribune"));
    let d = root.path().join("old-vote");
    write_file(&d, &good, Some(vote.clone()));
    let e = open_err(&d);
    assert!(
        e.contains("table raft_meta, record \"vote\"") && e.contains("older Tribune"),
        "{e}"
    );

    // Not a redb file at all, and a file whose header page is gone: errors, not panics.
    let d = root.path().join("garbage");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join(DATA_FILE), vec![0x5a; 64 * 1024]).expect("write");
    assert!(open_err(&d).contains("is corrupt (redb:"));
    let d = root.path().join("header");
    let file = write_file(&d, &good, None);
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[..4096].fill(0);
    std::fs::write(&file, bytes).expect("write");
    open_err(&d);
}

#[test]
fn every_page_of_a_small_file_damaged_in_turn_is_an_error_or_harmless_never_a_panic() {
    let root = tempfile::tempdir().expect("tempdir");
    let src = root.path().join("src");
    let rows: Vec<(u64, Vec<u8>)> = (1..=40).map(|i| (i, sealed(i))).collect();
    let file = write_file(&src, &rows, None);
    let original = std::fs::read(&file).expect("read");
    for page in 0..original.len() / 4096 {
        let d = root.path().join(format!("p{page}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        let mut bytes = original.clone();
        for (i, b) in bytes[page * 4096..(page + 1) * 4096].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) ^ 0xa5;
        }
        std::fs::write(d.join(DATA_FILE), &bytes).expect("write");
        // `open_dir` itself must not panic; what it opens must be what was written.
        match LogStore::open_dir(&d) {
            Ok(store) => {
                let c = store.cache.lock().expect("cache");
                for (i, e) in &c.entries {
                    assert_eq!(*e, entry(*i), "page {page}");
                }
            }
            Err(e) => assert!(e.is_corruption(), "page {page}: {e}"),
        }
    }
}

/// A data directory written before the WAL (its log in redb's `raft_log` table) is migrated at
/// open: the entries move to the WAL, the table is emptied, and a migration interrupted after
/// the WAL was written (the table still full, stale segments beside it) is simply done again.
#[test]
fn an_old_redb_log_is_migrated_to_the_wal_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("raft");
    let rows: Vec<(u64, Vec<u8>)> = (1..=12).map(|i| (i, sealed(i))).collect();
    let vote = serde_json::to_vec(&Vote::new(3, 2)).expect("json");
    let file = write_file(
        &dir,
        &rows,
        Some(record::seal(&meta_context("vote"), &vote)),
    );
    // Stale segments from an interrupted migration: overwritten, not trusted.
    let wal_dir = dir.join(wal::WAL_DIR);
    wal::write_all(&wal_dir, &[(1, codec::encode(&entry(1)).expect("encode"))]).expect("stale");
    std::fs::write(wal_dir.join(wal::segment_name(2)), b"junk").expect("junk");

    let check = |store: &LogStore| {
        let c = store.cache.lock().expect("cache");
        assert_eq!(
            c.entries.keys().copied().collect::<Vec<_>>(),
            (1..=12).collect::<Vec<_>>()
        );
        for (i, e) in &c.entries {
            assert_eq!(*e, entry(*i));
        }
        assert_eq!(c.vote, Some(Vote::new(3, 2)));
    };
    let store = LogStore::open_dir(&dir).expect("migrates");
    check(&store);
    drop(store);
    {
        let db = when_closed(|| Database::open(&file).ok());
        let rtx = db.begin_read().expect("read");
        let logs = rtx.open_table(LOGS).expect("logs");
        assert!(
            logs.iter().expect("iter").next().is_none(),
            "the redb log is emptied"
        );
    }
    assert!(!wal_dir.join(wal::segment_name(2)).exists());
    // The second start reads the WAL alone.
    let store = when_closed(|| LogStore::open_dir(&dir).ok());
    check(&store);
}

/// `open` once the writer thread of a dropped store has let go of the file.
fn when_closed<T>(open: impl Fn() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(t) = open() {
            return t;
        }
        assert!(std::time::Instant::now() < deadline, "the file stays open");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Truncate and purge through openraft's storage API reach the disk: after a reopen the log
/// is what the cache said, and the purge point is kept.
#[tokio::test]
async fn truncate_and_purge_through_the_storage_api_survive_a_reopen() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("raft");
    let rows: Vec<(u64, Vec<u8>)> = (1..=30).map(|i| (i, sealed(i))).collect();
    write_file(&dir, &rows, None);
    let mut store = LogStore::open_with(&dir, 300).expect("opens");
    store.truncate(entry(25).log_id).await.expect("truncate");
    store.purge(entry(9).log_id).await.expect("purge");
    let state = store.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(entry(9).log_id));
    assert_eq!(state.last_log_id, Some(entry(24).log_id));
    // Wait for the writer: a durable vote goes through the same queue, after the purge.
    store.save_vote(&Vote::new(4, 1)).await.expect("vote");
    drop(store);
    let mut store = when_closed(|| LogStore::open_with(&dir, 300).ok());
    let state = store.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(entry(9).log_id));
    assert_eq!(state.last_log_id, Some(entry(24).log_id));
    let got = store.try_get_log_entries(0..100).await.expect("read");
    assert_eq!(
        got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        (10..=24).collect::<Vec<_>>()
    );
}
