//! The spool keeps what it acknowledged across reopen, cuts torn tails,
//! honours checkpoints, deletes stored segments and refuses when full.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;

use bytes::Bytes;
use claudewatch_spool::{CheckpointBuilder, Entry, Spool, SpoolConfig, SpoolError};

fn config(dir: &std::path::Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        segment_bytes: 1 << 20,
        max_bytes: 1 << 30,
    }
}

/// A config whose segments rotate after every small append.
fn small_segments(dir: &std::path::Path) -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 100,
        ..config(dir)
    }
}

fn entry(seq: u64, body: &str) -> Entry {
    Entry {
        seq,
        signal: 0,
        encoding: (seq % 2) as u8,
        tenant: seq.is_multiple_of(3).then(|| format!("tenant-{seq}")),
        arrived_unix_ns: 1_000 + seq,
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

fn append_n(spool: &mut Spool, n: u64) -> Vec<Entry> {
    let start = spool.next_seq();
    let entries: Vec<Entry> = (start..start + n)
        .map(|s| entry(s, &format!("body {s}")))
        .collect();
    spool.append(&entries).unwrap();
    entries
}

fn replayed(spool: &Spool) -> Vec<Entry> {
    let mut out = Vec::new();
    spool.replay(|e| out.push(e)).unwrap();
    out
}

#[test]
fn a_batch_is_written_frame_by_frame_as_encode_lays_it_out() {
    // Heads and bodies go out in one vectored write: the file must hold
    // exactly the frames `encode` makes, empty bodies included.
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path())).unwrap();
    let big = "x".repeat(70_000);
    let entries = vec![
        entry(0, ""),
        entry(1, &big),
        entry(2, "small"),
        entry(3, ""),
    ];
    spool.append(&entries).unwrap();
    let mut expected = Vec::new();
    for e in &entries {
        claudewatch_spool::entry::encode(e, &mut expected);
    }
    let segment = dir.path().join(format!("{:020}.seg", 0));
    assert_eq!(std::fs::read(segment).unwrap(), expected);
    drop(spool);
    let (spool, report) = Spool::open(config(dir.path())).unwrap();
    assert_eq!(report.entries, 4);
    assert_eq!(replayed(&spool), entries);
}

#[test]
fn what_was_appended_is_replayed_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, report) = Spool::open(config(dir.path())).unwrap();
    assert_eq!(report.entries, 0);
    let mut all = append_n(&mut spool, 3);
    all.extend(append_n(&mut spool, 2));
    drop(spool);
    let (spool, report) = Spool::open(config(dir.path())).unwrap();
    assert_eq!(
        (report.entries, report.to_replay, report.torn_tail_bytes),
        (5, 5, 0)
    );
    assert_eq!(spool.next_seq(), 5);
    assert_eq!(replayed(&spool), all);
}

#[test]
fn a_torn_tail_is_cut_counted_and_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path())).unwrap();
    let all = append_n(&mut spool, 3);
    drop(spool);
    // A crash in the middle of the fourth append: half a frame on disk.
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut frame = Vec::new();
    claudewatch_spool::entry::encode(&entry(3, "never acknowledged"), &mut frame);
    let torn = frame.len() / 2;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&frame[..torn])
        .unwrap();
    let (mut spool, report) = Spool::open(config(dir.path())).unwrap();
    assert_eq!(report.torn_tail_bytes, torn as u64);
    assert_eq!(report.entries, 3);
    assert_eq!(spool.next_seq(), 3);
    assert_eq!(replayed(&spool), all);
    // Appending after the cut gives a clean spool.
    append_n(&mut spool, 1);
    drop(spool);
    let (spool, report) = Spool::open(config(dir.path())).unwrap();
    assert_eq!((report.entries, report.torn_tail_bytes), (4, 0));
    assert_eq!(replayed(&spool).last().unwrap().body, Bytes::from("body 3"));
}

#[test]
fn a_checkpoint_limits_the_replay_and_frees_segments() {
    let dir = tempfile::tempdir().unwrap();
    let small = small_segments(dir.path());
    let (mut spool, _) = Spool::open(small.clone()).unwrap();
    for _ in 0..10 {
        append_n(&mut spool, 1);
    }
    let segments = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count()
    };
    assert!(segments() > 3, "small segments rotate");
    let held = spool.bytes();
    let mut cp = CheckpointBuilder::new(6, Some(1234));
    cp.done(7);
    cp.done(8);
    cp.partial(6, vec![3, 1]);
    spool.commit(cp.build()).unwrap();
    assert!(spool.bytes() < held, "segments before entry 6 are deleted");
    drop(spool);
    let (spool, report) = Spool::open(small).unwrap();
    assert_eq!(report.checkpoint.sink_position, Some(1234));
    assert!(report.checkpoint.is_stored(6, 1) && report.checkpoint.is_stored(6, 3));
    assert!(!report.checkpoint.is_stored(6, 2));
    let seqs: Vec<u64> = replayed(&spool).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![6, 9]);
    assert_eq!(report.to_replay, 2);
    assert_eq!(spool.next_seq(), 10);
}

#[test]
fn a_commit_in_three_steps_lets_appends_run_between_them() {
    let dir = tempfile::tempdir().unwrap();
    let small = small_segments(dir.path());
    let (mut spool, _) = Spool::open(small.clone()).unwrap();
    for _ in 0..6 {
        append_n(&mut spool, 1);
    }
    let files = || std::fs::read_dir(dir.path()).unwrap().count();
    // Step 1, without the spool: the checkpoint is durable.
    claudewatch_spool::store_checkpoint(spool.dir(), &CheckpointBuilder::new(4, None).build())
        .unwrap();
    // An append in between (the ingest thread).
    append_n(&mut spool, 1);
    // Step 2 forgets the spent segments but leaves their files to step 3.
    let held = spool.bytes();
    let before = files();
    let released = spool
        .adopt(CheckpointBuilder::new(4, None).build())
        .unwrap();
    assert!(!released.is_empty() && released.iter().all(|p| p.exists()));
    assert!(spool.bytes() < held);
    claudewatch_spool::remove_segments(&released).unwrap();
    assert_eq!(files(), before - released.len());
    drop(spool);
    let (spool, report) = Spool::open(small).unwrap();
    let seqs: Vec<u64> = replayed(&spool).iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![4, 5, 6]);
    assert_eq!(report.to_replay, 3);
}

#[test]
fn a_spool_whose_every_entry_is_stored_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(config(dir.path())).unwrap();
    append_n(&mut spool, 3);
    assert!(spool.bytes() > 0);
    spool
        .commit(CheckpointBuilder::new(spool.next_seq(), None).build())
        .unwrap();
    assert_eq!(spool.bytes(), 0);
    append_n(&mut spool, 1);
    drop(spool);
    let (spool, report) = Spool::open(config(dir.path())).unwrap();
    assert_eq!((report.entries, report.to_replay), (1, 1));
    assert_eq!(replayed(&spool)[0].seq, 3);
}

#[test]
fn a_full_spool_refuses_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tight = SpoolConfig {
        max_bytes: 120,
        ..config(dir.path())
    };
    let (mut spool, _) = Spool::open(tight.clone()).unwrap();
    append_n(&mut spool, 2);
    let held = spool.bytes();
    let big = entry(2, &"x".repeat(200));
    assert!(matches!(spool.append(&[big]), Err(SpoolError::Full { .. })));
    assert_eq!(spool.bytes(), held);
    assert_eq!(spool.next_seq(), 2);
    drop(spool);
    let (_, report) = Spool::open(tight).unwrap();
    assert_eq!((report.entries, report.torn_tail_bytes), (2, 0));
}

#[test]
fn a_corrupt_entry_inside_an_older_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let small = SpoolConfig {
        segment_bytes: 60,
        ..config(dir.path())
    };
    let (mut spool, _) = Spool::open(small.clone()).unwrap();
    for _ in 0..6 {
        append_n(&mut spool, 1);
    }
    drop(spool);
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&segs[0], bytes).unwrap();
    let (_, report) = Spool::open(small).unwrap();
    assert_eq!(report.corrupt_segments, 1);
    assert_eq!(report.torn_tail_bytes, 0);
}
