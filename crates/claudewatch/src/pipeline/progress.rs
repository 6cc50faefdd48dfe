//! Which spooled entries are stored downstream: the bookkeeping behind the
//! spool's checkpoints.
//!
//! An entry holds `total` observations (ordinals `0..total`). It is done when
//! every one of them was consumed by a record the sink flushed (or dropped as
//! a late duplicate, which the same flush covers). Only entries not yet done
//! are kept.

use std::collections::BTreeMap;

use claudewatch_enrich::Origin;
use claudewatch_spool::{Checkpoint, CheckpointBuilder};

#[derive(Debug, Default)]
struct EntryState {
    total: u32,
    stored: Vec<u32>,
}

/// Entries with observations not yet stored.
#[derive(Debug, Default)]
pub struct Progress {
    open: BTreeMap<u64, EntryState>,
}

impl Progress {
    /// Entry `seq` holds `total` observations, of which `stored` are already
    /// stored (a replay after a crash); an entry with none left is not kept.
    pub fn entry(&mut self, seq: u64, total: u32, stored: Vec<u32>) {
        if (stored.len() as u32) < total {
            self.open.insert(seq, EntryState { total, stored });
        }
    }

    /// The sink flushed records consuming these observations.
    pub fn stored(&mut self, origins: &[Origin]) {
        for o in origins {
            if let Some(state) = self.open.get_mut(&o.entry) {
                state.stored.push(o.ordinal);
                if state.stored.len() as u32 >= state.total {
                    self.open.remove(&o.entry);
                }
            }
        }
    }

    /// Entries with observations not yet stored.
    pub fn open_entries(&self) -> usize {
        self.open.len()
    }

    /// The checkpoint for a spool whose next entry is `next_seq`.
    pub fn checkpoint(&self, next_seq: u64, sink_position: Option<u64>) -> Checkpoint {
        let replay_from = self.open.keys().next().copied().unwrap_or(next_seq);
        let mut b = CheckpointBuilder::new(replay_from, sink_position);
        let mut expected = replay_from;
        for (&seq, state) in &self.open {
            for done in expected..seq {
                b.done(done);
            }
            if !state.stored.is_empty() {
                b.partial(seq, state.stored.clone());
            }
            expected = seq + 1;
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(entry: u64, ordinal: u32) -> Origin {
        Origin { entry, ordinal }
    }

    #[test]
    fn the_checkpoint_replays_from_the_oldest_open_entry_and_skips_what_is_stored() {
        let mut p = Progress::default();
        p.entry(10, 2, vec![]);
        p.entry(11, 0, vec![]);
        p.entry(12, 1, vec![]);
        p.entry(13, 3, vec![]);
        p.stored(&[o(12, 0), o(13, 2), o(10, 0)]);
        let cp = p.checkpoint(14, Some(99));
        assert_eq!(cp.replay_from, 10);
        assert_eq!(cp.done, vec![(11, 12)]);
        assert_eq!(cp.partial.get(&10), Some(&vec![0]));
        assert_eq!(cp.partial.get(&13), Some(&vec![2]));
        assert!(cp.is_stored(13, 2) && !cp.is_stored(13, 1));
        p.stored(&[o(10, 1)]);
        assert_eq!(p.checkpoint(14, None).replay_from, 13);
        p.stored(&[o(13, 0), o(13, 1)]);
        assert_eq!(p.checkpoint(14, None).replay_from, 14);
        assert_eq!(p.open_entries(), 0);
    }
}
