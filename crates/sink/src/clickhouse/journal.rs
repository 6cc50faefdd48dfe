//! The ClickHouse sink's own write-ahead journal: encoded rows, fsynced
//! before `flush` returns, inserted into ClickHouse in the background.
//!
//! It is a [`claudewatch_spool::Spool`] in its own directory (checksummed,
//! fsynced entries, torn tail cut at open, checkpoint of what is done), plus
//! `inserter.json`, replaced atomically, which holds:
//!
//! - `released`: entries below it are covered by a durable checkpoint of
//!   serve's spool, so they will never be produced again by a spool replay
//!   and may be inserted. Entries at or above it may still be discarded
//!   ([`Journal::discard_from`]) when serve restarts from an older checkpoint.
//! - `groups`: the batches planned for insertion (ranges of entries). A batch
//!   is planned, and the plan made durable, before its first insert attempt,
//!   so after a crash the same entries are inserted together again with the
//!   same deduplication token, and ClickHouse drops the copy.
//!
//! Entry payload: `u32 LE` row count, then the rows (RowBinary).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use claudewatch_spool::{CheckpointBuilder, Entry, Spool, SpoolConfig, SpoolError};
use serde::{Deserialize, Serialize};

use crate::SinkError;

/// The entry `encoding` code of this payload format.
const FORMAT: u8 = 1;

/// What `inserter.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    released: u64,
    groups: Vec<(u64, u64)>,
}

/// One journal entry waiting for ClickHouse.
#[derive(Debug, Clone)]
struct Pending {
    rows: u32,
    payload: Bytes,
    appended: Instant,
}

/// A batch to insert: consecutive journal entries.
#[derive(Debug, Clone)]
pub struct Group {
    /// First entry.
    pub first: u64,
    /// Last entry (inclusive).
    pub last: u64,
    /// Rows in all.
    pub rows: u64,
    /// The entries' row data, in order.
    pub payloads: Vec<Bytes>,
}

impl Group {
    /// The insert deduplication token: the entry range (position) and a hash
    /// of the rows (content), identical on every retry and after restarts.
    pub fn token(&self) -> String {
        let mut h = twox_hash::XxHash3_128::new();
        for p in &self.payloads {
            h.write(p);
        }
        format!("cw1-{}-{}-{:032x}", self.first, self.last, h.finish_128())
    }
}

/// Limits of the batches the journal plans.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Rows per batch (a larger single entry is a batch of its own).
    pub rows: u64,
    /// Bytes of row data per batch.
    pub bytes: u64,
    /// When more than a batch waits (ClickHouse is behind), one batch takes
    /// up to this many times the limits of the rows already waiting: fewer,
    /// larger inserts, so fewer parts for ClickHouse to write and merge
    /// while it catches up. 1: batches never exceed the limits.
    pub catch_up: u64,
    /// A batch smaller than the limits is cut once its oldest entry waited
    /// this long, or sooner when the journal was told nothing more is on its
    /// way ([`Journal::quiet`]) and no batch was cut early for that reason
    /// within this long: so small inserts, each a ClickHouse part for few
    /// rows, come at most about twice per `age` (one by age, one early).
    pub age: Duration,
}

/// Sizes for reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalSize {
    /// Entries not yet inserted.
    pub entries: u64,
    /// Rows not yet inserted.
    pub rows: u64,
    /// Bytes held on disk.
    pub bytes: u64,
}

/// One journal entry's rows, encoded in place after the entry's header (the
/// row count, filled in by [`Chunk::into_body`]): appending moves the buffer
/// into the journal instead of copying it.
#[derive(Debug, Clone)]
pub struct Chunk {
    body: Vec<u8>,
    rows: u32,
}

impl Chunk {
    /// Bytes before the rows: their count, `u32` little-endian.
    const HEADER: usize = 4;

    /// An empty chunk with room for `bytes` bytes of rows.
    pub fn with_capacity(bytes: usize) -> Chunk {
        let mut body = Vec::with_capacity(Self::HEADER + bytes);
        body.extend_from_slice(&[0; Self::HEADER]);
        Chunk { body, rows: 0 }
    }

    /// The buffer the next row is appended to (only appended to: what is
    /// before its end belongs to the chunk). Count the row with [`Chunk::add_row`].
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    /// Counts one more row appended to [`Chunk::buffer`].
    pub fn add_row(&mut self) {
        self.rows += 1;
    }

    /// Rows in the chunk.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// Bytes of rows in the chunk.
    pub fn len(&self) -> usize {
        self.body.len() - Self::HEADER
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The entry's body: the row count, then the rows. A buffer mostly empty
    /// (a small flush) is shrunk, so that waiting entries hold no slack.
    fn into_body(mut self) -> Vec<u8> {
        self.body[..Self::HEADER].copy_from_slice(&self.rows.to_le_bytes());
        if self.body.capacity() > self.body.len() + self.body.len() / 4 {
            self.body.shrink_to_fit();
        }
        self.body
    }
}

/// The journal (see the module documentation).
pub struct Journal {
    spool: Spool,
    dir: PathBuf,
    state: State,
    pending: BTreeMap<u64, Pending>,
    /// Entries done (inserted or discarded) at or above the spool's replay_from.
    done: BTreeSet<u64>,
    /// Planned groups currently being inserted.
    in_flight: BTreeSet<u64>,
    /// Nothing more on its way since the last append ([`Journal::quiet`]).
    quiet: bool,
    /// When the last batch was cut early because the journal was quiet.
    last_quiet_cut: Option<Instant>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SinkError {
    let what = what.into();
    move |source| SinkError::Io { what, source }
}

fn spool_err(e: SpoolError) -> SinkError {
    match e {
        SpoolError::Full { bytes, limit } => SinkError::Backlogged { bytes, limit },
        other => SinkError::Journal(other.to_string()),
    }
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, holding at most `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Journal, SinkError> {
        let (spool, report) = Spool::open(SpoolConfig {
            dir: dir.to_path_buf(),
            segment_bytes: (max_bytes / 8).clamp(1 << 20, 64 << 20),
            max_bytes,
        })
        .map_err(spool_err)?;
        if report.torn_tail_bytes > 0 {
            tracing::warn!(bytes = report.torn_tail_bytes, "ClickHouse journal: torn tail cut off (a flush cut short by a crash, never confirmed)");
        }
        if report.corrupt_segments > 0 {
            tracing::error!(
                segments = report.corrupt_segments,
                "ClickHouse journal: corrupt segments; entries after the damage are lost"
            );
        }
        let state_path = dir.join("inserter.json");
        let state: State = match std::fs::read(&state_path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| SinkError::Journal(format!("{}: {e}", state_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io(format!("reading {}", state_path.display()))(e)),
        };
        let mut pending = BTreeMap::new();
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        let mut bad = 0u64;
        spool
            .replay(|e: Entry| {
                let rows = (e.encoding == FORMAT && e.body.len() >= 4)
                    .then(|| u32::from_le_bytes([e.body[0], e.body[1], e.body[2], e.body[3]]));
                match rows {
                    Some(rows) => {
                        pending.insert(
                            e.seq,
                            Pending {
                                rows,
                                payload: e.body.slice(4..),
                                appended: long_ago,
                            },
                        );
                    }
                    None => bad += 1,
                }
            })
            .map_err(spool_err)?;
        if bad > 0 {
            tracing::error!(
                entries = bad,
                "ClickHouse journal: entries of an unknown format skipped"
            );
        }
        let mut journal = Journal {
            spool,
            dir: dir.to_path_buf(),
            state,
            pending,
            done: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            quiet: false,
            last_quiet_cut: None,
        };
        // Groups whose entries are all done were confirmed just before a crash.
        let pending = &journal.pending;
        journal
            .state
            .groups
            .retain(|&(a, b)| pending.range(a..=b).next().is_some());
        Ok(journal)
    }

    /// The number the next appended entry gets: the sink's position.
    pub fn next_seq(&self) -> u64 {
        self.spool.next_seq()
    }

    /// Entries below this may be inserted.
    pub fn released(&self) -> u64 {
        self.state.released
    }

    /// Sizes for reporting.
    pub fn size(&self) -> JournalSize {
        JournalSize {
            entries: self.pending.len() as u64,
            rows: self.pending.values().map(|p| u64::from(p.rows)).sum(),
            bytes: self.spool.bytes(),
        }
    }

    /// Appends one entry per chunk and fsyncs: on `Ok` they survive a crash.
    /// All or nothing.
    pub fn append(&mut self, chunks: Vec<Chunk>) -> Result<(), SinkError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let first = self.spool.next_seq();
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let rows: Vec<u32> = chunks.iter().map(Chunk::rows).collect();
        let entries: Vec<Entry> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| Entry {
                seq: first + i as u64,
                signal: 0,
                encoding: FORMAT,
                tenant: None,
                arrived_unix_ns: now_ns,
                body: Bytes::from(chunk.into_body()),
            })
            .collect();
        self.spool.append(&entries).map_err(spool_err)?;
        self.quiet = false;
        let now = Instant::now();
        for (e, rows) in entries.into_iter().zip(rows) {
            self.pending.insert(
                e.seq,
                Pending {
                    rows,
                    payload: e.body.slice(Chunk::HEADER..),
                    appended: now,
                },
            );
        }
        Ok(())
    }

    /// Entries below `position` are covered by serve's durable checkpoint:
    /// they may be inserted. Persisted, so a restart without a position
    /// (see [`Journal::discard_from`]) keeps them.
    pub fn release(&mut self, position: u64) -> Result<(), SinkError> {
        let position = position.min(self.next_seq());
        if position <= self.state.released {
            return Ok(());
        }
        let mut state = self.state.clone();
        state.released = position;
        self.store_state(&state)?;
        self.state = state;
        Ok(())
    }

    /// Drops the entries at or above `position` that were not released (serve
    /// restarted from a checkpoint taken before they were journaled: its spool
    /// replay produces their records again). Released entries are kept.
    pub fn discard_from(&mut self, position: u64) -> Result<u64, SinkError> {
        let from = position.max(self.state.released);
        if position < self.state.released {
            tracing::error!(position, released = self.state.released, "serve's checkpoint is older than what the ClickHouse journal already released: records between may be stored twice");
        }
        let doomed: Vec<u64> = self.pending.range(from..).map(|(&s, _)| s).collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        for s in &doomed {
            self.pending.remove(s);
            self.done.insert(*s);
        }
        self.commit()?;
        Ok(doomed.len() as u64)
    }

    /// Notes that nothing more is on its way for now: a smaller batch may go
    /// without waiting its full age (see [`BatchLimits::age`]), until the
    /// next append.
    pub fn quiet(&mut self) {
        self.quiet = true;
    }

    /// When a small batch may be cut early because the journal is quiet.
    /// Entries journaled but not yet released (serve's checkpoint that covers
    /// them is being written) are still on their way: the quiet batch waits
    /// for them, so the end of a burst goes in one insert rather than in two,
    /// the second held back by the limit of one early batch per age.
    fn quiet_due(&self, age: Duration) -> Option<Instant> {
        let all_released = self.state.released >= self.next_seq();
        (self.quiet && all_released).then(|| {
            self.last_quiet_cut
                .map_or_else(Instant::now, |cut| cut + age)
        })
    }

    /// The next batch to insert, planned durably: a planned batch not in
    /// flight first (after a restart), else a new one cut from the released
    /// entries once full or due by age (or at once with `force`).
    pub fn next_group(
        &mut self,
        limits: BatchLimits,
        force: bool,
    ) -> Result<Option<Group>, SinkError> {
        if let Some(&(a, b)) = self
            .state
            .groups
            .iter()
            .find(|(a, _)| !self.in_flight.contains(a))
        {
            self.in_flight.insert(a);
            return Ok(Some(self.group(a, b)));
        }
        let after = self.unplanned_from();
        let released = self.state.released;
        if after >= released {
            return Ok(None);
        }
        let mut it = self.pending.range(after..released).peekable();
        let Some((first, p)) = it.peek().map(|(s, p)| (**s, *p)) else {
            return Ok(None);
        };
        let oldest = p.appended;
        let catch_up = limits.catch_up.max(1);
        let (cap_rows, cap_bytes) = (
            limits.rows.saturating_mul(catch_up),
            limits.bytes.saturating_mul(catch_up),
        );
        let mut last = first;
        let mut rows = 0u64;
        let mut bytes = 0u64;
        // A batch's worth waits: cut now, taking what waits up to the cap.
        let mut full = false;
        for (&s, p) in it {
            let (r, b) = (u64::from(p.rows), p.payload.len() as u64);
            full |= rows + r > limits.rows || bytes + b > limits.bytes;
            if s != first && (rows + r > cap_rows || bytes + b > cap_bytes) {
                break;
            }
            rows += r;
            bytes += b;
            last = s;
            if rows >= cap_rows || bytes >= cap_bytes {
                break;
            }
        }
        full |= rows >= limits.rows || bytes >= limits.bytes;
        let quiet = self
            .quiet_due(limits.age)
            .is_some_and(|at| at <= Instant::now());
        let aged = oldest.elapsed() >= limits.age;
        if !(full || force || quiet || aged) {
            return Ok(None);
        }
        if !(full || force || aged) {
            self.last_quiet_cut = Some(Instant::now());
        }
        let reason = if full {
            "full"
        } else if force {
            "forced"
        } else if aged {
            "age"
        } else {
            "quiet"
        };
        tracing::debug!(
            first,
            last,
            rows,
            bytes,
            reason,
            "ClickHouse journal: batch cut"
        );
        let mut state = self.state.clone();
        state.groups.push((first, last));
        self.store_state(&state)?;
        self.state = state;
        self.in_flight.insert(first);
        Ok(Some(self.group(first, last)))
    }

    /// When the released entries not yet planned become due by age.
    pub fn next_due(&self, age: Duration) -> Option<Instant> {
        let after = self.unplanned_from();
        if after >= self.state.released {
            return None;
        }
        let oldest = self
            .pending
            .range(after..self.state.released)
            .next()
            .map(|(_, p)| p.appended + age)?;
        Some(self.quiet_due(age).map_or(oldest, |q| q.min(oldest)))
    }

    /// The first entry no planned batch covers.
    fn unplanned_from(&self) -> u64 {
        self.state
            .groups
            .iter()
            .map(|&(_, b)| b + 1)
            .max()
            .unwrap_or(0)
    }

    /// Whether released entries wait (planned or not).
    pub fn has_released_work(&self) -> bool {
        self.pending.range(..self.state.released).next().is_some()
    }

    fn group(&self, first: u64, last: u64) -> Group {
        let mut g = Group {
            first,
            last,
            rows: 0,
            payloads: Vec::new(),
        };
        for p in self.pending.range(first..=last).map(|(_, p)| p) {
            g.rows += u64::from(p.rows);
            g.payloads.push(p.payload.clone());
        }
        g
    }

    /// The batch starting at `first` is confirmed by ClickHouse.
    pub fn complete(&mut self, first: u64) -> Result<(), SinkError> {
        self.in_flight.remove(&first);
        let Some(pos) = self.state.groups.iter().position(|&(a, _)| a == first) else {
            return Ok(());
        };
        let (a, b) = self.state.groups[pos];
        let seqs: Vec<u64> = self.pending.range(a..=b).map(|(&s, _)| s).collect();
        for s in seqs {
            self.pending.remove(&s);
            self.done.insert(s);
        }
        self.commit()?;
        let mut state = self.state.clone();
        state.groups.remove(pos);
        self.store_state(&state)?;
        self.state = state;
        Ok(())
    }

    /// A batch's insert stopped before confirmation (shutdown): plan kept.
    pub fn abandon(&mut self, first: u64) {
        self.in_flight.remove(&first);
    }

    /// Writes the spool checkpoint: everything below the lowest pending entry
    /// is done, plus the done entries above it.
    fn commit(&mut self) -> Result<(), SinkError> {
        let replay_from = self
            .pending
            .keys()
            .next()
            .copied()
            .unwrap_or(self.spool.next_seq());
        self.done = self.done.split_off(&replay_from);
        let mut b = CheckpointBuilder::new(replay_from, None);
        for &s in &self.done {
            b.done(s);
        }
        self.spool.commit(b.build()).map_err(spool_err)
    }

    fn store_state(&self, state: &State) -> Result<(), SinkError> {
        let path = self.dir.join("inserter.json");
        let tmp = self.dir.join("inserter.json.tmp");
        let bytes = serde_json::to_vec(state).map_err(|e| SinkError::Journal(e.to_string()))?;
        let mut f =
            std::fs::File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("renaming {}", tmp.display())))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(format!("syncing {}", self.dir.display())))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        rows: 10,
        bytes: 1 << 20,
        catch_up: 1,
        age: Duration::from_secs(3600),
    };

    /// A journal in a new directory, which lives as long as the guard.
    fn fresh() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), 1 << 20).unwrap();
        (dir, j)
    }

    fn chunk(rows: u32, byte: u8) -> Chunk {
        raw_chunk(rows, vec![byte; 8])
    }

    fn raw_chunk(rows: u32, data: Vec<u8>) -> Chunk {
        let mut c = Chunk::with_capacity(data.len());
        c.buffer().extend_from_slice(&data);
        for _ in 0..rows {
            c.add_row();
        }
        c
    }

    #[test]
    fn only_released_entries_are_planned_and_plans_survive_a_restart() {
        let (dir, mut j) = fresh();
        j.append(vec![chunk(4, 1), chunk(4, 2), chunk(4, 3)])
            .unwrap();
        assert!(
            j.next_group(LIMITS, true).unwrap().is_none(),
            "nothing released"
        );
        j.release(3).unwrap();
        let g = j.next_group(LIMITS, false).unwrap().unwrap();
        assert_eq!((g.first, g.last, g.rows), (0, 1, 8));
        // Entry 2 is released but neither full nor old: only forced.
        assert!(j.next_group(LIMITS, false).unwrap().is_none());
        let token = g.token();
        drop(j);
        // A crash before the confirmation: the same batch, the same token.
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        let again = j.next_group(LIMITS, false).unwrap().unwrap();
        assert_eq!((again.first, again.last, again.token()), (0, 1, token));
        j.complete(0).unwrap();
        // Entry 2 is released, not full, but from before the restart: due at once.
        let g = j.next_group(LIMITS, false).unwrap().unwrap();
        assert_eq!((g.first, g.last), (2, 2));
        j.complete(2).unwrap();
        drop(j);
        let j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.size().entries, 0);
        assert_eq!(j.next_seq(), 3);
    }

    #[test]
    fn a_quiet_journal_sends_a_small_batch_early_but_at_most_once_per_age() {
        let (_dir, mut j) = fresh();
        j.append(vec![chunk(1, 1)]).unwrap();
        j.release(1).unwrap();
        assert!(
            j.next_group(LIMITS, false).unwrap().is_none(),
            "young and small"
        );
        j.quiet();
        let g = j.next_group(LIMITS, false).unwrap().unwrap();
        assert_eq!((g.first, g.last), (0, 0), "quiet: sent at once");
        let cut = Instant::now();
        j.append(vec![chunk(1, 2)]).unwrap();
        j.release(2).unwrap();
        j.quiet();
        assert!(
            j.next_group(LIMITS, false).unwrap().is_none(),
            "quiet again, but a batch went early just now"
        );
        let due = j.next_due(LIMITS.age).unwrap();
        assert!(due <= cut + LIMITS.age && due > Instant::now() + LIMITS.age / 2);
        // An append ends the quiet: back to the oldest entry's age.
        j.append(vec![chunk(1, 3)]).unwrap();
        j.release(3).unwrap();
        assert!(j.next_due(LIMITS.age).unwrap() > cut + LIMITS.age);
        // Full batches go at once and do not count as early ones.
        j.append(vec![chunk(8, 4)]).unwrap();
        j.release(4).unwrap();
        let g = j.next_group(LIMITS, false).unwrap().unwrap();
        assert_eq!((g.first, g.last, g.rows), (1, 3, 10));
    }

    #[test]
    fn a_quiet_batch_waits_for_the_journaled_entries_not_yet_released() {
        let (_dir, mut j) = fresh();
        // The end of a burst: two seals' rows journaled, serve's checkpoint
        // covers the first only so far, and nothing more is on its way.
        j.append(vec![chunk(2, 1)]).unwrap();
        j.release(1).unwrap();
        j.append(vec![chunk(1, 2)]).unwrap();
        j.quiet();
        assert!(
            j.next_group(LIMITS, false).unwrap().is_none(),
            "entry 1 is on its way: not quiet yet"
        );
        let oldest_due = j.next_due(LIMITS.age).unwrap();
        assert!(
            oldest_due > Instant::now() + LIMITS.age / 2,
            "due by age, not at once"
        );
        // The checkpoint lands: one batch takes both.
        j.release(2).unwrap();
        assert!(j.next_due(LIMITS.age).unwrap() <= Instant::now());
        let g = j.next_group(LIMITS, false).unwrap().unwrap();
        assert_eq!((g.first, g.last, g.rows), (0, 1, 3));
    }

    #[test]
    fn a_backlog_goes_in_larger_batches_up_to_the_catch_up_cap() {
        let (_dir, mut j) = fresh();
        let catch_up = BatchLimits {
            catch_up: 3,
            ..LIMITS
        };
        // Exactly a batch's worth waits: it goes at once, as it is.
        j.append(vec![chunk(4, 1), chunk(6, 2)]).unwrap();
        j.release(2).unwrap();
        let g = j.next_group(catch_up, false).unwrap().unwrap();
        assert_eq!((g.first, g.last, g.rows), (0, 1, 10));
        // Less than a batch waits: not cut (neither full nor old).
        j.append(vec![chunk(6, 3)]).unwrap();
        j.release(3).unwrap();
        assert!(j.next_group(catch_up, false).unwrap().is_none());
        // ClickHouse fell behind: 6 + 7 * 4 = 34 rows wait. One batch takes
        // them up to 3 batches' worth (30 rows), the rest waits for the next.
        let more: Vec<_> = (0..7).map(|i| chunk(4, 10 + i)).collect();
        j.append(more).unwrap();
        j.release(10).unwrap();
        let g = j.next_group(catch_up, false).unwrap().unwrap();
        assert_eq!((g.first, g.last, g.rows), (2, 8, 30));
        assert!(
            j.next_group(catch_up, false).unwrap().is_none(),
            "4 rows: not full"
        );
        // The same backlog without catch-up: batches of at most 10 rows.
        let (_dir, mut j) = fresh();
        let all: Vec<_> = (0..8).map(|i| chunk(4, i)).collect();
        j.append(all.clone()).unwrap();
        j.release(8).unwrap();
        let g = j.next_group(LIMITS, false).unwrap().unwrap();
        assert_eq!((g.first, g.last, g.rows), (0, 1, 8));
        // A planned catch-up batch survives a restart as it was cut.
        let (dir, mut j) = fresh();
        j.append(all.clone()).unwrap();
        j.release(8).unwrap();
        let g = j.next_group(catch_up, false).unwrap().unwrap();
        assert_eq!((g.first, g.last, g.rows), (0, 6, 28));
        drop(j);
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        let again = j.next_group(LIMITS, false).unwrap().unwrap();
        assert_eq!((again.first, again.last, again.token()), (0, 6, g.token()));
    }

    #[test]
    fn a_batch_cut_by_age_does_not_hold_back_the_quiet_rest() {
        let (_dir, mut j) = fresh();
        let short = BatchLimits {
            age: Duration::from_millis(30),
            ..LIMITS
        };
        j.append(vec![chunk(1, 1)]).unwrap();
        j.release(1).unwrap();
        std::thread::sleep(short.age);
        let g = j.next_group(short, false).unwrap().unwrap();
        assert_eq!((g.first, g.last), (0, 0), "cut by age");
        // The end of a burst: the last rows, then nothing more.
        j.append(vec![chunk(1, 2)]).unwrap();
        j.release(2).unwrap();
        j.quiet();
        let g = j.next_group(short, false).unwrap().unwrap();
        assert_eq!((g.first, g.last), (1, 1), "quiet: sent at once");
    }

    #[test]
    fn unreleased_entries_are_discarded_on_recovery() {
        let (dir, mut j) = fresh();
        j.append(vec![chunk(1, 1), chunk(1, 2)]).unwrap();
        j.release(1).unwrap();
        j.append(vec![chunk(1, 3)]).unwrap();
        drop(j);
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.discard_from(1).unwrap(), 2);
        assert_eq!(j.size().entries, 1);
        drop(j);
        let mut j = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(j.size().entries, 1);
        let g = j.next_group(LIMITS, true).unwrap().unwrap();
        assert_eq!((g.first, g.last), (0, 0));
    }

    #[test]
    fn a_full_journal_says_backlogged() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), 200).unwrap();
        j.append(vec![raw_chunk(1, vec![0; 100])]).unwrap();
        assert!(matches!(
            j.append(vec![raw_chunk(1, vec![0; 100])]),
            Err(SinkError::Backlogged { .. })
        ));
    }
}
