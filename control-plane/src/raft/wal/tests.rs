//! The WAL on real files: round trips across segments, torn tails, zeroed tails, damage in the
//! middle, truncate and purge across segment boundaries, and kill -9 of a child process in the
//! middle of appends.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use super::*;
use crate::raft::{LogId, Request};
use openraft::{CommittedLeaderId, EntryPayload};

/// Entry `index`, with a payload whose size varies with the index.
fn entry(index: u64) -> Entry {
    let payload = if index.is_multiple_of(3) {
        EntryPayload::Blank
    } else {
        EntryPayload::Normal(Request::new(Vec::new()))
    };
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1 + index / 50, 1), index),
        payload,
    }
}

fn append(wal: &mut Wal, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        let bytes = codec::encode(&entry(i)).expect("encode");
        wal.append(i, &bytes).expect("append");
    }
    wal.sync().expect("sync");
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

fn reopen(dir: &Path, seg: u64) -> (Wal, Vec<Entry>) {
    let (wal, entries) = Wal::open(dir, seg).expect("opens");
    for e in &entries {
        assert_eq!(
            *e,
            entry(e.log_id.index),
            "entry {} as written",
            e.log_id.index
        );
    }
    (wal, entries)
}

fn open_err(dir: &Path, seg: u64) -> String {
    match Wal::open(dir, seg) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => {
            assert!(e.is_corruption(), "{e}");
            e.to_string()
        }
    }
}

/// Small segments: a few records each.
const SMALL: u64 = 200;

#[test]
fn entries_round_trip_across_segments_and_appends_continue_after_reopen() {
    let d = tempfile::tempdir().expect("tempdir");
    let (mut wal, entries) = reopen(d.path(), SMALL);
    assert!(entries.is_empty());
    append(&mut wal, 1..=40);
    assert!(wal.segment_files().len() > 3, "{:?}", wal.segment_files());
    drop(wal);
    let (mut wal, entries) = reopen(d.path(), SMALL);
    assert_eq!(indexes(&entries), (1..=40).collect::<Vec<_>>());
    append(&mut wal, 41..=60);
    drop(wal);
    let (_, entries) = reopen(d.path(), SMALL);
    assert_eq!(indexes(&entries), (1..=60).collect::<Vec<_>>());
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files.pop().expect("a segment")
}

#[test]
fn a_torn_last_record_is_cut_at_every_byte() {
    let d = tempfile::tempdir().expect("tempdir");
    let src = d.path().join("src");
    let (mut wal, _) = reopen(&src, SEGMENT_BYTES);
    append(&mut wal, 1..=5);
    drop(wal);
    let file = last_segment(&src);
    let full = std::fs::read(&file).expect("read");
    let record = codec::encode(&entry(5)).expect("encode").len() + RECORD_HEADER;
    let start = full.len() - record;
    for cut in start + 1..full.len() {
        let dir = d.path().join(format!("cut{cut}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(file.file_name().expect("name")), &full[..cut]).expect("write");
        let (mut wal, entries) = reopen(&dir, SEGMENT_BYTES);
        assert_eq!(indexes(&entries), vec![1, 2, 3, 4], "cut at {cut}");
        assert_eq!(
            std::fs::metadata(last_segment(&dir)).expect("stat").len(),
            start as u64,
            "the torn bytes are gone"
        );
        // The log goes on where the intact prefix ends.
        append(&mut wal, 5..=6);
        drop(wal);
        let (_, entries) = reopen(&dir, SEGMENT_BYTES);
        assert_eq!(indexes(&entries), (1..=6).collect::<Vec<_>>());
    }
    // A bad CRC in the last record, nothing behind it: torn too.
    let dir = d.path().join("crc");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut bytes = full.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(dir.join(file.file_name().expect("name")), &bytes).expect("write");
    let (_, entries) = reopen(&dir, SEGMENT_BYTES);
    assert_eq!(indexes(&entries), vec![1, 2, 3, 4]);
}

#[test]
fn a_zeroed_tail_is_cut_and_a_half_written_segment_header_is_removed() {
    let d = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = reopen(d.path(), SEGMENT_BYTES);
    append(&mut wal, 1..=3);
    drop(wal);
    let file = last_segment(d.path());
    let len = std::fs::metadata(&file).expect("stat").len();
    // A preallocated (or extended but never written) tail reads back as zeroes.
    let f = OpenOptions::new().write(true).open(&file).expect("open");
    f.set_len(len + 4096).expect("extend");
    drop(f);
    let (mut wal, entries) = reopen(d.path(), SEGMENT_BYTES);
    assert_eq!(indexes(&entries), vec![1, 2, 3]);
    assert_eq!(std::fs::metadata(&file).expect("stat").len(), len);
    append(&mut wal, 4..=4);
    drop(wal);
    // A crash while the next segment was created: its header is incomplete.
    std::fs::write(d.path().join(segment_name(5)), &MAGIC[..3]).expect("write");
    let (_, entries) = reopen(d.path(), SEGMENT_BYTES);
    assert_eq!(indexes(&entries), vec![1, 2, 3, 4]);
    assert!(!d.path().join(segment_name(5)).exists());
}

#[test]
fn damage_in_the_middle_is_an_error_naming_file_and_offset() {
    let d = tempfile::tempdir().expect("tempdir");
    let src = d.path().join("src");
    let (mut wal, _) = reopen(&src, SMALL);
    append(&mut wal, 1..=30);
    let files = wal.segment_files();
    drop(wal);
    assert!(files.len() >= 3);
    let copy = |name: &str| {
        let dir = d.path().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in &files {
            std::fs::copy(f, dir.join(f.file_name().expect("name"))).expect("copy");
        }
        dir
    };
    // A flipped byte in the last segment's first record, intact records behind it.
    let dir = d.path().join("middle");
    let (mut one, _) = reopen(&dir, SEGMENT_BYTES);
    append(&mut one, 1..=10);
    drop(one);
    let last = dir.join(segment_name(1));
    let mut bytes = std::fs::read(&last).expect("read");
    bytes[HEADER as usize + RECORD_HEADER + 1] ^= 0x10;
    std::fs::write(&last, &bytes).expect("write");
    let e = open_err(&dir, SEGMENT_BYTES);
    assert!(
        e.contains(&last.display().to_string())
            && e.contains("record at byte offset 8")
            && e.contains("CRC32C mismatch")
            && e.contains("log index 1")
            && e.contains("intact records behind it"),
        "{e}"
    );
    // A damaged tail of a segment that is not the last: never cut, always an error.
    let dir = copy("earlier");
    let first = dir.join(files[0].file_name().expect("name"));
    let mut bytes = std::fs::read(&first).expect("read");
    let end = bytes.len() - 1;
    bytes[end] ^= 0x01;
    std::fs::write(&first, &bytes).expect("write");
    let e = open_err(&dir, SMALL);
    assert!(
        e.contains(&first.display().to_string()) && e.contains("not the last segment"),
        "{e}"
    );
    // Another file's bytes under a segment's name.
    let dir = copy("foreign");
    std::fs::write(
        dir.join(files[1].file_name().expect("name")),
        b"hello, world",
    )
    .expect("w");
    assert!(open_err(&dir, SMALL).contains("not a Tribune WAL segment"));
    // A newer segment format is refused by name.
    let dir = copy("newer");
    let mut bytes = std::fs::read(&files[0]).expect("read");
    bytes[7] = 2;
    std::fs::write(dir.join(files[0].file_name().expect("name")), &bytes).expect("write");
    assert!(open_err(&dir, SMALL).contains("format 2"));
    // A record that is intact but sits at the wrong index.
    let dir = d.path().join("moved");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut bytes = MAGIC.to_vec();
    for i in [1u64, 2, 4] {
        frame_into(&codec::encode(&entry(i)).expect("encode"), &mut bytes);
    }
    frame_into(&codec::encode(&entry(5)).expect("encode"), &mut bytes);
    std::fs::write(dir.join(segment_name(1)), &bytes).expect("write");
    assert!(open_err(&dir, SMALL).contains("holds log index 4 where index 3 should be"));
}

#[test]
fn truncate_and_purge_across_segment_boundaries() {
    let d = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = reopen(d.path(), SMALL);
    append(&mut wal, 1..=40);
    let before = wal.segment_files().len();
    // Truncate in the middle of an early segment: later segments go, the log ends at 11.
    wal.truncate(12).expect("truncate");
    wal.sync().expect("sync");
    assert!(wal.segment_files().len() < before);
    assert_eq!(wal.next_index(), Some(12));
    append(&mut wal, 12..=30);
    drop(wal);
    let (mut wal, entries) = reopen(d.path(), SMALL);
    assert_eq!(indexes(&entries), (1..=30).collect::<Vec<_>>());
    // Truncate exactly at a segment's first entry.
    let firsts: Vec<u64> = wal
        .segment_files()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().and_then(parse_name))
        .collect();
    let at = firsts[2];
    wal.truncate(at).expect("truncate");
    assert_eq!(wal.next_index(), Some(at));
    append(&mut wal, at..=35);
    // An append at an index already there truncates first.
    append(&mut wal, 33..=34);
    drop(wal);
    let (mut wal, entries) = reopen(d.path(), SMALL);
    assert_eq!(indexes(&entries), (1..=34).collect::<Vec<_>>());

    // Purge: only whole segments at or below the point go; what remains is a suffix.
    let firsts: Vec<u64> = wal
        .segment_files()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().and_then(parse_name))
        .collect();
    let upto = firsts[2] + 1;
    wal.purge(upto).expect("purge");
    wal.sync().expect("sync");
    let left: Vec<u64> = wal
        .segment_files()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().and_then(parse_name))
        .collect();
    assert_eq!(left[0], firsts[2], "the segment holding {upto} stays");
    drop(wal);
    let (mut wal, entries) = reopen(d.path(), SMALL);
    assert_eq!(indexes(&entries), (firsts[2]..=34).collect::<Vec<_>>());
    // Purge past the end (a snapshot installed ahead of the log): everything goes, and the
    // next append starts a new segment at its own index.
    wal.purge(100).expect("purge");
    assert!(wal.segment_files().is_empty());
    append(&mut wal, 101..=103);
    drop(wal);
    let (_, entries) = reopen(d.path(), SMALL);
    assert_eq!(indexes(&entries), vec![101, 102, 103]);
}

#[test]
fn a_failed_write_is_an_io_error_and_stops_the_log() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path().join("wal");
    // Segments of one record: the next append creates a segment, in a directory that is gone.
    let (mut wal, _) = reopen(&dir, 1);
    append(&mut wal, 1..=1);
    std::fs::remove_dir_all(&dir).expect("rm");
    let bytes = codec::encode(&entry(2)).expect("encode");
    let e = wal
        .append(2, &bytes)
        .and_then(|()| wal.sync())
        .expect_err("no directory");
    assert!(!e.is_corruption(), "an environment problem: {e}");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let e = wal
        .append(3, &bytes)
        .and_then(|()| wal.sync())
        .expect_err("refused");
    assert!(e.to_string().contains("an earlier write failed"), "{e}");
}

const CHILD_DIR: &str = "TRIBUNE_WAL_CRASH_CHILD_DIR";

/// Not a test on its own: the child of `kill_9_during_appends_keeps_every_acknowledged_entry`.
/// It appends in groups of 1..=16 entries, syncs each group and prints the last index of each
/// group once it is durable, until it is killed.
#[test]
fn wal_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let (mut wal, _) = Wal::open(&dir, 4096).expect("child opens");
    let mut next = wal.next_index().unwrap_or(1);
    let mut out = std::io::stdout().lock();
    let mut n = 0u64;
    loop {
        n += 1;
        let group = 1 + (n * 7 + next) % 16;
        for i in next..next + group {
            let bytes = codec::encode(&entry(i)).expect("encode");
            wal.append(i, &bytes).expect("append");
        }
        next += group;
        wal.sync().expect("sync");
        writeln!(out, "acked {}", next - 1).expect("stdout");
        out.flush().expect("flush");
    }
}

#[test]
fn kill_9_during_appends_keeps_every_acknowledged_entry() {
    let d = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut acked = 0u64;
    for round in 0..25 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "raft::wal::tests::wal_crash_child",
                "--nocapture",
            ])
            .env(CHILD_DIR, d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a random number of acknowledged groups, then a random few microseconds
        // more, so the kill lands anywhere in a write.
        let wait_for = rand() % 40;
        let mut seen = 0;
        while seen <= wait_for {
            let Some(Ok(line)) = lines.next() else {
                panic!("round {round}: the child stopped before it was killed");
            };
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().expect("index");
                seen += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(rand() % 2000));
        child.kill().expect("kill -9");
        // Acknowledgements printed before the kill landed count too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().expect("index");
            }
        }
        child.wait().expect("reap");
        let (_, entries) = reopen(d.path(), 4096);
        let got = indexes(&entries);
        assert_eq!(
            got,
            (1..=got.len() as u64).collect::<Vec<_>>(),
            "round {round}: a clean prefix"
        );
        assert!(
            got.len() as u64 >= acked,
            "round {round}: acknowledged up to {acked}, recovered {}",
            got.len()
        );
    }
    assert!(acked > 25, "the children appended something ({acked})");
}
