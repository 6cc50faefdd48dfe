//! The write-ahead spool: an accepted request is appended here and fsynced
//! before the client hears success, and replayed after a crash.
//!
//! Layout of the directory: segment files `<first seq>.seg` holding
//! checksummed entries ([`entry`]), and `checkpoint.json` ([`Checkpoint`]),
//! replaced atomically, saying what the pipeline behind has stored. Segments
//! wholly before the checkpoint are deleted.
//!
//! Invariants:
//! - [`Spool::append`] returns only after the entries are on disk (fsync);
//!   on error nothing of the call is left in the segment.
//! - A torn tail (a write cut short by a crash: never acknowledged) is found
//!   at open, cut off and counted; it is never replayed.
//! - When the spool holds `max_bytes`, appends fail with [`SpoolError::Full`]
//!   (clients get a retryable answer) instead of dropping anything.

#![forbid(unsafe_code)]

mod checkpoint;
pub mod entry;

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};

pub use checkpoint::{Checkpoint, CheckpointBuilder};
pub use entry::Entry;

/// The checkpoint's file in the spool directory.
const CHECKPOINT_FILE: &str = "checkpoint.json";

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The spool holds its configured maximum.
    #[error("spool full: {bytes} bytes held, limit {limit} (the sink is behind)")]
    Full {
        /// Bytes held.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The checkpoint file is unreadable.
    #[error("spool checkpoint {path}: {reason}")]
    Checkpoint {
        /// Its path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl SpoolError {
    fn io(what: impl Into<String>, source: std::io::Error) -> SpoolError {
        SpoolError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Settings of a spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The directory (created when missing).
    pub dir: PathBuf,
    /// A new segment file starts after this many bytes.
    pub segment_bytes: u64,
    /// Appends fail with [`SpoolError::Full`] beyond this many bytes held.
    pub max_bytes: u64,
}

/// What opening a spool found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Entries intact on disk.
    pub entries: u64,
    /// Entries the pipeline must replay (not fully stored before).
    pub to_replay: u64,
    /// Bytes of torn tail cut off (a crash mid-append; never acknowledged).
    pub torn_tail_bytes: u64,
    /// Segments with a corrupt entry before their end (entries after it are lost).
    pub corrupt_segments: u64,
    /// The checkpoint found.
    pub checkpoint: Checkpoint,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
}

/// An open spool.
pub struct Spool {
    config: SpoolConfig,
    segments: Vec<Segment>,
    active: File,
    next_seq: u64,
    bytes: u64,
    checkpoint: Checkpoint,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.config.dir)
            .field("segments", &self.segments.len())
            .field("next_seq", &self.next_seq)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// Writes every piece, in order, with as few `writev` calls as the kernel
/// allows (`Write::write_all_vectored` is not stable yet).
fn write_all_vectored(file: &mut File, mut pieces: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut pieces, 0);
    while !pieces.is_empty() {
        match file.write_vectored(pieces) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut pieces, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// Writes the checkpoint of the spool in `dir` atomically and durably
/// (fsyncs): the first step of [`Spool::commit`], which needs no [`Spool`].
pub fn store_checkpoint(dir: &Path, checkpoint: &Checkpoint) -> Result<(), SpoolError> {
    checkpoint.store(&dir.join(CHECKPOINT_FILE))
}

/// Deletes segment files [`Spool::adopt`] released: the last step of
/// [`Spool::commit`].
pub fn remove_segments(paths: &[PathBuf]) -> Result<(), SpoolError> {
    for path in paths {
        std::fs::remove_file(path)
            .map_err(|e| SpoolError::io(format!("removing {}", path.display()), e))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::io(format!("syncing directory {}", dir.display()), e))
}

/// Scans one segment: its intact entries (by callback), where they end, and
/// why it stopped at a corrupt entry (`None` at a clean or torn end).
fn scan(bytes: &[u8], mut each: impl FnMut(Entry)) -> (usize, Option<&'static str>) {
    let mut at = 0;
    while at < bytes.len() {
        match entry::decode(&bytes[at..]) {
            entry::Read::Entry(e, len) => {
                each(e);
                at += len;
            }
            entry::Read::Truncated => return (at, None),
            entry::Read::Corrupt(why) => return (at, Some(why)),
        }
    }
    (at, None)
}

impl Spool {
    /// Opens (or creates) the spool in `config.dir`, cutting off a torn tail.
    pub fn open(config: SpoolConfig) -> Result<(Spool, OpenReport), SpoolError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| SpoolError::io(format!("creating {}", dir.display()), e))?;
        let checkpoint = Checkpoint::load(&dir.join(CHECKPOINT_FILE))?.unwrap_or_default();
        let mut firsts: Vec<u64> = std::fs::read_dir(&dir)
            .map_err(|e| SpoolError::io(format!("listing {}", dir.display()), e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        firsts.sort_unstable();
        let mut report = OpenReport {
            checkpoint: checkpoint.clone(),
            ..OpenReport::default()
        };
        let mut segments = Vec::new();
        let mut next_seq = checkpoint.replay_from;
        let last = firsts.len().checked_sub(1);
        for (i, first) in firsts.into_iter().enumerate() {
            let path = segment_path(&dir, first);
            let bytes = std::fs::read(&path)
                .map_err(|e| SpoolError::io(format!("reading {}", path.display()), e))?;
            let (end, corrupt) = scan(&bytes, |e| {
                report.entries += 1;
                if !checkpoint.is_done(e.seq) {
                    report.to_replay += 1;
                }
                next_seq = next_seq.max(e.seq + 1);
            });
            let is_last = Some(i) == last;
            if end < bytes.len() {
                if is_last {
                    // A crash mid-append: those bytes were never acknowledged.
                    report.torn_tail_bytes += (bytes.len() - end) as u64;
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| SpoolError::io(format!("opening {}", path.display()), e))?;
                    f.set_len(end as u64)
                        .and_then(|()| f.sync_all())
                        .map_err(|e| SpoolError::io(format!("truncating {}", path.display()), e))?;
                } else if corrupt.is_some() {
                    report.corrupt_segments += 1;
                }
            }
            segments.push(Segment {
                first_seq: first,
                path,
                bytes: end as u64,
            });
        }
        if segments.is_empty() {
            let path = segment_path(&dir, next_seq);
            segments.push(Segment {
                first_seq: next_seq,
                path,
                bytes: 0,
            });
        }
        let active = Self::open_active(&segments[segments.len() - 1].path)?;
        sync_dir(&dir)?;
        let bytes = segments.iter().map(|s| s.bytes).sum();
        Ok((
            Spool {
                config,
                segments,
                active,
                next_seq,
                bytes,
                checkpoint,
                buf: Vec::new(),
            },
            report,
        ))
    }

    fn open_active(path: &Path) -> Result<File, SpoolError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| SpoolError::io(format!("opening {}", path.display()), e))
    }

    /// The sequence number the next appended entry must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Bytes held on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The last checkpoint committed (or found at open).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Calls `each` with every entry a restart must replay, in order.
    pub fn replay(&self, mut each: impl FnMut(Entry)) -> Result<(), SpoolError> {
        for s in &self.segments {
            let bytes = std::fs::read(&s.path)
                .map_err(|e| SpoolError::io(format!("reading {}", s.path.display()), e))?;
            let held = &bytes[..(s.bytes as usize).min(bytes.len())];
            scan(held, |e| {
                if !self.checkpoint.is_done(e.seq) {
                    each(e)
                }
            });
        }
        Ok(())
    }

    /// Appends entries (their `seq` must run on from [`Spool::next_seq`]) and
    /// fsyncs: on `Ok` they survive a crash.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), SpoolError> {
        if entries.is_empty() {
            return Ok(());
        }
        // The entries' heads go into one buffer; their bodies are written
        // from where they are (one vectored write, no copy of the bodies).
        self.buf.clear();
        let mut head_ends = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            debug_assert_eq!(
                e.seq,
                self.next_seq + i as u64,
                "spool seqs must be consecutive"
            );
            entry::encode_head(e, &mut self.buf);
            head_ends.push(self.buf.len());
        }
        let add = (self.buf.len() + entries.iter().map(|e| e.body.len()).sum::<usize>()) as u64;
        if self.bytes + add > self.config.max_bytes {
            return Err(SpoolError::Full {
                bytes: self.bytes,
                limit: self.config.max_bytes,
            });
        }
        if self.active_bytes() >= self.config.segment_bytes {
            self.rotate()?;
        }
        let idx = self.segments.len() - 1;
        let path = self.segments[idx].path.clone();
        let before = self.segments[idx].bytes;
        let mut pieces = Vec::with_capacity(2 * entries.len());
        let mut head_start = 0;
        for (e, &head_end) in entries.iter().zip(&head_ends) {
            pieces.push(IoSlice::new(&self.buf[head_start..head_end]));
            pieces.push(IoSlice::new(&e.body));
            head_start = head_end;
        }
        let written = write_all_vectored(&mut self.active, &mut pieces)
            .and_then(|()| self.active.sync_data());
        if let Err(e) = written {
            // Leave no partial entry behind: the segment ends where it did.
            let _ = self.active.set_len(before);
            return Err(SpoolError::io(
                format!("appending to {}", path.display()),
                e,
            ));
        }
        self.segments[idx].bytes += add;
        self.bytes += add;
        self.next_seq += entries.len() as u64;
        Ok(())
    }

    fn active_bytes(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.bytes)
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        let path = segment_path(&self.config.dir, self.next_seq);
        self.active = Self::open_active(&path)?;
        sync_dir(&self.config.dir)?;
        self.segments.push(Segment {
            first_seq: self.next_seq,
            path,
            bytes: 0,
        });
        Ok(())
    }

    /// Records what the pipeline has stored, then deletes segments that hold
    /// only entries before `checkpoint.replay_from` (all of them, when
    /// everything appended is stored).
    pub fn commit(&mut self, checkpoint: Checkpoint) -> Result<(), SpoolError> {
        store_checkpoint(&self.config.dir, &checkpoint)?;
        let released = self.adopt(checkpoint)?;
        remove_segments(&released)
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Takes a checkpoint already made durable by [`store_checkpoint`]: starts
    /// a fresh segment when everything appended is stored, and forgets the
    /// segments that hold only entries before `checkpoint.replay_from`,
    /// returning their files for [`remove_segments`]. [`Spool::commit`] in
    /// three steps, so that a caller sharing the spool with appending threads
    /// holds it only for this one (the other two wait on the disk).
    pub fn adopt(&mut self, checkpoint: Checkpoint) -> Result<Vec<PathBuf>, SpoolError> {
        self.checkpoint = checkpoint;
        // Everything stored: start a fresh segment so the old one can go.
        if self.checkpoint.replay_from >= self.next_seq && self.active_bytes() > 0 {
            self.rotate()?;
        }
        let mut released = Vec::new();
        while self.segments.len() > 1 && self.segments[1].first_seq <= self.checkpoint.replay_from {
            let s = self.segments.remove(0);
            self.bytes -= s.bytes;
            released.push(s.path);
        }
        Ok(released)
    }
}
